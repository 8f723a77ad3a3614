//! Wire types of both directions. Field names follow the seed (DESIGN §6); unknown fields are
//! ignored on reading; enums have an `Unknown` catch-all where a newer peer may add values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// The header carrying a client-chosen key that makes a POST idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

// ---------------------------------------------------------------- service → market

/// A service's periodic status report (DESIGN §6.2), plus what robustness needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    /// The service, e.g. `keli_tutor`.
    pub service_id: String,
    /// Overall health.
    pub status: ServiceStatus,
    /// Tenants served since the last heartbeat.
    pub active_tenants: Vec<String>,
    /// The seed's summary figures over the last minute.
    pub metrics: HeartbeatMetrics,
    /// When the heartbeat was made.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: OffsetDateTime,
    /// The replica that sent it (several replicas share a service id).
    #[serde(default)]
    pub instance_id: String,
    /// Per instance, increasing: a reordered or repeated heartbeat is recognised.
    #[serde(default)]
    pub seq: u64,
    /// Raw counters of the window the metrics were computed over.
    #[serde(default)]
    pub window: WindowCounters,
}

/// A service's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    /// Serving normally.
    Healthy,
    /// Serving with problems (a dependency down, errors high).
    Degraded,
    /// Not serving.
    Unhealthy,
    /// A status this version does not know.
    #[serde(other)]
    Unknown,
}

/// The seed's heartbeat figures.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatMetrics {
    /// Requests in the last minute.
    pub requests_per_minute: u64,
    /// Share of those answered with a 5xx, 0.0–1.0.
    pub error_rate: f64,
    /// Mean latency in milliseconds.
    pub avg_response_time_ms: f64,
}

/// Counters of one heartbeat window, so the market can aggregate replicas exactly.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct WindowCounters {
    /// The window's length in seconds.
    pub window_seconds: u64,
    /// Requests answered.
    pub requests: u64,
    /// Of which 4xx.
    pub status_4xx: u64,
    /// Of which 5xx.
    pub status_5xx: u64,
    /// Sum of latencies, milliseconds.
    pub latency_sum_ms: f64,
    /// Requests per latency bucket: `[upper bound ms, count]`, cumulative.
    pub latency_buckets: Vec<(f64, u64)>,
}

/// The market's answer to a heartbeat: commands waiting for this service (the pull path of
/// the kill switch, for services the market cannot reach).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// Whether the heartbeat was stored (false for a repeated or older `seq`).
    pub accepted: bool,
    /// Commands not yet acknowledged, oldest first.
    #[serde(default)]
    pub commands: Vec<Command>,
}

/// What a tenant may do in a service: its subscription, features, limits and any block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Entitlement {
    /// The service.
    pub service_id: String,
    /// The tenant.
    pub tenant_id: String,
    /// The tenant's display name.
    #[serde(default)]
    pub tenant_name: String,
    /// Increases with every change of this entitlement (and orders bulk syncs).
    pub revision: i64,
    /// The subscription.
    pub subscription: SubscriptionInfo,
    /// Feature flags of the plan.
    #[serde(default)]
    pub features: BTreeMap<String, bool>,
    /// Limits of the plan.
    #[serde(default)]
    pub limits: Limits,
    /// A kill-switch block in force or scheduled.
    #[serde(default)]
    pub block: Option<Block>,
    /// For each feature the plan lacks, the names of the plans that include it (what a
    /// refusal tells the user). Absent from older markets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub available_on: BTreeMap<String, Vec<String>>,
}

/// A subscription as the service sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionInfo {
    /// Its state.
    pub state: SubscriptionState,
    /// The plan's id, e.g. `premium`.
    pub plan: String,
    /// The plan's display name, e.g. `Premium` (empty from older markets).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plan_name: String,
    /// When it ends; `None` for open-ended.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// The life of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    /// Ordered, not yet activated (provisioning).
    PendingActivation,
    /// In force.
    Active,
    /// Suspended by the market (unpaid, abuse); may be reinstated.
    Suspended,
    /// Ended.
    Cancelled,
    /// A state this version does not know; treated as no access.
    #[serde(other)]
    Unknown,
}

