//! The names and modes both the configuration and the tenant model speak of: [`TenantId`]
//! and its rules, [`IsolationMode`], a collection name's rules. A leaf: it depends on nothing
//! else of the crate, so `config` and `core` both build on it without a circle.

use std::{borrow::Borrow, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize};

/// Longest tenant id accepted (DESIGN §4: `^[a-z0-9][a-z0-9_-]{0,62}$`).
pub const TENANT_ID_MAX_LEN: usize = 63;

/// A validated tenant id: 1–63 characters of `[a-z0-9_-]`, starting with `[a-z0-9]`.
///
/// A `TenantId` can only hold a valid id, so database names, schema names and file paths
/// derived from it need no further escaping to stay inside their namespace.
///
/// ```
/// use mt_paas::TenantId;
///
/// let id: TenantId = "hallym".parse().unwrap();
/// assert_eq!(id.as_str(), "hallym");
/// assert!("../etc".parse::<TenantId>().is_err());
/// assert!("Hallym".parse::<TenantId>().is_err(), "parse is exact; use parse_lenient to lower-case");
/// assert_eq!(TenantId::parse_lenient("Hallym").unwrap().as_str(), "hallym");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(std::sync::Arc<str>);

/// Why a string is not a [`TenantId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTenantId {
    /// The value is empty.
    #[error("the tenant id is empty")]
    Empty,
    /// The value is longer than 63 characters.
    #[error("the tenant id is longer than 63 characters")]
    TooLong,
    /// The first character is not a lower-case letter or digit.
    #[error("the tenant id must start with a lower-case letter or a digit")]
    BadStart,
    /// A character outside `[a-z0-9_-]`.
    #[error("the tenant id may only contain lower-case letters, digits, '_' and '-'")]
    BadCharacter,
}

impl TenantId {
    /// Parses an id exactly as given.
    pub fn parse(value: &str) -> Result<Self, InvalidTenantId> {
        validate(value.as_bytes())?;
        Ok(Self(value.into()))
    }

    /// Parses an id after lower-casing ASCII letters (host names and headers are
    /// case-insensitive in practice).
    pub fn parse_lenient(value: &str) -> Result<Self, InvalidTenantId> {
        if value.bytes().any(|b| b.is_ascii_uppercase()) {
            Self::parse(&value.to_ascii_lowercase())
        } else {
            Self::parse(value)
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(bytes: &[u8]) -> Result<(), InvalidTenantId> {
    let Some(&first) = bytes.first() else {
        return Err(InvalidTenantId::Empty);
    };
    if bytes.len() > TENANT_ID_MAX_LEN {
        return Err(InvalidTenantId::TooLong);
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(InvalidTenantId::BadStart);
    }
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(InvalidTenantId::BadCharacter);
    }
    Ok(())
}

impl FromStr for TenantId {
    type Err = InvalidTenantId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", &*self.0)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How a tenant's data is kept apart from other tenants' (DESIGN §5.2 `isolation.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum IsolationMode {
    /// A database per tenant (a Postgres database or a SQLite file).
    #[serde(rename = "DATABASE_PER_TENANT")]
    DatabasePerTenant,
    /// A Postgres schema per tenant in one database.
    #[serde(rename = "SCHEMA_PER_TENANT")]
    SchemaPerTenant,
    /// A compose project (service + database) per tenant.
    #[serde(rename = "DOCKER_PER_TENANT")]
    DockerPerTenant,
}

impl IsolationMode {
    /// The configuration form, e.g. `DATABASE_PER_TENANT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DatabasePerTenant => "DATABASE_PER_TENANT",
            Self::SchemaPerTenant => "SCHEMA_PER_TENANT",
            Self::DockerPerTenant => "DOCKER_PER_TENANT",
        }
    }
}

impl fmt::Display for IsolationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IsolationMode {
    type Err = UnknownValue;

    /// Accepts the configuration form and the short CLI forms `database`, `schema`, `docker`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "DATABASE_PER_TENANT" | "database" => Self::DatabasePerTenant,
            "SCHEMA_PER_TENANT" | "schema" => Self::SchemaPerTenant,
            "DOCKER_PER_TENANT" | "docker" => Self::DockerPerTenant,
            _ => return Err(UnknownValue::new("isolation mode", s)),
        })
    }
}

/// A stored value that names no known variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownValue {
    what: &'static str,
    value: String,
}

impl UnknownValue {
    pub(crate) fn new(what: &'static str, value: &str) -> Self {
        Self {
            what,
            value: value.chars().take(64).collect(),
        }
    }
}

/// Checks a collection name within a tenant: 1-63 of a-z, 0-9 and '-', starting and ending
/// with a letter or digit (no `_`: it separates tenant and collection in stored names).
pub(crate) fn check_collection_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if bytes.is_empty() || bytes.len() > 63 {
        return Err("use 1-63 characters".to_owned());
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return Err("use only a-z, 0-9 and '-' ('_' is reserved)".to_owned());
    }
    if !edge(bytes.first()) || !edge(bytes.last()) {
        return Err("start and end with a letter or digit".to_owned());
    }
    Ok(())
}
