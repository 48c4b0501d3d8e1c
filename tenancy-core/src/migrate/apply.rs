//! The per-tenant migration engine, used by provisioning and by fleet runs:
//! the migrations of a source in version order, applied one savepoint each
//! inside the caller's transaction, whose search path is the tenant.

use std::collections::BTreeSet;
use std::error::Error as StdError;

use diesel::migration::{Migration, MigrationConnection, MigrationSource};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use super::statements::run_one_statement_per_message;
use crate::citus::needs_reference_table;
use crate::error::TenancyError;
use crate::registry::{migrations_table, AppliedMigrations};
use crate::schema_name::SchemaName;
use crate::session::trusted;

/// The migrations of a source, sorted by version.
pub(crate) struct Plan {
    migrations: Vec<Box<dyn Migration<Pg>>>,
    versions: Vec<String>,
    /// What the registry records for a tenant with every migration applied.
    pub(crate) target: AppliedMigrations,
}

impl Plan {
    pub(crate) fn load<S: MigrationSource<Pg> + ?Sized>(source: &S) -> Result<Self, TenancyError> {
        let mut migrations = source.migrations().map_err(|e| TenancyError::MigrationSource {
            source: format!(
                "{e}; check that the migrations directory exists and each migration has an up.sql"
            )
            .into(),
        })?;
        migrations.sort_by(|a, b| a.name().version().cmp(&b.name().version()));
        migrations.dedup_by(|a, b| a.name().version() == b.name().version());
        if let Some(m) = migrations.iter().find(|m| !m.metadata().run_in_transaction()) {
            return Err(TenancyError::MigrationSource {
                source: format!(
                    "migration {} is marked run_in_transaction = false, but tenant migrations run in one transaction per tenant (which also keeps them safe behind a transaction pooler); remove that setting from its metadata.toml, or run its statements outside tenancy",
                    m.name()
                )
                .into(),
            });
        }
        let versions: Vec<String> = migrations.iter().map(|m| m.name().version().to_string()).collect();
        let target = AppliedMigrations::of(&versions);
        Ok(Self { migrations, versions, target })
    }
}

/// What [`apply_pending`] did.
pub(crate) struct TenantRun {
    /// Versions applied by this run, in order.
    pub(crate) applied: Vec<String>,
    /// The tenant's migrations afterwards.
    pub(crate) after: AppliedMigrations,
    /// The migration that failed, if one did; the ones before it are kept.
    pub(crate) error: Option<TenancyError>,
}

pub(crate) struct Probe {
    pub(crate) schema_exists: bool,
    pub(crate) table_exists: bool,
}

/// Whether the tenant's schema and its `__diesel_schema_migrations` exist.
pub(crate) fn probe(conn: &mut PgConnection, schema: &SchemaName) -> Result<Probe, TenancyError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Bool)]
        schema_exists: bool,
        #[diesel(sql_type = Bool)]
        table_exists: bool,
    }
    let rows: Vec<Row> = trusted(conn, |conn| {
        diesel::sql_query(
            "SELECT pg_catalog.to_regnamespace($1) IS NOT NULL AS schema_exists, pg_catalog.to_regclass($2) IS NOT NULL AS table_exists",
        )
        .bind::<Text, _>(schema.quoted())
        .bind::<Text, _>(migrations_table(schema))
        .load(conn)
    })?;
    let row = rows.first();
    Ok(Probe {
        schema_exists: row.is_some_and(|r| r.schema_exists),
        table_exists: row.is_some_and(|r| r.table_exists),
    })
}

/// Runs the migrations of `plan` that the tenant has not applied, each in a
/// savepoint, inside the caller's transaction (whose search path is the
/// tenant). Stops at the first failure, which is undone and returned in
/// [`TenantRun::error`]; an `Err` means the transaction itself is unusable.
/// On Citus (`citus`), each statement of a migration goes in a message of
/// its own, and a foreign key Citus refuses for want of a reference table
/// is [`TenancyError::NeedsReferenceTable`].
pub(crate) fn apply_pending(
    conn: &mut PgConnection,
    schema: &SchemaName,
    plan: &Plan,
    table_exists: bool,
    citus: bool,
) -> Result<TenantRun, TenancyError> {
    apply_pending_to(conn, &migrations_table(schema), plan, table_exists, citus, |migration, source| {
        let schema = schema.clone();
        match citus.then(|| needs_reference_table(source.as_ref())).flatten() {
            Some(table) => TenancyError::NeedsReferenceTable { schema, migration, table, source },
            None => TenancyError::Migration { schema, migration, source },
        }
    })
}

