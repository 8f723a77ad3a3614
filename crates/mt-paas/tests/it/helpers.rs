//! Shared test set-up: a fresh central DB per test on SQLite or Postgres, configs written to a
//! temporary directory, and an in-process app driven with `oneshot`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use axum::{Json, Router, body::Body, routing::get};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use mt_paas::{
    ServiceMarketFramework, Tenant, TenantDb,
    config::{Config, ConfigLoader},
    http::ApiError,
    with_db,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
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

/// Where a test's tenant databases live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A SQLite file per tenant.
    SqliteFiles,
    /// A Postgres database per tenant.
    PgDatabases,
    /// A schema per tenant in the test's Postgres database.
    PgSchemas,
}

impl Store {
    pub fn backend(self) -> Backend {
        match self {
            Self::SqliteFiles => Backend::Sqlite,
            Self::PgDatabases | Self::PgSchemas => Backend::Postgres,
        }
    }
}

/// The fixture migrations (a `notes` table) for tenant databases.
pub fn notes_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notes")
}

/// A fresh central database for one test.
pub struct TestDb {
    pub url: String,
    pub dir: TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    /// Always `Some`: the suites need the local Postgres, so one that does not answer fails
    /// the test with the way to start it (never a silent "ok").
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
                    panic!(
                        "Postgres at {admin} is not reachable ({e}): the suites need it (`bash .ci/test` starts it)"
                    );
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

    /// Drops the Postgres database and its tenants' databases (SQLite files go with the
    /// temp dir).
    pub async fn cleanup(self) {
        if let Some(name) = &self.pg_name
            && let Ok(pool) = sqlx::PgPool::connect(&pg_admin_url()).await
        {
            let tenant_dbs: Vec<String> = sqlx::query_scalar(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            )
            .bind(format!("{name}_t_"))
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            for db in tenant_dbs.iter().chain(std::iter::once(name)) {
                let sql = format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
            }
        }
    }

    /// The Postgres databases of this test's tenants (DATABASE_PER_TENANT on Postgres).
    pub async fn tenant_databases(&self) -> Vec<String> {
        let Some(name) = &self.pg_name else {
            return Vec::new();
        };
        let pool = sqlx::PgPool::connect(&pg_admin_url()).await.unwrap();
        sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
        )
        .bind(format!("{name}_t_"))
        .fetch_all(&pool)
        .await
        .unwrap()
    }

    /// A config whose tenant databases live in `store`, with the `notes` migrations, a
    /// connection budget of `budget`, and `extra` YAML (sections other than `database`).
    pub fn tenant_config(&self, store: Store, budget: u32, extra: &str) -> Config {
        self.tenant_config_with(store, budget, "", extra)
    }

    /// [`tenant_config`](Self::tenant_config) with `database_extra` YAML inside `database:`
    /// (e.g. a `  vector:` section).
    pub fn tenant_config_with(
        &self,
        store: Store,
        budget: u32,
        database_extra: &str,
        extra: &str,
    ) -> Config {
        let extra = &with_high_rate_limit(extra);
        let tenants = self.dir.path().join("tenants");
        let base = pg_admin_url();
        let server = base.rsplit_once('/').map_or(base.as_str(), |(b, _)| b);
        let (mode, template, schema_url) = match store {
            Store::SqliteFiles => (
                "DATABASE_PER_TENANT",
                format!("sqlite://{}/{{tenant_id}}.db", tenants.display()),
                String::new(),
            ),
            Store::PgDatabases => (
                "DATABASE_PER_TENANT",
                format!(
                    "{server}/{}_t_{{tenant_id}}",
                    self.pg_name.as_deref().unwrap_or("none")
                ),
                String::new(),
            ),
            Store::PgSchemas => (
                "SCHEMA_PER_TENANT",
                format!("sqlite://{}/{{tenant_id}}.db", tenants.display()),
                format!("    schema_url: \"{}\"\n", self.url),
            ),
        };
        let yaml = format!(
            "isolation:\n  mode: {mode}\ndatabase:\n  central:\n    url: \"{central}\"\n    pool_size: 4\n  tenant:\n    url_template: \"{template}\"\n{schema_url}    max_connections: {budget}\n    pool_size_per_tenant: {per_tenant}\n    acquire_timeout_ms: 20000\n    migrations: \"{migrations}\"\n{database_extra}provisioning:\n  archive_dir: \"{archive}\"\n{extra}",
            central = self.url,
            per_tenant = budget.min(4),
            migrations = notes_migrations().display(),
            archive = self.dir.path().join("archive").display(),
        );
        let path = self.dir.path().join("mt_paas_config.yaml");
        std::fs::write(&path, yaml).expect("write config");
        load(&path, &[])
    }

    /// A config file in the test's directory with this database as the central DB and
    /// `extra` YAML appended (top-level sections other than `database`). Tests that are not
    /// about rate limits get a limit they never reach.
    pub fn write_config(&self, extra: &str) -> PathBuf {
        let extra = &with_high_rate_limit(extra);
        let tenants = self.dir.path().join("tenants");
        let yaml = format!(
            "database:\n  central:\n    url: \"{}\"\n    pool_size: 4\n  tenant:\n    url_template: \"sqlite://{}/{{tenant_id}}.db\"\n    migrations: null\n{extra}",
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

fn with_high_rate_limit(extra: &str) -> String {
    if extra.contains("security:") {
        extra.to_owned()
    } else {
        format!(
            "{extra}\nsecurity:\n  rate_limit:\n    default_rpm: 1000000\n    anonymous_rpm: 1000000\n"
        )
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

// ------------------------------------------------------------ the notes app

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, PartialEq, Eq, PartialOrd, Ord, Clone)]
pub struct Note {
    pub tenant: String,
    pub value: i64,
}

#[derive(Debug, Deserialize)]
struct NoteIn {
    value: i64,
}

async fn list_notes(mut db: TenantDb) -> Result<Json<Vec<Note>>, ApiError> {
    let notes = with_db!(db, conn => {
        sqlx::query_as::<_, Note>("SELECT tenant, value FROM notes ORDER BY id").fetch_all(conn).await
    })
    .map_err(ApiError::database)?;
    Ok(Json(notes))
}

async fn add_note(
    tenant: Tenant,
    mut db: TenantDb,
    Json(input): Json<NoteIn>,
) -> Result<Json<Note>, ApiError> {
    let note = with_db!(db, conn => {
        sqlx::query_as::<_, Note>("INSERT INTO notes (tenant, value) VALUES ($1, $2) RETURNING tenant, value")
            .bind(tenant.id().as_str())
            .bind(input.value)
            .fetch_one(conn)
            .await
    })
    .map_err(ApiError::database)?;
    Ok(Json(note))
}

/// `GET /notes` (the tenant's notes) and `POST /notes` (`{"value": n}`), on the tenant's
/// database (the fixture migrations' `notes` table).
pub fn notes_routes() -> Router {
    Router::new().route("/notes", get(list_notes).post(add_note))
}

pub async fn write_note(app: &TestApp, tenant: &str, value: i64) {
    write(app, tenant, value).await;
}

/// The (tenant, value) rows a tenant reads.
pub async fn read_notes(app: &TestApp, tenant: &str) -> Vec<(String, i64)> {
    read(app, tenant)
        .await
        .into_iter()
        .map(|n| (n.tenant, n.value))
        .collect()
}

pub async fn write(app: &TestApp, tenant: &str, value: i64) {
    let request = Request::post("/notes")
        .header("x-tenant-id", tenant)
        .header("content-type", "application/json")
        .body(Body::from(json!({ "value": value }).to_string()))
        .unwrap();
    let answer = app.send(request).await;
    assert_eq!(answer.status, 200, "write {tenant}: {:?}", answer.body);
    assert_eq!(answer.body["tenant"], tenant);
}

pub async fn read(app: &TestApp, tenant: &str) -> Vec<Note> {
    let answer = app
        .get("/notes", &[("x-tenant-id", tenant.as_bytes())])
        .await;
    assert_eq!(answer.status, 200, "read {tenant}: {:?}", answer.body);
    serde_json::from_value(answer.body).unwrap()
}

// ------------------------------------------------------------ isolation under interleaving

#[derive(Debug, Clone)]
pub enum Op {
    Write(usize),
    Read(usize),
}

pub fn ops(tenants: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            (0..tenants).prop_map(Op::Write),
            (0..tenants).prop_map(Op::Read),
        ],
        40..120,
    )
}

