//! The fixtures on a real PostgreSQL: each creates what it says, and drops
//! it when it goes out of scope.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::FileBasedMigrations;
use tenancy_core::{tenant_exists, TenantContext};
use tenancy_test::{TestDatabase, TestTenant};

fn migrations() -> FileBasedMigrations {
    FileBasedMigrations::from_path(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/migrations")).unwrap()
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(conn: &mut PgConnection, sql: &str, bind: &str) -> i64 {
    diesel::sql_query(sql).bind::<Text, _>(bind).get_result::<Count>(conn).unwrap().n
}

#[test]
fn a_test_database_and_a_test_tenant_exist_while_held_and_drop_themselves() {
    let server = tenancy_devdb::shared().unwrap();
    let mut outside = PgConnection::establish(server.url()).unwrap();
    let db = TestDatabase::with_prefix("fixture").unwrap();
    let name = db.name().to_owned();
    assert!(name.starts_with("fixture_"));
    assert_eq!(count(&mut outside, "SELECT count(*) AS n FROM pg_database WHERE datname = $1", &name), 1);

    let pool = db.pool().unwrap();
    let mut admin = db.connect().unwrap();
    let schema = {
        let tenant = TestTenant::provision(&pool, "acme", migrations()).unwrap();
        let schema = tenant.schema().clone();
        assert!(schema.as_str().starts_with("acme_"));
        assert!(tenant_exists(&pool, &schema).unwrap());
        // It is a tenant context: its connections are scoped to it.
        let mut conn = tenant.tenant_connection().unwrap();
        diesel::sql_query("INSERT INTO notes (body) VALUES ('hello')").execute(&mut *conn).unwrap();
        drop(conn);
        let notes = format!("SELECT count(*) AS n FROM {}.notes WHERE body = $1", schema.quoted());
        assert_eq!(count(&mut admin, &notes, "hello"), 1);
        schema
    };
    // The tenant dropped itself: schema and registry row.
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1", schema.as_str()),
        0
    );
    assert!(!tenant_exists(&pool, &schema).unwrap());

    // Two tenants of one prefix never share a name.
    let (a, b) = (
        TestTenant::provision(&pool, "twin", migrations()).unwrap(),
        TestTenant::provision(&pool, "twin", migrations()).unwrap(),
    );
    assert_ne!(a.schema(), b.schema());
    drop((a, b));

    drop(admin);
    drop(pool);
    drop(db);
    assert_eq!(count(&mut outside, "SELECT count(*) AS n FROM pg_database WHERE datname = $1", &name), 0);
}

#[test]
fn a_prefix_that_cannot_make_a_schema_name_is_a_typed_error() {
    let db = TestDatabase::new().unwrap();
    let pool = db.pool().unwrap();
    let error = TestTenant::provision(&pool, "Acme", migrations()).unwrap_err();
    assert!(matches!(error, tenancy_core::TenancyError::InvalidSchemaName { .. }), "{error}");
}
