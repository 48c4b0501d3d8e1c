//! [`ConfigError`]: pool settings that cannot work, found before anything
//! is opened.

use crate::schema_name::SchemaNameError;

/// A setting given to [`TenantPoolBuilder`](crate::TenantPoolBuilder) that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A schema setting is not a valid schema name.
    #[error("{setting} {name:?} is not a valid schema name: {reason}")]
    InvalidSchemaName {
        /// The builder setting.
        setting: &'static str,
        /// The value given.
        name: String,
        /// The rule it breaks.
        reason: SchemaNameError,
    },
    /// The shared and registry schemas are the same schema.
    #[error(
        "the shared schema and the registry schema are both {name:?}; the registry needs a schema of its own"
    )]
    SharedIsRegistry {
        /// The schema.
        name: String,
    },
    /// An extension schema is `public`, the shared or the registry schema,
    /// which hold tables that tenant connections must never fall back to.
    #[error("extension schema {name:?} is not allowed: extension schemas must hold only extensions, and `public`, the shared schema and the registry schema hold tables that tenant connections must never fall back to")]
    ExtensionSchemaHoldsTables {
        /// The schema.
        name: String,
    },
    /// `max_size` is zero.
    #[error("max_size must be at least 1")]
    ZeroMaxSize,
    /// `min_idle` exceeds `max_size`.
    #[error("min_idle ({min_idle}) must not exceed max_size ({max_size})")]
    MinIdleAboveMaxSize {
        /// The `min_idle` given.
        min_idle: u32,
        /// The `max_size` given.
        max_size: u32,
    },
    /// A duration that must be positive is zero.
    #[error("{setting} must be longer than zero")]
    ZeroDuration {
        /// The builder setting.
        setting: &'static str,
    },
}
