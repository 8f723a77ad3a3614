//! The other side of the tenant router: a service running as one tenant's own app in its
//! stack ([`TenantAppConfig`](crate::config::TenantAppConfig), `MT_PAAS_TENANT_ID` set).
//!
//! [`TenantAppLayer`] takes the place of the whole guard. It admits only what this tenant's
//! router signed ([`RouterVerifier`]: signature, tenant, timestamp, nonce once), and builds
//! the request's [`Tenant`] and [`CurrentUser`] from the signed [`RoutedContext`], so
//! handlers are the same code behind the router as without it: `Tenant::require_feature`
//! refuses with the plan's names, `TenantDb` is the tenant's own database (`DATABASE_URL`),
//! `TenantVectors` its own vector store (`VECTOR_URL`). Anything else — a request to the
//! app's port that did not come through the router, a replay, another tenant's — is 401
//! `invalid_signature`, before any handler runs.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::OriginalUri,
    response::{IntoResponse, Response},
};
use http::Request;
use time::OffsetDateTime;
use tower::{Layer, Service};

use super::app_router::{RoutedCaller, RouterVerifier};
use crate::{
    config::TenantAppConfig,
    core::{
        database::DatabaseRouter,
        models::{IsolationMode, Placement, TenantRecord, TenantStatus},
        tenant::{Features, Tenant},
    },
    http::{ApiError, ProblemCode},
    integrations::CachedEntitlement,
    middleware::auth::{CurrentUser, layer::as_user},
    vectors::VectorStore,
};

/// Admits the tenant router's signed requests and gives them their tenant and user.
#[derive(Clone)]
pub(crate) struct TenantAppLayer {
    state: Arc<State>,
}

struct State {
    app: TenantAppConfig,
    verifier: RouterVerifier,
    databases: DatabaseRouter,
    vectors: Option<VectorStore>,
}

impl TenantAppLayer {
    pub(crate) fn new(
        app: TenantAppConfig,
        databases: DatabaseRouter,
        vectors: Option<VectorStore>,
    ) -> Self {
        let verifier = RouterVerifier::new(app.tenant.as_str(), app.router_key.expose());
        Self {
            state: Arc::new(State {
                app,
                verifier,
                databases,
                vectors,
            }),
        }
    }
}

impl State {
    /// The tenant and user the router vouches for.
    fn admit(&self, caller: RoutedCaller) -> (Tenant, Option<CurrentUser>) {
        let context = caller.context;
        let now = OffsetDateTime::now_utc();
        let record = TenantRecord {
            id: self.app.tenant.clone(),
            display_name: context.tenant_name,
            status: TenantStatus::Active,
            isolation: Some(IsolationMode::DatabasePerTenant),
            placement: Placement {
                database_url: Some(self.app.database_url.expose().to_owned()),
            },
            port_block: None,
            created_at: now,
            updated_at: now,
        };
        let mut tenant = Tenant::new(
            record,
            IsolationMode::DatabasePerTenant,
            Features::new(context.features),
        );
        if let Some(entitlement) = context.entitlement {
            // The router's features stay in force (the plan's, or its defaults): the
            // entitlement only names plans in refusals and answers `Tenant::plan`.
            tenant = tenant.with_entitlement(
                Arc::new(CachedEntitlement::new(entitlement, None, now)),
                false,
            );
        }
        let user = context
            .claims
            .and_then(|claims| CurrentUser::routed(self.app.tenant.clone(), claims));
        (tenant, user)
    }
}

impl<S> Layer<S> for TenantAppLayer {
    type Service = TenantAppService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantAppService {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service of [`TenantAppLayer`].
#[derive(Clone)]
pub(crate) struct TenantAppService<S> {
    inner: S,
    state: Arc<State>,
}

impl<S, B> Service<Request<B>> for TenantAppService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The path the router signed: the request's own, before any nesting stripped it.
        let uri = request
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| request.uri().clone(), |original| original.0.clone());
        let path = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let verified = self
            .state
            .verifier
            .verify(request.method(), path, request.headers());
        let caller = match verified {
            Ok(caller) => caller,
            Err(refusal) => {
                tracing::warn!(%refusal, path, "refused a request its tenant router did not sign");
                let problem = ApiError::new(ProblemCode::InvalidSignature)
                    .localized_detail(refusal.korean(), refusal.to_string());
                return Box::pin(async move { Ok(problem.into_response()) });
            }
        };
        let (tenant, user) = self.state.admit(caller);
        let extensions = request.extensions_mut();
        extensions.insert(tenant.clone());
        extensions.insert(self.state.databases.clone());
        if let Some(vectors) = &self.state.vectors {
            extensions.insert(vectors.clone());
        }
        if let Some(user) = &user {
            extensions.insert(user.clone());
        }
        // The clone is not ready; the ready one (self.inner) serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let served = crate::context::in_tenant(tenant, inner.call(request));
            match user {
                Some(user) => as_user(user, served).await,
                None => served.await,
            }
        })
    }
}
