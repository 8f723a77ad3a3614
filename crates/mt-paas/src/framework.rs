//! [`ServiceMarketFramework`]: the one object a vendor creates (DESIGN §3.1).

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc};

use axum::{
    Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    activity::ActivityLogger,
    config::{Config, ConfigError, ConfigLoader},
    control::{
        AuditLogger, Control, KillSwitch,
        heartbeat::HeartbeatService,
        metrics::{Metrics, MetricsLayer},
        usage::{UsageMeter, UsageReporter},
    },
    core::{
        background::Background,
        central::{CentralDb, CentralDbError},
        database::{DatabaseRouter, DbError},
        manager::{ManagerError, TenantManager},
        tenant::Features,
    },
    encryption::{EncryptionError, FieldCipher},
    http::{ApiError, ProblemCode, ProblemLayer, panic_response},
    integrations::{Entitlements, MarketError, MarketplaceClient},
    middleware::{
        auth::{AuthLayer, TokenVerifier},
        rate_limit::{RateLimitLayer, RedisLimiter},
        subscription::SubscriptionLayer,
        tenant::TenantLayer,
        usage::UsageLayer,
    },
    outbox::{LrsClient, Outbox, Sinks},
    provisioning::{ProvisionError, Provisioner},
    vectors::VectorStore,
};
use backon::{ConstantBuilder, Retryable};
use mt_paas_protocol::webhook::Verifier;
use std::time::Duration;

