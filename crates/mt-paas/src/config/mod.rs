//! Typed configuration (DESIGN §8): `mt_paas_config.yaml`, an optional `{env}` overlay, and
//! embedded defaults for every key that is absent.
//!
//! ```
//! use mt_paas::config::{ConfigLoader, IsolationMode};
//!
//! let dir = std::env::temp_dir().join(format!("mt-paas-doc-{}", std::process::id()));
//! std::fs::create_dir_all(dir.join("migrations")).unwrap(); // the service's, beside its config
//! let path = dir.join("mt_paas_config.yaml");
//! std::fs::write(&path, "service:\n  id: demo\n  name: Demo\nauth:\n  jwt:\n    secret: ${JWT_SECRET:-dev}\n").unwrap();
//!
//! let config = ConfigLoader::new(&path).vars(|_| None).load().unwrap();
//! assert_eq!(config.service.id, "demo");
//! // absent keys take the embedded defaults: SQLite files under ./data
//! assert_eq!(config.isolation.mode, IsolationMode::DatabasePerTenant);
//! assert!(config.database.central.url.expose().starts_with("sqlite:"));
//! ```
//!
//! How a file becomes a [`Config`]: the base file and the overlay are parsed as YAML values and
//! deep-merged over the embedded defaults ([`DEFAULTS_YAML`]); then `${VAR}` and
//! `${VAR:-default}` are substituted in string scalars (after parsing, so an environment value
//! can never inject YAML structure); then the tree is read into typed structs that deny unknown
//! keys; then cross-key rules are checked. Every problem found on the way is reported at once,
//! each naming the file, the key path and the cause ([`ConfigError`]).

mod loader;
#[cfg(feature = "testing")]
pub(crate) use loader::merge;
mod secret;

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use self::{
    loader::{ConfigError, ConfigLoader, ConfigProblem, ConfigSources, ENV_VAR},
    secret::{DatabaseKind, DatabaseUrl, REDACTED, Secret},
};
pub use crate::names::IsolationMode;

/// The embedded defaults: every key that a configuration file leaves out takes its value here.
pub const DEFAULTS_YAML: &str = include_str!("defaults.yaml");

/// The whole configuration (DESIGN §8.3).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The service's identity.
    pub service: ServiceConfig,
    /// The link to the marketplace.
    pub marketplace: MarketplaceConfig,
    /// How tenants are kept apart.
    pub isolation: IsolationConfig,
    /// Central, tenant and vector databases.
    pub database: DatabaseConfig,
    /// How a request names its tenant.
    pub tenant_identification: TenantIdentificationConfig,
    /// JWT and marketplace SSO.
    pub auth: AuthConfig,
    /// Plan features.
    pub features: FeaturesConfig,
    /// Audit, encryption and rate limits.
    pub security: SecurityConfig,
    /// Log level, activity log and usage reports.
    pub logging: LoggingConfig,
    /// Tenant provisioning.
    pub provisioning: ProvisioningConfig,
    /// The vendor's own settings, free-form; read with [`Config::custom`].
    pub custom: Custom,
    /// Which files this configuration came from.
    #[serde(skip)]
    pub sources: ConfigSources,
    /// Set when this process is one tenant's own app in its stack (DOCKER_PER_TENANT with
    /// `isolation.docker.images.app`): read from the environment the stack gives it.
    #[serde(skip)]
    pub tenant_app: Option<TenantAppConfig>,
}

