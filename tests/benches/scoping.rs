//! Scoping cost: what tenant scoping costs next to plain diesel + r2d2 doing
//! the same work, measured in the same run on a real PostgreSQL.
//!
//! ```text
//! cargo bench -p tenancy-tests --bench scoping              # full run (minutes)
//! cargo bench -p tenancy-tests --bench scoping -- --quick   # CI smoke run (seconds)
//! cargo bench -p tenancy-tests --bench scoping -- --only zipf --long   # steady state (minutes)
//! cargo bench -p tenancy-tests --bench scoping -- --only zipf --long --threads 4   # one thread count
//! ```
//!
//! Every variant of a group runs once per round, interleaved with the other
//! variants of the group, so slow drift of the machine hits all of them
//! alike; ratios are taken within a round and the median over rounds is
//! reported, with the spread (max - min over median) of each variant's
//! throughput. "Plain" is diesel's r2d2 pool on the same table in `public`,
//! once with r2d2's defaults (`SELECT 1` on every checkout) and once with the
//! same settings as `TenantPool` (no checkout test, statement cache on).
//!
//! The benchmark creates a database of its own (with `synchronous_commit =
//! off`, so commit flushes do not drown what is measured), one schema per
//! tenant, and drops it at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::error::Error;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sql_types::Text;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Zipf};
use tenancy_core::{
    tenant_scoped, SchemaName, TenancyError, Tenant, TenantAffinity, TenantContext, TenantPool,
};
use tenancy_tests::stats::{median, quantile};
use tenancy_tests::{items, StatementCount};

type BoxError = Box<dyn Error + Send + Sync>;
type PlainPool = Pool<ConnectionManager<PgConnection>>;
/// One request, run over and over by one benchmark thread.
type Op<'a> = Box<dyn FnMut() -> Result<(), BoxError> + 'a>;
/// Builds the request loop of thread `t`.
type MakeOp<'a> = Box<dyn Fn(usize) -> Op<'a> + Sync + 'a>;
/// A group of scenarios (a method of `Bench`), reporting its tables.
type Group<B> = fn(&B) -> Result<String, BoxError>;

/// The pool size of every pool in the benchmark.
const POOL_SIZE: u32 = 8;
/// Rows per tenant table.
const ROWS: i64 = 16;
/// Tenants created per transaction while setting up (bounded by the lock table).
const SCHEMAS_PER_BATCH: usize = 50;
/// Exponent of the Zipf distribution of tenant popularity.
const ZIPF_S: f64 = 1.0;

struct Settings {
    quick: bool,
    /// `--long`: long steady-state rounds (minutes per group).
    long: bool,
    /// `--only GROUP`: run one group of scenarios (for profiling).
    only: Option<String>,
    /// `--threads N`: the Zipf group at that thread count only.
    threads: Option<usize>,
    sample: Duration,
    warmup: Duration,
    rounds: usize,
    tenants: usize,
}

impl Settings {
    fn from_args() -> Self {
        // `cargo bench` passes `--bench`; only `--quick` means anything here.
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick");
        let long = args.iter().any(|a| a == "--long");
        let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
        let threads = args
            .iter()
            .position(|a| a == "--threads")
            .and_then(|i| args.get(i + 1))
            .and_then(|t| t.parse().ok());
        if quick {
            Settings {
                quick,
                long: false,
                only,
                threads,
                sample: Duration::from_millis(100),
                warmup: Duration::from_millis(100),
                rounds: 3,
                tenants: 1_000,
            }
        } else if long {
            Settings {
                quick,
                long,
                only,
                threads,
                sample: Duration::from_secs(5),
                warmup: Duration::from_secs(10),
                rounds: 4,
                tenants: 10_000,
            }
        } else {
            Settings {
                quick,
                long,
                only,
                threads,
                sample: Duration::from_millis(250),
                warmup: Duration::from_millis(1000),
                rounds: 20,
                tenants: 10_000,
            }
        }
    }
}

fn main() -> Result<(), BoxError> {
    let settings = Settings::from_args();
    let started = Instant::now();
    let db = tenancy_devdb::shared()?.create_unique_database("bench_scoping")?;
    let url = without_tls(db.url());
    let _ = SERVER_URL.set(url.clone());
    let tenants = create_tenants(&url, db.name(), settings.tenants)?;
    println!("{}", environment(&url, &settings)?);
    println!("setup: {} tenant schemas in {:.1} s\n", tenants.len(), started.elapsed().as_secs_f64());

    let bench = Bench { settings: &settings, url: &url, tenants: &tenants };
    let groups: [(&str, Group<_>); 8] = [
        ("point", Bench::point_lookups),
        ("switch", Bench::switch_statements),
        ("transaction", Bench::transactions),
        ("dal", Bench::dal),
        ("concurrency", Bench::concurrency),
        ("cpu", Bench::client_cpu),
        ("zipf", Bench::zipf),
        ("rotation", Bench::rotation),
    ];
    // Each group's tables as soon as it is done.
    for (name, group) in groups {
        if settings.only.as_deref().is_none_or(|only| only.split(',').any(|o| o == name)) {
            println!("{}", group(&bench)?);
        }
    }
    println!("total: {:.1} s", started.elapsed().as_secs_f64());
    drop(db);
    Ok(())
}

/// TLS on loopback costs every variant the same CPU per request and would
/// only dilute the differences measured; the benchmark connects without it.
fn without_tls(url: &str) -> String {
    if url.contains("sslmode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&sslmode=disable")
    } else {
        format!("{url}?sslmode=disable")
    }
}

/// Creates `public.items` (for plain diesel) and `count` tenant schemas with
/// the same table and rows.
fn create_tenants(url: &str, database: &str, count: usize) -> Result<Vec<SchemaName>, BoxError> {
    let mut conn = PgConnection::establish(url)?;
    // Database-wide, so every connection opened later gets it too.
    conn.batch_execute(&format!("ALTER DATABASE \"{database}\" SET synchronous_commit = off"))?;
    conn.batch_execute("SET synchronous_commit = off")?;
    let table = |schema: &str| {
        format!(
            "CREATE TABLE {schema}.items (id BIGINT PRIMARY KEY, tenant TEXT NOT NULL, body TEXT NOT NULL); \
             INSERT INTO {schema}.items SELECT g, '{schema}', 'body ' || g FROM generate_series(1, {ROWS}) g;"
        )
    };
    conn.batch_execute(&table("public"))?;
    let names: Vec<SchemaName> =
        (0..count).map(|i| SchemaName::new(&format!("t{i:05}"))).collect::<Result<_, _>>()?;
    for batch in names.chunks(SCHEMAS_PER_BATCH) {
        let mut sql = String::from("BEGIN;");
        for name in batch {
            let q = name.quoted();
            write!(sql, "CREATE SCHEMA {q}; {}", table(&q))?;
        }
        sql += "COMMIT;";
        conn.batch_execute(&sql)?;
    }
    conn.batch_execute("ANALYZE")?;
    tenancy_tests::register(url, &names);
    Ok(names)
}

/// The machine, the server and the command, for the report.
fn environment(url: &str, settings: &Settings) -> Result<String, BoxError> {
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        version: String,
    }
    let mut conn = PgConnection::establish(url)?;
    let version: Version = diesel::sql_query("SELECT version() AS version").get_result(&mut conn)?;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_else(|| String::from("unknown"));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    Ok(format!(
        "mode: {}; {} rounds of {} ms per variant\nmachine: {cpus} CPUs ({cpu}), {mem_gib:.0} GiB; load average at start: {}\nserver: {}",
        if settings.quick {
            "quick"
        } else if settings.long {
            "long"
        } else {
            "full"
        },
        settings.rounds,
        settings.sample.as_millis(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        version.version
    ))
}

/// A benchmark variant: a name, a thread count and the request loop.
struct Variant<'a> {
    name: String,
    threads: usize,
    make: MakeOp<'a>,
}

impl<'a> Variant<'a> {
    fn new(name: impl Into<String>, threads: usize, make: impl Fn(usize) -> Op<'a> + Sync + 'a) -> Self {
        Self { name: name.into(), threads, make: Box::new(make) }
    }
}

/// What one run of a variant's request loops did.
struct Sample {
    /// Requests per second, all threads together.
    rate: f64,
    requests: u64,
    /// CPU time of the benchmark's threads (the client: diesel, the pool).
    client: Duration,
}

