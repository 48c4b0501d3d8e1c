//! The service: routes, handlers and the notes DAL. Every tenant route is
//! under `/tenants/{tenant}`, and every handler gets its tenant from the
//! `CurrentTenant` extractor, which has already checked it is a registered
//! tenant (from the pool's cache: no round trip per request).
//!
//! | route | does |
//! |---|---|
//! | `POST /tenants` (body: the name) | sign-up: provisions the tenant; 201, or 409 if the name is taken |
//! | `DELETE /tenants/{tenant}` | drops the tenant and all its data; 204 |
//! | `GET /tenants/{tenant}/notes` | the tenant's notes |
//! | `POST /tenants/{tenant}/notes` (body: the text) | adds a note; 201 |
//! | `GET`, `PUT` (body: the text), `DELETE /tenants/{tenant}/notes/{id}` | one note; 404 if it is not this tenant's |

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use diesel::prelude::*;
use diesel_migrations::EmbeddedMigrations;
use serde_json::{json, Value};
use tenancy_axum::{CurrentTenant, TenancyRejection, TenantResolver};
use tenancy_core::{drop_tenant, parse_schema, provision, TenancyError, TenantPool};

diesel::table! {
    /// A tenant's notes.
    notes (id) {
        /// Its key.
        id -> BigInt,
        /// Its text.
        body -> Text,
    }
}

/// One row of `notes`, as clients see it.
#[derive(Queryable, Selectable)]
#[diesel(table_name = notes)]
struct Note {
    id: i64,
    body: String,
}

