//! One test per way a borrower, a misuse that compiles in safe Rust, or an
//! unlucky name could reach the wrong tenant, lose a write or wedge the
//! pool, each checked against the server's own view of its sessions, on a
//! real PostgreSQL and, where a pooler is involved, a real PgBouncer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::EmbeddedMigrations;
use tenancy_core::{
    adopt, drop_tenant, list_tenants, provision, tenant_record, ConfigError, PoolerMode, RefusalReason,
    SchemaName, TenancyError, TenantContext, TenantPool, TenantState,
};
use tenancy_devdb::pgbouncer::{PgBouncer, PgBouncerConfig};
use tenancy_tests::{
    admin, current_schemas, insert_tagged as insert, pool_of_one, scalar_i64 as count, search_path,
    unique_schema, url, Schemas, ITEMS_DDL,
};

const NO_MIGRATIONS: EmbeddedMigrations = EmbeddedMigrations::new(&[]);

fn pool_of(size: u32) -> TenantPool {
    match size {
        1 => pool_of_one(),
        _ => TenantPool::builder().max_size(size).build(&url()).unwrap(),
    }
}

fn bouncer() -> PgBouncer {
    PgBouncer::start_with(&url(), &PgBouncerConfig { pool_size: 1, ..PgBouncerConfig::default() })
        .unwrap_or_else(|e| panic!("this test needs a real PgBouncer (scripts/test.sh installs it): {e}"))
}

fn behind(bouncer: &PgBouncer) -> TenantPool {
    TenantPool::builder().pooler_mode(PoolerMode::Transaction).max_size(1).build(&bouncer.url()).unwrap()
}

/// Bodies of the rows `schema.items` holds, read outside the pool.
fn bodies(schema: &SchemaName) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Body {
        #[diesel(sql_type = Text)]
        body: String,
    }
    let rows: Vec<Body> =
        diesel::sql_query(format!("SELECT body FROM {}.items ORDER BY id", schema.quoted()))
            .load(&mut admin())
            .unwrap();
    rows.into_iter().map(|r| r.body).collect()
}

fn lastval_answers(conn: &mut PgConnection) -> bool {
    // In a savepoint: inside a transaction, the failure must not abort it.
    conn.transaction::<_, diesel::result::Error, _>(|c| {
        diesel::select(diesel::dsl::sql::<BigInt>("lastval()")).get_result::<i64>(c)
    })
    .is_ok()
}

/// A session handed out for `tenant` carries nothing of anyone else's.
fn assert_clean(conn: &mut PgConnection, tenant: &SchemaName, case: &str) {
    assert_eq!(current_schemas(conn), [tenant.as_str()], "{case}: schemas searched");
    for (what, sql) in [
        (
            "session settings",
            "(SELECT count(*) FROM pg_settings WHERE source = 'session' AND name NOT IN ('search_path', 'client_encoding', 'TimeZone'))",
        ),
        ("a temporary schema", "(SELECT count(*) FROM pg_namespace WHERE oid = pg_my_temp_schema())"),
        ("cursors", "(SELECT count(*) FROM pg_cursors WHERE name <> '')"),
        ("prepared statements", "(SELECT count(*) FROM pg_prepared_statements WHERE from_sql)"),
        ("advisory locks", "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())"),
        ("listened channels", "(SELECT count(*) FROM pg_listening_channels())"),
    ] {
        assert_eq!(count(conn, sql), 0, "{case}: {what} left by a previous borrower");
    }
    let mut started = || -> String {
        diesel::select(diesel::dsl::sql::<Text>("transaction_timestamp()::text")).get_result(conn).unwrap()
    };
    assert_ne!(started(), started(), "{case}: handed out inside a transaction");
    assert!(!lastval_answers(conn), "{case}: lastval() answers");
}

/// Finding 3 again: a body that swallows a failed statement and returns
/// `Ok` must not be told that its writes committed.
#[test]
fn a_transaction_aborted_by_a_swallowed_failure_does_not_report_a_commit() {
    let schemas = Schemas::create("aborted", 1, ITEMS_DDL);
    let a = schemas.first();
    let bouncer = bouncer();
    for pool in [pool_of(1), behind(&bouncer)] {
        let result = pool.transaction(a, |c| {
            insert(c, a, "lost")?;
            let _ = c.batch_execute("SELECT 1/0");
            Ok::<_, TenancyError>(())
        });
        assert!(result.is_err(), "{:?}: reported Ok for an aborted transaction", pool.pooler_mode());
        assert!(bodies(a).is_empty());
    }
}

