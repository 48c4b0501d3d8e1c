//! Test fixtures for applications built on [`tenancy_core`]: a throwaway
//! database and throwaway tenants, each dropped when it goes out of scope,
//! so that every test gets a registry and tenants of its own and leaves
//! nothing behind.
//!
//! The PostgreSQL is found or started by [`tenancy_devdb`]: `DATABASE_URL`
//! when set, else a server on `127.0.0.1:5432`, else a throwaway cluster
//! started from the local PostgreSQL binaries, removed when the test process
//! ends.
//!
//! ```no_run
//! use tenancy_test::{TestDatabase, TestTenant};
//! # const MIGRATIONS: diesel_migrations::EmbeddedMigrations = diesel_migrations::EmbeddedMigrations::new(&[]);
//!
//! #[test]
//! fn notes_stay_with_their_tenant() -> Result<(), Box<dyn std::error::Error>> {
//!     let db = TestDatabase::new()?;                      // dropped at the end of the test
//!     let pool = db.pool()?;
//!     let acme = TestTenant::provision(&pool, "acme", MIGRATIONS)?; // dropped before `db`
//!     // `acme` is a `TenantContext`: pass it to `#[tenant_scoped]` code.
//!     let mut conn = pool.tenant(acme.schema())?;
//!     // ...
//!     Ok(())
//! }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::sync::atomic::{AtomicU32, Ordering};

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::PgConnection;
use tenancy_core::{drop_tenant, provision, SchemaName, TenancyError, Tenant, TenantContext, TenantPool};
use tenancy_devdb::TempDatabase;

pub use tenancy_devdb::DevDbError;

/// A database of its own, created on the development PostgreSQL and
/// dropped (`WITH (FORCE)`, so open connections do not keep it) when this
/// value is dropped. Drop pools on it first, or their connections are cut.
#[derive(Debug)]
pub struct TestDatabase {
    database: TempDatabase,
}

impl TestDatabase {
    /// Creates a database named `tenancy_test_{pid}_{n}`.
    pub fn new() -> Result<Self, DevDbError> {
        Self::with_prefix("tenancy_test")
    }

    /// Creates a database named `{prefix}_{pid}_{n}` (`prefix`: lowercase
    /// letters, digits and `_`, at most 40 bytes), to tell a test's
    /// database apart while it runs.
    pub fn with_prefix(prefix: &str) -> Result<Self, DevDbError> {
        let server = tenancy_devdb::shared()?;
        Ok(Self { database: server.create_unique_database(prefix)? })
    }

    /// Its connection URL.
    pub fn url(&self) -> &str {
        self.database.url()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.database.name()
    }

    /// A connection outside any pool, to set up or check what landed where.
    pub fn connect(&self) -> Result<PgConnection, DevDbError> {
        self.database.connect()
    }

    /// A [`TenantPool`] on it, with default settings and up to 4 connections.
    pub fn pool(&self) -> Result<TenantPool, TenancyError> {
        TenantPool::builder().max_size(4).build(self.url())
    }
}

/// A provisioned tenant, with a name no other test uses, dropped (schema and
/// registry row, with [`drop_tenant`]) when this value is dropped.
///
/// It is a [`TenantContext`], so `#[tenant_scoped]` code takes it as it
/// takes a [`Tenant`].
#[derive(Debug)]
pub struct TestTenant {
    tenant: Tenant,
}

impl TestTenant {
    /// Provisions a tenant named `{prefix}_{pid}_{n}` with `migrations`.
    /// `prefix` must make a valid schema name that way (lowercase, at most
    /// 40 bytes), or this is [`TenancyError::InvalidSchemaName`].
    pub fn provision<S>(pool: &TenantPool, prefix: &str, migrations: S) -> Result<Self, TenancyError>
    where
        S: MigrationSource<Pg>,
    {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let schema = tenancy_core::parse_schema(&name)?;
        provision(pool, &schema, migrations)?;
        Ok(Self { tenant: pool.for_tenant(schema) })
    }

    /// The tenant's schema.
    pub fn schema(&self) -> &SchemaName {
        self.tenant.tenant_schema()
    }

    /// A [`Tenant`] handle on it (it drops nothing).
    pub fn tenant(&self) -> Tenant {
        self.tenant.clone()
    }
}

impl TenantContext for TestTenant {
    fn tenant_pool(&self) -> &TenantPool {
        self.tenant.tenant_pool()
    }

    fn tenant_schema(&self) -> &SchemaName {
        self.tenant.tenant_schema()
    }
}

impl Drop for TestTenant {
    fn drop(&mut self) {
        // A tenant already dropped by the test is fine; anything else
        // leaves a schema in a database that is usually dropped anyway.
        let _ = drop_tenant(self.tenant.tenant_pool(), self.tenant.tenant_schema());
    }
}
