//! `migrate_all` across a fleet of tenants, on a real PostgreSQL. Every test
//! runs in a database of its own, since it migrates "every tenant".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tenancy_core::{
    migrate_all, provision, tenant_record, MigrateOptions, PoolerMode, SchemaName, TenancyError,
    TenantOutcome, TenantPool, TenantState,
};
use tenancy_tests::{count, migrations, pool_counting_connections};

use crate::fleets::{break_tenant, fleet, has_column, versions, Scene, V1, V2, V3};

fn temp_db(tag: &str) -> tenancy_devdb::TempDatabase {
    tenancy_tests::temp_database(&format!("mig_{tag}"))
}

fn has_table(conn: &mut PgConnection, schema: &SchemaName, table: &str) -> bool {
    count(
        conn,
        &format!(
            "SELECT count(*) AS n FROM pg_tables WHERE schemaname = '{}' AND tablename = '{table}'",
            schema
        ),
        &[],
    ) == 1
}

#[test]
fn one_failing_tenant_among_twenty_one_fails_alone_and_a_rerun_migrates_only_it() {
    let Scene { db: _db, pool, mut admin } = Scene::on(temp_db("one_fails"), 4);
    let tenants = fleet(&pool, &mut admin, 21);
    let bad = tenants[7].clone();
    // Its data violates the constraint the second migration adds.
    break_tenant(&mut admin, &bad);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let options = MigrateOptions::new().jobs(4).on_progress(move |p| {
        log.lock().unwrap().push((p.schema.clone(), p.outcome.is_failed(), p.counts.done(), p.counts.total));
    });
    let report = migrate_all(&pool, migrations("fleet_v2"), options).unwrap();

    // The report says exactly which tenant failed, and why.
    let failed: Vec<_> = report.failed().collect();
    assert_eq!(failed.len(), 1, "{report:#?}");
    assert_eq!(failed[0].0, &bad);
    match failed[0].1 {
        TenancyError::Migration { schema, migration, source } => {
            assert_eq!(schema, &bad);
            assert!(migration.contains("2024-02-02-000001_require_email"), "{migration}");
            assert!(source.to_string().contains("null values"), "{source}");
        }
        other => panic!("expected a migration error, got {other:?}"),
    }
    assert_eq!((report.counts.applied, report.counts.failed, report.counts.total), (20, 1, 21));
    assert_eq!(report.visited, 21);
    assert!(!report.is_clean());
    assert_eq!(report.latest_version.as_deref(), Some(V3));

    // The failed tenant is at its last good version: nothing of the failing
    // migration (its first statement included), nothing after it.
    assert_eq!(versions(&mut admin, &bad), [V1]);
    assert!(!has_table(&mut admin, &bad, "email_audit"));
    assert!(!has_column(&mut admin, &bad, "accounts", "plan"));
    let record = tenant_record(&pool, &bad).unwrap().unwrap();
    assert_eq!((record.state, record.migration_version.as_deref()), (TenantState::Failed, Some(V1)));
    assert!(record.last_error.as_deref().is_some_and(|e| e.contains("require_email")), "{record:?}");
    // The others are current.
    for schema in tenants.iter().filter(|s| **s != bad) {
        assert_eq!(versions(&mut admin, schema), [V1, V2, V3], "{schema}");
        assert!(has_table(&mut admin, schema, "email_audit"));
        assert!(has_column(&mut admin, schema, "accounts", "plan"));
        match report.outcome(schema) {
            Some(TenantOutcome::Applied { versions }) => assert_eq!(versions, &[V2, V3]),
            other => panic!("{schema}: {other:?}"),
        }
        let record = tenant_record(&pool, schema).unwrap().unwrap();
        assert_eq!((record.state, record.migration_version.as_deref()), (TenantState::Ready, Some(V3)));
    }
    // One progress call per tenant, counting up to the total.
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), 21);
    assert_eq!(seen.iter().map(|s| s.2).collect::<Vec<_>>(), (1..=21).collect::<Vec<_>>());
    assert!(seen.iter().all(|s| s.3 == 21));
    assert_eq!(seen.iter().filter(|s| s.1).map(|s| &s.0).collect::<Vec<_>>(), [&bad]);

    // Fix the data; the rerun visits and migrates only the failed tenant.
    admin
        .batch_execute(&format!("UPDATE {}.accounts SET email = 'fixed' WHERE email IS NULL", bad.quoted()))
        .unwrap();
    let rerun = migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new().jobs(4)).unwrap();
    assert_eq!(rerun.visited, 1);
    assert!(rerun.is_clean(), "{rerun:#?}");
    assert_eq!((rerun.counts.applied, rerun.counts.already_current), (1, 20));
    match rerun.outcome(&bad) {
        Some(TenantOutcome::Applied { versions }) => assert_eq!(versions, &[V2, V3]),
        other => panic!("{other:?}"),
    }
    assert_eq!(versions(&mut admin, &bad), [V1, V2, V3]);
    assert_eq!(tenant_record(&pool, &bad).unwrap().unwrap().last_error, None);

    // And now there is nothing left to visit.
    let third = migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new()).unwrap();
    assert_eq!((third.visited, third.counts.already_current), (0, 21));
}

