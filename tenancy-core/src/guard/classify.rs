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

use std::collections::HashSet;
use std::fmt;

use super::lexer::{eq_fold, Backslashes, Lexer, Token};

/// What statements may leave in the session beyond their own transaction.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct Effects(u16);

impl Effects {
    /// Nothing.
    pub(crate) const NONE: Self = Self(0);
    /// The session `search_path`.
    pub(crate) const SEARCH_PATH: Self = Self(1);
    /// Another session setting (a GUC, the role, the session authorization).
    pub(crate) const SETTING: Self = Self(1 << 1);
    /// `SET LOCAL search_path`: ends with the transaction, but moves name
    /// resolution inside it.
    pub(crate) const LOCAL_SEARCH_PATH: Self = Self(1 << 2);
    /// A temporary table, view, sequence or function.
    pub(crate) const TEMPORARY: Self = Self(1 << 3);
    /// An SQL-level prepared statement.
    pub(crate) const PREPARED: Self = Self(1 << 4);
    /// A holdable cursor.
    pub(crate) const CURSOR: Self = Self(1 << 5);
    /// A session advisory lock.
    pub(crate) const ADVISORY_LOCK: Self = Self(1 << 6);
    /// A `LISTEN`.
    pub(crate) const LISTEN: Self = Self(1 << 7);
    /// Sequence state (`currval`, `lastval`), from `nextval` calls or column defaults.
    pub(crate) const SEQUENCES: Self = Self(1 << 8);
    /// Opens a transaction block.
    pub(crate) const BEGINS: Self = Self(1 << 9);
    /// Ends a transaction block (`COMMIT`, `ROLLBACK`, `END`, `ABORT`, `PREPARE TRANSACTION`).
    pub(crate) const ENDS: Self = Self(1 << 10);
    /// Runs code the text does not show (a function not known to be
    /// harmless, `DO`, `CALL`, `EXECUTE`, a statement of unknown kind).
    pub(crate) const OPAQUE: Self = Self(1 << 11);
    /// State that cannot be undone in place: diesel's own prepared
    /// statements deallocated, a library loaded, a `dblink` connection, a
    /// random seed. The connection is retired.
    pub(crate) const UNRESTORABLE: Self = Self(1 << 12);

    /// Everything that changes the session for later transactions (what a
    /// transaction pooler would hand to other clients).
    pub(crate) const SESSION: Self = Self(
        Self::SEARCH_PATH.0
            | Self::SETTING.0
            | Self::TEMPORARY.0
            | Self::PREPARED.0
            | Self::CURSOR.0
            | Self::ADVISORY_LOCK.0
            | Self::LISTEN.0
            | Self::UNRESTORABLE.0,
    );

    pub(crate) const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub(crate) const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    pub(crate) const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl std::ops::BitOr for Effects {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Effects {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Effects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 13] = [
            "SEARCH_PATH",
            "SETTING",
            "LOCAL_SEARCH_PATH",
            "TEMPORARY",
            "PREPARED",
            "CURSOR",
            "ADVISORY_LOCK",
            "LISTEN",
            "SEQUENCES",
            "BEGINS",
            "ENDS",
            "OPAQUE",
            "UNRESTORABLE",
        ];
        let set: Vec<&str> =
            NAMES.iter().enumerate().filter(|(i, _)| self.0 & (1 << i) != 0).map(|(_, n)| *n).collect();
        if set.is_empty() {
            f.write_str("NONE")
        } else {
            f.write_str(&set.join(" | "))
        }
    }
}

/// What the classifier knows about the server's functions and relations.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    /// Functions (lowercase, unqualified or in `pg_catalog`) that change no session state.
    harmless: HashSet<Box<[u8]>>,
    /// `pg_catalog` relations with rules that run on writes (`pg_settings`,
    /// whose update rule calls `set_config`).
    ruled_relations: HashSet<Box<[u8]>>,
}

