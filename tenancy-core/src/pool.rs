//! [`TenantPool`]: one r2d2 pool of diesel `PgConnection`s serving every
//! tenant, where each connection handed out resolves names in exactly one
//! schema.

use std::collections::HashSet;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{
    AnsiTransactionManager, CacheSize, Instrumentation, SimpleConnection, TransactionManager,
};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::Text;

use crate::context::Tenant;
use crate::error::TenancyError;
use crate::guard::SessionGuard;
use crate::schema_name::{check_identifier, quote_ident, SchemaName, DEFAULT_REGISTRY_SCHEMA};

/// How the pool's connections reach PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PoolerMode {
    /// Direct connections, or a pooler in session mode: every connection is a
    /// PostgreSQL session of its own. All checkouts are allowed, and each
    /// connection keeps its tenant between checkouts.
    #[default]
    Session,
    /// Behind a pooler in transaction mode (PgBouncer `pool_mode =
    /// transaction`), where consecutive transactions of one client may run on
    /// different server sessions and session state leaks between clients.
    ///
    /// Only [`TenantPool::transaction`] and [`TenantPool::shared_transaction`]
    /// work (they scope with `SET LOCAL`, which cannot leak); session
    /// checkouts are refused with [`TenancyError::SessionRefused`], and
    /// diesel's prepared-statement cache is disabled, since prepared
    /// statements live in server sessions.
    Transaction,
}

/// A factory for the diesel [`Instrumentation`] installed on each new connection.
pub type InstrumentationFactory = Arc<dyn Fn() -> Box<dyn Instrumentation> + Send + Sync>;

/// Configures and builds a [`TenantPool`]. Every setting has a default.
///
/// ```no_run
/// use std::time::{Duration, Instant};
/// use tenancy_core::{PoolerMode, TenantPool};
///
/// let pool = TenantPool::builder()
///     .max_size(16)
///     .connection_timeout(Duration::from_secs(5))
///     .extension_schemas(["extensions"])
///     .build("postgres://localhost/app")?;
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct TenantPoolBuilder {
    max_size: u32,
    min_idle: Option<u32>,
    connection_timeout: Duration,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    test_on_check_out: bool,
    shared_schema: String,
    registry_schema: String,
    extension_schemas: Vec<String>,
    pooler_mode: PoolerMode,
    statement_cache: bool,
    max_tenants_per_connection: Option<usize>,
    session_guard: bool,
    affinity: bool,
    instrumentation: Option<InstrumentationFactory>,
}

impl Default for TenantPoolBuilder {
    fn default() -> Self {
        Self {
            max_size: 10,
            min_idle: None,
            connection_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            test_on_check_out: false,
            shared_schema: String::from("public"),
            registry_schema: String::from(DEFAULT_REGISTRY_SCHEMA),
            extension_schemas: Vec::new(),
            pooler_mode: PoolerMode::Session,
            statement_cache: true,
            max_tenants_per_connection: None,
            session_guard: true,
            affinity: true,
            instrumentation: None,
        }
    }
}

impl fmt::Debug for TenantPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantPoolBuilder")
            .field("max_size", &self.max_size)
            .field("min_idle", &self.min_idle)
            .field("connection_timeout", &self.connection_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("test_on_check_out", &self.test_on_check_out)
            .field("shared_schema", &self.shared_schema)
            .field("registry_schema", &self.registry_schema)
            .field("extension_schemas", &self.extension_schemas)
            .field("pooler_mode", &self.pooler_mode)
            .field("statement_cache", &self.statement_cache)
            .field("max_tenants_per_connection", &self.max_tenants_per_connection)
            .field("session_guard", &self.session_guard)
            .field("affinity", &self.affinity)
            .field("instrumentation", &self.instrumentation.is_some())
            .finish()
    }
}

impl TenantPoolBuilder {
    /// Maximum number of connections, idle or in use. Default: 10.
    pub fn max_size(mut self, max_size: u32) -> Self {
        self.max_size = max_size;
        self
    }

    /// Idle connections kept open. Default: `None`, meaning `max_size`.
    pub fn min_idle(mut self, min_idle: Option<u32>) -> Self {
        self.min_idle = min_idle;
        self
    }