/// `threads` threads running their request loops for `duration`.
fn throughput(threads: usize, duration: Duration, make: &MakeOp<'_>) -> Result<Sample, BoxError> {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || -> Result<(f64, u64, Duration), BoxError> {
                    let mut op = make(t);
                    barrier.wait();
                    let cpu = thread_cpu()?;
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < duration {
                        op()?;
                        n += 1;
                    }
                    Ok((n as f64 / start.elapsed().as_secs_f64(), n, thread_cpu()? - cpu))
                })
            })
            .collect();
        let mut sample = Sample { rate: 0.0, requests: 0, client: Duration::ZERO };
        for handle in handles {
            let (rate, n, cpu) = handle.join().map_err(|_| "a benchmark thread panicked")??;
            sample.rate += rate;
            sample.requests += n;
            sample.client += cpu;
        }
        Ok(sample)
    })
}

/// The database's server processes, for the CPU they use: the server must
/// run on this machine (its processes' `/proc/PID/schedstat`); elsewhere
/// the CPU columns stay empty.
struct ServerCpu {
    conn: PgConnection,
}

static SERVER_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl ServerCpu {
    fn open() -> Option<Self> {
        let conn = PgConnection::establish(SERVER_URL.get()?).ok()?;
        let mut cpu = Self { conn };
        // Only when the server's processes are readable here.
        cpu.snapshot().filter(|s| !s.is_empty()).map(|_| cpu)
    }

    /// Nanoseconds on CPU so far of each server process of the database (but this one).
    fn snapshot(&mut self) -> Option<std::collections::HashMap<i32, u64>> {
        #[derive(QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        let pids: Vec<Pid> = diesel::sql_query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .load(&mut self.conn)
        .ok()?;
        let mut out = std::collections::HashMap::new();
        for Pid { pid } in pids {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/schedstat")) else { continue };
            if let Some(ns) = stat.split_whitespace().next().and_then(|n| n.parse().ok()) {
                out.insert(pid, ns);
            }
        }
        Some(out)
    }

    /// Server CPU used between `before` and now (processes gone meanwhile are not counted).
    fn since(&mut self, before: &std::collections::HashMap<i32, u64>) -> Option<Duration> {
        let after = self.snapshot()?;
        let ns = after.iter().map(|(pid, ns)| ns.saturating_sub(before.get(pid).copied().unwrap_or(0))).sum();
        Some(Duration::from_nanos(ns))
    }
}

/// Throughput of each variant in each round.
struct Measured {
    names: Vec<String>,
    threads: Vec<usize>,
    /// `rounds[r][v]`: requests per second of variant `v` in round `r`.
    rounds: Vec<Vec<f64>>,
    /// Per variant, over all rounds: requests, client CPU, server CPU (when readable).
    cpu: Vec<(u64, Duration, Option<Duration>)>,
}

fn measure(settings: &Settings, variants: &[Variant<'_>]) -> Result<Measured, BoxError> {
    measure_with_warmup(settings, settings.warmup, variants)
}

/// Warms every variant up, then runs `settings.rounds` rounds of all of
/// them; each round starts at another variant, so that no variant always
/// follows the same neighbour.
fn measure_with_warmup(
    settings: &Settings,
    warmup: Duration,
    variants: &[Variant<'_>],
) -> Result<Measured, BoxError> {
    for v in variants {
        throughput(v.threads, warmup, &v.make)?;
    }
    let mut server = ServerCpu::open();
    let mut cpu = vec![(0, Duration::ZERO, server.as_ref().map(|_| Duration::ZERO)); variants.len()];
    let mut rounds = Vec::with_capacity(settings.rounds);
    for r in 0..settings.rounds {
        let mut round = vec![0.0; variants.len()];
        for k in 0..variants.len() {
            let v = (r + k) % variants.len();
            let before = server.as_mut().and_then(ServerCpu::snapshot);
            let sample = throughput(variants[v].threads, settings.sample, &variants[v].make)?;
            let used = match (server.as_mut(), before) {
                (Some(server), Some(before)) => server.since(&before),
                _ => None,
            };
            round[v] = sample.rate;
            let (requests, client, on_server) = &mut cpu[v];
            *requests += sample.requests;
            *client += sample.client;
            *on_server = on_server.zip(used).map(|(total, used)| total + used);
        }
        rounds.push(round);
    }
    Ok(Measured {
        names: variants.iter().map(|v| v.name.clone()).collect(),
        threads: variants.iter().map(|v| v.threads).collect(),
        rounds,
        cpu,
    })
}

impl Measured {
    fn index(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).unwrap_or_else(|| panic!("no variant {name}"))
    }

    fn throughput(&self, v: usize) -> f64 {
        median(self.rounds.iter().map(|r| r[v]).collect())
    }

    /// Median over rounds of `v`'s throughput divided by `base`'s in the same round.
    fn ratio(&self, v: usize, base: usize) -> f64 {
        median(self.rounds.iter().map(|r| r[v] / r[base]).collect())
    }

    /// The interquartile range of `v`'s per-round ratio to `base`.
    fn ratio_iqr(&self, v: usize, base: usize) -> (f64, f64) {
        let ratios: Vec<f64> = self.rounds.iter().map(|r| r[v] / r[base]).collect();
        (quantile(ratios.clone(), 0.25), quantile(ratios, 0.75))
    }

    /// " client | server |" CPU microseconds per request of `v` over all rounds.
    fn cpu_cells(&self, v: usize) -> String {
        let (requests, client, server) = self.cpu[v];
        let per = |d: Duration| d.as_secs_f64() * 1e6 / requests.max(1) as f64;
        let server = server.map_or_else(|| String::from("-"), |d| format!("{:.0}", per(d)));
        format!(" {:.0} | {server} |", per(client))
    }

    /// Microseconds per request as one thread sees it.
    fn micros(&self, v: usize) -> f64 {
        self.threads[v] as f64 * 1e6 / self.throughput(v)
    }

    /// A markdown table; ratios against the two plain baselines named.
    fn table(&self, title: &str, plain_defaults: &str, plain_same: &str) -> String {
        format!("### {title}\n\n{HEADER}{}\n", self.rows(plain_defaults, plain_same, |_| None))
    }

    /// The table's rows; `extra(v)` appends cells to variant `v`'s row.
    fn rows(
        &self,
        plain_defaults: &str,
        plain_same: &str,
        extra: impl Fn(usize) -> Option<String>,
    ) -> String {
        let (d, s) = (self.index(plain_defaults), self.index(plain_same));
        let mut out = String::new();
        for v in 0..self.names.len() {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.1} | {:.3}× | {:.3}× | {:.3}–{:.3} |{}",
                self.names[v],
                self.threads[v],
                self.throughput(v),
                self.micros(v),
                self.ratio(v, d),
                self.ratio(v, s),
                self.ratio_iqr(v, s).0,
                self.ratio_iqr(v, s).1,
                extra(v).unwrap_or_default()
            );
        }
        out
    }
}

const HEADER: &str = "| variant | threads | req/s | µs/req | vs plain (r2d2 defaults) | vs plain (same settings) | IQR of that ratio |\n|---|---:|---:|---:|---:|---:|---:|\n";
const PLAIN_DEFAULTS: &str = "plain diesel, r2d2 defaults";
const PLAIN_SAME: &str = "plain diesel, same settings";
const PLAIN_TX_DEFAULTS: &str = "plain diesel transaction, r2d2 defaults";
const PLAIN_TX_SAME: &str = "plain diesel transaction, same settings";
const NAIVE_SAME: &str = "SET search_path per checkout, same tenant, same settings";
const NAIVE_DEFAULTS: &str = "SET search_path per checkout, same tenant, r2d2 defaults";
const SWITCH_NO_REPLAN: &str = "plain + our switch statement, same path (round trip, no re-plan)";
const MODEL_MRU: &str = "model pool, switch the connection handed out (as with affinity off)";
const MODEL_LRU: &str = "model pool, switch the least recently used idle connection";
const MODEL_OPTIMAL: &str =
    "model pool, offline optimum (switch the connection whose tenant is asked for again last, knowing every request in advance)";
const LOOKUP_BY_HAND: &str = "point lookup, pool.tenant() by hand";
const LOOKUP_DAL: &str = "point lookup, #[tenant_scoped] method";
const TX_BY_HAND: &str = "transaction, pool.transaction() by hand";
const TX_DAL: &str = "transaction, #[tenant_scoped(transaction)] method";

/// Tenant indexes `0..n` whose popularity follows Zipf's law: index `k`
/// is drawn with probability proportional to `1 / (k + 1)^s`.
struct Popularity {
    zipf: Zipf<f64>,
    n: usize,
}

