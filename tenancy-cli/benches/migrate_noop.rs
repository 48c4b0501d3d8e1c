//! `tenancy migrate` with nothing pending, end to end as a process, over a
//! fleet of 10,000 tenants, against plain diesel's harness run schema by
//! schema on the same fleet in the same run.
//!
//! ```text
//! cargo bench -p tenancy-cli --bench migrate_noop             # 10,000 tenants
//! cargo bench -p tenancy-cli --bench migrate_noop -- --quick  # CI: 300 tenants
//! ```
//!
//! The fleet (one-table tenants, from `tests/migrations/v1`) is provisioned
//! with the library, 4 threads, in a database of its own that is dropped at
//! the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::error::Error;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use tenancy_core::{migrate_all, provision, MigrateOptions, SchemaName, TenantPool};
use tenancy_test::TestDatabase;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

fn migrations_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/migrations/v1")
}

fn migrations() -> Result<FileBasedMigrations> {
    Ok(FileBasedMigrations::from_path(migrations_dir())?)
}

fn name(i: usize) -> Result<SchemaName> {
    Ok(SchemaName::new(&format!("t{i:05}"))?)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, runs) = if quick { (300, 3) } else { (10_000, 5) };
    let db = TestDatabase::with_prefix("bench_cli_noop")?;

    let pool = TenantPool::builder().max_size(4).build(db.url())?;
    let start = Instant::now();
    // Four threads, each provisioning every fourth tenant.
    let provisioned: Vec<Result<()>> = std::thread::scope(|scope| {
        let pool = &pool;
        let handles: Vec<_> = (0..4)
            .map(|first| {
                scope.spawn(move || -> Result<()> {
                    let source = migrations()?;
                    (first..n)
                        .step_by(4)
                        .try_for_each(|i| Ok(provision(pool, &name(i)?, source.clone()).map(drop)?))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a provisioning thread panicked".into())))
            .collect()
    });
    provisioned.into_iter().collect::<Result<()>>()?;
    println!("  (set-up: {n} tenants provisioned in {:.1} s with 4 threads)", start.elapsed().as_secs_f64());

    let tenancy = |args: &[&str]| -> Result<(Duration, String)> {
        let start = Instant::now();
        let out =
            Command::new(env!("CARGO_BIN_EXE_tenancy")).env("DATABASE_URL", db.url()).args(args).output()?;
        let took = start.elapsed();
        if !out.status.success() {
            return Err(format!("tenancy {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
    };
    let dir = migrations_dir();
    let dir = dir.to_str().ok_or("migrations path is not UTF-8")?;
    let expected = format!("{n} tenant(s): {n} already current; 0 visited");

    // Interleaved: the process floor (start, parse, exit), the command, the library call.
    let (mut floor, mut command, mut library) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        floor.push(tenancy(&["--version"])?.0);
        let (took, out) = tenancy(&["migrate", "--migrations", dir, "--jobs", "4"])?;
        if !out.contains(&expected) {
            return Err(format!("unexpected output: {out}").into());
        }
        command.push(took);
        let start = Instant::now();
        let report = migrate_all(&pool, migrations()?, MigrateOptions::new().jobs(4))?;
        library.push(start.elapsed());
        if report.visited != 0 || report.counts.already_current != n {
            return Err(format!("unexpected report: {:?}", report.counts).into());
        }
    }

    // Plain diesel: the harness schema by schema on one connection.
    let mut conn = PgConnection::establish(db.url())?;
    let source = migrations()?;
    let start = Instant::now();
    let mut applied = 0;
    for i in 0..n {
        conn.batch_execute(&format!("SET search_path TO {}", name(i)?.quoted()))?;
        applied += conn.run_pending_migrations(source.clone())?.len();
    }
    let plain = start.elapsed();
    if applied != 0 {
        return Err("plain diesel found pending migrations".into());
    }
    drop(conn);
    drop(pool);

    let (floor, command, library) = (median(floor), median(command), median(library));
    println!(
        "tenancy migrate, nothing pending, {n} tenants, as a process: {:.0} ms (median of {runs}; process floor `tenancy --version` {:.0} ms; migrate_all in process {:.0} ms); plain diesel harness schema by schema {:.0} ms; ratio plain/command {:.0}x",
        ms(command),
        ms(floor),
        ms(library),
        ms(plain),
        plain.as_secs_f64() / command.as_secs_f64(),
    );
    Ok(())
}
