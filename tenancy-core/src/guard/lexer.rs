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

use super::escapes::{decode_escape_string, decode_unicode, is_space, undouble};

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

/// The statements of `sql`, split where PostgreSQL ends them (see the
/// module docs: quotes, dollar quotes, `E''` strings, comments and `BEGIN
/// ATOMIC` bodies keep their `;`), each without its `;` and trimmed;
/// stretches of only whitespace and comments are left out.
/// `standard_conforming_strings` is taken to be on (the default).
pub(crate) fn statements(sql: &str) -> Vec<&str> {
    let mut lexer = Lexer::new(sql.as_bytes(), Backslashes::Literal);
    let mut found = Vec::new();
    let mut start = 0;
    let mut has_tokens = false;
    while let Some(token) = lexer.next() {
        if token == Token::End {
            // `at` is just past the `;`, an ASCII byte, so both ends are
            // character boundaries.
            if has_tokens {
                found.push(sql.get(start..lexer.at - 1).unwrap_or_default().trim());
            }
            start = lexer.at;
            has_tokens = false;
        } else {
            has_tokens = true;
        }
    }
    if has_tokens {
        found.push(sql.get(start..).unwrap_or_default().trim());
    }
    found
}

/// A word of the statement as a keyword: unquoted, compared without case.
pub(crate) fn keyword(token: Option<&Token<'_>>, kw: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if eq_fold(w, kw))
}

/// The name a token spells, if it is a word or a decodable quoted identifier.
pub(crate) fn name<'t>(token: &'t Token<'_>) -> Option<&'t [u8]> {
    match token {
        Token::Word(w) => Some(w),
        Token::Quoted(Some(q)) => Some(q),
        _ => None,
    }
}

#[cfg(test)]
#[path = "lexer_tests.rs"]
mod tests;
