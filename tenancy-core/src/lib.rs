//! Schema-per-tenant multi-tenancy for [diesel] on PostgreSQL.
//!
//! Every tenant owns one PostgreSQL schema with the same tables. Application
//! code is written once, against unqualified table names; this crate makes
//! sure every connection it hands out resolves those names in exactly one
//! tenant's schema, and that no code path gets a connection that doesn't.
//!
//! * [`SchemaName`]: the validated tenant name (and [`schema!`] for literals
//!   checked at compile time).
//! * [`TenantPool`]: one pool for all tenants; [`TenantPool::tenant`],
//!   [`TenantPool::transaction`], [`TenantPool::shared`].
//! * [`TenantContext`], [`Tenant`] and [`tenant_scoped`]: DAL functions that
//!   can only reach their own tenant.
//! * [`provision`], [`drop_tenant`], [`list_tenants`], [`tenant_exists`]: the
//!   tenant registry; [`migrate_all`]: migrations across the whole fleet.
//!
//! # Example
//!
//! ```no_run
//! use diesel::prelude::*;
//! use tenancy_core::{parse_schema, provision, tenant_scoped, Tenant, TenancyError, TenantPool};
//! # const MIGRATIONS: diesel_migrations::EmbeddedMigrations = diesel_migrations::EmbeddedMigrations::new(&[]);
//! // const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/tenant");
//!
//! diesel::table! {
//!     notes (id) {
//!         id -> BigInt,
//!         body -> Text,
//!     }
//! }
//!
//! #[tenant_scoped(ctx = tenant)]
//! fn add_note(tenant: &Tenant, body: &str) -> Result<usize, TenancyError> {
//!     Ok(diesel::insert_into(notes::table).values(notes::body.eq(body)).execute(conn)?)
//! }
//!
//! let pool = TenantPool::connect("postgres://localhost/app")?;
//! let acme = parse_schema("acme")?; // e.g. from a subdomain: validated, never folded
//! provision(&pool, &acme, MIGRATIONS)?; // create, migrate, register; idempotent
//! add_note(&pool.for_tenant(acme.clone()), "hello")?; // lands in "acme".notes, nowhere else
//! # Ok::<(), TenancyError>(())
//! ```
//!
//! # What a borrower may do with a connection
//!
//! A checked-out connection dereferences to diesel's `PgConnection`, so any
//! SQL can be sent through it. The pool watches the statements sent (the
//! session guard, installed as each connection's diesel instrumentation) for
//! the few that would outlive the checkout: a session `SET search_path` makes
//! the pool forget the connection's scope (the next checkout re-scopes it);
//! other session `SET`s, `RESET ALL`, `DISCARD`, `set_config`, temporary
//! tables, session advisory locks, holdable cursors and transactions left open
//! retire the physical connection. Either way the next borrower starts clean.
//! Every search path the pool sets ends in `pg_temp`, so a temporary table can
//! never shadow a tenant's table. Behind a transaction pooler
//! ([`PoolerMode::Transaction`]) a transaction body that changes session state
//! is rolled back ([`TenancyError::SessionStateRefused`]) rather than
//! committing that state onto a server session other clients will get.
//!
//! What the guard cannot see is what the server does on its own: a function
//! whose body calls `set_config` changes the session behind the statement
//! text. Give such functions a `SET search_path` clause.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

/// Builder setters: each stores its value and returns the builder.
macro_rules! setters {
    ($($(#[$meta:meta])* $name:ident($ty:ty) => $field:ident;)*) => {$(
        $(#[$meta])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.$field = value;
            self
        }
    )*};
}

mod config;
mod context;
mod error;
mod guard;
mod layout;
mod migrate;
mod pool;
mod provision;
mod registry;
mod schema_name;
mod session;
mod sql;
mod tenants;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use config::ConfigError;
pub use context::{Tenant, TenantContext};
pub use error::{parse_schema, RefusalReason, TenancyError};
pub use layout::SchemaRole;
pub use migrate::{
    migrate_all, MigrateOptions, MigrationCounts, MigrationReport, Progress, TenantMigration, TenantOutcome,
};
pub use pool::{
    InstrumentationFactory, PoolState, PoolerMode, SharedConnection, TenantConnection, TenantPool,
    TenantPoolBuilder,
};
pub use provision::{adopt, drop_tenant, provision, Provisioned};
pub use registry::{TenantRecord, TenantState, UnknownTenantState};
pub use schema_name::{SchemaName, SchemaNameError, DEFAULT_REGISTRY_SCHEMA, MAX_LEN};
pub use tenancy_macros::tenant_scoped;
pub use tenants::{list_tenants, tenant_exists, tenant_record};

/// Re-exported so that users and generated code name one diesel.
pub use diesel;
