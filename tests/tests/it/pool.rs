//! TenantPool against a real PostgreSQL: exact search paths, no inheritance
//! between borrowers, no `public` fallback, round trips, transactions,
//! killed connections and concurrency.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tenancy_core::{PoolerMode, SchemaName, TenancyError, TenantAffinity, TenantPool};
use tenancy_tests::{
    admin, backend_pid, current_schemas, items, logged_pool, pool_of_one, rows_of, scalar_i64, search_path,
    tags, unique_schema, url, Schemas, StatementLog, ITEMS_DDL,
};

#[test]
fn tenant_search_path_is_exactly_the_tenant() {
    let schemas = Schemas::create("exact", 1, ITEMS_DDL);
    let pool = tenancy_tests::pool();
    let mut conn = pool.tenant(schemas.first()).unwrap();
    assert_eq!(current_schemas(&mut conn), vec![schemas.first().to_string()]);
    let path = search_path(&mut conn);
    // The tenant, then `pg_temp` (named last so temporary tables can never shadow the tenant's).
    assert_eq!(path.replace('"', ""), format!("{}, pg_temp", schemas.first()));
    drop(conn);
    let in_tx = pool.transaction(schemas.first(), |c| Ok::<_, TenancyError>(current_schemas(c))).unwrap();
    assert_eq!(in_tx, vec![schemas.first().to_string()]);
}

