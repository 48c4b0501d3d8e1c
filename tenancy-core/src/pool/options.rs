//! [`TransactionOptions`]: how a transaction begins (isolation level, read
//! only, deferrable), as diesel's `build_transaction()` sets them, and
//! [`TransactionBuilder`], which runs a tenant or shared transaction with them.

use std::borrow::Cow;

use super::checkout::Target;
use super::connection::TenantConnection;
use super::TenantPool;
use crate::error::TenancyError;
use crate::schema_name::SchemaName;

/// A transaction isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IsolationLevel {
    /// `READ COMMITTED`, PostgreSQL's default.
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
}

impl IsolationLevel {
    fn sql(self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "ISOLATION LEVEL READ COMMITTED",
            IsolationLevel::RepeatableRead => "ISOLATION LEVEL REPEATABLE READ",
            IsolationLevel::Serializable => "ISOLATION LEVEL SERIALIZABLE",
        }
    }
}

/// How a transaction begins; the default is the server's (`BEGIN`).
///
/// ```
/// use tenancy_core::{IsolationLevel, TransactionOptions};
///
/// let report = TransactionOptions::new().serializable().read_only().deferrable();
/// assert_eq!(report.isolation_level(), Some(IsolationLevel::Serializable));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TransactionOptions {
    isolation: Option<IsolationLevel>,
    read_only: Option<bool>,
    deferrable: Option<bool>,
}

impl TransactionOptions {
    /// The server's defaults.
    pub const fn new() -> Self {
        Self { isolation: None, read_only: None, deferrable: None }
    }

    /// Runs at `level`.
    pub const fn isolation(mut self, level: IsolationLevel) -> Self {
        self.isolation = Some(level);
        self
    }

    /// `ISOLATION LEVEL READ COMMITTED`.
    pub const fn read_committed(self) -> Self {
        self.isolation(IsolationLevel::ReadCommitted)
    }

    /// `ISOLATION LEVEL REPEATABLE READ`.
    pub const fn repeatable_read(self) -> Self {
        self.isolation(IsolationLevel::RepeatableRead)
    }

    /// `ISOLATION LEVEL SERIALIZABLE`.
    pub const fn serializable(self) -> Self {
        self.isolation(IsolationLevel::Serializable)
    }

    /// `READ ONLY`: the server refuses writes.
    pub const fn read_only(self) -> Self {
        self.access(true)
    }

    /// `READ WRITE`.
    pub const fn read_write(self) -> Self {
        self.access(false)
    }

    /// `DEFERRABLE` (with `SERIALIZABLE` and `READ ONLY`: waits for a
    /// snapshot that cannot fail with a serialization error).
    pub const fn deferrable(self) -> Self {
        self.deferral(true)
    }

    /// `NOT DEFERRABLE`.
    pub const fn not_deferrable(self) -> Self {
        self.deferral(false)
    }

    const fn access(mut self, read_only: bool) -> Self {
        self.read_only = Some(read_only);
        self
    }

    const fn deferral(mut self, deferrable: bool) -> Self {
        self.deferrable = Some(deferrable);
        self
    }

    /// The isolation level asked for, if any.
    pub const fn isolation_level(&self) -> Option<IsolationLevel> {
        self.isolation
    }

    /// Whether nothing is asked beyond the server's defaults.
    pub const fn is_default(&self) -> bool {
        self.isolation.is_none() && self.read_only.is_none() && self.deferrable.is_none()
    }

    /// The `BEGIN` statement.
    pub(crate) fn begin_sql(&self) -> Cow<'static, str> {
        if self.is_default() {
            return Cow::Borrowed("BEGIN");
        }
        let modes: Vec<&str> = [
            self.isolation.map(IsolationLevel::sql),
            self.read_only.map(|ro| if ro { "READ ONLY" } else { "READ WRITE" }),
            self.deferrable.map(|d| if d { "DEFERRABLE" } else { "NOT DEFERRABLE" }),
        ]
        .into_iter()
        .flatten()
        .collect();
        Cow::Owned(format!("BEGIN {}", modes.join(", ")))
    }
}

/// A tenant or shared transaction with [`TransactionOptions`], from
/// [`TenantPool::build_transaction`] or [`TenantPool::build_shared_transaction`].
///
/// ```no_run
/// # use tenancy_core::{schema, TenancyError, TenantPool};
/// # use diesel::prelude::*;
/// # let pool = TenantPool::connect("postgres://localhost/app")?;
/// let total: i64 = pool.build_transaction(&schema!("acme")).repeatable_read().read_only().run(|conn| {
///     Ok::<_, TenancyError>(diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("1")).get_result(conn)?)
/// })?;
/// # Ok::<(), TenancyError>(())
/// ```
#[must_use = "a transaction builder does nothing until `run` is called"]
#[derive(Debug, Clone, Copy)]
pub struct TransactionBuilder<'a> {
    pool: &'a TenantPool,
    target: Target<'a>,
    options: TransactionOptions,
}

macro_rules! option_setters {
    ($($(#[$doc:meta])* $name:ident),*) => {$(
        $(#[$doc])*
        pub fn $name(mut self) -> Self {
            self.options = self.options.$name();
            self
        }
    )*};
}

impl<'a> TransactionBuilder<'a> {
    pub(crate) fn new(pool: &'a TenantPool, target: Target<'a>) -> Self {
        Self { pool, target, options: TransactionOptions::new() }
    }

    /// Replaces every option with `options`.
    pub fn options(mut self, options: TransactionOptions) -> Self {
        self.options = options;
        self
    }

    /// Runs at `level`.
    pub fn isolation(mut self, level: IsolationLevel) -> Self {
        self.options = self.options.isolation(level);
        self
    }

    option_setters!(
        /// `ISOLATION LEVEL READ COMMITTED`.
        read_committed,
        /// `ISOLATION LEVEL REPEATABLE READ`.
        repeatable_read,
        /// `ISOLATION LEVEL SERIALIZABLE`.
        serializable,
        /// `READ ONLY`.
        read_only,
        /// `READ WRITE`.
        read_write,
        /// `DEFERRABLE`.
        deferrable,
        /// `NOT DEFERRABLE`.
        not_deferrable
    );

    /// Runs `f` in the transaction, as [`TenantPool::transaction`] does:
    /// `BEGIN` with its options, the scoping and the tenant's proof travel
    /// in one message; commits on `Ok`, rolls back on `Err` or a panic.
    pub fn run<T, E, F>(self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        self.pool.run_in_transaction(self.target, &self.options, f)
    }
}

impl TenantPool {
    /// A transaction scoped to `schema` with options: isolation level, read
    /// only, deferrable.
    pub fn build_transaction<'a>(&'a self, schema: &'a SchemaName) -> TransactionBuilder<'a> {
        TransactionBuilder::new(self, Target::Tenant(schema))
    }

    /// A transaction scoped to the shared schema with options.
    pub fn build_shared_transaction(&self) -> TransactionBuilder<'_> {
        TransactionBuilder::new(self, Target::Shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_statements() {
        assert_eq!(TransactionOptions::new().begin_sql(), "BEGIN");
        assert_eq!(
            TransactionOptions::new().serializable().read_only().deferrable().begin_sql(),
            "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE"
        );
        assert_eq!(TransactionOptions::new().read_write().begin_sql(), "BEGIN READ WRITE");
        assert_eq!(
            TransactionOptions::new().repeatable_read().not_deferrable().begin_sql(),
            "BEGIN ISOLATION LEVEL REPEATABLE READ, NOT DEFERRABLE"
        );
    }
}
