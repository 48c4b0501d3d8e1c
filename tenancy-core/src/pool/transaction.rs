//! Running a closure in a tenant (or shared, or internal) transaction:
//! commit on `Ok`, roll back on `Err`, on a panic and on a refused
//! statement, and never commit on a connection other than the one the
//! transaction began on.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use diesel::connection::SimpleConnection;
use diesel::PgConnection;

use super::checkout::{retire, Pooled, Purpose, Target};
use super::connection::TenantConnection;
use super::{PoolerMode, TenantPool};
use crate::error::TenancyError;
use crate::guard::{Effects, Failure};
use crate::registry::Registry;
use crate::session::{in_body, session_of, trusted, Phase, Refusal};

/// The text the pre-commit check raises behind a transaction pooler.
const SESSION_CHANGED: &str = "tenancy: session state changed";

impl TenantPool {
    /// Runs `f` in a transaction opened with `begin` on a connection for `target`.
    pub(crate) fn run_transaction<T, E, F>(&self, target: Target<'_>, begin: &str, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        let pooled = self.acquire(target, Purpose::Transaction { begin })?;
        let mut conn = TenantConnection::new(pooled, self, target);
        let pooler = self.inner.pooler_mode == PoolerMode::Transaction;
        let id = {
            let pooled = conn.pooled_mut();
            let Some(session) = session_of(pooled) else {
                return Err(E::from(TenancyError::ConnectionReplaced));
            };
            session.phase = Phase::Body { pooler };
            session.state.id
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| in_body(|| f(&mut conn))));
        let pooled = conn.pooled_mut();
        // Whatever the body did, the pool is in charge again.
        let (ours, refused, effects, failure) = match session_of(pooled) {
            Some(session) => {
                session.phase = Phase::Pool;
                let ours = session.state.id == id;
                (ours, session.state.refused, session.guard.seen(), session.guard.failure())
            }
            None => (false, false, Effects::NONE, Failure::None),
        };
        match outcome {
            Err(payload) if payload.is::<Refusal>() => {
                self.roll_back(pooled, ours);
                Err(E::from(TenancyError::SessionStateRefused))
            }
            Err(panic) => {
                self.roll_back(pooled, ours);
                drop(conn);
                resume_unwind(panic)
            }
            Ok(_) if !ours => {
                // The body exchanged its connection for another: its own
                // (somewhere else now) is rolled back when that one is checked in.
                Err(E::from(TenancyError::ConnectionReplaced))
            }
            Ok(_) if refused => {
                self.roll_back(pooled, ours);
                Err(E::from(TenancyError::SessionStateRefused))
            }
            Ok(Ok(value)) => match self.commit(pooled, &target, effects, failure) {
                Ok(()) => {
                    if let Some(session) = session_of(pooled) {
                        session.state.scope_in_transaction = false;
                    }
                    Ok(value)
                }
                Err(error) => Err(E::from(error)),
            },
            Ok(Err(error)) => {
                // A statement failed in a way that may mean the tenant is
                // gone: the rollback message proves it, and a tenant that is
                // gone is reported as such rather than as the body's error.
                let prove = match target {
                    Target::Tenant(schema) if failure == Failure::Unknown => Some(schema),
                    _ => None,
                };
                let sql = match prove {
                    Some(schema) => format!(
                        "{}; {}",
                        self.rollback_sql(),
                        Registry::new(&self.inner.layout).proof(schema)
                    ),
                    None => self.rollback_sql().to_owned(),
                };
                match trusted(pooled, |c| c.batch_execute(&sql)) {
                    Err(e) if prove.is_some() && e.to_string().contains(super::checkout::NOT_A_TENANT) => {
                        if let Some(schema) = prove {
                            self.inner.roster.forget(schema);
                            return Err(E::from(TenancyError::TenantNotFound { schema: schema.clone() }));
                        }
                        Err(error)
                    }
                    Err(_) => {
                        retire(pooled);
                        Err(error)
                    }
                    Ok(()) => Err(error),
                }
            }
        }
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
            Ok(()) => Ok(()),
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
