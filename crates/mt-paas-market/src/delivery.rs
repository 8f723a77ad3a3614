//! Pushing signed commands and event hints to services (market → service, DESIGN §6).
//!
//! A command stays `pending` until the service answers it — with a receipt to a push, or by
//! acknowledging it after pulling it from a heartbeat response. Pushes are retried with
//! exponential backoff and jitter; every attempt is a new Standard Webhooks message (a fresh
//! `webhook-id`), so a captured message can never be replayed, while the command itself is
//! idempotent by its `command_id` and `sequence`.

use std::{sync::Weak, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use mt_paas_protocol::{
    Command, CommandReceipt, EventHint, paths,
    webhook::{self, WebhookSecret},
};
use reqwest::Method;
use time::OffsetDateTime;

use crate::{Inner, crypto, store::Service};

/// The longest wait between two pushes of one command.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until the market is dropped.
pub(crate) async fn run(market: Weak<Inner>) {
    loop {
        let Some(inner) = market.upgrade() else {
            return;
        };
        let poll = Duration::from_millis(inner.config.delivery.poll_interval_ms.max(10));
        let notify = inner.deliveries.clone();
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match inner
            .store
            .due_commands(inner.config.delivery.max_attempts, 32)
            .await
        {
            Ok(due) => {
                let mut pushes = tokio::task::JoinSet::new();
                for queued in due {
                    let inner = inner.clone();
                    pushes.spawn(async move {
                        push(&inner, &queued.service_id, &queued.command, queued.attempts).await
                    });
                }
                while pushes.join_next().await.is_some() {}
            }
            Err(e) => tracing::error!(error = %e, "cannot read the command queue"),
        }
        drop(inner);
        let _ = tokio::time::timeout(poll, woken).await;
    }
}

/// The request of a command: method, path and body.
fn request_of(service_id: &str, command: &Command) -> (Method, String, Vec<u8>) {
    match command {
        Command::Block(c) => (
            Method::POST,
            paths::block(service_id, &c.tenant_id),
            json(c),
        ),
        Command::Unblock(c) => (
            Method::POST,
            paths::unblock(service_id, &c.tenant_id),
            json(c),
        ),
        Command::Provision(c) => (Method::POST, paths::provision(service_id), json(c)),
        Command::Deprovision(c) => (
            Method::DELETE,
            paths::deprovision(service_id, &c.tenant_id),
            json(c),
        ),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Why a signed request got no 2xx.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No answer (or the request could not be made).
    Unreachable(String),
    /// The service answered a non-2xx with problem `code` (empty when not a problem).
    Answered { code: String, message: String },
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(e) => f.write_str(e),
            Self::Answered { message, .. } => f.write_str(message),
        }
    }
}

/// Sends a signed request to the service; returns the response body on a 2xx.
pub(crate) async fn send_signed(
    inner: &Inner,
    service: &Service,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, SendError> {
    let base = service
        .base_url
        .as_deref()
        .ok_or_else(|| SendError::Unreachable("the service has no base_url".to_owned()))?;
    let secret: WebhookSecret = service
        .webhook_secret
        .parse()
        .map_err(|e| SendError::Unreachable(format!("the service's webhook secret: {e}")))?;
    let message_id = crypto::new_id("msg").map_err(|e| SendError::Unreachable(e.to_string()))?;
    let headers = webhook::sign(
        &secret,
        &message_id,
        OffsetDateTime::now_utc().unix_timestamp(),
        &body,
    );
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let response = inner
        .http
        .request(method, &url)
        .header(webhook::HEADER_ID, headers.id)
        .header(webhook::HEADER_TIMESTAMP, headers.timestamp)
        .header(webhook::HEADER_SIGNATURE, headers.signature)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| SendError::Unreachable(format!("{url}: {e}")))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| SendError::Unreachable(format!("{url}: {e}")))?;
    if status.is_success() {
        return Ok(bytes.to_vec());
    }
    let code = serde_json::from_slice::<mt_paas_protocol::Problem>(&bytes)
        .map(|p| p.code)
        .unwrap_or_default();
    Err(SendError::Answered {
        code,
        message: format!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
                .chars()
                .take(300)
                .collect::<String>()
        ),
    })
}

/// The problem code with which a service refuses a command signed for another target.
const TARGET_MISMATCH: &str = "command_target_mismatch";

