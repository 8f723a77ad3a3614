//! Shared test set-up: a fresh central DB per test on SQLite or Postgres, configs written to a
//! temporary directory, and an in-process app driven with `oneshot`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use axum::{Router, body::Body};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use mt_paas::{
    ServiceMarketFramework,
    config::{Config, ConfigLoader},
};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

/// The database engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server that fresh test databases are created on.
pub fn pg_admin_url() -> String {
    std::env::var("MT_PAAS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{}_{n}_{nanos}", std::process::id())
}

/// A fresh central database for one test.
pub struct TestDb {
    pub url: String,
    pub dir: TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    /// `None` when Postgres is down outside CI (the test is skipped with a note); with
    /// `CI=true` a missing Postgres fails the test.
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("central.db").display());
                Some(Self {
                    url,
                    dir,
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let admin = pg_admin_url();
                if let Err(e) = sqlx::PgPool::connect(&admin).await.map(|_| ()) {
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!("Postgres at {admin} is required in CI: {e}");
                    }
                    eprintln!("skipped: Postgres at {admin} is not reachable ({e})");
                    return None;
                }
                let name = format!("mtp_test_{}", unique_suffix());
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                Some(Self {
                    url: format!("{base}/{name}"),
                    dir,
                    pg_name: Some(name),
                })
            }
        }
    }

    /// Drops the Postgres database (SQLite files go with the temp dir).
    pub async fn cleanup(self) {
        if let Some(name) = &self.pg_name
            && let Ok(pool) = sqlx::PgPool::connect(&pg_admin_url()).await
        {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
        }
    }

    /// A config file in the test's directory with this database as the central DB and
    /// `extra` YAML appended (top-level sections other than `database`).
    pub fn write_config(&self, extra: &str) -> PathBuf {
        let tenants = self.dir.path().join("tenants");
        let yaml = format!(
            "database:\n  central:\n    url: \"{}\"\n    pool_size: 4\n  tenant:\n    url_template: \"sqlite://{}/{{tenant_id}}.db\"\n{extra}",
            self.url,
            tenants.display()
        );
        let path = self.dir.path().join("mt_paas_config.yaml");
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    pub fn config(&self, extra: &str) -> Config {
        let path = self.write_config(extra);
        load(&path, &[])
    }
}

/// Loads `path` with the given variables as the whole environment.
pub fn load(path: &Path, vars: &[(&str, &str)]) -> Config {
    loader(path, vars)
        .load()
        .unwrap_or_else(|e| panic!("config should load:\n{e}"))
}

pub fn loader(path: &Path, vars: &[(&str, &str)]) -> ConfigLoader {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ConfigLoader::new(path).vars(move |name| vars.get(name).cloned())
}

/// Runs the async test body once per backend.
macro_rules! on_both_backends {
    ($body:ident) => {
        mod $body {
            #[tokio::test]
            async fn sqlite() {
                super::$body(crate::helpers::Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$body(crate::helpers::Backend::Postgres).await;
            }
        }
    };
}
pub(crate) use on_both_backends;

/// An app built by `create_app`, driven in-process.
pub struct TestApp {
    pub framework: ServiceMarketFramework,
    pub router: Router,
}

/// What a request answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn new(config: Config, routes: Router) -> Self {
        let framework = ServiceMarketFramework::from_config(config)
            .await
            .expect("framework starts");
        let router = framework.create_app(routes);
        Self { framework, router }
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// GET `uri` with `headers` given as raw bytes (so tests can send anything a client can).
    pub async fn get(&self, uri: &str, headers: &[(&str, &[u8])]) -> Answer {
        let mut request = Request::get(uri).body(Body::empty()).expect("request");
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_bytes(value).expect("header value"),
            );
        }
        self.send(request).await
    }
}

impl Answer {
    /// Asserts a problem+json answer with `status` and `code`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {:?}", self.body);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "content type of {:?}",
            self.body
        );
        assert_eq!(self.body["code"], code, "{:?}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
}
