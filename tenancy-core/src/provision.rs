//! Creating, adopting and dropping tenants: [`provision`], [`adopt`] and
//! [`drop_tenant`].
//!
//! Each runs in transactions holding the tenant's advisory lock
//! (`pg_advisory_xact_lock`), so any number of processes may provision,
//! migrate or drop the same tenant at once: they take turns, and each sees
//! what the previous one committed. `CREATE SCHEMA IF NOT EXISTS` alone is not
//! enough: two sessions can both find the schema missing, and the second
//! fails with a unique violation on `pg_namespace`.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::citus::{distribute_schema, placement_of, schema_sharding, Placement};
use crate::error::{RefusalReason, TenancyError};
use crate::migrate::apply::{apply_pending, Plan};
use crate::pool::TenantPool;
use crate::registry::{Registry, Save, TenantState};
use crate::schema_name::SchemaName;
use crate::session::trusted;

/// What [`provision`] or [`adopt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Provisioned {
    /// The tenant.
    pub schema: SchemaName,
    /// `true` if this call created the schema.
    pub created: bool,
    /// The migration versions this call applied, in order.
    pub applied: Vec<String>,
    /// On a Citus coordinator, where the tenant's tables are (a worker, for
    /// a distributed tenant with tables); `None` on plain PostgreSQL.
    pub placement: Option<Placement>,
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
///   [`TenancyError::Migration`]; calling again resumes there. A registered
///   tenant whose schema was dropped by hand is created again.
/// * **Concurrent-safe**: calls for the same tenant serialize on its
///   advisory lock; the first creates and migrates, the others find it done.
/// * **Never takes over a schema**: a schema of that name that exists but is
///   not a registered tenant (an application schema, say `billing`) is
///   refused with [`RefusalReason::SchemaNotATenant`], and nothing is
///   touched; [`adopt`] does that on purpose. The pool's shared, registry
///   and extension schemas are [`TenancyError::ReservedSchema`].
///
/// Works in every [`PoolerMode`](crate::PoolerMode).
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
    establish(pool, schema, &migrations, Intent::Provision)
}

