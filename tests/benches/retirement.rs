//! Backend memory with and without connection retirement, touching many
//! tenants.
//!
//! ```text
//! cargo bench -p tenancy-tests --bench retirement              # 2,000 tenants
//! cargo bench -p tenancy-tests --bench retirement -- --quick   # 300 tenants (seconds)
//! ```
//!
//! Every schema a backend reads from adds its tables and indexes to that
//! backend's relation and catalog caches, which are never shrunk. One pool
//! connection (a pool of one, so the same backend serves every tenant unless
//! it is retired) visits every tenant once, reading four tables in each; the
//! backend's memory is sampled along the way from `pg_backend_memory_contexts`
//! (all memory contexts of the backend, as PostgreSQL accounts them) and
//! `/proc/<pid>/status` (`RssAnon`, when the server runs on this machine).
//! The same sweep runs with `max_tenants_per_connection(None)` (unbounded)
//! and with `Some(K)` (bounded), on a database of the benchmark's own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tenancy_core::{SchemaName, TenantPool};
use tenancy_tests::{backend_pid, scalar_i64};

/// Tables (each with a primary key and a secondary index) in every tenant schema.
const TENANT_DDL: &str = "
    CREATE TABLE items (id BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, body TEXT NOT NULL DEFAULT '');
    CREATE INDEX ON items (tenant);
    CREATE TABLE agents (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, team INT);
    CREATE INDEX ON agents (team);
    CREATE TABLE tickets (id BIGSERIAL PRIMARY KEY, agent_id BIGINT, status TEXT);
    CREATE INDEX ON tickets (status);
    CREATE TABLE events (id BIGSERIAL PRIMARY KEY, ticket_id BIGINT, at TIMESTAMPTZ DEFAULT now());
    CREATE INDEX ON events (ticket_id);";

/// The query run in every tenant: it touches every table and index above.
const TOUCH: &str = "(SELECT count(*) FROM items WHERE tenant = 'x') + (SELECT count(*) FROM agents WHERE team = 1) \
     + (SELECT count(*) FROM tickets WHERE status = 'open') + (SELECT count(*) FROM events WHERE ticket_id = 1)";

struct Sample {
    tenants_touched: usize,
    context_bytes: i64,
    rss_anon_kb: Option<i64>,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (tenants, k, every) = if quick { (300, 50, 50) } else { (2000, 100, 250) };

    // Dropped at the end, also when the run panics.
    let db = tenancy_devdb::shared()
        .and_then(|dev| dev.create_unique_database("bench_retirement"))
        .expect("a database for the benchmark");
    run(db.url(), tenants, k, every);
}

fn run(url: &str, tenants: usize, k: usize, every: usize) {
    let started = Instant::now();
    let names: Vec<SchemaName> =
        (0..tenants).map(|i| SchemaName::new(&format!("tenant_{i:05}")).unwrap()).collect();
    // Small batches: each table takes several locks until its transaction ends.
    let mut setup = PgConnection::establish(url).unwrap();
    for batch in names.chunks(20) {
        let ddl: String = batch
            .iter()
            .map(|s| format!("CREATE SCHEMA {q}; SET LOCAL search_path TO {q}; {TENANT_DDL}", q = s.quoted()))
            .collect();
        setup.batch_execute(&format!("BEGIN; {ddl} COMMIT;")).unwrap();
    }
    tenancy_tests::register(url, &names);
    println!(
        "retirement: {tenants} tenants x 4 tables (+4 indexes, 4 sequences) created in {:.1?}; bounded K = {k}",
        started.elapsed()
    );

    let unbounded = sweep(url, &names, None, every);
    let bounded = sweep(url, &names, Some(k), every);

    println!();
    println!("| tenants touched | unbounded: backend contexts | bounded (K={k}) | ratio | unbounded RssAnon | bounded RssAnon |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (u, b) in unbounded.iter().zip(&bounded) {
        let rss = |s: &Sample| {
            s.rss_anon_kb.map_or(String::from("n/a"), |kb| format!("{:.1} MiB", kb as f64 / 1024.0))
        };
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.1}x | {} | {} |",
            u.tenants_touched,
            mib(u.context_bytes),
            mib(b.context_bytes),
            u.context_bytes as f64 / b.context_bytes as f64,
            rss(u),
            rss(b),
        );
    }
    let (u, b) = (unbounded.last().unwrap(), bounded.last().unwrap());
    println!();
    println!(
        "after {tenants} tenants: unbounded {:.1} MiB, bounded {:.1} MiB ({:.1}x less); total {:.1?}",
        mib(u.context_bytes),
        mib(b.context_bytes),
        u.context_bytes as f64 / b.context_bytes as f64,
        started.elapsed()
    );
    assert!(
        u.context_bytes > 2 * b.context_bytes,
        "retirement should bound backend memory well below the unbounded figure"
    );
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Visits every tenant once through a pool of one, sampling the memory of
/// whichever backend serves it every `every` tenants.
fn sweep(url: &str, names: &[SchemaName], k: Option<usize>, every: usize) -> Vec<Sample> {
    let pool = TenantPool::builder()
        .max_size(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .max_tenants_per_connection(k)
        .build(url)
        .unwrap();
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut backends = std::collections::HashSet::new();
    for (i, tenant) in names.iter().enumerate() {
        let mut conn = pool.tenant(tenant).unwrap();
        assert_eq!(scalar_i64(&mut conn, TOUCH), 0);
        if (i + 1) % every == 0 {
            let pid = backend_pid(&mut conn);
            backends.insert(pid);
            let context_bytes =
                scalar_i64(&mut conn, "(SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts)");
            samples.push(Sample { tenants_touched: i + 1, context_bytes, rss_anon_kb: rss_anon_kb(pid) });
        }
    }
    println!(
        "  sweep with max_tenants_per_connection({k:?}): {:.1?}, {} backends sampled",
        started.elapsed(),
        backends.len()
    );
    samples
}

/// `RssAnon` of a process on this machine, if visible.
fn rss_anon_kb(pid: i32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
