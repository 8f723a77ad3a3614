//! [`Heartbeat`]: every `marketplace.heartbeat_interval` seconds, the seed's status report
//! (DESIGN §6.2) plus the replica's id, a sequence number and the window's raw counters; the market's
//! answer carries commands waiting for this service (the pull path of the kill switch), which
//! are applied and acknowledged. A market outage is logged and retried at the next beat: the
//! heartbeat resumes by itself, and no request ever waits on it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use mt_paas_protocol::{CommandAck, Heartbeat, HeartbeatMetrics, ServiceStatus, WindowCounters};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use super::{
    Control,
    metrics::{BUCKETS_MS, Metrics, Snapshot},
    usage::UsageMeter,
};
use crate::{
    core::{background::Background, central::CentralDb},
    integrations::MarketplaceClient,
};

/// Sends heartbeats and applies the commands they bring back.
#[derive(Clone)]
pub struct HeartbeatService {
    inner: Arc<Inner>,
}

struct Inner {
    client: MarketplaceClient,
    metrics: Arc<Metrics>,
    usage: Arc<UsageMeter>,
    central: CentralDb,
    control: Control,
    instance_id: Arc<str>,
    interval: Duration,
    seq: AtomicU64,
    last: Mutex<Snapshot>,
}

impl std::fmt::Debug for HeartbeatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatService")
            .field("instance_id", &self.inner.instance_id)
            .field("interval", &self.inner.interval)
            .finish_non_exhaustive()
    }
}

impl HeartbeatService {
    pub(crate) fn new(
        client: MarketplaceClient,
        metrics: Arc<Metrics>,
        usage: Arc<UsageMeter>,
        central: CentralDb,
        control: Control,
        instance_id: Arc<str>,
        interval: Duration,
    ) -> Self {
        let last = metrics.snapshot();
        Self {
            inner: Arc::new(Inner {
                client,
                metrics,
                usage,
                central,
                control,
                instance_id,
                interval,
                seq: AtomicU64::new(0),
                last: Mutex::new(last),
            }),
        }
    }

    /// The heartbeat for the window since the last one.
    pub async fn build(&self) -> Heartbeat {
        let inner = &self.inner;
        let now = inner.metrics.snapshot();
        let window = {
            let mut last = inner.last.lock().await;
            let window = now.since(&last);
            *last = now;
            window
        };
        let requests = window.requests();
        let errors = window.by_class[4];
        let seconds = inner.interval.as_secs_f64().max(1.0);
        let error_rate = if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        };
        let status = if inner.central.ping().await.is_err() {
            ServiceStatus::Unhealthy
        } else if requests >= 20 && error_rate > 0.5 {
            ServiceStatus::Degraded
        } else {
            ServiceStatus::Healthy
        };
        let mut cumulative = 0;
        let latency_buckets = BUCKETS_MS
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .zip(window.buckets)
            .map(|(bound, n)| {
                cumulative += n;
                (*bound, cumulative)
            })
            .filter(|(bound, _)| bound.is_finite())
            .collect();
        Heartbeat {
            service_id: inner.client.service_id().to_owned(),
            status,
            active_tenants: inner
                .usage
                .take_active()
                .into_iter()
                .map(|t| t.to_string())
                .collect(),
            metrics: HeartbeatMetrics {
                requests_per_minute: (requests as f64 * 60.0 / seconds).round() as u64,
                error_rate,
                avg_response_time_ms: if requests == 0 {
                    0.0
                } else {
                    window.latency_sum_us as f64 / requests as f64 / 1000.0
                },
            },
            timestamp: OffsetDateTime::now_utc(),
            instance_id: inner.instance_id.to_string(),
            seq: inner.seq.fetch_add(1, Ordering::Relaxed) + 1,
            window: WindowCounters {
                window_seconds: inner.interval.as_secs(),
                requests,
                status_4xx: window.by_class[3],
                status_5xx: errors,
                latency_sum_ms: window.latency_sum_us as f64 / 1000.0,
                latency_buckets,
            },
        }
    }

    /// Sends one heartbeat and applies what comes back. Returns how many commands.
    pub async fn beat(&self) -> Result<usize, crate::integrations::MarketError> {
        let heartbeat = self.build().await;
        let response = self.inner.client.heartbeat(&heartbeat).await?;
        let count = response.commands.len();
        for command in response.commands {
            let receipt = self.inner.control.apply(&command).await;
            let ack = CommandAck {
                status: receipt.status,
                detail: receipt.detail,
                instance_id: self.inner.instance_id.to_string(),
            };
            if let Err(e) = self.inner.client.ack(command.command_id(), &ack).await {
                tracing::warn!(command = command.command_id(), error = %e, "acknowledging a pulled command failed; it will come again");
            }
        }
        Ok(count)
    }

    /// Beats every interval until the service stops.
    pub fn spawn(&self, background: &Background) {
        let this = self.clone();
        let bg = background.clone();
        background.spawn(async move {
            let mut tick = tokio::time::interval(this.inner.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tokio::select! {
                    () = bg.stopping() => return,
                    _ = tick.tick() => {}
                }
                match this.beat().await {
                    Ok(n) => {
                        if failing {
                            tracing::info!("the market answers heartbeats again");
                        }
                        failing = false;
                        if n > 0 {
                            tracing::info!(
                                commands = n,
                                "applied commands from the heartbeat response"
                            );
                        }
                    }
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "heartbeat failed; retrying at each interval");
                        failing = true;
                    }
                    Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
                }
            }
        });
    }
}