    /// How long a checkout waits for a free connection before
    /// [`TenancyError::PoolTimeout`]. Default: 30 seconds.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Idle connections are closed after this long. Default: 10 minutes.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Connections are closed after this long, busy or not, the next time
    /// they are returned. Bounds the per-backend catalog cache. Default: 30 minutes.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Ping (`SELECT 1`) every connection before handing it out. Default:
    /// `false`: it costs a round trip per checkout, and a dead connection is
    /// found on first use anyway (its error reaches the caller and the
    /// connection is discarded; tenant transactions retry their opening
    /// statement on a fresh connection by themselves).
    pub fn test_on_check_out(mut self, test: bool) -> Self {
        self.test_on_check_out = test;
        self
    }

    /// The schema holding tables shared by all tenants, used by
    /// [`TenantPool::shared`]. Default: `public`.
    pub fn shared_schema(mut self, schema: impl Into<String>) -> Self {
        self.shared_schema = schema.into();
        self
    }

    /// The schema of the tenant registry (see [`crate::provision`]). Default: `tenancy`.
    pub fn registry_schema(mut self, schema: impl Into<String>) -> Self {
        self.registry_schema = schema.into();
        self
    }

    /// Schemas holding only extensions (types and functions, never tables),
    /// appended after the tenant's schema in every search path, so that
    /// extension functions and types stay reachable from tenant connections.
    /// `public` is refused here: tables there would become a silent fallback.
    /// Default: none, so the search path is exactly the tenant.
    pub fn extension_schemas<I, S>(mut self, schemas: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extension_schemas = schemas.into_iter().map(Into::into).collect();
        self
    }

    /// How connections reach PostgreSQL; see [`PoolerMode`]. Default: [`PoolerMode::Session`].
    pub fn pooler_mode(mut self, mode: PoolerMode) -> Self {
        self.pooler_mode = mode;
        self
    }

    /// Keep diesel's prepared-statement cache on each connection. Default:
    /// `true`; always off in [`PoolerMode::Transaction`].
    pub fn statement_cache(mut self, enabled: bool) -> Self {
        self.statement_cache = enabled;
        self
    }

    /// Retire a connection once it has served this many distinct tenants.
    ///
    /// Every schema a backend touches adds its tables to that backend's
    /// catalog cache, so with thousands of tenants a long-lived connection's
    /// memory grows with every tenant it serves. Retiring after `k` tenants
    /// bounds it. Default: `None` (bounded only by `max_lifetime`).
    pub fn max_tenants_per_connection(mut self, k: Option<usize>) -> Self {
        self.max_tenants_per_connection = k;
        self
    }

    /// Inspect the statements borrowers send for session-state changes (see
    /// the crate docs on borrowers). Default: `true`. Turn it off only when
    /// every statement sent through the pool is known not to change session
    /// state.
    pub fn session_guard(mut self, enabled: bool) -> Self {
        self.session_guard = enabled;
        self
    }

    /// Prefer an idle connection that already serves the requested tenant
    /// over the most recently returned one. A switch costs a round trip plus
    /// PostgreSQL re-planning cached statements; with skewed traffic this
    /// turns most switches into hits. Default: `true`.
    pub fn tenant_affinity(mut self, enabled: bool) -> Self {
        self.affinity = enabled;
        self
    }

    /// Install a diesel [`Instrumentation`] on every new connection (for
    /// logging, metrics or counting statements). Instrumentation set on a
    /// checked-out connection directly would displace the pool's own, so the
    /// pool retires such a connection when it comes back.
    pub fn instrumentation<F>(mut self, factory: F) -> Self
    where
        F: Fn() -> Box<dyn Instrumentation> + Send + Sync + 'static,
    {
        self.instrumentation = Some(Arc::new(factory));
        self
    }

