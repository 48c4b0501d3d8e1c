//! Taking a connection back from a borrower: whatever the borrower's
//! statements may have left is restored in one message, or the connection is
//! retired, before any other borrower can get it.

use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::result::Error as DieselError;
use diesel::PgConnection;

use super::manager::{retire, Pooled};
use super::{PoolerMode, TenantPool};
use crate::guard::{Effects, Failure};
use crate::session::{session_of, transaction_open, trusted, Phase, Scope};

/// How many times a restore message is sent before the connection is
/// retired instead (see [`TenantPool::check_in`]).
const RESTORE_ATTEMPTS: usize = 3;

/// What the restore message's check raises when something is left that
/// cannot be undone in place (a temporary schema): no point trying again.
const CANNOT_RESTORE: &str = "tenancy: cannot restore";

impl TenantPool {
    /// Takes a connection back from a borrower: whatever the borrower's
    /// statements may have left is restored in one message (or the
    /// connection retired), before any other borrower can get it.
    pub(crate) fn check_in(&self, conn: &mut Pooled) {
        let pooler = self.inner.pooler_mode == PoolerMode::Transaction;
        let open = transaction_open(conn);
        let Some(session) = session_of(conn) else { return };
        if session.state.pool != self.inner.id {
            // Not this pool's connection (moved here from another pool).
            session.state.retire = true;
            return;
        }
        session.phase = Phase::Pool;
        session.state.refused = false;
        if let Some((at, affinity)) = session.state.borrowed.take() {
            self.inner.tuner.returned(affinity, at.elapsed());
        }
        if std::mem::take(&mut session.state.scope_in_transaction) {
            // Checked in without the pool's commit: the transaction that set it ended otherwise.
            session.state.scope = Scope::Unknown;
        }
        session.state.last_used = Instant::now();
        let (effects, active, failure) = session.guard.take();
        let state = &mut session.state;
        // A temporary schema, once a session has one, stays listed in its
        // search path; SQL-level prepared statements could share a name with
        // diesel's. A fresh session is cheaper than proving them gone.
        if failure == Failure::Lost
            || effects.intersects(Effects::UNRESTORABLE | Effects::PREPARED | Effects::TEMPORARY)
        {
            state.retire = true;
            return;
        }
        if failure == Failure::Unknown {
            // E.g. "relation does not exist": prove the tenant again first.
            state.epoch = 0;
            if let Scope::Tenant(schema) = &state.scope {
                self.inner.roster.unprove(schema);
            }
        }
        if effects.contains(Effects::SEQUENCES) {
            state.sequences = true;
        }
        if self
            .inner
            .max_tenants_per_connection
            .is_some_and(|k| state.served.as_ref().is_some_and(|s| s.len() >= k))
        {
            state.retire = true;
            return;
        }
        const RESTORED: Effects = Effects::SETTING
            .union(Effects::CURSOR)
            .union(Effects::ADVISORY_LOCK)
            .union(Effects::LISTEN)
            .union(Effects::BEGINS)
            .union(Effects::ENDS)
            .union(Effects::OPAQUE);
        let restore = if pooler {
            open.then(|| String::from("ROLLBACK; DISCARD SEQUENCES"))
        } else {
            let always = active && self.inner.always_restore;
            (open || always || effects.intersects(RESTORED))
                .then(|| self.restore_message(&state.scope, effects, open))
        };
        if effects.contains(Effects::SEARCH_PATH) && restore.is_none() {
            state.scope = Scope::Unknown;
        }
        if let Some(sql) = restore {
            // Until its `RESET ALL` runs, the message is bound by the
            // borrower's own limits: a `statement_timeout` of a millisecond
            // can cancel it on a loaded server. The server answered, so the
            // session is sound: try again a few times before retiring it,
            // unless the message's own check said it cannot be restored.
            let attempt = |c: &mut PgConnection| c.batch_execute(&sql);
            let restored = trusted(conn, |c| {
                (1..RESTORE_ATTEMPTS).fold(attempt(c), |done, _| match done {
                    Err(DieselError::DatabaseError(_, info)) if !info.message().contains(CANNOT_RESTORE) => {
                        attempt(c)
                    }
                    done => done,
                })
            });
            match restored {
                Ok(()) => {
                    if let Some(session) = session_of(conn) {
                        session.state.sequences = false;
                    }
                }
                Err(_) => retire(conn),
            }
        }
    }

    /// One message that returns a session to how the pool left it, undoing
    /// what `effects` say may have changed: ends any transaction, resets
    /// every setting (then re-applies diesel's own), closes cursors, drops
    /// listeners, session advisory locks and sequence state, and scopes the
    /// session again. For code the text did not show, all of it, and a
    /// temporary schema it may have made (which cannot be undone in place)
    /// makes the message fail, so that the connection is retired.
    fn restore_message(&self, scope: &Scope, effects: Effects, open: bool) -> String {
        let all = effects.intersects(Effects::OPAQUE) || self.inner.always_restore;
        let wants = |e: Effects| all || effects.intersects(e);
        let mut parts: Vec<&str> = Vec::with_capacity(12);
        if open || wants(Effects::BEGINS.union(Effects::ENDS)) {
            parts.push("ROLLBACK");
        }
        if wants(Effects::SETTING) {
            parts.extend([
                "SET SESSION AUTHORIZATION DEFAULT",
                "RESET ALL",
                "SET TIME ZONE 'UTC'",
                "SET CLIENT_ENCODING TO 'UTF8'",
            ]);
        }
        if wants(Effects::CURSOR) {
            parts.push("CLOSE ALL");
        }
        if wants(Effects::LISTEN) {
            parts.push("UNLISTEN *");
        }
        if wants(Effects::ADVISORY_LOCK) {
            parts.push("SELECT pg_catalog.pg_advisory_unlock_all()");
        }
        parts.push("DISCARD SEQUENCES");
        if all {
            parts.push(
                "SELECT CASE WHEN pg_catalog.pg_my_temp_schema() <> 0 \
                 THEN ('tenancy: cannot restore: ' || pg_catalog.pg_my_temp_schema())::int END",
            );
        }
        let mut sql = parts.join("; ");
        let first = match scope {
            Scope::Tenant(schema) => Some(schema.as_str()),
            Scope::Shared => Some(self.inner.layout.shared()),
            Scope::Unknown => None,
        };
        if let Some(first) = first {
            sql.push_str("; SET search_path TO ");
            sql.push_str(&self.inner.layout.search_path(first));
        }
        sql
    }
}
