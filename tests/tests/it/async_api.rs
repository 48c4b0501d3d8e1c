//! The async API (feature `tokio`): diesel runs on tokio's blocking pool and
//! never on a runtime worker thread, panics continue in the awaiting task,
//! and dropped futures never leave a connection in a bad state, under
//! concurrent load with cancellations, on both runtime flavours.

use std::future::Future as _;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use tenancy_core::{tenant_scoped, PoolerMode, SchemaName, Scope, TenancyError, TenantPool};
use tenancy_devdb::pgbouncer::{PgBouncer, PgBouncerConfig};
use tenancy_tests::{admin, backend_pid, count, insert_tagged, items, rows_of, url, Schemas, ITEMS_DDL};
use tokio::runtime::{Builder, Runtime};

/// Long enough never to be reached by a sound run; a broken one fails
/// instead of hanging.
const LIVENESS: Duration = Duration::from_secs(60);

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi_thread() -> Runtime {
    Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

fn pool_of(size: u32) -> TenantPool {
    TenantPool::builder().max_size(size).connection_timeout(LIVENESS).build(&url()).unwrap()
}

/// The state of a checked-out session, asked of PostgreSQL itself.
#[derive(Debug)]
struct SessionState {
    /// No transaction id assigned: nothing written in an open transaction.
    no_xid: bool,
    /// Each statement is a transaction of its own: `now()` (the start of
    /// the transaction) moves between two statements.
    own_transaction: bool,
    /// The schemas names resolve in.
    path: String,
}

fn session_state(conn: &mut PgConnection) -> SessionState {
    #[derive(QueryableByName)]
    struct First {
        #[diesel(sql_type = Bool)]
        no_xid: bool,
        #[diesel(sql_type = Text)]
        now: String,
        #[diesel(sql_type = Text)]
        path: String,
    }
    let first: First = diesel::sql_query(
        "SELECT txid_current_if_assigned() IS NULL AS no_xid, now()::text AS now, array_to_string(current_schemas(false), ',') AS path",
    )
    .get_result(conn)
    .unwrap();
    diesel::sql_query("SELECT pg_sleep(0.002)").execute(conn).unwrap();
    let later: String = diesel::select(diesel::dsl::sql::<Text>("now()::text")).get_result(conn).unwrap();
    SessionState { no_xid: first.no_xid, own_transaction: later != first.now, path: first.path }
}

/// Neither the wait for a connection nor the closure runs on the runtime's
/// thread: on a current-thread runtime, the test's own task keeps running
/// while one closure blocks holding the only connection and another
/// `run` waits for it.
#[test]
fn closures_and_pool_waits_never_block_the_runtime_thread() {
    let schemas = Schemas::create("async_off", 1, ITEMS_DDL);
    let schema = schemas.first().clone();
    let pool = pool_of(1);
    current_thread().block_on(async {
        let runtime_thread = std::thread::current().id();
        let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let holder = tokio::spawn(pool.run(&schema, move |conn| {
            started_tx.send(std::thread::current().id()).unwrap();
            // Released by the test's task, which must be able to run meanwhile.
            release_rx.recv_timeout(LIVENESS).map_err(|_| TenancyError::Cancelled)?;
            Ok::<_, TenancyError>(backend_pid(conn))
        }));
        let closure_thread = started_rx.recv().await.unwrap();
        assert_ne!(closure_thread, runtime_thread, "the closure ran on the runtime's thread");
        // Waits for the only connection, which `holder` keeps.
        let waiter = tokio::spawn(pool.run(&schema, |conn| Ok::<_, TenancyError>(backend_pid(conn))));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        release_tx.send(()).unwrap();
        let first = holder.await.unwrap().unwrap();
        let second = waiter.await.unwrap().unwrap();
        assert_eq!(first, second, "a pool of one has one connection");
    });
}

/// A panic in the closure continues as a panic in the task awaiting it,
/// with its payload; a transaction it interrupts is rolled back, and the
/// connection goes back clean.
#[test]
fn a_panic_in_the_closure_resumes_in_the_awaiting_task() {
    let schemas = Schemas::create("async_panic", 1, ITEMS_DDL);
    let schema = schemas.first().clone();
    let pool = pool_of(1);
    let runtime = multi_thread();
    runtime.block_on(async {
        let s = schema.clone();
        let task = tokio::spawn(pool.run_transaction(&schema, move |conn| -> Result<(), TenancyError> {
            insert_tagged(conn, &s, "written before the panic")?;
            panic!("boom in the closure")
        }));
        let error = task.await.unwrap_err();
        assert!(error.is_panic());
        let payload = error.into_panic();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in the closure"));

        let state = pool.run(&schema, |conn| Ok::<_, TenancyError>(session_state(conn))).await.unwrap();
        assert!(state.no_xid && state.own_transaction, "left in a transaction: {state:?}");
        assert_eq!(state.path, schema.as_str());
    });
    assert!(rows_of(&mut admin(), &schema).is_empty(), "the interrupted transaction committed");

    // Awaited directly by `block_on`, the panic unwinds the caller itself.
    let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
        current_thread().block_on(pool.run(&schema, |_| -> Result<(), TenancyError> { panic!("direct") }))
    }));
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"direct"));
}

