//! [`TenantPoolBuilder`] and [`PoolerMode`]: every setting has a default, and
//! every check returns a typed error ([`ConfigError`]) instead of panicking.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::Instrumentation;
use diesel::prelude::*;
use diesel::sql_types::Text;

use super::manager::{InstrumentationFactory, Manager, Opening};
use super::roster::Roster;
use super::slots::Slots;
use super::stats::Counters;
use super::{PoolInner, TenantAffinity, TenantPool};
use crate::config::ConfigError;
use crate::error::TenancyError;
use crate::guard::Catalog;
use crate::layout::Layout;
use crate::schema_name::DEFAULT_REGISTRY_SCHEMA;

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
    /// checkouts are refused with [`TenancyError::SessionRefused`], diesel's
    /// prepared-statement cache is disabled (prepared statements live in
    /// server sessions), and statements that would change the server
    /// session are refused before they are sent.
    Transaction,
}

/// A callback held by a builder: shown in `Debug` without its contents.
#[derive(Clone)]
pub(crate) struct Hook<T>(pub(crate) T);

impl<T> fmt::Debug for Hook<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hook(..)")
    }
}

/// Configures and builds a [`TenantPool`]. Every setting has a default.
///
/// ```no_run
/// use std::time::Duration;
/// use tenancy_core::{PoolerMode, TenantPool};
///
/// let pool = TenantPool::builder()
///     .max_size(16)
///     .connection_timeout(Duration::from_secs(5))
///     .extension_schemas(["extensions"])
///     .build("postgres://localhost/app")?;
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TenantPoolBuilder {
    pub(super) max_size: u32,
    min_idle: Option<u32>,
    pub(super) connection_timeout: Duration,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    test_on_check_out: bool,
    shared_schema: String,
    registry_schema: String,
    extension_schemas: Vec<String>,
    pub(super) pooler_mode: PoolerMode,
    statement_cache: bool,
    pub(super) max_tenants_per_connection: Option<usize>,
    session_guard: bool,
    pub(super) affinity: TenantAffinity,
    always_restore: bool,
    tenant_cache_ttl: Duration,
    drop_notifications: bool,
    distribute_tenants: bool,
    instrumentation: Option<Hook<InstrumentationFactory>>,
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
            affinity: TenantAffinity::Adaptive,
            always_restore: false,
            tenant_cache_ttl: Duration::from_secs(60),
            drop_notifications: true,
            distribute_tenants: true,
            instrumentation: None,
        }
    }
}

impl TenantPoolBuilder {
    // How many connections, and for how long.
    setters! {
        /// Maximum number of connections, idle or in use. Default: 10.
        max_size(u32) => max_size;
        /// Idle connections kept open. Default: `None`, meaning `max_size`.
        min_idle(Option<u32>) => min_idle;
        /// How long a checkout waits for a free connection before
        /// [`TenancyError::PoolTimeout`]. Default: 30 seconds.
        connection_timeout(Duration) => connection_timeout;
        /// Idle connections are closed after this long. Default: 10 minutes.
        idle_timeout(Option<Duration>) => idle_timeout;
        /// Connections are closed after this long, busy or not, the next time
        /// they are returned. Bounds the per-backend catalog cache. Default: 30 minutes.
        max_lifetime(Option<Duration>) => max_lifetime;
    }

    // What the pool checks.
    setters! {
        /// Ping (`SELECT 1`) every connection before handing it out. Default:
        /// `false`: it costs a round trip per checkout, and a dead connection is
        /// found on first use anyway (its error reaches the caller and the
        /// connection is discarded; tenant transactions retry their opening
        /// statement on a fresh connection by themselves).
        test_on_check_out(bool) => test_on_check_out;
        /// Read the statements borrowers send, and restore or retire connections
        /// whose session they changed (see the crate docs on borrowers).
        /// Default: `true`. Turn it off only when every statement sent through
        /// the pool is known not to change session state.
        session_guard(bool) => session_guard;
        /// Restore every session a borrower sent anything on before it goes
        /// back to the pool (one message: see the crate docs), not only those
        /// whose statements the session guard finds changing session state.
        ///
        /// What the guard cannot see is code the server runs by itself: a
        /// trigger, a rule or a function body that changes a setting or takes a
        /// session lock while a plain `INSERT` runs. Turn this on when your
        /// schemas have such code. Costs one round trip per checkout that sent
        /// statements. Behind a transaction pooler the equivalent check is always
        /// made, in the `COMMIT` message. Default: `false`.
        always_restore(bool) => always_restore;
        /// Keep diesel's prepared-statement cache on each connection. Default:
        /// `true`; always off in [`PoolerMode::Transaction`].
        statement_cache(bool) => statement_cache;
    }

