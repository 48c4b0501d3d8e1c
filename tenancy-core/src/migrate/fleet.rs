//! Fleet runs ([`migrate_all`], and [`revert_last`](super::revert_last)): every
//! selected tenant, several at a time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::Oid;

use super::apply::{apply_pending, probe, Plan, Probe};
use super::report::{
    MigrateOptions, MigrationCounts, MigrationReport, Progress, TenantMigration, TenantOutcome,
};
use crate::error::{error_chain, TenancyError};
use crate::pool::TenantPool;
use crate::registry::{AppliedMigrations, Registry, Save, TenantState};
use crate::schema_name::SchemaName;
use crate::session::trusted;

/// Migrates every registered tenant to the latest migration of `migrations`.
///
/// Up to [`jobs`](MigrateOptions::jobs) tenants are migrated at once; one
/// tenant's failure stops no other, and its line in the report says which
/// migration failed and why. A tenant is left at its last good version when
/// a migration fails, and a rerun resumes where the last one stopped. When
/// the registry shows every tenant at the latest version, the run finishes
/// after two queries without visiting any schema.
///
/// Returns `Err` only when the run cannot start: the migrations cannot be
/// loaded, or the registry cannot be read.
///
/// Migrations run inside a transaction per tenant (which also makes this
/// work behind PgBouncer in transaction mode), so migrations marked
/// `run_in_transaction = false` are refused with
/// [`TenancyError::MigrationSource`].
///
/// ```no_run
/// use diesel_migrations::FileBasedMigrations;
/// use tenancy_core::{migrate_all, MigrateOptions, TenantPool};
///
/// let pool = TenantPool::builder().max_size(4).build("postgres://localhost/app")?;
/// // Or `embed_migrations!("migrations/tenant")`, to build them into the binary.
/// let migrations = FileBasedMigrations::from_path("migrations/tenant")?;
/// let report = migrate_all(&pool, migrations, MigrateOptions::new().jobs(4))?;
/// for (schema, error) in report.failed() {
///     eprintln!("{schema}: {error}");
/// }
/// for schema in report.missing_schemas() {
///     eprintln!("{schema}: registered, but its schema is missing");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn migrate_all<S>(
    pool: &TenantPool,
    migrations: S,
    options: MigrateOptions,
) -> Result<MigrationReport, TenancyError>
where
    S: MigrationSource<Pg> + Sync,
{
    let span = fleet_span!("tenancy.migrate_all", options);
    run(pool, &migrations, options, &Migrate, span)
}

/// The span of a whole fleet run, named `$name`; `tenants` and `visited`
/// are recorded as the run learns them.
macro_rules! fleet_span {
    ($name:literal, $options:expr) => {
        tracing::info_span!(
            target: "tenancy",
            $name,
            tenants = tracing::field::Empty,
            visited = tracing::field::Empty,
            jobs = $options.jobs
        )
    };
}
pub(super) use fleet_span;

/// What a fleet run does to each tenant.
pub(super) trait Operation: Sync {
    /// Refuses a run that cannot start with this migration source.
    fn check(&self, _plan: &Plan) -> Result<(), TenancyError> {
        Ok(())
    }

    /// Whether the registry's record alone shows there is nothing to do.
    fn done(&self, plan: &Plan, state: TenantState, applied: &AppliedMigrations) -> bool;

    /// Does it to one tenant, in one transaction; every failure becomes its outcome.
    fn visit(&self, tenant: Visit<'_>) -> TenantOutcome;
}

/// One tenant's visit, and what it runs with.
pub(super) struct Visit<'a> {
    pub(super) pool: &'a TenantPool,
    pub(super) registry: &'a Registry,
    pub(super) plan: &'a Plan,
    pub(super) schema: &'a SchemaName,
    pub(super) lock_timeout: Option<Duration>,
}

