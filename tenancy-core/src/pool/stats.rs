//! The pool's counters, read through [`PoolState`]: what an operator needs
//! to see a pool's health (hit rate, waits, tenants not found, connections
//! retired). Relaxed atomic increments: a few nanoseconds per checkout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::tuner::Reading;

/// Counters shared by a pool and its connection manager.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    checkouts: AtomicU64,
    hits: AtomicU64,
    switches: AtomicU64,
    not_found: AtomicU64,
    retirements: AtomicU64,
    timeouts: AtomicU64,
    wait_nanos: AtomicU64,
    not_committed: AtomicU64,
}

/// One thing that happened, to count.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    /// A connection handed out already scoped to what was asked.
    Hit,
    /// A connection handed out after its search path was changed.
    Switch,
    /// Handed out inside a transaction behind a transaction pooler (scoped
    /// with `SET LOCAL`, neither a hit nor a switch).
    Scoped,
    NotFound,
    Retirement,
    NotCommitted,
}

impl Counters {
    pub(crate) fn add(&self, count: Count) {
        let counter = match count {
            Count::Hit | Count::Switch | Count::Scoped => {
                self.checkouts.fetch_add(1, Ordering::Relaxed);
                match count {
                    Count::Hit => &self.hits,
                    Count::Switch => &self.switches,
                    _ => return,
                }
            }
            Count::NotFound => &self.not_found,
            Count::Retirement => &self.retirements,
            Count::NotCommitted => &self.not_committed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A wait for a free connection, which timed out or not.
    pub(crate) fn waited(&self, waited: Duration, timed_out: bool) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
        if timed_out {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, connections: u32, idle_connections: u32, tuner: Reading) -> PoolState {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PoolState {
            connections,
            idle_connections,
            checkouts: read(&self.checkouts),
            hits: read(&self.hits),
            switches: read(&self.switches),
            not_found: read(&self.not_found),
            retirements: read(&self.retirements),
            timeouts: read(&self.timeouts),
            wait_time: Duration::from_nanos(read(&self.wait_nanos)),
            not_committed: read(&self.not_committed),
            affinity: tuner.on,
            affinity_measured: tuner.last.map(|(off, on)| {
                let micros = |m: f64| Duration::from_nanos((m * 1000.0) as u64);
                (micros(off), micros(on))
            }),
        }
    }
}

/// A pool's connections and what it has done since it was built, from
/// [`TenantPool::state`](crate::TenantPool::state).
///
/// The counters only grow: sample them and take differences for rates
/// (say, `hits / checkouts` over the last minute for the hit rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolState {
    /// Open connections, idle or in use.
    pub connections: u32,
    /// Open connections not in use.
    pub idle_connections: u32,
    /// Checkouts and transactions handed out to callers (the pool's own
    /// provisioning and migration work is not counted).
    pub checkouts: u64,
    /// Of those, handed out on a connection already scoped to what was
    /// asked: nothing sent. (Behind a transaction pooler every checkout is
    /// scoped inside its transaction: neither a hit nor a switch.)
    pub hits: u64,
    /// Of those, handed out after changing the connection's search path.
    pub switches: u64,
    /// Checkouts and transactions that found no such registered tenant.
    pub not_found: u64,
    /// Connections closed instead of being returned to the pool: a session
    /// that could not be restored in place, a tenant limit reached
    /// (`max_tenants_per_connection`), a lost server connection.
    pub retirements: u64,
    /// Checkouts that gave up waiting for a free connection (`PoolTimeout`).
    pub timeouts: u64,
    /// Time spent waiting for a free connection, in total.
    pub wait_time: Duration,
    /// Scopes behind a transaction pooler whose transaction did not commit
    /// when their connection was dropped (see `TenantConnection::close`).
    pub not_committed: u64,
    /// Whether checkouts look for an idle connection already serving their
    /// tenant at the moment (see
    /// [`TenantPoolBuilder::tenant_affinity`](crate::TenantPoolBuilder::tenant_affinity)).
    pub affinity: bool,
    /// With [`TenantAffinity::Adaptive`](crate::TenantAffinity::Adaptive),
    /// the mean time a connection was borrowed with affinity off and with it
    /// on, in the last comparison of the two (`None` before the first).
    pub affinity_measured: Option<(Duration, Duration)>,
}
