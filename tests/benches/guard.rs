//! What the session guard's server-side work costs, against plain diesel in
//! the same run.
//!
//! ```text
//! cargo bench -p tenancy-tests --bench guard              # 9 rounds of 2,000 operations
//! cargo bench -p tenancy-tests --bench guard -- --quick   # 3 rounds of 300 (seconds)
//! ```
//!
//! Every variant runs on one connection (a pool of one: ours, or an r2d2
//! connection), same tenant, alternating in short rounds so that drift hits
//! all alike; each line is the median of the rounds, in µs per operation, and
//! its ratio to the plain-diesel line it is paired with.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use tenancy_core::{PoolerMode, SchemaName, TenancyError, TenantPool};

diesel::table! {
    items (id) {
        id -> BigInt,
        body -> Text,
    }
}

fn lookup(conn: &mut PgConnection) -> String {
    items::table.filter(items::id.eq(1)).select(items::body).first(conn).unwrap()
}

/// A session setting of the borrower's own, then the lookup.
fn set_and_lookup(conn: &mut PgConnection) {
    conn.batch_execute("SET work_mem = '8MB'").unwrap();
    drop(lookup(conn));
}

/// A function of the application's own (opaque to the guard), then the lookup.
fn call_and_lookup(conn: &mut PgConnection) {
    diesel::select(diesel::dsl::sql::<BigInt>("touch()::bigint")).get_result::<i64>(conn).unwrap();
    drop(lookup(conn));
}

/// One measured variant: an operation run `ops` times per round.
struct Variant<'a> {
    name: &'static str,
    paired_with: &'static str,
    op: Box<dyn FnMut() + 'a>,
    rounds: Vec<f64>,
}

