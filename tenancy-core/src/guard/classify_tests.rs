use super::*;
use crate::guard::fast_path::fast_path;

fn effects(sql: &str) -> Effects {
    classify(sql, &Catalog::default(), false)
}

/// Asserts the classification of each statement: `"sql" => EFFECT | EFFECT;`.
macro_rules! classified {
    ($($sql:literal => $($effect:ident)|+;)*) => {
        $(assert_eq!(effects($sql), Effects::NONE $(.union(Effects::$effect))+, "{}", $sql);)*
    };
}

#[test]
fn everyday_statements_leave_nothing() {
    for sql in [
        r#"SELECT "items"."id", "items"."tenant" FROM "items" WHERE ("items"."id" = $1)"#,
        r#"UPDATE "items" SET "body" = $1 WHERE ("items"."id" = $2)"#,
        r#"DELETE FROM "items" WHERE ("items"."id" = ANY($1))"#,
        "SELECT COUNT(*) FROM items",
        "SELECT lower(name), coalesce(a, b), max(id) FROM t GROUP BY 1",
        "SELECT 'set search_path to public; SET role x'",
        "SELECT 1 -- reset all",
        "SELECT 1 /* ; set search_path to x */",
        "SELECT temp FROM weather",
        r#"SELECT "temp" FROM "create""#,
        "SELECT $$ it's $$ || 'x'",
        "DECLARE c CURSOR FOR SELECT 1",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET LOCAL statement_timeout = 1",
        "SELECT set_config('statement_timeout', '1', true)",
        "SELECT set_config('app.tenant', $1, 't')",
        "CREATE TABLE t (id bigint)",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$BEGIN PERFORM set_config('a','b',false); END$$",
        "SAVEPOINT s; RELEASE SAVEPOINT s; ROLLBACK TO SAVEPOINT s",
        "SHOW search_path",
        "DISCARD PLANS",
        "DISCARD SEQUENCES",
        "UNLISTEN *",
        "SELECT pg_advisory_xact_lock(1)",
        "SELECT now(), random(), gen_random_uuid()",
        "EXPLAIN SELECT * FROM items",
        "(SELECT 1)",
        "SELECT * FROM items FOR UPDATE",
        "LOCK TABLE items IN ACCESS EXCLUSIVE MODE",
    ] {
        assert_eq!(effects(sql), Effects::NONE, "{sql}");
    }
}

#[test]
fn search_path_changes_are_seen_however_they_are_spelt() {
    for sql in [
        "SET search_path TO public",
        "set SESSION search_path = x",
        "SET \"search_path\" TO x",
        "SET SCHEMA 'x'",
        "RESET search_path",
        "select 1; SET search_path TO x",
        "SELECT 1; --\rSET search_path TO public",
        "SELECT 1; --\nSET search_path TO public",
        "/* a /* b */ ; */ SET search_path TO x",
        "SELECT set_config('search_path', 'x', false)",
        "SELECT set_config('SEARCH_PATH', 'x', false)",
        "SELECT set_config(E'search\\137path', 'x', false)",
        "SELECT pg_catalog.set_config('search_path', 'x', false)",
        "SELECT \"set_config\"('search_path', 'x', false)",
        r#"SELECT U&"\0073et_config"('search_path', 'x', false)"#,
        r#"SELECT U&"!0073et_config" UESCAPE '!' ('search_path', 'x', false)"#,
        "SELECT set_config('search_path', 'x', 1 = 1)",
        "WITH s AS (SELECT set_config('search_path', 'x', false)) SELECT * FROM s",
        "UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'",
        "update PG_CATALOG.PG_SETTINGS set setting = '\"beta\"' where name = 'search_path'",
        "EXPLAIN ANALYZE UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'",
        "EXPLAIN (ANALYZE, BUFFERS) UPDATE \"pg_catalog\".\"pg_settings\" SET \"setting\" = $1 WHERE (\"pg_settings\".\"name\" = $2)",
    ] {
        assert!(effects(sql).contains(Effects::SEARCH_PATH), "{sql}: {:?}", effects(sql));
    }
}

