//! [axum] integration for [tenancy](tenancy_core): find the tenant a request
//! is for, check it is a registered tenant, and answer clients with safe
//! error responses.
//!
//! * [`TenantResolver`]: where the tenant name is read (a subdomain, a
//!   header or a path segment, [`TenantSource`]), held in the router's state.
//! * [`CurrentTenant`]: the extractor. It validates the name
//!   ([`SchemaName`]), then checks that it is a registered tenant with
//!   [`TenantPool::check_tenant_async`]: answered from the pool's tenant
//!   cache (no round trip, no blocking thread) when the pool proved the
//!   tenant within its `tenant_cache_ttl`, and by one checkout on tokio's
//!   blocking pool otherwise. `drop_tenant` in this process invalidates the
//!   cache at once, in other processes by notification. Unknown names are
//!   not cached: each costs one checkout (rate-limit made-up names in front
//!   of the service).
//! * [`TenancyRejection`]: the extractor's rejection, and an error type for
//!   handlers (`From<TenancyError>`): an invalid name is a 400, an unknown
//!   tenant a 404, a pool timeout a 503; bodies are JSON
//!   (`{"error": "unknown_tenant", "message": ".."}`) and never carry
//!   internal details, which are logged (`tracing`, target `tenancy_axum`).
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tenancy_axum::{CurrentTenant, TenancyRejection, TenantResolver};
//! use tenancy_core::{TenancyError, TenantPool};
//!
//! async fn count(CurrentTenant(tenant): CurrentTenant) -> Result<String, TenancyRejection> {
//!     use tenancy_core::diesel::{self, RunQueryDsl};
//!     let n = tenant
//!         .run(|conn| Ok::<_, TenancyError>(diesel::sql_query("SELECT 1").execute(conn)?))
//!         .await?;
//!     Ok(n.to_string())
//! }
//!
//! # fn f() -> Result<(), TenancyError> {
//! let pool = TenantPool::connect("postgres://localhost/app")?;
//! // `acme.example.com` is tenant `acme`.
//! let app: Router = Router::new().route("/count", get(count)).with_state(TenantResolver::subdomain(pool, "example.com"));
//! # Ok(()) }
//! ```

use std::fmt;
use std::ops::Deref;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{HeaderName, HOST, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tenancy_core::{SchemaName, SchemaNameError, TenancyError, Tenant, TenantPool};

/// Where a request names its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TenantSource {
    /// The first label of the host, under a base domain: with base
    /// `example.com`, `acme.example.com` is `acme`. The host is read from
    /// the `Host` header or, for HTTP/2, the request URI; its port is
    /// ignored. Host names are case-insensitive, so the label is lowercased
    /// (the one place a name is folded: `ACME.example.com` is the host
    /// `acme.example.com`). Anything else under the base (`a.b.example.com`)
    /// is an invalid name.
    Subdomain {
        /// The domain tenants are subdomains of, without a leading dot.
        base_domain: String,
    },
    /// The value of a request header, e.g. `x-tenant: acme`, taken as it is.
    Header(HeaderName),
    /// The path segment at this index (from 0): with index 1,
    /// `/tenants/acme/notes` is `acme`. Taken as it is (a percent-encoded
    /// character is not a valid name).
    PathSegment(usize),
}

/// Resolves the tenant of a request: reads its name where [`TenantSource`]
/// says, validates it and checks it is a registered tenant of the pool.
///
/// Put it in the router's state (or make it reachable from the state with
/// [`FromRef`]) for [`CurrentTenant`] to find. Cloning is cheap.
///
/// ```
/// use tenancy_axum::{TenantResolver, TenantSource};
/// # fn f(pool: tenancy_core::TenantPool) {
/// let by_host = TenantResolver::subdomain(pool.clone(), "example.com");
/// let by_header = TenantResolver::header(pool.clone(), axum::http::HeaderName::from_static("x-tenant"));
/// let by_path = TenantResolver::path_segment(pool, 1); // /tenants/{tenant}/...
/// assert_eq!(by_path.source(), &TenantSource::PathSegment(1));
/// # }
/// ```
#[derive(Clone)]
pub struct TenantResolver {
    pool: TenantPool,
    source: TenantSource,
}

