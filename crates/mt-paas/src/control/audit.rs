//! [`AuditLogger`]: security events to the market's `/audit/alerts` (seed §5.3), through the
//! durable outbox. High and critical alerts are written before `report` returns and leave at
//! once; lower ones ride the outbox's normal flow.

use mt_paas_protocol::{AuditAlert, Severity};
use serde_json::Value;
use time::OffsetDateTime;

use crate::outbox::{Item, Kind, Outbox, uuid_v4};

/// The seed's alert type for a token of one tenant used on another (§5.3).
pub const CROSS_TENANT_ACCESS_ATTEMPT: &str = "cross_tenant_access_attempt";
/// A control command whose signature, timestamp or id was refused.
pub const SIGNATURE_FAILURE: &str = "control_signature_failure";
/// A tenant that keeps hitting its rate limit.
pub const RATE_LIMIT_EXCEEDED: &str = "rate_limit_exceeded";

/// Reports security events.
#[derive(Debug, Clone)]
pub struct AuditLogger {
    outbox: Outbox,
    service_id: String,
}

impl AuditLogger {
    /// A logger for `service_id` writing to `outbox`.
    pub fn new(outbox: Outbox, service_id: impl Into<String>) -> Self {
        Self {
            outbox,
            service_id: service_id.into(),
        }
    }

    /// Reports an event; returns its `event_id`.
    pub async fn report(&self, alert_type: &str, severity: Severity, details: Value) -> String {
        let alert = AuditAlert {
            service_id: self.service_id.clone(),
            alert_type: alert_type.to_owned(),
            severity,
            details,
            timestamp: OffsetDateTime::now_utc(),
            event_id: uuid_v4(),
        };
        tracing::warn!(alert_type, severity = ?severity, event_id = %alert.event_id, "security event");
        let item = Item {
            id: format!("audit:{}", alert.event_id),
            kind: Kind::Audit,
            body: serde_json::to_value(&alert).unwrap_or(Value::Null),
        };
        if severity >= Severity::High {
            // Boxed: a database write is a large future, and `report` sits in the request
            // pipeline's futures (auth, rate limit), which would all grow by its size.
            if let Err(e) = Box::pin(self.outbox.push_now(item.clone())).await {
                tracing::error!(error = %e, "writing an alert failed; keeping it in the buffer");
                self.outbox.push(item);
            }
        } else {
            self.outbox.push(item);
        }
        alert.event_id
    }
}