#[test]
fn a_current_fleet_is_known_from_the_registry_without_visiting_any_schema() {
    let Scene { db, pool, mut admin } = Scene::on(temp_db("current"), 2);
    let tenants = fleet(&pool, &mut admin, 4);
    migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new()).unwrap();

    // Hold one tenant's migration table: any visit to that schema would wait on it.
    let mut holder = db.connect().unwrap();
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {}.__diesel_schema_migrations IN ACCESS EXCLUSIVE MODE",
            tenants[2].quoted()
        ))
        .unwrap();

    let options = || MigrateOptions::new().lock_timeout(Some(Duration::from_millis(200)));
    let report = migrate_all(&pool, migrations("fleet_v2"), options()).unwrap();
    assert_eq!(report.visited, 0);
    assert_eq!(report.counts.already_current, 4);
    assert!(report.is_clean(), "{report:#?}");

    // Verifying visits every schema: the held one times out, alone.
    let verified =
        migrate_all(&pool, migrations("fleet_v2"), options().verify_schemas(true).jobs(2)).unwrap();
    assert_eq!(verified.visited, 4);
    assert_eq!(verified.counts.already_current, 3);
    let failed: Vec<_> = verified.failed().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, &tenants[2]);
    assert!(failed[0].1.to_string().contains("lock timeout"), "{}", failed[0].1);
    holder.batch_execute("ROLLBACK").unwrap();
}

#[test]
fn missing_schemas_and_unregistered_lookalikes_are_reported_in_transaction_pooler_mode() {
    let db = temp_db("orphans");
    let pool =
        TenantPool::builder().max_size(2).pooler_mode(PoolerMode::Transaction).build(db.url()).unwrap();
    let mut admin = db.connect().unwrap();
    let tenants = fleet(&pool, &mut admin, 3);
    // A registered tenant whose schema was dropped by hand...
    admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", tenants[1].quoted())).unwrap();
    // ...a schema that looks like a tenant but was never registered...
    admin
        .batch_execute(
            "CREATE SCHEMA lookalike; CREATE TABLE lookalike.__diesel_schema_migrations (version text)",
        )
        .unwrap();
    // ...and the application's own diesel table in `public`, which is no tenant.
    admin.batch_execute("CREATE TABLE public.__diesel_schema_migrations (version text)").unwrap();

    let report = migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new().jobs(2)).unwrap();
    assert_eq!(report.missing_schemas().collect::<Vec<_>>(), [&tenants[1]]);
    assert!(matches!(report.outcome(&tenants[1]), Some(TenantOutcome::SchemaMissing)));
    assert_eq!(report.unregistered_schemas, ["lookalike"]);
    assert_eq!((report.counts.applied, report.counts.schema_missing), (2, 1));
    assert!(!report.is_clean());
    for schema in [&tenants[0], &tenants[2]] {
        assert_eq!(versions(&mut admin, schema), [V1, V2, V3]);
    }
    // Nothing was created for the missing tenant or in the lookalike.
    assert_eq!(
        count(
            &mut admin,
            &format!("SELECT count(*) AS n FROM pg_namespace WHERE nspname = '{}'", tenants[1]),
            &[]
        ),
        0
    );
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM lookalike.__diesel_schema_migrations", &[]), 0);
}

#[test]
fn two_deploys_migrating_at_once_apply_each_migration_once() {
    let db = temp_db("two_deploys");
    let mut admin = db.connect().unwrap();
    let tenants = fleet(&TenantPool::builder().max_size(1).build(db.url()).unwrap(), &mut admin, 6);
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let url = db.url().to_owned();
            std::thread::spawn(move || {
                let pool = TenantPool::builder().max_size(2).build(&url).unwrap();
                migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new().jobs(2)).unwrap()
            })
        })
        .collect();
    let reports: Vec<_> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    for schema in &tenants {
        let applied: usize = reports
            .iter()
            .map(|r| match r.outcome(schema) {
                Some(TenantOutcome::Applied { versions }) => versions.len(),
                Some(TenantOutcome::AlreadyCurrent) => 0,
                other => panic!("{schema}: {other:?}"),
            })
            .sum();
        assert_eq!(applied, 2, "{schema}");
        assert_eq!(versions(&mut admin, schema), [V1, V2, V3]);
    }
}

#[test]
fn migrations_that_cannot_run_in_a_transaction_are_refused_before_touching_tenants() {
    let Scene { db: _db, pool, mut admin } = Scene::on(temp_db("no_tx"), 1);
    let tenants = fleet(&pool, &mut admin, 1);
    let err = migrate_all(&pool, migrations("no_transaction"), MigrateOptions::new()).unwrap_err();
    match &err {
        TenancyError::MigrationSource { source } => {
            assert!(source.to_string().contains("run_in_transaction"), "{source}")
        }
        other => panic!("expected MigrationSource, got {other:?}"),
    }
    let err = provision(&pool, &SchemaName::new("t_new").unwrap(), migrations("no_transaction")).unwrap_err();
    assert!(matches!(err, TenancyError::MigrationSource { .. }), "{err:?}");
    assert_eq!(versions(&mut admin, &tenants[0]), [V1]);
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM pg_namespace WHERE nspname = 't_new'", &[]), 0);
}

#[test]
fn migrating_keeps_pooled_connections() {
    let db = temp_db("keep");
    let (pool, opened) = pool_counting_connections(db.url());
    let mut admin = db.connect().unwrap();
    fleet(&pool, &mut admin, 3);
    let options = || MigrateOptions::new().lock_timeout(Some(Duration::from_secs(5))).verify_schemas(true);
    assert_eq!(migrate_all(&pool, migrations("fleet_v2"), options()).unwrap().counts.applied, 3);
    assert_eq!(migrate_all(&pool, migrations("fleet_v2"), options()).unwrap().counts.already_current, 3);
    // The session guard found nothing to retire the one connection for.
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}
