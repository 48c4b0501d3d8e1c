//! Provisioning on Citus: tenants are distributed schemas placed on
//! workers, explicitly, whatever the database's default; the registry stays
//! on the coordinator; concurrent provisioning is exactly-once; dropping a
//! tenant removes its shards.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use diesel::connection::SimpleConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use tenancy_core::citus::{tenant_placement, tenant_placements, Placement};
use tenancy_core::{drop_tenant, provision, TenantPool, DEFAULT_REGISTRY_SCHEMA};
use tenancy_tests::unique_schema;

use crate::{count, is_distributed, pool_on, shards_of, worker_of, workers};

const V1: EmbeddedMigrations = embed_migrations!("migrations/citus_v1");

/// Sets the database's default for `citus.enable_schema_based_sharding`,
/// for sessions opened from now on.
fn sharding_by_default(admin: &mut diesel::PgConnection, db: &tenancy_devdb::TempDatabase, on: bool) {
    let value = if on { "on" } else { "off" };
    let sql = format!("ALTER DATABASE \"{}\" SET citus.enable_schema_based_sharding = {value}", db.name());
    admin.batch_execute(&sql).unwrap();
}

#[test]
fn provisioning_distributes_each_tenant_and_reports_its_worker() {
    let db = tenancy_tests::citus::database("citus_place");
    let pool = pool_on(db.url());
    let citus = pool.citus().expect("the pool finds Citus on the coordinator");
    assert!(citus.distributes_tenants());
    let workers = workers(&pool);
    let tenants: Vec<_> = (0..4).map(|_| unique_schema("placed")).collect();
    let mut used = HashSet::new();
    let mut admin = db.connect().unwrap();
    for tenant in &tenants {
        let done = provision(&pool, tenant, V1).unwrap();
        assert!(done.created);
        let node = worker_of(done.placement.as_ref().expect("a placement on Citus"));
        assert!(is_distributed(&mut admin, tenant.as_str()), "{tenant} is a distributed schema");
        // Every table of the tenant (diesel's migrations table included) is one shard, on that worker.
        assert_eq!(shards_of(&mut admin, tenant), 3, "{tenant}: orders, events, __diesel_schema_migrations");
        assert_eq!(tenant_placement(&pool, tenant).unwrap(), Placement::Node(node.clone()));
        used.insert(node.port);
    }
    assert_eq!(used.len(), workers.len(), "four tenants are spread over both workers");
    let listed = tenant_placements(&pool).unwrap();
    assert_eq!(listed.len(), 4);
    for entry in &listed {
        assert!(tenants.contains(&entry.schema));
        worker_of(&entry.placement);
    }
    // Provisioning again changes nothing and still says where the tenant is.
    let again = provision(&pool, &tenants[0], V1).unwrap();
    assert!(again.was_noop());
    worker_of(again.placement.as_ref().unwrap());
}

#[test]
fn the_registry_stays_on_the_coordinator_even_when_the_database_distributes_new_schemas() {
    let db = tenancy_tests::citus::database("citus_registry");
    let mut admin = db.connect().unwrap();
    // What used to make the registry a distributed schema, and every
    // provisioning fail on its upsert.
    sharding_by_default(&mut admin, &db, true);
    let pool = pool_on(db.url());
    let tenant = unique_schema("reg");
    let done = provision(&pool, &tenant, V1).unwrap();
    worker_of(done.placement.as_ref().unwrap());
    assert!(!is_distributed(&mut admin, DEFAULT_REGISTRY_SCHEMA), "the registry schema is not distributed");
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM pg_dist_partition WHERE logicalrelid = to_regclass($1)",
            &["tenancy.tenants"]
        ),
        0,
        "the registry table is a plain table on the coordinator"
    );
    // A configured registry schema too.
    let custom = TenantPool::builder().registry_schema("fleet_registry").build(db.url()).unwrap();
    provision(&custom, &unique_schema("reg"), V1).unwrap();
    assert!(!is_distributed(&mut admin, "fleet_registry"));
}

#[test]
fn tenants_are_distributed_explicitly_whatever_the_database_default() {
    let db = tenancy_tests::citus::database("citus_explicit");
    let mut admin = db.connect().unwrap();
    sharding_by_default(&mut admin, &db, false);
    let pool = pool_on(db.url());
    let tenant = unique_schema("expl");
    worker_of(provision(&pool, &tenant, V1).unwrap().placement.as_ref().unwrap());
    assert!(is_distributed(&mut admin, tenant.as_str()));

    // And kept on the coordinator when the pool says so, even with the default on.
    sharding_by_default(&mut admin, &db, true);
    let local = TenantPool::builder().distribute_tenants(false).build(db.url()).unwrap();
    assert!(!local.citus().unwrap().distributes_tenants());
    let kept = unique_schema("local");
    assert_eq!(provision(&local, &kept, V1).unwrap().placement, Some(Placement::Local));
    assert!(!is_distributed(&mut admin, kept.as_str()));
    assert_eq!(shards_of(&mut admin, &kept), 0);
}

