//! Migrations: the per-tenant engine ([`apply`]), fleet runs ([`fleet`],
//! [`migrate_all`], [`revert_last`]), what they report ([`report`]), and the
//! shared schema's own ([`migrate_shared`]).
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
//! visited, so a run with nothing to do costs a few queries, whatever the
//! size of the fleet.

pub(crate) mod apply;
mod fleet;
mod report;
mod revert;
mod shared;
mod statements;

pub use fleet::migrate_all;
pub use report::{
    MigrateOptions, MigrationCounts, MigrationReport, Progress, TenantMigration, TenantOutcome,
};
pub use revert::revert_last;
pub use shared::migrate_shared;