/// One tenant's own app (DOCKER_PER_TENANT with an app image), from the environment its
/// stack gives it: `MT_PAAS_TENANT_ID` switches it on; `MT_PAAS_ROUTER_KEY` and
/// `DATABASE_URL` are then required, `VECTOR_URL` when `database.vector` is configured.
///
/// Such a process serves its routes to that one tenant only, and only requests its tenant
/// router signed (any other is 401 `invalid_signature`): the tenant, its name, features and
/// entitlement, and the signed-in user come from the router's signed headers, the tenant
/// database is `DATABASE_URL`. The router has already enforced the subscription, the kill
/// switch, rate limits and usage, so the app has no market link of its own: no heartbeat,
/// control endpoints, entitlement sync or SSO; the central database keeps its outbox (the
/// activity log) only.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TenantAppConfig {
    /// The tenant this app serves (`MT_PAAS_TENANT_ID`).
    pub tenant: crate::names::TenantId,
    /// The key its router signs with (`MT_PAAS_ROUTER_KEY`).
    pub router_key: Secret,
    /// The tenant's database (`DATABASE_URL`).
    pub database_url: DatabaseUrl,
    /// The tenant's vector store (`VECTOR_URL`), replacing `database.vector.url`.
    pub vector_url: Option<String>,
}

impl Config {
    /// This configuration as a tenant's app runs it ([`TenantAppConfig`]): no market link,
    /// no control endpoints, SSO, rate limits, usage reports or migrations on start (the
    /// router and `tenant create` do those), no router of its own, and the tenant's own
    /// vector store.
    pub(crate) fn run_as_tenant_app(&mut self) {
        let Some(app) = self.tenant_app.clone() else {
            return;
        };
        self.marketplace.api_key = None;
        self.marketplace.webhook_secret = None;
        self.marketplace.subscription_check = false;
        self.auth.marketplace_sso.enabled = false;
        self.security.rate_limit.enabled = false;
        self.logging.usage_report.enabled = false;
        self.database.tenant.migrate_on_start = false;
        self.isolation.docker.images.app = None;
        if let (Some(vector), Some(url)) = (&mut self.database.vector, app.vector_url) {
            vector.url = url;
        }
    }

    /// A path of the service's own files (migrations, templates) as given in the config:
    /// relative paths are taken from the directory of the config file.
    pub fn source_path(&self, path: &std::path::Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_path_buf();
        }
        match self.sources.base.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// The claim of a verified token that names its tenant: the `jwt_claim` method's
    /// `claim_name`, else `tenant_id`.
    pub fn tenant_claim(&self) -> &str {
        self.tenant_identification
            .methods
            .iter()
            .find_map(|m| match m {
                IdentificationMethod::JwtClaim { claim_name } => Some(claim_name.as_str()),
                _ => None,
            })
            .unwrap_or("tenant_id")
    }

    /// Reads `custom.{key}` as the vendor's own typed struct.
    ///
    /// ```
    /// # use mt_paas::config::ConfigLoader;
    /// #[derive(Debug, serde::Deserialize)]
    /// struct LlmConfig { default_model: String }
    ///
    /// # let dir = std::env::temp_dir().join(format!("mt-paas-doc-custom-{}", std::process::id()));
    /// # std::fs::create_dir_all(dir.join("migrations")).unwrap();
    /// # let path = dir.join("c.yaml");
    /// # std::fs::write(&path, "custom:\n  llm:\n    default_model: gpt-4\n").unwrap();
    /// let config = ConfigLoader::new(&path).vars(|_| None).load().unwrap();
    /// let llm: LlmConfig = config.custom("llm").unwrap();
    /// assert_eq!(llm.default_model, "gpt-4");
    /// assert!(config.custom::<LlmConfig>("rag").unwrap_err().to_string().contains("custom.rag"));
    /// ```
    pub fn custom<T: DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        loader::read_custom(self, key)
    }

    /// The effective configuration as YAML with every secret replaced by `[redacted]`:
    /// the typed secrets, database passwords, and any `custom` key whose name suggests a
    /// secret (`*key*`, `*secret*`, `*password*`, `*token*`, `*credential*`).
    pub fn to_redacted_yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap_or_default()
    }
}

/// `custom`: the vendor's free-form settings. `Debug` and `Serialize` redact the values of
/// keys named like secrets; [`Config::custom`] reads a section as the vendor's typed struct.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Custom(yaml_serde::Mapping);

impl Custom {
    /// The raw value of `custom.{key}`.
    pub fn get(&self, key: &str) -> Option<&yaml_serde::Value> {
        self.0.get(key)
    }

