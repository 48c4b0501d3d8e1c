//! tenancy on Citus: what it costs next to plain diesel on the same
//! cluster, measured in the same run, and how long a tenant move pauses
//! that tenant's writes.
//!
//! ```text
//! cargo bench -p tenancy-tests --bench citus              # full run (about two minutes)
//! cargo bench -p tenancy-tests --bench citus -- --quick   # smoke run
//! ```
//!
//! Starts a throwaway Citus cluster (a coordinator and two workers on
//! loopback, `tenancy-devdb`), with a database of its own on every node.
//! "Plain" is diesel's r2d2 pool with the settings `TenantPool` uses (no
//! checkout test, statement cache on), naming the tenant's tables with
//! their schema, which the coordinator routes the same way. Variants
//! alternate within each round; the median of the per-round ratios is
//! reported, with the spread (max - min over median) of those ratios.
//! Lookups and transactions alternate operation by operation.
//!
//! * lookup: check out, select one row by key, return the connection;
//! * transaction: a transaction updating one row and reading it back;
//! * provisioning: a new distributed tenant with two tables (and, for
//!   tenancy, its migrations table and registry row) against the same
//!   DDL sent by hand, one statement per message;
//! * move: the longest gap between two acknowledged writes of one writer
//!   to a tenant while `citus_schema_move` moves it, in both transfer modes,
//!   next to the longest gap of the same writer with no move.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use tenancy_core::citus::{move_tenant, Node, TransferMode};
use tenancy_core::{provision, SchemaName, TenancyError, TenantPool};
use tenancy_tests::stats::median;

type PlainPool = Pool<ConnectionManager<PgConnection>>;

const V1: EmbeddedMigrations = embed_migrations!("migrations/citus_v1");

/// The DDL of `citus_v1`, schema-qualified, one statement per message.
const PLAIN_DDL: [&str; 2] = [
    "CREATE TABLE {s}.orders (id BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, amount INTEGER NOT NULL, note TEXT)",
    "CREATE TABLE {s}.events (id BIGSERIAL PRIMARY KEY, order_id BIGINT REFERENCES {s}.orders (id), kind TEXT)",
];

struct Settings {
    quick: bool,
    rounds: usize,
    sample: Duration,
    provisions: usize,
    rows: i64,
}

#[derive(QueryableByName)]
struct Note {
    #[diesel(sql_type = Text)]
    tenant: String,
}

/// Sets a plain pool's connections' search path to the benchmark's tenant.
#[derive(Debug)]
struct SearchPath;

