//! The tenant registry: one table, in its own schema (`tenancy` unless
//! configured with [`TenantPoolBuilder::registry_schema`]), listing every
//! tenant, its state and the migrations applied to it.
//!
//! The table is created on first use by any function of this crate that
//! needs it; creation is serialized with an advisory lock, so many processes
//! starting at once are safe. Its columns:
//!
//! | column               | type          | meaning                                       |
//! |----------------------|---------------|-----------------------------------------------|
//! | `schema_name`        | `text` (key)  | the tenant's schema                           |
//! | `state`              | `text`        | `provisioning`, `ready` or `failed`           |
//! | `migration_version`  | `text`        | greatest diesel migration version applied     |
//! | `migrations_applied` | `integer`     | how many migrations the tenant has applied    |
//! | `created_at`         | `timestamptz` | when the tenant was first provisioned         |
//! | `updated_at`         | `timestamptz` | last provisioning or migration of the tenant  |
//! | `last_error`         | `text`        | why the last provisioning or migration failed |
//!
//! [`TenantPoolBuilder::registry_schema`]: crate::TenantPoolBuilder::registry_schema

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Nullable, Text, Timestamp};

use crate::error::TenancyError;
use crate::pool::TenantPool;
use crate::schema_name::{quote_ident, SchemaName};

/// Advisory lock class (first key of the two-key form) for per-tenant locks.
/// Provisioning, migration and dropping of one tenant serialize on it.
const TENANT_LOCK_CLASS: i32 = 0x7465_6e61; // "tena"
/// Advisory lock class for creating the registry itself.
const REGISTRY_LOCK_CLASS: i32 = 0x7465_6e72; // "tenr"

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
    /// sessions see this state only on rows written outside this crate (a
    /// crashed provisioning rolls back and leaves no row at all).
    Provisioning,
    /// Provisioned, and its last migration run succeeded.
    Ready,
    /// The last provisioning or migration failed; `last_error` says why. The
    /// schema stays at its last good migration, and the next
    /// [`provision`](crate::provision) or [`migrate_all`](crate::migrate_all)
    /// resumes from there.
    Failed,
}

impl TenantState {
    /// The state as stored in the registry's `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `state` value that is not one of [`TenantState`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tenant state {0:?}; expected provisioning, ready or failed")]
pub struct UnknownTenantState(pub String);

impl FromStr for TenantState {
    type Err = UnknownTenantState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "provisioning" => Ok(Self::Provisioning),
            "ready" => Ok(Self::Ready),
            "failed" => Ok(Self::Failed),
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
    /// Where the tenant is in its life cycle.
    pub state: TenantState,
    /// The greatest diesel migration version applied to the tenant, if any.
    pub migration_version: Option<String>,
    /// How many migrations the tenant has applied.
    pub migrations_applied: u32,
    /// When the tenant was first provisioned.
    pub created_at: SystemTime,
    /// When the tenant was last provisioned or migrated.
    pub updated_at: SystemTime,
    /// Why the last provisioning or migration failed, if it did.
    pub last_error: Option<String>,
}

/// Lists every registered tenant, ordered by schema name.
///
/// Runs in one short transaction, so it works in every
/// [`PoolerMode`](crate::PoolerMode).
///
/// ```no_run
/// # use tenancy_core::{list_tenants, TenantPool};
/// # let pool = TenantPool::connect("postgres://localhost/app")?;
/// for tenant in list_tenants(&pool)? {
///     println!("{} {} {:?}", tenant.schema, tenant.state, tenant.migration_version);
/// }
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn list_tenants(pool: &TenantPool) -> Result<Vec<TenantRecord>, TenancyError> {
    let registry = Registry::of(pool);
    pool.scoped_transaction(&registry.schema, |conn| {
        registry.ensure(conn)?;
        let rows: Vec<RecordRow> = diesel::sql_query(format!(
            "SELECT {RECORD_COLUMNS} FROM {} ORDER BY schema_name",
            registry.table
        ))
        .load(conn)?;
        rows.into_iter().map(RecordRow::into_record).collect()
    })
}

/// The registry row of `schema`, or `None` if it is not a registered tenant.
///
/// ```no_run
/// # use tenancy_core::{schema, tenant_record, TenantPool, TenantState};
/// # let pool = TenantPool::connect("postgres://localhost/app")?;
/// if let Some(record) = tenant_record(&pool, &schema!("acme"))? {
///     assert_eq!(record.state, TenantState::Ready);
/// }
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn tenant_record(pool: &TenantPool, schema: &SchemaName) -> Result<Option<TenantRecord>, TenancyError> {
    let registry = Registry::of(pool);
    pool.scoped_transaction(&registry.schema, |conn| {
        registry.ensure(conn)?;
        let rows: Vec<RecordRow> = diesel::sql_query(format!(
            "SELECT {RECORD_COLUMNS} FROM {} WHERE schema_name = $1",
            registry.table
        ))
        .bind::<Text, _>(schema.as_str())
        .load(conn)?;
        rows.into_iter().next().map(RecordRow::into_record).transpose()
    })
}

/// `true` if `schema` is a registered tenant and its schema exists.
///
/// A tenant in the [`Failed`](TenantState::Failed) state still exists: it
/// serves traffic at its last good migration.
///
/// ```no_run
/// # use tenancy_core::{schema, tenant_exists, TenantPool};
/// # let pool = TenantPool::connect("postgres://localhost/app")?;
/// if !tenant_exists(&pool, &schema!("acme"))? {
///     // provision it
/// }
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn tenant_exists(pool: &TenantPool, schema: &SchemaName) -> Result<bool, TenancyError> {
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let registry = Registry::of(pool);
    pool.scoped_transaction(&registry.schema, |conn| {
        registry.ensure(conn)?;
        // Two lookups by key; no join the planner could get wrong on a big catalog.
        let rows: Vec<Exists> = diesel::sql_query(format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE schema_name = $1) AND to_regnamespace($2) IS NOT NULL AS exists",
            registry.table
        ))
        .bind::<Text, _>(schema.as_str())
        .bind::<Text, _>(schema.quoted())
        .load(conn)?;
        Ok(rows.first().is_some_and(|r| r.exists))
    })
}

