//! What a fleet migration is asked to do ([`MigrateOptions`]) and what it
//! reports ([`MigrationReport`], one [`TenantMigration`] per tenant).

use std::fmt;
use std::time::Duration;

use crate::error::TenancyError;
use crate::pool::Hook;
use crate::schema_name::SchemaName;

/// Settings of one [`migrate_all`](crate::migrate_all) run. Every setting has a default.
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
#[derive(Debug)]
#[must_use = "options do nothing until passed to migrate_all"]
pub struct MigrateOptions {
    pub(super) jobs: usize,
    pub(super) verify_schemas: bool,
    pub(super) lock_timeout: Option<Duration>,
    pub(super) progress: Option<Hook<ProgressCallback>>,
}

/// The boxed form of a callback given to [`MigrateOptions::on_progress`].
pub(super) type ProgressCallback = Box<dyn FnMut(&Progress<'_>) + Send>;

impl Default for MigrateOptions {
    fn default() -> Self {
        Self { jobs: 1, verify_schemas: false, lock_timeout: None, progress: None }
    }
}

impl MigrateOptions {
    setters! {
        /// Visit every tenant's schema and compare its own
        /// `__diesel_schema_migrations` with the migration source, instead of
        /// trusting the registry for tenants it records as current. Default:
        /// `false`. Turn it on after migrating or reverting tenants by hand
        /// (for example with the diesel CLI).
        verify_schemas(bool) => verify_schemas;
        /// How long a tenant's migration waits for a lock (on the tenant's
        /// tables, or on the tenant while another process provisions or
        /// migrates it) before that tenant fails with a lock timeout, instead of
        /// queueing behind application traffic. Default: `None` (wait).
        lock_timeout(Option<Duration>) => lock_timeout;
    }
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

    /// Called once per tenant as it is done, including tenants found current
    /// from the registry, so `counts.done()` reaches `counts.total`. Calls
    /// never overlap, even with several jobs; keep the callback quick, as
    /// the other jobs wait for it.
    pub fn on_progress<F>(mut self, callback: F) -> Self
    where
        F: FnMut(&Progress<'_>) + Send + 'static,
    {
        self.progress = Some(Hook(Box::new(callback)));
        self
    }
}

/// What happened to one tenant in a [`migrate_all`](crate::migrate_all) run.
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

    pub(super) fn add(&mut self, outcome: &TenantOutcome) {
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

/// The result of a [`migrate_all`](crate::migrate_all) run: one line per registered tenant, and
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
