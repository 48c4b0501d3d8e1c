//! [`Effects`]: what statements may leave in a session.

use std::fmt;

/// What statements may leave in the session beyond their own transaction.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct Effects(u16);

/// Declares a group of effects, one bit each, and the names `Debug` prints for them.
macro_rules! effects {
    ($group:ident: $($(#[doc = $doc:literal])* $name:ident = $bit:literal;)*) => {
        impl Effects {
            $($(#[doc = $doc])* pub(crate) const $name: Self = Self(1 << $bit);)*
        }

        const $group: &[(&str, Effects)] = &[$((stringify!($name), Effects::$name)),*];
    };
}

// Settings.
effects! {
    SETTINGS:
    /// The session `search_path`.
    SEARCH_PATH = 0;
    /// Another session setting (a GUC, the role, the session authorization).
    SETTING = 1;
    /// `SET LOCAL search_path`: ends with the transaction, but moves name
    /// resolution inside it.
    LOCAL_SEARCH_PATH = 2;
}

// Objects and registrations the session keeps.
effects! {
    KEPT:
    /// A temporary table, view, sequence or function.
    TEMPORARY = 3;
    /// An SQL-level prepared statement.
    PREPARED = 4;
    /// A holdable cursor.
    CURSOR = 5;
    /// A session advisory lock.
    ADVISORY_LOCK = 6;
    /// A `LISTEN`.
    LISTEN = 7;
    /// Sequence state (`currval`, `lastval`), from `nextval` calls or column defaults.
    SEQUENCES = 8;
}

// Transactions, and what the text cannot tell.
effects! {
    CONTROL:
    /// Opens a transaction block.
    BEGINS = 9;
    /// Ends a transaction block (`COMMIT`, `ROLLBACK`, `END`, `ABORT`, `PREPARE TRANSACTION`).
    ENDS = 10;
    /// Runs code the text does not show (a function not known to be
    /// harmless, `DO`, `CALL`, `EXECUTE`, a statement of unknown kind).
    OPAQUE = 11;
    /// State that cannot be undone in place: diesel's own prepared
    /// statements deallocated, a library loaded, a `dblink` connection, a
    /// random seed. The connection is retired.
    UNRESTORABLE = 12;
}

impl Effects {
    /// Nothing.
    pub(crate) const NONE: Self = Self(0);

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
        let set: Vec<&str> = [SETTINGS, KEPT, CONTROL]
            .iter()
            .flat_map(|group| group.iter())
            .filter(|(_, e)| self.contains(*e))
            .map(|(n, _)| *n)
            .collect();
        if set.is_empty() {
            f.write_str("NONE")
        } else {
            f.write_str(&set.join(" | "))
        }
    }
}