    /// Checks the configuration, opens one connection to fail fast on a bad
    /// URL or an unreachable server, and builds the pool.
    pub fn build(self, database_url: &str) -> Result<TenantPool, TenancyError> {
        let shared = checked_schema_setting("shared_schema", &self.shared_schema)?;
        let registry = checked_schema_setting("registry_schema", &self.registry_schema)?;
        let mut extensions = Vec::with_capacity(self.extension_schemas.len());
        for ext in &self.extension_schemas {
            let ext = checked_schema_setting("extension_schemas", ext)?;
            if ext == "public" || ext == shared || ext == registry {
                return Err(TenancyError::Config(format!(
                    "extension schema {ext:?} is not allowed: extension schemas must hold only extensions, and `public`, the shared schema and the registry schema hold tables that tenant connections must never fall back to"
                )));
            }
            extensions.push(ext);
        }
        if self.max_size == 0 {
            return Err(TenancyError::Config(String::from("max_size must be at least 1")));
        }
        // `pg_temp` last: otherwise PostgreSQL searches temporary tables
        // first, and a temporary table left on a server session (by anyone,
        // behind a pooler) would shadow the tenant's table of the same name.
        let extension_suffix: String = extensions
            .iter()
            .map(|e| format!(", {}", quote_ident(e)))
            .chain([String::from(", pg_temp")])
            .collect();
        let statement_cache = self.statement_cache && self.pooler_mode == PoolerMode::Session;

        // Fail fast, with libpq's own message, instead of r2d2's timeout.
        PgConnection::establish(database_url)?;

        let manager = Manager {
            url: database_url.to_owned(),
            statement_cache,
            session_guard: self.session_guard,
            instrumentation: self.instrumentation.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(self.max_size)
            .min_idle(self.min_idle)
            .connection_timeout(self.connection_timeout)
            .idle_timeout(self.idle_timeout)
            .max_lifetime(self.max_lifetime)
            .test_on_check_out(self.test_on_check_out)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        let shared_path = format!("{}{}", quote_ident(&shared), extension_suffix);
        Ok(TenantPool {
            inner: Arc::new(PoolInner {
                pool,
                shared_schema: shared,
                shared_path,
                registry_schema: registry,
                extension_suffix,
                pooler_mode: self.pooler_mode,
                connection_timeout: self.connection_timeout,
                max_tenants_per_connection: self.max_tenants_per_connection,
                affinity: self.affinity,
                scope_epoch: AtomicU64::new(0),
            }),
        })
    }
}

fn checked_schema_setting(setting: &str, name: &str) -> Result<String, TenancyError> {
    check_identifier(name)
        .map_err(|e| TenancyError::Config(format!("{setting} {name:?} is not a valid schema name: {e}")))?;
    Ok(name.to_owned())
}

/// A pool of PostgreSQL connections shared by every tenant, where every
/// connection handed out resolves unqualified names in exactly one schema.
///
/// * [`tenant`](Self::tenant) hands out a connection whose `search_path`
///   is exactly the tenant's schema (plus configured extension schemas):
///   never `public`, never what the previous borrower left behind. A
///   connection remembers its tenant, so checking out the same tenant again
///   sends nothing; switching sends one statement, which also proves the
///   schema exists.
/// * [`transaction`](Self::transaction) runs a closure in a transaction
///   scoped with `SET LOCAL`, sent in the same message as `BEGIN`.
/// * [`shared`](Self::shared) reaches the shared schema.
///
/// There is no unscoped checkout. Cloning is cheap; clones share the pool.
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
    inner: Arc<PoolInner>,
}

struct PoolInner {
    pool: r2d2::Pool<Manager>,
    shared_schema: String,
    shared_path: String,
    registry_schema: String,
    extension_suffix: String,
    pooler_mode: PoolerMode,
    connection_timeout: Duration,
    max_tenants_per_connection: Option<usize>,
    affinity: bool,
    /// Bumped when a schema is dropped through this pool: every connection's
    /// remembered scope from before is proven again before it is trusted.
    scope_epoch: AtomicU64,
}

impl fmt::Debug for TenantPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.pool.state();
        f.debug_struct("TenantPool")
            .field("connections", &state.connections)
            .field("idle_connections", &state.idle_connections)
            .field("shared_schema", &self.inner.shared_schema)
            .field("registry_schema", &self.inner.registry_schema)
            .field("pooler_mode", &self.inner.pooler_mode)
            .finish()
    }
}

/// Counts of a pool's connections, from [`TenantPool::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolState {
    /// Open connections, idle or in use.
    pub connections: u32,
    /// Open connections not in use.
    pub idle_connections: u32,
}

/// What a connection's session `search_path` is known to be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// Not known (new connection, a failed statement, or a borrower changed it).
    Unknown,
    Tenant(SchemaName),
    Shared,
}

