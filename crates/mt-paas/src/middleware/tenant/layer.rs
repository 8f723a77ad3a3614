//! [`TenantLayer`] and its service.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use http::{HeaderValue, Request, header};
use tower::{Layer, Service};

use super::identify::{Identifier, Unidentified};
use crate::{
    config::{Config, ConfigError},
    core::{
        database::DatabaseRouter,
        manager::TenantManager,
        models::{TenantId, TenantStatus},
        tenant::Tenant,
    },
    http::{ApiError, ProblemCode},
    middleware::{
        auth::{TokenError, TokenVerifier, jwt::token_problem},
        policy::{Policy, PolicyLayer, PolicyService},
    },
    vectors::VectorStore,
};

/// Identifies the tenant of every request, checks it against the registry, and makes it
/// available to handlers ([`Tenant`] extractor, [`current_tenant`](crate::current_tenant)).
///
/// A malformed id is a 400 before any lookup, an unknown tenant a 404, a request without a
/// tenant a 400; all are problem+json. There is never a default tenant.
#[derive(Clone)]
pub struct TenantLayer {
    layer: PolicyLayer<State>,
}

/// The tenant policy: who the tenant is, and whether it may be served now.
struct State {
    identifier: Identifier,
    manager: TenantManager,
    databases: Option<DatabaseRouter>,
    vectors: Option<VectorStore>,
}

impl std::fmt::Debug for TenantLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLayer")
            .field("identifier", &self.layer.policy().identifier)
            .finish_non_exhaustive()
    }
}

impl TenantLayer {
    /// A layer identifying tenants by `config.tenant_identification` and resolving them in
    /// `manager`'s registry.
    pub fn new(config: &Config, manager: TenantManager) -> Result<Self, ConfigError> {
        Ok(Self::of(State {
            identifier: Identifier::from_config(config)?,
            manager,
            databases: None,
            vectors: None,
        }))
    }

    fn of(state: State) -> Self {
        Self {
            layer: PolicyLayer::of(state),
        }
    }

    /// Verifies `jwt_claim` tokens with `verifier`, sharing its cache of the market's keys.
    pub(crate) fn with_verifier(self, verifier: &TokenVerifier) -> Self {
        let state = self.layer.policy();
        let mut identifier = state.identifier.clone();
        identifier.share_verifier(verifier);
        Self::of(State {
            identifier,
            manager: state.manager.clone(),
            databases: state.databases.clone(),
            vectors: state.vectors.clone(),
        })
    }

    /// Makes `router` available to the [`TenantDb`](crate::TenantDb) extractor.
    pub fn with_databases(self, router: DatabaseRouter) -> Self {
        let state = self.layer.policy();
        Self::of(State {
            identifier: state.identifier.clone(),
            manager: state.manager.clone(),
            databases: Some(router),
            vectors: state.vectors.clone(),
        })
    }

    #[cfg(feature = "vectors")]
    /// Makes `store` available to the [`TenantVectors`](crate::TenantVectors) extractor.
    pub fn with_vectors(self, store: VectorStore) -> Self {
        let state = self.layer.policy();
        Self::of(State {
            identifier: state.identifier.clone(),
            manager: state.manager.clone(),
            databases: state.databases.clone(),
            vectors: Some(store),
        })
    }
}

impl State {
    fn identify<B>(&self, request: &Request<B>) -> Result<TenantId, Unidentified> {
        self.identifier
            .identify(request.headers(), request.uri())?
            .ok_or_else(|| self.identifier.required().into())
    }

    async fn tenant(&self, id: TenantId) -> Result<Tenant, ApiError> {
        let tenant = self
            .manager
            .resolve(&id)
            .await
            .map_err(|e| ApiError::central(format!("looking up tenant {id}: {e}")))?;
        Self::servable(id, tenant)
    }

