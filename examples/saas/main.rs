//! A multi-tenant project tracker, the shape of a real service:
//!
//! * `schema.rs`: projects, tasks and comments (with foreign keys) in every
//!   tenant's schema; plans and accounts in the shared schema;
//! * `dal.rs`: the tenant DAL, written once with `#[tenant_scoped]`;
//! * `billing.rs`: the shared tables, through the pool's shared connections;
//! * `service.rs`: a request handler where each request names its tenant,
//!   with sign-up (provision) and account deletion (drop_tenant);
//! * here: a run of requests, 25 trial sign-ups, then release 2 adding a
//!   column to every tenant with `migrate_all` and a progress bar.
//!
//! ```sh
//! cargo run --example saas
//! ```
//!
//! It works in a database of its own, created for the run and dropped at the
//! end, so the fleet migration sees exactly the tenants this run created.
//! Every response is checked against what it must be; a tenant seeing
//! another's data makes the run fail.

mod billing;
mod dal;
mod schema;
mod service;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tenancy_core::{
    list_tenants, migrate_all, migrate_shared, MigrateOptions, MigrationReport, TenancyError, TenantPool,
};
use tenancy_devdb::{DevDatabase, DevDbError};

use crate::billing::Billing;
use crate::dal::{ProjectSummary, Workspace};
use crate::service::{Action, ApiError, Release, Request, Service};

/// The shared schema's migrations. `build.rs` makes cargo embed them again
/// when a file under `saas/migrations` changes.
const SHARED_MIGRATIONS: EmbeddedMigrations = embed_migrations!("saas/migrations/shared");
/// Every tenant migration, release 1's and release 2's.
const TENANT_MIGRATIONS: EmbeddedMigrations = embed_migrations!("saas/migrations/tenant");
/// Release 1: projects, tasks and comments.
const RELEASE_1: Release = Release { migrations: &TENANT_MIGRATIONS, up_to: Some("2024-06-01-000000") };
/// Release 2: adds `tasks.priority`.
const RELEASE_2: Release = Release { migrations: &TENANT_MIGRATIONS, up_to: None };

/// How many companies sign up for a trial in step 3.
const TRIALS: usize = 25;

