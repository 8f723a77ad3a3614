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
//!   `X-MT-PaaS-Tenant`, `X-MT-PaaS-User` (the token's subject, when signed in),
//!   `X-MT-PaaS-Timestamp` and `X-MT-PaaS-Signature: v1=` HMAC-SHA256 over
//!   `v1\n{timestamp}\n{tenant}\n{user}\n{METHOD}\n{path and query}`, keyed with the tenant's
//!   own router key (`MT_PAAS_ROUTER_KEY` in its stack's `.env`). An app checks it and the
//!   timestamp; one tenant's app cannot sign as another tenant.
//! - An app that does not answer is 503 `tenant_app_unavailable` with `Retry-After`; one too
//!   slow, 504 `tenant_app_timeout`. Other tenants never notice.
//! - A WebSocket upgrade is forwarded with its `Upgrade` and `Connection` headers; when the
//!   app switches protocols, the two upgraded connections are joined byte for byte until
//!   either side closes.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use futures_util::TryStreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::{
    config::Config,
    core::{
        database::router_key,
        models::{IsolationMode, TenantStatus},
        tenant::Tenant,
    },
    http::{ApiError, ProblemCode},
    middleware::auth::CurrentUser,
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
        let user = request
            .extensions()
            .get::<CurrentUser>()
            .map(|u| u.sub().to_owned())
            .unwrap_or_default();
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
        let signed = format!(
            "v1\n{timestamp}\n{}\n{user}\n{}\n{path}",
            tenant.id(),
            parts.method
        );
        let key = router_key(&self.config, tenant.id());
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.as_bytes()),
            signed.as_bytes(),
        );
        let signature = format!(
            "v1={}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.as_ref())
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
        set("x-mt-paas-timestamp", &timestamp);
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
}