/// The connection type of the underlying r2d2 pool: a diesel connection and
/// what the pool knows about its session.
struct PooledPg {
    conn: PgConnection,
    scope: Scope,
    /// The pool's scope epoch when `scope` was last proven.
    epoch: u64,
    tenants_served: HashSet<SchemaName>,
    retire: bool,
    last_used: Instant,
}

struct Manager {
    url: String,
    statement_cache: bool,
    session_guard: bool,
    instrumentation: Option<InstrumentationFactory>,
}

/// Why the pool could not open or check a connection.
#[derive(Debug, thiserror::Error)]
enum ManagerError {
    #[error("{0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("{0}")]
    Query(#[from] DieselError),
}

impl r2d2::ManageConnection for Manager {
    type Connection = PooledPg;
    type Error = ManagerError;

    fn connect(&self) -> Result<PooledPg, ManagerError> {
        let mut conn = PgConnection::establish(&self.url)?;
        if !self.statement_cache {
            conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        }
        let user = self.instrumentation.as_ref().map(|make| make());
        conn.set_instrumentation(SessionGuard::new(user, self.session_guard));
        Ok(PooledPg {
            conn,
            scope: Scope::Unknown,
            epoch: 0,
            tenants_served: HashSet::new(),
            retire: false,
            last_used: Instant::now(),
        })
    }

    fn is_valid(&self, conn: &mut PooledPg) -> Result<(), ManagerError> {
        conn.internal(|c| c.batch_execute("SELECT 1"))?;
        Ok(())
    }

    fn has_broken(&self, conn: &mut PooledPg) -> bool {
        // A transaction manager in error, or any transaction still open
        // (diesel's own check lets test transactions through), is broken.
        std::thread::panicking()
            || conn.retire
            || AnsiTransactionManager::transaction_manager_status_mut(&mut conn.conn)
                .transaction_depth()
                .map_or(true, |depth| depth.is_some())
    }
}

impl PooledPg {
    /// `true` if `error` (just returned on this connection) means the session is gone.
    fn lost(&mut self, error: &DieselError) -> bool {
        connection_lost(error) || AnsiTransactionManager::is_broken_transaction_manager(&mut self.conn)
    }

    fn guard(&mut self) -> Option<&mut SessionGuard> {
        self.conn.instrumentation().downcast_mut::<SessionGuard>()
    }

    /// Runs a statement of the pool's own, which the session guard trusts.
    fn internal<T>(&mut self, f: impl FnOnce(&mut PgConnection) -> T) -> T {
        if let Some(guard) = self.guard() {
            guard.set_internal(true);
        }
        let out = f(&mut self.conn);
        if let Some(guard) = self.guard() {
            guard.set_internal(false);
        }
        out
    }

    /// Called when a borrower gives the connection back: forget or retire
    /// whatever the borrower may have changed.
    fn check_in(&mut self, max_tenants: Option<usize>) {
        match self.guard() {
            Some(guard) => {
                guard.take_session_state_sent();
                let hazards = guard.take_hazards();
                if hazards.search_path {
                    self.scope = Scope::Unknown;
                }
                if hazards.retire {
                    self.retire = true;
                }
            }
            // The borrower replaced the pool's instrumentation; nothing it did is known.
            None => self.retire = true,
        }
        if max_tenants.is_some_and(|k| self.tenants_served.len() >= k) {
            self.retire = true;
        }
    }

    /// Makes the session search_path `path`, proving the schema exists, in
    /// one message: `SELECT '"t"'::regnamespace; SET search_path TO "t", pg_temp`.
    ///
    /// A simple query, not a prepared statement: PostgreSQL re-plans cached
    /// statements after every search_path change, and a cached switch
    /// statement would be re-planned on every switch too. If the schema does
    /// not exist the cast fails and the `SET` never runs.
    fn switch(&mut self, path: &str, schema_literal: &str) -> Result<(), DieselError> {
        self.scope = Scope::Unknown;
        let sql =
            format!("SELECT {}::regnamespace; SET search_path TO {path}", quote_literal(schema_literal));
        self.internal(|c| c.batch_execute(&sql))
    }