    fn redacted(&self) -> yaml_serde::Value {
        let mut value = yaml_serde::Value::Mapping(self.0.clone());
        secret::redact_secret_looking_keys(&mut value);
        value
    }
}

impl fmt::Debug for Custom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl Serialize for Custom {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(serializer)
    }
}

/// `service`: who this service is.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// The service's id at the marketplace, e.g. `keli_tutor`.
    pub id: String,
    /// The name shown to people.
    pub name: String,
    /// The service's version.
    pub version: String,
    /// A one-line description.
    pub description: String,
    /// The address [`serve`](crate::ServiceMarketFramework::serve) binds.
    pub listen: SocketAddr,
    /// Where people reach the service (SSO redirects are built from it); `http://{listen}`
    /// when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

impl ServiceConfig {
    /// [`public_url`](Self::public_url), or `http://{listen}`.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

/// `marketplace`: the link to the market.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MarketplaceConfig {
    /// The market's API base, e.g. `http://127.0.0.1:8505/api/v1`.
    pub api_url: String,
    /// The service's API key at the market.
    #[serde(with = "secret::optional")]
    pub api_key: Option<Secret>,
    /// The secret that signs the market's commands (Standard Webhooks, `whsec_...`);
    /// several, separated by spaces, while a secret is being rotated.
    #[serde(with = "secret::optional")]
    pub webhook_secret: Option<Secret>,
    /// Seconds between heartbeats.
    pub heartbeat_interval: u64,
    /// Whether subscriptions are checked with the market.
    pub subscription_check: bool,
    /// Hours a tenant keeps access after its subscription expires.
    pub grace_period_hours: u64,
    /// Timeout of one request to the market, in milliseconds.
    pub request_timeout_ms: u64,
    /// Seconds a fetched entitlement is used before it is refreshed (in the background).
    pub entitlement_ttl_seconds: u64,
    /// Hours a cached entitlement keeps serving while the market cannot be reached.
    pub offline_grace_hours: u64,
    /// Seconds between bulk syncs of every changed entitlement.
    pub sync_interval_seconds: u64,
}

/// `isolation`: how tenants are kept apart.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IsolationConfig {
    /// The default mode; a tenant's registry entry may override it.
    pub mode: IsolationMode,
    /// DOCKER_PER_TENANT settings.
    pub docker: DockerConfig,
}

/// `isolation.docker`: compose projects per tenant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DockerConfig {
    /// The first port of the first tenant's block.
    pub port_range_start: u16,
    /// Ports per tenant.
    pub port_range_size: u16,
    /// The compose template rendered for each tenant (relative to the config file).
    pub compose_template: PathBuf,
    /// The `.env` template rendered beside it (relative to the config file).
    pub env_template: PathBuf,
    /// Where each tenant's rendered files go: `{tenants_dir}/{tenant_id}/`.
    pub tenants_dir: PathBuf,
    /// The tenant database inside its stack; `{db_port}` is the block's database port,
    /// `{tenant_id}` the tenant. Its user, password and database name also fill the `.env`.
    pub database_url: DatabaseUrl,
    /// The database's port within a block: `port_range_start + index × size + offset`
    /// (DESIGN §5.6: 10202).
    pub db_port_offset: u16,
    /// The key of `{tenant_password}` in `database_url`: each tenant's database password is
    /// derived from it and the tenant id (HMAC-SHA256), so that no stack's password opens
    /// another stack's database. At least 16 characters when `database_url` uses it.
    pub password_secret: Secret,
    /// How the stack's containers are networked: `bridge` (a network per stack, ports
    /// published on 127.0.0.1) or `host` (the host's network, each container listening on
    /// its block's ports on 127.0.0.1: for machines where Docker may not make networks).
    pub network: DockerNetwork,
    /// The images the template runs.
    pub images: DockerImages,
    /// Whether `tenant create` brings the stack up; `false` only writes its files, for an
    /// operator or a deploy pipeline to start (the tenant then waits in `provisioning`).
    pub start: bool,
    /// How long a stack may take to be healthy (compose `--wait`, then the database
    /// accepting connections).
    pub start_timeout_seconds: u64,
    /// The compose program: `auto` (`docker compose`, else `docker-compose`), `v2` or `v1`.
    pub compose: ComposeCli,
    /// How long the tenant router waits for each read from a tenant's app (a stream may last
    /// longer, in parts); then 504 `tenant_app_timeout`.
    pub app_read_timeout_seconds: u64,
}

