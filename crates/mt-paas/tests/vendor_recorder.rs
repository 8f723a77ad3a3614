//! A vendor that installed a metrics recorder of its own before starting the service keeps
//! it: the vendor's series go to that recorder, and the service's `/metrics` shows mt-paas's
//! own series only (DESIGN §7.5). A test binary of its own: the global recorder is the
//! process's, set once.

use metrics_exporter_prometheus::PrometheusBuilder;
use mt_paas::testing::{TestConfig, TestService};

#[tokio::test]
async fn a_recorder_installed_first_keeps_the_vendors_series() {
    let vendors = PrometheusBuilder::new().install_recorder().unwrap();
    let service = TestService::start(TestConfig::new().load().unwrap(), axum::Router::new())
        .await
        .unwrap();
    assert_eq!(
        service
            .client()
            .get("/healthz")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    mt_paas::metrics::counter!("quiz_submissions_total").increment(2);

    let ours = service
        .client()
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .to_owned();
    let has = |text: &str, line: &str| text.lines().any(|l| l == line);
    assert!(
        has(
            &ours,
            "mt_paas_requests_total{route=\"/healthz\",class=\"2xx\"} 1"
        ),
        "{ours}"
    );
    assert!(!ours.contains("quiz_submissions_total"), "{ours}");

    let theirs = vendors.render();
    assert!(has(&theirs, "quiz_submissions_total 2"), "{theirs}");
    assert!(!theirs.contains("mt_paas_requests_total"), "{theirs}");
}
