//! A lexer for the SQL a borrower sends, faithful to PostgreSQL's own
//! scanner (`src/backend/parser/scan.l`) wherever a difference could hide a
//! statement: comments end at `\n` or `\r`, block comments nest, dollar
//! quotes need matching tags, `E''` strings take backslash escapes, `U&""`
//! identifiers are decoded (with `UESCAPE`), identifiers take bytes `\x80`
//! and up, and `;` ends a statement only outside parentheses and outside a
//! `BEGIN ATOMIC` body (psql's rule).
//!
//! Whether `'...'` strings take backslash escapes depends on the session's
//! `standard_conforming_strings`, which the text cannot tell: the classifier
//! lexes text containing a backslash both ways and keeps every hazard either
//! reading finds.

use std::borrow::Cow;

/// One token. Words keep their spelling; the classifier folds case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// An unquoted keyword or identifier, as written.
    Word(&'a [u8]),
    /// A quoted identifier, decoded (`""` → `"`, Unicode escapes applied);
    /// `None` when its escapes do not decode (PostgreSQL rejects those).
    Quoted(Option<Cow<'a, [u8]>>),
    /// A string constant of any kind, decoded where that is possible
    /// (`None` for escapes this lexer does not decode).
    String(Option<Cow<'a, [u8]>>),
    /// A number or a `$n` parameter.
    Number,
    /// `::`.
    Cast,
    /// One byte of punctuation or an operator character: `( ) [ ] , . : +` ...
    Punct(u8),
    /// The end of a statement: a `;` at the top level.
    End,
}

/// How `'...'` strings treat a backslash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backslashes {
    /// `standard_conforming_strings = on` (the default): a backslash is a character.
    Literal,
    /// `standard_conforming_strings = off`: a backslash escapes the next character.
    Escape,
}

/// Splits SQL into tokens; see the module docs.
pub(crate) struct Lexer<'a> {
    sql: &'a [u8],
    at: usize,
    backslashes: Backslashes,
    paren_depth: usize,
    /// psql's heuristic for `CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ATOMIC ... END`.
    routine: RoutineHeader,
    begin_depth: usize,
}

/// The first words of a statement, as far as psql's `BEGIN ATOMIC` rule looks.
#[derive(Default, Clone, Copy)]
struct RoutineHeader {
    words: usize,
    initials: [u8; 4],
}

impl RoutineHeader {
    fn see(&mut self, word: &[u8]) {
        if self.words < self.initials.len()
            && ["create", "function", "procedure", "or", "replace"].iter().any(|w| eq_fold(word, w))
        {
            self.initials[self.words] = word[0].to_ascii_lowercase();
        }
        self.words += 1;
    }

    fn is_routine(&self) -> bool {
        let i = self.initials;
        i[0] == b'c'
            && (i[1] == b'f' || i[1] == b'p' || (i[1] == b'o' && i[2] == b'r' && matches!(i[3], b'f' | b'p')))
    }
}

/// ASCII case-insensitive comparison of a word with a lowercase keyword.
pub(crate) fn eq_fold(word: &[u8], keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword.as_bytes())
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

