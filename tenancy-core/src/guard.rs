//! The session guard: notices when a borrower changes session state that
//! would outlive its checkout, so the next borrower never inherits it.
//!
//! A borrower holds a `&mut PgConnection` and can send any SQL. Most of it
//! is harmless to the next borrower of the same physical connection; a few
//! statements are not:
//!
//! * `SET search_path`, `RESET search_path`: the next checkout for the
//!   "same" tenant would resolve names elsewhere. The connection's scope is
//!   forgotten, so the next checkout re-scopes it (one statement).
//! * a statement that failed: the connection may be dead or half-way through
//!   something, so its scope is checked again (that re-scoping statement also
//!   proves the connection alive) before anyone gets it.
//! * any other session `SET`/`RESET`, `RESET ALL`, `DISCARD`, `DEALLOCATE`,
//!   `PREPARE`, `LISTEN`, `LOAD`, `DO` blocks (which can run anything),
//!   `set_config(...)`, `setseed(...)`, session advisory locks, temporary
//!   objects (`CREATE [OR REPLACE] TEMP ...`, `SELECT ... INTO TEMP`, anything
//!   naming `pg_temp`: temporary relations are searched before the tenant
//!   schema), holdable cursors (`DECLARE ... WITH HOLD`, which keep their rows
//!   past the transaction), and transaction control that diesel's
//!   transaction manager did not issue (a transaction left open): the
//!   physical connection is retired and replaced.
//!
//! Statements are classified from their SQL text as diesel reports it through
//! its [`Instrumentation`] hook, before they run. The check is one pass of a
//! small lexer over the statement text, without allocating and without a
//! round trip. The lexer skips string literals (including `E''` escapes and
//! dollar quoting) and comments (nested too) as PostgreSQL does, so quotes or
//! semicolons cannot hide a statement; dollar-quoted bodies are classified as
//! well, so it errs towards retiring. Functions that change session state
//! from inside the server (a PL/pgSQL body calling `set_config`, a view over
//! it) cannot be seen this way; give such functions a `SET search_path`
//! clause instead.
//!
//! Behind PgBouncer in transaction mode the pool's own transactions scope
//! with `SET LOCAL`, so session state left on a server connection (by any
//! client) never changes where their names resolve.

use std::fmt::{self, Write as _};

use diesel::connection::{Instrumentation, InstrumentationEvent};

/// What a borrower did that the next borrower must not inherit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hazards {
    /// The session search_path may have changed.
    pub(crate) search_path: bool,
    /// Other session state changed: the physical connection must be replaced.
    pub(crate) retire: bool,
}

/// Installed as the instrumentation of every pooled connection; forwards
/// every event to the user's instrumentation, if one was configured.
pub(crate) struct SessionGuard {
    user: Option<Box<dyn Instrumentation>>,
    hazards: Hazards,
    /// Set while the pool itself sends a statement (scoping), which is trusted.
    internal: bool,
    /// diesel announces its own BEGIN/COMMIT/ROLLBACK/SAVEPOINT just before sending them.
    managed_transaction_statement: bool,
    /// When false, statements are not inspected (the pool was told to trust its borrowers).
    enabled: bool,
    /// A borrower's statement changed session state (as opposed to a failed
    /// statement making the scope uncertain). Behind a transaction pooler such
    /// a change would reach other clients, so the transaction is refused.
    session_state_sent: bool,
    buf: String,
}

impl SessionGuard {
    pub(crate) fn new(user: Option<Box<dyn Instrumentation>>, enabled: bool) -> Self {
        Self {
            user,
            hazards: Hazards::default(),
            internal: false,
            managed_transaction_statement: false,
            enabled,
            session_state_sent: false,
            buf: String::with_capacity(256),
        }
    }

    /// Returns the hazards seen since the last call and clears them.
    pub(crate) fn take_hazards(&mut self) -> Hazards {
        std::mem::take(&mut self.hazards)
    }

    /// Whether a borrower's statement changed session state since the last call; clears it.
    pub(crate) fn take_session_state_sent(&mut self) -> bool {
        std::mem::take(&mut self.session_state_sent)
    }

    pub(crate) fn set_internal(&mut self, internal: bool) {
        self.internal = internal;
    }

    fn inspect(&mut self, query: &dyn fmt::Display) {
        self.buf.clear();
        // Only the SQL text matters; stop before diesel formats the bind values.
        let _ = write!(SqlOnly(&mut self.buf), "{query}");
        let managed = std::mem::take(&mut self.managed_transaction_statement);
        if plainly_harmless(&self.buf) {
            return;
        }
        let found = classify(&self.buf, managed);
        self.hazards.search_path |= found.search_path;
        self.hazards.retire |= found.retire;
        self.session_state_sent |= found.search_path || found.retire;
    }
}

