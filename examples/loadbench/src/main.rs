//! `loadbench MODE DIR PORT`: the servers of the HTTP load benchmarks (`benches/load.sh` and
//! `benches/pg.sh` drive them with wrk).
//!
//! - `bare`: axum + sqlx on one SQLite file, `GET /courses` → `SELECT … LIMIT 10` → JSON.
//! - `pg-bare`: the same by hand on Postgres, a schema or a database per tenant (`pg.rs`).
//! - `full`: the same handler behind mt-paas, with `LOADBENCH_TENANTS` (100) tenants `t000…`
//!   in SQLite files, Postgres schemas or Postgres databases (`LOADBENCH_MODE`), behind the
//!   whole guard or identification alone (`LOADBENCH_STACK`; see [`full`]);
//!   `LOADBENCH_BUDGET` is `database.tenant.max_connections` (200). It writes
//!   `DIR/tokens.txt` (one `tenant token` per line) for wrk's scripts.
//! - `market`: the reference market, in a process of its own.
//! - `flood-server`: a service whose control endpoints take the market's signed commands.
//! - `flood`: the signature flood against it (`benches/flood.sh`): four clients sending
//!   commands whose `webhook-signature` is `"v1, "` 95,000 times with a 60 KiB body, while a
//!   probe times `/healthz`; prints the latencies of both, and of `/healthz` alone first.

mod pg;

use std::{path::Path, str::FromStr};

use axum::{Json, Router, extract::State, routing::get};
use mt_paas::{ServiceMarketFramework, TenantDb, config::ConfigLoader, http::ApiError, with_db};
use serde::Serialize;
use serde_json::json;
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};

const PG_MIGRATION: &str = "CREATE TABLE courses (id BIGSERIAL PRIMARY KEY, title TEXT NOT NULL);";
const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The Postgres server of the schema mode; its database is `LOADBENCH_DB` (`mtp_loadbench`).
const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
const MIGRATION: &str =
    "CREATE TABLE courses (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL);";

#[derive(Serialize, sqlx::FromRow)]
pub(crate) struct Course {
    id: i64,
    title: String,
}

async fn bare_courses(State(pool): State<SqlitePool>) -> Result<Json<Vec<Course>>, String> {
    sqlx::query_as("SELECT id, title FROM courses ORDER BY id LIMIT 10")
        .fetch_all(&pool)
        .await
        .map(Json)
        .map_err(|e| e.to_string())
}

async fn full_courses(mut db: TenantDb) -> Result<Json<Vec<Course>>, ApiError> {
    let courses = with_db!(db, conn => {
        sqlx::query_as::<_, Course>("SELECT id, title FROM courses ORDER BY id LIMIT 10").fetch_all(conn).await
    })
    .map_err(ApiError::database)?;
    Ok(Json(courses))
}

/// Ten courses, whatever the engine (`conn` is a SQLite or a Postgres connection).
macro_rules! seed_courses {
    ($conn:expr) => {{
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM courses")
            .fetch_one(&mut *$conn)
            .await?;
        for i in existing..10 {
            sqlx::query("INSERT INTO courses (title) VALUES ($1)")
                .bind(format!("강좌 {i}"))
                .execute(&mut *$conn)
                .await?;
        }
        Ok::<(), anyhow::Error>(())
    }};
}

async fn bare(dir: &Path, port: u16) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}/bare.db", dir.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(10)
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS courses (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    let mut conn = pool.acquire().await?;
    seed_courses!(conn)?;
    drop(conn);
    let app = Router::new()
        .route("/courses", get(bare_courses))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("ready");
    axum::serve(listener, app).await?;
    Ok(())
}