/// Why the framework could not start or serve.
///
/// Its `Debug` is its message, so that `fn main() -> Result<(), mt_paas::Error>` prints a
/// configuration mistake as `mt-paas config check` does, one problem per line.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; every problem is listed.
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigError),
    /// The central database could not be opened or migrated.
    #[error(transparent)]
    CentralDb(#[from] CentralDbError),
    /// The tenant registry failed.
    #[error(transparent)]
    Registry(#[from] ManagerError),
    /// Provisioning failed (reading the migrations, or migrating on start).
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The market link could not be set up.
    #[error("marketplace: {0}")]
    Market(#[from] MarketError),
    /// The central DB failed while starting.
    #[error("central DB: {0}")]
    Db(#[from] sqlx::Error),
    /// `service.listen` could not be bound.
    #[error("service.listen: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The framework: configuration, central DB, tenant registry, and the layers that make an
/// axum router multi-tenant.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use mt_paas::{ServiceMarketFramework, Tenant};
///
/// #[tokio::main]
/// async fn main() -> Result<(), mt_paas::Error> {
///     let framework = ServiceMarketFramework::from_config_path("mt_paas_config.yaml").await?;
///     let app = framework.create_app(
///         Router::new().route("/courses", get(|t: Tenant| async move { t.id().to_string() })),
///     );
///     framework.serve(app).await
/// }
/// ```
#[derive(Clone)]
pub struct ServiceMarketFramework {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    central: CentralDb,
    tenants: TenantManager,
    databases: DatabaseRouter,
    #[cfg_attr(not(feature = "vectors"), allow(dead_code))]
    vectors: Option<VectorStore>,
    provisioner: Provisioner,
    tenant_layer: TenantLayer,
    subscription_layer: SubscriptionLayer,
    kill_switch: KillSwitch,
    marketplace: Option<MarketplaceClient>,
    entitlements: Option<Entitlements>,
    control: Control,
    metrics: Arc<Metrics>,
    usage: Arc<UsageMeter>,
    usage_reporter: UsageReporter,
    heartbeat: Option<HeartbeatService>,
    activity: ActivityLogger,
    instance_id: Arc<str>,
    outbox: Outbox,
    audit: AuditLogger,
    auth_layer: AuthLayer,
    rate_limit_layer: Option<RateLimitLayer>,
    /// DOCKER_PER_TENANT with an app image: what the service's routes do not answer goes to
    /// the tenant's own app.
    #[cfg(feature = "docker")]
    app_router: Option<crate::middleware::app_router::AppRouter>,
    /// A tenant's own app: the router's signed requests only, in place of the guard.
    #[cfg(feature = "docker")]
    tenant_app: Option<crate::middleware::tenant_app::TenantAppLayer>,
    cipher: Option<FieldCipher>,
    #[cfg(feature = "sso")]
    sso: Option<crate::middleware::auth::sso::Sso>,
    /// The last readiness ping: when, and whether it answered.
    ready: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
    /// Delivery, heartbeats, usage periods, sync, the change feed: stopped at shutdown.
    background: Background,
    /// Whether the heartbeat runs (from the first `serve`).
    heartbeat_started: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ServiceMarketFramework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceMarketFramework")
            .field("service", &self.inner.config.service.id)
            .field("central", &self.inner.central.kind())
            .finish_non_exhaustive()
    }
}

impl ServiceMarketFramework {
    /// Loads the configuration at `path` (with the overlay chosen by `MT_PAAS_ENV`), starts
    /// logging at `logging.level` (unless the application already installed a subscriber;
    /// `RUST_LOG` overrides), opens and migrates the central DB.
    pub async fn from_config_path(path: impl AsRef<Path>) -> Result<Self, Error> {
        let config = ConfigLoader::new(path.as_ref()).load()?;
        crate::logging::init(&config);
        Self::from_config(config).await
    }

    /// Starts from a loaded configuration (no logging set-up). With
    /// `database.tenant.migrate_on_start`, every tenant is brought to the newest migration
    /// first (a tenant that fails is logged and keeps serving at its current version).
    pub async fn from_config(mut config: Config) -> Result<Self, Error> {
        config.run_as_tenant_app();
        let central = CentralDb::connect(&config.database.central).await?;
        let background = Background::default();
        let tenants = TenantManager::new(
            central.clone(),
            config.isolation.mode,
            Features::new(config.features.defaults.clone()),
        );
        let config = Arc::new(config);
        let databases = DatabaseRouter::new(config.clone());
        // One verifier for identification and authentication: one cache of the market's keys.
        let verifier = TokenVerifier::from_config(&config);
        let vectors = VectorStore::from_config(config.clone(), databases.clone());
        let mut tenant_layer =
            TenantLayer::new(&config, tenants.clone())?.with_databases(databases.clone());
        #[cfg(feature = "vectors")]
        if let Some(vectors) = &vectors {
            tenant_layer = tenant_layer.with_vectors(vectors.clone());
        }
        if let Some(verifier) = &verifier {
            tenant_layer = tenant_layer.with_verifier(verifier);
            if let Some(keys) = verifier.market_keys() {
                keys.spawn_refresh();
            }
        }
        let provisioner =
            Provisioner::new(config.clone(), tenants.clone(), databases.clone()).await?;
        if config.database.tenant.migrate_on_start {
            let results = provisioner.migrate_all(4, |_, _| {}).await?;
            let failed: Vec<String> = results
                .iter()
                .filter_map(|(id, r)| r.as_ref().err().map(|e| format!("{id}: {e}")))
                .collect();
            for failure in &failed {
                tracing::error!(failure = %failure, "tenant migration on start failed");
            }
            tracing::info!(
                tenants = results.len(),
                failed = failed.len(),
                "tenant migrations checked"
            );
        }
        let kill_switch = KillSwitch::load(central.clone()).await?;
        let market = &config.marketplace;
        let marketplace = match market.api_key {
            Some(_) => Some(MarketplaceClient::new(market, &config.service.id)?),
            None => None,
        };
        let entitlements = match (&marketplace, market.subscription_check) {
            (Some(client), true) => {
                Some(Entitlements::new(client.clone(), central.clone(), market))
            }
            _ => None,
        };
        if let Some(entitlements) = &entitlements {
            // One sync before serving, bounded: a market outage must not keep us down.
            let wait = Duration::from_millis(market.request_timeout_ms.saturating_mul(2));
            match tokio::time::timeout(wait, entitlements.sync()).await {
                Ok(Ok(n)) => tracing::info!(changed = n, "entitlements synced from the market"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "entitlement sync at start failed; serving from the cache")
                }
                Err(_) => {
                    tracing::warn!("entitlement sync at start timed out; serving from the cache")
                }
            }
            entitlements.spawn_sync_loop(
                Duration::from_secs(market.sync_interval_seconds),
                &background,
            );
        }
        let subscription_layer = SubscriptionLayer::new(
            entitlements.clone(),
            kill_switch.clone(),
            config.features.controlled_by_subscription,
            market.grace_period_hours,
        );
        let sinks = Sinks {
            market: marketplace.clone(),
            lrs: if config.logging.activity_log.enabled {
                LrsClient::new(
                    &config.logging.activity_log,
                    Duration::from_millis(market.request_timeout_ms.max(5000)),
                )
                .map_err(|message| {
                    Error::Config(ConfigError {
                        problems: vec![crate::config::ConfigProblem {
                            file: config.sources.base.display().to_string(),
                            key: "logging.activity_log.endpoint".to_owned(),
                            message,
                        }],
                    })
                })?
            } else {
                None
            },
        };
        let outbox = Outbox::new(central.clone(), config.logging.outbox.clone(), sinks);
        outbox.spawn_workers(&background);
        let audit = AuditLogger::new(outbox.clone(), config.service.id.clone(), &background);
        let auth_layer = AuthLayer::new(
            verifier,
            config.security.cross_tenant_audit.then(|| audit.clone()),
        );
        #[cfg(feature = "sso")]
        let sso_config = &config.auth.marketplace_sso;
        #[cfg(feature = "sso")]
        let sso = match (
            sso_config.enabled,
            &marketplace,
            crate::middleware::auth::jwt::JwtKeys::from_config(&config.auth.jwt),
        ) {
            (true, Some(client), Some(keys)) => Some(crate::middleware::auth::sso::Sso {
                client: client.clone(),
                keys,
                cookie_key: crate::middleware::auth::sso::Sso::cookie_key(
                    config
                        .auth
                        .jwt
                        .secret
                        .as_ref()
                        .map(crate::config::Secret::expose)
                        .unwrap_or_default(),
                ),
                redirect_uri: format!("{}{}", config.service.public_url(), sso_config.callback_url),
                callback_path: sso_config.callback_url.clone(),
                expiry_hours: config.auth.jwt.expiry_hours,
            }),
            _ => None,
        };
        let encryption = &config.security.encryption;
        let cipher = match (&encryption.enabled, &encryption.key) {
            (true, Some(key)) => {
                let previous: Vec<&str> = encryption
                    .previous_keys
                    .iter()
                    .map(crate::config::Secret::expose)
                    .collect();
                Some(FieldCipher::new(key.expose(), &previous).map_err(|e| {
                    Error::Config(ConfigError {
                        problems: vec![crate::config::ConfigProblem {
                            file: config.sources.base.display().to_string(),
                            key: "security.encryption.key".to_owned(),
                            message: e.to_string(),
                        }],
                    })
                })?)
            }
            _ => None,
        };
        let limits = &config.security.rate_limit;
        let rate_limit_layer = if limits.enabled {
            // Without the `redis` feature the configuration refused a `redis_url`.
            #[cfg(not(feature = "redis"))]
            let redis: Option<RedisLimiter> = None;
            #[cfg(feature = "redis")]
            let redis = match &limits.redis_url {
                Some(url) => match RedisLimiter::connect(url.expose(), &config.service.id).await {
                    Ok(redis) => Some(redis),
                    Err(e) => {
                        tracing::error!(url = %url, error = %e, "security.rate_limit.redis_url cannot be reached; limiting per replica until it can");
                        None
                    }
                },
                None => None,
            };
            Some(RateLimitLayer::new(
                limits.default_rpm,
                limits.anonymous_rpm,
                crate::http::ClientAddresses::new(config.security.trusted_proxy_header.as_deref()),
                redis,
                Some(audit.clone()),
            ))
        } else {
            None
        };
        let verifier = market.webhook_secret.as_ref().map(|secrets| {
            Verifier::new(
                secrets
                    .expose()
                    .split_ascii_whitespace()
                    .filter_map(|s| s.parse().ok())
                    .collect(),
            )
        });
        let control = Control {
            config: config.clone(),
            verifier,
            central: central.clone(),
            kill_switch: kill_switch.clone(),
            provisioner: provisioner.clone(),
            entitlements: entitlements.clone(),
            client: marketplace.clone(),
            audit: audit.clone(),
            outbox: outbox.clone(),
        };
        if control.verifier.is_some() {
            control.spawn_pruning(&background);
        }
        let instance_id: Arc<str> = instance_id()
            .map_err(|e| Error::Serve(std::io::Error::other(e)))?
            .into();
        let metrics = Arc::new(Metrics::new());
        // The vendor's own series show at /metrics; a recorder the vendor installed first
        // keeps them instead.
        if !metrics.install_global() {
            tracing::debug!(
                "a metrics recorder was installed before: the service's own series go to it; /metrics shows mt-paas's"
            );
        }
        {
            let metrics = metrics.clone();
            let bg = background.clone();
            background.spawn(async move {
                while bg.sleep(Duration::from_secs(5)).await {
                    metrics.upkeep();
                }
            });
        }
        let usage = Arc::new(UsageMeter::default());
        let usage_reporter = UsageReporter::new(
            usage.clone(),
            outbox.clone(),
            instance_id.clone(),
            Duration::from_secs(
                config
                    .logging
                    .usage_report
                    .interval_minutes
                    .saturating_mul(60)
                    .max(60),
            ),
        );
        if config.logging.usage_report.enabled && marketplace.is_some() {
            usage_reporter.spawn(&background);
        }
        let heartbeat = marketplace.as_ref().map(|client| {
            HeartbeatService::new(
                client.clone(),
                metrics.clone(),
                usage.clone(),
                central.clone(),
                control.clone(),
                instance_id.clone(),
                Duration::from_secs(market.heartbeat_interval),
            )
        });
        let activity = ActivityLogger::new(&config, outbox.clone());
        let feed = ChangeFeed {
            tenants: tenants.clone(),
            kill_switch: kill_switch.clone(),
            entitlements: entitlements.clone(),
            databases: databases.clone(),
        };
        match &central {
            CentralDb::Postgres(_) => {
                spawn_change_listener(config.database.central.url.clone(), feed, &background);
            }
            CentralDb::Sqlite(pool) => spawn_change_poller(pool.clone(), feed, &background),
        }
        #[cfg(feature = "docker")]
        let tenant_app = config.tenant_app.clone().map(|app| {
            tracing::info!(tenant = %app.tenant, "serving one tenant as its own app, behind its tenant router");
            crate::middleware::tenant_app::TenantAppLayer::new(app, databases.clone(), vectors.clone())
        });
        // The tenants' own apps exist only where their stacks do (an overlay that runs the
        // service on files keeps its routes here).
        #[cfg(feature = "docker")]
        let app_router = if config.isolation.mode == crate::config::IsolationMode::DockerPerTenant
            && config.isolation.docker.images.app.is_some()
        {
            Some(
                crate::middleware::app_router::AppRouter::new(config.clone()).map_err(|e| {
                    ProvisionError::Docker(format!("the tenant router's HTTP client: {e}"))
                })?,
            )
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                #[cfg(feature = "docker")]
                app_router,
                #[cfg(feature = "docker")]
                tenant_app,
                central,
                tenants,
                databases,
                vectors,
                provisioner,
                tenant_layer,
                subscription_layer,
                kill_switch,
                marketplace,
                entitlements,
                control,
                metrics,
                usage,
                usage_reporter,
                heartbeat,
                activity,
                instance_id,
                outbox,
                audit,
                auth_layer,
                rate_limit_layer,
                cipher,
                #[cfg(feature = "sso")]
                sso,
                ready: tokio::sync::Mutex::new(None),
                background,
                heartbeat_started: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The vendor's `custom.{key}` section as a typed struct (DESIGN §8.3 `custom`).
    pub fn custom<T: DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        self.inner.config.custom(key)
    }

    /// The tenant registry.
    pub fn tenants(&self) -> &TenantManager {
        &self.inner.tenants
    }

    /// The central database.
    pub fn central_db(&self) -> &CentralDb {
        &self.inner.central
    }

    /// The tenant databases.
    pub fn databases(&self) -> &DatabaseRouter {
        &self.inner.databases
    }

    /// Tenant provisioning: create, destroy, restore, migrate.
    pub fn provisioner(&self) -> &Provisioner {
        &self.inner.provisioner
    }

    /// The kill switch (the market's block and unblock commands).
    pub fn kill_switch(&self) -> &KillSwitch {
        &self.inner.kill_switch
    }

    /// The market client, when `marketplace.api_key` is set.
    pub fn marketplace(&self) -> Option<&MarketplaceClient> {
        self.inner.marketplace.as_ref()
    }

    /// The entitlement cache, when `marketplace.subscription_check` is on.
    pub fn entitlements(&self) -> Option<&Entitlements> {
        self.inner.entitlements.as_ref()
    }

    /// The durable outbox (audit alerts, usage, xAPI statements).
    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    /// Field encryption (`security.encryption`).
    pub fn encryption(&self) -> Result<&FieldCipher, EncryptionError> {
        self.inner
            .cipher
            .as_ref()
            .ok_or(EncryptionError::NotConfigured)
    }

    /// The audit logger (security events to the market).
    pub fn audit(&self) -> &AuditLogger {
        &self.inner.audit
    }

    /// A connection to the current request's tenant's database (DESIGN §3.1 `get_tenant_db()`).
    /// The [`TenantDb`](crate::TenantDb) extractor is the same thing for handlers.
    pub async fn get_tenant_db(&self) -> Result<crate::TenantDb, DbError> {
        let tenant = crate::current_tenant().ok_or(DbError::NoTenant)?;
        self.inner.databases.acquire(&tenant).await
    }

    /// The current request's tenant's vector collections (`database.vector`). The
    /// [`TenantVectors`](crate::TenantVectors) extractor is the same thing for handlers.
    #[cfg(feature = "vectors")]
    pub fn get_tenant_vectors(&self) -> Result<crate::TenantVectors, crate::vectors::VectorError> {
        use crate::vectors::VectorError;
        let tenant = crate::current_tenant().ok_or(VectorError::NoTenant)?;
        let store = self
            .inner
            .vectors
            .as_ref()
            .ok_or(VectorError::NotConfigured)?;
        Ok(store.for_tenant(&tenant))
    }

    /// The configured vector store, shared by every tenant.
    #[cfg(feature = "vectors")]
    pub fn vectors(&self) -> Option<&VectorStore> {
        self.inner.vectors.as_ref()
    }

    /// Whether the current request's tenant has `feature` (false outside a tenant route).
    pub fn has_feature(&self, feature: &str) -> bool {
        crate::current_tenant().is_some_and(|t| t.has_feature(feature))
    }

    /// Whether requests the service's routes do not answer go to each tenant's own app
    /// (DOCKER_PER_TENANT with `isolation.docker.images.app`): a service whose routes all
    /// run in the tenants' apps gives [`create_app`](Self::create_app) no routes of its own.
    pub fn routes_to_tenant_apps(&self) -> bool {
        #[cfg(feature = "docker")]
        return self.inner.app_router.is_some();
        #[cfg(not(feature = "docker"))]
        false
    }

    /// The tenant this process serves as its own app (`MT_PAAS_TENANT_ID`), if it is one.
    pub fn tenant_app(&self) -> Option<&crate::config::TenantAppConfig> {
        self.inner.config.tenant_app.as_ref()
    }

    /// The tenant layer, for composing routers by hand.
    pub fn tenant_layer(&self) -> TenantLayer {
        self.inner.tenant_layer.clone()
    }

    /// Makes `router` multi-tenant: each of its routes gets the pipeline of DESIGN §4 —
    /// tenant, auth, subscription and kill switch, rate limit — and the public routes
    /// `/healthz` and `/readyz` (no tenant), plus the signed control endpoints when
    /// `marketplace.webhook_secret` is set, are added. Every error answers as
    /// problem+json in the caller's language; a panicking handler answers 500.
    ///
    /// Requests that match none of `router`'s routes get a 404 without tenant checks.
    pub fn create_app(&self, router: Router) -> Router {
        let public = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.clone());
        // One stack, boxed once per route: each `route_layer` would box the route again
        // and clone the whole chain below it on every request.
        let guard = tower::ServiceBuilder::new()
            .layer(self.tenant_layer())
            .layer(self.inner.auth_layer.clone())
            .layer(self.inner.subscription_layer.clone())
            .option_layer(self.inner.rate_limit_layer.clone())
            .layer(axum::Extension(self.inner.activity.clone()))
            // Inside the limiter: a refused request is not the tenant's usage.
            .layer(UsageLayer::new(self.inner.usage.clone()));
        // route_layer panics on a router without routes; such a router has nothing to guard.
        #[cfg(not(feature = "docker"))]
        let tenant_routes = if router.has_routes() {
            router.route_layer(guard)
        } else {
            router
        };
        #[cfg(feature = "docker")]
        let tenant_routes = match &self.inner.tenant_app {
            _ if !router.has_routes() => router,
            // A tenant's own app: its router has run the guard; what it signed is admitted.
            Some(tenant_app) => router.route_layer(
                tower::ServiceBuilder::new()
                    .layer(tenant_app.clone())
                    .layer(axum::Extension(self.inner.activity.clone())),
            ),
            None => router.route_layer(guard.clone()),
        };
        // What the service's routes do not answer goes, through the same guard, to the
        // tenant's own app container.
        #[cfg(feature = "docker")]
        let tenant_routes = match &self.inner.app_router {
            Some(app_router) => {
                let app_router = app_router.clone();
                let forward = tower::service_fn(move |request: axum::extract::Request| {
                    let app_router = app_router.clone();
                    async move { Ok::<_, std::convert::Infallible>(app_router.forward(request).await) }
                });
                tenant_routes.fallback_service(guard.service(forward))
            }
            None => tenant_routes,
        };
        let public = if self.inner.control.verifier.is_some() {
            public.merge(crate::control::router(self.inner.control.clone()))
        } else {
            public
        };
        #[cfg(feature = "sso")]
        let public = match &self.inner.sso {
            Some(state) => public.merge(crate::middleware::auth::sso::router(
                state.clone(),
                &self.inner.config.auth.marketplace_sso.login_url,
                &self.inner.config.auth.marketplace_sso.callback_url,
            )),
            None => public,
        };
        // Outermost first: metrics see every answer, problems are localized, panics caught.
        let outer = tower::ServiceBuilder::new()
            .layer(MetricsLayer::new(self.inner.metrics.clone()))
            .layer(ProblemLayer)
            .map_response(IntoResponse::into_response)
            .layer(CatchPanicLayer::custom(panic_response));
        public.merge(tenant_routes).layer(outer)
    }

    /// Serves `app` on `service.listen` until SIGINT or SIGTERM, then drains in-flight
    /// requests and closes the central DB.
    pub async fn serve(&self, app: Router) -> Result<(), Error> {
        let addr = self.inner.config.service.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        self.serve_with_shutdown(listener, app, shutdown_signal())
            .await
    }

    /// Serves `app` on `listener` until `shutdown` completes.
    pub async fn serve_with_shutdown(
        &self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(service = %self.inner.config.service.id, %addr, "serving");
        }
        // Heartbeats tell the market this service is up, and it pushes commands at once: so
        // they start only now that the listener is bound (never before, or those pushes meet
        // a closed port), and only once whatever serves.
        if let Some(heartbeat) = &self.inner.heartbeat
            && !self
                .inner
                .heartbeat_started
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            heartbeat.spawn(&self.inner.background);
        }
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)?;
        self.shutdown().await;
        Ok(())
    }

    /// Stops the service's work in order, once no request is in flight (what
    /// [`serve_with_shutdown`](Self::serve_with_shutdown) does after draining): the background
    /// tasks at their next wait (up to 5 s), then the last usage period, audit summary and
    /// outbox delivery (up to 5 s; what is left stays in the central DB for the next start),
    /// then the tenant connections and the central DB.
    pub async fn shutdown(&self) {
        tracing::info!("stopped serving; finishing background work");
        if !self.inner.background.stop(Duration::from_secs(5)).await {
            tracing::warn!("background work still running after 5 s; continuing the shutdown");
        }
        self.shutdown_telemetry().await;
        let left = self.inner.outbox.counts(None).await.map(|c| c.pending);
        self.inner.databases.close_idle().await;
        self.inner.central.close().await;
        match left {
            Ok(0) => tracing::info!("shut down; the outbox is empty"),
            Ok(n) => tracing::info!(
                pending = n,
                "shut down; the outbox keeps these for the next start"
            ),
            Err(e) => tracing::warn!(error = %e, "shut down; the outbox could not be counted"),
        }
    }
}

