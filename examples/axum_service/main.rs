//! A multi-tenant web service on axum: sign-up provisions a tenant, every
//! request under `/tenants/{tenant}` is served from that tenant's schema,
//! and deleting a tenant drops its data. The routes are in `app.rs`.
//!
//! ```sh
//! cargo run --example axum_service                      # start the service, drive it over HTTP, check, clean up
//! cargo run --example axum_service -- --serve           # serve on 127.0.0.1:3000 until Ctrl-C
//! curl -d acme localhost:3000/tenants                   # sign up `acme`
//! curl -d 'order anvils' localhost:3000/tenants/acme/notes
//! curl localhost:3000/tenants/acme/notes
//! curl -X DELETE localhost:3000/tenants/acme
//! ```
//!
//! With `--serve ADDR` it prints `listening on http://ADDR` first, and
//! stops at Ctrl-C, or when its standard input closes if that is not a
//! terminal (how a supervising process stops it).

use std::future::IntoFuture;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use serde_json::Value;
use tenancy_core::{drop_tenant, parse_schema, TenancyError, TenantPool};
use tenancy_devdb::{DevDatabase, DevDbError};

mod app;
mod client;

use client::{Client, ClientError};

/// The tenant schema's migrations, compiled into the binary.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("axum_service/migrations");

#[derive(Debug, thiserror::Error)]
enum ServiceError {
    #[error(transparent)]
    Database(#[from] DevDbError),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] ClientError),
    #[error("check failed: {0}")]
    Check(String),
    #[error("unknown argument {0:?}; usage: axum_service [--serve [ADDR]]")]
    Usage(String),
}

fn main() -> ExitCode {
    tenancy_examples::exit_code(run())
}

fn run() -> Result<(), ServiceError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serve = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => None,
        ["--serve"] => Some(SocketAddr::from(([127, 0, 0, 1], 3000))),
        ["--serve", addr] => Some(addr.parse().map_err(|_| ServiceError::Usage(addr.to_owned()))?),
        [other, ..] => return Err(ServiceError::Usage(other.to_owned())),
    };
    let db = DevDatabase::find_or_start()?;
    let pool =
        TenantPool::builder().max_size(8).connection_timeout(Duration::from_secs(10)).build(db.url())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = match serve {
        Some(addr) => runtime.block_on(serve_until_stopped(pool.clone(), addr)),
        None => runtime.block_on(self_check(&pool)),
    };
    // Every connection closed before a throwaway cluster is removed.
    drop(runtime);
    drop(pool);
    drop(db);
    result
}

fn migrations() -> EmbeddedMigrations {
    MIGRATIONS
}

async fn serve_until_stopped(pool: TenantPool, addr: SocketAddr) -> Result<(), ServiceError> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let stopped = async {
        let stdin_closed = async {
            if std::io::stdin().is_terminal() {
                std::future::pending::<()>().await;
            }
            // Reads (and ignores) standard input until it closes.
            let _ = tokio::task::spawn_blocking(|| {
                std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())
            })
            .await;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = stdin_closed => {}
        }
    };
    axum::serve(listener, app::router(pool, migrations)).with_graceful_shutdown(stopped).await?;
    Ok(())
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), ServiceError> {
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Check(what()))
    }
}

/// Expects `status` (and, for an error, the `error` code) of a reply.
fn expect(reply: &client::Reply, status: u16, what: &str) -> Result<Value, ServiceError> {
    check(reply.status == status, || {
        format!("{what}: expected {status}, got {} {}", reply.status, reply.body)
    })?;
    Ok(reply.json())
}