const RECORD_COLUMNS: &str = "schema_name, state, migration_version, migrations_applied, \
     created_at AT TIME ZONE 'UTC' AS created_at, updated_at AT TIME ZONE 'UTC' AS updated_at, last_error";

#[derive(QueryableByName)]
struct RecordRow {
    #[diesel(sql_type = Text)]
    schema_name: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Text>)]
    migration_version: Option<String>,
    #[diesel(sql_type = Integer)]
    migrations_applied: i32,
    #[diesel(sql_type = Timestamp)]
    created_at: SystemTime,
    #[diesel(sql_type = Timestamp)]
    updated_at: SystemTime,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
}

impl RecordRow {
    fn into_record(self) -> Result<TenantRecord, TenancyError> {
        Ok(TenantRecord {
            schema: registered_name(&self.schema_name)?,
            state: parse_state(&self.schema_name, &self.state)?,
            migration_version: self.migration_version,
            migrations_applied: u32::try_from(self.migrations_applied).unwrap_or(0),
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_error: self.last_error,
        })
    }
}

/// Validates a schema name read from the registry (rows may have been written by hand).
pub(crate) fn registered_name(name: &str) -> Result<SchemaName, TenancyError> {
    SchemaName::new(name).map_err(|source| TenancyError::InvalidSchemaName { name: name.to_owned(), source })
}

pub(crate) fn parse_state(schema: &str, state: &str) -> Result<TenantState, TenancyError> {
    state.parse().map_err(|e: UnknownTenantState| TenancyError::Refused {
        operation: "read the registry row of",
        schema: schema.to_owned(),
        reason: format!("{e}; fix the row's state column"),
    })
}

/// The registry of one pool: quoted names, ready to splice into SQL.
pub(crate) struct Registry {
    /// The registry schema, unquoted.
    pub(crate) name: String,
    /// The registry schema, quoted; also a valid search path.
    pub(crate) schema: String,
    /// The registry table, schema-qualified and quoted.
    pub(crate) table: String,
}

impl Registry {
    pub(crate) fn of(pool: &TenantPool) -> Self {
        let name = pool.registry_schema().to_owned();
        let schema = quote_ident(&name);
        let table = format!("{schema}.\"tenants\"");
        Self { name, schema, table }
    }