/// Outside a tokio runtime the async API says so, as an error.
#[test]
fn awaiting_outside_a_tokio_runtime_is_a_typed_error() {
    let schemas = Schemas::create("async_nort", 1, ITEMS_DDL);
    let pool = pool_of(1);
    let future = pool.run(schemas.first(), |_| Ok::<_, TenancyError>(()));
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Err(TenancyError::NoRuntime)) => {}
        other => panic!("expected NoRuntime, got {other:?}"),
    }
}

/// A transaction whose future is dropped after its closure started ends as
/// its closure says (commit on `Ok`, rollback on `Err`); a closure whose
/// future is dropped before it started never runs.
#[test]
fn dropped_futures_end_their_work_as_the_closure_says() {
    let schemas = Schemas::create("async_drop", 1, ITEMS_DDL);
    let schema = schemas.first().clone();
    let pool = pool_of(1);
    current_thread().block_on(async {
        for commit in [true, false] {
            let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let s = schema.clone();
            let body = if commit { "committed after its future was dropped" } else { "rolled back" };
            let task = tokio::spawn(pool.run_transaction(&schema, move |conn| {
                insert_tagged(conn, &s, body)?;
                started_tx.send(()).unwrap();
                release_rx.recv_timeout(LIVENESS).unwrap();
                if commit {
                    Ok(())
                } else {
                    Err(TenancyError::Database(diesel::result::Error::RollbackTransaction))
                }
            }));
            started_rx.recv().await.unwrap();
            // While the closure runs: drop the future awaiting it.
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());

            // A second closure queued for the only connection, its future dropped before it starts.
            let ran = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&ran);
            let s = schema.clone();
            let queued = tokio::spawn(pool.run(&schema, move |conn| {
                flag.store(true, Ordering::SeqCst);
                insert_tagged(conn, &s, "must never run")?;
                Ok::<_, TenancyError>(())
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
            queued.abort();
            assert!(queued.await.unwrap_err().is_cancelled());
            release_tx.send(()).unwrap();

            // The next borrower of the only connection finds it clean, after both.
            let state = pool.run(&schema, |conn| Ok::<_, TenancyError>(session_state(conn))).await.unwrap();
            assert!(state.no_xid && state.own_transaction, "left in a transaction: {state:?}");
            let bodies: Vec<String> = rows_of(&mut admin(), &schema).into_iter().map(|r| r.body).collect();
            let expected: Vec<&str> = if commit { vec![body] } else { vec![] };
            assert_eq!(bodies, expected);
            assert!(!ran.load(Ordering::SeqCst), "a closure whose future was dropped before it started ran");
            diesel::sql_query(format!("TRUNCATE {}.items", schema.quoted())).execute(&mut admin()).unwrap();
        }
    });
}

/// What one task of the load did, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// One row, through `run`.
    Row,
    /// Two rows in a transaction that commits.
    Pair,
    /// Two rows in a transaction whose closure returns `Err`.
    Aborted,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ended {
    Ok,
    Err,
    Cancelled,
}

/// Hundreds of tasks over four tenants and a pool of four, a third of them
/// cancelled by `timeout` or `select!` at some point of their work; then
/// every tenant holds only its own rows, completed work is there, aborted
/// work is not, transactions are all or nothing, and every connection of
/// the pool is idle outside any transaction, scoped to whom it last served.
fn load_with_cancellations(runtime: Runtime, pool: TenantPool) {
    const TASKS: usize = 300;
    let schemas = Schemas::create("async_load", 4, ITEMS_DDL);
    let names = schemas.names.clone();
    // Behind a transaction pooler a checkout is one transaction: `now()` stays put within it.
    let checkout_is_a_transaction = pool.pooler_mode() == PoolerMode::Transaction;
    let outcomes: Vec<(usize, Kind, Ended)> = runtime.block_on(async {
        let mut handles = Vec::new();
        for i in 0..TASKS {
            let pool = pool.clone();
            let schema = names[i % names.len()].clone();
            handles.push(tokio::spawn(async move {
                let kind = match i % 3 {
                    0 => Kind::Row,
                    1 => Kind::Pair,
                    _ => Kind::Aborted,
                };
                let s = schema.clone();
                let work = async move {
                    match kind {
                        Kind::Row => {
                            pool.run(&schema, move |conn| {
                                insert_tagged(conn, &s, &format!("r{i}"))?;
                                Ok::<_, TenancyError>(())
                            })
                            .await
                        }
                        Kind::Pair | Kind::Aborted => {
                            pool.run_transaction(&schema, move |conn| {
                                insert_tagged(conn, &s, &format!("t{i}a"))?;
                                std::thread::sleep(Duration::from_micros((i % 7) as u64 * 100));
                                insert_tagged(conn, &s, &format!("t{i}b"))?;
                                match kind {
                                    Kind::Aborted => Err(TenancyError::Database(
                                        diesel::result::Error::RollbackTransaction,
                                    )),
                                    _ => Ok(()),
                                }
                            })
                            .await
                        }
                    }
                };
                let ended = match i % 6 {
                    // Cancelled at once, or after a little while: before, during or after the closure.
                    0 | 1 => {
                        match tokio::time::timeout(Duration::from_micros((i % 11) as u64 * 150), work).await {
                            Ok(result) => result.map_or(Ended::Err, |()| Ended::Ok),
                            Err(_) => Ended::Cancelled,
                        }
                    }
                    2 => tokio::select! {
                        result = work => result.map_or(Ended::Err, |()| Ended::Ok),
                        () = tokio::task::yield_now() => Ended::Cancelled,
                    },
                    _ => work.await.map_or(Ended::Err, |()| Ended::Ok),
                };
                (i, kind, ended)
            }));
        }
        let mut outcomes = Vec::new();
        for handle in handles {
            outcomes.push(handle.await.unwrap());
        }

        // Every connection of the pool at once (so every blocking task that
        // still held one has checked it in): what PostgreSQL says of each.
        let barrier = Arc::new(Barrier::new(names.len()));
        let mut checks = Vec::new();
        for schema in &names {
            let barrier = Arc::clone(&barrier);
            checks.push(tokio::spawn(pool.run(schema, move |conn| {
                barrier.wait();
                Ok::<_, TenancyError>((backend_pid(conn), session_state(conn)))
            })));
        }
        let mut pids = Vec::new();
        for (schema, check) in names.iter().zip(checks) {
            let (pid, state) = check.await.unwrap().unwrap();
            // Behind a pooler the checkout is itself a transaction; a leftover
            // one would show as a backend not idle below.
            assert!(
                state.no_xid && (state.own_transaction || checkout_is_a_transaction),
                "a connection was handed out in a transaction: {state:?}"
            );
            assert_eq!(state.path, schema.as_str());
            pids.push(pid.to_string());
        }
        let mut distinct = pids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), names.len(), "the check did not hold every connection at once");
        let pids = format!("{{{}}}", pids.join(","));
        let busy = count(
            &mut admin(),
            "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = ANY($1::int[]) AND state <> 'idle'",
            &[&pids],
        );
        assert_eq!(busy, 0, "a pooled connection is not idle (idle in transaction?) after the load");
        let state = pool.state();
        assert_eq!(state.idle_connections, state.connections, "a connection is still out after the load");
        outcomes
    });

    let cancelled = outcomes.iter().filter(|o| o.2 == Ended::Cancelled).count();
    let finished = outcomes.iter().filter(|o| o.2 == Ended::Ok).count();
    assert!(
        cancelled > 0 && finished > 0,
        "the load must both cancel and finish work: {cancelled} cancelled, {finished} finished"
    );

    let mut admin = admin();
    for (t, schema) in names.iter().enumerate() {
        let rows = rows_of(&mut admin, schema);
        assert!(rows.iter().all(|r| r.tenant == schema.as_str()), "{schema} holds another tenant's rows");
        let has = |body: &str| rows.iter().any(|r| r.body == body);
        for &(i, kind, ended) in outcomes.iter().filter(|o| o.0 % names.len() == t) {
            match kind {
                Kind::Row => {
                    if ended == Ended::Ok {
                        assert!(has(&format!("r{i}")), "{schema}: completed row r{i} missing");
                    }
                }
                Kind::Pair => {
                    let (a, b) = (has(&format!("t{i}a")), has(&format!("t{i}b")));
                    assert_eq!(a, b, "{schema}: transaction {i} half committed");
                    if ended == Ended::Ok {
                        assert!(a, "{schema}: completed transaction {i} missing");
                    }
                }
                Kind::Aborted => {
                    assert!(
                        !has(&format!("t{i}a")) && !has(&format!("t{i}b")),
                        "{schema}: aborted transaction {i} committed"
                    );
                    assert_ne!(ended, Ended::Ok);
                }
            }
        }
        // Nothing else: every row is one of this tenant's tasks.
        assert!(rows.iter().all(|r| {
            let i: usize =
                r.body.trim_start_matches(['r', 't']).trim_end_matches(['a', 'b']).parse().unwrap();
            i % names.len() == t
        }));
    }
}