/// `isolation.docker.network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerNetwork {
    /// A network per stack; ports published on 127.0.0.1.
    Bridge,
    /// The host's network; containers listen on their block's ports on 127.0.0.1.
    Host,
}

/// `isolation.docker.compose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComposeCli {
    /// `docker compose` (v2) when it answers, else `docker-compose` (v1).
    Auto,
    /// `docker compose`.
    V2,
    /// `docker-compose`.
    V1,
}

/// `isolation.docker.images`: what each service of a tenant's stack runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DockerImages {
    /// The tenant database: an image with the official `postgres` image's interface.
    pub db: String,
    /// The service's own app, one container per tenant (requests are routed to it); none
    /// when the service serves every tenant itself.
    #[serde(default)]
    pub app: Option<String>,
    /// A vector store per tenant (Qdrant); none without one.
    #[serde(default)]
    pub vector: Option<String>,
}

/// `database`: where data lives.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DatabaseConfig {
    /// The central DB: tenant registry, entitlements, kill-switch state, outbox.
    pub central: CentralDatabaseConfig,
    /// Tenant databases.
    pub tenant: TenantDatabaseConfig,
    /// The vector store for RAG, when the service uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<VectorConfig>,
}

/// `database.central`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CentralDatabaseConfig {
    /// `sqlite://...` or `postgresql://...`.
    pub url: DatabaseUrl,
    /// Maximum connections of the central pool.
    pub pool_size: u32,
}

/// `database.tenant`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TenantDatabaseConfig {
    /// A URL with `{tenant_id}` (DATABASE_PER_TENANT), or the one shared database
    /// (SCHEMA_PER_TENANT) when `schema_url` is not set.
    pub url_template: DatabaseUrl,
    /// The shared Postgres database of SCHEMA_PER_TENANT tenants, when `url_template`
    /// names per-tenant databases (a mixed fleet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_url: Option<DatabaseUrl>,
    /// Maximum connections one tenant may hold.
    pub pool_size_per_tenant: u32,
    /// Maximum connections open to tenant databases altogether, for any number of tenants.
    pub max_connections: u32,
    /// Seconds an unused connection stays open.
    pub idle_timeout_seconds: u64,
    /// Milliseconds a request waits for a connection before a 503.
    pub acquire_timeout_ms: u64,
    /// The vendor's migrations (relative to the config file): `sqlite/` and `postgres/`
    /// subdirectories when the dialects differ, else the directory itself. The directory
    /// must exist; `null` for tenant databases without tables of the service's own.
    pub migrations: Option<PathBuf>,
    /// SQL run once on a new tenant database after its migrations (relative to the config
    /// file); `sqlite/`-`postgres/` variants as for migrations are not needed: one file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<PathBuf>,
    /// Whether the service brings every tenant to the newest migration when it starts.
    pub migrate_on_start: bool,
}

/// `database.vector`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct VectorConfig {
    /// Which vector store.
    #[serde(rename = "type")]
    pub kind: VectorStoreKind,
    /// Its URL (`qdrant`, `chroma`); `{vector_port}` is the tenant's port in
    /// DOCKER_PER_TENANT (its block's base + 3), `{tenant_id}` its id. Not used by `pgvector`,
    /// which keeps vectors in the tenant's own Postgres database.
    #[serde(default)]
    pub url: String,
    /// Prefix of every tenant collection: `{collection_prefix}{tenant_id}_{name}`.
    #[serde(default = "default_collection_prefix")]
    pub collection_prefix: String,
    /// The collections every tenant gets when it is provisioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<CollectionSpec>,
    /// The store's API key (`api-key` for Qdrant, `x-chroma-token` for Chroma), if it needs one.
    #[serde(
        default,
        with = "secret::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key: Option<Secret>,
}