/// Whitespace as the scanner knows it (`\v` too, as newer servers accept it).
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\x0b')
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(sql: &'a [u8], backslashes: Backslashes) -> Self {
        Self { sql, at: 0, backslashes, paren_depth: 0, routine: RoutineHeader::default(), begin_depth: 0 }
    }

    fn peek(&self, offset: usize) -> Option<u8> {
        self.sql.get(self.at + offset).copied()
    }

    /// Skips whitespace and comments; `false` at the end of the text.
    fn skip_trivia(&mut self) -> bool {
        loop {
            match (self.peek(0), self.peek(1)) {
                (None, _) => return false,
                (Some(c), _) if is_space(c) => self.at += 1,
                (Some(b'-'), Some(b'-')) => {
                    let rest = &self.sql[self.at..];
                    self.at += rest.iter().position(|&c| c == b'\n' || c == b'\r').unwrap_or(rest.len());
                }
                (Some(b'/'), Some(b'*')) => self.skip_block_comment(),
                _ => return true,
            }
        }
    }

    /// Block comments nest; an unterminated one runs to the end (the server rejects it).
    fn skip_block_comment(&mut self) {
        let mut depth = 0usize;
        while self.at < self.sql.len() {
            match (self.peek(0), self.peek(1)) {
                (Some(b'/'), Some(b'*')) => {
                    depth += 1;
                    self.at += 2;
                }
                (Some(b'*'), Some(b'/')) => {
                    self.at += 2;
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => self.at += 1,
            }
        }
    }

    /// A quoted run opened at `self.at` by `quote`. Returns the raw content
    /// between the quotes (doubled quotes and escapes not yet decoded).
    fn quoted_run(&mut self, quote: u8, backslash_escapes: bool) -> &'a [u8] {
        let start = self.at + 1;
        let mut i = start;
        while let Some(&c) = self.sql.get(i) {
            if backslash_escapes && c == b'\\' {
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

    /// At a `$`: a dollar-quoted string's body, or `None` (a parameter or a lone `$`).
    fn dollar_quoted(&mut self) -> Option<&'a [u8]> {
        let rest = &self.sql[self.at..];
        let tag_len = 1 + rest[1..].iter().position(|&c| !(is_ident_start(c) || c.is_ascii_digit()))?;
        if rest.get(tag_len) != Some(&b'$') || rest.get(1).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let tag = &rest[..=tag_len];
        let body = &rest[tag.len()..];
        match body.windows(tag.len()).position(|w| w == tag) {
            Some(len) => {
                self.at += tag.len() + len + tag.len();
                Some(&body[..len])
            }
            None => {
                self.at = self.sql.len();
                Some(body)
            }
        }
    }

    /// After a `U&"..."` or `U&'...'`: an optional `UESCAPE 'c'` clause.
    fn unicode_escape_char(&mut self) -> Option<u8> {
        let saved = self.at;
        if self.skip_trivia() {
            let start = self.at;
            while self.peek(0).is_some_and(is_ident_cont) {
                self.at += 1;
            }
            if eq_fold(&self.sql[start..self.at], "uescape")
                && self.skip_trivia()
                && self.peek(0) == Some(b'\'')
            {
                let content = self.quoted_run(b'\'', false);
                if let [c] = content {
                    return Some(*c);
                }
                // An invalid escape character: the server rejects the statement.
                return Some(0);
            }
        }
        self.at = saved;
        None
    }

    fn word(&mut self) -> Token<'a> {
        let start = self.at;
        while self.peek(0).is_some_and(is_ident_cont) {
            self.at += 1;
        }
        let word = &self.sql[start..self.at];
        match (word, self.peek(0), self.peek(1)) {
            ([b'e' | b'E'], Some(b'\''), _) => {
                let raw = self.quoted_run(b'\'', true);
                Token::String(decode_escape_string(raw))
            }
            ([b'b' | b'B' | b'x' | b'X'], Some(b'\''), _) => {
                self.quoted_run(b'\'', false);
                Token::String(None)
            }
            ([b'n' | b'N'], Some(b'\''), _) => self.string(),
            ([b'u' | b'U'], Some(b'&'), Some(quote @ (b'"' | b'\''))) => {
                self.at += 1;
                let raw = self.quoted_run(quote, false);
                let escape = self.unicode_escape_char().unwrap_or(b'\\');
                let decoded = undouble(raw, quote).and_then(|s| decode_unicode(&s, escape));
                if quote == b'"' {
                    Token::Quoted(decoded)
                } else {
                    Token::String(decoded)
                }
            }
            _ => {
                self.routine.see(word);
                if self.routine.is_routine() && self.paren_depth == 0 {
                    // CASE also ends with END; it matters only inside a BEGIN.
                    if eq_fold(word, "begin") || (eq_fold(word, "case") && self.begin_depth >= 1) {
                        self.begin_depth += 1;
                    } else if eq_fold(word, "end") {
                        self.begin_depth = self.begin_depth.saturating_sub(1);
                    }
                }
                Token::Word(word)
            }
        }
    }

    fn string(&mut self) -> Token<'a> {
        let backslashes = self.backslashes == Backslashes::Escape;
        let raw = self.quoted_run(b'\'', backslashes);
        if backslashes {
            Token::String(decode_escape_string(raw))
        } else {
            Token::String(undouble(raw, b'\''))
        }
    }

    fn number(&mut self) -> Token<'a> {
        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        if self.peek(0) == Some(b'.') && self.peek(1) != Some(b'.') {
            self.at += 1;
            while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                self.at += 1;
            }
        }
        if matches!(self.peek(0), Some(b'e' | b'E')) {
            let digits_at = if matches!(self.peek(1), Some(b'+' | b'-')) { 2 } else { 1 };
            if self.peek(digits_at).is_some_and(|c| c.is_ascii_digit()) {
                self.at += digits_at;
                while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                    self.at += 1;
                }
            }
        }
        Token::Number
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        if !self.skip_trivia() {
            return None;
        }
        let c = self.peek(0)?;
        Some(match c {
            b';' => {
                self.at += 1;
                if self.paren_depth == 0 && self.begin_depth == 0 {
                    self.routine = RoutineHeader::default();
                    Token::End
                } else {
                    Token::Punct(b';')
                }
            }
            b'\'' => self.string(),
            b'"' => {
                let raw = self.quoted_run(b'"', false);
                Token::Quoted(undouble(raw, b'"'))
            }
            b'$' => match self.dollar_quoted() {
                Some(body) => Token::String(Some(Cow::Borrowed(body))),
                None => {
                    self.at += 1;
                    while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                        self.at += 1;
                    }
                    Token::Number
                }
            },
            b':' if self.peek(1) == Some(b':') => {
                self.at += 2;
                Token::Cast
            }
            b'.' if self.peek(1).is_some_and(|c| c.is_ascii_digit()) => self.number(),
            c if c.is_ascii_digit() => self.number(),
            c if is_ident_start(c) => self.word(),
            c => {
                self.at += 1;
                match c {
                    b'(' => self.paren_depth += 1,
                    b')' => self.paren_depth = self.paren_depth.saturating_sub(1),
                    _ => {}
                }
                Token::Punct(c)
            }
        })
    }
}

