//! Quoting, in one place: identifiers are always double-quoted and string
//! literals single-quoted, so no name is ever spliced into SQL bare.

/// Double-quotes an identifier, doubling embedded quotes.
pub(crate) fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Single-quotes a string literal, doubling embedded quotes. Only for text
/// without backslashes (validated names), which reads the same whatever
/// `standard_conforming_strings` says.
pub(crate) fn quote_literal(text: &str) -> String {
    debug_assert!(!text.contains('\\'));
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
