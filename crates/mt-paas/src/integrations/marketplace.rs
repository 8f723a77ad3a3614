//! [`MarketplaceClient`]: the service's side of the market API (DESIGN §6), with request
//! timeouts, the API key, and an `Idempotency-Key` on every POST.

use std::time::Duration;

use mt_paas_protocol::{
    CommandAck, Entitlement, EntitlementPage, Heartbeat, HeartbeatResponse, IDEMPOTENCY_KEY,
    ProvisioningResult, paths,
};
use reqwest::{StatusCode, header};
use serde::{Serialize, de::DeserializeOwned};

use crate::config::{MarketplaceConfig, Secret};

/// Why a market request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarketError {
    /// No answer within the timeout, or no connection.
    #[error("the market cannot be reached: {0}")]
    Unreachable(String),
    /// The market refused the API key.
    #[error("the market refused the API key (marketplace.api_key)")]
    Unauthorized,
    /// Another error status.
    #[error("the market answered {status}: {detail}")]
    Status {
        /// The status.
        status: u16,
        /// The problem's detail or the body.
        detail: String,
        /// The market's `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    /// The answer is not what the protocol says.
    #[error("the market's answer is not valid: {0}")]
    Invalid(String),
    /// `marketplace.api_key` is not set.
    #[error("marketplace.api_key is not set")]
    NotConfigured,
    /// The system's random number generator gave no idempotency key: nothing was sent (a
    /// repeated key would make the market drop a different request as a duplicate).
    #[error("the system's random number generator failed: nothing was sent")]
    NoRandomness,
}

impl MarketError {
    /// Whether trying again later may succeed (an outage rather than a refusal).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::NoRandomness => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// An entitlement fetch's outcome.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Fetched {
    /// The entitlement and its ETag.
    Fresh(Box<Entitlement>, Option<String>),
    /// Unchanged since the ETag sent.
    NotModified,
    /// The tenant has no subscription to this service.
    NotSubscribed,
}

/// A client of the market API for one service.
#[derive(Clone)]
pub struct MarketplaceClient {
    http: reqwest::Client,
    base: String,
    service_id: String,
    api_key: Option<Secret>,
}

impl std::fmt::Debug for MarketplaceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketplaceClient")
            .field("base", &self.base)
            .field("service_id", &self.service_id)
            .finish_non_exhaustive()
    }
}