#[test]
fn checkout_never_inherits_previous_tenant() {
    let schemas = Schemas::create("inherit", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool_of_one();
    let shared_schema = vec![String::from("public")];
    // A then B, A then shared, shared then A: the same physical connection each time.
    let mut c = pool.tenant(a).unwrap();
    let first_pid = backend_pid(&mut c);
    assert_eq!(current_schemas(&mut c), vec![a.to_string()]);
    drop(c);
    let mut c = pool.tenant(b).unwrap();
    assert_eq!(backend_pid(&mut c), first_pid, "pool of one reuses its connection");
    assert_eq!(current_schemas(&mut c), vec![b.to_string()]);
    drop(c);
    let mut c = pool.tenant(a).unwrap();
    assert_eq!(current_schemas(&mut c), vec![a.to_string()]);
    drop(c);
    let mut c = pool.shared().unwrap();
    assert_eq!(current_schemas(&mut c), shared_schema);
    drop(c);
    let mut c = pool.tenant(a).unwrap();
    assert_eq!(current_schemas(&mut c), vec![a.to_string()]);
    assert_eq!(backend_pid(&mut c), first_pid);
    drop(c);
    // A transaction for B between two checkouts of A leaves A's scope intact and correct.
    pool.transaction(b, |conn| {
        assert_eq!(current_schemas(conn), vec![b.to_string()]);
        Ok::<_, TenancyError>(())
    })
    .unwrap();
    let mut c = pool.tenant(a).unwrap();
    assert_eq!(current_schemas(&mut c), vec![a.to_string()]);
}

#[test]
fn no_silent_fallback_to_public() {
    let only_in_public = format!("public_only_{}", std::process::id());
    let mut admin = admin();
    admin
        .batch_execute(&format!(
            "CREATE TABLE public.{only_in_public} (id int); INSERT INTO public.{only_in_public} VALUES (1)"
        ))
        .unwrap();
    let schemas = Schemas::create("fallback", 1, ITEMS_DDL);
    let pool = tenancy_tests::pool();
    let mut conn = pool.tenant(schemas.first()).unwrap();
    let read = diesel::sql_query(format!("SELECT id FROM {only_in_public}")).execute(&mut *conn);
    let write = diesel::sql_query(format!("INSERT INTO {only_in_public} VALUES (2)")).execute(&mut *conn);
    drop(conn);
    let in_tx = pool.transaction(schemas.first(), |c| {
        diesel::sql_query(format!("INSERT INTO {only_in_public} VALUES (3)"))
            .execute(c)
            .map_err(TenancyError::from)
    });
    let count = scalar_i64(&mut admin, &format!("(SELECT count(*) FROM public.{only_in_public})"));
    admin.batch_execute(&format!("DROP TABLE public.{only_in_public}")).unwrap();
    assert!(read.is_err(), "a table only in public must not be readable from a tenant");
    assert!(write.is_err(), "a table only in public must not be writable from a tenant");
    assert!(in_tx.is_err(), "nor from a tenant transaction");
    assert_eq!(count, 1, "public was not written");
}

#[test]
fn missing_tenant_is_tenant_not_found_and_pool_stays_healthy() {
    let schemas = Schemas::create("present", 1, ITEMS_DDL);
    let missing = unique_schema("missing");
    let pool = pool_of_one();
    for _ in 0..3 {
        match pool.tenant(&missing) {
            Err(TenancyError::TenantNotFound { schema }) => assert_eq!(schema, missing),
            other => panic!("expected TenantNotFound, got {other:?}"),
        }
        match pool.transaction(&missing, |_| Ok::<_, TenancyError>(())) {
            Err(TenancyError::TenantNotFound { schema }) => assert_eq!(schema, missing),
            other => panic!("expected TenantNotFound, got {other:?}"),
        }
    }
    let mut conn = pool.tenant(schemas.first()).unwrap();
    assert_eq!(current_schemas(&mut conn), vec![schemas.first().to_string()]);
    drop(conn);
    // A not-found switch leaves the connection on its previous tenant, still correct.
    assert!(pool.tenant(&missing).unwrap_err().is_tenant_not_found());
    let mut conn = pool.tenant(schemas.first()).unwrap();
    assert_eq!(current_schemas(&mut conn), vec![schemas.first().to_string()]);
    assert_eq!(pool.state().connections, 1);
}

#[test]
fn repeat_checkout_sends_nothing_and_switch_sends_one_statement() {
    let schemas = Schemas::create("trips", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let (pool, log) = logged_pool(1);
    drop(pool.tenant(a).unwrap());
    log.take();
    drop(pool.tenant(a).unwrap());
    assert_eq!(log.take(), Vec::<String>::new(), "same tenant again: no statement");
    drop(pool.tenant(b).unwrap());
    let sent = log.take();
    assert_eq!(sent.len(), 1, "a switch is exactly one statement: {sent:?}");
    assert!(sent[0].contains("SET search_path"), "{sent:?}");
    drop(pool.tenant(b).unwrap());
    assert!(log.take().is_empty());
}

#[test]
fn tenant_transaction_costs_the_same_statements_as_a_plain_transaction() {
    let schemas = Schemas::create("txtrips", 1, ITEMS_DDL);
    let tenant = schemas.first();
    let (pool, log) = logged_pool(1);
    let work = |conn: &mut PgConnection| -> QueryResult<i64> {
        diesel::insert_into(items::table)
            .values((items::tenant.eq("x"), items::body.eq("b")))
            .execute(conn)?;
        items::table.count().get_result(conn)
    };
    pool.transaction(tenant, |c| work(c).map_err(TenancyError::from)).unwrap();
    let ours = log.take();

    let plain_log = StatementLog::default();
    let mut plain = admin();
    plain.batch_execute(&format!("SET search_path TO {}", tenant.quoted())).unwrap();
    plain.set_instrumentation(plain_log.clone());
    plain.transaction(work).unwrap();
    let theirs = plain_log.take();
    assert_eq!(ours.len(), theirs.len(), "ours: {ours:?}\nplain diesel: {theirs:?}");
    assert_eq!(ours.len(), 4, "begin, insert, count, commit: {ours:?}");
}

#[test]
fn transaction_commits_on_ok_and_rolls_back_on_err_and_panic() {
    let schemas = Schemas::create("txn", 1, ITEMS_DDL);
    let tenant = schemas.first();
    let pool = pool_of_one();
    let insert = |conn: &mut PgConnection, body: &str| {
        diesel::insert_into(items::table).values((items::tenant.eq("t"), items::body.eq(body))).execute(conn)
    };
    pool.transaction(tenant, |c| insert(c, "committed").map_err(TenancyError::from)).unwrap();
    let failed: Result<(), TenancyError> = pool.transaction(tenant, |c| {
        insert(c, "rolled back on err")?;
        Err(TenancyError::Database(diesel::result::Error::RollbackTransaction))
    });
    assert!(matches!(failed, Err(TenancyError::Database(diesel::result::Error::RollbackTransaction))));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), TenancyError> = pool.transaction(tenant, |c| {
            insert(c, "rolled back on panic").unwrap();
            panic!("body panics");
        });
    }));
    assert!(panicked.is_err(), "the panic reaches the caller");
    let bodies: Vec<String> =
        items::table.select(items::body).load(&mut *pool.tenant(tenant).unwrap()).unwrap();
    assert_eq!(bodies, vec![String::from("committed")]);
    assert_committed_bodies(tenant, &["committed"]);
    // The pool (of one) still works, outside any transaction: a write now is
    // visible to other sessions at once.
    insert(&mut pool.tenant(tenant).unwrap(), "after").unwrap();
    assert_committed_bodies(tenant, &["committed", "after"]);
}

