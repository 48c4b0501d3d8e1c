//! The tenant registry: one table, in its own schema (`tenancy` unless
//! configured with [`TenantPoolBuilder::registry_schema`]), listing every
//! tenant, its state and the migrations applied to it. Every statement
//! about that table is here.
//!
//! The table is created on first use by any function of this crate that
//! needs it (and brought up to date when an older version of this crate
//! created it); creation is serialized with an advisory lock, so many
//! processes starting at once are safe. Its columns:
//!
//! | column               | type          | meaning                                                |
//! |----------------------|---------------|--------------------------------------------------------|
//! | `schema_name`        | `text` (key)  | the tenant's schema                                    |
//! | `state`              | `text`        | `provisioning`, `ready`, `failed` or `dropping`        |
//! | `migration_version`  | `text`        | greatest diesel migration version applied              |
//! | `migrations_applied` | `integer`     | how many migrations the tenant has applied             |
//! | `created_at`         | `timestamptz` | when the tenant was first provisioned                  |
//! | `updated_at`         | `timestamptz` | last provisioning, migration or state change           |
//! | `last_error`         | `text`        | why the last provisioning or migration failed          |
//!
//! [`TenantPoolBuilder::registry_schema`]: crate::TenantPoolBuilder::registry_schema

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Nullable, Text, Timestamp};

use crate::error::{RefusalReason, TenancyError};
use crate::layout::Layout;
use crate::pool::{notification_channel, trusted};
use crate::schema_name::SchemaName;
use crate::sql::{quote_ident, quote_literal};

/// Advisory lock class (first key of the two-key form) for per-tenant locks.
/// Provisioning, migration and dropping of one tenant serialize on it.
const TENANT_LOCK_CLASS: i32 = 0x7465_6e61; // "tena"
/// Advisory lock class for creating the registry itself.
const REGISTRY_LOCK_CLASS: i32 = 0x7465_6e72; // "tenr"
/// The table comment that says the table has this version's columns and states.
const VERSION: &str = "tenancy registry, version 2";

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

/// What the registry and the catalog say about one tenant, read in one statement.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) state: Option<TenantState>,
    pub(crate) applied: AppliedMigrations,
    pub(crate) schema_exists: bool,
    pub(crate) table_exists: bool,
}

/// The registry of one pool, and every statement about it.
pub(crate) struct Registry {
    name: String,
    table: String,
}

impl Registry {
    pub(crate) fn new(layout: &Layout) -> Self {
        let name = layout.registry().to_owned();
        let table = format!("{}.\"tenants\"", quote_ident(&name));
        Self { name, table }
    }

    /// The registry table, schema-qualified and quoted.
    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    /// A statement that raises an error unless `schema` is a served tenant
    /// whose schema exists; its message contains
    /// [`NOT_A_TENANT`](crate::pool) in any server language.
    pub(crate) fn proof(&self, schema: &SchemaName) -> String {
        format!(
            "SELECT CASE WHEN r.state IS NULL OR r.state NOT IN ('ready', 'failed') \
             OR pg_catalog.to_regnamespace({namespace}) IS NULL \
             THEN ('tenancy: not a tenant: ' || coalesce(r.state, 'unregistered'))::int END \
             FROM (SELECT 1) AS one LEFT JOIN {table} AS r ON r.schema_name = {name}",
            namespace = quote_literal(&schema.quoted()),
            table = self.table,
            name = quote_literal(schema.as_str()),
        )
    }

    /// Creates the registry schema and table unless they exist, or brings an
    /// older table up to date. Costs one round trip when they are current.
    /// Concurrent callers serialize on an advisory lock held to the end of
    /// the caller's transaction.
    pub(crate) fn ensure(&self, conn: &mut PgConnection) -> Result<(), TenancyError> {
        #[derive(QueryableByName)]
        struct Version {
            #[diesel(sql_type = Bool)]
            present: bool,
            #[diesel(sql_type = Nullable<Text>)]
            comment: Option<String>,
        }
        let current = |conn: &mut PgConnection| -> QueryResult<Option<Option<String>>> {
            // A catalog scan, not `to_regclass`: the name cache may not yet
            // know of a table another session created while this one waited.
            let version: Vec<Version> = diesel::sql_query(
                "SELECT true AS present, pg_catalog.obj_description(c.oid, 'pg_class') AS comment \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = 'tenants'",
            )
            .bind::<Text, _>(&self.name)
            .load(conn)?;
            Ok(version.into_iter().next().filter(|v| v.present).map(|v| v.comment))
        };
        trusted(conn, |conn| {
            if matches!(current(conn)?, Some(Some(ref c)) if c == VERSION) {
                return Ok(());
            }
            // `IF NOT EXISTS` alone races (unique violation on pg_namespace /
            // pg_type); under the lock, a loser sees the winner's committed
            // work, and does nothing.
            diesel::sql_query("SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext($2))")
                .bind::<Integer, _>(REGISTRY_LOCK_CLASS)
                .bind::<Text, _>(&self.name)
                .execute(conn)?;
            const STATES: &str = "CHECK (state IN ('provisioning', 'ready', 'failed', 'dropping'))";
            let version = quote_literal(VERSION);
            let table = &self.table;
            let sql = match current(conn)? {
                Some(Some(ref c)) if c == VERSION => return Ok(()),
                // Made by an older version of this crate: the new state.
                Some(_) => format!(
                    "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS tenants_state_check, \
                         ADD CONSTRAINT tenants_state_check {STATES}; \
                     COMMENT ON TABLE {table} IS {version}"
                ),
                None => format!(
                    "CREATE SCHEMA IF NOT EXISTS {schema}; \
                     CREATE TABLE {table} ( \
                         schema_name text PRIMARY KEY, \
                         state text NOT NULL DEFAULT 'provisioning' CONSTRAINT tenants_state_check {STATES}, \
                         migration_version text, \
                         migrations_applied integer NOT NULL DEFAULT 0, \
                         created_at timestamptz NOT NULL DEFAULT now(), \
                         updated_at timestamptz NOT NULL DEFAULT now(), \
                         last_error text); \
                     COMMENT ON TABLE {table} IS {version}",
                    schema = quote_ident(&self.name),
                ),
            };
            conn.batch_execute(&sql)?;
            Ok(())
        })
    }