impl Popularity {
    fn new(n: usize, s: f64) -> Result<Self, BoxError> {
        Ok(Self { zipf: Zipf::new(n as f64, s)?, n })
    }

    fn sample(&self, rng: &mut SmallRng) -> usize {
        // Zipf draws ranks 1..=n.
        (self.zipf.sample(rng) as usize).clamp(1, self.n) - 1
    }
}

/// The random numbers of benchmark thread `t`: the same on every run.
fn rng_of_thread(t: usize) -> SmallRng {
    SmallRng::seed_from_u64(t as u64)
}

struct Bench<'a> {
    settings: &'a Settings,
    url: &'a str,
    tenants: &'a [SchemaName],
}

fn plain_pool(url: &str, test_on_check_out: bool) -> Result<PlainPool, BoxError> {
    Ok(Pool::builder()
        .max_size(POOL_SIZE)
        .test_on_check_out(test_on_check_out)
        .build(ConnectionManager::<PgConnection>::new(url))?)
}

fn our_pool(url: &str, guard: bool, affinity: TenantAffinity) -> Result<TenantPool, BoxError> {
    let pool = TenantPool::builder()
        .max_size(POOL_SIZE)
        .session_guard(guard)
        .tenant_affinity(affinity)
        .build(url)?;
    wait_for_connections(&pool)?;
    Ok(pool)
}

/// `TenantPool` opens its connections in the background; measure only once they are all there.
fn wait_for_connections(pool: &TenantPool) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.state().idle_connections < POOL_SIZE {
        if Instant::now() > deadline {
            return Err("the pool did not open its connections within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The point lookup every variant sends: one row by primary key.
fn lookup(conn: &mut PgConnection, id: i64) -> Result<(), BoxError> {
    let body: String = items::table.find(id).select(items::body).first(conn)?;
    std::hint::black_box(body);
    Ok(())
}

/// The small read-write transaction body: one update, one read.
fn read_write(conn: &mut PgConnection, id: i64) -> Result<(), diesel::result::Error> {
    diesel::update(items::table.find(id)).set(items::body.eq("updated")).execute(conn)?;
    let body: String = items::table.find(id % ROWS + 1).select(items::body).first(conn)?;
    std::hint::black_box(body);
    Ok(())
}

fn row(n: u64) -> i64 {
    (n % ROWS as u64) as i64 + 1
}

/// The "SET search_path on every checkout" approach seen in the wild.
fn naive_set(conn: &mut PgConnection, schema: &SchemaName) -> Result<(), BoxError> {
    conn.batch_execute(&format!("SET search_path TO {}, public", schema.quoted()))?;
    Ok(())
}

/// The statement `TenantPool` switches a connection's tenant with (sent
/// with the same schema each time, it measures the round trip alone: no
/// search_path change, so no re-planning).
fn tenant_switch(conn: &mut PgConnection, schema: &SchemaName) -> Result<(), BoxError> {
    diesel::sql_query("SELECT set_config('search_path', $1, false) WHERE to_regnamespace($2) IS NOT NULL")
        .bind::<Text, _>(schema.quoted())
        .bind::<Text, _>(schema.quoted())
        .execute(conn)?;
    Ok(())
}

fn plain_lookup<'p>(pool: &'p PlainPool) -> impl Fn(usize) -> Op<'p> + Sync + 'p {
    move |_t| {
        let mut n = 0u64;
        Box::new(move || {
            n += 1;
            lookup(&mut *pool.get()?, row(n))
        })
    }
}

/// `tenant()` then the lookup, tenants taken in turn from the first `count`.
fn tenant_lookup<'p>(
    pool: &'p TenantPool,
    tenants: &'p [SchemaName],
    count: usize,
) -> impl Fn(usize) -> Op<'p> + Sync + 'p {
    move |t| {
        let mut n = t as u64;
        Box::new(move || {
            n += 1;
            lookup(&mut *pool.tenant(&tenants[(n as usize) % count])?, row(n))
        })
    }
}

/// `SET search_path` on every checkout, then the lookup.
fn naive_lookup<'p>(
    pool: &'p PlainPool,
    tenants: &'p [SchemaName],
    count: usize,
) -> impl Fn(usize) -> Op<'p> + Sync + 'p {
    move |_t| {
        let mut n = 0u64;
        Box::new(move || {
            n += 1;
            let mut conn = pool.get()?;
            naive_set(&mut conn, &tenants[(n as usize) % count])?;
            lookup(&mut conn, row(n))
        })
    }
}

fn plain_transaction<'p>(pool: &'p PlainPool) -> impl Fn(usize) -> Op<'p> + Sync + 'p {
    move |_t| {
        let mut n = 0u64;
        Box::new(move || {
            n += 1;
            pool.get()?.transaction(|c| read_write(c, row(n)))?;
            Ok(())
        })
    }
}

fn tenant_transaction<'p>(
    pool: &'p TenantPool,
    tenants: &'p [SchemaName],
    count: usize,
) -> impl Fn(usize) -> Op<'p> + Sync + 'p {
    move |_t| {
        let mut n = 0u64;
        Box::new(move || {
            n += 1;
            pool.transaction(&tenants[(n as usize) % count], |c| {
                read_write(c, row(n)).map_err(TenancyError::from)
            })?;
            Ok(())
        })
    }
}

fn naive_transaction<'p>(
    pool: &'p PlainPool,
    tenants: &'p [SchemaName],
    count: usize,
) -> impl Fn(usize) -> Op<'p> + Sync + 'p {
    move |_t| {
        let mut n = 0u64;
        Box::new(move || {
            n += 1;
            let mut conn = pool.get()?;
            naive_set(&mut conn, &tenants[(n as usize) % count])?;
            conn.transaction(|c| read_write(c, row(n)))?;
            Ok(())
        })
    }
}

/// Zipf-distributed tenants; counts requests so that the hit rate can be
/// derived from the statements the pool's connections sent, and, given a
/// [`Split`] (one thread only), times hits and switches apart: a request
/// that sent more than its lookup switched.
fn zipf_lookup<'p>(
    pool: &'p TenantPool,
    tenants: &'p [SchemaName],
    zipf: &'p Popularity,
    (requests, statements): (&'p AtomicU64, &'p StatementCount),
    split: Option<&'p Split>,
) -> impl Fn(usize) -> Op<'p> + Sync + 'p {
    move |t| {
        let mut rng = rng_of_thread(t);
        let mut n = 0u64;
        Box::new(move || {
            n += 1;
            let schema = &tenants[zipf.sample(&mut rng)];
            requests.fetch_add(1, Ordering::Relaxed);
            let Some(split) = split else { return lookup(&mut *pool.tenant(schema)?, row(n)) };
            let sent = statements.0.load(Ordering::Relaxed);
            let started = Instant::now();
            lookup(&mut *pool.tenant(schema)?, row(n))?;
            split.record(statements.0.load(Ordering::Relaxed) - sent == 1, started.elapsed());
            Ok(())
        })
    }
}

/// Time per request, hits and switches apart (one thread).
#[derive(Default)]
struct Split {
    hit_ns: AtomicU64,
    hits: AtomicU64,
    switch_ns: AtomicU64,
    switches: AtomicU64,
}

impl Split {
    fn record(&self, hit: bool, took: Duration) {
        let (ns, count) = if hit { (&self.hit_ns, &self.hits) } else { (&self.switch_ns, &self.switches) };
        ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        count.fetch_add(1, Ordering::Relaxed);
    }

    fn reset(&self) {
        for a in [&self.hit_ns, &self.hits, &self.switch_ns, &self.switches] {
            a.store(0, Ordering::Relaxed);
        }
    }

    /// "µs per hit / µs per switch".
    fn describe(&self) -> String {
        let micros = |ns: &AtomicU64, n: &AtomicU64| {
            ns.load(Ordering::Relaxed) as f64 / 1000.0 / n.load(Ordering::Relaxed).max(1) as f64
        };
        format!(
            "{:.1} µs per hit, {:.1} µs per switching request",
            micros(&self.hit_ns, &self.hits),
            micros(&self.switch_ns, &self.switches)
        )
    }
}

/// Zipf-distributed tenants, `SET search_path` on every checkout.
fn zipf_naive_lookup<'p>(
    pool: &'p PlainPool,
    tenants: &'p [SchemaName],
    zipf: &'p Popularity,
) -> impl Fn(usize) -> Op<'p> + Sync + 'p {
    move |t| {
        let mut rng = rng_of_thread(t);
        let mut n = 0u64;
        Box::new(move || {
            n += 1;
            let mut conn = pool.get()?;
            naive_set(&mut conn, &tenants[zipf.sample(&mut rng)])?;
            lookup(&mut conn, row(n))
        })
    }
}

