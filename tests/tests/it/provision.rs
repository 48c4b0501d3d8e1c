//! Provisioning, the tenant registry and dropping tenants, on a real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use tenancy_core::{
    adopt, drop_tenant, list_tenants, parse_schema, provision, tenant_exists, tenant_record, PoolerMode,
    RefusalReason, SchemaName, TenancyError, TenantPool, TenantState,
};
use tenancy_tests::{count, migrations, pool_counting_connections, unique_schema};

const BASIC: EmbeddedMigrations = embed_migrations!("migrations/basic");

fn temp_db(tag: &str) -> tenancy_devdb::TempDatabase {
    tenancy_tests::temp_database(&format!("prov_{tag}"))
}

fn pool_on(url: &str) -> TenantPool {
    TenantPool::builder().max_size(4).build(url).unwrap()
}

fn schema_exists(conn: &mut PgConnection, schema: &str) -> bool {
    count(conn, "SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1", &[schema]) == 1
}

fn applied_versions(conn: &mut PgConnection, schema: &SchemaName) -> i64 {
    count(conn, &format!("SELECT count(*) AS n FROM {}.__diesel_schema_migrations", schema.quoted()), &[])
}

/// Drops a tenant on the shared test database when the test ends, pass or fail.
struct Cleanup(SchemaName);

/// A pool of two whose registry and shared schemas have names a tenant
/// could have: `fleet_registry` and `fleet_shared`.
fn fleet_pool(db: &tenancy_devdb::TempDatabase) -> TenantPool {
    TenantPool::builder()
        .max_size(2)
        .registry_schema("fleet_registry")
        .shared_schema("fleet_shared")
        .build(db.url())
        .unwrap()
}

/// A fresh tenant name, dropped (schema and registry row) when the test ends.
fn scratch(prefix: &str) -> (SchemaName, Cleanup) {
    let schema = unique_schema(prefix);
    (schema.clone(), Cleanup(schema))
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut conn = tenancy_tests::admin();
        let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0.quoted()));
        let _ = diesel::sql_query("DELETE FROM tenancy.tenants WHERE schema_name = $1")
            .bind::<Text, _>(self.0.as_str())
            .execute(&mut conn);
    }
}

#[test]
fn provisioning_twice_is_a_noop_the_second_time() {
    let pool = tenancy_tests::pool();
    let (schema, _cleanup) = scratch("prov_twice");

    let first = provision(&pool, &schema, BASIC).unwrap();
    assert!(first.created);
    assert_eq!(first.applied, ["20240101000001", "20240102000001"]);

    let second = provision(&pool, &schema, BASIC).unwrap();
    assert!(second.was_noop(), "{second:?}");

    let mut admin = tenancy_tests::admin();
    assert_eq!(applied_versions(&mut admin, &schema), 2);
    let record = tenant_record(&pool, &schema).unwrap().unwrap();
    assert_eq!(record.state, TenantState::Ready);
    assert_eq!(record.migration_version.as_deref(), Some("20240102000001"));
    assert_eq!(record.migrations_applied, 2);
    assert_eq!(record.last_error, None);
    assert!(tenant_exists(&pool, &schema).unwrap());

    // The tenant's tables work through the pool.
    pool.transaction(&schema, |conn| {
        diesel::sql_query("INSERT INTO items (tenant) VALUES ('x')").execute(conn)?;
        Ok::<_, TenancyError>(())
    })
    .unwrap();
}

#[test]
fn file_based_migrations_provision_like_embedded_ones() {
    let pool = tenancy_tests::pool();
    let (schema, _cleanup) = scratch("prov_files");
    let done = provision(&pool, &schema, migrations("basic")).unwrap();
    assert!(done.created);
    assert_eq!(done.applied.len(), 2);
    // Same versions as the embedded copy: nothing left to do.
    assert!(provision(&pool, &schema, BASIC).unwrap().was_noop());
}