    // How connections are scoped.
    setters! {
        /// How connections reach PostgreSQL; see [`PoolerMode`]. Default: [`PoolerMode::Session`].
        pooler_mode(PoolerMode) => pooler_mode;
        /// Retire a connection once it has served this many distinct tenants.
        ///
        /// Every schema a backend touches adds its tables to that backend's
        /// catalog cache, so with thousands of tenants a long-lived connection's
        /// memory grows with every tenant it serves. Retiring after `k` tenants
        /// bounds it. Default: `None` (bounded only by `max_lifetime`).
        max_tenants_per_connection(Option<usize>) => max_tenants_per_connection;
        /// How long a proof that a tenant is registered is trusted before it is
        /// proven again (in the same message as the checkout's own statement,
        /// or as the one statement of a checkout that would otherwise send
        /// none). Drops through this library reach every pool at once, in this
        /// process directly and in others by notification; this bounds how long
        /// a registry row deleted or a schema dropped by hand stays served.
        /// `Duration::ZERO` proves the tenant on every checkout. Default: 60 seconds.
        tenant_cache_ttl(Duration) => tenant_cache_ttl;
        /// Listen (on one extra connection of the pool's own, outside `max_size`)
        /// for tenants dropped or fenced by other processes, so that their
        /// connections stop serving them at once instead of after
        /// [`tenant_cache_ttl`](Self::tenant_cache_ttl). Default: `true`; off
        /// in [`PoolerMode::Transaction`], where a pooled `LISTEN` does not work.
        drop_notifications(bool) => drop_notifications;
    }

    // On Citus.
    setters! {
        /// On a Citus coordinator with schema-based sharding (see
        /// [`crate::citus`]): create each tenant as a distributed schema,
        /// placed on a worker, whatever the server's or database's
        /// `citus.enable_schema_based_sharding`. `false` keeps new tenants on
        /// the coordinator as plain schemas. Ignored on plain PostgreSQL.
        /// Default: `true`.
        distribute_tenants(bool) => distribute_tenants;
    }