impl Bench<'_> {
    fn rotating(&self, n: usize) -> usize {
        n.min(self.tenants.len())
    }

    /// Scenarios 1-3: point lookups on one thread: same tenant, rotating
    /// tenants, and the SET-on-every-checkout approach; the switch cost.
    fn point_lookups(&self) -> Result<String, BoxError> {
        let (url, tenants) = (self.url, self.tenants);
        let plain_default = plain_pool(url, true)?;
        let plain_same = plain_pool(url, false)?;
        let ours = our_pool(url, true, TenantAffinity::Adaptive)?;
        let ours_unguarded = our_pool(url, false, TenantAffinity::Adaptive)?;
        let ours_no_affinity = our_pool(url, true, TenantAffinity::Never)?;
        let many = self.rotating(10_000);
        let rotating_many = format!("tenant(), rotating over {many}");
        let naive_many = format!("SET search_path per checkout, rotating over {many}");
        let variants = vec![
            Variant::new(PLAIN_DEFAULTS, 1, plain_lookup(&plain_default)),
            Variant::new(PLAIN_SAME, 1, plain_lookup(&plain_same)),
            Variant::new("tenant(), same tenant", 1, tenant_lookup(&ours, tenants, 1)),
            Variant::new(
                "tenant(), same tenant, session guard off",
                1,
                tenant_lookup(&ours_unguarded, tenants, 1),
            ),
            Variant::new(NAIVE_SAME, 1, naive_lookup(&plain_same, tenants, 1)),
            Variant::new(NAIVE_DEFAULTS, 1, naive_lookup(&plain_default, tenants, 1)),
            Variant::new("tenant(), rotating over 100", 1, tenant_lookup(&ours, tenants, self.rotating(100))),
            Variant::new(rotating_many.clone(), 1, tenant_lookup(&ours, tenants, many)),
            Variant::new(
                "tenant(), rotating over 100, affinity off",
                1,
                tenant_lookup(&ours_no_affinity, tenants, self.rotating(100)),
            ),
            Variant::new(
                "SET search_path per checkout, rotating over 100",
                1,
                naive_lookup(&plain_same, tenants, self.rotating(100)),
            ),
            // Fewer tenants than connections: every tenant can keep a connection of its own.
            Variant::new("tenant(), rotating over 4", 1, tenant_lookup(&ours, tenants, self.rotating(4))),
            Variant::new(
                "tenant(), rotating over 4, affinity off",
                1,
                tenant_lookup(&ours_no_affinity, tenants, self.rotating(4)),
            ),
            Variant::new(
                "SET search_path per checkout, rotating over 4",
                1,
                naive_lookup(&plain_same, tenants, self.rotating(4)),
            ),
            Variant::new(naive_many.clone(), 1, naive_lookup(&plain_same, tenants, many)),
            Variant::new(SWITCH_NO_REPLAN, 1, |_t| -> Op<'_> {
                let plain_same = &plain_same;
                let mut n = 0u64;
                Box::new(move || {
                    n += 1;
                    let mut conn = plain_same.get()?;
                    tenant_switch(&mut conn, &tenants[0])?;
                    lookup(&mut conn, row(n))
                })
            }),
        ];
        let m = measure(self.settings, &variants)?;
        let mut out =
            m.table("Point lookup, one thread, pool of 8 (scenarios 1-3)", PLAIN_DEFAULTS, PLAIN_SAME);
        let same = m.micros(m.index("tenant(), same tenant"));
        let rotating = m.micros(m.index("tenant(), rotating over 100"));
        let rotating_many_us = m.micros(m.index(&rotating_many));
        let round_trip = m.micros(m.index(SWITCH_NO_REPLAN)) - m.micros(m.index(PLAIN_SAME));
        let ours_same = m.index("tenant(), same tenant");
        let _ = writeln!(
            out,
            "- ours vs SET search_path per checkout, same tenant: {:.2}× (same settings), {:.2}× (r2d2 defaults)",
            m.ratio(ours_same, m.index(NAIVE_SAME)),
            m.ratio(ours_same, m.index(NAIVE_DEFAULTS))
        );
        let _ = writeln!(
            out,
            "- ours vs SET search_path per checkout, rotating over 100: {:.2}×; over {many}: {:.2}×",
            m.ratio(
                m.index("tenant(), rotating over 100"),
                m.index("SET search_path per checkout, rotating over 100")
            ),
            m.ratio(m.index(&rotating_many), m.index(&naive_many))
        );
        let _ = writeln!(
            out,
            "- switch cost (rotating over 100 minus same tenant): {:.1} µs; the switch statement's round trip alone (same path, no re-plan): {round_trip:.1} µs; PostgreSQL re-planning after the search_path change: the remaining {:.1} µs",
            rotating - same,
            rotating - same - round_trip
        );
        let _ = writeln!(
            out,
            "- per request, rotating over 100 vs over {many}: {rotating:.1} µs vs {rotating_many_us:.1} µs\n"
        );
        Ok(out)
    }

    /// What the switching statement costs in other forms, each followed by
    /// the lookup, on plain connections, tenants rotating over 100.
    fn switch_statements(&self) -> Result<String, BoxError> {
        let tenants = &self.tenants[..self.rotating(100)];
        let plain_same = plain_pool(self.url, false)?;
        let with = |switch: fn(&mut PgConnection, &SchemaName) -> Result<(), BoxError>| {
            let pool = &plain_same;
            move |_t: usize| -> Op<'_> {
                let mut n = 0u64;
                Box::new(move || {
                    n += 1;
                    let mut conn = pool.get()?;
                    switch(&mut conn, &tenants[n as usize % tenants.len()])?;
                    lookup(&mut conn, row(n))
                })
            }
        };
        let variants = vec![
            Variant::new(PLAIN_DEFAULTS, 1, plain_lookup(&plain_same)),
            Variant::new(PLAIN_SAME, 1, plain_lookup(&plain_same)),
            Variant::new(
                "set_config + to_regnamespace, bind parameters",
                1,
                with(tenant_switch),
            ),
            Variant::new(
                "simple query: SELECT 'schema'::regnamespace; SET search_path TO schema (TenantPool's switch)",
                1,
                with(|c, s| {
                    let q = s.quoted();
                    c.batch_execute(&format!("SELECT '{q}'::regnamespace; SET search_path TO {q}"))?;
                    Ok(())
                }),
            ),
            Variant::new(
                "simple query: SET search_path TO schema (no existence check)",
                1,
                with(|c, s| {
                    c.batch_execute(&format!("SET search_path TO {}", s.quoted()))?;
                    Ok(())
                }),
            ),
        ];
        let m = measure(self.settings, &variants)?;
        let mut out = m.table(
            "Switch statement forms, each + the lookup, rotating over 100 tenants, plain connections",
            PLAIN_DEFAULTS,
            PLAIN_SAME,
        );
        out.push_str("(both baselines are the plain pool with the same settings here)\n\n");
        Ok(out)
    }

    /// Scenario 4: a small read-write transaction.
    fn transactions(&self) -> Result<String, BoxError> {
        let (url, tenants) = (self.url, self.tenants);
        let plain_default = plain_pool(url, true)?;
        let plain_same = plain_pool(url, false)?;
        let ours = our_pool(url, true, TenantAffinity::Adaptive)?;
        let ours_unguarded = our_pool(url, false, TenantAffinity::Adaptive)?;
        let many = self.rotating(10_000);
        let variants = vec![
            Variant::new(PLAIN_TX_DEFAULTS, 1, plain_transaction(&plain_default)),
            Variant::new(PLAIN_TX_SAME, 1, plain_transaction(&plain_same)),
            Variant::new("transaction(), same tenant", 1, tenant_transaction(&ours, tenants, 1)),
            Variant::new(
                "transaction(), same tenant, session guard off",
                1,
                tenant_transaction(&ours_unguarded, tenants, 1),
            ),
            Variant::new(
                "transaction(), rotating over 100",
                1,
                tenant_transaction(&ours, tenants, self.rotating(100)),
            ),
            Variant::new(
                format!("transaction(), rotating over {many}"),
                1,
                tenant_transaction(&ours, tenants, many),
            ),
            Variant::new(
                "SET search_path per checkout + transaction, same tenant",
                1,
                naive_transaction(&plain_same, tenants, 1),
            ),
            Variant::new(
                "SET search_path per checkout + transaction, rotating over 100",
                1,
                naive_transaction(&plain_same, tenants, self.rotating(100)),
            ),
        ];
        let m = measure(self.settings, &variants)?;
        let mut out = m.table(
            "Read-write transaction (UPDATE + SELECT), one thread, pool of 8 (scenario 4)",
            PLAIN_TX_DEFAULTS,
            PLAIN_TX_SAME,
        );
        let _ = writeln!(
            out,
            "- ours vs SET search_path per checkout + transaction: same tenant {:.2}×, rotating over 100 {:.2}×\n",
            m.ratio(m.index("transaction(), same tenant"), m.index("SET search_path per checkout + transaction, same tenant")),
            m.ratio(m.index("transaction(), rotating over 100"), m.index("SET search_path per checkout + transaction, rotating over 100")),
        );
        Ok(out)
    }

    /// Scenario 5: the same work through `#[tenant_scoped]` DAL methods.
    fn dal(&self) -> Result<String, BoxError> {
        let (url, tenants) = (self.url, self.tenants);
        let plain_default = plain_pool(url, true)?;
        let plain_same = plain_pool(url, false)?;
        let ours = our_pool(url, true, TenantAffinity::Adaptive)?;
        let dal = ItemsDal { tenant: ours.for_tenant(tenants[0].clone()) };
        let dal = &dal;
        let variants = vec![
            Variant::new(PLAIN_DEFAULTS, 1, plain_lookup(&plain_default)),
            Variant::new(PLAIN_SAME, 1, plain_lookup(&plain_same)),
            Variant::new(LOOKUP_BY_HAND, 1, tenant_lookup(&ours, tenants, 1)),
            Variant::new(LOOKUP_DAL, 1, |_t| -> Op<'_> {
                let mut n = 0u64;
                Box::new(move || {
                    n += 1;
                    std::hint::black_box(dal.body(row(n))?);
                    Ok(())
                })
            }),
            Variant::new(TX_BY_HAND, 1, tenant_transaction(&ours, tenants, 1)),
            Variant::new(TX_DAL, 1, |_t| -> Op<'_> {
                let mut n = 0u64;
                Box::new(move || {
                    n += 1;
                    dal.read_write(row(n))?;
                    Ok(())
                })
            }),
        ];
        let m = measure(self.settings, &variants)?;
        let mut out = m.table(
            "#[tenant_scoped] DAL methods vs the pool by hand, same tenant, one thread (scenario 5)",
            PLAIN_DEFAULTS,
            PLAIN_SAME,
        );
        let _ = writeln!(
            out,
            "- #[tenant_scoped] vs by hand: point lookup {:.3}×, transaction {:.3}×\n",
            m.ratio(m.index(LOOKUP_DAL), m.index(LOOKUP_BY_HAND)),
            m.ratio(m.index(TX_DAL), m.index(TX_BY_HAND)),
        );
        Ok(out)
    }

    /// Scenario 6: 1, 4 and 16 threads on a pool of 8.
    fn concurrency(&self) -> Result<String, BoxError> {
        let (url, tenants) = (self.url, self.tenants);
        let plain_default = plain_pool(url, true)?;
        let plain_same = plain_pool(url, false)?;
        let ours = our_pool(url, true, TenantAffinity::Adaptive)?;
        let ours_unguarded = our_pool(url, false, TenantAffinity::Adaptive)?;
        let mut out =
            format!("### Point lookup, 1, 4 and 16 threads on a pool of 8 (scenario 6)\n\n{HEADER}");
        for threads in [1, 4, 16] {
            let variants = vec![
                Variant::new(PLAIN_DEFAULTS, threads, plain_lookup(&plain_default)),
                Variant::new(PLAIN_SAME, threads, plain_lookup(&plain_same)),
                Variant::new("tenant(), all threads one tenant", threads, tenant_lookup(&ours, tenants, 1)),
                Variant::new(
                    "tenant(), all threads one tenant, session guard off",
                    threads,
                    tenant_lookup(&ours_unguarded, tenants, 1),
                ),
                Variant::new("tenant(), each thread its own tenant", threads, |t| -> Op<'_> {
                    let schema = &tenants[t % tenants.len()];
                    let ours = &ours;
                    let mut n = 0u64;
                    Box::new(move || {
                        n += 1;
                        lookup(&mut *ours.tenant(schema)?, row(n))
                    })
                }),
            ];
            let m = measure(self.settings, &variants)?;
            out += &m.rows(PLAIN_DEFAULTS, PLAIN_SAME, |_| None);
        }
        out.push('\n');
        Ok(out)
    }

    /// Client CPU per request (user + system time of the requesting
    /// thread): what the pool itself costs, free of the scheduling noise
    /// that wall-clock throughput picks up on a shared machine.
    fn client_cpu(&self) -> Result<String, BoxError> {
        let (url, tenants) = (self.url, self.tenants);
        let plain_same = plain_pool(url, false)?;
        let ours = our_pool(url, true, TenantAffinity::Adaptive)?;
        let ours_unguarded = our_pool(url, false, TenantAffinity::Adaptive)?;
        let requests: u64 = if self.settings.quick { 2_000 } else { 40_000 };
        let cases: Vec<(&str, MakeOp<'_>)> = vec![
            ("plain diesel, same settings: point lookup", Box::new(plain_lookup(&plain_same))),
            ("tenant(), same tenant: point lookup", Box::new(tenant_lookup(&ours, tenants, 1))),
            (
                "tenant(), same tenant, session guard off: point lookup",
                Box::new(tenant_lookup(&ours_unguarded, tenants, 1)),
            ),
            ("plain diesel transaction, same settings", Box::new(plain_transaction(&plain_same))),
            ("transaction(), same tenant", Box::new(tenant_transaction(&ours, tenants, 1))),
            (
                "transaction(), same tenant, session guard off",
                Box::new(tenant_transaction(&ours_unguarded, tenants, 1)),
            ),
        ];
        let mut out = format!(
            "### Client CPU per request, one thread ({requests} requests each, median of 3)\n\n| variant | client CPU µs/req |\n|---|---:|\n"
        );
        for (i, (name, make)) in cases.iter().enumerate() {
            // Transactions take four statements; fewer of them measure as precisely.
            let requests = if i < 3 { requests } else { requests / 4 };
            cpu_per_request(requests / 10, make(0))?;
            let runs = (0..3).map(|_| cpu_per_request(requests, make(0))).collect::<Result<Vec<_>, _>>()?;
            let _ = writeln!(out, "| {name} | {:.2} |", median(runs));
        }
        // What the session guard does per statement, without the database.
        let query = items::table.find(7i64).select(items::body).limit(1);
        let mut buf = String::with_capacity(256);
        let format_ns = nanos_per_call(20_000, || {
            buf.clear();
            let _ = write!(SqlOnly(&mut buf), "{}", diesel::debug_query::<diesel::pg::Pg, _>(&query));
            std::hint::black_box(&buf);
        });
        let sql = buf.clone();
        let prefilter_ns = nanos_per_call(20_000, || {
            std::hint::black_box(tenancy_core::__private::session_guard_fast_path(std::hint::black_box(
                &sql,
            )));
        });
        let _ = writeln!(
            out,
            "\n- the guard's formatting of the lookup's SQL (`{sql}`) alone: {:.2} µs per statement; the guard's fast path over that text: {:.3} µs (it says {})\n",
            format_ns / 1000.0,
            prefilter_ns / 1000.0,
            tenancy_core::__private::session_guard_fast_path(&sql)
        );
        Ok(out)
    }

    /// Uniform rotation over 1 to 10,000 tenants: plain diesel, SET on every
    /// checkout and ours, µs per request; writes the plot (full runs).
    fn rotation(&self) -> Result<String, BoxError> {
        let (url, tenants) = (self.url, self.tenants);
        let plain_default = plain_pool(url, true)?;
        let plain_same = plain_pool(url, false)?;
        let mut counts: Vec<usize> =
            [1, 4, 16, 100, 1_000, 10_000].iter().map(|&n| self.rotating(n)).collect();
        counts.dedup();
        let mut out = String::from(
            "### Uniform rotation, one thread, pool of 8 (each row measured in rounds of its own, fresh pools)\n\n\
             | tenants in rotation | plain µs/req | SET per checkout µs/req | ours µs/req | ours vs plain | IQR | ours vs SET per checkout | ours' hit rate | ours' backend memory, 8 backends | home slots µs/req | home slots vs SET per checkout | home slots' hit rate | home slots' backend memory |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let rate = |pool: &TenantPool| {
            let state = pool.state();
            state.hits as f64 / (state.hits + state.switches).max(1) as f64 * 100.0
        };
        let mib = |b: Option<i64>| b.map_or(0.0, |b| b as f64 / 1048576.0);
        let mut points = Vec::new();
        for &n in &counts {
            // Pools of their own per row: fewer connections open at once.
            let ours = our_pool(url, true, TenantAffinity::Adaptive)?;
            let home = our_pool(url, true, TenantAffinity::Always)?;
            tenancy_core::__private::set_home_slots(&home, true);
            let variants = vec![
                Variant::new(PLAIN_DEFAULTS, 1, plain_lookup(&plain_default)),
                Variant::new(PLAIN_SAME, 1, plain_lookup(&plain_same)),
                Variant::new("ours", 1, tenant_lookup(&ours, tenants, n)),
                Variant::new("naive", 1, naive_lookup(&plain_same, tenants, n)),
                Variant::new("home", 1, tenant_lookup(&home, tenants, n)),
            ];
            let m = measure(self.settings, &variants)?;
            let (plain, o, naive, h) =
                (m.index(PLAIN_SAME), m.index("ours"), m.index("naive"), m.index("home"));
            let (hits, home_hits) = (rate(&ours), rate(&home));
            let memory = mib(tenant_pool_memory(&ours, tenants)?);
            let home_memory = mib(tenant_pool_memory(&home, tenants)?);
            let (q1, q3) = m.ratio_iqr(o, plain);
            let _ = writeln!(
                out,
                "| {n} | {:.1} | {:.1} | {:.1} | {:.3}× | {q1:.3}–{q3:.3} | {:.2}× | {hits:.1}% | {memory:.1} MiB | {:.1} | {:.2}× | {home_hits:.1}% | {home_memory:.1} MiB |",
                m.micros(plain),
                m.micros(naive),
                m.micros(o),
                m.ratio(o, plain),
                m.ratio(o, naive),
                m.micros(h),
                m.ratio(h, naive),
            );
            points.push((n, m.micros(plain), m.micros(naive), m.micros(o)));
        }
        if !self.settings.quick {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS-rotation.svg");
            std::fs::write(path, rotation_svg(&points))?;
            let _ = writeln!(out, "\n- plot written to BENCHMARKS-rotation.svg");
        }
        out.push('\n');
        Ok(out)
    }

    /// Zipf-skewed traffic over all tenants, pool of 8: hit rate and ratio,
    /// with and without tenant affinity.
    fn zipf(&self) -> Result<String, BoxError> {
        let (url, tenants) = (self.url, self.tenants);
        let zipf = Popularity::new(tenants.len(), ZIPF_S)?;
        let plain_default = plain_pool(url, true)?;
        let plain_same = plain_pool(url, false)?;
        let counted = |affinity: TenantAffinity| -> Result<(TenantPool, StatementCount), BoxError> {
            let count = StatementCount::default();
            let for_pool = count.clone();
            let pool = TenantPool::builder()
                .max_size(POOL_SIZE)
                .tenant_affinity(affinity)
                .instrumentation(move || Box::new(for_pool.clone()))
                .build(url)?;
            wait_for_connections(&pool)?;
            Ok((pool, count))
        };
        let (with, with_statements) = counted(TenantAffinity::Adaptive)?;
        let (always, always_statements) = counted(TenantAffinity::Always)?;
        let (without, without_statements) = counted(TenantAffinity::Never)?;
        let (home, home_statements) = counted(TenantAffinity::Always)?;
        tenancy_core::__private::set_home_slots(&home, true);
        let home_requests = AtomicU64::new(0);
        // The request sequence the offline optimum follows (and Belady's hit rate is taken over).
        let plan = Plan::new({
            let mut rng = rng_of_thread(0);
            (0..1_000_000).map(|_| zipf.sample(&mut rng)).collect()
        });
        let optimum = belady_hit_rate(&plan, POOL_SIZE as usize);
        let lru = lru_hit_rate(&plan.trace, POOL_SIZE as usize);
        let models = [
            ModelPool::new(url, Eviction::HandedOut)?,
            ModelPool::new(url, Eviction::LeastRecentlyUsed)?,
            ModelPool::optimal(url, plan)?,
        ];
        let with_requests = AtomicU64::new(0);
        let always_requests = AtomicU64::new(0);
        let without_requests = AtomicU64::new(0);
        // Ours: default, affinity off, home slots; then the three model pools; then affinity always on.
        let splits: [Split; 7] = Default::default();
        let mut out = format!(
            "### Zipf traffic (s = {ZIPF_S}) over {} tenants, pool of 8\n\n{} hit rate | vs SET per checkout | backend memory, 8 backends | client CPU µs/req | server CPU µs/req |\n{}---:|---:|---:|---:|---:|\n",
            tenants.len(),
            HEADER.lines().next().unwrap_or_default(),
            HEADER.lines().nth(1).unwrap_or_default(),
        );
        let mut split_notes = String::new();
        for threads in [1, 4].into_iter().filter(|t| self.settings.threads.is_none_or(|only| only == *t)) {
            splits.iter().for_each(Split::reset);
            for (statements, requests) in [
                (&with_statements, &with_requests),
                (&always_statements, &always_requests),
                (&without_statements, &without_requests),
                (&home_statements, &home_requests),
            ] {
                statements.0.store(0, Ordering::Relaxed);
                requests.store(0, Ordering::Relaxed);
            }
            let ours = [
                (&with, &with_requests, &with_statements),
                (&always, &always_requests, &always_statements),
                (&without, &without_requests, &without_statements),
                (&home, &home_requests, &home_statements),
            ];
            // Our pool `k` of `ours` on Zipf traffic; `split`: its slot in `splits`.
            let ours = |name: &str, k: usize, split: usize| {
                let (pool, requests, statements) = ours[k];
                let split = (threads == 1).then_some(&splits[split]);
                Variant::new(name, threads, zipf_lookup(pool, tenants, &zipf, (requests, statements), split))
            };
            let mut variants = vec![
                Variant::new(PLAIN_DEFAULTS, threads, plain_lookup(&plain_default)),
                Variant::new(PLAIN_SAME, threads, plain_lookup(&plain_same)),
                ours("tenant(), the default (affinity adaptive)", 0, 0),
                Variant::new(
                    "SET search_path per checkout",
                    threads,
                    zipf_naive_lookup(&plain_same, tenants, &zipf),
                ),
                ours("tenant(), affinity always on (least asked-for evicted)", 1, 6),
                ours("tenant(), affinity off", 2, 1),
                ours("tenant(), affinity on, home slots", 3, 2),
            ];
            if threads == 1 {
                for (name, policy) in [
                    (MODEL_MRU, Eviction::HandedOut),
                    (MODEL_LRU, Eviction::LeastRecentlyUsed),
                    (MODEL_OPTIMAL, Eviction::Optimal),
                ] {
                    let model = &models[policy as usize];
                    let split = &splits[3 + policy as usize];
                    let zipf = &zipf;
                    variants.push(Variant::new(name, 1, move |_t| -> Op<'_> {
                        let mut rng = rng_of_thread(0);
                        let mut n = 0u64;
                        Box::new(move || {
                            n += 1;
                            let hits = model.hits.load(Ordering::Relaxed);
                            let started = Instant::now();
                            model.lookup(zipf.sample(&mut rng), tenants, row(n))?;
                            split.record(model.hits.load(Ordering::Relaxed) > hits, started.elapsed());
                            Ok(())
                        })
                    }));
                }
            }
            // Long enough for the popular tenants to be warm on every connection.
            let m = measure_with_warmup(self.settings, self.settings.warmup * 3, &variants)?;
            let hit_rate = |statements: &StatementCount, requests: &AtomicU64| {
                let r = requests.load(Ordering::Relaxed) as f64;
                let switches = statements.0.load(Ordering::Relaxed) as f64 - r;
                format!(" {:.1}% |", (1.0 - switches / r) * 100.0)
            };
            let naive = m.index("SET search_path per checkout");
            // Before the memory queries, which send statements of their own.
            let measured_hits = [
                hit_rate(&with_statements, &with_requests),
                hit_rate(&always_statements, &always_requests),
                hit_rate(&without_statements, &without_requests),
                hit_rate(&home_statements, &home_requests),
            ];
            {
                // Which tenants (by popularity rank, 0 the most asked-for) the
                // pools' connections serve at the end of the rounds.
                let ranks = |pool: &TenantPool| {
                    let mut ranks: Vec<String> = tenancy_core::__private::idle_tenants(pool)
                        .into_iter()
                        .map(|t| {
                            t.and_then(|t| tenants.iter().position(|s| s.as_str() == t))
                                .map_or_else(|| String::from("none"), |r| r.to_string())
                        })
                        .collect();
                    ranks.sort_by_key(|r| r.parse::<usize>().unwrap_or(usize::MAX));
                    ranks.join(", ")
                };
                let _ = writeln!(
                    split_notes,
                    "- {threads} thread(s), popularity ranks of the tenants the 8 connections serve at the end (0 the most asked-for): default [{}]; affinity always on [{}]; affinity off [{}]; home slots [{}]",
                    ranks(&with),
                    ranks(&always),
                    ranks(&without),
                    ranks(&home),
                );
                let state = with.state();
                let _ = writeln!(
                    split_notes,
                    "- {threads} thread(s), the default's tuner at the end: affinity {}; last comparison: {}",
                    if state.affinity { "on" } else { "off" },
                    state.affinity_measured.map_or_else(
                        || String::from("none yet"),
                        |(off, on)| format!(
                            "{:.1} µs per borrow off, {:.1} µs on",
                            off.as_secs_f64() * 1e6,
                            on.as_secs_f64() * 1e6
                        )
                    ),
                );
            }
            let memory = [
                pool_memory(&plain_default)?,
                pool_memory(&plain_same)?,
                tenant_pool_memory(&with, tenants)?,
                None,
                tenant_pool_memory(&always, tenants)?,
                tenant_pool_memory(&without, tenants)?,
                tenant_pool_memory(&home, tenants)?,
                model_memory(&models[0])?,
                model_memory(&models[1])?,
                model_memory(&models[2])?,
            ];
            out += &m.rows(PLAIN_DEFAULTS, PLAIN_SAME, |v| {
                let hits = match v {
                    2 => measured_hits[0].clone(),
                    4..=6 => measured_hits[v - 3].clone(),
                    7..=9 => format!(" {:.1}% |", models[v - 7].hit_rate() * 100.0),
                    _ => String::from(" - |"),
                };
                let versus =
                    if v >= 2 { format!(" {:.2}× |", m.ratio(v, naive)) } else { String::from(" - |") };
                let mib = memory[v]
                    .map_or_else(|| String::from(" - |"), |b| format!(" {:.1} MiB |", b as f64 / 1048576.0));
                Some(format!("{hits}{versus}{mib}{}", m.cpu_cells(v)))
            });
            {
                // What any policy that switches with one message could reach:
                // hits free, every miss paying what SET per checkout pays
                // over plain diesel (its message and the re-plan).
                let (q, qs) = (m.micros(m.index(PLAIN_SAME)), m.micros(naive));
                let s = (qs - q).max(f64::MIN_POSITIVE);
                let best = q + (1.0 - optimum) * s;
                let _ = writeln!(
                    split_notes,
                    "- {threads} thread(s), the ceiling of switching policies: plain {q:.1} µs, SET per checkout {qs:.1} µs per request, so a switch costs {s:.1} µs; with the offline optimum's hit rate ({:.1}%) and free hits: {best:.1} µs, {:.3}× plain, {:.2}× SET per checkout; 0.5× plain needs {:.0}% hits, 1.3× SET per checkout {:.0}%",
                    optimum * 100.0,
                    q / best,
                    qs / best,
                    (1.0 - q / s) * 100.0,
                    (1.0 - (qs / 1.3 - q) / s) * 100.0,
                );
            }
            if threads == 1 {
                let names = [
                    "default",
                    "affinity off",
                    "home slots",
                    "model, connection handed out",
                    "model, least recently used",
                    "model, offline optimum",
                    "affinity always on",
                ];
                let _ = writeln!(
                    split_notes,
                    "- one thread, time per request, hits and switches apart (the switch counted by the pool, or the model): {}",
                    names
                        .iter()
                        .zip(&splits)
                        .map(|(name, split)| format!("{name}: {}", split.describe()))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
        }
        out.push('\n');
        out += &split_notes;
        let _ = writeln!(
            out,
            "- offline optimum (Belady's MIN: on a miss, switch the connection whose tenant is asked for again last), same Zipf traffic, 8 connections, 1,000,000 requests: **{:.1}%** hits; least recently used over the same trace: {:.1}%",
            optimum * 100.0,
            lru * 100.0,
        );
        out.push('\n');
        Ok(out)
    }
}

