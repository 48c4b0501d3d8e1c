//! Decoding string constants and quoted identifiers the way the server
//! does: doubled quotes, backslash escapes, and Unicode escapes.

use std::borrow::Cow;

/// `''` → `'` (or `""` → `"`).
pub(super) fn undouble(raw: &[u8], quote: u8) -> Option<Cow<'_, [u8]>> {
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
pub(super) fn decode_escape_string(raw: &[u8]) -> Option<Cow<'_, [u8]>> {
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
pub(super) fn decode_unicode<'a>(raw: &Cow<'a, [u8]>, escape: u8) -> Option<Cow<'a, [u8]>> {
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

/// Whitespace as the scanner knows it (`\v` too, as newer servers accept it).
pub(super) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\x0b')
}