/// `database.vector.collections[]`: a collection made for every tenant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CollectionSpec {
    /// Its name within the tenant (`documents`): 1-63 of a-z, 0-9 and '-'.
    pub name: String,
    /// The length of its vectors.
    pub dimension: u32,
}

fn default_collection_prefix() -> String {
    "tenant_".to_owned()
}

/// `database.vector.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum VectorStoreKind {
    /// Qdrant over HTTP.
    Qdrant,
    /// Chroma over HTTP.
    Chroma,
    /// Milvus.
    Milvus,
    /// pgvector in the tenant's Postgres database.
    Pgvector,
}

/// `tenant_identification`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TenantIdentificationConfig {
    /// Tried in order; the first method that yields a value decides.
    pub methods: Vec<IdentificationMethod>,
}

/// One way a request can name its tenant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum IdentificationMethod {
    /// A request header, `X-Tenant-ID` by default.
    Header {
        /// The header's name.
        #[serde(default = "default_header_name")]
        name: String,
    },
    /// A regex on the Host name (without port); group 1, or the whole match, is the id.
    Subdomain {
        /// The pattern, `^([^.]+)` by default.
        #[serde(default = "default_extract_pattern")]
        extract_pattern: ExtractPattern,
    },
    /// A claim of the bearer JWT, whose signature is verified first.
    JwtClaim {
        /// The claim's name, `tenant_id` by default.
        #[serde(default = "default_claim_name")]
        claim_name: String,
    },
    /// A query parameter, `tenant_id` by default.
    QueryParam {
        /// The parameter's name.
        #[serde(default = "default_claim_name")]
        name: String,
    },
}

fn default_header_name() -> String {
    "X-Tenant-ID".to_owned()
}

fn default_claim_name() -> String {
    "tenant_id".to_owned()
}

/// The default `extract_pattern`: the host name's first label.
pub(crate) const DEFAULT_EXTRACT_PATTERN: &str = "^([^.]+)";

fn default_extract_pattern() -> ExtractPattern {
    ExtractPattern(
        regex::Regex::new(DEFAULT_EXTRACT_PATTERN).expect("the default pattern is a valid regex"),
    )
}

/// A compiled `extract_pattern`; an invalid regex is a configuration error.
#[derive(Clone)]
pub struct ExtractPattern(pub regex::Regex);

impl fmt::Debug for ExtractPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl<'de> Deserialize<'de> for ExtractPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pattern = String::deserialize(deserializer)?;
        regex::RegexBuilder::new(&pattern)
            .size_limit(1 << 20)
            .build()
            .map(ExtractPattern)
            .map_err(|e| {
                let cause = e.to_string().lines().last().unwrap_or_default().to_owned();
                serde::de::Error::custom(format_args!(
                    "invalid extract_pattern regex {pattern:?}: {cause}"
                ))
            })
    }
}

impl Serialize for ExtractPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

/// `auth`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// The service's JWTs.
    pub jwt: JwtConfig,
    /// Sign-in through the market.
    pub marketplace_sso: MarketplaceSsoConfig,
}

/// `auth.jwt`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JwtConfig {
    /// The HS256 secret.
    #[serde(with = "secret::optional")]
    pub secret: Option<Secret>,
    /// The signing algorithm.
    pub algorithm: JwtAlgorithm,
    /// Lifetime of the tokens the service issues.
    pub expiry_hours: u64,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// With `algorithm: RS256`, where the market publishes its signing keys (a JWK set);
    /// `{marketplace.api_url}/.well-known/jwks.json` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// With `algorithm: RS256`, the `iss` the market's tokens must carry;
    /// `marketplace.api_url` when absent (what the reference market signs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// `auth.jwt.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `auth.jwt.secret`.
    HS256,
    /// RSA-SHA256 tokens issued by the market, checked against the keys it publishes
    /// (`jwks_url`); the service's own HS256 tokens are accepted too when a secret is set.
    RS256,
}