/// A DAL in the style the library documents.
#[derive(TenantContext)]
struct ItemsDal {
    tenant: Tenant,
}

impl ItemsDal {
    #[tenant_scoped]
    fn body(&self, id: i64) -> Result<String, TenancyError> {
        Ok(items::table.find(id).select(items::body).first(conn)?)
    }

    #[tenant_scoped(transaction)]
    fn read_write(&self, id: i64) -> Result<(), TenancyError> {
        Ok(read_write(conn, id)?)
    }
}

/// CPU time this thread has used so far (`/proc/thread-self/schedstat`,
/// nanoseconds on CPU as the scheduler counts them).
fn thread_cpu() -> Result<Duration, BoxError> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let nanos: u64 = stat.split_whitespace().next().ok_or("empty /proc/thread-self/schedstat")?.parse()?;
    Ok(Duration::from_nanos(nanos))
}

/// Client CPU per request: `requests` requests of `op` on this thread, CPU time divided by `requests`.
fn cpu_per_request(requests: u64, mut op: Op<'_>) -> Result<f64, BoxError> {
    let before = thread_cpu()?;
    for _ in 0..requests {
        op()?;
    }
    Ok((thread_cpu()? - before).as_secs_f64() * 1e6 / requests as f64)
}

/// Wall time per call of `f`, the median of 11 batches of `n` calls.
fn nanos_per_call(n: u32, mut f: impl FnMut()) -> f64 {
    let batches = (0..11)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
        .collect();
    median(batches)
}

