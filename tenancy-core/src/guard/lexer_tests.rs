use super::*;

fn tokens(sql: &str) -> Vec<Token<'_>> {
    Lexer::new(sql.as_bytes(), Backslashes::Literal).collect()
}

fn words(sql: &str) -> Vec<String> {
    tokens(sql)
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(String::from_utf8_lossy(w).into_owned()),
            Token::Quoted(Some(w)) => Some(format!("\"{}\"", String::from_utf8_lossy(&w))),
            Token::End => Some(String::from(";")),
            _ => None,
        })
        .collect()
}

#[test]
fn line_comments_end_at_carriage_return_too() {
    assert_eq!(
        words("SELECT 1; --\rSET search_path TO public"),
        ["SELECT", ";", "SET", "search_path", "TO", "public"]
    );
    assert_eq!(words("SELECT 1 -- x\nRESET ALL"), ["SELECT", "RESET", "ALL"]);
    assert_eq!(words("SELECT 1 -- x"), ["SELECT"]);
}

#[test]
fn block_comments_nest_like_the_server() {
    assert_eq!(words("/* a /* b */ c */ SET x"), ["SET", "x"]);
    // `/*/` opens a nested comment; the server then needs two closings.
    assert_eq!(words("/*/*/ */ SET a */ SET b"), ["SET", "b"]);
    assert_eq!(words("/**/ SET c"), ["SET", "c"]);
}

#[test]
fn dollar_quotes_need_their_own_tag() {
    assert_eq!(tokens("$a$ x $b$ y $a$").len(), 1);
    assert_eq!(words("SELECT $1, a$b$c FROM t"), ["SELECT", "a$b$c", "FROM", "t"]);
    assert_eq!(words("SELECT $$ ; SET x $$; SET y"), ["SELECT", ";", "SET", "y"]);
}

#[test]
fn strings_hide_nothing_and_decode() {
    assert_eq!(words("SELECT 'a;b''c'; SET x"), ["SELECT", ";", "SET", "x"]);
    assert_eq!(tokens("E'search\\137path'"), [Token::String(Some(Cow::Owned(b"search_path".to_vec())))]);
    assert_eq!(words(r"SELECT E'\'', set_config"), ["SELECT", "set_config"]);
    // With standard_conforming_strings off, `\'` does not end the string.
    let off: Vec<_> = Lexer::new(br"SELECT 'a\'; SET x'; SET y", Backslashes::Escape).collect();
    assert_eq!(off.iter().filter(|t| **t == Token::End).count(), 1);
}

#[test]
fn unicode_identifiers_are_decoded() {
    assert_eq!(words(r#"SELECT U&"\0073et_config"()"#), ["SELECT", "\"set_config\""]);
    assert_eq!(words(r#"SELECT U&"!0073et_config" UESCAPE '!' ()"#), ["SELECT", "\"set_config\""]);
    assert_eq!(words(r#"SELECT u&"\+000073et_config""#), ["SELECT", "\"set_config\""]);
    assert_eq!(tokens(r#"U&"\zz""#), [Token::Quoted(None)]);
}

#[test]
fn high_bytes_belong_to_identifiers() {
    assert_eq!(words("SET\u{a0}search_path"), ["SET\u{a0}search_path"]);
}

#[test]
fn semicolons_inside_parentheses_or_atomic_bodies_do_not_end_statements() {
    let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END; SET x";
    assert_eq!(tokens(sql).iter().filter(|t| **t == Token::End).count(), 1);
    assert_eq!(tokens("SELECT (1; 2); SET x").iter().filter(|t| **t == Token::End).count(), 1);
    // Outside a routine, BEGIN is a statement of its own.
    assert_eq!(tokens("BEGIN; SELECT 1; COMMIT").iter().filter(|t| **t == Token::End).count(), 2);
}

#[test]
fn statements_split_at_top_level_semicolons_only() {
    assert_eq!(
        statements("CREATE TABLE a (x int); CREATE INDEX ON a (x);"),
        ["CREATE TABLE a (x int)", "CREATE INDEX ON a (x)"]
    );
    assert_eq!(statements("SELECT 1"), ["SELECT 1"]);
    assert_eq!(statements("  ;; \n ; "), Vec::<&str>::new());
    assert_eq!(statements(""), Vec::<&str>::new());
}

#[test]
fn statements_keep_semicolons_in_strings_and_quoted_names() {
    assert_eq!(
        statements("INSERT INTO t VALUES ('a;b'); SELECT 2"),
        ["INSERT INTO t VALUES ('a;b')", "SELECT 2"]
    );
    assert_eq!(statements("SELECT 'it''s; here'; SELECT 3"), ["SELECT 'it''s; here'", "SELECT 3"]);
    assert_eq!(
        statements("CREATE TABLE \"x;y\" (a int); SELECT 4"),
        ["CREATE TABLE \"x;y\" (a int)", "SELECT 4"]
    );
    // E'' strings take backslash escapes: \' does not end the string.
    assert_eq!(statements("SELECT E'a\\'; b'; SELECT 5"), ["SELECT E'a\\'; b'", "SELECT 5"]);
    // A standard string: the backslash is a character, and '' doubles.
    assert_eq!(statements("SELECT 'a\\'; SELECT 6"), ["SELECT 'a\\'", "SELECT 6"]);
}

#[test]
fn statements_keep_dollar_quoted_bodies_whole() {
    let function =
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$ BEGIN PERFORM 1; RETURN 2; END $fn$";
    assert_eq!(statements(&format!("{function}; SELECT f()")), [function, "SELECT f()"]);
    let nested = "DO $$ BEGIN EXECUTE $q$SELECT 1; SELECT 2$q$; END $$";
    assert_eq!(statements(&format!("{nested};SELECT 7;")), [nested, "SELECT 7"]);
}

#[test]
fn statements_skip_semicolons_in_comments() {
    assert_eq!(statements("SELECT 1 -- a; b\nFROM t; SELECT 2"), ["SELECT 1 -- a; b\nFROM t", "SELECT 2"]);
    // A line comment ends at a carriage return too.
    assert_eq!(statements("SELECT 1 -- a\r; SELECT 2"), ["SELECT 1 -- a", "SELECT 2"]);
    assert_eq!(
        statements("SELECT /* a; /* b; */ c; */ 1; SELECT 2"),
        ["SELECT /* a; /* b; */ c; */ 1", "SELECT 2"]
    );
    assert_eq!(statements("SELECT 1; -- the end; really"), ["SELECT 1"]);
    assert_eq!(statements("/* only; a comment */"), Vec::<&str>::new());
}

#[test]
fn statements_keep_begin_atomic_bodies_whole() {
    let routine = "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END";
    assert_eq!(
        statements(&format!("{routine}; CREATE INDEX i ON t (x)")),
        [routine, "CREATE INDEX i ON t (x)"]
    );
    let procedure = "CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END";
    assert_eq!(statements(&format!("{procedure};SELECT 8")), [procedure, "SELECT 8"]);
    // A transaction block is not a routine body.
    assert_eq!(statements("BEGIN; SELECT 1; END"), ["BEGIN", "SELECT 1", "END"]);
}

#[test]
fn statements_keep_semicolons_inside_parentheses() {
    assert_eq!(statements("SELECT (1; 2); SELECT 3"), ["SELECT (1; 2)", "SELECT 3"]);
}