impl fmt::Debug for TenantResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantResolver").field("source", &self.source).finish_non_exhaustive()
    }
}

impl TenantResolver {
    /// A resolver reading the tenant from `source`.
    pub fn new(pool: TenantPool, source: TenantSource) -> Self {
        Self { pool, source }
    }

    /// Tenants are subdomains of `base_domain` ([`TenantSource::Subdomain`]).
    pub fn subdomain(pool: TenantPool, base_domain: impl Into<String>) -> Self {
        let base_domain = base_domain.into().trim_start_matches('.').to_ascii_lowercase();
        Self::new(pool, TenantSource::Subdomain { base_domain })
    }

    /// Tenants are named by the header `name` ([`TenantSource::Header`]).
    pub fn header(pool: TenantPool, name: HeaderName) -> Self {
        Self::new(pool, TenantSource::Header(name))
    }

    /// Tenants are named by the path segment at `index` ([`TenantSource::PathSegment`]).
    pub fn path_segment(pool: TenantPool, index: usize) -> Self {
        Self::new(pool, TenantSource::PathSegment(index))
    }

    /// Where tenants are read from.
    pub fn source(&self) -> &TenantSource {
        &self.source
    }

    /// The pool tenants are served from.
    pub fn pool(&self) -> &TenantPool {
        &self.pool
    }

    /// The tenant name a request carries, validated, without asking the
    /// pool whether it is a tenant.
    pub fn name_of(&self, parts: &Parts) -> Result<SchemaName, TenancyRejection> {
        let raw = match &self.source {
            TenantSource::Subdomain { base_domain } => subdomain_of(parts, base_domain),
            TenantSource::Header(name) => parts
                .headers
                .get(name)
                .map(|v| v.to_str().map(str::to_owned).unwrap_or_else(|_| String::from("\u{fffd}"))),
            TenantSource::PathSegment(index) => {
                parts.uri.path().split('/').filter(|s| !s.is_empty()).nth(*index).map(str::to_owned)
            }
        };
        let raw = raw.ok_or(TenancyRejection::MissingTenant)?;
        SchemaName::new(&raw).map_err(|reason| TenancyRejection::InvalidName { reason })
    }

    /// The tenant of a request: its name, validated, and checked to be a
    /// registered tenant (from the pool's cache when it can be).
    pub async fn resolve(&self, parts: &Parts) -> Result<Tenant, TenancyRejection> {
        let schema = self.name_of(parts)?;
        self.pool.check_tenant_async(&schema).await?;
        Ok(self.pool.for_tenant(schema))
    }
}

/// The host's label under `base`, lowercased; `None` when the host is not
/// under `base`.
fn subdomain_of(parts: &Parts, base: &str) -> Option<String> {
    let host = match parts.headers.get(HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => host,
        None => parts.uri.host()?,
    };
    // `host:port`, or `[v6]:port` (never under a base domain).
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let label = host.strip_suffix(base)?.strip_suffix('.')?;
    (!label.is_empty()).then(|| label.to_owned())
}

/// The tenant a request is for: [`TenantResolver::resolve`] as an axum
/// extractor. Derefs to [`Tenant`], a [`TenantContext`](tenancy_core::TenantContext).
///
/// Rejects with [`TenancyRejection`] (400 for a missing or invalid name, 404
/// for an unknown tenant, 503 when the pool timed out).
#[derive(Debug, Clone)]
pub struct CurrentTenant(pub Tenant);

impl Deref for CurrentTenant {
    type Target = Tenant;
    fn deref(&self) -> &Tenant {
        &self.0
    }
}

