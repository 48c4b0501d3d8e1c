//! tenancy in one minute: three tenants provisioned from embedded
//! migrations, written to through `#[tenant_scoped]` DAL methods, each seeing
//! only its own rows; hostile tenant names rejected; everything torn down.
//!
//! ```sh
//! cargo run --example quickstart            # creates, shows and removes three tenants
//! cargo run --example quickstart -- --keep  # keeps them, to look around with psql
//! ```
//!
//! PostgreSQL comes from `DATABASE_URL` when set, else the server on
//! 127.0.0.1:5432, else a throwaway cluster started from the local
//! PostgreSQL binaries and removed on exit.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use tenancy_core::{
    drop_tenant, parse_schema, provision, tenant_scoped, SchemaName, TenancyError, Tenant, TenantContext,
    TenantPool,
};
use tenancy_devdb::{DevDatabase, DevDbError, Origin};

/// The tenant schema's migrations, compiled into the binary.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("quickstart/migrations");

// A table as diesel knows it: no schema name. Which tenant's `notes` a query
// reaches is decided by the connection it runs on.
diesel::table! {
    /// A tenant's notes.
    notes (id) {
        /// Its key.
        id -> BigInt,
        /// What it says.
        body -> Text,
    }
}

/// The data access layer of one tenant's notes.
///
/// It holds a [`Tenant`] (the pool plus one schema name), and its
/// `#[tenant_scoped]` methods get their `conn` from it: there is no way for
/// them to reach another tenant's schema, or `public`.
#[derive(TenantContext)]
struct NotesDal {
    tenant: Tenant,
}

impl NotesDal {
    #[tenant_scoped]
    fn add(&self, body: &str) -> Result<i64, TenancyError> {
        Ok(diesel::insert_into(notes::table)
            .values(notes::body.eq(body))
            .returning(notes::id)
            .get_result(conn)?)
    }

    #[tenant_scoped]
    fn all(&self) -> Result<Vec<String>, TenancyError> {
        Ok(notes::table.select(notes::body).order(notes::id).load(conn)?)
    }

    /// The schemas this tenant's queries resolve names in, as PostgreSQL reports them.
    #[tenant_scoped]
    fn schemas_in_effect(&self) -> Result<Vec<String>, TenancyError> {
        Ok(diesel::select(diesel::dsl::sql::<Array<Text>>("current_schemas(false)")).get_result(conn)?)
    }
}

#[derive(Debug, thiserror::Error)]
enum QuickstartError {
    #[error(transparent)]
    Database(#[from] DevDbError),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error("isolation broken: {0}")]
    Isolation(String),
    #[error("unknown argument {0:?}; usage: quickstart [--keep]")]
    Usage(String),
}

fn main() -> ExitCode {
    tenancy_examples::exit_code(run())
}

fn run() -> Result<(), QuickstartError> {
    let mut keep = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--keep" => keep = true,
            _ => return Err(QuickstartError::Usage(arg)),
        }
    }
    let started = Instant::now();

    let db = DevDatabase::find_or_start()?;
    println!("tenancy quickstart");
    println!("  PostgreSQL: {}", describe(&db));
    let pool =
        TenantPool::builder().max_size(4).connection_timeout(Duration::from_secs(10)).build(db.url())?;
    if let Some(citus) = pool.citus() {
        println!("  Citus {}: every tenant is a distributed schema on a worker", citus.version());
    }

    // Names unique to this run, so that reruns and parallel runs never meet.
    let tag = tenancy_examples::run_tag();
    let mut provisioned = Vec::new();
    let tour = tour(&pool, &tag, &mut provisioned);

    // Tear down whatever was created, also when the tour failed half-way.
    println!();
    let teardown = if keep && !provisioned.is_empty() {
        let names: Vec<&str> = provisioned.iter().map(SchemaName::as_str).collect();
        match db.origin() {
            Origin::Throwaway => {
                println!("5. --keep: nothing to keep, the throwaway cluster goes away on exit")
            }
            _ => {
                println!("5. Kept {}", names.join(", "));
                let first = names.first().copied().unwrap_or_default();
                println!("   look inside with `SELECT * FROM {first}.notes`; remove with tenancy_core::drop_tenant");
            }
        }
        Ok(())
    } else {
        println!("5. Tear down");
        let mut result = Ok(());
        for schema in &provisioned {
            match drop_tenant(&pool, schema) {
                Ok(()) => println!("   dropped {schema}"),
                Err(e) => result = Err(e),
            }
        }
        result
    };

    // Close every connection before a throwaway cluster is stopped and removed.
    drop(pool);
    drop(db);
    tour?;
    teardown?;
    println!("\nDone in {:.1}s: three tenants, one pool, no crossed rows.", started.elapsed().as_secs_f64());
    Ok(())
}

