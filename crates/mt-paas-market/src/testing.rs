//! The reference market in-process, for a vendor's tests (feature `testing`): a market on a
//! random port with its own SQLite database, helpers over its operator API (plans, services,
//! tenants, subscriptions, blocks, RS256 user tokens), and the wiring of a service under test
//! built with [`mt_paas::testing`].
//!
//! ```toml
//! [dev-dependencies]
//! mt-paas = { path = "../mt-paas/crates/mt-paas", features = ["testing"] }
//! mt-paas-market = { path = "../mt-paas/crates/mt-paas-market", features = ["testing"] }
//! ```
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use mt_paas::{Tenant, http::ApiError, testing::{TestConfig, eventually}};
//! use mt_paas_market::testing::{ServiceRegistration, TestMarket};
//!
//! async fn quiz(tenant: Tenant) -> Result<&'static str, ApiError> {
//!     tenant.require_feature("quiz")?;
//!     Ok("quiz")
//! }
//!
//! #[tokio::main] // `#[tokio::test]` in a test file
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let market = TestMarket::start().await?;
//!     market.create_plan("premium", &[("quiz", true)], Some(600)).await?;
//!
//!     // Registers the service at the market and starts it, wired to the market.
//!     let router = Router::new().route("/quiz", get(quiz));
//!     let registration = ServiceRegistration::new("courses");
//!     let service = market.start_service(&registration, TestConfig::new(), router).await?;
//!
//!     // Subscribing sends the service a provision command; the tenant is served once done.
//!     market.create_tenant("hallym", "한림대학교").await?;
//!     market.subscribe("courses", "hallym", "premium").await?;
//!     let hallym = service.as_tenant("hallym");
//!     let served = || async { hallym.get("/quiz").send().await.is_ok_and(|r| r.status() == 200) };
//!     assert!(eventually(Duration::from_secs(10), served).await);
//!
//!     service.stop().await?;
//!     market.stop().await?;
//!     Ok(())
//! }
//! ```
//!
//! The market starts without the demo data ([`TestMarket::start_with_dev_data`] loads it), with
//! fast command delivery (a poll every 50 ms), and is removed with its temporary directory
//! when stopped or dropped. Stop the services before the market, so that what they still
//! report on shutdown reaches it.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use axum::Router;
use base64::Engine as _;
use http::Method;
use mt_paas::{
    config::ConfigError,
    testing::{Serving, TestClient, TestConfig, TestError, TestService, eventually},
};
use mt_paas_protocol::Command;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::{Market, MarketConfig, MarketError, Plan, Service, Subscription, Tenant};

/// How long [`TestMarket::start_service`] waits for the service's first heartbeat.
const FIRST_HEARTBEAT: Duration = Duration::from_secs(5);

