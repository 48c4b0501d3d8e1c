//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Operate the tenants of a schema-per-tenant PostgreSQL database built with
/// tenancy-core: migrate the fleet, list and inspect tenants, provision and
/// drop them.
#[derive(Debug, Parser)]
#[command(name = "tenancy", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The database, as a PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub(crate) database_url: Option<String>,

    /// The directory of diesel migrations (one subdirectory per migration,
    /// each with an up.sql): the tenants' migrations, or the shared schema's
    /// for `shared migrate`.
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) migrations: Option<PathBuf>,

    /// The schema of the tenant registry.
    #[arg(long, value_name = "NAME", global = true, default_value = "tenancy")]
    pub(crate) registry_schema: String,

    /// The shared schema (for `shared migrate`).
    #[arg(long, value_name = "NAME", global = true, default_value = "public")]
    pub(crate) shared_schema: String,

    /// How the URL reaches PostgreSQL: directly (session), or through a
    /// transaction pooler such as PgBouncer in transaction mode.
    #[arg(long, value_enum, global = true, default_value_t = Pooler::Session)]
    pub(crate) pooler: Pooler,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How connections reach PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Pooler {
    /// Directly, or through a session pooler.
    Session,
    /// Through a transaction pooler (PgBouncer `pool_mode = transaction`).
    Transaction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Migrate every tenant (or the chosen ones) to the latest migration.
    ///
    /// Exits with status 1 when any tenant failed, a canary failed, a chosen
    /// name is not a tenant, or a registered tenant's schema is missing.
    Migrate(MigrateArgs),
    /// Revert the latest migration of --migrations in every chosen tenant
    /// that has it applied (resumable: a rerun reverts only what is left).
    Revert(RevertArgs),
    /// List the registered tenants.
    List(ListArgs),
    /// Show one tenant: its registry row, the migrations applied, its size.
    Show(ShowArgs),
    /// Create, migrate and register tenants (idempotent).
    Provision(ProvisionArgs),
    /// Drop a tenant: its schema, with all its data, and its registry row.
    Drop(DropArgs),
    /// The shared schema.
    #[command(subcommand)]
    Shared(SharedCommand),
    /// Fleet counts by state and by version, and what `migrate` would do.
    Status(StatusArgs),
    /// Tenants on a Citus cluster: where they are, moving them, rebalancing.
    #[command(subcommand)]
    Citus(CitusCommand),
}

/// Which tenants a fleet run takes.
#[derive(Debug, Args)]
pub(crate) struct Selection {
    /// Only these tenants (comma-separated).
    #[arg(long, value_name = "A,B,..", value_delimiter = ',', conflicts_with = "tenants_file")]
    pub(crate) tenants: Option<Vec<String>>,

    /// Only the tenants listed in this file, one per line (blank lines and
    /// lines starting with # are skipped).
    #[arg(long, value_name = "FILE")]
    pub(crate) tenants_file: Option<PathBuf>,

    /// All but these tenants (comma-separated).
    #[arg(long, value_name = "A,B,..", value_delimiter = ',')]
    pub(crate) except: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    #[command(flatten)]
    pub(crate) selection: Selection,

    /// How many tenants at once.
    #[arg(long, short, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) jobs: u16,

    /// First the first K tenants that need it; stop if any of them fails.
    #[arg(long, value_name = "K")]
    pub(crate) canary: Option<usize>,

    /// Say what would be done, without doing it.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Visit every tenant's schema instead of trusting the registry for
    /// tenants it records as current.
    #[arg(long)]
    pub(crate) verify_schemas: bool,

    /// Give up on a tenant whose locks are not granted within this many
    /// seconds, instead of queueing behind application traffic.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) lock_timeout: Option<f64>,

    /// Print the report as JSON on stdout (no progress bar).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RevertArgs {
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,

    /// Confirm: the migration's down.sql runs in every chosen tenant.
    #[arg(long)]
    pub(crate) yes: bool,
}

/// A tenant state, as `list --state` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StateFilter {
    /// Provisioning started and did not finish.
    Provisioning,
    /// Provisioned and current as of its last run.
    Ready,
    /// Its last provisioning or migration failed.
    Failed,
    /// Being dropped.
    Dropping,
    /// Registered, but its schema is gone.
    Missing,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only tenants in this state.
    #[arg(long, value_enum)]
    pub(crate) state: Option<StateFilter>,

    /// Print JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The tenant.
    pub(crate) name: String,

    /// Print JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    /// The tenants to provision.
    #[arg(required = true, value_name = "NAME")]
    pub(crate) names: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DropArgs {
    /// The tenant to drop.
    pub(crate) name: String,

    /// Confirm: the schema and all its data are deleted.
    #[arg(long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SharedCommand {
    /// Apply the shared schema's pending migrations (from --migrations),
    /// one run at a time however many run at once.
    Migrate,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CitusCommand {
    /// Where each registered tenant's tables are.
    Placements(PlacementsArgs),
    /// The nodes that can hold tenants.
    Nodes,
    /// Move a tenant's tables to another node; checked-out and pooled
    /// connections keep working.
    Move(MoveArgs),
    /// Move tenants so that the nodes hold about as many each.
    Rebalance(RebalanceArgs),
    /// Make a table of the shared schema a reference table (copied to every
    /// node), so that tenants' tables may reference it.
    ReferenceTable(ReferenceTableArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PlacementsArgs {
    /// Print JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

/// How Citus copies tables to another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Transfer {
    /// Logical replication when every table has a primary key, else block writes.
    Auto,
    /// Logical replication: writes pause only for the switch over.
    ForceLogical,
    /// Writes to the tenant wait until the copy is done.
    BlockWrites,
}

#[derive(Debug, Args)]
pub(crate) struct MoveArgs {
    /// The tenant to move.
    pub(crate) name: String,

    /// The node to move it to, as HOST:PORT (see `tenancy citus nodes`).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) to: String,

    /// How the tables are copied.
    #[arg(long, value_enum, default_value_t = Transfer::Auto)]
    pub(crate) mode: Transfer,
}

#[derive(Debug, Args)]
pub(crate) struct RebalanceArgs {
    /// How the tables are copied.
    #[arg(long, value_enum, default_value_t = Transfer::Auto)]
    pub(crate) mode: Transfer,

    /// Wait until the rebalance has finished (it runs in the background otherwise).
    #[arg(long)]
    pub(crate) wait: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ReferenceTableArgs {
    /// The table, in the shared schema (--shared-schema).
    pub(crate) table: String,
}