fn describe(db: &DevDatabase) -> String {
    match (db.origin(), db.cluster()) {
        (Origin::Environment, _) => String::from("DATABASE_URL"),
        (Origin::LocalServer, _) => String::from("the local server on 127.0.0.1:5432"),
        (Origin::Throwaway, Some(cluster)) => format!(
            "a throwaway cluster on 127.0.0.1:{} (no server was running; it is removed on exit)",
            cluster.port()
        ),
        (Origin::Throwaway, None) => String::from("a throwaway cluster"),
    }
}

/// Steps 1 to 4. Every tenant it creates is pushed to `provisioned`, for the caller to drop.
fn tour(pool: &TenantPool, tag: &str, provisioned: &mut Vec<SchemaName>) -> Result<(), QuickstartError> {
    println!("\n1. Provision three tenants from embedded migrations");
    let mut tenants = Vec::new();
    for company in ["acme", "globex", "initech"] {
        // Tenant names usually come from outside (a sign-up form, a subdomain):
        // parse_schema validates them and keeps the input in its error.
        let schema = parse_schema(&format!("{company}_{tag}"))?;
        let done = provision(pool, &schema, MIGRATIONS)?;
        provisioned.push(schema.clone());
        // On a Citus coordinator each tenant is a distributed schema, placed on a worker.
        let placed = done.placement.map(|p| format!(", {p}")).unwrap_or_default();
        println!(
            "   {:<22} schema created, {} migration(s) applied{placed}",
            schema.as_str(),
            done.applied.len()
        );
        tenants.push(schema);
    }

    println!("\n2. Write through #[tenant_scoped] DAL methods (one pool, the same code for everyone)");
    let notes: [&[&str]; 3] = [
        &["order 12 anvils", "invoice the coyote"],
        &["hire a new CEO", "rename the company", "buy Hank's hammock company"],
        &["fix the stapler"],
    ];
    let dals: Vec<NotesDal> =
        tenants.iter().map(|schema| NotesDal { tenant: pool.for_tenant(schema.clone()) }).collect();
    for (dal, bodies) in dals.iter().zip(notes) {
        for body in bodies {
            dal.add(body)?;
        }
        println!("   {:<22} + {}", dal.tenant_schema().as_str(), quoted_list(bodies));
    }

    println!("\n3. Each tenant sees only its own rows");
    for (dal, written) in dals.iter().zip(notes) {
        let schema = dal.tenant_schema();
        let seen = dal.all()?;
        println!("   {:<22} reads {} note(s): {}", schema.as_str(), seen.len(), quoted_list(&seen));
        if seen != written {
            return Err(QuickstartError::Isolation(format!(
                "{schema} wrote {} but reads {}",
                quoted_list(written),
                quoted_list(&seen)
            )));
        }
        let path = dal.schemas_in_effect()?;
        if path != [schema.as_str()] {
            return Err(QuickstartError::Isolation(format!(
                "{schema}'s queries resolve names in {path:?}, not in exactly its own schema"
            )));
        }
    }
    println!("   ok: every tenant reads back exactly what it wrote, and its search path is its schema alone");

    println!("\n4. Hostile or mistaken tenant names are rejected before any SQL is sent");
    for input in ["acme'; DROP SCHEMA public CASCADE; --", "Acme", "pg_catalog", "public"] {
        match parse_schema(input) {
            Err(e) => println!("   rejected: {e}"),
            Ok(schema) => {
                return Err(QuickstartError::Isolation(format!(
                    "the tenant name {input:?} was accepted as {schema}"
                )))
            }
        }
    }
    // A valid name that was never provisioned: an error, never a fallback to `public`.
    let ghost = NotesDal { tenant: pool.for_tenant(parse_schema(&format!("ghost_{tag}"))?) };
    match ghost.all() {
        Err(e) if e.is_tenant_not_found() => println!("   not found: {e}"),
        Err(e) => return Err(e.into()),
        Ok(rows) => {
            return Err(QuickstartError::Isolation(format!(
                "a tenant that was never provisioned read {} row(s)",
                rows.len()
            )))
        }
    }
    Ok(())
}

fn quoted_list<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|s| format!("{:?}", s.as_ref())).collect::<Vec<_>>().join(", ")
}
