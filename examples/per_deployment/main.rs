//! One deployment per tenant: the process learns its tenant from the
//! environment (`TENANCY_SCHEMA`), provisions it at start-up if needed
//! (or brings its migrations up to date), and serves that tenant only.
//!
//! ```sh
//! TENANCY_SCHEMA=acme cargo run --example per_deployment
//! # then type requests, one per line: `add <title>`, `done <id>`, `list`; Ctrl-D stops
//! printf 'add ship it\nlist\n' | TENANCY_SCHEMA=acme cargo run --example per_deployment
//! TENANCY_SCHEMA=acme cargo run --example per_deployment -- --decommission   # drop the tenant
//! ```
//!
//! The tenant outlives the process: the next deployment of `acme` finds its
//! todos where the last one left them. Nothing in the request handling names
//! a tenant; the only handle the server holds is a [`Tenant`] for its own.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use tenancy_core::{
    drop_tenant, parse_schema, provision, tenant_scoped, SchemaName, TenancyError, Tenant, TenantContext,
    TenantPool,
};
use tenancy_devdb::{DevDatabase, DevDbError};

/// The tenant schema's migrations, compiled into the binary.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("per_deployment/migrations");

/// The environment variable naming this deployment's tenant.
const SCHEMA_VAR: &str = "TENANCY_SCHEMA";

diesel::table! {
    /// The tenant's todo list.
    todos (id) {
        /// Its key, shown to clients as `#id`.
        id -> BigInt,
        /// What is to be done.
        title -> Text,
        /// Whether it is.
        done -> Bool,
    }
}

/// One row of `todos`.
#[derive(Queryable, Selectable)]
#[diesel(table_name = todos)]
struct Todo {
    id: i64,
    title: String,
    done: bool,
}

/// The data access layer of the one tenant this deployment serves.
#[derive(TenantContext)]
struct TodosDal {
    tenant: Tenant,
}

impl TodosDal {
    #[tenant_scoped]
    fn add(&self, title: &str) -> Result<Todo, TenancyError> {
        Ok(diesel::insert_into(todos::table)
            .values(todos::title.eq(title))
            .returning(Todo::as_returning())
            .get_result(conn)?)
    }

    /// Marks a todo done; `false` when there is no such todo.
    #[tenant_scoped]
    fn complete(&self, id: i64) -> Result<bool, TenancyError> {
        Ok(diesel::update(todos::table.find(id)).set(todos::done.eq(true)).execute(conn)? == 1)
    }

    #[tenant_scoped]
    fn list(&self) -> Result<Vec<Todo>, TenancyError> {
        Ok(todos::table.select(Todo::as_select()).order(todos::id).load(conn)?)
    }

    /// The schemas this deployment's queries resolve names in, as PostgreSQL reports them.
    #[tenant_scoped]
    fn schemas_in_effect(&self) -> Result<Vec<String>, TenancyError> {
        Ok(diesel::select(diesel::dsl::sql::<Array<Text>>("current_schemas(false)")).get_result(conn)?)
    }
}