/// The reference market alone, so that the service's memory is measured without it.
async fn market(dir: &Path, port: u16) -> anyhow::Result<()> {
    let mut config = mt_paas_market::MarketConfig::with_database(&format!(
        "sqlite://{}/market.db",
        dir.display()
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    config.seed_dev_data = false;
    let market = mt_paas_market::Market::start(config).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("ready");
    market
        .serve_with_shutdown(listener, mt_paas::shutdown_signal())
        .await?;
    Ok(())
}

/// The mt-paas service of the benchmarks. `LOADBENCH_MODE`: `sqlite` (a file per tenant,
/// the default), `schema` (a schema per tenant in one Postgres database) or `database` (a
/// Postgres database per tenant). `LOADBENCH_STACK`: `full` (the whole guard: JWT, the
/// market's subscription check, kill switch, rate limit, usage, metrics) or `minimal`
/// (identification and `TenantDb` only). Tenants are found by `X-Tenant-ID`, the `Host`'s
/// first label, or (full) the token. `LOADBENCH_CENTRAL` is a directory whose central DB
/// several servers share, so that the tenants are made once.
async fn full(dir: &Path, port: u16) -> anyhow::Result<()> {
    let full_stack = std::env::var("LOADBENCH_STACK").as_deref() != Ok("minimal");
    let http = reqwest::Client::new();
    let market_url = if full_stack {
        // The market runs in its own process (`loadbench market`), with a plan that never
        // limits this load.
        Some(std::env::var("LOADBENCH_MARKET").map_err(|_| {
            anyhow::anyhow!("LOADBENCH_MARKET (the market's URL) is required for the full stack")
        })?)
    } else {
        None
    };
    let post = |path: &str, body: serde_json::Value| {
        let url = format!("{}/api/v1/admin{path}", market_url.as_deref().unwrap_or(""));
        http.post(url)
            .bearer_auth("dev-operator-token")
            .json(&body)
            .send()
    };
    if full_stack {
        post("/plans", json!({"id": "load", "name": "Load", "features": {"courses": true}, "requests_per_minute": 100_000_000})).await?;
        post(
            "/services",
            json!({"id": "loadbench", "name": "Load", "api_key": "load-api-key", "webhook_secret": "whsec_bXQtcGFhcy1kZXYtd2ViaG9vay1zZWNyZXQtMzJieQ=="}),
        )
        .await?;
    }

    let central_dir =
        std::env::var("LOADBENCH_CENTRAL").map_or_else(|_| dir.to_path_buf(), Into::into);
    std::fs::create_dir_all(&central_dir)?;
    let fresh = !central_dir.join("central.db").exists();
    let migrations = central_dir.join("migrations");
    for (engine, sql) in [("sqlite", MIGRATION), ("postgres", PG_MIGRATION)] {
        std::fs::create_dir_all(migrations.join(engine))?;
        std::fs::write(migrations.join(engine).join("0001_courses.sql"), sql)?;
    }
    let mode_env = std::env::var("LOADBENCH_MODE").unwrap_or_else(|_| "sqlite".to_owned());
    let (mode, template) = match mode_env.as_str() {
        "schema" => {
            // Every tenant a schema of one Postgres database, made afresh with the central DB.
            let name = std::env::var("LOADBENCH_DB").unwrap_or_else(|_| "mtp_loadbench".to_owned());
            anyhow::ensure!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "LOADBENCH_DB: lower-case letters and '_' only"
            );
            if fresh {
                let admin = sqlx::PgPool::connect(PG_ADMIN).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&admin)
                .await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin)
                    .await?;
                admin.close().await;
            }
            ("SCHEMA_PER_TENANT", format!("{PG_SERVER}/{name}"))
        }
        "database" => {
            if fresh {
                // Tenant databases of an earlier run would make provisioning fail.
                let admin = sqlx::PgPool::connect(PG_ADMIN).await?;
                let old: Vec<String> = sqlx::query_scalar(
                    "SELECT datname::text FROM pg_database WHERE datname LIKE 'mtp\\_lb\\_t%'",
                )
                .fetch_all(&admin)
                .await?;
                for db in old {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await?;
                }
                admin.close().await;
            }
            (
                "DATABASE_PER_TENANT",
                format!("{PG_SERVER}/mtp_lb_{{tenant_id}}"),
            )
        }
        _ => (
            "DATABASE_PER_TENANT",
            format!(
                "sqlite://{}/tenants/{{tenant_id}}.db",
                central_dir.display()
            ),
        ),
    };
    let market_section = match &market_url {
        Some(url) => format!(
            "marketplace:\n  api_url: \"{url}/api/v1\"\n  api_key: load-api-key\n  subscription_check: true\n  heartbeat_interval: 3600\n"
        ),
        None => String::new(),
    };
    let guard_section = if full_stack {
        "tenant_identification:\n  methods:\n    - type: header\n    - type: subdomain\n    - type: jwt_claim\nauth:\n  jwt:\n    secret: load-secret\n"
    } else {
        "security:\n  rate_limit:\n    enabled: false\n"
    };
    let config_path = dir.join("full.yaml");
    std::fs::write(
        &config_path,
        format!(
            "service:\n  id: loadbench\nisolation:\n  mode: {mode}\n{market_section}database:\n  central:\n    url: \"sqlite://{d}/central.db\"\n  tenant:\n    url_template: \"{template}\"\n    max_connections: {budget}\n    pool_size_per_tenant: {per_tenant}\n    idle_timeout_seconds: {idle}\n    migrations: \"{m}\"\n    migrate_on_start: false\n{guard_section}logging:\n  level: WARN\n",
            d = central_dir.display(),
            m = migrations.display(),
            budget = std::env::var("LOADBENCH_BUDGET").unwrap_or_else(|_| "200".to_owned()),
            idle = std::env::var("LOADBENCH_IDLE").unwrap_or_else(|_| "300".to_owned()),
            per_tenant = pg::per_tenant(),
        ),
    )?;
    let config = ConfigLoader::new(&config_path).vars(|_| None).load()?;
    let framework = ServiceMarketFramework::from_config(config).await?;
    let keys = mt_paas::JwtKeys::from_config(&framework.config().auth.jwt);
    let mut tokens = String::new();
    let tenants: usize = std::env::var("LOADBENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    for tenant in pg::tenant_ids(tenants) {
        if full_stack {
            post("/tenants", json!({"id": tenant, "name": tenant})).await?;
            post("/subscriptions", json!({"service_id": "loadbench", "tenant_id": tenant, "plan_id": "load", "provision": false})).await?;
        }
        if framework.tenants().get(&tenant.parse()?).await?.is_none() {
            framework
                .provisioner()
                .create(tenant.parse()?, &tenant, None)
                .await?;
            let resolved = framework
                .tenants()
                .resolve(&tenant.parse()?)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .ok_or_else(|| anyhow::anyhow!("{tenant} is not registered"))?;
            let mut db = framework.databases().acquire(&resolved).await?;
            with_db!(db, conn => seed_courses!(conn))?;
        }
        let token = match &keys {
            Some(keys) => {
                let claims = json!({"sub": format!("user-{tenant}"), "tenant_id": tenant});
                keys.issue(claims.as_object().cloned().unwrap_or_default())?
            }
            None => "-".to_owned(),
        };
        tokens.push_str(&format!("{tenant} {token}\n"));
    }
    std::fs::write(dir.join("tokens.txt"), tokens)?;
    if let Some(entitlements) = framework.entitlements() {
        entitlements.sync().await?;
    }
    let app = framework.create_app(Router::new().route("/courses", get(full_courses)));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("ready");
    framework
        .serve_with_shutdown(listener, app, mt_paas::shutdown_signal())
        .await?;
    Ok(())
}

