//! [`ApiError`]: every error mt-paas answers with is `application/problem+json` (RFC 9457)
//! with a stable `code` and a message in Korean or English.

use std::{borrow::Cow, fmt};

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

use super::Locale;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The stable codes of mt-paas's errors. Clients branch on these, never on the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemCode {
    /// A tenant id is malformed (400).
    InvalidTenantId,
    /// One source names several different tenants (400).
    AmbiguousTenant,
    /// A tenant route was called without a tenant (400).
    TenantRequired,
    /// No such tenant is registered (404).
    TenantNotFound,
    /// The tenant is still being provisioned (503).
    TenantNotReady,
    /// The tenant is suspended in the registry (403).
    TenantSuspended,
    /// The tenant was destroyed (410).
    TenantArchived,
    /// A bearer token failed verification (401).
    InvalidToken,
    /// The route needs a signed-in user and the request has none (401).
    AuthenticationRequired,
    /// A token of one tenant was used on another tenant (403).
    CrossTenantAccess,
    /// The tenant's plan lacks a feature (403).
    FeatureNotAvailable,
    /// The central database cannot be reached (503).
    CentralDbUnavailable,
    /// The tenant's own database cannot be reached or is busy (503).
    TenantDbUnavailable,
    /// The tenant's own app container (DOCKER_PER_TENANT) does not answer (503).
    TenantAppUnavailable,
    /// The tenant's own app container took too long to answer (504).
    TenantAppTimeout,
    /// The market cannot be reached and nothing usable is cached (503).
    MarketUnavailable,
    /// The tenant has no subscription to this service (403).
    SubscriptionMissing,
    /// The market blocked the tenant (403, with the market's message as the detail).
    TenantBlocked,
    /// A control command's signature, timestamp or id was refused (401).
    InvalidSignature,
    /// A signed control command names another target than the path or this service (403).
    CommandTargetMismatch,
    /// The tenant's subscription is suspended (403).
    SubscriptionSuspended,
    /// The tenant's subscription expired and its grace period is over (403).
    SubscriptionExpired,
    /// The tenant's subscription has ended (403).
    SubscriptionCancelled,
    /// No route matches (404).
    NotFound,
    /// The route exists, the method does not (405).
    MethodNotAllowed,
    /// A malformed request (400).
    BadRequest,
    /// Credentials are missing or wrong (401).
    Unauthorized,
    /// The credentials do not allow this (403).
    Forbidden,
    /// The request conflicts with the current state (409).
    Conflict,
    /// A write broke a unique or foreign-key constraint (409).
    ConstraintViolation,
    /// What the request names does not exist (404).
    ResourceNotFound,
    /// The body is too large (413).
    PayloadTooLarge,
    /// The tenant used up its requests per minute (429).
    RateLimited,
    /// Too many failed attempts (a sign-in); wait `Retry-After` (429).
    TooManyAttempts,
    /// The body's media type is not accepted (415).
    UnsupportedMediaType,
    /// The body is well-formed but unusable (422).
    UnprocessableEntity,
    /// Any other 4xx.
    HttpError,
    /// Something failed on our side (500); details are logged, never shown.
    Internal,
}

struct Text {
    status: StatusCode,
    ko_title: &'static str,
    en_title: &'static str,
    ko_detail: &'static str,
    en_detail: &'static str,
}