#[test]
fn new_migrations_are_applied_when_provisioning_again() {
    let pool = tenancy_tests::pool();
    let (schema, _cleanup) = scratch("prov_more");
    provision(&pool, &schema, migrations("fleet_v1")).unwrap();
    let again = provision(&pool, &schema, migrations("fleet_v2")).unwrap();
    assert!(!again.created);
    assert_eq!(again.applied, ["20240202000001", "20240203000001"]);
    let record = tenant_record(&pool, &schema).unwrap().unwrap();
    assert_eq!((record.migration_version.as_deref(), record.migrations_applied), (Some("20240203000001"), 3));
}

#[test]
fn migration_table_lives_in_the_tenant_schema_and_none_in_public() {
    let db = temp_db("table_home");
    let pool = pool_on(db.url());
    let schema = unique_schema("prov_home");
    provision(&pool, &schema, BASIC).unwrap();

    let mut admin = db.connect().unwrap();
    let homes = |admin: &mut PgConnection, table: &str| -> Vec<String> {
        #[derive(QueryableByName)]
        struct Home {
            #[diesel(sql_type = Text)]
            nspname: String,
        }
        diesel::sql_query(
            "SELECT n.nspname::text AS nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = $1 ORDER BY 1",
        )
        .bind::<Text, _>(table)
        .load::<Home>(admin)
        .unwrap()
        .into_iter()
        .map(|h| h.nspname)
        .collect()
    };
    assert_eq!(homes(&mut admin, "__diesel_schema_migrations"), [schema.as_str()]);
    assert_eq!(homes(&mut admin, "items"), [schema.as_str()]);
    assert_eq!(homes(&mut admin, "tags"), [schema.as_str()]);
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM pg_tables WHERE schemaname = $1", &["public"]),
        0
    );
}

#[test]
fn eight_threads_provisioning_the_same_tenant_all_succeed_once() {
    let db = temp_db("race");
    // First in a fresh database, where the eight also race to create the
    // registry; then with the registry in place, where only the tenant's own
    // lock keeps them apart.
    for round in ["prov_race_new_registry", "prov_race"] {
        let schema = unique_schema(round);
        let url = db.url().to_owned();
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (barrier, schema, url) = (barrier.clone(), schema.clone(), url.clone());
                std::thread::spawn(move || {
                    // A pool each, like eight processes.
                    let pool = TenantPool::builder().max_size(1).build(&url).unwrap();
                    barrier.wait();
                    provision(&pool, &schema, BASIC)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap().unwrap()).collect();

        assert_eq!(results.iter().filter(|r| r.created).count(), 1, "{round}: {results:?}");
        assert_eq!(results.iter().map(|r| r.applied.len()).sum::<usize>(), 2, "{round}: {results:?}");
        let mut admin = db.connect().unwrap();
        assert!(schema_exists(&mut admin, schema.as_str()));
        assert_eq!(applied_versions(&mut admin, &schema), 2);
        let rows = count(
            &mut admin,
            "SELECT count(*) AS n FROM tenancy.tenants WHERE schema_name = $1",
            &[schema.as_str()],
        );
        assert_eq!(rows, 1);
    }
}

#[test]
fn a_failed_provisioning_is_recorded_and_resumes_at_the_last_good_version() {
    let pool = tenancy_tests::pool();
    let (schema, _cleanup) = scratch("prov_resume");

    let err = provision(&pool, &schema, migrations("broken")).unwrap_err();
    match &err {
        TenancyError::Migration { schema: failed, migration, .. } => {
            assert_eq!(failed, &schema);
            assert!(migration.contains("2024-01-02-000001_create_tags"), "{migration}");
            assert!(err.to_string().contains("run again"), "{err}");
        }
        other => panic!("expected a migration error, got {other:?}"),
    }
    let record = tenant_record(&pool, &schema).unwrap().unwrap();
    assert_eq!(record.state, TenantState::Failed);
    assert_eq!(record.migration_version.as_deref(), Some("20240101000001"));
    assert!(record.last_error.as_deref().is_some_and(|e| e.contains("no_such_table")), "{record:?}");
    // The first migration stayed; the failing one left nothing behind.
    let mut admin = tenancy_tests::admin();
    assert_eq!(applied_versions(&mut admin, &schema), 1);
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM pg_tables WHERE schemaname = $1 AND tablename = 'tags_draft'",
            &[schema.as_str()]
        ),
        0
    );

    let resumed = provision(&pool, &schema, BASIC).unwrap();
    assert!(!resumed.created);
    assert_eq!(resumed.applied, ["20240102000001"]);
    let record = tenant_record(&pool, &schema).unwrap().unwrap();
    assert_eq!((record.state, record.last_error), (TenantState::Ready, None));
}

