//! Entry points for the cargo-fuzz targets of `fuzz/` (feature `fuzzing`): crate-private
//! machinery reached through a thin public wrapper. Not a stable API.

use http::{HeaderMap, Uri};

use crate::{
    config::{Config, ConfigError},
    core::models::TenantId,
    middleware::tenant::identify::{self, Unidentified},
};

/// The tenant identification configured by `tenant_identification.methods`.
#[derive(Debug, Clone)]
pub struct Identifier(identify::Identifier);

/// What identification made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identified {
    /// The request names this tenant.
    Tenant(TenantId),
    /// The request names no tenant.
    None,
    /// The request is refused (invalid or ambiguous id, bad token).
    Refused,
    /// A market token names a key not known yet.
    NeedsKeys,
}

/// The identifier of `config`, as the tenant layer builds it.
pub fn identifier(config: &Config) -> Result<Identifier, ConfigError> {
    identify::Identifier::from_config(config).map(Identifier)
}

/// Identifies the tenant of a request with `headers` and `uri`.
pub fn identify(identifier: &Identifier, headers: &HeaderMap, uri: &Uri) -> Identified {
    match identifier.0.identify(headers, uri) {
        Ok(Some(id)) => Identified::Tenant(id),
        Ok(None) => Identified::None,
        Err(Unidentified::Problem(_)) => Identified::Refused,
        Err(Unidentified::NeedsKeys) => Identified::NeedsKeys,
    }
}
