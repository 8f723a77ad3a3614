//! The operator API (`/api/v1/admin`, bearer `operator_token`). The token is checked by a
//! layer in front of every route, before any extractor reads a path or a body: an
//! unauthenticated caller learns nothing about what the API would accept.

use std::collections::BTreeMap;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{delete, get, post},
};
use mt_paas::{config::Secret, http::ApiError};
use mt_paas_protocol::{Command, Entitlement, SubscriptionState};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{invalid, not_found, operator, tenant_id};
use crate::{
    Market, check_id, check_name, crypto,
    store::{
        Instance, Plan, QueuedCommand, Service, StoredAlert, Subscription, Tenant, UsageTotal, User,
    },
};

pub(super) fn routes(market: Market) -> Router<Market> {
    let authenticated = axum::middleware::from_fn_with_state(market, only_operators);
    Router::new()
        .route("/plans", get(plans).post(put_plan))
        .route("/services", get(services).post(create_service))
        .route("/tenants", get(tenants).post(create_tenant))
        .route("/users", post(create_user))
        .route("/subscriptions", post(subscribe))
        .route("/services/{service_id}/subscriptions", get(subscriptions))
        .route(
            "/services/{service_id}/tenants/{tenant_id}",
            get(subscription),
        )
        .route(
            "/services/{service_id}/tenants/{tenant_id}/plan",
            post(change_plan),
        )
        .route(
            "/services/{service_id}/tenants/{tenant_id}/expiry",
            post(set_expiry),
        )
        .route(
            "/services/{service_id}/tenants/{tenant_id}/suspend",
            post(suspend),
        )
        .route(
            "/services/{service_id}/tenants/{tenant_id}/reinstate",
            post(reinstate),
        )
        .route(
            "/services/{service_id}/tenants/{tenant_id}/cancel",
            post(cancel),
        )
        .route(
            "/services/{service_id}/tenants/{tenant_id}/block",
            post(block),
        )
        .route(
            "/services/{service_id}/tenants/{tenant_id}/unblock",
            post(unblock),
        )
        .route(
            "/services/{service_id}/tenants/{tenant_id}/provision",
            post(provision),
        )
        .route(
            "/services/{service_id}/tenants/{tenant_id}/deprovision",
            post(deprovision),
        )
        .route("/services/{service_id}/instances", get(instances))
        .route("/services/{service_id}/usage", get(usage))
        .route("/services/{service_id}/commands", get(commands))
        .route("/alerts", get(alerts))
        .route("/signing-keys", get(signing_keys).post(rotate_signing_key))
        .route("/signing-keys/{kid}", delete(retire_signing_key))
        .route("/tokens", post(mint_token))
        .route_layer(authenticated)
}

async fn only_operators(
    State(market): State<Market>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match operator(&market, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => axum::response::IntoResponse::into_response(refused),
    }
}

async fn signing_keys(
    State(market): State<Market>,
) -> Result<Json<Vec<crate::SigningKeyInfo>>, ApiError> {
    Ok(Json(market.signing_keys().await?))
}

async fn rotate_signing_key(
    State(market): State<Market>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let kid = market.rotate_signing_key().await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "kid": kid }))))
}

