//! Per-tenant usage: requests, errors (5xx) and distinct users per period, reported to the
//! market every `logging.usage_report.interval_minutes` through the outbox. Each record is
//! keyed by (tenant, dimension, period start, instance): a resend is a duplicate at the market,
//! never a double count.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use mt_paas_protocol::UsageRecord;
use serde_json::json;
use time::OffsetDateTime;

use crate::{
    core::{background::Background, models::TenantId},
    outbox::{Item, Kind, Outbox},
};

/// Most distinct users counted per tenant and period.
const MAX_USERS: usize = 100_000;

#[derive(Debug, Default)]
struct TenantUsage {
    requests: AtomicU64,
    errors: AtomicU64,
    users: Mutex<HashSet<String>>,
    seen: AtomicBool,
}

/// The usage counters of every tenant.
#[derive(Debug, Default)]
pub struct UsageMeter {
    tenants: RwLock<HashMap<TenantId, Arc<TenantUsage>>>,
}

/// One tenant's usage over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPeriod {
    /// The tenant.
    pub tenant: TenantId,
    /// Requests.
    pub requests: u64,
    /// 5xx answers.
    pub errors: u64,
    /// Distinct signed-in users.
    pub active_users: u64,
}

impl UsageMeter {
    fn handle(&self, id: &TenantId) -> Arc<TenantUsage> {
        if let Ok(map) = self.tenants.read()
            && let Some(usage) = map.get(id)
        {
            return usage.clone();
        }
        let mut map = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        map.entry(id.clone()).or_default().clone()
    }

    /// Counts one answered request of `tenant` (by `user`).
    pub fn record(&self, tenant: &TenantId, user: Option<&str>, server_error: bool) {
        let usage = self.handle(tenant);
        usage.requests.fetch_add(1, Ordering::Relaxed);
        usage.seen.store(true, Ordering::Relaxed);
        if server_error {
            usage.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(user) = user
            && let Ok(mut users) = usage.users.lock()
            && users.len() < MAX_USERS
            && !users.contains(user)
        {
            users.insert(user.to_owned());
        }
    }

    /// Takes the counts since the last call (they start again from zero); tenants without
    /// requests are dropped from memory.
    pub fn take_period(&self) -> Vec<TenantPeriod> {
        let mut map = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        map.retain(|tenant, usage| {
            let requests = usage.requests.swap(0, Ordering::Relaxed);
            let errors = usage.errors.swap(0, Ordering::Relaxed);
            let active_users = usage
                .users
                .lock()
                .map(|mut u| {
                    let n = u.len();
                    u.clear();
                    n
                })
                .unwrap_or_default();
            if requests == 0 && errors == 0 && active_users == 0 {
                return false;
            }
            out.push(TenantPeriod {
                tenant: tenant.clone(),
                requests,
                errors,
                active_users: u64::try_from(active_users).unwrap_or(u64::MAX),
            });
            true
        });
        out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        out
    }

    /// Tenants served since the last call (for heartbeats).
    pub fn take_active(&self) -> Vec<TenantId> {
        let map = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<TenantId> = map
            .iter()
            .filter(|(_, u)| u.seen.swap(false, Ordering::Relaxed))
            .map(|(t, _)| t.clone())
            .collect();
        out.sort();
        out
    }

    /// Tenants with counters in memory.
    pub fn tracked(&self) -> usize {
        self.tenants.read().map(|m| m.len()).unwrap_or_default()
    }
}

/// Reports periods to the market through the outbox.
#[derive(Debug, Clone)]
pub struct UsageReporter {
    meter: Arc<UsageMeter>,
    outbox: Outbox,
    instance_id: Arc<str>,
    period: Duration,
}

impl UsageReporter {
    /// A reporter of `meter`'s periods of `period`, as replica `instance_id`.
    pub fn new(
        meter: Arc<UsageMeter>,
        outbox: Outbox,
        instance_id: Arc<str>,
        period: Duration,
    ) -> Self {
        Self {
            meter,
            outbox,
            instance_id,
            period,
        }
    }

    /// The counters it reports.
    pub fn meter(&self) -> &UsageMeter {
        &self.meter
    }

    /// The start of the period `at` falls in.
    pub fn period_start(&self, at: OffsetDateTime) -> OffsetDateTime {
        let seconds = i64::try_from(self.period.as_secs().max(1)).unwrap_or(i64::MAX);
        let start = at.unix_timestamp().div_euclid(seconds) * seconds;
        OffsetDateTime::from_unix_timestamp(start).unwrap_or(at)
    }

    /// Puts what the meter counted into the outbox as the period starting `period_start`
    /// (waiting for room in its buffer). Returns how many records.
    pub async fn report(&self, period_start: OffsetDateTime) -> usize {
        let mut records = 0;
        for period in self.meter.take_period() {
            for (dimension, quantity) in [
                ("requests", period.requests),
                ("errors", period.errors),
                ("active_users", period.active_users),
            ] {
                let record = UsageRecord {
                    tenant_id: period.tenant.to_string(),
                    dimension: dimension.to_owned(),
                    period_start,
                    period_seconds: self.period.as_secs(),
                    quantity,
                };
                self.outbox
                    .push_wait(Item {
                        id: format!(
                            "usage:{}:{dimension}:{}:{}",
                            period.tenant,
                            period_start.unix_timestamp(),
                            self.instance_id
                        ),
                        kind: Kind::Usage,
                        body: json!({ "instance_id": &*self.instance_id, "record": record }),
                    })
                    .await;
                records += 1;
            }
        }
        records
    }

    /// Reports at every period boundary until the service stops (the partial period is
    /// reported by the shutdown).
    pub fn spawn(&self, background: &Background) {
        let this = self.clone();
        let bg = background.clone();
        background.spawn(async move {
            loop {
                let now = OffsetDateTime::now_utc();
                let next = this.period_start(now) + this.period;
                let wait: Duration = (next - now).try_into().unwrap_or(Duration::from_secs(1));
                if !bg.sleep(wait).await {
                    return;
                }
                // The counts belong to the period that just ended.
                let ended = this.period_start(OffsetDateTime::now_utc() - Duration::from_secs(1));
                let n = this.report(ended).await;
                tracing::debug!(records = n, "usage reported");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_count_and_reset() {
        let meter = UsageMeter::default();
        let t: TenantId = "hallym".parse().unwrap();
        meter.record(&t, Some("alice"), false);
        meter.record(&t, Some("alice"), true);
        meter.record(&t, Some("bob"), false);
        assert_eq!(meter.take_active(), vec![t.clone()]);
        assert!(meter.take_active().is_empty());
        let period = meter.take_period();
        assert_eq!(
            period,
            vec![TenantPeriod {
                tenant: t.clone(),
                requests: 3,
                errors: 1,
                active_users: 2
            }]
        );
        assert!(meter.take_period().is_empty());
        assert_eq!(meter.tracked(), 0, "idle tenants leave memory");
    }
}
