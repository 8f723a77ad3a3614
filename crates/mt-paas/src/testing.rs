//! Helpers for testing a service built on mt-paas (feature `testing`): a configuration whose
//! data lives in a temporary directory, the service served in-process on a random port, an
//! HTTP client that speaks as a tenant, tenants provisioned with the vendor's migrations, and
//! the service's own tokens.
//!
//! ```toml
//! [dev-dependencies]
//! mt-paas = { path = "../mt-paas/crates/mt-paas", features = ["testing"] }
//! ```
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use mt_paas::{
//!     Tenant,
//!     http::ApiError,
//!     testing::{TestConfig, TestService},
//! };
//! use serde_json::{Value, json};
//!
//! async fn quiz(tenant: Tenant) -> Result<Json<Value>, ApiError> {
//!     tenant.require_feature("quiz")?;
//!     Ok(Json(json!({ "tenant": tenant.id() })))
//! }
//!
//! #[tokio::main] // `#[tokio::test]` in a test file
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = TestConfig::new()
//!         .yaml("features:\n  defaults:\n    quiz: true\n")
//!         .migrations("migrations") // the crate's own, relative to the crate root
//!         .load()?;
//!     let service = TestService::start(config, Router::new().route("/quiz", get(quiz))).await?;
//!     service.create_tenant("hallym", "한림대학교").await?;
//!
//!     let response = service.as_tenant("hallym").get("/quiz").send().await?;
//!     assert_eq!(response.status(), 200);
//!     assert_eq!(response.json()["tenant"], "hallym");
//!
//!     // The whole pipeline runs: an unknown tenant is a 404 problem.
//!     let response = service.as_tenant("nobody").get("/quiz").send().await?;
//!     assert_eq!(response.status(), 404);
//!     assert_eq!(response.json()["code"], "tenant_not_found");
//!
//!     service.stop().await?;
//!     Ok(())
//! }
//! ```
//!
//! Every service gets its own temporary directory (central DB, one SQLite file per tenant,
//! archives), removed when the service is dropped, so tests run in parallel without sharing
//! anything. `mt_paas_market::testing` (feature `testing` of `mt-paas-market`) adds the
//! reference market, in-process, for tests of subscriptions, plans, blocks and market tokens.

use std::{
    collections::BTreeMap,
    future::Future,
    net::{Ipv4Addr, SocketAddr},
    ops::{Deref, DerefMut},
    path::{Path, PathBuf},
    pin::Pin,
    time::Duration,
};

use axum::Router;
use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use yaml_serde::{Mapping, Value as Yaml};

use crate::{
    InvalidTenantId, JwtKeys, ServiceMarketFramework, TenantId, TenantRecord,
    config::{Config, ConfigError, ConfigLoader, ConfigProblem, IdentificationMethod, merge},
    provisioning::{ProvisionError, Provisioned},
};

/// The `auth.jwt.secret` of a [`TestConfig`] unless its YAML sets another: the service's
/// own HS256 tokens work in tests without configuring anything.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = mt_paas::testing::TestConfig::new().load()?;
/// let secret = config.auth.jwt.secret.as_ref().map(|s| s.expose());
/// assert_eq!(secret, Some(mt_paas::testing::TEST_JWT_SECRET));
/// # Ok(()) }
/// ```
pub const TEST_JWT_SECRET: &str = "mt-paas-testing-jwt-secret";

/// How long a dropped [`Serving`] may drain in-flight requests before its server task is
/// aborted.
const DROP_DRAIN: Duration = Duration::from_secs(10);
/// How long [`Serving::stop`] waits for the graceful shutdown (requests, outbox flush).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// A server running in the background of a test (a [`TestService`]'s, a test market's):
/// [`stop`](Self::stop) shuts it down gracefully and reports how it ended; dropping it starts
/// the same shutdown in the background and aborts the server task if a request never ends.
pub struct Serving<E> {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), E>>>,
}

impl<E> std::fmt::Debug for Serving<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("running", &self.task.is_some())
            .finish()
    }
}

impl<E: Send + 'static> Serving<E> {
    /// Runs `serve` in the background; the future it is given completes when the server
    /// should shut down.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() {
    /// use mt_paas::testing::Serving;
    ///
    /// let serving = Serving::spawn(|shutdown| async move {
    ///     shutdown.await;
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// assert!(serving.stop().await.unwrap().is_ok());
    /// # }
    /// ```
    pub fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        // A dropped sender ends the wait too.
        let shutdown = Box::pin(async {
            let _ = stopped.await;
        });
        Self {
            stop: Some(stop),
            task: Some(tokio::spawn(serve(shutdown))),
        }
    }

    /// Asks for a graceful shutdown and waits for it (at most twenty seconds): the server's
    /// own result, or why it did not end cleanly.
    pub async fn stop(mut self) -> Result<Result<(), E>, String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Ok(Ok(()));
        };
        match tokio::time::timeout(STOP_TIMEOUT, &mut task).await {
            Ok(Ok(served)) => Ok(served),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                task.abort();
                Err(format!(
                    "still draining after {} s; aborted",
                    STOP_TIMEOUT.as_secs()
                ))
            }
        }
    }
}

