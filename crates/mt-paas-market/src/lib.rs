//! # mt-paas-market
//!
//! The reference marketplace of mt-paas: the other half of the control-plane protocol,
//! built as a server an operator could run.
//!
//! - plans (features, requests per minute), services (API key, webhook secret, base URL),
//!   tenants, users and subscriptions (`pending_activation`, `active`, `suspended`,
//!   `cancelled`, with `expires_at`);
//! - the service API: entitlements (revision, ETag, bulk since a revision), heartbeats (the
//!   response carries pending commands), usage (idempotent keys), audit alerts, command
//!   acknowledgements, provisioning results, SSO (authorization code with PKCE);
//! - the operator API under `/api/v1/admin`: create plans, services, tenants, users and
//!   subscriptions; change plan or expiry; suspend, reinstate, cancel; block, unblock;
//!   provision, deprovision; see instances, alerts, usage and commands.
//!
//! Block, unblock, provision and deprovision reach the service as Standard-Webhooks-signed
//! commands on the seed's paths, pushed with retries, and also wait in heartbeat responses
//! until acknowledged.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let config = mt_paas_market::MarketConfig::load("market.yaml".as_ref(), None)?;
//! let market = mt_paas_market::Market::start(config).await?;
//! market.serve().await?;
//! # Ok(()) }
//! ```

mod api;
mod config;
mod console;
mod crypto;
pub use crypto::NoRandomness;
mod delivery;
mod seed;
mod signing;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod throttle;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use mt_paas_protocol::{
    Block, BlockCommand, Command, DeprovisionCommand, ProvisionCommand, SubscriptionState,
    UnblockCommand,
};
use time::OffsetDateTime;
use tokio::{net::TcpListener, sync::Notify};

use self::store::Change;
pub use self::{
    api::{BlockRequest, SubscriptionRequest},
    config::{DEFAULTS_YAML, MarketConfig},
    signing::SigningKeyInfo,
    store::{Plan, Service, Store, StoreError, Subscription, Tenant},
};

/// The operator token of dev mode (public: the README prints it).
pub const DEV_OPERATOR_TOKEN: &str = "dev-operator-token";
/// The dev seed's API key of both demo services.
pub const DEV_API_KEY: &str = "dev-api-key";
/// The dev seed's webhook secret of both demo services.
pub const DEV_WEBHOOK_SECRET: &str = "whsec_bXQtcGFhcy1kZXYtd2ViaG9vay1zZWNyZXQtMzJieQ==";
/// The dev seed users' password.
pub const DEV_PASSWORD: &str = "dev-password";
/// The dev seed's console operator (its password is [`DEV_PASSWORD`]).
pub const DEV_OPERATOR: &str = "operator";

/// Why an operator account was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// The name is not 1 to 64 of `a-z 0-9 . _ -`.
    #[error("name: {0:?} is not 1 to 64 of a-z, 0-9, '.', '_', '-'")]
    Name(String),
    /// The password is shorter than 12 characters or longer than 1024 bytes.
    #[error("password: 12 characters at least, 1024 bytes at most")]
    Password,
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No salt for the hash.
    #[error(transparent)]
    NoRandomness(#[from] NoRandomness),
}

/// Creates console operator `name`, or sets its password (ending its sessions); `true` when
/// it is new. The password is kept as a PBKDF2 hash, as the market's users' are.
pub async fn put_operator(
    store: &Store,
    name: &str,
    password: &str,
) -> Result<bool, OperatorError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !valid {
        return Err(OperatorError::Name(name.to_owned()));
    }
    if password.chars().count() < 12 || password.len() > 1024 {
        return Err(OperatorError::Password);
    }
    let hash = throttle::hash(password.to_owned()).await?;
    Ok(store.put_operator(name, &hash).await?)
}

/// Why the market could not start or serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarketError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("listen: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("the market server failed: {0}")]
    Serve(std::io::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// Outside dev mode, a service has public demo credentials or shares its webhook secret.
    #[error(
        "service {service}: {problem}; give it credentials of its own, or run the demo with `serve --dev`"
    )]
    PublicCredentials {
        /// The service.
        service: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// Outside dev mode, a console operator signs in with the public demo password.
    #[error(
        "console operator {0}: its password is the public demo password; set another with `mt-paas-market operator add {0}`, or run the demo with `serve --dev`"
    )]
    PublicOperatorPassword(String),
    /// The system's random number generator failed.
    #[error(transparent)]
    NoRandomness(#[from] NoRandomness),
}

