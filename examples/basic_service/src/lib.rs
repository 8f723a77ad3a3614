//! basic_service: the DESIGN §3.1 example on mt-paas. Its handlers hold business logic only;
//! the tenant, its features and the errors come from the framework.

use std::path::PathBuf;

use axum::{
    Json, Router,
    http::StatusCode,
    routing::{get, post},
};
use mt_paas::{
    Activity, ServiceMarketFramework, Tenant, TenantDb, TenantId,
    http::{ApiError, ProblemCode},
    provisioning::Provisioned,
    with_db,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Longest chat message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4_000;

/// Longest course title, in characters (the migrations check it too).
pub const MAX_TITLE_CHARS: usize = 200;

/// The configuration the service reads: `$MT_PAAS_CONFIG`, else its own dev configuration.
pub fn config_path() -> PathBuf {
    std::env::var_os("MT_PAAS_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/mt_paas_config.yaml"))
        })
}

/// The service's routes (DESIGN §3.1).
pub fn router() -> Router {
    Router::new()
        .route("/courses", get(list_courses).post(create_course))
        .route("/chat", post(chat))
        .route("/premium-feature", get(premium_feature))
}

/// A course, in the tenant's own database.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Course {
    /// Its id within the tenant.
    pub id: i64,
    /// Its title.
    pub title: String,
}

async fn list_courses(tenant: Tenant, mut db: TenantDb) -> Result<Json<Value>, ApiError> {
    let courses: Vec<Course> = with_db!(db, conn => {
        sqlx::query_as("SELECT id, title FROM courses ORDER BY id")
            .fetch_all(conn)
            .await
    })
    .map_err(ApiError::database)?;
    Ok(Json(json!({
        "tenant_id": tenant.id(),
        "tenant_name": tenant.name(),
        "courses": courses,
    })))
}

#[derive(Debug, Deserialize)]
struct CourseIn {
    title: String,
}

async fn create_course(
    mut db: TenantDb,
    Json(input): Json<CourseIn>,
) -> Result<(StatusCode, Json<Course>), ApiError> {
    let title = input.title.trim();
    let length = title.chars().count();
    if length == 0 || length > MAX_TITLE_CHARS {
        return Err(ApiError::new(ProblemCode::UnprocessableEntity)
            .member("field", "title")
            .member("max_length", MAX_TITLE_CHARS));
    }
    let course: Course = with_db!(db, conn => {
        sqlx::query_as("INSERT INTO courses (title) VALUES ($1) RETURNING id, title")
            .bind(title)
            .fetch_one(conn)
            .await
    })
    .map_err(ApiError::database)?;
    Ok((StatusCode::CREATED, Json(course)))
}

#[derive(Debug, Deserialize)]
struct ChatIn {
    message: String,
}

async fn chat(
    tenant: Tenant,
    activity: Activity,
    Json(input): Json<ChatIn>,
) -> Result<Json<Value>, ApiError> {
    tenant.require_feature("ai_chat")?;
    let message = input.message.trim();
    let length = message.chars().count();
    if length == 0 || length > MAX_MESSAGE_CHARS {
        return Err(ApiError::new(ProblemCode::UnprocessableEntity)
            .member("field", "message")
            .member("max_length", MAX_MESSAGE_CHARS));
    }
    let response = format!(
        "[{}] AI 튜터: \"{message}\"에 대해 함께 알아봅시다.",
        tenant.name()
    );
    // DESIGN §7.2: the activity goes to the LRS in the background; this never waits on it.
    activity.log("asked", "ai_tutor", json!({ "message_length": length }));
    Ok(Json(json!({
        "tenant_id": tenant.id(),
        "response": response,
    })))
}

async fn premium_feature(tenant: Tenant) -> Result<Json<Value>, ApiError> {
    tenant.require_feature("quiz")?;
    Ok(Json(json!({
        "tenant_id": tenant.id(),
        "quiz": { "title": "오늘의 퀴즈", "questions": [] },
    })))
}

#[derive(Debug, Deserialize)]
struct DemoTenant {
    id: TenantId,
    name: String,
}

/// Provisions `custom.demo_tenants` (database, migrations) when the registry is empty.
/// Returns how many were added.
pub async fn seed_demo_tenants(framework: &ServiceMarketFramework) -> anyhow::Result<usize> {
    let demo_configured = framework.config().custom.get("demo_tenants").is_some();
    if !demo_configured || framework.tenants().count().await? > 0 {
        return Ok(0);
    }
    let demo: Vec<DemoTenant> = framework.custom("demo_tenants")?;
    for tenant in &demo {
        match framework
            .provisioner()
            .create(tenant.id.clone(), &tenant.name, None)
            .await?
        {
            Provisioned::Ready(_) => {}
            other => anyhow::bail!("demo tenant {} is not ready: {other:?}", tenant.id),
        }
    }
    Ok(demo.len())
}