#[test]
fn every_session_change_is_seen_and_told_apart() {
    classified! {
        // Local scoping is told apart from the session's.
        "SET LOCAL search_path TO x" => LOCAL_SEARCH_PATH;
        "SELECT set_config('search_path', 'x', true)" => LOCAL_SEARCH_PATH;
        "SELECT set_config('statement_timeout', '1', TRUE)" => NONE;
        "SELECT set_config('statement_timeout', '1', false)" => SETTING;
        "SELECT set_config($1, $2, false)" => SEARCH_PATH | SETTING;
        // Session state.
        "RESET ALL" => SEARCH_PATH | SETTING;
        "SET role = other" => SETTING;
        "SET TIME ZONE 'UTC'" => SETTING;
        "SET SESSION AUTHORIZATION other" => SETTING;
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY" => SETTING;
        "RESET ROLE" => SETTING;
        "SET statement_timeout = 1" => SETTING;
        "CREATE TEMP TABLE items (id int)" => TEMPORARY;
        "CREATE TEMPORARY TABLE items (id int)" => TEMPORARY;
        "CREATE OR REPLACE TEMP VIEW items AS SELECT 1" => TEMPORARY;
        "CREATE LOCAL TEMPORARY TABLE items (id int)" => TEMPORARY;
        "CREATE TABLE pg_temp.items (id int)" => TEMPORARY;
        "CREATE UNLOGGED TABLE pg_temp_3.items (id int)" => TEMPORARY;
        "EXPLAIN ANALYZE CREATE TEMP TABLE items AS SELECT 1" => TEMPORARY;
        "SELECT * INTO TEMP t FROM items" => TEMPORARY;
        "SELECT * INTO LOCAL TEMP items FROM t" => TEMPORARY;
        "PREPARE p AS SELECT 1" => PREPARED;
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1" => CURSOR;
        "SELECT pg_advisory_lock(1)" => ADVISORY_LOCK;
        "SELECT pg_try_advisory_lock_shared(1)" => ADVISORY_LOCK;
        "SELECT 1; LISTEN x" => LISTEN;
        "SELECT nextval('items_id_seq')" => SEQUENCES;
        "INSERT INTO items (tenant) VALUES ($1)" => SEQUENCES;
        "UPDATE items SET id = DEFAULT" => SEQUENCES;
        "DISCARD ALL" => UNRESTORABLE;
        "DEALLOCATE ALL" => UNRESTORABLE;
        "LOAD 'auto_explain'" => UNRESTORABLE;
        "SELECT setseed(0.5)" => UNRESTORABLE;
        "SELECT ext.dblink_connect('x')" => UNRESTORABLE;
        "DO $$BEGIN SET search_path TO b; END$$" => OPAQUE;
        "CALL p()" => OPAQUE;
        "EXECUTE p" => OPAQUE;
        "SELECT my_function()" => OPAQUE;
        "SELECT app.f(1)" => OPAQUE;
        "VACUUM" => NONE;
        "FROBNICATE everything" => OPAQUE;
        // Transaction control nobody announced.
        "BEGIN" => BEGINS;
        "START TRANSACTION" => BEGINS;
        "COMMIT" => ENDS;
        "END" => ENDS;
        "ROLLBACK" => ENDS;
        "ABORT" => ENDS;
        "COMMIT AND CHAIN" => ENDS;
        "PREPARE TRANSACTION 'x'" => ENDS;
        "BEGIN; INSERT INTO t DEFAULT VALUES" => BEGINS | SEQUENCES;
    }
}

#[test]
fn announced_transaction_control_is_expected() {
    let catalog = Catalog::default();
    assert_eq!(classify("BEGIN", &catalog, true), Effects::NONE);
    assert_eq!(classify("COMMIT", &catalog, true), Effects::NONE);
    // Only the statement diesel announced is expected.
    assert_eq!(classify("BEGIN; COMMIT", &catalog, true), Effects::ENDS);
    assert!(classify("BEGIN; SET search_path TO x", &catalog, true).contains(Effects::SEARCH_PATH));
}

