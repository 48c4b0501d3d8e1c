//! The session guard checked against PostgreSQL itself.
//!
//! Generated statements, one hazard family at a time (session `SET` and
//! `RESET`, `set_config`, `pg_settings`, temporary objects, `PREPARE`,
//! cursors, advisory locks, `LISTEN`, transaction control, sequences,
//! functions whose bodies do any of these), each wearing a disguise
//! (comments ended by `\n`, `\r` or the end of the text, nested block
//! comments, dollar quotes with tags, `E''` strings, a string that
//! `standard_conforming_strings = off` would read differently, `U&""`
//! identifiers, case, every whitespace the server accepts, qualification,
//! CTEs, `EXPLAIN ANALYZE`, diesel's DSL and bind parameters), are sent by a
//! borrower of a pool of one. The next checkout, of the same tenant or
//! another, then asks the server for its own view of the session: search
//! path, every setting whose source is the session, temporary schema,
//! prepared statements, cursors, advisory locks, listened channels,
//! transaction status and whether `lastval()` answers. Any difference from
//! a fresh session is a disagreement between the guard and the server.
//!
//! Behind a real PgBouncer in transaction mode (one server connection shared
//! by every client), the same hazards run inside tenant transactions, and
//! another client of the same PgBouncer checks the server session after
//! each: it must see nothing of them, and a transaction that was refused
//! must have committed nothing.
//!
//! `TENANCY_DIFFERENTIAL_CASES` sets the number of cases per mode (default
//! 1,500, a few seconds); `TENANCY_DIFFERENTIAL_SEED` the seed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use tenancy_core::{PoolerMode, SchemaName, TenancyError, TenantPool};
use tenancy_devdb::pgbouncer::{PgBouncer, PgBouncerConfig};
use tenancy_tests::{admin, items, url, Schemas, ITEMS_DDL};

diesel::table! {
    pg_catalog.pg_settings (name) {
        name -> Text,
        setting -> Text,
    }
}

diesel::define_sql_function! {
    /// `set_config(name, value, is_local)`, through diesel's DSL.
    fn set_config(name: Text, value: Text, is_local: Bool) -> Text;
}

