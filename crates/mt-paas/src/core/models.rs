//! The domain types of the tenant registry: [`TenantId`], [`TenantRecord`], [`TenantStatus`],
//! [`IsolationMode`] and [`Placement`].

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub(crate) use crate::names::{IsolationMode, TenantId, UnknownValue};

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
    use crate::names::InvalidTenantId;

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