#[test]
fn standard_conforming_strings_off_is_read_too() {
    // With standard_conforming_strings off the string ends at the second
    // quote, and the SET is a statement.
    let sql = r"SELECT 'a\'; SET search_path TO public; --'";
    assert!(effects(sql).contains(Effects::SEARCH_PATH), "{:?}", effects(sql));
}

#[test]
fn atomic_bodies_are_one_statement() {
    let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END";
    assert!(!effects(sql).intersects(Effects::ENDS | Effects::BEGINS), "{:?}", effects(sql));
}

#[test]
fn catalog_from_the_server_decides_functions() {
    let catalog = Catalog::with_harmless([String::from("my_pure")], []);
    assert_eq!(classify("SELECT my_pure(1)", &catalog, false), Effects::NONE);
    assert_eq!(classify("SELECT count(*)", &catalog, false), Effects::OPAQUE);
    assert_eq!(classify("SELECT random()", &catalog, false), Effects::NONE);
}

#[test]
fn the_fast_path_accepts_dsl_and_agrees_with_the_classifier() {
    let dsl = [
        r#"SELECT "items"."id", "items"."tenant" FROM "items" WHERE ("items"."id" = $1)"#,
        r#"UPDATE "items" SET "body" = $1 WHERE ("items"."id" = $2)"#,
        r#"DELETE FROM "items" WHERE ("items"."id" = ANY($1))"#,
        r#"SELECT COUNT(*) FROM "items""#,
        r#"SELECT "items"."id" FROM "items" WHERE (("items"."id" > $1) AND ("items"."tenant" IN ($2, $3))) ORDER BY "items"."id" DESC LIMIT $4 OFFSET $5"#,
        "  select count(*) from items",
    ];
    for sql in dsl {
        assert_eq!(fast_path(sql, &Catalog::default()), Some(Effects::NONE), "{sql}");
        assert_eq!(effects(sql), Effects::NONE, "{sql}");
    }
    for sql in [
        "SELECT set_config('search_path', 'public', false)",
        "select pg_catalog.SET_CONFIG('search_path', 'b', false)",
        r#"SELECT "set_config"('search_path', 'public', false)"#,
        r#"SELECT U&"\0073et_config"('search_path', 'b', false)"#,
        "UPDATE pg_settings SET setting = 'x'",
        "SELECT 1; SET search_path TO public",
        "SELECT 1 --\rSET search_path TO x",
        "SELECT * INTO TEMP t FROM items",
        "SELECT nextval('s')",
        "UPDATE items SET id = DEFAULT",
        "INSERT INTO items DEFAULT VALUES",
        "SET search_path TO public",
        "SELECT a$b FROM t",
        // Found by the fuzz target: one identifier, not `SELECT` and `2`.
        r#"SELECT2 FROM "items" W1)"#,
        "SELECT 1into TEMP t FROM items",
        "SELECT 1e5into TEMP t FROM items",
        // A qualified name calls that schema's function, whatever its name.
        "SELECT evil.lower(1)",
        r#"SELECT "evil".count(*) FROM items"#,
        "UPDATE].avg(((((((((((U](avg(8(max(].avg(((((((((((UPDATE](=*",
    ] {
        assert_eq!(fast_path(sql, &Catalog::default()), None, "{sql}");
    }
}

#[test]
fn degenerate_input_is_classified_without_panicking() {
    for sql in [
        "'",
        "\"",
        "$",
        "$$",
        "$a$",
        "/*",
        "--",
        "e'\\",
        "u&\"",
        ";;;",
        "",
        "$1$",
        "SET",
        "RESET",
        "set_config(",
        "SELECT set_config(",
        "EXPLAIN (",
        "EXPLAIN ANALYZE",
        "(((",
        ")))",
    ] {
        let _ = effects(sql);
        let _ = fast_path(sql, &Catalog::default());
    }
}
