//! Runs a command against a throwaway Citus cluster (a coordinator and two
//! workers on loopback): `DATABASE_URL` is the coordinator's `postgres`
//! database. The cluster is stopped and removed when the command ends, and
//! its exit status is this program's.
//!
//! ```text
//! cargo run -p tenancy-devdb --example citus -- cargo run --example quickstart
//! ```

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(program) = args.next() else {
        eprintln!(
            "usage: citus COMMAND [ARGS...]  (runs COMMAND with DATABASE_URL set to a Citus coordinator)"
        );
        return ExitCode::from(2);
    };
    let cluster = match tenancy_devdb::citus::CitusCluster::start(2) {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("Citus coordinator at {} (workers on ports {:?})", cluster.url(), cluster.worker_ports());
    let status = Command::new(&program).args(args).env("DATABASE_URL", cluster.url()).status();
    drop(cluster);
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: could not run {program}: {e}");
            ExitCode::FAILURE
        }
    }
}