/// Collects formatted SQL and stops at diesel's ` -- binds: ` separator, as the session guard does.
struct SqlOnly<'a>(&'a mut String);

impl std::fmt::Write for SqlOnly<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if s.starts_with(" -- binds: ") {
            return Err(std::fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

/// Which connection a pool switches when no idle one serves the tenant.
#[derive(Clone, Copy)]
enum Eviction {
    /// The one r2d2 handed out: the most recently returned (`TenantPool` with affinity off).
    HandedOut,
    /// The idle connection used least recently.
    LeastRecentlyUsed,
    /// The idle connection whose tenant is asked for again last (Belady's
    /// MIN), knowing the whole request sequence in advance: the best any
    /// policy that switches one connection per miss can do.
    Optimal,
}

struct ModelConn {
    conn: PgConnection,
    tenant: Option<usize>,
    last_used: u64,
    /// Position in the request sequence of its tenant's next request (`Optimal`).
    next_use: u64,
}

/// A request sequence known in advance, for the offline optimum: the
/// tenants in order and, for each position, where its tenant comes next
/// (the sequence repeats, so a tenant's next request may be in the next pass).
struct Plan {
    trace: Vec<usize>,
    next: Vec<u64>,
}

impl Plan {
    fn new(trace: Vec<usize>) -> Self {
        let len = trace.len() as u64;
        let mut next = vec![0u64; trace.len()];
        let mut seen = std::collections::HashMap::new();
        // Two passes backwards: the first finds each tenant's first request,
        // which is where the last one of the pass comes next (one pass later).
        for pass in [1u64, 0] {
            for i in (0..trace.len()).rev() {
                let at = pass * len + i as u64;
                if pass == 0 {
                    next[i] = seen.get(&trace[i]).copied().unwrap_or(u64::MAX);
                }
                seen.insert(trace[i], at);
            }
        }
        Self { trace, next }
    }

    /// The tenant of request `position` and where its tenant is asked for next.
    fn at(&self, position: u64) -> (usize, u64) {
        let len = self.trace.len() as u64;
        let i = (position % len) as usize;
        (self.trace[i], (position - position % len).saturating_add(self.next[i]))
    }
}

/// `TenantPool`'s affinity logic on a mutex-protected stack of connections
/// (r2d2's idle list), for one thread: measures what another eviction policy
/// would change, on real connections and the same switching statement.
struct ModelPool {
    idle: std::sync::Mutex<Vec<ModelConn>>,
    eviction: Eviction,
    requests: AtomicU64,
    hits: AtomicU64,
    /// The request sequence, for `Optimal`.
    plan: Option<Plan>,
}

impl ModelPool {
    fn new(url: &str, eviction: Eviction) -> Result<Self, BoxError> {
        let idle = (0..POOL_SIZE)
            .map(|_| {
                Ok(ModelConn { conn: PgConnection::establish(url)?, tenant: None, last_used: 0, next_use: 0 })
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        Ok(Self {
            idle: std::sync::Mutex::new(idle),
            eviction,
            requests: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            plan: None,
        })
    }

    /// The offline optimum over `trace`, which its requests then follow.
    fn optimal(url: &str, plan: Plan) -> Result<Self, BoxError> {
        Ok(Self { plan: Some(plan), ..Self::new(url, Eviction::Optimal)? })
    }

    fn hit_rate(&self) -> f64 {
        self.hits.load(Ordering::Relaxed) as f64 / self.requests.load(Ordering::Relaxed) as f64
    }

    /// One lookup for tenant `want` (for `Optimal`, the planned request's tenant instead).
    fn lookup(&self, want: usize, tenants: &[SchemaName], id: i64) -> Result<(), BoxError> {
        let position = self.requests.fetch_add(1, Ordering::Relaxed);
        let now = position + 1;
        let (want, next_use) = self.plan.as_ref().map_or((want, 0), |plan| plan.at(position));
        let mut c = {
            let mut idle = self.idle.lock().map_err(|_| "model pool poisoned")?;
            let first = idle.pop().ok_or("model pool empty")?;
            if first.tenant == Some(want) {
                first
            } else {
                // TenantPool::checkout_for: pop idle connections until one serves the tenant.
                let mut passed_over = Vec::new();
                let mut found = None;
                while let Some(c) = idle.pop() {
                    if c.tenant == Some(want) {
                        found = Some(c);
                        break;
                    }
                    passed_over.push(c);
                }
                match (found, self.eviction) {
                    (Some(c), _) => {
                        idle.extend(passed_over);
                        idle.push(first);
                        c
                    }
                    (None, Eviction::HandedOut) => {
                        idle.extend(passed_over);
                        first
                    }
                    (None, eviction) => {
                        passed_over.push(first);
                        let pick = (0..passed_over.len()).min_by_key(|&i| match eviction {
                            // An unused connection first, then the one asked for again last.
                            Eviction::Optimal => {
                                (passed_over[i].tenant.is_some(), u64::MAX - passed_over[i].next_use)
                            }
                            _ => (true, passed_over[i].last_used),
                        });
                        let c = passed_over.swap_remove(pick.unwrap_or(0));
                        idle.extend(passed_over);
                        c
                    }
                }
            }
        };
        if c.tenant == Some(want) {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            c.tenant = None;
            tenant_switch(&mut c.conn, &tenants[want])?;
            c.tenant = Some(want);
        }
        c.last_used = now;
        c.next_use = next_use;
        let result = lookup(&mut c.conn, id);
        self.idle.lock().map_err(|_| "model pool poisoned")?.push(c);
        result
    }
}

/// The hit rate of Belady's MIN (the offline optimum without bypass: every
/// request is served from the cache, and a miss replaces the entry asked for
/// again last) over `trace` with `slots` entries.
fn belady_hit_rate(plan: &Plan, slots: usize) -> f64 {
    // (tenant, position of its next request)
    let mut cache: Vec<(usize, u64)> = Vec::with_capacity(slots);
    let mut hits = 0u64;
    for position in 0..plan.trace.len() as u64 {
        let (t, next) = plan.at(position);
        if let Some(entry) = cache.iter_mut().find(|e| e.0 == t) {
            hits += 1;
            entry.1 = next;
        } else if cache.len() < slots {
            cache.push((t, next));
        } else if let Some(farthest) = cache.iter_mut().max_by_key(|e| e.1) {
            *farthest = (t, next);
        }
    }
    hits as f64 / plan.trace.len() as f64
}

/// The hit rate of least-recently-used replacement over `trace` with `slots` entries.
fn lru_hit_rate(trace: &[usize], slots: usize) -> f64 {
    let mut cache: Vec<(usize, usize)> = Vec::with_capacity(slots);
    let mut hits = 0u64;
    for (i, &t) in trace.iter().enumerate() {
        if let Some(entry) = cache.iter_mut().find(|e| e.0 == t) {
            hits += 1;
            entry.1 = i;
        } else if cache.len() < slots {
            cache.push((t, i));
        } else if let Some(oldest) = cache.iter_mut().min_by_key(|e| e.1) {
            *oldest = (t, i);
        }
    }
    hits as f64 / trace.len() as f64
}

/// Bytes in the server's memory contexts of one backend.
fn backend_memory(conn: &mut PgConnection) -> Result<i64, BoxError> {
    #[derive(QueryableByName)]
    struct Bytes {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bytes: i64,
    }
    let b: Bytes =
        diesel::sql_query("SELECT sum(total_bytes)::bigint AS bytes FROM pg_backend_memory_contexts")
            .get_result(conn)?;
    Ok(b.bytes)
}

/// Memory of all the plain pool's backends (every connection checked out at once).
fn pool_memory(pool: &PlainPool) -> Result<Option<i64>, BoxError> {
    let mut held = (0..POOL_SIZE).map(|_| pool.get()).collect::<Result<Vec<_>, _>>()?;
    let mut total = 0;
    for conn in &mut held {
        total += backend_memory(conn)?;
    }
    Ok(Some(total))
}

/// Memory of all the tenant pool's backends (every connection checked out at once).
fn tenant_pool_memory(pool: &TenantPool, tenants: &[SchemaName]) -> Result<Option<i64>, BoxError> {
    let mut held = (0..POOL_SIZE as usize)
        .map(|i| pool.tenant(&tenants[i % tenants.len()]))
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = 0;
    for conn in &mut held {
        total += backend_memory(conn)?;
    }
    Ok(Some(total))
}

fn model_memory(model: &ModelPool) -> Result<Option<i64>, BoxError> {
    let mut idle = model.idle.lock().map_err(|_| "model pool poisoned")?;
    let mut total = 0;
    for c in idle.iter_mut() {
        total += backend_memory(&mut c.conn)?;
    }
    Ok(Some(total))
}

/// Tenants in rotation; µs per request of plain diesel, SET per checkout and ours.
type RotationPoint = (usize, f64, f64, f64);

/// µs per request against tenants in rotation (log scale), as an SVG plot.
fn rotation_svg(points: &[RotationPoint]) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 420.0, 70.0, 200.0, 40.0, 60.0);
    let max_n = points.iter().map(|p| p.0).max().unwrap_or(1).max(10) as f64;
    let max_us = points.iter().map(|p| p.1.max(p.2).max(p.3)).fold(0.0, f64::max);
    let step = match max_us {
        u if u > 500.0 => 100.0,
        u if u > 200.0 => 50.0,
        _ => 20.0,
    };
    let top_us = ((max_us / step).ceil() * step).max(step);
    let x = |n: usize| left + (n as f64).log10() / max_n.log10() * (w - left - right);
    let y = |us: f64| h - bottom - us / top_us * (h - top - bottom);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">Point lookup, one thread, pool of 8: µs per request against tenants in rotation</text>\n",
        w / 2.0
    );
    let mut us = 0.0;
    while us <= top_us + 1e-9 {
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{us:.0}</text>",
            w - right,
            left - 6.0,
            y(us) + 4.0,
            yy = y(us)
        );
        us += step;
    }
    for &(n, ..) in points {
        let _ = writeln!(
            svg,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{top}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{xx:.1}\" y=\"{}\" text-anchor=\"middle\">{n}</text>",
            h - bottom,
            h - bottom + 18.0,
            xx = x(n)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">tenants in rotation (log scale)</text>\n<text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">µs per request</text>",
        left + (w - left - right) / 2.0,
        h - 18.0,
        top + (h - top - bottom) / 2.0,
        top + (h - top - bottom) / 2.0
    );
    let series = [
        ("plain diesel (no tenants)", "#888888"),
        ("SET search_path per checkout", "#d62728"),
        ("TenantPool", "#1f77b4"),
    ];
    let value = |p: &RotationPoint, k: usize| [p.1, p.2, p.3][k];
    for (k, (name, colour)) in series.iter().enumerate() {
        let line: Vec<String> =
            points.iter().map(|p| format!("{:.1},{:.1}", x(p.0), y(value(p, k)))).collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            line.join(" ")
        );
        for p in points {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\"/>",
                x(p.0),
                y(value(p, k))
            );
        }
        let ly = top + 20.0 + 22.0 * k as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{name}</text>",
            w - right + 12.0,
            w - right + 36.0,
            w - right + 42.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}
