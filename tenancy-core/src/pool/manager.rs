//! The r2d2 manager: opens connections, each with its [`Session`], and
//! tells r2d2 which ones came back broken.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use diesel::connection::{CacheSize, Instrumentation, SimpleConnection};
use diesel::{Connection, PgConnection};

use super::slots::Slots;
use super::stats::{Count, Counters};
use crate::guard::{Catalog, Guard};
use crate::session::{session_of, transaction_open, trusted, ConnState, Phase, Scope, Session};

/// A factory for the diesel [`Instrumentation`] installed on each new connection.
pub type InstrumentationFactory = Arc<dyn Fn() -> Box<dyn Instrumentation> + Send + Sync>;

static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

/// Opens connections for r2d2, each with its [`Session`].
/// A connection of the pool, while it is checked out.
pub(crate) type Pooled = r2d2::PooledConnection<Manager>;

/// Marks the connection to be closed instead of returned.
pub(crate) fn retire(conn: &mut Pooled) {
    if let Some(session) = session_of(conn) {
        session.state.retire = true;
    }
}

pub(crate) struct Manager {
    url: String,
    slots: Arc<Slots>,
    pool_id: u64,
    /// Keep diesel's prepared-statement cache.
    statement_cache: bool,
    /// Read the statements borrowers send.
    session_guard: bool,
    /// Count the distinct tenants each connection serves.
    track_served: bool,
    catalog: Arc<Catalog>,
    instrumentation: Option<InstrumentationFactory>,
    counters: Arc<Counters>,
}

/// How the pool's connections are opened.
pub(crate) struct Opening {
    pub(crate) statement_cache: bool,
    pub(crate) session_guard: bool,
    pub(crate) track_served: bool,
}

impl Manager {
    pub(crate) fn new(
        url: String,
        slots: Arc<Slots>,
        pool_id: u64,
        opening: Opening,
        catalog: Arc<Catalog>,
        instrumentation: Option<InstrumentationFactory>,
        counters: Arc<Counters>,
    ) -> Self {
        let Opening { statement_cache, session_guard, track_served } = opening;
        Self {
            url,
            slots,
            pool_id,
            statement_cache,
            session_guard,
            track_served,
            catalog,
            instrumentation,
            counters,
        }
    }
}

/// Why the pool could not open or check a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManagerError {
    #[error("{0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("{0}")]
    Query(#[from] diesel::result::Error),
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConnection;
    type Error = ManagerError;

    fn connect(&self) -> Result<PgConnection, ManagerError> {
        let mut conn = PgConnection::establish(&self.url)?;
        if !self.statement_cache {
            conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        }
        let now = Instant::now();
        conn.set_instrumentation(Session {
            guard: Guard::new(self.catalog.clone(), self.session_guard),
            state: ConnState {
                id: CONNECTION_IDS.fetch_add(1, Ordering::Relaxed),
                pool: self.pool_id,
                slot: self.slots.take(),
                scope: Scope::Unknown,
                epoch: 0,
                proven_at: now,
                served: self.track_served.then(HashSet::new),
                last_used: now,
                retire: false,
                sequences: false,
                refused: false,
                scope_in_transaction: false,
                borrowed: None,
            },
            phase: Phase::Pool,
            user: self.instrumentation.as_ref().map(|make| make()),
        });
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut PgConnection) -> Result<(), ManagerError> {
        trusted(conn, |c| c.batch_execute("SELECT 1"))?;
        Ok(())
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        let ours = session_of(conn).is_some_and(|s| !s.state.retire && s.state.pool == self.pool_id);
        let broken = std::thread::panicking() || !ours || transaction_open(conn);
        if broken {
            self.counters.add(Count::Retirement);
            tracing::debug!(target: "tenancy", "connection retired");
        }
        broken
    }
}
