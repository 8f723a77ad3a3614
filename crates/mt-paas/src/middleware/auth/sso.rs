//! Sign-in through the market (`auth.marketplace_sso`): the service's side of the
//! authorization-code flow with PKCE. `login_url` redirects to the market with a fresh `state`
//! and code challenge; `callback_url` takes the market's code, exchanges it (with the
//! verifier) for the user, and issues the service's own JWT (`sub`, `tenant_id`, `name`,
//! valid `auth.jwt.expiry_hours`).
//!
//! The `state` is bound to the browser that started the sign-in: `login_url` sets an
//! HttpOnly cookie holding the state, the PKCE verifier and an expiry
//! ([`STATE_TTL`]), sealed with an HMAC keyed from `auth.jwt.secret` (so every replica can
//! open it). The callback needs that cookie, with the same state, unexpired, and clears it.
//! A callback URL sent to someone else (login CSRF: signing a victim in as the attacker)
//! finds no such cookie and is refused. Nothing is written for an anonymous `login_url`
//! request — the sign-in lives in the browser — and a code works once, at the market.

use std::time::Duration;

use aws_lc_rs::hmac;
use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use mt_paas_protocol::SsoTokenRequest;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::jwt::JwtKeys;
use crate::{
    http::{ApiError, ProblemCode},
    integrations::{MarketError, MarketplaceClient},
};

/// How long a sign-in may take between login and callback.
pub(crate) const STATE_TTL: Duration = Duration::from_secs(300);
/// The cookie that binds a sign-in to its browser.
pub(crate) const STATE_COOKIE: &str = "mt_paas_sso";

#[derive(Clone)]
pub(crate) struct Sso {
    pub(crate) client: MarketplaceClient,
    pub(crate) keys: JwtKeys,
    /// Seals the state cookie.
    pub(crate) cookie_key: hmac::Key,
    pub(crate) redirect_uri: String,
    /// The callback's path (the cookie's `Path`).
    pub(crate) callback_path: String,
    pub(crate) expiry_hours: u64,
}

impl Sso {
    /// The cookie key for `auth.jwt.secret`: an HMAC key of its own, derived from the secret.
    pub(crate) fn cookie_key(jwt_secret: &str) -> hmac::Key {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, jwt_secret.as_bytes());
        let key = hmac::sign(&derive, b"mt-paas sso state cookie v1");
        hmac::Key::new(hmac::HMAC_SHA256, key.as_ref())
    }
}

pub(crate) fn router(sso: Sso, login_path: &str, callback_path: &str) -> Router {
    Router::new()
        .route(login_path, get(login))
        .route(callback_path, get(callback))
        .with_state(sso)
}

fn random(bytes: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf)
        .map_err(|_| ApiError::new(ProblemCode::Internal).cause("the system RNG failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// The cookie value: `state.verifier.expires.mac`, every part base64url or digits.
fn seal(key: &hmac::Key, state: &str, verifier: &str, expires: i64) -> String {
    let content = format!("{state}.{verifier}.{expires}");
    let mac = URL_SAFE_NO_PAD.encode(hmac::sign(key, content.as_bytes()));
    format!("{content}.{mac}")
}

/// Why a callback's cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsealed {
    /// No cookie, or not one of ours (another browser, or tampered).
    Missing,
    /// The state in the URL is not the cookie's.
    OtherState,
    /// The sign-in took longer than [`STATE_TTL`].
    Expired,
}

/// The verifier of `cookie`, if it is ours, for `state`, and not expired at `now`.
fn open<'c>(key: &hmac::Key, cookie: &'c str, state: &str, now: i64) -> Result<&'c str, Unsealed> {
    let (content, mac) = cookie.rsplit_once('.').ok_or(Unsealed::Missing)?;
    let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| Unsealed::Missing)?;
    hmac::verify(key, content.as_bytes(), &mac).map_err(|_| Unsealed::Missing)?;
    let mut parts = content.splitn(3, '.');
    let (Some(sealed_state), Some(verifier), Some(expires)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(Unsealed::Missing);
    };
    if aws_lc_rs::constant_time::verify_slices_are_equal(sealed_state.as_bytes(), state.as_bytes())
        .is_err()
    {
        return Err(Unsealed::OtherState);
    }
    let expires: i64 = expires.parse().map_err(|_| Unsealed::Missing)?;
    if now > expires {
        return Err(Unsealed::Expired);
    }
    Ok(verifier)
}

fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    crate::http::cookie(headers, STATE_COOKIE)
}