impl diesel::r2d2::CustomizeConnection<PgConnection, diesel::r2d2::Error> for SearchPath {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute("SET search_path TO bench_tenant").map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Median and spread of per-round ratios.
fn summary(ratios: &[f64]) -> (f64, f64) {
    let med = median(ratios.to_vec());
    let max = ratios.iter().copied().fold(f64::MIN, f64::max);
    let min = ratios.iter().copied().fold(f64::MAX, f64::min);
    (med, (max - min) / med)
}

/// One point lookup in `table` on `conn`.
fn lookup_in(conn: &mut PgConnection, table: &str, id: i64) {
    let row: Note = diesel::sql_query(format!("SELECT tenant FROM {table} WHERE id = $1"))
        .bind::<BigInt, _>(id)
        .get_result(conn)
        .unwrap();
    std::hint::black_box(row.tenant);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let settings = if quick {
        Settings { quick, rounds: 3, sample: Duration::from_millis(300), provisions: 3, rows: 2_000 }
    } else {
        Settings { quick, rounds: 7, sample: Duration::from_secs(2), provisions: 10, rows: 100_000 }
    };
    let cluster =
        tenancy_devdb::citus::CitusCluster::start(2).unwrap_or_else(|e| panic!("no Citus cluster: {e}"));
    let db = cluster.create_unique_database("bench_citus").unwrap();
    let pool = TenantPool::builder().max_size(4).build(db.url()).unwrap();
    let citus = pool.citus().expect("Citus on the coordinator");
    let plain: PlainPool = Pool::builder()
        .max_size(4)
        .test_on_check_out(false)
        .build(ConnectionManager::<PgConnection>::new(db.url()))
        .unwrap();
    // Plain diesel again, every connection's search path set to the tenant
    // once when it opens, and unqualified names, as tenancy's queries are.
    let plain_path: PlainPool = Pool::builder()
        .max_size(4)
        .test_on_check_out(false)
        .connection_customizer(Box::new(SearchPath))
        .build(ConnectionManager::<PgConnection>::new(db.url()))
        .unwrap();
    println!(
        "citus benchmark ({}): Citus {} with a coordinator and 2 workers on 127.0.0.1, {} rounds of {:?} per variant",
        if settings.quick { "quick" } else { "full" },
        citus.version(),
        settings.rounds,
        settings.sample
    );

    let tenant = SchemaName::new("bench_tenant").unwrap();
    let placed = provision(&pool, &tenant, V1).unwrap().placement.unwrap();
    pool.tenant(&tenant)
        .unwrap()
        .batch_execute(
            "INSERT INTO orders (tenant, amount) SELECT 'bench_tenant', g FROM generate_series(1, 1000) g",
        )
        .unwrap();
    println!("tenant bench_tenant: {placed}\n");

    lookups_and_transactions(&settings, &pool, &plain, &plain_path, &tenant);
    provisioning(&settings, &pool, &plain);
    moves(&settings, &pool, &tenant);

    drop(pool);
    drop(plain);
    drop(plain_path);
    drop(db);
}

/// Runs `ours` and `theirs` alternately, one operation each, for `sample`
/// in all; operations per second of each. Alternating op by op (and which
/// goes first) lets the load of a busy machine fall on both alike.
fn paired(sample: Duration, mut ours: impl FnMut(), mut theirs: impl FnMut()) -> (f64, f64) {
    let started = Instant::now();
    let (mut ours_time, mut theirs_time, mut n) = (Duration::ZERO, Duration::ZERO, 0u32);
    while started.elapsed() < sample {
        // Each goes first every other time, so that neither always follows the other.
        for first in [n % 2 == 0, n % 2 != 0] {
            let t = Instant::now();
            if first {
                ours();
                ours_time += t.elapsed();
            } else {
                theirs();
                theirs_time += t.elapsed();
            }
        }
        n += 1;
    }
    (f64::from(n) / ours_time.as_secs_f64(), f64::from(n) / theirs_time.as_secs_f64())
}

fn lookups_and_transactions(
    settings: &Settings,
    pool: &TenantPool,
    plain: &PlainPool,
    plain_path: &PlainPool,
    tenant: &SchemaName,
) {
    let mut lookup = Vec::new();
    let mut lookup_path = Vec::new();
    let mut path_rates = Vec::new();
    let mut transaction = Vec::new();
    let mut rates = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let key = std::cell::Cell::new(0i64);
    let next = || {
        key.set(key.get() % 1000 + 1);
        key.get()
    };
    for _ in 0..settings.rounds {
        let (ours, theirs) = paired(
            settings.sample,
            || lookup_in(&mut pool.tenant(tenant).unwrap(), "orders", next()),
            || lookup_in(&mut plain.get().unwrap(), "bench_tenant.orders", next()),
        );
        lookup.push(ours / theirs);
        rates[0].push(ours);
        rates[1].push(theirs);

        let (ours, theirs) = paired(
            settings.sample,
            || lookup_in(&mut pool.tenant(tenant).unwrap(), "orders", next()),
            || lookup_in(&mut plain_path.get().unwrap(), "orders", next()),
        );
        lookup_path.push(ours / theirs);
        path_rates.push(theirs);

        let (ours, theirs) = paired(
            settings.sample,
            || {
                let id = next();
                pool.transaction(tenant, |conn| {
                    diesel::sql_query("UPDATE orders SET amount = amount + 1 WHERE id = $1")
                        .bind::<BigInt, _>(id)
                        .execute(conn)?;
                    let row: Note = diesel::sql_query("SELECT tenant FROM orders WHERE id = $1")
                        .bind::<BigInt, _>(id)
                        .get_result(conn)?;
                    std::hint::black_box(row.tenant);
                    Ok::<_, TenancyError>(())
                })
                .unwrap();
            },
            || {
                let id = next();
                let mut conn = plain.get().unwrap();
                conn.transaction(|conn| {
                    diesel::sql_query("UPDATE bench_tenant.orders SET amount = amount + 1 WHERE id = $1")
                        .bind::<BigInt, _>(id)
                        .execute(conn)?;
                    let row: Note = diesel::sql_query("SELECT tenant FROM bench_tenant.orders WHERE id = $1")
                        .bind::<BigInt, _>(id)
                        .get_result(conn)?;
                    std::hint::black_box(row.tenant);
                    Ok::<_, diesel::result::Error>(())
                })
                .unwrap();
            },
        );
        transaction.push(ours / theirs);
        rates[2].push(ours);
        rates[3].push(theirs);
    }
    let [ours_lookup, plain_lookup, ours_tx, plain_tx] = rates.map(median);
    let (l, ls) = summary(&lookup);
    let (t, ts) = summary(&transaction);
    let (p, ps) = summary(&lookup_path);
    let plain_path_lookup = median(path_rates);
    println!("same-tenant work, one thread, alternating op by op (throughput, tenancy / plain diesel; higher is better)");
    println!("  lookup       tenancy {ours_lookup:>8.0}/s  plain {plain_lookup:>8.0}/s  ratio {l:.2} (spread {ls:.2})");
    println!("  lookup       against plain diesel with the search path set once per connection, unqualified names:");
    println!(
        "                                 plain {plain_path_lookup:>8.0}/s  ratio {p:.2} (spread {ps:.2})"
    );
    println!(
        "  transaction  tenancy {ours_tx:>8.0}/s  plain {plain_tx:>8.0}/s  ratio {t:.2} (spread {ts:.2})\n"
    );
}

fn provisioning(settings: &Settings, pool: &TenantPool, plain: &PlainPool) {
    let mut ratios = Vec::new();
    let mut ours_ms = Vec::new();
    let mut plain_ms = Vec::new();
    let mut n = 0;
    for round in 0..settings.rounds {
        let mut ours = Duration::ZERO;
        let mut theirs = Duration::ZERO;
        for _ in 0..settings.provisions {
            n += 1;
            let schema = SchemaName::new(&format!("bench_p{round}_{n}")).unwrap();
            let started = Instant::now();
            provision(pool, &schema, V1).unwrap();
            ours += started.elapsed();

            let name = format!("bench_d{round}_{n}");
            let started = Instant::now();
            let mut conn = plain.get().unwrap();
            conn.transaction(|conn| {
                conn.batch_execute("SET LOCAL citus.enable_schema_based_sharding = on")?;
                conn.batch_execute(&format!("CREATE SCHEMA {name}"))?;
                for ddl in PLAIN_DDL {
                    conn.batch_execute(&ddl.replace("{s}", &name))?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .unwrap();
            theirs += started.elapsed();
        }
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / settings.provisions as f64;
        ours_ms.push(per(ours));
        plain_ms.push(per(theirs));
        ratios.push(ours.as_secs_f64() / theirs.as_secs_f64());
    }
    let (r, spread) = summary(&ratios);
    println!("provisioning a distributed tenant (time per tenant, tenancy / plain DDL; lower is better)");
    println!(
        "  tenancy {:.1} ms  plain DDL {:.1} ms  ratio {r:.2} (spread {spread:.2})\n",
        median(ours_ms),
        median(plain_ms)
    );
}

/// The longest gap between acknowledged writes of one writer to `tenant`
/// while `during` runs, and how long `during` took.
fn write_pause(pool: &TenantPool, tenant: &SchemaName, during: impl FnOnce()) -> (Duration, Duration) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut last = Instant::now();
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                pool.tenant(tenant)
                    .unwrap()
                    .batch_execute("INSERT INTO orders (tenant, amount) VALUES ('bench_tenant', 1)")
                    .unwrap();
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            longest
        });
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        during();
        let took = started.elapsed();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        (writer.join().unwrap(), took)
    })
}

