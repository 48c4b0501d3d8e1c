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
//!   `set_config(...)`, session advisory locks, `CREATE TEMP TABLE` (temporary
//!   tables are searched before the tenant schema), `LISTEN`, and transaction
//!   control that diesel's transaction manager did not issue (a transaction
//!   left open): the physical connection is retired and replaced.
//!
//! Statements are classified from their SQL text as diesel reports it through
//! its [`Instrumentation`] hook, before they run. The check costs a scan of the
//! statement text (no round trip). Functions that change session state from
//! inside the server (a PL/pgSQL body calling `set_config`) cannot be seen
//! this way; give such functions a `SET search_path` clause instead.

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
            buf: String::with_capacity(256),
        }
    }

    /// Returns the hazards seen since the last call and clears them.
    pub(crate) fn take_hazards(&mut self) -> Hazards {
        std::mem::take(&mut self.hazards)
    }

    pub(crate) fn set_internal(&mut self, internal: bool) {
        self.internal = internal;
    }

    fn inspect(&mut self, query: &dyn fmt::Display) {
        self.buf.clear();
        // Only the SQL text matters; stop before diesel formats the bind values.
        let _ = write!(SqlOnly(&mut self.buf), "{query}");
        let managed = std::mem::take(&mut self.managed_transaction_statement);
        let found = classify(&self.buf, managed);
        self.hazards.search_path |= found.search_path;
        self.hazards.retire |= found.retire;
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
    for statement in sql.split(';') {
        let mut words = Words::new(statement);
        let Some(first) = words.next() else { continue };
        let second = words.next();
        match first.as_str() {
            "set" => match second.as_deref() {
                Some("local") => {}
                Some("session") => match words.next().as_deref() {
                    Some("search_path") => hazards.search_path = true,
                    _ => hazards.retire = true,
                },
                Some("search_path") => hazards.search_path = true,
                Some("transaction") if managed => {}
                _ => hazards.retire = true,
            },
            "reset" => match second.as_deref() {
                Some("search_path") => hazards.search_path = true,
                _ => hazards.retire = true,
            },
            "discard" | "deallocate" | "prepare" | "listen" | "load" => hazards.retire = true,
            "begin" | "start" | "commit" | "end" | "rollback" | "abort" | "savepoint" | "release" => {
                if !managed {
                    hazards.retire = true;
                }
            }
            "create" => {
                if matches!(second.as_deref(), Some("temp" | "temporary" | "local" | "global")) {
                    hazards.retire = true;
                }
            }
            _ => {}
        }
        // Function calls that change session state can appear anywhere, and
        // `SELECT ... INTO TEMP t` creates a temporary table too.
        let mut previous = String::new();
        for word in Words::new(statement) {
            let into_temp = previous == "into" && matches!(word.as_str(), "temp" | "temporary");
            if into_temp
                || matches!(
                    word.as_str(),
                    "set_config"
                        | "pg_advisory_lock"
                        | "pg_advisory_lock_shared"
                        | "pg_try_advisory_lock"
                        | "pg_try_advisory_lock_shared"
                        | "dblink_connect"
                )
            {
                hazards.retire = true;
            }
            previous = word;
        }
    }
    hazards
}

/// Lowercased SQL words, skipping string literals, quoted identifiers and comments.
struct Words<'a> {
    rest: &'a [u8],
}

impl<'a> Words<'a> {
    fn new(s: &'a str) -> Self {
        Self { rest: s.as_bytes() }
    }
}

impl Iterator for Words<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            let (&b, tail) = self.rest.split_first()?;
            match b {
                b'\'' | b'"' => {
                    // Skip to the closing quote; a doubled quote stays inside.
                    let mut i = 0;
                    loop {
                        match tail.get(i) {
                            None => {
                                self.rest = &[];
                                return None;
                            }
                            Some(&c) if c == b => {
                                if tail.get(i + 1) == Some(&b) {
                                    i += 2;
                                } else {
                                    self.rest = &tail[i + 1..];
                                    break;
                                }
                            }
                            Some(_) => i += 1,
                        }
                    }
                    if b == b'"' {
                        // A quoted identifier still counts as a word (e.g. SET "search_path").
                        return Some(String::from("\u{0}quoted"));
                    }
                }
                b'-' if tail.first() == Some(&b'-') => {
                    let end = tail.iter().position(|&c| c == b'\n').unwrap_or(tail.len());
                    self.rest = &tail[end..];
                }
                b'/' if tail.first() == Some(&b'*') => {
                    let end = tail.windows(2).position(|w| w == b"*/").map_or(tail.len(), |p| p + 2);
                    self.rest = &tail[end..];
                }
                c if c.is_ascii_alphanumeric() || c == b'_' => {
                    let len = self
                        .rest
                        .iter()
                        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$'))
                        .unwrap_or(self.rest.len());
                    let word = self.rest[..len].to_ascii_lowercase();
                    self.rest = &self.rest[len..];
                    return Some(String::from_utf8_lossy(&word).into_owned());
                }
                _ => self.rest = tail,
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
    }
}
