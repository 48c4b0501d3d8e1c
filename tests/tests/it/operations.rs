//! Operations on a fleet: subsets, canaries, dry runs and reverts of
//! migrations. Every test runs in a database of its own, since it works on
//! "every tenant".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Barrier;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use tenancy_core::{
    drop_tenant_with, migrate_all, migrate_shared, provision, provision_in, provision_with, revert_last,
    tenant_record, MigrateOptions, PoolerMode, RefusalReason, SchemaName, TenancyError, TenantOutcome,
    TenantPool,
};
use tenancy_devdb::pgbouncer::{PgBouncer, PgBouncerConfig};
use tenancy_tests::{count, migrations};

use crate::fleets::{break_tenant, has_column, versions, Scene, V1, V2, V3};

fn temp_db(tag: &str) -> tenancy_devdb::TempDatabase {
    tenancy_tests::temp_database(&format!("ops_{tag}"))
}

fn name(s: &str) -> SchemaName {
    SchemaName::new(s).unwrap()
}

#[test]
fn subsets_migrate_only_the_selected_tenants_and_report_names_that_are_not_tenants() {
    let (Scene { db: _db, pool, mut admin }, t) = Scene::with_fleet(temp_db("subset"), 3, 6);

    // A list, with a name that is not a tenant.
    let options = MigrateOptions::new().jobs(2).tenants([t[0].clone(), t[1].clone(), name("nobody")]);
    let report = migrate_all(&pool, migrations("fleet_v2"), options).unwrap();
    assert_eq!(report.tenants.iter().map(|l| &l.schema).collect::<Vec<_>>(), [&t[0], &t[1]]);
    assert_eq!(report.counts.total, 2);
    assert_eq!(report.counts.applied, 2);
    assert_eq!(report.not_registered, [name("nobody")]);
    assert!(!report.is_clean(), "a name that is not a tenant is worth a look");
    for schema in &t[2..] {
        assert_eq!(versions(&mut admin, schema), [V1], "{schema} was not selected");
    }

    // A predicate, then all but some.
    let odd = t[3].clone();
    let report =
        migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new().filter(move |s| *s == odd)).unwrap();
    assert_eq!(report.tenants.len(), 1);
    assert_eq!(versions(&mut admin, &t[3]), [V1, V2, V3]);
    assert_eq!(versions(&mut admin, &t[2]), [V1]);

    let report = migrate_all(
        &pool,
        migrations("fleet_v2"),
        MigrateOptions::new().except([t[4].clone(), t[5].clone()]),
    )
    .unwrap();
    assert_eq!(report.counts.total, 4);
    assert_eq!((report.counts.applied, report.counts.already_current), (1, 3));
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(versions(&mut admin, &t[2]), [V1, V2, V3]);
    assert_eq!(versions(&mut admin, &t[4]), [V1]);
    assert_eq!(versions(&mut admin, &t[5]), [V1]);
}

#[test]
fn a_dry_run_reports_what_would_be_migrated_and_changes_nothing() {
    let (Scene { db: _db, pool, mut admin }, t) = Scene::with_fleet(temp_db("dry"), 2, 3);
    migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new().tenants([t[0].clone()])).unwrap();

    let report = migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new().dry_run(true)).unwrap();
    assert_eq!((report.counts.already_current, report.counts.pending, report.visited), (1, 2, 0));
    assert!(matches!(report.outcome(&t[1]), Some(TenantOutcome::Pending)));
    assert_eq!(versions(&mut admin, &t[1]), [V1]);
    assert_eq!(versions(&mut admin, &t[2]), [V1]);
}