/// Runs the service on a free port and drives it as a client would.
async fn self_check(pool: &TenantPool) -> Result<(), ServiceError> {
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(axum::serve(listener, app::router(pool.clone(), migrations)).into_future());
    println!("tenancy axum_service: listening on http://{addr}, driven over HTTP\n");

    let tag = tenancy_examples::run_tag();
    let names: Vec<String> = ["acme", "globex", "initech"].iter().map(|c| format!("{c}_{tag}")).collect();
    let result = drive(Client::new(addr), &names).await;

    // Whatever happened, no tenant of this run is left behind.
    for name in &names {
        if let Ok(schema) = parse_schema(name) {
            let (p, s) = (pool.clone(), schema.clone());
            let _ = tokio::task::spawn_blocking(move || drop_tenant(&p, &s)).await;
        }
    }
    server.abort();
    result?;
    println!(
        "\nDone in {:.1}s: three tenants signed up, served apart and deleted, over HTTP.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn drive(client: Client, names: &[String]) -> Result<(), ServiceError> {
    println!("1. Sign up (POST /tenants): each provisions a schema");
    for name in names {
        expect(&client.post("/tenants", name).await?, 201, "sign-up")?;
        println!("   201 {name}");
    }
    let again = client.post("/tenants", &names[0]).await?;
    expect(&again, 409, "sign-up of a taken name")?;
    println!("   409 {} again: {}", names[0], again.json()["message"]);
    let bad = client.post("/tenants", "Acme Corp").await?;
    expect(&bad, 400, "sign-up with an invalid name")?;
    println!("   400 \"Acme Corp\": {}", bad.json()["message"]);

    println!("\n2. CRUD on one tenant's notes");
    let (acme, globex) = (&names[0], &names[1]);
    let notes = format!("/tenants/{acme}/notes");
    let created = expect(&client.post(&notes, "order 12 anvils").await?, 201, "add a note")?;
    let id = created["id"].as_i64().ok_or_else(|| ServiceError::Check(format!("no id in {created}")))?;
    println!("   201 POST {notes}: {created}");
    let updated =
        expect(&client.send("PUT", &format!("{notes}/{id}"), "order 13 anvils").await?, 200, "update")?;
    println!("   200 PUT {notes}/{id}: {updated}");
    check(updated["body"] == "order 13 anvils", || format!("update not applied: {updated}"))?;
    let elsewhere = client.get(&format!("/tenants/{globex}/notes/{id}")).await?;
    expect(&elsewhere, 404, "another tenant's note")?;
    println!("   404 GET /tenants/{globex}/notes/{id}: another tenant's note does not exist here");
    expect(&client.send("DELETE", &format!("{notes}/{id}"), "").await?, 204, "delete a note")?;
    expect(&client.get(&format!("{notes}/{id}")).await?, 404, "a deleted note")?;
    println!("   204 DELETE {notes}/{id}, then 404");

    println!("\n3. Concurrent requests for every tenant, then each lists only its own");
    const PER_TENANT: usize = 20;
    let mut tasks = Vec::new();
    for name in names {
        for i in 0..PER_TENANT {
            let path = format!("/tenants/{name}/notes");
            let body = format!("{name} note {i}");
            tasks.push(tokio::spawn(async move { client.post(&path, &body).await }));
        }
    }
    for task in tasks {
        let reply = task.await.map_err(|e| ServiceError::Check(e.to_string()))??;
        expect(&reply, 201, "a concurrent POST")?;
    }
    for name in names {
        let list = expect(&client.get(&format!("/tenants/{name}/notes")).await?, 200, "list")?;
        let bodies: Vec<&str> = list
            .as_array()
            .map(|a| a.iter().filter_map(|n| n["body"].as_str()).collect())
            .unwrap_or_default();
        check(bodies.len() == PER_TENANT, || {
            format!("{name} lists {} notes, wrote {PER_TENANT}", bodies.len())
        })?;
        check(bodies.iter().all(|b| b.starts_with(&format!("{name} "))), || {
            format!("{name} lists another tenant's notes: {bodies:?}")
        })?;
        println!("   {name:<22} lists its {PER_TENANT} notes and nobody else's");
    }

    println!("\n4. Errors clients get (JSON, nothing internal)");
    for (path, status) in [("/tenants/nobody_here/notes", 404), ("/tenants/Nobody/notes", 400)] {
        let reply = client.get(path).await?;
        expect(&reply, status, path)?;
        check(!reply.body.contains("tenancy_core"), || format!("internal detail in {}", reply.body))?;
        println!("   {status} GET {path}: {}", reply.body);
    }

    println!("\n5. Delete the tenants (DELETE /tenants/{{tenant}})");
    for name in names {
        expect(&client.send("DELETE", &format!("/tenants/{name}"), "").await?, 204, "delete a tenant")?;
        expect(&client.get(&format!("/tenants/{name}/notes")).await?, 404, "a deleted tenant")?;
        println!("   204 {name}, then 404");
    }
    Ok(())
}