/// [`apply_pending`] for the migrations recorded in `table` (qualified and
/// quoted); `fail` makes the error of a failing migration from its name and
/// cause. `one_per_message`: each statement in a message of its own (Citus).
pub(crate) fn apply_pending_to(
    conn: &mut PgConnection,
    table: &str,
    plan: &Plan,
    table_exists: bool,
    one_per_message: bool,
    fail: impl Fn(String, Box<dyn StdError + Send + Sync>) -> TenancyError,
) -> Result<TenantRun, TenancyError> {
    let mut applied: BTreeSet<String> = if table_exists {
        versions_in(conn, table)?
    } else {
        // diesel's own DDL, so the table is the one the diesel CLI expects;
        // the search path puts it in the tenant's schema.
        trusted(conn, |conn| conn.setup())?;
        BTreeSet::new()
    };
    let insert = format!("INSERT INTO {table} (version) VALUES ($1)");
    let mut run = TenantRun { applied: Vec::new(), after: AppliedMigrations::default(), error: None };
    for (migration, version) in plan.migrations.iter().zip(&plan.versions) {
        if applied.contains(version) {
            continue;
        }
        let step = conn.transaction::<_, Box<dyn StdError + Send + Sync>, _>(|c| {
            if one_per_message {
                run_one_statement_per_message(migration.as_ref(), c)?;
            } else {
                migration.run(c)?;
            }
            trusted(c, |c| diesel::sql_query(&insert).bind::<Text, _>(version).execute(c))?;
            Ok(())
        });
        match step {
            Ok(()) => {
                applied.insert(version.clone());
                run.applied.push(version.clone());
            }
            Err(source) => {
                run.error = Some(fail(migration.name().to_string(), source));
                break;
            }
        }
    }
    run.after = AppliedMigrations::of(&applied);
    Ok(run)
}

/// The versions in the tenant's `__diesel_schema_migrations` (which must exist).
pub(crate) fn applied_versions(
    conn: &mut PgConnection,
    schema: &SchemaName,
) -> Result<BTreeSet<String>, TenancyError> {
    versions_in(conn, &migrations_table(schema))
}

/// The versions in a diesel migrations table (qualified and quoted), which must exist.
pub(crate) fn versions_in(conn: &mut PgConnection, table: &str) -> Result<BTreeSet<String>, TenancyError> {
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        version: String,
    }
    let sql = format!("SELECT version FROM {table}");
    let rows: Vec<Version> = trusted(conn, |conn| diesel::sql_query(sql).load(conn))?;
    Ok(rows.into_iter().map(|r| r.version).collect())
}

/// Runs the `down.sql` of `version` in a savepoint and removes the version
/// from the tenant's `__diesel_schema_migrations`. The inner `Err` is the
/// migration's failure (undone); the outer one means the transaction is unusable.
pub(crate) fn revert_one(
    conn: &mut PgConnection,
    schema: &SchemaName,
    plan: &Plan,
    version: &str,
) -> Result<Result<(), TenancyError>, TenancyError> {
    let Some(index) = plan.versions.iter().position(|v| v == version) else {
        return Ok(Err(TenancyError::MigrationSource {
            source: format!("version {version} is not in the migration source").into(),
        }));
    };
    let migration = &plan.migrations[index];
    let delete = format!("DELETE FROM {} WHERE version = $1", migrations_table(schema));
    let step = conn.transaction::<_, Box<dyn StdError + Send + Sync>, _>(|c| {
        migration.revert(c)?;
        trusted(c, |c| diesel::sql_query(&delete).bind::<Text, _>(version).execute(c))?;
        Ok(())
    });
    Ok(step.map_err(|source| TenancyError::Migration {
        schema: schema.clone(),
        migration: migration.name().to_string(),
        source,
    }))
}