impl ServiceMarketFramework {
    /// Reports the usage counted so far (the current, partial period) and delivers what the
    /// outbox holds, for up to five seconds; the rest stays in the central DB for next time.
    pub async fn shutdown_telemetry(&self) {
        self.inner.audit.flush_refusals().await;
        if self.inner.config.logging.usage_report.enabled && self.inner.marketplace.is_some() {
            let reporter = &self.inner.usage_reporter;
            reporter
                .report(reporter.period_start(time::OffsetDateTime::now_utc()))
                .await;
        }
        self.inner.outbox.shutdown(Duration::from_secs(5)).await;
    }

    /// The request metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Per-tenant usage counters.
    pub fn usage(&self) -> &UsageReporter {
        &self.inner.usage_reporter
    }

    /// The heartbeat, when the market link is configured.
    pub fn heartbeat(&self) -> Option<&HeartbeatService> {
        self.inner.heartbeat.as_ref()
    }

    /// This replica's id (heartbeats, usage keys).
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// The xAPI activity log.
    pub fn activity_log(&self) -> &ActivityLogger {
        &self.inner.activity
    }

    /// Logs an activity of the current request's tenant and user (DESIGN §7.2
    /// `log_activity`); `None` outside a tenant route or with activity logging off.
    pub fn log_activity(
        &self,
        verb: &str,
        object: &str,
        result: serde_json::Value,
    ) -> Option<String> {
        let tenant = crate::current_tenant()?;
        let user = crate::current_user();
        self.inner.activity.log(
            tenant.id(),
            user.as_ref().map(|u| u.sub()),
            verb,
            object,
            result,
        )
    }
}

