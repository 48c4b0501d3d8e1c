//! Uniquely named tenant schemas, dropped when the test ends.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use tenancy_core::{SchemaName, TenantPool};

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

/// Tenant schemas created for one test and dropped (CASCADE), on the
/// database they were created in, when it ends.
pub struct Schemas {
    url: String,
    /// The schemas, in creation order.
    pub names: Vec<SchemaName>,
}

impl Schemas {
    /// Creates `count` uniquely named tenants on the test database, each
    /// with `ddl` run inside its schema (unqualified names in `ddl` land in
    /// the schema), registered as `provision` would have.
    pub fn create(prefix: &str, count: usize, ddl: &str) -> Self {
        Self::create_on(&crate::url(), prefix, count, ddl)
    }

    /// [`Schemas::create`] on the database at `url`.
    pub fn create_on(url: &str, prefix: &str, count: usize, ddl: &str) -> Self {
        let schemas = Self::create_unregistered_on(url, prefix, count, ddl);
        register(url, &schemas.names);
        schemas
    }

    /// Schemas made like [`Schemas::create`] that are not tenants
    /// (extension schemas, application schemas, look-alikes).
    pub fn create_unregistered(prefix: &str, count: usize, ddl: &str) -> Self {
        Self::create_unregistered_on(&crate::url(), prefix, count, ddl)
    }

    fn create_unregistered_on(url: &str, prefix: &str, count: usize, ddl: &str) -> Self {
        let mut conn = PgConnection::establish(url).unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        let names: Vec<SchemaName> = (0..count).map(|_| unique_schema(prefix)).collect();
        // One message, so one commit, however many schemas.
        let mut sql: String = names
            .iter()
            .map(|name| format!("CREATE SCHEMA {q}; SET search_path TO {q}; {ddl};", q = name.quoted()))
            .collect();
        sql.push_str("RESET search_path;");
        conn.batch_execute(&sql).unwrap_or_else(|e| panic!("creating {count} schemas {prefix}_*: {e}"));
        Self { url: url.to_owned(), names }
    }

    /// The first schema (for tests that need one).
    pub fn first(&self) -> &SchemaName {
        &self.names[0]
    }

    /// The first two schemas (for tests of one tenant and its neighbour).
    pub fn pair(&self) -> (&SchemaName, &SchemaName) {
        (&self.names[0], &self.names[1])
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        unregister(&self.url, &self.names);
        if let Ok(mut conn) = PgConnection::establish(&self.url) {
            // One message, so one commit however many schemas.
            let drop: String =
                self.names.iter().map(|n| format!("DROP SCHEMA IF EXISTS {} CASCADE;", n.quoted())).collect();
            let _ = conn.batch_execute(&drop);
        }
    }
}

/// Registers schemas created by hand as tenants of the registry at `url`:
/// the registry row `provision` would have written, for tests whose tenants
/// are made with plain DDL.
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

/// Removes the registry rows of `names` at `url`, if there is a registry.
pub fn unregister(url: &str, names: &[SchemaName]) {
    if names.is_empty() {
        return;
    }
    if let Ok(mut conn) = PgConnection::establish(url) {
        let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
        let _ = conn.batch_execute(&format!(
            "DO $$BEGIN IF to_regclass('tenancy.tenants') IS NOT NULL THEN \
             DELETE FROM tenancy.tenants WHERE schema_name IN ({}); END IF; END$$",
            list.join(", ")
        ));
    }
}
