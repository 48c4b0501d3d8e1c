//! The one checkout engine every entry point goes through (session
//! checkouts, tenant and shared transactions, the crate's own provisioning
//! and migration work): pick a connection, bring it to the wanted scope in
//! at most one message, retry past dead connections. What happens when it
//! comes back is in `check_in`.

use std::time::Instant;

use diesel::connection::{AnsiTransactionManager, SimpleConnection};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Bool, Text};

use super::manager::{retire, Pooled};
use super::stats::Count;
use super::{PoolerMode, TenantPool};
use crate::error::TenancyError;
use crate::guard::Failure;
use crate::registry::Registry;
use crate::schema_name::SchemaName;
use crate::session::{session_of, trusted, Phase, Scope};
use crate::sql::{quote_ident, quote_literal};

/// What a checkout is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Tenant(&'a SchemaName),
    Shared,
    /// The crate's own work in a schema that may not exist yet: scoped with
    /// `SET LOCAL`, never proven, never remembered as the session's scope.
    Internal(&'a str),
}

impl Target<'_> {
    fn matches(&self, scope: &Scope) -> bool {
        match (self, scope) {
            (Target::Tenant(wanted), Scope::Tenant(current)) => *wanted == current,
            (Target::Shared, Scope::Shared) => true,
            _ => false,
        }
    }

    fn first_schema(&self, pool: &TenantPool) -> String {
        self.name(pool).to_owned()
    }

    /// The schema the target is scoped to.
    pub(crate) fn name<'p>(&'p self, pool: &'p TenantPool) -> &'p str {
        match self {
            Target::Tenant(schema) => schema.as_str(),
            Target::Shared => pool.inner.layout.shared(),
            Target::Internal(schema) => schema,
        }
    }
}

/// How the connection is handed out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose<'a> {
    /// As a session, scoped with `SET search_path`.
    Session,
    /// Inside a transaction opened with `begin` (`BEGIN` and its options).
    Transaction { begin: &'a str },
}

/// Why bringing a connection to its scope failed.
enum PrepareError {
    /// The server connection is gone; try another.
    Lost(DieselError),
    NotATenant,
    SharedMissing,
    Other(DieselError),
}

/// Remembers, for the transaction, the server session's temporary schema
/// (`0` for none) as it was when the transaction began.
const TEMP_SCHEMA_BASELINE: &str =
    "SELECT pg_catalog.set_config('tenancy.temp_schema', pg_catalog.pg_my_temp_schema()::text, true)";

/// The message a tenant proof raises when the tenant is not ready: its text
/// survives any `lc_messages` inside the error message.
pub(crate) const NOT_A_TENANT: &str = "tenancy: not a tenant";