#[test]
fn a_failing_canary_stops_the_run_before_the_other_tenants() {
    let (Scene { db: _db, pool, mut admin }, t) = Scene::with_fleet(temp_db("canary_stop"), 3, 6);
    break_tenant(&mut admin, &t[1]);

    let report = migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new().jobs(2).canary(2)).unwrap();
    assert!(report.canary_failed);
    assert!(matches!(report.outcome(&t[0]), Some(TenantOutcome::Applied { .. })), "{report:#?}");
    assert!(report.outcome(&t[1]).is_some_and(TenantOutcome::is_failed));
    for schema in &t[2..] {
        assert!(matches!(report.outcome(schema), Some(TenantOutcome::Skipped)), "{schema}: {report:#?}");
        assert_eq!(versions(&mut admin, schema), [V1], "{schema} must not be touched");
    }
    assert_eq!((report.counts.applied, report.counts.failed, report.counts.skipped), (1, 1, 4));
    assert_eq!(report.visited, 2);
    assert!(!report.is_clean());
}

#[test]
fn canaries_that_succeed_let_the_run_continue_with_the_rest() {
    let (Scene { db: _db, pool, mut admin }, t) = Scene::with_fleet(temp_db("canary_go"), 3, 5);
    break_tenant(&mut admin, &t[3]);

    let report = migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new().canary(2)).unwrap();
    assert!(!report.canary_failed);
    assert_eq!((report.counts.applied, report.counts.failed, report.counts.skipped), (4, 1, 0));
    assert_eq!(report.failed().map(|(s, _)| s).collect::<Vec<_>>(), [&t[3]]);
    assert_eq!(versions(&mut admin, &t[4]), [V1, V2, V3]);
}

#[test]
fn revert_last_reverts_the_latest_migration_of_the_chosen_tenants_and_a_rerun_resumes() {
    let (Scene { db: _db, pool, mut admin }, t) = Scene::with_fleet(temp_db("revert"), 3, 4);
    assert!(migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new()).unwrap().is_clean());

    let chosen = MigrateOptions::new().jobs(2).tenants([t[0].clone(), t[1].clone(), t[2].clone()]);
    let report = revert_last(&pool, migrations("fleet_v2"), chosen).unwrap();
    assert_eq!(report.counts.reverted, 3, "{report:#?}");
    match report.outcome(&t[0]) {
        Some(TenantOutcome::Reverted { version }) => assert_eq!(version, V3),
        other => panic!("{other:?}"),
    }
    for schema in &t[..3] {
        assert_eq!(versions(&mut admin, schema), [V1, V2], "{schema}");
        assert!(!has_column(&mut admin, schema, "accounts", "plan"), "down.sql ran in {schema}");
        let record = tenant_record(&pool, schema).unwrap().unwrap();
        assert_eq!((record.migration_version.as_deref(), record.migrations_applied), (Some(V2), 2));
    }
    assert_eq!(versions(&mut admin, &t[3]), [V1, V2, V3], "not chosen");

    // A rerun (after an interruption, say) finds them done, without visiting.
    let rerun =
        revert_last(&pool, migrations("fleet_v2"), MigrateOptions::new().except([t[3].clone()])).unwrap();
    assert_eq!((rerun.visited, rerun.counts.already_current), (0, 3));
    assert_eq!(versions(&mut admin, &t[0]), [V1, V2]);

    // Reverting a version below a newer one applied is refused, and changes nothing.
    let report =
        revert_last(&pool, migrations("fleet_v1"), MigrateOptions::new().tenants([t[3].clone()])).unwrap();
    match report.outcome(&t[3]) {
        Some(TenantOutcome::Failed { error: TenancyError::Refused { reason, .. }, .. }) => {
            assert_eq!(reason, &RefusalReason::NewerMigrationApplied { version: V3.to_owned() });
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(versions(&mut admin, &t[3]), [V1, V2, V3]);

    // The source still has the migration: the next fleet run applies it again.
    let again = migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new()).unwrap();
    assert_eq!((again.counts.applied, again.counts.already_current), (3, 1), "{again:#?}");
    assert!(has_column(&mut admin, &t[0], "accounts", "plan"));
}

/// The error of a sign-up: the library's, or the application's own.
#[derive(Debug, thiserror::Error)]
enum SignUpError {
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error("declined")]
    Declined,
}

impl From<diesel::result::Error> for SignUpError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Tenancy(error.into())
    }
}

