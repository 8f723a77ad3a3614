//! Request metrics: counters and a latency histogram updated with atomics on the request path
//! (no locks), exposed at `/metrics` in the Prometheus text format and summarized in
//! heartbeats. High-volume series carry no tenant label: per-tenant figures travel in usage
//! reports.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use axum::response::Response;
use http::Request;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// Upper bounds of the latency buckets, in milliseconds.
pub(crate) const BUCKETS_MS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

/// The service's request counters.
#[derive(Debug, Default)]
pub struct Metrics {
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    latency_sum_us: AtomicU64,
    in_flight: AtomicI64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests answered per status class (1xx..5xx).
    pub by_class: [u64; 5],
    /// Requests per latency bucket (not cumulative; the last is +Inf).
    pub buckets: [u64; BUCKETS_MS.len() + 1],
    /// Sum of latencies in microseconds.
    pub latency_sum_us: u64,
}

impl Snapshot {
    /// Requests answered.
    pub fn requests(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut delta = Snapshot {
            latency_sum_us: self.latency_sum_us.saturating_sub(earlier.latency_sum_us),
            ..Snapshot::default()
        };
        for (d, (a, b)) in delta
            .by_class
            .iter_mut()
            .zip(self.by_class.iter().zip(earlier.by_class))
        {
            *d = a.saturating_sub(b);
        }
        for (d, (a, b)) in delta
            .buckets
            .iter_mut()
            .zip(self.buckets.iter().zip(earlier.buckets))
        {
            *d = a.saturating_sub(b);
        }
        delta
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let ms = elapsed.as_secs_f64() * 1000.0;
        let bucket = BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS_MS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            latency_sum_us: self.latency_sum_us.load(Ordering::Relaxed),
            ..Snapshot::default()
        };
        for (s, a) in snapshot.by_class.iter_mut().zip(&self.by_class) {
            *s = a.load(Ordering::Relaxed);
        }
        for (s, a) in snapshot.buckets.iter_mut().zip(&self.buckets) {
            *s = a.load(Ordering::Relaxed);
        }
        snapshot
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The counters in the Prometheus text format, with `gauges` (name, help, value) after.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        use std::fmt::Write as _;
        let s = self.snapshot();
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP mt_paas_requests_total Requests answered, by status class.\n# TYPE mt_paas_requests_total counter\n");
        for (i, n) in s.by_class.iter().enumerate() {
            let _ = writeln!(out, "mt_paas_requests_total{{class=\"{}xx\"}} {n}", i + 1);
        }
        out.push_str("# HELP mt_paas_request_duration_seconds Time to answer a request.\n# TYPE mt_paas_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_MS.iter().enumerate() {
            cumulative += s.buckets[i];
            let _ = writeln!(
                out,
                "mt_paas_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
                bound / 1000.0
            );
        }
        cumulative += s.buckets[BUCKETS_MS.len()];
        let _ = writeln!(
            out,
            "mt_paas_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "mt_paas_request_duration_seconds_sum {}",
            s.latency_sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "mt_paas_request_duration_seconds_count {cumulative}");
        out.push_str("# HELP mt_paas_requests_in_flight Requests being served.\n# TYPE mt_paas_requests_in_flight gauge\n");
        let _ = writeln!(out, "mt_paas_requests_in_flight {}", self.in_flight());
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// Counts every request into [`Metrics`].
#[derive(Debug, Clone)]
pub(crate) struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    /// A layer counting into `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`MetricsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        MetricsFuture {
            future: self.inner.call(request),
            metrics: self.metrics.clone(),
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// The future of [`MetricsService`].
    pub struct MetricsFuture<F> {
        #[pin]
        future: F,
        metrics: Arc<Metrics>,
        started: Instant,
    }
}

impl<F> std::fmt::Debug for MetricsFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsFuture").finish_non_exhaustive()
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for MetricsFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.future.poll(cx));
        this.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        this.metrics
            .record(response.status().as_u16(), this.started.elapsed());
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_renders() {
        let m = Metrics::default();
        m.record(200, Duration::from_micros(800));
        m.record(201, Duration::from_millis(30));
        m.record(503, Duration::from_secs(10));
        let s = m.snapshot();
        assert_eq!(s.by_class, [0, 2, 0, 0, 1]);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[BUCKETS_MS.len()], 1);
        let text = m.render(&[("mt_paas_active_tenants", "Tenants.", 2.0)]);
        assert!(text.contains("mt_paas_requests_total{class=\"2xx\"} 2"));
        assert!(text.contains("mt_paas_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("mt_paas_request_duration_seconds_count 3"));
        assert!(text.contains("mt_paas_active_tenants 2"));
        assert!(!text.contains("tenant=\""), "no tenant label");
        let later = {
            m.record(200, Duration::from_millis(3));
            m.snapshot()
        };
        assert_eq!(later.since(&s).requests(), 1);
    }
}
