//! The control plane on the service (DESIGN §6.5): the market's signed commands —
//! block, unblock, provision, deprovision — and its event hints.
//!
//! Every command is verified before anything else (the `Signed` extractor): the Standard Webhooks
//! signature with `marketplace.webhook_secret` (several secrets during a rotation), with
//! bounded work whatever the headers say; a timestamp within ±300 s; a `webhook-id` never seen
//! before (kept in the central DB, so a replay is refused after a restart too). A refused
//! command answers 401 and changes nothing; refusals are counted, not each written down.
//!
//! The signature covers the body, not the path: so the body names its target, and a command
//! whose `service_id` is not this service, or whose `tenant_id` is absent or not the path's,
//! answers 403 `command_target_mismatch` and is not applied — pushed or pulled from a
//! heartbeat response alike (a pulled one is acknowledged `rejected`).

pub(crate) mod audit;
pub(crate) mod heartbeat;
pub(crate) mod kill_switch;
pub(crate) mod metrics;
pub(crate) mod usage;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Request, State},
    routing::{delete, post},
};
use mt_paas_protocol::{
    AckStatus, BlockCommand, Command, CommandReceipt, DeprovisionCommand, EventHint,
    MAX_GRACE_HOURS, ProvisionCommand, ProvisioningResult, ProvisioningStatus, Severity,
    UnblockCommand, paths,
    webhook::{self, Verifier, WebhookError},
};
use serde::de::DeserializeOwned;
use serde_json::json;
use time::OffsetDateTime;

pub use self::{
    audit::{AuditLogger, CROSS_TENANT_ACCESS_ATTEMPT, RATE_LIMIT_EXCEEDED, SIGNATURE_FAILURE},
    heartbeat::HeartbeatService,
    kill_switch::{Access, KillSwitch, SwitchState},
    metrics::Metrics,
    usage::UsageReporter,
};
use crate::{
    config::Config,
    core::{
        background::Background,
        central::{CentralDb, on_pool},
        models::{IsolationMode, TenantId},
    },
    http::{ApiError, ProblemCode},
    integrations::{Entitlements, MarketplaceClient},
    outbox::{Item, Kind, Outbox},
    provisioning::{ProvisionError, Provisioned, Provisioner},
};

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
    pub(crate) outbox: Outbox,
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
        .layer(DefaultBodyLimit::max(webhook::MAX_BODY))
        .with_state(control)
}

fn refused(reason: &str) -> ApiError {
    ApiError::new(ProblemCode::InvalidSignature).localized_param(
        "reason",
        reason.to_owned(),
        reason.to_owned(),
    )
}

/// A market command whose signature, timestamp and id were verified, read from the body as
/// `T`. Its target still has to be checked ([`Control::target`]).
pub(crate) struct Signed<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<Control> for Signed<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, control: &Control) -> Result<Self, ApiError> {
        let source = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        let (id, timestamp, signature) = {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                header(webhook::HEADER_ID),
                header(webhook::HEADER_TIMESTAMP),
                header(webhook::HEADER_SIGNATURE),
            )
        };
        let Some(verifier) = &control.verifier else {
            return Err(refused("this service accepts no pushed commands"));
        };
        // Cheap refusals first: nothing is read or hashed for a message missing its headers
        // or carrying an oversized signature header.
        let checked = if id.is_empty() || timestamp.is_empty() || signature.trim().is_empty() {
            Err(WebhookError::MissingHeader(webhook::HEADER_SIGNATURE))
        } else if signature.len() > webhook::MAX_SIGNATURE_HEADER {
            Err(WebhookError::TooManySignatures)
        } else {
            let body = Bytes::from_request(request, control)
                .await
                .map_err(|_| ApiError::new(ProblemCode::PayloadTooLarge))?;
            let now = OffsetDateTime::now_utc().unix_timestamp();
            verifier
                .verify(&id, &timestamp, &signature, &body, now)
                .map(|()| body)
        };
        let body = match checked {
            Ok(body) => body,
            Err(e) => {
                let reason = match e {
                    WebhookError::OutsideTolerance { .. } => "timestamp outside ±300 s",
                    WebhookError::NoMatchingSignature => "signature mismatch",
                    WebhookError::MissingHeader(_) => "missing webhook headers",
                    WebhookError::TooManySignatures | WebhookError::BodyTooLarge => {
                        "oversized webhook"
                    }
                    _ => "malformed webhook headers",
                };
                tracing::debug!(error = %e, source = %source, "a control command was refused");
                control
                    .audit
                    .refused(
                        audit::SIGNATURE_FAILURE,
                        Severity::Medium,
                        &format!("{source} {reason}"),
                        || json!({ "reason": reason, "source": source }),
                    )
                    .await;
                return Err(refused(reason));
            }
        };
        let first_sight = on_pool!(&control.central, pool => {
            sqlx::query("INSERT INTO seen_webhooks (id, received_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(&id)
                .bind(OffsetDateTime::now_utc())
                .execute(pool)
                .await
                .map(|r| r.rows_affected() > 0)
        })
        .map_err(ApiError::central)?;
        if !first_sight {
            tracing::debug!(webhook_id = %id, "a replayed control command was refused");
            control
                .audit
                .refused(
                    audit::SIGNATURE_FAILURE,
                    Severity::High,
                    &format!("replay {id}"),
                    || json!({ "reason": "replayed webhook-id", "webhook_id": id, "source": source }),
                )
                .await;
            return Err(refused("webhook-id already used"));
        }
        serde_json::from_slice(&body).map(Signed).map_err(|e| {
            ApiError::new(ProblemCode::UnprocessableEntity).member("reason", e.to_string())
        })
    }
}

