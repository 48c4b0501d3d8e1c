//! Fleet-wide migrations: [`migrate_all`] brings every registered tenant up
//! to date with one diesel `MigrationSource`, several tenants at a time.
//!
//! Each tenant is migrated in one transaction whose search path is that
//! tenant alone (followed by any extension schemas), holding the tenant's
//! advisory lock, so `migrate_all` and [`provision`](crate::provision) never
//! work on one tenant at once, and two deploys running `migrate_all` together
//! apply every migration once. Inside it, every migration runs in its own
//! savepoint: a failing migration is undone, the ones before it stay, and
//! the tenant is left at its last good version, marked
//! [`Failed`](crate::TenantState::Failed) in the registry with the error.
//! The next run resumes there.
//!
//! The registry records each tenant's greatest applied version and the number
//! of versions applied. Tenants whose record matches the migration source
//! (and is [`Ready`](crate::TenantState::Ready)) are current without being
//! visited, so a run with nothing to do costs two queries, whatever the size
//! of the fleet.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::migration::{Migration, MigrationConnection, MigrationSource};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Nullable, Oid, Text};

use crate::error::TenancyError;
use crate::pool::TenantPool;
use crate::registry::{parse_state, registered_name, AppliedMigrations, Registry, TenantState};
use crate::schema_name::SchemaName;

/// Settings of one [`migrate_all`] run. Every setting has a default.
///
/// ```
/// use std::time::Duration;
/// use tenancy_core::MigrateOptions;
///
/// let options = MigrateOptions::new()
///     .jobs(4)
///     .lock_timeout(Some(Duration::from_secs(5)))
///     .on_progress(|p| eprintln!("{}/{} {}: {}", p.counts.done(), p.counts.total, p.schema, p.outcome));
/// ```
#[must_use = "options do nothing until passed to migrate_all"]
pub struct MigrateOptions {
    jobs: usize,
    verify_schemas: bool,
    lock_timeout: Option<Duration>,
    progress: Option<ProgressCallback>,
}

/// The boxed form of a callback given to [`MigrateOptions::on_progress`].
type ProgressCallback = Box<dyn FnMut(&Progress<'_>) + Send>;

impl Default for MigrateOptions {
    fn default() -> Self {
        Self { jobs: 1, verify_schemas: false, lock_timeout: None, progress: None }
    }
}

impl fmt::Debug for MigrateOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrateOptions")
            .field("jobs", &self.jobs)
            .field("verify_schemas", &self.verify_schemas)
            .field("lock_timeout", &self.lock_timeout)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl MigrateOptions {
    /// The defaults: one tenant at a time, trust the registry, no lock
    /// timeout, no progress callback.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many tenants are migrated at once, each on its own thread and
    /// pooled connection. Default: 1. Values above the pool's `max_size`
    /// only make threads wait for connections.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Visit every tenant's schema and compare its own
    /// `__diesel_schema_migrations` with the migration source, instead of
    /// trusting the registry for tenants it records as current. Default:
    /// `false`. Turn it on after migrating or reverting tenants by hand
    /// (for example with the diesel CLI).
    pub fn verify_schemas(mut self, verify: bool) -> Self {
        self.verify_schemas = verify;
        self
    }

    /// How long a tenant's migration waits for a lock (on the tenant's
    /// tables, or on the tenant while another process provisions or
    /// migrates it) before that tenant fails with a lock timeout, instead of
    /// queueing behind application traffic. Default: `None` (wait).
    pub fn lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Called once per tenant as it is done, including tenants found current
    /// from the registry, so `counts.done()` reaches `counts.total`. Calls
    /// never overlap, even with several jobs; keep the callback quick, as
    /// the other jobs wait for it.
    pub fn on_progress<F>(mut self, callback: F) -> Self
    where
        F: FnMut(&Progress<'_>) + Send + 'static,
    {
        self.progress = Some(Box::new(callback));
        self
    }
}

/// What happened to one tenant in a [`migrate_all`] run.
#[derive(Debug)]
#[non_exhaustive]
pub enum TenantOutcome {
    /// These migration versions were applied, in this order.
    Applied {
        /// The versions applied by this run.
        versions: Vec<String>,
    },
    /// Nothing was pending.
    AlreadyCurrent,
    /// A migration failed. The tenant is at its last good version: the
    /// versions in `applied` (those before the failing one) were kept, the
    /// failing migration was undone, and later ones were not tried.
    Failed {
        /// The versions this run applied before the failure.
        applied: Vec<String>,
        /// Why it failed.
        error: TenancyError,
    },
    /// The tenant is registered but its schema does not exist (dropped by
    /// hand?). Nothing was done; provision it again, or drop it with
    /// [`drop_tenant`](crate::drop_tenant) to remove the registry row.
    SchemaMissing,
}

impl TenantOutcome {
    /// `true` for [`TenantOutcome::Failed`].
    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

impl fmt::Display for TenantOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Applied { versions } => write!(f, "applied {} migration(s)", versions.len()),
            Self::AlreadyCurrent => f.write_str("already current"),
            Self::Failed { applied, error } => {
                write!(f, "failed after applying {} migration(s): {error}", applied.len())
            }
            Self::SchemaMissing => f.write_str("registered, but its schema is missing"),
        }
    }
}

