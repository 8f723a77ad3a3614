//! [`AuthLayer`] and [`CurrentUser`].

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, Request, header, request::Parts};
use mt_paas_protocol::Severity;
use serde_json::{Value, json};

use super::{
    Claims, TokenError, TokenVerifier, bearer_token,
    jwt::{TenantClaimError, Verified, token_problem},
};
use crate::{
    control::{AuditLogger, audit::CROSS_TENANT_ACCESS_ATTEMPT},
    core::{models::TenantId, tenant::Tenant},
    http::{ApiError, ProblemCode},
    middleware::policy::{Policy, PolicyLayer},
};

tokio::task_local! {
    static CURRENT_USER: CurrentUser;
}

/// The signed-in user of the request, from its verified bearer token.
///
/// As an extractor it answers 401 `authentication_required` when the request has no user;
/// take `Option<CurrentUser>` where a user is optional.
#[derive(Debug, Clone)]
pub struct CurrentUser(Arc<Verified>);

impl CurrentUser {
    /// The user's id (`sub`).
    pub fn sub(&self) -> &str {
        // A user is made only from a token with a subject.
        self.0.sub.as_deref().unwrap_or_default()
    }

    /// The tenant named by the token, if any.
    pub fn tenant_id(&self) -> Option<&TenantId> {
        // A user is made only from a token whose tenant claim is usable.
        self.0.tenant_id.as_ref().ok().and_then(Option::as_ref)
    }

    /// The user's name (`name` claim), if the token has one.
    pub fn name(&self) -> Option<&str> {
        self.0.claims.get("name").and_then(Value::as_str)
    }

    /// Every claim of the token.
    pub fn claims(&self) -> &Claims {
        &self.0.claims
    }
}

#[cfg(feature = "docker")]
impl CurrentUser {
    /// The user a tenant router vouches for to `tenant`'s own app: the claims of the token
    /// the router verified. `None` without a subject or a usable `exp`.
    pub(crate) fn routed(tenant: TenantId, claims: Claims) -> Option<Self> {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)?;
        let window = super::jwt::Window::of(&claims).ok()?;
        Some(Self(Arc::new(Verified {
            sub: Some(sub),
            tenant_id: Ok(Some(tenant)),
            claims,
            window,
        })))
    }
}

/// Runs `future` with `user` as its [`current_user`].
#[cfg(feature = "docker")]
pub(crate) async fn as_user<F: Future>(user: CurrentUser, future: F) -> F::Output {
    CURRENT_USER.scope(user, future).await
}

/// The user of the request being served, anywhere inside it; `None` without one.
pub fn current_user() -> Option<CurrentUser> {
    CURRENT_USER.try_with(CurrentUser::clone).ok()
}

fn authentication_required() -> ApiError {
    ApiError::new(ProblemCode::AuthenticationRequired)
        .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or_else(authentication_required)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CurrentUser {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<CurrentUser>().cloned())
    }
}

/// Verifies each request's bearer token and sets its [`CurrentUser`].
pub(crate) type AuthLayer = PolicyLayer<Auth>;

/// The policy of [`AuthLayer`].
pub(crate) struct Auth {
    keys: Option<TokenVerifier>,
    audit: Option<AuditLogger>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("verifies", &self.keys.is_some())
            .field("audits", &self.audit.is_some())
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// A layer verifying with `keys` (no user is ever set without keys) and reporting
    /// cross-tenant attempts to `audit`. The tenant a token names is its `jwt_claim`
    /// (`tenant_id` by default), as the verifier was configured.
    pub(crate) fn new(keys: Option<TokenVerifier>, audit: Option<AuditLogger>) -> Self {
        Self::of(Auth { keys, audit })
    }
}

/// A verified token whose tenant claim is not a tenant id is refused all the same.
fn usable(verified: &Verified) -> Result<(), ApiError> {
    let malformed = |ko: &'static str, en: &'static str| {
        ApiError::new(ProblemCode::InvalidToken).localized_param("reason", ko, en)
    };
    match verified.tenant_id {
        Ok(_) => Ok(()),
        Err(TenantClaimError::Malformed) => Err(malformed(
            "토큰의 테넌트 ID가 올바르지 않습니다.",
            "its tenant id is malformed.",
        )),
        Err(TenantClaimError::NotAString) => Err(malformed(
            "토큰의 테넌트 ID가 문자열이 아닙니다.",
            "its tenant id is not a string.",
        )),
    }
}