    /// The registry's answer for `id` as the request's: an active tenant, or why not.
    fn servable(id: TenantId, tenant: Option<Tenant>) -> Result<Tenant, ApiError> {
        let Some(tenant) = tenant else {
            return Err(
                ApiError::new(ProblemCode::TenantNotFound).param("tenant_id", id.to_string())
            );
        };
        let refuse = |code| Err(ApiError::new(code).param("tenant_id", id.to_string()));
        match tenant.record().status {
            TenantStatus::Active => Ok(tenant),
            TenantStatus::Provisioning => Err(ApiError::new(ProblemCode::TenantNotReady)
                .param("tenant_id", id.to_string())
                .header(header::RETRY_AFTER, HeaderValue::from_static("5"))),
            TenantStatus::Suspended => refuse(ProblemCode::TenantSuspended),
            TenantStatus::Archived => refuse(ProblemCode::TenantArchived),
        }
    }

    /// Admits `tenant` for `request`: the extractors' parts go into its extensions.
    fn admitted<B>(
        &self,
        request: &mut Request<B>,
        tenant: Result<Tenant, ApiError>,
    ) -> Result<Tenant, ApiError> {
        let tenant = tenant?;
        request.extensions_mut().insert(tenant.clone());
        if let Some(databases) = &self.databases {
            request.extensions_mut().insert(databases.clone());
        }
        // Without the feature a `VectorStore` cannot exist.
        #[cfg(feature = "vectors")]
        if let Some(vectors) = &self.vectors {
            request.extensions_mut().insert(vectors.clone());
        }
        Ok(tenant)
    }
}

impl Policy for State {
    type Admitted = Tenant;

    async fn admit<B: Send>(&self, request: &mut Request<B>) -> Result<Tenant, Response> {
        let id = match self.identify(request) {
            Ok(id) => Ok(id),
            Err(Unidentified::Problem(problem)) => Err(problem),
            // A market token with a key not seen yet: fetch the keys, then try again.
            Err(Unidentified::NeedsKeys) => match self.identifier.fetch_keys().await {
                Err(problem) => Err(problem),
                Ok(()) => match self.identify(request) {
                    Ok(id) => Ok(id),
                    Err(Unidentified::Problem(problem)) => Err(problem),
                    Err(Unidentified::NeedsKeys) => Err(token_problem(TokenError::UnknownKey)),
                },
            },
        };
        let tenant = async { self.tenant(id?).await }.await;
        self.admitted(request, tenant)
            .map_err(IntoResponse::into_response)
    }

    /// The common case decides at once: an id from the request alone, and the registry's
    /// answer for it (a tenant, or none) in the cache.
    fn admit_now<B>(&self, request: &mut Request<B>) -> Option<Result<Tenant, Response>> {
        let id = match self.identify(request) {
            Ok(id) => id,
            Err(Unidentified::Problem(problem)) => return Some(Err(problem.into_response())),
            Err(Unidentified::NeedsKeys) => return None,
        };
        let cached = self.manager.resolve_now(&id)?;
        Some(
            self.admitted(request, Self::servable(id, cached))
                .map_err(IntoResponse::into_response),
        )
    }

    fn serve<F>(&self, tenant: &Tenant, route: F) -> impl Future<Output = F::Output> + Send
    where
        F: Future<Output = Result<Response, Infallible>> + Send,
    {
        crate::context::in_tenant(tenant.clone(), route)
    }
}

impl<S> Layer<S> for TenantLayer {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService(self.layer.layer(inner))
    }
}

/// The service of [`TenantLayer`].
pub struct TenantService<S>(PolicyService<State, S>);

impl<S: Clone> Clone for TenantService<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S> std::fmt::Debug for TenantService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantService").finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for TenantService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    /// The answer when the request is refused at once (a malformed or unknown tenant),
    /// else its way through the registry and the route.
    type Future = Either<
        std::future::Ready<Result<Response, Infallible>>,
        Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.0.answer(request)
    }
}