/// One tenant's line in a [`MigrationReport`].
#[derive(Debug)]
#[non_exhaustive]
pub struct TenantMigration {
    /// The tenant.
    pub schema: SchemaName,
    /// What happened to it.
    pub outcome: TenantOutcome,
}

/// Tenant counts of a run, so far (in [`Progress`]) or in total (in [`MigrationReport`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationCounts {
    /// Registered tenants in the run.
    pub total: usize,
    /// Tenants that had migrations applied.
    pub applied: usize,
    /// Tenants that were already current.
    pub already_current: usize,
    /// Tenants whose migration failed.
    pub failed: usize,
    /// Registered tenants whose schema is missing.
    pub schema_missing: usize,
}

impl MigrationCounts {
    /// Tenants done so far.
    ///
    /// ```
    /// let counts = tenancy_core::MigrationCounts::default();
    /// assert_eq!(counts.done(), 0);
    /// ```
    pub fn done(&self) -> usize {
        self.applied + self.already_current + self.failed + self.schema_missing
    }

    fn add(&mut self, outcome: &TenantOutcome) {
        match outcome {
            TenantOutcome::Applied { .. } => self.applied += 1,
            TenantOutcome::AlreadyCurrent => self.already_current += 1,
            TenantOutcome::Failed { .. } => self.failed += 1,
            TenantOutcome::SchemaMissing => self.schema_missing += 1,
        }
    }
}

/// Passed to the [`MigrateOptions::on_progress`] callback as each tenant is done.
#[derive(Debug)]
#[non_exhaustive]
pub struct Progress<'a> {
    /// The tenant just done.
    pub schema: &'a SchemaName,
    /// What happened to it.
    pub outcome: &'a TenantOutcome,
    /// Counts so far, this tenant included.
    pub counts: MigrationCounts,
}

/// The result of a [`migrate_all`] run: one line per registered tenant, and
/// what looked wrong in the database.
#[derive(Debug)]
#[non_exhaustive]
pub struct MigrationReport {
    /// Every registered tenant and what happened to it, ordered by schema name.
    pub tenants: Vec<TenantMigration>,
    /// Schemas that hold a `__diesel_schema_migrations` table, as tenants do,
    /// but have no registry row (the shared and registry schemas and `public`
    /// excepted). They were not migrated: register them with
    /// [`provision`](crate::provision), or drop them.
    pub unregistered_schemas: Vec<String>,
    /// Registry rows whose `schema_name` or `state` is not valid (written by
    /// hand), with the reason. They were not migrated: fix or delete them.
    pub invalid_registry_rows: Vec<(String, String)>,
    /// The greatest version in the migration source.
    pub latest_version: Option<String>,
    /// How many tenant schemas were visited; the others were known current
    /// from the registry.
    pub visited: usize,
    /// Tenant counts.
    pub counts: MigrationCounts,
}

impl MigrationReport {
    /// The tenants whose migration failed, with the error.
    pub fn failed(&self) -> impl Iterator<Item = (&SchemaName, &TenancyError)> {
        self.tenants.iter().filter_map(|t| match &t.outcome {
            TenantOutcome::Failed { error, .. } => Some((&t.schema, error)),
            _ => None,
        })
    }

    /// Registered tenants whose schema is missing.
    pub fn missing_schemas(&self) -> impl Iterator<Item = &SchemaName> {
        self.tenants.iter().filter(|t| matches!(t.outcome, TenantOutcome::SchemaMissing)).map(|t| &t.schema)
    }

    /// The outcome of one tenant, if it is registered.
    pub fn outcome(&self, schema: &SchemaName) -> Option<&TenantOutcome> {
        self.tenants.binary_search_by(|t| t.schema.cmp(schema)).ok().map(|i| &self.tenants[i].outcome)
    }

