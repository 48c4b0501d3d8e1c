//! What a statement can leave behind in a PostgreSQL session, read from its
//! text.
//!
//! The model is an allowlist, not a list of dangerous words: a statement is
//! harmless only when its kind is one known to leave no session state and
//! every function it calls is known not to change any. Statement kinds that
//! do change session state (`SET`, `RESET`, `DISCARD`, `PREPARE`, `LISTEN`,
//! `DECLARE .. WITH HOLD`, transaction control, temporary objects) are
//! modelled one by one; anything else — an unknown statement, a `DO` block,
//! `CALL`, `EXECUTE`, a function that is not known to be harmless — is
//! [`Effects::OPAQUE`]: the text does not say, so the server is asked.
//!
//! Which functions are harmless comes from the server itself (every
//! `pg_catalog` function whose overloads are all immutable or stable, see
//! [`Catalog`]), plus a few volatile ones that touch no session state.

use super::calls::{scan, scan_names};
use super::catalog::Catalog;
use super::effects::Effects;
use super::lexer::{eq_fold, keyword, name, Backslashes, Lexer, Token};

/// Classifies `sql` (one or more `;`-separated statements). `managed_first`
/// says that diesel's transaction manager announced the first statement
/// (its own `BEGIN`, `COMMIT`, `SAVEPOINT` ...), whose transaction control
/// is then expected.
pub(crate) fn classify(sql: &str, catalog: &Catalog, managed_first: bool) -> Effects {
    let mut effects = classify_with(sql.as_bytes(), Backslashes::Literal, catalog, managed_first);
    // Whether `'...'` takes backslash escapes is a session setting the text
    // cannot show: take whatever either reading finds.
    if sql.contains('\\') {
        effects |= classify_with(sql.as_bytes(), Backslashes::Escape, catalog, managed_first);
    }
    effects
}

fn classify_with(sql: &[u8], backslashes: Backslashes, catalog: &Catalog, managed_first: bool) -> Effects {
    let mut effects = Effects::NONE;
    let mut statement: Vec<Token<'_>> = Vec::with_capacity(32);
    let mut first = true;
    for token in Lexer::new(sql, backslashes).chain([Token::End]) {
        if token == Token::End {
            if !statement.is_empty() {
                effects |= statement_effects(&statement, catalog, first && managed_first);
                first = false;
            }
            statement.clear();
        } else {
            statement.push(token);
        }
    }
    effects
}

