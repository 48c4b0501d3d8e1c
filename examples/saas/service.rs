//! The request handler: every request names its tenant, which is validated
//! at the edge and turned into a [`Workspace`] for that tenant alone.

use std::fmt;

use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel_migrations::EmbeddedMigrations;
use tenancy_core::{
    drop_tenant, parse_schema, provision, tenant_exists, SchemaName, TenancyError, TenantContext, TenantPool,
};

use crate::billing::Billing;
use crate::dal::{DalError, Workspace};

/// One request, as it reaches the service (from a subdomain, a header or a
/// token): the tenant is an untrusted string until validated.
pub struct Request {
    /// The tenant it names.
    pub tenant: String,
    /// What it asks for.
    pub action: Action,
}

/// What a request asks for.
pub enum Action {
    /// A company signs up: the tenant is provisioned and its account opened.
    SignUp { company: String, plan: String },
    /// The tenant leaves: its schema and its account are dropped.
    DeleteAccount,
    /// `POST /projects`
    CreateProject { name: String },
    /// `POST /projects/{project}/tasks`
    AddTask { project: i64, title: String },
    /// `POST /tasks/{task}/comments`
    Comment { task: i64, author: String, body: String },
    /// `POST /tasks/{task}/done`
    CompleteTask { task: i64, author: String },
    /// `GET /tasks/{task}`
    GetTask { task: i64 },
    /// `GET /board`
    Board,
    /// `PUT /tasks/{task}/priority` (release 2)
    SetPriority { task: i64, priority: i16 },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SignUp { .. } => write!(f, "POST /signup"),
            Self::DeleteAccount => write!(f, "DELETE /account"),
            Self::CreateProject { .. } => write!(f, "POST /projects"),
            Self::AddTask { project, .. } => write!(f, "POST /projects/{project}/tasks"),
            Self::Comment { task, .. } => write!(f, "POST /tasks/{task}/comments"),
            Self::CompleteTask { task, .. } => write!(f, "POST /tasks/{task}/done"),
            Self::GetTask { task } => write!(f, "GET /tasks/{task}"),
            Self::Board => write!(f, "GET /board"),
            Self::SetPriority { task, .. } => write!(f, "PUT /tasks/{task}/priority"),
        }
    }
}

/// A successful response.
pub struct Reply {
    /// 200 or 201.
    pub status: u16,
    /// What happened.
    pub body: String,
}

impl Reply {
    fn ok(body: String) -> Self {
        Self { status: 200, body }
    }
    fn created(body: String) -> Self {
        Self { status: 201, body }
    }
}

/// A failed request, as its client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is wrong, e.g. it names an invalid tenant.
    #[error("{0}")]
    BadRequest(String),
    /// The tenant's plan does not allow it.
    #[error("{0}")]
    PaymentRequired(String),
    /// The tenant, or a row the request names, does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It already exists.
    #[error("{0}")]
    Conflict(String),
    /// Something broke on the server side.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status it would be sent as.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::PaymentRequired(_) => 402,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::Internal(_) => 500,
        }
    }
}