/// Finding 1: PostgreSQL ends `--` comments at `\r` as well as `\n`.
#[test]
fn line_comments_ended_by_a_carriage_return_hide_nothing() {
    let schemas = Schemas::create("cr", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool_of(1);
    for hidden in [
        String::from("SET search_path TO public"),
        String::from("SET statement_timeout = 1"),
        String::from("CREATE TEMP TABLE items (id bigserial, tenant text, body text)"),
        String::from("SELECT pg_advisory_lock(4242)"),
        String::from("LISTEN hidden"),
        String::from("PREPARE hidden AS SELECT 1"),
        format!("BEGIN; INSERT INTO items (tenant, body) VALUES ('{a}', 'never committed')"),
    ] {
        let sql = format!("SELECT 1; --\r{hidden}");
        pool.tenant(a).unwrap().batch_execute(&sql).unwrap();
        assert_clean(&mut pool.tenant(a).unwrap(), a, &sql);
        let mut conn = pool.tenant(b).unwrap();
        assert_clean(&mut conn, b, &sql);
        insert(&mut conn, b, &sql).unwrap();
        drop(conn);
        assert!(bodies(b).contains(&sql), "{sql}: the next borrower's write did not commit");
    }
    assert!(!bodies(a).iter().any(|body| body == "never committed"));
    // The advisory lock is free for everybody else.
    assert_eq!(
        count(&mut admin(), "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242)"),
        0
    );

    let bouncer = bouncer();
    let pooled = behind(&bouncer);
    let mut other = PgConnection::establish(&bouncer.url()).unwrap();
    let before = search_path(&mut other);
    let refused = pooled.transaction(a, |c| {
        c.batch_execute("SELECT 1; --\rSET search_path TO public").map_err(TenancyError::from)
    });
    assert!(matches!(refused, Err(TenancyError::SessionStateRefused)), "{refused:?}");
    assert_eq!(search_path(&mut other), before, "another PgBouncer client's search path changed");
}

diesel::table! {
    pg_catalog.pg_settings (name) {
        name -> Text,
        setting -> Text,
    }
}

/// Finding 2: `UPDATE pg_settings` is a session `SET` (the view's rule calls `set_config`).
#[test]
fn updating_pg_settings_is_a_session_set() {
    let schemas = Schemas::create("pgset", 2, ITEMS_DDL);
    let (alpha, beta) = schemas.pair();
    let pool = pool_of(1);
    let value = beta.quoted();
    let statements = [
        format!("UPDATE pg_settings SET setting = '{value}' WHERE name = 'search_path'"),
        format!("UPDATE pg_catalog.pg_settings SET setting = '{value}' WHERE name = 'search_path'"),
        format!("EXPLAIN ANALYZE UPDATE pg_settings SET setting = '{value}' WHERE name = 'search_path'"),
    ];
    for sql in &statements {
        pool.tenant(alpha).unwrap().batch_execute(sql).unwrap();
        let mut conn = pool.tenant(alpha).unwrap();
        assert_clean(&mut conn, alpha, sql);
        insert(&mut conn, alpha, sql).unwrap();
    }
    // Through diesel's DSL, over a `table!` for pg_catalog.pg_settings.
    let mut conn = pool.tenant(alpha).unwrap();
    diesel::update(pg_settings::table.filter(pg_settings::name.eq("search_path")))
        .set(pg_settings::setting.eq(&value))
        .execute(&mut *conn)
        .unwrap();
    drop(conn);
    let mut conn = pool.tenant(alpha).unwrap();
    assert_clean(&mut conn, alpha, "DSL update of pg_settings");
    insert(&mut conn, alpha, "dsl").unwrap();
    drop(conn);
    assert_eq!(bodies(alpha).len(), statements.len() + 1);
    assert!(bodies(beta).is_empty(), "alpha's writes landed in beta");

    // Behind a transaction pooler the body is refused, and the shared
    // server session keeps its search path for every other client.
    let bouncer = bouncer();
    let pooled = behind(&bouncer);
    for sql in &statements {
        let refused = pooled.transaction(alpha, |c| c.batch_execute(sql).map_err(TenancyError::from));
        assert!(matches!(refused, Err(TenancyError::SessionStateRefused)), "{sql}: {refused:?}");
    }
    let refused = pooled.transaction(alpha, |c| {
        diesel::update(pg_settings::table.filter(pg_settings::name.eq("search_path")))
            .set(pg_settings::setting.eq(&value))
            .execute(c)?;
        Ok::<_, TenancyError>(())
    });
    assert!(matches!(refused, Err(TenancyError::SessionStateRefused)), "{refused:?}");
    let mut other = PgConnection::establish(&bouncer.url()).unwrap();
    assert!(!search_path(&mut other).contains(beta.as_str()));
    let _ = other.batch_execute("INSERT INTO items (tenant, body) VALUES ('other client', 'x')");
    assert!(bodies(beta).is_empty(), "another client's insert landed in beta");
}

/// Finding 3: sequence state (`lastval()`) outlived its borrower.
#[test]
fn lastval_never_answers_for_the_next_borrower() {
    let schemas = Schemas::create("lastval", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool_of(1);
    insert(&mut pool.tenant(a).unwrap(), a, "x").unwrap();
    assert!(!lastval_answers(&mut pool.tenant(b).unwrap()), "another tenant sees a's lastval");
    insert(&mut pool.tenant(a).unwrap(), a, "y").unwrap();
    assert!(!lastval_answers(&mut pool.tenant(a).unwrap()), "the same tenant's next borrower sees lastval");
    pool.transaction(a, |c| insert(c, a, "z").map_err(TenancyError::from)).unwrap();
    assert!(!pool.transaction(b, |c| Ok::<_, TenancyError>(lastval_answers(c))).unwrap());

    let bouncer = bouncer();
    let pooled = behind(&bouncer);
    pooled.transaction(a, |c| insert(c, a, "through pgbouncer").map_err(TenancyError::from)).unwrap();
    assert!(!pooled.transaction(b, |c| Ok::<_, TenancyError>(lastval_answers(c))).unwrap());
    let mut other = PgConnection::establish(&bouncer.url()).unwrap();
    assert!(!lastval_answers(&mut other), "another PgBouncer client sees a's lastval");
}

/// Finding 4: `std::mem::swap` of two checkouts is safe Rust.
#[test]
fn swapping_checkouts_cannot_mislead_the_pool() {
    let pool = pool_of(2);
    let schemas = Schemas::create("swap", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    for _ in 0..3 {
        let mut ca = pool.tenant(a).unwrap();
        let mut cb = pool.tenant(b).unwrap();
        std::mem::swap(&mut *ca, &mut *cb);
        drop((ca, cb));
        let mut cs = pool.shared().unwrap();
        let mut ca = pool.tenant(a).unwrap();
        std::mem::swap(&mut *cs, &mut *ca);
        drop((cs, ca));
        for _ in 0..2 {
            assert_eq!(current_schemas(&mut pool.tenant(a).unwrap()), [a.as_str()]);
            assert_eq!(current_schemas(&mut pool.tenant(b).unwrap()), [b.as_str()]);
            assert_eq!(current_schemas(&mut pool.shared().unwrap()), ["public"]);
        }
    }
    // Inside a transaction: the exchanged connection is never committed on,
    // whether the diesel connections or the whole checkouts were exchanged.
    for whole in [false, true] {
        let mut other = pool.tenant(b).unwrap();
        let result = pool.transaction(a, |c| {
            insert(c, a, "before the swap")?;
            if whole {
                std::mem::swap(c, &mut other);
            } else {
                std::mem::swap(&mut **c, &mut *other);
            }
            Ok::<_, TenancyError>(())
        });
        assert!(matches!(result, Err(TenancyError::ConnectionReplaced)), "{result:?}");
        drop(other);
        assert!(bodies(a).is_empty(), "a write of the exchanged transaction was committed");
    }
    assert_eq!(current_schemas(&mut pool.tenant(a).unwrap()), [a.as_str()]);
    // Connections moved between pools are retired, never served by the wrong pool.
    let second = pool_of(1);
    let mut mine = pool.tenant(a).unwrap();
    let mut theirs = second.tenant(b).unwrap();
    std::mem::swap(&mut *mine, &mut *theirs);
    drop((mine, theirs));
    assert_eq!(current_schemas(&mut pool.tenant(b).unwrap()), [b.as_str()]);
    assert_eq!(current_schemas(&mut second.tenant(a).unwrap()), [a.as_str()]);
}

/// Finding 5: a raw `COMMIT` in a transaction body.
#[test]
fn a_raw_commit_in_a_transaction_body_commits_nothing() {
    let schemas = Schemas::create("rawcommit", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let bouncer = bouncer();
    for pool in [pool_of(1), behind(&bouncer)] {
        for how in ["COMMIT", "END", "ROLLBACK", "diesel"] {
            let result = pool.transaction(a, |c| {
                insert(c, a, "before")?;
                if how == "diesel" {
                    AnsiTransactionManager::commit_transaction(&mut **c)?;
                } else {
                    c.batch_execute(how)?;
                }
                insert(c, a, "after")?;
                Ok::<_, TenancyError>(())
            });
            assert!(matches!(result, Err(TenancyError::SessionStateRefused)), "{how}: {result:?}");
            assert!(bodies(a).is_empty(), "{how} ({:?}): {:?} committed", pool.pooler_mode(), bodies(a));
            assert!(bodies(b).is_empty());
        }
        pool.transaction(a, |c| insert(c, a, "afterwards").map_err(TenancyError::from)).unwrap();
        assert_eq!(bodies(a), ["afterwards"]);
        admin().batch_execute(&format!("DELETE FROM {}.items", a.quoted())).unwrap();
    }
}

/// Finding 6: after a transaction of the pool's own, a borrower's raw `BEGIN` went unnoticed.
#[test]
fn an_open_transaction_never_reaches_the_next_borrower() {
    let schemas = Schemas::create("opened", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool_of(1);
    let provisioned = unique_schema("opened_prov");
    for before in ["transaction", "provision"] {
        match before {
            "transaction" => pool.transaction(a, |_| Ok::<_, TenancyError>(())).unwrap(),
            _ => drop(provision(&pool, &provisioned, NO_MIGRATIONS).unwrap()),
        }
        pool.tenant(a).unwrap().batch_execute("BEGIN").unwrap();
        let mut conn = pool.tenant(b).unwrap();
        assert_clean(&mut conn, b, before);
        insert(&mut conn, b, before).unwrap();
        drop(conn);
        assert!(bodies(b).contains(&before.to_owned()), "after a {before}: b's write was not committed");
    }
    drop_tenant(&pool, &provisioned).unwrap();
}

/// Finding 7: an aborted transaction left by a borrower wedged a pool of one.
#[test]
fn an_aborted_transaction_does_not_wedge_the_pool() {
    let schemas = Schemas::create("wedge", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool_of(1);
    for round in 0..4 {
        // Half the rounds right after a transaction of the pool's own, which
        // an older guard mistook the borrower's raw BEGIN for.
        if round % 2 == 1 {
            pool.transaction(a, |_| Ok::<_, TenancyError>(())).unwrap();
        }
        let mut conn = pool.tenant(a).unwrap();
        conn.batch_execute("BEGIN").unwrap();
        assert!(conn.batch_execute("SELECT 1/0").is_err());
        drop(conn);
        assert_clean(&mut pool.tenant(b).unwrap(), b, "after an aborted transaction");
        pool.transaction(a, |c| insert(c, a, &format!("round {round}")).map_err(TenancyError::from)).unwrap();
        assert_eq!(current_schemas(&mut pool.shared().unwrap()), ["public"]);
    }
    assert_eq!(bodies(a).len(), 4);
}

/// Finding 8: `provision` adopted any existing schema, and `drop_tenant` then dropped it.
#[test]
fn provision_never_takes_over_an_application_schema() {
    let pool = pool_of(2);
    let billing = unique_schema("billing");
    let mut admin = admin();
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA {q}; CREATE TABLE {q}.invoices (id int); INSERT INTO {q}.invoices VALUES (1)",
            q = billing.quoted()
        ))
        .unwrap();
    match provision(&pool, &billing, NO_MIGRATIONS) {
        Err(TenancyError::Refused { reason: RefusalReason::SchemaNotATenant, .. }) => {}
        other => panic!("provisioning over an application schema: {other:?}"),
    }
    assert!(tenant_record(&pool, &billing).unwrap().is_none());
    assert!(drop_tenant(&pool, &billing).unwrap_err().is_tenant_not_found());
    assert_eq!(count(&mut admin, &format!("(SELECT count(*) FROM {}.invoices)", billing.quoted())), 1);
    assert_eq!(
        count(&mut admin, &format!("(SELECT count(*) FROM pg_tables WHERE schemaname = '{billing}')")),
        1
    );
    // Adopting it is a separate, explicit call.
    adopt(&pool, &billing, NO_MIGRATIONS).unwrap();
    assert_eq!(tenant_record(&pool, &billing).unwrap().unwrap().state, TenantState::Ready);
    drop_tenant(&pool, &billing).unwrap();
}

/// Finding 9: any schema was reachable as a tenant.
#[test]
fn only_registered_tenants_are_reachable() {
    let outsider = Schemas::create_unregistered("outsider", 1, ITEMS_DDL);
    let outsider = outsider.first();
    let db = tenancy_tests::temp_database("reach");
    let mut admin = PgConnection::establish(db.url()).unwrap();
    admin.batch_execute("CREATE SCHEMA app_shared; CREATE TABLE app_shared.plans (id int)").unwrap();
    let custom = TenantPool::builder()
        .max_size(1)
        .shared_schema("app_shared")
        .registry_schema("app_registry")
        .build(db.url())
        .unwrap();
    list_tenants(&custom).unwrap();
    let bouncer = bouncer();
    for pool in [pool_of(1), behind(&bouncer)] {
        if pool.pooler_mode() == PoolerMode::Session {
            assert!(pool.tenant(outsider).unwrap_err().is_tenant_not_found());
            assert!(pool.for_tenant(outsider.clone()).tenant_connection().unwrap_err().is_tenant_not_found());
        }
        let err = pool.transaction(outsider, |_| Ok::<_, TenancyError>(())).unwrap_err();
        assert!(err.is_tenant_not_found(), "{err:?}");
    }
    for reserved in ["app_shared", "app_registry"] {
        let name = SchemaName::new(reserved).unwrap();
        assert!(matches!(custom.tenant(&name), Err(TenancyError::ReservedSchema { .. })));
        let err = custom
            .transaction(&name, |c| {
                c.batch_execute("DELETE FROM tenants")?;
                Ok::<_, TenancyError>(())
            })
            .unwrap_err();
        assert!(matches!(err, TenancyError::ReservedSchema { .. }), "{err:?}");
    }
    assert_eq!(count(&mut admin, "(SELECT count(*) FROM app_shared.plans)"), 0);
}

/// Finding 10: a tenant dropped by another process, or by hand.
#[test]
fn a_tenant_dropped_elsewhere_is_tenant_not_found() {
    let here = pool_of(1);
    let elsewhere = pool_of(1);
    let dropped = unique_schema("gone");
    let by_hand = unique_schema("gone_by_hand");
    for t in [&dropped, &by_hand] {
        provision(&here, t, NO_MIGRATIONS).unwrap();
        here.tenant(t)
            .unwrap()
            .batch_execute("CREATE TABLE items (id bigserial, tenant text, body text)")
            .unwrap();
    }
    drop(here.tenant(&dropped).unwrap());
    // Another process drops it: this pool hears of it.
    drop_tenant(&elsewhere, &dropped).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match here.tenant(&dropped) {
            Err(e) if e.is_tenant_not_found() => break,
            other => assert!(Instant::now() < deadline, "still served after its drop elsewhere: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Dropped by hand: the first statement that fails for it, and the
    // transaction it ran in, say so; the registry says the schema is missing.
    drop(here.tenant(&by_hand).unwrap());
    admin().batch_execute(&format!("DROP SCHEMA {} CASCADE", by_hand.quoted())).unwrap();
    let result = here.transaction(&by_hand, |c| {
        diesel::sql_query("INSERT INTO items (tenant, body) VALUES ('x', 'y')").execute(c)?;
        Ok::<_, TenancyError>(())
    });
    assert!(result.as_ref().is_err_and(TenancyError::is_tenant_not_found), "{result:?}");
    assert!(here.tenant(&by_hand).unwrap_err().is_tenant_not_found());
    // The same through a session checkout: the first failing statement, then
    // TenantNotFound for every later checkout.
    let hand2 = unique_schema("gone_session");
    provision(&here, &hand2, NO_MIGRATIONS).unwrap();
    here.tenant(&hand2)
        .unwrap()
        .batch_execute("CREATE TABLE items (id bigserial, tenant text, body text)")
        .unwrap();
    admin().batch_execute(&format!("DROP SCHEMA {} CASCADE", hand2.quoted())).unwrap();
    let mut conn = here.tenant(&hand2).unwrap();
    assert!(conn.batch_execute("INSERT INTO items (tenant, body) VALUES ('x', 'y')").is_err());
    drop(conn);
    assert!(here.tenant(&hand2).unwrap_err().is_tenant_not_found());
    drop_tenant(&here, &hand2).unwrap();
    let record = tenant_record(&here, &by_hand).unwrap().unwrap();
    assert_eq!(record.state, TenantState::Missing);
    drop_tenant(&here, &by_hand).unwrap();
}

/// Finding 11: settings r2d2 asserts on panicked.
#[test]
fn settings_that_would_panic_are_typed_errors() {
    for (builder, expected) in [
        (TenantPool::builder().max_size(2).min_idle(Some(3)), "min_idle"),
        (TenantPool::builder().connection_timeout(Duration::ZERO), "connection_timeout"),
        (TenantPool::builder().max_size(0), "max_size"),
        (TenantPool::builder().idle_timeout(Some(Duration::ZERO)), "idle_timeout"),
        (TenantPool::builder().max_lifetime(Some(Duration::ZERO)), "max_lifetime"),
    ] {
        match builder.build(&url()) {
            Err(TenancyError::InvalidConfig(error)) => {
                assert!(error.to_string().contains(expected), "{error}")
            }
            other => panic!("{expected}: {other:?}"),
        }
    }
    assert!(matches!(
        TenantPool::builder().max_size(1).min_idle(Some(2)).build(&url()),
        Err(TenancyError::InvalidConfig(ConfigError::MinIdleAboveMaxSize { min_idle: 2, max_size: 1 }))
    ));
}

/// Finding 12: dropping a tenant while requests write to it.
#[test]
fn dropping_a_tenant_in_use_fences_it_and_no_writer_deadlocks() {
    let pool = TenantPool::builder().max_size(6).build(&url()).unwrap();
    let tenant = unique_schema("busy");
    provision(&pool, &tenant, NO_MIGRATIONS).unwrap();
    pool.transaction(&tenant, |c| {
        c.batch_execute(
            "CREATE TABLE t1 (id bigserial PRIMARY KEY, n int); CREATE TABLE t2 (id bigserial PRIMARY KEY, n int); \
             CREATE TABLE t3 (id bigserial PRIMARY KEY, n int)",
        )?;
        Ok::<_, TenancyError>(())
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (pool, tenant, stop, committed) =
                (pool.clone(), tenant.clone(), stop.clone(), committed.clone());
            std::thread::spawn(move || {
                // Inserts only: the writers never wait for each other, only for the drop.
                let orders = [["t1", "t2", "t3"], ["t3", "t2", "t1"], ["t2", "t3", "t1"], ["t1", "t3", "t2"]];
                let mut others = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let result = pool.transaction(&tenant, |c| {
                        for table in orders[w] {
                            c.batch_execute(&format!("INSERT INTO {table} (n) VALUES ({w})"))?;
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Ok::<_, TenancyError>(())
                    });
                    match result {
                        Ok(()) => {
                            committed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.is_tenant_not_found() => {}
                        Err(e) => others.push(e.to_string()),
                    }
                }
                others
            })
        })
        .collect();
    while committed.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let dropped = drop_tenant(&pool, &tenant);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let errors: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    dropped.unwrap();
    assert!(took < Duration::from_secs(30), "the drop took {took:?}");
    assert!(errors.is_empty(), "writers saw errors other than TenantNotFound: {errors:?}");
    assert!(pool.tenant(&tenant).unwrap_err().is_tenant_not_found());
    assert_eq!(
        count(&mut admin(), &format!("(SELECT count(*) FROM pg_namespace WHERE nspname = '{tenant}')")),
        0
    );
}

/// Finding 13: code the server runs by itself (a function, a trigger).
#[test]
fn server_code_cannot_change_the_shared_server_session_behind_a_pooler() {
    let schemas = Schemas::create("servercode", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    admin()
        .batch_execute(&format!(
            "SET search_path TO {a}; \
             CREATE FUNCTION hop() RETURNS int LANGUAGE plpgsql AS $f$BEGIN PERFORM set_config('search_path', '{b}', false); RETURN 1; END$f$; \
             CREATE FUNCTION scratch() RETURNS int LANGUAGE plpgsql AS $f$BEGIN CREATE TEMP TABLE scratch (id int); RETURN 1; END$f$; \
             CREATE FUNCTION hop_on_insert() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN PERFORM set_config('search_path', '{b}', false); RETURN NEW; END$f$; \
             CREATE TABLE audited (id bigserial PRIMARY KEY, note text); \
             CREATE TRIGGER hop BEFORE INSERT ON audited FOR EACH ROW EXECUTE FUNCTION hop_on_insert(); \
             RESET search_path",
            a = a.quoted(),
            b = b.quoted()
        ))
        .unwrap();
    let bouncer = bouncer();
    let pool = behind(&bouncer);
    let mut other = PgConnection::establish(&bouncer.url()).unwrap();
    let before = search_path(&mut other);
    for (what, sql) in [
        ("a function", "SELECT hop()"),
        ("a temporary table made by a function", "SELECT scratch()"),
        ("a trigger", "INSERT INTO audited (note) VALUES ('x')"),
    ] {
        let result = pool.transaction(a, |c| {
            insert(c, a, what)?;
            c.batch_execute(sql)?;
            Ok::<_, TenancyError>(())
        });
        assert!(matches!(result, Err(TenancyError::SessionStateRefused)), "{what}: {result:?}");
        assert_eq!(search_path(&mut other), before, "{what} reached another client");
        assert_eq!(
            count(&mut other, "(SELECT count(*) FROM pg_namespace WHERE oid = pg_my_temp_schema())"),
            0
        );
    }
    assert!(bodies(a).is_empty(), "a refused transaction committed");
    // In session mode, a function call is opaque to the guard: the session is
    // restored before the next borrower; triggers are restored with always_restore.
    let direct = TenantPool::builder().max_size(1).always_restore(true).build(&url()).unwrap();
    for sql in ["SELECT hop()", "SELECT scratch()", "INSERT INTO audited (note) VALUES ('y')"] {
        direct.tenant(a).unwrap().batch_execute(sql).unwrap();
        assert_clean(&mut direct.tenant(a).unwrap(), a, sql);
        assert_clean(&mut direct.tenant(b).unwrap(), b, sql);
    }
    let default = pool_of(1);
    for sql in ["SELECT hop()", "SELECT scratch()"] {
        default.tenant(a).unwrap().batch_execute(sql).unwrap();
        assert_clean(&mut default.tenant(a).unwrap(), a, sql);
    }
}

/// Found by the guard's fuzz target: the quick look for everyday statements
/// let `lower(`, `count(`... through even when qualified by a schema, which
/// calls that schema's function; and an unqualified call of a built-in name
/// resolves to a better-matching function of the tenant's schema.
#[test]
fn a_function_that_borrows_a_built_in_name_is_code_of_your_own() {
    let schemas = Schemas::create("overload", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    admin()
        .batch_execute(&format!(
            "CREATE FUNCTION {a}.lower(x int) RETURNS int LANGUAGE plpgsql AS \
             $f$BEGIN PERFORM set_config('search_path', '{b}', false); RETURN x; END$f$",
            a = a.quoted(),
            b = b.quoted()
        ))
        .unwrap();
    // Built after the overload exists: the guard no longer trusts the name.
    let pool = pool_of(1);
    for sql in [format!("SELECT {}.lower(1)", a.as_str()), String::from("SELECT lower(1)")] {
        let mut conn = pool.tenant(a).unwrap();
        diesel::sql_query(&sql).execute(&mut *conn).unwrap();
        drop(conn);
        let mut conn = pool.tenant(a).unwrap();
        assert_clean(&mut conn, a, &sql);
        insert(&mut conn, a, &sql).unwrap();
    }
    assert!(bodies(b).is_empty(), "a's writes landed in b");
}
