//! [`TenantPool`]: one r2d2 pool of diesel `PgConnection`s serving every
//! tenant, where each connection handed out resolves names in exactly one
//! schema.
//!
//! * `builder`: [`TenantPoolBuilder`] and its checks;
//! * `manager`: the r2d2 manager, and each connection's state, which lives
//!   in the connection's own instrumentation;
//! * `checkout`: the one checkout engine (pick, scope, prove, retry, check in);
//! * `transaction`: tenant transactions;
//! * `connection`: the guards handed out;
//! * `roster`: tenants proven recently, and drop notifications.

mod builder;
mod check_in;
pub(crate) mod checkout;
mod connection;
mod heat;
mod manager;
mod options;
mod roster;
pub(crate) mod slots;
mod stats;
mod traits;
mod transaction;
mod tuner;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use diesel::PgConnection;

pub(crate) use builder::Hook;
pub use builder::{PoolerMode, TenantPoolBuilder};
pub(crate) use checkout::Target;
pub(crate) use connection::Ending;
pub use connection::{SharedConnection, TenantConnection};
pub use manager::InstrumentationFactory;
pub use options::{IsolationLevel, TransactionBuilder, TransactionOptions};
pub use stats::PoolState;
pub(crate) use transaction::run_open;
pub use tuner::TenantAffinity;

use crate::error::TenancyError;
use crate::layout::Layout;
use crate::schema_name::SchemaName;

/// A pool of PostgreSQL connections shared by every tenant, where every
/// connection handed out resolves unqualified names in exactly one schema.
///
/// * [`tenant`](Self::tenant) hands out a connection whose `search_path`
///   is exactly the tenant's schema (plus configured extension schemas):
///   never `public`, never what the previous borrower left behind. A
///   connection remembers its tenant, so checking out the same tenant again
///   sends nothing; switching sends one message.
/// * [`transaction`](Self::transaction) runs a closure in a transaction
///   scoped to the tenant, its scoping sent in the same message as `BEGIN`.
/// * [`shared`](Self::shared) reaches the shared schema.
///
/// Only registered tenants are served (see [`provision`](crate::provision)):
/// anything else is [`TenancyError::TenantNotFound`], and the pool's own
/// schemas are [`TenancyError::ReservedSchema`]. There is no unscoped
/// checkout. Cloning is cheap; clones share the pool.
///
/// ```no_run
/// use diesel::prelude::*;
/// use tenancy_core::{schema, TenantPool};
///
/// let pool = TenantPool::connect("postgres://localhost/app")?;
/// let mut conn = pool.tenant(&schema!("acme"))?;
/// let n: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("1")).get_result(&mut *conn)?;
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
#[derive(Clone)]
pub struct TenantPool {
    pub(crate) inner: Arc<PoolInner>,
}

pub(crate) struct PoolInner {
    pub(crate) pool: r2d2::Pool<manager::Manager>,
    /// Tells this pool's connections from any other's.
    id: u64,
    pub(crate) layout: Layout,
    pub(crate) roster: roster::Roster,
    pooler_mode: PoolerMode,
    connection_timeout: Duration,
    max_tenants_per_connection: Option<usize>,
    /// Whether checkouts look for a connection serving their tenant.
    pub(crate) tuner: tuner::Tuner,
    /// The slot numbers of the pool's connections (tenants' homes).
    slots: Arc<slots::Slots>,
    /// How often each tenant was asked for lately.
    heat: heat::Heat,
    /// Which idle connection a switch takes: `0` the least asked-for
    /// tenant's, `1` one of the tenant's home slots (see `checkout::pick`).
    pub(crate) eviction: std::sync::atomic::AtomicU8,
    always_restore: bool,
    counters: Arc<stats::Counters>,
    /// The database URL, for the crate's own connections outside the pool.
    url: String,
}

impl fmt::Debug for TenantPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.pool.state();
        f.debug_struct("TenantPool")
            .field("connections", &state.connections)
            .field("idle_connections", &state.idle_connections)
            .field("shared_schema", &self.inner.layout.shared())
            .field("registry_schema", &self.inner.layout.registry())
            .field("pooler_mode", &self.inner.pooler_mode)
            .finish()
    }
}

impl TenantPool {
    /// Builds a pool with default settings. See [`TenantPool::builder`].
    pub fn connect(database_url: &str) -> Result<Self, TenancyError> {
        Self::builder().build(database_url)
    }

