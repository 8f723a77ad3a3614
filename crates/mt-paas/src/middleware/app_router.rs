//! The tenant router (DOCKER_PER_TENANT with `isolation.docker.images.app`): after the whole
//! guard — identification, authentication, subscription and kill switch, rate limit, usage —
//! every request the service's own routes do not answer goes to the tenant's own app
//! container, at its block's app port on 127.0.0.1.
//!
//! - Bodies stream both ways (uploads, server-sent events); the connection to the app must
//!   open within [`CONNECT_TIMEOUT`] and each read may wait
//!   `isolation.docker.app_read_timeout_seconds`.
//! - Hop-by-hop headers (RFC 9110 §7.6.1, and those `Connection` names) are removed both ways.
//! - What the client sent as `Forwarded`, `X-Forwarded-*` or `X-MT-PaaS-*` is dropped; the
//!   router sets its own: `Forwarded` (RFC 7239) and `X-Forwarded-For/-Host/-Proto`, and
//!   `X-MT-PaaS-Tenant`, `X-MT-PaaS-User` (the token's subject, percent-encoded UTF-8, when
//!   signed in),
//!   `X-MT-PaaS-Context` (the tenant's name, features and entitlement, and the user's
//!   verified claims: [`RoutedContext`] as base64url JSON), `X-MT-PaaS-Timestamp`,
//!   `X-MT-PaaS-Nonce` (16 random bytes) and `X-MT-PaaS-Signature: v1=` HMAC-SHA256 over
//!   `v1\n{timestamp}\n{nonce}\n{tenant}\n{user}\n{context}\n{METHOD}\n{path and query}`,
//!   keyed with the tenant's own router key (`MT_PAAS_ROUTER_KEY` in its stack's `.env`).
//!   An app checks them with [`RouterVerifier`]: the signature, the tenant, a timestamp
//!   within [`MAX_SKEW_SECONDS`], and a nonce never seen before, so a captured request cannot
//!   be replayed and one tenant's app cannot sign as another tenant. A service built on
//!   mt-paas does this by itself when it runs as a tenant's app (`MT_PAAS_TENANT_ID` set:
//!   see [`TenantAppConfig`](crate::config::TenantAppConfig)). The body is not signed: it
//!   travels on the tenant's own loopback or stack network, and the nonce makes each signed
//!   request usable once.
//! - An app that does not answer is 503 `tenant_app_unavailable` with `Retry-After`; one too
//!   slow, 504 `tenant_app_timeout`. Other tenants never notice.
//! - A WebSocket upgrade is forwarded with its `Upgrade` and `Connection` headers; when the
//!   app switches protocols, the two upgraded connections are joined byte for byte until
//!   either side closes.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use futures_util::TryStreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use mt_paas_protocol::Entitlement;
use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    core::{
        database::router_key,
        models::{IsolationMode, TenantStatus},
        tenant::Tenant,
    },
    http::{ApiError, ProblemCode},
    middleware::auth::{Claims, CurrentUser},
    provisioning::docker::app_port,
};

/// How long the connection to a tenant's app may take to open.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Headers that belong to one connection, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The router: a client for the tenants' apps.
#[derive(Clone)]
pub(crate) struct AppRouter {
    config: Arc<Config>,
    client: reqwest::Client,
}

impl AppRouter {
    pub(crate) fn new(config: Arc<Config>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(Duration::from_secs(
                config.isolation.docker.app_read_timeout_seconds.max(1),
            ))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok(Self { config, client })
    }