/// A plan's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    /// Requests per minute per tenant; `None` for the service's default.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
}

/// A kill-switch block, as carried in an entitlement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Block {
    /// Why (e.g. `subscription_expired`).
    pub reason: String,
    /// The message shown to the tenant's users, as given.
    pub message: String,
    /// When the block takes effect.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub block_at: OffsetDateTime,
    /// Hours of grace after `block_at`.
    #[serde(default)]
    pub grace_period_hours: u64,
    /// The command that set it.
    #[serde(default)]
    pub command_id: String,
    /// Its per-tenant sequence number.
    #[serde(default)]
    pub sequence: u64,
}

/// The longest grace a block may have: ten years (a market sends at most one).
pub const MAX_GRACE_HOURS: u64 = 10 * 366 * 24;

impl Block {
    /// When requests start being refused: `block_at` plus the grace (at most
    /// [`MAX_GRACE_HOURS`]; never an overflow, whatever the field holds).
    pub fn refuses_from(&self) -> OffsetDateTime {
        after_hours(self.block_at, self.grace_period_hours)
    }
}

/// `at` plus `hours` (at most [`MAX_GRACE_HOURS`]), saturating at the end of time.
pub fn after_hours(at: OffsetDateTime, hours: u64) -> OffsetDateTime {
    let seconds = hours.min(MAX_GRACE_HOURS).saturating_mul(3600);
    at.saturating_add(time::Duration::seconds(
        i64::try_from(seconds).unwrap_or(i64::MAX),
    ))
}

/// Entitlements changed since a revision (bulk sync at start).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct EntitlementPage {
    /// The newest revision included; ask for `since_revision` = this next time.
    pub revision: i64,
    /// The entitlements, by revision.
    pub entitlements: Vec<Entitlement>,
}

/// Usage of one period, per tenant and dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// The service.
    pub service_id: String,
    /// The replica reporting.
    #[serde(default)]
    pub instance_id: String,
    /// The quantities.
    pub records: Vec<UsageRecord>,
}

/// One quantity. `(tenant_id, dimension, period_start, instance)` identifies it: a resend is a
/// duplicate, never a double count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageRecord {
    /// The tenant.
    pub tenant_id: String,
    /// What was counted: `requests`, `errors`, `active_users`.
    pub dimension: String,
    /// The period's start.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub period_start: OffsetDateTime,
    /// The period's length in seconds.
    pub period_seconds: u64,
    /// The quantity.
    pub quantity: u64,
}

/// The market's answer to a usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct UsageReceipt {
    /// Records stored.
    pub accepted: u64,
    /// Records already stored before (ignored).
    pub duplicates: u64,
}

/// A security alert (DESIGN §6.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditAlert {
    /// The service.
    pub service_id: String,
    /// What happened, e.g. `cross_tenant_access_attempt`.
    pub alert_type: String,
    /// How bad.
    pub severity: Severity,
    /// Free-form details (source and target tenant, endpoint, IP...).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub details: Value,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: OffsetDateTime,
    /// Unique per event: a resend is recognised.
    #[serde(default)]
    pub event_id: String,
}

/// Severity of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Low,
    /// Worth a look.
    Medium,
    /// Act soon (sent at once).
    High,
    /// Act now (sent at once).
    Critical,
}

/// A service's answer to a command, sent to `/commands/{command_id}/ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CommandAck {
    /// What became of it.
    pub status: AckStatus,
    /// Details (the error of a failed command).
    #[serde(default)]
    pub detail: String,
    /// The replica acknowledging.
    #[serde(default)]
    pub instance_id: String,
}