/// `{hostname}-{pid}-{random}`: unique per process, so usage keys of two processes differ.
fn instance_id() -> Result<String, crate::random::NoRandomness> {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let bytes: [u8; 3] = crate::random::bytes()?;
    Ok(format!(
        "{host}-{}-{:02x}{:02x}{:02x}",
        std::process::id(),
        bytes[0],
        bytes[1],
        bytes[2]
    ))
}

/// `/metrics`: counters and gauges kept in memory; a scrape never touches a database.
async fn metrics(State(framework): State<ServiceMarketFramework>) -> Response {
    let inner = &framework.inner;
    let pending = inner.outbox.pending_gauge() as f64;
    let text = inner.metrics.render(&[
        (
            "mt_paas_tenants_active",
            "Tenants with requests in the current usage period.",
            inner.usage.tracked() as f64,
        ),
        (
            "mt_paas_tenant_db_connections",
            "Connections open to tenant databases.",
            inner.databases.open_connections() as f64,
        ),
        (
            "mt_paas_outbox_pending",
            "Audit alerts, usage records and statements waiting for delivery (counted every 10 s).",
            pending,
        ),
        (
            "mt_paas_outbox_refused_total",
            "Items the outbox refused because its buffer was full.",
            inner.outbox.refused() as f64,
        ),
    ]);
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

async fn healthz() -> Response {
    json_line(&json!({ "status": "ok" }))
}

/// A JSON body ending with a newline (what `curl` shows stays on its own line).
fn json_line(value: &serde_json::Value) -> Response {
    let mut body = value.to_string();
    body.push('\n');
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `/readyz`: the central DB answers. At most one ping a second, whatever the probes: an
/// anonymous flood of `/readyz` costs the database nothing more.
async fn readyz(State(framework): State<ServiceMarketFramework>) -> Response {
    let mut last = framework.inner.ready.lock().await;
    let ok = match *last {
        Some((at, ok)) if at.elapsed() < Duration::from_secs(1) => ok,
        _ => {
            let ok = match framework.inner.central.ping().await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "readiness check: central DB unreachable");
                    false
                }
            };
            *last = Some((std::time::Instant::now(), ok));
            ok
        }
    };
    drop(last);
    if ok {
        json_line(&json!({ "status": "ready", "central_db": "ok" }))
    } else {
        ApiError::new(ProblemCode::CentralDbUnavailable).into_response()
    }
}