    /// `true` when every registered tenant is current and nothing looked
    /// wrong: no failure, no missing schema, no unregistered schema, no
    /// invalid registry row.
    pub fn is_clean(&self) -> bool {
        self.counts.failed == 0
            && self.counts.schema_missing == 0
            && self.unregistered_schemas.is_empty()
            && self.invalid_registry_rows.is_empty()
    }
}

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
    let plan = Plan::load(&migrations)?;
    let registry = Registry::of(pool);
    let fleet = read_fleet(pool, &registry)?;

    let mut counts = MigrationCounts { total: fleet.tenants.len(), ..MigrationCounts::default() };
    let mut progress = options.progress;
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
        let outcome = migrate_tenant(pool, &registry, plan, &schema, options.lock_timeout);
        finish(schema, outcome)
    };

    let jobs = options.jobs.min(visited).max(1);
    let mut lines = settled;
    if jobs == 1 {
        lines.extend(to_visit.into_iter().map(|schema| visit(&plan, schema)));
    } else {
        let next = AtomicUsize::new(0);
        let queue = &to_visit;
        let results = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..jobs)
                .map(|_| {
                    scope.spawn(|| {
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
                                        error: TenancyError::MigrationSource { message: message.clone() },
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
    let result = pool.scoped_transaction(&pool.search_path_for(schema), |conn| -> Result<_, TenancyError> {
        if let Some(timeout) = lock_timeout {
            // An integer of milliseconds: nothing user-supplied is spliced.
            conn.batch_execute(&format!("SET LOCAL lock_timeout = {}", timeout.as_millis().max(1)))?;
        }
        Registry::lock_tenant(conn, schema)?;
        let probe = probe(conn, schema)?;
        if !probe.schema_exists {
            return Ok(TenantOutcome::SchemaMissing);
        }
        let run = apply_pending(conn, schema, plan, probe.table_exists)?;
        let state = if run.error.is_some() { TenantState::Failed } else { TenantState::Ready };
        let message = run.error.as_ref().map(ToString::to_string);
        registry.update(conn, schema, state, &run.after, message.as_deref())?;
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

/// The migrations of a source, sorted by version.
pub(crate) struct Plan {
    migrations: Vec<Box<dyn Migration<Pg>>>,
    versions: Vec<String>,
    /// What the registry records for a tenant with every migration applied.
    pub(crate) target: AppliedMigrations,
}

impl Plan {
    pub(crate) fn load<S: MigrationSource<Pg> + ?Sized>(source: &S) -> Result<Self, TenancyError> {
        let mut migrations = source.migrations().map_err(|e| TenancyError::MigrationSource {
            message: format!(
                "{e}; check that the migrations directory exists and each migration has an up.sql"
            ),
        })?;
        migrations.sort_by(|a, b| a.name().version().cmp(&b.name().version()));
        migrations.dedup_by(|a, b| a.name().version() == b.name().version());
        if let Some(m) = migrations.iter().find(|m| !m.metadata().run_in_transaction()) {
            return Err(TenancyError::MigrationSource {
                message: format!(
                    "migration {} is marked run_in_transaction = false, but tenant migrations run in one transaction per tenant (which also keeps them safe behind PgBouncer in transaction mode); remove that setting from its metadata.toml, or run its statements outside tenancy",
                    m.name()
                ),
            });
        }
        let versions: Vec<String> = migrations.iter().map(|m| m.name().version().to_string()).collect();
        let target = AppliedMigrations::of(&versions);
        Ok(Self { migrations, versions, target })
    }
}

/// What [`apply_pending`] did.
pub(crate) struct TenantRun {
    /// Versions applied by this run, in order.
    pub(crate) applied: Vec<String>,
    /// The tenant's migrations afterwards.
    pub(crate) after: AppliedMigrations,
    /// The migration that failed, if one did; the ones before it are kept.
    pub(crate) error: Option<TenancyError>,
}

pub(crate) struct Probe {
    pub(crate) schema_exists: bool,
    pub(crate) table_exists: bool,
}

/// Whether the tenant's schema and its `__diesel_schema_migrations` exist.
pub(crate) fn probe(conn: &mut PgConnection, schema: &SchemaName) -> Result<Probe, TenancyError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Bool)]
        schema_exists: bool,
        #[diesel(sql_type = Bool)]
        table_exists: bool,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT to_regnamespace($1) IS NOT NULL AS schema_exists, to_regclass($2) IS NOT NULL AS table_exists",
    )
    .bind::<Text, _>(schema.quoted())
    .bind::<Text, _>(migrations_table(schema))
    .load(conn)?;
    let row = rows.first();
    Ok(Probe {
        schema_exists: row.is_some_and(|r| r.schema_exists),
        table_exists: row.is_some_and(|r| r.table_exists),
    })
}

pub(crate) fn migrations_table(schema: &SchemaName) -> String {
    format!("{}.\"__diesel_schema_migrations\"", schema.quoted())
}

/// Why one migration step failed.
enum StepError {
    Run(Box<dyn std::error::Error + Send + Sync>),
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for StepError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Database(e)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Run(e) => e.fmt(f),
            Self::Database(e) => e.fmt(f),
        }
    }
}