    /// After a failed scoping statement on this (still live) connection: does
    /// the schema exist? `None` if that cannot be told.
    fn schema_exists(&mut self, schema_literal: &str) -> Option<bool> {
        #[derive(QueryableByName)]
        struct Exists {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            exists: bool,
        }
        let rows: Vec<Exists> = self
            .internal(|c| {
                diesel::sql_query("SELECT to_regnamespace($1) IS NOT NULL AS exists")
                    .bind::<Text, _>(schema_literal)
                    .load(c)
            })
            .ok()?;
        rows.first().map(|r| r.exists)
    }

    /// Marks the connection used now, for least-recently-used eviction.
    fn touch(&mut self) {
        self.last_used = Instant::now();
    }
}

/// `true` for errors that mean the server connection itself is gone.
pub(crate) fn connection_lost(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _
        )
    )
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
        &self.inner.shared_schema
    }

    /// The schema of the tenant registry.
    pub fn registry_schema(&self) -> &str {
        &self.inner.registry_schema
    }

    /// The pooler mode this pool was built with.
    pub fn pooler_mode(&self) -> PoolerMode {
        self.inner.pooler_mode
    }

    /// Open and idle connection counts.
    pub fn state(&self) -> PoolState {
        let s = self.inner.pool.state();
        PoolState { connections: s.connections, idle_connections: s.idle_connections }
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
        format!("{}{}", schema.quoted(), self.inner.extension_suffix)
    }

    /// A cheap, cloneable handle bound to one tenant, implementing
    /// [`TenantContext`](crate::TenantContext).
    pub fn for_tenant(&self, schema: SchemaName) -> Tenant {
        Tenant::new(self.clone(), schema)
    }

    /// Makes every connection prove its scope again before it is trusted
    /// (after a schema was dropped through this pool).
    pub(crate) fn forget_scopes(&self) {
        self.inner.scope_epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets a connection's scope if it was proven before the last [`forget_scopes`](Self::forget_scopes).
    fn refresh(&self, mut pooled: r2d2::PooledConnection<Manager>) -> r2d2::PooledConnection<Manager> {
        let epoch = self.inner.scope_epoch.load(Ordering::Relaxed);
        if pooled.epoch != epoch {
            pooled.scope = Scope::Unknown;
            pooled.epoch = epoch;
        }
        pooled
    }

    fn checkout(&self) -> Result<r2d2::PooledConnection<Manager>, TenancyError> {
        self.inner.pool.get().map(|pooled| self.refresh(pooled)).map_err(|e| {
            let message = e.to_string();
            let last_error = message
                .strip_prefix("timed out waiting for connection")
                .map(|rest| rest.trim_start_matches(':').trim())
                .filter(|rest| !rest.is_empty())
                .map(str::to_owned);
            TenancyError::PoolTimeout { timeout: self.inner.connection_timeout, last_error }
        })
    }

    /// A connection for `target`: the one r2d2 hands out if it already
    /// serves `target`, else (with affinity on) an idle one that does, else
    /// the idle connection used least recently.
    ///
    /// r2d2 hands out the most recently returned idle connection; a switch
    /// costs a round trip plus PostgreSQL's re-planning of cached statements,
    /// so looking through the other idle connections (a few mutex operations
    /// each) is worth it. When none serves `target`, the least recently used
    /// one is switched: its tenant is the least likely to be asked for again
    /// (switching the most recent one would evict the tenant just served).
    /// Connections looked at and not taken go back at once.
    fn checkout_for(&self, target: &Target<'_>) -> Result<r2d2::PooledConnection<Manager>, TenancyError> {
        let first = self.checkout()?;
        if !self.inner.affinity || target.matches(&first.scope) {
            return Ok(first);
        }
        let mut idle = vec![first];
        while let Some(conn) = self.inner.pool.try_get().map(|conn| self.refresh(conn)) {
            if target.matches(&conn.scope) {
                return Ok(conn);
            }
            idle.push(conn);
        }
        let oldest = (0..idle.len()).min_by_key(|&i| idle[i].last_used).unwrap_or(0);
        Ok(idle.swap_remove(oldest))
    }

    /// Retry budget for statements that open a checkout: enough to get past
    /// every dead idle connection after a server restart.
    fn attempts(&self) -> u32 {
        self.inner.pool.max_size() + 1
    }

    fn refuse_session(&self, operation: &'static str) -> Result<(), TenancyError> {
        match self.inner.pooler_mode {
            PoolerMode::Session => Ok(()),
            PoolerMode::Transaction => Err(TenancyError::SessionRefused { operation }),
        }
    }

    /// A connection whose search path is exactly `schema` (followed by any
    /// configured extension schemas).
    ///
    /// Costs no round trip when the connection handed out already serves
    /// `schema`, and one statement otherwise, which also proves the schema
    /// exists: a missing schema is [`TenancyError::TenantNotFound`].
    /// Refused in [`PoolerMode::Transaction`].
    pub fn tenant(&self, schema: &SchemaName) -> Result<TenantConnection, TenancyError> {
        self.refuse_session("TenantPool::tenant")?;
        let target = Target::Tenant(schema);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut pooled = self.checkout_for(&target)?;
            if target.matches(&pooled.scope) {
                return Ok(TenantConnection::new(pooled, self));
            }
            let literal = schema.quoted();
            match pooled.switch(&self.search_path_for(schema), &literal) {
                Ok(()) => {
                    pooled.scope = Scope::Tenant(schema.clone());
                    if self.inner.max_tenants_per_connection.is_some() {
                        pooled.tenants_served.insert(schema.clone());
                    }
                    return Ok(TenantConnection::new(pooled, self));
                }
                Err(e) if pooled.lost(&e) && attempt < self.attempts() => pooled.retire = true,
                Err(e) if pooled.lost(&e) => {
                    pooled.retire = true;
                    return Err(e.into());
                }
                Err(e) => {
                    return Err(match pooled.schema_exists(&literal) {
                        Some(false) => TenancyError::TenantNotFound { schema: schema.clone() },
                        _ => e.into(),
                    })
                }
            }
        }
    }

    /// A connection whose search path is the shared schema (`public` by
    /// default), for tables shared by all tenants. Refused in
    /// [`PoolerMode::Transaction`]; use [`TenantPool::shared_transaction`].
    pub fn shared(&self) -> Result<SharedConnection, TenancyError> {
        self.refuse_session("TenantPool::shared")?;
        let literal = quote_ident(&self.inner.shared_schema);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut pooled = self.checkout_for(&Target::Shared)?;
            if pooled.scope == Scope::Shared {
                return Ok(SharedConnection(TenantConnection::new(pooled, self)));
            }
            match pooled.switch(&self.inner.shared_path, &literal) {
                Ok(()) => {
                    pooled.scope = Scope::Shared;
                    return Ok(SharedConnection(TenantConnection::new(pooled, self)));
                }
                Err(e) if pooled.lost(&e) && attempt < self.attempts() => pooled.retire = true,
                Err(e) if pooled.lost(&e) => {
                    pooled.retire = true;
                    return Err(e.into());
                }
                Err(e) => {
                    return Err(match pooled.schema_exists(&literal) {
                        Some(false) => TenancyError::Config(format!(
                            "the shared schema {:?} does not exist; create it or configure another with TenantPoolBuilder::shared_schema",
                            self.inner.shared_schema
                        )),
                        _ => e.into(),
                    })
                }
            }
        }
    }

    /// Runs `f` in one transaction whose search path is exactly `schema`
    /// (`SET LOCAL`, so it ends with the transaction and works behind
    /// PgBouncer in transaction mode).
    ///
    /// `BEGIN`, the scoping and a check that the schema exists travel in one
    /// message, so this costs the same round trips as a plain diesel
    /// transaction. Commits when `f` returns `Ok`, rolls back when it returns
    /// `Err` or panics (the panic then continues). A missing schema is
    /// [`TenancyError::TenantNotFound`], converted into `E`.
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
        F: FnOnce(&mut PgConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        let conn = self.begin(&Target::Tenant(schema))?;
        run_in_transaction(conn, f)
    }

    /// Like [`TenantPool::transaction`], scoped to the shared schema.
    pub fn shared_transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        let conn = self.begin(&Target::Shared)?;
        run_in_transaction(conn, f)
    }

    /// Checks out a connection and opens a transaction scoped to `target`,
    /// in one message, retrying on fresh connections while the ones handed
    /// out turn out dead.
    ///
    /// In session mode a connection already serving the target needs only
    /// `BEGIN`, exactly like a plain diesel transaction; any other gets its
    /// session search path switched in the same message (and keeps it, so
    /// PostgreSQL's cached plans stay valid for the next transaction of that
    /// tenant). Behind a transaction pooler the scope is `SET LOCAL`, which
    /// ends with the transaction.
    fn begin(&self, target: &Target<'_>) -> Result<TenantConnection, TenancyError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut pooled = self.checkout_for(target)?;
            let switching = !target.matches(&pooled.scope);
            let begin_sql = match (self.inner.pooler_mode, switching) {
                (PoolerMode::Session, false) => String::from("BEGIN"),
                (PoolerMode::Session, true) => format!(
                    "SELECT {}::regnamespace; SET search_path TO {}; BEGIN",
                    quote_literal(&target.literal(self)),
                    target.path(self)
                ),
                (PoolerMode::Transaction, _) => format!(
                    "SELECT {}::regnamespace; BEGIN; SET LOCAL search_path TO {}",
                    quote_literal(&target.literal(self)),
                    target.path(self)
                ),
            };
            if switching {
                pooled.scope = Scope::Unknown;
            }
            let result = pooled.internal(|c| AnsiTransactionManager::begin_transaction_sql(c, &begin_sql));
            match result {
                Ok(()) => {
                    if switching && self.inner.pooler_mode == PoolerMode::Session {
                        // Rolled back together with the transaction if it
                        // does not commit; `run_in_transaction` forgets it then.
                        pooled.scope = target.scope();
                        if let Target::Tenant(schema) = target {
                            if self.inner.max_tenants_per_connection.is_some() {
                                pooled.tenants_served.insert((*schema).clone());
                            }
                        }
                    }
                    return Ok(TenantConnection::new(pooled, self));
                }
                Err(e) if pooled.lost(&e) && attempt < self.attempts() => pooled.retire = true,
                Err(e) => {
                    if pooled.lost(&e) {
                        pooled.retire = true;
                        return Err(e.into());
                    }
                    // The failed statement may have left the session mid-way.
                    pooled.scope = Scope::Unknown;
                    let missing = pooled.schema_exists(&target.literal(self)) == Some(false);
                    return Err(match target {
                        Target::Tenant(schema) if missing => {
                            TenancyError::TenantNotFound { schema: (*schema).clone() }
                        }
                        _ => e.into(),
                    });
                }
            }
        }
    }
}