#[derive(Debug, thiserror::Error)]
enum DeploymentError {
    #[error(
        "{SCHEMA_VAR} is not set; set it to the schema of the tenant this deployment serves, e.g. {SCHEMA_VAR}=acme"
    )]
    SchemaMissing,
    #[error("{SCHEMA_VAR} is not valid UTF-8; set it to a tenant schema name such as acme")]
    SchemaNotUnicode,
    #[error("{SCHEMA_VAR}: {0}")]
    SchemaInvalid(TenancyError),
    #[error(transparent)]
    Database(#[from] DevDbError),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error("could not read requests from stdin: {0}")]
    Stdin(#[from] std::io::Error),
    #[error("isolation broken: {0}")]
    Isolation(String),
    #[error("unknown argument {0:?}; usage: per_deployment [--decommission]")]
    Usage(String),
}

/// One request, as a client of this deployment sends it: no tenant in sight.
enum Request {
    Add(String),
    Done(i64),
    List,
}

impl Request {
    /// `Ok(None)` for blank lines and `#` comments.
    fn parse(line: &str) -> Result<Option<Self>, String> {
        let line = line.trim();
        let (verb, rest) = line.split_once(' ').map_or((line, ""), |(v, r)| (v, r.trim()));
        match verb {
            "" => Ok(None),
            _ if verb.starts_with('#') => Ok(None),
            "add" if !rest.is_empty() => Ok(Some(Self::Add(rest.to_owned()))),
            "done" => {
                rest.parse().map(|id| Some(Self::Done(id))).map_err(|_| format!("not a todo id: {rest:?}"))
            }
            "list" => Ok(Some(Self::List)),
            _ => Err(format!("unknown request {line:?}; try `add <title>`, `done <id>` or `list`")),
        }
    }
}

fn main() -> ExitCode {
    tenancy_examples::exit_code(run())
}

/// This deployment's tenant, from the environment.
fn schema_from_env() -> Result<SchemaName, DeploymentError> {
    match std::env::var(SCHEMA_VAR) {
        Ok(value) => parse_schema(&value).map_err(DeploymentError::SchemaInvalid),
        Err(std::env::VarError::NotPresent) => Err(DeploymentError::SchemaMissing),
        Err(std::env::VarError::NotUnicode(_)) => Err(DeploymentError::SchemaNotUnicode),
    }
}

fn run() -> Result<(), DeploymentError> {
    let mut decommission = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--decommission" => decommission = true,
            _ => return Err(DeploymentError::Usage(arg)),
        }
    }
    // Configuration first: a deployment without a valid tenant never touches the database.
    let schema = schema_from_env()?;
    let db = DevDatabase::find_or_start()?;
    let pool =
        TenantPool::builder().max_size(2).connection_timeout(Duration::from_secs(10)).build(db.url())?;

    if decommission {
        drop_tenant(&pool, &schema)?;
        println!("decommissioned tenant {schema}: its schema and registry row are dropped");
        return Ok(());
    }

    // Start-up: create the tenant, or apply the migrations this release added.
    let done = provision(&pool, &schema, MIGRATIONS)?;
    if done.created {
        println!("provisioned tenant {schema} ({} migration(s) applied)", done.applied.len());
    } else if done.applied.is_empty() {
        println!("tenant {schema} is provisioned and up to date");
    } else {
        println!("tenant {schema}: applied {} new migration(s)", done.applied.len());
    }

    // From here on the server holds a handle to its own tenant, and nothing else.
    let dal = TodosDal { tenant: pool.for_tenant(schema) };
    let path = dal.schemas_in_effect()?;
    if path != [dal.tenant_schema().as_str()] {
        return Err(DeploymentError::Isolation(format!(
            "queries resolve names in {path:?}, not in exactly {}",
            dal.tenant_schema()
        )));
    }
    println!("serving tenant {} only (search path: {})", dal.tenant_schema(), path.join(", "));
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        println!("requests: `add <title>`, `done <id>`, `list`; Ctrl-D to stop");
    }
    for line in stdin.lock().lines() {
        match Request::parse(&line?) {
            Ok(Some(request)) => serve(&dal, request)?,
            Ok(None) => {}
            Err(message) => println!("? {message}"),
        }
    }
    Ok(())
}

/// Answers one request. Database failures end the process; a bad request does not.
fn serve(dal: &TodosDal, request: Request) -> Result<(), TenancyError> {
    match request {
        Request::Add(title) => {
            let todo = dal.add(&title)?;
            println!("added #{} {:?}", todo.id, todo.title);
        }
        Request::Done(id) => match dal.complete(id)? {
            true => println!("completed #{id}"),
            false => println!("? no todo #{id}"),
        },
        Request::List => {
            let todos = dal.list()?;
            if todos.is_empty() {
                println!("(no todos)");
            }
            for todo in todos {
                println!("#{} [{}] {}", todo.id, if todo.done { "x" } else { " " }, todo.title);
            }
        }
    }
    Ok(())
}
