//! Diesel instrumentation for watching what a pool's connections do: the
//! statements they send, how many, and how many connections a pool opens.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use tenancy_core::TenantPool;

/// Records the statements a connection sends (every `StartQuery` is one
/// message); clones share one log, so a pool's factory can hand one to
/// every connection.
#[derive(Clone, Default)]
pub struct StatementLog(Arc<Mutex<Vec<String>>>);

impl StatementLog {
    /// The statements recorded since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

impl Instrumentation for StatementLog {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            self.0.lock().unwrap().push(query.to_string());
        }
    }
}

/// Counts the statements connections send, without formatting them (cheap
/// enough for benchmarks); clones share one count.
#[derive(Clone, Default)]
pub struct StatementCount(
    /// Statements sent so far.
    pub Arc<AtomicU64>,
);

impl Instrumentation for StatementCount {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Instrumentation that records nothing.
pub struct Silent;

impl Instrumentation for Silent {
    fn on_connection_event(&mut self, _: InstrumentationEvent<'_>) {}
}

/// A pool of `size` on the test database whose connections record every
/// statement they send in the returned log.
pub fn logged_pool(size: u32) -> (TenantPool, StatementLog) {
    let log = StatementLog::default();
    let for_factory = log.clone();
    let pool = TenantPool::builder()
        .max_size(size)
        .instrumentation(move || Box::new(for_factory.clone()))
        .build(&crate::url())
        .unwrap();
    (pool, log)
}

/// A pool of one on the database at `url`, and the number of connections
/// it has opened so far (its instrumentation factory runs once per
/// connection).
pub fn pool_counting_connections(url: &str) -> (TenantPool, Arc<AtomicUsize>) {
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = opened.clone();
    let pool = TenantPool::builder()
        .max_size(1)
        .instrumentation(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::new(Silent)
        })
        .build(url)
        .unwrap();
    (pool, opened)
}