fn statement_effects(tokens: &[Token<'_>], catalog: &Catalog, managed: bool) -> Effects {
    // `(SELECT ..)` is a statement too.
    let start = tokens.iter().position(|t| *t != Token::Punct(b'(')).unwrap_or(tokens.len());
    let words = &tokens[start..];
    let Some(Token::Word(first)) = words.first() else {
        // Starts with something other than a keyword: the server will reject it,
        // or it is something this model does not know.
        return if words.is_empty() { Effects::NONE } else { Effects::OPAQUE };
    };
    let at = |i: usize, kw: &str| keyword(words.get(i), kw);
    let is = |kw: &str| eq_fold(first, kw);

    if is("set") {
        return set_effects(&words[1..]);
    }
    if is("reset") {
        return if at(1, "all") {
            Effects::SEARCH_PATH | Effects::SETTING
        } else if words.get(1).and_then(name).is_some_and(|n| eq_fold(n, "search_path")) {
            Effects::SEARCH_PATH
        } else {
            Effects::SETTING
        };
    }
    if is("discard") {
        // DISCARD ALL deallocates diesel's own prepared statements too.
        return if at(1, "all") { Effects::UNRESTORABLE } else { Effects::NONE };
    }
    if is("deallocate") || is("load") {
        return Effects::UNRESTORABLE;
    }
    if is("prepare") {
        // The prepared body runs at EXECUTE, which is opaque by itself.
        return if at(1, "transaction") { Effects::ENDS } else { Effects::PREPARED };
    }
    if is("listen") {
        return Effects::LISTEN;
    }
    if is("execute") || is("do") || is("call") {
        return Effects::OPAQUE;
    }
    if is("begin") || is("start") {
        return if managed { Effects::NONE } else { Effects::BEGINS };
    }
    if is("commit") || is("end") || is("rollback") || is("abort") {
        let within = at(1, "to") || at(1, "prepared");
        return if within || managed { Effects::NONE } else { Effects::ENDS };
    }
    if is("savepoint") || is("release") || is("unlisten") {
        return Effects::NONE;
    }
    if is("explain") {
        // Classified as the statement it explains, as if ANALYZE ran it.
        let mut i = 1;
        if words.get(1) == Some(&Token::Punct(b'(')) {
            i += words[1..].iter().position(|t| *t == Token::Punct(b')')).map_or(words.len(), |p| p + 1);
        }
        while ["analyze", "analyse", "verbose"].iter().any(|kw| at(i, kw)) {
            i += 1;
        }
        return match words.get(i..) {
            Some(inner) if !inner.is_empty() => statement_effects(inner, catalog, false),
            _ => Effects::NONE,
        };
    }
    const SCANNED: &[&str] = &[
        "select",
        "values",
        "table",
        "with",
        "insert",
        "update",
        "delete",
        "merge",
        "show",
        "notify",
        "lock",
        "fetch",
        "move",
        "close",
        "declare",
        "checkpoint",
        "vacuum",
        "analyze",
        "analyse",
        "reindex",
        "cluster",
        "refresh",
        "truncate",
        "comment",
        "grant",
        "revoke",
        "security",
        "import",
        "alter",
        "drop",
        "create",
        "copy",
    ];
    if !SCANNED.iter().any(|kw| is(kw)) {
        return Effects::OPAQUE;
    }
    let mut effects = if defines_without_running(words) { scan_names(words) } else { scan(words, catalog) };
    if is("declare") && words.windows(2).any(|w| keyword(Some(&w[0]), "with") && keyword(Some(&w[1]), "hold"))
    {
        effects |= Effects::CURSOR;
    }
    effects
}

/// `CREATE` statements that define something (a function, a trigger, a
/// view, a plain table ...) without running any expression they name: the
/// names followed by `(` in them are definitions, not calls.
fn defines_without_running(words: &[Token<'_>]) -> bool {
    if !keyword(words.first(), "create") {
        return false;
    }
    const SKIPPED: &[&str] = &[
        "or",
        "replace",
        "temp",
        "temporary",
        "local",
        "global",
        "unlogged",
        "constraint",
        "trusted",
        "procedural",
        "default",
        "recursive",
    ];
    let Some(kind) = words[1..].iter().find(|t| !SKIPPED.iter().any(|kw| keyword(Some(t), kw))) else {
        return false;
    };
    const DEFINITIONS: &[&str] = &[
        "function",
        "procedure",
        "trigger",
        "view",
        "rule",
        "aggregate",
        "operator",
        "type",
        "cast",
        "policy",
        "event",
        "domain",
        "language",
        "schema",
        "extension",
        "sequence",
        "collation",
        "conversion",
        "publication",
        "subscription",
        "statistics",
        "transform",
        "access",
        "foreign",
        "server",
        "user",
        "role",
        "group",
        "tablespace",
    ];
    if DEFINITIONS.iter().any(|kw| keyword(Some(kind), kw)) {
        return true;
    }
    // `CREATE TABLE t (...)` runs nothing; `CREATE TABLE t AS SELECT ...` does.
    if keyword(Some(kind), "table") {
        let mut depth = 0usize;
        for token in words {
            match token {
                Token::Punct(b'(') => depth += 1,
                Token::Punct(b')') => depth = depth.saturating_sub(1),
                t if depth == 0 && keyword(Some(t), "as") => return false,
                _ => {}
            }
        }
        return true;
    }
    false
}

/// `SET ...`, after the `SET`.
fn set_effects(rest: &[Token<'_>]) -> Effects {
    let at = |i: usize, kw: &str| keyword(rest.get(i), kw);
    let is_search_path =
        |i: usize| at(i, "schema") || rest.get(i).and_then(name).is_some_and(|n| eq_fold(n, "search_path"));
    if at(0, "local") {
        return if is_search_path(1) { Effects::LOCAL_SEARCH_PATH } else { Effects::NONE };
    }
    if at(0, "transaction") || at(0, "constraints") {
        return Effects::NONE;
    }
    let name_at = usize::from(at(0, "session") && !at(1, "authorization") && !at(1, "characteristics"));
    if is_search_path(name_at) {
        Effects::SEARCH_PATH
    } else {
        Effects::SETTING
    }
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
