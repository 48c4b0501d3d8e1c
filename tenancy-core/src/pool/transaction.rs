//! Transactions the pool opens: tenant (or shared, or internal)
//! transactions, and scopes that run as one behind a transaction pooler.
//! They commit as their [`Ending`] says, roll back on a panic and on a
//! refused statement, and never commit on a connection other than the one
//! they began on.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use diesel::connection::SimpleConnection;

use super::checkout::{Purpose, Target};
use super::connection::{Ending, Held, Open, TenantConnection};
use super::manager::{retire, Pooled};
use super::options::TransactionOptions;
use super::stats::Count;
use super::{PoolerMode, TenantPool};
use crate::error::TenancyError;
use crate::guard::{Effects, Failure};
use crate::registry::Registry;
use crate::session::{in_body, session_of, trusted, Phase, Refusal};

/// The text the pre-commit check raises behind a transaction pooler.
const SESSION_CHANGED: &str = "tenancy: session state changed";

impl TenantPool {
    /// Checks out a connection for `target` inside a transaction of the
    /// pool's, opened as `options` say, that ends as `ending` says.
    pub(crate) fn begin(
        &self,
        target: Target<'_>,
        options: &TransactionOptions,
        ending: Ending,
    ) -> Result<TenantConnection, TenancyError> {
        let begin = options.begin_sql();
        let pooled = self.acquire(target, Purpose::Transaction { begin: &begin })?;
        let mut conn = TenantConnection::new(pooled, self, target);
        let pooler = self.inner.pooler_mode == PoolerMode::Transaction;
        let Some(session) = session_of(conn.pooled_mut()) else {
            return Err(TenancyError::ConnectionReplaced);
        };
        session.phase = Phase::Body { pooler };
        conn.open = Some(Open { id: session.state.id, ending });
        Ok(conn)
    }

    /// Runs `f` in a transaction for `target`: commits when it returns
    /// `Ok`, rolls back when it returns `Err` or panics.
    pub(crate) fn run_in_transaction<T, E, F>(
        &self,
        target: Target<'_>,
        options: &TransactionOptions,
        f: F,
    ) -> Result<T, E>
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        run_open(self.begin(target, options, Ending::Transaction)?, f)
    }

    /// Ends a transaction whose owner did not (a scope behind a pooler going
    /// back, or a transaction unwinding): commits it if `commit` and nothing
    /// in it failed or was refused, else rolls it back.
    pub(crate) fn end_scope(
        &self,
        pooled: &mut Pooled,
        held: &Held,
        open: Open,
        commit: bool,
    ) -> Result<(), TenancyError> {
        let Some(session) = session_of(pooled) else { return Err(TenancyError::ConnectionReplaced) };
        session.phase = Phase::Pool;
        if session.state.id != open.id {
            // Its own connection, somewhere else now, is rolled back when that is checked in.
            return Err(TenancyError::ConnectionReplaced);
        }
        let (refused, effects, failure) =
            (session.state.refused, session.guard.seen(), session.guard.failure());
        if commit && !refused && failure == Failure::None {
            return self.commit(pooled, &held.target(), effects, failure);
        }
        self.roll_back(pooled, true);
        match () {
            _ if refused => Err(TenancyError::SessionStateRefused),
            _ if failure != Failure::None => Err(TenancyError::ScopeRolledBack),
            _ => Ok(()),
        }
    }

    /// A scope's transaction could not be committed where nobody could be
    /// told (its connection was dropped): said in the log.
    pub(crate) fn scope_not_committed(&self, held: &Held, error: &TenancyError) {
        self.inner.counters.add(Count::NotCommitted);
        let schema = match held {
            Held::Tenant(schema) => schema.as_str(),
            Held::Shared => self.inner.layout.shared(),
            Held::Internal(first) => first,
        };
        tracing::error!(
            target: "tenancy",
            schema,
            %error,
            "a scope dropped behind a transaction pooler did not commit; call close() on the connection to be told"
        );
    }

    fn roll_back(&self, pooled: &mut Pooled, ours: bool) {
        if ours && trusted(pooled, |c| c.batch_execute(self.rollback_sql())).is_err() {
            retire(pooled);
        }
    }

    /// Behind a transaction pooler a rollback also drops the sequence state
    /// (`lastval`) the transaction made, which would outlive it on the server session.
    fn rollback_sql(&self) -> &'static str {
        match self.inner.pooler_mode {
            PoolerMode::Session => "ROLLBACK",
            PoolerMode::Transaction => "ROLLBACK; DISCARD SEQUENCES",
        }
    }

    /// Rolls back after a statement failed in a way that may mean the tenant
    /// is gone: the rollback message proves it, and a tenant that is gone is
    /// reported as such rather than as `error`.
    fn roll_back_failed<E: From<TenancyError>>(
        &self,
        pooled: &mut Pooled,
        target: &Target<'_>,
        failure: Failure,
        error: E,
    ) -> E {
        let prove = match target {
            Target::Tenant(schema) if failure == Failure::Unknown => Some(*schema),
            _ => None,
        };
        let sql = match prove {
            Some(schema) => {
                format!("{}; {}", self.rollback_sql(), Registry::new(&self.inner.layout).proof(schema))
            }
            None => self.rollback_sql().to_owned(),
        };
        match (trusted(pooled, |c| c.batch_execute(&sql)), prove) {
            (Err(e), Some(schema)) if e.to_string().contains(super::checkout::NOT_A_TENANT) => {
                self.inner.roster.forget(schema);
                self.inner.counters.add(Count::NotFound);
                E::from(TenancyError::TenantNotFound { schema: schema.clone() })
            }
            (Err(_), _) => {
                retire(pooled);
                error
            }
            (Ok(()), _) => error,
        }
    }

    /// Commits, behind a transaction pooler after checking, in the same
    /// message, that nothing the statement text could not show (a function,
    /// a trigger, a rule) changed the server session: the search path is
    /// still the pool's, and the session did not get a temporary schema.
    ///
    /// A body that swallowed a failed statement and returned `Ok` left an
    /// aborted transaction, which `COMMIT` would roll back without an error:
    /// a statement before it makes the failure show.
    fn commit(
        &self,
        pooled: &mut Pooled,
        target: &Target<'_>,
        effects: Effects,
        failure: Failure,
    ) -> Result<(), TenancyError> {
        let sql = match self.inner.pooler_mode {
            PoolerMode::Session if failure == Failure::None => String::from("COMMIT"),
            PoolerMode::Session => String::from("SELECT 1; COMMIT"),
            PoolerMode::Transaction => {
                let first = match target {
                    Target::Tenant(schema) => schema.as_str(),
                    Target::Shared => self.inner.layout.shared(),
                    Target::Internal(schema) => schema,
                };
                let path_check = if effects.contains(Effects::LOCAL_SEARCH_PATH) {
                    String::from("false")
                } else {
                    format!(
                        "pg_catalog.replace(pg_catalog.current_setting('search_path'), '\"', '') <> {}",
                        crate::sql::quote_literal(&self.inner.layout.bare_path(first))
                    )
                };
                // Both checks are expressions of the session's own state: no
                // catalog query to plan on every commit.
                format!(
                    "SELECT CASE WHEN {path_check} THEN ('{SESSION_CHANGED}: search_path ' || pg_catalog.current_setting('search_path'))::int \
                     WHEN pg_catalog.pg_my_temp_schema()::text <> pg_catalog.current_setting('tenancy.temp_schema', true) \
                     THEN ('{SESSION_CHANGED}: temporary schema ' || pg_catalog.pg_my_temp_schema())::int END; \
                     DISCARD SEQUENCES; COMMIT"
                )
            }
        };
        match trusted(pooled, |c| c.batch_execute(&sql)) {
            Ok(()) => {
                if let Some(session) = session_of(pooled) {
                    session.state.scope_in_transaction = false;
                }
                Ok(())
            }
            Err(error) => {
                let refused = error.to_string().contains(SESSION_CHANGED);
                // A failed COMMIT has ended the transaction; a failed check has not.
                if trusted(pooled, |c| c.batch_execute(self.rollback_sql())).is_err() {
                    retire(pooled);
                }
                if refused {
                    Err(TenancyError::SessionStateRefused)
                } else {
                    Err(TenancyError::Database(error))
                }
            }
        }
    }
}

