//! The market's HTTP API: the service API and SSO under `/api/v1`, the operator API under
//! `/api/v1/admin`.

mod operator;
mod service;
mod sso;

use axum::{Json, Router, extract::State, response::IntoResponse, routing::get};
use http::{HeaderMap, HeaderValue, header};
use mt_paas::{
    TenantId,
    http::{ApiError, ProblemCode, ProblemLayer},
};
use mt_paas_protocol::paths;
use tower_http::catch_panic::CatchPanicLayer;

pub use self::operator::{BlockRequest, SubscriptionRequest};
use crate::{
    ActionError, Market, crypto,
    store::{Service, StoreError},
};

pub(crate) fn router(market: Market) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route(paths::JWKS, get(jwks))
        .nest(
            "/api/v1",
            service::routes()
                .merge(sso::routes())
                .route(paths::JWKS, get(jwks)),
        )
        .nest("/api/v1/admin", operator::routes(market.clone()))
        .with_state(market.clone())
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(ProblemCode::Internal).into_response()
        }))
        .layer(ProblemLayer)
        // The console answers pages, not problem+json.
        .merge(crate::console::router(market))
}

/// The published signing keys; a cache may keep them for five minutes.
async fn jwks(State(market): State<Market>) -> Result<impl IntoResponse, ApiError> {
    let set = market.jwks().await?;
    Ok((
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        )],
        Json(set),
    ))
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(error = %error, "market database error");
        ApiError::new(ProblemCode::Internal)
    }
}

impl From<ActionError> for ApiError {
    fn from(error: ActionError) -> Self {
        match &error {
            ActionError::NotFound { what, .. } => ApiError::new(ProblemCode::NotFound)
                .detail(error.to_string())
                .member("resource", *what),
            ActionError::Exists { .. } | ActionError::Conflict(_) => {
                ApiError::new(ProblemCode::Conflict).detail(error.to_string())
            }
            ActionError::Invalid { field, .. } => ApiError::new(ProblemCode::UnprocessableEntity)
                .detail(error.to_string())
                .member("field", *field),
            ActionError::Store(_) => {
                tracing::error!(error = %error, "market database error");
                ApiError::new(ProblemCode::Internal)
            }
            ActionError::NoRandomness(_) => {
                tracing::error!(error = %error, "no randomness for an id");
                ApiError::new(ProblemCode::Internal)
            }
        }
    }
}

/// A 422 naming the offending field.
pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ActionError::Invalid {
        field,
        message: message.into(),
    }
    .into()
}

/// The body as `T`, read after authentication: malformed JSON is a 400, JSON of the wrong
/// shape a 422, both naming serde's reason.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => ProblemCode::UnprocessableEntity,
            _ => ProblemCode::BadRequest,
        };
        ApiError::new(code).member("reason", e.to_string())
    })
}

/// A 404 for a missing resource.
pub(crate) fn not_found(what: &'static str, id: &str) -> ApiError {
    ActionError::NotFound {
        what,
        id: id.chars().take(100).collect(),
    }
    .into()
}

/// A tenant id from a path or body, checked like the SDK checks it.
pub(crate) fn tenant_id(value: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(value).map_err(|_| {
        ApiError::new(ProblemCode::InvalidTenantId).localized_param("source", "경로", "the path")
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn unauthorized() -> ApiError {
    ApiError::new(ProblemCode::Unauthorized)
        .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
}

/// The service `service_id`, if the request carries its API key. An unknown service and a
/// wrong key are the same 401.
pub(crate) async fn authenticate(
    market: &Market,
    headers: &HeaderMap,
    service_id: &str,
) -> Result<Service, ApiError> {
    let key = bearer(headers).ok_or_else(unauthorized)?;
    let Some((service, hash)) = market.store().service_with_key(service_id).await? else {
        return Err(unauthorized());
    };
    if crypto::same(
        crypto::sha256_hex(key.as_bytes()).as_bytes(),
        hash.as_bytes(),
    ) {
        Ok(service)
    } else {
        Err(unauthorized())
    }
}

/// Extractor: the service named by the path's `{service_id}`, authenticated by its API key
/// ([`authenticate`]): a handler that takes it runs only for that service's own key.
pub(crate) struct Caller(pub(crate) Service);

impl axum::extract::FromRequestParts<Market> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        market: &Market,
    ) -> Result<Self, ApiError> {
        let params = axum::extract::RawPathParams::from_request_parts(parts, market)
            .await
            .map_err(|_| unauthorized())?;
        let service_id = params
            .iter()
            .find(|(name, _)| *name == "service_id")
            .map(|(_, value)| value.to_owned())
            .ok_or_else(unauthorized)?;
        authenticate(market, &parts.headers, &service_id)
            .await
            .map(Self)
    }
}

/// Checks the operator token.
pub(crate) fn operator(market: &Market, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = bearer(headers).ok_or_else(unauthorized)?;
    let expected = market.config().operator_token.expose();
    if crypto::same(
        crypto::sha256_hex(token.as_bytes()).as_bytes(),
        crypto::sha256_hex(expected.as_bytes()).as_bytes(),
    ) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}