/// Why a command's signed target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mismatch {
    /// The body names no `service_id`, or no `tenant_id` (a market on the old protocol).
    Absent,
    /// `service_id` is another service's.
    Service,
    /// `tenant_id` is not the path's, or not a tenant id.
    Tenant,
}

impl Mismatch {
    fn detail(self) -> (&'static str, &'static str) {
        match self {
            Self::Absent => (
                "명령 본문에 서명된 대상(service_id, tenant_id)이 없습니다.",
                "the command's body names no signed target (service_id, tenant_id).",
            ),
            Self::Service => (
                "명령이 다른 서비스를 대상으로 서명되었습니다.",
                "the command is signed for another service.",
            ),
            Self::Tenant => (
                "명령이 경로와 다른 테넌트를 대상으로 서명되었습니다.",
                "the command is signed for another tenant than the path's.",
            ),
        }
    }

    fn problem(self) -> ApiError {
        let (ko, en) = self.detail();
        ApiError::new(ProblemCode::CommandTargetMismatch).localized_param("reason", ko, en)
    }
}

impl Control {
    /// The tenant a command may act on: its signed `tenant_id`, when its signed `service_id`
    /// is this service and (pushed) its path names the same tenant.
    fn target(&self, command: &Command, path: Option<&str>) -> Result<TenantId, Mismatch> {
        let (service, tenant) = (command.service_id(), command.tenant_id());
        if service.is_empty() || tenant.is_empty() {
            return Err(Mismatch::Absent);
        }
        if service != self.config.service.id {
            return Err(Mismatch::Service);
        }
        let tenant = TenantId::parse(tenant).map_err(|_| Mismatch::Tenant)?;
        match path {
            Some(path) if path != tenant.as_str() => Err(Mismatch::Tenant),
            _ => Ok(tenant),
        }
    }

    /// Reports a provisioning outcome to the market through the outbox (written before this
    /// returns: a restart loses none; redelivered until the market has it, which dedupes by
    /// command id), then refreshes the tenant's entitlement so the service sees its new state.
    async fn report(&self, tenant: TenantId, result: ProvisioningResult) {
        if self.client.is_some() {
            let item = Item {
                id: format!("provisioning:{}:{tenant}", result.command_id),
                kind: Kind::Provisioning,
                body: json!({ "tenant_id": tenant.as_str(), "result": result }),
            };
            if let Err(e) = self.outbox.push_now(item.clone()).await {
                tracing::error!(tenant = %tenant, error = %e, "writing a provisioning result failed; keeping it in the buffer");
                self.outbox.push_wait(item).await;
            }
        }
        if let Some(entitlements) = self.entitlements.clone() {
            tokio::spawn(async move {
                if let Err(e) = entitlements.refresh(&tenant).await {
                    tracing::warn!(tenant = %tenant, error = %e, "refreshing an entitlement after provisioning failed");
                }
            });
        }
    }

    /// Prunes seen ids every ten minutes while the service runs.
    pub(crate) fn spawn_pruning(&self, background: &Background) {
        let this = self.clone();
        let bg = background.clone();
        background.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tokio::select! {
                    () = bg.stopping() => return,
                    _ = tick.tick() => {}
                }
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
        self.apply_at(command, None).await
    }

