//! [`migrate_all`]: every registered tenant, several at a time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::Oid;

use super::apply::{apply_pending, probe, Plan};
use super::report::{
    MigrateOptions, MigrationCounts, MigrationReport, Progress, TenantMigration, TenantOutcome,
};
use crate::error::TenancyError;
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
    let fleet_span = tracing::info_span!(
        target: "tenancy",
        "tenancy.migrate_all",
        tenants = tracing::field::Empty,
        visited = tracing::field::Empty,
        jobs = options.jobs
    );
    let _in_span = fleet_span.enter();
    let plan = Plan::load(&migrations)?;
    let registry = Registry::new(&pool.inner.layout);
    let fleet = read_fleet(pool, &registry)?;
    fleet_span.record("tenants", fleet.tenants.len());

    let mut counts = MigrationCounts { total: fleet.tenants.len(), ..MigrationCounts::default() };
    let mut progress = options.progress.map(|h| h.0);
    let mut settled = Vec::with_capacity(fleet.tenants.len());
    let mut to_visit = Vec::new();
    for tenant in fleet.tenants {
        if !tenant.schema_exists {
            settled.push(TenantMigration { schema: tenant.schema, outcome: TenantOutcome::SchemaMissing });
        } else if !options.verify_schemas
            && tenant.state == TenantState::Ready
            && tenant.applied == plan.target
        {
            settled.push(TenantMigration { schema: tenant.schema, outcome: TenantOutcome::AlreadyCurrent });
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

    let visited = to_visit.len();
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
        let outcome = span.in_scope(|| migrate_tenant(pool, &registry, plan, &schema, options.lock_timeout));
        finish(schema, outcome)
    };
    fleet_span.record("visited", to_visit.len());

    let jobs = options.jobs.min(visited).max(1);
    let mut lines = settled;
    if jobs == 1 {
        lines.extend(to_visit.into_iter().map(|schema| visit(&plan, schema)));
    } else {
        let next = AtomicUsize::new(0);
        let queue = &to_visit;
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
                            let plan = own_plan
                                .get_or_insert_with(|| Plan::load(&migrations).map_err(|e| e.to_string()));
                            done.push(match plan {
                                Ok(plan) => visit(plan, schema.clone()),
                                Err(message) => finish(
                                    schema.clone(),
                                    TenantOutcome::Failed {
                                        applied: Vec::new(),
                                        error: TenancyError::MigrationSource {
                                            source: message.clone().into(),
                                        },
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
        for result in results {
            match result {
                Ok(done) => lines.extend(done),
                // Only the user's progress callback can panic here; let it continue.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    }
    lines.sort_by(|a, b| a.schema.cmp(&b.schema));
    let (counts, _) = tracker.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(MigrationReport {
        tenants: lines,
        unregistered_schemas: fleet.unregistered,
        invalid_registry_rows: fleet.invalid,
        latest_version: plan.target.latest.clone(),
        visited,
        counts,
    })
}

/// Migrates one tenant in one transaction; every failure becomes its outcome.
fn migrate_tenant(
    pool: &TenantPool,
    registry: &Registry,
    plan: &Plan,
    schema: &SchemaName,
    lock_timeout: Option<Duration>,
) -> TenantOutcome {
    let result = pool.internal_transaction(schema.as_str(), |conn| -> Result<_, TenancyError> {
        if let Some(timeout) = lock_timeout {
            // An integer of milliseconds: nothing user-supplied is spliced.
            let sql = format!("SET LOCAL lock_timeout = {}", timeout.as_millis().max(1));
            trusted(conn, |c| c.batch_execute(&sql))?;
        }
        Registry::lock_tenant(conn, schema)?;
        let probe = probe(conn, schema)?;
        if !probe.schema_exists {
            return Ok(TenantOutcome::SchemaMissing);
        }
        let run = apply_pending(conn, schema, plan, probe.table_exists, pool.citus().is_some())?;
        let state = if run.error.is_some() { TenantState::Failed } else { TenantState::Ready };
        let message = run.error.as_ref().map(ToString::to_string);
        registry.save(conn, Save::IfChanged, schema, state, &run.after, message.as_deref())?;
        Ok(match run.error {
            Some(error) => TenantOutcome::Failed { applied: run.applied, error },
            None if run.applied.is_empty() => TenantOutcome::AlreadyCurrent,
            None => TenantOutcome::Applied { versions: run.applied },
        })
    });
    // The transaction failed as a whole (connection lost, lock timeout, ...):
    // it rolled back, so nothing was applied.
    result.unwrap_or_else(|error| TenantOutcome::Failed { applied: Vec::new(), error })
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