/// Volatile built-in functions that touch no session state.
const VOLATILE_BUT_HARMLESS: &[&str] = &[
    "random",
    "gen_random_uuid",
    "clock_timestamp",
    "timeofday",
    "statement_timestamp",
    "transaction_timestamp",
    "pg_notify",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "txid_current",
    "pg_current_xact_id",
    "lastval",
    "pg_backend_pid",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
];

/// Immutable or stable built-ins diesel's DSL and everyday SQL use; the
/// offline stand-in for what [`Catalog::from_server`] reads.
const EVERYDAY_BUILTINS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "lower",
    "upper",
    "length",
    "char_length",
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "now",
    "date_trunc",
    "date_part",
    "to_char",
    "to_date",
    "to_timestamp",
    "concat",
    "concat_ws",
    "substr",
    "replace",
    "btrim",
    "ltrim",
    "rtrim",
    "split_part",
    "strpos",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_build_object",
    "jsonb_build_object",
    "array_length",
    "cardinality",
    "unnest",
    "generate_series",
    "row_number",
    "rank",
    "dense_rank",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "bool_and",
    "bool_or",
    "every",
    "md5",
    "encode",
    "decode",
    "age",
    "make_interval",
    "left",
    "right",
    "starts_with",
    "regexp_replace",
    "to_json",
    "to_jsonb",
    "jsonb_set",
    "array_to_string",
    "string_to_array",
    "current_setting",
    "current_schemas",
    "version",
    "to_regclass",
    "to_regnamespace",
    "pg_typeof",
];

impl Default for Catalog {
    fn default() -> Self {
        Self::with_harmless(EVERYDAY_BUILTINS.iter().map(|s| s.to_string()), [String::from("pg_settings")])
    }
}

impl Catalog {
    /// A catalog from the server's own lists (see [`Catalog::FUNCTIONS_SQL`]
    /// and [`Catalog::RELATIONS_SQL`]), plus the volatile functions known harmless.
    pub(crate) fn with_harmless(
        functions: impl IntoIterator<Item = String>,
        ruled_relations: impl IntoIterator<Item = String>,
    ) -> Self {
        let harmless = functions
            .into_iter()
            .chain(VOLATILE_BUT_HARMLESS.iter().map(|s| s.to_string()))
            .map(|s| s.to_ascii_lowercase().into_bytes().into_boxed_slice())
            .collect();
        let ruled_relations = ruled_relations
            .into_iter()
            .map(|s| s.to_ascii_lowercase().into_bytes().into_boxed_slice())
            .collect();
        Self { harmless, ruled_relations }
    }

    /// Every `pg_catalog` function all of whose overloads are immutable or
    /// stable: by PostgreSQL's volatility contract, none changes anything.
    pub(crate) const FUNCTIONS_SQL: &'static str = "SELECT proname::text AS name FROM pg_catalog.pg_proc \
         WHERE pronamespace = 'pg_catalog'::regnamespace GROUP BY proname \
         HAVING bool_and(provolatile IN ('i', 's') AND prokind IN ('f', 'a', 'w'))";

    /// Every `pg_catalog` relation with a rule that runs on a write.
    pub(crate) const RELATIONS_SQL: &'static str = "SELECT DISTINCT c.relname::text AS name \
         FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class \
         WHERE c.relnamespace = 'pg_catalog'::regnamespace AND r.ev_type <> '1'";

    fn is_harmless(&self, name: &[u8]) -> bool {
        with_folded(name, |folded| self.harmless.contains(folded))
    }

    fn is_ruled_relation(&self, name: &[u8]) -> bool {
        with_folded(name, |folded| self.ruled_relations.contains(folded))
    }
}

/// Calls `f` with `name` in ASCII lowercase, without allocating for names of identifier length.
fn with_folded<T>(name: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    let mut buf = [0u8; 64];
    match buf.get_mut(..name.len()) {
        Some(slot) => {
            for (dst, src) in slot.iter_mut().zip(name) {
                *dst = src.to_ascii_lowercase();
            }
            f(slot)
        }
        None => f(&name.to_ascii_lowercase()),
    }
}

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

