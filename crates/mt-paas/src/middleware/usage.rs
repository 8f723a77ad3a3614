//! [`UsageLayer`]: counts each served tenant request into the [`UsageMeter`] that the
//! control plane's [`UsageReporter`](crate::control::UsageReporter) reports to the market.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::response::Response;
use http::Request;
use tower::{Layer, Service};

use crate::{
    control::usage::UsageMeter,
    core::tenant::Tenant,
    http::{ApiError, ProblemCode},
    middleware::auth::CurrentUser,
};

/// Counts each served tenant request into a [`UsageMeter`] (a refusal for want of a user, a
/// feature or allowance is not counted).
#[derive(Debug, Clone)]
pub(crate) struct UsageLayer {
    meter: Arc<UsageMeter>,
}

impl UsageLayer {
    /// A layer counting into `meter`.
    pub(crate) fn new(meter: Arc<UsageMeter>) -> Self {
        Self { meter }
    }
}

impl<S> Layer<S> for UsageLayer {
    type Service = UsageService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UsageService {
            inner,
            meter: self.meter.clone(),
        }
    }
}

/// The service of [`UsageLayer`].
#[derive(Debug, Clone)]
pub(crate) struct UsageService<S> {
    inner: S,
    meter: Arc<UsageMeter>,
}

impl<S, B> Service<Request<B>> for UsageService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let tenant = request.extensions().get::<Tenant>().map(|t| t.id().clone());
        let user = request
            .extensions()
            .get::<CurrentUser>()
            .map(|u| u.sub().to_owned());
        let meter = self.meter.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            if let Some(tenant) = tenant
                && served(&response)
            {
                meter.record(
                    &tenant,
                    user.as_deref(),
                    response.status().is_server_error(),
                );
            }
            Ok(response)
        })
    }
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