    /// Creates the registry schema and table unless they exist. Costs one
    /// round trip when they do. Concurrent callers serialize on an advisory
    /// lock held to the end of the caller's transaction.
    pub(crate) fn ensure(&self, conn: &mut PgConnection) -> Result<(), TenancyError> {
        #[derive(QueryableByName)]
        struct Present {
            #[diesel(sql_type = Bool)]
            present: bool,
        }
        let rows: Vec<Present> = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS present")
            .bind::<Text, _>(&self.table)
            .load(conn)?;
        if rows.first().is_some_and(|r| r.present) {
            return Ok(());
        }
        // `IF NOT EXISTS` alone races (unique violation on pg_namespace /
        // pg_type); under the lock, a loser sees the winner's committed work.
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind::<Integer, _>(REGISTRY_LOCK_CLASS)
            .bind::<Text, _>(&self.name)
            .execute(conn)?;
        conn.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; \
             CREATE TABLE IF NOT EXISTS {table} ( \
                 schema_name text PRIMARY KEY, \
                 state text NOT NULL DEFAULT 'provisioning' \
                     CHECK (state IN ('provisioning', 'ready', 'failed')), \
                 migration_version text, \
                 migrations_applied integer NOT NULL DEFAULT 0, \
                 created_at timestamptz NOT NULL DEFAULT now(), \
                 updated_at timestamptz NOT NULL DEFAULT now(), \
                 last_error text)",
            schema = self.schema,
            table = self.table,
        ))?;
        Ok(())
    }

    /// Takes the transaction-scoped advisory lock of one tenant name.
    pub(crate) fn lock_tenant(conn: &mut PgConnection, schema: &SchemaName) -> Result<(), TenancyError> {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind::<Integer, _>(TENANT_LOCK_CLASS)
            .bind::<Text, _>(schema.as_str())
            .execute(conn)?;
        Ok(())
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
        diesel::sql_query(format!(
            "INSERT INTO {} AS t (schema_name, state, migration_version, migrations_applied, last_error) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (schema_name) DO UPDATE SET state = excluded.state, \
                 migration_version = excluded.migration_version, \
                 migrations_applied = excluded.migrations_applied, \
                 last_error = excluded.last_error, updated_at = now()",
            self.table
        ))
        .bind::<Text, _>(schema.as_str())
        .bind::<Text, _>(state.as_str())
        .bind::<Nullable<Text>, _>(applied.latest.as_deref())
        .bind::<Integer, _>(i32::try_from(applied.count).unwrap_or(i32::MAX))
        .bind::<Nullable<Text>, _>(last_error)
        .execute(conn)?;
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
        diesel::sql_query(format!(
            "UPDATE {} SET state = $2, migration_version = $3, migrations_applied = $4, last_error = $5, \
                 updated_at = now() \
             WHERE schema_name = $1 \
               AND (state, migration_version, migrations_applied, last_error) IS DISTINCT FROM ($2, $3, $4, $5)",
            self.table
        ))
        .bind::<Text, _>(schema.as_str())
        .bind::<Text, _>(state.as_str())
        .bind::<Nullable<Text>, _>(applied.latest.as_deref())
        .bind::<Integer, _>(i32::try_from(applied.count).unwrap_or(i32::MAX))
        .bind::<Nullable<Text>, _>(last_error)
        .execute(conn)?;
        Ok(())
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

/// Why `schema` may not be provisioned or dropped through `pool`, if it may not.
pub(crate) fn reserved_reason(pool: &TenantPool, schema: &SchemaName) -> Option<String> {
    let name = schema.as_str();
    if name == pool.registry_schema() {
        return Some(String::from(
            "it is the tenant registry schema; choose another tenant name or configure another registry schema",
        ));
    }
    if name == pool.shared_schema() {
        return Some(String::from(
            "it is the pool's shared schema, which holds tables of every tenant; choose another tenant name",
        ));
    }
    // The search path of any tenant lists the configured extension schemas after it.
    let quoted = schema.quoted();
    let path = pool.search_path_for(schema);
    let extensions = path.strip_prefix(&quoted).unwrap_or("");
    if extensions.split(", ").any(|ext| ext == quoted) {
        return Some(String::from(
            "it is one of the pool's extension schemas, which hold only extensions; choose another tenant name",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_column_values() {
        for state in [TenantState::Provisioning, TenantState::Ready, TenantState::Failed] {
            assert_eq!(state.as_str().parse::<TenantState>(), Ok(state));
        }
        assert!("READY".parse::<TenantState>().is_err());
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