/// A shared table of sign-ups, in the shared schema (`public`).
const SIGNUPS_DDL: &str = "CREATE TABLE public.signups (id BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL)";

fn schema_exists(admin: &mut PgConnection, schema: &SchemaName) -> bool {
    count(admin, "SELECT count(*) AS n FROM pg_catalog.pg_namespace WHERE nspname = $1", &[schema.as_str()])
        == 1
}

/// Rows of `schema` in the registry (which [`list_tenants`](tenancy_core::list_tenants)
/// creates first, so that the count does not depend on a rolled-back creation of it).
fn registry_rows(admin: &mut PgConnection, schema: &SchemaName) -> i64 {
    count(admin, "SELECT count(*) AS n FROM tenancy.tenants WHERE schema_name = $1", &[schema.as_str()])
}

fn signups(admin: &mut PgConnection, schema: &SchemaName) -> i64 {
    count(admin, "SELECT count(*) AS n FROM public.signups WHERE tenant = $1", &[schema.as_str()])
}

/// Seeds the tenant's `accounts` and the shared `signups` on the provisioning connection.
fn seed(conn: &mut PgConnection, schema: &SchemaName) -> Result<(), diesel::result::Error> {
    conn.batch_execute("INSERT INTO accounts (email) VALUES ('owner@example.test')")?;
    diesel::sql_query("INSERT INTO public.signups (tenant) VALUES ($1)")
        .bind::<Text, _>(schema.as_str())
        .execute(conn)?;
    Ok(())
}

#[test]
fn a_failing_seed_leaves_no_schema_no_registry_row_and_no_shared_row() {
    let Scene { db: _db, pool, mut admin } = Scene::on(temp_db("signup"), 2);
    admin.batch_execute(SIGNUPS_DDL).unwrap();
    tenancy_core::list_tenants(&pool).unwrap();
    let acme = name("acme");

    let result = provision_with(&pool, &acme, migrations("fleet_v1"), |conn, done| {
        assert!(done.created);
        seed(conn, &acme)?;
        Err::<(), _>(SignUpError::Declined)
    });
    assert!(matches!(result, Err(SignUpError::Declined)), "{result:?}");
    assert!(!schema_exists(&mut admin, &acme), "the schema was rolled back");
    assert_eq!(registry_rows(&mut admin, &acme), 0, "the registry row was rolled back");
    assert_eq!(signups(&mut admin, &acme), 0, "the shared row was rolled back");

    // A failing migration takes the whole sign-up back too (unlike `provision`).
    let result = provision_with(&pool, &acme, migrations("broken"), |conn, _| {
        seed(conn, &acme).map_err(TenancyError::from)
    });
    assert!(matches!(result, Err(TenancyError::Migration { .. })), "{result:?}");
    assert!(!schema_exists(&mut admin, &acme));
    assert_eq!(registry_rows(&mut admin, &acme), 0);

    // And a seed that succeeds commits all three together.
    let (done, ()) = provision_with(&pool, &acme, migrations("fleet_v1"), |conn, _| {
        seed(conn, &acme).map_err(TenancyError::from)
    })
    .unwrap();
    assert!(done.created);
    assert!(schema_exists(&mut admin, &acme));
    assert_eq!(registry_rows(&mut admin, &acme), 1);
    assert_eq!(signups(&mut admin, &acme), 1);
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM acme.accounts", &[]), 1);
}