/// A variant, measured against the plain-diesel variant `paired_with`
/// (empty for a baseline).
fn variant<'a>(name: &'static str, paired_with: &'static str, op: impl FnMut() + 'a) -> Variant<'a> {
    Variant { name, paired_with, op: Box::new(op), rounds: Vec::new() }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, ops) = if quick { (3, 300) } else { (9, 2_000) };
    let server = tenancy_devdb::shared().expect("a PostgreSQL for the benchmark");
    let db = server.create_database(&format!("tenancy_bench_guard_{}", std::process::id())).unwrap();
    let url = db.url().to_owned();

    let tenant = SchemaName::new("guarded").unwrap();
    let other = SchemaName::new("neighbour").unwrap();
    let mut setup = PgConnection::establish(&url).unwrap();
    for schema in [&tenant, &other] {
        setup
            .batch_execute(&format!(
                "CREATE SCHEMA {q}; CREATE TABLE {q}.items (id bigint PRIMARY KEY, body text NOT NULL); \
                 INSERT INTO {q}.items VALUES (1, 'one'); \
                 CREATE FUNCTION {q}.touch() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                q = schema.quoted()
            ))
            .unwrap();
    }
    tenancy_tests::register(&url, &[tenant.clone(), other.clone()]);
    let pool = TenantPool::builder().max_size(1).build(&url).unwrap();
    let always = TenantPool::builder().max_size(1).always_restore(true).build(&url).unwrap();
    let unproven =
        TenantPool::builder().max_size(1).tenant_cache_ttl(std::time::Duration::ZERO).build(&url).unwrap();
    let pooler = TenantPool::builder().max_size(1).pooler_mode(PoolerMode::Transaction).build(&url).unwrap();
    // Plain diesel the way services use it: an r2d2 pool (of one, like
    // ours), its connection already on the tenant's search path.
    let plain_pool = |search_path: Option<String>, cache: bool| {
        #[derive(Debug)]
        struct Setup(Option<String>, bool);
        impl r2d2::CustomizeConnection<PgConnection, diesel::r2d2::Error> for Setup {
            fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
                if !self.1 {
                    conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
                }
                match &self.0 {
                    Some(path) => conn
                        .batch_execute(&format!("SET search_path TO {path}"))
                        .map_err(diesel::r2d2::Error::QueryError),
                    None => Ok(()),
                }
            }
        }
        r2d2::Pool::builder()
            .max_size(1)
            // The same settings as ours: no ping on every checkout.
            .test_on_check_out(false)
            .connection_customizer(Box::new(Setup(search_path, cache)))
            .build(diesel::r2d2::ConnectionManager::<PgConnection>::new(&url))
            .unwrap()
    };
    let plain_pool_on_tenant = plain_pool(Some(tenant.quoted()), true);
    let plain_pool_free = plain_pool(None, true);
    // Behind a transaction pooler diesel's statement cache is off: the plain
    // baseline for that mode has it off too.
    let plain_pool_uncached = plain_pool(None, false);

    let path = pool.search_path_for(&tenant);
    let flip = std::cell::Cell::new(false);

    let mut variants: Vec<Variant<'_>> = vec![
        variant("plain diesel: point lookup", "", || drop(lookup(&mut plain_pool_on_tenant.get().unwrap()))),
        variant("tenant(): point lookup", "plain diesel: point lookup", || {
            drop(lookup(&mut pool.tenant(&tenant).unwrap()))
        }),
        variant(
            "tenant(), always_restore: point lookup (restored every checkout)",
            "plain diesel: point lookup",
            || drop(lookup(&mut always.tenant(&tenant).unwrap())),
        ),
        variant("plain diesel: SET work_mem + point lookup", "", || {
            set_and_lookup(&mut plain_pool_on_tenant.get().unwrap())
        }),
        variant(
            "tenant(): SET work_mem + point lookup (restored at check-in)",
            "plain diesel: SET work_mem + point lookup",
            || set_and_lookup(&mut pool.tenant(&tenant).unwrap()),
        ),
        variant("plain diesel: own function + point lookup", "", || {
            call_and_lookup(&mut plain_pool_on_tenant.get().unwrap())
        }),
        variant(
            "tenant(): own function + point lookup (opaque: restored at check-in)",
            "plain diesel: own function + point lookup",
            || call_and_lookup(&mut pool.tenant(&tenant).unwrap()),
        ),
        variant("plain diesel: SET search_path (alternating) + point lookup", "", || {
            let mut c = plain_pool_free.get().unwrap();
            let to = if flip.replace(!flip.get()) { &tenant } else { &other };
            c.batch_execute(&format!("SET search_path TO {}", to.quoted())).unwrap();
            drop(lookup(&mut c));
        }),
        variant(
            "tenant(), alternating tenants: switch proven recently",
            "plain diesel: SET search_path (alternating) + point lookup",
            || {
                let to = if flip.replace(!flip.get()) { &tenant } else { &other };
                drop(lookup(&mut pool.tenant(to).unwrap()));
            },
        ),
        variant(
            "tenant(), alternating tenants: switch with its proof (tenant_cache_ttl = 0)",
            "plain diesel: SET search_path (alternating) + point lookup",
            || {
                let to = if flip.replace(!flip.get()) { &tenant } else { &other };
                drop(lookup(&mut unproven.tenant(to).unwrap()));
            },
        ),
        variant("plain diesel, no statement cache: transaction with SET LOCAL + point lookup", "", || {
            let mut c = plain_pool_uncached.get().unwrap();
            c.transaction::<_, diesel::result::Error, _>(|c| {
                c.batch_execute(&format!("SET LOCAL search_path TO {path}"))?;
                drop(lookup(c));
                Ok(())
            })
            .unwrap();
        }),
        variant(
            "transaction(), transaction pooler mode (COMMIT carries the check)",
            "plain diesel, no statement cache: transaction with SET LOCAL + point lookup",
            || {
                drop(pooler.transaction(&tenant, |c| Ok::<_, TenancyError>(lookup(c))).unwrap());
            },
        ),
        variant("plain diesel: transaction + point lookup", "", || {
            plain_pool_on_tenant
                .get()
                .unwrap()
                .transaction::<_, diesel::result::Error, _>(|c| {
                    drop(lookup(c));
                    Ok(())
                })
                .unwrap();
        }),
        variant(
            "transaction(), session mode, same tenant",
            "plain diesel: transaction + point lookup",
            || drop(pool.transaction(&tenant, |c| Ok::<_, TenancyError>(lookup(c))).unwrap()),
        ),
    ];

    // Warm every path (connections, statement caches, catalog caches).
    for v in &mut variants {
        for _ in 0..50 {
            (v.op)();
        }
    }
    for _ in 0..rounds {
        for v in &mut variants {
            let start = Instant::now();
            for _ in 0..ops {
                (v.op)();
            }
            v.rounds.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(ops));
        }
    }
    let median = |v: &Variant<'_>| {
        let mut r = v.rounds.clone();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    println!(
        "guard benchmark ({}): {rounds} rounds of {ops} operations per variant, one connection",
        if quick { "quick" } else { "full" }
    );
    println!();
    println!("| variant | µs/op | vs plain diesel doing the same | extra µs |");
    println!("|---|---:|---:|---:|");
    let medians: Vec<(&str, f64)> = variants.iter().map(|v| (v.name, median(v))).collect();
    for v in &variants {
        let ours = median(v);
        match medians.iter().find(|(name, _)| *name == v.paired_with) {
            Some((_, base)) => {
                println!("| {} | {ours:.1} | {:.3}× | {:+.1} |", v.name, base / ours, ours - base);
            }
            None => println!("| {} | {ours:.1} | 1.000× | |", v.name),
        }
    }
    drop(variants);
    drop((pool, always, unproven, pooler));
    drop(db);
}