impl<E> Drop for Serving<E> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else {
            return;
        };
        // The graceful shutdown waits for in-flight requests: one that never ends must not
        // keep the server task, and its port, alive for the rest of the test run.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let abort = task.abort_handle();
                runtime.spawn(async move {
                    tokio::time::sleep(DROP_DRAIN).await;
                    abort.abort();
                });
            }
            Err(_) => task.abort(),
        }
    }
}

/// How often [`eventually`] checks.
const POLL: Duration = Duration::from_millis(50);

/// Why a test helper failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestError {
    /// The temporary directory or the listener could not be set up.
    #[error("test set-up: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration is invalid; every problem is listed.
    #[error("invalid test configuration:\n{0}")]
    Config(#[from] ConfigError),
    /// The framework failed to start, or its server failed.
    #[error(transparent)]
    Framework(#[from] crate::Error),
    /// A tenant id is not valid.
    #[error("tenant id: {0}")]
    TenantId(#[from] InvalidTenantId),
    /// Provisioning a tenant failed.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// `auth.jwt.secret` is empty, so the service issues no tokens.
    #[error("auth.jwt.secret is not set, so the service has no key to sign tokens with")]
    NoJwtSecret,
    /// The claims of a token are not a JSON object.
    #[error("token claims: {0}")]
    Claims(String),
    /// An HTTP request could not be sent or its answer not read.
    #[error("HTTP request: {0}")]
    Http(#[from] reqwest::Error),
    /// The server did not stop in time, or its task panicked.
    #[error("the test server did not stop cleanly: {0}")]
    Stop(String),
}

/// Builds a [`Config`] for a test: the embedded defaults, the service's data in a fresh
/// temporary directory, then the test's own YAML.
///
/// What the kit sets (each can be overridden by [`yaml`](Self::yaml)):
/// `database.central.url` and `database.tenant.url_template` are SQLite files in the temporary
/// directory (`central.db`, `tenants/{tenant_id}.db`), as are `provisioning.archive_dir` and
/// `isolation.docker.tenants_dir`; `service.listen` is `127.0.0.1:0`; `auth.jwt.secret` is
/// [`TEST_JWT_SECRET`]. Everything else takes the embedded defaults.
///
/// Relative paths of the service's own files in the YAML (`database.tenant.migrations`,
/// `database.tenant.seed`, `isolation.docker.compose_template`, `env_template`) are taken from
/// the current directory, which `cargo test` sets to the crate's root. `${VAR}` reads only
/// what [`var`](Self::var) gives, never the process environment, so a test does not depend on
/// the machine it runs on.
///
/// ```
/// use mt_paas::{IsolationMode, testing::TestConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = TestConfig::new()
///     .yaml("service:\n  id: courses\n")
///     .yaml("features:\n  defaults:\n    quiz: true\n") // layers merge in order
///     .load()?;
/// assert_eq!(config.service.id, "courses");
/// assert!(config.features.defaults["quiz"]);
/// assert_eq!(config.isolation.mode, IsolationMode::DatabasePerTenant);
/// assert!(config.database.central.url.expose().starts_with("sqlite://"));
/// assert!(config.dir().exists());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct TestConfig {
    layers: Vec<String>,
    migrations: Option<PathBuf>,
    vars: BTreeMap<String, String>,
}

impl TestConfig {
    /// A configuration of the embedded defaults with the data in a temporary directory.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = mt_paas::testing::TestConfig::new().load()?;
    /// assert_eq!(config.service.id, "mt_paas_service");
    /// # Ok(()) }
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a YAML layer, deep-merged over the layers before it (mappings key by key,
    /// anything else replaces), like an overlay file.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = mt_paas::testing::TestConfig::new()
    ///     .yaml("security:\n  rate_limit:\n    default_rpm: 5\n")
    ///     .load()?;
    /// assert_eq!(config.security.rate_limit.default_rpm, 5);
    /// assert!(config.security.rate_limit.enabled, "keys left out keep their defaults");
    /// # Ok(()) }
    /// ```
    pub fn yaml(mut self, yaml: impl Into<String>) -> Self {
        self.layers.push(yaml.into());
        self
    }

    /// Sets `database.tenant.migrations`, the service's migrations run on every tenant it
    /// provisions; a relative path is taken from the current directory (the crate's root
    /// under `cargo test`); it must exist. Without it, tenants start without tables.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = mt_paas::testing::TestConfig::new().migrations("migrations").load()?;
    /// let dir = config.database.tenant.migrations.as_ref().unwrap();
    /// assert!(dir.is_absolute() && dir.ends_with("migrations"));
    /// # Ok(()) }
    /// ```
    pub fn migrations(mut self, dir: impl Into<PathBuf>) -> Self {
        self.migrations = Some(dir.into());
        self
    }

    /// Gives `${name}` the value `value` in the YAML.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = mt_paas::testing::TestConfig::new()
    ///     .yaml("service:\n  name: ${SERVICE_NAME}\n")
    ///     .var("SERVICE_NAME", "Courses")
    ///     .load()?;
    /// assert_eq!(config.service.name, "Courses");
    /// # Ok(()) }
    /// ```
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Creates the temporary directory, writes the merged YAML into it as
    /// `mt_paas_config.yaml`, and loads it like a service's configuration (every problem at
    /// once, each naming its key).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let error = mt_paas::testing::TestConfig::new()
    ///     .yaml("isolation:\n  mode: DATABASE_PER_TENAT\n")
    ///     .load()
    ///     .unwrap_err();
    /// assert!(error.to_string().contains("isolation.mode"), "{error}");
    /// # Ok(()) }
    /// ```
    pub fn load(self) -> Result<LoadedConfig, TestError> {
        let dir = tempfile::Builder::new().prefix("mt-paas-test-").tempdir()?;
        let cwd = std::env::current_dir()?;
        let mut tree = kit_layer(dir.path());
        for (i, text) in self.layers.iter().enumerate() {
            let mut layer = parse_layer(i, text)?;
            absolutize_sources(&mut layer, &cwd);
            merge(&mut tree, layer);
        }
        if let Some(migrations) = &self.migrations {
            let path = cwd.join(migrations);
            set(
                &mut tree,
                &["database", "tenant", "migrations"],
                Yaml::String(path.display().to_string()),
            );
        }
        let path = dir.path().join("mt_paas_config.yaml");
        let text = yaml_serde::to_string(&tree).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)?;
        let vars = self.vars;
        let config = ConfigLoader::new(&path)
            .env(None)
            .vars(move |name| vars.get(name).cloned())
            .load()?;
        Ok(LoadedConfig { config, dir })
    }
}

/// The kit's own settings: where the data lives.
fn kit_layer(dir: &Path) -> Yaml {
    let mut tree = Yaml::Mapping(Mapping::new());
    let d = dir.display();
    for (path, value) in [
        (&["service", "listen"][..], "127.0.0.1:0".to_owned()),
        (
            &["database", "central", "url"][..],
            format!("sqlite://{d}/central.db"),
        ),
        (
            &["database", "tenant", "url_template"][..],
            format!("sqlite://{d}/tenants/{{tenant_id}}.db"),
        ),
        (
            &["isolation", "docker", "tenants_dir"][..],
            format!("{d}/stacks"),
        ),
        (&["provisioning", "archive_dir"][..], format!("{d}/archive")),
        (&["auth", "jwt", "secret"][..], TEST_JWT_SECRET.to_owned()),
    ] {
        set(&mut tree, path, Yaml::String(value));
    }
    // No tables of the service's own unless `migrations(..)` names them.
    set(&mut tree, &["database", "tenant", "migrations"], Yaml::Null);
    tree
}

fn parse_layer(index: usize, text: &str) -> Result<Yaml, ConfigError> {
    let problem = |message: String| ConfigError {
        problems: vec![ConfigProblem {
            file: format!("TestConfig::yaml (layer {})", index + 1),
            key: String::new(),
            message,
        }],
    };
    match yaml_serde::from_str::<Yaml>(text) {
        Ok(Yaml::Null) => Ok(Yaml::Mapping(Mapping::new())),
        Ok(layer @ Yaml::Mapping(_)) => Ok(layer),
        Ok(_) => Err(problem(
            "the top level must be a mapping of sections (service:, database:, ...)".to_owned(),
        )),
        Err(e) => Err(problem(format!("invalid YAML: {e}"))),
    }
}

/// The service's own files named in a layer, made absolute from `base`: the written file
/// lives in the temporary directory, where a relative path would find nothing.
fn absolutize_sources(layer: &mut Yaml, base: &Path) {
    for path in [
        &["database", "tenant", "migrations"][..],
        &["database", "tenant", "seed"][..],
        &["isolation", "docker", "compose_template"][..],
        &["isolation", "docker", "env_template"][..],
    ] {
        if let Some(Yaml::String(value)) = get_mut(layer, path)
            && !value.is_empty()
            && Path::new(value.as_str()).is_relative()
            && !value.contains("${")
        {
            *value = base.join(value.as_str()).display().to_string();
        }
    }
}

fn get_mut<'a>(mut value: &'a mut Yaml, path: &[&str]) -> Option<&'a mut Yaml> {
    for key in path {
        value = match value {
            Yaml::Mapping(map) => map.get_mut(*key)?,
            _ => return None,
        };
    }
    Some(value)
}

