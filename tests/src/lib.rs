//! Shared set-up for tenancy's integration tests and benchmarks: a
//! PostgreSQL (found or started by `tenancy-devdb`), databases and uniquely
//! named tenant schemas that are dropped when the test ends, an admin
//! connection that bypasses the library (for checking what really landed
//! where), and probes of what the server says about a session.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![warn(missing_docs)]

pub mod citus;
pub mod instrumentation;
pub mod probe;
pub mod rows;
pub mod schemas;
pub mod spans;
pub mod stats;

use diesel::{Connection, PgConnection};
use diesel_migrations::FileBasedMigrations;
use tenancy_core::TenantPool;

pub use instrumentation::{logged_pool, pool_counting_connections, Silent, StatementCount, StatementLog};
pub use probe::{backend_pid, count, current_schemas, scalar_i64, search_path};
pub use rows::{insert_tagged, items, rows_of, tags, Row, ITEMS_DDL};
pub use schemas::{register, unique_schema, unregister, Schemas};

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

/// A pool of one connection on the test database: every checkout gets the
/// same physical connection, as long as the pool keeps it.
pub fn pool_of_one() -> TenantPool {
    TenantPool::builder().max_size(1).build(&url()).expect("pool of one")
}

/// A database of the test's own (`{prefix}_{pid}_{n}`), dropped (with
/// `FORCE`) when the returned guard is: for tests that work on "every
/// tenant" of a registry, which must not see other tests' tenants, or that
/// cut the sessions of a database.
pub fn temp_database(prefix: &str) -> tenancy_devdb::TempDatabase {
    let db = tenancy_devdb::shared().unwrap_or_else(|e| panic!("no PostgreSQL for the tests: {e}"));
    db.create_unique_database(prefix).unwrap_or_else(|e| panic!("creating a database {prefix}_*: {e}"))
}

/// The migrations in `tests/migrations/{dir}`, read from disk.
pub fn migrations(dir: &str) -> FileBasedMigrations {
    FileBasedMigrations::from_path(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("migrations/{dir}: {e}"))
}