impl<S> FromRequestParts<S> for CurrentTenant
where
    TenantResolver: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = TenancyRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let resolver = TenantResolver::from_ref(state);
        resolver.resolve(parts).await.map(CurrentTenant)
    }
}

/// An error answered to a client: what the tenant extractor rejects with,
/// and a handler error type (`From<TenancyError>`, so `?` works on the
/// library's calls).
///
/// | cause | status | `error` |
/// |---|---|---|
/// | the request names no tenant | 400 | `missing_tenant` |
/// | the name breaks a naming rule | 400 | `invalid_tenant_name` |
/// | not a registered tenant (or a reserved name) | 404 | `unknown_tenant` |
/// | no pooled connection within the pool's timeout | 503 (`Retry-After: 1`) | `unavailable` |
/// | anything else | 500 | `internal` |
///
/// The body is JSON, `{"error": .., "message": ..}`; messages are written
/// for clients, and the internal error of a 500 or 503 is logged, never
/// sent.
///
/// ```
/// use axum::http::StatusCode;
/// use axum::response::IntoResponse;
/// use tenancy_axum::TenancyRejection;
///
/// let err = tenancy_core::parse_schema("Acme").unwrap_err();
/// assert_eq!(TenancyRejection::from(err).into_response().status(), StatusCode::BAD_REQUEST);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TenancyRejection {
    /// The request names no tenant where the resolver looks.
    MissingTenant,
    /// The name breaks a naming rule.
    InvalidName {
        /// The rule.
        reason: SchemaNameError,
    },
    /// Not a registered tenant.
    UnknownTenant {
        /// The name asked for.
        schema: SchemaName,
    },
    /// No pooled connection became free in time.
    Unavailable(TenancyError),
    /// Any other failure.
    Internal(TenancyError),
}

impl From<TenancyError> for TenancyRejection {
    fn from(error: TenancyError) -> Self {
        match error {
            TenancyError::InvalidSchemaName { reason, .. } => Self::InvalidName { reason },
            TenancyError::TenantNotFound { schema } | TenancyError::ReservedSchema { schema, .. } => {
                Self::UnknownTenant { schema }
            }
            error @ TenancyError::PoolTimeout { .. } => Self::Unavailable(error),
            error => Self::Internal(error),
        }
    }
}

impl TenancyRejection {
    /// The response status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingTenant | Self::InvalidName { .. } => StatusCode::BAD_REQUEST,
            Self::UnknownTenant { .. } => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `error` field of the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingTenant => "missing_tenant",
            Self::InvalidName { .. } => "invalid_tenant_name",
            Self::UnknownTenant { .. } => "unknown_tenant",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The message sent to the client: nothing internal.
    pub fn client_message(&self) -> String {
        match self {
            Self::MissingTenant => String::from("the request does not name a tenant"),
            Self::InvalidName { reason } => format!("invalid tenant name: {reason}"),
            Self::UnknownTenant { schema } => format!("there is no tenant named \"{schema}\""),
            Self::Unavailable(_) => String::from("the service is busy; retry shortly"),
            Self::Internal(_) => String::from("internal error"),
        }
    }
}

impl fmt::Display for TenancyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(error) | Self::Internal(error) => error.fmt(f),
            _ => f.write_str(&self.client_message()),
        }
    }
}

impl std::error::Error for TenancyRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(error) | Self::Internal(error) => Some(error),
            _ => None,
        }
    }
}

impl IntoResponse for TenancyRejection {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(error) => {
                tracing::error!(target: "tenancy_axum", error = %error, "request failed")
            }
            Self::Unavailable(error) => {
                tracing::warn!(target: "tenancy_axum", error = %error, "no pooled connection in time")
            }
            _ => {}
        }
        let body = serde_json::json!({ "error": self.code(), "message": self.client_message() }).to_string();
        let mut response =
            (self.status(), [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
        if matches!(self, Self::Unavailable(_)) {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