impl Visit<'_> {
    /// Runs `work` in one transaction holding the tenant's lock (with the
    /// run's `lock_timeout`, if any), once its schema is known to exist;
    /// every failure becomes the tenant's outcome.
    pub(super) fn run<F>(&self, work: F) -> TenantOutcome
    where
        F: FnOnce(&mut PgConnection, Probe) -> Result<TenantOutcome, TenancyError>,
    {
        let schema = self.schema;
        let result = self.pool.internal_transaction(schema.as_str(), |conn| -> Result<_, TenancyError> {
            if let Some(timeout) = self.lock_timeout {
                // An integer of milliseconds: nothing user-supplied is spliced.
                let sql = format!("SET LOCAL lock_timeout = {}", timeout.as_millis().max(1));
                trusted(conn, |c| c.batch_execute(&sql))?;
            }
            Registry::lock_tenant(conn, schema)?;
            let probe = probe(conn, schema)?;
            if !probe.schema_exists {
                return Ok(TenantOutcome::SchemaMissing);
            }
            work(conn, probe)
        });
        // The transaction failed as a whole (connection lost, lock timeout, ...):
        // it rolled back, so nothing was applied.
        result.unwrap_or_else(|error| TenantOutcome::Failed { applied: Vec::new(), error })
    }
}

/// [`migrate_all`]'s operation.
struct Migrate;

impl Operation for Migrate {
    fn done(&self, plan: &Plan, state: TenantState, applied: &AppliedMigrations) -> bool {
        state == TenantState::Ready && *applied == plan.target
    }

    fn visit(&self, tenant: Visit<'_>) -> TenantOutcome {
        let Visit { pool, registry, plan, schema, .. } = tenant;
        tenant.run(|conn, probe| {
            let run = apply_pending(conn, schema, plan, probe.table_exists, pool.citus().is_some())?;
            let state = if run.error.is_some() { TenantState::Failed } else { TenantState::Ready };
            let message = run.error.as_ref().map(error_chain);
            registry.save(conn, Save::IfChanged, schema, state, &run.after, message.as_deref())?;
            Ok(match run.error {
                Some(error) => TenantOutcome::Failed { applied: run.applied, error },
                None if run.applied.is_empty() => TenantOutcome::AlreadyCurrent,
                None => TenantOutcome::Applied { versions: run.applied },
            })
        })
    }
}

