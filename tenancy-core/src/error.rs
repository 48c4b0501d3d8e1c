//! [`TenancyError`]: everything that can go wrong, one variant per cause.
//!
//! Each message is printed once in a chain of sources: a variant either
//! states its cause in its own message (and keeps it as a field), or shows
//! it as its [`source`](std::error::Error::source), never both.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::config::ConfigError;
use crate::layout::SchemaRole;
use crate::schema_name::{SchemaName, SchemaNameError};

/// The error type of every fallible operation in this crate.
///
/// Application error types usually wrap it with `#[from]`, which is what
/// [`#[tenant_scoped]`](crate::tenant_scoped) relies on to convert checkout
/// failures. Messages are safe to show to the people who run the service;
/// for the clients of a web service, map the variants to responses (an
/// unknown tenant is a 404, not its message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenancyError {
    /// A string was used as a tenant schema name but breaks a naming rule.
    #[error("invalid schema name {name:?}: {reason}")]
    InvalidSchemaName {
        /// The rejected input, verbatim.
        name: String,
        /// The rule it breaks.
        reason: SchemaNameError,
    },

    /// The schema is not a registered, provisioned tenant: nothing of that
    /// name is registered, its schema is gone, or it is being dropped or has
    /// not finished provisioning.
    #[error("\"{schema}\" is not a registered tenant")]
    TenantNotFound {
        /// The tenant that was asked for.
        schema: SchemaName,
    },

    /// The name is one the pool keeps for itself (its shared, registry or an
    /// extension schema), so it can never be a tenant.
    #[error("\"{schema}\" is this pool's {role} schema, not a tenant")]
    ReservedSchema {
        /// The name that was asked for.
        schema: SchemaName,
        /// What the pool uses it for.
        role: SchemaRole,
    },

    /// The pool's shared schema does not exist.
    #[error("the shared schema {schema:?} does not exist; create it, or configure another with TenantPoolBuilder::shared_schema")]
    SharedSchemaMissing {
        /// The configured shared schema.
        schema: String,
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
    Connection(diesel::ConnectionError),

    /// A statement failed in the database.
    #[error(transparent)]
    Database(#[from] diesel::result::Error),

    /// A session-scoped checkout was asked of a pool in transaction pooler
    /// mode. No longer returned: behind a transaction pooler a checkout is
    /// scoped inside a transaction instead.
    #[deprecated(
        note = "no longer returned: behind a transaction pooler, `tenant()` and `shared()` scope a transaction"
    )]
    #[error(
        "{operation} needs a session of its own, but this pool is in transaction pooler mode (PgBouncer pool_mode=transaction), where session state leaks between clients; use {} instead",
        alternative(operation)
    )]
    SessionRefused {
        /// What was refused, e.g. `TenantPool::tenant`.
        operation: &'static str,
    },

    /// A statement in a tenant transaction would have changed the session
    /// beyond the transaction (a session `SET`, `set_config(.., false)`,
    /// `PREPARE`, a temporary table, a session advisory lock, `LISTEN`), or
    /// ended the pool's transaction itself (`COMMIT`, `ROLLBACK`). Behind a
    /// transaction pooler every such change is refused before it is sent, or
    /// found before `COMMIT`; ending the transaction is refused in every
    /// mode. The whole transaction was rolled back: nothing of it committed.
    #[error(
        "the transaction was rolled back: a statement in it would have changed session state (SET, set_config, PREPARE, a temporary table, a session advisory lock, LISTEN) or ended the transaction (COMMIT, ROLLBACK); use SET LOCAL, set_config(.., true), pg_advisory_xact_lock, and nested transactions (conn.transaction) instead"
    )]
    SessionStateRefused,

    /// A statement failed in a scope that runs as one transaction (a
    /// checkout behind a transaction pooler), so the transaction was rolled
    /// back: nothing done through that checkout committed.
    #[error("nothing done through this connection was committed: a statement failed, and behind a transaction pooler a checkout is one transaction, which was rolled back")]
    ScopeRolledBack,

    /// A transaction with options (isolation level, read only, deferrable)
    /// was asked for inside a transaction, where it can only be a
    /// savepoint of the outer one, which keeps the outer one's options.
    #[error("transaction options apply to the outermost transaction only; this one would be a savepoint of a transaction already open: set the options where that transaction begins")]
    NestedTransactionOptions,

    /// The connection a tenant transaction ran on was exchanged for another
    /// one while the body ran (say with `std::mem::swap` on `&mut
    /// PgConnection`). The transaction was rolled back.
    #[error("the transaction was rolled back: its connection was exchanged for another one while it ran; do not move pooled connections")]
    ConnectionReplaced,

    /// Work given to the async API (`TenantPool::run` and friends) did not
    /// run: the future awaiting it was dropped before it started, or the
    /// tokio runtime shut down first. Nothing of it was done.
    #[error("the work was cancelled before it started (its future was dropped, or the tokio runtime shut down); nothing of it ran")]
    Cancelled,

    /// The async API was awaited outside a tokio runtime, which it needs for
    /// its blocking pool.
    #[error("the async API must be awaited inside a tokio runtime (it runs diesel on tokio's blocking pool); use the blocking API (TenantPool::tenant, TenantPool::transaction) elsewhere")]
    NoRuntime,

    /// An operation that joins the caller's transaction was given a
    /// connection outside any transaction.
    #[error("{operation} works inside a transaction the caller holds, and this connection is not in one; open one first (TenantPool::shared_transaction, or conn.transaction)")]
    TransactionRequired {
        /// The operation, e.g. `provision_in`.
        operation: &'static str,
    },

    /// A setting given to [`TenantPoolBuilder`](crate::TenantPoolBuilder) is not allowed.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),

    /// Superseded by [`TenancyError::InvalidConfig`] and
    /// [`TenancyError::SharedSchemaMissing`]; this crate no longer returns it.
    #[deprecated(note = "this crate returns `InvalidConfig` or `SharedSchemaMissing` instead")]
    #[error("invalid pool configuration: {0}")]
    Config(String),

    /// An operation on a schema was refused, and nothing was changed.
    #[error("refused to {operation} {schema:?}: {reason}")]
    Refused {
        /// What was attempted, e.g. `provision`.
        operation: &'static str,
        /// The schema it was attempted on.
        schema: String,
        /// Why it was refused.
        reason: RefusalReason,
    },

    /// `drop_tenant` could not take the locks it needs within its wait (the
    /// tenant's tables stayed busy). Nothing was dropped, and the tenant
    /// serves traffic again.
    #[error("could not drop \"{schema}\" within {waited:?}: its tables stayed in use; nothing was dropped, and the tenant is served again; retry when it is quieter")]
    TenantBusy {
        /// The tenant.
        schema: SchemaName,
        /// How long the drop waited.
        waited: Duration,
    },

    /// Running a migration failed; it was rolled back, and the ones before it were kept.
    #[error("migration {migration} failed for tenant \"{schema}\" and was rolled back; the tenant stays at its last good version; fix the migration or the tenant's data, then run again to resume")]
    Migration {
        /// The tenant whose migration failed.
        schema: SchemaName,
        /// The migration that failed (diesel's name: version and name).
        migration: String,
        /// Why it failed.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// A migration failed on Citus because it adds a foreign key from a
    /// tenant's table to a table outside the tenant that is not a reference
    /// table, which Citus refuses. It was rolled back, and the ones before
    /// it were kept.
    #[error("migration {migration} failed for tenant \"{schema}\" and was rolled back: it adds a foreign key to {table}, and on Citus a tenant's table may reference a table outside its schema only when that is a reference table; make it one with tenancy_core::citus::create_reference_table (once, before migrating), then run again")]
    NeedsReferenceTable {
        /// The tenant whose migration failed.
        schema: SchemaName,
        /// The migration that failed (diesel's name: version and name).
        migration: String,
        /// The referenced table, schema-qualified as Citus names it.
        table: String,
        /// Citus's refusal.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// A migration of the shared schema failed ([`migrate_shared`](crate::migrate_shared));
    /// it was rolled back, and the ones before it were kept.
    #[error("shared-schema migration {migration} failed in {schema:?} and was rolled back; the migrations before it were kept; fix it, then run again")]
    SharedMigration {
        /// The shared schema.
        schema: String,
        /// The migration that failed (diesel's name: version and name).
        migration: String,
        /// Why it failed.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// An operation for Citus was asked of a pool whose database is not a
    /// Citus coordinator with schema-based sharding.
    #[error("{operation} needs a Citus coordinator with schema-based sharding (Citus 12 or later), but this pool's database has no citus extension, or its server is not a coordinator with workers")]
    NotCitus {
        /// What was asked, e.g. `move_tenant`.
        operation: &'static str,
    },

    /// The migrations could not be read from their `MigrationSource`, or
    /// one of them cannot run as a tenant migration; the source says which.
    #[error("could not use the migrations")]
    MigrationSource {
        /// What the migration source reported, or what is wrong with a migration.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

/// The alternative to a checkout refused behind a transaction pooler.
fn alternative(operation: &str) -> &'static str {
    if operation.contains("shared") {
        "TenantPool::shared_transaction"
    } else {
        "TenantPool::transaction (or #[tenant_scoped(transaction)])"
    }
}

impl From<diesel::ConnectionError> for TenancyError {
    fn from(error: diesel::ConnectionError) -> Self {
        Self::Connection(error)
    }
}

impl TenancyError {
    /// `true` if this is [`TenancyError::TenantNotFound`].
    pub fn is_tenant_not_found(&self) -> bool {
        matches!(self, Self::TenantNotFound { .. })
    }

    pub(crate) fn invalid_name(name: &str, reason: SchemaNameError) -> Self {
        Self::InvalidSchemaName { name: name.to_owned(), reason }
    }
}

/// Why an operation on a schema was refused ([`TenancyError::Refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalReason {
    /// A schema of that name exists but is not a registered tenant (an
    /// application schema, or one created by hand). `provision` never takes
    /// it over; [`adopt`](crate::adopt) makes it a tenant when that is meant.
    SchemaNotATenant,
    /// [`adopt`](crate::adopt) was asked for a schema that does not exist.
    SchemaMissing,
    /// [`revert_last`](crate::revert_last) was asked to revert a migration,
    /// but the tenant has a newer one applied, which would then run on a
    /// schema it was not written for; revert that one first.
    NewerMigrationApplied {
        /// The newer version applied.
        version: String,
    },
    /// The registry row has a value this version does not know; fix the row.
    InvalidRegistryRow {
        /// The column.
        column: &'static str,
        /// Its value.
        value: String,
    },
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SchemaNotATenant => f.write_str(
                "a schema of that name exists but is not a registered tenant; choose another name, or call adopt to make it one",
            ),
            Self::SchemaMissing => f.write_str("no schema of that name exists; provision it instead"),
            Self::NewerMigrationApplied { version } => {
                write!(f, "migration {version}, newer than the one to revert, is applied; revert it first")
            }
            Self::InvalidRegistryRow { column, value } => {
                write!(f, "its registry row has {column} = {value:?}, which is not valid; fix the row")
            }
        }
    }
}

/// Parses a tenant name, keeping the rejected input in the error.
///
/// ```
/// let err = tenancy_core::parse_schema("Robert'); DROP TABLE students;--").unwrap_err();
/// assert!(matches!(err, tenancy_core::TenancyError::InvalidSchemaName { .. }));
/// ```
pub fn parse_schema(name: &str) -> Result<SchemaName, TenancyError> {
    SchemaName::new(name).map_err(|reason| TenancyError::invalid_name(name, reason))
}

/// An error and its sources, on one line (for the registry's `last_error`).
pub(crate) fn error_chain(error: &TenancyError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message once: a variant either states its cause or exposes it as its source.
    #[test]
    fn causes_are_printed_once_in_a_chain() {
        let error = parse_schema("Acme").unwrap_err();
        assert!(error.to_string().contains("lowercase"), "{error}");
        assert!(error.source().is_none());
        let error = TenancyError::Migration {
            schema: crate::schema!("acme"),
            migration: String::from("2024_x"),
            source: "boom".into(),
        };
        assert!(!error.to_string().contains("boom"));
        assert_eq!(error.source().map(ToString::to_string).as_deref(), Some("boom"));
    }
}