async fn push(inner: &Inner, service_id: &str, command: &Command, attempts: i64) {
    let service = match inner.store.service(service_id).await {
        Ok(Some(service)) => service,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "cannot read a service");
            return;
        }
    };
    let (method, path, body) = request_of(service_id, command);
    let outcome = send_signed(inner, &service, method, &path, body)
        .await
        .and_then(|body| {
            serde_json::from_slice::<CommandReceipt>(&body)
                .map_err(|e| SendError::Unreachable(format!("the receipt is not valid: {e}")))
        });
    let id = command.command_id();
    match outcome {
        Ok(receipt) => {
            let status = serde_json::to_value(receipt.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "applied".to_owned());
            tracing::info!(command = id, service = service_id, status = %status, "command delivered");
            if let Err(e) = inner.store.acknowledge(id, &status, &receipt.detail).await {
                tracing::error!(error = %e, "cannot record a receipt");
            }
        }
        // Final: the service will refuse this command however often it is sent.
        Err(SendError::Answered { code, message, .. }) if code == TARGET_MISMATCH => {
            tracing::error!(command = id, service = service_id, error = %message, "the service refused the command's signed target");
            if let Err(e) = inner.store.acknowledge(id, "rejected", &message).await {
                tracing::error!(error = %e, "cannot record a refusal");
            }
        }
        Err(error) => {
            let error = error.to_string();
            let wait = backoff(u32::try_from(attempts).unwrap_or(u32::MAX));
            // A service that is starting refuses a few pushes, and one not heard from lately
            // (not started yet, or gone) gets its commands when it next heartbeats: only a
            // live service that keeps refusing is news.
            if attempts >= 4 && heard_lately(inner, service_id).await {
                tracing::warn!(command = id, service = service_id, error = %error, retry_in = ?wait, "command push failed");
            } else {
                tracing::debug!(command = id, service = service_id, error = %error, retry_in = ?wait, "command push failed");
            }
            let next = OffsetDateTime::now_utc() + wait;
            if let Err(e) = inner.store.push_failed(id, &error, next).await {
                tracing::error!(error = %e, "cannot record a failed push");
            }
        }
    }
}

/// How recent a heartbeat must be for a failed push to be worth a warning.
const HEARD_LATELY: time::Duration = time::Duration::minutes(5);

/// Whether a replica of the service sent a heartbeat in the last [`HEARD_LATELY`].
async fn heard_lately(inner: &Inner, service_id: &str) -> bool {
    let since = OffsetDateTime::now_utc() - HEARD_LATELY;
    inner
        .store
        .instances(service_id)
        .await
        .map_or(true, |instances| {
            instances.iter().any(|i| i.received_at > since)
        })
}

/// 0.5 s × 2^attempts, capped, with ±25 % jitter.
fn backoff(attempts: u32) -> Duration {
    let step = usize::try_from(attempts.min(16)).unwrap_or(16);
    let base = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(MAX_BACKOFF)
        .without_max_times()
        .build()
        .nth(step)
        .unwrap_or(MAX_BACKOFF);
    // Jitter is no secret: without randomness it is the midpoint.
    let jitter = crypto::random_token(2).map_or(25, |t| t.bytes().map(u64::from).sum::<u64>() % 50);
    base.mul_f64(0.75 + jitter as f64 / 100.0)
}

/// Tells the service that a tenant's entitlement changed (best effort: three tries; the
/// service's periodic sync catches anything lost).
pub(crate) fn hint(
    inner: std::sync::Arc<Inner>,
    service: Service,
    tenant_id: String,
    revision: i64,
) {
    if service.base_url.is_none() {
        return;
    }
    tokio::spawn(async move {
        let body = serde_json::to_vec(&EventHint {
            service_id: service.id.clone(),
            tenant_id,
            revision,
        })
        .unwrap_or_default();
        let path = paths::events(&service.id);
        let send = || send_signed(&inner, &service, Method::POST, &path, body.clone());
        // At once, then after 250 ms and 1 s.
        let hints = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(250))
            .with_factor(4.0)
            .with_max_times(2);
        if let Err(e) = send
            .retry(hints)
            .sleep(tokio::time::sleep)
            .notify(|e, _| tracing::debug!(error = %e, "event hint not delivered; retrying"))
            .await
        {
            tracing::debug!(error = %e, "event hint not delivered");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(650));
        assert!(backoff(3) >= Duration::from_secs(3));
        assert!(backoff(40) <= MAX_BACKOFF.mul_f64(1.25));
    }
}