    /// A builder with every setting at its documented default.
    pub fn builder() -> TenantPoolBuilder {
        TenantPoolBuilder::default()
    }

    /// The schema of shared tables ([`TenantPool::shared`]).
    pub fn shared_schema(&self) -> &str {
        self.inner.layout.shared()
    }

    /// The schema of the tenant registry.
    pub fn registry_schema(&self) -> &str {
        self.inner.layout.registry()
    }

    /// Citus, when the pool's database is a Citus coordinator with
    /// schema-based sharding (found when the pool was built); `None` on
    /// plain PostgreSQL. See [`crate::citus`].
    pub fn citus(&self) -> Option<&crate::citus::detect::Citus> {
        self.inner.layout.citus()
    }

    /// The pooler mode this pool was built with.
    pub fn pooler_mode(&self) -> PoolerMode {
        self.inner.pooler_mode
    }

    /// Open and idle connections, and the pool's counters (hits, switches,
    /// tenants not found, retirements, time waited for a connection).
    pub fn state(&self) -> PoolState {
        let s = self.inner.pool.state();
        self.inner.counters.snapshot(s.connections, s.idle_connections, self.inner.tuner.reading())
    }

    /// The exact `search_path` value a connection for `schema` gets: the
    /// tenant, then any extension schemas, then `pg_temp`.
    ///
    /// `pg_temp` is named last so that temporary tables, which PostgreSQL
    /// otherwise searches first, can never shadow a tenant's table; it adds
    /// nothing to `current_schemas(false)` while the session has no
    /// temporary schema.
    ///
    /// ```
    /// # use tenancy_core::{schema, TenantPool};
    /// // Without extension schemas, the only real schema is the tenant.
    /// # fn f(pool: &TenantPool) {
    /// assert_eq!(pool.search_path_for(&schema!("acme")), "\"acme\", pg_temp");
    /// # }
    /// ```
    pub fn search_path_for(&self, schema: &SchemaName) -> String {
        self.inner.layout.tenant_path(schema)
    }

    /// A connection whose search path is exactly `schema` (followed by any
    /// configured extension schemas and `pg_temp`).
    ///
    /// Costs no round trip when the connection handed out already serves
    /// `schema`, and one message otherwise, which also proves (unless that
    /// was done recently) that `schema` is a registered tenant: anything
    /// else is [`TenancyError::TenantNotFound`].
    ///
    /// In [`PoolerMode::Transaction`] the connection is scoped inside a
    /// transaction (a session scope could leak to other clients of the
    /// pooler), opened in the same one message, and committed when the
    /// connection goes back: everything done through it commits together,
    /// or nothing if a statement failed. [`TenantConnection::close`] says
    /// whether it committed.
    pub fn tenant(&self, schema: &SchemaName) -> Result<TenantConnection, TenancyError> {
        self.scope(Target::Tenant(schema))
    }

    /// A connection whose search path is the shared schema (`public` by
    /// default), for tables shared by all tenants. Behind a transaction
    /// pooler it is one transaction, as for [`TenantPool::tenant`].
    pub fn shared(&self) -> Result<SharedConnection, TenancyError> {
        self.scope(Target::Shared).map(SharedConnection)
    }

    /// A session checkout, or behind a transaction pooler a scope that runs as one transaction.
    fn scope(&self, target: Target<'_>) -> Result<TenantConnection, TenancyError> {
        match self.inner.pooler_mode {
            PoolerMode::Session => {
                let pooled = self.acquire(target, checkout::Purpose::Session)?;
                Ok(TenantConnection::new(pooled, self, target))
            }
            PoolerMode::Transaction => self.begin(target, &TransactionOptions::new(), Ending::Scope),
        }
    }

