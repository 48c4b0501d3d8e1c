//! Isolation that survives misbehaving borrowers, PgBouncer in transaction
//! mode, load and faults: every row written is tagged with the tenant that
//! wrote it, and every schema is audited directly (outside the pool) at the
//! end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Text};
use tenancy_core::{PoolerMode, SchemaName, TenancyError, TenantPool};
use tenancy_devdb::pgbouncer::{PgBouncer, PgBouncerConfig};
use tenancy_tests::{
    admin, backend_pid, count, current_schemas, insert_tagged, items, pool_of_one, rows_of, scalar_i64,
    search_path, tags, temp_database, unique_schema, url, Row, Schemas, Silent, ITEMS_DDL,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A PgBouncer in transaction mode in front of the test PostgreSQL. Tests
/// that need it fail (never pass silently) when it cannot be started.
fn bouncer(pool_size: u32) -> PgBouncer {
    let config = PgBouncerConfig { pool_size, ..PgBouncerConfig::default() };
    PgBouncer::start_with(&url(), &config).unwrap_or_else(|e| {
        panic!(
            "this test needs a real PgBouncer (scripts/test.sh installs it: apt-get install pgbouncer): {e}"
        )
    })
}

/// What a connection handed out for `tenant` must look like: scoped to the
/// tenant alone, outside any transaction, and carrying no session state a
/// previous borrower could have left (settings, temporary objects, cursors,
/// prepared statements, advisory locks, listeners). Also writes a row and
/// checks that it landed in the tenant's schema.
fn assert_clean(conn: &mut PgConnection, tenant: &SchemaName, case: &str) {
    assert_clean_in(conn, tenant, case, false);
}

/// [`assert_clean`] inside a transaction the pool opened.
fn assert_clean_in(conn: &mut PgConnection, tenant: &SchemaName, case: &str, in_transaction: bool) {
    assert_eq!(current_schemas(conn), vec![tenant.to_string()], "{case}: schemas searched");
    let path = search_path(conn);
    // `SET` normalizes the value (quotes only where needed), `set_config` keeps it verbatim.
    assert_eq!(path.replace('"', ""), format!("{tenant}, pg_temp"), "{case}: search_path");
    // Two statements share a transaction timestamp only inside one transaction.
    let mut xact_start = || -> String {
        diesel::select(diesel::dsl::sql::<Text>("transaction_timestamp()::text")).get_result(conn).unwrap()
    };
    let not_in_transaction = xact_start() != xact_start();
    if !in_transaction {
        assert!(not_in_transaction, "{case}: the connection was handed out inside a transaction");
    }
    for (what, sql) in [
        (
            "session settings",
            "(SELECT count(*) FROM pg_settings WHERE source = 'session' AND name NOT IN ('search_path', 'client_encoding', 'TimeZone'))",
        ),
        ("temporary objects", "(SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())"),
        ("open cursors", "(SELECT count(*) FROM pg_cursors WHERE name <> '')"),
        ("prepared statements", "(SELECT count(*) FROM pg_prepared_statements WHERE from_sql)"),
        (
            "advisory locks",
            "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())",
        ),
        ("listened channels", "(SELECT count(*) FROM pg_listening_channels())"),
    ] {
        assert_eq!(scalar_i64(conn, sql), 0, "{case}: {what} left by a previous borrower");
    }
    let seen = tags(conn);
    assert!(seen.iter().all(|t| t == tenant.as_str()), "{case}: {tenant} reads rows of {seen:?}");
    let body = format!("clean-check {case}");
    insert_tagged(conn, tenant, &body).unwrap();
    let landed = rows_of(&mut admin(), tenant);
    assert!(landed.iter().any(|r| r.body == body), "{case}: the write did not land in {tenant}");
}

/// How the pool must treat a borrower's statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Same physical connection: re-scoped, or restored in place.
    Kept,
    /// The physical connection is replaced.
    Retired,
}

