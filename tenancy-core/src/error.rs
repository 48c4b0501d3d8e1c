//! [`TenancyError`]: everything that can go wrong, one variant per cause.

use std::time::Duration;

use crate::schema_name::{SchemaName, SchemaNameError};

/// The error type of every fallible operation in this crate.
///
/// Each variant is one cause, and its message says what happened and what
/// to do about it. Application error types usually wrap it with
/// `#[from]`, which is what [`#[tenant_scoped]`](crate::tenant_scoped)
/// relies on to convert checkout failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenancyError {
    /// A string was used as a tenant schema name but breaks a naming rule.
    #[error("invalid schema name {name:?}: {source}")]
    InvalidSchemaName {
        /// The rejected input, verbatim.
        name: String,
        /// The rule it breaks.
        #[source]
        source: SchemaNameError,
    },

    /// The tenant's schema does not exist in the database.
    #[error("tenant schema \"{schema}\" does not exist; provision it first (tenancy_core::provision)")]
    TenantNotFound {
        /// The tenant that was asked for.
        schema: SchemaName,
    },

    /// No pooled connection became free within the pool's connection timeout.
    #[error(
        "timed out after {timeout:?} waiting for a pooled connection{}; raise the pool size or the connection timeout, or hold connections for less time",
        last_error.as_deref().map(|e| format!(" (last connection error: {e})")).unwrap_or_default()
    )]
    PoolTimeout {
        /// The configured connection timeout.
        timeout: Duration,
        /// The last error met while opening a connection, if any.
        last_error: Option<String>,
    },

    /// Opening a connection to PostgreSQL failed.
    #[error("could not connect to PostgreSQL: {0}; check the database URL and that the server is running")]
    Connection(#[from] diesel::ConnectionError),

    /// A statement failed in the database.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),

    /// A session-scoped checkout was asked of a pool in transaction pooler mode.
    #[error(
        "{operation} needs a session, but this pool is in transaction pooler mode (PgBouncer pool_mode=transaction), where session state leaks between clients; use TenantPool::transaction (or #[tenant_scoped(transaction)]) instead"
    )]
    SessionRefused {
        /// What was refused, e.g. `TenantPool::tenant`.
        operation: &'static str,
    },

    /// Behind a transaction pooler, a transaction body changed session state
    /// (a session `SET`, `set_config(.., false)`, `PREPARE`, a temporary
    /// table, a session advisory lock...). Committing would hand that state
    /// to other clients of the pooler's server session, so the transaction
    /// was rolled back instead.
    #[error(
        "the transaction was rolled back: it changed session state (SET, set_config, PREPARE, a temporary table, a session advisory lock, ...), which behind a transaction pooler would reach other clients; use SET LOCAL or pg_advisory_xact_lock instead"
    )]
    SessionStateRefused,

    /// A schema name given in the pool configuration is not allowed where it was used.
    #[error("invalid pool configuration: {0}")]
    Config(String),

    /// A tenant schema is reserved and the operation on it was refused.
    #[error("refused to {operation} schema {schema:?}: {reason}")]
    Refused {
        /// What was attempted, e.g. `drop`.
        operation: &'static str,
        /// The schema it was attempted on.
        schema: String,
        /// Why it was refused.
        reason: String,
    },

    /// Running a migration failed.
    #[error("migration failed for tenant \"{schema}\": {message}")]
    Migration {
        /// The tenant whose migration failed.
        schema: SchemaName,
        /// What the migration runner reported.
        message: String,
    },

    /// The migrations could not be read from their `MigrationSource`, or one
    /// of them cannot run as a tenant migration.
    #[error("could not use the migrations: {message}")]
    MigrationSource {
        /// What the migration source reported.
        message: String,
    },
}

impl TenancyError {
    /// `true` if this is [`TenancyError::TenantNotFound`].
    pub fn is_tenant_not_found(&self) -> bool {
        matches!(self, Self::TenantNotFound { .. })
    }
}

/// Parses a tenant name, keeping the rejected input in the error.
///
/// ```
/// let err = tenancy_core::parse_schema("Robert'); DROP TABLE students;--").unwrap_err();
/// assert!(matches!(err, tenancy_core::TenancyError::InvalidSchemaName { .. }));
/// ```
pub fn parse_schema(name: &str) -> Result<SchemaName, TenancyError> {
    SchemaName::new(name).map_err(|source| TenancyError::InvalidSchemaName { name: name.to_owned(), source })
}