    /// Takes the transaction-scoped advisory lock of one tenant name.
    pub(crate) fn lock_tenant(conn: &mut PgConnection, schema: &SchemaName) -> Result<(), TenancyError> {
        trusted(conn, |conn| {
            diesel::sql_query("SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext($2))")
                .bind::<Integer, _>(TENANT_LOCK_CLASS)
                .bind::<Text, _>(schema.as_str())
                .execute(conn)
        })?;
        Ok(())
    }

    const COLUMNS: &'static str = "r.schema_name, r.state, r.migration_version, r.migrations_applied, \
         r.created_at AT TIME ZONE 'UTC' AS created_at, r.updated_at AT TIME ZONE 'UTC' AS updated_at, r.last_error, \
         pg_catalog.to_regnamespace(pg_catalog.quote_ident(r.schema_name)) IS NOT NULL AS schema_exists";

    /// Every row, ordered by schema name.
    pub(crate) fn rows(&self, conn: &mut PgConnection) -> Result<Vec<Row>, TenancyError> {
        let sql = format!("SELECT {} FROM {} AS r ORDER BY r.schema_name", Self::COLUMNS, self.table);
        Ok(trusted(conn, |conn| diesel::sql_query(sql).load(conn))?)
    }

    /// The row of `schema`, if any.
    pub(crate) fn row(
        &self,
        conn: &mut PgConnection,
        schema: &SchemaName,
    ) -> Result<Option<Row>, TenancyError> {
        let sql = format!("SELECT {} FROM {} AS r WHERE r.schema_name = $1", Self::COLUMNS, self.table);
        let rows: Vec<Row> =
            trusted(conn, |conn| diesel::sql_query(sql).bind::<Text, _>(schema.as_str()).load(conn))?;
        Ok(rows.into_iter().next())
    }

    /// The registry row (if any) and the catalog's view of one tenant.
    pub(crate) fn find(&self, conn: &mut PgConnection, schema: &SchemaName) -> Result<Found, TenancyError> {
        #[derive(QueryableByName)]
        struct Both {
            #[diesel(sql_type = Nullable<Text>)]
            state: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            migration_version: Option<String>,
            #[diesel(sql_type = Nullable<Integer>)]
            migrations_applied: Option<i32>,
            #[diesel(sql_type = Bool)]
            schema_exists: bool,
            #[diesel(sql_type = Bool)]
            table_exists: bool,
        }
        let sql = format!(
            "SELECT r.state, r.migration_version, r.migrations_applied, \
                    pg_catalog.to_regnamespace($2) IS NOT NULL AS schema_exists, \
                    pg_catalog.to_regclass($3) IS NOT NULL AS table_exists \
             FROM (SELECT 1) one LEFT JOIN {} r ON r.schema_name = $1",
            self.table
        );
        let rows: Vec<Both> = trusted(conn, |conn| {
            diesel::sql_query(sql)
                .bind::<Text, _>(schema.as_str())
                .bind::<Text, _>(schema.quoted())
                .bind::<Text, _>(migrations_table(schema))
                .load(conn)
        })?;
        let Some(row) = rows.into_iter().next() else { return Ok(Found::default()) };
        Ok(Found {
            state: row.state.as_deref().map(|s| parse_state(schema.as_str(), s)).transpose()?,
            applied: AppliedMigrations {
                latest: row.migration_version,
                count: row.migrations_applied.and_then(|n| usize::try_from(n).ok()).unwrap_or(0),
            },
            schema_exists: row.schema_exists,
            table_exists: row.table_exists,
        })
    }

