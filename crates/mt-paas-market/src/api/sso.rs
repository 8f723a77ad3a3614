//! Sign-in through the market: the authorization-code flow with PKCE (RFC 7636, S256 only).
//!
//! `GET /sso/authorize` shows a sign-in form; `POST /sso/authorize` checks the user and
//! redirects to the service's `redirect_uri` with a one-time `code` and the `state`;
//! `POST /sso/token` (the service, with its API key) exchanges the code and the PKCE verifier
//! for the user.

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use mt_paas::http::{ApiError, ProblemCode};
use mt_paas_protocol::{SsoTokenRequest, SsoTokenResponse};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{authenticate, invalid};
use crate::{Market, crypto, throttle};

pub(super) fn routes() -> Router<Market> {
    Router::new()
        .route("/sso/authorize", get(authorize_form).post(authorize))
        .route("/sso/token", post(token))
}

/// The parameters of an authorization request.
#[derive(Debug, Clone, Deserialize)]
struct AuthorizeParams {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: String,
    code_challenge_method: String,
}

impl AuthorizeParams {
    async fn check(&self, market: &Market) -> Result<(), ApiError> {
        if self.response_type != "code" {
            return Err(invalid("response_type", "only `code` is supported"));
        }
        if self.code_challenge_method != "S256" {
            return Err(invalid("code_challenge_method", "only `S256` is supported"));
        }
        if self.code_challenge.len() != 43 {
            return Err(invalid(
                "code_challenge",
                "a base64url SHA-256 (43 characters)",
            ));
        }
        if self.state.is_empty() || self.state.len() > 500 {
            return Err(invalid("state", "1-500 characters"));
        }
        let service = market
            .store()
            .service(&self.client_id)
            .await?
            .ok_or_else(|| invalid("client_id", "no such service"))?;
        // The code may only travel to the service itself.
        let base = service
            .base_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/');
        let allowed = !base.is_empty()
            && self.redirect_uri.starts_with(base)
            && matches!(
                self.redirect_uri.as_bytes().get(base.len()),
                Some(b'/' | b'?') | None
            );
        if !allowed {
            return Err(invalid(
                "redirect_uri",
                "must lie under the service's registered base_url",
            ));
        }
        Ok(())
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn authorize_form(
    State(market): State<Market>,
    Query(params): Query<AuthorizeParams>,
) -> Result<Html<String>, ApiError> {
    params.check(&market).await?;
    let hidden: String = [
        ("response_type", &params.response_type),
        ("client_id", &params.client_id),
        ("redirect_uri", &params.redirect_uri),
        ("state", &params.state),
        ("code_challenge", &params.code_challenge),
        ("code_challenge_method", &params.code_challenge_method),
    ]
    .iter()
    .map(|(k, v)| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            escape(v)
        )
    })
    .collect();
    Ok(Html(format!(
        "<!doctype html><html lang=\"ko\"><meta charset=\"utf-8\"><title>Service Market 로그인</title>\
         <h1>Service Market</h1><p>{} 서비스에 로그인합니다.</p>\
         <form method=\"post\" action=\"/api/v1/sso/authorize\">{hidden}\
         <label>아이디 <input name=\"username\" autocomplete=\"username\"></label>\
         <label>비밀번호 <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
         <button type=\"submit\">로그인</button></form></html>",
        escape(&params.client_id)
    )))
}

#[derive(Debug, Deserialize)]
struct Credentials {
    username: String,
    password: mt_paas::config::Secret,
    #[serde(flatten)]
    params: AuthorizeParams,
}

async fn authorize(
    State(market): State<Market>,
    extensions: http::Extensions,
    Form(form): Form<Credentials>,
) -> Result<Response, ApiError> {
    form.params.check(&market).await?;
    let address = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let logins = &market.inner.logins;
    if let Err(wait) = logins.check(&form.username, address) {
        return Err(ApiError::new(ProblemCode::TooManyAttempts)
            .param("retry_after", wait.as_secs().max(1).to_string())
            .header(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            ));
    }
    if form.username.len() > 200 || form.password.expose().len() > 1024 {
        return Err(invalid(
            "username",
            "at most 200 characters (password: 1024)",
        ));
    }
    let user = market.store().user(&form.username).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let valid = throttle::verify(form.password.expose().to_owned(), stored).await;
    let Some(user) = user.filter(|_| valid) else {
        logins.failed(&form.username, address);
        return Err(ApiError::new(ProblemCode::Unauthorized).detail("wrong username or password"));
    };
    logins.succeeded(&form.username);
    let code = crypto::random_token(32)
        .map_err(|e| ApiError::new(ProblemCode::Internal).cause(e.to_string()))?;
    let expires_at = OffsetDateTime::now_utc()
        + time::Duration::seconds(
            i64::try_from(market.config().sso.code_ttl_seconds).unwrap_or(60),
        );
    market
        .store()
        .put_code(
            &crypto::sha256_hex(code.as_bytes()),
            &form.params.client_id,
            &user.id,
            &form.params.redirect_uri,
            &form.params.code_challenge,
            expires_at,
        )
        .await?;
    let separator = if form.params.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", &code)
        .append_pair("state", &form.params.state)
        .finish();
    let location = format!("{}{separator}{query}", form.params.redirect_uri);
    let location =
        HeaderValue::from_str(&location).map_err(|_| invalid("redirect_uri", "not a valid URL"))?;
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

async fn token(
    State(market): State<Market>,
    headers: HeaderMap,
    Json(request): Json<SsoTokenRequest>,
) -> Result<Json<SsoTokenResponse>, ApiError> {
    if request.grant_type != "authorization_code" {
        return Err(invalid(
            "grant_type",
            "only `authorization_code` is supported",
        ));
    }
    let refused = || {
        ApiError::new(ProblemCode::BadRequest)
            .detail("invalid_grant: the code is unknown, used, expired or not for this request")
    };
    let (service_id, user_id, redirect_uri, challenge, expires_at) = market
        .store()
        .take_code(&crypto::sha256_hex(request.code.as_bytes()))
        .await?
        .ok_or_else(refused)?;
    // The service redeeming the code must be the one it was issued to.
    authenticate(&market, &headers, &service_id).await?;
    let verifier_ok = (43..=128).contains(&request.code_verifier.len())
        && crypto::same(
            crypto::sha256_b64url(request.code_verifier.as_bytes()).as_bytes(),
            challenge.as_bytes(),
        );
    if expires_at < OffsetDateTime::now_utc()
        || redirect_uri != request.redirect_uri
        || !verifier_ok
    {
        return Err(refused());
    }
    let user = market.store().user(&user_id).await?.ok_or_else(refused)?;
    let mut claims = serde_json::Map::new();
    claims.insert("aud".into(), service_id.into());
    claims.insert("sub".into(), user.id.clone().into());
    claims.insert("tenant_id".into(), user.tenant_id.clone().into());
    claims.insert("name".into(), user.name.clone().into());
    claims.insert("email".into(), user.email.clone().into());
    let id_token = market.sign_token(claims).await?;
    Ok(Json(SsoTokenResponse {
        sub: user.id,
        tenant_id: user.tenant_id,
        name: user.name,
        email: user.email,
        id_token: Some(id_token),
    }))
}
