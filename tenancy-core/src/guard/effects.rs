//! [`Effects`]: what statements may leave in a session.

use std::fmt;

/// What statements may leave in the session beyond their own transaction.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct Effects(u16);

impl Effects {
    /// Nothing.
    pub(crate) const NONE: Self = Self(0);
    /// The session `search_path`.
    pub(crate) const SEARCH_PATH: Self = Self(1);
    /// Another session setting (a GUC, the role, the session authorization).
    pub(crate) const SETTING: Self = Self(1 << 1);
    /// `SET LOCAL search_path`: ends with the transaction, but moves name
    /// resolution inside it.
    pub(crate) const LOCAL_SEARCH_PATH: Self = Self(1 << 2);
    /// A temporary table, view, sequence or function.
    pub(crate) const TEMPORARY: Self = Self(1 << 3);
    /// An SQL-level prepared statement.
    pub(crate) const PREPARED: Self = Self(1 << 4);
    /// A holdable cursor.
    pub(crate) const CURSOR: Self = Self(1 << 5);
    /// A session advisory lock.
    pub(crate) const ADVISORY_LOCK: Self = Self(1 << 6);
    /// A `LISTEN`.
    pub(crate) const LISTEN: Self = Self(1 << 7);
    /// Sequence state (`currval`, `lastval`), from `nextval` calls or column defaults.
    pub(crate) const SEQUENCES: Self = Self(1 << 8);
    /// Opens a transaction block.
    pub(crate) const BEGINS: Self = Self(1 << 9);
    /// Ends a transaction block (`COMMIT`, `ROLLBACK`, `END`, `ABORT`, `PREPARE TRANSACTION`).
    pub(crate) const ENDS: Self = Self(1 << 10);
    /// Runs code the text does not show (a function not known to be
    /// harmless, `DO`, `CALL`, `EXECUTE`, a statement of unknown kind).
    pub(crate) const OPAQUE: Self = Self(1 << 11);
    /// State that cannot be undone in place: diesel's own prepared
    /// statements deallocated, a library loaded, a `dblink` connection, a
    /// random seed. The connection is retired.
    pub(crate) const UNRESTORABLE: Self = Self(1 << 12);

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
        const NAMES: [&str; 13] = [
            "SEARCH_PATH",
            "SETTING",
            "LOCAL_SEARCH_PATH",
            "TEMPORARY",
            "PREPARED",
            "CURSOR",
            "ADVISORY_LOCK",
            "LISTEN",
            "SEQUENCES",
            "BEGINS",
            "ENDS",
            "OPAQUE",
            "UNRESTORABLE",
        ];
        let set: Vec<&str> =
            NAMES.iter().enumerate().filter(|(i, _)| self.0 & (1 << i) != 0).map(|(_, n)| *n).collect();
        if set.is_empty() {
            f.write_str("NONE")
        } else {
            f.write_str(&set.join(" | "))
        }
    }
}