fn set(tree: &mut Yaml, path: &[&str], value: Yaml) {
    let mut layer = value;
    for key in path.iter().rev() {
        let mut map = Mapping::new();
        map.insert(Yaml::String((*key).to_owned()), layer);
        layer = Yaml::Mapping(map);
    }
    merge(tree, layer);
}

/// A loaded [`Config`] and the temporary directory its data lives in, removed when this is
/// dropped (or, given to [`TestService::start`], when the service is). It dereferences to the
/// [`Config`], so a test can read or adjust any setting before starting the service.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = mt_paas::testing::TestConfig::new().load()?;
/// config.security.rate_limit.enabled = false;
/// assert!(config.dir().join("mt_paas_config.yaml").exists());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LoadedConfig {
    config: Config,
    dir: TempDir,
}

impl LoadedConfig {
    /// The temporary directory: `mt_paas_config.yaml`, `central.db`, `tenants/`, `archive/`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = mt_paas::testing::TestConfig::new().load()?;
    /// let central = config.database.central.url.expose().to_owned();
    /// assert!(central.contains(&*config.dir().to_string_lossy()));
    /// # Ok(()) }
    /// ```
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Deref for LoadedConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
}

impl DerefMut for LoadedConfig {
    fn deref_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

/// A service served in-process on `127.0.0.1` on a port of its own:
/// [`ServiceMarketFramework::from_config`] and [`create_app`](ServiceMarketFramework::create_app)
/// over the test's router, as in production.
///
/// [`stop`](Self::stop) shuts it down gracefully (in-flight requests, the outbox) and reports
/// how it ended. Dropping it starts the same shutdown in the background and aborts the server
/// if requests are still running after ten seconds; its temporary directory is removed.
///
/// ```
/// use axum::{Router, routing::get};
/// use mt_paas::testing::{TestConfig, TestService};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = Router::new().route("/ping", get(|| async { "pong" }));
/// let service = TestService::start(TestConfig::new().load()?, router).await?;
/// assert!(service.url().starts_with("http://127.0.0.1:"));
///
/// service.create_tenant("hallym", "한림대학교").await?;
/// let response = service.as_tenant("hallym").get("/ping").send().await?;
/// assert_eq!((response.status().as_u16(), response.text()), (200, "pong"));
/// service.stop().await?;
/// # Ok(()) }
/// ```
pub struct TestService {
    framework: ServiceMarketFramework,
    addr: SocketAddr,
    url: String,
    client: TestClient,
    serving: Serving<crate::Error>,
    // Dropped last: the server may still write to it while it stops.
    config: LoadedConfig,
}

impl std::fmt::Debug for TestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestService")
            .field("service", &self.framework.config().service.id)
            .field("url", &self.url)
            .field("dir", &self.config.dir())
            .finish_non_exhaustive()
    }
}

