//! Telemetry benchmark (DESIGN §11): the cost of `log_activity` on the request path, and the
//! outbox's delivery rate to an LRS. Run with
//!
//! ```sh
//! cargo bench -p mt-paas --bench telemetry
//! MT_PAAS_BENCH_ACTIVITIES=100000 cargo bench -p mt-paas --bench telemetry
//! ```
//!
//! The LRS is a local axum server keeping statements by id (the xAPI statements resource,
//! minus validation), so the figure is the outbox's, not a remote LRS's.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Json, Router, body::Bytes, extract::State, routing::post};
use mt_paas::{ServiceMarketFramework, TenantId, config::ConfigLoader};
use serde_json::{Value, json};

type Stored = Arc<Mutex<HashSet<String>>>;

async fn statements(State(stored): State<Stored>, body: Bytes) -> Json<Vec<String>> {
    let value: Value = serde_json::from_slice(&body).unwrap();
    let batch = match value {
        Value::Array(items) => items,
        single => vec![single],
    };
    let ids: Vec<String> = batch
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    stored.lock().unwrap().extend(ids.iter().cloned());
    Json(ids)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let activities: usize = std::env::var("MT_PAAS_BENCH_ACTIVITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let stored = Stored::default();
    let lrs = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lrs_port = lrs.local_addr().unwrap().port();
    let app = Router::new()
        .route("/xapi/statements", post(statements))
        .with_state(stored.clone());
    tokio::spawn(async move { axum::serve(lrs, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mt_paas_config.yaml");
    std::fs::write(
        &path,
        format!(
            "service:\n  id: bench\ndatabase:\n  central:\n    url: \"sqlite://{d}/central.db\"\n  tenant:\n    url_template: \"sqlite://{d}/{{tenant_id}}.db\"\n    migrations: null\nlogging:\n  level: WARN\n  activity_log:\n    enabled: true\n    endpoint: \"http://127.0.0.1:{lrs_port}/xapi\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let config = ConfigLoader::new(&path).vars(|_| None).load().unwrap();
    let framework = ServiceMarketFramework::from_config(config).await.unwrap();
    let logger = framework.activity_log().clone();
    let tenants: Vec<TenantId> = ["hallym", "korea", "snu"]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();

    // The request path: one call per activity, timed one by one.
    let mut costs = Vec::with_capacity(activities);
    // A burst beyond the outbox's buffer, faster than the central DB takes it, is refused
    // (backpressure, counted): what was accepted must all arrive.
    let mut refused = 0usize;
    let started = Instant::now();
    for i in 0..activities {
        let tenant = &tenants[i % tenants.len()];
        let user = format!("user{}", i % 50);
        let result = json!({ "question": i, "answered": true });
        let t = Instant::now();
        let id = logger.log(tenant, Some(&user), "asked", "ai_tutor", result);
        costs.push(t.elapsed());
        if id.is_none() {
            refused += 1;
        }
        // Requests arrive over time, not in one burst: yield now and then, as handlers do.
        if i % 64 == 63 {
            tokio::task::yield_now().await;
        }
    }
    let logged = started.elapsed();
    costs.sort();

    // Stored: every accepted activity written to the central DB.
    framework.outbox().flush().await;
    let stored_in = started.elapsed();

    // Delivery: until the LRS holds every statement.
    let deadline = Instant::now() + Duration::from_secs(300);
    let accepted = activities - refused;
    while stored.lock().unwrap().len() < accepted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered_in = started.elapsed();
    let delivered = stored.lock().unwrap().len();
    assert_eq!(delivered, accepted, "every accepted statement delivered");

    println!(
        "{activities} activities, 3 tenants, a local LRS; {refused} refused (the outbox's buffer full)"
    );
    println!(
        "log_activity on the request path   median {:>6.2} µs   p99 {:>6.2} µs   max {:>8.2} µs",
        quantile(&costs, 0.5).as_secs_f64() * 1e6,
        quantile(&costs, 0.99).as_secs_f64() * 1e6,
        costs.last().unwrap().as_secs_f64() * 1e6,
    );
    println!(
        "logging all of them                {:>8.1} ms ({:.0} activities/s on one task)",
        logged.as_secs_f64() * 1e3,
        activities as f64 / logged.as_secs_f64()
    );
    println!(
        "stored in the central DB           {:>8.1} ms from the first log ({:.0} items/s)",
        stored_in.as_secs_f64() * 1e3,
        accepted as f64 / stored_in.as_secs_f64()
    );
    println!(
        "stored and delivered to the LRS    {:>8.1} ms from the first log ({:.0} statements/s)",
        delivered_in.as_secs_f64() * 1e3,
        accepted as f64 / delivered_in.as_secs_f64()
    );
    framework.shutdown_telemetry().await;
}
