//! tenancy-axum's extractor: the tenant read from a subdomain, a header or a
//! path segment, validated, checked against the pool's tenant cache without
//! a round trip per request, invalidated by `drop_tenant`, and errors
//! answered with the right status and a client-safe body.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use tenancy_axum::{CurrentTenant, TenancyRejection, TenantResolver};
use tenancy_core::{TenancyError, TenantPool};
use tenancy_tests::{insert_tagged, tags, url, Schemas, ITEMS_DDL};
use tower::ServiceExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The tenant's name, read from the extractor alone (no database work).
async fn whoami(CurrentTenant(tenant): CurrentTenant) -> String {
    tenant.schema().to_string()
}

/// The tags of the tenant's rows: proves which schema the handler reached.
async fn items(CurrentTenant(tenant): CurrentTenant) -> Result<String, TenancyRejection> {
    let tags = tenant.run(|conn| Ok::<_, TenancyError>(tags(conn))).await?;
    Ok(tags.join(","))
}

/// A handler whose statement fails: a 500 with nothing of the error in it.
async fn broken(CurrentTenant(tenant): CurrentTenant) -> Result<String, TenancyRejection> {
    use tenancy_core::diesel::{self, RunQueryDsl};
    tenant
        .run(|conn| Ok::<_, TenancyError>(diesel::sql_query("SELECT * FROM no_such_table").execute(conn)?))
        .await?;
    Ok(String::new())
}

fn app(resolver: TenantResolver) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/items", get(items))
        .route("/broken", get(broken))
        .route("/tenants/{tenant}/whoami", get(whoami))
        .with_state(resolver)
}

struct Answer {
    status: StatusCode,
    body: String,
    json: serde_json::Value,
    retry_after: Option<String>,
}

async fn call(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(bytes.to_vec()).unwrap();
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    Answer { status, body, json, retry_after }
}

fn with_header(path: &str, name: &str, value: &str) -> Request<Body> {
    Request::get(path).header(name, value).body(Body::empty()).unwrap()
}

/// An error body names its cause for a client and nothing of the library's
/// internals.
fn assert_client_safe(answer: &Answer, code: &str) {
    assert_eq!(answer.json["error"], code, "{}", answer.body);
    for internal in [
        "tenancy_core",
        "provision",
        "TenantPoolBuilder",
        "pool size",
        "timed out",
        "relation",
        "no_such_table",
    ] {
        assert!(!answer.body.contains(internal), "internal detail {internal:?} in {}", answer.body);
    }
}

#[test]
fn a_header_names_the_tenant_and_errors_get_their_status() {
    let schemas = Schemas::create("ax_header", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = TenantPool::builder().max_size(2).build(&url()).unwrap();
    for schema in [a, b] {
        insert_tagged(&mut pool.tenant(schema).unwrap(), schema, "row").unwrap();
    }
    let app = app(TenantResolver::header(pool, HeaderName::from_static("x-tenant")));
    runtime().block_on(async {
        for schema in [a, b] {
            let answer = call(&app, with_header("/items", "x-tenant", schema.as_str())).await;
            assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, schema.as_str()));
        }

        let missing = call(&app, Request::get("/items").body(Body::empty()).unwrap()).await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST);
        assert_client_safe(&missing, "missing_tenant");

        for bad in ["Acme", "acme'; DROP SCHEMA public CASCADE; --", "pg_catalog", "public", ""] {
            let answer = call(&app, with_header("/items", "x-tenant", bad)).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad:?}: {}", answer.body);
            assert_client_safe(&answer, "invalid_tenant_name");
        }
        let folded = call(&app, with_header("/items", "x-tenant", &a.as_str().to_uppercase())).await;
        assert_eq!(folded.status, StatusCode::BAD_REQUEST, "a header is never case-folded");

        let unknown = call(&app, with_header("/items", "x-tenant", "ax_nobody_here")).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_client_safe(&unknown, "unknown_tenant");
        assert_eq!(unknown.json["message"], "there is no tenant named \"ax_nobody_here\"");

        let broken = call(&app, with_header("/broken", "x-tenant", a.as_str())).await;
        assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_client_safe(&broken, "internal");
        assert_eq!(broken.json["message"], "internal error");
    });
}

