//! [`GuardLayer`]: refuses requests that fail a check — one mechanism behind
//! [`require_user`] and [`require_feature`].

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use http::Request;
use tower::{Layer, Service};

use super::CurrentUser;
use crate::{core::tenant::Tenant, http::ApiError};

/// A check on a request's extensions (tenant, user): `Err` answers the request.
pub(crate) type Guard = Arc<dyn Fn(&http::Extensions) -> Result<(), ApiError> + Send + Sync>;

/// Answers a request with the guard's error instead of passing it on.
#[derive(Clone)]
pub struct GuardLayer {
    guard: Guard,
}

impl std::fmt::Debug for GuardLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardLayer").finish_non_exhaustive()
    }
}

impl GuardLayer {
    /// A layer with `guard`.
    pub fn new(
        guard: impl Fn(&http::Extensions) -> Result<(), ApiError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            guard: Arc::new(guard),
        }
    }
}

/// Routes behind this need a signed-in user (401 `authentication_required` otherwise).
pub fn require_user() -> GuardLayer {
    GuardLayer::new(|extensions| {
        extensions
            .get::<CurrentUser>()
            .map(drop)
            .ok_or_else(|| ApiError::new(crate::http::ProblemCode::AuthenticationRequired))
    })
}

/// Routes behind this need the tenant's plan to include `feature` (403
/// `feature_not_available` otherwise, DESIGN §3.3).
pub fn require_feature(feature: &'static str) -> GuardLayer {
    GuardLayer::new(move |extensions| match extensions.get::<Tenant>() {
        Some(tenant) => tenant.require_feature(feature),
        None => {
            tracing::error!("require_feature found no tenant: is the route behind TenantLayer?");
            Err(ApiError::new(crate::http::ProblemCode::Internal))
        }
    })
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The service of [`GuardLayer`].
#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    guard: Guard,
}

impl<S> std::fmt::Debug for GuardService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardService").finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for GuardService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match (self.guard)(request.extensions()) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(error) => Either::Right(ready(Ok(error.into_response()))),
        }
    }
}
