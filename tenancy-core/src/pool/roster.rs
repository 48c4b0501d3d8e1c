//! Which tenants a pool has recently proven to be registered, so that a
//! switch to one of them needs no proof in its message, and how a drop,
//! here or in another process, makes every connection prove its tenant again.
//!
//! Drops through this crate notify (`pg_notify`) on a channel of the
//! registry's; the pool listens on a connection of its own and reads what
//! arrived at most every [`POLL_EVERY`], during checkouts, without a thread
//! and without a round trip (reading a notification is a non-blocking read
//! of the socket).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use crate::registry::notification_channel;
use crate::schema_name::SchemaName;
use crate::sql::quote_ident;

/// How often a checkout looks for drop notifications.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How long to wait before opening a lost listening connection again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Proven tenants remembered at most; older proofs are forgotten first.
const CAPACITY: usize = 100_000;

pub(crate) struct Roster {
    ttl: Duration,
    /// Bumped whenever a tenant is dropped or fenced (or notifications may
    /// have been missed): connections proven before must prove again.
    epoch: AtomicU64,
    proven: Mutex<HashMap<SchemaName, Instant>>,
    /// Some connection has found the shared schema.
    shared: std::sync::atomic::AtomicBool,
    origin: Instant,
    /// Milliseconds after `origin` of the next look for notifications.
    next_poll: AtomicU64,
    listener: Option<Mutex<Listener>>,
}

struct Listener {
    conn: Option<PgConnection>,
    url: String,
    channel: String,
    reconnect_at: Instant,
}

impl Roster {
    /// `listen`: the pool's first connection, its URL and the registry schema.
    pub(crate) fn new(ttl: Duration, listen: Option<(PgConnection, String, String)>) -> Self {
        let now = Instant::now();
        let listener = listen.map(|(conn, url, registry)| {
            let channel = notification_channel(&registry);
            let conn = Self::listen(conn, &channel);
            Mutex::new(Listener { conn, url, channel, reconnect_at: now + RECONNECT_EVERY })
        });
        Self {
            ttl,
            epoch: AtomicU64::new(1),
            proven: Mutex::new(HashMap::new()),
            shared: std::sync::atomic::AtomicBool::new(false),
            origin: now,
            next_poll: AtomicU64::new(0),
            listener,
        }
    }

    fn listen(mut conn: PgConnection, channel: &str) -> Option<PgConnection> {
        conn.batch_execute(&format!("LISTEN {}", quote_ident(channel))).ok().map(|()| conn)
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// When `schema` was last proven, if that proof is still trusted.
    pub(crate) fn proven(&self, schema: &SchemaName) -> Option<Instant> {
        let proven = self.proven.lock().unwrap_or_else(|p| p.into_inner());
        proven.get(schema).copied().filter(|at| at.elapsed() < self.ttl)
    }

    pub(crate) fn record(&self, schema: &SchemaName, at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut proven = self.proven.lock().unwrap_or_else(|p| p.into_inner());
        if proven.len() >= CAPACITY && !proven.contains_key(schema) {
            let ttl = self.ttl;
            proven.retain(|_, at| at.elapsed() < ttl);
            if proven.len() >= CAPACITY {
                proven.clear();
            }
        }
        proven.insert(schema.clone(), at);
    }

    pub(crate) fn shared_proven(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }

    pub(crate) fn record_shared(&self) {
        self.shared.store(true, Ordering::Relaxed);
    }

    /// A statement failed for `schema` in a way that may mean it is gone:
    /// the next checkout proves it again.
    pub(crate) fn unprove(&self, schema: &SchemaName) {
        self.proven.lock().unwrap_or_else(|p| p.into_inner()).remove(schema);
    }

    /// `schema` was dropped or fenced: nothing proven before is trusted.
    pub(crate) fn forget(&self, schema: &SchemaName) {
        self.proven.lock().unwrap_or_else(|p| p.into_inner()).remove(schema);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn forget_all(&self) {
        self.proven.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Reads drop notifications that arrived, at most every [`POLL_EVERY`].
    pub(crate) fn poll(&self) {
        self.poll_with(true);
    }

    /// [`Roster::poll`] that never blocks: a lost listening connection is
    /// left for a blocking caller to open again (for async callers on a
    /// runtime worker thread).
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_nonblocking(&self) {
        self.poll_with(false);
    }

    fn poll_with(&self, reconnect: bool) {
        let Some(listener) = &self.listener else { return };
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let due = self.next_poll.load(Ordering::Relaxed);
        if now < due
            || self
                .next_poll
                .compare_exchange(
                    due,
                    now + POLL_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let Ok(mut listener) = listener.try_lock() else { return };
        let listener = &mut *listener;
        match &mut listener.conn {
            Some(conn) => {
                let mut lost = false;
                for notification in conn.notifications_iter() {
                    match notification {
                        Ok(n) => match n.payload.split_once(' ').and_then(|(_, s)| SchemaName::new(s).ok()) {
                            Some(schema) => self.forget(&schema),
                            None => self.forget_all(),
                        },
                        Err(_) => {
                            lost = true;
                            break;
                        }
                    }
                }
                if lost {
                    listener.conn = None;
                    listener.reconnect_at = Instant::now() + RECONNECT_EVERY;
                    // Notifications may have been missed meanwhile.
                    self.forget_all();
                }
            }
            None if reconnect && Instant::now() >= listener.reconnect_at => {
                listener.reconnect_at = Instant::now() + RECONNECT_EVERY;
                if let Some(conn) = PgConnection::establish(&listener.url)
                    .ok()
                    .and_then(|c| Self::listen(c, &listener.channel))
                {
                    listener.conn = Some(conn);
                    self.forget_all();
                }
            }
            None => {}
        }
    }
}

impl std::fmt::Debug for Roster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roster").field("ttl", &self.ttl).field("epoch", &self.epoch()).finish_non_exhaustive()
    }
}