impl TestService {
    /// Starts the framework with `config` and serves `router` through its pipeline on a free
    /// port of `127.0.0.1`.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let health = service.client().get("/healthz").send().await?;
    /// assert_eq!(health.json()["status"], "ok");
    /// # Ok(()) }
    /// ```
    pub async fn start(config: LoadedConfig, router: Router) -> Result<Self, TestError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Self::start_on(listener, config, router).await
    }

    /// Like [`start`](Self::start), on a listener bound beforehand: for when the service's
    /// URL must be known before it starts (a market that pushes commands to it).
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let url = format!("http://{}", listener.local_addr()?);
    /// let service =
    ///     TestService::start_on(listener, TestConfig::new().load()?, axum::Router::new()).await?;
    /// assert_eq!(service.url(), url);
    /// # Ok(()) }
    /// ```
    pub async fn start_on(
        listener: TcpListener,
        config: LoadedConfig,
        router: Router,
    ) -> Result<Self, TestError> {
        let addr = listener.local_addr()?;
        let framework = ServiceMarketFramework::from_config(config.config.clone()).await?;
        let app = framework.create_app(router);
        let server = framework.clone();
        let serving = Serving::spawn(move |shutdown| async move {
            server.serve_with_shutdown(listener, app, shutdown).await
        });
        let url = format!("http://{addr}");
        let mut client = TestClient::new(&url);
        client.tenant_header = tenant_header(&config);
        Ok(Self {
            framework,
            addr,
            url,
            client,
            serving,
            config,
        })
    }

    /// The service's base URL, `http://127.0.0.1:{port}`.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let body = reqwest::get(format!("{}/healthz", service.url())).await?.text().await?;
    /// assert!(body.contains("ok"));
    /// # Ok(()) }
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the service listens on.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// assert!(service.addr().ip().is_loopback());
    /// # Ok(()) }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The framework behind the service: its registry, provisioner, kill switch, outbox...
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// service.create_tenant("korea", "고려대학교").await?;
    /// assert_eq!(service.framework().tenants().count().await?, 1);
    /// # Ok(()) }
    /// ```
    pub fn framework(&self) -> &ServiceMarketFramework {
        &self.framework
    }

    /// The service's configuration.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = TestConfig::new().yaml("service:\n  id: courses\n").load()?;
    /// let service = TestService::start(config, axum::Router::new()).await?;
    /// assert_eq!(service.config().service.id, "courses");
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &Config {
        self.framework.config()
    }

    /// The service's temporary directory (see [`LoadedConfig::dir`]).
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// service.create_tenant("snu", "서울대학교").await?;
    /// assert!(service.dir().join("tenants/snu.db").exists());
    /// # Ok(()) }
    /// ```
    pub fn dir(&self) -> &Path {
        self.config.dir()
    }

    /// A client of the service without a tenant (for `/healthz`, `/readyz`, or to test what a
    /// request that names no tenant gets).
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let router = axum::Router::new().route("/courses", axum::routing::get(|| async { "[]" }));
    /// # let service = TestService::start(TestConfig::new().load()?, router).await?;
    /// let response = service.client().get("/courses").send().await?;
    /// assert_eq!(response.status(), 400);
    /// assert_eq!(response.json()["code"], "tenant_required");
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> TestClient {
        self.client.clone()
    }

    /// A client whose requests name `tenant_id` in the tenant header of the configuration
    /// (the first `header` method of `tenant_identification`, `X-Tenant-ID` without one).
    ///
    /// ```
    /// # use mt_paas::{Tenant, testing::{TestConfig, TestService}};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let router = axum::Router::new()
    /// #     .route("/whoami", axum::routing::get(|t: Tenant| async move { t.name().to_owned() }));
    /// # let service = TestService::start(TestConfig::new().load()?, router).await?;
    /// service.create_tenant("hallym", "한림대학교").await?;
    /// let hallym = service.as_tenant("hallym");
    /// assert_eq!(hallym.get("/whoami").send().await?.text(), "한림대학교");
    /// # Ok(()) }
    /// ```
    pub fn as_tenant(&self, tenant_id: &str) -> TestClient {
        self.client.tenant(tenant_id)
    }

    /// Creates a tenant with the framework's provisioner, as `mt-paas tenant create` does:
    /// registry, database, the service's migrations, seed, `active`.
    ///
    /// ```
    /// # use mt_paas::{TenantStatus, testing::{TestConfig, TestService}};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let record = service.create_tenant("hallym", "한림대학교").await?;
    /// assert_eq!(record.status, TenantStatus::Active);
    /// assert!(service.create_tenant("../etc", "x").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn create_tenant(
        &self,
        tenant_id: &str,
        display_name: &str,
    ) -> Result<TenantRecord, TestError> {
        let id = TenantId::parse(tenant_id)?;
        match self
            .framework
            .provisioner()
            .create(id, display_name, None)
            .await?
        {
            Provisioned::Ready(record) => Ok(record),
            Provisioned::AwaitingDocker { record, dir } => {
                Err(TestError::Provision(ProvisionError::Docker(format!(
                    "tenant {} waits for its stack in {}: no Docker engine answered",
                    record.id,
                    dir.display()
                ))))
            }
        }
    }

    /// A token of the service's own (HS256, `auth.jwt.secret`) for user `sub` of `tenant_id`;
    /// see [`issue_token`].
    ///
    /// ```
    /// # use mt_paas::{CurrentUser, testing::{TestConfig, TestService}};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let router = axum::Router::new()
    ///     .route("/me", axum::routing::get(|user: CurrentUser| async move { user.sub().to_owned() }));
    /// let service = TestService::start(TestConfig::new().load()?, router).await?;
    /// service.create_tenant("hallym", "한림대학교").await?;
    ///
    /// let token = service.token("hallym", "alice")?;
    /// let me = service.as_tenant("hallym").bearer(&token).get("/me").send().await?;
    /// assert_eq!(me.text(), "alice");
    /// let anonymous = service.as_tenant("hallym").get("/me").send().await?;
    /// assert_eq!(anonymous.status(), 401);
    /// # Ok(()) }
    /// ```
    pub fn token(&self, tenant_id: &str, sub: &str) -> Result<String, TestError> {
        issue_token(self.config(), tenant_id, sub, ())
    }

    /// Like [`token`](Self::token), with `extra` claims added (they win over the kit's, so
    /// `{"exp": 1}` makes an expired token).
    ///
    /// ```
    /// # use mt_paas::{CurrentUser, testing::{TestConfig, TestService}};
    /// # use serde_json::json;
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let router = axum::Router::new().route("/me", axum::routing::get(
    /// #     |user: CurrentUser| async move { user.name().unwrap_or_default().to_owned() }));
    /// # let service = TestService::start(TestConfig::new().load()?, router).await?;
    /// # service.create_tenant("hallym", "한림대학교").await?;
    /// let token = service.token_with("hallym", "alice", json!({ "name": "Alice Kim" }))?;
    /// let me = service.as_tenant("hallym").bearer(&token).get("/me").send().await?;
    /// assert_eq!(me.text(), "Alice Kim");
    ///
    /// let expired = service.token_with("hallym", "alice", json!({ "exp": 1 }))?;
    /// let me = service.as_tenant("hallym").bearer(&expired).get("/me").send().await?;
    /// assert_eq!(me.status(), 401);
    /// # Ok(()) }
    /// ```
    pub fn token_with(
        &self,
        tenant_id: &str,
        sub: &str,
        extra: impl Serialize,
    ) -> Result<String, TestError> {
        issue_token(self.config(), tenant_id, sub, extra)
    }

    /// Shuts the service down gracefully — in-flight requests finish, the outbox is flushed,
    /// the central DB closed — and reports how the server ended.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let addr = service.addr();
    /// service.stop().await?;
    /// assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the port is closed");
    /// # Ok(()) }
    /// ```
    pub async fn stop(self) -> Result<(), TestError> {
        Ok(self.serving.stop().await.map_err(TestError::Stop)??)
    }
}

/// The header of the first `header` identification method, or `X-Tenant-ID`.
fn tenant_header(config: &Config) -> String {
    config
        .tenant_identification
        .methods
        .iter()
        .find_map(|m| match m {
            IdentificationMethod::Header { name } => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "X-Tenant-ID".to_owned())
}

/// Issues a token of the service's own for user `sub` of `tenant_id`, signed with
/// `config.auth.jwt` (HS256), as the service's SSO callback would: `sub`, the tenant claim
/// (`tenant_id`, or the `jwt_claim` method's name), `iat` and `exp` (now +
/// `auth.jwt.expiry_hours`), then `extra` (a JSON object, or `()` for none), which wins.
///
/// ```
/// use mt_paas::{JwtKeys, testing::{TestConfig, issue_token}};
/// use serde_json::json;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = TestConfig::new().load()?;
/// let token = issue_token(&config, "hallym", "alice", json!({ "role": "admin" }))?;
///
/// let keys = JwtKeys::from_config(&config.auth.jwt).expect("the kit sets a secret");
/// let claims = keys.verify(&token)?;
/// assert_eq!(claims["tenant_id"], "hallym");
/// assert_eq!(claims["sub"], "alice");
/// assert_eq!(claims["role"], "admin");
/// # Ok(()) }
/// ```
pub fn issue_token(
    config: &Config,
    tenant_id: &str,
    sub: &str,
    extra: impl Serialize,
) -> Result<String, TestError> {
    let keys = JwtKeys::from_config(&config.auth.jwt).ok_or(TestError::NoJwtSecret)?;
    let mut claims = Map::new();
    claims.insert("sub".into(), sub.into());
    claims.insert(config.tenant_claim().to_owned(), tenant_id.into());
    match serde_json::to_value(extra).map_err(|e| TestError::Claims(e.to_string()))? {
        Value::Null => {}
        Value::Object(extra) => claims.extend(extra),
        other => {
            return Err(TestError::Claims(format!(
                "extra claims must be a JSON object, not {other}"
            )));
        }
    }
    keys.issue(claims)
        .map_err(|e| TestError::Claims(e.to_string()))
}

/// An HTTP client of a service under test, with headers every request carries: the tenant,
/// a bearer token, anything else. Each setter returns a new client and leaves this one as it
/// was, so one client can serve as the base of several.
///
/// ```
/// use mt_paas::testing::TestClient;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let service = mt_paas::testing::TestService::start(
/// #     mt_paas::testing::TestConfig::new().load()?, axum::Router::new()).await?;
/// let client = TestClient::new(service.url()).header("Accept-Language", "en");
/// let ready = client.get("/readyz").send().await?;
/// assert_eq!(ready.json()["status"], "ready");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TestClient {
    http: reqwest::Client,
    base: String,
    tenant_header: String,
    headers: Vec<(String, String)>,
}

impl TestClient {
    /// A client of the server at `base_url` (`http://127.0.0.1:8000`, or an API base such as
    /// `http://127.0.0.1:8505/api/v1`); request paths are appended to it.
    ///
    /// ```
    /// let client = mt_paas::testing::TestClient::new("http://127.0.0.1:8000/");
    /// # let _ = client;
    /// ```
    pub fn new(base_url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base_url.trim_end_matches('/').to_owned(),
            tenant_header: "X-Tenant-ID".to_owned(),
            headers: Vec::new(),
        }
    }

    /// Requests name `tenant_id` (in the service's tenant header).
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let router = axum::Router::new().route("/x", axum::routing::get(|| async { "x" }));
    /// # let service = TestService::start(TestConfig::new().load()?, router).await?;
    /// let response = service.client().tenant("Bad Id!").get("/x").send().await?;
    /// assert_eq!(response.json()["code"], "invalid_tenant_id");
    /// # Ok(()) }
    /// ```
    #[must_use = "returns a new client; this one is unchanged"]
    pub fn tenant(&self, tenant_id: &str) -> Self {
        self.header(&self.tenant_header, tenant_id)
    }

    /// Requests carry `Authorization: Bearer {token}`.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let router = axum::Router::new().route("/x", axum::routing::get(|| async { "x" }));
    /// # let service = TestService::start(TestConfig::new().load()?, router).await?;
    /// # service.create_tenant("hallym", "한림대학교").await?;
    /// let hallym = service.as_tenant("hallym");
    /// assert_eq!(hallym.bearer("not.a.token").get("/x").send().await?.status(), 401);
    /// assert_eq!(hallym.get("/x").send().await?.status(), 200, "hallym is unchanged");
    /// # Ok(()) }
    /// ```
    #[must_use = "returns a new client; this one is unchanged"]
    pub fn bearer(&self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// Requests carry the header `name: value` (replacing an earlier one of that name).
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?,
    /// #     axum::Router::new().route("/x", axum::routing::get(|| async { "x" }))).await?;
    /// let english = service.client().header("Accept-Language", "en");
    /// let problem = english.get("/x").send().await?;
    /// assert!(problem.json()["title"].as_str().is_some_and(|t| t.is_ascii()));
    /// # Ok(()) }
    /// ```
    #[must_use = "returns a new client; this one is unchanged"]
    pub fn header(&self, name: &str, value: &str) -> Self {
        let mut client = self.clone();
        client
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        client.headers.push((name.to_owned(), value.to_owned()));
        client
    }

    /// A `GET` of `path`.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// assert_eq!(service.client().get("/healthz").send().await?.status(), 200);
    /// # Ok(()) }
    /// ```
    pub fn get(&self, path: &str) -> TestRequest {
        self.request(Method::GET, path)
    }

    /// A `POST` of `path`; add a body with [`TestRequest::json`].
    ///
    /// ```
    /// # use axum::{Json, routing::post};
    /// # use mt_paas::{Tenant, testing::{TestConfig, TestService}};
    /// # use serde_json::{Value, json};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let router = axum::Router::new()
    ///     .route("/echo", post(|_: Tenant, Json(v): Json<Value>| async move { Json(v) }));
    /// # let service = TestService::start(TestConfig::new().load()?, router).await?;
    /// # service.create_tenant("hallym", "한림대학교").await?;
    /// let response =
    ///     service.as_tenant("hallym").post("/echo").json(&json!({"title": "DB"})).send().await?;
    /// assert_eq!(response.json(), &json!({"title": "DB"}));
    /// # Ok(()) }
    /// ```
    pub fn post(&self, path: &str) -> TestRequest {
        self.request(Method::POST, path)
    }

    /// A `PUT` of `path`.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// assert_eq!(service.client().put("/healthz").send().await?.status(), 405);
    /// # Ok(()) }
    /// ```
    pub fn put(&self, path: &str) -> TestRequest {
        self.request(Method::PUT, path)
    }

    /// A `PATCH` of `path`.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// assert_eq!(service.client().patch("/healthz").send().await?.status(), 405);
    /// # Ok(()) }
    /// ```
    pub fn patch(&self, path: &str) -> TestRequest {
        self.request(Method::PATCH, path)
    }

    /// A `DELETE` of `path`.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// assert_eq!(service.client().delete("/healthz").send().await?.status(), 405);
    /// # Ok(()) }
    /// ```
    pub fn delete(&self, path: &str) -> TestRequest {
        self.request(Method::DELETE, path)
    }

    /// A request of `method` to `path` (appended to the base URL; a leading `/` is added
    /// when missing).
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let head = service.client().request(http::Method::HEAD, "healthz").send().await?;
    /// assert_eq!(head.status(), 200);
    /// # Ok(()) }
    /// ```
    pub fn request(&self, method: Method, path: &str) -> TestRequest {
        let slash = if path.starts_with('/') { "" } else { "/" };
        let mut builder = self
            .http
            .request(method, format!("{}{slash}{path}", self.base));
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        TestRequest { builder }
    }
}

/// A request being built; [`send`](Self::send) it.
///
/// ```
/// # use mt_paas::testing::{TestConfig, TestService};
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
/// let response = service.client().get("/healthz").header("X-Request-Id", "t-1").send().await?;
/// assert_eq!(response.status(), 200);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestRequest {
    builder: reqwest::RequestBuilder,
}

