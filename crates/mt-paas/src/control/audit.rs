//! [`AuditLogger`]: security events to the market's `/audit/alerts` (DESIGN §7.3), through the
//! durable outbox. High and critical alerts are written before `report` returns and leave at
//! once; lower ones ride the outbox's normal flow.
//!
//! Refusals a caller can repeat at will — a bad signature, a replayed command, a token of one
//! tenant used on another — go through [`AuditLogger::refused`]: they are counted per kind
//! and key (the source address, the tenants involved) over a one-minute window. The first of
//! a window is reported at once; the others become one alert with their `count` when the
//! window ends. At most [`MAX_KEYS`] keys are told apart per window (the rest are counted
//! under `"other"`), so a flood, from however many addresses, writes a bounded number of
//! alerts a minute and never one per request.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use mt_paas_protocol::{AuditAlert, Severity};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::{
    core::background::Background,
    outbox::{Item, Kind, Outbox},
};

/// The seed's alert type for a token of one tenant used on another (DESIGN §7.3).
pub const CROSS_TENANT_ACCESS_ATTEMPT: &str = "cross_tenant_access_attempt";
/// A control command whose signature, timestamp, id or target was refused.
pub const SIGNATURE_FAILURE: &str = "control_signature_failure";
/// A tenant that keeps hitting its rate limit.
pub const RATE_LIMIT_EXCEEDED: &str = "rate_limit_exceeded";

/// How long refusals are counted before their summary is reported.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Keys told apart in one window.
pub(crate) const MAX_KEYS: usize = 32;

/// Reports security events.
#[derive(Debug, Clone)]
pub struct AuditLogger {
    outbox: Outbox,
    service_id: String,
    window: Arc<Mutex<Window>>,
    background: Background,
}

/// Refusals of the current window.
#[derive(Debug, Default)]
struct Window {
    counts: HashMap<(&'static str, String), Counted>,
    flusher: bool,
}

#[derive(Debug)]
struct Counted {
    severity: Severity,
    details: Value,
    /// Seen after the first (which was reported at once).
    repeats: u64,
}

impl AuditLogger {
    /// A logger for `service_id` writing to `outbox`; the window's flusher runs on
    /// `background` (the shutdown flushes the last window itself).
    pub fn new(outbox: Outbox, service_id: impl Into<String>, background: &Background) -> Self {
        Self {
            outbox,
            service_id: service_id.into(),
            window: Arc::default(),
            background: background.clone(),
        }
    }

    /// Reports an event; returns its `event_id`, or `None` when the system's RNG gave no id
    /// (the alert is then in the process log only, never sent under a guessable id).
    pub async fn report(
        &self,
        alert_type: &str,
        severity: Severity,
        details: Value,
    ) -> Option<String> {
        let event_id = match crate::random::uuid() {
            Ok(id) => id.to_string(),
            Err(e) => {
                tracing::error!(alert_type, severity = ?severity, %details, error = %e, "security event not sent: no event id");
                return None;
            }
        };
        let alert = AuditAlert {
            service_id: self.service_id.clone(),
            alert_type: alert_type.to_owned(),
            severity,
            details,
            timestamp: OffsetDateTime::now_utc(),
            event_id,
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
                Box::pin(self.outbox.push_wait(item)).await;
            }
        } else {
            Box::pin(self.outbox.push_wait(item)).await;
        }
        Some(alert.event_id)
    }

    /// Counts a refusal of `alert_type` for `key` (see the module docs): the first of the
    /// window is reported now with `details()`, the rest once, with their count, when the
    /// window ends. Costs a map update otherwise.
    pub async fn refused(
        &self,
        alert_type: &'static str,
        severity: Severity,
        key: &str,
        details: impl FnOnce() -> Value,
    ) {
        let first = {
            let mut window = self.lock();
            if !window.flusher {
                window.flusher = true;
                self.spawn_flusher();
            }
            let distinct = window.counts.len();
            let key = if distinct >= MAX_KEYS
                && !window.counts.contains_key(&(alert_type, key.to_owned()))
            {
                "other".to_owned()
            } else {
                key.to_owned()
            };
            match window.counts.get_mut(&(alert_type, key.clone())) {
                Some(counted) => {
                    counted.repeats += 1;
                    None
                }
                None => {
                    let details = details();
                    window.counts.insert(
                        (alert_type, key.clone()),
                        Counted {
                            severity,
                            details: details.clone(),
                            repeats: 0,
                        },
                    );
                    Some((key, details))
                }
            }
        };
        if let Some((key, mut details)) = first {
            if let Value::Object(map) = &mut details {
                map.insert("key".to_owned(), Value::String(key));
                map.insert("count".to_owned(), json!(1));
            }
            self.report(alert_type, severity, details).await;
        }
    }

    /// Reports the repeats counted in the window that just ended, one alert per key.
    pub async fn flush_refusals(&self) {
        let counts = std::mem::take(&mut self.lock().counts);
        for ((alert_type, key), counted) in counts {
            if counted.repeats == 0 {
                continue;
            }
            let mut details = counted.details;
            if let Value::Object(map) = &mut details {
                map.insert("key".to_owned(), Value::String(key));
                map.insert("count".to_owned(), json!(counted.repeats));
                map.insert("window_seconds".to_owned(), json!(WINDOW.as_secs()));
            }
            // The summary is never urgent: its first occurrence was reported at once.
            self.report(alert_type, counted.severity.min(Severity::Medium), details)
                .await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // Every mutation is one map operation: a poisoned map is still consistent.
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_flusher(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let weak: Weak<Mutex<Window>> = Arc::downgrade(&self.window);
        let (outbox, service_id) = (self.outbox.clone(), self.service_id.clone());
        let bg = self.background.clone();
        self.background.spawn(async move {
            let mut tick = tokio::time::interval(WINDOW);
            tick.tick().await;
            loop {
                tokio::select! {
                    () = bg.stopping() => return,
                    _ = tick.tick() => {}
                }
                let Some(window) = weak.upgrade() else { return };
                let logger = AuditLogger {
                    outbox: outbox.clone(),
                    service_id: service_id.clone(),
                    window,
                    background: bg.clone(),
                };
                logger.flush_refusals().await;
            }
        });
    }
}