/// What became of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Applied (or already applied: commands are idempotent).
    Applied,
    /// A newer command for the tenant was applied first; this one changes nothing.
    Superseded,
    /// It could not be applied.
    Failed,
    /// Its signed target (`service_id`, `tenant_id`) is absent or is not the receiver's: it
    /// was not applied, and resending it will not change that.
    Rejected,
}

/// The outcome of a provision or deprovision command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProvisioningResult {
    /// The command.
    pub command_id: String,
    /// `provisioned`, `deprovisioned` or `failed`.
    pub status: ProvisioningStatus,
    /// Details (the error of a failure).
    #[serde(default)]
    pub detail: String,
}

/// Outcome of provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProvisioningStatus {
    /// The tenant is ready.
    Provisioned,
    /// The tenant is gone (archived).
    Deprovisioned,
    /// It failed.
    Failed,
}

// ---------------------------------------------------------------- market → service
//
// A signature covers `webhook-id`, `webhook-timestamp` and the body, not the path: so every
// command body names its target — `service_id`, and `tenant_id` for a tenant — and a receiver
// refuses a command whose signed target is absent or is not the path's or its own. A captured
// command cannot be re-aimed at another tenant or another service that shares the secret.

/// Block a tenant (DESIGN §6.5), plus its signed target, `command_id` and a per-tenant
/// `sequence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockCommand {
    /// The service the command is for (signed target).
    #[serde(default)]
    pub service_id: String,
    /// The tenant to block (signed target; must be the path's).
    #[serde(default)]
    pub tenant_id: String,
    /// Why, e.g. `subscription_expired`.
    pub reason: String,
    /// When the block takes effect (now or later).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub block_at: OffsetDateTime,
    /// Hours of grace after `block_at` during which requests still pass, with a notice.
    #[serde(default)]
    pub grace_period_hours: u64,
    /// The message answered to the tenant's requests, as given.
    pub message: String,
    /// Unique per command.
    #[serde(default)]
    pub command_id: String,
    /// Per tenant, increasing: an older command arriving late is superseded.
    #[serde(default)]
    pub sequence: u64,
}

/// Lift a tenant's block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UnblockCommand {
    /// The service the command is for (signed target).
    #[serde(default)]
    pub service_id: String,
    /// The tenant to unblock (signed target; must be the path's).
    #[serde(default)]
    pub tenant_id: String,
    /// Unique per command.
    pub command_id: String,
    /// Per tenant, increasing (shared with block commands).
    pub sequence: u64,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// Create a tenant in the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProvisionCommand {
    /// The service the command is for (signed target).
    #[serde(default)]
    pub service_id: String,
    /// Unique per command.
    pub command_id: String,
    /// The new tenant's id (signed target).
    pub tenant_id: String,
    /// Its display name.
    pub display_name: String,
    /// Its plan.
    #[serde(default)]
    pub plan: String,
    /// An isolation mode for this tenant (`DATABASE_PER_TENANT`, ...); the service's
    /// default when absent.
    #[serde(default)]
    pub isolation: Option<String>,
}

/// Remove a tenant from the service (its data archived unless `archive` is false).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeprovisionCommand {
    /// The service the command is for (signed target).
    #[serde(default)]
    pub service_id: String,
    /// The tenant to remove (signed target; must be the path's).
    #[serde(default)]
    pub tenant_id: String,
    /// Unique per command.
    pub command_id: String,
    /// Whether to archive first.
    #[serde(default = "yes")]
    pub archive: bool,
}

fn yes() -> bool {
    true
}

/// A thin event: "tenant X changed, revision N" → the service refetches the entitlement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventHint {
    /// The service the event is for (signed target).
    #[serde(default)]
    pub service_id: String,
    /// The tenant whose entitlement changed.
    pub tenant_id: String,
    /// Its new revision.
    pub revision: i64,
}

