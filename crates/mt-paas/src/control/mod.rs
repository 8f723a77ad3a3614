//! The control plane on the service (seed §5.2, DESIGN §6): the market's signed commands —
//! block, unblock, provision, deprovision — and its event hints.
//!
//! Every command is verified before anything else: Standard Webhooks signature with
//! `marketplace.webhook_secret` (several secrets during a rotation), a timestamp within
//! ±300 s, and a `webhook-id` never seen before (kept in the central DB, so a replay is
//! refused after a restart too). A refused command answers 401 and changes nothing.

pub mod audit;
pub mod heartbeat;
pub mod kill_switch;
pub mod metrics;
pub mod usage;

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::HeaderMap,
    routing::{delete, post},
};
use mt_paas_protocol::{
    AckStatus, BlockCommand, Command, CommandReceipt, DeprovisionCommand, EventHint,
    ProvisionCommand, ProvisioningResult, ProvisioningStatus, UnblockCommand, paths,
    webhook::{self, Verifier, WebhookError},
};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

pub use self::{
    audit::AuditLogger,
    kill_switch::{Access, KillSwitch, SwitchState},
};
use crate::{
    config::Config,
    core::{
        central::{CentralDb, on_pool},
        models::{IsolationMode, TenantId},
    },
    http::{ApiError, ProblemCode},
    integrations::{Entitlements, MarketplaceClient},
    provisioning::{ProvisionError, Provisioned, Provisioner},
};

/// Largest command body accepted.
const MAX_BODY: usize = 64 * 1024;
/// How long a seen `webhook-id` is kept (well past the timestamp tolerance).
const SEEN_RETENTION: Duration = Duration::from_secs(3600);

/// What the control endpoints work with.
#[derive(Clone)]
pub(crate) struct Control {
    pub(crate) config: Arc<Config>,
    /// Verifies pushed commands; `None` without `marketplace.webhook_secret` (commands then
    /// arrive only on the pull path).
    pub(crate) verifier: Option<Verifier>,
    pub(crate) central: CentralDb,
    pub(crate) kill_switch: KillSwitch,
    pub(crate) provisioner: Provisioner,
    pub(crate) entitlements: Option<Entitlements>,
    pub(crate) client: Option<MarketplaceClient>,
    pub(crate) audit: AuditLogger,
}

/// The control routes, for a service whose id is `service_id`.
pub(crate) fn router(control: Control) -> Router {
    let id = control.config.service.id.clone();
    let tenant = |suffix: &str| format!("{}{suffix}", paths::deprovision(&id, "{tenant_id}"));
    Router::new()
        .route(&tenant("/block"), post(block))
        .route(&tenant("/unblock"), post(unblock))
        .route(&paths::provision(&id), post(provision))
        .route(&paths::deprovision(&id, "{tenant_id}"), delete(deprovision))
        .route(&paths::events(&id), post(event))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(control)
}

fn refused(reason: &str) -> ApiError {
    ApiError::new(ProblemCode::InvalidSignature).localized_param(
        "reason",
        reason.to_owned(),
        reason.to_owned(),
    )
}

impl Control {
    /// Signature, timestamp, then a first sight of the id; then the body as `T`.
    async fn verified<T: DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<T, ApiError> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        let id = header(webhook::HEADER_ID);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let Some(verifier) = &self.verifier else {
            return Err(refused("this service accepts no pushed commands"));
        };
        if let Err(e) = verifier.verify(
            id,
            header(webhook::HEADER_TIMESTAMP),
            header(webhook::HEADER_SIGNATURE),
            body,
            now,
        ) {
            tracing::warn!(error = %e, "a control command was refused");
            self.audit
                .report(
                    audit::SIGNATURE_FAILURE,
                    mt_paas_protocol::Severity::Medium,
                    serde_json::json!({ "reason": e.to_string(), "webhook_id": id.chars().take(100).collect::<String>() }),
                )
                .await;
            return Err(refused(match e {
                WebhookError::OutsideTolerance { .. } => "timestamp outside ±300 s",
                WebhookError::NoMatchingSignature => "signature mismatch",
                WebhookError::MissingHeader(_) => "missing webhook headers",
                _ => "malformed webhook headers",
            }));
        }
        let first_sight = on_pool!(&self.central, pool => {
            sqlx::query("INSERT INTO seen_webhooks (id, received_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(OffsetDateTime::now_utc())
                .execute(pool)
                .await
                .map(|r| r.rows_affected() > 0)
        })
        .map_err(ApiError::database)?;
        if !first_sight {
            tracing::warn!(webhook_id = id, "a replayed control command was refused");
            self.audit
                .report(
                    audit::SIGNATURE_FAILURE,
                    mt_paas_protocol::Severity::High,
                    serde_json::json!({ "reason": "replayed webhook-id", "webhook_id": id }),
                )
                .await;
            return Err(refused("webhook-id already used"));
        }
        serde_json::from_slice(body).map_err(|e| {
            ApiError::new(ProblemCode::UnprocessableEntity).member("reason", e.to_string())
        })
    }

