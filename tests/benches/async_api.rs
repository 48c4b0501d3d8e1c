//! The async API and the axum extractor: what they cost per request next to
//! what a user writes by hand, measured in the same run on a real PostgreSQL.
//!
//! ```text
//! cargo bench -p tenancy-tests --bench async_api              # full run (about a minute)
//! cargo bench -p tenancy-tests --bench async_api -- --quick   # CI smoke run (seconds)
//! ```
//!
//! Every variant of a group runs once per round, interleaved with the other
//! variants, so slow drift of the machine hits all of them alike; ratios are
//! taken within a round against the group's baseline, and the median over
//! rounds is reported, with each variant's spread (max - min over median of
//! its throughput).
//!
//! * `run`: a point lookup in one tenant through `tenant.run(..)` (and
//!   `run_transaction`), against the same lookup in a `spawn_blocking`
//!   written by hand around `pool.tenant(..)`, against plain diesel + r2d2
//!   in a hand-written `spawn_blocking`, and against the synchronous calls
//!   on plain threads (what `spawn_blocking` itself costs).
//! * `extractor`: an axum request (in process, `oneshot`, no socket) whose
//!   handler does no database work, with and without the `CurrentTenant`
//!   extractor (a tenant the pool has proven: no round trip).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderName, Request};
use axum::routing::get;
use axum::Router;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use tenancy_axum::{CurrentTenant, TenantResolver};
use tenancy_core::{SchemaName, TenancyError, TenantPool};
use tenancy_tests::stats::median;
use tenancy_tests::{items, Schemas, ITEMS_DDL};
use tower::ServiceExt;

type BoxError = Box<dyn Error + Send + Sync>;
type PlainPool = Pool<ConnectionManager<PgConnection>>;

/// Pool size of every pool, and concurrent tasks of the `run` group.
const POOL_SIZE: u32 = 8;
const TASKS: usize = 8;
const ROWS: i64 = 16;

/// How long each measurement runs, how often, and whether this is CI's quick run.
struct Settings {
    sample: Duration,
    rounds: usize,
    quick: bool,
}

fn main() -> Result<(), BoxError> {
    let quick = std::env::args().any(|a| a == "--quick");
    let settings = if quick {
        Settings { quick, sample: Duration::from_millis(100), rounds: 3 }
    } else {
        Settings { quick, sample: Duration::from_millis(1000), rounds: 10 }
    };
    let url = tenancy_tests::url();
    let schemas = Schemas::create("bench_async", 1, ITEMS_DDL);
    let schema = schemas.first().clone();
    let mut admin = PgConnection::establish(&url)?;
    admin.batch_execute(&format!(
        "INSERT INTO {q}.items (tenant, body) SELECT '{schema}', 'row ' || n FROM generate_series(1, {ROWS}) n; ANALYZE {q}.items",
        q = schema.quoted()
    ))?;
    let pool = TenantPool::builder().max_size(POOL_SIZE).build(&url)?;
    let plain: PlainPool = Pool::builder()
        .max_size(POOL_SIZE)
        .test_on_check_out(false)
        .connection_customizer(Box::new(PlainPath(schema.clone())))
        .build(ConnectionManager::new(&url))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    println!(
        "mode: {}; {} rounds of {} ms per variant; {} CPUs; pool of {POOL_SIZE}",
        if settings.quick { "quick" } else { "full" },
        settings.rounds,
        settings.sample.as_millis(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{}", run_group(&settings, &runtime, &pool, &plain, &schema));
    println!("{}", extractor_group(&settings, &runtime, &pool, &schema));
    Ok(())
}

/// Scopes plain diesel's connections to the tenant's table once, when opened.
#[derive(Debug)]
struct PlainPath(SchemaName);

impl diesel::r2d2::CustomizeConnection<PgConnection, diesel::r2d2::Error> for PlainPath {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!("SET search_path TO {}", self.0.quoted()))
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

fn lookup(conn: &mut PgConnection, id: i64) -> QueryResult<String> {
    items::table.find(id).select(items::body).first(conn)
}

/// An async request: one call of the variant, `n` the request number.
type AsyncOp =
    Arc<dyn Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// `op` as a user would call it by hand: in `spawn_blocking`, awaited.
fn by_hand(op: impl Fn(u64) + Send + Sync + 'static) -> AsyncOp {
    let op = Arc::new(op);
    Arc::new(move |n| {
        let op = Arc::clone(&op);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || op(n)).await.unwrap();
        })
    })
}