#[test]
fn concurrent_load_with_cancelled_futures_on_a_multi_thread_runtime() {
    load_with_cancellations(multi_thread(), pool_of(4));
}

#[test]
fn concurrent_load_with_cancelled_futures_on_a_current_thread_runtime() {
    load_with_cancellations(current_thread(), pool_of(4));
}

/// The same load behind a real PgBouncer in transaction mode, where every
/// checkout is a transaction of its own.
#[test]
fn concurrent_load_with_cancelled_futures_behind_a_transaction_pooler() {
    let bouncer =
        PgBouncer::start_with(&url(), &PgBouncerConfig { pool_size: 4, ..PgBouncerConfig::default() })
            .unwrap_or_else(|e| {
                panic!("this test needs a real PgBouncer (scripts/test.sh installs it): {e}")
            });
    let pool = TenantPool::builder()
        .max_size(4)
        .connection_timeout(LIVENESS)
        .pooler_mode(PoolerMode::Transaction)
        .build(&bouncer.url())
        .unwrap();
    load_with_cancellations(multi_thread(), pool);
}

/// `check_tenant_async` answers from the pool's cache once a tenant is
/// proven, refuses unknown names, and a drop through this process is seen
/// at once.
#[test]
fn check_tenant_async_uses_the_cache_and_sees_drops() {
    let schemas = Schemas::create("async_check", 1, ITEMS_DDL);
    let schema = schemas.first().clone();
    let pool = pool_of(2);
    current_thread().block_on(async {
        pool.check_tenant_async(&schema).await.unwrap();
        let before = pool.state();
        for _ in 0..100 {
            pool.check_tenant_async(&schema).await.unwrap();
        }
        let after = pool.state();
        assert_eq!(
            after.hits + after.switches,
            before.hits + before.switches,
            "a cached check checked a connection out"
        );
        let unknown = SchemaName::new("async_check_never_provisioned").unwrap();
        assert!(matches!(pool.check_tenant_async(&unknown).await, Err(TenancyError::TenantNotFound { .. })));
        let p = pool.clone();
        let s = schema.clone();
        tokio::task::spawn_blocking(move || tenancy_core::drop_tenant(&p, &s)).await.unwrap().unwrap();
        assert!(matches!(pool.check_tenant_async(&schema).await, Err(TenancyError::TenantNotFound { .. })));
    });
}