#[test]
fn provisioning_inside_the_callers_transaction_commits_and_rolls_back_with_it() {
    let Scene { db, pool, mut admin } = Scene::on(temp_db("signup_in"), 2);
    admin.batch_execute(SIGNUPS_DDL).unwrap();
    tenancy_core::list_tenants(&pool).unwrap();
    let (rolled, kept) = (name("rolled_back"), name("kept"));

    let insert_signup = |conn: &mut PgConnection, schema: &SchemaName| {
        diesel::sql_query("INSERT INTO signups (tenant) VALUES ($1)")
            .bind::<Text, _>(schema.as_str())
            .execute(conn)
    };
    let result = pool.shared_transaction(|conn| {
        insert_signup(conn, &rolled).map_err(TenancyError::from)?;
        let done = provision_in(&pool, conn, &rolled, migrations("fleet_v1"))?;
        assert!(done.created);
        // Back on the caller's search path: unqualified names are the shared schema's.
        assert_eq!(tenancy_tests::current_schemas(conn)[0], "public");
        Err::<(), _>(SignUpError::Declined)
    });
    assert!(matches!(result, Err(SignUpError::Declined)));
    assert!(!schema_exists(&mut admin, &rolled));
    assert_eq!(registry_rows(&mut admin, &rolled), 0);
    assert_eq!(signups(&mut admin, &rolled), 0);

    // A failing migration rolls back its savepoint; the caller's transaction goes on.
    pool.shared_transaction(|conn| {
        insert_signup(conn, &kept)?;
        let failed = provision_in(&pool, conn, &name("broken_one"), migrations("broken"));
        assert!(matches!(failed, Err(TenancyError::Migration { .. })), "{failed:?}");
        provision_in(&pool, conn, &kept, migrations("fleet_v1"))?;
        Ok::<_, TenancyError>(())
    })
    .unwrap();
    assert!(schema_exists(&mut admin, &kept));
    assert_eq!(registry_rows(&mut admin, &kept), 1);
    assert_eq!(signups(&mut admin, &kept), 1);
    assert!(!schema_exists(&mut admin, &name("broken_one")));
    assert!(tenancy_core::tenant_exists(&pool, &kept).unwrap());

    // Outside a transaction, it is refused.
    let mut plain = db.connect().unwrap();
    let refused = provision_in(&pool, &mut plain, &name("nope"), migrations("fleet_v1"));
    assert!(matches!(refused, Err(TenancyError::TransactionRequired { .. })), "{refused:?}");
}

#[test]
fn drop_tenant_with_runs_its_hook_in_the_drop_transaction() {
    let Scene { db: _db, pool, mut admin } = Scene::on(temp_db("drop_hook"), 2);
    admin.batch_execute(SIGNUPS_DDL).unwrap();
    let acme = name("acme");
    provision_with(&pool, &acme, migrations("fleet_v1"), |conn, _| {
        seed(conn, &acme).map_err(TenancyError::from)
    })
    .unwrap();

    // A failing hook: nothing is dropped, and the tenant is served again.
    let mut seen = 0;
    let result = drop_tenant_with(&pool, &acme, |conn| {
        // The search path is the tenant's: `accounts` is acme's own.
        seen = tenancy_tests::scalar_i64(conn, "(SELECT count(*) FROM accounts)");
        diesel::sql_query("DELETE FROM public.signups WHERE tenant = $1")
            .bind::<Text, _>(acme.as_str())
            .execute(conn)?;
        Err(SignUpError::Declined)
    });
    assert!(matches!(result, Err(SignUpError::Declined)), "{result:?}");
    assert_eq!(seen, 1);
    assert!(schema_exists(&mut admin, &acme));
    assert_eq!(signups(&mut admin, &acme), 1, "the hook's delete was rolled back");
    assert!(tenancy_core::tenant_exists(&pool, &acme).unwrap());
    let served = pool.transaction(&acme, |conn| {
        Ok::<_, TenancyError>(tenancy_tests::scalar_i64(conn, "(SELECT count(*) FROM accounts)"))
    });
    assert_eq!(served.unwrap(), 1);

    // A hook that succeeds commits with the drop.
    drop_tenant_with(&pool, &acme, |conn| {
        diesel::sql_query("DELETE FROM public.signups WHERE tenant = $1")
            .bind::<Text, _>(acme.as_str())
            .execute(conn)?;
        Ok::<_, TenancyError>(())
    })
    .unwrap();
    assert!(!schema_exists(&mut admin, &acme));
    assert_eq!(registry_rows(&mut admin, &acme), 0);
    assert_eq!(signups(&mut admin, &acme), 0);

    // An unknown tenant is not found, and the hook never runs.
    let again = drop_tenant_with(&pool, &acme, |_| -> Result<(), TenancyError> { panic!("hook ran") });
    assert!(matches!(again, Err(TenancyError::TenantNotFound { .. })), "{again:?}");
}