impl TestRequest {
    /// Adds the header `name: value` to this request.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?,
    /// #     axum::Router::new().route("/x", axum::routing::get(|| async { "x" }))).await?;
    /// let response = service.client().get("/x").header("X-Tenant-ID", "nobody").send().await?;
    /// assert_eq!(response.status(), 404);
    /// # Ok(()) }
    /// ```
    pub fn header(self, name: &str, value: &str) -> Self {
        Self {
            builder: self.builder.header(name, value),
        }
    }

    /// Sends `Authorization: Bearer {token}` with this request.
    ///
    /// ```
    /// # use mt_paas::{CurrentUser, testing::{TestConfig, TestService}};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let router = axum::Router::new().route("/me", axum::routing::get(
    /// #     |user: CurrentUser| async move { user.sub().to_owned() }));
    /// # let service = TestService::start(TestConfig::new().load()?, router).await?;
    /// # service.create_tenant("hallym", "한림대학교").await?;
    /// let token = service.token("hallym", "bob")?;
    /// let me = service.as_tenant("hallym").get("/me").bearer(&token).send().await?;
    /// assert_eq!(me.text(), "bob");
    /// # Ok(()) }
    /// ```
    pub fn bearer(self, token: &str) -> Self {
        Self {
            builder: self.builder.bearer_auth(token),
        }
    }

