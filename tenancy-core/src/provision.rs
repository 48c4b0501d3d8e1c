//! Creating and dropping tenants: [`provision`] and [`drop_tenant`].
//!
//! Both run in one transaction holding the tenant's advisory lock
//! (`pg_advisory_xact_lock`), so any number of processes may provision, migrate
//! or drop the same tenant at once: they take turns, and each sees what the
//! previous one committed. `CREATE SCHEMA IF NOT EXISTS` alone is not enough:
//! two sessions can both find the schema missing, and the second fails with a
//! unique violation on `pg_namespace`.

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Nullable, Text};

use crate::error::TenancyError;
use crate::migrate::{apply_pending, migrations_table, Plan};
use crate::pool::TenantPool;
use crate::registry::{parse_state, reserved_reason, AppliedMigrations, Registry, TenantState};
use crate::schema_name::SchemaName;

/// What [`provision`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Provisioned {
    /// The tenant.
    pub schema: SchemaName,
    /// `true` if this call created the schema.
    pub created: bool,
    /// The migration versions this call applied, in order.
    pub applied: Vec<String>,
}

impl Provisioned {
    /// `true` if the tenant was already provisioned and current, and this
    /// call changed nothing.
    pub fn was_noop(&self) -> bool {
        !self.created && self.applied.is_empty()
    }
}

/// Creates the tenant `schema`, runs every migration of `migrations` in it,
/// and records it as [`Ready`](TenantState::Ready) in the registry.
///
/// The migrations run with the search path set to the tenant's schema (and
/// any configured extension schemas after it), so unqualified names in them,
/// and diesel's own `__diesel_schema_migrations`, land in the tenant's schema.
/// Any diesel `MigrationSource` works: `embed_migrations!` and
/// `FileBasedMigrations` alike.
///
/// * **Idempotent**: for a tenant the registry shows as ready and current,
///   this changes nothing ([`Provisioned::was_noop`]). Migrations added to
///   the source since are applied.
/// * **Atomic and resumable**: schema, migrations and registry row commit
///   together, so a crash leaves nothing behind. A failing migration is
///   undone, the ones before it are kept, and the tenant is recorded as
///   [`Failed`](TenantState::Failed) with the error, which is returned as
///   [`TenancyError::Migration`]; calling again resumes there. A schema that
///   exists without a registry row (created by hand, or by diesel directly)
///   is adopted: its pending migrations are applied and it is registered.
/// * **Concurrent-safe**: calls for the same tenant serialize on its
///   advisory lock; the first creates and migrates, the others find it done.
///
/// Refuses ([`TenancyError::Refused`]) the pool's registry, shared and
/// extension schemas. Works in every [`PoolerMode`](crate::PoolerMode).
///
/// ```no_run
/// use diesel_migrations::FileBasedMigrations;
/// use tenancy_core::{provision, schema, TenantPool};
///
/// let pool = TenantPool::connect("postgres://localhost/app")?;
/// // Or `embed_migrations!("migrations/tenant")`, to build them into the binary.
/// let migrations = FileBasedMigrations::from_path("migrations/tenant")?;
/// let done = provision(&pool, &schema!("acme"), migrations)?;
/// println!("created: {}, applied: {:?}", done.created, done.applied);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn provision<S>(
    pool: &TenantPool,
    schema: &SchemaName,
    migrations: S,
) -> Result<Provisioned, TenancyError>
where
    S: MigrationSource<Pg>,
{
    if let Some(reason) = reserved_reason(pool, schema) {
        return Err(TenancyError::Refused {
            operation: "provision",
            schema: schema.as_str().to_owned(),
            reason,
        });
    }
    let plan = Plan::load(&migrations)?;
    let registry = Registry::of(pool);
    let outcome =
        pool.scoped_transaction(&pool.search_path_for(schema), |conn| -> Result<_, TenancyError> {
            registry.ensure(conn)?;
            Registry::lock_tenant(conn, schema)?;
            // Read after the lock: this statement's snapshot sees whatever the
            // previous holder committed.
            let found = Found::read(conn, &registry, schema)?;
            if found.schema_exists && found.state == Some(TenantState::Ready) && found.applied == plan.target
            {
                return Ok(Ok(Provisioned { schema: schema.clone(), created: false, applied: Vec::new() }));
            }
            if !found.schema_exists {
                conn.batch_execute(&format!("CREATE SCHEMA {}", schema.quoted()))?;
            }
            let run = apply_pending(conn, schema, &plan, found.table_exists)?;
            let state = if run.error.is_some() { TenantState::Failed } else { TenantState::Ready };
            let message = run.error.as_ref().map(ToString::to_string);
            registry.record(conn, schema, state, &run.after, message.as_deref())?;
            // Commit either way: a failed migration was undone, and the ones
            // before it are kept so that the next call resumes after them.
            Ok(match run.error {
                Some(error) => Err(error),
                None => Ok(Provisioned {
                    schema: schema.clone(),
                    created: !found.schema_exists,
                    applied: run.applied,
                }),
            })
        })?;
    outcome
}