/// Runs the migrations of `plan` that the tenant has not applied, each in a
/// savepoint, inside the caller's transaction (whose search path is the
/// tenant). Stops at the first failure, which is undone and returned in
/// [`TenantRun::error`]; an `Err` means the transaction itself is unusable.
pub(crate) fn apply_pending(
    conn: &mut PgConnection,
    schema: &SchemaName,
    plan: &Plan,
    table_exists: bool,
) -> Result<TenantRun, TenancyError> {
    let table = migrations_table(schema);
    let mut applied: BTreeSet<String> = if table_exists {
        #[derive(QueryableByName)]
        struct Version {
            #[diesel(sql_type = Text)]
            version: String,
        }
        let rows: Vec<Version> = diesel::sql_query(format!("SELECT version FROM {table}")).load(conn)?;
        rows.into_iter().map(|r| r.version).collect()
    } else {
        // diesel's own DDL, so the table is the one the diesel CLI expects;
        // the search path puts it in the tenant's schema.
        conn.setup()?;
        BTreeSet::new()
    };
    let insert = format!("INSERT INTO {table} (version) VALUES ($1)");
    let mut run = TenantRun { applied: Vec::new(), after: AppliedMigrations::default(), error: None };
    for (migration, version) in plan.migrations.iter().zip(&plan.versions) {
        if applied.contains(version) {
            continue;
        }
        let step = conn.transaction::<_, StepError, _>(|c| {
            migration.run(c).map_err(StepError::Run)?;
            diesel::sql_query(&insert).bind::<Text, _>(version).execute(c)?;
            Ok(())
        });
        match step {
            Ok(()) => {
                applied.insert(version.clone());
                run.applied.push(version.clone());
            }
            Err(e) => {
                let at = AppliedMigrations::of(&applied);
                run.error = Some(TenancyError::Migration {
                    schema: schema.clone(),
                    message: format!(
                        "migration {} failed and was rolled back: {e}; the tenant stays at version {}; fix the migration or the tenant's data, then run again to resume",
                        migration.name(),
                        at.latest.as_deref().unwrap_or("(none)"),
                    ),
                });
                break;
            }
        }
    }
    run.after = AppliedMigrations::of(&applied);
    Ok(run)
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
    struct Row {
        #[diesel(sql_type = Text)]
        schema_name: String,
        #[diesel(sql_type = Text)]
        state: String,
        #[diesel(sql_type = Nullable<Text>)]
        migration_version: Option<String>,
        #[diesel(sql_type = Integer)]
        migrations_applied: i32,
    }
    #[derive(QueryableByName)]
    struct Namespace {
        #[diesel(sql_type = Oid)]
        oid: u32,
        #[diesel(sql_type = Text)]
        nspname: String,
    }
    #[derive(QueryableByName)]
    struct Holder {
        #[diesel(sql_type = Oid)]
        relnamespace: u32,
    }
    let (rows, namespaces, holders) =
        pool.scoped_transaction(&registry.schema, |conn| -> Result<_, TenancyError> {
            registry.ensure(conn)?;
            let rows: Vec<Row> = diesel::sql_query(format!(
            "SELECT schema_name, state, migration_version, migrations_applied FROM {} ORDER BY schema_name",
            registry.table
        ))
            .load(conn)?;
            let namespaces: Vec<Namespace> =
                diesel::sql_query("SELECT oid, nspname::text AS nspname FROM pg_catalog.pg_namespace")
                    .load(conn)?;
            let holders: Vec<Holder> = diesel::sql_query(
                "SELECT relnamespace FROM pg_catalog.pg_class \
             WHERE relname = '__diesel_schema_migrations' AND relkind IN ('r', 'p')",
            )
            .load(conn)?;
            Ok((rows, namespaces, holders))
        })?;

    let names: HashMap<u32, &str> = namespaces.iter().map(|n| (n.oid, n.nspname.as_str())).collect();
    let existing: HashSet<&str> = names.values().copied().collect();
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
        let parsed = registered_name(&row.schema_name)
            .and_then(|schema| Ok((schema, parse_state(&row.schema_name, &row.state)?)));
        match parsed {
            Ok((schema, state)) => fleet.tenants.push(FleetTenant {
                schema,
                state,
                applied: AppliedMigrations {
                    latest: row.migration_version.clone(),
                    count: usize::try_from(row.migrations_applied).unwrap_or(0),
                },
                schema_exists: existing.contains(row.schema_name.as_str()),
            }),
            Err(e) => fleet.invalid.push((row.schema_name.clone(), e.to_string())),
        }
    }
    Ok(fleet)
}
