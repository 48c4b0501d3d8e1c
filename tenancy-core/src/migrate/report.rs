//! What a fleet migration is asked to do ([`MigrateOptions`]) and what it
//! reports ([`MigrationReport`], one [`TenantMigration`] per tenant).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::error::TenancyError;
use crate::pool::Hook;
use crate::schema_name::SchemaName;

/// Settings of one [`migrate_all`](crate::migrate_all) or
/// [`revert_last`](crate::revert_last) run. Every setting has a default.
///
/// ```
/// use std::time::Duration;
/// use tenancy_core::{schema, MigrateOptions};
///
/// let options = MigrateOptions::new()
///     .jobs(4)
///     .lock_timeout(Some(Duration::from_secs(5)))
///     .except([schema!("big_customer")])
///     .canary(10)
///     .on_progress(|p| eprintln!("{}/{} {}: {}", p.counts.done(), p.counts.total, p.schema, p.outcome));
/// ```
#[derive(Debug)]
#[must_use = "options do nothing until passed to migrate_all"]
pub struct MigrateOptions {
    pub(super) jobs: usize,
    pub(super) verify_schemas: bool,
    pub(super) lock_timeout: Option<Duration>,
    pub(super) progress: Option<Hook<ProgressCallback>>,
    pub(super) only: Option<BTreeSet<SchemaName>>,
    pub(super) except: BTreeSet<SchemaName>,
    pub(super) filter: Option<Hook<TenantFilter>>,
    pub(super) canary: usize,
    pub(super) dry_run: bool,
}

/// The boxed form of a callback given to [`MigrateOptions::on_progress`].
pub(super) type ProgressCallback = Box<dyn FnMut(&Progress<'_>) + Send>;
/// The boxed form of a predicate given to [`MigrateOptions::filter`].
pub(super) type TenantFilter = Box<dyn Fn(&SchemaName) -> bool + Send + Sync>;

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            jobs: 1,
            verify_schemas: false,
            lock_timeout: None,
            progress: None,
            only: None,
            except: BTreeSet::new(),
            filter: None,
            canary: 0,
            dry_run: false,
        }
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
        /// Migrate the first `k` tenants that need it (in schema-name order),
        /// and stop there if any of them fails: the other tenants are reported
        /// [`TenantOutcome::Skipped`] and left untouched. When all `k`
        /// succeed, the run continues with the rest. Default: `0` (no canary).
        canary(usize) => canary;
        /// Report what the run would do without doing it: tenants the
        /// registry shows as current are [`TenantOutcome::AlreadyCurrent`],
        /// the others [`TenantOutcome::Pending`], and no tenant schema is
        /// visited. Default: `false`.
        dry_run(bool) => dry_run;
    }
    /// The defaults: every tenant, one at a time, trust the registry, no lock
    /// timeout, no canary, no progress callback.
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

    /// Only these tenants (others are not visited nor reported). Names that
    /// are not registered tenants are listed in
    /// [`MigrationReport::not_registered`]. Calling it again replaces the list.
    pub fn tenants<I>(mut self, tenants: I) -> Self
    where
        I: IntoIterator<Item = SchemaName>,
    {
        self.only = Some(tenants.into_iter().collect());
        self
    }

    /// Every selected tenant but these. Calls add up.
    pub fn except<I>(mut self, tenants: I) -> Self
    where
        I: IntoIterator<Item = SchemaName>,
    {
        self.except.extend(tenants);
        self
    }

    /// Only the tenants for which `predicate` returns `true` (applied after
    /// [`tenants`](Self::tenants) and [`except`](Self::except)).
    ///
    /// ```
    /// let options = tenancy_core::MigrateOptions::new().filter(|schema| schema.as_str().starts_with("eu_"));
    /// ```
    pub fn filter<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&SchemaName) -> bool + Send + Sync + 'static,
    {
        self.filter = Some(Hook(Box::new(predicate)));
        self
    }

    /// `true` if the run takes `schema` (given it is registered).
    pub(super) fn selects(&self, schema: &SchemaName) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(schema))
            && !self.except.contains(schema)
            && self.filter.as_ref().is_none_or(|f| (f.0)(schema))
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

/// What happened to one tenant in a [`migrate_all`](crate::migrate_all) or
/// [`revert_last`](crate::revert_last) run.
#[derive(Debug)]
#[non_exhaustive]
pub enum TenantOutcome {
    /// These migration versions were applied, in this order.
    Applied {
        /// The versions applied by this run.
        versions: Vec<String>,
    },
    /// Nothing was pending (for [`revert_last`](crate::revert_last): the
    /// migration to revert is not applied).
    AlreadyCurrent,
    /// [`revert_last`](crate::revert_last) reverted this migration version.
    Reverted {
        /// The version reverted.
        version: String,
    },
    /// Not tried: a [canary](MigrateOptions::canary) tenant failed, so the
    /// run stopped before this one.
    Skipped,
    /// A [dry run](MigrateOptions::dry_run): the registry does not show this
    /// tenant as current, so a real run would visit it.
    Pending,
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
            Self::Reverted { version } => write!(f, "reverted {version}"),
            Self::Skipped => f.write_str("skipped: a canary tenant failed"),
            Self::Pending => f.write_str("pending"),
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
    /// Tenants reverted by [`revert_last`](crate::revert_last).
    pub reverted: usize,
    /// Tenants not tried because a canary tenant failed.
    pub skipped: usize,
    /// Tenants a dry run would visit.
    pub pending: usize,
}

impl MigrationCounts {
    /// Tenants done so far.
    ///
    /// ```
    /// let counts = tenancy_core::MigrationCounts::default();
    /// assert_eq!(counts.done(), 0);
    /// ```
    pub fn done(&self) -> usize {
        self.applied
            + self.already_current
            + self.failed
            + self.schema_missing
            + self.reverted
            + self.skipped
            + self.pending
    }

    pub(super) fn add(&mut self, outcome: &TenantOutcome) {
        match outcome {
            TenantOutcome::Applied { .. } => self.applied += 1,
            TenantOutcome::AlreadyCurrent => self.already_current += 1,
            TenantOutcome::Failed { .. } => self.failed += 1,
            TenantOutcome::SchemaMissing => self.schema_missing += 1,
            TenantOutcome::Reverted { .. } => self.reverted += 1,
            TenantOutcome::Skipped => self.skipped += 1,
            TenantOutcome::Pending => self.pending += 1,
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
    /// Tenants named with [`MigrateOptions::tenants`] that are not
    /// registered (or are being dropped); nothing was done for them.
    pub not_registered: Vec<SchemaName>,
    /// `true` when a [canary](MigrateOptions::canary) tenant failed and the
    /// run stopped after the canaries.
    pub canary_failed: bool,
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

    /// `true` when every selected tenant is done and nothing looked
    /// wrong: no failure, no missing schema, no tenant skipped after a
    /// failed canary, no unregistered schema, no invalid registry row, no
    /// selected name that is not a tenant.
    pub fn is_clean(&self) -> bool {
        self.counts.failed == 0
            && self.counts.schema_missing == 0
            && self.counts.skipped == 0
            && self.not_registered.is_empty()
            && self.unregistered_schemas.is_empty()
            && self.invalid_registry_rows.is_empty()
    }
}
