//! The session guard: reads every statement a borrower sends, before it is
//! sent, and says what it may leave in the session; the pool then restores,
//! re-scopes or retires the connection before anyone else gets it, or, in a
//! tenant transaction, refuses the statement outright.
//!
//! Text is read as PostgreSQL's scanner reads it ([`lexer`]) and classified
//! against an allowlist of statement kinds and functions known to leave
//! nothing behind ([`classify`]). What the text cannot show (a function's
//! body, a trigger, a rule) is [`Effects::OPAQUE`], and the server itself is
//! asked or made to forget (see the pool's restore message).

mod calls;
mod catalog;
mod classify;
mod effects;
mod escapes;
mod fast_path;
mod lexer;

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

pub(crate) use catalog::Catalog;
pub(crate) use classify::classify;
pub(crate) use effects::Effects;
pub(crate) use fast_path::fast_path;
pub(crate) use lexer::statements;

/// A statement that failed: what it says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) enum Failure {
    /// Nothing failed.
    #[default]
    None,
    /// A failure that says nothing about the session (a constraint, a
    /// serialization conflict): the scope still holds.
    Benign,
    /// Anything else, e.g. "relation does not exist" after a tenant was
    /// dropped elsewhere: the tenant is proven again before the scope is trusted.
    Unknown,
    /// The server connection is gone.
    Lost,
}

impl Failure {
    pub(crate) fn of(error: &DieselError) -> Self {
        match error {
            DieselError::DatabaseError(kind, _) => match kind {
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => Self::Lost,
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::SerializationFailure
                | DatabaseErrorKind::ReadOnlyTransaction
                | DatabaseErrorKind::RestrictViolation
                | DatabaseErrorKind::ExclusionViolation => Self::Benign,
                _ => Self::Unknown,
            },
            // Errors raised before anything was sent (a NUL in the text, a
            // bad bind) or while reading rows leave the session as it was.
            DieselError::InvalidCString(_) | DieselError::SerializationError(_) | DieselError::NotFound => {
                Self::None
            }
            DieselError::DeserializationError(_) => Self::Benign,
            _ => Self::Unknown,
        }
    }
}

/// The transaction statement diesel's transaction manager announced last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announced {
    Begin { depth: u32 },
    Commit { depth: u32 },
    Rollback { depth: u32 },
}

/// Per-connection inspection state.
pub(crate) struct Guard {
    catalog: Arc<Catalog>,
    enabled: bool,
    buf: String,
    /// Classifications of statements seen before: diesel sends the same text
    /// again and again, and classifying once is enough.
    known: HashMap<Box<str>, Effects>,
    announced: Option<Announced>,
    seen: Effects,
    /// A borrower's statement was sent since the last [`take`](Self::take).
    active: bool,
    failure: Failure,
}

/// Statements classified and remembered per connection, at most.
const KNOWN_STATEMENTS: usize = 256;

impl Guard {
    pub(crate) fn new(catalog: Arc<Catalog>, enabled: bool) -> Self {
        Self {
            catalog,
            enabled,
            buf: String::with_capacity(256),
            known: HashMap::new(),
            announced: None,
            seen: Effects::NONE,
            active: false,
            failure: Failure::None,
        }
    }

    /// diesel's transaction manager is about to send its own statement.
    pub(crate) fn announce(&mut self, announced: Announced) {
        self.announced = Some(announced);
    }

    /// The announcement for the statement about to be sent, consumed.
    pub(crate) fn take_announced(&mut self) -> Option<Announced> {
        self.announced.take()
    }

    /// Reads a borrower's statement before it is sent; returns what it may do.
    pub(crate) fn inspect(&mut self, query: &dyn fmt::Display, managed: bool) -> Effects {
        self.active = true;
        if !self.enabled {
            return Effects::NONE;
        }
        self.buf.clear();
        let _ = write!(SqlOnly { out: &mut self.buf, calls: 0 }, "{query}");
        let effects = if let Some(effects) = fast_path(&self.buf, &self.catalog) {
            effects
        } else if let Some(&effects) = self.known.get(self.buf.as_str()).filter(|_| !managed) {
            effects
        } else {
            let effects = classify(&self.buf, &self.catalog, managed);
            if !managed {
                if self.known.len() >= KNOWN_STATEMENTS {
                    self.known.clear();
                }
                self.known.insert(Box::from(self.buf.as_str()), effects);
            }
            effects
        };
        self.seen |= effects;
        effects
    }

    /// A statement failed.
    pub(crate) fn failed(&mut self, error: &DieselError) {
        self.failure = self.failure.max(Failure::of(error));
    }

    /// What the borrower's statements may have done since the last [`take`](Self::take).
    pub(crate) fn seen(&self) -> Effects {
        self.seen
    }

    /// The worst failure since the last [`take`](Self::take).
    pub(crate) fn failure(&self) -> Failure {
        self.failure
    }

    /// What the borrower's statements may have done since the last call,
    /// whether it sent any, and the worst failure; all are cleared.
    pub(crate) fn take(&mut self) -> (Effects, bool, Failure) {
        self.announced = None;
        (std::mem::take(&mut self.seen), std::mem::take(&mut self.active), std::mem::take(&mut self.failure))
    }
}

/// Keeps the SQL of a formatted diesel query and drops the bind values.
///
/// diesel writes a query as `{sql} -- binds: {binds:?}`: the SQL in one
/// piece, then the separator as a piece of its own. Only a second piece that
/// is exactly the separator stops the copy, so SQL that itself contains the
/// separator text is kept whole.
struct SqlOnly<'a> {
    out: &'a mut String,
    calls: usize,
}

impl fmt::Write for SqlOnly<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.calls += 1;
        if self.calls == 2 && s == " -- binds: " {
            return Err(fmt::Error);
        }
        self.out.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pieces(&'static [&'static str]);

    impl fmt::Display for Pieces {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.iter().try_for_each(|p| f.write_str(p))
        }
    }

    #[test]
    fn bind_values_are_dropped_but_the_separator_text_hides_nothing() {
        let mut guard = Guard::new(Arc::new(Catalog::default()), true);
        let effects = guard.inspect(&Pieces(&["SELECT 1", " -- binds: ", "[1]"]), false);
        assert_eq!(effects, Effects::NONE);
        assert_eq!(guard.buf, "SELECT 1");
        let effects = guard.inspect(&Pieces(&[" -- binds: \rSET search_path TO public"]), false);
        assert!(effects.contains(Effects::SEARCH_PATH), "{effects:?}");
        // Any other second piece is kept: the SQL is never cut short.
        let effects = guard.inspect(&Pieces(&["SET role x", "; SELECT 1"]), false);
        assert!(effects.contains(Effects::SETTING), "{effects:?}");
    }

    #[test]
    fn remembered_classifications_are_the_same() {
        let mut guard = Guard::new(Arc::new(Catalog::default()), true);
        for _ in 0..3 {
            assert_eq!(guard.inspect(&"INSERT INTO t (a) VALUES ($1)", false), Effects::SEQUENCES);
            assert_eq!(guard.inspect(&"SELECT set_config('a', 'b', false)", false), Effects::SETTING);
        }
        assert_eq!(guard.take(), (Effects::SEQUENCES | Effects::SETTING, true, Failure::None));
        assert_eq!(guard.take(), (Effects::NONE, false, Failure::None));
    }
}