/// A word of the statement as a keyword: unquoted, compared without case.
fn keyword(token: Option<&Token<'_>>, kw: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if eq_fold(w, kw))
}

/// The name a token spells, if it is a word or a decodable quoted identifier.
fn name<'t>(token: &'t Token<'_>) -> Option<&'t [u8]> {
    match token {
        Token::Word(w) => Some(w),
        Token::Quoted(Some(q)) => Some(q),
        _ => None,
    }
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

/// For statements that run nothing: only the temporary objects they create.
fn scan_names(words: &[Token<'_>]) -> Effects {
    let mut effects = Effects::NONE;
    for (i, token) in words.iter().enumerate() {
        let previous = i.checked_sub(1).and_then(|p| words.get(p));
        if let Some(spelled) = name(token) {
            if is_temporary_schema(spelled) || is_temp_keyword(token, previous) {
                effects |= Effects::TEMPORARY;
            }
        }
    }
    effects
}

/// `pg_temp`, `pg_temp_3`, `pg_toast_temp_3`: the session's temporary schema.
fn is_temporary_schema(spelled: &[u8]) -> bool {
    let prefix = |p: &str| spelled.len() >= p.len() && eq_fold(&spelled[..p.len()], p);
    prefix("pg_temp") || prefix("pg_toast_temp")
}

/// `CREATE [OR REPLACE] [LOCAL|GLOBAL] TEMP ...`, `SELECT .. INTO TEMP ..`.
fn is_temp_keyword(token: &Token<'_>, previous: Option<&Token<'_>>) -> bool {
    matches!(token, Token::Word(w) if eq_fold(w, "temp") || eq_fold(w, "temporary"))
        && ["create", "replace", "local", "global", "into"].iter().any(|kw| keyword(previous, kw))
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

/// Keywords that may stand before `(` without being a function call.
const NOT_CALLS: &[&str] = &[
    "in",
    "values",
    "exists",
    "any",
    "all",
    "some",
    "as",
    "on",
    "using",
    "conflict",
    "over",
    "filter",
    "within",
    "where",
    "and",
    "or",
    "not",
    "select",
    "from",
    "join",
    "lateral",
    "returning",
    "set",
    "by",
    "when",
    "then",
    "else",
    "case",
    "having",
    "limit",
    "offset",
    "into",
    "table",
    "references",
    "primary",
    "unique",
    "check",
    "key",
    "foreign",
    "index",
    "default",
    "with",
    "array",
    "row",
    "cast",
    "coalesce",
    "greatest",
    "least",
    "nullif",
    "extract",
    "overlay",
    "position",
    "substring",
    "trim",
    "grouping",
    "distinct",
    "union",
    "intersect",
    "except",
    "only",
    "is",
    "like",
    "ilike",
    "similar",
    "between",
    "escape",
    "partition",
    "include",
    "window",
    "range",
    "rows",
    "groups",
    "for",
    "of",
    "do",
    "update",
    "recursive",
    "materialized",
    "character",
    "varchar",
    "numeric",
    "decimal",
    "float",
    "time",
    "timestamp",
    "interval",
    "bit",
    "char",
    "national",
    "nchar",
    "double",
    "precision",
    "return",
    "returns",
    "language",
    "table",
    "do",
    "collate",
    "at",
    "zone",
];

/// Scans the tokens of a statement the server executes for function calls,
/// rule-carrying relations, temporary objects and column defaults.
fn scan(words: &[Token<'_>], catalog: &Catalog) -> Effects {
    let mut effects = Effects::NONE;
    let writes =
        words.iter().any(|t| ["insert", "update", "delete", "merge"].iter().any(|kw| keyword(Some(t), kw)));
    let inserts = words.iter().any(|t| keyword(Some(t), "insert") || keyword(Some(t), "merge"));
    if inserts || words.iter().any(|t| keyword(Some(t), "default")) {
        // Column defaults (serial ids) call nextval.
        effects |= Effects::SEQUENCES;
    }
    for (i, token) in words.iter().enumerate() {
        let previous = i.checked_sub(1).and_then(|p| words.get(p));
        let Some(spelled) = name(token) else {
            if matches!(token, Token::Quoted(None)) {
                effects |= Effects::OPAQUE;
            }
            continue;
        };
        if is_temporary_schema(spelled) || is_temp_keyword(token, previous) {
            effects |= Effects::TEMPORARY;
        }
        let called = words.get(i + 1) == Some(&Token::Punct(b'('));
        if !called {
            if writes && catalog.is_ruled_relation(spelled) {
                effects |= Effects::SEARCH_PATH | Effects::SETTING;
            }
            continue;
        }
        if matches!(token, Token::Word(w) if NOT_CALLS.iter().any(|kw| eq_fold(w, kw))) {
            continue;
        }
        if matches!(previous, Some(Token::Cast))
            || ["as", "into", "table", "references", "with", "recursive"]
                .iter()
                .any(|kw| keyword(previous, kw))
        {
            continue;
        }
        // A qualified call: `schema.function(`.
        let qualifier = match (previous, i.checked_sub(2).and_then(|p| words.get(p))) {
            (Some(Token::Punct(b'.')), Some(q)) => Some(name(q)),
            _ => None,
        };
        effects |= call_effects(spelled, qualifier, &words[i + 2..], catalog);
    }
    effects
}

/// What calling `function` (qualified by `qualifier`, if any) may do; `args`
/// are the tokens after its opening parenthesis.
fn call_effects(
    function: &[u8],
    qualifier: Option<Option<&[u8]>>,
    args: &[Token<'_>],
    catalog: &Catalog,
) -> Effects {
    let is = |f: &str| eq_fold(function, f);
    // dblink keeps connections open in the session, wherever it is installed.
    if ["dblink_connect", "dblink_connect_u", "dblink_open"].iter().any(|f| is(f)) {
        return Effects::UNRESTORABLE;
    }
    match qualifier {
        None => {}
        Some(Some(schema)) if eq_fold(schema, "pg_catalog") => {}
        // A function of some other schema: code the text does not show.
        Some(_) => return Effects::OPAQUE,
    }
    if is("set_config") {
        return set_config_effects(args);
    }
    if ["pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared"]
        .iter()
        .any(|f| is(f))
    {
        return Effects::ADVISORY_LOCK;
    }
    if is("nextval") || is("setval") || is("currval") {
        return Effects::SEQUENCES;
    }
    if is("setseed") {
        return Effects::UNRESTORABLE;
    }
    if catalog.is_harmless(function) {
        Effects::NONE
    } else {
        Effects::OPAQUE
    }
}

/// `set_config(name, value, is_local)`: local only when `is_local` is a true literal.
fn set_config_effects(args: &[Token<'_>]) -> Effects {
    let mut depth = 0usize;
    let mut arguments: Vec<&[Token<'_>]> = Vec::with_capacity(3);
    let mut start = 0;
    for (i, token) in args.iter().enumerate() {
        match token {
            Token::Punct(b'(' | b'[') => depth += 1,
            Token::Punct(b')' | b']') if depth == 0 => {
                arguments.push(&args[start..i]);
                break;
            }
            Token::Punct(b')' | b']') => depth -= 1,
            Token::Punct(b',') if depth == 0 => {
                arguments.push(&args[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    let local = match arguments.get(2) {
        Some([Token::Word(w)]) => eq_fold(w, "true"),
        Some([Token::String(Some(s))]) => {
            let s = String::from_utf8_lossy(s).trim().to_ascii_lowercase();
            ["t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"].contains(&s.as_str())
        }
        _ => false,
    };
    let setting = match arguments.first() {
        Some([Token::String(Some(s))]) => Some(s.as_ref()),
        _ => None,
    };
    let search_path = setting.is_none_or(|s| eq_fold(s.trim_ascii(), "search_path"));
    match (local, search_path, setting.is_some()) {
        (true, true, _) => Effects::LOCAL_SEARCH_PATH,
        (true, false, _) => Effects::NONE,
        (false, true, true) => Effects::SEARCH_PATH,
        (false, false, _) => Effects::SETTING,
        // The name is not a literal: it may be anything.
        (false, true, false) => Effects::SEARCH_PATH | Effects::SETTING,
    }
}

/// A quick look for the statements nearly all traffic consists of: a single
/// `SELECT`, `UPDATE` or `DELETE` in the shape diesel's DSL writes, with no
/// literal strings, comments, dollar quotes or escapes, naming nothing in
/// `pg_*`, and calling only a few everyday aggregates and string functions.
/// Says [`Effects::NONE`] only where [`classify`] says so too; `None` sends
/// the statement to [`classify`].
pub(crate) fn fast_path(sql: &str) -> Option<Effects> {
    let b = sql.as_bytes();
    let mut i = b.iter().position(|c| !c.is_ascii_whitespace())?;
    let first_end = i + b[i..].iter().position(|c| !c.is_ascii_alphabetic()).unwrap_or(b.len() - i);
    let first = &b[i..first_end];
    if !(eq_fold(first, "select") || eq_fold(first, "update") || eq_fold(first, "delete")) {
        return None;
    }
    const CALLABLE: &[&str] = &[
        "where", "and", "or", "not", "in", "any", "all", "exists", "values", "select", "from", "on", "count",
        "sum", "min", "max", "avg", "lower", "upper", "coalesce", "length", "using", "having", "by", "when",
        "then", "else", "case", "join",
    ];
    let update = eq_fold(first, "update");
    // The last word seen, and whether it was quoted.
    let mut last_word: Option<(&[u8], bool)> = None;
    i = first_end;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => {
                let len = b[i + 1..].iter().position(|&c| c == b'"')?;
                let word = &b[i + 1..i + 1 + len];
                if b.get(i + 2 + len) == Some(&b'"') || plain_word_hazard(word, update) {
                    return None;
                }
                last_word = Some((word, true));
                i += len + 2;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let len = b[i..]
                    .iter()
                    .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
                    .unwrap_or(b.len() - i);
                let word = &b[i..i + len];
                if plain_word_hazard(word, update) || b.get(i + len) == Some(&b'$') {
                    return None;
                }
                last_word = Some((word, false));
                i += len;
            }
            b'(' => {
                if let Some((word, quoted)) = last_word {
                    if quoted || !CALLABLE.iter().any(|kw| eq_fold(word, kw)) {
                        return None;
                    }
                }
                last_word = None;
                i += 1;
            }
            b'$' => {
                if !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                last_word = None;
            }
            b'0'..=b'9' => {
                while b.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'_') {
                    i += 1;
                }
                last_word = None;
            }
            b' ' | b'\t' | b'\n' => i += 1,
            b')' | b',' | b'.' | b'=' | b'<' | b'>' | b'*' | b'+' | b'%' | b'[' | b']' => {
                last_word = None;
                i += 1;
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                last_word = None;
                i += 2;
            }
            b'-' if b.get(i + 1) != Some(&b'-') => {
                last_word = None;
                i += 1;
            }
            b'!' if b.get(i + 1) == Some(&b'=') => {
                last_word = None;
                i += 2;
            }
            // Quotes, comments, semicolons, escapes, high bytes, anything else.
            _ => return None,
        }
    }
    Some(Effects::NONE)
}

/// Words the fast path leaves to the classifier.
fn plain_word_hazard(word: &[u8], update: bool) -> bool {
    let starts = |p: &str| word.len() >= p.len() && eq_fold(&word[..p.len()], p);
    starts("pg_")
        || eq_fold(word, "into")
        || eq_fold(word, "temp")
        || eq_fold(word, "temporary")
        || (update && eq_fold(word, "default"))
        || word.contains(&b'\\')
        || word.iter().any(|&c| c >= 0x80)
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
