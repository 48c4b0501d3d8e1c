//! Moving tenants between workers and rebalancing, under traffic: no row
//! is lost, duplicated or lands in another tenant, and connections pooled
//! or checked out before a move keep working after it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use tenancy_core::citus::{
    move_tenant, rebalance_status, start_rebalance, tenant_placement, tenant_placements, wait_for_rebalance,
    Placement, TransferMode,
};
use tenancy_core::{provision, SchemaName, TenancyError, TenantPool};
use tenancy_tests::unique_schema;

use crate::{order_count, pool_on, worker_of, workers};

const V1: EmbeddedMigrations = embed_migrations!("migrations/citus_v1");

/// Inserts one order with a given id; an id already there (a retry of a
/// write that committed) counts as done.
fn insert_order(pool: &TenantPool, tenant: &SchemaName, id: i64) -> Result<(), TenancyError> {
    pool.transaction(tenant, |conn| {
        diesel::sql_query(
            "INSERT INTO orders (id, tenant, amount) VALUES ($1, $2, 1) ON CONFLICT (id) DO NOTHING",
        )
        .bind::<BigInt, _>(id)
        .bind::<Text, _>(tenant.as_str())
        .execute(conn)?;
        Ok(())
    })
}

/// The ids in a tenant's `orders`, and whether every row names that tenant.
fn orders_of(pool: &TenantPool, tenant: &SchemaName) -> (BTreeSet<i64>, bool) {
    #[derive(QueryableByName)]
    struct Order {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        tenant: String,
    }
    let mut conn = pool.tenant(tenant).unwrap();
    let rows: Vec<Order> = diesel::sql_query("SELECT id, tenant FROM orders").load(&mut *conn).unwrap();
    let own = rows.iter().all(|r| r.tenant == tenant.as_str());
    (rows.into_iter().map(|r| r.id).collect(), own)
}

#[test]
fn moving_a_tenant_under_concurrent_writes_loses_and_misplaces_nothing() {
    let db = tenancy_tests::citus::database("citus_move");
    let pool = pool_on(db.url());
    let moving = unique_schema("moving");
    let staying = unique_schema("staying");
    let from = worker_of(provision(&pool, &moving, V1).unwrap().placement.as_ref().unwrap());
    provision(&pool, &staying, V1).unwrap();
    let to = workers(&pool).into_iter().find(|w| w.port != from.port).unwrap();

    // A connection checked out before the moves, held across them.
    let mut held = pool.tenant(&moving).unwrap();
    assert_eq!(
        diesel::select(diesel::dsl::sql::<BigInt>("(SELECT count(*) FROM orders)"))
            .get_result::<i64>(&mut *held)
            .unwrap(),
        0
    );

    let stop = AtomicBool::new(false);
    let next_id = AtomicI64::new(1);
    let retries = AtomicUsize::new(0);
    let acknowledged: Mutex<Vec<(SchemaName, i64)>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let tenants = [moving.clone(), staying.clone()];
    let placements = std::thread::scope(|s| {
        for writer in 0..3 {
            let (pool, tenants, stop, next_id, retries, acknowledged, errors) =
                (&pool, &tenants, &stop, &next_id, &retries, &acknowledged, &errors);
            s.spawn(move || {
                let mut n = writer;
                while !stop.load(Ordering::Relaxed) {
                    let tenant = &tenants[n % 2];
                    n += 1;
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    // Retried until it lands: a caller sees no error beyond retries.
                    let mut attempts = 0;
                    loop {
                        match insert_order(pool, tenant, id) {
                            Ok(()) => break,
                            Err(e) => {
                                attempts += 1;
                                retries.fetch_add(1, Ordering::Relaxed);
                                errors.lock().unwrap().push(e.to_string());
                                assert!(attempts < 50, "a write kept failing: {e}");
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                    acknowledged.lock().unwrap().push((tenant.clone(), id));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        let there = move_tenant(&pool, &moving, &to, TransferMode::BlockWrites).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let back = move_tenant(&pool, &moving, &from, TransferMode::ForceLogical).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        (there, back)
    });
    assert_eq!(placements.0, Placement::Node(to.clone()), "block_writes moved it");
    assert_eq!(placements.1, Placement::Node(from.clone()), "force_logical moved it back");

    let acknowledged = acknowledged.into_inner().unwrap();
    for tenant in &tenants {
        let expected: BTreeSet<i64> =
            acknowledged.iter().filter(|(t, _)| t == tenant).map(|(_, id)| *id).collect();
        assert!(
            expected.len() > 10,
            "{tenant}: writes went on during the moves ({} of them)",
            expected.len()
        );
        let (found, own) = orders_of(&pool, tenant);
        assert!(own, "{tenant} holds only its own rows");
        assert_eq!(found, expected, "{tenant}: every acknowledged write, once, and nothing else");
    }
    // The held connection and the pooled ones still serve the tenant.
    let mut conn = held;
    let through_held: i64 = diesel::select(diesel::dsl::sql::<BigInt>("(SELECT count(*) FROM orders)"))
        .get_result(&mut *conn)
        .unwrap();
    drop(conn);
    assert_eq!(through_held, order_count(&pool, &moving));
    let errors = errors.into_inner().unwrap();
    println!(
        "{} writes, {} retried: {:?}",
        acknowledged.len(),
        retries.load(Ordering::Relaxed),
        errors.iter().take(3).collect::<Vec<_>>()
    );
}

#[test]
fn rebalancing_spreads_tenants_gathered_on_one_worker() {
    let db = tenancy_tests::citus::database("citus_rebalance");
    let pool = pool_on(db.url());
    let workers = workers(&pool);
    let tenants: Vec<_> = (0..4).map(|_| unique_schema("bal")).collect();
    for tenant in &tenants {
        provision(&pool, tenant, V1).unwrap();
        move_tenant(&pool, tenant, &workers[0], TransferMode::BlockWrites).unwrap();
        assert_eq!(tenant_placement(&pool, tenant).unwrap(), Placement::Node(workers[0].clone()));
    }
    let job = start_rebalance(&pool, TransferMode::BlockWrites).unwrap().expect("moves to make");
    let status = wait_for_rebalance(&pool).unwrap().expect("a rebalance job");
    assert_eq!(status.job_id, job);
    assert_eq!(status.state, "finished", "{status:?}");
    assert!(status.is_done());
    assert_eq!(rebalance_status(&pool).unwrap(), Some(status));
    let on_second = tenant_placements(&pool)
        .unwrap()
        .into_iter()
        .filter(|t| t.placement.node().is_some_and(|n| n.port == workers[1].port))
        .count();
    assert_eq!(on_second, 2, "half the tenants moved to the empty worker");
    for tenant in &tenants {
        assert_eq!(order_count(&pool, tenant), 0, "{tenant} is served after the rebalance");
    }
    // Balanced: nothing more to move.
    assert_eq!(start_rebalance(&pool, TransferMode::Auto).unwrap(), None);
}

#[test]
fn moving_a_name_that_is_not_a_tenant_is_refused() {
    let db = tenancy_tests::citus::database("citus_move_refused");
    let pool = pool_on(db.url());
    let to = workers(&pool).remove(0);
    let error = move_tenant(&pool, &unique_schema("ghost"), &to, TransferMode::Auto).unwrap_err();
    assert!(error.is_tenant_not_found(), "{error:?}");
}
