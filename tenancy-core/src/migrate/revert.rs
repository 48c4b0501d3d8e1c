//! [`revert_last`]: the source's latest migration undone across the
//! selected tenants, resumably.

use diesel::migration::MigrationSource;
use diesel::pg::Pg;

use super::apply::{applied_versions, revert_one, Plan};
use super::fleet::{fleet_span, run, Operation, Visit};
use super::report::{MigrateOptions, MigrationReport, TenantOutcome};
use crate::error::{error_chain, RefusalReason, TenancyError};
use crate::pool::TenantPool;
use crate::registry::{AppliedMigrations, Save, TenantState};

/// Reverts the latest migration of `migrations` in every selected tenant
/// that has it applied, as diesel's `revert_last_migration` does for one
/// database: its `down.sql` runs and its version is removed from the
/// tenant's `__diesel_schema_migrations`, in one transaction per tenant,
/// holding the tenant's lock.
///
/// The version to revert is the migration source's latest, not each
/// tenant's own last, so a run is **resumable** like
/// [`migrate_all`](crate::migrate_all): tenants without that version are
/// [`AlreadyCurrent`](TenantOutcome::AlreadyCurrent) (known from the
/// registry, without a visit), and a rerun after an interruption reverts
/// only the tenants still holding it. Reverted tenants are
/// [`Reverted`](TenantOutcome::Reverted); a tenant whose `down.sql` fails,
/// or that has a migration newer than the one to revert applied, is
/// [`Failed`](TenantOutcome::Failed) and keeps its version.
///
/// Every option applies: [`tenants`](MigrateOptions::tenants),
/// [`except`](MigrateOptions::except), [`filter`](MigrateOptions::filter),
/// [`canary`](MigrateOptions::canary), [`jobs`](MigrateOptions::jobs),
/// [`dry_run`](MigrateOptions::dry_run). Remove the migration from the
/// source afterwards, or the next `migrate_all` applies it again.
///
/// ```no_run
/// use diesel_migrations::FileBasedMigrations;
/// use tenancy_core::{revert_last, schema, MigrateOptions, TenantPool};
///
/// let pool = TenantPool::connect("postgres://localhost/app")?;
/// let migrations = FileBasedMigrations::from_path("migrations/tenant")?;
/// let options = MigrateOptions::new().tenants([schema!("acme"), schema!("globex")]);
/// let report = revert_last(&pool, migrations, options)?;
/// assert!(report.is_clean());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn revert_last(
    pool: &TenantPool,
    migrations: impl MigrationSource<Pg> + Sync,
    options: MigrateOptions,
) -> Result<MigrationReport, TenancyError> {
    let span = fleet_span!("tenancy.revert_last", options);
    run(pool, &migrations, options, &Revert, span)
}

/// [`revert_last`]'s operation: the source's latest version is the one to revert.
struct Revert;

impl Revert {
    fn version(plan: &Plan) -> Result<&str, TenancyError> {
        plan.target.latest.as_deref().ok_or_else(|| TenancyError::MigrationSource {
            source: "the migration source has no migration to revert".into(),
        })
    }
}

impl Operation for Revert {
    fn check(&self, plan: &Plan) -> Result<(), TenancyError> {
        Self::version(plan).map(|_| ())
    }

    fn done(&self, plan: &Plan, _state: TenantState, applied: &AppliedMigrations) -> bool {
        let version = plan.target.latest.as_deref().unwrap_or_default();
        applied.latest.as_deref().is_none_or(|latest| latest < version)
    }

    fn visit(&self, tenant: Visit<'_>) -> TenantOutcome {
        let Visit { registry, plan, schema, .. } = tenant;
        let version = match Self::version(plan) {
            Ok(version) => version,
            Err(error) => return TenantOutcome::Failed { applied: Vec::new(), error },
        };
        tenant.run(|conn, probe| {
            let applied =
                if probe.table_exists { applied_versions(conn, schema)? } else { Default::default() };
            let before = AppliedMigrations::of(&applied);
            if let Some(newer) = applied.iter().rev().find(|v| v.as_str() > version) {
                return Ok(TenantOutcome::Failed {
                    applied: Vec::new(),
                    error: TenancyError::Refused {
                        operation: "revert the last migration of",
                        schema: schema.to_string(),
                        reason: RefusalReason::NewerMigrationApplied { version: newer.clone() },
                    },
                });
            }
            if !applied.contains(version) {
                // Nothing to revert; the row (a failed state, say) is left as it is.
                return Ok(TenantOutcome::AlreadyCurrent);
            }
            let run = revert_one(conn, schema, plan, version)?;
            let (state, message, after) = match &run {
                Ok(()) => {
                    let rest: Vec<&String> = applied.iter().filter(|v| v.as_str() != version).collect();
                    (TenantState::Ready, None, AppliedMigrations::of(rest))
                }
                Err(error) => (TenantState::Failed, Some(error_chain(error)), before),
            };
            registry.save(conn, Save::IfChanged, schema, state, &after, message.as_deref())?;
            Ok(match run {
                Ok(()) => TenantOutcome::Reverted { version: version.to_owned() },
                Err(error) => TenantOutcome::Failed { applied: Vec::new(), error },
            })
        })
    }
}
