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

use std::{convert::Infallible, sync::Arc};

use axum::{
    extract::OriginalUri,
    response::{IntoResponse, Response},
};
use http::Request;
use time::OffsetDateTime;

use super::{
    app_router::{RoutedCaller, RouterVerifier},
    policy::{Policy, PolicyLayer},
};
use crate::{
    config::TenantAppConfig,
    core::tenant::CachedEntitlement,
    core::{
        database::DatabaseRouter,
        models::{IsolationMode, Placement, TenantRecord, TenantStatus},
        tenant::{Features, Tenant},
    },
    http::{ApiError, ProblemCode},
    middleware::auth::{CurrentUser, layer::as_user},
    vectors::VectorStore,
};

/// Admits the tenant router's signed requests and gives them their tenant and user.
pub(crate) type TenantAppLayer = PolicyLayer<TenantApp>;

/// The policy of [`TenantAppLayer`].
pub(crate) struct TenantApp {
    app: TenantAppConfig,
    verifier: RouterVerifier,
    databases: DatabaseRouter,
    #[cfg_attr(not(feature = "vectors"), allow(dead_code))]
    vectors: Option<VectorStore>,
}

impl TenantAppLayer {
    pub(crate) fn new(
        app: TenantAppConfig,
        databases: DatabaseRouter,
        vectors: Option<VectorStore>,
    ) -> Self {
        let verifier = RouterVerifier::new(app.tenant.as_str(), app.router_key.expose());
        Self::of(TenantApp {
            app,
            verifier,
            databases,
            vectors,
        })
    }
}

impl std::fmt::Debug for TenantApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantAppLayer")
            .field("tenant", &self.app.tenant)
            .finish_non_exhaustive()
    }
}

impl TenantApp {
    /// The tenant and user the router vouches for.
    fn vouched(&self, caller: RoutedCaller) -> (Tenant, Option<CurrentUser>) {
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

impl TenantApp {
    /// Verifies the router's signature and gives the request its tenant and user.
    fn decide<B>(
        &self,
        request: &mut Request<B>,
    ) -> Result<(Tenant, Option<CurrentUser>), ApiError> {
        // The path the router signed: the request's own, before any nesting stripped it.
        let uri = request
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| request.uri().clone(), |original| original.0.clone());
        let path = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let caller = match self
            .verifier
            .verify(request.method(), path, request.headers())
        {
            Ok(caller) => caller,
            Err(refusal) => {
                tracing::warn!(%refusal, path, "refused a request its tenant router did not sign");
                return Err(ApiError::new(ProblemCode::InvalidSignature)
                    .localized_detail(refusal.korean(), refusal.to_string()));
            }
        };
        let (tenant, user) = self.vouched(caller);
        let extensions = request.extensions_mut();
        extensions.insert(tenant.clone());
        extensions.insert(self.databases.clone());
        #[cfg(feature = "vectors")]
        if let Some(vectors) = &self.vectors {
            extensions.insert(vectors.clone());
        }
        if let Some(user) = &user {
            extensions.insert(user.clone());
        }
        Ok((tenant, user))
    }
}

impl Policy for TenantApp {
    /// The tenant and the user the router vouches for.
    type Admitted = (Tenant, Option<CurrentUser>);

    async fn admit<B: Send>(&self, request: &mut Request<B>) -> Result<Self::Admitted, Response> {
        self.decide(request).map_err(IntoResponse::into_response)
    }

    fn admit_now<B>(&self, request: &mut Request<B>) -> Option<Result<Self::Admitted, Response>> {
        Some(self.decide(request).map_err(IntoResponse::into_response))
    }