fn cases() -> usize {
    std::env::var("TENANCY_DIFFERENTIAL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1500)
}

fn seed() -> u64 {
    std::env::var("TENANCY_DIFFERENTIAL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x007e_4ac1)
}

/// What a hazard statement may be dressed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disguise {
    None,
    AfterStatement,
    AfterLineCommentLf,
    AfterLineCommentCr,
    TrailingComment,
    NestedBlockComments,
    DollarQuoteWithTag,
    EscapeString,
    ConformingStringsOff,
    UnicodeIdentifier,
    Case,
    Whitespace,
    Qualified,
    Cte,
    ExplainAnalyze,
    Dsl,
    Binds,
}

const DISGUISES: [Disguise; 17] = [
    Disguise::None,
    Disguise::AfterStatement,
    Disguise::AfterLineCommentLf,
    Disguise::AfterLineCommentCr,
    Disguise::TrailingComment,
    Disguise::NestedBlockComments,
    Disguise::DollarQuoteWithTag,
    Disguise::EscapeString,
    Disguise::ConformingStringsOff,
    Disguise::UnicodeIdentifier,
    Disguise::Case,
    Disguise::Whitespace,
    Disguise::Qualified,
    Disguise::Cte,
    Disguise::ExplainAnalyze,
    Disguise::Dsl,
    Disguise::Binds,
];

/// One hazard: a statement (and, for function calls, the call alone).
#[derive(Debug, Clone)]
struct Hazard {
    family: &'static str,
    sql: String,
    /// The function call, for CTE, qualification and DSL disguises.
    call: Option<String>,
    /// One statement the server can `EXPLAIN ANALYZE`.
    explainable: bool,
}

fn hazard(family: &'static str, sql: String) -> Hazard {
    let explainable =
        ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE TABLE"].iter().any(|k| sql.starts_with(k))
            && !sql.contains(';');
    Hazard { family, sql, call: None, explainable }
}

fn call(family: &'static str, call: String) -> Hazard {
    Hazard { family, sql: format!("SELECT {call}"), call: Some(call), explainable: true }
}

/// Every hazard, for a borrower of tenant `a` whose neighbour is `b`.
fn hazards(a: &SchemaName, b: &SchemaName, n: u64) -> Vec<Hazard> {
    let own = a.quoted();
    let b = b.quoted();
    let bl = format!("'{b}'");
    vec![
        hazard("set", format!("SET search_path TO {b}")),
        hazard("set", format!("SET SESSION search_path = {b}")),
        hazard("set", String::from("SET SCHEMA 'public'")),
        hazard("set", String::from("RESET search_path")),
        hazard("set", String::from("SET statement_timeout = 5000")),
        hazard("set", String::from("SET work_mem = '8MB'")),
        hazard("set", format!("SET application_name = 'hazard_{n}'")),
        hazard("set", String::from("SET TIME ZONE 'Europe/Paris'")),
        hazard("set", String::from("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")),
        hazard("set", String::from("SET ROLE postgres")),
        hazard("set", String::from("RESET ALL")),
        hazard("set", String::from("SET LOCAL statement_timeout = 5000")),
        call("set_config", format!("set_config('search_path', {bl}, false)")),
        call("set_config", String::from("set_config('statement_timeout', '4000', false)")),
        call("set_config", format!("set_config('app.hazard_{n}', 'x', false)")),
        call("set_config", String::from("set_config('statement_timeout', '4000', true)")),
        hazard("pg_settings", format!("UPDATE pg_settings SET setting = {bl} WHERE name = 'search_path'")),
        hazard("pg_settings", String::from("UPDATE pg_settings SET setting = '6000' WHERE name = 'statement_timeout'")),
        hazard(
            "pg_settings",
            format!("WITH u AS (UPDATE pg_settings SET setting = {bl} WHERE name = 'search_path' RETURNING 1) SELECT * FROM u"),
        ),
        hazard("temp", format!("CREATE TEMP TABLE hz_{n} (id int)")),
        hazard("temp", format!("CREATE TEMPORARY VIEW hz_{n} AS SELECT 1 AS x")),
        hazard("temp", format!("SELECT 1 AS x INTO TEMP hz_{n}")),
        hazard("temp", format!("CREATE TABLE pg_temp.hz_{n} (id int)")),
        hazard("temp", format!("CREATE TEMP SEQUENCE hz_{n}")),
        hazard("prepare", format!("PREPARE hz_{n} AS SELECT 1")),
        hazard("cursor", format!("BEGIN; DECLARE hz_{n} CURSOR WITH HOLD FOR SELECT 1; COMMIT")),
        call("advisory", format!("pg_advisory_lock({n})")),
        call("advisory", format!("pg_try_advisory_lock_shared({n})")),
        hazard("listen", format!("LISTEN hz_{n}")),
        hazard("transaction", String::from("BEGIN")),
        hazard("transaction", String::from("BEGIN; INSERT INTO items (tenant, body) VALUES ('hazard', 'left open')")),
        hazard("transaction", String::from("BEGIN; SELECT 1/0")),
        hazard("transaction", String::from("START TRANSACTION ISOLATION LEVEL SERIALIZABLE")),
        hazard("transaction", format!("BEGIN; SET LOCAL search_path TO {b}")),
        hazard("transaction", String::from("COMMIT")),
        call("sequence", String::from("nextval('items_id_seq')")),
        call("sequence", String::from("setval('items_id_seq', 1000)")),
        hazard("sequence", String::from("INSERT INTO items (tenant, body) VALUES ('hazard', 'seq')")),
        call("function", String::from("hz_set_path()")),
        call("function", String::from("hz_set_timeout()")),
        call("function", String::from("hz_lock()")),
        call("function", String::from("hz_temp()")),
        // A function of the tenant's that overloads a built-in name, called
        // unqualified and qualified.
        call("function", String::from("lower(1)")),
        call("function", format!("{own}.lower(2)")),
    ]
}

/// Functions whose bodies change the session, in every tenant.
fn functions_ddl(neighbour: &SchemaName) -> String {
    format!(
        "CREATE FUNCTION hz_set_path() RETURNS int LANGUAGE plpgsql AS $f$BEGIN PERFORM set_config('search_path', '{b}', false); RETURN 1; END$f$; \
         CREATE FUNCTION hz_set_timeout() RETURNS int LANGUAGE plpgsql AS $f$BEGIN SET statement_timeout = 3000; RETURN 1; END$f$; \
         CREATE FUNCTION hz_lock() RETURNS int LANGUAGE plpgsql AS $f$BEGIN PERFORM pg_advisory_lock(99); RETURN 1; END$f$; \
         CREATE FUNCTION hz_temp() RETURNS int LANGUAGE plpgsql AS $f$BEGIN CREATE TEMP TABLE IF NOT EXISTS hz_fn_temp (id int); RETURN 1; END$f$; \
         CREATE FUNCTION lower(x int) RETURNS int LANGUAGE plpgsql AS $f$BEGIN PERFORM set_config('search_path', '{b}', false); RETURN x; END$f$;",
        b = neighbour.quoted()
    )
}

/// Changes the case of letters outside quotes and dollar quotes.
fn recase(sql: &str, rng: &mut SmallRng) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut dollar = false;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '$') => dollar = !dollar,
            _ => {}
        }
        if quote.is_none() && !dollar && c.is_ascii_alphabetic() && rng.random_bool(0.5) {
            out.push(if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
        } else {
            out.push(c);
        }
    }
    out
}

