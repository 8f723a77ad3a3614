//! Request metrics through the `metrics` facade into a Prometheus recorder
//! (`metrics-exporter-prometheus`), rendered at `/metrics`: requests by matched route and
//! status class, a latency histogram per route, the gauges the framework keeps, and every
//! series the vendor's own code records with `metrics::counter!` and friends (the recorder is
//! the process's global one unless another was installed first). Route labels are the
//! router's matched paths (`<unmatched>` for the rest), never the request's own path, so an
//! anonymous caller cannot grow the label set. High-volume series carry no tenant label:
//! per-tenant figures travel in usage reports. The heartbeat's window counters sit beside
//! the recorder as plain atomics (a Prometheus recorder is not read back).

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc, OnceLock, PoisonError, RwLock,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use axum::{extract::MatchedPath, response::Response};
use http::Request;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// Upper bounds of the latency buckets, in milliseconds.
pub(crate) const BUCKETS_MS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

/// The series name of the requests counter.
const REQUESTS: &str = "mt_paas_requests_total";
/// The series name of the latency histogram.
const DURATION: &str = "mt_paas_request_duration_seconds";
/// The route label of a request no route matched.
const UNMATCHED: &str = "<unmatched>";
/// At most this many routes get series of their own; the rest count as `<unmatched>`
/// (a router is built once, so this bounds only a pathological one).
const MAX_ROUTES: usize = 1024;

/// The series of one route: a counter per status class, a latency histogram.
#[derive(Debug)]
struct RouteSeries {
    by_class: [Counter; 5],
    duration: Histogram,
}

impl RouteSeries {
    fn new(recorder: &PrometheusRecorder, route: &str) -> Self {
        metrics::with_local_recorder(recorder, || {
            let class = |c: &'static str| metrics::counter!(REQUESTS, "route" => route.to_owned(), "class" => c);
            Self {
                by_class: [
                    class("1xx"),
                    class("2xx"),
                    class("3xx"),
                    class("4xx"),
                    class("5xx"),
                ],
                duration: metrics::histogram!(DURATION, "route" => route.to_owned()),
            }
        })
    }
}

/// The service's request metrics.
#[derive(Debug)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    routes: RwLock<HashMap<Arc<str>, Arc<RouteSeries>>>,
    unmatched: Arc<RouteSeries>,
    window: Window,
    in_flight: AtomicI64,
}

/// The heartbeat's counters since start.
#[derive(Debug, Default)]
struct Window {
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    latency_sum_us: AtomicU64,
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A recorder of its own (for the framework's series), with the latency buckets.
    pub fn new() -> Self {
        let seconds: Vec<f64> = BUCKETS_MS.iter().map(|ms| ms / 1000.0).collect();
        let recorder = match PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), &seconds)
        {
            Ok(builder) => builder.build_recorder(),
            // Only an empty bucket list is refused, and this one is not empty.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!(
                REQUESTS,
                "Requests answered, by matched route and status class."
            );
            metrics::describe_histogram!(
                DURATION,
                metrics::Unit::Seconds,
                "Time to answer a request, by matched route."
            );
        });
        let unmatched = Arc::new(RouteSeries::new(&recorder, UNMATCHED));
        Self {
            handle: recorder.handle(),
            recorder: Arc::new(recorder),
            routes: RwLock::default(),
            unmatched,
            window: Window::default(),
            in_flight: AtomicI64::new(0),
        }
    }

    /// Makes this recorder the process's global one, so the vendor's own
    /// `metrics::counter!` (and gauges, histograms) show at `/metrics`; false when another
    /// recorder was installed first (the vendor's own, or another service in this process).
    pub(crate) fn install_global(&self) -> bool {
        metrics::set_global_recorder(self.recorder.clone()).is_ok()
    }

    /// The series of `route` (made on its first request).
    fn series(&self, route: Option<&str>) -> Arc<RouteSeries> {
        let Some(route) = route else {
            return self.unmatched.clone();
        };
        if let Some(series) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
        {
            return series.clone();
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if routes.len() >= MAX_ROUTES && !routes.contains_key(route) {
            return self.unmatched.clone();
        }
        routes
            .entry(Arc::from(route))
            .or_insert_with(|| Arc::new(RouteSeries::new(&self.recorder, route)))
            .clone()
    }

    /// Counts one answered request of `route` (its matched path; `None` when none matched).
    pub fn record(&self, route: Option<&str>, status: u16, elapsed: Duration) {
        self.count(&self.series(route), status, elapsed);
    }

    /// Counts one answered request into `series`.
    fn count(&self, series: &RouteSeries, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        series.by_class[class].increment(1);
        series.duration.record(elapsed.as_secs_f64());
        let window = &self.window;
        window.by_class[class].fetch_add(1, Ordering::Relaxed);
        let ms = elapsed.as_secs_f64() * 1000.0;
        let bucket = BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS_MS.len());
        window.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        window.latency_sum_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The heartbeat's counters now.
    pub fn snapshot(&self) -> Snapshot {
        let window = &self.window;
        let mut snapshot = Snapshot {
            latency_sum_us: window.latency_sum_us.load(Ordering::Relaxed),
            ..Snapshot::default()
        };
        for (s, a) in snapshot.by_class.iter_mut().zip(&window.by_class) {
            *s = a.load(Ordering::Relaxed);
        }
        for (s, a) in snapshot.buckets.iter_mut().zip(&window.buckets) {
            *s = a.load(Ordering::Relaxed);
        }
        snapshot
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Folds the histograms' recent samples into their buckets (the framework does so every
    /// few seconds, so samples never pile up between scrapes).
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Every series in the Prometheus text format, with `gauges` (name, help, value) set
    /// first, beside the requests in flight.
    pub fn render(&self, gauges: &[(&'static str, &'static str, f64)]) -> String {
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::describe_gauge!("mt_paas_requests_in_flight", "Requests being served.");
            metrics::gauge!("mt_paas_requests_in_flight").set(self.in_flight() as f64);
            for (name, help, value) in gauges {
                metrics::describe_gauge!(*name, *help);
                metrics::gauge!(*name).set(*value);
            }
        });
        self.handle.render()
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
            route: Arc::default(),
        }
    }
}