/// Runs each hostile statement on a pool of one (so the next borrower gets
/// the very same physical connection, if it is kept), then checks that the
/// next borrowers, of the same tenant and of another, start clean.
fn misbehave(cases: &[(&str, Expect)]) {
    let schemas = Schemas::create("misbehave", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool_of_one();
    for (template, expect) in cases {
        let sql = template.replace("{a}", &a.quoted()).replace("{b}", &b.quoted());
        let mut conn = pool.tenant(a).unwrap();
        let pid = backend_pid(&mut conn);
        conn.batch_execute(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(conn);
        let mut conn = pool.tenant(a).unwrap();
        let next_pid = backend_pid(&mut conn);
        match expect {
            Expect::Kept => assert_eq!(next_pid, pid, "{sql}: the connection should have been kept"),
            Expect::Retired => assert_ne!(next_pid, pid, "{sql}: the connection should have been retired"),
        }
        assert_clean(&mut conn, a, &sql);
        drop(conn);
        assert_clean(&mut pool.tenant(b).unwrap(), b, &sql);
        pool.transaction(a, |c| {
            assert_clean_in(c, a, &sql, true);
            Ok::<_, TenancyError>(())
        })
        .unwrap();
    }
    // Nothing any of them did reached another tenant.
    let mut admin = admin();
    for s in [a, b] {
        assert!(rows_of(&mut admin, s).iter().all(|r| r.tenant == s.as_str()), "{s} holds foreign rows");
    }
}

// ---------------------------------------------------------------------------
// Borrowers who misbehave, each with a pool of one
// ---------------------------------------------------------------------------

#[test]
fn borrower_changing_search_path_does_not_poison_next_borrower() {
    misbehave(&[
        ("SET search_path TO public", Expect::Kept),
        ("SET search_path TO {b}", Expect::Kept),
        ("set SESSION search_path = {b}", Expect::Kept),
        ("SET \"search_path\" TO {b}", Expect::Kept),
        ("SELECT 1; SET search_path TO {b}", Expect::Kept),
        ("/* comment */ SET search_path TO {b}", Expect::Kept),
        ("RESET search_path", Expect::Kept),
    ]);
}

#[test]
fn borrower_resetting_or_discarding_session_does_not_poison_next_borrower() {
    misbehave(&[
        ("RESET ALL", Expect::Kept),
        ("DISCARD ALL", Expect::Retired),
        ("DISCARD PLANS", Expect::Kept),
        ("SET statement_timeout = 1", Expect::Kept),
        ("SET application_name = 'borrowed'", Expect::Kept),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", Expect::Kept),
        ("SET TIME ZONE 'Europe/Paris'", Expect::Kept),
        ("PREPARE leftover AS SELECT tenant FROM items", Expect::Retired),
        ("LISTEN leftover_channel", Expect::Kept),
    ]);
}

#[test]
fn borrower_calling_set_config_does_not_poison_next_borrower() {
    misbehave(&[
        ("SELECT set_config('search_path', '{b}', false)", Expect::Kept),
        ("SELECT pg_catalog.set_config('search_path', 'public', false)", Expect::Kept),
        ("SELECT \"set_config\"('search_path', '{b}', false)", Expect::Kept),
        ("SELECT set_config('statement_timeout', '1', false)", Expect::Kept),
        // Quotes and semicolons that could hide the call from a naive scanner.
        ("SELECT 'x;', set_config('search_path', '{b}', false)", Expect::Kept),
        ("SELECT E'\\'', set_config('search_path', '{b}', false)", Expect::Kept),
        ("SELECT $$'$$, set_config('search_path', '{b}', false)", Expect::Kept),
        ("SELECT $q$ ' $q$, set_config('search_path', '{b}', false)", Expect::Kept),
        ("SELECT 1 /* ' */, set_config('search_path', '{b}', false)", Expect::Kept),
        ("WITH s AS (SELECT set_config('search_path', '{b}', false)) SELECT * FROM s", Expect::Kept),
        ("DO $$BEGIN PERFORM set_config('search_path', '{b}', false); END$$", Expect::Kept),
        ("DO $$BEGIN SET search_path TO {b}; END$$", Expect::Kept),
        ("DO $body$BEGIN EXECUTE 'SET statement_timeout = 1'; END$body$", Expect::Kept),
    ]);
}

#[test]
fn borrower_leaving_a_transaction_open_does_not_poison_next_borrower() {
    misbehave(&[
        ("BEGIN; INSERT INTO items (tenant, body) VALUES ('left open', 'x')", Expect::Kept),
        ("START TRANSACTION; SET LOCAL search_path TO {b}", Expect::Kept),
        ("BEGIN; SET search_path TO {b}", Expect::Kept),
        ("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE", Expect::Kept),
        ("BEGIN; SELECT 1; COMMIT", Expect::Kept),
    ]);
    // Nothing of an abandoned transaction was committed.
    let schemas = Schemas::create("opentx", 1, ITEMS_DDL);
    let pool = pool_of_one();
    let mut conn = pool.tenant(schemas.first()).unwrap();
    conn.batch_execute("BEGIN; INSERT INTO items (tenant, body) VALUES ('left open', 'x')").unwrap();
    drop(conn);
    assert!(rows_of(&mut admin(), schemas.first()).is_empty(), "an abandoned transaction was committed");
}

#[test]
fn borrower_creating_temporary_objects_cannot_shadow_tenant_tables() {
    misbehave(&[
        ("CREATE TEMP TABLE items (id bigint, tenant text, body text)", Expect::Retired),
        ("CREATE TEMPORARY VIEW items AS SELECT * FROM {b}.items", Expect::Retired),
        ("CREATE OR REPLACE TEMP VIEW items AS SELECT * FROM {b}.items", Expect::Retired),
        ("CREATE LOCAL TEMPORARY TABLE items (id bigint, tenant text, body text)", Expect::Retired),
        ("CREATE TABLE pg_temp.items (id bigint, tenant text, body text)", Expect::Retired),
        ("SELECT * INTO TEMP items FROM {b}.items", Expect::Retired),
        ("CREATE TEMP SEQUENCE items_id_seq", Expect::Retired),
        ("CREATE TABLE pg_temp.items AS SELECT * FROM {b}.items", Expect::Retired),
    ]);
}

#[test]
fn borrower_holding_session_locks_or_cursors_does_not_poison_next_borrower() {
    misbehave(&[
        ("SELECT pg_advisory_lock(424242)", Expect::Kept),
        ("SELECT pg_try_advisory_lock_shared(424243)", Expect::Kept),
        ("BEGIN; DECLARE leftover CURSOR WITH HOLD FOR SELECT tenant FROM items; COMMIT", Expect::Kept),
    ]);
    // The lock is really released for everybody else.
    let pool = pool_of_one();
    let schemas = Schemas::create("lock", 1, ITEMS_DDL);
    let mut conn = pool.tenant(schemas.first()).unwrap();
    diesel::sql_query("SELECT pg_advisory_lock(434343)").execute(&mut *conn).unwrap();
    drop(conn);
    let free: bool = diesel::select(diesel::dsl::sql::<Bool>("pg_try_advisory_lock(434343)"))
        .get_result(&mut admin())
        .unwrap();
    assert!(free, "a session advisory lock outlived its borrower");
}

#[test]
fn transaction_body_changing_session_state_does_not_poison_next_borrower() {
    let schemas = Schemas::create("txbody", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool_of_one();
    for template in [
        "SET search_path TO {b}",
        "SELECT set_config('search_path', '{b}', false)",
        "CREATE TEMP TABLE items (id bigint, tenant text, body text)",
        "SET statement_timeout = 1",
    ] {
        let sql = template.replace("{b}", &b.quoted());
        pool.transaction(a, |c| c.batch_execute(&sql).map_err(TenancyError::from)).unwrap();
        assert_clean(&mut pool.tenant(a).unwrap(), a, &sql);
        pool.transaction(a, |c| {
            assert_clean_in(c, a, &sql, true);
            Ok::<_, TenancyError>(())
        })
        .unwrap();
    }
    let _ = b;
}

#[test]
fn borrower_replacing_instrumentation_gets_the_connection_retired() {
    let schemas = Schemas::create("instr", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool_of_one();
    let mut conn = pool.tenant(a).unwrap();
    let pid = backend_pid(&mut conn);
    // The pool can no longer see what this borrower sends.
    conn.set_instrumentation(Silent);
    conn.batch_execute(&format!("SET search_path TO {}", b.quoted())).unwrap();
    drop(conn);
    let mut conn = pool.tenant(a).unwrap();
    assert_ne!(backend_pid(&mut conn), pid);
    assert_clean(&mut conn, a, "replaced instrumentation");
}

// ---------------------------------------------------------------------------
// PgBouncer in transaction mode
// ---------------------------------------------------------------------------

fn server_version_num(conn: &mut PgConnection) -> i32 {
    diesel::select(diesel::dsl::sql::<Integer>("current_setting('server_version_num')::int"))
        .get_result(conn)
        .unwrap()
}

#[test]
fn session_search_path_leaks_between_clients_through_pgbouncer_transaction_mode() {
    let schemas = Schemas::create("leak", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    // One server connection: every client of PgBouncer shares it.
    let bouncer = bouncer(1);
    let mut first = PgConnection::establish(&bouncer.url()).unwrap();
    let mut second = PgConnection::establish(&bouncer.url()).unwrap();
    first.batch_execute(&format!("SET search_path TO {}", a.quoted())).unwrap();
    // The second client never set anything, yet it runs in the first one's tenant.
    let seen = search_path(&mut second);
    second.batch_execute(&format!("INSERT INTO items (tenant, body) VALUES ('{b}', 'meant for b')")).unwrap();
    let mut admin = admin();
    let in_a = rows_of(&mut admin, a);
    if server_version_num(&mut admin) < 180_000 {
        assert_eq!(
            seen.trim_matches('"'),
            a.as_str(),
            "the hazard: a session SET leaks to another PgBouncer client"
        );
        assert_eq!(in_a.len(), 1, "the other client's write landed in {a}");
        assert_eq!(in_a[0].tenant, b.as_str());
    }
}

#[test]
fn transaction_mode_pool_does_not_leak_through_pgbouncer() {
    let schemas = Schemas::create("noleak", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let bouncer = bouncer(1);
    // Another client of the same PgBouncer poisons the (single) server session.
    let mut poisoner = PgConnection::establish(&bouncer.url()).unwrap();
    poisoner.batch_execute(&format!("SET search_path TO {}", b.quoted())).unwrap();
    let pool =
        TenantPool::builder().pooler_mode(PoolerMode::Transaction).max_size(3).build(&bouncer.url()).unwrap();
    // A checkout is scoped inside a transaction: the poisoned session setting never applies.
    for tenant in [a, b] {
        let mut conn = pool.tenant(tenant).unwrap();
        assert_eq!(current_schemas(&mut conn), vec![tenant.to_string()]);
        insert_tagged(&mut conn, tenant, "checkout").unwrap();
        conn.close().unwrap();
        assert_eq!(search_path(&mut poisoner).trim_matches('"'), b.as_str());
    }
    assert_eq!(current_schemas(&mut pool.shared().unwrap()), ["public"]);
    for round in 0..20 {
        let tenant = if round % 2 == 0 { a } else { b };
        pool.transaction(tenant, |c| {
            assert_eq!(current_schemas(c), vec![tenant.to_string()]);
            insert_tagged(c, tenant, &format!("round {round}"))?;
            assert!(tags(c).iter().all(|t| t == tenant.as_str()));
            Ok::<_, TenancyError>(())
        })
        .unwrap();
        // SET LOCAL ended with the transaction: the poisoner still sees its own setting.
        assert_eq!(search_path(&mut poisoner).trim_matches('"'), b.as_str());
    }
    let mut admin = admin();
    for s in [a, b] {
        let rows = rows_of(&mut admin, s);
        assert_eq!(rows.len(), 11, "ten transactions and one checkout each");
        assert!(rows.iter().all(|r| r.tenant == s.as_str()));
    }
    // A missing tenant is still TenantNotFound behind PgBouncer.
    let missing = unique_schema("missing");
    let err = pool.transaction(&missing, |_| Ok::<_, TenancyError>(())).unwrap_err();
    assert!(err.is_tenant_not_found(), "{err}");
}

/// PgBouncer 1.18 cannot route named prepared statements in transaction mode;
/// the pool disables diesel's statement cache, so bound queries work.
#[test]
fn transaction_mode_pool_runs_bound_queries_through_pgbouncer() {
    let schemas = Schemas::create("bound", 3, ITEMS_DDL);
    let bouncer = bouncer(2);
    let pool =
        TenantPool::builder().pooler_mode(PoolerMode::Transaction).max_size(4).build(&bouncer.url()).unwrap();
    for round in 0..30 {
        let tenant = &schemas.names[round % 3];
        let n = pool
            .transaction(tenant, |c| {
                insert_tagged(c, tenant, "bound")?;
                let n: i64 = items::table.filter(items::tenant.eq(tenant.as_str())).count().get_result(c)?;
                Ok::<_, TenancyError>(n)
            })
            .unwrap();
        assert_eq!(n as usize, round / 3 + 1);
    }
}

#[test]
fn transaction_body_changing_session_state_through_pgbouncer_does_not_reach_later_transactions() {
    let schemas = Schemas::create("bncbody", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let bouncer = bouncer(1);
    let pool =
        TenantPool::builder().pooler_mode(PoolerMode::Transaction).max_size(2).build(&bouncer.url()).unwrap();
    for template in ["SET search_path TO {b}", "SELECT set_config('search_path', '{b}', false)"] {
        let sql = template.replace("{b}", &b.quoted());
        // Committing would hand the change to the pooler's other clients: refused and rolled back.
        let refused = pool.transaction(a, |c| c.batch_execute(&sql).map_err(TenancyError::from));
        assert!(matches!(refused, Err(TenancyError::SessionStateRefused)), "{sql}: {refused:?}");
        for _ in 0..3 {
            pool.transaction(a, |c| {
                assert_eq!(current_schemas(c), vec![a.to_string()], "{sql}");
                insert_tagged(c, a, &sql)?;
                Ok::<_, TenancyError>(())
            })
            .unwrap();
        }
    }
    assert!(rows_of(&mut admin(), a).iter().all(|r| r.tenant == a.as_str()));
}

/// Temporary tables live in the server session, which PgBouncer hands to the
/// next client's transaction; since `pg_temp` is searched before the tenant
/// schema unless the search path names it, a temporary `items` left by one
/// transaction would shadow the tenant's `items` in the next. The pool must
/// name `pg_temp` last in every search path it sets.
#[test]
fn temporary_table_left_through_pgbouncer_cannot_shadow_tenant_tables() {
    let schemas = Schemas::create("bnctemp", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let bouncer = bouncer(1);
    let pool =
        TenantPool::builder().pooler_mode(PoolerMode::Transaction).max_size(2).build(&bouncer.url()).unwrap();
    let _ = pool.transaction(b, |c| {
        c.batch_execute("CREATE TEMP TABLE items AS SELECT * FROM items").map_err(TenancyError::from)
    });
    // Another client of the same PgBouncer may do it too.
    let mut other = PgConnection::establish(&bouncer.url()).unwrap();
    let _ = other.batch_execute("CREATE TEMP TABLE items (id bigserial, tenant text, body text)");
    pool.transaction(a, |c| {
        insert_tagged(c, a, "after temp")?;
        Ok::<_, TenancyError>(())
    })
    .unwrap();
    let landed = rows_of(&mut admin(), a);
    assert_eq!(landed.len(), 1, "a write for {a} went to a temporary table left on the server session");
}

// ---------------------------------------------------------------------------
// Load: soak and faults, audited row by row
// ---------------------------------------------------------------------------

/// What each tenant must (and must not) hold at the end.
#[derive(Default)]
struct TenantLedger {
    /// Writes whose transaction (or autocommit statement) returned Ok.
    committed: HashSet<String>,
    /// Writes that returned an error: the commit may or may not have happened.
    uncertain: HashSet<String>,
    /// Writes rolled back (the body returned Err or panicked).
    rolled_back: HashSet<String>,
}

#[derive(Default)]
struct Ledger {
    tenants: Mutex<HashMap<String, TenantLedger>>,
    wrong_reads: AtomicUsize,
    errors: AtomicUsize,
    panics: AtomicUsize,
    ok: AtomicUsize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    Uncertain,
    RolledBack,
}

impl Ledger {
    fn record(&self, tenant: &SchemaName, body: String, outcome: Outcome) {
        let mut tenants = self.tenants.lock().unwrap();
        let entry = tenants.entry(tenant.to_string()).or_default();
        match outcome {
            Outcome::Committed => entry.committed.insert(body),
            Outcome::Uncertain => entry.uncertain.insert(body),
            Outcome::RolledBack => entry.rolled_back.insert(body),
        };
    }

    /// Reads every schema directly and checks it against the ledger: only its
    /// own tenant's rows, every committed write present, no rolled-back one.
    fn audit(&self, url: &str, tenants: &[SchemaName]) -> usize {
        let mut conn = PgConnection::establish(url).unwrap();
        let ledger = self.tenants.lock().unwrap();
        let empty = TenantLedger::default();
        let mut total = 0;
        for tenant in tenants {
            let rows = rows_of(&mut conn, tenant);
            let expected = ledger.get(tenant.as_str()).unwrap_or(&empty);
            let foreign: Vec<&Row> = rows.iter().filter(|r| r.tenant != tenant.as_str()).collect();
            assert!(foreign.is_empty(), "{tenant} holds rows of other tenants: {foreign:?}");
            let bodies: HashSet<&str> = rows.iter().map(|r| r.body.as_str()).collect();
            assert_eq!(bodies.len(), rows.len(), "{tenant}: a write landed twice");
            let lost: Vec<&String> =
                expected.committed.iter().filter(|b| !bodies.contains(b.as_str())).collect();
            assert!(lost.is_empty(), "{tenant}: committed writes lost: {lost:?}");
            for body in &bodies {
                assert!(
                    expected.committed.contains(*body) || expected.uncertain.contains(*body),
                    "{tenant}: holds {body:?}, which was never written there or was rolled back"
                );
                assert!(
                    !expected.rolled_back.contains(*body),
                    "{tenant}: rolled-back write {body:?} is present"
                );
            }
            total += rows.len();
        }
        total
    }
}

/// The kinds of work the load mixes.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Transaction: insert, read back, commit.
    Write,
    /// Transaction: insert, then the body returns Err (rolled back).
    Abort,
    /// Session checkout: insert in autocommit, read (a transaction behind PgBouncer).
    SessionWrite,
    /// Read only, checking every row belongs to the tenant.
    Read,
    /// Transaction: insert, then the body panics (rolled back; the panic reaches the caller).
    Panic,
}

const INTENDED_PANIC: &str = "a transaction body panics (intended)";

/// Keeps the intended panics of the load out of the test output; every other
/// panic is reported as usual.
fn quiet_intended_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INTENDED_PANIC) {
                default(info);
            }
        }));
    });
}