/// Why a market test helper failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestMarketError {
    /// The temporary directory or the listener could not be set up.
    #[error("test set-up: {0}")]
    Io(#[from] std::io::Error),
    /// The market's configuration is invalid.
    #[error("market configuration:\n{0}")]
    Config(#[from] ConfigError),
    /// The market failed to start, or its server failed.
    #[error(transparent)]
    Market(#[from] MarketError),
    /// A request could not be sent, or the service under test failed to start.
    #[error(transparent)]
    Kit(#[from] TestError),
    /// The operator API refused a request.
    #[error("{method} {path}: the operator API answered {status}: {body}")]
    Refused {
        /// The method.
        method: Method,
        /// The path under `/api/v1/admin`.
        path: String,
        /// The status.
        status: u16,
        /// The answer (a problem+json document).
        body: Value,
    },
    /// The operator API answered something the kit could not read.
    #[error("{path}: unexpected answer: {message}")]
    Answer {
        /// The path under `/api/v1/admin`.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The server did not stop in time, or its task panicked.
    #[error("the test market did not stop cleanly: {0}")]
    Stop(String),
}

/// The reference market served in-process on `127.0.0.1` on a port of its own, with a SQLite
/// database in a temporary directory.
///
/// ```
/// use mt_paas_market::testing::TestMarket;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let market = TestMarket::start().await?;
/// let plan = market.create_plan("basic", &[("ai_chat", true)], Some(60)).await?;
/// assert_eq!(plan.requests_per_minute, Some(60));
/// assert!(market.market().store().plan("basic").await?.is_some());
/// market.stop().await?;
/// # Ok(()) }
/// ```
pub struct TestMarket {
    market: Market,
    url: String,
    operator: TestClient,
    serving: Serving<MarketError>,
    // Dropped last: the server may still write to it while it stops.
    dir: TempDir,
}

impl std::fmt::Debug for TestMarket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestMarket")
            .field("url", &self.url)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl TestMarket {
    /// Starts an empty market: no plans, services or tenants.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let market = mt_paas_market::testing::TestMarket::start().await?;
    /// assert!(market.market().store().plans().await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn start() -> Result<Self, TestMarketError> {
        Self::start_with(|_| {}).await
    }

    /// Starts a market with the README's demo data: plans `basic` and `premium`, services
    /// `basic_service` and `keli_tutor` (API key [`DEV_API_KEY`](crate::DEV_API_KEY), webhook
    /// secret [`DEV_WEBHOOK_SECRET`](crate::DEV_WEBHOOK_SECRET)), tenants `hallym`, `korea` and `snu`.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let market = mt_paas_market::testing::TestMarket::start_with_dev_data().await?;
    /// let hallym = market.subscription("basic_service", "hallym").await?;
    /// assert_eq!(hallym.plan_id, "premium");
    /// # Ok(()) }
    /// ```
    pub async fn start_with_dev_data() -> Result<Self, TestMarketError> {
        Self::start_with(|config| config.seed_dev_data = true).await
    }

    /// Starts a market whose configuration `configure` adjusts last (the kit sets the
    /// database, the address, no demo data, and delivery polling every 50 ms).
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mt_paas_market::testing::TestMarket;
    ///
    /// let market = TestMarket::start_with(|config| config.delivery.max_attempts = 1).await?;
    /// assert_eq!(market.market().config().delivery.max_attempts, 1);
    /// # Ok(()) }
    /// ```
    pub async fn start_with(
        configure: impl FnOnce(&mut MarketConfig),
    ) -> Result<Self, TestMarketError> {
        let dir = tempfile::Builder::new()
            .prefix("mt-paas-market-test-")
            .tempdir()?;
        let mut config =
            MarketConfig::with_database(&format!("sqlite://{}/market.db", dir.path().display()))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr: SocketAddr = listener.local_addr()?;
        let url = format!("http://{addr}");
        config.listen = addr;
        config.public_url.clone_from(&url);
        config.seed_dev_data = false;
        config.delivery.poll_interval_ms = 50;
        config.delivery.timeout_ms = 2000;
        configure(&mut config);
        let operator =
            TestClient::new(&format!("{url}/api/v1/admin")).bearer(config.operator_token.expose());
        let market = Market::start(config).await?;
        let server = market.clone();
        let serving = Serving::spawn(move |shutdown| async move {
            server.serve_with_shutdown(listener, shutdown).await
        });
        Ok(Self {
            market,
            url,
            operator,
            serving,
            dir,
        })
    }

    /// The market's base URL, `http://127.0.0.1:{port}`.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let market = mt_paas_market::testing::TestMarket::start().await?;
    /// let jwks = reqwest::get(format!("{}/api/v1/.well-known/jwks.json", market.url())).await?;
    /// assert_eq!(jwks.status(), 200);
    /// # Ok(()) }
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The base of the market's API, `{url}/api/v1`: a service's `marketplace.api_url`.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let market = mt_paas_market::testing::TestMarket::start().await?;
    /// assert_eq!(market.api_url(), format!("{}/api/v1", market.url()));
    /// # Ok(()) }
    /// ```
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.url)
    }

    /// The market itself: its [`store`](Market::store) and the operator actions in-process.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let market = mt_paas_market::testing::TestMarket::start().await?;
    /// market.create_tenant("hallym", "한림대학교").await?;
    /// assert_eq!(market.market().store().tenants().await?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn market(&self) -> &Market {
        &self.market
    }

    /// The operator API's bearer token (`operator_token` of the configuration).
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let market = mt_paas_market::testing::TestMarket::start().await?;
    /// assert_eq!(market.operator_token(), market.market().config().operator_token.expose());
    /// # Ok(()) }
    /// ```
    pub fn operator_token(&self) -> &str {
        self.market.config().operator_token.expose()
    }

    /// A client of the operator API (`/api/v1/admin`, with the operator's bearer token), for
    /// what the helpers below do not cover: suspend, change a plan, list commands...
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use mt_paas_market::testing::{ServiceRegistration, TestMarket};
    /// # let market = TestMarket::start().await?;
    /// # market.create_plan("basic", &[], None).await?;
    /// # market.register_service(&ServiceRegistration::new("courses")).await?;
    /// # market.create_tenant("snu", "서울대학교").await?;
    /// # market.subscribe_without_provisioning("courses", "snu", "basic").await?;
    /// let suspended = market.operator().post("/services/courses/tenants/snu/suspend").send().await?;
    /// assert_eq!(suspended.json()["state"], "suspended");
    /// # Ok(()) }
    /// ```
    pub fn operator(&self) -> TestClient {
        self.operator.clone()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, TestMarketError> {
        let mut request = self.operator.request(method.clone(), path);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await?;
        if !response.status().is_success() {
            return Err(TestMarketError::Refused {
                method,
                path: path.to_owned(),
                status: response.status().as_u16(),
                body: response.json().clone(),
            });
        }
        serde_json::from_value(response.json().clone()).map_err(|e| TestMarketError::Answer {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Creates (or replaces) plan `id` with `features` and a limit of requests per minute per
    /// tenant (`None`: the service's `security.rate_limit.default_rpm`).
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let market = mt_paas_market::testing::TestMarket::start().await?;
    /// let premium = market.create_plan("premium", &[("quiz", true), ("ai_chat", true)], None).await?;
    /// assert!(premium.features["quiz"]);
    /// assert!(market.create_plan("Bad Id", &[], None).await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn create_plan(
        &self,
        id: &str,
        features: &[(&str, bool)],
        requests_per_minute: Option<u32>,
    ) -> Result<Plan, TestMarketError> {
        let features: serde_json::Map<String, Value> = features
            .iter()
            .map(|(name, on)| ((*name).to_owned(), Value::Bool(*on)))
            .collect();
        let body = json!({
            "id": id,
            "name": id,
            "features": features,
            "requests_per_minute": requests_per_minute,
        });
        self.call(Method::POST, "/plans", Some(body)).await
    }

    /// Registers a service: its id, API key, webhook secret and, for commands to be pushed
    /// to it, its base URL.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mt_paas_market::testing::{ServiceRegistration, TestMarket};
    ///
    /// let market = TestMarket::start().await?;
    /// let registration = ServiceRegistration::new("courses").with_base_url("http://127.0.0.1:9");
    /// let service = market.register_service(&registration).await?;
    /// assert_eq!(service.base_url.as_deref(), Some("http://127.0.0.1:9"));
    /// # Ok(()) }
    /// ```
    pub async fn register_service(
        &self,
        registration: &ServiceRegistration,
    ) -> Result<Service, TestMarketError> {
        let body = json!({
            "id": registration.id,
            "name": registration.name,
            "api_key": registration.api_key,
            "webhook_secret": registration.webhook_secret,
            "base_url": registration.base_url,
        });
        self.call(Method::POST, "/services", Some(body)).await
    }

    /// Creates tenant (organisation) `id` at the market.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let market = mt_paas_market::testing::TestMarket::start().await?;
    /// let tenant = market.create_tenant("hallym", "한림대학교").await?;
    /// assert_eq!(tenant.name, "한림대학교");
    /// let again = market.create_tenant("hallym", "한림대학교").await.unwrap_err();
    /// assert!(again.to_string().contains("409"), "{again}");
    /// # Ok(()) }
    /// ```
    pub async fn create_tenant(&self, id: &str, name: &str) -> Result<Tenant, TestMarketError> {
        self.call(
            Method::POST,
            "/tenants",
            Some(json!({ "id": id, "name": name })),
        )
        .await
    }

    /// Subscribes a tenant to a service's plan the way an operator does: the subscription
    /// starts `pending_activation` and a provision command goes to the service, which creates
    /// the tenant (its database, its migrations) and reports back; then it is `active`.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mt_paas_market::testing::{ServiceRegistration, TestMarket};
    ///
    /// let market = TestMarket::start().await?;
    /// market.create_plan("basic", &[], None).await?;
    /// market.register_service(&ServiceRegistration::new("courses")).await?;
    /// market.create_tenant("korea", "고려대학교").await?;
    /// let subscription = market.subscribe("courses", "korea", "basic").await?;
    /// assert_eq!(subscription.state, mt_paas_protocol::SubscriptionState::PendingActivation);
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(
        &self,
        service_id: &str,
        tenant_id: &str,
        plan_id: &str,
    ) -> Result<Subscription, TestMarketError> {
        self.subscription_request(service_id, tenant_id, plan_id, true)
            .await
    }

    /// Subscribes a tenant that the service has already (made with
    /// `TestService::create_tenant`): the subscription is `active` at once and no provision
    /// command is sent.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mt_paas_market::testing::{ServiceRegistration, TestMarket};
    ///
    /// let market = TestMarket::start().await?;
    /// market.create_plan("basic", &[], None).await?;
    /// market.register_service(&ServiceRegistration::new("courses")).await?;
    /// market.create_tenant("snu", "서울대학교").await?;
    /// let subscription = market.subscribe_without_provisioning("courses", "snu", "basic").await?;
    /// assert_eq!(subscription.state, mt_paas_protocol::SubscriptionState::Active);
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_without_provisioning(
        &self,
        service_id: &str,
        tenant_id: &str,
        plan_id: &str,
    ) -> Result<Subscription, TestMarketError> {
        self.subscription_request(service_id, tenant_id, plan_id, false)
            .await
    }

    async fn subscription_request(
        &self,
        service_id: &str,
        tenant_id: &str,
        plan_id: &str,
        provision: bool,
    ) -> Result<Subscription, TestMarketError> {
        let body = json!({
            "service_id": service_id,
            "tenant_id": tenant_id,
            "plan_id": plan_id,
            "provision": provision,
        });
        self.call(Method::POST, "/subscriptions", Some(body)).await
    }

    /// A tenant's subscription to a service as the market holds it now.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let market = mt_paas_market::testing::TestMarket::start_with_dev_data().await?;
    /// let korea = market.subscription("basic_service", "korea").await?;
    /// assert_eq!(korea.plan_id, "basic");
    /// assert!(market.subscription("basic_service", "nobody").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn subscription(
        &self,
        service_id: &str,
        tenant_id: &str,
    ) -> Result<Subscription, TestMarketError> {
        let path = format!("/services/{service_id}/tenants/{tenant_id}");
        let view: Value = self.call(Method::GET, &path, None).await?;
        serde_json::from_value(view["subscription"].clone()).map_err(|e| TestMarketError::Answer {
            path,
            message: e.to_string(),
        })
    }

    /// Blocks a tenant now (the kill switch): the market records the block and sends the
    /// command; the service answers the tenant's requests 403 `tenant_blocked` with `message`.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use mt_paas_market::testing::{ServiceRegistration, TestMarket};
    /// # let market = TestMarket::start().await?;
    /// # market.create_plan("basic", &[], None).await?;
    /// # market.register_service(&ServiceRegistration::new("courses")).await?;
    /// # market.create_tenant("snu", "서울대학교").await?;
    /// # market.subscribe_without_provisioning("courses", "snu", "basic").await?;
    /// let command = market.block("courses", "snu", "payment_overdue", "결제가 필요합니다").await?;
    /// assert!(matches!(command, mt_paas_protocol::Command::Block { .. }));
    /// let snu = market.subscription("courses", "snu").await?;
    /// assert_eq!(snu.block.map(|b| b.reason).as_deref(), Some("payment_overdue"));
    /// # Ok(()) }
    /// ```
    pub async fn block(
        &self,
        service_id: &str,
        tenant_id: &str,
        reason: &str,
        message: &str,
    ) -> Result<Command, TestMarketError> {
        let path = format!("/services/{service_id}/tenants/{tenant_id}/block");
        let body = json!({ "reason": reason, "message": message });
        self.call(Method::POST, &path, Some(body)).await
    }

    /// Lifts a tenant's block.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use mt_paas_market::testing::{ServiceRegistration, TestMarket};
    /// # let market = TestMarket::start().await?;
    /// # market.create_plan("basic", &[], None).await?;
    /// # market.register_service(&ServiceRegistration::new("courses")).await?;
    /// # market.create_tenant("snu", "서울대학교").await?;
    /// # market.subscribe_without_provisioning("courses", "snu", "basic").await?;
    /// market.block("courses", "snu", "payment_overdue", "결제가 필요합니다").await?;
    /// market.unblock("courses", "snu").await?;
    /// assert!(market.subscription("courses", "snu").await?.block.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn unblock(
        &self,
        service_id: &str,
        tenant_id: &str,
    ) -> Result<Command, TestMarketError> {
        let path = format!("/services/{service_id}/tenants/{tenant_id}/unblock");
        let body = json!({ "reason": "lifted by the test" });
        self.call(Method::POST, &path, Some(body)).await
    }

    /// Signs an RS256 user token with the market's key (`POST /api/v1/admin/tokens`), as its
    /// SSO does: `aud` the service, `sub`, `tenant_id`, and `name` and `exp` when asked. A
    /// service with `auth.jwt.algorithm: RS256` verifies it against the market's JWK set.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use mt_paas_market::testing::{ServiceRegistration, TestMarket};
    /// # let market = TestMarket::start().await?;
    /// # market.create_plan("basic", &[], None).await?;
    /// # market.register_service(&ServiceRegistration::new("courses")).await?;
    /// # market.create_tenant("snu", "서울대학교").await?;
    /// # market.subscribe_without_provisioning("courses", "snu", "basic").await?;
    /// use mt_paas_market::testing::TokenRequest;
    ///
    /// let request = TokenRequest::new("courses", "snu", "alice").with_name("Alice Kim");
    /// let token = market.mint_token(&request).await?;
    /// assert_eq!(token.split('.').count(), 3);
    /// # Ok(()) }
    /// ```
    pub async fn mint_token(&self, request: &TokenRequest) -> Result<String, TestMarketError> {
        let minted: Value = self
            .call(Method::POST, "/tokens", Some(json!(request)))
            .await?;
        minted["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| TestMarketError::Answer {
                path: "/tokens".to_owned(),
                message: format!("no token in {minted}"),
            })
    }

    /// The configuration a service under test needs to talk to this market, as YAML for
    /// [`TestConfig::yaml`]: `service.id`, and `marketplace` with the API URL, the API key and
    /// webhook secret of `registration`, subscriptions checked with the market, and short
    /// timeouts (requests 1 s; every entitlement re-synced each 2 s besides the market's
    /// hints).
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mt_paas::testing::TestConfig;
    /// use mt_paas_market::testing::{ServiceRegistration, TestMarket};
    ///
    /// let market = TestMarket::start().await?;
    /// let registration = ServiceRegistration::new("courses");
    /// let config = TestConfig::new().yaml(market.service_yaml(&registration)).load()?;
    /// assert_eq!(config.service.id, "courses");
    /// assert_eq!(config.marketplace.api_url, market.api_url());
    /// assert!(config.marketplace.subscription_check);
    /// # Ok(()) }
    /// ```
    pub fn service_yaml(&self, registration: &ServiceRegistration) -> String {
        format!(
            "service:\n  id: {id}\nmarketplace:\n  api_url: {api_url}\n  api_key: {api_key}\n  webhook_secret: {secret}\n  subscription_check: true\n  request_timeout_ms: 1000\n  sync_interval_seconds: 2\n",
            id = yaml_string(&registration.id),
            api_url = yaml_string(&self.api_url()),
            api_key = yaml_string(&registration.api_key),
            secret = yaml_string(&registration.webhook_secret),
        )
    }

    /// Registers a service with this market and starts it, wired to the market: binds a free
    /// port (the registration's base URL becomes that port's URL), registers it, adds
    /// [`service_yaml`](Self::service_yaml) over `config`, serves `router` with
    /// [`TestService::start_on`], and returns once the market has had the service's first
    /// heartbeat.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mt_paas::testing::TestConfig;
    /// use mt_paas_market::testing::{ServiceRegistration, TestMarket};
    ///
    /// let market = TestMarket::start().await?;
    /// let registration = ServiceRegistration::new("courses");
    /// let service = market.start_service(&registration, TestConfig::new(), axum::Router::new()).await?;
    /// let registered = market.market().store().service("courses").await?.expect("registered");
    /// assert_eq!(registered.base_url.as_deref(), Some(service.url()));
    /// # Ok(()) }
    /// ```
    pub async fn start_service(
        &self,
        registration: &ServiceRegistration,
        config: TestConfig,
        router: Router,
    ) -> Result<TestService, TestMarketError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let registration = registration.clone().with_base_url(url);
        self.register_service(&registration).await?;
        let config = config.yaml(self.service_yaml(&registration)).load()?;
        let service = TestService::start_on(listener, config, router).await?;
        // The service's first heartbeat pulls the commands pending at that moment: wait for
        // it, so that the test's first commands travel by push alone.
        let store = self.market.store();
        let first_beat = || async {
            store
                .instances(registration.id())
                .await
                .is_ok_and(|instances| !instances.is_empty())
        };
        if !eventually(FIRST_HEARTBEAT, first_beat).await {
            tracing::warn!(
                service = registration.id(),
                "no heartbeat from the service yet"
            );
        }
        Ok(service)
    }

    /// Shuts the market down gracefully and reports how its server ended.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let market = mt_paas_market::testing::TestMarket::start().await?;
    /// let url = market.api_url();
    /// market.stop().await?;
    /// assert!(reqwest::get(format!("{url}/health")).await.is_err(), "nothing listens any more");
    /// # Ok(()) }
    /// ```
    pub async fn stop(self) -> Result<(), TestMarketError> {
        Ok(self.serving.stop().await.map_err(TestMarketError::Stop)??)
    }
}