#[test]
fn concurrent_provisioning_of_one_tenant_creates_it_once() {
    let db = tenancy_tests::citus::database("citus_race");
    let pool = pool_on(db.url());
    let tenant = unique_schema("race");
    let barrier = Arc::new(Barrier::new(4));
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (pool, tenant, barrier) = (pool.clone(), tenant.clone(), barrier.clone());
                s.spawn(move || {
                    barrier.wait();
                    provision(&pool, &tenant, V1)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = outcomes.iter().filter(|o| o.as_ref().unwrap().created).count();
    assert_eq!(created, 1, "{outcomes:?}");
    let mut admin = db.connect().unwrap();
    assert_eq!(shards_of(&mut admin, &tenant), 3);
    let applied = count(
        &mut admin,
        &format!("SELECT count(*) AS n FROM {}.__diesel_schema_migrations", tenant.quoted()),
        &[],
    );
    assert_eq!(applied, 1, "the migration ran once");
}

#[test]
fn dropping_a_tenant_removes_its_shards() {
    let db = tenancy_tests::citus::database("citus_drop");
    let pool = pool_on(db.url());
    let tenant = unique_schema("drop");
    let placement = provision(&pool, &tenant, V1).unwrap().placement.unwrap();
    let worker = worker_of(&placement);
    let mut admin = db.connect().unwrap();
    assert_eq!(shards_of(&mut admin, &tenant), 3);
    let worker_url = db
        .worker_urls()
        .into_iter()
        .find(|u| u.contains(&format!(":{}/", worker.port)))
        .expect("the worker's database");
    let mut on_worker = diesel::PgConnection::establish(&worker_url).unwrap();
    // Citus hides shards from the catalog unless asked.
    on_worker.batch_execute("SET citus.override_table_visibility = false").unwrap();
    let shard_tables = "SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                        WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname LIKE '%\\_%'";
    assert!(count(&mut on_worker, shard_tables, &[tenant.as_str()]) >= 3, "the shards are on the worker");

    drop_tenant(&pool, &tenant).unwrap();
    assert_eq!(shards_of(&mut admin, &tenant), 0);
    assert!(!is_distributed(&mut admin, tenant.as_str()));
    assert_eq!(count(&mut on_worker, shard_tables, &[tenant.as_str()]), 0, "no shard is left on the worker");
    assert!(tenant_placement(&pool, &tenant).unwrap_err().is_tenant_not_found());
}

use diesel::Connection;

#[test]
fn adopting_a_schema_distributes_it_with_its_rows() {
    let db = tenancy_tests::citus::database("citus_adopt");
    let mut admin = db.connect().unwrap();
    let legacy = unique_schema("legacy");
    admin
        .batch_execute(&format!(
            "SET citus.enable_schema_based_sharding = off; CREATE SCHEMA {s}; \
             CREATE TABLE {s}.orders (id BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, amount INTEGER NOT NULL, note TEXT); \
             INSERT INTO {s}.orders (tenant, amount) VALUES ('old', 1), ('old', 2)",
            s = legacy.quoted()
        ))
        .unwrap();
    assert!(!is_distributed(&mut admin, legacy.as_str()));
    let pool = pool_on(db.url());
    let adopted = tenancy_core::adopt(&pool, &legacy, ADOPTED).unwrap();
    worker_of(adopted.placement.as_ref().unwrap());
    assert!(is_distributed(&mut admin, legacy.as_str()));
    assert_eq!(crate::order_count(&pool, &legacy), 2, "the rows came along");
}

const ADOPTED: EmbeddedMigrations = embed_migrations!("migrations/citus_adopt");

#[test]
fn a_configured_shared_schema_stays_on_the_coordinator() {
    const SHARED: EmbeddedMigrations = embed_migrations!("migrations/shared_v1");
    let db = tenancy_tests::citus::database("citus_shared");
    let mut admin = db.connect().unwrap();
    sharding_by_default(&mut admin, &db, true);
    let pool = TenantPool::builder().shared_schema("app_shared").build(db.url()).unwrap();
    tenancy_core::migrate_shared(&pool, SHARED).unwrap();
    assert!(!is_distributed(&mut admin, "app_shared"), "the shared schema is not a distributed schema");
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app_shared'",
            &[]
        ),
        0,
        "its tables are plain tables on the coordinator"
    );
}
