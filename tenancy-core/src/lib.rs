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
//!   tenant registry; [`provision_with`], [`provision_in`] and
//!   [`drop_tenant_with`] for sign-ups and removals that commit with the
//!   caller's own rows.
//! * [`migrate_all`]: migrations across the whole fleet, or part of it, with
//!   canaries ([`MigrateOptions`]); [`revert_last`]; [`migrate_shared`] for
//!   the shared schema. The `tenancy` command (crate `tenancy-cli`) runs them
//!   from the shell, and the `tenancy-test` crate gives test suites throwaway
//!   databases and tenants.
//! * With the `tokio` feature, an async API: `TenantPool::run`,
//!   `TenantPool::run_transaction`, `Tenant::run` and
//!   `TenantPool::check_tenant_async` run diesel on tokio's blocking pool,
//!   never on a runtime worker (see their docs on panics and cancellation).
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
//! SQL can be sent through it. Whatever a borrower sends, the next borrower
//! of that physical connection, of the same tenant or another, starts clean:
//! the pool's search path, no open or aborted transaction, no session
//! setting, temporary object, prepared statement, cursor, session advisory
//! lock, listened channel or sequence state of the last one.
//!
//! * The session guard (each connection's diesel instrumentation) reads every
//!   statement before it is sent, as PostgreSQL's scanner would, and
//!   classifies it against allowlists of statement kinds and of the functions
//!   the server declares immutable or stable. Plain DSL CRUD costs nothing.
//! * When the connection comes back, whatever the statements may have changed
//!   is undone in one message (`ROLLBACK`, `RESET ALL`, `CLOSE ALL`,
//!   `UNLISTEN *`, `pg_advisory_unlock_all()`, `DISCARD SEQUENCES`, the scope
//!   again), or the connection is retired when that cannot be done in place.
//! * In a tenant transaction, a statement that would end the pool's
//!   transaction is refused before it is sent
//!   ([`TenancyError::SessionStateRefused`], nothing committed); behind a
//!   transaction pooler ([`PoolerMode::Transaction`]) so is every statement
//!   that would change the server session, and the `COMMIT` message checks
//!   the server's own view before committing.
//! * What the pool knows about a connection lives in the connection itself,
//!   so no safe-Rust rearrangement of checkouts (`std::mem::swap`) misleads it.
//!
//! Code the server runs by itself during a plain statement (a trigger, a
//! rule) is not in the statement's text: turn on
//! [`TenantPoolBuilder::always_restore`] when your schemas have such code.
//! The README's "What a borrower may do" states the guarantee in full.

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

pub mod citus;
mod config;
mod context;
mod decommission;
mod error;
mod guard;
mod layout;
mod migrate;
mod pool;
mod provision;
mod registry;
#[cfg(feature = "tokio")]
mod runtime;
mod schema_name;
mod scope;
mod session;
mod sql;
mod tenants;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// `schema!`'s copy of the naming rules, checked against `SchemaName`'s.
#[cfg(test)]
#[path = "../../tenancy-macros/src/schema_rules.rs"]
mod macro_schema_rules;

pub use config::ConfigError;
pub use context::{Tenant, TenantContext};
pub use decommission::{drop_tenant, drop_tenant_with};
pub use error::{parse_schema, RefusalReason, TenancyError};
pub use layout::SchemaRole;
pub use migrate::{
    migrate_all, migrate_shared, revert_last, MigrateOptions, MigrationCounts, MigrationReport, Progress,
    TenantMigration, TenantOutcome,
};
pub use pool::{
    InstrumentationFactory, IsolationLevel, PoolState, PoolerMode, SharedConnection, TenantAffinity,
    TenantConnection, TenantPool, TenantPoolBuilder, TransactionBuilder, TransactionOptions,
};
pub use provision::{adopt, provision, provision_in, provision_with, Provisioned};
pub use registry::{TenantRecord, TenantState, UnknownTenantState};
pub use schema_name::{SchemaName, SchemaNameError, DEFAULT_REGISTRY_SCHEMA, MAX_LEN};
pub use scope::{Nested, Scope, ScopedConnection};
pub use tenancy_macros::{tenant_scoped, TenantContext};
pub use tenants::{list_tenants, tenant_exists, tenant_record, TenantList};

/// Re-exported so that users and generated code name one diesel.
pub use diesel;