    /// Sends `body` as JSON.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # use serde_json::json;
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let response = service.client().post("/healthz").json(&json!({})).send().await?;
    /// assert_eq!(response.status(), 405);
    /// # Ok(()) }
    /// ```
    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> Self {
        Self {
            builder: self.builder.json(body),
        }
    }

    /// Adds `query` (pairs, or a struct) to the URL's query string.
    ///
    /// ```
    /// # use mt_paas::{Tenant, testing::{TestConfig, TestService}};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let router = axum::Router::new().route("/whoami", axum::routing::get(
    /// #     |t: Tenant| async move { t.id().to_string() }));
    /// # let service = TestService::start(TestConfig::new().load()?, router).await?;
    /// # service.create_tenant("snu", "서울대학교").await?;
    /// let response = service.client().get("/whoami").query(&[("tenant_id", "snu")]).send().await?;
    /// assert_eq!(response.text(), "snu");
    /// # Ok(()) }
    /// ```
    pub fn query<T: Serialize + ?Sized>(self, query: &T) -> Self {
        Self {
            builder: self.builder.query(query),
        }
    }

    /// Sends the request and reads the whole answer.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let response = service.client().get("/healthz").send().await?;
    /// assert_eq!(response.json()["status"], "ok");
    /// # Ok(()) }
    /// ```
    pub async fn send(self) -> Result<TestResponse, TestError> {
        let response = self.builder.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(TestResponse {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            json,
        })
    }
}

