//! The tenant data access layer: everything a tenant's requests do to its
//! own tables. Written once, against unqualified tables; each method's
//! `conn` comes from the [`Workspace`]'s tenant and reaches nothing else.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as QueryError};
use diesel::sql_types::{BigInt, Text};
use tenancy_core::{tenant_scoped, TenancyError, Tenant, TenantContext};

use crate::schema::tenant::{comments, projects, tasks};

/// Why a DAL call failed.
#[derive(Debug, thiserror::Error)]
pub enum DalError {
    /// No connection for the tenant: it does not exist, or the pool failed.
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    /// A statement failed.
    #[error("query failed: {0}")]
    Query(#[from] QueryError),
    /// The row a request named does not exist in this tenant.
    #[error("no {what} #{id}")]
    NotFound {
        /// `project`, `task`.
        what: &'static str,
        /// The id asked for.
        id: i64,
    },
    /// Project names are unique per tenant.
    #[error("a project named {0:?} already exists")]
    DuplicateProject(String),
}

/// A tenant's projects, tasks and comments.
///
/// Holds a [`Tenant`] (the pool and one schema name); built per request from
/// the tenant the request names, and cheap to build.
#[derive(TenantContext)]
pub struct Workspace {
    tenant: Tenant,
}

/// One row of [`Workspace::board`].
#[derive(Debug, PartialEq, Eq, QueryableByName)]
pub struct ProjectSummary {
    /// The project's name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// Its tasks.
    #[diesel(sql_type = BigInt)]
    pub tasks: i64,
    /// Its tasks not done yet.
    #[diesel(sql_type = BigInt)]
    pub open: i64,
    /// Comments on its tasks.
    #[diesel(sql_type = BigInt)]
    pub comments: i64,
}

/// A task and the name of its project.
#[derive(Debug, Queryable)]
pub struct TaskView {
    /// The task's id.
    pub id: i64,
    /// What is to be done.
    pub title: String,
    /// Whether it is.
    pub done: bool,
    /// The project it belongs to.
    pub project: String,
}

impl Workspace {
    /// The workspace of `tenant`.
    pub fn new(tenant: Tenant) -> Self {
        Self { tenant }
    }

    /// Creates a project; its id is returned.
    #[tenant_scoped]
    pub fn create_project(&self, name: &str) -> Result<i64, DalError> {
        diesel::insert_into(projects::table)
            .values(projects::name.eq(name))
            .returning(projects::id)
            .get_result(conn)
            .map_err(|e| match e {
                QueryError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                    DalError::DuplicateProject(name.to_owned())
                }
                other => other.into(),
            })
    }

    /// How many projects the tenant has.
    #[tenant_scoped]
    pub fn project_count(&self) -> Result<i64, DalError> {
        Ok(projects::table.count().get_result(conn)?)
    }

    /// Adds a task to a project; its id is returned.
    #[tenant_scoped]
    pub fn add_task(&self, project_id: i64, title: &str) -> Result<i64, DalError> {
        diesel::insert_into(tasks::table)
            .values((tasks::project_id.eq(project_id), tasks::title.eq(title)))
            .returning(tasks::id)
            .get_result(conn)
            .map_err(|e| not_found_on_foreign_key(e, "project", project_id))
    }

    /// Comments on a task.
    #[tenant_scoped]
    pub fn comment(&self, task_id: i64, author: &str, body: &str) -> Result<(), DalError> {
        diesel::insert_into(comments::table)
            .values((comments::task_id.eq(task_id), comments::author.eq(author), comments::body.eq(body)))
            .execute(conn)
            .map_err(|e| not_found_on_foreign_key(e, "task", task_id))?;
        Ok(())
    }

    /// Marks a task done and records who did it, both or neither.
    #[tenant_scoped(transaction)]
    pub fn complete_task(&self, task_id: i64, author: &str) -> Result<(), DalError> {
        let updated = diesel::update(tasks::table.find(task_id)).set(tasks::done.eq(true)).execute(conn)?;
        if updated == 0 {
            return Err(DalError::NotFound { what: "task", id: task_id });
        }
        diesel::insert_into(comments::table)
            .values((
                comments::task_id.eq(task_id),
                comments::author.eq(author),
                comments::body.eq("marked done"),
            ))
            .execute(conn)?;
        Ok(())
    }

    /// A task, with its project's name.
    #[tenant_scoped]
    pub fn task(&self, task_id: i64) -> Result<TaskView, DalError> {
        tasks::table
            .inner_join(projects::table)
            .filter(tasks::id.eq(task_id))
            .select((tasks::id, tasks::title, tasks::done, projects::name))
            .first(conn)
            .optional()?
            .ok_or(DalError::NotFound { what: "task", id: task_id })
    }

    /// Every project with its task and comment counts. Plain SQL is scoped
    /// the same way as the query builder: `projects` is this tenant's.
    #[tenant_scoped]
    pub fn board(&self) -> Result<Vec<ProjectSummary>, DalError> {
        Ok(diesel::sql_query(
            "SELECT p.name,
                    count(DISTINCT t.id) AS tasks,
                    count(DISTINCT t.id) FILTER (WHERE NOT t.done) AS open,
                    count(c.id) AS comments
             FROM projects p
             LEFT JOIN tasks t ON t.project_id = p.id
             LEFT JOIN comments c ON c.task_id = t.id
             GROUP BY p.id
             ORDER BY p.id",
        )
        .load(conn)?)
    }

    /// Sets a task's priority (release 2: needs the `priority` column).
    #[tenant_scoped]
    pub fn set_priority(&self, task_id: i64, priority: i16) -> Result<(), DalError> {
        match diesel::update(tasks::table.find(task_id)).set(tasks::priority.eq(priority)).execute(conn)? {
            0 => Err(DalError::NotFound { what: "task", id: task_id }),
            _ => Ok(()),
        }
    }
}

/// A foreign key violation means the referenced row is not in this tenant.
fn not_found_on_foreign_key(error: QueryError, what: &'static str, id: i64) -> DalError {
    match error {
        QueryError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            DalError::NotFound { what, id }
        }
        other => other.into(),
    }
}