/// The outcome of the part of verification that never waits.
enum Checked {
    /// No token, or nothing verifies tokens.
    Anonymous,
    Verified(Arc<Verified>),
    Refused(ApiError),
    /// A market token whose key is not known yet: fetch the keys, then verify.
    NeedsKeys(String),
}

impl Auth {
    fn check<B>(&self, request: &Request<B>) -> Checked {
        let (Some(keys), Some(token)) = (&self.keys, bearer_token(request.headers())) else {
            return Checked::Anonymous;
        };
        // Identification verified it already when it reads the tenant from the token: this
        // is then the verifier's cache.
        match keys.verified(token) {
            Ok(verified) => match usable(&verified) {
                Ok(()) => Checked::Verified(verified),
                Err(problem) => Checked::Refused(problem),
            },
            Err(TokenError::UnknownKey) if keys.market_keys().is_some() => {
                Checked::NeedsKeys(token.to_owned())
            }
            Err(e) => Checked::Refused(token_problem(e)),
        }
    }

    async fn check_fetching(&self, token: &str) -> Result<Arc<Verified>, ApiError> {
        let Some(keys) = &self.keys else {
            return Err(token_problem(TokenError::Algorithm));
        };
        let verified = keys.verified_fetching(token).await.map_err(token_problem)?;
        usable(&verified)?;
        Ok(verified)
    }
}

impl Auth {
    /// The user a verified token makes for `request` (set in its extensions), or the tenant
    /// it claims when that is not the request's tenant.
    fn user_of<B>(
        request: &mut Request<B>,
        verified: Arc<Verified>,
    ) -> Result<Option<CurrentUser>, (TenantId, TenantId, Arc<Verified>)> {
        let tenant = request.extensions().get::<Tenant>().map(|t| t.id().clone());
        if let (Ok(Some(claimed)), Some(tenant)) = (&verified.tenant_id, tenant)
            && *claimed != tenant
        {
            return Err((claimed.clone(), tenant, verified));
        }
        if verified.sub.is_none() {
            return Ok(None);
        }
        let user = CurrentUser(verified);
        request.extensions_mut().insert(user.clone());
        Ok(Some(user))
    }
}

impl Policy for Auth {
    /// The signed-in user, when the token names one.
    type Admitted = Option<CurrentUser>;

    /// Only when the market's keys must be fetched or a cross-tenant attempt reported:
    /// everything else is decided by [`admit_now`](Policy::admit_now).
    async fn admit<B: Send>(&self, request: &mut Request<B>) -> Result<Self::Admitted, Response> {
        if let Some(decided) = self.admit_now(request) {
            return decided;
        }
        let verified = match self.check(request) {
            Checked::Verified(verified) => verified,
            Checked::Anonymous => return Ok(None),
            Checked::Refused(error) => return Err(error.into_response()),
            Checked::NeedsKeys(token) => self
                .check_fetching(&token)
                .await
                .map_err(IntoResponse::into_response)?,
        };
        let (claimed, tenant, verified) = match Self::user_of(request, verified) {
            Ok(user) => return Ok(user),
            Err(other) => other,
        };
        let path = request.uri().path().to_owned();
        let ip = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        if let Some(audit) = &self.audit {
            // One durable alert per attempt (DESIGN §6.4): the caller holds a verified
            // token, so every attempt is someone's, and each is worth its record.
            audit
                .report(
                    CROSS_TENANT_ACCESS_ATTEMPT,
                    Severity::High,
                    json!({
                        "source_tenant": claimed,
                        "target_tenant": tenant,
                        "endpoint": path,
                        "ip_address": ip,
                        "user": verified.sub,
                    }),
                )
                .await;
        }
        Err(ApiError::new(ProblemCode::CrossTenantAccess)
            .param("tenant_id", tenant.to_string())
            .param("token_tenant", claimed.to_string())
            .into_response())
    }

    /// At once unless the market's keys must be fetched or a cross-tenant attempt reported
    /// (then `admit` decides, from scratch: verification is cached).
    fn admit_now<B>(&self, request: &mut Request<B>) -> Option<Result<Self::Admitted, Response>> {
        match self.check(request) {
            Checked::Verified(verified) => Self::user_of(request, verified).ok().map(Ok),
            Checked::Anonymous => Some(Ok(None)),
            Checked::Refused(error) => Some(Err(error.into_response())),
            Checked::NeedsKeys(_) => None,
        }
    }

    async fn serve<F>(&self, user: &Self::Admitted, route: F) -> F::Output
    where
        F: Future<Output = Result<Response, Infallible>> + Send,
    {
        match user {
            Some(user) => CURRENT_USER.scope(user.clone(), route).await,
            None => route.await,
        }
    }
}