impl ProblemCode {
    /// The code as it appears in the body's `code` member.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidTenantId => "invalid_tenant_id",
            Self::AmbiguousTenant => "ambiguous_tenant",
            Self::TenantRequired => "tenant_required",
            Self::TenantNotFound => "tenant_not_found",
            Self::TenantNotReady => "tenant_not_ready",
            Self::TenantSuspended => "tenant_suspended",
            Self::TenantArchived => "tenant_archived",
            Self::InvalidToken => "invalid_token",
            Self::AuthenticationRequired => "authentication_required",
            Self::CrossTenantAccess => "cross_tenant_access",
            Self::FeatureNotAvailable => "feature_not_available",
            Self::CentralDbUnavailable => "central_db_unavailable",
            Self::TenantDbUnavailable => "tenant_db_unavailable",
            Self::TenantAppUnavailable => "tenant_app_unavailable",
            Self::TenantAppTimeout => "tenant_app_timeout",
            Self::MarketUnavailable => "market_unavailable",
            Self::SubscriptionMissing => "subscription_missing",
            Self::TenantBlocked => "tenant_blocked",
            Self::InvalidSignature => "invalid_signature",
            Self::CommandTargetMismatch => "command_target_mismatch",
            Self::SubscriptionSuspended => "subscription_suspended",
            Self::SubscriptionExpired => "subscription_expired",
            Self::SubscriptionCancelled => "subscription_cancelled",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Conflict => "conflict",
            Self::ConstraintViolation => "constraint_violation",
            Self::ResourceNotFound => "resource_not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::TooManyAttempts => "too_many_attempts",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UnprocessableEntity => "unprocessable_entity",
            Self::HttpError => "http_error",
            Self::Internal => "internal_error",
        }
    }

    /// The HTTP status this code is answered with.
    pub fn status(self) -> StatusCode {
        self.text().status
    }

    /// The code for an error response that carries no problem of its own (axum's
    /// rejections, the router's 404 and 405).
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::BadRequest,
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::FORBIDDEN => Self::Forbidden,
            StatusCode::CONFLICT => Self::Conflict,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => Self::UnprocessableEntity,
            s if s.is_server_error() => Self::Internal,
            _ => Self::HttpError,
        }
    }

    fn text(self) -> Text {
        let t = |status, ko_title, en_title, ko_detail, en_detail| Text {
            status,
            ko_title,
            en_title,
            ko_detail,
            en_detail,
        };
        match self {
            Self::InvalidTenantId => t(
                StatusCode::BAD_REQUEST,
                "잘못된 테넌트 ID",
                "Invalid tenant id",
                "{source}의 테넌트 ID가 올바르지 않습니다. 영문 소문자, 숫자, '_', '-'로 된 1~63자여야 합니다.",
                "The tenant id in {source} is invalid: it must be 1-63 characters of lower-case letters, digits, '_' and '-'.",
            ),
            Self::AmbiguousTenant => t(
                StatusCode::BAD_REQUEST,
                "테넌트가 모호합니다",
                "Ambiguous tenant",
                "{source}에 서로 다른 테넌트 ID가 여러 개 있습니다.",
                "{source} names more than one tenant.",
            ),
            Self::TenantRequired => t(
                StatusCode::BAD_REQUEST,
                "테넌트를 식별할 수 없습니다",
                "No tenant identified",
                "이 경로에는 테넌트가 필요합니다. {methods} 중 하나로 테넌트를 지정하세요.",
                "This route needs a tenant: name it with {methods}.",
            ),
            Self::TenantNotFound => t(
                StatusCode::NOT_FOUND,
                "테넌트를 찾을 수 없습니다",
                "Tenant not found",
                "'{tenant_id}' 테넌트가 등록되어 있지 않습니다.",
                "No tenant '{tenant_id}' is registered.",
            ),
            Self::TenantNotReady => t(
                StatusCode::SERVICE_UNAVAILABLE,
                "테넌트 준비 중",
                "Tenant not ready",
                "'{tenant_id}' 테넌트를 준비하고 있습니다. 잠시 후 다시 시도하세요.",
                "Tenant '{tenant_id}' is being provisioned; try again shortly.",
            ),
            Self::TenantSuspended => t(
                StatusCode::FORBIDDEN,
                "이용이 정지된 테넌트",
                "Tenant suspended",
                "'{tenant_id}' 테넌트의 이용이 정지되었습니다.",
                "Tenant '{tenant_id}' is suspended.",
            ),
            Self::TenantArchived => t(
                StatusCode::GONE,
                "삭제된 테넌트",
                "Tenant removed",
                "'{tenant_id}' 테넌트는 삭제되었습니다.",
                "Tenant '{tenant_id}' has been removed.",
            ),
            Self::InvalidToken => t(
                StatusCode::UNAUTHORIZED,
                "유효하지 않은 토큰",
                "Invalid token",
                "인증 토큰이 유효하지 않습니다: {reason}",
                "The bearer token is invalid: {reason}",
            ),
            Self::AuthenticationRequired => t(
                StatusCode::UNAUTHORIZED,
                "로그인 필요",
                "Authentication required",
                "로그인이 필요합니다. Authorization: Bearer 토큰을 보내세요.",
                "Sign in first: send an Authorization: Bearer token.",
            ),
            Self::CrossTenantAccess => t(
                StatusCode::FORBIDDEN,
                "다른 테넌트 접근",
                "Cross-tenant access",
                "'{token_tenant}' 테넌트의 토큰으로 '{tenant_id}' 테넌트에 접근할 수 없습니다.",
                "A token of tenant '{token_tenant}' cannot be used for tenant '{tenant_id}'.",
            ),
            Self::FeatureNotAvailable => t(
                StatusCode::FORBIDDEN,
                "이용할 수 없는 기능",
                "Feature not available",
                "이 기능은 현재 요금제에 포함되어 있지 않습니다.",
                "This feature is not part of the tenant's plan.",
            ),
            Self::CentralDbUnavailable => t(
                StatusCode::SERVICE_UNAVAILABLE,
                "일시적인 오류",
                "Temporarily unavailable",
                "테넌트 정보를 일시적으로 확인할 수 없습니다. 잠시 후 다시 시도하세요.",
                "The tenant registry is temporarily unavailable; try again shortly.",
            ),
            Self::TenantDbUnavailable => t(
                StatusCode::SERVICE_UNAVAILABLE,
                "일시적인 오류",
                "Temporarily unavailable",
                "테넌트 데이터베이스를 일시적으로 사용할 수 없습니다. 잠시 후 다시 시도하세요.",
                "The tenant's database is temporarily unavailable; try again shortly.",
            ),
            Self::TenantAppUnavailable => t(
                StatusCode::SERVICE_UNAVAILABLE,
                "일시적인 오류",
                "Temporarily unavailable",
                "테넌트의 서비스가 응답하지 않습니다. 잠시 후 다시 시도하세요.",
                "The tenant's service does not answer; try again shortly.",
            ),
            Self::TenantAppTimeout => t(
                StatusCode::GATEWAY_TIMEOUT,
                "응답 시간 초과",
                "Timed out",
                "테넌트의 서비스가 제시간에 응답하지 않았습니다.",
                "The tenant's service did not answer in time.",
            ),
            Self::MarketUnavailable => t(
                StatusCode::SERVICE_UNAVAILABLE,
                "일시적인 오류",
                "Temporarily unavailable",
                "구독 정보를 확인할 수 없습니다. 잠시 후 다시 시도하세요.",
                "The subscription cannot be checked right now; try again shortly.",
            ),
            Self::SubscriptionMissing => t(
                StatusCode::FORBIDDEN,
                "구독 없음",
                "No subscription",
                "'{tenant_id}' 테넌트는 이 서비스를 구독하고 있지 않습니다.",
                "Tenant '{tenant_id}' has no subscription to this service.",
            ),
            Self::TenantBlocked => t(
                StatusCode::FORBIDDEN,
                "이용 차단",
                "Access blocked",
                "'{tenant_id}' 테넌트의 이용이 차단되었습니다.",
                "Access for tenant '{tenant_id}' is blocked.",
            ),
            Self::InvalidSignature => t(
                StatusCode::UNAUTHORIZED,
                "서명 오류",
                "Invalid signature",
                "명령의 서명을 확인할 수 없습니다: {reason}",
                "The command's signature was refused: {reason}",
            ),
            Self::CommandTargetMismatch => t(
                StatusCode::FORBIDDEN,
                "명령 대상 불일치",
                "Command target mismatch",
                "명령을 적용하지 않았습니다: {reason}",
                "The command was not applied: {reason}",
            ),
            Self::SubscriptionSuspended => t(
                StatusCode::FORBIDDEN,
                "구독 정지",
                "Subscription suspended",
                "'{tenant_id}' 테넌트의 구독이 정지되었습니다.",
                "The subscription of tenant '{tenant_id}' is suspended.",
            ),
            Self::SubscriptionExpired => t(
                StatusCode::FORBIDDEN,
                "구독 만료",
                "Subscription expired",
                "'{tenant_id}' 테넌트의 구독이 만료되었습니다. 갱신해주세요.",
                "The subscription of tenant '{tenant_id}' has expired; please renew it.",
            ),
            Self::SubscriptionCancelled => t(
                StatusCode::FORBIDDEN,
                "구독 종료",
                "Subscription ended",
                "'{tenant_id}' 테넌트의 구독이 종료되었습니다.",
                "The subscription of tenant '{tenant_id}' has ended.",
            ),
            Self::NotFound => t(
                StatusCode::NOT_FOUND,
                "찾을 수 없음",
                "Not found",
                "요청한 경로를 찾을 수 없습니다.",
                "No route matches this path.",
            ),
            Self::MethodNotAllowed => t(
                StatusCode::METHOD_NOT_ALLOWED,
                "허용되지 않는 메서드",
                "Method not allowed",
                "이 경로에서 허용되지 않는 메서드입니다.",
                "This method is not allowed on this path.",
            ),
            Self::BadRequest => t(
                StatusCode::BAD_REQUEST,
                "잘못된 요청",
                "Bad request",
                "요청이 올바르지 않습니다.",
                "The request is invalid.",
            ),
            Self::Unauthorized => t(
                StatusCode::UNAUTHORIZED,
                "인증 필요",
                "Unauthorized",
                "인증 정보가 없거나 올바르지 않습니다.",
                "Credentials are missing or invalid.",
            ),
            Self::Forbidden => t(
                StatusCode::FORBIDDEN,
                "권한 없음",
                "Forbidden",
                "이 요청을 수행할 권한이 없습니다.",
                "These credentials do not allow this request.",
            ),
            Self::Conflict => t(
                StatusCode::CONFLICT,
                "충돌",
                "Conflict",
                "요청이 현재 상태와 충돌합니다.",
                "The request conflicts with the current state.",
            ),
            Self::ConstraintViolation => t(
                StatusCode::CONFLICT,
                "제약 조건 위반",
                "Constraint violated",
                "요청이 기존 데이터와 충돌합니다(제약 조건: {constraint}).",
                "The request conflicts with existing data (constraint: {constraint}).",
            ),
            Self::ResourceNotFound => t(
                StatusCode::NOT_FOUND,
                "항목을 찾을 수 없음",
                "Not found",
                "요청한 항목이 없습니다.",
                "The requested item does not exist.",
            ),
            Self::PayloadTooLarge => t(
                StatusCode::PAYLOAD_TOO_LARGE,
                "요청 본문이 너무 큽니다",
                "Payload too large",
                "요청 본문이 허용된 크기를 넘었습니다.",
                "The request body exceeds the allowed size.",
            ),
            Self::RateLimited => t(
                StatusCode::TOO_MANY_REQUESTS,
                "요청 한도 초과",
                "Too many requests",
                "요청 한도(분당 {limit}회)를 넘었습니다. {retry_after}초 후에 다시 시도하세요.",
                "The limit of {limit} requests per minute is used up; try again in {retry_after} s.",
            ),
            Self::TooManyAttempts => t(
                StatusCode::TOO_MANY_REQUESTS,
                "시도 횟수 초과",
                "Too many attempts",
                "실패한 시도가 너무 많습니다. {retry_after}초 후에 다시 시도하세요.",
                "Too many failed attempts; try again in {retry_after} s.",
            ),
            Self::UnsupportedMediaType => t(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "지원하지 않는 형식",
                "Unsupported media type",
                "지원하지 않는 Content-Type입니다.",
                "The request's Content-Type is not supported.",
            ),
            Self::UnprocessableEntity => t(
                StatusCode::UNPROCESSABLE_ENTITY,
                "처리할 수 없는 요청",
                "Unprocessable request",
                "요청 본문을 처리할 수 없습니다.",
                "The request body could not be processed.",
            ),
            Self::HttpError => t(
                StatusCode::BAD_REQUEST,
                "요청을 처리할 수 없습니다",
                "Request not processed",
                "요청을 처리할 수 없습니다.",
                "The request could not be processed.",
            ),
            Self::Internal => t(
                StatusCode::INTERNAL_SERVER_ERROR,
                "서버 오류",
                "Internal server error",
                "서버 내부 오류가 발생했습니다. 잠시 후 다시 시도하세요.",
                "Something went wrong on our side; try again later.",
            ),
        }
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value filled into a message template.
#[derive(Debug, Clone)]
pub enum Param {
    /// The same in every language (an id, a header name).
    Text(Cow<'static, str>),
    /// Worded per language.
    Localized {
        /// Korean.
        ko: Cow<'static, str>,
        /// English.
        en: Cow<'static, str>,
    },
}

impl Param {
    fn get(&self, locale: Locale) -> &str {
        match self {
            Self::Text(s) => s,
            Self::Localized { ko, en } => match locale {
                Locale::Ko => ko,
                Locale::En => en,
            },
        }
    }
}

/// An error answered as `application/problem+json`.
///
/// ```
/// use mt_paas::http::{ApiError, ProblemCode};
/// use axum::response::IntoResponse;
///
/// let response = ApiError::new(ProblemCode::TenantNotFound).param("tenant_id", "snu").into_response();
/// assert_eq!(response.status(), 404);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// ```
///
/// The body is rendered in Korean; [`ProblemLayer`](super::ProblemLayer) re-renders it in
/// English for `Accept-Language: en`, which is why the error also rides in the response's
/// extensions.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ProblemCode,
    status: StatusCode,
    params: Vec<(&'static str, Param)>,
    detail: Option<Detail>,
    members: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// What went wrong inside, for the log (never the body).
    cause: Option<std::sync::Arc<str>>,
}

/// A detail that replaces the code's own.
#[derive(Debug, Clone)]
enum Detail {
    Fixed(Cow<'static, str>),
    /// Korean, English (boxed: an `ApiError` stays small in every `Result`).
    Localized(Box<(Cow<'static, str>, Cow<'static, str>)>),
}

impl ApiError {
    /// An error with the code's status and messages.
    pub fn new(code: ProblemCode) -> Self {
        Self {
            code,
            status: code.status(),
            params: Vec::new(),
            detail: None,
            members: Map::new(),
            headers: Vec::new(),
            cause: None,
        }
    }

    /// Records the internal cause: [`ProblemLayer`](super::ProblemLayer) logs it once with
    /// the answer; it is never part of the body.
    pub fn cause(mut self, cause: impl fmt::Display) -> Self {
        self.cause = Some(cause.to_string().into());
        self
    }

    /// The internal cause, if one was recorded.
    pub fn cause_text(&self) -> Option<&str> {
        self.cause.as_deref()
    }

    /// Fills `{name}` in the message templates.
    pub fn param(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.params.push((name, Param::Text(value.into())));
        self
    }

    /// Fills `{name}` with a value worded per language.
    pub fn localized_param(
        mut self,
        name: &'static str,
        ko: impl Into<Cow<'static, str>>,
        en: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.params.push((
            name,
            Param::Localized {
                ko: ko.into(),
                en: en.into(),
            },
        ));
        self
    }

    /// Replaces the localized detail with a text given as is (a market's message).
    pub fn detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(Detail::Fixed(detail.into()));
        self
    }

    /// Replaces the code's detail with one worded per language.
    pub fn localized_detail(
        mut self,
        ko: impl Into<Cow<'static, str>>,
        en: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.detail = Some(Detail::Localized(Box::new((ko.into(), en.into()))));
        self
    }

    /// Adds an extension member to the body, e.g. `"feature": "quiz"`.
    pub fn member(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.members.insert(name.to_owned(), value.into());
        self
    }

    /// Adds a response header, e.g. `Retry-After`.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Overrides the status (used for error responses converted from another layer).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The stable code.
    pub fn code(&self) -> ProblemCode {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body in `locale`.
    pub fn body(&self, locale: Locale) -> Value {
        serde_json::from_slice(&self.render(locale)).unwrap_or(Value::Null)
    }

    /// The body in `locale` as JSON bytes, written directly: it is on the path of every
    /// refused request, so the static texts are copied rather than escaped when they need
    /// no escaping (ours never do) and nothing is built as a `Value`.
    fn render(&self, locale: Locale) -> Vec<u8> {
        let text = self.code.text();
        let (title, template) = match locale {
            Locale::Ko => (text.ko_title, text.ko_detail),
            Locale::En => (text.en_title, text.en_detail),
        };
        let detail = match (&self.detail, locale) {
            (Some(Detail::Fixed(detail)), _) => Cow::Borrowed(detail.as_ref()),
            (Some(Detail::Localized(both)), Locale::Ko) => Cow::Borrowed(both.0.as_ref()),
            (Some(Detail::Localized(both)), Locale::En) => Cow::Borrowed(both.1.as_ref()),
            (None, _) => self.fill(template, locale),
        };
        let code = self.code.as_str();
        let mut out = Vec::with_capacity(160 + title.len() + detail.len());
        out.extend_from_slice(b"{\"type\":\"https://mt-paas.dev/problems/");
        out.extend_from_slice(code.as_bytes());
        out.extend_from_slice(b"\",\"title\":");
        push_json_str(&mut out, title);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.extend_from_slice(b",\"code\":\"");
        out.extend_from_slice(code.as_bytes());
        out.extend_from_slice(b"\",\"detail\":");
        push_json_str(&mut out, &detail);
        for (k, v) in &self.members {
            if !STANDARD_MEMBERS.contains(&k.as_str()) {
                out.push(b',');
                push_json_str(&mut out, k);
                out.push(b':');
                // Writing a `Value` into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, v);
            }
        }
        // Newline-ended, like every body mt-paas writes itself: a shell prompt after `curl`
        // starts on its own line.
        out.extend_from_slice(b"}\n");
        out
    }

    /// The template with every `{name}` replaced by its parameter, in one pass.
    fn fill<'a>(&self, template: &'a str, locale: Locale) -> Cow<'a, str> {
        if self.params.is_empty() || !template.contains('{') {
            return Cow::Borrowed(template);
        }
        let mut out = String::with_capacity(template.len() + 32);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let value = after.find('}').and_then(|close| {
                let name = &after[..close];
                self.params
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (v.get(locale), close))
            });
            match value {
                Some((value, close)) => {
                    out.push_str(value);
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        Cow::Owned(out)
    }

    /// The full response in `locale`; the error rides in its extensions (see
    /// [`ProblemLayer`](super::ProblemLayer)).
    pub fn to_response(&self, locale: Locale) -> Response {
        let mut response = self.bare_response(locale);
        response.extensions_mut().insert(self.clone());
        response
    }

    /// The response in `locale` without the error in its extensions.
    pub(crate) fn bare_response(&self, locale: Locale) -> Response {
        let mut response = (self.status, self.render(locale)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(
            header::CONTENT_LANGUAGE,
            HeaderValue::from_static(locale.tag()),
        );
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code, self.status)
    }
}

impl std::error::Error for ApiError {}

/// The members every problem has; an extension member never overrides them.
const STANDARD_MEMBERS: [&str; 5] = ["type", "title", "status", "code", "detail"];

/// Appends `s` as a JSON string; copied as is when nothing in it needs escaping.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(out, s);
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.bare_response(Locale::Ko);
        response.extensions_mut().insert(self);
        response
    }
}

