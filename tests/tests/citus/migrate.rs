//! Migrations on Citus: one statement per message, so index, constraint
//! and column changes run on distributed tables; foreign keys to shared
//! tables need reference tables, and say so.

use diesel::connection::SimpleConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use tenancy_core::citus::create_reference_table;
use tenancy_core::{migrate_all, provision, MigrateOptions, TenancyError, TenantOutcome, TenantState};
use tenancy_tests::unique_schema;

use crate::{count, pool_on, text, worker_of};

const V1: EmbeddedMigrations = embed_migrations!("migrations/citus_v1");
const V2: EmbeddedMigrations = embed_migrations!("migrations/citus_v2");
const SHARED_FK: EmbeddedMigrations = embed_migrations!("migrations/citus_shared_fk");

#[test]
fn migrate_all_runs_index_and_constraint_migrations_on_distributed_tenants() {
    let db = tenancy_tests::citus::database("citus_migrate");
    let pool = pool_on(db.url());
    let tenants: Vec<_> = (0..3).map(|_| unique_schema("mig")).collect();
    for tenant in &tenants {
        worker_of(provision(&pool, tenant, V1).unwrap().placement.as_ref().unwrap());
    }
    // What Citus does with the same migration in one message, as plain
    // PostgreSQL gets it: refused. (Tried on a copy of a tenant, rolled back.)
    let mut admin = db.connect().unwrap();
    let one_message =
        include_str!("../../migrations/citus_v2/2024-03-02-000001_indexes_and_constraints/up.sql");
    let refused = admin.transaction::<(), diesel::result::Error, _>(|conn| {
        conn.batch_execute(&format!("SET LOCAL search_path TO {}", tenants[0].quoted()))?;
        conn.batch_execute(one_message)
    });
    assert!(
        refused.as_ref().unwrap_err().to_string().contains("cannot insert multiple commands"),
        "{refused:?}"
    );

    let report = migrate_all(&pool, V2, MigrateOptions::new().jobs(2)).unwrap();
    assert_eq!(report.counts.failed, 0, "{report:?}");
    for line in &report.tenants {
        assert!(matches!(line.outcome, TenantOutcome::Applied { .. }), "{line:?}");
    }
    for tenant in &tenants {
        let indexes = count(
            &mut admin,
            "SELECT count(*) AS n FROM pg_indexes WHERE schemaname = $1 AND indexname IN ('orders_tenant', 'orders;note')",
            &[tenant.as_str()],
        );
        assert_eq!(indexes, 2, "{tenant}: both indexes");
        let mut conn = pool.tenant(tenant).unwrap();
        // The constraint holds on the worker: a negative amount is refused.
        let refused = conn.batch_execute("INSERT INTO orders (tenant, amount) VALUES ('x', -1)");
        assert!(refused.unwrap_err().to_string().contains("amount_positive"));
        // The renamed column, the new default, the changed type.
        conn.batch_execute(&format!("INSERT INTO orders (tenant, memo) VALUES ('{tenant}', 'hello')"))
            .unwrap();
        assert_eq!(
            text(&mut conn, "SELECT pg_typeof(amount)::text || ' ' || amount::text AS t FROM orders"),
            "bigint 1"
        );
        assert_eq!(
            text(&mut conn, "SELECT obj_description('orders'::regclass, 'pg_class') AS t"),
            "one row per order; amounts in cents"
        );
        let record = tenancy_core::tenant_record(&pool, tenant).unwrap().unwrap();
        assert_eq!(record.state, TenantState::Ready);
        assert_eq!(record.migrations_applied, 2);
    }
    // Nothing left to do: a second run visits no tenant.
    let again = migrate_all(&pool, V2, MigrateOptions::new()).unwrap();
    assert_eq!(again.counts.failed, 0);
    assert_eq!(again.counts.applied, 0);
}

#[test]
fn a_foreign_key_to_a_shared_table_needs_a_reference_table_and_says_so() {
    let db = tenancy_tests::citus::database("citus_reference");
    let mut admin = db.connect().unwrap();
    admin
        .batch_execute(
            "SET citus.enable_schema_based_sharding = off; \
             CREATE TABLE public.plans (id integer PRIMARY KEY, name text NOT NULL); \
             INSERT INTO public.plans VALUES (1, 'free'), (2, 'pro')",
        )
        .unwrap();
    let pool = pool_on(db.url());
    let tenant = unique_schema("fk");
    let error = provision(&pool, &tenant, SHARED_FK).unwrap_err();
    match &error {
        TenancyError::NeedsReferenceTable { table, schema, .. } => {
            assert_eq!(table, "plans");
            assert_eq!(schema, &tenant);
        }
        other => panic!("expected NeedsReferenceTable, got {other:?}"),
    }
    assert!(error.to_string().contains("create_reference_table"), "{error}");
    let record = tenancy_core::tenant_record(&pool, &tenant).unwrap().unwrap();
    assert_eq!(record.state, TenantState::Failed);

    create_reference_table(&pool, "plans").unwrap();
    create_reference_table(&pool, "plans").unwrap(); // already one: left alone
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM pg_dist_partition WHERE logicalrelid = 'public.plans'::regclass AND partmethod = 'n'",
            &[]
        ),
        1
    );
    let done = provision(&pool, &tenant, SHARED_FK).unwrap();
    worker_of(done.placement.as_ref().unwrap());
    let mut conn = pool.tenant(&tenant).unwrap();
    conn.batch_execute("INSERT INTO subscriptions (plan_id) VALUES (2)").unwrap();
    assert!(conn.batch_execute("INSERT INTO subscriptions (plan_id) VALUES (3)").is_err(), "the key holds");
    // The tenant joins the reference table on its worker.
    assert_eq!(
        text(&mut conn, "SELECT p.name AS t FROM subscriptions s JOIN public.plans p ON p.id = s.plan_id"),
        "pro"
    );
}

#[test]
fn citus_operations_refuse_a_pool_on_plain_postgresql() {
    let pool = tenancy_core::TenantPool::builder().max_size(1).build(&tenancy_tests::url()).unwrap();
    assert!(pool.citus().is_none());
    let error = tenancy_core::citus::tenant_placements(&pool).unwrap_err();
    assert!(matches!(error, TenancyError::NotCitus { operation: "tenant_placements" }), "{error:?}");
}