/// Why an operator action was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// No such service, tenant, plan or subscription.
    #[error("{what} {id} does not exist")]
    NotFound {
        /// What was looked for.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// It exists already.
    #[error("{what} {id} already exists")]
    Exists {
        /// What.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The action does not fit the current state.
    #[error("{0}")]
    Conflict(String),
    /// A field is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No id for the command.
    #[error(transparent)]
    NoRandomness(#[from] NoRandomness),
}

/// A running market: its store, command delivery and HTTP API.
#[derive(Clone)]
pub struct Market {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: MarketConfig,
    pub(crate) store: Store,
    pub(crate) deliveries: Arc<Notify>,
    pub(crate) http: reqwest::Client,
    pub(crate) signing: signing::KeyCache,
    pub(crate) logins: throttle::LoginThrottle,
}

impl std::fmt::Debug for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Market")
            .field("listen", &self.inner.config.listen)
            .finish_non_exhaustive()
    }
}

impl Market {
    /// Opens the database (migrating it), loads the dev data into an empty one when
    /// `seed_dev_data`, and starts command delivery.
    pub async fn start(config: MarketConfig) -> Result<Self, MarketError> {
        let store = Store::open(&config.database.url, config.database.pool_size).await?;
        // Commands are never delivered anywhere but the service's own base_url: a redirect
        // would carry a signed command (and its webhook-* headers) to another address.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.delivery.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| MarketError::Client(e.to_string()))?;
        let market = Self {
            inner: Arc::new(Inner {
                config,
                store,
                deliveries: Arc::new(Notify::new()),
                http,
                signing: signing::KeyCache::default(),
                logins: throttle::LoginThrottle::default(),
            }),
        };
        if !market.inner.config.dev_mode {
            market.refuse_public_credentials().await?;
        }
        if market.inner.config.seed_dev_data && market.inner.store.is_empty().await? {
            seed::load(&market).await?;
            tracing::info!(
                "loaded the dev data: plans basic and premium; services basic_service and keli_tutor; tenants hallym, korea, snu"
            );
        }
        // The console's demo operator, also in a dev market seeded before the console was.
        if market.inner.config.seed_dev_data
            && market
                .inner
                .store
                .operator_password(DEV_OPERATOR)
                .await?
                .is_none()
        {
            match put_operator(&market.inner.store, DEV_OPERATOR, DEV_PASSWORD).await {
                Ok(_) | Err(OperatorError::Name(_) | OperatorError::Password) => {}
                Err(OperatorError::Store(e)) => return Err(e.into()),
                Err(OperatorError::NoRandomness(e)) => return Err(e.into()),
            }
        }
        tokio::spawn(delivery::run(Arc::downgrade(&market.inner)));
        tokio::spawn(prune_alerts(Arc::downgrade(&market.inner)));
        Ok(market)
    }