impl From<ProblemCode> for ApiError {
    fn from(code: ProblemCode) -> Self {
        Self::new(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_localized_and_filled() {
        let e = ApiError::new(ProblemCode::TenantNotFound).param("tenant_id", "snu");
        let ko = e.body(Locale::Ko);
        let en = e.body(Locale::En);
        assert_eq!(ko["code"], "tenant_not_found");
        assert_eq!(ko["status"], 404);
        assert_eq!(ko["detail"], "'snu' 테넌트가 등록되어 있지 않습니다.");
        assert_eq!(en["detail"], "No tenant 'snu' is registered.");
    }

    #[test]
    fn members_extend_but_never_override_the_standard_ones() {
        let e = ApiError::new(ProblemCode::FeatureNotAvailable)
            .param("feature", "quiz")
            .member("feature", "quiz")
            .member("code", "forged")
            .member("status", 200);
        let body = e.body(Locale::En);
        assert_eq!(body["code"], "feature_not_available");
        assert_eq!(body["status"], 403);
        assert_eq!(body["feature"], "quiz");
        let rendered: Value = serde_json::from_slice(&e.render(Locale::Ko)).unwrap();
        assert_eq!(rendered["detail"], e.body(Locale::Ko)["detail"]);
        // Escaping: a parameter with quotes, backslashes and a newline stays valid JSON.
        let odd = ApiError::new(ProblemCode::TenantNotFound).param("tenant_id", "a\"b\\c\nd");
        let body: Value = serde_json::from_slice(&odd.render(Locale::En)).unwrap();
        assert_eq!(body["detail"], "No tenant 'a\"b\\c\nd' is registered.");
    }

    #[test]
    fn fill_leaves_unknown_placeholders_and_fills_repeats() {
        let e = ApiError::new(ProblemCode::BadRequest)
            .param("a", "1")
            .localized_param("b", "이", "two");
        assert_eq!(e.fill("{a}-{b}-{a}-{c}-{", Locale::En), "1-two-1-{c}-{");
        assert_eq!(e.fill("{b}", Locale::Ko), "이");
        assert_eq!(e.fill("plain", Locale::Ko), "plain");
    }

    #[test]
    fn every_template_param_is_named_in_both_languages() {
        let codes = [
            ProblemCode::InvalidTenantId,
            ProblemCode::AmbiguousTenant,
            ProblemCode::TenantRequired,
            ProblemCode::TenantNotFound,
            ProblemCode::TenantNotReady,
            ProblemCode::TenantSuspended,
            ProblemCode::TenantArchived,
            ProblemCode::InvalidToken,
            ProblemCode::AuthenticationRequired,
            ProblemCode::CrossTenantAccess,
            ProblemCode::FeatureNotAvailable,
            ProblemCode::CentralDbUnavailable,
            ProblemCode::TenantDbUnavailable,
            ProblemCode::TenantAppUnavailable,
            ProblemCode::TenantAppTimeout,
            ProblemCode::MarketUnavailable,
            ProblemCode::SubscriptionMissing,
            ProblemCode::TenantBlocked,
            ProblemCode::InvalidSignature,
            ProblemCode::SubscriptionSuspended,
            ProblemCode::SubscriptionExpired,
            ProblemCode::SubscriptionCancelled,
            ProblemCode::NotFound,
            ProblemCode::MethodNotAllowed,
            ProblemCode::BadRequest,
            ProblemCode::Unauthorized,
            ProblemCode::Forbidden,
            ProblemCode::Conflict,
            ProblemCode::ConstraintViolation,
            ProblemCode::ResourceNotFound,
            ProblemCode::CommandTargetMismatch,
            ProblemCode::PayloadTooLarge,
            ProblemCode::RateLimited,
            ProblemCode::TooManyAttempts,
            ProblemCode::UnsupportedMediaType,
            ProblemCode::UnprocessableEntity,
            ProblemCode::HttpError,
            ProblemCode::Internal,
        ];
        let names = |s: &str| -> Vec<String> {
            let mut v: Vec<String> = s
                .split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_owned()))
                .collect();
            v.sort();
            v
        };
        for code in codes {
            let t = code.text();
            assert_eq!(names(t.ko_detail), names(t.en_detail), "{code}");
        }
    }

    #[test]
    fn verbatim_detail_and_members() {
        let e = ApiError::new(ProblemCode::FeatureNotAvailable)
            .member("feature", "quiz")
            .detail("구독이 만료되었습니다. 갱신해주세요.");
        let en = e.body(Locale::En);
        assert_eq!(en["detail"], "구독이 만료되었습니다. 갱신해주세요.");
        assert_eq!(en["feature"], "quiz");
        assert_eq!(en["title"], "Feature not available");
    }
}