#[derive(Debug, thiserror::Error)]
enum SaasError {
    #[error(transparent)]
    Database(#[from] DevDbError),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error("{request} answered {got}; expected {expected}")]
    Unexpected { request: String, got: String, expected: String },
    #[error("isolation broken: {0}")]
    Isolation(String),
    #[error("fleet migration incomplete: {0}")]
    Fleet(String),
}

fn main() -> ExitCode {
    tenancy_examples::exit_code(run())
}

fn run() -> Result<(), SaasError> {
    let started = Instant::now();
    let db = DevDatabase::find_or_start()?;
    // A database of this run's own: the fleet migration sees exactly the tenants created here.
    let database = db.create_database(&format!("tenancy_saas_{}", tenancy_examples::run_tag()))?;
    let pool = TenantPool::builder()
        .max_size(4)
        .connection_timeout(Duration::from_secs(10))
        .build(database.url())?;
    let result = operate(&pool);
    // Connections first, then the database, then (if one was started) the cluster.
    drop(pool);
    drop(database);
    drop(db);
    result?;
    println!("\nDone in {:.1}s.", started.elapsed().as_secs_f64());
    Ok(())
}

fn operate(pool: &TenantPool) -> Result<(), SaasError> {
    println!("saas: a multi-tenant project tracker, every tenant on one pool");
    if let Some(citus) = pool.citus() {
        println!("  on Citus {}: tenants are distributed schemas, spread over the workers", citus.version());
    }

    println!("\n1. The shared schema: plans and accounts");
    // One run at a time, however many replicas start together.
    let applied = migrate_shared(pool, SHARED_MIGRATIONS)?.len();
    println!("   {applied} shared migration(s) applied");

    println!("\n2. Requests, each naming its tenant (release 1)");
    let mut service = Service::new(pool.clone(), RELEASE_1);
    for (request, status, text) in release_1_requests() {
        handle(&service, &request, status, text, true)?;
    }

    println!("\n3. {TRIALS} more companies sign up for a free trial");
    for n in 1..=TRIALS {
        let tenant = format!("trial_{n:02}");
        let company = format!("Trial Company {n}");
        let requests = [
            (Action::SignUp { company, plan: "free".into() }, 201),
            (Action::CreateProject { name: "Onboarding".into() }, 201),
            (Action::AddTask { project: 1, title: "Invite the team".into() }, 201),
        ];
        for (action, status) in requests {
            handle(&service, &Request { tenant: tenant.clone(), action }, status, "", false)?;
        }
    }
    println!("   trial_01 .. trial_{TRIALS:02}: signed up, each with a project and a task");

    println!("\n4. Release 2 adds task priorities: migrate every tenant");
    let live = 2 + TRIALS; // acme, globex and the trials; initech left in step 2
    let fleet_started = Instant::now();
    let report = migrate_fleet(pool)?;
    let c = report.counts;
    println!(
        "   {} tenants in {:.2}s: {} migrated to {}, {} already current, {} failed",
        c.total,
        fleet_started.elapsed().as_secs_f64(),
        c.applied,
        report.latest_version.as_deref().unwrap_or("-"),
        c.already_current,
        c.failed
    );
    for (schema, error) in report.failed() {
        println!("   {schema}: {error}");
    }
    if !report.is_clean() || c.applied != live || c.total != live {
        return Err(SaasError::Fleet(format!(
            "expected {live} tenants migrated, got {} of {} ({} failed)",
            c.applied, c.total, c.failed
        )));
    }
    let rerun = migrate_all(pool, RELEASE_2, MigrateOptions::new())?;
    println!(
        "   run again: {} already current, {} schemas visited (the registry knows who is current)",
        rerun.counts.already_current, rerun.visited
    );
    if rerun.counts.already_current != live || rerun.visited != 0 {
        return Err(SaasError::Fleet(format!(
            "a rerun should find all {live} tenants current without visiting them; it visited {}",
            rerun.visited
        )));
    }

    println!("\n5. Release 2 serves every tenant, old and new");
    service.release = RELEASE_2;
    for (request, status, text) in release_2_requests() {
        handle(&service, &request, status, text, true)?;
    }

    println!("\n6. Audit: every tenant holds exactly its own data");
    audit(pool)
}

/// The requests of step 2, each with the status it must get and a text its
/// answer must contain.
fn release_1_requests() -> Vec<(Request, u16, &'static str)> {
    let r = |tenant: &str, action| Request { tenant: tenant.to_owned(), action };
    vec![
        (r("acme", Action::SignUp { company: "Acme Corp".into(), plan: "free".into() }), 201, "Free plan"),
        (r("globex", Action::SignUp { company: "Globex".into(), plan: "team".into() }), 201, "Team plan"),
        (r("initech", Action::SignUp { company: "Initech".into(), plan: "team".into() }), 201, "Team plan"),
        (
            r("acme", Action::SignUp { company: "Acme again".into(), plan: "team".into() }),
            409,
            "already exists",
        ),
        (r("acme", Action::CreateProject { name: "Website".into() }), 201, "project #1"),
        (r("acme", Action::CreateProject { name: "Rockets".into() }), 201, "project #2"),
        (r("acme", Action::CreateProject { name: "Anvils".into() }), 402, "Free plan allows 2"),
        (r("globex", Action::CreateProject { name: "Doomsday device".into() }), 201, "project #1"),
        (r("acme", Action::AddTask { project: 1, title: "Draw the homepage".into() }), 201, "task #1"),
        (r("acme", Action::AddTask { project: 2, title: "Order fuel".into() }), 201, "task #2"),
        (r("globex", Action::AddTask { project: 1, title: "Hire henchmen".into() }), 201, "task #1"),
        // acme has a project #2; globex does not, and cannot reach acme's.
        (r("globex", Action::AddTask { project: 2, title: "Steal the fuel".into() }), 404, "no project #2"),
        (
            r("acme", Action::Comment { task: 1, author: "wile".into(), body: "more orange".into() }),
            201,
            "more orange",
        ),
        // Task #1 of globex is globex's, not acme's.
        (r("globex", Action::GetTask { task: 1 }), 200, "\"Hire henchmen\" in \"Doomsday device\", open"),
        (r("initech", Action::GetTask { task: 1 }), 404, "no task #1"),
        (r("globex", Action::CompleteTask { task: 1, author: "hank".into() }), 200, "done"),
        (r("acme", Action::GetTask { task: 1 }), 200, "\"Draw the homepage\" in \"Website\", open"),
        (r("acme'; DROP SCHEMA public CASCADE; --", Action::Board), 400, "invalid schema name"),
        (r("Acme", Action::Board), 400, "must be lowercase"),
        (r("initech", Action::DeleteAccount), 200, "dropped"),
        (r("initech", Action::Board), 404, "not a registered tenant"),
        (r("acme", Action::Board), 200, "\"Website\": 1 task(s), 1 open, 1 comment(s)"),
    ]
}

/// The requests of step 5.
fn release_2_requests() -> Vec<(Request, u16, &'static str)> {
    let r = |tenant: &str, action| Request { tenant: tenant.to_owned(), action };
    vec![
        (r("acme", Action::SetPriority { task: 1, priority: 3 }), 200, "priority 3"),
        (r("globex", Action::SetPriority { task: 1, priority: 1 }), 200, "priority 1"),
        (r("trial_07", Action::SetPriority { task: 1, priority: 2 }), 200, "priority 2"),
        (r("trial_07", Action::SetPriority { task: 2, priority: 2 }), 404, "no task #2"),
        (
            r("umbrella", Action::SignUp { company: "Umbrella".into(), plan: "team".into() }),
            201,
            "2 migration(s) applied",
        ),
        (r("umbrella", Action::CreateProject { name: "Vaccine".into() }), 201, "project #1"),
        (r("umbrella", Action::AddTask { project: 1, title: "Trials".into() }), 201, "task #1"),
        (r("umbrella", Action::SetPriority { task: 1, priority: 5 }), 200, "priority 5"),
    ]
}

/// Handles one request and checks its answer: a wrong status or text ends the run.
fn handle(
    service: &Service,
    request: &Request,
    status: u16,
    text: &str,
    show: bool,
) -> Result<(), SaasError> {
    let (got, body) = match service.handle(request) {
        Ok(reply) => (reply.status, reply.body),
        Err(error) => (error.status(), error.to_string()),
    };
    if show {
        println!("   {:<10} {:<26} {got} {body}", shorten(&request.tenant), request.action.to_string());
    }
    if got != status || !body.contains(text) {
        return Err(SaasError::Unexpected {
            request: format!("{} {}", request.tenant, request.action),
            got: format!("{got} {body:?}"),
            expected: format!("{status} containing {text:?}"),
        });
    }
    Ok(())
}

/// A tenant name as received, cut to fit its column.
fn shorten(tenant: &str) -> String {
    match tenant.char_indices().nth(10) {
        Some((end, _)) => format!("{}…", &tenant[..end - 1]),
        None => tenant.to_owned(),
    }
}

/// Runs `migrate_all` with release 2, drawing a progress bar when stdout is a terminal.
fn migrate_fleet(pool: &TenantPool) -> Result<MigrationReport, TenancyError> {
    let bar = if std::io::stdout().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("   [{bar:30}] {pos}/{len} tenants {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    let progress = bar.clone();
    let options = MigrateOptions::new().jobs(4).on_progress(move |p| {
        progress.set_length(p.counts.total as u64);
        progress.set_position(p.counts.done() as u64);
        progress.set_message(p.schema.to_string());
    });
    let report = migrate_all(pool, RELEASE_2, options);
    bar.finish_and_clear();
    report
}

/// Reads every tenant's board through its own workspace and compares it with
/// what its requests created.
fn audit(pool: &TenantPool) -> Result<(), SaasError> {
    let summary =
        |name: &str, tasks, open, comments| ProjectSummary { name: name.into(), tasks, open, comments };
    let mut expected = vec![
        ("acme".to_owned(), vec![summary("Website", 1, 1, 1), summary("Rockets", 1, 1, 0)]),
        ("globex".to_owned(), vec![summary("Doomsday device", 1, 0, 1)]),
        ("umbrella".to_owned(), vec![summary("Vaccine", 1, 1, 0)]),
    ];
    expected.extend((1..=TRIALS).map(|n| (format!("trial_{n:02}"), vec![summary("Onboarding", 1, 1, 0)])));
    expected.sort_by(|a, b| a.0.cmp(&b.0));

    let registered: Vec<String> = list_tenants(pool)?.into_iter().map(|t| t.schema.to_string()).collect();
    let wanted: Vec<String> = expected.iter().map(|(name, _)| name.clone()).collect();
    if registered != wanted {
        return Err(SaasError::Isolation(format!(
            "registered tenants are {registered:?}, expected {wanted:?}"
        )));
    }
    for (name, board) in &expected {
        let workspace = Workspace::new(pool.for_tenant(tenancy_core::parse_schema(name)?));
        let seen =
            workspace.board().map_err(ApiError::from).map_err(|e| SaasError::Isolation(e.to_string()))?;
        if &seen != board {
            return Err(SaasError::Isolation(format!("{name} sees {seen:?}, expected {board:?}")));
        }
    }
    println!("   {} tenants, each board exactly its own; initech is gone", expected.len());

    let (cents, accounts) = Billing::new(pool.clone()).monthly_revenue()?;
    println!("   shared schema: {accounts} accounts, ${}.{:02} a month", cents / 100, cents % 100);
    if accounts != wanted.len() {
        return Err(SaasError::Isolation(format!("{accounts} accounts for {} tenants", wanted.len())));
    }
    Ok(())
}
