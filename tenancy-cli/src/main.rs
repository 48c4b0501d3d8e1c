//! `tenancy`: the operations command of tenancy-core. Every command reports
//! an error as one line on stderr and exits with status 1; usage errors
//! exit with status 2.

mod citus;
mod cli;
mod fleet;
mod tenants;

use std::error::Error;
use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use diesel::Connection;
use diesel_migrations::FileBasedMigrations;
use tenancy_core::{PoolerMode, SchemaName, TenantPool};

use crate::cli::{Cli, Command, Pooler, SharedCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failures) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("tenancy: error: {}", one_line(&*error));
            ExitCode::FAILURE
        }
    }
}

/// How a command that ran to its end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything it was asked to do was done.
    Success,
    /// It ran, and reported failures (exit status 1).
    Failures,
}

impl Outcome {
    pub(crate) fn failed_if(failed: bool) -> Self {
        if failed {
            Self::Failures
        } else {
            Self::Success
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// An error of the command itself, with its message.
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Usage {}

fn run(cli: &Cli) -> Result<Outcome> {
    match &cli.command {
        Command::Migrate(args) => fleet::migrate(cli, &args.fleet, fleet::Operation::Migrate),
        Command::Revert(args) => {
            if !args.yes && !args.fleet.dry_run {
                return Err(Usage(String::from(
                    "revert runs the latest migration's down.sql in every chosen tenant; add --yes to confirm, or --dry-run to see which",
                ))
                .into());
            }
            fleet::migrate(cli, &args.fleet, fleet::Operation::Revert)
        }
        Command::List(args) => tenants::list(cli, args),
        Command::Show(args) => tenants::show(cli, args),
        Command::Provision(args) => tenants::provision(cli, args),
        Command::Drop(args) => tenants::drop(cli, args),
        Command::Shared(SharedCommand::Migrate) => tenants::shared_migrate(cli),
        Command::Status(args) => fleet::status(cli, args),
        Command::Citus(command) => citus::run(cli, command),
    }
}

impl Cli {
    pub(crate) fn url(&self) -> Result<&str> {
        self.database_url.as_deref().filter(|u| !u.trim().is_empty()).ok_or_else(|| {
            Usage(String::from("no database: pass --database-url URL, or set DATABASE_URL")).into()
        })
    }

    /// A pool of up to `size` connections.
    pub(crate) fn pool(&self, size: u32) -> Result<TenantPool> {
        let mode = match self.pooler {
            Pooler::Session => PoolerMode::Session,
            Pooler::Transaction => PoolerMode::Transaction,
        };
        let url = self.url()?;
        // Fails fast, with libpq's reason, instead of after the pool's timeout.
        diesel::PgConnection::establish(url).map_err(tenancy_core::TenancyError::Connection)?;
        Ok(TenantPool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .registry_schema(self.registry_schema.as_str())
            .shared_schema(self.shared_schema.as_str())
            .pooler_mode(mode)
            .build(url)?)
    }

    /// The migrations of `--migrations`, which `command` needs.
    pub(crate) fn migrations(&self, command: &str) -> Result<FileBasedMigrations> {
        let dir = self
            .migrations
            .as_deref()
            .ok_or_else(|| Usage(format!("{command} needs the migrations: pass --migrations DIR")))?;
        load_migrations(dir)
    }
}

pub(crate) fn load_migrations(dir: &Path) -> Result<FileBasedMigrations> {
    if !dir.is_dir() {
        return Err(Usage(format!("--migrations {}: no such directory", dir.display())).into());
    }
    FileBasedMigrations::from_path(dir)
        .map_err(|e| Usage(format!("--migrations {}: {e}", dir.display())).into())
}

/// A tenant name from the command line, validated.
pub(crate) fn schema(name: &str) -> Result<SchemaName> {
    Ok(tenancy_core::parse_schema(name.trim())?)
}

/// An error and its sources, on one line.
pub(crate) fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
