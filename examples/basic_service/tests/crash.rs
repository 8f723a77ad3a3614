//! `kill -9` of the service in the middle of delivering alerts, then a restart: nothing the
//! service accepted is lost, and the market stores each alert once.

#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use mt_paas::JwtKeys;
use mt_paas_market::{Market, MarketConfig};
use serde_json::json;

const KEY: &str = "crash-test-api-key";
const SECRET: &str = "crash-test-jwt-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_service(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_basic_service"))
        .env("MT_PAAS_CONFIG", config)
        .env_remove("MT_PAAS_ENV")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(format!("{url}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the service did not start");
}

async fn stored_alerts(market: &str) -> usize {
    let alerts: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{market}/api/v1/admin/alerts?service_id=basic_service"
        ))
        .bearer_auth("dev-operator-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    alerts.as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut market_config =
        MarketConfig::with_database(&format!("sqlite://{}/market.db", dir.path().display()))
            .unwrap();
    market_config.seed_dev_data = false;
    let market = Market::start(market_config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let market_url = format!("http://{}", listener.local_addr().unwrap());
    let serving = market.clone();
    tokio::spawn(async move {
        serving
            .serve_with_shutdown(listener, std::future::pending())
            .await
    });
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{market_url}/api/v1/admin/services"))
        .bearer_auth("dev-operator-token")
        .json(&json!({"id": "basic_service", "name": "Basic", "api_key": KEY, "webhook_secret": "whsec_bXQtcGFhcy1kZXYtd2ViaG9vay1zZWNyZXQtMzJieQ=="}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let port = free_port();
    let service_url = format!("http://127.0.0.1:{port}");
    let d = dir.path().display();
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let config = dir.path().join("service.yaml");
    std::fs::write(
        &config,
        format!(
            "service:\n  id: basic_service\n  listen: \"127.0.0.1:{port}\"\nmarketplace:\n  api_url: \"{market_url}/api/v1\"\n  api_key: \"{KEY}\"\n  heartbeat_interval: 3600\ndatabase:\n  central:\n    url: \"sqlite://{d}/central.db\"\n  tenant:\n    url_template: \"sqlite://{d}/tenants/{{tenant_id}}.db\"\n    migrations: \"{m}\"\ntenant_identification:\n  methods:\n    - type: header\n    - type: jwt_claim\nauth:\n  jwt:\n    secret: \"{SECRET}\"\nsecurity:\n  rate_limit:\n    default_rpm: 1000000\n    anonymous_rpm: 1000000\nfeatures:\n  defaults:\n    ai_chat: true\ncustom:\n  demo_tenants:\n    - id: hallym\n      name: Hallym\n    - id: korea\n      name: Korea\n",
            m = migrations.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("service.log");
    let mut child = spawn_service(&config, &log);
    wait_ready(&service_url).await;

    let keys = JwtKeys::from_config(
        &serde_json::from_value(
            json!({"secret": SECRET, "algorithm": "HS256", "expiry_hours": 1, "leeway_seconds": 0}),
        )
        .unwrap(),
    )
    .unwrap();
    let token = keys
        .issue(
            json!({"sub": "mallory", "tenant_id": "hallym"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();

    // Eight clients use a hallym token on korea: each answer is a 403 and an alert.
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (refused, stop, url, token) = (
            refused.clone(),
            stop.clone(),
            service_url.clone(),
            token.clone(),
        );
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::SeqCst) {
                let answer = http
                    .get(format!("{url}/courses"))
                    .header("x-tenant-id", "korea")
                    .bearer_auth(&token)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == 403 => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => panic!("unexpected {}", r.status()),
                    Err(_) => break, // the service is gone
                }
            }
        }));
    }
    while refused.load(Ordering::SeqCst) < 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL, in the middle of requests and deliveries
    child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let answered = refused.load(Ordering::SeqCst);
    let before_restart = stored_alerts(&market_url).await;

    let mut child = spawn_service(&config, &log);
    wait_ready(&service_url).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored_alerts(&market_url).await < answered && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = stored_alerts(&market_url).await;
    eprintln!(
        "answered {answered} refusals; {before_restart} alerts stored before the restart, {stored} after"
    );
    assert!(
        stored >= answered,
        "every alert behind an answered 403 reached the market: {stored} < {answered}"
    );
    // Requests accepted but cut off by the kill may add an alert each; never more.
    assert!(
        stored <= answered + 8,
        "{stored} alerts for {answered} refusals"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