    /// Reports a provisioning outcome to the market (retried), then refreshes the tenant's
    /// entitlement so the service sees its new state at once.
    fn report(&self, tenant: TenantId, result: ProvisioningResult) {
        let (client, entitlements) = (self.client.clone(), self.entitlements.clone());
        tokio::spawn(async move {
            if let Some(client) = client {
                for wait in [0u64, 500, 2_000, 5_000, 15_000] {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    match client.provisioning_result(tenant.as_str(), &result).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(tenant = %tenant, error = %e, "reporting a provisioning result failed")
                        }
                    }
                }
            }
            if let Some(entitlements) = entitlements
                && let Err(e) = entitlements.refresh(&tenant).await
            {
                tracing::warn!(tenant = %tenant, error = %e, "refreshing an entitlement after provisioning failed");
            }
        });
    }

    /// Prunes seen ids every ten minutes while the service runs.
    pub(crate) fn spawn_pruning(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                if let Err(e) = this.prune_seen().await {
                    tracing::warn!(error = %e, "pruning seen webhook ids failed");
                }
            }
        });
    }

    /// Forgets seen ids older than the retention (they would fail the timestamp check).
    pub(crate) async fn prune_seen(&self) -> Result<u64, sqlx::Error> {
        let before = OffsetDateTime::now_utc() - SEEN_RETENTION;
        Ok(on_pool!(&self.central, pool => {
            sqlx::query("DELETE FROM seen_webhooks WHERE received_at < $1").bind(before).execute(pool).await?.rows_affected()
        }))
    }
}

fn tenant_in_path(value: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(value).map_err(|_| {
        ApiError::new(ProblemCode::InvalidTenantId).localized_param("source", "경로", "the path")
    })
}

fn receipt(command_id: &str, status: AckStatus, detail: impl Into<String>) -> Json<CommandReceipt> {
    Json(CommandReceipt {
        command_id: command_id.to_owned(),
        status,
        detail: detail.into(),
    })
}

impl Control {
    /// Applies a command (pushed and verified, or pulled from a heartbeat response) and says
    /// what became of it. Idempotent: the same command twice has the same effect as once.
    pub(crate) async fn apply(&self, command: &Command) -> CommandReceipt {
        let (status, detail) = match command {
            Command::Block { tenant_id, command } => match TenantId::parse(tenant_id) {
                Ok(tenant) => match self.kill_switch.block(&tenant, command).await {
                    Ok(status) => {
                        tracing::info!(tenant = %tenant, sequence = command.sequence, status = ?status, "block command");
                        (status, String::new())
                    }
                    Err(e) => (AckStatus::Failed, format!("central DB: {e}")),
                },
                Err(e) => (AckStatus::Failed, format!("tenant_id: {e}")),
            },
            Command::Unblock { tenant_id, command } => match TenantId::parse(tenant_id) {
                Ok(tenant) => match self.kill_switch.unblock(&tenant, command).await {
                    Ok(status) => {
                        tracing::info!(tenant = %tenant, sequence = command.sequence, status = ?status, "unblock command");
                        (status, String::new())
                    }
                    Err(e) => (AckStatus::Failed, format!("central DB: {e}")),
                },
                Err(e) => (AckStatus::Failed, format!("tenant_id: {e}")),
            },
            Command::Provision { command } => self.provision(command).await,
            Command::Deprovision { tenant_id, command } => {
                self.deprovision(tenant_id, command).await
            }
        };
        CommandReceipt {
            command_id: command.command_id().to_owned(),
            status,
            detail,
        }
    }

    async fn provision(&self, command: &ProvisionCommand) -> (AckStatus, String) {
        let tenant = match TenantId::parse(&command.tenant_id) {
            Ok(tenant) => tenant,
            Err(e) => return (AckStatus::Failed, format!("tenant_id: {e}")),
        };
        let mode = match command.isolation.as_deref() {
            None | Some("") => None,
            Some(mode) => match mode.parse::<IsolationMode>() {
                Ok(mode) => Some(mode),
                Err(e) => return (AckStatus::Failed, format!("isolation: {e}")),
            },
        };
        let name = if command.display_name.trim().is_empty() {
            tenant.to_string()
        } else {
            command.display_name.clone()
        };
        let (status, result, detail) = match self
            .provisioner
            .create(tenant.clone(), &name, mode)
            .await
        {
            Ok(Provisioned::Ready(_)) | Err(ProvisionError::AlreadyExists(_)) => (
                AckStatus::Applied,
                ProvisioningStatus::Provisioned,
                String::new(),
            ),
            Ok(Provisioned::AwaitingDocker { dir, .. }) => (
                AckStatus::Failed,
                ProvisioningStatus::Failed,
                format!(
                    "no Docker engine answers; the stack waits in {}",
                    dir.display()
                ),
            ),
            Err(e) => {
                tracing::error!(tenant = %tenant, error = %e, "provisioning from the market failed");
                (AckStatus::Failed, ProvisioningStatus::Failed, e.to_string())
            }
        };
        self.report(
            tenant,
            ProvisioningResult {
                command_id: command.command_id.clone(),
                status: result,
                detail: detail.clone(),
            },
        );
        (status, detail)
    }