#[test]
fn an_existing_unregistered_schema_is_adopted_only_on_request() {
    let pool = tenancy_tests::pool();
    let (schema, _cleanup) = scratch("prov_adopt");
    let mut admin = tenancy_tests::admin();
    admin.batch_execute(&format!("CREATE SCHEMA {}", schema.quoted())).unwrap();
    assert!(!tenant_exists(&pool, &schema).unwrap());
    // provision never takes over a schema it did not create.
    match provision(&pool, &schema, BASIC) {
        Err(TenancyError::Refused { reason: RefusalReason::SchemaNotATenant, .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let tables =
        count(&mut admin, "SELECT count(*) AS n FROM pg_tables WHERE schemaname = $1", &[schema.as_str()]);
    assert_eq!(tables, 0, "nothing ran in the schema");

    let done = adopt(&pool, &schema, BASIC).unwrap();
    assert!(!done.created);
    assert_eq!(done.applied.len(), 2);
    assert!(tenant_exists(&pool, &schema).unwrap());
}

#[test]
fn provisioning_works_in_transaction_pooler_mode() {
    let pool = TenantPool::builder()
        .max_size(2)
        .pooler_mode(PoolerMode::Transaction)
        .build(&tenancy_tests::url())
        .unwrap();
    let (schema, _cleanup) = scratch("prov_txmode");
    assert!(provision(&pool, &schema, BASIC).unwrap().created);
    assert!(tenant_exists(&pool, &schema).unwrap());
    assert!(list_tenants(&pool).unwrap().iter().any(|t| t.schema == schema));
    drop_tenant(&pool, &schema).unwrap();
    assert!(!tenant_exists(&pool, &schema).unwrap());
}

#[test]
fn list_tenants_shows_every_registered_tenant_in_order() {
    let db = temp_db("list");
    let pool = pool_on(db.url());
    assert!(list_tenants(&pool).unwrap().is_empty());
    let b = SchemaName::new("tenant_b").unwrap();
    let a = SchemaName::new("tenant_a").unwrap();
    provision(&pool, &b, BASIC).unwrap();
    provision(&pool, &a, migrations("fleet_v1")).unwrap();

    let tenants = list_tenants(&pool).unwrap();
    let names: Vec<&str> = tenants.iter().map(|t| t.schema.as_str()).collect();
    assert_eq!(names, ["tenant_a", "tenant_b"]);
    assert!(tenants.iter().all(|t| t.state == TenantState::Ready && t.created_at <= t.updated_at));
    assert_eq!(tenants[0].migration_version.as_deref(), Some("20240201000001"));
    assert_eq!(tenants[1].migrations_applied, 2);
    assert!(!tenant_exists(&pool, &SchemaName::new("tenant_c").unwrap()).unwrap());
}

#[test]
fn drop_tenant_drops_a_registered_tenant_and_its_row() {
    let pool = tenancy_tests::pool();
    let (schema, _cleanup) = scratch("prov_drop");
    provision(&pool, &schema, BASIC).unwrap();
    drop_tenant(&pool, &schema).unwrap();
    assert!(!tenant_exists(&pool, &schema).unwrap());
    assert!(tenant_record(&pool, &schema).unwrap().is_none());
    assert!(!schema_exists(&mut tenancy_tests::admin(), schema.as_str()));
    // Dropping again: no longer a registered tenant.
    assert!(matches!(drop_tenant(&pool, &schema), Err(TenancyError::TenantNotFound { .. })));
}

#[test]
fn drop_tenant_refuses_public_the_registry_and_unknown_schemas_and_drops_nothing() {
    let db = temp_db("refuse");
    let mut admin = db.connect().unwrap();
    // Registry and shared schemas with names a tenant could have.
    admin.batch_execute("CREATE SCHEMA fleet_shared; CREATE TABLE fleet_shared.plans (id int)").unwrap();
    let pool = fleet_pool(&db);
    let tenant = SchemaName::new("tenant_kept").unwrap();
    provision(&pool, &tenant, BASIC).unwrap();
    // A schema that looks like a tenant but has no registry row.
    admin
        .batch_execute(
            "CREATE SCHEMA lookalike; CREATE TABLE lookalike.__diesel_schema_migrations (version text)",
        )
        .unwrap();

    // `public` and system schemas cannot even be named.
    assert!(matches!(parse_schema("public"), Err(TenancyError::InvalidSchemaName { .. })));
    assert!(matches!(parse_schema("pg_catalog"), Err(TenancyError::InvalidSchemaName { .. })));
    assert!(matches!(parse_schema("information_schema"), Err(TenancyError::InvalidSchemaName { .. })));
    assert!(matches!(parse_schema("tenancy"), Err(TenancyError::InvalidSchemaName { .. })));

    for name in ["fleet_registry", "fleet_shared", "lookalike", "never_heard_of"] {
        let err = drop_tenant(&pool, &SchemaName::new(name).unwrap()).unwrap_err();
        match err {
            TenancyError::ReservedSchema { schema, role } => {
                assert_eq!(schema, name);
                assert!(
                    name == "fleet_registry" || name == "fleet_shared",
                    "{name} is not reserved ({role})"
                );
            }
            TenancyError::TenantNotFound { schema } => {
                assert_eq!(schema, name);
                assert!(name == "lookalike" || name == "never_heard_of", "{name} is a tenant");
            }
            other => panic!("dropping {name}: expected a refusal, got {other:?}"),
        }
    }
    for name in ["public", "fleet_registry", "fleet_shared", "lookalike", "tenant_kept"] {
        assert!(schema_exists(&mut admin, name), "{name} was dropped");
    }
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM fleet_registry.tenants", &[]), 1);
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM pg_tables WHERE schemaname = $1", &["fleet_shared"]),
        1
    );
}

#[test]
fn provision_refuses_the_registry_and_shared_schemas() {
    let db = temp_db("prov_refuse");
    let pool = fleet_pool(&db);
    for name in ["fleet_registry", "fleet_shared"] {
        let err = provision(&pool, &SchemaName::new(name).unwrap(), BASIC).unwrap_err();
        assert!(matches!(err, TenancyError::ReservedSchema { .. }), "{err:?}");
    }
    let mut admin = db.connect().unwrap();
    assert!(!schema_exists(&mut admin, "fleet_shared"));
}

#[test]
fn provisioning_and_dropping_keep_pooled_connections() {
    let (pool, opened) = pool_counting_connections(&tenancy_tests::url());
    let schemas: Vec<_> = (0..3).map(|_| unique_schema("prov_keep")).collect();
    let _cleanup: Vec<_> = schemas.iter().cloned().map(Cleanup).collect();
    for schema in &schemas {
        provision(&pool, schema, BASIC).unwrap();
        provision(&pool, schema, BASIC).unwrap();
        assert!(tenant_exists(&pool, schema).unwrap());
        drop_tenant(&pool, schema).unwrap();
    }
    list_tenants(&pool).unwrap();
    // The session guard found nothing to retire the one connection for.
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}

#[test]
fn connections_still_scoped_to_a_dropped_tenant_report_tenant_not_found() {
    let pool = tenancy_tests::pool_of_one();
    let tenant = unique_schema("dropped");
    provision(&pool, &tenant, BASIC).unwrap();
    // The pool's only connection now serves the tenant, and would need no statement to do so again.
    drop(pool.tenant(&tenant).unwrap());
    drop_tenant(&pool, &tenant).unwrap();
    assert!(matches!(pool.tenant(&tenant), Err(TenancyError::TenantNotFound { .. })));
    let in_tx = pool.transaction(&tenant, |_| Ok::<_, TenancyError>(()));
    assert!(matches!(in_tx, Err(TenancyError::TenantNotFound { .. })), "{in_tx:?}");
}