/// `auth.marketplace_sso`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MarketplaceSsoConfig {
    /// Whether sign-in through the market is offered.
    pub enabled: bool,
    /// The path of the callback route.
    pub callback_url: String,
    /// The path that starts a sign-in (redirects to the market).
    pub login_url: String,
}

/// `features`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FeaturesConfig {
    /// Whether the market's subscription decides the features.
    pub controlled_by_subscription: bool,
    /// Features when no subscription says otherwise.
    pub defaults: BTreeMap<String, bool>,
}

/// `security`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SecurityConfig {
    /// Whether cross-tenant attempts raise audit alerts.
    pub cross_tenant_audit: bool,
    /// Field encryption.
    pub encryption: EncryptionConfig,
    /// Requests per minute per tenant.
    pub rate_limit: RateLimitConfig,
    /// A header set by a proxy in front of the service that names the client's address
    /// (`X-Forwarded-For`: its last address; `X-Real-IP`). Only when every request passes
    /// that proxy: a client could write the header itself. Without it the peer address is
    /// the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_proxy_header: Option<String>,
}

/// `security.encryption`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EncryptionConfig {
    /// Whether field encryption is on.
    pub enabled: bool,
    /// The AES-256 key that seals: base64 of 32 bytes.
    #[serde(with = "secret::optional")]
    pub key: Option<Secret>,
    /// Earlier keys that still open what they sealed (rotation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_keys: Vec<Secret>,
}

/// `security.rate_limit`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Whether requests are limited.
    pub enabled: bool,
    /// Requests per minute when the plan names no limit.
    pub default_rpm: u32,
    /// Requests per minute of one client address to one tenant without a verified user.
    /// Such requests never spend the tenant's own limit.
    pub anonymous_rpm: u32,
    /// A Redis server that makes the limit hold across replicas (`redis://127.0.0.1:6379`);
    /// each replica limits on its own without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<DatabaseUrl>,
}

/// `logging`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LoggingConfig {
    /// The log level.
    pub level: LogLevel,
    /// xAPI statements to an LRS.
    pub activity_log: ActivityLogConfig,
    /// Usage reports to the market.
    pub usage_report: UsageReportConfig,
    /// Delivery of what the service reports.
    pub outbox: OutboxConfig,
}

/// `logging.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum LogLevel {
    /// Everything.
    #[serde(alias = "trace")]
    Trace,
    /// Debugging detail.
    #[serde(alias = "debug")]
    Debug,
    /// Normal operation.
    #[serde(alias = "info")]
    Info,
    /// Something is off.
    #[serde(alias = "warn", alias = "WARNING", alias = "warning")]
    Warn,
    /// Something failed.
    #[serde(alias = "error")]
    Error,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn as_directive(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// `logging.activity_log`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ActivityLogConfig {
    /// Whether statements are sent.
    pub enabled: bool,
    /// The LRS's xAPI base URL (statements go to `{endpoint}/statements`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The LRS's Basic-auth user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The LRS's Basic-auth password.
    #[serde(
        default,
        with = "secret::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub password: Option<Secret>,
    /// The IRI base of activities: `{activity_base}/{service.id}/{object}`.
    pub activity_base: String,
    /// The `homePage` of actors' accounts.
    pub actor_home_page: String,
}

/// `logging.outbox`: delivery of audit alerts, usage and xAPI statements.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OutboxConfig {
    /// Attempts before an item is dead-lettered.
    pub max_attempts: u32,
    /// Items sent in one request (xAPI statements, usage records).
    pub batch_size: u32,
    /// Seconds a delivered item is kept (for `mt-paas outbox list`).
    pub keep_delivered_seconds: u64,
}

/// `logging.usage_report`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct UsageReportConfig {
    /// Whether usage is reported.
    pub enabled: bool,
    /// Minutes between reports.
    pub interval_minutes: u64,
}

/// `provisioning`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ProvisioningConfig {
    /// Where destroyed tenants' archives are written.
    pub archive_dir: PathBuf,
}