impl From<TenancyError> for ApiError {
    fn from(error: TenancyError) -> Self {
        match error {
            TenancyError::TenantNotFound { .. } => Self::NotFound(error.to_string()),
            TenancyError::InvalidSchemaName { .. } => Self::BadRequest(error.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<DalError> for ApiError {
    fn from(error: DalError) -> Self {
        match error {
            DalError::Tenancy(e) => e.into(),
            DalError::NotFound { .. } => Self::NotFound(error.to_string()),
            DalError::DuplicateProject(_) => Self::Conflict(error.to_string()),
            DalError::Query(_) => Self::Internal(error.to_string()),
        }
    }
}

/// The migrations of a release of this service: every tenant migration up
/// to and including version `up_to` (`None`: all of them).
///
/// A real service ships one `embed_migrations!` per build; this example
/// plays two releases in one process, so release 1 is the same migrations
/// without the ones release 2 added.
#[derive(Clone, Copy)]
pub struct Release {
    /// Every tenant migration this example has.
    pub migrations: &'static EmbeddedMigrations,
    /// The last version the release includes.
    pub up_to: Option<&'static str>,
}

impl MigrationSource<Pg> for Release {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<Pg>>>> {
        let mut all = MigrationSource::<Pg>::migrations(self.migrations)?;
        if let Some(last) = self.up_to {
            // diesel reads the version `2024-06-01-000000` as `20240601000000`.
            let last = last.replace('-', "");
            all.retain(|m| m.name().version().to_string() <= last);
        }
        Ok(all)
    }
}

/// The service: one pool for every tenant.
pub struct Service {
    pool: TenantPool,
    billing: Billing,
    /// The release being served; tenants signing up are provisioned with its migrations.
    pub release: Release,
}

impl Service {
    /// A service on `pool`, serving `release`.
    pub fn new(pool: TenantPool, release: Release) -> Self {
        Self { billing: Billing::new(pool.clone()), pool, release }
    }

    /// Handles one request.
    pub fn handle(&self, request: &Request) -> Result<Reply, ApiError> {
        // Validated at the edge: a hostile name never reaches SQL.
        let tenant = parse_schema(&request.tenant)?;
        match &request.action {
            Action::SignUp { company, plan } => self.sign_up(&tenant, company, plan),
            Action::DeleteAccount => self.delete_account(&tenant),
            action => self.tenant_request(tenant, action),
        }
    }

    fn sign_up(&self, tenant: &SchemaName, company: &str, plan: &str) -> Result<Reply, ApiError> {
        let plan =
            self.billing.plan(plan)?.ok_or_else(|| ApiError::BadRequest(format!("no plan {plan:?}")))?;
        if tenant_exists(&self.pool, tenant)? {
            return Err(ApiError::Conflict(format!("tenant {tenant} already exists")));
        }
        let provisioned = provision(&self.pool, tenant, self.release)?;
        self.billing.open_account(tenant, company, &plan.id)?;
        // On Citus: the worker the tenant's tables were placed on.
        let placed = provisioned.placement.map(|p| format!(", {p}")).unwrap_or_default();
        Ok(Reply::created(format!(
            "tenant {tenant} for {company}, {} plan at ${}/month ({} migration(s) applied{placed})",
            plan.name,
            plan.monthly_cents / 100,
            provisioned.applied.len()
        )))
    }

    fn delete_account(&self, tenant: &SchemaName) -> Result<Reply, ApiError> {
        if !tenant_exists(&self.pool, tenant)? {
            return Err(ApiError::NotFound(format!("no tenant {tenant}")));
        }
        drop_tenant(&self.pool, tenant)?;
        self.billing.close_account(tenant)?;
        Ok(Reply::ok(format!("tenant {tenant} dropped, with its projects, tasks and comments")))
    }

    /// Everything a tenant does to its own data goes through its workspace.
    fn tenant_request(&self, tenant: SchemaName, action: &Action) -> Result<Reply, ApiError> {
        let workspace = Workspace::new(self.pool.for_tenant(tenant));
        Ok(match action {
            Action::CreateProject { name } => {
                let plan = self.billing.plan_of(workspace.tenant_schema())?.ok_or_else(|| {
                    ApiError::NotFound(format!("no account for tenant {}", workspace.tenant_schema()))
                })?;
                if workspace.project_count()? >= i64::from(plan.max_projects) {
                    return Err(ApiError::PaymentRequired(format!(
                        "the {} plan allows {} projects; upgrade to add more",
                        plan.name, plan.max_projects
                    )));
                }
                let id = workspace.create_project(name)?;
                Reply::created(format!("project #{id} {name:?}"))
            }
            Action::AddTask { project, title } => {
                let id = workspace.add_task(*project, title)?;
                Reply::created(format!("task #{id} {title:?}"))
            }
            Action::Comment { task, author, body } => {
                workspace.comment(*task, author, body)?;
                Reply::created(format!("{author}: {body:?}"))
            }
            Action::CompleteTask { task, author } => {
                workspace.complete_task(*task, author)?;
                Reply::ok(format!("task #{task} done"))
            }
            Action::GetTask { task } => {
                let view = workspace.task(*task)?;
                let state = if view.done { "done" } else { "open" };
                Reply::ok(format!("task #{} {:?} in {:?}, {state}", view.id, view.title, view.project))
            }
            Action::Board => {
                let board = workspace.board()?;
                let lines: Vec<String> = board
                    .iter()
                    .map(|p| {
                        format!(
                            "{:?}: {} task(s), {} open, {} comment(s)",
                            p.name, p.tasks, p.open, p.comments
                        )
                    })
                    .collect();
                Reply::ok(if lines.is_empty() { String::from("no projects") } else { lines.join("; ") })
            }
            Action::SetPriority { task, priority } => {
                workspace.set_priority(*task, *priority)?;
                Reply::ok(format!("task #{task} priority {priority}"))
            }
            Action::SignUp { .. } | Action::DeleteAccount => {
                return Err(ApiError::BadRequest(String::from("not a workspace request")))
            }
        })
    }
}