/// What another process's change (a replica, or the CLI beside a running service) touches
/// here.
#[derive(Clone)]
struct ChangeFeed {
    tenants: TenantManager,
    kill_switch: KillSwitch,
    entitlements: Option<Entitlements>,
    databases: DatabaseRouter,
}

impl ChangeFeed {
    /// Applies one announced change: a kill-switch change is enforced at once, entitlement
    /// and registry changes drop the cached copies; a tenant destroyed elsewhere has its
    /// connections closed here (nothing may still write into what is being archived).
    async fn apply(&self, topic: &str, key: &str) {
        let Ok(id) = crate::TenantId::parse(key) else {
            return;
        };
        match topic {
            "kill_switch" => {
                if let Err(e) = self.kill_switch.reload_tenant(&id).await {
                    tracing::warn!(error = %e, tenant = %id, "reloading a kill-switch state failed");
                }
            }
            "entitlement" => {
                if let Some(entitlements) = &self.entitlements {
                    entitlements.forget(&id).await;
                }
            }
            "tenant" => {
                let before = self.tenants.cached(&id).await;
                self.tenants.forget(&id).await;
                // Read, not cached: the cache fills from requests only.
                let gone = match self.tenants.get(&id).await {
                    Ok(Some(now)) => now.status == crate::TenantStatus::Archived,
                    Ok(None) => true,
                    Err(_) => false,
                };
                if gone
                    && let Some(before) = before
                    && let Ok(target) = self.databases.target(before.record())
                {
                    let databases = self.databases.clone();
                    tokio::spawn(async move { databases.close_target(&target).await });
                }
            }
            _ => {}
        }
    }