/// A whole answer: status, headers and body. Errors of the service are
/// `application/problem+json`, so `json()["code"]` is the stable code of a refusal.
///
/// ```
/// # use mt_paas::testing::{TestConfig, TestService};
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let service = TestService::start(TestConfig::new().load()?,
/// #     axum::Router::new().route("/x", axum::routing::get(|| async { "x" }))).await?;
/// let response = service.as_tenant("nobody").get("/x").send().await?;
/// assert_eq!(response.status(), http::StatusCode::NOT_FOUND);
/// assert_eq!(response.header("content-type"), Some("application/problem+json"));
/// assert_eq!(response.json()["code"], "tenant_not_found");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl TestResponse {
    /// The status; it compares with a number too (`response.status() == 200`).
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let response = service.client().get("/nowhere").send().await?;
    /// assert_eq!(response.status(), 404);
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let response = service.client().get("/healthz").send().await?;
    /// assert!(response.headers().contains_key("content-length"));
    /// # Ok(()) }
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The value of header `name`, if present and text.
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let response = service.client().get("/healthz").send().await?;
    /// assert_eq!(response.header("Content-Type"), Some("application/json"));
    /// # Ok(()) }
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; `Value::Null` when it is empty or not JSON (see [`text`](Self::text)).
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let ready = service.client().get("/readyz").send().await?;
    /// assert_eq!(ready.json()["central_db"], "ok");
    /// # Ok(()) }
    /// ```
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The body as text (invalid UTF-8 replaced).
    ///
    /// ```
    /// # use mt_paas::testing::{TestConfig, TestService};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let service = TestService::start(TestConfig::new().load()?, axum::Router::new()).await?;
    /// let metrics = service.client().get("/metrics").send().await?;
    /// assert!(metrics.text().contains("mt_paas_"));
    /// assert!(metrics.json().is_null());
    /// # Ok(()) }
    /// ```
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Checks `check` every 50 ms until it is true (→ `true`) or `within` has passed (→ `false`):
/// for what reaches the service asynchronously, such as the market's commands.
///
/// ```
/// use std::time::{Duration, Instant};
///
/// # #[tokio::main]
/// # async fn main() {
/// let start = Instant::now();
/// let later = || async { start.elapsed() > Duration::from_millis(120) };
/// assert!(mt_paas::testing::eventually(Duration::from_secs(5), later).await);
/// assert!(!mt_paas::testing::eventually(Duration::from_millis(100), || async { false }).await);
/// # }
/// ```
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn layers_merge_in_order_over_the_kit() {
        let config = TestConfig::new()
            .yaml("service:\n  id: a\n  name: A\n")
            .yaml("service:\n  id: b\n")
            .yaml("")
            .load()
            .unwrap();
        assert_eq!(config.service.id, "b");
        assert_eq!(config.service.name, "A");
        assert_eq!(config.service.listen.port(), 0);
    }

    #[test]
    fn relative_sources_are_taken_from_the_current_directory() {
        let absolute = std::env::temp_dir();
        let config = TestConfig::new()
            .yaml(format!(
                "database:\n  tenant:\n    seed: fixtures/seed.sql\n    migrations: {}\n",
                absolute.display()
            ))
            .load()
            .unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            config.database.tenant.seed.as_deref(),
            Some(cwd.join("fixtures/seed.sql").as_path())
        );
        assert_eq!(
            config.database.tenant.migrations.as_deref(),
            Some(absolute.as_path())
        );
    }

    #[test]
    fn a_layer_that_is_not_a_mapping_is_named() {
        let error = TestConfig::new().yaml("- a\n").load().unwrap_err();
        assert!(error.to_string().contains("layer 1"), "{error}");
        let error = TestConfig::new().yaml("a: [").load().unwrap_err();
        assert!(error.to_string().contains("invalid YAML"), "{error}");
    }

    #[test]
    fn vars_come_only_from_the_test() {
        let error = TestConfig::new()
            .yaml("service:\n  name: ${PATH}\n")
            .load()
            .unwrap_err();
        assert!(error.to_string().contains("PATH"), "{error}");
    }

    #[test]
    fn the_directory_goes_with_the_config() {
        let config = TestConfig::new().load().unwrap();
        let dir = config.dir().to_path_buf();
        assert!(dir.exists());
        drop(config);
        assert!(!dir.exists());
    }

    #[test]
    fn tokens_need_a_secret_and_an_object() {
        let config = TestConfig::new()
            .yaml("auth:\n  jwt:\n    secret: \"\"\n")
            .load()
            .unwrap();
        assert!(matches!(
            issue_token(&config, "a", "b", ()),
            Err(TestError::NoJwtSecret)
        ));
        let config = TestConfig::new().load().unwrap();
        assert!(matches!(
            issue_token(&config, "a", "b", [1, 2]),
            Err(TestError::Claims(_))
        ));
    }

    #[test]
    fn the_tenant_claim_follows_jwt_claim_identification() {
        let config = TestConfig::new()
            .yaml("tenant_identification:\n  methods:\n    - type: jwt_claim\n      claim_name: org\n    - type: header\n      name: X-Org\n")
            .load()
            .unwrap();
        let token = issue_token(&config, "hallym", "alice", ()).unwrap();
        let claims = JwtKeys::from_config(&config.auth.jwt)
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(claims["org"], "hallym");
        assert_eq!(tenant_header(&config), "X-Org");
    }

    #[tokio::test]
    async fn a_dropped_service_closes_its_port() {
        let service = TestService::start(TestConfig::new().load().unwrap(), Router::new())
            .await
            .unwrap();
        let addr = service.addr();
        let dir = service.dir().to_path_buf();
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
        drop(service);
        assert!(!dir.exists());
        assert!(
            eventually(Duration::from_secs(10), || async {
                tokio::net::TcpStream::connect(addr).await.is_err()
            })
            .await
        );
    }
}
