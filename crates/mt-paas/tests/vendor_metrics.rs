//! A vendor's own series, recorded through the `metrics` facade anywhere in its process, show
//! at the service's `/metrics`. A test binary of its own: its service is the process's first, so
//! its recorder is the global one (DESIGN §7.5).

use mt_paas::testing::{TestConfig, TestService};

#[tokio::test]
async fn the_vendors_own_series_show_at_metrics() {
    let service = TestService::start(TestConfig::new().load().unwrap(), axum::Router::new())
        .await
        .unwrap();
    // As a handler, a background job or `main` would: no handle from mt-paas needed.
    mt_paas::metrics::counter!("quiz_submissions_total", "kind" => "daily").increment(2);
    mt_paas::metrics::gauge!("quiz_queue_depth").set(5.0);
    let text = service.client().get("/metrics").send().await.unwrap();
    let text = text.text();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(has("quiz_submissions_total{kind=\"daily\"} 2"), "{text}");
    assert!(has("quiz_queue_depth 5"), "{text}");
    // Beside the framework's own.
    assert!(has("# TYPE mt_paas_requests_total counter"), "{text}");
}