/// What other sessions see in the tenant's `items`: only committed rows.
fn assert_committed_bodies(tenant: &SchemaName, expected: &[&str]) {
    let rows = rows_of(&mut admin(), tenant);
    let bodies: Vec<&str> = rows.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, expected);
}

#[test]
fn connection_never_returns_to_the_pool_inside_a_transaction() {
    let schemas = Schemas::create("opentx", 1, ITEMS_DDL);
    let tenant = schemas.first();
    let pool = pool_of_one();
    let mut conn = pool.tenant(tenant).unwrap();
    diesel::connection::AnsiTransactionManager::begin_transaction_sql(&mut *conn, "BEGIN").unwrap();
    diesel::insert_into(items::table).values(items::tenant.eq("left open")).execute(&mut *conn).unwrap();
    drop(conn);
    let mut conn = pool.tenant(tenant).unwrap();
    assert!(tags(&mut conn).is_empty(), "the abandoned transaction was not continued");
    diesel::insert_into(items::table)
        .values((items::tenant.eq("t"), items::body.eq("autocommitted")))
        .execute(&mut *conn)
        .unwrap();
    drop(conn);
    assert_committed_bodies(tenant, &["autocommitted"]);
}

#[test]
fn killed_connection_errors_then_pool_recovers_with_right_tenant() {
    let schemas = Schemas::create("killed", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool_of_one();
    let mut admin = admin();
    let mut conn = pool.tenant(a).unwrap();
    let pid = backend_pid(&mut conn);
    diesel::sql_query(format!("SELECT pg_terminate_backend({pid})")).execute(&mut admin).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let result = items::table.count().get_result::<i64>(&mut *conn);
    assert!(result.is_err(), "the caller sees the connection die");
    drop(conn);
    let mut conn = pool.tenant(a).unwrap();
    assert_eq!(current_schemas(&mut conn), vec![a.to_string()]);
    drop(conn);
    // Killed while idle in the pool: a transaction's opening statement retries on a fresh connection.
    let pid = backend_pid(&mut pool.tenant(a).unwrap());
    diesel::sql_query(format!("SELECT pg_terminate_backend({pid})")).execute(&mut admin).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let path = pool.transaction(b, |c| Ok::<_, TenancyError>(current_schemas(c))).unwrap();
    assert_eq!(path, vec![b.to_string()]);
}

#[test]
fn concurrent_interleaved_tenants_never_mix() {
    const TENANTS: usize = 50;
    const THREADS: usize = 8;
    const ROUNDS: usize = 300;
    let schemas = Arc::new(Schemas::create("conc", TENANTS, ITEMS_DDL));
    let pool = TenantPool::builder().max_size(4).build(&url()).unwrap();
    let wrong_reads = Arc::new(AtomicUsize::new(0));
    let writes = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, schemas, wrong_reads, writes) =
                (pool.clone(), schemas.clone(), wrong_reads.clone(), writes.clone());
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let tenant = &schemas.names[(t * 7 + round * 13) % TENANTS];
                    let tag = tenant.as_str();
                    if round % 3 == 0 {
                        pool.transaction(tenant, |c| {
                            diesel::insert_into(items::table).values(items::tenant.eq(tag)).execute(c)?;
                            if tags(c).iter().any(|t| t != tag) {
                                wrong_reads.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok::<_, TenancyError>(())
                        })
                        .unwrap();
                    } else {
                        let mut c = pool.tenant(tenant).unwrap();
                        diesel::insert_into(items::table)
                            .values(items::tenant.eq(tag))
                            .execute(&mut *c)
                            .unwrap();
                        if tags(&mut c).iter().any(|t| t != tag) {
                            wrong_reads.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(wrong_reads.load(Ordering::Relaxed), 0);
    // Audit every schema directly, outside the pool.
    let mut admin = admin();
    let mut total = 0;
    for tenant in &schemas.names {
        let tags: Vec<String> = rows_of(&mut admin, tenant).into_iter().map(|r| r.tenant).collect();
        let distinct: HashSet<&String> = tags.iter().collect();
        assert!(
            distinct.len() <= 1 && tags.iter().all(|t| t == tenant.as_str()),
            "{tenant} holds {distinct:?}"
        );
        total += tags.len();
    }
    assert_eq!(total, writes.load(Ordering::Relaxed));
    assert_eq!(total, THREADS * ROUNDS);
}

#[test]
fn hostile_names_never_reach_sql() {
    let pool = tenancy_tests::pool();
    for hostile in [
        "acme\"; DROP SCHEMA public CASCADE; --",
        "acme'; SELECT 1; --",
        "Acme",
        "public",
        "pg_catalog",
        "information_schema",
        "a b",
        "",
        "x".repeat(64).as_str(),
        "ünïcode",
    ] {
        let err = tenancy_core::parse_schema(hostile).unwrap_err();
        assert!(matches!(err, TenancyError::InvalidSchemaName { .. }), "{hostile:?}");
        assert!(SchemaName::new(hostile).is_err());
    }
    // Valid names are always quoted: a name that is also a keyword works.
    let schemas = Schemas::create("select", 1, ITEMS_DDL);
    let keyword_like = schemas.first();
    assert_eq!(current_schemas(&mut pool.tenant(keyword_like).unwrap()), vec![keyword_like.to_string()]);
}

/// Behind a transaction pooler a checkout is one transaction, begun in the
/// checkout's one message and committed when the connection goes back.
#[test]
fn transaction_pooler_mode_scopes_checkouts_in_a_transaction() {
    let schemas = Schemas::create("txmode", 1, ITEMS_DDL);
    let a = schemas.first();
    let pool = TenantPool::builder().pooler_mode(PoolerMode::Transaction).max_size(2).build(&url()).unwrap();
    let now = |c: &mut diesel::PgConnection| {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>("transaction_timestamp()::text"))
            .get_result::<String>(c)
            .unwrap()
    };
    let mut conn = pool.tenant(a).unwrap();
    assert_eq!(current_schemas(&mut conn), vec![a.to_string()]);
    let started = now(&mut conn);
    tenancy_tests::insert_tagged(&mut conn, a, "one").unwrap();
    tenancy_tests::insert_tagged(&mut conn, a, "two").unwrap();
    assert_eq!(now(&mut conn), started, "the checkout is not one transaction");
    assert_eq!(scalar_i64(&mut admin(), &format!("(SELECT count(*) FROM {}.items)", a.quoted())), 0);
    conn.close().unwrap();
    assert_eq!(scalar_i64(&mut admin(), &format!("(SELECT count(*) FROM {}.items)", a.quoted())), 2);
    // Dropped rather than closed: committed all the same.
    let mut conn = pool.tenant(a).unwrap();
    tenancy_tests::insert_tagged(&mut conn, a, "three").unwrap();
    drop(conn);
    assert_eq!(scalar_i64(&mut admin(), &format!("(SELECT count(*) FROM {}.items)", a.quoted())), 3);
    // A failed statement: nothing of the checkout commits, and close() says so.
    let mut conn = pool.tenant(a).unwrap();
    tenancy_tests::insert_tagged(&mut conn, a, "lost").unwrap();
    assert!(conn.batch_execute("SELECT 1/0").is_err());
    assert!(matches!(conn.close(), Err(TenancyError::ScopeRolledBack)));
    assert_eq!(scalar_i64(&mut admin(), &format!("(SELECT count(*) FROM {}.items)", a.quoted())), 3);
    let mut shared = pool.shared().unwrap();
    assert_eq!(current_schemas(&mut shared), vec![String::from("public")]);
    shared.close().unwrap();
    let path = pool.transaction(a, |c| Ok::<_, TenancyError>(current_schemas(c))).unwrap();
    assert_eq!(path, vec![a.to_string()]);
    let shared = pool.shared_transaction(|c| Ok::<_, TenancyError>(current_schemas(c))).unwrap();
    assert_eq!(shared, vec![String::from("public")]);
}

#[test]
fn extension_schemas_follow_the_tenant_and_public_is_refused() {
    let schemas = Schemas::create("withext", 1, ITEMS_DDL);
    let ext = Schemas::create_unregistered(
        "ext",
        1,
        "CREATE FUNCTION ext_answer() RETURNS int LANGUAGE sql AS 'SELECT 42'",
    );
    let pool =
        TenantPool::builder().max_size(1).extension_schemas([ext.first().as_str()]).build(&url()).unwrap();
    let mut conn = pool.tenant(schemas.first()).unwrap();
    assert_eq!(current_schemas(&mut conn), vec![schemas.first().to_string(), ext.first().to_string()]);
    let answer: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("ext_answer()"))
        .get_result(&mut *conn)
        .unwrap();
    assert_eq!(answer, 42);
    for bad in ["public", "Bad", "pg_x;"] {
        let err = TenantPool::builder().extension_schemas([bad]).build(&url()).unwrap_err();
        assert!(matches!(err, TenancyError::InvalidConfig(_)), "{bad}: {err}");
    }
}

#[test]
fn pool_timeout_is_a_typed_error() {
    let schemas = Schemas::create("timeout", 1, ITEMS_DDL);
    let pool = TenantPool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(200))
        .build(&url())
        .unwrap();
    let held = pool.tenant(schemas.first()).unwrap();
    match pool.tenant(schemas.first()) {
        Err(TenancyError::PoolTimeout { timeout, .. }) => assert_eq!(timeout, Duration::from_millis(200)),
        other => panic!("expected PoolTimeout, got {other:?}"),
    }
    drop(held);
    assert!(pool.tenant(schemas.first()).is_ok());
}