/// What a checkout is for.
enum Target<'a> {
    Tenant(&'a SchemaName),
    Shared,
}

impl Target<'_> {
    fn matches(&self, scope: &Scope) -> bool {
        match (self, scope) {
            (Target::Tenant(wanted), Scope::Tenant(current)) => *wanted == current,
            (Target::Shared, Scope::Shared) => true,
            _ => false,
        }
    }

    fn scope(&self) -> Scope {
        match self {
            Target::Tenant(schema) => Scope::Tenant((*schema).clone()),
            Target::Shared => Scope::Shared,
        }
    }

    /// The search_path value, quoted.
    fn path(&self, pool: &TenantPool) -> String {
        match self {
            Target::Tenant(schema) => pool.search_path_for(schema),
            Target::Shared => pool.inner.shared_path.clone(),
        }
    }

    /// The schema whose existence is checked, quoted.
    fn literal(&self, pool: &TenantPool) -> String {
        match self {
            Target::Tenant(schema) => schema.quoted(),
            Target::Shared => quote_ident(&pool.inner.shared_schema),
        }
    }
}

/// Quotes a SQL string literal.
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn run_in_transaction<T, E, F>(mut conn: TenantConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E>,
    E: From<TenancyError>,
{
    if let Some(guard) = conn.pooled.guard() {
        guard.take_session_state_sent();
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| f(&mut conn)));
    let behind_pooler = conn.pooler_mode == PoolerMode::Transaction;
    let pooled = &mut conn.pooled;
    match outcome {
        Ok(Ok(_)) if behind_pooler && pooled.guard().is_none_or(|g| g.take_session_state_sent()) => {
            // Committing would leave session state on the pooler's shared
            // server session for other clients. Undo what a rollback does
            // not (prepared statements, session advisory locks), then roll back.
            pooled.scope = Scope::Unknown;
            let _ = pooled.internal(|c| c.batch_execute("DEALLOCATE ALL; SELECT pg_advisory_unlock_all()"));
            if pooled.internal(AnsiTransactionManager::rollback_transaction).is_err() {
                pooled.retire = true;
            }
            Err(E::from(TenancyError::SessionStateRefused))
        }
        Ok(Ok(value)) => match pooled.internal(AnsiTransactionManager::commit_transaction) {
            Ok(()) => Ok(value),
            Err(e) => {
                pooled.scope = Scope::Unknown;
                // diesel has already rolled back if COMMIT failed; make sure no
                // transaction survives if it could not.
                if pooled
                    .internal(|c| {
                        AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth()
                    })
                    .map_or(true, |d| d.is_some())
                {
                    pooled.retire = true;
                }
                Err(E::from(TenancyError::Database(e)))
            }
        },
        Ok(Err(error)) => {
            // A search path set in the same transaction is rolled back with it.
            pooled.scope = Scope::Unknown;
            if pooled.internal(AnsiTransactionManager::rollback_transaction).is_err() {
                pooled.retire = true;
            }
            Err(error)
        }
        Err(panic) => {
            pooled.scope = Scope::Unknown;
            if pooled.internal(AnsiTransactionManager::rollback_transaction).is_err() {
                pooled.retire = true;
            }
            drop(conn);
            resume_unwind(panic)
        }
    }
}

