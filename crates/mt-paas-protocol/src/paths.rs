//! The paths of the protocol. Service → market paths are relative to
//! `marketplace.api_url` (e.g. `http://127.0.0.1:8505/api/v1`); market → service paths are
//! absolute on the service (DESIGN §6.5).

/// Service → market: `POST` a [`Heartbeat`](crate::Heartbeat).
pub fn heartbeat(service_id: &str) -> String {
    format!("/services/{service_id}/heartbeat")
}

/// Service → market: `GET` one tenant's [`Entitlement`](crate::Entitlement) (ETag).
pub fn entitlement(service_id: &str, tenant_id: &str) -> String {
    format!("/services/{service_id}/tenants/{tenant_id}/entitlement")
}

/// Service → market: `GET` every entitlement changed since a revision
/// (`?since_revision=N`).
pub fn entitlements(service_id: &str) -> String {
    format!("/services/{service_id}/entitlements")
}

/// Service → market: `POST` a [`UsageReport`](crate::UsageReport).
pub fn usage(service_id: &str) -> String {
    format!("/services/{service_id}/usage")
}

/// Service → market: `POST` an [`AuditAlert`](crate::AuditAlert) (DESIGN §6.4).
pub const AUDIT_ALERTS: &str = "/audit/alerts";

/// Service → market: `POST` a [`CommandAck`](crate::CommandAck).
pub fn command_ack(command_id: &str) -> String {
    format!("/commands/{command_id}/ack")
}

/// Service → market: `POST` a [`ProvisioningResult`](crate::ProvisioningResult).
pub fn provisioning_result(service_id: &str, tenant_id: &str) -> String {
    format!("/services/{service_id}/tenants/{tenant_id}/provisioning-result")
}

/// Browser → market: the SSO authorization endpoint.
pub const SSO_AUTHORIZE: &str = "/sso/authorize";

/// Service → market: the SSO token endpoint.
pub const SSO_TOKEN: &str = "/sso/token";

/// Service → market: `GET` the [`JwkSet`](crate::JwkSet) the market signs its RS256 tokens
/// with (public, no API key).
pub const JWKS: &str = "/.well-known/jwks.json";

/// Market → service: `POST` a [`BlockCommand`](crate::BlockCommand) (DESIGN §6.5).
pub fn block(service_id: &str, tenant_id: &str) -> String {
    format!("/api/v1/services/{service_id}/tenants/{tenant_id}/block")
}

/// Market → service: `POST` an [`UnblockCommand`](crate::UnblockCommand).
pub fn unblock(service_id: &str, tenant_id: &str) -> String {
    format!("/api/v1/services/{service_id}/tenants/{tenant_id}/unblock")
}

/// Market → service: `POST` a [`ProvisionCommand`](crate::ProvisionCommand).
pub fn provision(service_id: &str) -> String {
    format!("/api/v1/services/{service_id}/tenants")
}

/// Market → service: `DELETE` (a [`DeprovisionCommand`](crate::DeprovisionCommand)).
pub fn deprovision(service_id: &str, tenant_id: &str) -> String {
    format!("/api/v1/services/{service_id}/tenants/{tenant_id}")
}

/// Market → service: `POST` an [`EventHint`](crate::EventHint).
pub fn events(service_id: &str) -> String {
    format!("/api/v1/services/{service_id}/events")
}