impl Instrumentation for SessionGuard {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match &event {
            InstrumentationEvent::StartQuery { query, .. } if self.enabled && !self.internal => {
                self.inspect(query);
            }
            InstrumentationEvent::FinishQuery { error: Some(error), .. } => {
                // After a failed statement the session may be gone or half-way
                // through something: never trust its scope without checking again.
                self.hazards.search_path = true;
                if crate::pool::connection_lost(error) {
                    self.hazards.retire = true;
                }
            }
            InstrumentationEvent::BeginTransaction { .. }
            | InstrumentationEvent::CommitTransaction { .. }
            | InstrumentationEvent::RollbackTransaction { .. } => {
                self.managed_transaction_statement = true;
            }
            _ => {}
        }
        if let Some(user) = &mut self.user {
            user.on_connection_event(event);
        }
    }
}

/// Collects formatted SQL and stops at diesel's ` -- binds: ` separator.
struct SqlOnly<'a>(&'a mut String);

impl fmt::Write for SqlOnly<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.starts_with(" -- binds: ") {
            return Err(fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

/// Classifies one query string (possibly several `;`-separated statements).
///
/// `managed` is true when diesel's transaction manager announced this
/// statement, in which case transaction control is expected.
pub(crate) fn classify(sql: &str, managed: bool) -> Hazards {
    let mut hazards = Hazards::default();
    classify_into(sql.as_bytes(), managed, 0, &mut hazards);
    hazards
}

/// The fast path for the statements nearly all traffic consists of: a
/// single `SELECT`/`INSERT`/`UPDATE`/`DELETE` whose text (strings and
/// comments included) mentions nothing that can change session state. Only
/// ever says "harmless" for text the lexer would also pass; anything else,
/// including false alarms, goes through [`classify`].
pub(crate) fn plainly_harmless(sql: &str) -> bool {
    let b = sql.trim_start().as_bytes();
    let at =
        |i: usize, needle: &[u8]| b.get(i..i + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(needle));
    let first_word =
        |kw: &[u8]| at(0, kw) && !b.get(kw.len()).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if !(first_word(b"select") || first_word(b"insert") || first_word(b"update") || first_word(b"delete")) {
        return false;
    }
    (0..b.len()).all(|i| match b[i].to_ascii_lowercase() {
        // A second statement, or a `U&"..."` identifier, which can spell any name.
        b';' => false,
        b'u' => b.get(i + 1) != Some(&b'&'),
        b's' => !at(i, b"set_config") && !at(i, b"setseed"),
        b'a' => !at(i, b"advisory"),
        b'd' => !at(i, b"dblink"),
        // `temp`, `temporary`, `pg_temp`.
        b't' => !at(i, b"temp"),
        _ => true,
    })
}

/// Bodies of dollar-quoted strings (function bodies, `DO` blocks) are
/// classified too, this deep at most; anything nested deeper retires.
const MAX_NESTING: u32 = 4;

fn classify_into(sql: &[u8], managed: bool, depth: u32, hazards: &mut Hazards) {
    let mut statement = Statement::default();
    for token in Lexer::new(sql) {
        match token {
            Token::Word(word) => statement.word(word, hazards),
            Token::End => {
                statement.finish(managed, hazards);
                statement = Statement::default();
            }
            // A body may be PL/pgSQL, where BEGIN/END delimit blocks: only a
            // `DO` (retired by itself) can run it as it stands.
            Token::DollarQuoted(body) if depth < MAX_NESTING => classify_into(body, true, depth + 1, hazards),
            Token::DollarQuoted(_) | Token::Opaque => hazards.retire = true,
        }
    }
    statement.finish(managed, hazards);
}

/// Words of one statement, seen one at a time.
#[derive(Default)]
struct Statement<'a> {
    count: usize,
    leading: [&'a [u8]; 3],
    previous: &'a [u8],
    /// Position of the last `CREATE`, to see `CREATE [OR REPLACE] [LOCAL] TEMP`.
    create_at: Option<usize>,
    with_hold: bool,
}

/// Functions whose call changes session state, wherever they appear.
const SESSION_FUNCTIONS: &[&[u8]] = &[
    b"set_config",
    b"pg_advisory_lock",
    b"pg_advisory_lock_shared",
    b"pg_try_advisory_lock",
    b"pg_try_advisory_lock_shared",
    b"dblink_connect",
    b"setseed",
];

impl<'a> Statement<'a> {
    fn word(&mut self, word: &'a [u8], hazards: &mut Hazards) {
        if let Some(slot) = self.leading.get_mut(self.count) {
            *slot = word;
        }
        let is = |w: &str| word.eq_ignore_ascii_case(w.as_bytes());
        let temp = is("temp") || is("temporary");
        if SESSION_FUNCTIONS.iter().any(|f| word.eq_ignore_ascii_case(f)) {
            hazards.retire = true;
        }
        // The temporary schema, named: `CREATE TABLE pg_temp.t`, `INTO pg_temp_3.t`.
        if word.len() >= 7 && word[..7].eq_ignore_ascii_case(b"pg_temp") {
            hazards.retire = true;
        }
        // `SELECT ... INTO [LOCAL|GLOBAL] TEMP t` and `CREATE [OR REPLACE] [LOCAL] TEMP ...`,
        // also after EXPLAIN or inside CREATE SCHEMA.
        let previous_is = |w: &str| self.previous.eq_ignore_ascii_case(w.as_bytes());
        if temp && (previous_is("into") || previous_is("local") || previous_is("global")) {
            hazards.retire = true;
        }
        if temp && self.create_at.is_some_and(|at| self.count - at <= 4) {
            hazards.retire = true;
        }
        if is("create") {
            self.create_at = Some(self.count);
        }
        if is("hold") && previous_is("with") {
            self.with_hold = true;
        }
        self.previous = word;
        self.count += 1;
    }

    fn finish(&self, managed: bool, hazards: &mut Hazards) {
        if self.count == 0 {
            return;
        }
        let word = |i: usize, w: &str| self.count > i && self.leading[i].eq_ignore_ascii_case(w.as_bytes());
        let first = |w: &str| word(0, w);
        if first("set") {
            if word(1, "local") || word(1, "transaction") || word(1, "constraints") {
                // Ends with the transaction.
            } else if word(1, "search_path") || (word(1, "session") && word(2, "search_path")) {
                hazards.search_path = true;
            } else {
                hazards.retire = true;
            }
        } else if first("reset") {
            if word(1, "search_path") {
                hazards.search_path = true;
            } else {
                hazards.retire = true;
            }
        } else if ["discard", "deallocate", "prepare", "listen", "load", "do"].iter().any(|w| first(w)) {
            // `DO` runs code this scan cannot follow (dynamic SQL, session SETs).
            hazards.retire = true;
        } else if ["begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"]
            .iter()
            .any(|w| first(w))
        {
            if !managed {
                hazards.retire = true;
            }
        } else if first("declare") && self.with_hold {
            // A holdable cursor outlives the transaction, with its rows.
            hazards.retire = true;
        }
    }
}

/// A lexical unit of SQL that matters to the guard.
#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    /// A keyword or identifier (quoted identifiers without their quotes).
    Word(&'a [u8]),
    /// `;`: the end of a statement.
    End,
    /// The body of a dollar-quoted string.
    DollarQuoted(&'a [u8]),
    /// Something that hides what it names (a Unicode-escaped identifier).
    Opaque,
}

/// Splits SQL into words and statement ends, skipping string literals
/// (standard, `E''` with backslash escapes, dollar-quoted) and comments
/// (nested block comments too) the way PostgreSQL's scanner does, so that
/// quotes or semicolons inside them cannot hide a statement.
struct Lexer<'a> {
    sql: &'a [u8],
    at: usize,
}

impl<'a> Lexer<'a> {
    fn new(sql: &'a [u8]) -> Self {
        Self { sql, at: 0 }
    }

    fn peek(&self, offset: usize) -> Option<u8> {
        self.sql.get(self.at + offset).copied()
    }

    /// Skips a quoted run opened at `self.at` by `quote`; `backslash` for E'' strings.
    /// Returns the content (without the quotes).
    fn skip_quoted(&mut self, quote: u8, backslash: bool) -> &'a [u8] {
        let start = self.at + 1;
        let mut i = start;
        while let Some(&c) = self.sql.get(i) {
            if backslash && c == b'\\' {
                i += 2;
            } else if c == quote {
                if self.sql.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    self.at = i + 1;
                    return &self.sql[start..i];
                }
            } else {
                i += 1;
            }
        }
        self.at = self.sql.len();
        self.sql.get(start..).unwrap_or_default()
    }

