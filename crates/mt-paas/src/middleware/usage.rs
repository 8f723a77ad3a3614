//! [`UsageLayer`]: counts each served tenant request into the [`UsageMeter`] that the
//! control plane's [`UsageReporter`](crate::control::UsageReporter) reports to the market.

use std::sync::Arc;

use axum::response::Response;
use http::Request;

use super::policy::{Policy, PolicyLayer};
use crate::{
    control::usage::UsageMeter,
    core::{models::TenantId, tenant::Tenant},
    http::{ApiError, ProblemCode},
    middleware::auth::CurrentUser,
};

/// Counts each served tenant request into a [`UsageMeter`] (a refusal for want of a user, a
/// feature or allowance is not counted).
pub(crate) type UsageLayer = PolicyLayer<Usage>;

/// The policy of [`UsageLayer`].
#[derive(Debug)]
pub(crate) struct Usage {
    meter: Arc<UsageMeter>,
}

impl UsageLayer {
    /// A layer counting into `meter`.
    pub(crate) fn new(meter: Arc<UsageMeter>) -> Self {
        Self::of(Usage { meter })
    }
}

impl Policy for Usage {
    /// The tenant and the user, when the request has a tenant.
    type Admitted = Option<(TenantId, Option<String>)>;

    async fn admit<B: Send>(&self, request: &mut Request<B>) -> Result<Self::Admitted, Response> {
        Ok(seen(request))
    }

    fn admit_now<B>(&self, request: &mut Request<B>) -> Option<Result<Self::Admitted, Response>> {
        Some(Ok(seen(request)))
    }

    async fn answered(&self, admitted: Self::Admitted, response: &mut Response) {
        if let Some((tenant, user)) = admitted
            && served(response)
        {
            self.meter.record(
                &tenant,
                user.as_deref(),
                response.status().is_server_error(),
            );
        }
    }
}

/// The request's tenant and user, if it has a tenant.
fn seen<B>(request: &Request<B>) -> Option<(TenantId, Option<String>)> {
    let extensions = request.extensions();
    extensions.get::<Tenant>().map(|tenant| {
        let user = extensions.get::<CurrentUser>().map(|u| u.sub().to_owned());
        (tenant.id().clone(), user)
    })
}

/// Whether the tenant was served: not a refusal for want of a user, a feature or allowance
/// (those are not the tenant's usage).
fn served(response: &Response) -> bool {
    !response.extensions().get::<ApiError>().is_some_and(|e| {
        matches!(
            e.code(),
            ProblemCode::AuthenticationRequired
                | ProblemCode::FeatureNotAvailable
                | ProblemCode::RateLimited
        )
    })
}