/// Random interleavings (proptest, `cases` runs) of writes and reads by `tenants` through
/// HTTP, 16 at a time: every read sees only its own tenant's rows, and after each run every
/// tenant holds exactly what it wrote. Blocks on `runtime` (call it from a thread that may
/// block).
pub fn interleaved_isolation(
    runtime: &tokio::runtime::Handle,
    app: &std::sync::Arc<TestApp>,
    tenants: &[String],
    cases: u32,
) {
    use std::{
        collections::{BTreeMap, BTreeSet},
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
    };
    let tenants: Vec<String> = tenants.to_vec();
    let written: Arc<std::sync::Mutex<BTreeMap<usize, BTreeSet<i64>>>> = Arc::default();
    let next_value = Arc::new(AtomicUsize::new(1));

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    runner
        .run(&ops(tenants.len()), |ops| {
            runtime.block_on(async {
                for chunk in ops.chunks(16) {
                    let mut tasks = Vec::new();
                    for op in chunk.iter().cloned() {
                        let app = app.clone();
                        let tenants = tenants.clone();
                        let written = written.clone();
                        let next_value = next_value.clone();
                        tasks.push(tokio::spawn(async move {
                            match op {
                                Op::Write(t) => {
                                    let value =
                                        i64::try_from(next_value.fetch_add(1, Ordering::SeqCst))
                                            .unwrap();
                                    write(&app, &tenants[t], value).await;
                                    written.lock().unwrap().entry(t).or_default().insert(value);
                                }
                                Op::Read(t) => {
                                    for note in read(&app, &tenants[t]).await {
                                        assert_eq!(
                                            note.tenant, tenants[t],
                                            "{} read a row of {}",
                                            tenants[t], note.tenant
                                        );
                                    }
                                }
                            }
                        }));
                    }
                    for task in tasks {
                        task.await.unwrap();
                    }
                }
                for (t, name) in tenants.iter().enumerate() {
                    let got: BTreeSet<i64> =
                        read(app, name).await.into_iter().map(|n| n.value).collect();
                    let want = written.lock().unwrap().get(&t).cloned().unwrap_or_default();
                    assert_eq!(got, want, "{name} holds exactly its own rows");
                }
            });
            Ok(())
        })
        .unwrap();
}