    /// Outside dev mode: no service may keep the demo's API key or webhook secret, and no two
    /// may share a webhook secret (a command signed for one would verify at the other).
    async fn refuse_public_credentials(&self) -> Result<(), MarketError> {
        let dev_key = crypto::sha256_hex(DEV_API_KEY.as_bytes());
        let mut secrets = std::collections::HashMap::new();
        for (service, key_hash) in self.inner.store.services_with_keys().await? {
            let problem = if key_hash == dev_key {
                Some("its API key is the public demo key")
            } else if service.webhook_secret == DEV_WEBHOOK_SECRET {
                Some("its webhook secret is the public demo secret")
            } else if secrets
                .insert(service.webhook_secret.clone(), service.id.clone())
                .is_some()
            {
                Some("its webhook secret is another service's")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(MarketError::PublicCredentials {
                    service: service.id,
                    problem,
                });
            }
        }
        for (name, hash) in self.inner.store.operators().await? {
            if throttle::verify(DEV_PASSWORD.to_owned(), Some(hash)).await {
                return Err(MarketError::PublicOperatorPassword(name));
            }
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &MarketConfig {
        &self.inner.config
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The HTTP API.
    pub fn router(&self) -> Router {
        api::router(self.clone())
    }

    /// Serves on `listen` until SIGINT or SIGTERM.
    pub async fn serve(&self) -> Result<(), MarketError> {
        let addr = self.inner.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MarketError::Bind { addr, source })?;
        self.serve_with_shutdown(listener, mt_paas::shutdown_signal())
            .await
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve_with_shutdown(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), MarketError> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "market serving");
        }
        axum::serve(
            listener,
            self.router()
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(MarketError::Serve)
    }

    fn kick(&self) {
        self.inner.deliveries.notify_one();
    }

    /// The service just reached us, so it is up: push what waits for it now rather than at
    /// the end of its backoff.
    pub(crate) async fn service_alive(&self, service_id: &str) {
        match self.inner.store.reschedule(service_id).await {
            Ok(0) => {}
            Ok(_) => self.kick(),
            Err(e) => tracing::warn!(error = %e, "cannot reschedule commands"),
        }
    }

    async fn existing(
        &self,
        service_id: &str,
        tenant_id: &str,
    ) -> Result<(Service, Subscription), ActionError> {
        let service =
            self.inner
                .store
                .service(service_id)
                .await?
                .ok_or_else(|| ActionError::NotFound {
                    what: "service",
                    id: service_id.to_owned(),
                })?;
        let subscription = self
            .inner
            .store
            .subscription(service_id, tenant_id)
            .await?
            .ok_or_else(|| ActionError::NotFound {
                what: "subscription",
                id: format!("{service_id}/{tenant_id}"),
            })?;
        Ok((service, subscription))
    }

    /// Applies a change, then hints the service.
    async fn apply(
        &self,
        service: &Service,
        tenant_id: &str,
        change: Change,
    ) -> Result<Subscription, ActionError> {
        let after = self
            .inner
            .store
            .change(&service.id, tenant_id, change)
            .await?
            .ok_or_else(|| ActionError::NotFound {
                what: "subscription",
                id: format!("{}/{tenant_id}", service.id),
            })?;
        delivery::hint(
            self.inner.clone(),
            service.clone(),
            tenant_id.to_owned(),
            after.revision,
        );
        Ok(after)
    }

    /// Subscribes a tenant to a service. With `provision`, the subscription starts
    /// `pending_activation` and a provision command goes to the service; it becomes `active`
    /// when the service reports the tenant provisioned.
    pub async fn subscribe(
        &self,
        request: &SubscriptionRequest,
    ) -> Result<Subscription, ActionError> {
        let store = &self.inner.store;
        let service =
            store
                .service(&request.service_id)
                .await?
                .ok_or_else(|| ActionError::NotFound {
                    what: "service",
                    id: request.service_id.clone(),
                })?;
        let tenant =
            store
                .tenant(&request.tenant_id)
                .await?
                .ok_or_else(|| ActionError::NotFound {
                    what: "tenant",
                    id: request.tenant_id.clone(),
                })?;
        if store.plan(&request.plan_id).await?.is_none() {
            return Err(ActionError::NotFound {
                what: "plan",
                id: request.plan_id.clone(),
            });
        }
        let state = if request.provision {
            SubscriptionState::PendingActivation
        } else {
            SubscriptionState::Active
        };
        if !store
            .create_subscription(
                &service.id,
                &tenant.id,
                &request.plan_id,
                state,
                request.expires_at,
            )
            .await?
        {
            return Err(ActionError::Exists {
                what: "subscription",
                id: format!("{}/{}", service.id, tenant.id),
            });
        }
        if request.provision {
            self.queue_provision(
                &service,
                &tenant,
                &request.plan_id,
                request.isolation.clone(),
            )
            .await?;
        }
        store
            .subscription(&service.id, &tenant.id)
            .await?
            .ok_or_else(|| ActionError::NotFound {
                what: "subscription",
                id: format!("{}/{}", service.id, tenant.id),
            })
    }

    pub(crate) async fn queue_provision(
        &self,
        service: &Service,
        tenant: &Tenant,
        plan: &str,
        isolation: Option<String>,
    ) -> Result<Command, ActionError> {
        let command = Command::Provision(ProvisionCommand {
            service_id: service.id.clone(),
            command_id: crypto::new_id("cmd")?,
            tenant_id: tenant.id.clone(),
            display_name: tenant.name.clone(),
            plan: plan.to_owned(),
            isolation,
        });
        self.inner.store.enqueue(&service.id, &command).await?;
        self.kick();
        Ok(command)
    }

    /// Changes a subscription's state (suspend, reinstate, cancel).
    pub async fn set_state(
        &self,
        service_id: &str,
        tenant_id: &str,
        state: SubscriptionState,
    ) -> Result<Subscription, ActionError> {
        let (service, current) = self.existing(service_id, tenant_id).await?;
        let allowed = match state {
            SubscriptionState::Suspended => current.state == SubscriptionState::Active,
            SubscriptionState::Active => current.state == SubscriptionState::Suspended,
            SubscriptionState::Cancelled => current.state != SubscriptionState::Cancelled,
            _ => false,
        };
        if !allowed {
            return Err(ActionError::Conflict(format!(
                "the subscription is {}; it cannot become {}",
                state_name(current.state),
                state_name(state)
            )));
        }
        self.apply(&service, tenant_id, Change::State(state)).await
    }

    /// Moves a subscription to another plan.
    pub async fn change_plan(
        &self,
        service_id: &str,
        tenant_id: &str,
        plan_id: &str,
    ) -> Result<Subscription, ActionError> {
        let (service, _) = self.existing(service_id, tenant_id).await?;
        if self.inner.store.plan(plan_id).await?.is_none() {
            return Err(ActionError::NotFound {
                what: "plan",
                id: plan_id.to_owned(),
            });
        }
        self.apply(&service, tenant_id, Change::Plan(plan_id.to_owned()))
            .await
    }

    /// Sets (or clears) when a subscription ends.
    pub async fn set_expiry(
        &self,
        service_id: &str,
        tenant_id: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<Subscription, ActionError> {
        let (service, _) = self.existing(service_id, tenant_id).await?;
        self.apply(&service, tenant_id, Change::Expiry(expires_at))
            .await
    }

    /// Blocks a tenant (the kill switch): records the block and sends the command.
    pub async fn block(
        &self,
        service_id: &str,
        tenant_id: &str,
        request: &BlockRequest,
    ) -> Result<Command, ActionError> {
        let (service, _) = self.existing(service_id, tenant_id).await?;
        let block = Block {
            reason: request.reason.clone(),
            message: request.message.clone(),
            block_at: request.block_at.unwrap_or_else(OffsetDateTime::now_utc),
            grace_period_hours: request.grace_period_hours,
            command_id: crypto::new_id("cmd")?,
            sequence: 0,
        };
        let after = self
            .apply(&service, tenant_id, Change::Block(block.clone()))
            .await?;
        let command = Command::Block(BlockCommand {
            service_id: service.id.clone(),
            tenant_id: tenant_id.to_owned(),
            reason: block.reason,
            block_at: block.block_at,
            grace_period_hours: block.grace_period_hours,
            message: block.message,
            command_id: block.command_id,
            sequence: u64::try_from(after.sequence).unwrap_or_default(),
        });
        self.inner.store.enqueue(&service.id, &command).await?;
        self.kick();
        Ok(command)
    }

    /// Lifts a tenant's block.
    pub async fn unblock(
        &self,
        service_id: &str,
        tenant_id: &str,
        reason: &str,
    ) -> Result<Command, ActionError> {
        let (service, _) = self.existing(service_id, tenant_id).await?;
        let after = self.apply(&service, tenant_id, Change::Unblock).await?;
        let command = Command::Unblock(UnblockCommand {
            service_id: service.id.clone(),
            tenant_id: tenant_id.to_owned(),
            command_id: crypto::new_id("cmd")?,
            sequence: u64::try_from(after.sequence).unwrap_or_default(),
            reason: reason.to_owned(),
        });
        self.inner.store.enqueue(&service.id, &command).await?;
        self.kick();
        Ok(command)
    }

    /// Creates or replaces a plan, its fields checked.
    pub async fn put_plan(&self, plan: &store::Plan) -> Result<(), ActionError> {
        check_id("id", &plan.id)?;
        check_name("name", &plan.name)?;
        if plan.requests_per_minute == Some(0) {
            return Err(ActionError::Invalid {
                field: "requests_per_minute",
                message: "must be at least 1".to_owned(),
            });
        }
        if plan.features.len() > 200 || plan.features.keys().any(|k| k.is_empty() || k.len() > 64) {
            return Err(ActionError::Invalid {
                field: "features",
                message: "at most 200 features, their names 1-64 characters".to_owned(),
            });
        }
        for (service_id, tenant_id, revision) in self.store().put_plan(plan).await? {
            if let Some(service) = self.store().service(&service_id).await? {
                delivery::hint(self.inner.clone(), service, tenant_id, revision);
            }
        }
        Ok(())
    }

    /// Sends a provision command for an existing subscription (again).
    pub async fn provision(
        &self,
        service_id: &str,
        tenant_id: &str,
    ) -> Result<Command, ActionError> {
        let (service, subscription) = self.existing(service_id, tenant_id).await?;
        let tenant =
            self.inner
                .store
                .tenant(tenant_id)
                .await?
                .ok_or_else(|| ActionError::NotFound {
                    what: "tenant",
                    id: tenant_id.to_owned(),
                })?;
        self.queue_provision(&service, &tenant, &subscription.plan_id, None)
            .await
    }

    /// Sends a deprovision command; the subscription is cancelled when the service reports
    /// the tenant removed.
    pub async fn deprovision(
        &self,
        service_id: &str,
        tenant_id: &str,
        archive: bool,
    ) -> Result<Command, ActionError> {
        let (service, _) = self.existing(service_id, tenant_id).await?;
        let command = Command::Deprovision(DeprovisionCommand {
            service_id: service.id.clone(),
            tenant_id: tenant_id.to_owned(),
            command_id: crypto::new_id("cmd")?,
            archive,
        });
        self.inner.store.enqueue(&service.id, &command).await?;
        self.kick();
        Ok(command)
    }

    /// Records a service's provisioning result and moves the subscription accordingly.
    pub(crate) async fn provisioning_result(
        &self,
        service: &Service,
        tenant_id: &str,
        result: &mt_paas_protocol::ProvisioningResult,
    ) -> Result<(), ActionError> {
        let status = match result.status {
            mt_paas_protocol::ProvisioningStatus::Provisioned => "provisioned",
            mt_paas_protocol::ProvisioningStatus::Deprovisioned => "deprovisioned",
            mt_paas_protocol::ProvisioningStatus::Failed => "failed",
        };
        let store = &self.inner.store;
        let fresh = store
            .record_provisioning_result(
                &service.id,
                tenant_id,
                &result.command_id,
                status,
                &result.detail,
            )
            .await?;
        let ack = if result.status == mt_paas_protocol::ProvisioningStatus::Failed {
            "failed"
        } else {
            "applied"
        };
        store
            .acknowledge(&result.command_id, ack, &result.detail)
            .await?;
        if !fresh {
            return Ok(());
        }
        let Some(current) = store.subscription(&service.id, tenant_id).await? else {
            return Ok(());
        };
        let next = match result.status {
            mt_paas_protocol::ProvisioningStatus::Provisioned
                if current.state == SubscriptionState::PendingActivation =>
            {
                Some(SubscriptionState::Active)
            }
            mt_paas_protocol::ProvisioningStatus::Deprovisioned
                if current.state != SubscriptionState::Cancelled =>
            {
                Some(SubscriptionState::Cancelled)
            }
            _ => None,
        };
        if let Some(state) = next {
            self.apply(service, tenant_id, Change::State(state)).await?;
        }
        Ok(())
    }
}

/// An id: 1-63 of a-z, 0-9, `_`, `-`.
pub(crate) fn check_id(field: &'static str, id: &str) -> Result<(), ActionError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ActionError::Invalid {
            field,
            message: "1-63 of a-z, 0-9, '_', '-'".to_owned(),
        })
    }
}