/// One fleet run: reads the registry, settles what it can without a visit,
/// then visits the rest (canaries first), `jobs` at a time.
pub(super) fn run<S>(
    pool: &TenantPool,
    migrations: &S,
    options: MigrateOptions,
    operation: &dyn Operation,
    fleet_span: tracing::Span,
) -> Result<MigrationReport, TenancyError>
where
    S: MigrationSource<Pg> + Sync,
{
    let _in_span = fleet_span.enter();
    let plan = Plan::load(migrations)?;
    operation.check(&plan)?;
    let registry = Registry::new(&pool.inner.layout);
    let mut fleet = read_fleet(pool, &registry)?;
    let not_registered: Vec<SchemaName> = match &options.only {
        Some(only) => {
            let registered: HashSet<&SchemaName> = fleet.tenants.iter().map(|t| &t.schema).collect();
            only.iter().filter(|s| !registered.contains(s) && !options.except.contains(*s)).cloned().collect()
        }
        None => Vec::new(),
    };
    fleet.tenants.retain(|t| options.selects(&t.schema));
    fleet_span.record("tenants", fleet.tenants.len());

    let mut counts = MigrationCounts { total: fleet.tenants.len(), ..MigrationCounts::default() };
    let mut progress = options.progress.map(|h| h.0);
    let mut settled = Vec::with_capacity(fleet.tenants.len());
    let mut to_visit = Vec::new();
    for tenant in fleet.tenants {
        let done = operation.done(&plan, tenant.state, &tenant.applied);
        if !tenant.schema_exists {
            settled.push(TenantMigration { schema: tenant.schema, outcome: TenantOutcome::SchemaMissing });
        } else if !options.verify_schemas && done {
            settled.push(TenantMigration { schema: tenant.schema, outcome: TenantOutcome::AlreadyCurrent });
        } else if options.dry_run {
            settled.push(TenantMigration { schema: tenant.schema, outcome: TenantOutcome::Pending });
        } else {
            to_visit.push(tenant.schema);
        }
    }
    for line in &settled {
        counts.add(&line.outcome);
        if let Some(callback) = progress.as_mut() {
            callback(&Progress { schema: &line.schema, outcome: &line.outcome, counts });
        }
    }

    let tracker = Mutex::new((counts, progress));
    let finish = |schema: SchemaName, outcome: TenantOutcome| {
        // A callback that panicked poisons the lock; later tenants still count.
        let mut guard = tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (counts, progress) = &mut *guard;
        counts.add(&outcome);
        if let Some(callback) = progress.as_mut() {
            callback(&Progress { schema: &schema, outcome: &outcome, counts: *counts });
        }
        TenantMigration { schema, outcome }
    };
    let visit = |plan: &Plan, schema: SchemaName| {
        let span = tracing::debug_span!(target: "tenancy", parent: &fleet_span, "tenancy.migrate", tenant = schema.as_str());
        let outcome = span.in_scope(|| {
            operation.visit(Visit {
                pool,
                registry: &registry,
                plan,
                schema: &schema,
                lock_timeout: options.lock_timeout,
            })
        });
        finish(schema, outcome)
    };

    let mut lines = settled;
    let canaries = options.canary.min(to_visit.len());
    let rest = to_visit.split_off(canaries);
    let mut canary_failed = false;
    let mut visited_count = 0;
    for (batch, is_canary) in [(to_visit, true), (rest, false)] {
        if batch.is_empty() {
            continue;
        }
        if canary_failed {
            lines.extend(batch.into_iter().map(|schema| finish(schema, TenantOutcome::Skipped)));
            continue;
        }
        visited_count += batch.len();
        let done = visit_all(&plan, migrations, batch, options.jobs, &visit, &finish);
        canary_failed = is_canary && done.iter().any(|t| t.outcome.is_failed());
        lines.extend(done);
    }
    fleet_span.record("visited", visited_count);
    lines.sort_by(|a, b| a.schema.cmp(&b.schema));
    let (counts, _) = tracker.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(MigrationReport {
        tenants: lines,
        unregistered_schemas: fleet.unregistered,
        invalid_registry_rows: fleet.invalid,
        not_registered,
        canary_failed,
        latest_version: plan.target.latest.clone(),
        visited: visited_count,
        counts,
    })
}