/// A command as queued for the pull path (heartbeat responses): its `kind` and the
/// command's own fields, its signed target among them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// [`BlockCommand`].
    Block(BlockCommand),
    /// [`UnblockCommand`].
    Unblock(UnblockCommand),
    /// [`ProvisionCommand`].
    Provision(ProvisionCommand),
    /// [`DeprovisionCommand`].
    Deprovision(DeprovisionCommand),
}

impl Command {
    /// The command's id.
    pub fn command_id(&self) -> &str {
        match self {
            Self::Block(c) => &c.command_id,
            Self::Unblock(c) => &c.command_id,
            Self::Provision(c) => &c.command_id,
            Self::Deprovision(c) => &c.command_id,
        }
    }

    /// The tenant it concerns (its signed target).
    pub fn tenant_id(&self) -> &str {
        match self {
            Self::Block(c) => &c.tenant_id,
            Self::Unblock(c) => &c.tenant_id,
            Self::Provision(c) => &c.tenant_id,
            Self::Deprovision(c) => &c.tenant_id,
        }
    }

    /// The service it is for (its signed target).
    pub fn service_id(&self) -> &str {
        match self {
            Self::Block(c) => &c.service_id,
            Self::Unblock(c) => &c.service_id,
            Self::Provision(c) => &c.service_id,
            Self::Deprovision(c) => &c.service_id,
        }
    }

    /// Names `service_id` as the command's service when it names none (commands queued
    /// before targets were signed).
    pub fn fill_service(&mut self, service_id: &str) {
        let field = match self {
            Self::Block(c) => &mut c.service_id,
            Self::Unblock(c) => &mut c.service_id,
            Self::Provision(c) => &mut c.service_id,
            Self::Deprovision(c) => &mut c.service_id,
        };
        if field.is_empty() {
            service_id.clone_into(field);
        }
    }
}

/// A command's answer from the service (push path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CommandReceipt {
    /// The command.
    pub command_id: String,
    /// What became of it.
    pub status: AckStatus,
    /// Details.
    #[serde(default)]
    pub detail: String,
}

// ---------------------------------------------------------------- SSO

/// The SSO token request (authorization code with PKCE), sent by the service. `Debug`
/// leaves the code and the verifier out.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SsoTokenRequest {
    /// `authorization_code`.
    pub grant_type: String,
    /// The code from the redirect.
    pub code: String,
    /// The redirect URI the code was issued for.
    pub redirect_uri: String,
    /// The PKCE verifier (RFC 7636).
    pub code_verifier: String,
}

impl std::fmt::Debug for SsoTokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoTokenRequest")
            .field("grant_type", &self.grant_type)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// Who signed in, as the market vouches. `Debug` leaves the `id_token` out.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SsoTokenResponse {
    /// The user's id at the market.
    pub sub: String,
    /// The tenant the user belongs to.
    pub tenant_id: String,
    /// The user's name.
    #[serde(default)]
    pub name: String,
    /// The user's e-mail.
    #[serde(default)]
    pub email: String,
    /// The same, as an RS256 token signed by the market (`aud` = the service), which
    /// services with `auth.jwt.algorithm: RS256` accept as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for SsoTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoTokenResponse")
            .field("sub", &self.sub)
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// The keys the market signs its RS256 tokens with (RFC 7517 JWK set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JwkSet {
    /// The keys in use; a retired key is no longer listed.
    pub keys: Vec<Jwk>,
}

/// One RSA public key (RFC 7517, RFC 7518 §6.3.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    /// `RSA`.
    pub kty: String,
    /// The key id (its RFC 7638 thumbprint), named by the `kid` header of a token.
    pub kid: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub usage: String,
    /// `RS256`.
    pub alg: String,
    /// The modulus, base64url big-endian.
    pub n: String,
    /// The public exponent, base64url big-endian.
    pub e: String,
}

// ---------------------------------------------------------------- errors