fn idempotency_key() -> Result<String, MarketError> {
    let bytes: [u8; 16] = crate::random::bytes().map_err(|_| MarketError::NoRandomness)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl MarketplaceClient {
    /// A client for `service_id` per `marketplace` (`api_url`, `api_key`,
    /// `request_timeout_ms`).
    pub fn new(config: &MarketplaceConfig, service_id: &str) -> Result<Self, MarketError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .connect_timeout(Duration::from_millis(config.request_timeout_ms))
            .user_agent(concat!("mt-paas/", env!("CARGO_PKG_VERSION")))
            // The API key goes to marketplace.api_url and nowhere a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| MarketError::Unreachable(e.to_string()))?;
        Ok(Self {
            http,
            base: config.api_url.trim_end_matches('/').to_owned(),
            service_id: service_id.to_owned(),
            api_key: config.api_key.clone(),
        })
    }

    /// The service this client speaks for.
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, MarketError> {
        let key = self.api_key.as_ref().ok_or(MarketError::NotConfigured)?;
        Ok(self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key.expose()))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, MarketError> {
        let response = request
            .send()
            .await
            .map_err(|e| MarketError::Unreachable(e.to_string()))?;
        match response.status() {
            s if s.is_success() || s == StatusCode::NOT_MODIFIED || s == StatusCode::NOT_FOUND => {
                Ok(response)
            }
            StatusCode::UNAUTHORIZED => Err(MarketError::Unauthorized),
            status => {
                let retry_after = response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok());
                let body = response.text().await.unwrap_or_default();
                let detail = serde_json::from_str::<mt_paas_protocol::Problem>(&body)
                    .map(|p| p.detail)
                    .unwrap_or_else(|_| body.chars().take(300).collect());
                Err(MarketError::Status {
                    status: status.as_u16(),
                    detail,
                    retry_after,
                })
            }
        }
    }

    async fn json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, MarketError> {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| MarketError::Unreachable(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| MarketError::Invalid(e.to_string()))
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, MarketError> {
        let request = self
            .request(reqwest::Method::POST, path)?
            .header(IDEMPOTENCY_KEY, idempotency_key()?)
            .json(body);
        let response = self.send(request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(MarketError::Status {
                status: 404,
                detail: response
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect(),
                retry_after: None,
            });
        }
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Self::json(response).await.map(Some)
    }

    /// One tenant's entitlement; `etag` makes an unchanged one cost a 304.
    pub async fn entitlement(
        &self,
        tenant_id: &str,
        etag: Option<&str>,
    ) -> Result<Fetched, MarketError> {
        let mut request = self.request(
            reqwest::Method::GET,
            &paths::entitlement(&self.service_id, tenant_id),
        )?;
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let response = self.send(request).await?;
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(Fetched::NotModified),
            StatusCode::NOT_FOUND => Ok(Fetched::NotSubscribed),
            _ => {
                let etag = response
                    .headers()
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let entitlement: Entitlement = Self::json(response).await?;
                if entitlement.tenant_id != tenant_id || entitlement.service_id != self.service_id {
                    return Err(MarketError::Invalid(format!(
                        "asked for {}/{tenant_id}, got {}/{}",
                        self.service_id, entitlement.service_id, entitlement.tenant_id
                    )));
                }
                Ok(Fetched::Fresh(Box::new(entitlement), etag))
            }
        }
    }

    /// Every entitlement changed after `revision`.
    pub async fn entitlements_since(&self, revision: i64) -> Result<EntitlementPage, MarketError> {
        let request = self
            .request(reqwest::Method::GET, &paths::entitlements(&self.service_id))?
            .query(&[("since_revision", revision)]);
        let response = self.send(request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(MarketError::Status {
                status: 404,
                detail: "the market does not know this service".to_owned(),
                retry_after: None,
            });
        }
        Self::json(response).await
    }

    /// Sends a heartbeat; the answer carries pending commands.
    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatResponse, MarketError> {
        self.post(&paths::heartbeat(&self.service_id), heartbeat)
            .await?
            .ok_or_else(|| MarketError::Invalid("an empty heartbeat response".to_owned()))
    }

    /// Acknowledges a command (pull path).
    pub async fn ack(&self, command_id: &str, ack: &CommandAck) -> Result<(), MarketError> {
        self.post::<_, serde_json::Value>(&paths::command_ack(command_id), ack)
            .await
            .map(drop)
    }

    /// Reports the outcome of a provision or deprovision command.
    pub async fn provisioning_result(
        &self,
        tenant_id: &str,
        result: &ProvisioningResult,
    ) -> Result<(), MarketError> {
        self.post::<_, serde_json::Value>(
            &paths::provisioning_result(&self.service_id, tenant_id),
            result,
        )
        .await
        .map(drop)
    }

    /// Exchanges an SSO authorization code (with its PKCE verifier) for the user.
    pub async fn sso_token(
        &self,
        request: &mt_paas_protocol::SsoTokenRequest,
    ) -> Result<mt_paas_protocol::SsoTokenResponse, MarketError> {
        self.post(mt_paas_protocol::paths::SSO_TOKEN, request)
            .await?
            .ok_or_else(|| MarketError::Invalid("an empty token response".to_owned()))
    }

    /// The market's authorization URL for a sign-in.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str, challenge: &str) -> String {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.service_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        format!(
            "{}{}?{query}",
            self.base,
            mt_paas_protocol::paths::SSO_AUTHORIZE
        )
    }

    /// Posts any protocol body to a market path (used by the outbox's deliveries).
    pub async fn post_json<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<serde_json::Value, MarketError> {
        Ok(self
            .post(path, body)
            .await?
            .unwrap_or(serde_json::Value::Null))
    }
}