/// A service with signed control endpoints and nothing else.
async fn flood_server(dir: &Path, port: u16) -> anyhow::Result<()> {
    let config_path = dir.join("flood.yaml");
    std::fs::write(
        &config_path,
        format!(
            "service:\n  id: flood\nmarketplace:\n  webhook_secret: \"whsec_bXQtcGFhcy1kZXYtd2ViaG9vay1zZWNyZXQtMzJieQ==\"\ndatabase:\n  central:\n    url: \"sqlite://{d}/central.db\"\n  tenant:\n    url_template: \"sqlite://{d}/tenants/{{tenant_id}}.db\"\n    migrations: null\nlogging:\n  level: ERROR\n",
            d = dir.display(),
        ),
    )?;
    let config = ConfigLoader::new(&config_path).vars(|_| None).load()?;
    let framework = ServiceMarketFramework::from_config(config).await?;
    let app = framework.create_app(Router::new());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("ready");
    framework
        .serve_with_shutdown(listener, app, mt_paas::shutdown_signal())
        .await?;
    Ok(())
}

/// Latency figures of `samples` (milliseconds): p50, p99, max.
fn figures(samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or(f64::NAN)
    };
    format!(
        "n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        samples.len(),
        at(0.5),
        at(0.99),
        samples.last().copied().unwrap_or(f64::NAN)
    )
}

async fn probe(url: String, until: std::time::Instant) -> anyhow::Result<Vec<f64>> {
    let http = reqwest::Client::new();
    let mut samples = Vec::new();
    while std::time::Instant::now() < until {
        let started = std::time::Instant::now();
        http.get(&url).send().await?.bytes().await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(samples)
}

async fn flood(port: u16) -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("FLOOD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let base = format!("http://127.0.0.1:{port}");
    let health = format!("{base}/healthz");
    let quiet = probe(
        health.clone(),
        std::time::Instant::now() + std::time::Duration::from_secs(2),
    )
    .await?;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let signature = "v1, ".repeat(95_000);
    let body = vec![b' '; 60 * 1024];
    let mut floods = Vec::new();
    for client in 0..4 {
        let (url, signature, body) = (
            format!("{base}/api/v1/services/flood/tenants/hallym/block"),
            signature.clone(),
            body.clone(),
        );
        floods.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut samples = Vec::new();
            let mut n = 0u64;
            while std::time::Instant::now() < until {
                n += 1;
                let started = std::time::Instant::now();
                let status = http
                    .post(&url)
                    .header("webhook-id", format!("msg_{client}_{n}"))
                    .header(
                        "webhook-timestamp",
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)?
                            .as_secs()
                            .to_string(),
                    )
                    .header("webhook-signature", &signature)
                    .body(body.clone())
                    .send()
                    .await?
                    .status();
                anyhow::ensure!(status == 401, "a flood request got {status}");
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let mut busy = probe(health, until).await?;
    let mut refused = Vec::new();
    for flood in floods {
        refused.extend(flood.await??);
    }
    let mut quiet = quiet;
    println!("/healthz alone:          {}", figures(&mut quiet));
    println!("/healthz under the flood: {}", figures(&mut busy));
    println!(
        "flood requests (4 clients, {} KiB header + 60 KiB body, all 401): {}",
        signature.len() / 1024,
        figures(&mut refused)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(dir), Some(port)) = (args.get(1), args.get(2), args.get(3)) else {
        anyhow::bail!("usage: loadbench bare|full|pg-bare|market|flood-server|flood DIR PORT");
    };
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir)?;
    let port: u16 = port.parse()?;
    match mode.as_str() {
        "bare" => bare(dir, port).await,
        "full" => full(dir, port).await,
        "pg-bare" => pg::pg_bare(port).await,
        "market" => market(dir, port).await,
        "flood-server" => flood_server(dir, port).await,
        "flood" => flood(port).await,
        other => anyhow::bail!(
            "unknown mode {other}: bare, full, pg-bare, market, flood-server or flood"
        ),
    }
}
