//! Request-pipeline benchmark: what mt-paas's guard (identify → auth → subscription and kill
//! switch → rate limit → usage, plus problem+json, panic and metrics layers) adds to one
//! request, measured in-process without sockets or a database, so the figure is the
//! framework's own cost. Run with
//!
//! ```sh
//! cargo bench -p mt-paas --bench pipeline
//! ```
//!
//! Prints ns per request for a bare axum router and for `create_app` around the same handler.

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::time::Instant;

use axum::{
    Json, Router,
    body::Body,
    http::{Request, StatusCode},
    routing::get,
};
use mt_paas::{JwtKeys, ServiceMarketFramework, config::ConfigLoader};
use serde_json::{Value, json};
use tower::ServiceExt;

const ROUNDS: usize = 15;
const REQUESTS: usize = 5_000;

async fn courses() -> Json<Value> {
    Json(json!([{"id": 1, "title": "강좌"}]))
}

/// An app, the request sent to it, and the status it must answer.
type Case<'a> = (&'a Router, &'a dyn Fn() -> Request<Body>, StatusCode);

/// The time of one run of `REQUESTS` requests, in ns per request.
async fn run(app: &Router, request: &dyn Fn() -> Request<Body>, expect: StatusCode) -> f64 {
    let start = Instant::now();
    for _ in 0..REQUESTS {
        let response = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), expect);
        let _ = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
    }
    start.elapsed().as_nanos() as f64 / REQUESTS as f64
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mt_paas_config.yaml");
    std::fs::write(
        &path,
        format!(
            "service:\n  id: bench\ndatabase:\n  central:\n    url: \"sqlite://{d}/central.db\"\n  tenant:\n    url_template: \"sqlite://{d}/{{tenant_id}}.db\"\n    migrations: null\ntenant_identification:\n  methods:\n    - type: header\nauth:\n  jwt:\n    secret: bench-secret\nsecurity:\n  rate_limit:\n    enabled: true\n    default_rpm: 1000000000\n    anonymous_rpm: 1000000000\nlogging:\n  level: WARN\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let config = ConfigLoader::new(&path).vars(|_| None).load().unwrap();
    let framework = ServiceMarketFramework::from_config(config).await.unwrap();
    framework
        .provisioner()
        .create("acme".parse().unwrap(), "Acme", None)
        .await
        .unwrap();
    let keys = JwtKeys::from_config(&framework.config().auth.jwt).unwrap();
    let claims = json!({"sub": "user-1", "tenant_id": "acme"});
    let token = format!(
        "Bearer {}",
        keys.issue(claims.as_object().cloned().unwrap()).unwrap()
    );

    // `with_state(())` finalizes the routes, as `axum::serve` does.
    let bare = Router::new().route("/courses", get(courses)).with_state(());
    let full = framework
        .create_app(Router::new().route("/courses", get(courses)))
        .with_state(());

    let plain = || Request::get("/courses").body(Body::empty()).unwrap();
    let guarded = || {
        Request::get("/courses")
            .header("x-tenant-id", "acme")
            .header("authorization", &token)
            .body(Body::empty())
            .unwrap()
    };
    let unknown = || {
        Request::get("/courses")
            .header("x-tenant-id", "nobody")
            .body(Body::empty())
            .unwrap()
    };
    let missing = || Request::get("/nothing").body(Body::empty()).unwrap();

    // Interleaved rounds, best of each: this machine's noise hits all four alike.
    let cases: [Case<'_>; 4] = [
        (&bare, &plain, StatusCode::OK),
        (&full, &guarded, StatusCode::OK),
        (&bare, &missing, StatusCode::NOT_FOUND),
        (&full, &unknown, StatusCode::NOT_FOUND),
    ];
    let mut best = [f64::MAX; 4];
    let only: Option<usize> = std::env::var("PIPELINE_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    let rounds = std::env::var("PIPELINE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS);
    for _ in 0..rounds {
        for (i, (app, request, expect)) in cases.iter().enumerate() {
            // PIPELINE_ONLY=1 runs the second case alone (for instruction counts).
            if only.is_some_and(|only| only != i) {
                continue;
            }
            best[i] = best[i].min(run(app, *request, *expect).await);
        }
    }
    let [bare_ns, full_ns, bare_404, unknown_ns] = best;
    println!("in-process, one thread, best of {rounds} × {REQUESTS} requests");
    println!("bare axum handler                 {bare_ns:>8.0} ns/request");
    println!(
        "mt-paas full guard, same handler  {full_ns:>8.0} ns/request  (+{:.0} ns)",
        full_ns - bare_ns
    );
    println!("bare axum 404                     {bare_404:>8.0} ns/request");
    println!(
        "mt-paas unknown tenant 404        {unknown_ns:>8.0} ns/request  (+{:.0} ns)",
        unknown_ns - bare_404
    );
}