async fn retire_signing_key(
    State(market): State<Market>,
    Path(kid): Path<String>,
) -> Result<StatusCode, ApiError> {
    market.retire_signing_key(&kid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user token to sign, for a service's RS256 verification (tests, support, scripts).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenIn {
    service_id: String,
    tenant_id: String,
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

async fn mint_token(
    State(market): State<Market>,
    Json(request): Json<TokenIn>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_id("tenant_id", &request.tenant_id)?;
    if request.sub.is_empty() || request.sub.len() > 200 {
        return Err(invalid("sub", "1-200 characters"));
    }
    if market.store().service(&request.service_id).await?.is_none() {
        return Err(not_found("service", &request.service_id));
    }
    if market.store().tenant(&request.tenant_id).await?.is_none() {
        return Err(not_found("tenant", &request.tenant_id));
    }
    let mut claims = serde_json::Map::new();
    claims.insert("aud".into(), request.service_id.into());
    claims.insert("sub".into(), request.sub.into());
    claims.insert("tenant_id".into(), request.tenant_id.into());
    if let Some(name) = request.name {
        check_name("name", &name)?;
        claims.insert("name".into(), name.into());
    }
    if let Some(ttl) = request.ttl_seconds {
        if !(1..=86_400).contains(&ttl) {
            return Err(invalid("ttl_seconds", "1-86400"));
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        claims.insert("exp".into(), (now + ttl.cast_signed()).into());
    }
    let token = market.sign_token(claims).await?;
    Ok(Json(serde_json::json!({ "token": token })))
}

async fn plans(State(market): State<Market>) -> Result<Json<Vec<Plan>>, ApiError> {
    Ok(Json(market.store().plans().await?))
}

/// A plan to create or replace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanIn {
    id: String,
    name: String,
    #[serde(default)]
    features: BTreeMap<String, bool>,
    #[serde(default)]
    requests_per_minute: Option<u32>,
}

async fn put_plan(
    State(market): State<Market>,
    Json(plan): Json<PlanIn>,
) -> Result<(StatusCode, Json<Plan>), ApiError> {
    let plan = Plan {
        id: plan.id,
        name: plan.name,
        features: plan.features,
        requests_per_minute: plan.requests_per_minute,
    };
    market.put_plan(&plan).await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

async fn services(State(market): State<Market>) -> Result<Json<Vec<Service>>, ApiError> {
    Ok(Json(market.store().services().await?))
}

/// A service to register.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceIn {
    id: String,
    name: String,
    api_key: Secret,
    webhook_secret: Secret,
    #[serde(default)]
    base_url: Option<String>,
}

async fn create_service(
    State(market): State<Market>,
    Json(service): Json<ServiceIn>,
) -> Result<(StatusCode, Json<Service>), ApiError> {
    check_id("id", &service.id)?;
    check_name("name", &service.name)?;
    if service.api_key.expose().len() < 8 {
        return Err(invalid("api_key", "at least 8 characters"));
    }
    if service
        .webhook_secret
        .expose()
        .parse::<mt_paas_protocol::webhook::WebhookSecret>()
        .is_err()
    {
        return Err(invalid(
            "webhook_secret",
            "`whsec_` followed by base64 of at least 24 bytes",
        ));
    }
    if let Some(url) = &service.base_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid("base_url", "an http:// or https:// URL"));
    }
    // A secret two services share verifies one's commands at the other.
    let services = market.store().services_with_keys().await?;
    if services
        .iter()
        .any(|(s, _)| s.webhook_secret == service.webhook_secret.expose())
    {
        return Err(crate::ActionError::Conflict(
            "webhook_secret: another service already uses this secret".to_owned(),
        )
        .into());
    }
    if !market.config().dev_mode {
        if service.api_key.expose() == crate::DEV_API_KEY {
            return Err(invalid(
                "api_key",
                "the public demo key is accepted only in dev mode",
            ));
        }
        if service.webhook_secret.expose() == crate::DEV_WEBHOOK_SECRET {
            return Err(invalid(
                "webhook_secret",
                "the public demo secret is accepted only in dev mode",
            ));
        }
    }
    let record = Service {
        id: service.id,
        name: service.name,
        base_url: service.base_url,
        webhook_secret: service.webhook_secret.expose().to_owned(),
    };
    if !market
        .store()
        .create_service(
            &record,
            &crypto::sha256_hex(service.api_key.expose().as_bytes()),
        )
        .await?
    {
        return Err(crate::ActionError::Exists {
            what: "service",
            id: record.id,
        }
        .into());
    }
    Ok((StatusCode::CREATED, Json(record)))
}

async fn tenants(State(market): State<Market>) -> Result<Json<Vec<Tenant>>, ApiError> {
    Ok(Json(market.store().tenants().await?))
}

async fn create_tenant(
    State(market): State<Market>,
    Json(tenant): Json<Tenant>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    tenant_id(&tenant.id).map_err(|_| {
        invalid(
            "id",
            "1-63 of a-z, 0-9, '_', '-', starting with a letter or digit",
        )
    })?;
    check_name("name", &tenant.name)?;
    if !market.store().create_tenant(&tenant).await? {
        return Err(crate::ActionError::Exists {
            what: "tenant",
            id: tenant.id,
        }
        .into());
    }
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// A user to create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserIn {
    id: String,
    tenant_id: String,
    name: String,
    email: String,
    password: Secret,
}