    /// Runs `f` in one transaction whose search path is exactly `schema`.
    ///
    /// `BEGIN`, the scoping and (unless done recently) the proof that
    /// `schema` is a registered tenant travel in one message, so this costs
    /// the same round trips as a plain diesel transaction. Commits when `f`
    /// returns `Ok`, rolls back when it returns `Err` or panics (the panic
    /// then continues). A tenant that does not exist is
    /// [`TenancyError::TenantNotFound`], converted into `E`; a statement that
    /// would end the transaction itself (or, behind a transaction pooler,
    /// change the session) is refused before it is sent, and the transaction
    /// rolls back with [`TenancyError::SessionStateRefused`].
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # use tenancy_core::{schema, TenancyError, TenantPool};
    /// # let pool = TenantPool::connect("postgres://localhost/app")?;
    /// let moved = pool.transaction(&schema!("acme"), |conn| {
    ///     let n = diesel::sql_query("UPDATE agents SET team = 2 WHERE team = 1").execute(conn)?;
    ///     Ok::<_, TenancyError>(n)
    /// })?;
    /// # Ok::<(), TenancyError>(())
    /// ```
    pub fn transaction<T, E, F>(&self, schema: &SchemaName, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        self.run_in_transaction(Target::Tenant(schema), &TransactionOptions::new(), f)
    }

    /// Like [`TenantPool::transaction`], scoped to the shared schema.
    pub fn shared_transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        self.run_in_transaction(Target::Shared, &TransactionOptions::new(), f)
    }

    /// Runs `f` in a transaction whose search path starts at `first` (which
    /// need not exist yet), for the crate's own provisioning, migration and
    /// registry work. Statements of the crate's own inside `f` go through
    /// [`trusted`]; the rest (migrations) are watched like a body's.
    pub(crate) fn internal_transaction<T, E, F>(&self, first: &str, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        self.run_in_transaction(Target::Internal(first), &TransactionOptions::new(), |conn| f(conn))
    }

    /// A checkout of `schema` inside a transaction of the pool's.
    pub(crate) fn begin_tenant(
        &self,
        schema: &SchemaName,
        options: &TransactionOptions,
        ending: Ending,
    ) -> Result<TenantConnection, TenancyError> {
        self.begin(Target::Tenant(schema), options, ending)
    }

    /// A connection of the crate's own, outside the pool (and outside any
    /// transaction), for operations that must not run in one.
    pub(crate) fn direct(&self) -> Result<PgConnection, TenancyError> {
        Ok(<PgConnection as diesel::Connection>::establish(&self.inner.url)?)
    }

    /// Checks that `schema` is a tenant this pool serves, as a checkout
    /// would, without handing out a connection: for a web service that
    /// validates the tenant a request names before doing anything for it.
    ///
    /// Costs nothing when this pool proved `schema` within
    /// [`tenant_cache_ttl`](TenantPoolBuilder::tenant_cache_ttl) (a checkout
    /// of it proves it, and so does this), and a checkout whose message
    /// proves it otherwise. A drop through this library reaches the cache at
    /// once in this process, and in others by notification, so an answer is
    /// stale for at most `tenant_cache_ttl` only when the registry or the
    /// schema was changed by hand.
    ///
    /// Errors: [`TenancyError::TenantNotFound`] for anything but a
    /// registered, ready tenant, [`TenancyError::ReservedSchema`] for the
    /// pool's own schemas, and the errors of a checkout
    /// ([`TenancyError::PoolTimeout`], ...).
    ///
    /// ```no_run
    /// # use tenancy_core::{parse_schema, TenantPool};
    /// # let pool = TenantPool::connect("postgres://localhost/app")?;
    /// let schema = parse_schema("acme")?; // from a subdomain
    /// pool.check_tenant(&schema)?; // `TenantNotFound` for an unknown one
    /// # Ok::<(), tenancy_core::TenancyError>(())
    /// ```
    pub fn check_tenant(&self, schema: &SchemaName) -> Result<(), TenancyError> {
        self.inner.roster.poll();
        if self.cached_tenant(schema)? {
            return Ok(());
        }
        self.tenant(schema)?.close()
    }

    /// `Ok(true)` when the cache alone says `schema` is a tenant (no I/O).
    pub(crate) fn cached_tenant(&self, schema: &SchemaName) -> Result<bool, TenancyError> {
        if let Some(role) = self.inner.layout.role_of(schema.as_str()) {
            return Err(TenancyError::ReservedSchema { schema: schema.clone(), role });
        }
        Ok(self.inner.roster.proven(schema).is_some())
    }

    /// A tenant was dropped or fenced through this pool: no connection
    /// serves it any more without proving it again.
    pub(crate) fn forget_tenant(&self, schema: &SchemaName) {
        self.inner.roster.forget(schema);
    }
}
