//! Provisioning and fleet migrations, against plain diesel on the same run.
//!
//! ```text
//! cargo bench -p tenancy-tests --bench fleet             # full: 200 / 10,000 / 1,000 tenants
//! cargo bench -p tenancy-tests --bench fleet -- --quick  # CI: a few seconds
//! cargo bench -p tenancy-tests --bench fleet -- noop     # one part: provision, noop, apply
//! ```
//!
//! 1. Provisioning a 10-table tenant with `provision`, against the floor of
//!    running the same DDL directly on one plain diesel connection (schema,
//!    search path and DDL in one transaction, sent as one message).
//! 2. `migrate_all` with nothing pending over a fleet (10,000 tenants), against
//!    plain diesel's harness run schema by schema on one connection.
//! 3. `migrate_all` applying one migration (add a column) to 1,000 tenants
//!    with jobs = 1 and jobs = 4, and plain diesel's harness schema by schema.
//!
//! Each part runs in a database of its own, dropped at the end.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use tenancy_core::{migrate_all, provision, MigrateOptions, SchemaName, TenantPool};
use tenancy_devdb::TempDatabase;
use tenancy_tests::stats::median;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const TENANT: EmbeddedMigrations = embed_migrations!("migrations/bench_tenant");
const TENANT_DDL: &str = include_str!("../migrations/bench_tenant/2024-06-01-000001_ten_tables/up.sql");
const FLEET_V1: EmbeddedMigrations = embed_migrations!("migrations/bench_fleet_v1");
const FLEET_V2: EmbeddedMigrations = embed_migrations!("migrations/bench_fleet_v2");

struct Sizes {
    provision: usize,
    noop_fleet: usize,
    noop_runs: usize,
    apply_fleet: usize,
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes = if quick {
        Sizes { provision: 12, noop_fleet: 300, noop_runs: 3, apply_fleet: 50 }
    } else {
        Sizes { provision: 200, noop_fleet: 10_000, noop_runs: 5, apply_fleet: 1_000 }
    };
    // Optional part names select parts: `-- noop`, `-- provision apply`.
    let parts: Vec<String> =
        std::env::args().skip(1).filter(|a| ["provision", "noop", "apply"].contains(&a.as_str())).collect();
    let run = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    println!("fleet benchmark ({})", if quick { "quick" } else { "full" });
    if run("provision") {
        bench_provisioning(sizes.provision)?;
    }
    if run("noop") {
        bench_noop(sizes.noop_fleet, sizes.noop_runs)?;
    }
    if run("apply") {
        bench_apply(sizes.apply_fleet)?;
    }
    Ok(())
}

/// A database of its own (`bench_{part}_{pid}_{n}`), dropped at the end.
fn temp_database(part: &str) -> Result<TempDatabase> {
    Ok(tenancy_devdb::shared()?.create_unique_database(&format!("bench_{part}"))?)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median_duration(v: &[Duration]) -> Duration {
    Duration::from_secs_f64(median(v.iter().map(Duration::as_secs_f64).collect()))
}

fn name(prefix: &str, i: usize) -> Result<SchemaName> {
    Ok(SchemaName::new(&format!("{prefix}{i:05}"))?)
}

fn bench_provisioning(n: usize) -> Result<()> {
    let db = temp_database("provision")?;
    let pool = TenantPool::builder().max_size(1).build(db.url())?;
    let mut plain = db.connect()?;
    let floor = |plain: &mut PgConnection, schema: &SchemaName| -> Result<()> {
        let q = schema.quoted();
        plain.batch_execute(&format!(
            "BEGIN; CREATE SCHEMA {q}; SET LOCAL search_path TO {q}; {TENANT_DDL}; COMMIT"
        ))?;
        Ok(())
    };
    // Warm both paths (connections, catalog caches, the registry's creation).
    for i in 0..3 {
        floor(&mut plain, &name("warm_f", i)?)?;
        provision(&pool, &name("warm_p", i)?, TENANT)?;
    }
    let (mut floors, mut ours) = (Vec::with_capacity(n), Vec::with_capacity(n));
    // Interleaved, so that drift (autovacuum, catalog growth) hits both alike.
    for i in 0..n {
        let start = Instant::now();
        floor(&mut plain, &name("f", i)?)?;
        floors.push(start.elapsed());
        let start = Instant::now();
        provision(&pool, &name("p", i)?, TENANT)?;
        ours.push(start.elapsed());
    }
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap_or(1).max(1);
    let (floor_mean, ours_mean) = (mean(&floors), mean(&ours));
    // The ratio within each interleaved pair, then its median: robust to
    // other load on the machine, which hits a pair's two halves alike.
    let pair_median =
        median(floors.iter().zip(&ours).map(|(f, o)| o.as_secs_f64() / f.as_secs_f64()).collect());
    let (floor_median, ours_median) = (median_duration(&floors), median_duration(&ours));
    println!(
        "provision, 10-table tenant, {n} tenants: plain DDL floor {:.2} ms/tenant (median {:.2}), provision {:.2} ms/tenant (median {:.2}); ratio of means {:.2}x, of medians {:.2}x, median of paired ratios {:.2}x",
        ms(floor_mean),
        ms(floor_median),
        ms(ours_mean),
        ms(ours_median),
        ours_mean.as_secs_f64() / floor_mean.as_secs_f64(),
        ours_median.as_secs_f64() / floor_median.as_secs_f64(),
        pair_median,
    );
    Ok(())
}

/// Provisions `n` tenants `t00000`... at `FLEET_V1`, four at a time.
fn build_fleet(url: &str, n: usize) -> Result<Duration> {
    let pool = TenantPool::builder().max_size(4).build(url)?;
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        provision(&pool, &name("t", i)?, FLEET_V1)?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "a provisioning thread panicked")??;
        }
        Ok(())
    })?;
    Ok(start.elapsed())
}

