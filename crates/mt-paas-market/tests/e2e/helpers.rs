//! A market and a service on random ports, wired to each other.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use axum::{Json, Router, routing::get};
use mt_paas::{ServiceMarketFramework, Tenant, config::ConfigLoader};
use mt_paas_market::{Market, MarketConfig};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub const OPERATOR: &str = "dev-operator-token";
pub const API_KEY: &str = "test-api-key-123";
pub const SECRET: &str = "whsec_bXQtcGFhcy1kZXYtd2ViaG9vay1zZWNyZXQtMzJieQ==";
pub const SERVICE: &str = "e2e_service";

/// Something serving on a port until stopped.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

pub struct TestMarket {
    #[allow(dead_code)]
    pub market: Market,
    pub running: Running,
    pub url: String,
    pub db_url: String,
}

/// Starts a market (no dev data) on a random port, on `db_url` (a SQLite file by default).
pub async fn start_market(db_url: &str, port: Option<u16>) -> TestMarket {
    let mut config = MarketConfig::with_database(db_url).unwrap();
    config.seed_dev_data = false;
    config.delivery.poll_interval_ms = 50;
    config.delivery.timeout_ms = 2000;
    let listener = TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    // The tokens it signs name it as their issuer: the address services reach it at.
    config.public_url = format!("http://{addr}");
    let market = Market::start(config).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = market.clone();
    let task = tokio::spawn(async move {
        serving
            .serve_with_shutdown(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    TestMarket {
        market,
        url: format!("http://{addr}"),
        running: Running {
            addr,
            stop: Some(stop),
            task,
        },
        db_url: db_url.to_owned(),
    }
}

/// A client of the operator API.
pub async fn operator(
    market_url: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method, format!("{market_url}/api/v1/admin{path}"))
        .bearer_auth(OPERATOR);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Registers the test service (with `base_url`) and plans `basic` / `premium`.
pub async fn register_service(market_url: &str, base_url: Option<String>) {
    for (id, features, rpm) in [
        ("basic", json!({"ai_chat": true, "quiz": false}), 60),
        ("premium", json!({"ai_chat": true, "quiz": true}), 600),
    ] {
        let (status, body) = operator(
            market_url,
            reqwest::Method::POST,
            "/plans",
            Some(json!({"id": id, "name": id, "features": features, "requests_per_minute": rpm})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = operator(
        market_url,
        reqwest::Method::POST,
        "/services",
        Some(json!({"id": SERVICE, "name": "E2E", "api_key": API_KEY, "webhook_secret": SECRET, "base_url": base_url})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Creates a market tenant and subscribes it.
pub async fn subscribe(market_url: &str, tenant: &str, plan: &str, provision: bool) {
    let (status, body) = operator(
        market_url,
        reqwest::Method::POST,
        "/tenants",
        Some(json!({"id": tenant, "name": format!("{tenant} 대학교")})),
    )
    .await;
    assert!(status == 201 || status == 409, "{body}");
    let (status, body) = operator(
        market_url,
        reqwest::Method::POST,
        "/subscriptions",
        Some(json!({"service_id": SERVICE, "tenant_id": tenant, "plan_id": plan, "provision": provision})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

pub struct TestService {
    pub framework: ServiceMarketFramework,
    pub running: Running,
    pub url: String,
    pub dir: PathBuf,
}

async fn whoami(tenant: Tenant) -> Json<Value> {
    Json(json!({
        "tenant": tenant.id(),
        "name": tenant.name(),
        "plan": tenant.plan(),
        "quiz": tenant.has_feature("quiz"),
    }))
}

async fn me(tenant: Tenant, user: Option<mt_paas::CurrentUser>) -> Json<Value> {
    Json(json!({
        "tenant": tenant.id(),
        "sub": user.as_ref().map(|u| u.sub().to_owned()),
        "name": user.as_ref().and_then(|u| u.name().map(str::to_owned)),
    }))
}

/// The service's config: its data in `dir`, the market at `market_url`.
pub fn service_config(
    dir: &std::path::Path,
    market_url: &str,
    extra: &str,
) -> mt_paas::config::Config {
    let yaml = format!(
        "service:\n  id: {SERVICE}\nmarketplace:\n  api_url: \"{market_url}/api/v1\"\n  api_key: \"{API_KEY}\"\n  webhook_secret: \"{SECRET}\"\n  subscription_check: true\n  request_timeout_ms: 1000\n  sync_interval_seconds: 3600\n  entitlement_ttl_seconds: 60\ndatabase:\n  central:\n    url: \"sqlite://{d}/central.db\"\n  tenant:\n    url_template: \"sqlite://{d}/tenants/{{tenant_id}}.db\"\n    migrations: null\nprovisioning:\n  archive_dir: \"{d}/archive\"\nfeatures:\n  controlled_by_subscription: true\n  defaults:\n    quiz: false\n{security}{extra}",
        security = if extra.contains("security:") {
            ""
        } else {
            "security:\n  rate_limit:\n    default_rpm: 1000000\n    anonymous_rpm: 1000000\n"
        },
        d = dir.display()
    );
    let path = dir.join("mt_paas_config.yaml");
    std::fs::write(&path, yaml).unwrap();
    ConfigLoader::new(&path).vars(|_| None).load().unwrap()
}

/// Starts a service on `listener` with `config`.
pub async fn start_service(
    listener: TcpListener,
    config: mt_paas::config::Config,
    dir: PathBuf,
) -> TestService {
    let addr = listener.local_addr().unwrap();
    let framework = ServiceMarketFramework::from_config(config).await.unwrap();
    let app = framework.create_app(
        Router::new()
            .route("/whoami", get(whoami))
            .route("/me", get(me)),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = framework.clone();
    let task = tokio::spawn(async move {
        serving
            .serve_with_shutdown(listener, app, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    TestService {
        framework,
        url: format!("http://{addr}"),
        running: Running {
            addr,
            stop: Some(stop),
            task,
        },
        dir,
    }
}

/// A market and a service that know each other. The service's dir lives in `dir`.
pub struct Stack {
    pub market: TestMarket,
    pub service: TestService,
    #[allow(dead_code)]
    pub dir: TempDir,
}

pub async fn stack() -> Stack {
    stack_with(|_| {}).await
}

/// A market and a service whose config `change` adjusts first.
pub async fn stack_with(change: impl FnOnce(&mut mt_paas::config::Config)) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let market_db = format!("sqlite://{}/market.db", dir.path().display());
    let market = start_market(&market_db, None).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_url = format!("http://{}", listener.local_addr().unwrap());
    register_service(&market.url, Some(service_url)).await;
    let service_dir = dir.path().join("service");
    std::fs::create_dir_all(&service_dir).unwrap();
    let mut config = service_config(&service_dir, &market.url, "");
    change(&mut config);
    let service = start_service(listener, config, service_dir).await;
    Stack {
        market,
        service,
        dir,
    }
}

/// GET `path` on the service as `tenant`.
pub async fn as_tenant(
    service_url: &str,
    tenant: &str,
    path: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = reqwest::Client::new()
        .get(format!("{service_url}{path}"))
        .header("x-tenant-id", tenant)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        headers,
    )
}

/// Polls `check` every 50 ms until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
