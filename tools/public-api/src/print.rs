//! Prints tokens on one line, spaced the way rustfmt spaces a signature, so
//! that the listing says the same thing however the source is formatted.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;

/// One line of Rust for `item` (a type, a bound, generics, a path...).
pub fn tokens(item: &impl ToTokens) -> String {
    stream(item.to_token_stream())
}

/// One line of Rust for a token stream.
pub fn stream(tokens: TokenStream) -> String {
    let atoms = normalize_paths(atoms(tokens));
    let mut out = String::new();
    for (i, atom) in atoms.iter().enumerate() {
        if i > 0 && space_between(&atoms[..i], atom) {
            out.push(' ');
        }
        out.push_str(atom.text());
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Atom {
    Word(String),
    Op(String),
    Group(Delimiter, String),
}

impl Atom {
    fn text(&self) -> &str {
        match self {
            Atom::Word(s) | Atom::Op(s) | Atom::Group(_, s) => s,
        }
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self, Atom::Op(s) if s == op)
    }

    fn is_word(&self) -> bool {
        matches!(self, Atom::Word(_))
    }
}

/// Words after which an opening parenthesis or bracket is spaced
/// (`dyn (A)`, `impl [T]`), unlike after a name (`Fn(A)`).
const KEYWORDS: &[&str] = &[
    "as", "const", "crate", "dyn", "extern", "fn", "for", "impl", "in", "mut", "pub", "ref", "static",
    "unsafe", "where",
];

fn atoms(tokens: TokenStream) -> Vec<Atom> {
    let mut out = Vec::new();
    // Punctuation glued together in the source (`->`, `::`, but also `>,`),
    // split into operators below.
    let mut glued = String::new();
    let mut lifetime = false;
    for tree in tokens {
        match tree {
            TokenTree::Punct(p) if p.as_char() == '\'' && p.spacing() == Spacing::Joint => {
                split_operators(&mut glued, &mut out);
                lifetime = true;
            }
            TokenTree::Punct(p) => {
                glued.push(p.as_char());
                if p.spacing() == Spacing::Alone {
                    split_operators(&mut glued, &mut out);
                }
            }
            TokenTree::Ident(ident) => {
                split_operators(&mut glued, &mut out);
                let word = if lifetime { format!("'{ident}") } else { ident.to_string() };
                lifetime = false;
                out.push(Atom::Word(word));
            }
            TokenTree::Literal(literal) => {
                split_operators(&mut glued, &mut out);
                out.push(Atom::Word(literal.to_string()));
            }
            TokenTree::Group(group) => {
                split_operators(&mut glued, &mut out);
                let inner = stream(group.stream());
                let text = match group.delimiter() {
                    Delimiter::Parenthesis => format!("({inner})"),
                    Delimiter::Bracket => format!("[{inner}]"),
                    Delimiter::Brace if inner.is_empty() => "{}".to_owned(),
                    Delimiter::Brace => format!("{{ {inner} }}"),
                    Delimiter::None => inner,
                };
                out.push(Atom::Group(group.delimiter(), text));
            }
        }
    }
    split_operators(&mut glued, &mut out);
    out
}

/// `>::` is `>` then `::`; `>>` closes two generic lists.
fn split_operators(glued: &mut String, out: &mut Vec<Atom>) {
    let mut rest = glued.as_str();
    while !rest.is_empty() {
        let len = ["::", "->", "=>", "..="]
            .iter()
            .find(|op| rest.starts_with(*op))
            .map_or_else(|| rest.chars().next().map_or(1, char::len_utf8), |op| op.len());
        out.push(Atom::Op(rest[..len].to_owned()));
        rest = &rest[len..];
    }
    glued.clear();
}

/// Paths into the crate itself and the standard library print as their last
/// segment (`crate::pool::TenantPool`, `self::TenantPool` and `TenantPool`
/// are all `TenantPool`; `std::fmt::Display` is `Display`), so that how an
/// item happens to be imported does not show up as an API change.
fn normalize_paths(atoms: Vec<Atom>) -> Vec<Atom> {
    let mut out: Vec<Atom> = Vec::with_capacity(atoms.len());
    let mut i = 0;
    while i < atoms.len() {
        let leading_colons = atoms[i].is_op("::") && !out.last().is_some_and(Atom::is_word);
        let start = if leading_colons { i + 1 } else { i };
        let is_root = matches!(atoms.get(start), Some(Atom::Word(w)) if ["crate", "self", "super", "std", "core", "alloc"].contains(&w.as_str()));
        let preceded_by_path = out.last().is_some_and(|a| a.is_op("::"));
        if is_root && !preceded_by_path && atoms.get(start + 1).is_some_and(|a| a.is_op("::")) {
            // Skip the root and every lowercase (module) segment after it.
            let mut j = start + 2;
            while let (Some(Atom::Word(w)), Some(next)) = (atoms.get(j), atoms.get(j + 1)) {
                if next.is_op("::") && (w.starts_with(|c: char| c.is_ascii_lowercase()) || w == "super") {
                    j += 2;
                } else {
                    break;
                }
            }
            i = j;
            continue;
        }
        out.push(atoms[i].clone());
        i += 1;
    }
    out
}

fn space_between(before: &[Atom], next: &Atom) -> bool {
    let Some(prev) = before.last() else { return false };
    let prev2 = before.len().checked_sub(2).map(|i| &before[i]);
    let prev3 = before.len().checked_sub(3).map(|i| &before[i]);
    let op = |a: &Atom, ops: &[&str]| ops.iter().any(|o| a.is_op(o));

    // `$name:literal` in a macro matcher.
    if prev.is_op(":") && prev2.is_some_and(Atom::is_word) && prev3.is_some_and(|a| a.is_op("$")) {
        return false;
    }
    if op(prev, &["::"]) || op(next, &["::"]) {
        return next.is_op("::") && matches!(prev, Atom::Word(w) if KEYWORDS.contains(&w.as_str()));
    }
    if op(next, &[",", ";", ":", ">", "?"]) && !op(prev, &["+", "=", "->", ":"]) {
        return false;
    }
    if op(next, &[",", ";", ":", ">"]) {
        return false;
    }
    if op(prev, &[",", ";", ":"]) {
        return true;
    }
    if op(prev, &["<"]) || op(next, &["<"]) {
        return false;
    }
    if op(prev, &["=", "+", "->", "=>", "|"]) || op(next, &["=", "+", "->", "=>", "|"]) {
        return true;
    }
    if op(prev, &[">"]) {
        return next.is_word() || matches!(next, Atom::Group(Delimiter::Brace, _));
    }
    if op(prev, &["&", "*", "!", "?", "#", "$", "'", "-"]) {
        return false;
    }
    if let Atom::Group(Delimiter::Parenthesis | Delimiter::Bracket, _) = next {
        return match prev {
            Atom::Word(w) => KEYWORDS.contains(&w.as_str()),
            _ => true,
        };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::stream;

    fn print(source: &str) -> String {
        stream(source.parse().unwrap_or_default())
    }

    #[test]
    fn signatures_print_as_rustfmt_writes_them() {
        let cases = [
            (
                "fn  f ( & self ,x : & 'a  str ) -> Result < ( ) , E >",
                "fn f(&self, x: &'a str) -> Result<(), E>",
            ),
            (
                "Box<dyn Fn(&Progress<'_>)->Box<dyn I>+Send+Sync+'static>",
                "Box<dyn Fn(&Progress<'_>) -> Box<dyn I> + Send + Sync + 'static>",
            ),
            (
                "impl Iterator<Item=(&SchemaName,&TenancyError)>",
                "impl Iterator<Item = (&SchemaName, &TenancyError)>",
            ),
            (
                "where C: TenantContext + ?Sized, F: FnOnce(&mut PgConnection) -> R",
                "where C: TenantContext + ?Sized, F: FnOnce(&mut PgConnection) -> R",
            ),
            ("Vec<Vec<T>>", "Vec<Vec<T>>"),
            ("<T as Trait>::Output", "<T as Trait>::Output"),
            ("[u8; 4]", "[u8; 4]"),
            ("($name:literal)", "($name:literal)"),
        ];
        for (source, printed) in cases {
            assert_eq!(print(source), printed, "{source}");
        }
    }

    #[test]
    fn crate_and_std_paths_print_as_their_last_segment() {
        assert_eq!(print("crate::pool::TenantPool"), "TenantPool");
        assert_eq!(print("::std::result::Result<self::X, super::m::Y>"), "Result<X, Y>");
        assert_eq!(print("core::fmt::Display"), "Display");
        assert_eq!(print("diesel::result::Error"), "diesel::result::Error");
        assert_eq!(print("Self::Error"), "Self::Error");
    }
}