async fn create_user(
    State(market): State<Market>,
    Json(user): Json<UserIn>,
) -> Result<StatusCode, ApiError> {
    check_id("id", &user.id)?;
    check_name("name", &user.name)?;
    if user.password.expose().len() < 8 {
        return Err(invalid("password", "at least 8 characters"));
    }
    if market.store().tenant(&user.tenant_id).await?.is_none() {
        return Err(not_found("tenant", &user.tenant_id));
    }
    if market.store().user(&user.id).await?.is_some() {
        return Err(crate::ActionError::Exists {
            what: "user",
            id: user.id,
        }
        .into());
    }
    market
        .store()
        .create_user(&User {
            password_hash: crate::throttle::hash(user.password.expose().to_owned())
                .await
                .map_err(crate::ActionError::from)?,
            id: user.id,
            tenant_id: user.tenant_id,
            name: user.name,
            email: user.email,
        })
        .await?;
    Ok(StatusCode::CREATED)
}

/// A subscription to create.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    /// The service.
    pub service_id: String,
    /// The tenant.
    pub tenant_id: String,
    /// The plan.
    pub plan_id: String,
    /// When it ends.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Whether the service provisions the tenant first (true unless told otherwise).
    #[serde(default = "yes")]
    pub provision: bool,
    /// An isolation mode for the tenant at the service.
    #[serde(default)]
    pub isolation: Option<String>,
}

fn yes() -> bool {
    true
}

async fn subscribe(
    State(market): State<Market>,
    Json(request): Json<SubscriptionRequest>,
) -> Result<(StatusCode, Json<Subscription>), ApiError> {
    Ok((StatusCode::CREATED, Json(market.subscribe(&request).await?)))
}

async fn subscriptions(
    State(market): State<Market>,
    Path(service_id): Path<String>,
) -> Result<Json<Vec<Subscription>>, ApiError> {
    if market.store().service(&service_id).await?.is_none() {
        return Err(not_found("service", &service_id));
    }
    Ok(Json(
        market
            .store()
            .subscriptions_since(&service_id, 0, 100_000)
            .await?,
    ))
}

#[derive(Debug, Serialize)]
struct SubscriptionView {
    subscription: Subscription,
    entitlement: Entitlement,
}