    /// Sends `request` to its tenant's app and streams the answer back.
    pub(crate) async fn forward(&self, request: Request) -> Response {
        let Some(tenant) = request.extensions().get::<Tenant>().cloned() else {
            tracing::error!("the tenant router found no tenant: is it behind TenantLayer?");
            return ApiError::new(ProblemCode::Internal).into_response();
        };
        let record = tenant.record();
        let port = (record.isolation_or(self.config.isolation.mode)
            == IsolationMode::DockerPerTenant
            && record.status == TenantStatus::Active)
            .then_some(record.port_block)
            .flatten()
            .and_then(|block| app_port(&self.config, block));
        let Some(port) = port else {
            // A tenant without an app of its own: nothing answers this path.
            return ApiError::new(ProblemCode::NotFound).into_response();
        };
        let signed_in = request.extensions().get::<CurrentUser>();
        // Percent-encoded: a subject may be any text (한글, spaces), a header only ASCII.
        let user = signed_in.map(|u| encode_user(u.sub())).unwrap_or_default();
        let context = RoutedContext {
            tenant_name: tenant.name().to_owned(),
            features: tenant
                .features()
                .iter()
                .map(|(name, on)| (name.to_owned(), on))
                .collect(),
            entitlement: tenant.entitlement().map(|e| e.entitlement.clone()),
            claims: signed_in.map(|u| u.claims().clone()),
        }
        .encode();
        let client_ip = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let (mut parts, body) = request.into_parts();
        // A WebSocket upgrade, when the connection can be taken over (a real connection).
        let upgrade = is_websocket_upgrade(&parts.headers)
            .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
            .flatten();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .to_owned();
        let mut headers = forwardable(&parts.headers);
        headers.remove(header::HOST);
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let proto = "http";
        let forwarded_for = client_ip.map(|ip| match ip {
            std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
            std::net::IpAddr::V4(v4) => v4.to_string(),
        });
        let mut forwarded = format!("proto={proto}");
        if let Some(for_) = &forwarded_for {
            forwarded = format!("for={for_};{forwarded}");
        }
        if !host.is_empty() {
            forwarded.push_str(&format!(";host=\"{}\"", host.replace(['"', '\\'], "")));
        }
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let Ok(nonce) = new_nonce() else {
            tracing::error!("the system's RNG gave no nonce: the request is not forwarded");
            return ApiError::new(ProblemCode::Internal).into_response();
        };
        let key = router_key(&self.config, tenant.id());
        let signature = sign(
            &key,
            &timestamp,
            &nonce,
            tenant.id().as_str(),
            &user,
            &context,
            parts.method.as_str(),
            &path,
        );
        let mut set = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        set("forwarded", &forwarded);
        if let Some(ip) = client_ip {
            set("x-forwarded-for", &ip.to_string());
        }
        if !host.is_empty() {
            set("x-forwarded-host", &host);
        }
        set("x-forwarded-proto", proto);
        set("x-mt-paas-tenant", tenant.id().as_str());
        if !user.is_empty() {
            set("x-mt-paas-user", &user);
        }
        set("x-mt-paas-context", &context);
        set("x-mt-paas-timestamp", &timestamp);
        set("x-mt-paas-nonce", &nonce);
        set("x-mt-paas-signature", &signature);
        if upgrade.is_some() {
            set("connection", "upgrade");
            set("upgrade", "websocket");
        }

        let url = format!("http://127.0.0.1:{port}{path}");
        let body = reqwest::Body::wrap_stream(body.into_data_stream());
        let sent = self
            .client
            .request(parts.method, &url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(answer)
                if answer.status() == http::StatusCode::SWITCHING_PROTOCOLS
                    && upgrade.is_some() =>
            {
                let mut headers = forwardable(answer.headers());
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                let tenant_id = tenant.id().clone();
                match (answer.upgrade().await, upgrade) {
                    (Ok(mut app_side), Some(client)) => {
                        tokio::spawn(async move {
                            match client.await {
                                Ok(client) => {
                                    let mut client = hyper_util::rt::TokioIo::new(client);
                                    if let Err(e) =
                                        tokio::io::copy_bidirectional(&mut client, &mut app_side)
                                            .await
                                    {
                                        tracing::debug!(tenant = %tenant_id, error = %e, "a WebSocket tunnel ended");
                                    }
                                }
                                Err(e) => {
                                    tracing::debug!(tenant = %tenant_id, error = %e, "the client's upgrade failed")
                                }
                            }
                        });
                        let mut response = Response::new(Body::empty());
                        *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                        *response.headers_mut() = headers;
                        response
                    }
                    _ => ApiError::new(ProblemCode::TenantAppUnavailable)
                        .header(header::RETRY_AFTER, HeaderValue::from_static("5"))
                        .into_response(),
                }
            }
            Ok(answer) => {
                let status = answer.status();
                let headers = forwardable(answer.headers());
                let stream = answer.bytes_stream().map_err(std::io::Error::other);
                let mut response = Response::new(Body::from_stream(stream));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                response
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant.id(), port, error = %e, "the tenant's app did not answer");
                if e.is_timeout() {
                    ApiError::new(ProblemCode::TenantAppTimeout).into_response()
                } else {
                    ApiError::new(ProblemCode::TenantAppUnavailable)
                        .header(header::RETRY_AFTER, HeaderValue::from_static("5"))
                        .into_response()
                }
            }
        }
    }
}