/// An error body (RFC 9457), as both sides answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// A short summary.
    #[serde(default)]
    pub title: String,
    /// The HTTP status.
    #[serde(default)]
    pub status: u16,
    /// A stable code to branch on.
    #[serde(default)]
    pub code: String,
    /// What happened.
    #[serde(default)]
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_seed_heartbeat_reads() {
        let seed = json!({
            "service_id": "keli_tutor",
            "status": "healthy",
            "active_tenants": ["hallym", "korea", "snu"],
            "metrics": {"requests_per_minute": 150, "error_rate": 0.01, "avg_response_time_ms": 250},
            "timestamp": "2026-01-03T12:00:00Z"
        });
        let hb: Heartbeat = serde_json::from_value(seed).unwrap();
        assert_eq!(hb.active_tenants.len(), 3);
        assert_eq!(hb.metrics.requests_per_minute, 150);
        assert_eq!(hb.seq, 0);
    }

    #[test]
    fn the_seed_block_and_alert_read() {
        let block: BlockCommand = serde_json::from_value(json!({
            "reason": "subscription_expired",
            "block_at": "2026-01-03T12:00:00Z",
            "grace_period_hours": 24,
            "message": "구독이 만료되었습니다. 갱신해주세요.",
            "something_new": true
        }))
        .unwrap();
        assert_eq!(block.grace_period_hours, 24);
        let alert: AuditAlert = serde_json::from_value(json!({
            "service_id": "keli_tutor",
            "alert_type": "cross_tenant_access_attempt",
            "severity": "high",
            "details": {"source_tenant": "hallym", "target_tenant": "korea",
                        "endpoint": "/api/courses/123", "ip_address": "123.45.67.89"},
            "timestamp": "2026-01-03T12:00:00Z"
        }))
        .unwrap();
        assert_eq!(alert.severity, Severity::High);
    }

    #[test]
    fn commands_round_trip_with_their_kind() {
        let command = Command::Unblock(UnblockCommand {
            service_id: "keli_tutor".into(),
            tenant_id: "korea".into(),
            command_id: "cmd_1".into(),
            sequence: 3,
            reason: String::new(),
        });
        let v = serde_json::to_value(&command).unwrap();
        assert_eq!(v["kind"], "unblock");
        assert_eq!(v["tenant_id"], "korea");
        assert_eq!(v["service_id"], "keli_tutor");
        assert_eq!(serde_json::from_value::<Command>(v).unwrap(), command);
    }

    #[test]
    fn wire_types_never_print_their_secrets() {
        let request = SsoTokenRequest {
            grant_type: "authorization_code".into(),
            code: "the-code-SECRET".into(),
            redirect_uri: "https://s/cb".into(),
            code_verifier: "the-verifier-SECRET".into(),
        };
        let response = SsoTokenResponse {
            sub: "alice".into(),
            tenant_id: "hallym".into(),
            name: String::new(),
            email: String::new(),
            id_token: Some("eyJ.token.SECRET".into()),
        };
        for printed in [format!("{request:?}"), format!("{response:?}")] {
            assert!(!printed.contains("SECRET"), "{printed}");
        }
    }

    #[test]
    fn a_grace_of_any_size_never_overflows() {
        let at = OffsetDateTime::UNIX_EPOCH;
        for hours in [
            0,
            24,
            MAX_GRACE_HOURS,
            MAX_GRACE_HOURS + 1,
            1 << 60,
            u64::MAX,
        ] {
            let until = after_hours(at, hours);
            assert!(until >= at);
            assert!(until <= after_hours(at, MAX_GRACE_HOURS), "{hours}");
        }
        let far = OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap(); // 9999-12-31
        assert!(after_hours(far, u64::MAX) >= far);
    }

    #[test]
    fn unknown_states_are_tolerated() {
        let s: SubscriptionState = serde_json::from_value(json!("paused")).unwrap();
        assert_eq!(s, SubscriptionState::Unknown);
    }
}
