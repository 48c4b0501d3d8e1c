//! What an operator sees: the pool's counters (`PoolState`) and the
//! `tracing` spans, each with the tenant as a field, for checkouts,
//! switches, transactions, provisioning and fleet migrations.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use tenancy_core::{
    drop_tenant, migrate_all, provision, MigrateOptions, PoolerMode, TenancyError, TenantPool,
};
use tenancy_tests::spans::Recorder;
use tenancy_tests::{migrations, unique_schema, url, Schemas, ITEMS_DDL};

#[test]
fn pool_state_counts_hits_switches_not_found_retirements_and_waits() {
    let schemas = Schemas::create("counted", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let timeout = Duration::from_millis(300);
    let pool = TenantPool::builder().max_size(1).connection_timeout(timeout).build(&url()).unwrap();
    let start = pool.state();
    assert_eq!((start.checkouts, start.hits, start.switches, start.not_found), (0, 0, 0, 0));
    drop(pool.tenant(a).unwrap()); // a new connection: a switch
    drop(pool.tenant(a).unwrap()); // on it already: a hit
    pool.transaction(a, |_| Ok::<_, TenancyError>(())).unwrap(); // a hit too
    drop(pool.tenant(b).unwrap()); // a switch
    assert!(pool.tenant(&unique_schema("nobody")).unwrap_err().is_tenant_not_found());
    let state = pool.state();
    assert_eq!((state.checkouts, state.hits, state.switches, state.not_found), (4, 2, 2, 1), "{state:?}");
    assert_eq!(state.retirements, 0);
    // A temporary table cannot be undone in place: the connection is retired.
    pool.tenant(a).unwrap().batch_execute("CREATE TEMP TABLE scratch (id int)").unwrap();
    assert_eq!(pool.state().retirements, 1);
    // A wait that times out, while the only connection is held.
    let held = pool.tenant(a).unwrap();
    let before = pool.state().wait_time;
    assert!(matches!(pool.tenant(b), Err(TenancyError::PoolTimeout { .. })));
    drop(held);
    let state = pool.state();
    assert_eq!(state.timeouts, 1);
    assert!(state.wait_time - before >= timeout, "{state:?}");
    // Behind a transaction pooler every checkout is scoped in its transaction.
    let pooled =
        TenantPool::builder().pooler_mode(PoolerMode::Transaction).max_size(1).build(&url()).unwrap();
    drop(pooled.tenant(a).unwrap());
    pooled.transaction(a, |_| Ok::<_, TenancyError>(())).unwrap();
    let state = pooled.state();
    assert_eq!((state.checkouts, state.hits, state.switches), (2, 0, 0), "{state:?}");
}

#[test]
fn spans_name_the_tenant_of_checkouts_switches_and_transactions() {
    let schemas = Schemas::create("spans", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = TenantPool::builder().max_size(1).build(&url()).unwrap();
    let recorder = Recorder::default();
    recorder.record(|| {
        drop(pool.tenant(a).unwrap());
        drop(pool.tenant(a).unwrap());
        pool.transaction(b, |_| Ok::<_, TenancyError>(())).unwrap();
    });
    let checkouts = recorder.named("tenancy.checkout");
    let seen: Vec<(&str, &str)> =
        checkouts.iter().map(|s| (s.fields["tenant"].as_str(), s.fields["switched"].as_str())).collect();
    assert_eq!(seen, [(a.as_str(), "true"), (a.as_str(), "false"), (b.as_str(), "true")]);
    let transactions = recorder.named("tenancy.transaction");
    assert_eq!(transactions.len(), 1);
    assert_eq!(transactions[0].fields["tenant"], b.as_str());
}

#[test]
fn spans_name_the_tenant_of_provisioning_and_of_each_fleet_migration() {
    let db = tenancy_tests::temp_database("spans_fleet");
    let pool = TenantPool::builder().max_size(3).build(db.url()).unwrap();
    let tenants: Vec<_> = (0..3).map(|i| unique_schema(&format!("fleet{i}"))).collect();
    let recorder = Recorder::default();
    recorder.record(|| {
        for tenant in &tenants {
            provision(&pool, tenant, migrations("fleet_v1")).unwrap();
        }
        // Two workers: their spans reach the caller's subscriber too.
        migrate_all(&pool, migrations("fleet_v2"), MigrateOptions::new().jobs(2)).unwrap();
        drop_tenant(&pool, &tenants[0]).unwrap();
    });
    let names = |spans: Vec<tenancy_tests::spans::SpanRecord>| {
        let mut names: Vec<String> = spans.into_iter().map(|s| s.fields["tenant"].clone()).collect();
        names.sort();
        names
    };
    let mut expected: Vec<String> = tenants.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(names(recorder.named("tenancy.provision")), expected);
    assert_eq!(names(recorder.named("tenancy.migrate")), expected);
    let fleet = recorder.named("tenancy.migrate_all");
    assert_eq!(fleet.len(), 1);
    assert_eq!((fleet[0].fields["tenants"].as_str(), fleet[0].fields["visited"].as_str()), ("3", "3"));
    assert_eq!(names(recorder.named("tenancy.drop_tenant")), [tenants[0].to_string()]);
}
