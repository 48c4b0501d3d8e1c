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

mod record;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Nullable, Text};

pub(crate) use record::{parse_state, AppliedMigrations, Row};
pub use record::{TenantRecord, TenantState, UnknownTenantState};

use crate::citus::detect::Citus;
use crate::error::TenancyError;
use crate::layout::Layout;
use crate::schema_name::SchemaName;
use crate::session::trusted;
use crate::sql::{quote_ident, quote_literal};

/// Advisory lock class (first key of the two-key form) for per-tenant locks.
/// Provisioning, migration and dropping of one tenant serialize on it.
const TENANT_LOCK_CLASS: i32 = 0x7465_6e61; // "tena"
/// Advisory lock class for creating the registry itself.
const REGISTRY_LOCK_CLASS: i32 = 0x7465_6e72; // "tenr"
/// The table comment that says the table has this version's columns and states.
const VERSION: &str = "tenancy registry, version 2";

/// What the registry and the catalog say about one tenant, read in one statement.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) state: Option<TenantState>,
    pub(crate) applied: AppliedMigrations,
    pub(crate) schema_exists: bool,
    pub(crate) table_exists: bool,
}

/// How [`Registry::save`] writes a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Save {
    /// Insert, or replace the existing row.
    Upsert,
    /// Update the existing row, unless it already says exactly this.
    IfChanged,
}

/// The registry of one pool, and every statement about it.
pub(crate) struct Registry {
    name: String,
    table: String,
    /// On Citus: created with schema sharding off, so that it stays on the coordinator.
    citus: Option<Citus>,
}

impl Registry {
    pub(crate) fn new(layout: &Layout) -> Self {
        let name = layout.registry().to_owned();
        let table = format!("{}.\"tenants\"", quote_ident(&name));
        Self { name, table, citus: layout.citus().cloned() }
    }

    /// Citus, when the pool's database is a Citus coordinator.
    pub(crate) fn citus(&self) -> Option<&Citus> {
        self.citus.as_ref()
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
                    "{local}CREATE SCHEMA IF NOT EXISTS {schema}; \
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
                    // `SET LOCAL`: the setting ends with the caller's
                    // transaction, and nothing else in it depends on it.
                    local = if self.citus.is_some() {
                        format!("{}; ", crate::citus::detect::schema_sharding(false))
                    } else {
                        String::new()
                    },
                ),
            };
            conn.batch_execute(&sql)?;
            Ok(())
        })
    }

    /// [`ensure`](Self::ensure) on a connection outside any transaction (a
    /// transaction of its own holds the lock).
    pub(crate) fn ensure_on(&self, conn: &mut PgConnection) -> Result<(), TenancyError> {
        conn.transaction(|conn| self.ensure(conn))
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

    /// Writes a tenant's row: [`Save::Upsert`] inserts or replaces it;
    /// [`Save::IfChanged`] updates an existing row unless it already says
    /// exactly this, so that a tenant found current costs no write (and its
    /// transaction no WAL flush at commit).
    pub(crate) fn save(
        &self,
        conn: &mut PgConnection,
        how: Save,
        schema: &SchemaName,
        state: TenantState,
        applied: &AppliedMigrations,
        last_error: Option<&str>,
    ) -> Result<(), TenancyError> {
        let sql = match how {
            Save::Upsert => format!(
                "INSERT INTO {} AS t (schema_name, state, migration_version, migrations_applied, last_error) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (schema_name) DO UPDATE SET state = excluded.state, \
                     migration_version = excluded.migration_version, \
                     migrations_applied = excluded.migrations_applied, \
                     last_error = excluded.last_error, updated_at = now()",
                self.table
            ),
            Save::IfChanged => format!(
                "UPDATE {} SET state = $2, migration_version = $3, migrations_applied = $4, last_error = $5, \
                     updated_at = now() \
                 WHERE schema_name = $1 \
                   AND (state, migration_version, migrations_applied, last_error) IS DISTINCT FROM ($2, $3, $4, $5)",
                self.table
            ),
        };
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

/// The channel on which drops and fences of a registry's tenants are
/// announced (`pg_notify`), and pools listen.
pub(crate) fn notification_channel(registry: &str) -> String {
    format!("tenancy:{registry}")
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