    /// [`apply`](Self::apply) for a command pushed to the path of tenant `path` (if any).
    async fn apply_at(&self, command: &Command, path: Option<&str>) -> CommandReceipt {
        let answer = |status, detail: String| CommandReceipt {
            command_id: command.command_id().to_owned(),
            status,
            detail,
        };
        let tenant = match self.target(command, path) {
            Ok(tenant) => tenant,
            Err(mismatch) => {
                tracing::warn!(
                    command = command.command_id(),
                    service = command.service_id(),
                    tenant = command.tenant_id(),
                    "a command for another target was not applied"
                );
                return answer(AckStatus::Rejected, mismatch.detail().1.to_owned());
            }
        };
        let (status, detail) = match command {
            Command::Block(command) if command.grace_period_hours > MAX_GRACE_HOURS => (
                AckStatus::Failed,
                format!("grace_period_hours: at most {MAX_GRACE_HOURS}"),
            ),
            Command::Block(command) => match self.kill_switch.block(&tenant, command).await {
                Ok(status) => {
                    tracing::info!(tenant = %tenant, sequence = command.sequence, status = ?status, "block command");
                    (status, String::new())
                }
                Err(e) => (AckStatus::Failed, format!("central DB: {e}")),
            },
            Command::Unblock(command) => match self.kill_switch.unblock(&tenant, command).await {
                Ok(status) => {
                    tracing::info!(tenant = %tenant, sequence = command.sequence, status = ?status, "unblock command");
                    (status, String::new())
                }
                Err(e) => (AckStatus::Failed, format!("central DB: {e}")),
            },
            Command::Provision(command) => self.provision(tenant, command).await,
            Command::Deprovision(command) => self.deprovision(tenant, command).await,
        };
        answer(status, detail)
    }

    async fn provision(&self, tenant: TenantId, command: &ProvisionCommand) -> (AckStatus, String) {
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
        )
        .await;
        (status, detail)
    }

    async fn deprovision(
        &self,
        tenant: TenantId,
        command: &DeprovisionCommand,
    ) -> (AckStatus, String) {
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
        )
        .await;
        (status, detail)
    }
}

/// Applies a pushed command whose signed target must be `path` (the path's tenant, if any):
/// 403 when it is not, and nothing is applied.
async fn pushed(
    control: &Control,
    command: Command,
    path: Option<&str>,
) -> Result<Json<CommandReceipt>, ApiError> {
    if let Some(path) = path
        && TenantId::parse(path).is_err()
    {
        return Err(ApiError::new(ProblemCode::InvalidTenantId)
            .localized_param("source", "경로", "the path"));
    }
    control.target(&command, path).map_err(|mismatch| {
        tracing::warn!(
            command = command.command_id(),
            "a pushed command for another target was refused"
        );
        mismatch.problem()
    })?;
    Ok(Json(control.apply_at(&command, path).await))
}

async fn block(
    State(control): State<Control>,
    Path(tenant): Path<String>,
    Signed(command): Signed<BlockCommand>,
) -> Result<Json<CommandReceipt>, ApiError> {
    if command.grace_period_hours > MAX_GRACE_HOURS {
        return Err(ApiError::new(ProblemCode::UnprocessableEntity)
            .member("field", "grace_period_hours")
            .member("reason", format!("at most {MAX_GRACE_HOURS}")));
    }
    pushed(&control, Command::Block(command), Some(&tenant)).await
}

async fn unblock(
    State(control): State<Control>,
    Path(tenant): Path<String>,
    Signed(command): Signed<UnblockCommand>,
) -> Result<Json<CommandReceipt>, ApiError> {
    pushed(&control, Command::Unblock(command), Some(&tenant)).await
}

async fn provision(
    State(control): State<Control>,
    Signed(command): Signed<ProvisionCommand>,
) -> Result<Json<CommandReceipt>, ApiError> {
    if let Some(mode) = command.isolation.as_deref().filter(|m| !m.is_empty())
        && mode.parse::<IsolationMode>().is_err()
    {
        return Err(ApiError::new(ProblemCode::UnprocessableEntity).member("field", "isolation"));
    }
    pushed(&control, Command::Provision(command), None).await
}

async fn deprovision(
    State(control): State<Control>,
    Path(tenant): Path<String>,
    Signed(command): Signed<DeprovisionCommand>,
) -> Result<Json<CommandReceipt>, ApiError> {
    pushed(&control, Command::Deprovision(command), Some(&tenant)).await
}

async fn event(
    State(control): State<Control>,
    Signed(hint): Signed<EventHint>,
) -> Result<Json<CommandReceipt>, ApiError> {
    if hint.service_id.is_empty() || hint.tenant_id.is_empty() {
        return Err(Mismatch::Absent.problem());
    }
    if hint.service_id != control.config.service.id {
        return Err(Mismatch::Service.problem());
    }
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