impl Note {
    fn json(&self) -> Value {
        json!({ "id": self.id, "body": self.body })
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Tenants are the second path segment: `/tenants/{tenant}/..`.
    pub resolver: TenantResolver,
    /// The tenant schema's migrations (`embed_migrations!` in the binary).
    pub migrations: fn() -> EmbeddedMigrations,
}

impl FromRef<AppState> for TenantResolver {
    fn from_ref(state: &AppState) -> Self {
        state.resolver.clone()
    }
}

/// The service's routes on `pool`.
pub fn router(pool: TenantPool, migrations: fn() -> EmbeddedMigrations) -> Router {
    let state = AppState { resolver: TenantResolver::path_segment(pool, 1), migrations };
    Router::new()
        .route("/tenants", axum::routing::post(sign_up))
        .route("/tenants/{tenant}", axum::routing::delete(delete_tenant))
        .route("/tenants/{tenant}/notes", get(list_notes).post(add_note))
        .route("/tenants/{tenant}/notes/{id}", get(get_note).put(update_note).delete(delete_note))
        .with_state(state)
}

/// An error a handler answers with.
#[derive(Debug)]
pub enum ApiError {
    /// The tenant (or the library) said no: its own status and body.
    Tenancy(TenancyRejection),
    /// No note with that id in this tenant.
    NoteNotFound(i64),
    /// The tenant name is taken.
    Taken(String),
    /// The request's body is unusable.
    BadBody(&'static str),
}

impl From<TenancyError> for ApiError {
    fn from(error: TenancyError) -> Self {
        Self::Tenancy(error.into())
    }
}

impl From<TenancyRejection> for ApiError {
    fn from(rejection: TenancyRejection) -> Self {
        Self::Tenancy(rejection)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, message) = match self {
            Self::Tenancy(rejection) => return rejection.into_response(),
            Self::NoteNotFound(id) => {
                (StatusCode::NOT_FOUND, "note_not_found", format!("there is no note {id}"))
            }
            Self::Taken(name) => {
                (StatusCode::CONFLICT, "tenant_exists", format!("the tenant name \"{name}\" is taken"))
            }
            Self::BadBody(why) => (StatusCode::UNPROCESSABLE_ENTITY, "bad_body", why.to_owned()),
        };
        (status, Json(json!({ "error": error, "message": message }))).into_response()
    }
}

/// The text of a note: not empty.
fn note_text(body: String) -> Result<String, ApiError> {
    let text = body.trim();
    if text.is_empty() {
        return Err(ApiError::BadBody("a note needs some text"));
    }
    Ok(text.to_owned())
}

/// `POST /tenants`: sign-up. Provisioning runs on the blocking pool; it is
/// idempotent and safe when two sign-ups race, and says whether this call
/// created the tenant.
async fn sign_up(State(state): State<AppState>, name: String) -> Result<(StatusCode, Json<Value>), ApiError> {
    let schema = parse_schema(name.trim())?;
    let pool = state.resolver.pool().clone();
    let migrations = state.migrations;
    let s = schema.clone();
    let provisioned = match tokio::task::spawn_blocking(move || provision(&pool, &s, migrations())).await {
        Ok(provisioned) => provisioned,
        Err(_) => return Err(TenancyError::Cancelled.into()),
    };
    let provisioned = match provisioned {
        Ok(provisioned) => provisioned,
        // A schema of that name exists and is not a tenant.
        Err(TenancyError::Refused { .. }) => return Err(ApiError::Taken(schema.to_string())),
        Err(error) => return Err(error.into()),
    };
    if !provisioned.created {
        return Err(ApiError::Taken(schema.to_string()));
    }
    Ok((StatusCode::CREATED, Json(json!({ "tenant": schema.as_str() }))))
}

/// `DELETE /tenants/{tenant}`: the schema, its data and its registry row.
async fn delete_tenant(CurrentTenant(tenant): CurrentTenant) -> Result<StatusCode, ApiError> {
    let (pool, schema) = (tenant.pool().clone(), tenant.schema().clone());
    tokio::task::spawn_blocking(move || drop_tenant(&pool, &schema))
        .await
        .map_err(|_| TenancyError::Cancelled)??;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_notes(CurrentTenant(tenant): CurrentTenant) -> Result<Json<Value>, ApiError> {
    let notes = tenant
        .run(|conn| {
            Ok::<_, TenancyError>(notes::table.select(Note::as_select()).order(notes::id).load(conn)?)
        })
        .await?;
    Ok(Json(Value::Array(notes.iter().map(Note::json).collect())))
}

async fn add_note(
    CurrentTenant(tenant): CurrentTenant,
    body: String,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let text = note_text(body)?;
    let note = tenant
        .run(move |conn| {
            Ok::<_, TenancyError>(
                diesel::insert_into(notes::table)
                    .values(notes::body.eq(text))
                    .returning(Note::as_returning())
                    .get_result(conn)?,
            )
        })
        .await?;
    Ok((StatusCode::CREATED, Json(note.json())))
}

async fn get_note(
    CurrentTenant(tenant): CurrentTenant,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    let note = tenant
        .run(move |conn| {
            Ok::<_, TenancyError>(notes::table.find(id).select(Note::as_select()).first(conn).optional()?)
        })
        .await?;
    note.map(|n| Json(n.json())).ok_or(ApiError::NoteNotFound(id))
}

async fn update_note(
    CurrentTenant(tenant): CurrentTenant,
    Path((_, id)): Path<(String, i64)>,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let text = note_text(body)?;
    let note = tenant
        .run(move |conn| {
            Ok::<_, TenancyError>(
                diesel::update(notes::table.find(id))
                    .set(notes::body.eq(text))
                    .returning(Note::as_returning())
                    .get_result(conn)
                    .optional()?,
            )
        })
        .await?;
    note.map(|n| Json(n.json())).ok_or(ApiError::NoteNotFound(id))
}

async fn delete_note(
    CurrentTenant(tenant): CurrentTenant,
    Path((_, id)): Path<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    let deleted = tenant
        .run(move |conn| Ok::<_, TenancyError>(diesel::delete(notes::table.find(id)).execute(conn)?))
        .await?;
    if deleted == 0 {
        return Err(ApiError::NoteNotFound(id));
    }
    Ok(StatusCode::NO_CONTENT)
}