#[test]
fn unreachable_database_fails_fast_with_connection_error() {
    let started = std::time::Instant::now();
    let err = TenantPool::connect("postgres://postgres@127.0.0.1:1/none").unwrap_err();
    assert!(matches!(err, TenancyError::Connection(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn rolled_back_transaction_does_not_leave_a_stale_scope() {
    let schemas = Schemas::create("stale", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool_of_one();
    drop(pool.tenant(a).unwrap());
    // Switching to B inside a transaction that rolls back also rolls the switch back.
    let _ = pool
        .transaction(b, |_| Err::<(), _>(TenancyError::Database(diesel::result::Error::RollbackTransaction)));
    assert_eq!(current_schemas(&mut pool.tenant(b).unwrap()), vec![b.to_string()]);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), TenancyError> = pool.transaction(a, |_| panic!("rolls back"));
    }));
    assert_eq!(current_schemas(&mut pool.tenant(a).unwrap()), vec![a.to_string()]);
    drop(pool.tenant(b).unwrap());
    let _ = pool
        .transaction(a, |_| Err::<(), _>(TenancyError::Database(diesel::result::Error::RollbackTransaction)));
    assert_eq!(current_schemas(&mut pool.tenant(a).unwrap()), vec![a.to_string()]);
}

#[test]
fn affinity_hands_out_the_connection_already_serving_the_tenant() {
    let schemas = Schemas::create("affinity", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let (pool, log) = logged_pool(2);
    // Scope one connection to A and the other to B, then return both (B last).
    let ca = pool.tenant(a).unwrap();
    let cb = pool.tenant(b).unwrap();
    drop(ca);
    drop(cb);
    log.take();
    // The most recently returned serves B, yet a checkout for A needs no switch.
    drop(pool.tenant(a).unwrap());
    assert!(log.take().is_empty(), "affinity found the idle connection serving A");
    pool.transaction(b, |_| Ok::<_, TenancyError>(())).unwrap();
    assert_eq!(log.take(), vec![String::from("BEGIN"), String::from("COMMIT")]);
}

#[test]
fn affinity_switches_a_hot_tenants_second_idle_connection_before_a_colder_tenants_only_one() {
    let schemas = Schemas::create("surplus", 3, ITEMS_DDL);
    let [hot, warm, cold] = [&schemas.names[0], &schemas.names[1], &schemas.names[2]];
    let (pool, log) = logged_pool(3);
    for _ in 0..20 {
        drop(pool.tenant(hot).unwrap());
    }
    // Asked for twice at once, the hot tenant takes a second connection.
    let first = pool.tenant(hot).unwrap();
    let second = pool.tenant(hot).unwrap();
    let other = pool.tenant(warm).unwrap();
    drop(other);
    drop(second);
    drop(first);
    // Idle: the hot tenant's two connections (asked for 22 times), the warm one's (once).
    drop(pool.tenant(cold).unwrap());
    log.take();
    // The cold tenant took the hot tenant's spare: both others keep theirs.
    drop(pool.tenant(warm).unwrap());
    drop(pool.tenant(hot).unwrap());
    assert!(log.take().is_empty(), "a tenant lost its only connection to a hot tenant's spare");
}

#[test]
fn adaptive_affinity_compares_both_settings_on_real_traffic_and_keeps_the_faster() {
    let schemas = Schemas::create("adaptive", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    // Two tenants taking turns on a pool of two: with affinity each finds its
    // own connection (nothing sent); without it, the connection handed out
    // (the one returned last) serves the other tenant, and every checkout switches.
    let pool = TenantPool::builder().max_size(2).build(&url()).unwrap();
    assert_eq!(pool.state().affinity_measured, None);
    assert!(pool.state().affinity, "the adaptive pool starts with affinity on");
    let mut checkouts = 0u64;
    while pool.state().affinity_measured.is_none() {
        assert!(checkouts < 100_000, "no comparison after {checkouts} checkouts");
        drop(pool.tenant(a).unwrap());
        drop(pool.tenant(b).unwrap());
        checkouts += 2;
    }
    let state = pool.state();
    let (off, on) = state.affinity_measured.unwrap();
    assert!(off > on, "switching on every checkout measured faster than hits: {state:?}");
    assert!(state.affinity, "{state:?}");
    // The comparison really ran without affinity, switching on every
    // checkout, until the pool saw it far behind and gave it up.
    assert!(state.switches > 100, "{state:?}");
    // And with affinity back on, taking turns switches nothing (once each
    // tenant has a connection again: the comparison ended without affinity).
    for _ in 0..2 {
        drop(pool.tenant(a).unwrap());
        drop(pool.tenant(b).unwrap());
    }
    let before = pool.state().switches;
    for _ in 0..100 {
        drop(pool.tenant(a).unwrap());
        drop(pool.tenant(b).unwrap());
    }
    assert_eq!(pool.state().switches, before);
    // Fixed settings never compare.
    for fixed in [TenantAffinity::Always, TenantAffinity::Never] {
        let pool = TenantPool::builder().max_size(2).tenant_affinity(fixed).build(&url()).unwrap();
        for _ in 0..40_000 {
            drop(pool.tenant(a).unwrap());
        }
        assert_eq!(pool.state().affinity_measured, None);
        assert_eq!(pool.state().affinity, fixed == TenantAffinity::Always);
    }
}

/// Waits until the pool has opened all its `size` connections.
fn all_open(pool: &TenantPool, size: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pool.state().idle_connections < size {
        assert!(std::time::Instant::now() < deadline, "the pool did not open its connections");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn with_home_slots_a_switch_with_the_tenants_homes_busy_evicts_the_least_recently_used_tenant() {
    let schemas = Schemas::create("lru", 3, ITEMS_DDL);
    let [t, a, b] = [&schemas.names[0], &schemas.names[1], &schemas.names[2]];
    let (pool, log) = logged_pool(4);
    tenancy_core::__private::set_home_slots(&pool, true);
    all_open(&pool, 4);
    // T on both its home connections, A and B on the other two.
    let homes = [pool.tenant(t).unwrap(), pool.tenant(t).unwrap()];
    let (mut ca, cb) = (pool.tenant(a).unwrap(), pool.tenant(b).unwrap());
    let a_pid = backend_pid(&mut ca);
    // Returned oldest first: A is the least recently used.
    drop(ca);
    std::thread::sleep(Duration::from_millis(2));
    drop(cb);
    log.take();
    let mut third = pool.tenant(t).unwrap();
    assert_eq!(log.take().len(), 1, "T's third checkout needs a switch");
    assert_eq!(backend_pid(&mut third), a_pid, "A's connection, the least recently used, was switched");
    log.take();
    drop(pool.tenant(b).unwrap());
    assert!(log.take().is_empty(), "B is still served by an idle connection");
    drop(homes);
}

#[test]
fn with_home_slots_each_tenant_switches_only_onto_its_two_home_connections() {
    let schemas = Schemas::create("homes", 12, ITEMS_DDL);
    let (pool, _log) = logged_pool(4);
    tenancy_core::__private::set_home_slots(&pool, true);
    all_open(&pool, 4);
    let mut pids: Vec<HashSet<i32>> = vec![HashSet::new(); schemas.names.len()];
    let mut all = HashSet::new();
    // A fixed pseudo-random order, so that tenants evict one another in every pattern.
    let mut x = 12_345_u64;
    for _ in 0..200 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let i = (x >> 33) as usize % schemas.names.len();
        let mut conn = pool.tenant(&schemas.names[i]).unwrap();
        assert_eq!(current_schemas(&mut conn), vec![schemas.names[i].to_string()]);
        let pid = backend_pid(&mut conn);
        pids[i].insert(pid);
        all.insert(pid);
    }
    for (name, served_by) in schemas.names.iter().zip(&pids) {
        assert!(served_by.len() <= 2, "{name} was served by {} connections", served_by.len());
    }
    assert!(all.len() >= 3, "the tenants are spread over the pool ({} connections used)", all.len());
}

#[test]
fn with_home_slots_a_tenant_already_served_off_its_homes_is_a_hit() {
    let schemas = Schemas::create("offhome", 1, ITEMS_DDL);
    let t = schemas.first();
    let (pool, log) = logged_pool(4);
    tenancy_core::__private::set_home_slots(&pool, true);
    all_open(&pool, 4);
    // Two checkouts take T's homes; a third, with both busy, switches another connection.
    let mut homes = [pool.tenant(t).unwrap(), pool.tenant(t).unwrap()];
    let mut off_home = pool.tenant(t).unwrap();
    let off_pid = backend_pid(&mut off_home);
    drop(off_home);
    // Both homes are retired (a temporary table) and replaced by connections serving no one.
    for home in &mut homes {
        home.batch_execute("CREATE TEMPORARY TABLE scratch (i int)").unwrap();
    }
    drop(homes);
    all_open(&pool, 4);
    log.take();
    // T's homes are idle again, yet the idle connection already serving T is taken, with no switch.
    let mut conn = pool.tenant(t).unwrap();
    assert!(log.take().is_empty(), "no switch for a tenant an idle connection serves");
    assert_eq!(backend_pid(&mut conn), off_pid);
}

#[test]
fn a_hot_tenant_keeps_its_connection_and_cold_ones_share_one() {
    let schemas = Schemas::create("heat", 11, ITEMS_DDL);
    let hot = schemas.first();
    let cold = &schemas.names[1..];
    let (pool, log) = logged_pool(4);
    all_open(&pool, 4);
    let mut conn = pool.tenant(hot).unwrap();
    let hot_pid = backend_pid(&mut conn);
    drop(conn);
    for _ in 0..9 {
        drop(pool.tenant(hot).unwrap());
    }
    let mut cold_pids = Vec::new();
    for tenant in cold {
        let mut conn = pool.tenant(tenant).unwrap();
        assert_eq!(current_schemas(&mut conn), vec![tenant.to_string()]);
        cold_pids.push(backend_pid(&mut conn));
        drop(conn);
        log.take();
        // The hot tenant is never the one evicted.
        let mut conn = pool.tenant(hot).unwrap();
        assert!(log.take().is_empty(), "{hot} kept its connection");
        assert_eq!(backend_pid(&mut conn), hot_pid);
    }
    // Once the connections that served no one are used, cold tenants share
    // the most recently used of the least asked-for.
    let settled: HashSet<i32> = cold_pids[3..].iter().copied().collect();
    assert_eq!(settled.len(), 1, "cold tenants after the first three: {cold_pids:?}");
    assert!(!settled.contains(&hot_pid));
}