    /// At a `$`: a dollar-quoted string's body, or `None` for a parameter or a lone `$`.
    fn dollar_quoted(&mut self) -> Option<&'a [u8]> {
        let rest = &self.sql[self.at..];
        let tag_len = 1 + rest[1..].iter().position(|&c| !is_identifier_byte(c))?;
        if rest.get(tag_len) != Some(&b'$') || rest.get(1).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let tag = &rest[..=tag_len];
        let body_start = tag.len();
        let body_len = rest[body_start..].windows(tag.len()).position(|w| w == tag);
        match body_len {
            Some(len) => {
                self.at += body_start + len + tag.len();
                Some(&rest[body_start..body_start + len])
            }
            None => {
                self.at = self.sql.len();
                Some(&rest[body_start..])
            }
        }
    }
}

fn is_identifier_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        loop {
            let c = self.peek(0)?;
            match c {
                b';' => {
                    self.at += 1;
                    return Some(Token::End);
                }
                b'\'' => {
                    self.skip_quoted(b'\'', false);
                }
                b'"' => {
                    let content = self.skip_quoted(b'"', false);
                    return Some(Token::Word(content));
                }
                b'-' if self.peek(1) == Some(b'-') => {
                    let rest = &self.sql[self.at..];
                    self.at += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
                }
                b'/' if self.peek(1) == Some(b'*') => {
                    let mut depth = 0usize;
                    while self.at < self.sql.len() {
                        match (self.peek(0), self.peek(1)) {
                            (Some(b'/'), Some(b'*')) => {
                                depth += 1;
                                self.at += 2;
                            }
                            (Some(b'*'), Some(b'/')) => {
                                depth -= 1;
                                self.at += 2;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => self.at += 1,
                        }
                    }
                }
                b'$' => match self.dollar_quoted() {
                    Some(body) => return Some(Token::DollarQuoted(body)),
                    None => self.at += 1,
                },
                c if is_identifier_byte(c) => {
                    let start = self.at;
                    while self.peek(0).is_some_and(|c| is_identifier_byte(c) || c == b'$') {
                        self.at += 1;
                    }
                    let word = &self.sql[start..self.at];
                    match (word, self.peek(0), self.peek(1)) {
                        // E'...': backslash escapes, so `E'\''` is one quote.
                        ([b'e' | b'E'], Some(b'\''), _) => {
                            self.skip_quoted(b'\'', true);
                        }
                        // U&"...": an identifier spelled with escapes.
                        ([b'u' | b'U'], Some(b'&'), Some(b'"')) => {
                            self.at += 1;
                            self.skip_quoted(b'"', false);
                            return Some(Token::Opaque);
                        }
                        _ => return Some(Token::Word(word)),
                    }
                }
                _ => self.at += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(sql: &str) -> Hazards {
        classify(sql, false)
    }

    #[test]
    fn ordinary_queries_are_harmless() {
        for sql in [
            r#"SELECT "agents"."id" FROM "agents" WHERE "agents"."id" = $1"#,
            r#"INSERT INTO "agents" ("name") VALUES ($1) RETURNING "agents"."id""#,
            "UPDATE t SET x = 1",
            "SELECT 'set search_path to public'",
            "SELECT 1 -- reset all",
            "CREATE TABLE t (id int)",
            "SELECT temp FROM weather",
            "SELECT 'x;', 'set search_path to b'",
            "SELECT $$ it's $$ || 'x'",
            "SELECT $1, $2::text FROM t WHERE a = $3",
            r#"SELECT "temp" FROM "create""#,
            "DECLARE c CURSOR FOR SELECT 1",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET LOCAL statement_timeout = 1",
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN 1; END$$",
            "SELECT e'it\\'s'",
            "/* /* nested */ set search_path to x; */ SELECT 1",
        ] {
            assert_eq!(h(sql), Hazards::default(), "{sql}");
        }
    }

    #[test]
    fn search_path_changes_are_seen() {
        for sql in [
            "SET search_path TO public",
            "set SESSION search_path = x",
            "RESET search_path",
            "select 1; SET search_path TO x",
            r#"SET "search_path" TO x"#,
            "SELECT 'a;b'; SET search_path TO x",
            "SELECT 1; /* ; */ SET search_path TO x",
            "SELECT 1; -- ;\n SET search_path TO x",
        ] {
            assert!(h(sql).search_path, "{sql}");
        }
    }

    #[test]
    fn other_session_state_retires_the_connection() {
        for sql in [
            "RESET ALL",
            "DISCARD ALL",
            "DEALLOCATE ALL",
            "SET role = other",
            "SELECT set_config('search_path', 'public', false)",
            "SELECT pg_advisory_lock(1)",
            "CREATE TEMP TABLE agents (id int)",
            "CREATE TEMPORARY TABLE agents (id int)",
            "SELECT * INTO TEMP t FROM agents",
            "BEGIN",
            "START TRANSACTION",
            "COMMIT",
            "SELECT pg_catalog.set_config('search_path', 'public', false)",
            r#"SELECT "set_config"('search_path', 'public', false)"#,
            "SELECT 'x;', set_config('search_path', 'b', false)",
            r"SELECT E'\'', set_config('search_path', 'b', false)",
            "SELECT $$'$$, set_config('search_path', 'b', false)",
            "SELECT $q$ ' $q$, set_config('search_path', 'b', false)",
            "SELECT 1 /* ' */, set_config('search_path', 'b', false)",
            r#"SELECT U&"\0073et_config"('search_path', 'b', false)"#,
            "DO $$BEGIN SET search_path TO b; END$$",
            "do $$ begin perform 1; end $$",
            "CREATE OR REPLACE TEMP VIEW items AS SELECT 1",
            "CREATE LOCAL TEMPORARY TABLE items (id int)",
            "CREATE TABLE pg_temp.items (id int)",
            "CREATE UNLOGGED TABLE pg_temp_3.items (id int)",
            "EXPLAIN ANALYZE CREATE TEMP TABLE items AS SELECT 1",
            "SELECT * INTO LOCAL TEMP items FROM t",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "SET TIME ZONE 'UTC'",
            "SET SESSION AUTHORIZATION other",
            "RESET ROLE",
            "SELECT setseed(0.5)",
            "SELECT 1; LISTEN x",
            "PREPARE p AS SELECT 1",
        ] {
            assert!(h(sql).retire, "{sql}");
        }
    }

    #[test]
    fn managed_transaction_control_is_expected() {
        assert_eq!(classify("BEGIN", true), Hazards::default());
        assert_eq!(classify("COMMIT", true), Hazards::default());
        assert_eq!(classify("SAVEPOINT diesel_savepoint_1", true), Hazards::default());
        assert_eq!(classify("SET LOCAL search_path TO \"a\"", false), Hazards::default());
        // A transaction statement announced by diesel still carries its other hazards.
        assert!(classify("BEGIN; SET search_path TO x", true).search_path);
        assert!(classify("BEGIN; SET role = x", true).retire);
    }

    #[test]
    fn unterminated_or_degenerate_input_is_classified_without_panicking() {
        for sql in
            ["'", "\"", "$", "$$", "$a$", "/*", "/* /* */", "--", "e'\\", "u&", "u&\"", ";;;", "", "$1$"]
        {
            let _ = h(sql);
        }
        assert!(h("SELECT $$ unterminated set_config").retire);
        let deep = format!("SELECT {}", "$a$ ".repeat(20));
        let _ = h(&deep);
    }
}

#[cfg(test)]
mod function_definitions {
    use super::*;

    #[test]
    fn defining_a_plpgsql_function_is_harmless() {
        let sql = "CREATE OR REPLACE FUNCTION diesel_set_updated_at() RETURNS trigger AS $$
BEGIN
    IF (NEW IS DISTINCT FROM OLD AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at) THEN
        NEW.updated_at := current_timestamp;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;";
        assert_eq!(classify(sql, false), Hazards::default());
    }
}

#[cfg(test)]
mod fast_path {
    use super::*;

    #[test]
    fn passes_ordinary_dml() {
        for sql in [
            r#"SELECT "items"."id", "items"."tenant" FROM "items" WHERE "items"."id" = $1"#,
            r#"INSERT INTO "items" ("tenant", "body") VALUES ($1, $2) RETURNING "items"."id""#,
            r#"UPDATE "items" SET "body" = $1 WHERE "items"."id" = $2"#,
            r#"DELETE FROM "items" WHERE "items"."id" = $1"#,
            "  select count(*) from items",
        ] {
            assert!(plainly_harmless(sql), "{sql}");
        }
    }

    #[test]
    fn never_passes_what_the_lexer_flags() {
        for sql in [
            "SELECT set_config('search_path', 'public', false)",
            "select pg_catalog.SET_CONFIG('search_path', 'b', false)",
            r#"SELECT "set_config"('search_path', 'public', false)"#,
            r#"SELECT U&"\0073et_config"('search_path', 'b', false)"#,
            "SELECT pg_advisory_lock(1)",
            "SELECT setseed(0.5)",
            "SELECT * INTO TEMP t FROM items",
            "SELECT * INTO pg_temp.t FROM items",
            "SELECT 1; SET search_path TO public",
            "SELECT dblink_connect('x')",
            "SET search_path TO public",
            "BEGIN",
            "CREATE TEMP TABLE items (id int)",
            "DISCARD ALL",
        ] {
            assert!(!plainly_harmless(sql), "{sql}");
        }
    }
}
