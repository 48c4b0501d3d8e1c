//! Creating and adopting tenants: [`provision`] (and [`provision_with`],
//! [`provision_in`] for atomic sign-ups) and [`adopt`]; dropping them is in
//! [`decommission`](crate::decommission).
//!
//! These, and the drops, run in transactions holding the tenant's advisory lock
//! (`pg_advisory_xact_lock`), so any number of processes may provision,
//! migrate or drop the same tenant at once: they take turns, and each sees
//! what the previous one committed. `CREATE SCHEMA IF NOT EXISTS` alone is not
//! enough: two sessions can both find the schema missing, and the second
//! fails with a unique violation on `pg_namespace`.

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::citus::{distribute_schema, placement_of, schema_sharding, Placement};
use crate::error::{error_chain, RefusalReason, TenancyError};
use crate::migrate::apply::{apply_pending, Plan};
use crate::pool::TenantPool;
use crate::registry::{Registry, Save, TenantState};
use crate::schema_name::SchemaName;
use crate::session::{transaction_open, trusted};

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
    let _in_span = provision_span(schema, intent).entered();
    check_not_reserved(pool, schema)?;
    let plan = Plan::load(migrations)?;
    let registry = Registry::new(&pool.inner.layout);
    // Commit either way: a failed migration was undone, and the ones before
    // it are kept so that the next call resumes after them.
    pool.internal_transaction(schema.as_str(), |conn| establish_in(conn, &registry, &plan, schema, intent))?
}

fn provision_span(schema: &SchemaName, intent: Intent) -> tracing::Span {
    let operation = match intent {
        Intent::Provision => "provision",
        Intent::Adopt => "adopt",
    };
    tracing::info_span!(target: "tenancy", "tenancy.provision", tenant = schema.as_str(), operation)
}

fn check_not_reserved(pool: &TenantPool, schema: &SchemaName) -> Result<(), TenancyError> {
    match pool.inner.layout.role_of(schema.as_str()) {
        Some(role) => Err(TenancyError::ReservedSchema { schema: schema.clone(), role }),
        None => Ok(()),
    }
}

/// Provisions on `conn`, in a transaction whose search path is the tenant.
/// The inner `Err` is a failed migration (undone; the ones before it kept
/// and recorded); the outer one, anything else.
fn establish_in(
    conn: &mut PgConnection,
    registry: &Registry,
    plan: &Plan,
    schema: &SchemaName,
    intent: Intent,
) -> Result<Result<Provisioned, TenancyError>, TenancyError> {
    let operation = match intent {
        Intent::Provision => "provision",
        Intent::Adopt => "adopt",
    };
    let refused = |reason| TenancyError::Refused { operation, schema: schema.to_string(), reason };
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
    let citus = registry.citus();
    let placement = |conn: &mut PgConnection| -> Result<Option<Placement>, TenancyError> {
        citus.map(|_| placement_of(conn, schema)).transpose()
    };
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
    let run = apply_pending(conn, schema, plan, found.table_exists, citus.is_some())?;
    let state = if run.error.is_some() { TenantState::Failed } else { TenantState::Ready };
    let message = run.error.as_ref().map(error_chain);
    registry.save(conn, Save::Upsert, schema, state, &run.after, message.as_deref())?;
    Ok(match run.error {
        Some(error) => Err(error),
        None => Ok(Provisioned {
            schema: schema.clone(),
            created: !found.schema_exists,
            applied: run.applied,
            placement: placement(conn)?,
        }),
    })
}