/// A YAML double-quoted scalar holding `value` exactly: JSON's string syntax is YAML's, and
/// `${` is escaped so that the configuration loader does not substitute it.
fn yaml_string(value: &str) -> String {
    Value::String(value.replace("${", "$${")).to_string()
}

/// A service to register at a [`TestMarket`]: its id and name, its API key at the market
/// (`test-api-key-{id}` by default), the secret that signs the market's commands to it (one
/// of its own, derived from the id, by default: the market refuses a secret two services
/// share), and its base URL. `Debug` leaves the secrets out.
///
/// ```
/// use mt_paas_market::testing::ServiceRegistration;
///
/// let registration = ServiceRegistration::new("courses").with_api_key("courses-key-1");
/// assert_eq!(registration.id(), "courses");
/// assert_eq!(registration.api_key(), "courses-key-1");
/// assert!(registration.webhook_secret().starts_with("whsec_"));
/// assert!(!format!("{registration:?}").contains("courses-key-1"));
/// ```
#[derive(Clone)]
pub struct ServiceRegistration {
    id: String,
    name: String,
    api_key: String,
    webhook_secret: String,
    base_url: Option<String>,
}

impl std::fmt::Debug for ServiceRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRegistration")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl ServiceRegistration {
    /// Service `id` (named `id` too), with the default API key and webhook secret and no
    /// base URL.
    ///
    /// ```
    /// let registration = mt_paas_market::testing::ServiceRegistration::new("courses");
    /// assert_eq!(registration.api_key(), "test-api-key-courses");
    /// assert_eq!(registration.base_url(), None);
    /// ```
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            name: id.clone(),
            api_key: format!("test-api-key-{id}"),
            webhook_secret: format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("mt-paas test webhook secret of {id}"))
            ),
            base_url: None,
            id,
        }
    }

    /// Sets the name shown at the market.
    ///
    /// ```
    /// let registration =
    ///     mt_paas_market::testing::ServiceRegistration::new("courses").with_name("Courses");
    /// assert_eq!(registration.name(), "Courses");
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the API key (at least 8 characters), e.g. [`DEV_API_KEY`](crate::DEV_API_KEY)
    /// for a demo service of [`TestMarket::start_with_dev_data`].
    ///
    /// ```
    /// use mt_paas_market::{DEV_API_KEY, testing::ServiceRegistration};
    ///
    /// let basic_service = ServiceRegistration::new("basic_service").with_api_key(DEV_API_KEY);
    /// assert_eq!(basic_service.api_key(), DEV_API_KEY);
    /// ```
    pub fn with_api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = api_key.into();
        self
    }

    /// Sets the webhook secret (`whsec_` and base64 of at least 24 bytes).
    ///
    /// ```
    /// let secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    /// let registration =
    ///     mt_paas_market::testing::ServiceRegistration::new("courses").with_webhook_secret(secret);
    /// assert_eq!(registration.webhook_secret(), secret);
    /// ```
    pub fn with_webhook_secret(mut self, webhook_secret: impl Into<String>) -> Self {
        self.webhook_secret = webhook_secret.into();
        self
    }

    /// Sets the base URL the market pushes commands to (`None`: commands wait for the
    /// service's heartbeats).
    ///
    /// ```
    /// let registration = mt_paas_market::testing::ServiceRegistration::new("courses")
    ///     .with_base_url("http://127.0.0.1:8000");
    /// assert_eq!(registration.base_url(), Some("http://127.0.0.1:8000"));
    /// ```
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// The service's id (its `service.id`).
    ///
    /// ```
    /// assert_eq!(mt_paas_market::testing::ServiceRegistration::new("courses").id(), "courses");
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name shown at the market.
    ///
    /// ```
    /// assert_eq!(mt_paas_market::testing::ServiceRegistration::new("courses").name(), "courses");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API key (the service's `marketplace.api_key`).
    ///
    /// ```
    /// let registration = mt_paas_market::testing::ServiceRegistration::new("courses");
    /// assert!(registration.api_key().len() >= 8);
    /// ```
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The webhook secret (the service's `marketplace.webhook_secret`).
    ///
    /// ```
    /// use mt_paas_market::testing::ServiceRegistration;
    ///
    /// let courses = ServiceRegistration::new("courses");
    /// assert!(courses.webhook_secret().starts_with("whsec_"));
    /// assert_ne!(courses.webhook_secret(), ServiceRegistration::new("quiz").webhook_secret());
    /// ```
    pub fn webhook_secret(&self) -> &str {
        &self.webhook_secret
    }

    /// The base URL, if set.
    ///
    /// ```
    /// assert_eq!(mt_paas_market::testing::ServiceRegistration::new("courses").base_url(), None);
    /// ```
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
    }
}