/// Replaces spaces outside quotes with any whitespace PostgreSQL accepts.
fn respace(sql: &str, rng: &mut SmallRng) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        if quote.is_none() && c == ' ' {
            out.push_str(["\t", "\n", "\r", "\x0c", " \t\r\n "].choose(rng).copied().unwrap_or(" "));
        } else {
            out.push(c);
        }
    }
    out
}

/// How a case's statement reaches the server.
#[derive(Debug)]
enum Send {
    Batch(String),
    Prepared(String),
    DslSetConfig { name: String, value: String },
    DslPgSettings { name: &'static str, value: String },
    DslInsert,
}

fn dress(h: &Hazard, disguise: Disguise, b: &SchemaName, rng: &mut SmallRng) -> Option<Send> {
    let sql = &h.sql;
    let batch = |s: String| Some(Send::Batch(s));
    match disguise {
        Disguise::None => batch(sql.clone()),
        Disguise::AfterStatement => batch(format!("SELECT 1; {sql}")),
        Disguise::AfterLineCommentLf => batch(format!("SELECT 1; -- note ;\n{sql}")),
        Disguise::AfterLineCommentCr => batch(format!("SELECT 1; -- note ;\r{sql}")),
        Disguise::TrailingComment => batch(format!("{sql} -- and then")),
        Disguise::NestedBlockComments => batch(format!("/* a /* b ; */ c */ /*/*/ */ */{sql}")),
        Disguise::DollarQuoteWithTag => batch(format!("SELECT $tag$ ; -- ' $$ $tag$; {sql}")),
        Disguise::EscapeString => batch(format!("SELECT E'\\'; -- '; {sql}")),
        Disguise::ConformingStringsOff => batch(format!("SELECT 'a\\'; {sql}; --'")),
        Disguise::UnicodeIdentifier => {
            let unicode = sql
                .replacen("set_config", r#"U&"\0073et_config""#, 1)
                .replacen("SET search_path", r#"SET U&"search\005fpath""#, 1)
                .replacen("pg_settings", r#"U&"!0070g_settings" UESCAPE '!'"#, 1)
                .replacen("pg_advisory_lock", r#"U&"pg\005fadvisory_lock""#, 1);
            (unicode != *sql).then_some(Send::Batch(unicode))
        }
        Disguise::Case => batch(recase(sql, rng)),
        Disguise::Whitespace => batch(respace(sql, rng)),
        Disguise::Qualified => {
            let qualified = match &h.call {
                Some(c) if !c.starts_with("hz_") => format!("SELECT pg_catalog.{c}"),
                _ => sql.replacen("pg_settings", "pg_catalog.pg_settings", 1),
            };
            (qualified != *sql).then_some(Send::Batch(qualified))
        }
        Disguise::Cte => {
            h.call.as_ref().map(|c| Send::Batch(format!("WITH x AS (SELECT {c} AS v) SELECT * FROM x")))
        }
        Disguise::ExplainAnalyze => h.explainable.then(|| Send::Batch(format!("EXPLAIN ANALYZE {sql}"))),
        Disguise::Binds => (h.explainable || !sql.contains(';')).then(|| Send::Prepared(sql.clone())),
        Disguise::Dsl => match (h.family, h.call.as_deref(), sql.as_str()) {
            ("set_config", Some(c), _) => {
                let name = c.split('\'').nth(1)?.to_owned();
                let value = if name == "search_path" { b.quoted() } else { String::from("4000") };
                (!c.contains("true")).then_some(Send::DslSetConfig { name, value })
            }
            ("pg_settings", _, s) if s.starts_with("UPDATE") => Some(if s.contains("search_path") {
                Send::DslPgSettings { name: "search_path", value: b.quoted() }
            } else {
                Send::DslPgSettings { name: "statement_timeout", value: String::from("6000") }
            }),
            ("sequence", None, _) => Some(Send::DslInsert),
            _ => None,
        },
    }
}

fn run(send: &Send, conn: &mut PgConnection) -> QueryResult<()> {
    match send {
        Send::Batch(sql) => conn.batch_execute(sql),
        Send::Prepared(sql) => diesel::sql_query(sql).execute(conn).map(drop),
        Send::DslSetConfig { name, value } => {
            diesel::select(set_config(name, value, false)).get_result::<String>(conn).map(drop)
        }
        Send::DslPgSettings { name, value } => {
            diesel::update(pg_settings::table.filter(pg_settings::name.eq(*name)))
                .set(pg_settings::setting.eq(value))
                .execute(conn)
                .map(drop)
        }
        Send::DslInsert => diesel::insert_into(items::table)
            .values((items::tenant.eq("hazard"), items::body.eq("dsl")))
            .execute(conn)
            .map(drop),
    }
}

/// The server's own view of a session: everything a borrower could leave.
#[derive(QueryableByName, Debug, PartialEq)]
struct SessionView {
    #[diesel(sql_type = Text)]
    search_path: String,
    #[diesel(sql_type = Text)]
    schemas: String,
    #[diesel(sql_type = Text)]
    settings: String,
    #[diesel(sql_type = Integer)]
    temp_schema: i32,
    #[diesel(sql_type = BigInt)]
    prepared: i64,
    #[diesel(sql_type = BigInt)]
    cursors: i64,
    #[diesel(sql_type = BigInt)]
    advisory_locks: i64,
    #[diesel(sql_type = BigInt)]
    listening: i64,
    #[diesel(sql_type = Nullable<Text>)]
    role: Option<String>,
}

/// Two statements share a transaction timestamp only inside one transaction.
fn in_transaction(conn: &mut PgConnection) -> bool {
    let mut started = || -> String {
        diesel::select(diesel::dsl::sql::<Text>("transaction_timestamp()::text")).get_result(conn).unwrap()
    };
    started() == started()
}

/// Settings a session of the pool carries by design: its scope, and what
/// diesel sets on every connection (or PgBouncer on every client).
const EXPECTED_SETTINGS: &str =
    "'search_path', 'TimeZone', 'client_encoding', 'application_name', 'DateStyle', 'IntervalStyle', 'standard_conforming_strings'";

fn view(conn: &mut PgConnection) -> SessionView {
    diesel::sql_query(format!(
        "SELECT current_setting('search_path') AS search_path, \
                array_to_string(current_schemas(false), ',') AS schemas, \
                coalesce((SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings \
                          WHERE source = 'session' AND name NOT IN ({EXPECTED_SETTINGS})), '') AS settings, \
                pg_my_temp_schema()::int AS temp_schema, \
                (SELECT count(*) FROM pg_prepared_statements WHERE from_sql) AS prepared, \
                (SELECT count(*) FROM pg_cursors WHERE name <> '') AS cursors, \
                (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory_locks, \
                (SELECT count(*) FROM pg_listening_channels()) AS listening, \
                nullif(current_setting('role'), 'none') AS role"
    ))
    .get_result(conn)
    .unwrap_or_else(|e| panic!("reading the session: {e}"))
}

/// `lastval()` must not answer in a session handed out fresh.
fn lastval_answers(conn: &mut PgConnection) -> bool {
    diesel::select(diesel::dsl::sql::<BigInt>("lastval()")).get_result::<i64>(conn).is_ok()
}

/// What is wrong with a session handed out for `tenant`, if anything.
fn disagreement(conn: &mut PgConnection, tenant: &SchemaName, in_transaction: bool) -> Option<String> {
    let v = view(conn);
    let mut wrong = String::new();
    if v.search_path.replace('"', "") != format!("{tenant}, pg_temp") || v.schemas != tenant.as_str() {
        let _ = write!(wrong, "search path {:?} (schemas {:?}); ", v.search_path, v.schemas);
    }
    if !v.settings.is_empty() {
        let _ = write!(wrong, "session settings {}; ", v.settings);
    }
    if v.temp_schema != 0 {
        wrong.push_str("a temporary schema; ");
    }
    for (what, n) in [
        ("prepared statements", v.prepared),
        ("cursors", v.cursors),
        ("advisory locks", v.advisory_locks),
        ("listened channels", v.listening),
    ] {
        if n != 0 {
            let _ = write!(wrong, "{n} {what}; ");
        }
    }
    if !in_transaction && self::in_transaction(conn) {
        wrong.push_str("inside a transaction; ");
    }
    if v.role.is_some() {
        let _ = write!(wrong, "role {:?}; ", v.role);
    }
    if !in_transaction && lastval_answers(conn) {
        wrong.push_str("lastval() answers; ");
    }
    (!wrong.is_empty()).then_some(wrong)
}

/// Two tenants with `items` and the hazard functions; the pool's first
/// connection is warmed so that catalog reads do not count.
fn tenants() -> Schemas {
    let schemas = Schemas::create("diff", 2, ITEMS_DDL);
    let mut admin = admin();
    for (own, other) in [(0, 1), (1, 0)] {
        let ddl = functions_ddl(&schemas.names[other]);
        admin
            .batch_execute(&format!(
                "SET search_path TO {}; {ddl}; RESET search_path",
                schemas.names[own].quoted()
            ))
            .unwrap();
    }
    schemas
}

fn session_mode(always_restore: bool, families: &[&str]) {
    let schemas = tenants();
    let pool = TenantPool::builder().max_size(1).always_restore(always_restore).build(&url()).unwrap();
    let mut rng = SmallRng::seed_from_u64(seed() ^ u64::from(always_restore));
    let mut disagreements = Vec::new();
    let mut ran = 0;
    while ran < cases() {
        let (a, b) = if rng.random_bool(0.5) { (0, 1) } else { (1, 0) };
        let (a, b) = (&schemas.names[a], &schemas.names[b]);
        let all = hazards(a, b, rng.random_range(1..1_000_000));
        let candidates: Vec<&Hazard> = all.iter().filter(|h| families.contains(&h.family)).collect();
        let h = *candidates.choose(&mut rng).unwrap();
        let disguise = *DISGUISES.choose(&mut rng).unwrap();
        let Some(send) = dress(h, disguise, b, &mut rng) else { continue };
        ran += 1;
        let in_body = rng.random_bool(0.3);
        if in_body {
            let _ = pool.transaction(a, |c| run(&send, c).map_err(TenancyError::from));
        } else {
            let mut conn = pool.tenant(a).unwrap();
            let _ = run(&send, &mut conn);
        }
        let next = if rng.random_bool(0.5) { a } else { b };
        let found = if rng.random_bool(0.25) {
            pool.transaction(next, |c| Ok::<_, TenancyError>(disagreement(c, next, true))).unwrap()
        } else {
            let mut conn = pool.tenant(next).unwrap_or_else(|e| panic!("checkout after {send:?}: {e}"));
            disagreement(&mut conn, next, false)
        };
        if let Some(what) = found {
            disagreements.push(format!(
                "{} / {disguise:?} / {} -> next {}: {what}\n    {send:?}",
                h.family,
                if in_body { "in a transaction" } else { "on a session checkout" },
                if next == a { "same tenant" } else { "other tenant" },
            ));
        }
    }
    let mut admin = admin();
    // Writes that reached a tenant came from that tenant's own checkouts.
    for s in &schemas.names {
        let foreign: i64 = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM {}.items WHERE tenant NOT IN ('hazard', 'clean-check')",
            s.quoted()
        ))
        .get_result::<Count>(&mut admin)
        .unwrap()
        .n;
        assert_eq!(foreign, 0);
    }
    eprintln!(
        "differential (session mode, always_restore = {always_restore}): {ran} cases, {} disagreements",
        disagreements.len()
    );
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

const VISIBLE_FAMILIES: &[&str] = &[
    "set",
    "set_config",
    "pg_settings",
    "temp",
    "prepare",
    "cursor",
    "advisory",
    "listen",
    "transaction",
    "sequence",
    "function",
];

#[test]
fn guard_and_server_agree_on_every_generated_borrower() {
    session_mode(false, VISIBLE_FAMILIES);
}

#[test]
fn guard_and_server_agree_with_always_restore() {
    session_mode(true, VISIBLE_FAMILIES);
}

/// Behind PgBouncer (one server connection for every client): hazards in
/// tenant transactions leave nothing on the shared server session, and a
/// refused transaction commits nothing.
#[test]
fn nothing_reaches_other_pgbouncer_clients_and_refusals_commit_nothing() {
    let schemas = tenants();
    let bouncer =
        PgBouncer::start_with(&url(), &PgBouncerConfig { pool_size: 1, ..PgBouncerConfig::default() })
            .unwrap_or_else(|e| {
                panic!("this test needs a real PgBouncer (scripts/test.sh installs it): {e}")
            });
    let pool =
        TenantPool::builder().pooler_mode(PoolerMode::Transaction).max_size(1).build(&bouncer.url()).unwrap();
    let mut observer = PgConnection::establish(&bouncer.url()).unwrap();
    let baseline = view(&mut observer);
    let mut rng = SmallRng::seed_from_u64(seed() ^ 0xb0);
    let mut disagreements = Vec::new();
    let mut refused = 0;
    let mut ran = 0;
    let cases = cases() / 2;
    while ran < cases {
        let (a, b) = schemas.pair();
        let all = hazards(a, b, rng.random_range(1..1_000_000));
        // What server code does beyond the search path and temporary objects
        // is not checked behind a pooler (see the README).
        let checked: Vec<&Hazard> = all
            .iter()
            .filter(|h| !matches!(h.call.as_deref(), Some("hz_set_timeout()" | "hz_lock()")))
            .collect();
        let h = *checked.choose(&mut rng).unwrap();
        let disguise = *DISGUISES.choose(&mut rng).unwrap();
        let Some(send) = dress(h, disguise, b, &mut rng) else { continue };
        ran += 1;
        let marker = format!("marker-{ran}");
        let result = pool.transaction(a, |c| {
            diesel::insert_into(items::table)
                .values((items::tenant.eq("clean-check"), items::body.eq(&marker)))
                .execute(c)?;
            run(&send, c).map_err(TenancyError::from)
        });
        let committed: i64 =
            diesel::sql_query(format!("SELECT count(*) AS n FROM {}.items WHERE body = $1", a.quoted()))
                .bind::<Text, _>(&marker)
                .get_result::<Count>(&mut admin())
                .unwrap()
                .n;
        let mut wrong = String::new();
        match &result {
            Ok(()) if committed != 1 => wrong.push_str("returned Ok but did not commit; "),
            Err(_) if committed != 0 => wrong.push_str("returned an error but committed; "),
            Err(TenancyError::SessionStateRefused) => refused += 1,
            _ => {}
        }
        let seen = view(&mut observer);
        if seen != baseline {
            let _ = write!(wrong, "another client sees {seen:?}; ");
        }
        if lastval_answers(&mut observer) {
            wrong.push_str("lastval() answers for another client; ");
        }
        if !wrong.is_empty() {
            disagreements.push(format!("{} / {disguise:?}: {wrong}\n    {send:?} -> {result:?}", h.family));
            // Start the next case from a clean server session.
            observer.batch_execute("ROLLBACK").unwrap();
            observer.batch_execute("DISCARD ALL").unwrap();
        }
    }
    eprintln!(
        "differential (PgBouncer, transaction mode): {ran} cases, {refused} refused, {} disagreements",
        disagreements.len()
    );
    assert!(refused > 0, "no hazard was refused");
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
}
