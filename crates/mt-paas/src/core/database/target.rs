//! Where a tenant's data lives ([`Target`]), derived only from its validated [`TenantId`],
//! its registry record and the configuration. Names are checked against Postgres's 63-byte
//! identifier limit (a longer name would be silently truncated, and two tenants could meet in
//! one database) and quoted wherever they enter SQL.

use std::{path::PathBuf, str::FromStr, sync::Arc};

use sqlx::sqlite::SqliteConnectOptions;

use crate::{
    config::{Config, DatabaseKind, DatabaseUrl},
    core::models::{IsolationMode, TenantId, TenantRecord},
};

/// Postgres's identifier limit in bytes.
const PG_MAX_IDENT: usize = 63;

/// A tenant's database.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A SQLite file (DATABASE_PER_TENANT).
    SqliteFile {
        /// The file.
        path: PathBuf,
    },
    /// A Postgres database of its own (DATABASE_PER_TENANT, DOCKER_PER_TENANT).
    PgDatabase {
        /// The URL to connect with.
        url: DatabaseUrl,
        /// The database's name.
        database: String,
    },
    /// A schema in the shared Postgres database (SCHEMA_PER_TENANT).
    PgSchema {
        /// The shared database's URL.
        url: DatabaseUrl,
        /// The schema, `tenant_{id}`.
        schema: String,
    },
}

/// Why a tenant's database cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The URL is neither SQLite nor Postgres, or does not parse.
    #[error("{key}: {url} is not a usable database URL")]
    BadUrl {
        /// The config key the URL came from.
        key: &'static str,
        /// The URL, password redacted.
        url: String,
    },
    /// The URL names no database.
    #[error("{key}: {url} names no database")]
    NoDatabase {
        /// The config key.
        key: &'static str,
        /// The URL, password redacted.
        url: String,
    },
    /// The derived name is longer than Postgres allows.
    #[error("tenant {tenant}: the {what} name {name:?} is longer than Postgres's 63 bytes")]
    NameTooLong {
        /// The tenant.
        tenant: TenantId,
        /// "database" or "schema".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// SCHEMA_PER_TENANT without a shared Postgres database in the configuration.
    #[error(
        "tenant {0}: SCHEMA_PER_TENANT needs a shared Postgres database: set database.tenant.schema_url"
    )]
    NoSharedDatabase(TenantId),
    /// A DOCKER_PER_TENANT tenant without a port block.
    #[error("tenant {0}: DOCKER_PER_TENANT but no port block is allocated (provision it first)")]
    NoPortBlock(TenantId),
    /// The port block lies beyond port 65535.
    #[error("tenant {tenant}: port block {block} ends beyond port 65535")]
    PortOutOfRange {
        /// The tenant.
        tenant: TenantId,
        /// The block index.
        block: u32,
    },
}

