//! Tenant identification: [`TenantLayer`] and the [`Tenant`] extractor.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use mt_paas::{ServiceMarketFramework, Tenant};
//!
//! async fn whoami(tenant: Tenant) -> String {
//!     format!("{} ({})", tenant.name(), tenant.id())
//! }
//!
//! # async fn run() -> Result<(), mt_paas::Error> {
//! let framework = ServiceMarketFramework::from_config_path("mt_paas_config.yaml").await?;
//! let app = framework.create_app(Router::new().route("/whoami", get(whoami)));
//! framework.serve(app).await
//! # }
//! ```
//!
//! Methods are tried in the order of `tenant_identification.methods` (DESIGN §4.2): `header`
//! (`X-Tenant-ID`), `subdomain` (`extract_pattern` on the host name without port; an IP
//! literal or a single label such as `localhost` yields nothing), `jwt_claim` (only after the
//! bearer token's HS256 signature verifies), `query_param`. The first that yields a value
//! decides.

pub(crate) mod identify;
pub(crate) mod layer;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

pub(crate) use self::layer::TenantLayer;
use crate::{
    core::tenant::Tenant,
    http::{ApiError, ProblemCode},
};

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Tenant>().cloned().ok_or_else(|| {
            tracing::error!(
                path = %parts.uri.path(),
                "the Tenant extractor found no tenant: is this route behind TenantLayer (create_app)?"
            );
            ApiError::new(ProblemCode::Internal)
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Tenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Tenant>().cloned())
    }
}
