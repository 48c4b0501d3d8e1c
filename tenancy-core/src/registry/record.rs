//! The registry's rows as values: [`TenantState`], [`TenantRecord`], and a
//! row as read.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Nullable, Text, Timestamp};

use crate::error::{RefusalReason, TenancyError};
use crate::schema_name::SchemaName;

/// Where a tenant is in its life cycle, as recorded in the registry.
///
/// ```
/// use tenancy_core::TenantState;
///
/// assert_eq!(TenantState::Ready.as_str(), "ready");
/// assert_eq!("failed".parse::<TenantState>(), Ok(TenantState::Failed));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TenantState {
    /// Provisioning has started and not finished. Provisioning records its
    /// outcome in the same transaction that creates the schema, so other
    /// sessions see this state only on rows written outside this crate. Not
    /// served.
    Provisioning,
    /// Provisioned, and its last migration run succeeded. Served.
    Ready,
    /// The last provisioning or migration failed; `last_error` says why. The
    /// schema stays at its last good migration and is served there; the next
    /// [`provision`](crate::provision) or [`migrate_all`](crate::migrate_all)
    /// resumes from there.
    Failed,
    /// [`drop_tenant`](crate::drop_tenant) has fenced it and is dropping it. Not served.
    Dropping,
    /// Registered, but its schema no longer exists (dropped by hand). Never
    /// stored: reported by [`list_tenants`](crate::list_tenants) and
    /// [`tenant_record`](crate::tenant_record) instead of the stored state.
    Missing,
}

impl TenantState {
    /// The state as stored in the registry's `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Dropping => "dropping",
            Self::Missing => "missing",
        }
    }

    /// `true` for the states whose tenants the pool serves: ready, and
    /// failed (at the last good migration).
    pub fn is_served(self) -> bool {
        matches!(self, Self::Ready | Self::Failed)
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `state` value that is not one of [`TenantState`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tenant state {0:?}; expected provisioning, ready, failed or dropping")]
pub struct UnknownTenantState(pub String);

impl FromStr for TenantState {
    type Err = UnknownTenantState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "provisioning" => Ok(Self::Provisioning),
            "ready" => Ok(Self::Ready),
            "failed" => Ok(Self::Failed),
            "dropping" => Ok(Self::Dropping),
            "missing" => Ok(Self::Missing),
            other => Err(UnknownTenantState(other.to_owned())),
        }
    }
}

/// One tenant's registry row.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantRecord {
    /// The tenant's schema.
    pub schema: SchemaName,
    /// Where the tenant is in its life cycle ([`TenantState::Missing`] when its schema is gone).
    pub state: TenantState,
    /// The greatest diesel migration version applied to the tenant, if any.
    pub migration_version: Option<String>,
    /// How many migrations the tenant has applied.
    pub migrations_applied: u32,
    /// When the tenant was first provisioned.
    pub created_at: SystemTime,
    /// When the tenant was last provisioned, migrated or changed state.
    pub updated_at: SystemTime,
    /// Why the last provisioning or migration failed, if it did.
    pub last_error: Option<String>,
}

/// A registry row as stored, with whether its schema exists.
#[derive(QueryableByName, Debug)]
pub(crate) struct Row {
    #[diesel(sql_type = Text)]
    pub(crate) schema_name: String,
    #[diesel(sql_type = Text)]
    pub(crate) state: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) migration_version: Option<String>,
    #[diesel(sql_type = Integer)]
    pub(crate) migrations_applied: i32,
    #[diesel(sql_type = Timestamp)]
    created_at: SystemTime,
    #[diesel(sql_type = Timestamp)]
    updated_at: SystemTime,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Bool)]
    pub(crate) schema_exists: bool,
}

impl Row {
    pub(crate) fn applied(&self) -> AppliedMigrations {
        AppliedMigrations {
            latest: self.migration_version.clone(),
            count: usize::try_from(self.migrations_applied).unwrap_or(0),
        }
    }

    /// The row's stored state, validated.
    pub(crate) fn stored_state(&self) -> Result<TenantState, TenancyError> {
        parse_state(&self.schema_name, &self.state)
    }

    pub(crate) fn into_record(self) -> Result<TenantRecord, TenancyError> {
        let schema = SchemaName::new(&self.schema_name)
            .map_err(|reason| TenancyError::invalid_name(&self.schema_name, reason))?;
        let state = if self.schema_exists { self.stored_state()? } else { TenantState::Missing };
        Ok(TenantRecord {
            schema,
            state,
            migration_version: self.migration_version,
            migrations_applied: u32::try_from(self.migrations_applied).unwrap_or(0),
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_error: self.last_error,
        })
    }
}

pub(crate) fn parse_state(schema: &str, state: &str) -> Result<TenantState, TenancyError> {
    match state.parse() {
        Ok(TenantState::Missing) | Err(_) => Err(TenancyError::Refused {
            operation: "read the registry row of",
            schema: schema.to_owned(),
            reason: RefusalReason::InvalidRegistryRow { column: "state", value: state.to_owned() },
        }),
        Ok(state) => Ok(state),
    }
}

/// What the registry records about a tenant's migrations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AppliedMigrations {
    /// The greatest version applied.
    pub(crate) latest: Option<String>,
    /// How many versions are applied.
    pub(crate) count: usize,
}

impl AppliedMigrations {
    pub(crate) fn of<'a>(versions: impl IntoIterator<Item = &'a String>) -> Self {
        let mut out = Self::default();
        for v in versions {
            out.count += 1;
            if out.latest.as_ref().is_none_or(|l| v > l) {
                out.latest = Some(v.clone());
            }
        }
        out
    }
}