/// [`provision`], with `seed` run in the same transaction, for an atomic
/// sign-up: the tenant's schema, its migrations, its registry row and
/// whatever `seed` writes commit together, or not at all.
///
/// `seed` runs after the migrations, on the provisioning transaction's
/// connection, whose search path is the new tenant's schema: unqualified
/// names are the tenant's tables. Rows of the shared schema (the account
/// that owns the tenant, say) are written schema-qualified, e.g. with
/// `diesel::table! { public.accounts (id) { .. } }`. It also runs for a
/// tenant that already existed ([`Provisioned::created`] says which), so it
/// can refuse a name that is taken.
///
/// When `seed` returns `Err`, or a migration fails, everything is rolled
/// back: no schema, no registry row, no row `seed` wrote; the error is
/// returned (a migration's as [`TenancyError::Migration`], converted with
/// `From`). Unlike [`provision`], which keeps the migrations before a
/// failing one, nothing is kept. The tenant's advisory lock is held
/// throughout, so concurrent sign-ups of one name take turns.
///
/// ```no_run
/// use diesel::prelude::*;
/// use tenancy_core::{provision_with, schema, TenancyError, TenantPool};
/// # const MIGRATIONS: diesel_migrations::EmbeddedMigrations = diesel_migrations::EmbeddedMigrations::new(&[]);
///
/// diesel::table! { public.accounts (id) { id -> BigInt, tenant -> Text, owner -> Text } }
/// diesel::table! { settings (key) { key -> Text, value -> Text } }
///
/// let pool = TenantPool::connect("postgres://localhost/app")?;
/// let acme = schema!("acme");
/// let (provisioned, account_id) = provision_with(&pool, &acme, MIGRATIONS, |conn, done| {
///     if !done.created {
///         return Err(TenancyError::Refused {
///             operation: "sign up",
///             schema: acme.to_string(),
///             reason: tenancy_core::RefusalReason::SchemaNotATenant,
///         });
///     }
///     diesel::insert_into(settings::table)
///         .values((settings::key.eq("theme"), settings::value.eq("light")))
///         .execute(conn)?;
///     let id: i64 = diesel::insert_into(accounts::table)
///         .values((accounts::tenant.eq(acme.as_str()), accounts::owner.eq("ada@acme.test")))
///         .returning(accounts::id)
///         .get_result(conn)?;
///     Ok::<_, TenancyError>(id)
/// })?;
/// # Ok::<(), TenancyError>(())
/// ```
pub fn provision_with<S, T, E, F>(
    pool: &TenantPool,
    schema: &SchemaName,
    migrations: S,
    seed: F,
) -> Result<(Provisioned, T), E>
where
    S: MigrationSource<Pg>,
    F: FnOnce(&mut PgConnection, &Provisioned) -> Result<T, E>,
    E: From<TenancyError>,
{
    let _in_span = provision_span(schema, Intent::Provision).entered();
    check_not_reserved(pool, schema)?;
    let plan = Plan::load(&migrations)?;
    let registry = Registry::new(&pool.inner.layout);
    pool.internal_transaction(schema.as_str(), |conn| {
        let provisioned = establish_in(conn, &registry, &plan, schema, Intent::Provision)??;
        let value = seed(conn, &provisioned)?;
        Ok((provisioned, value))
    })
}

/// [`provision`], inside a transaction the caller already holds on `conn`
/// (from [`TenantPool::shared_transaction`], say), so that the tenant
/// commits or rolls back with the caller's own work in that transaction.
///
/// The provisioning runs in a savepoint, with the search path set to the
/// tenant for the migrations and set back afterwards. On `Err` the
/// savepoint is rolled back (nothing of the tenant remains; unlike
/// [`provision`], nothing is kept of a failing migration run), and the
/// caller's transaction is still usable: roll it back, or go on. The
/// tenant's advisory lock is held until the caller's transaction ends.
///
/// A `conn` outside any transaction is refused with
/// [`TenancyError::TransactionRequired`].
///
/// ```no_run
/// use diesel::prelude::*;
/// use tenancy_core::{provision_in, schema, TenancyError, TenantPool};
/// # const MIGRATIONS: diesel_migrations::EmbeddedMigrations = diesel_migrations::EmbeddedMigrations::new(&[]);
/// diesel::table! { accounts (id) { id -> BigInt, tenant -> Text } }
///
/// let pool = TenantPool::connect("postgres://localhost/app")?;
/// pool.shared_transaction(|conn| {
///     diesel::insert_into(accounts::table).values(accounts::tenant.eq("acme")).execute(conn)?;
///     provision_in(&pool, conn, &schema!("acme"), MIGRATIONS)?;
///     Ok::<_, TenancyError>(())
/// })?;
/// # Ok::<(), TenancyError>(())
/// ```
pub fn provision_in<S>(
    pool: &TenantPool,
    conn: &mut PgConnection,
    schema: &SchemaName,
    migrations: S,
) -> Result<Provisioned, TenancyError>
where
    S: MigrationSource<Pg>,
{
    let _in_span = provision_span(schema, Intent::Provision).entered();
    check_not_reserved(pool, schema)?;
    if !transaction_open(conn) {
        return Err(TenancyError::TransactionRequired { operation: "provision_in" });
    }
    let plan = Plan::load(&migrations)?;
    let registry = Registry::new(&pool.inner.layout);
    let tenant_path = pool.inner.layout.tenant_path(schema);
    conn.transaction(|conn| {
        #[derive(QueryableByName)]
        struct Path {
            #[diesel(sql_type = Text)]
            path: String,
        }
        let before: Vec<Path> = trusted(conn, |c| {
            diesel::sql_query(
                "SELECT pg_catalog.current_setting('search_path') AS path,                  pg_catalog.set_config('search_path', $1, true) AS _set",
            )
            .bind::<Text, _>(&tenant_path)
            .load(c)
        })?;
        let provisioned = establish_in(conn, &registry, &plan, schema, Intent::Provision)??;
        if let Some(before) = before.first() {
            trusted(conn, |c| {
                diesel::sql_query("SELECT pg_catalog.set_config('search_path', $1, true)")
                    .bind::<Text, _>(&before.path)
                    .execute(c)
            })?;
        }
        Ok(provisioned)
    })
}