fn read_check(conn: &mut PgConnection, tenant: &SchemaName, ledger: &Ledger) -> QueryResult<()> {
    let seen: Vec<String> = items::table.select(items::tenant).distinct().load(conn)?;
    if seen.iter().any(|t| t != tenant.as_str()) {
        ledger.wrong_reads.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Runs one operation for `tenant` and records what must be in the database
/// afterwards. Returns whether it succeeded as intended.
fn run_op(pool: &TenantPool, tenant: &SchemaName, op: Op, body: String, ledger: &Ledger) -> bool {
    let session = pool.pooler_mode() == PoolerMode::Session;
    let result: Result<(), TenancyError> = match op {
        Op::Write => pool.transaction(tenant, |c| {
            insert_tagged(c, tenant, &body)?;
            read_check(c, tenant, ledger)?;
            Ok(())
        }),
        Op::Abort => {
            let r = pool.transaction(tenant, |c| {
                insert_tagged(c, tenant, &body)?;
                Err::<(), _>(TenancyError::Database(diesel::result::Error::RollbackTransaction))
            });
            ledger.record(tenant, body, Outcome::RolledBack);
            return matches!(r, Err(TenancyError::Database(diesel::result::Error::RollbackTransaction)));
        }
        Op::SessionWrite if session => pool.tenant(tenant).and_then(|mut c| {
            insert_tagged(&mut c, tenant, &body)?;
            read_check(&mut c, tenant, ledger)?;
            Ok(())
        }),
        Op::SessionWrite => pool.transaction(tenant, |c| {
            insert_tagged(c, tenant, &body)?;
            insert_tagged(c, tenant, &format!("{body}-second"))?;
            Ok(())
        }),
        Op::Read if session => pool
            .tenant(tenant)
            .and_then(|mut c| read_check(&mut c, tenant, ledger).map_err(TenancyError::from)),
        Op::Read => pool.transaction(tenant, |c| read_check(c, tenant, ledger).map_err(TenancyError::from)),
        Op::Panic => {
            quiet_intended_panics();
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.transaction(tenant, |c| {
                    insert_tagged(c, tenant, &body)?;
                    std::panic::panic_any(INTENDED_PANIC);
                    #[allow(unreachable_code)]
                    Ok::<(), TenancyError>(())
                })
            }));
            ledger.record(tenant, body, Outcome::RolledBack);
            return match r {
                Err(_) => {
                    ledger.panics.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Ok(r) => r.is_ok(),
            };
        }
    };
    let writes = matches!(op, Op::Write | Op::SessionWrite);
    match result {
        Ok(()) => {
            ledger.ok.fetch_add(1, Ordering::Relaxed);
            if writes {
                if matches!(op, Op::SessionWrite) && !session {
                    ledger.record(tenant, format!("{body}-second"), Outcome::Committed);
                }
                ledger.record(tenant, body, Outcome::Committed);
            }
            true
        }
        Err(_) => {
            ledger.errors.fetch_add(1, Ordering::Relaxed);
            if writes {
                if matches!(op, Op::SessionWrite) && !session {
                    ledger.record(tenant, format!("{body}-second"), Outcome::Uncertain);
                }
                ledger.record(tenant, body, Outcome::Uncertain);
            }
            false
        }
    }
}

