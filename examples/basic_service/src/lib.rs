//! basic_service: the seed's §4.1 example on mt-paas. Its handlers hold business logic only;
//! the tenant, its features and the errors come from the framework.

use std::path::PathBuf;

use axum::{
    Json, Router,
    routing::{get, post},
};
use mt_paas::{
    NewTenant, ServiceMarketFramework, Tenant, TenantId,
    http::{ApiError, ProblemCode},
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Longest chat message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4_000;

/// The configuration the service reads: `$MT_PAAS_CONFIG`, else its own dev configuration.
pub fn config_path() -> PathBuf {
    std::env::var_os("MT_PAAS_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/mt_paas_config.yaml"))
        })
}

/// The service's routes (seed §4.1).
pub fn router() -> Router {
    Router::new()
        .route("/courses", get(list_courses))
        .route("/chat", post(chat))
        .route("/premium-feature", get(premium_feature))
}

async fn list_courses(tenant: Tenant) -> Json<Value> {
    Json(json!({
        "tenant_id": tenant.id(),
        "tenant_name": tenant.name(),
        "courses": [],
    }))
}

#[derive(Debug, Deserialize)]
struct ChatIn {
    message: String,
}

async fn chat(tenant: Tenant, Json(input): Json<ChatIn>) -> Result<Json<Value>, ApiError> {
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

/// Registers `custom.demo_tenants` when the registry is empty. Returns how many were added.
pub async fn seed_demo_tenants(framework: &ServiceMarketFramework) -> anyhow::Result<usize> {
    if framework.config().custom.get("demo_tenants").is_none()
        || framework.tenants().count().await? > 0
    {
        return Ok(0);
    }
    let demo: Vec<DemoTenant> = framework.custom("demo_tenants")?;
    for tenant in &demo {
        framework
            .tenants()
            .create(NewTenant::new(tenant.id.clone(), tenant.name.clone()))
            .await?;
    }
    Ok(demo.len())
}