/// `''` → `'` (or `""` → `"`).
fn undouble(raw: &[u8], quote: u8) -> Option<Cow<'_, [u8]>> {
    if !raw.contains(&quote) {
        return Some(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        out.push(raw[i]);
        i += if raw[i] == quote { 2 } else { 1 };
    }
    Some(Cow::Owned(out))
}

/// Decodes the body of an `E'...'` string (or a `'...'` string with
/// `standard_conforming_strings` off): `\n`-style escapes, octal, `\x` hex,
/// `\u`/`\U` code points and doubled quotes.
fn decode_escape_string(raw: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !raw.contains(&b'\\') && !raw.contains(&b'\'') {
        return Some(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c == b'\'' {
            out.push(b'\'');
            i += 2;
            continue;
        }
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let &e = raw.get(i + 1)?;
        i += 2;
        match e {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'0'..=b'7' => {
                let mut value = u32::from(e - b'0');
                let mut taken = 0;
                while taken < 2 && raw.get(i).is_some_and(|d| (b'0'..=b'7').contains(d)) {
                    value = value * 8 + u32::from(raw[i] - b'0');
                    i += 1;
                    taken += 1;
                }
                out.push(u8::try_from(value).ok()?);
            }
            b'x' => {
                let mut value = 0u32;
                let mut taken = 0;
                while taken < 2 && raw.get(i).is_some_and(u8::is_ascii_hexdigit) {
                    value = value * 16 + hex_value(raw[i])?;
                    i += 1;
                    taken += 1;
                }
                if taken == 0 {
                    out.push(b'x');
                } else {
                    out.push(u8::try_from(value).ok()?);
                }
            }
            b'u' | b'U' => {
                let digits = if e == b'u' { 4 } else { 8 };
                let hex = raw.get(i..i + digits)?;
                i += digits;
                push_code_point(&mut out, parse_hex(hex)?)?;
            }
            other => out.push(other),
        }
    }
    Some(Cow::Owned(out))
}

/// Decodes `U&` escapes: `\XXXX`, `\+XXXXXX` and `\\` (with `\` replaced by `escape`).
fn decode_unicode<'a>(raw: &Cow<'a, [u8]>, escape: u8) -> Option<Cow<'a, [u8]>> {
    if escape == 0 || escape.is_ascii_hexdigit() || matches!(escape, b'+' | b'\'' | b'"') || is_space(escape)
    {
        return None;
    }
    if !raw.contains(&escape) {
        return Some(raw.clone());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != escape {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        match raw.get(i + 1) {
            Some(&c) if c == escape => {
                out.push(escape);
                i += 2;
            }
            Some(b'+') => {
                push_code_point(&mut out, parse_hex(raw.get(i + 2..i + 8)?)?)?;
                i += 8;
            }
            Some(_) => {
                push_code_point(&mut out, parse_hex(raw.get(i + 1..i + 5)?)?)?;
                i += 5;
            }
            None => return None,
        }
    }
    Some(Cow::Owned(out))
}

fn hex_value(c: u8) -> Option<u32> {
    char::from(c).to_digit(16)
}

fn parse_hex(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| Some(acc * 16 + hex_value(d)?))
}

fn push_code_point(out: &mut Vec<u8>, value: u32) -> Option<()> {
    let c = char::from_u32(value)?;
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
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
    fn degenerate_input_does_not_panic() {
        for sql in [
            "'",
            "\"",
            "$",
            "$$",
            "$a$",
            "/*",
            "/* /* */",
            "--",
            "e'\\",
            "u&",
            "u&\"",
            "u&'",
            ";;;",
            "",
            "$1$",
            "E'\\u12",
            "U&\"\\+12\"",
            "U&\"x\" UESCAPE",
            "U&\"x\" UESCAPE '",
            "1e",
            "1e+",
            ".",
            "::",
            "E'\\x'",
            "E'\\777'",
        ] {
            let _ = tokens(sql);
            let _: Vec<_> = Lexer::new(sql.as_bytes(), Backslashes::Escape).collect();
        }
    }
}
