//! The service API (service → market, DESIGN §6).

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use mt_paas::http::ApiError;
use mt_paas_protocol::{
    AuditAlert, CommandAck, Entitlement, EntitlementPage, Heartbeat, HeartbeatResponse,
    ProvisioningResult, UsageReceipt, UsageReport,
};
use serde::Deserialize;

use super::{Caller, authenticate, invalid, not_found, parse, tenant_id};
use crate::{Market, crypto};

/// Most entitlements in one bulk page.
const PAGE: i64 = 500;
/// Most usage records in one report.
const MAX_RECORDS: usize = 10_000;
/// Most commands in one heartbeat response.
const MAX_PULLED: i64 = 100;

pub(super) fn routes() -> Router<Market> {
    Router::new()
        .route("/services/{service_id}/heartbeat", post(heartbeat))
        .route(
            "/services/{service_id}/tenants/{tenant_id}/entitlement",
            get(entitlement),
        )
        .route("/services/{service_id}/entitlements", get(entitlements))
        .route("/services/{service_id}/usage", post(usage))
        .route(
            "/services/{service_id}/tenants/{tenant_id}/provisioning-result",
            post(provisioning_result),
        )
        .route("/audit/alerts", post(alert))
        .route("/commands/{command_id}/ack", post(ack))
}

fn same_service(body: &str, path: &str) -> Result<(), ApiError> {
    if body == path {
        Ok(())
    } else {
        Err(invalid(
            "service_id",
            format!("the body names service {body:?}, the path {path:?}"),
        ))
    }
}

async fn heartbeat(
    State(market): State<Market>,
    Caller(service): Caller,
    body: Bytes,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let heartbeat: Heartbeat = parse(&body)?;
    same_service(&heartbeat.service_id, &service.id)?;
    if heartbeat.instance_id.len() > 200 {
        return Err(invalid("instance_id", "at most 200 characters"));
    }
    if heartbeat.active_tenants.len() > 100_000 {
        return Err(invalid("active_tenants", "at most 100000 tenants"));
    }
    let accepted = market.store().record_heartbeat(&heartbeat).await?;
    market.service_alive(&service.id).await;
    let commands: Vec<_> = market
        .store()
        .commands(&service.id, true, MAX_PULLED)
        .await?
        .into_iter()
        .map(|queued| queued.command)
        .collect();
    if !commands.is_empty() {
        let ids: Vec<&str> = commands.iter().map(|c| c.command_id()).collect();
        market.store().mark_delivered(&ids).await?;
    }
    Ok(Json(HeartbeatResponse { accepted, commands }))
}

fn etag(revision: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

async fn entitlement(
    State(market): State<Market>,
    Caller(service): Caller,
    Path((_, tenant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    let subscription = market
        .store()
        .subscription(&service.id, tenant.as_str())
        .await?
        .ok_or_else(|| not_found("subscription", &format!("{}/{tenant}", service.id)))?;
    let tag = etag(subscription.revision);
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == tag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let entitlement: Entitlement = market.store().entitlement(&subscription).await?;
    Ok(([(header::ETAG, tag)], Json(entitlement)).into_response())
}

#[derive(Debug, Deserialize)]
struct Since {
    #[serde(default)]
    since_revision: i64,
}

async fn entitlements(
    State(market): State<Market>,
    Caller(service): Caller,
    Query(since): Query<Since>,
) -> Result<Json<EntitlementPage>, ApiError> {
    if since.since_revision < 0 {
        return Err(invalid("since_revision", "must not be negative"));
    }
    market.service_alive(&service.id).await;
    let changed = market
        .store()
        .subscriptions_since(&service.id, since.since_revision, PAGE)
        .await?;
    let mut entitlements = Vec::with_capacity(changed.len());
    for subscription in &changed {
        entitlements.push(market.store().entitlement(subscription).await?);
    }
    // A full page may be followed by more; an empty one is up to date with the market.
    let revision = match changed.last() {
        Some(last) => last.revision,
        None => market.store().revision().await?.max(since.since_revision),
    };
    Ok(Json(EntitlementPage {
        revision,
        entitlements,
    }))
}

async fn usage(
    State(market): State<Market>,
    Caller(service): Caller,
    body: Bytes,
) -> Result<Json<UsageReceipt>, ApiError> {
    let report: UsageReport = parse(&body)?;
    same_service(&report.service_id, &service.id)?;
    if report.records.len() > MAX_RECORDS {
        return Err(invalid(
            "records",
            format!("at most {MAX_RECORDS} records per report"),
        ));
    }
    for (i, record) in report.records.iter().enumerate() {
        tenant_id(&record.tenant_id).map_err(|_| {
            invalid(
                "records",
                format!("records[{i}].tenant_id is not a tenant id"),
            )
        })?;
        if record.dimension.is_empty() || record.dimension.len() > 64 {
            return Err(invalid(
                "records",
                format!("records[{i}].dimension must be 1-64 characters"),
            ));
        }
        if record.period_seconds == 0 {
            return Err(invalid(
                "records",
                format!("records[{i}].period_seconds must be positive"),
            ));
        }
    }
    let (accepted, duplicates) = market
        .store()
        .record_usage(&service.id, &report.instance_id, &report.records)
        .await?;
    Ok(Json(UsageReceipt {
        accepted,
        duplicates,
    }))
}

async fn alert(
    State(market): State<Market>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    // The service is named in the body: read just that, authenticate, then the rest.
    #[derive(serde::Deserialize)]
    struct Sender {
        service_id: String,
    }
    let sender: Sender = parse(&body)?;
    authenticate(&market, &headers, &sender.service_id).await?;
    let mut alert: AuditAlert = parse(&body)?;
    if alert.event_id.is_empty() {
        // The seed's body has no event id: an identical resend is still recognised.
        alert.event_id = format!("sha256:{}", crypto::sha256_hex(&body));
    }
    if alert.event_id.len() > 200 || alert.alert_type.is_empty() || alert.alert_type.len() > 100 {
        return Err(invalid(
            "event_id",
            "event_id at most 200 and alert_type 1-100 characters",
        ));
    }
    let stored = market.store().record_alert(&alert).await?;
    let status = if stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({ "event_id": alert.event_id, "duplicate": !stored })),
    ))
}

async fn ack(
    State(market): State<Market>,
    Path(command_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let queued = market
        .store()
        .command(&command_id)
        .await?
        .ok_or_else(|| not_found("command", &command_id))?;
    authenticate(&market, &headers, &queued.service_id).await?;
    let ack: CommandAck = parse(&body)?;
    let status = serde_json::to_value(ack.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    market
        .store()
        .acknowledge(&command_id, &status, &ack.detail)
        .await?;
    let after = market
        .store()
        .command(&command_id)
        .await?
        .map(|c| c.status)
        .unwrap_or(status);
    Ok(Json(
        serde_json::json!({ "command_id": command_id, "status": after }),
    ))
}

async fn provisioning_result(
    State(market): State<Market>,
    Caller(service): Caller,
    Path((_, tenant)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let result: ProvisioningResult = parse(&body)?;
    let tenant = tenant_id(&tenant)?;
    let command = market
        .store()
        .command(&result.command_id)
        .await?
        .filter(|c| c.service_id == service.id && c.command.tenant_id() == tenant.as_str())
        .ok_or_else(|| not_found("command", &result.command_id))?;
    market
        .provisioning_result(&service, tenant.as_str(), &result)
        .await?;
    tracing::info!(service = %service.id, tenant = %tenant, command = %command.command.command_id(), "provisioning result");
    Ok(StatusCode::NO_CONTENT)
}