#[test]
fn list_tenants_lists_valid_rows_and_reports_invalid_ones() {
    let Scene { db: _db, pool, mut admin } = Scene::on(temp_db("list_invalid"), 2);
    provision(&pool, &name("good_a"), migrations("fleet_v1")).unwrap();
    provision(&pool, &name("good_b"), migrations("fleet_v1")).unwrap();
    admin
        .batch_execute("INSERT INTO tenancy.tenants (schema_name, state) VALUES ('Bad Name', 'ready')")
        .unwrap();

    let list = tenancy_core::list_tenants(&pool).unwrap();
    assert_eq!(list.iter().map(|t| t.schema.as_str()).collect::<Vec<_>>(), ["good_a", "good_b"]);
    assert_eq!(list.invalid_rows.len(), 1);
    assert_eq!(list.invalid_rows[0].0, "Bad Name");
    assert!(list.invalid_rows[0].1.contains("lowercase"), "{}", list.invalid_rows[0].1);
}

/// Runs `migrate_shared` from `n` pools at once (replicas starting together).
fn migrate_shared_from(n: usize, url: &str, mode: PoolerMode) -> Vec<Vec<String>> {
    let barrier = Barrier::new(n);
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(|| {
                    let pool = TenantPool::builder().pooler_mode(mode).max_size(1).build(url).unwrap();
                    barrier.wait();
                    migrate_shared(&pool, migrations("shared_v1")).unwrap()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

fn assert_applied_once(runs: &[Vec<String>], admin: &mut PgConnection) {
    let mut lengths: Vec<usize> = runs.iter().map(Vec::len).collect();
    lengths.sort_unstable();
    assert_eq!(lengths, [0, 0, 0, 1], "exactly one run applies the migration: {runs:?}");
    assert_eq!(count(admin, "SELECT count(*) AS n FROM public.plans", &[]), 1);
    assert_eq!(count(admin, "SELECT count(*) AS n FROM public.__diesel_schema_migrations", &[]), 1);
}

#[test]
fn migrate_shared_applies_each_migration_once_when_replicas_start_together() {
    let db = temp_db("shared");
    let runs = migrate_shared_from(4, db.url(), PoolerMode::Session);
    assert_applied_once(&runs, &mut db.connect().unwrap());
    // Nothing is left to do.
    let pool = TenantPool::builder().max_size(1).build(db.url()).unwrap();
    assert!(migrate_shared(&pool, migrations("shared_v1")).unwrap().is_empty());
}

#[test]
fn migrate_shared_serializes_behind_pgbouncer_in_transaction_mode() {
    let db = temp_db("shared_bouncer");
    let bouncer =
        PgBouncer::start_with(db.url(), &PgBouncerConfig { pool_size: 2, ..PgBouncerConfig::default() })
            .unwrap_or_else(|e| {
                panic!("this test needs a real PgBouncer (scripts/test.sh installs it): {e}")
            });
    let runs = migrate_shared_from(4, &bouncer.url_for(db.name()), PoolerMode::Transaction);
    assert_applied_once(&runs, &mut db.connect().unwrap());
}

#[test]
fn a_failing_shared_migration_is_rolled_back_and_the_ones_before_it_are_kept() {
    let db = temp_db("shared_broken");
    let pool = TenantPool::builder().max_size(1).build(db.url()).unwrap();
    let error = migrate_shared(&pool, migrations("shared_broken")).unwrap_err();
    match &error {
        TenancyError::SharedMigration { schema, migration, .. } => {
            assert_eq!(schema, "public");
            assert!(migration.contains("2024-03-02-000001_broken"), "{migration}");
        }
        other => panic!("{other:?}"),
    }
    let mut admin = db.connect().unwrap();
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM public.plans", &[]), 1);
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM public.__diesel_schema_migrations", &[]), 1);
}