/// Whether the request asks to switch to WebSocket (`Connection: upgrade`, `Upgrade:
/// websocket`).
fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `headers` without hop-by-hop ones (and those `Connection` names), and without what only
/// the router may set.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let lower = name.as_str();
        let dropped = HOP_BY_HOP.contains(&lower)
            || named.iter().any(|n| n == lower)
            || lower == "forwarded"
            || lower.starts_with("x-forwarded-")
            || lower.starts_with("x-mt-paas-");
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// `sub` as `X-MT-PaaS-User` carries it: UTF-8, percent-encoded except RFC 3986's
/// unreserved characters and `@`.
pub(super) fn encode_user(sub: &str) -> String {
    let mut out = String::with_capacity(sub.len());
    for b in sub.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The subject `X-MT-PaaS-User` names; `None` when it is not what [`encode_user`] makes.
fn decode_user(header: &str) -> Option<String> {
    let bytes = header.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// 16 random bytes, URL-safe base64: one per forwarded request.
fn new_nonce() -> Result<String, crate::random::NoRandomness> {
    let bytes: [u8; 16] = crate::random::bytes()?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What the router vouches for about a request besides its tenant and user, sent to the
/// tenant's app as base64url JSON in `X-MT-PaaS-Context` and covered by the signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RoutedContext {
    /// The tenant's display name.
    pub tenant_name: String,
    /// The tenant's features as the router decided them (the plan's, or the defaults).
    pub features: BTreeMap<String, bool>,
    /// The market's entitlement, when subscriptions are checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<Entitlement>,
    /// The signed-in user's verified token claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
}

impl RoutedContext {
    /// The header value: URL-safe base64 of the JSON.
    pub(super) fn encode(&self) -> String {
        // A map of strings, booleans and JSON values always serializes.
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(value: &str) -> Option<Self> {
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// The text the `v1=` signature covers.
#[allow(clippy::too_many_arguments)]
fn signed_text(
    timestamp: &str,
    nonce: &str,
    tenant: &str,
    user: &str,
    context: &str,
    method: &str,
    path: &str,
) -> String {
    format!("v1\n{timestamp}\n{nonce}\n{tenant}\n{user}\n{context}\n{method}\n{path}")
}

/// The `v1=` signature the router sends and [`RouterVerifier`] checks.
#[allow(clippy::too_many_arguments)]
pub(super) fn sign(
    key: &str,
    timestamp: &str,
    nonce: &str,
    tenant: &str,
    user: &str,
    context: &str,
    method: &str,
    path: &str,
) -> String {
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.as_bytes()),
        signed_text(timestamp, nonce, tenant, user, context, method, path).as_bytes(),
    );
    format!(
        "v1={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.as_ref())
    )
}

/// How far a forwarded request's timestamp may be from the app's clock, either way.
pub(crate) const MAX_SKEW_SECONDS: i64 = 60;

/// Nonces an app remembers at most; past it, a request is refused until old ones expire
/// (only correctly signed requests are remembered, so only the router can fill it).
const MAX_REMEMBERED_NONCES: usize = 200_000;

/// Why a tenant's app refused a request as not coming from its router.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterRefusal {
    /// A header the router always sends is absent or not text.
    #[error("the request has no valid {0} header: it did not come through the tenant router")]
    Missing(&'static str),
    /// The signature is not the router's for this tenant, request line and headers.
    #[error(
        "X-MT-PaaS-Signature does not match: the request was not signed by this tenant's router"
    )]
    Signature,
    /// Signed for another tenant than the one this app serves.
    #[error("the request is for tenant {0}, not for the tenant this app serves")]
    OtherTenant(String),
    /// The timestamp is further than 60 s from the app's clock.
    #[error("X-MT-PaaS-Timestamp is more than {MAX_SKEW_SECONDS} s from this app's clock")]
    Stale,
    /// The nonce was already used: a replayed request.
    #[error("X-MT-PaaS-Nonce was already used: a replayed request")]
    Replayed,
    /// Too many requests within the window to remember their nonces.
    #[error("too many signed requests within {MAX_SKEW_SECONDS} s to check them for replays")]
    Busy,
    /// A signed header that does not decode (a router of another version).
    #[error("{0} does not decode")]
    Malformed(&'static str),
}

impl RouterRefusal {
    /// The refusal in Korean.
    pub fn korean(&self) -> String {
        match self {
            Self::Missing(name) => {
                format!("{name} 헤더가 없습니다: 테넌트 라우터를 거친 요청이 아닙니다.")
            }
            Self::Signature => {
                "X-MT-PaaS-Signature가 맞지 않습니다: 이 테넌트의 라우터가 서명한 요청이 아닙니다."
                    .to_owned()
            }
            Self::OtherTenant(tenant) => {
                format!("이 앱이 맡은 테넌트가 아닌 {tenant} 테넌트의 요청입니다.")
            }
            Self::Stale => format!(
                "X-MT-PaaS-Timestamp가 이 앱의 시계와 {MAX_SKEW_SECONDS}초 넘게 차이 납니다."
            ),
            Self::Replayed => "이미 쓰인 X-MT-PaaS-Nonce입니다: 재전송된 요청입니다.".to_owned(),
            Self::Busy => format!(
                "{MAX_SKEW_SECONDS}초 안에 서명된 요청이 너무 많아 재전송 여부를 확인할 수 없습니다."
            ),
            Self::Malformed(name) => format!("{name} 헤더를 해석할 수 없습니다."),
        }
    }
}

/// What the router vouches for on a verified request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RoutedCaller {
    /// The tenant (always the one the app serves).
    pub tenant: String,
    /// The signed-in user's subject, when there is one.
    pub user: Option<String>,
    /// The tenant's name, features and entitlement, and the user's claims.
    pub context: RoutedContext,
}

/// A tenant app's check that a request came from its tenant router (DOCKER_PER_TENANT):
/// built from the app's `MT_PAAS_TENANT_ID` and `MT_PAAS_ROUTER_KEY`, it accepts each
/// signed request once.
pub struct RouterVerifier {
    tenant: String,
    key: aws_lc_rs::hmac::Key,
    seen: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl std::fmt::Debug for RouterVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterVerifier")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl RouterVerifier {
    /// A verifier for `tenant`'s app, with its router key.
    pub fn new(tenant: impl Into<String>, key: &str) -> Self {
        Self {
            tenant: tenant.into(),
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.as_bytes()),
            seen: std::sync::Mutex::default(),
        }
    }

    /// A verifier from the environment the tenant's stack gives its app; the error names
    /// the variable that is missing or empty.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(value),
            _ => Err(format!(
                "{name} is not set: the tenant's stack sets it in the app's environment"
            )),
        };
        let tenant = var("MT_PAAS_TENANT_ID")?;
        let key = var("MT_PAAS_ROUTER_KEY")?;
        Ok(Self::new(tenant, &key))
    }

    /// Checks a request (`method`, its path and query, its headers) at the current time.
    pub fn verify(
        &self,
        method: &http::Method,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<RoutedCaller, RouterRefusal> {
        self.verify_at(
            method,
            path_and_query,
            headers,
            time::OffsetDateTime::now_utc().unix_timestamp(),
        )
    }

    fn verify_at(
        &self,
        method: &http::Method,
        path_and_query: &str,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<RoutedCaller, RouterRefusal> {
        let text = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(RouterRefusal::Missing(name))
        };
        let signature = text("x-mt-paas-signature")?;
        let timestamp = text("x-mt-paas-timestamp")?;
        let nonce = text("x-mt-paas-nonce")?;
        let tenant = text("x-mt-paas-tenant")?;
        let context = text("x-mt-paas-context")?;
        let user = headers
            .get("x-mt-paas-user")
            .map(|v| {
                v.to_str()
                    .map_err(|_| RouterRefusal::Missing("x-mt-paas-user"))
            })
            .transpose()?
            .unwrap_or("");
        let mac = signature
            .strip_prefix("v1=")
            .and_then(|b64| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(b64)
                    .ok()
            })
            .ok_or(RouterRefusal::Signature)?;
        let signed = signed_text(
            timestamp,
            nonce,
            tenant,
            user,
            context,
            method.as_str(),
            path_and_query,
        );
        aws_lc_rs::hmac::verify(&self.key, signed.as_bytes(), &mac)
            .map_err(|_| RouterRefusal::Signature)?;
        if tenant != self.tenant {
            return Err(RouterRefusal::OtherTenant(tenant.to_owned()));
        }
        let at: i64 = timestamp.parse().map_err(|_| RouterRefusal::Stale)?;
        if (now - at).abs() > MAX_SKEW_SECONDS {
            return Err(RouterRefusal::Stale);
        }
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_REMEMBERED_NONCES {
            seen.retain(|_, at| (now - *at).abs() <= MAX_SKEW_SECONDS);
            if seen.len() >= MAX_REMEMBERED_NONCES {
                return Err(RouterRefusal::Busy);
            }
        }
        let context =
            RoutedContext::decode(context).ok_or(RouterRefusal::Malformed("x-mt-paas-context"))?;
        let user = decode_user(user).ok_or(RouterRefusal::Malformed("x-mt-paas-user"))?;
        if seen.insert(nonce.to_owned(), at).is_some() {
            return Err(RouterRefusal::Replayed);
        }
        Ok(RoutedCaller {
            tenant: tenant.to_owned(),
            user: (!user.is_empty()).then_some(user),
            context,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_router_headers_are_not_forwarded() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "named by Connection"),
            ("transfer-encoding", "chunked"),
            ("x-mt-paas-tenant", "korea"),
            ("X-MT-PaaS-Signature", "v1=forged"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
        ] {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        let forwarded = forwardable(&headers);
        let kept: Vec<&str> = forwarded.keys().map(HeaderName::as_str).collect();
        assert_eq!(kept, ["content-type", "accept"]);
    }

    /// The headers the router sends for `tenant`, signed with `key`, at `timestamp`.
    fn routed(key: &str, tenant: &str, user: &str, timestamp: i64, nonce: &str) -> HeaderMap {
        let ts = timestamp.to_string();
        let mut headers = HeaderMap::new();
        let context = context().encode();
        let signature = sign(key, &ts, nonce, tenant, user, &context, "POST", "/ask?x=1");
        for (name, value) in [
            ("x-mt-paas-tenant", tenant),
            ("x-mt-paas-context", context.as_str()),
            ("x-mt-paas-timestamp", ts.as_str()),
            ("x-mt-paas-nonce", nonce),
            ("x-mt-paas-signature", signature.as_str()),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        if !user.is_empty() {
            headers.insert("x-mt-paas-user", HeaderValue::from_str(user).unwrap());
        }
        headers
    }

    fn context() -> RoutedContext {
        RoutedContext {
            tenant_name: "한림대학교".into(),
            features: BTreeMap::from([("quiz".to_owned(), false)]),
            entitlement: None,
            claims: None,
        }
    }

    #[test]
    fn an_app_accepts_its_routers_requests_once_and_nothing_else() {
        let now = 1_800_000_000;
        let post = http::Method::POST;
        let app = RouterVerifier::new("hallym", "hallym-key");
        let ok = routed("hallym-key", "hallym", "minji", now, "n1");
        assert_eq!(
            app.verify_at(&post, "/ask?x=1", &ok, now),
            Ok(RoutedCaller {
                tenant: "hallym".into(),
                user: Some("minji".into()),
                context: context(),
            })
        );
        // The same request again is a replay.
        assert_eq!(
            app.verify_at(&post, "/ask?x=1", &ok, now + 1),
            Err(RouterRefusal::Replayed)
        );
        // Another path, method or user than signed.
        let fresh = routed("hallym-key", "hallym", "minji", now, "n2");
        assert_eq!(
            app.verify_at(&post, "/ask?x=2", &fresh, now),
            Err(RouterRefusal::Signature)
        );
        assert_eq!(
            app.verify_at(&http::Method::GET, "/ask?x=1", &fresh, now),
            Err(RouterRefusal::Signature)
        );
        let mut other_user = fresh.clone();
        other_user.insert("x-mt-paas-user", HeaderValue::from_static("admin"));
        assert_eq!(
            app.verify_at(&post, "/ask?x=1", &other_user, now),
            Err(RouterRefusal::Signature)
        );
        // Features the router did not sign for.
        let mut more_features = fresh.clone();
        let mut richer = context();
        richer.features.insert("quiz".into(), true);
        more_features.insert(
            "x-mt-paas-context",
            HeaderValue::from_str(&richer.encode()).unwrap(),
        );
        assert_eq!(
            app.verify_at(&post, "/ask?x=1", &more_features, now),
            Err(RouterRefusal::Signature)
        );
        // A refused request does not use up its nonce.
        assert!(app.verify_at(&post, "/ask?x=1", &fresh, now).is_ok());
        // Another tenant's key, even naming this tenant; another tenant's own request.
        let forged = routed("korea-key", "hallym", "", now, "n3");
        assert_eq!(
            app.verify_at(&post, "/ask?x=1", &forged, now),
            Err(RouterRefusal::Signature)
        );
        let korea = RouterVerifier::new("korea", "hallym-key");
        assert_eq!(
            korea.verify_at(
                &post,
                "/ask?x=1",
                &routed("hallym-key", "hallym", "", now, "n4"),
                now
            ),
            Err(RouterRefusal::OtherTenant("hallym".into()))
        );
        // Too old or from the future.
        for at in [now - MAX_SKEW_SECONDS - 1, now + MAX_SKEW_SECONDS + 1] {
            assert_eq!(
                app.verify_at(
                    &post,
                    "/ask?x=1",
                    &routed("hallym-key", "hallym", "", at, "n5"),
                    now
                ),
                Err(RouterRefusal::Stale)
            );
        }
        // Headers missing, or a signature in another scheme.
        let mut bare = routed("hallym-key", "hallym", "", now, "n6");
        bare.remove("x-mt-paas-nonce");
        assert_eq!(
            app.verify_at(&post, "/ask?x=1", &bare, now),
            Err(RouterRefusal::Missing("x-mt-paas-nonce"))
        );
        let mut v2 = routed("hallym-key", "hallym", "", now, "n7");
        v2.insert("x-mt-paas-signature", HeaderValue::from_static("v2=abc"));
        assert_eq!(
            app.verify_at(&post, "/ask?x=1", &v2, now),
            Err(RouterRefusal::Signature)
        );
        // Anonymous callers pass with no user.
        assert_eq!(
            app.verify_at(
                &post,
                "/ask?x=1",
                &routed("hallym-key", "hallym", "", now, "n8"),
                now
            )
            .map(|c| c.user),
            Ok(None)
        );
    }

    #[test]
    fn a_subject_in_any_script_reaches_the_app_as_it_was() {
        for sub in ["민지", "kim minji", "a%b", "minji@hallym.ac.kr", "줄\n바꿈"] {
            let header = encode_user(sub);
            assert!(
                HeaderValue::from_str(&header).unwrap().to_str().is_ok(),
                "{header}"
            );
            assert_eq!(decode_user(&header).as_deref(), Some(sub));
        }
        let now = 1_800_000_000;
        let app = RouterVerifier::new("hallym", "hallym-key");
        let headers = routed("hallym-key", "hallym", &encode_user("민지"), now, "u1");
        assert_eq!(
            app.verify_at(&http::Method::POST, "/ask?x=1", &headers, now)
                .map(|c| c.user),
            Ok(Some("민지".to_owned()))
        );
        assert_eq!(decode_user("%E1"), None, "not UTF-8");
        assert_eq!(decode_user("%4"), None, "cut short");
    }

    #[test]
    fn the_router_signs_each_request_with_a_fresh_nonce() {
        let (a, b) = (new_nonce().unwrap(), new_nonce().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
    }
}