    async fn serve<F>(&self, (tenant, user): &Self::Admitted, route: F) -> F::Output
    where
        F: Future<Output = Result<Response, Infallible>> + Send,
    {
        let served = crate::context::in_tenant(tenant.clone(), route);
        match user {
            Some(user) => as_user(user.clone(), served).await,
            None => served.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::{Json, Router, body::Body, routing::get};
    use http::StatusCode;
    use serde_json::{Value, json};
    use tower::ServiceExt as _;

    use super::super::app_router::{RoutedContext, encode_user, sign};
    use crate::{
        ServiceMarketFramework,
        config::{Config, ConfigLoader},
        middleware::auth::CurrentUser,
    };

    const KEY: &str = "hallym's router key";

    fn load(vars: &[(&'static str, String)]) -> Result<Config, crate::config::ConfigError> {
        let vars: BTreeMap<&str, String> = vars.iter().cloned().collect();
        ConfigLoader::embedded()
            .vars(move |name| vars.get(name).cloned())
            .load()
    }

    #[test]
    fn a_tenant_app_names_what_its_environment_lacks() {
        let none = load(&[]).unwrap();
        assert!(
            none.tenant_app.is_none(),
            "no MT_PAAS_TENANT_ID, no tenant app"
        );
        let error = load(&[("MT_PAAS_TENANT_ID", "hallym".into())]).unwrap_err();
        let keys: Vec<&str> = error.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["MT_PAAS_ROUTER_KEY", "DATABASE_URL"]);
        let error = load(&[
            ("MT_PAAS_TENANT_ID", "../etc".into()),
            ("MT_PAAS_ROUTER_KEY", KEY.into()),
            ("DATABASE_URL", "mysql://x/y".into()),
        ])
        .unwrap_err();
        let keys: Vec<&str> = error.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["MT_PAAS_TENANT_ID", "DATABASE_URL"]);
        assert!(!error.to_string().contains(KEY), "the key is never printed");
    }

    /// The headers hallym's router sends for `GET path`.
    fn routed(
        path: &str,
        nonce: &str,
        context: &RoutedContext,
        user: &str,
    ) -> Vec<(String, String)> {
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let context = context.encode();
        let user = encode_user(user);
        let signature = sign(
            KEY, &timestamp, nonce, "hallym", &user, &context, "GET", path,
        );
        let mut headers = vec![
            ("x-mt-paas-tenant".to_owned(), "hallym".to_owned()),
            ("x-mt-paas-context".to_owned(), context),
            ("x-mt-paas-timestamp".to_owned(), timestamp),
            ("x-mt-paas-nonce".to_owned(), nonce.to_owned()),
            ("x-mt-paas-signature".to_owned(), signature),
        ];
        if !user.is_empty() {
            headers.push(("x-mt-paas-user".to_owned(), user));
        }
        headers
    }

    async fn call(app: &Router, path: &str, headers: &[(String, String)]) -> (StatusCode, Value) {
        let mut request = http::Request::get(path).header("accept-language", "ko");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = answer.status();
        let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn a_tenant_app_serves_what_its_router_signed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        // The tenant's database exists (its stack made it, `tenant create` migrated it).
        std::fs::File::create(dir.path().join("hallym.db")).unwrap();
        let mut config = load(&[
            ("MT_PAAS_TENANT_ID", "hallym".into()),
            ("MT_PAAS_ROUTER_KEY", KEY.into()),
            (
                "DATABASE_URL",
                format!("sqlite://{}/hallym.db", dir.path().display()),
            ),
        ])
        .unwrap();
        config.database.central.url = crate::config::DatabaseUrl::new(format!(
            "sqlite://{}/central.db",
            dir.path().display()
        ));
        let framework = ServiceMarketFramework::from_config(config).await.unwrap();
        assert!(framework.tenant_app().is_some() && !framework.routes_to_tenant_apps());
        let app =
            framework.create_app(
                Router::new().route(
                    "/whoami",
                    get(
                        |tenant: crate::Tenant,
                         user: Option<CurrentUser>,
                         mut db: crate::TenantDb| async move {
                            let one: i64 = crate::with_db!(db, conn => {
                                sqlx::query_scalar("SELECT 1").fetch_one(conn).await
                            })
                            .unwrap();
                            Json(json!({
                                "tenant": tenant.id().as_str(),
                                "name": tenant.name(),
                                "quiz": tenant.has_feature("quiz"),
                                "user": user.map(|u| u.sub().to_owned()),
                                "db": one,
                            }))
                        },
                    ),
                ),
            );
        let context = RoutedContext {
            tenant_name: "한림대학교".into(),
            features: BTreeMap::from([("quiz".to_owned(), true)]),
            entitlement: None,
            claims: json!({"sub": "민지", "tenant_id": "hallym", "exp": 4_000_000_000u64})
                .as_object()
                .cloned(),
        };
        let signed = routed("/whoami", "n1", &context, "민지");
        let (status, seen) = call(&app, "/whoami", &signed).await;
        assert_eq!(status, 200, "{seen}");
        assert_eq!(
            seen,
            json!({"tenant": "hallym", "name": "한림대학교", "quiz": true, "user": "민지", "db": 1})
        );
        // The same request again, unsigned, or signed for another path: refused before the
        // handler, in the caller's language.
        let (status, problem) = call(&app, "/whoami", &signed).await;
        assert_eq!(status, 401);
        assert_eq!(problem["code"], "invalid_signature");
        assert!(
            problem["detail"].as_str().unwrap().contains("재전송"),
            "{problem}"
        );
        let (status, _) = call(&app, "/whoami", &[]).await;
        assert_eq!(status, 401);
        let elsewhere = routed("/other", "n2", &context, "민지");
        assert_eq!(call(&app, "/whoami", &elsewhere).await.0, 401);
        // Without a user or the feature, the handler sees neither.
        let plain = RoutedContext {
            features: BTreeMap::new(),
            claims: None,
            ..context
        };
        let (status, seen) = call(&app, "/whoami", &routed("/whoami", "n3", &plain, "")).await;
        assert_eq!(status, 200);
        assert_eq!(
            (seen["quiz"].clone(), seen["user"].clone()),
            (json!(false), Value::Null)
        );
    }
}
