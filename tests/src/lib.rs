//! Shared set-up for tenancy's integration tests: a PostgreSQL (found or
//! started by `tenancy-devdb`), uniquely named tenant schemas that are
//! dropped when the test ends, and an admin connection that bypasses the
//! library (for checking what really landed where).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use tenancy_core::{SchemaName, TenantPool};

/// The URL of the test PostgreSQL.
pub fn url() -> String {
    match tenancy_devdb::shared() {
        Ok(db) => db.url().to_owned(),
        Err(e) => panic!("no PostgreSQL for the tests: {e}"),
    }
}

/// A direct connection, outside any pool, for set-up and for auditing.
pub fn admin() -> PgConnection {
    PgConnection::establish(&url()).expect("admin connection")
}

/// A pool with default settings on the test database.
pub fn pool() -> TenantPool {
    TenantPool::builder().max_size(4).build(&url()).expect("pool")
}

/// A schema name no other test (or test run) uses: `{prefix}_{pid}_{n}_{nanos}`.
pub fn unique_schema(prefix: &str) -> SchemaName {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000
    );
    SchemaName::new(&name).unwrap_or_else(|e| panic!("bad test schema name {name}: {e}"))
}

/// A database of the test's own (`{prefix}_{pid}_{n}`), dropped (with
/// `FORCE`) when the returned guard is: for tests that work on "every
/// tenant" of a registry, which must not see other tests' tenants.
pub fn temp_database(prefix: &str) -> tenancy_devdb::TempDatabase {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let db = tenancy_devdb::shared().unwrap_or_else(|e| panic!("no PostgreSQL for the tests: {e}"));
    db.create_database(&name).unwrap_or_else(|e| panic!("creating database {name}: {e}"))
}

/// Registers schemas created by hand as tenants of the registry at `url`:
/// the registry row `provision` would have written, for tests whose
/// tenants are made with plain DDL.
pub fn register(url: &str, names: &[SchemaName]) {
    if names.is_empty() {
        return;
    }
    // Any registry read creates the registry first.
    let pool = TenantPool::builder().max_size(1).build(url).expect("pool");
    tenancy_core::list_tenants(&pool).expect("registry");
    let values: Vec<String> = names.iter().map(|n| format!("('{n}', 'ready')")).collect();
    PgConnection::establish(url)
        .expect("admin connection")
        .batch_execute(&format!(
            "INSERT INTO tenancy.tenants (schema_name, state) VALUES {} ON CONFLICT DO NOTHING",
            values.join(", ")
        ))
        .expect("registering tenants");
}

/// Removes the registry rows of `names` at `url`.
pub fn unregister(url: &str, names: &[SchemaName]) {
    if let Ok(mut conn) = PgConnection::establish(url) {
        let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
        if !list.is_empty() {
            let _ = conn.batch_execute(&format!(
                "DO $$BEGIN IF to_regclass('tenancy.tenants') IS NOT NULL THEN \
                 DELETE FROM tenancy.tenants WHERE schema_name IN ({}); END IF; END$$",
                list.join(", ")
            ));
        }
    }
}

/// Tenant schemas created for one test and dropped (CASCADE) when it ends.
pub struct Schemas {
    pub names: Vec<SchemaName>,
}

impl Schemas {
    /// Creates `count` uniquely named tenants, each with `ddl` run inside
    /// its schema (unqualified names in `ddl` land in the schema).
    pub fn create(prefix: &str, count: usize, ddl: &str) -> Self {
        let schemas = Self::create_unregistered(prefix, count, ddl);
        register(&url(), &schemas.names);
        schemas
    }

    /// Creates schemas like [`Schemas::create`] that are not tenants
    /// (extension schemas, look-alikes).
    pub fn create_unregistered(prefix: &str, count: usize, ddl: &str) -> Self {
        let mut conn = admin();
        let names: Vec<SchemaName> = (0..count).map(|_| unique_schema(prefix)).collect();
        for name in &names {
            conn.batch_execute(&format!(
                "CREATE SCHEMA {q}; SET search_path TO {q}; {ddl}; RESET search_path;",
                q = name.quoted()
            ))
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
        }
        Self { names }
    }

    pub fn first(&self) -> &SchemaName {
        &self.names[0]
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        unregister(&url(), &self.names);
        if let Ok(mut conn) = PgConnection::establish(&url()) {
            for name in &self.names {
                let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", name.quoted()));
            }
        }
    }
}

/// A table definition used by many tests: rows tagged with the tenant that wrote them.
pub const ITEMS_DDL: &str =
    "CREATE TABLE items (id BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, body TEXT NOT NULL DEFAULT '')";

diesel::table! {
    /// `ITEMS_DDL` as a diesel table.
    items (id) {
        id -> BigInt,
        tenant -> Text,
        body -> Text,
    }
}
