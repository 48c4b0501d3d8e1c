//! The fast path: a quick look at the statements nearly all traffic
//! consists of, before the full classifier.

use super::catalog::Catalog;
use super::effects::Effects;
use super::lexer::eq_fold;

/// A quick look for the statements nearly all traffic consists of: a single
/// `SELECT`, `UPDATE` or `DELETE` in the shape diesel's DSL writes, with no
/// literal strings, comments, dollar quotes or escapes, naming nothing in
/// `pg_*`, and calling, unqualified, only functions the catalog trusts.
/// Says [`Effects::NONE`] only where [`classify`] says so too; `None` sends
/// the statement to [`classify`].
pub(crate) fn fast_path(sql: &str, catalog: &Catalog) -> Option<Effects> {
    let b = sql.as_bytes();
    let mut i = b.iter().position(|c| !c.is_ascii_whitespace())?;
    // The whole first word: `SELECT2` is one identifier, not `SELECT` and `2`.
    let first_end = i + b[i..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b'$'))
        .unwrap_or(b.len() - i);
    let first = &b[i..first_end];
    if !(eq_fold(first, "select") || eq_fold(first, "update") || eq_fold(first, "delete")) {
        return None;
    }
    // Keywords a parenthesis may follow; any other word before one is a
    // function, trusted only if the catalog trusts it.
    const KEYWORDS: &[&str] = &[
        "where", "and", "or", "not", "in", "any", "all", "exists", "values", "select", "from", "on", "using",
        "having", "by", "when", "then", "else", "case", "join", "coalesce",
    ];
    let update = eq_fold(first, "update");
    // The last word seen, and whether it was quoted or qualified (`s.lower(`
    // calls a function of schema `s`, which may be anyone's code).
    let mut last_word: Option<(&[u8], bool)> = None;
    let mut after_dot = false;
    i = first_end;
    while i < b.len() {
        let c = b[i];
        // Whether a dot came right before this token (spaces may stand between).
        let qualified =
            if matches!(c, b' ' | b'\t' | b'\n') { after_dot } else { std::mem::take(&mut after_dot) };
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
                last_word = Some((word, qualified));
                i += len;
            }
            b'(' => {
                if let Some((word, quoted_or_qualified)) = last_word {
                    let keyword = KEYWORDS.iter().any(|kw| eq_fold(word, kw));
                    if quoted_or_qualified || !(keyword || catalog.is_harmless(word)) {
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
                // Digits only: letters after a number (`1into`, an exponent)
                // are looked at as a word of their own, as older servers
                // read them.
                while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'.' || *c == b'_') {
                    i += 1;
                }
                last_word = None;
            }
            b' ' | b'\t' | b'\n' => i += 1,
            b'.' => {
                last_word = None;
                after_dot = true;
                i += 1;
            }
            b')' | b',' | b'=' | b'<' | b'>' | b'*' | b'+' | b'%' | b'[' | b']' => {
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