    async fn deprovision(
        &self,
        tenant_id: &str,
        command: &DeprovisionCommand,
    ) -> (AckStatus, String) {
        let tenant = match TenantId::parse(tenant_id) {
            Ok(tenant) => tenant,
            Err(e) => return (AckStatus::Failed, format!("tenant_id: {e}")),
        };
        let (status, result, detail) = match self
            .provisioner
            .destroy(&tenant, command.archive)
            .await
        {
            Ok(archive) => (
                AckStatus::Applied,
                ProvisioningStatus::Deprovisioned,
                archive
                    .map(|a| format!("archived to {}", a.display()))
                    .unwrap_or_default(),
            ),
            Err(ProvisionError::NotFound(_)) => (
                AckStatus::Applied,
                ProvisioningStatus::Deprovisioned,
                "not present".to_owned(),
            ),
            Err(e) => {
                tracing::error!(tenant = %tenant, error = %e, "deprovisioning from the market failed");
                (AckStatus::Failed, ProvisioningStatus::Failed, e.to_string())
            }
        };
        self.report(
            tenant,
            ProvisioningResult {
                command_id: command.command_id.clone(),
                status: result,
                detail: detail.clone(),
            },
        );
        (status, detail)
    }
}

async fn block(
    State(control): State<Control>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CommandReceipt>, ApiError> {
    let command: BlockCommand = control.verified(&headers, &body).await?;
    let tenant = tenant_in_path(&tenant)?;
    Ok(Json(
        control
            .apply(&Command::Block {
                tenant_id: tenant.to_string(),
                command,
            })
            .await,
    ))
}

async fn unblock(
    State(control): State<Control>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CommandReceipt>, ApiError> {
    let command: UnblockCommand = control.verified(&headers, &body).await?;
    let tenant = tenant_in_path(&tenant)?;
    Ok(Json(
        control
            .apply(&Command::Unblock {
                tenant_id: tenant.to_string(),
                command,
            })
            .await,
    ))
}

async fn provision(
    State(control): State<Control>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CommandReceipt>, ApiError> {
    let command: ProvisionCommand = control.verified(&headers, &body).await?;
    if TenantId::parse(&command.tenant_id).is_err() {
        return Err(ApiError::new(ProblemCode::InvalidTenantId).localized_param(
            "source",
            "명령의 tenant_id",
            "the command's tenant_id",
        ));
    }
    if let Some(mode) = command.isolation.as_deref().filter(|m| !m.is_empty())
        && mode.parse::<IsolationMode>().is_err()
    {
        return Err(ApiError::new(ProblemCode::UnprocessableEntity).member("field", "isolation"));
    }
    Ok(Json(control.apply(&Command::Provision { command }).await))
}

async fn deprovision(
    State(control): State<Control>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CommandReceipt>, ApiError> {
    let command: DeprovisionCommand = control.verified(&headers, &body).await?;
    let tenant = tenant_in_path(&tenant)?;
    Ok(Json(
        control
            .apply(&Command::Deprovision {
                tenant_id: tenant.to_string(),
                command,
            })
            .await,
    ))
}

async fn event(
    State(control): State<Control>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CommandReceipt>, ApiError> {
    let hint: EventHint = control.verified(&headers, &body).await?;
    let tenant = TenantId::parse(&hint.tenant_id).map_err(|_| {
        ApiError::new(ProblemCode::InvalidTenantId).localized_param(
            "source",
            "이벤트의 tenant_id",
            "the event's tenant_id",
        )
    })?;
    if let Some(entitlements) = &control.entitlements {
        // Refresh now; the caller's answer does not wait on the market.
        let entitlements = entitlements.clone();
        tokio::spawn(async move {
            if let Err(e) = entitlements.refresh(&tenant).await {
                tracing::warn!(tenant = %tenant, error = %e, "refreshing an entitlement on a hint failed");
            }
        });
    }
    Ok(receipt(
        "",
        AckStatus::Applied,
        format!("revision {}", hint.revision),
    ))
}