    /// Whether a checkout looks through the idle connections for one that
    /// already serves the requested tenant, and on a switch takes the idle
    /// connection whose tenant was asked for least lately (counts halved
    /// every 8,192 checkouts), the most recently used among equals. Hot
    /// tenants thus keep connections of their own and the rest share the
    /// connection that serves whatever is cold. Without it the pool hands out
    /// the most recently returned connection and switches it as needed, so a
    /// thread keeps one backend busy.
    ///
    /// Neither wins everywhere: looking turns the switches of a hot set of
    /// tenants that fits the pool into hits (2–3× faster over a few tenants
    /// in BENCHMARKS.md), and costs CPU where tenants are many and flat and
    /// several threads draw on the pool at once (its requests spread over
    /// backends that sat idle). The default, [`TenantAffinity::Adaptive`],
    /// measures both on the pool's own traffic (the mean time a connection is
    /// borrowed, over epochs of 2,048 checkouts, compared in turn) and uses
    /// the faster, comparing again from time to time; [`TenantPool::state`]
    /// says which is in use and what was measured. `true` or
    /// [`TenantAffinity::Always`] always looks, `false` or
    /// [`TenantAffinity::Never`] never does. Behind a transaction pooler
    /// connections carry no tenant and nothing is looked for.
    pub fn tenant_affinity(mut self, affinity: impl Into<TenantAffinity>) -> Self {
        self.affinity = affinity.into();
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
    /// `public`, the shared and the registry schema are refused here: tables
    /// there would become a silent fallback. Default: none, so the search
    /// path is exactly the tenant.
    pub fn extension_schemas<I, S>(mut self, schemas: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extension_schemas = schemas.into_iter().map(Into::into).collect();
        self
    }

    /// Install a diesel [`Instrumentation`] on every new connection (for
    /// logging, metrics or counting statements); it sees every event,
    /// including the pool's own statements. Instrumentation set on a
    /// checked-out connection directly would displace the pool's own, so the
    /// pool retires such a connection when it comes back.
    pub fn instrumentation<F>(mut self, factory: F) -> Self
    where
        F: Fn() -> Box<dyn Instrumentation> + Send + Sync + 'static,
    {
        self.instrumentation = Some(Hook(Arc::new(factory)));
        self
    }

    fn check(&self) -> Result<Layout, ConfigError> {
        if self.max_size == 0 {
            return Err(ConfigError::ZeroMaxSize);
        }
        if let Some(min_idle) = self.min_idle.filter(|&m| m > self.max_size) {
            return Err(ConfigError::MinIdleAboveMaxSize { min_idle, max_size: self.max_size });
        }
        for (setting, duration) in [
            ("connection_timeout", Some(self.connection_timeout)),
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
        ] {
            if duration == Some(Duration::ZERO) {
                return Err(ConfigError::ZeroDuration { setting });
            }
        }
        Layout::new(&self.shared_schema, &self.registry_schema, &self.extension_schemas)
    }

    /// Checks the configuration, opens one connection to fail fast on a bad
    /// URL or an unreachable server (and to read which built-in functions
    /// the session guard can trust), and builds the pool.
    pub fn build(self, database_url: &str) -> Result<TenantPool, TenancyError> {
        let mut layout = self.check()?;
        let mut first = PgConnection::establish(database_url)?;
        let catalog = Arc::new(read_catalog(&mut first)?);
        layout.set_citus(crate::citus::detect::detect(&mut first, self.distribute_tenants)?);
        static POOL_IDS: AtomicU64 = AtomicU64::new(1);
        let pool_id = POOL_IDS.fetch_add(1, Ordering::Relaxed);
        let listen = self.drop_notifications && self.pooler_mode == PoolerMode::Session;
        let roster = Roster::new(
            self.tenant_cache_ttl,
            listen.then(|| (first, database_url.to_owned(), layout.registry().to_owned())),
        );
        let opening = Opening {
            statement_cache: self.statement_cache && self.pooler_mode == PoolerMode::Session,
            session_guard: self.session_guard,
            track_served: self.max_tenants_per_connection.is_some(),
        };
        let counters = Arc::new(Counters::default());
        let slots = Slots::new(self.max_size);
        let manager = Manager::new(
            database_url.to_owned(),
            slots.clone(),
            pool_id,
            opening,
            catalog,
            self.instrumentation.map(|h| h.0),
            counters.clone(),
        );
        let pool = r2d2::Pool::builder()
            .max_size(self.max_size)
            .min_idle(self.min_idle)
            .connection_timeout(self.connection_timeout)
            .idle_timeout(self.idle_timeout)
            .max_lifetime(self.max_lifetime)
            .test_on_check_out(self.test_on_check_out)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        Ok(TenantPool {
            inner: Arc::new(PoolInner {
                pool,
                id: pool_id,
                layout,
                roster,
                pooler_mode: self.pooler_mode,
                connection_timeout: self.connection_timeout,
                max_tenants_per_connection: self.max_tenants_per_connection,
                tuner: super::tuner::Tuner::new(self.affinity),
                slots,
                heat: Default::default(),
                eviction: Default::default(),
                always_restore: self.always_restore,
                counters,
                url: database_url.to_owned(),
            }),
        })
    }
}

/// What the session guard may trust, read from the server: its immutable and
/// stable built-in functions (less those another schema's functions
/// overload), and its catalog relations with write rules.
fn read_catalog(conn: &mut PgConnection) -> Result<Catalog, TenancyError> {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let functions: Vec<Name> = diesel::sql_query(Catalog::FUNCTIONS_SQL).load(conn)?;
    let relations: Vec<Name> = diesel::sql_query(Catalog::RELATIONS_SQL).load(conn)?;
    let shadowed: Vec<Name> = diesel::sql_query(Catalog::SHADOWED_SQL).load(conn)?;
    Ok(Catalog::with_shadowed(
        functions.into_iter().map(|n| n.name),
        relations.into_iter().map(|n| n.name),
        shadowed.into_iter().map(|n| n.name),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_r2d2_would_panic_on_are_typed_errors() {
        let check = |b: TenantPoolBuilder| b.check().err();
        assert_eq!(check(TenantPool::builder().max_size(0)), Some(ConfigError::ZeroMaxSize));
        assert_eq!(
            check(TenantPool::builder().max_size(2).min_idle(Some(3))),
            Some(ConfigError::MinIdleAboveMaxSize { min_idle: 3, max_size: 2 })
        );
        assert_eq!(
            check(TenantPool::builder().connection_timeout(Duration::ZERO)),
            Some(ConfigError::ZeroDuration { setting: "connection_timeout" })
        );
        assert_eq!(
            check(TenantPool::builder().idle_timeout(Some(Duration::ZERO))),
            Some(ConfigError::ZeroDuration { setting: "idle_timeout" })
        );
        assert_eq!(
            check(TenantPool::builder().max_lifetime(Some(Duration::ZERO))),
            Some(ConfigError::ZeroDuration { setting: "max_lifetime" })
        );
        assert!(check(TenantPool::builder()).is_none());
    }
}