/// A display name: 1-200 characters, no control characters.
pub(crate) fn check_name(field: &'static str, name: &str) -> Result<(), ActionError> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        Err(ActionError::Invalid {
            field,
            message: "1-200 characters, no control characters".to_owned(),
        })
    } else {
        Ok(())
    }
}

/// How long heartbeat samples (the console's charts) are kept.
const SAMPLES_KEPT: time::Duration = time::Duration::hours(24);

/// Prunes alerts past `alert_retention_days` and heartbeat samples past [`SAMPLES_KEPT`],
/// every hour, until the market is dropped.
async fn prune_alerts(market: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let Some(inner) = market.upgrade() else {
            return;
        };
        let keep = time::Duration::days(i64::from(inner.config.alert_retention_days));
        let now = OffsetDateTime::now_utc();
        match inner.store.prune_alerts(now - keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(alerts = n, "old alerts pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning alerts failed"),
        }
        match inner.store.prune_samples(now - SAMPLES_KEPT).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning heartbeat samples failed"),
        }
    }
}

fn state_name(state: SubscriptionState) -> &'static str {
    match state {
        SubscriptionState::PendingActivation => "pending_activation",
        SubscriptionState::Active => "active",
        SubscriptionState::Suspended => "suspended",
        SubscriptionState::Cancelled => "cancelled",
        SubscriptionState::Unknown => "unknown",
    }
}