/// Runs `f` on `conn`, which holds a transaction of the pool's, where a
/// refused statement can unwind to; then ends the transaction.
pub(crate) fn run_open<T, E, F>(mut conn: TenantConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut TenantConnection) -> Result<T, E>,
    E: From<TenancyError>,
{
    let span = {
        let (_, pool, held) = conn.parts();
        tracing::debug_span!(target: "tenancy", "tenancy.transaction", tenant = held.target().name(pool))
    };
    let _in_span = span.enter();
    let outcome = catch_unwind(AssertUnwindSafe(|| in_body(|| f(&mut conn))));
    finish(conn, outcome)
}

/// Ends the transaction `conn` holds after its body's `outcome`: commits on
/// `Ok` (and, for a scope, on an `Err` no failed statement caused), rolls
/// back otherwise; a panic continues once the transaction is rolled back.
fn finish<T, E>(mut conn: TenantConnection, outcome: std::thread::Result<Result<T, E>>) -> Result<T, E>
where
    E: From<TenancyError>,
{
    let Some(open) = conn.open.take() else {
        // The body exchanged the whole checkout for another: the
        // transaction (somewhere else now) is rolled back when it is dropped.
        return match outcome {
            Err(panic) if !panic.is::<Refusal>() => resume_unwind(panic),
            _ => Err(E::from(TenancyError::ConnectionReplaced)),
        };
    };
    let (pooled, pool, held) = conn.parts();
    // Whatever the body did, the pool is in charge again.
    let (ours, refused, effects, failure) = match session_of(pooled) {
        Some(session) => {
            session.phase = Phase::Pool;
            let ours = session.state.id == open.id;
            (ours, session.state.refused, session.guard.seen(), session.guard.failure())
        }
        None => (false, false, Effects::NONE, Failure::None),
    };
    let target = held.target();
    match outcome {
        Err(payload) if payload.is::<Refusal>() => {
            pool.roll_back(pooled, ours);
            Err(E::from(TenancyError::SessionStateRefused))
        }
        Err(panic) => {
            pool.roll_back(pooled, ours);
            // Checked in before the panic goes on, so that the pool keeps it.
            drop(conn);
            resume_unwind(panic)
        }
        // The body exchanged its connection for another: its own (somewhere
        // else now) is rolled back when that one is checked in.
        Ok(_) if !ours => Err(E::from(TenancyError::ConnectionReplaced)),
        Ok(_) if refused => {
            pool.roll_back(pooled, ours);
            Err(E::from(TenancyError::SessionStateRefused))
        }
        Ok(Ok(value)) => match pool.commit(pooled, &target, effects, failure) {
            Ok(()) => Ok(value),
            Err(error) => Err(E::from(error)),
        },
        Ok(Err(error)) if open.ending == Ending::Scope && failure == Failure::None => {
            // What the scope did stands, as it would have in a session.
            if let Err(not_committed) = pool.commit(pooled, &target, effects, failure) {
                pool.scope_not_committed(held, &not_committed);
            }
            Err(error)
        }
        Ok(Err(error)) => Err(pool.roll_back_failed(pooled, &target, failure, error)),
    }
}