#[test]
fn a_subdomain_names_the_tenant() {
    let schemas = Schemas::create("ax_host", 1, ITEMS_DDL);
    let a = schemas.first();
    let pool = TenantPool::builder().max_size(2).build(&url()).unwrap();
    let app = app(TenantResolver::subdomain(pool, "example.test"));
    runtime().block_on(async {
        let upper = a.as_str().to_uppercase();
        for host in
            [format!("{a}.example.test"), format!("{a}.example.test:8080"), format!("{upper}.Example.TEST")]
        {
            let answer = call(&app, with_header("/whoami", "host", &host)).await;
            assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, a.as_str()), "{host}");
        }
        for (host, status, code) in [
            ("example.test", StatusCode::BAD_REQUEST, "missing_tenant"),
            ("elsewhere.org", StatusCode::BAD_REQUEST, "missing_tenant"),
            ("notexample.test", StatusCode::BAD_REQUEST, "missing_tenant"),
            ("a.b.example.test", StatusCode::BAD_REQUEST, "invalid_tenant_name"),
            ("ax_nobody.example.test", StatusCode::NOT_FOUND, "unknown_tenant"),
        ] {
            let answer = call(&app, with_header("/whoami", "host", host)).await;
            assert_eq!(answer.status, status, "{host}: {}", answer.body);
            assert_client_safe(&answer, code);
        }
    });
}

#[test]
fn a_path_segment_names_the_tenant() {
    let schemas = Schemas::create("ax_path", 1, ITEMS_DDL);
    let a = schemas.first();
    let pool = TenantPool::builder().max_size(2).build(&url()).unwrap();
    let app = app(TenantResolver::path_segment(pool, 1));
    runtime().block_on(async {
        let ok = call(&app, Request::get(format!("/tenants/{a}/whoami")).body(Body::empty()).unwrap()).await;
        assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, a.as_str()));
        let encoded = call(&app, Request::get("/tenants/ac%20me/whoami").body(Body::empty()).unwrap()).await;
        assert_eq!(encoded.status, StatusCode::BAD_REQUEST);
        assert_client_safe(&encoded, "invalid_tenant_name");
        let unknown =
            call(&app, Request::get("/tenants/ax_nobody/whoami").body(Body::empty()).unwrap()).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    });
}

/// Once the pool has proven a tenant, resolving it costs no checkout (so no
/// round trip); a drop through this process is seen by the next request.
#[test]
fn resolving_a_known_tenant_costs_no_checkout_and_a_drop_is_seen_at_once() {
    let schemas = Schemas::create("ax_cache", 1, ITEMS_DDL);
    let a = schemas.first();
    let pool = TenantPool::builder().max_size(2).build(&url()).unwrap();
    let app = app(TenantResolver::header(pool.clone(), HeaderName::from_static("x-tenant")));
    runtime().block_on(async {
        assert_eq!(call(&app, with_header("/whoami", "x-tenant", a.as_str())).await.status, StatusCode::OK);
        let before = pool.state().checkouts;
        for _ in 0..200 {
            assert_eq!(
                call(&app, with_header("/whoami", "x-tenant", a.as_str())).await.status,
                StatusCode::OK
            );
        }
        assert_eq!(pool.state().checkouts, before, "a request for a proven tenant checked a connection out");

        let (p, s) = (pool.clone(), a.clone());
        tokio::task::spawn_blocking(move || tenancy_core::drop_tenant(&p, &s)).await.unwrap().unwrap();
        let gone = call(&app, with_header("/whoami", "x-tenant", a.as_str())).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND, "a dropped tenant was still served: {}", gone.body);
    });
}

/// When no connection frees up within the pool's timeout, the client gets a
/// 503 with `Retry-After`, and nothing about the pool.
#[test]
fn a_pool_timeout_is_a_503() {
    let schemas = Schemas::create("ax_busy", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = TenantPool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(200))
        .build(&url())
        .unwrap();
    let app = app(TenantResolver::header(pool.clone(), HeaderName::from_static("x-tenant")));
    let held = pool.tenant(a).unwrap();
    runtime().block_on(async {
        // `b` was never proven: checking it needs the pool's only connection, which is held.
        let busy = call(&app, with_header("/whoami", "x-tenant", b.as_str())).await;
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE, "{}", busy.body);
        assert_eq!(busy.retry_after.as_deref(), Some("1"));
        assert_client_safe(&busy, "unavailable");
    });
    drop(held);
}