/// Plain diesel, schema by schema on one connection: what a fleet loop
/// without a registry does.
fn plain_diesel_loop(
    url: &str,
    n: usize,
    migrations: fn() -> EmbeddedMigrations,
) -> Result<(Duration, usize)> {
    let mut conn = PgConnection::establish(url)?;
    let start = Instant::now();
    let mut applied = 0;
    for i in 0..n {
        conn.batch_execute(&format!("SET search_path TO {}", name("t", i)?.quoted()))?;
        applied += conn.run_pending_migrations(migrations())?.len();
    }
    Ok((start.elapsed(), applied))
}

fn bench_noop(n: usize, runs: usize) -> Result<()> {
    let db = temp_database("noop")?;
    let built = build_fleet(db.url(), n)?;
    println!(
        "  (set-up: {n} tenants provisioned in {:.1} s, {:.2} ms/tenant with 4 threads)",
        built.as_secs_f64(),
        ms(built) / n as f64
    );
    let pool = TenantPool::builder().max_size(4).build(db.url())?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let report = migrate_all(&pool, FLEET_V1, MigrateOptions::new().jobs(4))?;
        times.push(start.elapsed());
        if report.visited != 0 || report.counts.already_current != n || !report.is_clean() {
            return Err(format!("unexpected no-op report: {:?}", report.counts).into());
        }
    }
    let best = times.iter().min().copied().unwrap_or_default();
    let ours = median_duration(&times);
    let start = Instant::now();
    let verified = migrate_all(&pool, FLEET_V1, MigrateOptions::new().jobs(4).verify_schemas(true))?;
    let verify = start.elapsed();
    if verified.visited != n || verified.counts.already_current != n {
        return Err(format!("unexpected verify report: {:?}", verified.counts).into());
    }
    let (plain, applied) = plain_diesel_loop(db.url(), n, || FLEET_V1)?;
    if applied != 0 {
        return Err("the plain diesel loop found pending migrations".into());
    }
    println!(
        "migrate_all, nothing pending, {n} tenants: {:.1} ms (median of {runs}, best {:.1} ms); verify_schemas (visit all, jobs=4) {:.0} ms; plain diesel harness schema by schema {:.0} ms; ratio plain/ours {:.0}x",
        ms(ours),
        ms(best),
        ms(verify),
        ms(plain),
        plain.as_secs_f64() / ours.as_secs_f64(),
    );
    Ok(())
}

fn bench_apply(n: usize) -> Result<()> {
    let mut line = format!("migrate_all, add one column, {n} tenants:");
    let mut jobs1 = Duration::ZERO;
    for jobs in [1, 4] {
        let db = temp_database("apply")?;
        build_fleet(db.url(), n)?;
        let pool = TenantPool::builder().max_size(4).build(db.url())?;
        let start = Instant::now();
        let report = migrate_all(&pool, FLEET_V2, MigrateOptions::new().jobs(jobs))?;
        let took = start.elapsed();
        if report.counts.applied != n || !report.is_clean() {
            return Err(format!("unexpected report: {:?}", report.counts).into());
        }
        if jobs == 1 {
            jobs1 = took;
        }
        line.push_str(&format!(
            " jobs={jobs} {:.0} ms ({:.2} ms/tenant, speed-up {:.2}x);",
            ms(took),
            ms(took) / n as f64,
            jobs1.as_secs_f64() / took.as_secs_f64()
        ));
    }
    let db = temp_database("apply_plain")?;
    build_fleet(db.url(), n)?;
    let (plain, applied) = plain_diesel_loop(db.url(), n, || FLEET_V2)?;
    if applied != n {
        return Err(format!("the plain diesel loop applied {applied} migrations, expected {n}").into());
    }
    line.push_str(&format!(
        " plain diesel harness schema by schema {:.0} ms (jobs=1 / plain {:.2}x)",
        ms(plain),
        jobs1.as_secs_f64() / plain.as_secs_f64()
    ));
    println!("{line}");
    Ok(())
}