/// Makes an existing schema a tenant: registers it and applies the
/// migrations it has not applied yet, exactly as [`provision`] would have,
/// but for a schema that exists without being a registered tenant (created
/// by hand, by diesel directly, or by an older tool).
///
/// [`provision`] never does this by itself, so that a tenant name that
/// happens to match an application schema cannot take it over. A schema
/// that does not exist is refused ([`RefusalReason::SchemaMissing`]); an
/// already registered tenant is provisioned as usual.
///
/// ```no_run
/// # use tenancy_core::{adopt, schema, TenantPool};
/// # let pool = TenantPool::connect("postgres://localhost/app")?;
/// # let migrations = diesel_migrations::FileBasedMigrations::from_path("migrations/tenant")?;
/// adopt(&pool, &schema!("legacy_customer"), migrations)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn adopt<S>(pool: &TenantPool, schema: &SchemaName, migrations: S) -> Result<Provisioned, TenancyError>
where
    S: MigrationSource<Pg>,
{
    establish(pool, schema, &migrations, Intent::Adopt)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Intent {
    Provision,
    Adopt,
}

fn establish<S>(
    pool: &TenantPool,
    schema: &SchemaName,
    migrations: &S,
    intent: Intent,
) -> Result<Provisioned, TenancyError>
where
    S: MigrationSource<Pg>,
{
    let operation = match intent {
        Intent::Provision => "provision",
        Intent::Adopt => "adopt",
    };
    let _in_span =
        tracing::info_span!(target: "tenancy", "tenancy.provision", tenant = schema.as_str(), operation)
            .entered();
    let refused = |reason| TenancyError::Refused { operation, schema: schema.to_string(), reason };
    if let Some(role) = pool.inner.layout.role_of(schema.as_str()) {
        return Err(TenancyError::ReservedSchema { schema: schema.clone(), role });
    }
    let plan = Plan::load(migrations)?;
    let registry = Registry::new(&pool.inner.layout);
    let citus = pool.inner.layout.citus();
    let placement = |conn: &mut PgConnection| -> Result<Option<Placement>, TenancyError> {
        citus.map(|_| placement_of(conn, schema)).transpose()
    };
    let outcome = pool.internal_transaction(schema.as_str(), |conn| -> Result<_, TenancyError> {
        registry.ensure(conn)?;
        Registry::lock_tenant(conn, schema)?;
        // Read after the lock: this statement's snapshot sees whatever the
        // previous holder committed.
        let found = registry.find(conn, schema)?;
        match (intent, found.state, found.schema_exists) {
            (_, Some(TenantState::Dropping), _) => {
                return Err(TenancyError::TenantNotFound { schema: schema.clone() });
            }
            (Intent::Provision, None, true) => return Err(refused(RefusalReason::SchemaNotATenant)),
            (Intent::Adopt, None, false) => return Err(refused(RefusalReason::SchemaMissing)),
            _ => {}
        }
        if found.schema_exists && found.state == Some(TenantState::Ready) && found.applied == plan.target {
            return Ok(Ok(Provisioned {
                schema: schema.clone(),
                created: false,
                applied: Vec::new(),
                placement: placement(conn)?,
            }));
        }
        if !found.schema_exists {
            if let Some(citus) = citus {
                // Explicitly, whatever the server's or database's default.
                trusted(conn, |c| c.batch_execute(schema_sharding(citus.distributes_tenants())))?;
            }
            let sql = format!("CREATE SCHEMA {}", schema.quoted());
            trusted(conn, |c| c.batch_execute(&sql))?;
        } else if intent == Intent::Adopt
            && found.state.is_none()
            && citus.is_some_and(|c| c.distributes_tenants())
            && placement_of(conn, schema)? == Placement::Local
        {
            // An adopted schema becomes a tenant like any other: distributed.
            distribute_schema(conn, schema)?;
        }
        let run = apply_pending(conn, schema, &plan, found.table_exists, citus.is_some())?;
        let state = if run.error.is_some() { TenantState::Failed } else { TenantState::Ready };
        let message = run.error.as_ref().map(error_chain);
        registry.save(conn, Save::Upsert, schema, state, &run.after, message.as_deref())?;
        // Commit either way: a failed migration was undone, and the ones
        // before it are kept so that the next call resumes after them.
        Ok(match run.error {
            Some(error) => Err(error),
            None => Ok(Provisioned {
                schema: schema.clone(),
                created: !found.schema_exists,
                applied: run.applied,
                placement: placement(conn)?,
            }),
        })
    })?;
    outcome
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

/// How long [`drop_tenant`] waits, in all, for the tenant's tables to be free.
const DROP_WAIT: Duration = Duration::from_secs(30);
/// How long one attempt to drop waits for a lock: shorter than PostgreSQL's
/// default `deadlock_timeout` (1 s), so that a drop that would deadlock
/// with a transaction still running gives up itself instead of leaving that
/// transaction to be the victim.
const ATTEMPT_LOCK_TIMEOUT_MS: u64 = 200;

/// Drops a registered tenant: its schema, with everything in it, and its
/// registry row.
///
/// First the tenant is **fenced**: its registry row says `dropping`, and
/// every pool (in this process at once, in others by notification) stops
/// handing out connections for it: new checkouts get
/// [`TenancyError::TenantNotFound`]. Then the schema is dropped as soon as
/// the transactions already running in it let go of its tables, waiting at
/// most 30 seconds in all; each attempt waits only briefly for locks, so a
/// transaction still running is never made the victim of a deadlock. If the
/// tables stay busy, nothing is dropped, the tenant is served again, and the
/// error is [`TenancyError::TenantBusy`]. Never half done: either the schema
/// and its row are gone, or both are as they were.
///
/// Only registered tenants are dropped; anything else is
/// [`TenancyError::TenantNotFound`] (an unregistered schema, even one that
/// looks like a tenant), and the pool's registry, shared and extension
/// schemas are [`TenancyError::ReservedSchema`]. `public`,
/// `information_schema` and `pg_*` schemas cannot even be named:
/// [`SchemaName`] rejects them. A registered tenant whose schema is already
/// gone has its registry row removed.
///
/// ```no_run
/// # use tenancy_core::{drop_tenant, schema, TenantPool};
/// # let pool = TenantPool::connect("postgres://localhost/app")?;
/// drop_tenant(&pool, &schema!("acme"))?;
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn drop_tenant(pool: &TenantPool, schema: &SchemaName) -> Result<(), TenancyError> {
    let _in_span =
        tracing::info_span!(target: "tenancy", "tenancy.drop_tenant", tenant = schema.as_str()).entered();
    if let Some(role) = pool.inner.layout.role_of(schema.as_str()) {
        return Err(TenancyError::ReservedSchema { schema: schema.clone(), role });
    }
    let registry = Registry::new(&pool.inner.layout);
    let home = pool.registry_schema().to_owned();
    // Fence: committed and announced before anything waits on the tenant's tables.
    let before = pool.internal_transaction(&home, |conn| -> Result<_, TenancyError> {
        registry.ensure(conn)?;
        Registry::lock_tenant(conn, schema)?;
        let before = registry.set_state(conn, schema, TenantState::Dropping)?;
        if before.is_some() {
            registry.notify(conn, "fence", schema)?;
        }
        Ok(before)
    })?;
    pool.forget_tenant(schema);
    let Some(before) = before else { return Err(TenancyError::TenantNotFound { schema: schema.clone() }) };

    let started = Instant::now();
    loop {
        let attempt = pool.internal_transaction(&home, |conn| -> Result<_, TenancyError> {
            Registry::lock_tenant(conn, schema)?;
            if busy(conn, schema)? {
                return Ok(false);
            }
            let sql = format!(
                "SET LOCAL lock_timeout = {ATTEMPT_LOCK_TIMEOUT_MS}; DROP SCHEMA IF EXISTS {} CASCADE",
                schema.quoted()
            );
            trusted(conn, |c| c.batch_execute(&sql))?;
            registry.delete(conn, schema)?;
            registry.notify(conn, "drop", schema)?;
            Ok(true)
        });
        let error = match attempt {
            Ok(true) => {
                pool.forget_tenant(schema);
                return Ok(());
            }
            Ok(false) => None,
            Err(error) => Some(error),
        };
        // A lock wait that timed out is business as usual here; anything
        // else (a permission, say) will not get better by waiting.
        let waiting = match &error {
            None => true,
            Some(_) => pool.internal_transaction(&home, |conn| busy(conn, schema)).unwrap_or(false),
        };
        if !waiting || started.elapsed() >= DROP_WAIT {
            // Unfence: the tenant is served again, exactly as before.
            let _ = pool.internal_transaction(&home, |conn| -> Result<_, TenancyError> {
                Registry::lock_tenant(conn, schema)?;
                registry.set_state(conn, schema, before)
            });
            return Err(match error {
                Some(error) if !waiting => error,
                _ => TenancyError::TenantBusy { schema: schema.clone(), waited: started.elapsed() },
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `true` while another session holds a lock on something in the tenant's schema.
fn busy(conn: &mut PgConnection, schema: &SchemaName) -> Result<bool, TenancyError> {
    #[derive(QueryableByName)]
    struct Holders {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let rows: Vec<Holders> = trusted(conn, |conn| {
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation \
             WHERE c.relnamespace = pg_catalog.to_regnamespace($1) AND l.pid <> pg_catalog.pg_backend_pid() \
             AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())",
        )
        .bind::<diesel::sql_types::Text, _>(schema.quoted())
        .load(conn)
    })?;
    Ok(rows.first().is_some_and(|r| r.n > 0))
}
