//! Plumbing shared by the example applications in `examples/`: reporting a
//! failure as one line, and naming things uniquely per run. Nothing here is
//! about tenancy; the examples themselves are.

use std::fmt::Display;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// The exit status of an example: success, or `error: <one line>` on stderr
/// and a non-zero status.
///
/// Error messages from PostgreSQL (libpq) span several lines; a failing
/// example prints exactly one, so it reads well in a terminal and in CI logs.
///
/// ```
/// let code = tenancy_examples::exit_code(Err::<(), _>("no\nserver"));
/// assert_eq!(code, std::process::ExitCode::FAILURE);
/// ```
pub fn exit_code<E: Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// `message` with every run of whitespace (newlines and tabs included)
/// replaced by one space.
///
/// ```
/// assert_eq!(tenancy_examples::one_line("refused\n\tIs the server running?\n"), "refused Is the server running?");
/// ```
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A short lowercase tag (`[a-z0-9]`, at most 12 characters) that differs
/// between runs, including runs started at the same moment, for naming the
/// tenants and databases of one run so that reruns and parallel runs never
/// meet.
///
/// ```
/// let tag = tenancy_examples::run_tag();
/// assert!(!tag.is_empty() && tag.len() <= 12);
/// assert!(tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
/// ```
pub fn run_tag() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // Process ids are unique among running processes; the clock (its low 40
    // bits wrap every 18 minutes) separates reruns. Together: under 2^62.
    let clock = (nanos % (1 << 40)) as u64;
    let mut n = (u64::from(std::process::id()) << 40) ^ clock;
    let mut tag = Vec::new();
    loop {
        let digit = (n % 36) as u32;
        tag.push(char::from_digit(digit, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    tag.into_iter().rev().collect()
}