/// A scoped DAL function: adds a row and counts, through whatever scope it is given.
#[tenant_scoped(ctx = scope)]
fn add_and_count(scope: impl Scope, tenant: &SchemaName) -> Result<i64, TenancyError> {
    insert_tagged(conn, tenant, "from the DAL")?;
    Ok(items::table.count().get_result(conn)?)
}

/// Scoped DAL code runs inside the async API on the closure's connection,
/// inside its transaction, without a second checkout (on a pool of one,
/// one would time out).
#[test]
fn scoped_dal_functions_run_on_the_closures_connection() {
    let schemas = Schemas::create("async_dal", 1, ITEMS_DDL);
    let schema = schemas.first().clone();
    let pool = TenantPool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(500))
        .build(&url())
        .unwrap();
    current_thread().block_on(async {
        let s = schema.clone();
        let seen = pool
            .run_transaction(&schema, move |conn| {
                add_and_count(&mut *conn, &s)?;
                add_and_count(&mut *conn, &s)
            })
            .await
            .unwrap();
        assert_eq!(seen, 2, "the second call saw the first's uncommitted row");
        let s = schema.clone();
        let tenant = pool.for_tenant(schema.clone());
        assert_eq!(tenant.run(move |conn| add_and_count(conn, &s)).await.unwrap(), 3);
    });
}
