//! What the words of a statement the server runs may do: the functions it
//! calls, the rule-carrying relations it writes, the temporary objects it
//! makes, the column defaults it fires.

use super::catalog::Catalog;
use super::effects::Effects;
use super::lexer::{eq_fold, keyword, name, Token};

/// For statements that run nothing: only the temporary objects they create.
pub(super) fn scan_names(words: &[Token<'_>]) -> Effects {
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

/// Keywords that may stand before `(` without being a function call.
#[rustfmt::skip]
const NOT_CALLS: &[&str] = &[
    "in", "values", "exists", "any", "all", "some", "as", "on", "using", "conflict", "over", "filter",
    "within", "where", "and", "or", "not", "select", "from", "join", "lateral", "returning", "set", "by",
    "when", "then", "else", "case", "having", "limit", "offset", "into", "table", "references", "primary",
    "unique", "check", "key", "foreign", "index", "default", "with", "array", "row", "cast", "coalesce",
    "greatest", "least", "nullif", "extract", "overlay", "position", "substring", "trim", "grouping",
    "distinct", "union", "intersect", "except", "only", "is", "like", "ilike", "similar", "between",
    "escape", "partition", "include", "window", "range", "rows", "groups", "for", "of", "do", "update",
    "recursive", "materialized", "character", "varchar", "numeric", "decimal", "float", "time", "timestamp",
    "interval", "bit", "char", "national", "nchar", "double", "precision", "return", "returns", "language",
    "table", "do", "collate", "at", "zone",
];

/// Scans the tokens of a statement the server executes for function calls,
/// rule-carrying relations, temporary objects and column defaults.
pub(super) fn scan(words: &[Token<'_>], catalog: &Catalog) -> Effects {
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