/// Requests per second of `op` run by `TASKS` tasks for `sample`.
fn throughput_async(runtime: &tokio::runtime::Runtime, sample: Duration, tasks: usize, op: &AsyncOp) -> f64 {
    runtime.block_on(async {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (op, done, stop) = (Arc::clone(op), Arc::clone(&done), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut n = t as u64;
                    while !stop.load(Ordering::Relaxed) {
                        op(n).await;
                        n += tasks as u64;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(sample).await;
        stop.store(true, Ordering::Relaxed);
        for handle in handles {
            handle.await.unwrap();
        }
        done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
    })
}

/// Requests per second of `op` on `threads` plain threads for `sample`.
fn throughput_threads(sample: Duration, threads: usize, op: &(dyn Fn(u64) + Sync)) -> f64 {
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (done, stop) = (&done, &stop);
            s.spawn(move || {
                let mut n = t as u64;
                while !stop.load(Ordering::Relaxed) {
                    op(n);
                    n += threads as u64;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(sample);
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// One variant of a group: how to measure one sample of it.
struct Variant<'a> {
    name: &'static str,
    measure: Box<dyn Fn() -> f64 + 'a>,
}

/// Runs the variants interleaved for `rounds`; the first is the baseline.
/// A table of median throughput, µs per request (per task), spread, and
/// the median per-round ratio to the baseline.
fn report(title: &str, settings: &Settings, per: f64, variants: &[Variant<'_>]) -> String {
    for v in variants {
        (v.measure)(); // warm-up
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..settings.rounds {
        for (i, v) in variants.iter().enumerate() {
            samples[i].push((v.measure)());
        }
    }
    let mut out = format!(
        "\n{title}\n{:<58} {:>10} {:>10} {:>8} {:>8}\n",
        "variant", "req/s", "us/req", "spread", "ratio"
    );
    for (i, v) in variants.iter().enumerate() {
        let med = median(samples[i].clone());
        let max = samples[i].iter().cloned().fold(f64::MIN, f64::max);
        let min = samples[i].iter().cloned().fold(f64::MAX, f64::min);
        let ratios: Vec<f64> = samples[i].iter().zip(&samples[0]).map(|(x, base)| base / x).collect();
        out += &format!(
            "{:<58} {:>10.0} {:>10.1} {:>7.1}% {:>8.3}\n",
            v.name,
            med,
            per * 1e6 / med,
            (max - min) / med * 100.0,
            median(ratios)
        );
    }
    out += "(ratio: time per request over the first row's, median of per-round ratios)";
    out
}

fn run_group(
    settings: &Settings,
    runtime: &tokio::runtime::Runtime,
    pool: &TenantPool,
    plain: &PlainPool,
    schema: &SchemaName,
) -> String {
    let id = move |n: u64| (n as i64 % ROWS) + 1;
    let hand = by_hand({
        let (pool, schema) = (pool.clone(), schema.clone());
        move |n| {
            let mut conn = pool.tenant(&schema).unwrap();
            lookup(&mut conn, id(n)).unwrap();
        }
    });
    let run: AsyncOp = {
        let tenant = pool.for_tenant(schema.clone());
        Arc::new(move |n| {
            let fut = tenant.run(move |conn| Ok::<_, TenancyError>(lookup(conn, id(n))?));
            Box::pin(async move {
                fut.await.unwrap();
            })
        })
    };
    let hand_tx = by_hand({
        let (pool, schema) = (pool.clone(), schema.clone());
        move |n| {
            pool.transaction(&schema, |conn| Ok::<_, TenancyError>(lookup(conn, id(n))?)).unwrap();
        }
    });
    let run_tx: AsyncOp = {
        let tenant = pool.for_tenant(schema.clone());
        Arc::new(move |n| {
            let fut = tenant.run_transaction(move |conn| Ok::<_, TenancyError>(lookup(conn, id(n))?));
            Box::pin(async move {
                fut.await.unwrap();
            })
        })
    };
    let plain_hand = by_hand({
        let plain = plain.clone();
        move |n| {
            let mut conn = plain.get().unwrap();
            lookup(&mut conn, id(n)).unwrap();
        }
    });
    let hop: AsyncOp = Arc::new(|n| {
        Box::pin(async move {
            std::hint::black_box(tokio::task::spawn_blocking(move || std::hint::black_box(n)).await.unwrap());
        })
    });
    let sync_op = |n: u64| {
        let mut conn = pool.tenant(schema).unwrap();
        lookup(&mut conn, id(n)).unwrap();
    };
    let s = settings.sample;
    let per = TASKS as f64;
    let on_runtime = |name: &'static str, op: &AsyncOp| {
        let op = Arc::clone(op);
        Variant { name, measure: Box::new(move || throughput_async(runtime, s, TASKS, &op)) }
    };
    let variants = [
        on_runtime("spawn_blocking by hand around pool.tenant (baseline)", &hand),
        on_runtime("tenant.run(|conn| ..)", &run),
        on_runtime("spawn_blocking by hand around pool.transaction", &hand_tx),
        on_runtime("tenant.run_transaction(|conn| ..)", &run_tx),
        on_runtime("plain diesel r2d2, spawn_blocking by hand", &plain_hand),
        Variant {
            name: "pool.tenant on plain threads (no runtime)",
            measure: Box::new(|| throughput_threads(s, TASKS, &sync_op)),
        },
        on_runtime("spawn_blocking of an empty closure (the hop alone)", &hop),
    ];
    report(
        &format!("run: point lookup, one tenant, {TASKS} tasks on a 2-worker runtime (or {TASKS} threads), pool of {POOL_SIZE}"),
        settings,
        per,
        &variants,
    )
}

async fn whoami(CurrentTenant(tenant): CurrentTenant) -> String {
    tenant.schema().to_string()
}

async fn static_name() -> &'static str {
    "tenant"
}

fn extractor_group(
    settings: &Settings,
    runtime: &tokio::runtime::Runtime,
    pool: &TenantPool,
    schema: &SchemaName,
) -> String {
    let header = HeaderName::from_static("x-tenant");
    let by_header = TenantResolver::header(pool.clone(), header);
    let by_host = TenantResolver::subdomain(pool.clone(), "example.test");
    let by_path = TenantResolver::path_segment(pool.clone(), 1);
    let app = |resolver: TenantResolver| {
        Router::new()
            .route("/plain", get(static_name))
            .route("/whoami", get(whoami))
            .route("/tenants/{tenant}/whoami", get(whoami))
            .with_state(resolver)
    };
    let request = |uri: String, header: Option<(&'static str, String)>| {
        move || {
            let mut builder = Request::get(uri.as_str());
            if let Some((name, value)) = &header {
                builder = builder.header(*name, value.as_str());
            }
            builder.body(Body::empty()).unwrap()
        }
    };
    let one = |router: Router, make: Box<dyn Fn() -> Request<Body> + Send + Sync>| -> AsyncOp {
        let make = Arc::new(make);
        Arc::new(move |_| {
            let (router, make) = (router.clone(), Arc::clone(&make));
            Box::pin(async move {
                let response = router.oneshot(make()).await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
            })
        })
    };
    // The tenant proven once, as any first request does.
    pool.check_tenant(schema).unwrap();
    let s = schema.as_str().to_owned();
    let plain =
        one(app(by_header.clone()), Box::new(request("/plain".into(), Some(("x-tenant", s.clone())))));
    let header_op = one(app(by_header), Box::new(request("/whoami".into(), Some(("x-tenant", s.clone())))));
    let host_op = one(
        app(by_host),
        Box::new(request("/whoami".into(), Some(("host", format!("{s}.example.test:8080"))))),
    );
    let path_op = one(app(by_path), Box::new(request(format!("/tenants/{s}/whoami"), None)));
    let sample = settings.sample;
    let variants = [
        Variant {
            name: "handler without the extractor (baseline)",
            measure: Box::new(|| throughput_async(runtime, sample, 1, &plain)),
        },
        Variant {
            name: "CurrentTenant from a header",
            measure: Box::new(|| throughput_async(runtime, sample, 1, &header_op)),
        },
        Variant {
            name: "CurrentTenant from a subdomain",
            measure: Box::new(|| throughput_async(runtime, sample, 1, &host_op)),
        },
        Variant {
            name: "CurrentTenant from a path segment",
            measure: Box::new(|| throughput_async(runtime, sample, 1, &path_op)),
        },
    ];
    report(
        "extractor: one request in process (Router::oneshot), one task, a tenant the pool has proven",
        settings,
        1.0,
        &variants,
    )
}