/// Visits `queue`, `jobs` tenants at a time.
fn visit_all<S, V, F>(
    plan: &Plan,
    migrations: &S,
    queue: Vec<SchemaName>,
    jobs: usize,
    visit: &V,
    finish: &F,
) -> Vec<TenantMigration>
where
    S: MigrationSource<Pg> + Sync,
    V: Fn(&Plan, SchemaName) -> TenantMigration + Sync,
    F: Fn(SchemaName, TenantOutcome) -> TenantMigration + Sync,
{
    let jobs = jobs.min(queue.len()).max(1);
    if jobs == 1 {
        return queue.into_iter().map(|schema| visit(plan, schema)).collect();
    }
    let next = AtomicUsize::new(0);
    let queue = &queue;
    // The caller's subscriber, for the workers' spans too.
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let _subscriber = tracing::dispatcher::set_default(&dispatch);
                    // A migration (a boxed trait object) is not `Send`:
                    // each worker loads its own copy from the source.
                    let mut own_plan: Option<Result<Plan, String>> = None;
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(schema) = queue.get(i) else { break };
                        let plan =
                            own_plan.get_or_insert_with(|| Plan::load(migrations).map_err(|e| e.to_string()));
                        done.push(match plan {
                            Ok(plan) => visit(plan, schema.clone()),
                            Err(message) => finish(
                                schema.clone(),
                                TenantOutcome::Failed {
                                    applied: Vec::new(),
                                    error: TenancyError::MigrationSource { source: message.clone().into() },
                                },
                            ),
                        });
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join()).collect::<Vec<_>>()
    });
    let mut lines = Vec::new();
    for result in results {
        match result {
            Ok(done) => lines.extend(done),
            // Only the user's progress callback can panic here; let it continue.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    lines
}

/// The registry as one run sees it.
struct Fleet {
    tenants: Vec<FleetTenant>,
    unregistered: Vec<String>,
    invalid: Vec<(String, String)>,
}

struct FleetTenant {
    schema: SchemaName,
    state: TenantState,
    applied: AppliedMigrations,
    schema_exists: bool,
}

/// Reads every registry row, every schema name, and the schemas holding a
/// `__diesel_schema_migrations`, in one transaction, and matches them here.
///
/// Three single-table scans, matched with hash sets: linear in the size of
/// the fleet whatever the planner's statistics say (right after thousands of
/// schemas are created, stale catalog statistics can turn a join between the
/// registry and `pg_namespace` into a nested loop over both).
fn read_fleet(pool: &TenantPool, registry: &Registry) -> Result<Fleet, TenancyError> {
    #[derive(QueryableByName)]
    struct Namespace {
        #[diesel(sql_type = Oid)]
        oid: u32,
        #[diesel(sql_type = diesel::sql_types::Text)]
        nspname: String,
    }
    #[derive(QueryableByName)]
    struct Holder {
        #[diesel(sql_type = Oid)]
        relnamespace: u32,
    }
    let (rows, namespaces, holders) =
        pool.internal_transaction(pool.registry_schema(), |conn| -> Result<_, TenancyError> {
            registry.ensure(conn)?;
            let rows = registry.rows(conn)?;
            let (namespaces, holders) = trusted(conn, |conn| -> QueryResult<_> {
                let namespaces: Vec<Namespace> =
                    diesel::sql_query("SELECT oid, nspname::text AS nspname FROM pg_catalog.pg_namespace")
                        .load(conn)?;
                let holders: Vec<Holder> = diesel::sql_query(
                    "SELECT relnamespace FROM pg_catalog.pg_class \
                     WHERE relname = '__diesel_schema_migrations' AND relkind IN ('r', 'p')",
                )
                .load(conn)?;
                Ok((namespaces, holders))
            })?;
            Ok((rows, namespaces, holders))
        })?;

    let names: HashMap<u32, &str> = namespaces.iter().map(|n| (n.oid, n.nspname.as_str())).collect();
    let registered: HashSet<&str> = rows.iter().map(|r| r.schema_name.as_str()).collect();
    let not_tenants = [pool.shared_schema(), pool.registry_schema(), "public", "information_schema"];
    let mut unregistered: Vec<String> = holders
        .iter()
        .filter_map(|h| names.get(&h.relnamespace).copied())
        .filter(|name| !registered.contains(name) && !not_tenants.contains(name) && !name.starts_with("pg_"))
        .map(str::to_owned)
        .collect();
    unregistered.sort();
    unregistered.dedup();

    let mut fleet = Fleet { tenants: Vec::with_capacity(rows.len()), unregistered, invalid: Vec::new() };
    for row in &rows {
        let parsed = SchemaName::new(&row.schema_name)
            .map_err(|reason| TenancyError::invalid_name(&row.schema_name, reason))
            .and_then(|schema| Ok((schema, row.stored_state()?)));
        match parsed {
            // Leaving the fleet: nothing to migrate.
            Ok((_, TenantState::Dropping)) => {}
            Ok((schema, state)) => fleet.tenants.push(FleetTenant {
                schema,
                state,
                applied: row.applied(),
                schema_exists: row.schema_exists,
            }),
            Err(e) => fleet.invalid.push((row.schema_name.clone(), e.to_string())),
        }
    }
    Ok(fleet)
}
