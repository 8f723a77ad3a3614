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
    /// The bearer token of the operator API (at least 16 characters, never the demo's).
    pub operator_token: Secret,
    /// The README's demo: the public demo credentials are accepted (operator token
    /// `dev-operator-token` when none is set, services with the demo API key and shared
    /// webhook secret). Never in production; `mt-paas dev` and `serve --dev` set it.
    pub dev_mode: bool,
    /// Load the demo data into an empty database (only with `dev_mode`).
    pub seed_dev_data: bool,
    /// Command delivery.
    pub delivery: DeliveryConfig,
    /// Sign-in.
    pub sso: SsoConfig,
    /// Days an audit alert is kept; older ones are pruned every hour.
    pub alert_retention_days: u32,
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
        Self::load_as(path, env, false)
    }

    /// Reads `path` like [`load`](Self::load); with `dev`, in dev mode whatever the file
    /// says (`mt-paas-market serve --dev`).
    pub fn load_as(path: &Path, env: Option<&str>, dev: bool) -> Result<Self, ConfigError> {
        let mut loader = ConfigLoader::new(path);
        if let Some(env) = env {
            loader = loader.env(Some(env));
        }
        let mut config = loader.load_as::<Self>(DEFAULTS_YAML)?.0;
        config.dev_mode |= dev;
        Self::check(config, path)
    }

    /// The embedded defaults in dev mode with the demo data, `database.url` replaced (tests,
    /// the dev stack).
    pub fn with_database(url: &str) -> Result<Self, ConfigError> {
        let (mut config, _) = ConfigLoader::embedded().load_as::<Self>(DEFAULTS_YAML)?;
        config.database.url = DatabaseUrl::new(url);
        config.dev_mode = true;
        config.seed_dev_data = true;
        Self::check(config, Path::new("(embedded defaults)"))
    }

    fn check(mut config: Self, path: &Path) -> Result<Self, ConfigError> {
        if config.dev_mode && config.operator_token.expose().is_empty() {
            config.operator_token = Secret::new(crate::DEV_OPERATOR_TOKEN);
        }
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
        let token = config.operator_token.expose();
        if !config.dev_mode {
            if token.is_empty() {
                report(
                    "operator_token",
                    "is not set: set MARKET_OPERATOR_TOKEN (at least 16 characters), or run the demo with `serve --dev`".to_owned(),
                );
            } else if token == crate::DEV_OPERATOR_TOKEN {
                report(
                    "operator_token",
                    "is the public demo token: set a secret of your own, or run the demo with `serve --dev`".to_owned(),
                );
            } else if token.len() < 16 {
                report(
                    "operator_token",
                    "must be at least 16 characters".to_owned(),
                );
            }
            if config.seed_dev_data {
                report(
                    "seed_dev_data",
                    "loads services with the public demo credentials: only with dev_mode"
                        .to_owned(),
                );
            }
        } else if token.len() < 8 {
            report("operator_token", "must be at least 8 characters".to_owned());
        }
        if !(1..=3660).contains(&config.alert_retention_days) {
            report(
                "alert_retention_days",
                "must be between 1 and 3660".to_owned(),
            );
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