/// A pooled connection scoped to one tenant, from [`TenantPool::tenant`].
///
/// Dereferences to diesel's `PgConnection`; use it as `&mut *conn`. Going out
/// of scope returns it to the pool, which forgets or retires any session
/// state the borrower changed (see the crate docs).
pub struct TenantConnection {
    pooled: r2d2::PooledConnection<Manager>,
    max_tenants: Option<usize>,
    pooler_mode: PoolerMode,
}

impl TenantConnection {
    fn new(pooled: r2d2::PooledConnection<Manager>, pool: &TenantPool) -> Self {
        Self {
            pooled,
            max_tenants: pool.inner.max_tenants_per_connection,
            pooler_mode: pool.inner.pooler_mode,
        }
    }

    /// The tenant this connection is scoped to, or `None` for a connection
    /// scoped to the shared schema or a transaction-scoped one.
    pub fn schema(&self) -> Option<&SchemaName> {
        match &self.pooled.scope {
            Scope::Tenant(s) => Some(s),
            _ => None,
        }
    }
}

impl Deref for TenantConnection {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.pooled.conn
    }
}

impl DerefMut for TenantConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.pooled.conn
    }
}

impl Drop for TenantConnection {
    fn drop(&mut self) {
        self.pooled.check_in(self.max_tenants);
        self.pooled.touch();
    }
}