impl Sso {
    fn set_cookie(&self, value: &str, max_age: u64) -> Result<HeaderValue, ApiError> {
        let secure = if self.redirect_uri.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{STATE_COOKIE}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
            self.callback_path
        ))
        .map_err(|_| ApiError::new(ProblemCode::Internal).cause("the SSO cookie is not a header"))
    }
}

async fn login(State(sso): State<Sso>) -> Result<Response, ApiError> {
    let state = random(24)?;
    let verifier = random(48)?;
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ));
    let expires = OffsetDateTime::now_utc().unix_timestamp() + STATE_TTL.as_secs().cast_signed();
    let cookie = sso.set_cookie(
        &seal(&sso.cookie_key, &state, &verifier, expires),
        STATE_TTL.as_secs(),
    )?;
    let location = sso
        .client
        .authorize_url(&sso.redirect_uri, &state, &challenge);
    let location = HeaderValue::from_str(&location)
        .map_err(|_| ApiError::new(ProblemCode::Internal).cause("the authorize URL"))?;
    Ok((
        StatusCode::FOUND,
        [(header::LOCATION, location), (header::SET_COOKIE, cookie)],
    )
        .into_response())
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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Whatever happens, the sign-in is over: its cookie goes.
    let clear = sso.set_cookie("", 0)?;
    let answer = exchange(&sso, query, &headers).await;
    let mut response = match answer {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    };
    response.headers_mut().append(header::SET_COOKIE, clear);
    Ok(response)
}

async fn exchange(
    sso: &Sso,
    query: CallbackQuery,
    headers: &HeaderMap,
) -> Result<serde_json::Value, ApiError> {
    if let Some(error) = query.error {
        return Err(refused(&error.chars().take(100).collect::<String>()));
    }
    let (Some(code), Some(state)) = (query.code, query.state) else {
        return Err(
            ApiError::new(ProblemCode::BadRequest).detail("the callback needs code and state")
        );
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let verifier = match cookie_value(headers).map(|c| open(&sso.cookie_key, c, &state, now)) {
        Some(Ok(verifier)) => verifier.to_owned(),
        None | Some(Err(Unsealed::Missing)) => {
            return Err(refused(
                "this browser did not start the sign-in (no sign-in cookie); start again",
            ));
        }
        Some(Err(Unsealed::OtherState)) => {
            return Err(refused("the state is not this browser's sign-in"));
        }
        Some(Err(Unsealed::Expired)) => {
            return Err(refused("the sign-in took too long; start again"));
        }
    };
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
            other => ApiError::new(ProblemCode::MarketUnavailable)
                .cause(format!("exchanging an SSO code: {other}")),
        })?;
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), user.sub.clone().into());
    claims.insert("tenant_id".into(), user.tenant_id.clone().into());
    claims.insert("name".into(), user.name.into());
    claims.insert("email".into(), user.email.into());
    let token = sso
        .keys
        .issue(claims)
        .map_err(|e| ApiError::new(ProblemCode::Internal).cause(format!("signing a token: {e}")))?;
    Ok(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": sso.expiry_hours.saturating_mul(3600),
        "sub": user.sub,
        "tenant_id": user.tenant_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_opens_only_for_its_state_its_key_and_in_time() {
        let key = Sso::cookie_key("a-jwt-secret");
        let cookie = seal(&key, "state1", "verifier1", 1_000);
        assert_eq!(open(&key, &cookie, "state1", 999), Ok("verifier1"));
        assert_eq!(open(&key, &cookie, "state1", 1_000), Ok("verifier1"));
        assert_eq!(open(&key, &cookie, "state1", 1_001), Err(Unsealed::Expired));
        assert_eq!(
            open(&key, &cookie, "state2", 999),
            Err(Unsealed::OtherState),
            "another browser's state"
        );
        let other = Sso::cookie_key("another-secret");
        assert_eq!(open(&other, &cookie, "state1", 999), Err(Unsealed::Missing));
        let forged = cookie.replace("1000", "9999");
        assert_eq!(open(&key, &forged, "state1", 999), Err(Unsealed::Missing));
        assert_eq!(open(&key, "garbage", "state1", 999), Err(Unsealed::Missing));
        assert_eq!(open(&key, "", "", 0), Err(Unsealed::Missing));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; mt_paas_sso=x.y"),
        );
        assert_eq!(cookie_value(&headers), Some("x.y"));
        headers.clear();
        headers.append(header::COOKIE, HeaderValue::from_static("mt_paas_ssox=1"));
        assert_eq!(cookie_value(&headers), None);
    }
}
