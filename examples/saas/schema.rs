//! The tables, as diesel sees them. None names a schema: a tenant table used
//! on a tenant connection is that tenant's, and a shared table used on a
//! shared connection is the shared schema's.

/// Tables every tenant has, in its own schema.
pub mod tenant {
    diesel::table! {
        /// A tenant's projects.
        projects (id) {
            /// Its key, numbered per tenant.
            id -> BigInt,
            /// Unique within the tenant.
            name -> Text,
        }
    }

    diesel::table! {
        /// Tasks of a project.
        tasks (id) {
            /// Its key, numbered per tenant.
            id -> BigInt,
            /// The project it belongs to (a foreign key inside the tenant's schema).
            project_id -> BigInt,
            /// What is to be done.
            title -> Text,
            /// Whether it is.
            done -> Bool,
            /// Added by release 2 (`2024-09-01-000000_add_task_priority`): only
            /// queries made after the fleet migration may name it.
            priority -> SmallInt,
        }
    }

    diesel::table! {
        /// Comments on a task.
        comments (id) {
            /// Its key, numbered per tenant.
            id -> BigInt,
            /// The task it is about.
            task_id -> BigInt,
            /// Who wrote it.
            author -> Text,
            /// What it says.
            body -> Text,
        }
    }

    diesel::joinable!(tasks -> projects (project_id));
    diesel::joinable!(comments -> tasks (task_id));
    diesel::allow_tables_to_appear_in_same_query!(projects, tasks, comments);
}

/// Tables shared by all tenants, in the shared schema (`public`).
pub mod shared {
    diesel::table! {
        /// What tenants can buy.
        plans (id) {
            /// `free`, `team`.
            id -> Text,
            /// Shown to people.
            name -> Text,
            /// How many projects a tenant on this plan may have.
            max_projects -> Integer,
            /// The monthly price.
            monthly_cents -> Integer,
        }
    }

    diesel::table! {
        /// One row per tenant.
        accounts (schema_name) {
            /// The tenant's schema.
            schema_name -> Text,
            /// Who the tenant is.
            company -> Text,
            /// What it pays for.
            plan_id -> Text,
        }
    }

    diesel::joinable!(accounts -> plans (plan_id));
    diesel::allow_tables_to_appear_in_same_query!(accounts, plans);
}