impl fmt::Debug for TenantConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantConnection").field("scope", &self.pooled.scope).finish_non_exhaustive()
    }
}

/// A pooled connection scoped to the shared schema, from [`TenantPool::shared`].
pub struct SharedConnection(TenantConnection);

impl Deref for SharedConnection {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.0
    }
}

impl DerefMut for SharedConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.0
    }
}

impl fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedConnection").finish()
    }
}

impl TenantPool {
    /// Runs `f` in a transaction whose search path is exactly `path`
    /// (already quoted), with `SET LOCAL`. For the crate's own provisioning
    /// and migration code, which scopes to schemas that may not exist yet.
    pub(crate) fn scoped_transaction<T, E, F>(&self, path: &str, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        let begin_sql = format!("BEGIN; SET LOCAL search_path TO {path}, pg_temp");
        let mut attempt = 0;
        let conn = loop {
            attempt += 1;
            let mut pooled = self.checkout()?;
            match pooled.internal(|c| AnsiTransactionManager::begin_transaction_sql(c, &begin_sql)) {
                Ok(()) => break TenantConnection::new(pooled, self),
                Err(e) if pooled.lost(&e) && attempt < self.attempts() => pooled.retire = true,
                Err(e) => {
                    pooled.retire |= pooled.lost(&e);
                    pooled.scope = Scope::Unknown;
                    return Err(E::from(TenancyError::Database(e)));
                }
            }
        };
        run_in_transaction(conn, f)
    }
}
