//! The domain types of the tenant registry: [`TenantId`], [`TenantRecord`], [`TenantStatus`],
//! [`IsolationMode`] and [`Placement`].

use std::{borrow::Borrow, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

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

/// Where a tenant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TenantStatus {
    /// Being created; requests are refused with 503 until provisioning completes.
    Provisioning,
    /// Serving requests.
    Active,
    /// Suspended by an operator; requests are refused with 403.
    Suspended,
    /// Destroyed (its data archived); requests are refused with 410.
    Archived,
}

impl TenantStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Archived => "archived",
        }
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TenantStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "provisioning" => Self::Provisioning,
            "active" => Self::Active,
            "suspended" => Self::Suspended,
            "archived" => Self::Archived,
            _ => return Err(UnknownValue::new("status", s)),
        })
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
    fn new(what: &'static str, value: &str) -> Self {
        Self {
            what,
            value: value.chars().take(64).collect(),
        }
    }
}

/// Where a tenant's data lives, when it differs from what the configuration derives.
///
/// Empty for most tenants; the data-isolation layer records database URLs, schema names or a
/// Docker port block here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Placement {
    /// A database URL for this tenant, overriding `database.tenant.url_template` (a tenant
    /// on another server). Kept in the central DB: prefer a URL without a password and
    /// credentials from the server's own means (`.pgpass`, trust on a private network).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Placement {
    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// One row of the tenant registry in the central DB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TenantRecord {
    /// The tenant's id.
    pub id: TenantId,
    /// The name shown to people, e.g. "한림대학교".
    pub display_name: String,
    /// Where the tenant is in its life.
    pub status: TenantStatus,
    /// The tenant's isolation mode when it overrides `isolation.mode`.
    pub isolation: Option<IsolationMode>,
    /// Where its data lives when that differs from the derived default.
    pub placement: Placement,
    /// The index of its port block (DOCKER_PER_TENANT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_block: Option<u32>,
    /// When the tenant was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the record last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl TenantRecord {
    /// The record `new` would become (for checks made before it is written).
    pub(crate) fn probe(new: &crate::core::manager::NewTenant) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            id: new.id.clone(),
            display_name: new.display_name.clone(),
            status: new.status,
            isolation: new.isolation,
            placement: new.placement.clone(),
            port_block: new.port_block,
            created_at: now,
            updated_at: now,
        }
    }

    /// The isolation mode in force for this tenant, given the configured default.
    pub fn isolation_or(&self, default: IsolationMode) -> IsolationMode {
        self.isolation.unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for id in ["a", "0", "hallym", "snu-2", "k_u", &"a".repeat(63)] {
            assert_eq!(TenantId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn rejects_invalid_ids_with_the_reason() {
        let cases = [
            ("", InvalidTenantId::Empty),
            (&*"a".repeat(64), InvalidTenantId::TooLong),
            ("../etc", InvalidTenantId::BadStart),
            ("-a", InvalidTenantId::BadStart),
            ("_a", InvalidTenantId::BadStart),
            ("a'; drop table t;--", InvalidTenantId::BadCharacter),
            ("a.b", InvalidTenantId::BadCharacter),
            ("a/b", InvalidTenantId::BadCharacter),
            ("한림", InvalidTenantId::BadStart),
            ("aé", InvalidTenantId::BadCharacter),
            ("a b", InvalidTenantId::BadCharacter),
            ("Hallym", InvalidTenantId::BadStart),
            ("a\0", InvalidTenantId::BadCharacter),
        ];
        for (input, want) in cases {
            assert_eq!(TenantId::parse(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn lenient_parse_lowercases_only_ascii() {
        assert_eq!(TenantId::parse_lenient("SNU").unwrap().as_str(), "snu");
        assert!(TenantId::parse_lenient("ÅB").is_err());
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<TenantId>("\"hallym\"").is_ok());
        assert!(serde_json::from_str::<TenantId>("\"../x\"").is_err());
    }

    #[test]
    fn isolation_mode_round_trips() {
        for mode in [
            IsolationMode::DatabasePerTenant,
            IsolationMode::SchemaPerTenant,
            IsolationMode::DockerPerTenant,
        ] {
            assert_eq!(mode.as_str().parse::<IsolationMode>().unwrap(), mode);
        }
        assert_eq!(
            "schema".parse::<IsolationMode>().unwrap(),
            IsolationMode::SchemaPerTenant
        );
    }
}