/// What the registry and the catalog say about one tenant, read in one statement.
struct Found {
    state: Option<TenantState>,
    applied: AppliedMigrations,
    schema_exists: bool,
    table_exists: bool,
}

impl Found {
    fn read(conn: &mut PgConnection, registry: &Registry, schema: &SchemaName) -> Result<Self, TenancyError> {
        #[derive(QueryableByName)]
        struct Row {
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
        let rows: Vec<Row> = diesel::sql_query(format!(
            "SELECT r.state, r.migration_version, r.migrations_applied, \
                    to_regnamespace($2) IS NOT NULL AS schema_exists, to_regclass($3) IS NOT NULL AS table_exists \
             FROM (SELECT 1) one LEFT JOIN {} r ON r.schema_name = $1",
            registry.table
        ))
        .bind::<Text, _>(schema.as_str())
        .bind::<Text, _>(schema.quoted())
        .bind::<Text, _>(migrations_table(schema))
        .load(conn)?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(Self {
                state: None,
                applied: AppliedMigrations::default(),
                schema_exists: false,
                table_exists: false,
            });
        };
        Ok(Self {
            state: row.state.as_deref().map(|s| parse_state(schema.as_str(), s)).transpose()?,
            applied: AppliedMigrations {
                latest: row.migration_version,
                count: row.migrations_applied.and_then(|n| usize::try_from(n).ok()).unwrap_or(0),
            },
            schema_exists: row.schema_exists,
            table_exists: row.table_exists,
        })
    }
}

/// Drops a registered tenant: its schema, with everything in it, and its
/// registry row, in one transaction.
///
/// Only schemas with a registry row are dropped. Anything else is refused
/// with [`TenancyError::Refused`] and nothing is dropped: an unregistered
/// schema (even one that looks like a tenant), and the pool's registry,
/// shared and extension schemas. `public`, `information_schema` and `pg_*`
/// schemas cannot even be named: [`SchemaName`] rejects them. A registered
/// tenant whose schema is already gone has its registry row removed.
///
/// ```no_run
/// # use tenancy_core::{drop_tenant, schema, TenantPool};
/// # let pool = TenantPool::connect("postgres://localhost/app")?;
/// drop_tenant(&pool, &schema!("acme"))?;
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn drop_tenant(pool: &TenantPool, schema: &SchemaName) -> Result<(), TenancyError> {
    let refused = |reason: String| TenancyError::Refused {
        operation: "drop",
        schema: schema.as_str().to_owned(),
        reason,
    };
    if let Some(reason) = reserved_reason(pool, schema) {
        return Err(refused(reason));
    }
    let registry = Registry::of(pool);
    pool.scoped_transaction(&registry.schema, |conn| {
        registry.ensure(conn)?;
        Registry::lock_tenant(conn, schema)?;
        let deleted = diesel::sql_query(format!("DELETE FROM {} WHERE schema_name = $1", registry.table))
            .bind::<Text, _>(schema.as_str())
            .execute(conn)?;
        if deleted == 0 {
            return Err(refused(String::from(
                "it is not a registered tenant; drop_tenant only drops schemas created by provision (see list_tenants)",
            )));
        }
        conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.quoted()))?;
        Ok(())
    })?;
    // Connections still scoped to the dropped schema must prove it again
    // (and so report TenantNotFound) instead of being handed out as they are.
    pool.forget_scopes();
    Ok(())
}