    /// After a gap in the feed (notifications may be lost): read the kill switch again.
    async fn resync(&self) {
        if let Err(e) = self.kill_switch.reload().await {
            tracing::warn!(error = %e, "reloading the kill switch failed");
        }
    }
}

/// Applies what other replicas announce on the central Postgres DB (`LISTEN`), within the
/// notification's latency (well under a second). After a lost connection everything is
/// re-read, since notifications sent meanwhile are gone.
/// How a lost change feed is retried: every 2 s until it is back (or the process stops).
const RECONNECT: ConstantBuilder = ConstantBuilder::new()
    .with_delay(Duration::from_secs(2))
    .without_max_times();

fn spawn_change_listener(
    url: crate::config::DatabaseUrl,
    feed: ChangeFeed,
    background: &Background,
) {
    let bg = background.clone();
    background.spawn(async move {
        let connect = || async {
            let options = url.pg_options()?;
            let mut listener =
                sqlx::postgres::PgListener::connect_with(&sqlx::PgPool::connect_lazy_with(options))
                    .await?;
            listener
                .listen(crate::core::central::CHANGES_CHANNEL)
                .await?;
            Ok::<_, sqlx::Error>(listener)
        };
        while !bg.is_stopping() {
            let listening = connect
                .retry(RECONNECT)
                .sleep(tokio::time::sleep)
                .notify(|e, _| tracing::warn!(error = %e, "cannot listen for replica changes; retrying"));
            let mut listener = tokio::select! {
                () = bg.stopping() => return,
                listener = listening => match listener {
                    Ok(listener) => listener,
                    // Unreachable: the schedule has no last attempt.
                    Err(_) => continue,
                },
            };
            feed.resync().await;
            loop {
                let received = tokio::select! {
                    () = bg.stopping() => return,
                    received = listener.try_recv() => received,
                };
                match received {
                    Ok(Some(notification)) => {
                        if let Some((topic, key)) = notification.payload().split_once(':') {
                            feed.apply(topic, key).await;
                        }
                    }
                    // The connection dropped and came back: notifications may be lost.
                    Ok(None) => feed.resync().await,
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for replica changes failed; reconnecting");
                        break;
                    }
                }
            }
        }
    });
}

/// Applies what other processes append to a SQLite central DB's change table, read every
/// [`CHANGE_POLL`](crate::core::central::CHANGE_POLL).
fn spawn_change_poller(pool: sqlx::SqlitePool, feed: ChangeFeed, background: &Background) {
    let bg = background.clone();
    background.spawn(async move {
        let opening = (|| crate::core::central::Changes::open(pool.clone()))
            .retry(RECONNECT)
            .sleep(tokio::time::sleep)
            .when(|_| !pool.is_closed())
            .notify(|e, _| tracing::warn!(error = %e, "cannot read the change feed; retrying"));
        let mut changes = tokio::select! {
            () = bg.stopping() => return,
            opened = opening => match opened {
                Ok(changes) => changes,
                Err(e) => {
                    tracing::debug!(error = %e, "the central DB is closed; no change feed");
                    return;
                }
            },
        };
        let mut tick = tokio::time::interval(crate::core::central::CHANGE_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = bg.stopping() => return,
                _ = tick.tick() => {}
            }
            if pool.is_closed() {
                return;
            }
            match changes.next().await {
                Ok(batch) => {
                    for (topic, key) in batch {
                        feed.apply(&topic, &key).await;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "reading the change feed failed"),
            }
        }
    });
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
