//! [`migrate_shared`]: the shared schema's own migrations.

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Text};

use super::apply::{apply_pending_to, Plan};
use crate::error::TenancyError;
use crate::pool::TenantPool;
use crate::session::trusted;
use crate::sql::{quote_ident, quote_literal};

/// Advisory lock class (first key of the two-key form) for shared-schema migrations.
const SHARED_LOCK_CLASS: i32 = 0x7465_6e73; // "tens"

/// Runs the migrations of `migrations` that the pool's shared schema (the
/// one [`TenantPool::shared`] serves, `public` by default) has not applied,
/// and returns the versions it applied, in order.
///
/// * The migrations run with the search path set to the shared schema, so
///   their unqualified names, and diesel's `__diesel_schema_migrations`,
///   land there (the schema is created if it does not exist).
/// * **One run at a time**: the run holds a transaction-scoped advisory lock
///   (`pg_advisory_xact_lock`) on the shared schema's name, so replicas that
///   start together apply each migration once; the others wait, then find
///   nothing pending. A transaction-scoped lock is released by `COMMIT`, so
///   this works behind PgBouncer in transaction mode, where a session lock
///   would stay with whichever server connection took it.
/// * All in one transaction, each migration in a savepoint: when one fails,
///   it is undone, the ones before it are kept (committed), and the error is
///   [`TenancyError::SharedMigration`]; run again once it is fixed. So
///   migrations marked `run_in_transaction = false` are refused with
///   [`TenancyError::MigrationSource`].
///
/// Run it before [`migrate_all`](crate::migrate_all) when tenant migrations
/// refer to shared tables.
///
/// ```no_run
/// use diesel_migrations::EmbeddedMigrations;
/// use tenancy_core::{migrate_shared, TenantPool};
///
/// # const SHARED: EmbeddedMigrations = EmbeddedMigrations::new(&[]);
/// // const SHARED: EmbeddedMigrations = embed_migrations!("migrations/shared");
/// // with a build.rs printing `cargo:rerun-if-changed=migrations`, or a new
/// // migration file is not embedded until something else changes.
///
/// let pool = TenantPool::connect("postgres://localhost/app")?;
/// let applied = migrate_shared(&pool, SHARED)?;
/// println!("{} shared migration(s) applied", applied.len());
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn migrate_shared<S>(pool: &TenantPool, migrations: S) -> Result<Vec<String>, TenancyError>
where
    S: MigrationSource<Pg>,
{
    let shared = pool.shared_schema().to_owned();
    let _in_span =
        tracing::info_span!(target: "tenancy", "tenancy.migrate_shared", schema = shared.as_str()).entered();
    let plan = Plan::load(&migrations)?;
    let table = format!("{}.\"__diesel_schema_migrations\"", quote_ident(&shared));
    let citus = pool.citus().is_some();
    pool.internal_transaction(&shared, |conn| -> Result<_, TenancyError> {
        #[derive(QueryableByName)]
        struct Present {
            #[diesel(sql_type = Bool)]
            present: bool,
        }
        let present: Vec<Present> = trusted(conn, |conn| -> QueryResult<_> {
            diesel::sql_query("SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext($2))")
                .bind::<Integer, _>(SHARED_LOCK_CLASS)
                .bind::<Text, _>(&shared)
                .execute(conn)?;
            if citus {
                // The shared schema stays on the coordinator.
                conn.batch_execute(crate::citus::schema_sharding(false))?;
            }
            conn.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&shared)))?;
            // After the lock, so a run that waited sees the winner's table.
            diesel::sql_query(format!(
                "SELECT pg_catalog.to_regclass({}) IS NOT NULL AS present",
                quote_literal(&table)
            ))
            .load(conn)
        })?;
        let exists = present.first().is_some_and(|p| p.present);
        let run = apply_pending_to(conn, &table, &plan, exists, false, |migration, source| {
            TenancyError::SharedMigration { schema: shared.clone(), migration, source }
        })?;
        Ok(match run.error {
            None => Ok(run.applied),
            Some(error) => Err(error),
        })
    })?
}