impl TenantPool {
    /// Checks out a connection for `target`, ready for `purpose`.
    pub(crate) fn acquire(&self, target: Target<'_>, purpose: Purpose<'_>) -> Result<Pooled, TenancyError> {
        if let Target::Tenant(schema) = target {
            if let Some(role) = self.inner.layout.role_of(schema.as_str()) {
                return Err(TenancyError::ReservedSchema { schema: schema.clone(), role });
            }
        }
        let started = Instant::now();
        let internal = matches!(target, Target::Internal(_));
        // Whether this checkout is the affinity tuner's to count and time.
        let tuned = !internal && self.inner.pooler_mode == PoolerMode::Session;
        let affinity = tuned && self.inner.tuner.on();
        let span = if internal {
            tracing::Span::none()
        } else {
            tracing::debug_span!(target: "tenancy", "tenancy.checkout", tenant = target.name(self), switched = tracing::field::Empty)
        };
        let _in_span = span.enter();
        self.inner.roster.poll();
        let attempts = self.inner.pool.max_size() + 1;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.pick(&target, affinity)?;
            match self.prepare(&mut conn, &target, &purpose) {
                Ok(count) => {
                    if let (Some(session), Purpose::Session) = (session_of(&mut conn), purpose) {
                        session.phase = Phase::Borrowed;
                    }
                    if !internal {
                        self.inner.counters.add(count);
                        span.record("switched", matches!(count, Count::Switch));
                    }
                    if tuned {
                        self.inner.tuner.checked_out();
                        if let Some(session) = session_of(&mut conn) {
                            session.state.borrowed = Some((started, affinity));
                        }
                    }
                    return Ok(conn);
                }
                Err(PrepareError::Lost(e)) => {
                    retire(&mut conn);
                    if attempt >= attempts {
                        return Err(e.into());
                    }
                }
                Err(PrepareError::NotATenant) => {
                    return Err(match target {
                        Target::Tenant(schema) => {
                            // Whatever made it stop being a tenant, no connection serves it any more.
                            self.inner.roster.forget(schema);
                            self.inner.counters.add(Count::NotFound);
                            tracing::debug!(target: "tenancy", tenant = schema.as_str(), "not a registered tenant");
                            TenancyError::TenantNotFound { schema: schema.clone() }
                        }
                        _ => TenancyError::SharedSchemaMissing {
                            schema: self.inner.layout.shared().to_owned(),
                        },
                    });
                }
                Err(PrepareError::SharedMissing) => {
                    return Err(TenancyError::SharedSchemaMissing {
                        schema: self.inner.layout.shared().to_owned(),
                    })
                }
                Err(PrepareError::Other(e)) => {
                    retire(&mut conn);
                    return Err(e.into());
                }
            }
        }
    }

    fn wait_for_connection(&self) -> Result<Pooled, TenancyError> {
        let started = Instant::now();
        let got = self.inner.pool.get();
        self.inner.counters.waited(started.elapsed(), got.is_err());
        got.map_err(|e| {
            let message = e.to_string();
            let last_error = message
                .strip_prefix("timed out waiting for connection")
                .map(|rest| rest.trim_start_matches(':').trim())
                .filter(|rest| !rest.is_empty())
                .map(str::to_owned);
            TenancyError::PoolTimeout { timeout: self.inner.connection_timeout, last_error }
        })
    }

    /// The connection r2d2 hands out if it already serves `target`, else
    /// (with `affinity`) an idle one that does, else the idle connection
    /// whose tenant was asked for least lately, the most recently used among
    /// equals: hot tenants keep their connections, cold ones share the one
    /// switched last, whose backend stays warm. (With home slots, a setting
    /// for the benchmarks, the idle one of the tenant's two home slots used
    /// least recently, else the idle connection used least recently.)
    /// Connections looked at and not taken go back at once, in their order.
    fn pick(&self, target: &Target<'_>, affinity: bool) -> Result<Pooled, TenancyError> {
        let mut first = self.wait_for_connection()?;
        let looks = affinity && !matches!(target, Target::Internal(_));
        if let (true, Target::Tenant(schema)) = (looks, target) {
            // Only while looking: the counts are a lock every thread takes.
            // Counts from before a spell without affinity rank the same hot
            // tenants, and halve away as new ones come in.
            self.inner.heat.touch(schema);
        }
        if !looks || serves(&mut first, target) {
            return Ok(first);
        }
        let mut idle = vec![first];
        while let Some(mut conn) = self.inner.pool.try_get() {
            if serves(&mut conn, target) {
                give_back(idle);
                return Ok(conn);
            }
            idle.push(conn);
        }
        let chosen = if self.inner.eviction.load(std::sync::atomic::Ordering::Relaxed) == 1 {
            let homes = home_slots(target.name(self), self.inner.slots.count());
            (0..idle.len())
                .map(|i| {
                    let home = slot_of(&mut idle[i]).is_some_and(|s| homes.contains(&s));
                    (!home, last_used(&mut idle[i]), i)
                })
                .min()
                .map_or(0, |(_, _, i)| i)
        } else {
            // The tenant asked for least lately; among equals the most
            // recently used (`idle` is in r2d2's most-recent-first order). A
            // second idle connection serving the same tenant counts as cold:
            // a hot tenant asked for by several threads at once would
            // otherwise keep every connection it ever took, and leave the
            // rest of the traffic too few.
            let mut seen: Vec<SchemaName> = Vec::with_capacity(idle.len());
            (0..idle.len())
                .map(|i| {
                    let heat = session_of(&mut idle[i]).map_or(0, |s| match &s.state.scope {
                        Scope::Tenant(schema) if seen.contains(schema) => 0,
                        Scope::Tenant(schema) => {
                            seen.push(schema.clone());
                            self.inner.heat.of(schema)
                        }
                        _ => 0,
                    });
                    (heat, i)
                })
                .min()
                .map_or(0, |(_, i)| i)
        };
        let conn = idle.remove(chosen);
        give_back(idle);
        Ok(conn)
    }

    /// Brings `conn` to `target` for `purpose` in at most one message: a
    /// sequence reset owed by the last borrower, the tenant's proof (unless
    /// recently proven), the scope, and `BEGIN`. Says how it went, to count.
    fn prepare(
        &self,
        conn: &mut Pooled,
        target: &Target<'_>,
        purpose: &Purpose<'_>,
    ) -> Result<Count, PrepareError> {
        let inner = &self.inner;
        let pooler = inner.pooler_mode == PoolerMode::Transaction;
        let epoch = inner.roster.epoch();
        let now = Instant::now();
        let Some(session) = session_of(conn) else {
            return Err(PrepareError::Lost(DieselError::BrokenTransactionManager));
        };
        let state = &mut session.state;
        let on_target = !pooler && target.matches(&state.scope);
        let fresh = on_target && state.epoch == epoch && state.proven_at.elapsed() < inner.roster.ttl();
        let proven_at = match target {
            _ if fresh => Some(state.proven_at),
            Target::Tenant(schema) => inner.roster.proven(schema),
            Target::Shared if inner.roster.shared_proven() => Some(now),
            Target::Shared => None,
            Target::Internal(_) => Some(now),
        };
        let switching = !on_target && !matches!(target, Target::Internal(_));
        let count = match () {
            _ if pooler => Count::Scoped,
            _ if switching => Count::Switch,
            _ => Count::Hit,
        };
        // Built only for a message that needs it: a hit allocates nothing.
        let path = || inner.layout.search_path(&target.first_schema(self));

        let mut sql = String::new();
        let mut push = |part: &str| {
            if !sql.is_empty() {
                sql.push_str("; ");
            }
            sql.push_str(part);
        };
        // `BEGIN` first: statements before it in the message would join its
        // transaction anyway, and its options must come before any query.
        if let Purpose::Transaction { begin } = purpose {
            push(begin);
        }
        if proven_at.is_none() {
            push(&self.proof(target));
        }
        match (pooler, purpose) {
            (false, _) => {
                if state.sequences {
                    push("DISCARD SEQUENCES");
                }
                if switching {
                    push(&format!("SET search_path TO {}", path()));
                }
                if matches!((purpose, target), (Purpose::Transaction { .. }, Target::Internal(_))) {
                    push(&format!("SET LOCAL search_path TO {}", path()));
                }
            }
            (true, Purpose::Transaction { .. }) => {
                push("DISCARD SEQUENCES");
                push(&format!("SET LOCAL search_path TO {}", path()));
                // What the COMMIT check compares with: whether the server
                // session had a temporary schema before this transaction.
                push(TEMP_SCHEMA_BASELINE);
            }
            // Refused by the callers.
            (true, Purpose::Session) => return Err(PrepareError::Other(DieselError::NotInTransaction)),
        }
        if sql.is_empty() {
            if !fresh && on_target {
                if let Some(at) = proven_at {
                    state.epoch = epoch;
                    state.proven_at = at;
                }
            }
            return Ok(count);
        }
        if !pooler && switching {
            // Rolled forward below once the message succeeds.
            state.scope = Scope::Unknown;
        }
        let sent = trusted(conn, |c| match purpose {
            Purpose::Session => c.batch_execute(&sql),
            Purpose::Transaction { .. } => AnsiTransactionManager::begin_transaction_sql(c, &sql),
        });
        match sent {
            Ok(()) => {
                let Some(session) = session_of(conn) else { return Ok(count) };
                let state = &mut session.state;
                state.sequences = false;
                if !pooler && switching {
                    state.scope = match target {
                        Target::Tenant(schema) => Scope::Tenant((*schema).clone()),
                        _ => Scope::Shared,
                    };
                    state.scope_in_transaction = matches!(purpose, Purpose::Transaction { .. });
                }
                if switching || proven_at.is_none() {
                    state.epoch = epoch;
                    state.proven_at = proven_at.unwrap_or(now);
                }
                if let (Target::Tenant(schema), Some(served)) = (target, state.served.as_mut()) {
                    served.insert((*schema).clone());
                }
                match target {
                    Target::Tenant(schema) if proven_at.is_none() => inner.roster.record(schema, now),
                    Target::Shared => inner.roster.record_shared(),
                    _ => {}
                }
                if switching {
                    tracing::debug!(target: "tenancy", tenant = target.name(self), "switched the connection's search path");
                }
                Ok(count)
            }
            Err(error) => Err(self.diagnose(conn, target, purpose, error)),
        }
    }

    /// The statement that proves `target` (raising an error when it does
    /// not hold): a registered tenant whose schema exists, or the shared schema.
    fn proof(&self, target: &Target<'_>) -> String {
        match target {
            Target::Tenant(schema) => Registry::new(&self.inner.layout).proof(schema),
            _ => format!("SELECT {}::regnamespace", quote_literal(&quote_ident(self.inner.layout.shared()))),
        }
    }

    /// Why the message failed, asking the server when the error does not say.
    fn diagnose(
        &self,
        conn: &mut Pooled,
        target: &Target<'_>,
        purpose: &Purpose<'_>,
        error: DieselError,
    ) -> PrepareError {
        if let Some(session) = session_of(conn) {
            session.state.scope = Scope::Unknown;
        }
        if Failure::of(&error) == Failure::Lost {
            return PrepareError::Lost(error);
        }
        // A message with BEGIN may have left an aborted transaction open.
        if matches!(purpose, Purpose::Transaction { .. }) {
            if let Err(e) = trusted(conn, |c| c.batch_execute("ROLLBACK")) {
                return PrepareError::Lost(e);
            }
        }
        if error.to_string().contains(NOT_A_TENANT) {
            return PrepareError::NotATenant;
        }
        #[derive(QueryableByName)]
        struct Present {
            #[diesel(sql_type = Bool)]
            registry: bool,
            #[diesel(sql_type = Bool)]
            schema: bool,
        }
        let registry = Registry::new(&self.inner.layout);
        let present: QueryResult<Vec<Present>> = trusted(conn, |c| {
            diesel::sql_query(
                "SELECT to_regclass($1) IS NOT NULL AS registry, to_regnamespace($2) IS NOT NULL AS schema",
            )
            .bind::<Text, _>(registry.table())
            .bind::<Text, _>(quote_ident(&target.first_schema(self)))
            .load(c)
        });
        match (target, present.as_deref()) {
            (_, Err(_)) => PrepareError::Other(error),
            (Target::Tenant(_), Ok([p])) if !p.registry || !p.schema => PrepareError::NotATenant,
            (Target::Shared, Ok([p])) if !p.schema => PrepareError::SharedMissing,
            _ => PrepareError::Other(error),
        }
    }
}

fn serves(conn: &mut Pooled, target: &Target<'_>) -> bool {
    session_of(conn).is_some_and(|s| target.matches(&s.state.scope))
}

fn last_used(conn: &mut Pooled) -> Instant {
    session_of(conn).map_or_else(Instant::now, |s| s.state.last_used)
}

fn slot_of(conn: &mut Pooled) -> Option<usize> {
    session_of(conn).and_then(|s| s.state.slot.as_ref().map(|slot| slot.index))
}

/// The two slots (one when there is a single slot) a tenant's switches go
/// to first: drawn from a hash of its schema name, the same in every process.
pub(crate) fn home_slots(schema: &str, slots: usize) -> [usize; 2] {
    // FNV-1a: stable across builds and processes, unlike `DefaultHasher`.
    let hash = schema
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let n = slots.max(1) as u64;
    let first = hash % n;
    let second = if n == 1 { first } else { (first + 1 + (hash >> 32) % (n - 1)) % n };
    [first as usize, second as usize]
}

/// Returns connections looked at and not taken, least recent first, so that
/// r2d2's idle list keeps its most-recently-used order.
pub(crate) fn give_back(mut idle: Vec<Pooled>) {
    while let Some(conn) = idle.pop() {
        drop(conn);
    }
}
