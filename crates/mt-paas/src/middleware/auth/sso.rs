//! Sign-in through the market (`auth.marketplace_sso`): the service's side of the
//! authorization-code flow with PKCE. `login_url` redirects to the market with a fresh `state`
//! and code challenge; `callback_url` takes the market's code, exchanges it (with the
//! verifier) for the user, and issues the service's own JWT (`sub`, `tenant_id`, `name`,
//! valid `auth.jwt.expiry_hours`).

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use mt_paas_protocol::SsoTokenRequest;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::JwtKeys;
use crate::{
    core::central::{CentralDb, on_pool},
    http::{ApiError, ProblemCode},
    integrations::{MarketError, MarketplaceClient},
};

/// How long a sign-in may take between login and callback.
const STATE_TTL: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub(crate) struct Sso {
    pub(crate) client: MarketplaceClient,
    pub(crate) keys: JwtKeys,
    pub(crate) db: CentralDb,
    pub(crate) redirect_uri: String,
    pub(crate) expiry_hours: u64,
}

pub(crate) fn router(sso: Sso, login_path: &str, callback_path: &str) -> Router {
    Router::new()
        .route(login_path, get(login))
        .route(callback_path, get(callback))
        .with_state(sso)
}

fn random(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let _ = aws_lc_rs::rand::fill(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

async fn login(State(sso): State<Sso>) -> Result<Response, ApiError> {
    let state = random(24);
    let verifier = random(48);
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ));
    on_pool!(&sso.db, pool => {
        sqlx::query("INSERT INTO sso_states (state, verifier, created_at) VALUES ($1, $2, $3)")
            .bind(&state)
            .bind(&verifier)
            .bind(OffsetDateTime::now_utc())
            .execute(pool)
            .await
            .map(drop)
    })
    .map_err(ApiError::database)?;
    let location = sso
        .client
        .authorize_url(&sso.redirect_uri, &state, &challenge);
    let location =
        HeaderValue::from_str(&location).map_err(|_| ApiError::new(ProblemCode::Internal))?;
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn refused(detail: &str) -> ApiError {
    ApiError::new(ProblemCode::Unauthorized).detail(format!("sign-in failed: {detail}"))
}

async fn callback(
    State(sso): State<Sso>,
    Query(query): Query<CallbackQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(error) = query.error {
        return Err(refused(&error.chars().take(100).collect::<String>()));
    }
    let (Some(code), Some(state)) = (query.code, query.state) else {
        return Err(
            ApiError::new(ProblemCode::BadRequest).detail("the callback needs code and state")
        );
    };
    // One use: the state is deleted as it is read.
    let found: Option<(String, OffsetDateTime)> = on_pool!(&sso.db, pool => {
        sqlx::query_as("DELETE FROM sso_states WHERE state = $1 RETURNING verifier, created_at")
            .bind(&state)
            .fetch_optional(pool)
            .await
    })
    .map_err(ApiError::database)?;
    let Some((verifier, created_at)) = found else {
        return Err(refused("unknown or used state"));
    };
    if OffsetDateTime::now_utc() - created_at > STATE_TTL {
        return Err(refused("the sign-in took too long; start again"));
    }
    let user = sso
        .client
        .sso_token(&SsoTokenRequest {
            grant_type: "authorization_code".to_owned(),
            code,
            redirect_uri: sso.redirect_uri.clone(),
            code_verifier: verifier,
        })
        .await
        .map_err(|e| match e {
            MarketError::Status { status, .. } if (400..500).contains(&status) => {
                refused("the market refused the code")
            }
            other => {
                tracing::warn!(error = %other, "exchanging an SSO code failed");
                ApiError::new(ProblemCode::MarketUnavailable)
            }
        })?;
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), user.sub.clone().into());
    claims.insert("tenant_id".into(), user.tenant_id.clone().into());
    claims.insert("name".into(), user.name.into());
    claims.insert("email".into(), user.email.into());
    let token = sso.keys.issue(claims).map_err(|e| {
        tracing::error!(error = %e, "signing a token failed");
        ApiError::new(ProblemCode::Internal)
    })?;
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": sso.expiry_hours * 3600,
        "sub": user.sub,
        "tenant_id": user.tenant_id,
    })))
}