/// The series of the route a [`MetricsService`] wraps (`Router::layer` wraps each route on
/// its own), found on its first request and kept with the path it is for.
type RouteCache = Arc<OnceLock<(MatchedPath, Arc<RouteSeries>)>>;

/// The service of [`MetricsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
    route: RouteCache,
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
        // Set by the router before the per-route layers run (`Router::layer`).
        let matched = request.extensions().get::<MatchedPath>();
        let series = match (self.route.get(), matched) {
            (Some((path, series)), Some(matched)) if path.as_str() == matched.as_str() => {
                series.clone()
            }
            (_, matched) => {
                let series = self.metrics.series(matched.map(MatchedPath::as_str));
                if let Some(matched) = matched {
                    let _ = self.route.set((matched.clone(), series.clone()));
                }
                series
            }
        };
        MetricsFuture {
            future: self.inner.call(request),
            metrics: self.metrics.clone(),
            series,
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
        series: Arc<RouteSeries>,
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
        this.metrics.count(
            this.series,
            response.status().as_u16(),
            this.started.elapsed(),
        );
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_route_and_renders_every_series() {
        let m = Metrics::new();
        m.record(Some("/courses"), 200, Duration::from_micros(800));
        m.record(Some("/courses"), 201, Duration::from_millis(30));
        m.record(Some("/courses/{id}"), 503, Duration::from_secs(10));
        m.record(None, 404, Duration::from_micros(10));
        let s = m.snapshot();
        assert_eq!(s.by_class, [0, 2, 0, 1, 1]);
        assert_eq!(s.buckets[0], 2);
        assert_eq!(s.buckets[BUCKETS_MS.len()], 1);
        // A series of the recorder's own, as a vendor's code would add.
        metrics::with_local_recorder(&*m.recorder, || {
            metrics::counter!("quiz_submissions_total").increment(7);
        });
        let text = m.render(&[("mt_paas_active_tenants", "Tenants.", 2.0)]);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(
            has("mt_paas_requests_total{route=\"/courses\",class=\"2xx\"} 2"),
            "{text}"
        );
        assert!(
            has("mt_paas_requests_total{route=\"/courses/{id}\",class=\"5xx\"} 1"),
            "{text}"
        );
        assert!(
            has("mt_paas_requests_total{route=\"<unmatched>\",class=\"4xx\"} 1"),
            "{text}"
        );
        assert!(
            has("mt_paas_request_duration_seconds_bucket{route=\"/courses\",le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(
            has("mt_paas_request_duration_seconds_count{route=\"/courses\"} 2"),
            "{text}"
        );
        assert!(
            has("mt_paas_request_duration_seconds_bucket{route=\"/courses/{id}\",le=\"+Inf\"} 1"),
            "{text}"
        );
        assert!(has("mt_paas_active_tenants 2"), "{text}");
        assert!(has("mt_paas_requests_in_flight 0"), "{text}");
        assert!(has("quiz_submissions_total 7"), "{text}");
        assert!(
            text.contains("# HELP mt_paas_active_tenants Tenants."),
            "{text}"
        );
        assert!(!text.contains("tenant=\""), "no tenant label");
        let later = {
            m.record(Some("/courses"), 200, Duration::from_millis(3));
            m.snapshot()
        };
        assert_eq!(later.since(&s).requests(), 1);
    }

    #[test]
    fn routes_past_the_bound_count_as_unmatched() {
        let m = Metrics::new();
        for i in 0..MAX_ROUTES {
            m.record(Some(&format!("/r{i}")), 200, Duration::ZERO);
        }
        m.record(Some("/one-too-many"), 200, Duration::ZERO);
        m.record(Some("/r0"), 200, Duration::ZERO);
        let text = m.render(&[]);
        assert!(!text.contains("/one-too-many"), "{text}");
        assert!(
            text.lines()
                .any(|l| l == "mt_paas_requests_total{route=\"<unmatched>\",class=\"2xx\"} 1")
        );
        assert!(
            text.lines()
                .any(|l| l == "mt_paas_requests_total{route=\"/r0\",class=\"2xx\"} 2")
        );
    }

    #[tokio::test]
    async fn the_layer_labels_each_route_by_its_matched_path() {
        use tower::ServiceExt as _;
        let metrics = Arc::new(Metrics::new());
        let app = axum::Router::new()
            .route("/a", axum::routing::get(|| async { "a" }))
            .route("/b/{id}", axum::routing::get(|| async { "b" }))
            .layer(MetricsLayer::new(metrics.clone()));
        for path in ["/a", "/b/1", "/b/2", "/a", "/b/3", "/nothing/here"] {
            let request = Request::get(path).body(axum::body::Body::empty()).unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let text = metrics.render(&[]);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(
            has("mt_paas_requests_total{route=\"/a\",class=\"2xx\"} 2"),
            "{text}"
        );
        assert!(
            has("mt_paas_requests_total{route=\"/b/{id}\",class=\"2xx\"} 3"),
            "{text}"
        );
        assert!(
            has("mt_paas_requests_total{route=\"<unmatched>\",class=\"4xx\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("/b/1") && !text.contains("nothing"),
            "{text}"
        );
        assert_eq!(metrics.snapshot().requests(), 6);
    }
}
