//! What the pool knows about each physical connection, kept where the
//! connection goes: in its own diesel instrumentation ([`Session`]).
//!
//! Exchanging two checkouts with `std::mem::swap` exchanges their states
//! too, so the pool is never misled about which session it holds; a
//! connection whose instrumentation was replaced has no state and is retired.

use std::cell::Cell;
use std::collections::HashSet;
use std::time::Instant;

use diesel::connection::{AnsiTransactionManager, Instrumentation, InstrumentationEvent, TransactionManager};
use diesel::{Connection, PgConnection};

use crate::guard::{Announced, Effects, Guard};
use crate::schema_name::SchemaName;

/// What a connection's session `search_path` is known to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Not known: a new connection, or a borrower may have changed it.
    Unknown,
    Tenant(SchemaName),
    Shared,
}

/// Whose statements a connection is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The pool's own (idle, or being prepared or restored).
    Pool,
    /// A borrower's, on a session checkout: watched.
    Borrowed,
    /// A tenant transaction's body: statements that would end the pool's
    /// transaction are refused, and behind a transaction pooler every
    /// statement that would change the session too.
    Body {
        /// Behind a transaction pooler.
        pooler: bool,
    },
}

/// The pool's knowledge of one physical connection.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// Unique among every connection of this process.
    pub(crate) id: u64,
    /// The pool that opened it.
    pub(crate) pool: u64,
    /// Its slot number in the pool, which routes tenants to it.
    pub(crate) slot: Option<crate::pool::slots::Slot>,
    pub(crate) scope: Scope,
    /// The roster's epoch when the scope was last proven.
    pub(crate) epoch: u64,
    /// When the scope was last proven.
    pub(crate) proven_at: Instant,
    /// Distinct tenants served, when the pool retires connections after k of them.
    pub(crate) served: Option<HashSet<SchemaName>>,
    pub(crate) last_used: Instant,
    /// Close it instead of returning it to the pool.
    pub(crate) retire: bool,
    /// Sequence state (`lastval`) may be left: reset with the pool's next message.
    pub(crate) sequences: bool,
    /// A statement of the current transaction body was refused.
    pub(crate) refused: bool,
    /// The scope was set in the message that opened the current transaction
    /// (statements before `BEGIN` join its transaction): a rollback undoes it.
    pub(crate) scope_in_transaction: bool,
    /// When the current borrow's checkout began, and whether it looked for
    /// a connection serving its tenant (for the affinity tuner).
    pub(crate) borrowed: Option<(Instant, bool)>,
}

/// The instrumentation every pooled connection carries: the session guard,
/// the connection's state, and the user's own instrumentation, if any, which
/// sees every event.
pub(crate) struct Session {
    pub(crate) guard: Guard,
    pub(crate) state: ConnState,
    pub(crate) phase: Phase,
    pub(crate) user: Option<Box<dyn Instrumentation>>,
}

/// The payload a refused statement unwinds with, to the tenant transaction
/// that is running it (diesel's instrumentation hook cannot return an error,
/// and a refused statement must not be sent).
pub(crate) struct Refusal;

thread_local! {
    /// Tenant transaction bodies running on this thread, each ready to catch a [`Refusal`].
    static BODIES: Cell<usize> = const { Cell::new(0) };
}

/// Runs a tenant transaction's body where a refused statement can unwind to.
pub(crate) fn in_body<T>(f: impl FnOnce() -> T) -> T {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            BODIES.with(|b| b.set(b.get().saturating_sub(1)));
        }
    }
    BODIES.with(|b| b.set(b.get() + 1));
    let _leave = Leave;
    f()
}

impl Session {
    fn refuses(&self, effects: Effects, announced: Option<Announced>) -> bool {
        let Phase::Body { pooler } = self.phase else { return false };
        let ends_ours = effects.contains(Effects::ENDS)
            || matches!(announced, Some(Announced::Commit { depth: 1 } | Announced::Rollback { depth: 1 }));
        ends_ours || (pooler && effects.intersects(Effects::SESSION))
    }
}

impl Instrumentation for Session {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match &event {
            InstrumentationEvent::BeginTransaction { depth, .. } => {
                self.guard.announce(Announced::Begin { depth: depth.get() });
            }
            InstrumentationEvent::CommitTransaction { depth, .. } => {
                self.guard.announce(Announced::Commit { depth: depth.get() });
            }
            InstrumentationEvent::RollbackTransaction { depth, .. } => {
                self.guard.announce(Announced::Rollback { depth: depth.get() });
            }
            InstrumentationEvent::StartQuery { query, .. } => {
                let announced = self.guard.take_announced();
                if self.phase != Phase::Pool {
                    let effects = self.guard.inspect(query, announced.is_some());
                    if self.refuses(effects, announced) {
                        self.state.refused = true;
                        // Not sent: unwind to the transaction, which rolls back.
                        #[cfg(panic = "unwind")]
                        if BODIES.with(Cell::get) > 0 {
                            std::panic::resume_unwind(Box::new(Refusal));
                        }
                    }
                }
            }
            InstrumentationEvent::FinishQuery { error: Some(error), .. } if self.phase != Phase::Pool => {
                self.guard.failed(error);
            }
            _ => {}
        }
        if let Some(user) = &mut self.user {
            user.on_connection_event(event);
        }
    }
}

/// The pool's session on `conn`, unless a borrower replaced the instrumentation.
pub(crate) fn session_of(conn: &mut PgConnection) -> Option<&mut Session> {
    conn.instrumentation().downcast_mut::<Session>()
}

/// Runs statements of the pool's own on `conn`, which the guard trusts.
pub(crate) fn trusted<T>(conn: &mut PgConnection, f: impl FnOnce(&mut PgConnection) -> T) -> T {
    let previous = session_of(conn).map(|s| std::mem::replace(&mut s.phase, Phase::Pool));
    let out = f(conn);
    if let (Some(session), Some(previous)) = (session_of(conn), previous) {
        session.phase = previous;
    }
    out
}

/// `true` while diesel believes a transaction is open, or its transaction
/// manager is broken.
pub(crate) fn transaction_open(conn: &mut PgConnection) -> bool {
    AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .map_or(true, |d| d.is_some())
}