async fn subscription(
    State(market): State<Market>,
    Path((service_id, tenant)): Path<(String, String)>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let subscription = market
        .store()
        .subscription(&service_id, &tenant)
        .await?
        .ok_or_else(|| not_found("subscription", &format!("{service_id}/{tenant}")))?;
    let entitlement = market.store().entitlement(&subscription).await?;
    Ok(Json(SubscriptionView {
        subscription,
        entitlement,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanChange {
    plan_id: String,
}

async fn change_plan(
    State(market): State<Market>,
    Path((service_id, tenant)): Path<(String, String)>,
    Json(change): Json<PlanChange>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(
        market
            .change_plan(&service_id, &tenant, &change.plan_id)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpiryChange {
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

async fn set_expiry(
    State(market): State<Market>,
    Path((service_id, tenant)): Path<(String, String)>,
    Json(change): Json<ExpiryChange>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(
        market
            .set_expiry(&service_id, &tenant, change.expires_at)
            .await?,
    ))
}

async fn state_change(
    market: &Market,
    service_id: &str,
    tenant: &str,
    state: SubscriptionState,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(market.set_state(service_id, tenant, state).await?))
}

async fn suspend(
    State(market): State<Market>,
    Path((service_id, tenant)): Path<(String, String)>,
) -> Result<Json<Subscription>, ApiError> {
    state_change(&market, &service_id, &tenant, SubscriptionState::Suspended).await
}

async fn reinstate(
    State(market): State<Market>,
    Path((service_id, tenant)): Path<(String, String)>,
) -> Result<Json<Subscription>, ApiError> {
    state_change(&market, &service_id, &tenant, SubscriptionState::Active).await
}

async fn cancel(
    State(market): State<Market>,
    Path((service_id, tenant)): Path<(String, String)>,
) -> Result<Json<Subscription>, ApiError> {
    state_change(&market, &service_id, &tenant, SubscriptionState::Cancelled).await
}

/// A block (kill switch) to send.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// Why, e.g. `subscription_expired`.
    pub reason: String,
    /// The message the tenant's users see.
    pub message: String,
    /// When it takes effect (now when absent).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub block_at: Option<OffsetDateTime>,
    /// Hours of grace after `block_at`.
    #[serde(default)]
    pub grace_period_hours: u64,
}

async fn block(
    State(market): State<Market>,
    Path((service_id, tenant)): Path<(String, String)>,
    Json(request): Json<BlockRequest>,
) -> Result<(StatusCode, Json<Command>), ApiError> {
    if request.reason.is_empty() || request.reason.len() > 100 {
        return Err(invalid("reason", "1-100 characters"));
    }
    if request.message.len() > 1000 {
        return Err(invalid("message", "at most 1000 characters"));
    }
    if request.grace_period_hours > 24 * 365 {
        return Err(invalid("grace_period_hours", "at most a year"));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(market.block(&service_id, &tenant, &request).await?),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnblockIn {
    #[serde(default)]
    reason: String,
}

async fn unblock(
    State(market): State<Market>,
    Path((service_id, tenant)): Path<(String, String)>,
    body: Option<Json<UnblockIn>>,
) -> Result<(StatusCode, Json<Command>), ApiError> {
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    Ok((
        StatusCode::ACCEPTED,
        Json(market.unblock(&service_id, &tenant, &reason).await?),
    ))
}

async fn provision(
    State(market): State<Market>,
    Path((service_id, tenant)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Command>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(market.provision(&service_id, &tenant).await?),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeprovisionIn {
    #[serde(default = "yes")]
    archive: bool,
}

async fn deprovision(
    State(market): State<Market>,
    Path((service_id, tenant)): Path<(String, String)>,
    body: Option<Json<DeprovisionIn>>,
) -> Result<(StatusCode, Json<Command>), ApiError> {
    let archive = body.is_none_or(|Json(b)| b.archive);
    Ok((
        StatusCode::ACCEPTED,
        Json(market.deprovision(&service_id, &tenant, archive).await?),
    ))
}

async fn instances(
    State(market): State<Market>,
    Path(service_id): Path<String>,
) -> Result<Json<Vec<Instance>>, ApiError> {
    Ok(Json(market.store().instances(&service_id).await?))
}

#[derive(Debug, Deserialize)]
struct UsageQuery {
    tenant_id: Option<String>,
}

async fn usage(
    State(market): State<Market>,
    Path(service_id): Path<String>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<Vec<UsageTotal>>, ApiError> {
    Ok(Json(
        market
            .store()
            .usage(&service_id, query.tenant_id.as_deref())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
struct CommandQuery {
    #[serde(default)]
    pending: bool,
}

async fn commands(
    State(market): State<Market>,
    Path(service_id): Path<String>,
    Query(query): Query<CommandQuery>,
) -> Result<Json<Vec<QueuedCommand>>, ApiError> {
    Ok(Json(
        market
            .store()
            .commands(&service_id, query.pending, 1000)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
struct AlertQuery {
    service_id: Option<String>,
}

async fn alerts(
    State(market): State<Market>,
    Query(query): Query<AlertQuery>,
) -> Result<Json<Vec<StoredAlert>>, ApiError> {
    Ok(Json(
        market
            .store()
            .alerts(query.service_id.as_deref(), false, 1000)
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every market type that holds a secret prints without it.
    #[test]
    fn no_market_type_prints_a_secret() {
        let service_in: ServiceIn = serde_json::from_value(serde_json::json!({
            "id": "s", "name": "S", "api_key": "KEY-SECRET-1",
            "webhook_secret": "whsec_U0VDUkVULVNFQ1JFVC1TRUNSRVQtU0VDUkVU",
        }))
        .unwrap();
        let user_in: UserIn = serde_json::from_value(serde_json::json!({
            "id": "u", "tenant_id": "t", "name": "U", "email": "u@t", "password": "PASSWORD-SECRET",
        }))
        .unwrap();
        let service = Service {
            id: "s".into(),
            name: "S".into(),
            base_url: None,
            webhook_secret: "whsec_U0VDUkVULVNFQ1JFVC1TRUNSRVQtU0VDUkVU".into(),
        };
        let user = User {
            id: "u".into(),
            tenant_id: "t".into(),
            name: "U".into(),
            email: "u@t".into(),
            password_hash: "pbkdf2-sha256$1$salt$HASH-SECRET".into(),
        };
        let mut config = crate::MarketConfig::with_database("sqlite://x.db").unwrap();
        config.operator_token = Secret::new("OPERATOR-SECRET-TOKEN");
        for printed in [
            format!("{service_in:?}"),
            format!("{user_in:?}"),
            format!("{service:?}"),
            format!("{user:?}"),
            format!("{config:?}"),
        ] {
            assert!(!printed.contains("SECRET"), "{printed}");
            assert!(!printed.contains("U0VDUkVU"), "{printed}");
        }
    }
}
