//! A tenant-aware service in one file: the quickstart of docs/DEVELOPER_GUIDE.md.

use axum::{Json, Router, http::StatusCode, routing::get};
use mt_paas::{ServiceMarketFramework, Tenant, TenantDb, http::ApiError, with_db};
use serde::{Deserialize, Serialize};

#[tokio::main]
async fn main() -> Result<(), mt_paas::Error> {
    let framework = ServiceMarketFramework::from_config_path("mt_paas_config.yaml").await?;
    let app = framework.create_app(routes());
    framework.serve(app).await
}

/// Every route here is a tenant route: `create_app` puts the tenant guard in front of it.
pub fn routes() -> Router {
    Router::new()
        .route("/hello", get(hello))
        .route("/notes", get(list_notes).post(add_note))
        .route("/quiz", get(quiz))
}

#[derive(Serialize)]
struct Hello {
    tenant_id: String,
    tenant_name: String,
}

/// The tenant the request named; a request without a known tenant never gets here.
async fn hello(tenant: Tenant) -> Json<Hello> {
    Json(Hello {
        tenant_id: tenant.id().to_string(),
        tenant_name: tenant.name().to_owned(),
    })
}

#[derive(Serialize, sqlx::FromRow)]
struct Note {
    id: i64,
    text: String,
}

#[derive(Deserialize)]
struct NewNote {
    text: String,
}

/// `TenantDb` is a connection to the request's tenant's own database.
async fn list_notes(mut db: TenantDb) -> Result<Json<Vec<Note>>, ApiError> {
    let notes = with_db!(db, conn => {
        sqlx::query_as::<_, Note>("SELECT id, text FROM notes ORDER BY id")
            .fetch_all(conn)
            .await
    })
    .map_err(ApiError::database)?;
    Ok(Json(notes))
}

async fn add_note(
    mut db: TenantDb,
    Json(note): Json<NewNote>,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    let note = with_db!(db, conn => {
        sqlx::query_as::<_, Note>("INSERT INTO notes (text) VALUES ($1) RETURNING id, text")
            .bind(&note.text)
            .fetch_one(conn)
            .await
    })
    .map_err(ApiError::database)?;
    Ok((StatusCode::CREATED, Json(note)))
}

/// Only for tenants whose plan includes `quiz`; the others get a 403 problem.
async fn quiz(tenant: Tenant) -> Result<&'static str, ApiError> {
    tenant.require_feature("quiz")?;
    Ok("오늘의 퀴즈: 2 + 2 = ?")
}