fn moves(settings: &Settings, pool: &TenantPool, tenant: &SchemaName) {
    pool.tenant(tenant)
        .unwrap()
        .batch_execute(&format!(
            "INSERT INTO orders (tenant, amount) SELECT 'bench_tenant', g FROM generate_series(1, {}) g",
            settings.rows
        ))
        .unwrap();
    let nodes: Vec<Node> = tenancy_core::citus::nodes(pool).unwrap();
    let mut here = tenancy_core::citus::tenant_placement(pool, tenant).unwrap().node().cloned().unwrap();
    println!(
        "moving a tenant ({} orders) between workers while one thread writes to it (longest gap between writes)",
        settings.rows + 1000
    );
    let (idle, _) = write_pause(pool, tenant, || std::thread::sleep(Duration::from_millis(500)));
    println!("  no move           longest gap {:>7.1} ms", idle.as_secs_f64() * 1000.0);
    for mode in [TransferMode::BlockWrites, TransferMode::ForceLogical] {
        let mut gaps = Vec::new();
        let mut took = Vec::new();
        for _ in 0..settings.rounds.min(3) {
            let to = nodes.iter().find(|n| n.port != here.port && n.host == here.host).unwrap().clone();
            let (gap, duration) = write_pause(pool, tenant, || {
                move_tenant(pool, tenant, &to, mode).unwrap();
            });
            here = to;
            gaps.push(gap.as_secs_f64() * 1000.0);
            took.push(duration.as_secs_f64() * 1000.0);
        }
        println!(
            "  {:<17} longest gap {:>7.1} ms (median of {}; move took {:.0} ms)",
            mode.as_str(),
            median(gaps.clone()),
            gaps.len(),
            median(took)
        );
    }
}
