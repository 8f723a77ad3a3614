//! `market.yaml`: the reference market's configuration, read like a service's (overlay,
//! `${VAR}`, every problem at once).

use std::{net::SocketAddr, path::Path};

use mt_paas::config::{
    ConfigError, ConfigLoader, ConfigProblem, DatabaseKind, DatabaseUrl, Secret,
};
use serde::{Deserialize, Serialize};

/// The embedded defaults.
pub const DEFAULTS_YAML: &str = include_str!("defaults.yaml");

/// The market's configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MarketConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Where the market is reached from outside.
    pub public_url: String,
    /// The market's database.
    pub database: DatabaseConfig,
    /// The bearer token of the operator API.
    pub operator_token: Secret,
    /// Load the demo data into an empty database.
    pub seed_dev_data: bool,
    /// Command delivery.
    pub delivery: DeliveryConfig,
    /// Sign-in.
    pub sso: SsoConfig,
}

/// `database`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DatabaseConfig {
    /// `sqlite://...` or `postgresql://...`.
    pub url: DatabaseUrl,
    /// Connections of the pool.
    pub pool_size: u32,
}

/// `delivery`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DeliveryConfig {
    /// Push attempts per command.
    pub max_attempts: u32,
    /// Timeout of one push, in milliseconds.
    pub timeout_ms: u64,
    /// How often due commands are looked for, in milliseconds.
    pub poll_interval_ms: u64,
}

/// `sso`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SsoConfig {
    /// Lifetime of an authorization code, in seconds.
    pub code_ttl_seconds: u64,
    /// Lifetime of the RS256 tokens the market issues (`id_token`, operator-minted), in seconds.
    pub token_ttl_seconds: u64,
}

impl MarketConfig {
    /// Reads `path` (with the `MT_PAAS_ENV` overlay, or `env`).
    pub fn load(path: &Path, env: Option<&str>) -> Result<Self, ConfigError> {
        let mut loader = ConfigLoader::new(path);
        if let Some(env) = env {
            loader = loader.env(Some(env));
        }
        Self::check(loader.load_as::<Self>(DEFAULTS_YAML)?.0, path)
    }

    /// The embedded defaults alone, with `database.url` replaced (tests, the dev stack).
    pub fn with_database(url: &str) -> Result<Self, ConfigError> {
        let (mut config, _) = ConfigLoader::embedded().load_as::<Self>(DEFAULTS_YAML)?;
        config.database.url = DatabaseUrl::new(url);
        Self::check(config, Path::new("(embedded defaults)"))
    }

    fn check(config: Self, path: &Path) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut report = |key: &str, message: String| {
            problems.push(ConfigProblem {
                file: path.display().to_string(),
                key: key.to_owned(),
                message,
            });
        };
        if config.database.url.kind().is_none() {
            report(
                "database.url",
                format!(
                    "{} is not a sqlite: or postgresql: URL",
                    config.database.url
                ),
            );
        }
        if matches!(
            config.database.url.kind(),
            Some(DatabaseKind::Sqlite) | Some(DatabaseKind::Postgres)
        ) && config.database.pool_size == 0
        {
            report("database.pool_size", "must be at least 1".to_owned());
        }
        if !(config.public_url.starts_with("http://") || config.public_url.starts_with("https://"))
        {
            report(
                "public_url",
                format!("{:?} is not an http:// or https:// URL", config.public_url),
            );
        }
        if config.operator_token.expose().len() < 8 {
            report("operator_token", "must be at least 8 characters".to_owned());
        }
        if config.delivery.max_attempts == 0 {
            report("delivery.max_attempts", "must be at least 1".to_owned());
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }
}