/// A user token for [`TestMarket::mint_token`]: for user `sub` of a tenant, addressed to a
/// service, with an optional display name and lifetime (`sso.token_ttl_seconds` otherwise).
///
/// ```
/// use mt_paas_market::testing::TokenRequest;
///
/// let request = TokenRequest::new("courses", "hallym", "alice")
///     .with_name("Alice Kim")
///     .with_ttl_seconds(60);
/// # let _ = request;
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct TokenRequest {
    service_id: String,
    tenant_id: String,
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_seconds: Option<u64>,
}

impl TokenRequest {
    /// A token for user `sub` of `tenant_id`, for `service_id`.
    ///
    /// ```
    /// let request = mt_paas_market::testing::TokenRequest::new("courses", "hallym", "alice");
    /// # let _ = request;
    /// ```
    pub fn new(
        service_id: impl Into<String>,
        tenant_id: impl Into<String>,
        sub: impl Into<String>,
    ) -> Self {
        Self {
            service_id: service_id.into(),
            tenant_id: tenant_id.into(),
            sub: sub.into(),
            name: None,
            ttl_seconds: None,
        }
    }

    /// Adds the `name` claim (the user's display name).
    ///
    /// ```
    /// let request =
    ///     mt_paas_market::testing::TokenRequest::new("courses", "hallym", "alice").with_name("Alice");
    /// # let _ = request;
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Makes the token expire `seconds` from now (1 to 86,400).
    ///
    /// ```
    /// let request =
    ///     mt_paas_market::testing::TokenRequest::new("courses", "hallym", "alice").with_ttl_seconds(5);
    /// # let _ = request;
    /// ```
    pub fn with_ttl_seconds(mut self, seconds: u64) -> Self {
        self.ttl_seconds = Some(seconds);
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn yaml_strings_survive_the_loader() {
        let config = TestConfig::new()
            .yaml(format!(
                "service:\n  name: {}\n",
                yaml_string("a \"b\" ${NOT_A_VAR} 한\\")
            ))
            .load()
            .unwrap();
        assert_eq!(config.service.name, "a \"b\" ${NOT_A_VAR} 한\\");
    }

    /// `docs/DEVELOPER_GUIDE.md` ("Testing a service") shows `tests/testing_kit.rs` whole;
    /// mt-paas's doctests cannot compile it (no mt-paas-market there), so it is compared here.
    #[test]
    fn the_developer_guide_shows_the_testing_kit_test_as_it_is() {
        let guide = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/DEVELOPER_GUIDE.md"
        ))
        .unwrap();
        let fence = "<!-- file: crates/mt-paas-market/tests/testing_kit.rs -->\n```rust,ignore\n";
        let start = guide
            .find(fence)
            .map(|at| at + fence.len())
            .expect("the guide's \"Testing a service\" shows tests/testing_kit.rs");
        let end = start + guide[start..].find("\n```\n").unwrap() + 1;
        assert!(
            guide[start..end] == *include_str!("../tests/testing_kit.rs"),
            "the guide's copy of tests/testing_kit.rs differs from the file"
        );
    }

    #[test]
    fn the_guides_dependency_lines_name_the_crates_testing_features() {
        let guide = include_str!("../../../docs/DEVELOPER_GUIDE.md");
        let section = &guide[guide
            .find("## Testing a service")
            .expect("the guide has the testing section")..];
        let start = section
            .find("```toml\n")
            .expect("it shows the dependencies")
            + 8;
        let block = &section[start..start + section[start..].find("```").unwrap()];
        for (krate, manifest) in [
            ("mt-paas", include_str!("../../mt-paas/Cargo.toml")),
            ("mt-paas-market", include_str!("../Cargo.toml")),
        ] {
            let line = block
                .lines()
                .find(|l| l.starts_with(&format!("{krate} = ")))
                .unwrap_or_else(|| panic!("the guide names {krate}"));
            assert!(
                line.contains(&format!("/crates/{krate}\"")),
                "a path dependency: {line}"
            );
            assert!(line.contains(r#"features = ["testing"]"#), "{line}");
            assert!(
                manifest.contains("\n[features]\n") && manifest.contains("\ntesting = "),
                "{krate} declares the testing feature"
            );
        }
    }

    #[tokio::test]
    async fn refusals_carry_the_problem() {
        let market = TestMarket::start().await.unwrap();
        let error = market
            .subscribe("nowhere", "nobody", "none")
            .await
            .unwrap_err();
        match &error {
            TestMarketError::Refused { status, body, .. } => {
                assert_eq!(*status, 404, "{body}");
            }
            other => panic!("{other}"),
        }
        market.stop().await.unwrap();
    }
}