/// `"name"` with embedded quotes doubled: an identifier that is safe inside SQL.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Target {
    /// The target of `record` under `config`.
    pub fn of(config: &Config, record: &TenantRecord) -> Result<Self, TargetError> {
        let id = &record.id;
        let tenant_db = &config.database.tenant;
        match record.isolation_or(config.isolation.mode) {
            IsolationMode::DatabasePerTenant => {
                let (key, url) = match &record.placement.database_url {
                    Some(url) => ("placement.database_url", DatabaseUrl::new(url.clone())),
                    None => (
                        "database.tenant.url_template",
                        fill(&tenant_db.url_template, id, None),
                    ),
                };
                Self::database(key, url, id)
            }
            IsolationMode::SchemaPerTenant => {
                let shared = match &tenant_db.schema_url {
                    Some(url) => url.clone(),
                    None if !tenant_db.url_template.expose().contains("{tenant_id}")
                        && tenant_db.url_template.kind() == Some(DatabaseKind::Postgres) =>
                    {
                        tenant_db.url_template.clone()
                    }
                    None => return Err(TargetError::NoSharedDatabase(id.clone())),
                };
                let schema = format!("tenant_{id}");
                if schema.len() > PG_MAX_IDENT {
                    return Err(TargetError::NameTooLong {
                        tenant: id.clone(),
                        what: "schema",
                        name: schema,
                    });
                }
                Ok(Self::PgSchema {
                    url: shared,
                    schema,
                })
            }
            IsolationMode::DockerPerTenant => {
                let block = record
                    .port_block
                    .ok_or_else(|| TargetError::NoPortBlock(id.clone()))?;
                let port = db_port(config, block).ok_or_else(|| TargetError::PortOutOfRange {
                    tenant: id.clone(),
                    block,
                })?;
                Self::database(
                    "isolation.docker.database_url",
                    docker_database_url(config, id, port),
                    id,
                )
            }
        }
    }

    fn database(key: &'static str, url: DatabaseUrl, id: &TenantId) -> Result<Self, TargetError> {
        let bad = || TargetError::BadUrl {
            key,
            url: url.redacted(),
        };
        match url.kind() {
            Some(DatabaseKind::Sqlite) => {
                let options = SqliteConnectOptions::from_str(url.expose()).map_err(|_| bad())?;
                Ok(Self::SqliteFile {
                    path: options.get_filename().to_path_buf(),
                })
            }
            Some(DatabaseKind::Postgres) => {
                let options = url.pg_options().map_err(|_| bad())?;
                let database = options.get_database().map(str::to_owned).ok_or_else(|| {
                    TargetError::NoDatabase {
                        key,
                        url: url.redacted(),
                    }
                })?;
                if database.len() > PG_MAX_IDENT {
                    return Err(TargetError::NameTooLong {
                        tenant: id.clone(),
                        what: "database",
                        name: database,
                    });
                }
                Ok(Self::PgDatabase { url, database })
            }
            None => Err(bad()),
        }
    }

    /// The key under which connections to this target are pooled.
    pub(crate) fn pool_key(&self) -> Arc<str> {
        match self {
            Self::SqliteFile { path } => format!("sqlite:{}", path.display()).into(),
            Self::PgDatabase { url, .. } => format!("pg:{}", url.expose()).into(),
            // Schema connections are interchangeable: search_path is set at each checkout.
            Self::PgSchema { url, .. } => format!("pg-shared:{}", url.expose()).into(),
        }
    }

    /// The engine.
    pub fn kind(&self) -> DatabaseKind {
        match self {
            Self::SqliteFile { .. } => DatabaseKind::Sqlite,
            Self::PgDatabase { .. } | Self::PgSchema { .. } => DatabaseKind::Postgres,
        }
    }

    /// A short description for logs and the CLI (passwords redacted).
    pub fn describe(&self) -> String {
        match self {
            Self::SqliteFile { path } => format!("sqlite file {}", path.display()),
            Self::PgDatabase { url, .. } => format!("postgres database {url}"),
            Self::PgSchema { url, schema } => format!("schema {schema} in {url}"),
        }
    }
}

/// The database port of port block `block`.
pub(crate) fn db_port(config: &Config, block: u32) -> Option<u16> {
    let docker = &config.isolation.docker;
    let base = u32::from(docker.port_range_start)
        + block.checked_mul(u32::from(docker.port_range_size))?;
    let end = base + u32::from(docker.port_range_size).max(1) - 1;
    if end > u32::from(u16::MAX) || docker.db_port_offset >= docker.port_range_size {
        return None;
    }
    u16::try_from(base + u32::from(docker.db_port_offset)).ok()
}

/// The tenant database of `id`'s stack: `isolation.docker.database_url` with its `{db_port}`,
/// `{tenant_id}` and `{tenant_password}` filled.
pub(crate) fn docker_database_url(config: &Config, id: &TenantId, db_port: u16) -> DatabaseUrl {
    let docker = &config.isolation.docker;
    let url = fill(&docker.database_url, id, Some(db_port));
    if !url.expose().contains("{tenant_password}") {
        return url;
    }
    let password = tenant_password(docker.password_secret.expose(), &config.service.id, id);
    DatabaseUrl::new(url.expose().replace("{tenant_password}", &password))
}

/// A tenant's own database password: 32 characters of HMAC-SHA256(`secret`, service and
/// tenant), so that no stack's password opens another's database, and none is stored.
fn tenant_password(secret: &str, service: &str, id: &TenantId) -> String {
    let mut password = derive(secret, "tenant database password", service, id);
    password.truncate(32);
    password
}

/// The key that signs the tenant router's headers to `id`'s app container
/// (`MT_PAAS_ROUTER_KEY` in its environment): its own, so that one tenant's app can never
/// forge a request as another tenant.
#[cfg(feature = "docker")]
pub(crate) fn router_key(config: &Config, id: &TenantId) -> String {
    derive(
        config.isolation.docker.password_secret.expose(),
        "tenant router key",
        &config.service.id,
        id,
    )
}

/// HMAC-SHA256(`secret`, purpose, service, tenant), base64url.
fn derive(secret: &str, purpose: &str, service: &str, id: &TenantId) -> String {
    use base64::Engine as _;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let message = format!("mt-paas {purpose}\0{service}\0{id}");
    let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
}

fn fill(template: &DatabaseUrl, id: &TenantId, db_port: Option<u16>) -> DatabaseUrl {
    let mut url = template.expose().replace("{tenant_id}", id.as_str());
    if let Some(port) = db_port {
        url = url.replace("{db_port}", &port.to_string());
    }
    DatabaseUrl::new(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("tenant_a"), "\"tenant_a\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
