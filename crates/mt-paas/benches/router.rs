//! Tenant-router benchmark: what one hop through mt-paas's tenant router costs — the whole
//! guard, then a signed, streamed forward to the tenant's app — beside a bare axum + reqwest
//! reverse proxy doing the same forward without a guard, the guard alone (a route of the
//! service's own), and the app asked directly. The
//! tenant's "app" is an axum server in this process listening on the tenant's app port (no
//! Docker engine needed), so the figures are the hops' own cost. Run with
//!
//! ```sh
//! cargo bench -p mt-paas --bench router
//! ```
//!
//! Prints requests per second and the median and 99th-percentile latency of `CONCURRENCY`
//! clients on keep-alive connections, best of `ROUNDS` runs of `SECONDS` each.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use std::time::{Duration, Instant};

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    response::Response,
    routing::get,
};
use mt_paas::{IsolationMode, ServiceMarketFramework, TenantManager, config::ConfigLoader};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const ROUNDS: usize = 3;
const SECONDS: u64 = 3;
const CONCURRENCY: usize = 8;
/// The bench's block of ports: the tenant's app port is the first (apart from the tests'
/// 20000-32550 and the Docker bench's 32600-32624).
const PORT_BASE: u16 = 32_690;

async fn hello(request: Request) -> Json<Value> {
    let tenant = request
        .headers()
        .get("x-mt-paas-tenant")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Json(json!({"hello": "안녕하세요", "tenant": tenant}))
}

/// A bare reverse proxy: the request streamed to the app, the answer streamed back.
async fn proxy(State(client): State<reqwest::Client>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    let mut headers = parts.headers.clone();
    headers.remove(axum::http::header::HOST);
    let answer = client
        .request(parts.method, format!("http://127.0.0.1:{PORT_BASE}{path}"))
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

async fn serve(listener: TcpListener, app: Router) {
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
}

async fn bind_any() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// Requests per second, median and p99 of one run against `url`.
async fn run(client: &reqwest::Client, url: &str) -> (f64, Duration, Duration) {
    let url = url.to_owned();
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let client = client.clone();
        let url = url.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let answer = client
                    .get(&url)
                    .header("x-tenant-id", "hallym")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 200, "{url}");
                let _ = answer.bytes().await.unwrap();
                latencies.push(started.elapsed());
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(latencies) = workers.join_next().await {
        all.extend(latencies.unwrap());
    }
    all.sort();
    let rate = all.len() as f64 / SECONDS as f64;
    (rate, all[all.len() / 2], all[all.len() * 99 / 100])
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let yaml = format!(
        "service:\n  id: bench_router\nisolation:\n  mode: DOCKER_PER_TENANT\n  docker:\n    port_range_start: {PORT_BASE}\n    port_range_size: 5\n    compose_template: \"{t}/docker-compose.template.yml\"\n    env_template: \"{t}/.env.template\"\n    tenants_dir: \"{d}/tenants\"\n    database_url: \"postgresql://app:{{tenant_password}}@127.0.0.1:{{db_port}}/app\"\n    password_secret: \"the router bench's secret\"\n    network: host\n    start: false\n    images:\n      db: \"mt-paas/postgres:15\"\n      app: \"bench/app:1\"\ndatabase:\n  central:\n    url: \"sqlite://{d}/central.db\"\n  tenant:\n    url_template: \"sqlite://{d}/unused/{{tenant_id}}.db\"\n    migrations: null\ntenant_identification:\n  methods:\n    - type: header\nsecurity:\n  rate_limit:\n    enabled: true\n    default_rpm: 1000000000\n    anonymous_rpm: 1000000000\nlogging:\n  level: WARN\n",
        t = templates.display(),
        d = d.display(),
    );
    let path = d.join("mt_paas_config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = ConfigLoader::new(&path).vars(|_| None).load().unwrap();
    let framework = ServiceMarketFramework::from_config(config).await.unwrap();
    // hallym, active, with block 0: its app port is PORT_BASE, where the "app" listens.
    let tenants: &TenantManager = framework.tenants();
    let hallym = "hallym".parse().unwrap();
    tenants
        .create(
            mt_paas::NewTenant::new(hallym, "한림대학교").isolation(IsolationMode::DockerPerTenant),
        )
        .await
        .unwrap();
    let block = tenants
        .allocate_port_block(&"hallym".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(block, 0);

    let app_listener = TcpListener::bind(("127.0.0.1", PORT_BASE)).await.unwrap();
    serve(app_listener, Router::new().route("/hello", get(hello))).await;
    let (listener, router_url) = bind_any().await;
    // Its own route `/local` answers here, behind the guard; the rest goes to the app.
    serve(
        listener,
        framework.create_app(Router::new().route("/local", get(hello))),
    )
    .await;
    let forwarder = reqwest::Client::builder().no_proxy().build().unwrap();
    let (listener, bare_url) = bind_any().await;
    serve(
        listener,
        Router::new().fallback(proxy).with_state(forwarder),
    )
    .await;
    let direct_url = format!("http://127.0.0.1:{PORT_BASE}/hello");
    let bare_url = format!("{bare_url}/hello");
    let local_url = format!("{router_url}/local");
    let router_url = format!("{router_url}/hello");

    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let targets = [
        ("the app, directly", direct_url.as_str()),
        ("bare axum + reqwest proxy", bare_url.as_str()),
        (
            "mt-paas guard, answered by a local route",
            local_url.as_str(),
        ),
        (
            "mt-paas tenant router (guard + signed forward)",
            router_url.as_str(),
        ),
    ];
    // The router's answer is the app's, signed for hallym.
    let seen: Value = client
        .get(&router_url)
        .header("x-tenant-id", "hallym")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["tenant"], "hallym", "{seen}");
    for (_, url) in targets {
        run(&client, url).await; // warm-up, discarded
    }
    println!(
        "tenant router, GET with X-Tenant-ID, {CONCURRENCY} clients, best of {ROUNDS} x {SECONDS} s:"
    );
    for (name, url) in targets {
        let mut best = (0.0, Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let result = run(&client, url).await;
            if result.0 > best.0 {
                best = result;
            }
        }
        println!(
            "  {name:<48} {:>8.0} req/s   p50 {:>6.0} us   p99 {:>6.0} us",
            best.0,
            best.1.as_secs_f64() * 1e6,
            best.2.as_secs_f64() * 1e6
        );
    }
}