    /// Inserts or updates a tenant's row.
    pub(crate) fn record(
        &self,
        conn: &mut PgConnection,
        schema: &SchemaName,
        state: TenantState,
        applied: &AppliedMigrations,
        last_error: Option<&str>,
    ) -> Result<(), TenancyError> {
        let sql = format!(
            "INSERT INTO {} AS t (schema_name, state, migration_version, migrations_applied, last_error) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (schema_name) DO UPDATE SET state = excluded.state, \
                 migration_version = excluded.migration_version, \
                 migrations_applied = excluded.migrations_applied, \
                 last_error = excluded.last_error, updated_at = now()",
            self.table
        );
        trusted(conn, |conn| {
            diesel::sql_query(sql)
                .bind::<Text, _>(schema.as_str())
                .bind::<Text, _>(state.as_str())
                .bind::<Nullable<Text>, _>(applied.latest.as_deref())
                .bind::<Integer, _>(i32::try_from(applied.count).unwrap_or(i32::MAX))
                .bind::<Nullable<Text>, _>(last_error)
                .execute(conn)
        })?;
        Ok(())
    }

    /// Updates an existing tenant's row, unless it already says exactly
    /// this: a tenant found current then costs no write (and its
    /// transaction no WAL flush at commit).
    pub(crate) fn update(
        &self,
        conn: &mut PgConnection,
        schema: &SchemaName,
        state: TenantState,
        applied: &AppliedMigrations,
        last_error: Option<&str>,
    ) -> Result<(), TenancyError> {
        let sql = format!(
            "UPDATE {} SET state = $2, migration_version = $3, migrations_applied = $4, last_error = $5, \
                 updated_at = now() \
             WHERE schema_name = $1 \
               AND (state, migration_version, migrations_applied, last_error) IS DISTINCT FROM ($2, $3, $4, $5)",
            self.table
        );
        trusted(conn, |conn| {
            diesel::sql_query(sql)
                .bind::<Text, _>(schema.as_str())
                .bind::<Text, _>(state.as_str())
                .bind::<Nullable<Text>, _>(applied.latest.as_deref())
                .bind::<Integer, _>(i32::try_from(applied.count).unwrap_or(i32::MAX))
                .bind::<Nullable<Text>, _>(last_error)
                .execute(conn)
        })?;
        Ok(())
    }

    /// Sets a registered tenant's state; returns its state before, or `None` if it has no row.
    pub(crate) fn set_state(
        &self,
        conn: &mut PgConnection,
        schema: &SchemaName,
        state: TenantState,
    ) -> Result<Option<TenantState>, TenancyError> {
        #[derive(QueryableByName)]
        struct Before {
            #[diesel(sql_type = Text)]
            state: String,
        }
        let sql = format!(
            "UPDATE {table} AS t SET state = $2, updated_at = now() FROM {table} AS before \
             WHERE t.schema_name = $1 AND before.schema_name = t.schema_name RETURNING before.state",
            table = self.table
        );
        let rows: Vec<Before> = trusted(conn, |conn| {
            diesel::sql_query(sql).bind::<Text, _>(schema.as_str()).bind::<Text, _>(state.as_str()).load(conn)
        })?;
        rows.into_iter().next().map(|row| parse_state(schema.as_str(), &row.state)).transpose()
    }

    /// Deletes a tenant's row; `true` if there was one.
    pub(crate) fn delete(&self, conn: &mut PgConnection, schema: &SchemaName) -> Result<bool, TenancyError> {
        let sql = format!("DELETE FROM {} WHERE schema_name = $1", self.table);
        let deleted =
            trusted(conn, |conn| diesel::sql_query(sql).bind::<Text, _>(schema.as_str()).execute(conn))?;
        Ok(deleted > 0)
    }

    /// Tells every pool listening on this registry (in any process) that
    /// `schema` was fenced or dropped; delivered when the transaction commits.
    pub(crate) fn notify(
        &self,
        conn: &mut PgConnection,
        event: &str,
        schema: &SchemaName,
    ) -> Result<(), TenancyError> {
        trusted(conn, |conn| {
            diesel::sql_query("SELECT pg_catalog.pg_notify($1, $2)")
                .bind::<Text, _>(notification_channel(&self.name))
                .bind::<Text, _>(format!("{event} {schema}"))
                .execute(conn)
        })?;
        Ok(())
    }
}

/// The tenant's diesel migrations table, schema-qualified and quoted.
pub(crate) fn migrations_table(schema: &SchemaName) -> String {
    format!("{}.\"__diesel_schema_migrations\"", schema.quoted())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_column_values() {
        for state in
            [TenantState::Provisioning, TenantState::Ready, TenantState::Failed, TenantState::Dropping]
        {
            assert_eq!(state.as_str().parse::<TenantState>(), Ok(state));
        }
        assert!("READY".parse::<TenantState>().is_err());
        assert!(parse_state("x", "missing").is_err(), "missing is never stored");
    }

    #[test]
    fn applied_migrations_keep_the_greatest_version() {
        let versions = [String::from("2024-01-02-000000"), String::from("2023-12-31-000000")];
        let applied = AppliedMigrations::of(&versions);
        assert_eq!(applied.latest.as_deref(), Some("2024-01-02-000000"));
        assert_eq!(applied.count, 2);
        assert_eq!(AppliedMigrations::of(&[]), AppliedMigrations::default());
    }
}