const SOAK_OPS: [Op; 4] = [Op::Write, Op::SessionWrite, Op::Read, Op::Abort];

#[test]
fn soak_200_tenants_8_threads_through_pgbouncer_and_directly_never_mixes_tenants() {
    const THREADS: usize = 8;
    const TENANTS: usize = 200;
    const ROUNDS: usize = 4;
    let tenants = Arc::new(Schemas::create("soak", TENANTS, ITEMS_DDL));
    let bouncer = bouncer(4);
    let through_bouncer =
        TenantPool::builder().pooler_mode(PoolerMode::Transaction).max_size(8).build(&bouncer.url()).unwrap();
    let direct =
        TenantPool::builder().max_size(6).max_tenants_per_connection(Some(50)).build(&url()).unwrap();
    let ledger = Arc::new(Ledger::default());
    // Another PgBouncer client keeps leaving session search paths on the
    // shared server connections while the load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let poisoner = {
        let (stop, tenants, url) = (stop.clone(), tenants.clone(), bouncer.url());
        std::thread::spawn(move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let target = &tenants.names[i % TENANTS];
                conn.batch_execute(&format!("SET search_path TO {}", target.quoted())).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            i
        })
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (tenants, ledger, pools) =
                (tenants.clone(), ledger.clone(), [through_bouncer.clone(), direct.clone()]);
            std::thread::spawn(move || {
                for i in 0..TENANTS * ROUNDS {
                    // Every thread visits every tenant, each in its own order.
                    let tenant = &tenants.names[(i * 7 + t * 29 + i / TENANTS) % TENANTS];
                    for (p, pool) in pools.iter().enumerate() {
                        let op = SOAK_OPS[(i + t + p) % SOAK_OPS.len()];
                        let body = format!("soak-{t}-{i}-{p}");
                        assert!(
                            run_op(pool, tenant, op, body, &ledger),
                            "{op:?} failed for {tenant} without any fault"
                        );
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let poisonings = poisoner.join().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(ledger.wrong_reads.load(Ordering::Relaxed), 0, "a read saw another tenant's rows");
    assert_eq!(ledger.errors.load(Ordering::Relaxed), 0);
    let total = ledger.audit(&url(), &tenants.names);
    let committed: usize = ledger.tenants.lock().unwrap().values().map(|l| l.committed.len()).sum();
    assert_eq!(total, committed, "exactly the committed writes are present");
    assert!(poisonings > 0);
    eprintln!(
        "soak: {} operations, {total} rows audited across {TENANTS} schemas, {poisonings} session SETs by another PgBouncer client, {elapsed:?}",
        THREADS * TENANTS * ROUNDS * 2
    );
}

/// Runs the mixed load on every pool from `threads` threads until `stop`.
fn spawn_load(
    pools: Vec<TenantPool>,
    tenants: Arc<Vec<SchemaName>>,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    threads: usize,
    ops: &'static [Op],
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|t| {
            let (pools, tenants, ledger, stop) =
                (pools.clone(), tenants.clone(), ledger.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let pool = &pools[(t + i) % pools.len()];
                    let tenant = &tenants[(i * 7 + t * 13) % tenants.len()];
                    let op = ops[(i / pools.len() + t) % ops.len()];
                    run_op(pool, tenant, op, format!("load-{t}-{i}"), &ledger);
                    i += 1;
                }
            })
        })
        .collect()
}

/// After the faults stop, every tenant is served again without anyone
/// rebuilding the pool: transactions at once (their opening statement
/// retries past dead connections), session checkouts after at most one
/// error per dead idle connection.
fn assert_recovers(pool: &TenantPool, tenants: &[SchemaName], ledger: &Ledger, dead_allowance: usize) {
    for tenant in tenants {
        assert!(
            run_op(pool, tenant, Op::Write, format!("recovered-{}", unique_schema("r")), ledger),
            "{tenant}"
        );
    }
    if pool.pooler_mode() == PoolerMode::Session {
        let mut failures = 0;
        for tenant in tenants {
            while !run_op(
                pool,
                tenant,
                Op::SessionWrite,
                format!("recovered-session-{}", unique_schema("r")),
                ledger,
            ) {
                failures += 1;
                assert!(
                    failures <= dead_allowance,
                    "session checkouts keep failing after the faults stopped"
                );
            }
        }
    }
}

#[test]
fn backends_terminated_and_bodies_panicking_under_load_lose_nothing_and_mix_nothing() {
    // A database of this test's own, so that terminating its backends touches nobody else.
    let db = temp_database("faults");
    let tenants = Schemas::create_on(db.url(), "fault", 24, ITEMS_DDL);
    let bouncer = bouncer(3);
    let direct = TenantPool::builder()
        .max_size(4)
        .connection_timeout(Duration::from_secs(5))
        .max_tenants_per_connection(Some(8))
        .build(db.url())
        .unwrap();
    let through_bouncer = TenantPool::builder()
        .pooler_mode(PoolerMode::Transaction)
        .max_size(4)
        .connection_timeout(Duration::from_secs(5))
        .build(&bouncer.url_for(db.name()))
        .unwrap();
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let names = Arc::new(tenants.names.clone());
    const OPS: [Op; 6] = [Op::Write, Op::SessionWrite, Op::Panic, Op::Write, Op::Read, Op::Abort];
    let workers = spawn_load(
        vec![direct.clone(), through_bouncer.clone()],
        names.clone(),
        ledger.clone(),
        stop.clone(),
        6,
        &OPS,
    );
    // Kill a random backend of this database every 50 ms, for 4 seconds.
    let mut killer = db.connect().unwrap();
    let mut killed = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        killed += count(
            &mut killer,
            "SELECT count(pg_terminate_backend(pid)) AS n FROM (SELECT pid FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' \
             ORDER BY random() LIMIT 1) victims",
            &[db.name()],
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let errors = ledger.errors.load(Ordering::Relaxed);
    assert!(killed > 20, "the fault injector killed only {killed} backends");
    assert!(errors > 0, "{killed} backends died mid-load, yet no caller saw an error");
    assert!(ledger.panics.load(Ordering::Relaxed) > 0, "panics reach the callers");
    assert_eq!(ledger.wrong_reads.load(Ordering::Relaxed), 0, "a read saw another tenant's rows");
    assert_recovers(&direct, &names, &ledger, 5);
    assert_recovers(&through_bouncer, &names, &ledger, 5);
    let total = ledger.audit(db.url(), &names);
    eprintln!(
        "faults: {killed} backends killed, {} ok, {errors} errors reached callers, {} panics, {total} rows audited",
        ledger.ok.load(Ordering::Relaxed),
        ledger.panics.load(Ordering::Relaxed)
    );
    drop(tenants);
}

#[test]
fn exhausted_pool_times_out_callers_then_serves_them_again() {
    let schemas = Schemas::create("exhaust", 4, ITEMS_DDL);
    let pool = TenantPool::builder()
        .max_size(2)
        .connection_timeout(Duration::from_millis(300))
        .build(&url())
        .unwrap();
    let ledger = Arc::new(Ledger::default());
    // Two borrowers hold every connection, one inside a transaction.
    let held = pool.tenant(&schemas.names[0]).unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let in_tx = {
        let (pool, tenant) = (pool.clone(), schemas.names[1].clone());
        std::thread::spawn(move || {
            pool.transaction(&tenant, |c| {
                insert_tagged(c, &tenant, "held transaction")?;
                released.recv().unwrap();
                Ok::<_, TenancyError>(())
            })
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let (pool, tenant) = (pool.clone(), schemas.names[i % 4].clone());
            std::thread::spawn(move || pool.transaction(&tenant, |_| Ok::<_, TenancyError>(())))
        })
        .collect();
    for w in waiters {
        match w.join().unwrap() {
            Err(TenancyError::PoolTimeout { timeout, .. }) => assert_eq!(timeout, Duration::from_millis(300)),
            other => panic!("expected PoolTimeout while the pool is exhausted, got {other:?}"),
        }
    }
    drop(held);
    release.send(()).unwrap();
    in_tx.join().unwrap().unwrap();
    // Everybody is served again, by the same two connections.
    for tenant in &schemas.names {
        assert!(run_op(&pool, tenant, Op::Write, format!("after-{tenant}"), &ledger));
        assert!(run_op(&pool, tenant, Op::SessionWrite, format!("after-session-{tenant}"), &ledger));
    }
    assert_eq!(pool.state().connections, 2);
    ledger.record(&schemas.names[1], String::from("held transaction"), Outcome::Committed);
    ledger.audit(&url(), &schemas.names);
}

/// Runs the mixed load directly and through PgBouncer against `db_url`,
/// calls `outage` in the middle, and checks what the callers and the
/// database saw: errors during the outage, none of them silent, nothing
/// mixed or lost, and both pools serving again by themselves.
fn outage_under_load(db_url: &str, outage: impl FnOnce()) {
    let tenants = Schemas::create_on(db_url, "outage", 12, ITEMS_DDL);
    let bouncer =
        PgBouncer::start(db_url).unwrap_or_else(|e| panic!("this test needs a real PgBouncer: {e}"));
    let direct =
        TenantPool::builder().max_size(4).connection_timeout(Duration::from_secs(1)).build(db_url).unwrap();
    let through_bouncer = TenantPool::builder()
        .pooler_mode(PoolerMode::Transaction)
        .max_size(4)
        .connection_timeout(Duration::from_secs(1))
        .build(&bouncer.url())
        .unwrap();
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let names = Arc::new(tenants.names.clone());
    const OPS: [Op; 4] = [Op::Write, Op::SessionWrite, Op::Read, Op::Abort];
    let workers = spawn_load(
        vec![direct.clone(), through_bouncer.clone()],
        names.clone(),
        ledger.clone(),
        stop.clone(),
        4,
        &OPS,
    );
    std::thread::sleep(Duration::from_millis(800));
    let ok_before = ledger.ok.load(Ordering::Relaxed);
    outage();
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(ok_before > 0, "the load ran before the outage");
    assert!(ledger.errors.load(Ordering::Relaxed) > 0, "the outage reached no caller");
    assert!(ledger.ok.load(Ordering::Relaxed) > ok_before, "the load resumed after the outage by itself");
    assert_eq!(ledger.wrong_reads.load(Ordering::Relaxed), 0, "a read saw another tenant's rows");
    assert_recovers(&direct, &names, &ledger, 6);
    assert_recovers(&through_bouncer, &names, &ledger, 6);
    let total = ledger.audit(db_url, &names);
    eprintln!(
        "outage: {} ok ({ok_before} before it), {} errors reached callers, {total} rows audited",
        ledger.ok.load(Ordering::Relaxed),
        ledger.errors.load(Ordering::Relaxed)
    );
}

#[test]
fn postgres_restart_under_load_loses_no_committed_write_and_pool_recovers() {
    let db = tenancy_devdb::DevDatabase::throwaway().unwrap();
    let cluster = db.cluster().unwrap();
    outage_under_load(db.url(), || cluster.restart().unwrap());
}

/// The same outage on the shared server: every session of the database cut
/// and new ones refused for a second, as during a restart.
#[test]
fn database_outage_under_load_loses_no_committed_write_and_pool_recovers() {
    let db = temp_database("outage");
    outage_under_load(db.url(), || {
        let mut admin = admin();
        admin
            .batch_execute(&format!(
                "ALTER DATABASE \"{0}\" WITH ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}'",
                db.name()
            ))
            .unwrap();
        std::thread::sleep(Duration::from_secs(1));
        admin
            .batch_execute(&format!("ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true", db.name()))
            .unwrap();
    });
}
