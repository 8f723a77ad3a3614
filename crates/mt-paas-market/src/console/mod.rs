//! The operator console at `/console`: server-rendered pages for the people who run the
//! market, Korean by default with an English switch.
//!
//! - Operators are accounts of their own (`mt-paas-market operator add NAME`), their
//!   passwords hashed as the market's users' are; sign-in is throttled per name and per
//!   address like SSO's.
//! - A session is a random token in an `HttpOnly`, `SameSite=Strict` cookie scoped to
//!   `/console` (`Secure` when the market's public URL is https); the market keeps only its
//!   hash, and it ends at sign-out, after [`SESSION_HOURS`], or when the password changes.
//! - Every form carries a CSRF token: the session's, or before sign-in one bound to the
//!   browser by a cookie of its own (so nobody can sign a browser in to their account).
//! - Pages are sent with a `Content-Security-Policy` that allows no script and no framing,
//!   and `Cache-Control: no-store`.
//!
//! The operator API's bearer token (`/api/v1/admin`) keeps working for scripts.

use std::{net::SocketAddr, sync::LazyLock};

use axum::{
    Form, Router,
    extract::{ConnectInfo, Path, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use minijinja::{Environment, UndefinedBehavior, Value, context};
use serde::Deserialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use mt_paas::http::cookie;

use crate::{Market, crypto, store::StoreError, throttle};

/// The session cookie.
const SESSION_COOKIE: &str = "mtp_console";
/// The cookie that binds the sign-in form's CSRF token to the browser.
const LOGIN_COOKIE: &str = "mtp_console_login";
/// The language cookie.
const LANG_COOKIE: &str = "mtp_console_lang";
/// How long a session lasts.
pub(crate) const SESSION_HOURS: i64 = 12;
/// An instance whose last heartbeat is older than this is shown stale.
const STALE_AFTER: time::Duration = time::Duration::minutes(5);
/// Alerts on the overview.
const ALERTS_SHOWN: i64 = 20;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // A name a page uses but is not given is an error, never an empty string.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("service.html", include_str!("templates/service.html")),
        ("confirm.html", include_str!("templates/confirm.html")),
        ("usage.html", include_str!("templates/usage.html")),
        ("alerts.html", include_str!("templates/alerts.html")),
        ("plans.html", include_str!("templates/plans.html")),
        ("keys.html", include_str!("templates/keys.html")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            panic!("the console's template {name} does not parse: {e:#}");
        }
    }
    env
});

/// The console's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Ko,
    En,
}

impl Lang {
    /// The language cookie's, else the browser's choice between Korean and English
    /// ([`mt_paas::http::Locale`]), Korean by default.
    fn of(headers: &HeaderMap) -> Self {
        match cookie(headers, LANG_COOKIE) {
            Some("en") => return Self::En,
            Some("ko") => return Self::Ko,
            _ => {}
        }
        match mt_paas::http::Locale::from_accept_language(headers.get(header::ACCEPT_LANGUAGE)) {
            mt_paas::http::Locale::En => Self::En,
            _ => Self::Ko,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Self::Ko => "ko",
            Self::En => "en",
        }
    }

    /// The page texts.
    fn texts(self) -> Value {
        let pairs: &[(&str, &str, &str)] = &[
            (
                "console",
                "Service Market 운영 콘솔",
                "Service Market console",
            ),
            ("language", "언어", "Language"),
            ("sign_in", "로그인", "Sign in"),
            ("sign_out", "로그아웃", "Sign out"),
            ("name", "이름", "Name"),
            ("password", "비밀번호", "Password"),
            ("overview", "개요", "Overview"),
            ("services", "서비스", "Services"),
            ("service", "서비스", "Service"),
            ("instance", "인스턴스", "Instance"),
            ("state", "상태", "State"),
            ("healthy", "정상", "healthy"),
            ("stale", "응답 없음", "stale"),
            ("last_heartbeat", "마지막 하트비트", "Last heartbeat"),
            ("requests_per_minute", "분당 요청", "Requests/min"),
            ("error_rate", "오류율", "Error rate"),
            ("latency", "평균 응답 시간", "Avg. latency"),
            ("tenants", "활성 테넌트", "Active tenants"),
            (
                "no_heartbeat",
                "아직 하트비트가 없습니다.",
                "No heartbeat yet.",
            ),
            (
                "no_services",
                "등록된 서비스가 없습니다.",
                "No service is registered.",
            ),
            ("alerts", "감사 알림", "Audit alerts"),
            ("received", "받은 시각", "Received"),
            ("alert_type", "종류", "Type"),
            ("severity", "심각도", "Severity"),
            ("no_alerts", "감사 알림이 없습니다.", "No audit alerts."),
            ("open_alerts", "열린 감사 알림", "Open audit alerts"),
            ("acknowledge", "확인함으로 표시", "Mark as seen"),
            ("acknowledged", "확인함", "Seen"),
            ("open_only", "열린 것만", "open only"),
            (
                "subscriptions",
                "테넌트와 구독",
                "Tenants and subscriptions",
            ),
            ("tenant", "테넌트", "Tenant"),
            ("plan", "요금제", "Plan"),
            ("expires", "만료", "Expires"),
            ("block", "차단", "Block"),
            ("actions", "작업", "Actions"),
            ("state_active", "활성", "active"),
            ("state_suspended", "정지됨", "suspended"),
            ("state_cancelled", "해지됨", "cancelled"),
            (
                "state_pending_activation",
                "활성화 대기",
                "pending activation",
            ),
            ("state_unknown", "알 수 없음", "unknown"),
            ("suspend", "정지", "Suspend"),
            ("reinstate", "재개", "Reinstate"),
            ("unblock", "차단 해제", "Unblock"),
            (
                "block_message",
                "사용자에게 보일 메시지",
                "Message shown to users",
            ),
            ("block_now", "지금 차단", "Block now"),
            ("no_subscriptions", "구독이 없습니다.", "No subscriptions."),
            ("commands", "보낸 명령", "Commands sent"),
            ("created", "만든 시각", "Created"),
            ("command", "명령", "Command"),
            ("delivery", "전달", "Delivery"),
            ("delivery_pending", "대기 중", "queued"),
            ("delivery_applied", "적용됨", "applied"),
            ("delivery_superseded", "대체됨", "superseded"),
            ("delivery_failed", "실패", "failed"),
            ("attempts", "시도", "Attempts"),
            ("detail", "내용", "Detail"),
            ("no_commands", "보낸 명령이 없습니다.", "No commands sent."),
            ("confirm", "확인", "Confirm"),
            ("confirm_yes", "실행", "Do it"),
            ("cancel", "취소", "Cancel"),
            ("more_actions", "다른 작업", "More actions"),
            ("usage", "사용량", "Usage"),
            (
                "all_alerts",
                "모든 감사 알림과 필터",
                "All audit alerts, with filters",
            ),
            ("all", "전체", "all"),
            ("since", "이 날짜부터(UTC)", "Since (UTC)"),
            ("filter", "거르기", "Filter"),
            ("details", "내용", "Details"),
            ("csv", "CSV로 내려받기", "Download as CSV"),
            ("day", "날짜(UTC)", "Day (UTC)"),
            ("quantity", "양", "Quantity"),
            (
                "no_usage",
                "보고된 사용량이 없습니다.",
                "No usage reported.",
            ),
            ("change_plan", "요금제 변경", "Change plan"),
            (
                "expires_through",
                "이 날짜까지 이용(UTC, 비우면 무기한)",
                "Valid through (UTC; empty: no end)",
            ),
            ("set_expiry", "만료일 설정", "Set expiry"),
            ("block_at", "차단 시각(UTC)", "Block at (UTC)"),
            ("grace_hours", "유예 시간(시간)", "Grace (hours)"),
            ("block_later", "예약 차단", "Schedule block"),
            (
                "block_later_message",
                "예약 차단 때 보일 메시지",
                "Message of the scheduled block",
            ),
            ("provision", "프로비저닝", "Provision"),
            ("deprovision", "프로비저닝 해제", "Deprovision"),
            (
                "last_hours",
                "최근 6시간(5분 단위, 모든 인스턴스 합계)",
                "Last 6 hours (5-minute buckets, all instances)",
            ),
            ("peak", "최대", "peak"),
            (
                "delivery_delivered",
                "전달됨(응답 대기)",
                "delivered (awaiting answer)",
            ),
            (
                "delivery_retrying",
                "전달 실패, 다음 시도",
                "push failed, next try",
            ),
            (
                "delivery_given_up",
                "푸시 중단, 다음 하트비트로 전달",
                "pushes stopped, goes with the next heartbeat",
            ),
            ("delivery_rejected", "거부됨", "rejected"),
            ("plans", "요금제", "Plans"),
            ("plan_id", "요금제 ID", "Plan id"),
            ("plan_name", "이름", "Name"),
            ("features", "기능", "Features"),
            (
                "rate_limit",
                "테넌트당 분당 요청 한도",
                "Requests per minute per tenant",
            ),
            ("service_default", "서비스 기본값", "service default"),
            ("no_plans", "요금제가 없습니다.", "No plans."),
            ("save_plan", "요금제 저장", "Save plan"),
            ("edit", "고치기", "Edit"),
            (
                "features_help",
                "켤 기능 이름, 쉼표로 구분. 끌 기능은 앞에 !를 붙입니다(예: ai_tutor, !export).",
                "Feature names to turn on, comma-separated; prefix ! to turn one off (e.g. ai_tutor, !export).",
            ),
            ("put_plan", "요금제 추가 또는 변경", "Add or change a plan"),
            ("signing_keys", "서명 키", "Signing keys"),
            ("kid", "키 ID", "Key id"),
            ("retired", "폐기", "Retired"),
            ("current", "현재 서명 키", "signs new tokens"),
            ("published", "게시됨", "published"),
            ("rotate", "새 키로 교체", "Rotate"),
            ("retire", "폐기", "Retire"),
            (
                "no_keys",
                "아직 서명 키가 없습니다(첫 토큰을 발급할 때 만듭니다).",
                "No signing key yet (the first is made with the first token).",
            ),
        ];
        let map: std::collections::BTreeMap<&str, &str> = pairs
            .iter()
            .map(|(key, ko, en)| (*key, if self == Self::Ko { *ko } else { *en }))
            .collect();
        Value::from(map)
    }

    fn say(self, ko: &'static str, en: &'static str) -> &'static str {
        if self == Self::Ko { ko } else { en }
    }
}

pub(crate) fn router(market: Market) -> Router {
    Router::new()
        .route("/console", get(overview))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/lang/{lang}", get(set_lang))
        .route("/console/alerts", get(alerts_page))
        .route("/console/alerts/acknowledge", post(acknowledge_alert))
        .route("/console/plans", get(plans_page).post(put_plan))
        .route("/console/keys", get(keys_page))
        .route("/console/keys/rotate", post(rotate_key))
        .route("/console/keys/{kid}/retire", post(retire_key))
        .route("/console/services/{service_id}", get(service_page))
        .route("/console/services/{service_id}/usage", get(usage_page))
        .route("/console/services/{service_id}/usage.csv", get(usage_csv))
        .route(
            "/console/services/{service_id}/tenants/{tenant_id}/{action}",
            post(subscription_action),
        )
        .with_state(market)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }))
}

/// A signed-in operator.
struct Session {
    operator: String,
    csrf: String,
    token_hash: String,
}

impl Session {
    /// The refusal of a form that does not carry this session's CSRF token; `None` for one
    /// that does.
    fn refusal(&self, csrf: &str, lang: Lang) -> Option<Response> {
        if !csrf.is_empty() && crypto::same(csrf.as_bytes(), self.csrf.as_bytes()) {
            None
        } else {
            Some(forbidden(lang))
        }
    }
}

/// A page or form of a signed-in operator: without a session, the answer is the way to the
/// sign-in page.
impl axum::extract::FromRequestParts<Market> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        market: &Market,
    ) -> Result<Self, Response> {
        match session(market, &parts.headers).await {
            Ok(Some(session)) => Ok(session),
            Ok(None) => Err(see_other("/console/login", Vec::new())),
            Err(e) => Err(store_failed(&e)),
        }
    }
}

async fn session(market: &Market, headers: &HeaderMap) -> Result<Option<Session>, StoreError> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| t.len() <= 128) else {
        return Ok(None);
    };
    let token_hash = crypto::sha256_hex(token.as_bytes());
    Ok(market
        .store()
        .console_session(&token_hash)
        .await?
        .map(|(operator, csrf)| Session {
            operator,
            csrf,
            token_hash,
        }))
}

/// A `Set-Cookie` for the console: HttpOnly, SameSite=Strict, `/console` only, Secure when
/// the market is served over https. `max_age` 0 removes it.
fn set_cookie(market: &Market, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if market.config().public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("mtp_console_invalid=1"))
}

/// A rendered page with the console's security headers.
fn page(status: StatusCode, template: &str, values: Value, cookies: Vec<HeaderValue>) -> Response {
    let html = match TEMPLATES
        .get_template(template)
        .and_then(|t| t.render(values))
    {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, template, "rendering a console page");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie);
    }
    response
}

fn see_other(to: &'static str, cookies: Vec<HeaderValue>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn store_failed(e: &StoreError) -> Response {
    tracing::error!(error = %e, "market database error (console)");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

fn no_randomness(e: crate::NoRandomness) -> Response {
    tracing::error!(error = %e, "no token for the console");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// The refusal of a form whose CSRF token does not match.
fn forbidden(lang: Lang) -> Response {
    let mut response = (
        StatusCode::FORBIDDEN,
        lang.say(
            "요청을 확인할 수 없습니다(CSRF 토큰 불일치). 페이지를 새로 고친 뒤 다시 시도하세요.\n",
            "The request could not be verified (CSRF token mismatch). Reload the page and try again.\n",
        ),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn login_page(
    market: &Market,
    lang: Lang,
    status: StatusCode,
    name: &str,
    error: Option<&str>,
    csrf: &str,
    mut cookies: Vec<HeaderValue>,
) -> Response {
    cookies.push(set_cookie(market, LOGIN_COOKIE, csrf, 3600));
    page(
        status,
        "login.html",
        context! {
            lang => lang.code(),
            t => lang.texts(),
            title => lang.say("로그인", "Sign in"),
            operator => Value::from(()),
            csrf,
            name,
            error,
        },
        cookies,
    )
}

async fn login_form(State(market): State<Market>, headers: HeaderMap) -> Response {
    match session(&market, &headers).await {
        Ok(Some(_)) => return see_other("/console", Vec::new()),
        Ok(None) => {}
        Err(e) => return store_failed(&e),
    }
    let csrf = match cookie(&headers, LOGIN_COOKIE).filter(|c| c.len() == 22) {
        Some(csrf) => csrf.to_owned(),
        None => match crypto::random_token(16) {
            Ok(csrf) => csrf,
            Err(e) => return no_randomness(e),
        },
    };
    login_page(
        &market,
        Lang::of(&headers),
        StatusCode::OK,
        "",
        None,
        &csrf,
        Vec::new(),
    )
}

#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(market): State<Market>,
    extensions: http::Extensions,
    headers: HeaderMap,
    Form(form): Form<Credentials>,
) -> Response {
    let lang = Lang::of(&headers);
    let Some(expected) = cookie(&headers, LOGIN_COOKIE) else {
        return forbidden(lang);
    };
    if form.csrf.is_empty() || !crypto::same(form.csrf.as_bytes(), expected.as_bytes()) {
        return forbidden(lang);
    }
    let csrf = expected.to_owned();
    let address = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let key = format!("operator:{}", form.name);
    let logins = &market.inner.logins;
    if logins.check(&key, address).is_err() {
        let error = lang.say(
            "로그인 시도가 너무 많습니다. 15분 뒤에 다시 시도하세요.",
            "Too many sign-in attempts. Try again in 15 minutes.",
        );
        return login_page(
            &market,
            lang,
            StatusCode::TOO_MANY_REQUESTS,
            &form.name,
            Some(error),
            &csrf,
            Vec::new(),
        );
    }
    if form.name.len() > 200 || form.password.len() > 1024 {
        let error = lang.say(
            "이름은 200자, 비밀번호는 1024자까지입니다.",
            "A name has at most 200 characters, a password 1024.",
        );
        return login_page(
            &market,
            lang,
            StatusCode::BAD_REQUEST,
            "",
            Some(error),
            &csrf,
            Vec::new(),
        );
    }
    let stored = match market.store().operator_password(&form.name).await {
        Ok(stored) => stored,
        Err(e) => return store_failed(&e),
    };
    if !throttle::verify(form.password, stored).await {
        logins.failed(&key, address);
        let error = lang.say(
            "이름 또는 비밀번호가 틀렸습니다.",
            "Wrong name or password.",
        );
        return login_page(
            &market,
            lang,
            StatusCode::UNAUTHORIZED,
            &form.name,
            Some(error),
            &csrf,
            Vec::new(),
        );
    }
    logins.succeeded(&key);
    let (token, session_csrf) = match (crypto::random_token(32), crypto::random_token(16)) {
        (Ok(token), Ok(csrf)) => (token, csrf),
        (Err(e), _) | (_, Err(e)) => return no_randomness(e),
    };
    let expires_at = OffsetDateTime::now_utc() + time::Duration::hours(SESSION_HOURS);
    if let Err(e) = market
        .store()
        .start_console_session(
            &crypto::sha256_hex(token.as_bytes()),
            &form.name,
            &session_csrf,
            expires_at,
        )
        .await
    {
        return store_failed(&e);
    }
    see_other(
        "/console",
        vec![
            set_cookie(&market, SESSION_COOKIE, &token, SESSION_HOURS * 3600),
            set_cookie(&market, LOGIN_COOKIE, "", 0),
        ],
    )
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(market): State<Market>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = session.refusal(&form.csrf, Lang::of(&headers)) {
        return refused;
    }
    if let Err(e) = market
        .store()
        .end_console_session(&session.token_hash)
        .await
    {
        return store_failed(&e);
    }
    see_other(
        "/console/login",
        vec![set_cookie(&market, SESSION_COOKIE, "", 0)],
    )
}

/// Sets the language and goes back to the console (never to an address the request names).
async fn set_lang(State(market): State<Market>, Path(lang): Path<String>) -> Response {
    let lang = if lang == "en" { "en" } else { "ko" };
    see_other(
        "/console",
        vec![set_cookie(&market, LANG_COOKIE, lang, 365 * 24 * 3600)],
    )
}

/// A severity as the protocol spells it (`low` … `critical`).
fn severity_name(severity: mt_paas_protocol::Severity) -> String {
    serde_json::to_value(severity)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// "3 s", "5 min", "2 h" ago.
fn ago(lang: Lang, since: time::Duration) -> String {
    let s = since.whole_seconds().max(0);
    let (n, ko, en) = match s {
        0..60 => (s, "초 전", "s ago"),
        60..3600 => (s / 60, "분 전", "min ago"),
        3600..86400 => (s / 3600, "시간 전", "h ago"),
        _ => (s / 86400, "일 전", "d ago"),
    };
    match lang {
        Lang::Ko => format!("{n}{ko}"),
        Lang::En => format!("{n} {en}"),
    }
}

/// How far back the overview's charts reach.
const CHART_SPAN: time::Duration = time::Duration::hours(6);

/// A small bar chart: one bar per slot, scaled to the largest value, each with its title.
fn bar_chart(name: &str, slots: &[(OffsetDateTime, Option<f64>)], unit: &str) -> Value {
    const BAR: usize = 4;
    const HEIGHT: f64 = 40.0;
    let peak = slots.iter().filter_map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let bars: Vec<Value> = slots
        .iter()
        .enumerate()
        .filter_map(|(n, (at, value))| {
            let value = (*value)?;
            let height = if peak > 0.0 {
                (value / peak * HEIGHT).max(1.0)
            } else {
                1.0
            };
            Some(context! {
                x => n * BAR,
                y => format!("{:.1}", HEIGHT - height),
                height => format!("{:.1}", height),
                title => format!("{} UTC: {}", hour_minute(*at), with_unit(value, unit)),
            })
        })
        .collect();
    context! {
        name,
        width => slots.len() * BAR,
        peak => with_unit(peak, unit),
        bars,
    }
}

fn hour_minute(at: OffsetDateTime) -> String {
    format!("{:02}:{:02}", at.hour(), at.minute())
}

fn with_unit(value: f64, unit: &str) -> String {
    if unit.is_empty() {
        number(value)
    } else {
        format!("{} {unit}", number(value))
    }
}

/// A figure for a chart: whole numbers as such, others to one decimal.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// Requests per minute, error rate and mean latency over the last [`CHART_SPAN`] in
/// five-minute slots (a slot without heartbeats has no bar).
fn metric_charts(
    lang: Lang,
    buckets: &[crate::store::MetricBucket],
    now: OffsetDateTime,
) -> Vec<Value> {
    let step = crate::store::METRIC_BUCKET;
    let slots = (CHART_SPAN.whole_seconds() / step.whole_seconds()) as usize;
    let current = now
        - time::Duration::seconds(now.unix_timestamp().rem_euclid(step.whole_seconds()))
        - time::Duration::nanoseconds(i64::from(now.nanosecond()));
    let starts: Vec<OffsetDateTime> = (0..slots)
        .rev()
        .map(|back| current - step * i32::try_from(back).unwrap_or(0))
        .collect();
    let at = |start: OffsetDateTime| buckets.iter().find(|b| b.start == start);
    let series = |f: &dyn Fn(&crate::store::MetricBucket, f64) -> Option<f64>| -> Vec<(OffsetDateTime, Option<f64>)> {
        starts
            .iter()
            .map(|start| {
                // The current slot is still filling: its rate is over the time it has had.
                let minutes = if *start == current {
                    ((now - current).as_seconds_f64() / 60.0).max(1.0)
                } else {
                    step.as_seconds_f64() / 60.0
                };
                (*start, at(*start).and_then(|b| f(b, minutes)))
            })
            .collect()
    };
    let requests = series(&|b, minutes| Some(b.requests as f64 / minutes));
    let errors =
        series(&|b, _| (b.requests > 0).then(|| b.errors as f64 * 100.0 / b.requests as f64));
    let latency = series(&|b, _| (b.requests > 0).then(|| b.latency_sum_ms / b.requests as f64));
    vec![
        bar_chart(lang.say("분당 요청", "Requests/min"), &requests, ""),
        bar_chart(lang.say("오류율", "Error rate"), &errors, "%"),
        bar_chart(lang.say("평균 응답 시간", "Avg. latency"), &latency, "ms"),
    ]
}

async fn overview(State(market): State<Market>, session: Session, headers: HeaderMap) -> Response {
    let lang = Lang::of(&headers);
    let store = market.store();
    let now = OffsetDateTime::now_utc();
    let services = match store.services().await {
        Ok(services) => services,
        Err(e) => return store_failed(&e),
    };
    let mut shown = Vec::new();
    for service in services {
        let instances = match store.instances(&service.id).await {
            Ok(instances) => instances,
            Err(e) => return store_failed(&e),
        };
        let instances: Vec<Value> = instances
            .iter()
            .map(|i| {
                let since = now - i.received_at;
                let metrics = &i.heartbeat.metrics;
                context! {
                    id => &i.instance_id,
                    health => if since > STALE_AFTER { "stale" } else { "healthy" },
                    received_at => rfc3339(i.received_at),
                    ago => ago(lang, since),
                    requests_per_minute => metrics.requests_per_minute,
                    error_rate => format!("{:.1} %", metrics.error_rate * 100.0),
                    latency_ms => format!("{:.1}", metrics.avg_response_time_ms),
                    active_tenants => i.heartbeat.active_tenants.len(),
                }
            })
            .collect();
        let buckets = match store.metric_buckets(&service.id, now - CHART_SPAN).await {
            Ok(buckets) => buckets,
            Err(e) => return store_failed(&e),
        };
        shown.push(context! {
            id => service.id,
            name => service.name,
            instances,
            charts => metric_charts(lang, &buckets, now),
        });
    }
    let alerts: Vec<Value> = match store.alerts(None, true, ALERTS_SHOWN).await {
        Ok(alerts) => alerts
            .iter()
            .map(|a| {
                context! {
                    received_at => rfc3339(a.received_at),
                    service_id => &a.alert.service_id,
                    event_id => &a.alert.event_id,
                    alert_type => &a.alert.alert_type,
                    severity => severity_name(a.alert.severity),
                }
            })
            .collect(),
        Err(e) => return store_failed(&e),
    };
    page(
        StatusCode::OK,
        "overview.html",
        context! {
            lang => lang.code(),
            t => lang.texts(),
            title => lang.say("개요", "Overview"),
            operator => session.operator,
            csrf => session.csrf,
            services => shown,
            alerts,
        },
        Vec::new(),
    )
}

/// The page of one service: its subscriptions with their actions, and its commands.
async fn service_page(
    State(market): State<Market>,
    session: Session,
    Path(service_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::of(&headers);
    let store = market.store();
    let service = match store.service(&service_id).await {
        Ok(Some(service)) => service,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such service\n").into_response(),
        Err(e) => return store_failed(&e),
    };
    let subscriptions = match store.subscriptions_since(&service.id, 0, 10_000).await {
        Ok(mut subscriptions) => {
            subscriptions.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
            subscriptions
        }
        Err(e) => return store_failed(&e),
    };
    let plans: Vec<Value> = match store.plans().await {
        Ok(plans) => plans
            .iter()
            .map(|p| context! { id => &p.id, name => &p.name })
            .collect(),
        Err(e) => return store_failed(&e),
    };
    let subscriptions: Vec<Value> = subscriptions
        .iter()
        .map(|s| {
            context! {
                tenant_id => &s.tenant_id,
                plan_id => &s.plan_id,
                state => state_code(s.state),
                expires_at => s.expires_at.map(rfc3339),
                // The last day it is valid: it ends at the next midnight, UTC.
                expires_date => s.expires_at.map(|at| (at - time::Duration::seconds(1)).date().to_string()),
                block => s.block.as_ref().map(|b| context! {
                    message => &b.message,
                    block_at => rfc3339(b.block_at),
                }),
            }
        })
        .collect();
    let max_attempts = i64::from(market.config().delivery.max_attempts);
    let commands: Vec<Value> = match store.commands(&service.id, false, 50).await {
        Ok(commands) => commands
            .iter()
            .map(|c| {
                let (delivery, next_attempt) = delivery_of(c, max_attempts);
                let kind = serde_json::to_value(&c.command)
                    .ok()
                    .and_then(|v| v["kind"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                context! {
                    created_at => rfc3339(c.created_at),
                    tenant_id => c.command.tenant_id(),
                    kind,
                    delivery,
                    next_attempt,
                    attempts => c.attempts,
                    detail => c.last_error.as_deref().or(c.detail.as_deref()).unwrap_or(""),
                }
            })
            .collect(),
        Err(e) => return store_failed(&e),
    };
    page(
        StatusCode::OK,
        "service.html",
        context! {
            lang => lang.code(),
            t => lang.texts(),
            title => &service.name,
            operator => session.operator,
            csrf => session.csrf,
            service => context! { id => &service.id, name => &service.name },
            plans,
            subscriptions,
            commands,
        },
        Vec::new(),
    )
}

/// Where a command is on its way: queued, delivered (pulled with a heartbeat, not yet
/// answered), retrying (with the next push time), given up on pushing, or the service's
/// answer (applied, superseded, failed, rejected).
fn delivery_of(c: &crate::store::QueuedCommand, max_attempts: i64) -> (String, Option<String>) {
    if c.status != "pending" {
        return (c.status.clone(), None);
    }
    // Pulled with a heartbeat, it reached the service whatever the pushes did.
    if c.delivered_at.is_some() {
        return ("delivered".to_owned(), None);
    }
    if c.last_error.is_some() {
        if c.attempts >= max_attempts {
            return ("given_up".to_owned(), None);
        }
        return ("retrying".to_owned(), Some(rfc3339(c.next_attempt_at)));
    }
    ("pending".to_owned(), None)
}

fn state_code(state: mt_paas_protocol::SubscriptionState) -> &'static str {
    use mt_paas_protocol::SubscriptionState as S;
    match state {
        S::PendingActivation => "pending_activation",
        S::Active => "active",
        S::Suspended => "suspended",
        S::Cancelled => "cancelled",
        S::Unknown => "unknown",
    }
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    block_at: String,
    #[serde(default)]
    grace_period_hours: String,
}

/// An action, its fields checked.
enum Action {
    Suspend,
    Reinstate,
    Block {
        message: String,
        at: Option<OffsetDateTime>,
        grace_period_hours: u64,
    },
    Unblock,
    Plan(String),
    Expiry(Option<time::Date>),
    Provision,
    Deprovision,
}

/// A refused action form: its status and the line that says why.
struct Refusal(StatusCode, String);

/// `field: why`, answered as a 400.
fn bad_field(field: &str, ko: &str, en: &str, lang: Lang) -> Refusal {
    let why = if lang == Lang::Ko { ko } else { en };
    Refusal(StatusCode::BAD_REQUEST, format!("{field}: {why}\n"))
}

impl Action {
    fn parse(name: &str, form: &ActionForm, lang: Lang) -> Result<Self, Refusal> {
        Ok(match name {
            "suspend" => Self::Suspend,
            "reinstate" => Self::Reinstate,
            "unblock" => Self::Unblock,
            "provision" => Self::Provision,
            "deprovision" => Self::Deprovision,
            "block" => {
                let message = form.message.trim();
                if message.is_empty() || message.chars().count() > 500 {
                    return Err(bad_field(
                        "message",
                        "사용자에게 보일 메시지를 1~500자로 적으세요.",
                        "write the message users see, 1 to 500 characters.",
                        lang,
                    ));
                }
                let at = match form.block_at.trim() {
                    "" => None,
                    text => Some(parse_minute(text).ok_or_else(|| {
                        bad_field(
                            "block_at",
                            "YYYY-MM-DDTHH:MM 형식의 UTC 시각이어야 합니다.",
                            "a UTC time as YYYY-MM-DDTHH:MM.",
                            lang,
                        )
                    })?),
                };
                let grace = form.grace_period_hours.trim();
                let grace_period_hours = match grace {
                    "" => 0,
                    text => text.parse().ok().filter(|h| *h <= 8760).ok_or_else(|| {
                        bad_field(
                            "grace_period_hours",
                            "0에서 8760 사이의 정수여야 합니다.",
                            "a whole number from 0 to 8760.",
                            lang,
                        )
                    })?,
                };
                Self::Block {
                    message: message.to_owned(),
                    at,
                    grace_period_hours,
                }
            }
            "plan" => {
                let plan = form.plan.trim();
                if plan.is_empty() || plan.len() > 100 {
                    return Err(bad_field(
                        "plan",
                        "요금제를 고르세요.",
                        "choose a plan.",
                        lang,
                    ));
                }
                Self::Plan(plan.to_owned())
            }
            "expiry" => match form.expires.trim() {
                "" => Self::Expiry(None),
                text => {
                    let format = time::macros::format_description!("[year]-[month]-[day]");
                    Self::Expiry(Some(time::Date::parse(text, format).map_err(|_| {
                        bad_field(
                            "expires",
                            "YYYY-MM-DD 형식의 날짜여야 합니다.",
                            "a date as YYYY-MM-DD.",
                            lang,
                        )
                    })?))
                }
            },
            _ => {
                return Err(Refusal(
                    StatusCode::NOT_FOUND,
                    "no such action\n".to_owned(),
                ));
            }
        })
    }

    fn question(&self, lang: Lang, tenant: &str, service: &str) -> String {
        match (self, lang) {
            (Self::Suspend, Lang::Ko) => {
                format!("{tenant}의 {service} 구독을 정지할까요? 그 사용자는 403을 받습니다.")
            }
            (Self::Suspend, Lang::En) => {
                format!("Suspend {tenant}'s subscription to {service}? Its users get 403.")
            }
            (Self::Reinstate, Lang::Ko) => format!("{tenant}의 {service} 구독을 재개할까요?"),
            (Self::Reinstate, Lang::En) => {
                format!("Reinstate {tenant}'s subscription to {service}?")
            }
            (Self::Block { at: None, .. }, Lang::Ko) => {
                format!("{tenant}을(를) {service}에서 지금 차단할까요?")
            }
            (Self::Block { at: None, .. }, Lang::En) => format!("Block {tenant} on {service} now?"),
            (
                Self::Block {
                    at: Some(at),
                    grace_period_hours,
                    ..
                },
                Lang::Ko,
            ) => format!(
                "{tenant}을(를) {service}에서 {} (UTC)에 차단할까요? 유예 {grace_period_hours}시간.",
                rfc3339(*at)
            ),
            (
                Self::Block {
                    at: Some(at),
                    grace_period_hours,
                    ..
                },
                Lang::En,
            ) => format!(
                "Block {tenant} on {service} at {} (UTC), with {grace_period_hours} h of grace?",
                rfc3339(*at)
            ),
            (Self::Unblock, Lang::Ko) => format!("{tenant}의 {service} 차단을 해제할까요?"),
            (Self::Unblock, Lang::En) => format!("Lift {tenant}'s block on {service}?"),
            (Self::Plan(plan), Lang::Ko) => {
                format!("{tenant}의 {service} 요금제를 {plan}(으)로 바꿀까요?")
            }
            (Self::Plan(plan), Lang::En) => {
                format!("Move {tenant}'s subscription to {service} to plan {plan}?")
            }
            (Self::Expiry(None), Lang::Ko) => {
                format!("{tenant}의 {service} 구독을 무기한으로 할까요?")
            }
            (Self::Expiry(None), Lang::En) => {
                format!("Let {tenant}'s subscription to {service} run with no end?")
            }
            (Self::Expiry(Some(date)), Lang::Ko) => {
                format!("{tenant}의 {service} 구독을 {date}(UTC)까지로 할까요?")
            }
            (Self::Expiry(Some(date)), Lang::En) => {
                format!("Make {tenant}'s subscription to {service} valid through {date} (UTC)?")
            }
            (Self::Provision, Lang::Ko) => {
                format!("{service}에 {tenant}을(를) 프로비저닝하는 명령을 보낼까요?")
            }
            (Self::Provision, Lang::En) => {
                format!("Send {service} the command to provision {tenant}?")
            }
            (Self::Deprovision, Lang::Ko) => format!(
                "{service}에서 {tenant}을(를) 제거하는 명령을 보낼까요? 데이터는 보관 처리됩니다."
            ),
            (Self::Deprovision, Lang::En) => {
                format!("Send {service} the command to remove {tenant}? Its data is archived.")
            }
        }
    }

    async fn run(
        self,
        market: &Market,
        service: &str,
        tenant: &str,
    ) -> Result<(), crate::ActionError> {
        use mt_paas_protocol::SubscriptionState as S;
        match self {
            Self::Suspend => market
                .set_state(service, tenant, S::Suspended)
                .await
                .map(drop),
            Self::Reinstate => market.set_state(service, tenant, S::Active).await.map(drop),
            Self::Block {
                message,
                at,
                grace_period_hours,
            } => market
                .block(
                    service,
                    tenant,
                    &crate::BlockRequest {
                        reason: "operator".to_owned(),
                        message,
                        block_at: at,
                        grace_period_hours,
                    },
                )
                .await
                .map(drop),
            Self::Unblock => market.unblock(service, tenant, "operator").await.map(drop),
            Self::Plan(plan) => market.change_plan(service, tenant, &plan).await.map(drop),
            Self::Expiry(date) => {
                let end = date
                    .and_then(|d| d.next_day())
                    .map(|d| d.midnight().assume_utc());
                market.set_expiry(service, tenant, end).await.map(drop)
            }
            Self::Provision => market.provision(service, tenant).await.map(drop),
            // The tenant's data is archived, never dropped, from the console.
            Self::Deprovision => market.deprovision(service, tenant, true).await.map(drop),
        }
    }
}

/// `YYYY-MM-DDTHH:MM` (what `<input type="datetime-local">` sends), taken as UTC.
fn parse_minute(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    time::PrimitiveDateTime::parse(text, format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

/// An action on a subscription: first a confirmation page, then (with `confirm=yes`) the
/// action, and back to the service's page where its command's delivery shows.
async fn subscription_action(
    State(market): State<Market>,
    session: Session,
    Path((service_id, tenant_id, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let lang = Lang::of(&headers);
    if let Some(refused) = session.refusal(&form.csrf, lang) {
        return refused;
    }
    let parsed = match Action::parse(&action, &form, lang) {
        Ok(parsed) => parsed,
        Err(Refusal(status, why)) => return (status, why).into_response(),
    };
    if form.confirm != "yes" {
        let fields: Vec<(String, String)> = [
            ("message", form.message.as_str()),
            ("plan", form.plan.as_str()),
            ("expires", form.expires.as_str()),
            ("block_at", form.block_at.as_str()),
            ("grace_period_hours", form.grace_period_hours.as_str()),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let message = match &parsed {
            Action::Block { message, .. } => message.as_str(),
            _ => "",
        };
        return page(
            StatusCode::OK,
            "confirm.html",
            context! {
                lang => lang.code(),
                t => lang.texts(),
                title => lang.say("확인", "Confirm"),
                operator => session.operator,
                csrf => session.csrf,
                question => parsed.question(lang, &tenant_id, &service_id),
                message,
                warning => Value::from(()),
                fields,
                back => format!("/console/services/{service_id}"),
                action => format!("/console/services/{service_id}/tenants/{tenant_id}/{action}"),
            },
            Vec::new(),
        );
    }
    let done = parsed.run(&market, &service_id, &tenant_id).await;
    match done {
        Ok(()) => {
            tracing::info!(operator = %session.operator, %service_id, %tenant_id, %action, "console action");
            let to = format!("/console/services/{service_id}#tenant-{tenant_id}");
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(&to) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(e) => {
            let status = match &e {
                crate::ActionError::NotFound { .. } => StatusCode::NOT_FOUND,
                crate::ActionError::Invalid { .. } => StatusCode::BAD_REQUEST,
                crate::ActionError::Store(e) => return store_failed(e),
                _ => StatusCode::CONFLICT,
            };
            (status, format!("{e}\n")).into_response()
        }
    }
}

#[derive(Deserialize, Default)]
struct AlertFilter {
    #[serde(default)]
    service: String,
    #[serde(default)]
    tenant: String,
    #[serde(default, rename = "type")]
    alert_type: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    since: String,
    /// `open` (no operator acknowledged them) or anything else for all.
    #[serde(default)]
    state: String,
}

/// Alerts looked through for a filtered list (the newest first).
const ALERTS_SEARCHED: i64 = 1_000;
/// Alerts listed at most.
const ALERTS_LISTED: usize = 200;

/// Whether `details` names `tenant` in any of its values (source, target, tenant...).
fn names_tenant(details: &serde_json::Value, tenant: &str) -> bool {
    match details {
        serde_json::Value::String(s) => s == tenant,
        serde_json::Value::Array(items) => items.iter().any(|v| names_tenant(v, tenant)),
        serde_json::Value::Object(map) => map.values().any(|v| names_tenant(v, tenant)),
        _ => false,
    }
}

/// The audit alerts, filtered by service, tenant (named anywhere in the details), type,
/// severity and a first UTC day.
async fn alerts_page(
    State(market): State<Market>,
    session: Session,
    headers: HeaderMap,
    filter: Result<axum::extract::Query<AlertFilter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let lang = Lang::of(&headers);
    let Ok(axum::extract::Query(filter)) = filter else {
        return (StatusCode::BAD_REQUEST, "the filter does not parse\n").into_response();
    };
    let since = match filter.since.trim() {
        "" => None,
        text => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            match time::Date::parse(text, format) {
                Ok(day) => Some(day.midnight().assume_utc()),
                Err(_) => {
                    return bad_field(
                        "since",
                        "YYYY-MM-DD 형식의 날짜여야 합니다.",
                        "a date as YYYY-MM-DD.",
                        lang,
                    )
                    .into_response();
                }
            }
        }
    };
    let store = market.store();
    let services: Vec<String> = match store.services().await {
        Ok(services) => services.into_iter().map(|s| s.id).collect(),
        Err(e) => return store_failed(&e),
    };
    let service = Some(filter.service.as_str()).filter(|s| !s.is_empty());
    let alerts = match store
        .alerts(service, filter.state == "open", ALERTS_SEARCHED)
        .await
    {
        Ok(alerts) => alerts,
        Err(e) => return store_failed(&e),
    };
    let severity_of = |a: &crate::store::StoredAlert| severity_name(a.alert.severity);
    let tenant = filter.tenant.trim();
    let alert_type = filter.alert_type.trim();
    let shown: Vec<Value> = alerts
        .iter()
        .filter(|a| tenant.is_empty() || names_tenant(&a.alert.details, tenant))
        .filter(|a| alert_type.is_empty() || a.alert.alert_type == alert_type)
        .filter(|a| filter.severity.is_empty() || severity_of(a) == filter.severity)
        .filter(|a| since.is_none_or(|since| a.received_at >= since))
        .take(ALERTS_LISTED)
        .map(|a| {
            context! {
                received_at => rfc3339(a.received_at),
                service_id => &a.alert.service_id,
                alert_type => &a.alert.alert_type,
                severity => severity_of(a),
                details => a.alert.details.to_string(),
                event_id => &a.alert.event_id,
                acknowledged => a.acknowledged_at.map(|at| format!(
                    "{} ({})",
                    rfc3339(at),
                    a.acknowledged_by.as_deref().unwrap_or("")
                )),
            }
        })
        .collect();
    page(
        StatusCode::OK,
        "alerts.html",
        context! {
            lang => lang.code(),
            t => lang.texts(),
            title => lang.say("감사 알림", "Audit alerts"),
            operator => session.operator,
            csrf => session.csrf,
            services,
            severities => ["low", "medium", "high", "critical"],
            filter => context! {
                service => &filter.service,
                tenant => &filter.tenant,
                type => &filter.alert_type,
                severity => &filter.severity,
                since => &filter.since,
                state => &filter.state,
            },
            alerts => shown,
        },
        Vec::new(),
    )
}

/// The plans with their features and limits, and a form to add or change one.
async fn plans_page(
    State(market): State<Market>,
    session: Session,
    headers: HeaderMap,
    query: Result<axum::extract::Query<EditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let lang = Lang::of(&headers);
    let plans = match market.store().plans().await {
        Ok(plans) => plans,
        Err(e) => return store_failed(&e),
    };
    let edit = query.ok().and_then(|q| q.0.edit);
    // The form starts with the plan being edited, if any.
    let editing = plans
        .iter()
        .find(|p| Some(&p.id) == edit.as_ref())
        .map(plan_value)
        .unwrap_or_else(|| Value::from(()));
    let plans: Vec<Value> = plans.iter().map(plan_value).collect();
    page(
        StatusCode::OK,
        "plans.html",
        context! {
            lang => lang.code(),
            t => lang.texts(),
            title => lang.say("요금제", "Plans"),
            operator => session.operator,
            csrf => session.csrf,
            plans,
            editing,
        },
        Vec::new(),
    )
}

fn plan_value(plan: &crate::store::Plan) -> Value {
    let named = |wanted: bool| -> Vec<String> {
        plan.features
            .iter()
            .filter(|(_, on)| **on == wanted)
            .map(|(k, _)| k.clone())
            .collect()
    };
    let (on, off) = (named(true), named(false));
    // What the form's features field shows: on ones, then off ones with `!`.
    let text: Vec<String> = on
        .iter()
        .cloned()
        .chain(off.iter().map(|k| format!("!{k}")))
        .collect();
    context! {
        id => &plan.id,
        name => &plan.name,
        requests_per_minute => plan.requests_per_minute,
        on,
        off,
        features_text => text.join(", "),
    }
}

#[derive(Deserialize)]
struct EditQuery {
    edit: Option<String>,
}

#[derive(Deserialize)]
struct PlanForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    requests_per_minute: String,
    #[serde(default)]
    features: String,
}

/// `ai_tutor, !export` → `{ai_tutor: true, export: false}`.
fn parse_features(
    text: &str,
    lang: Lang,
) -> Result<std::collections::BTreeMap<String, bool>, Refusal> {
    let mut features = std::collections::BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, on) = match item.strip_prefix('!') {
            Some(name) => (name.trim(), false),
            None => (item, true),
        };
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if !ok {
            return Err(bad_field(
                "features",
                "기능 이름은 1-64자의 영문자, 숫자, '_', '-', '.', ':'입니다.",
                "feature names are 1-64 of letters, digits, '_', '-', '.', ':'.",
                lang,
            ));
        }
        features.insert(name.to_owned(), on);
    }
    Ok(features)
}

/// Adds or changes a plan: first a confirmation page, then (with `confirm=yes`) the change,
/// which reaches every subscription on the plan.
async fn put_plan(
    State(market): State<Market>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<PlanForm>,
) -> Response {
    let lang = Lang::of(&headers);
    if let Some(refused) = session.refusal(&form.csrf, lang) {
        return refused;
    }
    let features = match parse_features(&form.features, lang) {
        Ok(features) => features,
        Err(refusal) => return refusal.into_response(),
    };
    let requests_per_minute = match form.requests_per_minute.trim() {
        "" => None,
        text => match text.parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return bad_field(
                    "requests_per_minute",
                    "1 이상의 정수이거나 비어 있어야 합니다(서비스 기본값).",
                    "a whole number of at least 1, or empty (the service's default).",
                    lang,
                )
                .into_response();
            }
        },
    };
    let plan = crate::store::Plan {
        id: form.id.trim().to_owned(),
        name: form.name.trim().to_owned(),
        features,
        requests_per_minute,
    };
    if let Err(e) =
        crate::check_id("id", &plan.id).and_then(|()| crate::check_name("name", &plan.name))
    {
        return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
    }
    if form.confirm != "yes" {
        let existing = match market.store().plan(&plan.id).await {
            Ok(existing) => existing,
            Err(e) => return store_failed(&e),
        };
        let question = match (&existing, lang) {
            (Some(_), Lang::Ko) => format!(
                "요금제 {}을(를) 바꿀까요? 이 요금제의 모든 구독에 적용됩니다.",
                plan.id
            ),
            (Some(_), Lang::En) => format!(
                "Change plan {}? Every subscription on it gets the change.",
                plan.id
            ),
            (None, Lang::Ko) => format!("요금제 {}을(를) 만들까요?", plan.id),
            (None, Lang::En) => format!("Create plan {}?", plan.id),
        };
        let fields: Vec<(String, String)> = [
            ("id", plan.id.clone()),
            ("name", plan.name.clone()),
            (
                "requests_per_minute",
                form.requests_per_minute.trim().to_owned(),
            ),
            ("features", form.features.trim().to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        return page(
            StatusCode::OK,
            "confirm.html",
            context! {
                lang => lang.code(),
                t => lang.texts(),
                title => lang.say("확인", "Confirm"),
                operator => session.operator,
                csrf => session.csrf,
                question,
                message => "",
                warning => Value::from(()),
                fields,
                back => "/console/plans",
                action => "/console/plans",
            },
            Vec::new(),
        );
    }
    match market.put_plan(&plan).await {
        Ok(()) => {
            tracing::info!(operator = %session.operator, plan = %plan.id, "console: plan saved");
            see_other("/console/plans", Vec::new())
        }
        Err(crate::ActionError::Store(e)) => store_failed(&e),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

/// The market's signing keys, with rotate and retire.
async fn keys_page(State(market): State<Market>, session: Session, headers: HeaderMap) -> Response {
    let lang = Lang::of(&headers);
    let keys: Vec<Value> = match market.signing_keys().await {
        Ok(keys) => keys
            .iter()
            .map(|k| {
                context! {
                    kid => &k.kid,
                    created_at => rfc3339(k.created_at),
                    retired_at => k.retired_at.map(rfc3339),
                    current => k.current,
                }
            })
            .collect(),
        Err(crate::ActionError::Store(e)) => return store_failed(&e),
        Err(e) => return (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
    };
    page(
        StatusCode::OK,
        "keys.html",
        context! {
            lang => lang.code(),
            t => lang.texts(),
            title => lang.say("서명 키", "Signing keys"),
            operator => session.operator,
            csrf => session.csrf,
            keys,
        },
        Vec::new(),
    )
}

/// The confirmation page of a key action.
fn confirm_key(
    session: Session,
    lang: Lang,
    question: String,
    warning: Option<&str>,
    action: String,
) -> Response {
    page(
        StatusCode::OK,
        "confirm.html",
        context! {
            lang => lang.code(),
            t => lang.texts(),
            title => lang.say("확인", "Confirm"),
            operator => session.operator,
            csrf => session.csrf,
            question,
            message => "",
            warning,
            fields => Vec::<(String, String)>::new(),
            back => "/console/keys",
            action,
        },
        Vec::new(),
    )
}

async fn rotate_key(
    State(market): State<Market>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let lang = Lang::of(&headers);
    if let Some(refused) = session.refusal(&form.csrf, lang) {
        return refused;
    }
    if form.confirm != "yes" {
        let question = lang.say(
            "새 서명 키를 만들까요? 새 토큰은 새 키로 서명되고, 이전 키는 폐기할 때까지 게시되어 이미 발급된 토큰도 계속 통합니다.",
            "Make a new signing key? New tokens are signed with it; the older keys stay published until retired, so tokens already out keep verifying.",
        );
        return confirm_key(
            session,
            lang,
            question.to_owned(),
            None,
            "/console/keys/rotate".to_owned(),
        );
    }
    match market.rotate_signing_key().await {
        Ok(kid) => {
            tracing::info!(operator = %session.operator, %kid, "console: signing key rotated");
            see_other("/console/keys", Vec::new())
        }
        Err(crate::ActionError::Store(e)) => store_failed(&e),
        Err(e) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
    }
}

async fn retire_key(
    State(market): State<Market>,
    session: Session,
    Path(kid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let lang = Lang::of(&headers);
    if let Some(refused) = session.refusal(&form.csrf, lang) {
        return refused;
    }
    let keys = match market.signing_keys().await {
        Ok(keys) => keys,
        Err(crate::ActionError::Store(e)) => return store_failed(&e),
        Err(e) => return (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
    };
    let Some(key) = keys.iter().find(|k| k.kid == kid && k.retired_at.is_none()) else {
        return (StatusCode::NOT_FOUND, "no such signing key in use\n").into_response();
    };
    if form.confirm != "yes" {
        let question = match lang {
            Lang::Ko => format!(
                "서명 키 {kid}을(를) 폐기할까요? 서비스는 다음 키 목록을 받을 때부터 이 키로 서명된 토큰을 거부합니다."
            ),
            Lang::En => format!(
                "Retire signing key {kid}? Services refuse the tokens it signed from their next fetch of the key set."
            ),
        };
        let warning = key.current.then(|| {
            lang.say(
                "지금 새 토큰에 쓰이는 키입니다. 폐기하면 남은 키 중 가장 새 키가, 없으면 새로 만든 키가 그 일을 맡습니다.",
                "This key signs new tokens now. Once it is retired the newest remaining key does, or a new one if none remains.",
            )
        });
        let action = format!("/console/keys/{kid}/retire");
        return confirm_key(session, lang, question, warning, action);
    }
    match market.retire_signing_key(&kid).await {
        Ok(()) => {
            tracing::info!(operator = %session.operator, %kid, "console: signing key retired");
            see_other("/console/keys", Vec::new())
        }
        Err(crate::ActionError::Store(e)) => store_failed(&e),
        Err(e) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    }
}

#[derive(Deserialize)]
struct AcknowledgeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    service_id: String,
    #[serde(default)]
    event_id: String,
    /// `alerts` to go back to the alerts page, else the overview.
    #[serde(default)]
    back: String,
}

/// Marks an alert as seen: it leaves the overview's open alerts.
async fn acknowledge_alert(
    State(market): State<Market>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<AcknowledgeForm>,
) -> Response {
    let (service_id, event_id) = (&form.service_id, &form.event_id);
    let lang = Lang::of(&headers);
    if let Some(refused) = session.refusal(&form.csrf, lang) {
        return refused;
    }
    match market
        .store()
        .acknowledge_alert(service_id, event_id, &session.operator)
        .await
    {
        Ok(true) => {
            tracing::info!(operator = %session.operator, %service_id, %event_id, "console: alert acknowledged");
        }
        Ok(false) => {
            return (StatusCode::NOT_FOUND, "no such open alert\n").into_response();
        }
        Err(e) => return store_failed(&e),
    }
    let to = if form.back == "alerts" {
        "/console/alerts"
    } else {
        "/console"
    };
    see_other(to, Vec::new())
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// A service's usage summed by UTC day, per tenant and dimension, oldest day first.
async fn daily_usage(
    market: &Market,
    service_id: &str,
) -> Result<
    std::collections::BTreeMap<(String, String), std::collections::BTreeMap<time::Date, i64>>,
    StoreError,
> {
    let mut days: std::collections::BTreeMap<_, std::collections::BTreeMap<time::Date, i64>> =
        std::collections::BTreeMap::new();
    for total in market.store().usage(service_id, None).await? {
        *days
            .entry((total.tenant_id, total.dimension))
            .or_default()
            .entry(total.period_start.date())
            .or_default() += total.quantity;
    }
    Ok(days)
}

/// Bars of a day chart: the last 30 days that have usage.
const CHART_DAYS: usize = 30;

async fn usage_page(
    State(market): State<Market>,
    session: Session,
    Path(service_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::of(&headers);
    let service = match market.store().service(&service_id).await {
        Ok(Some(service)) => service,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such service\n").into_response(),
        Err(e) => return store_failed(&e),
    };
    let days = match daily_usage(&market, &service.id).await {
        Ok(days) => days,
        Err(e) => return store_failed(&e),
    };
    let charts: Vec<Value> = days
        .iter()
        .map(|((tenant_id, dimension), by_day)| {
            let shown: Vec<(&time::Date, &i64)> = by_day.iter().rev().take(CHART_DAYS).collect();
            let max = shown.iter().map(|(_, q)| **q).max().unwrap_or(0).max(1);
            let bars: Vec<Value> = shown
                .iter()
                .rev()
                .enumerate()
                .map(|(n, (day, quantity))| {
                    context! {
                        x => n * 22,
                        height => (**quantity).max(0) * 100 / max,
                        day => day.to_string(),
                        label => format!("{}/{}", u8::from(day.month()), day.day()),
                        quantity => **quantity,
                    }
                })
                .collect();
            context! {
                tenant_id,
                dimension,
                width => (bars.len() * 22).max(22),
                bars,
            }
        })
        .collect();
    page(
        StatusCode::OK,
        "usage.html",
        context! {
            lang => lang.code(),
            t => lang.texts(),
            title => lang.say("사용량", "Usage"),
            operator => session.operator,
            csrf => session.csrf,
            service => context! { id => &service.id, name => &service.name },
            charts,
        },
        Vec::new(),
    )
}

/// A CSV field, quoted when it holds a comma, quote or line break, and never read as a
/// formula by a spreadsheet (a leading `=`, `+`, `-`, `@` gets a `'`).
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// `day,tenant_id,dimension,quantity`, one line per UTC day, tenant and dimension.
async fn usage_csv(
    State(market): State<Market>,
    _signed_in: Session,
    Path(service_id): Path<String>,
) -> Response {
    match market.store().service(&service_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return (StatusCode::NOT_FOUND, "no such service\n").into_response(),
        Err(e) => return store_failed(&e),
    }
    let days = match daily_usage(&market, &service_id).await {
        Ok(days) => days,
        Err(e) => return store_failed(&e),
    };
    let mut csv = String::from("day,tenant_id,dimension,quantity\r\n");
    for ((tenant_id, dimension), by_day) in &days {
        for (day, quantity) in by_day {
            csv.push_str(&format!(
                "{day},{},{},{quantity}\r\n",
                csv_field(tenant_id),
                csv_field(dimension)
            ));
        }
    }
    let file = format!(
        "attachment; filename=\"usage-{}.csv\"",
        csv_field(&service_id).replace('"', "")
    );
    let mut response = csv.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&file) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_renders_in_both_languages() {
        for lang in [Lang::Ko, Lang::En] {
            let login = TEMPLATES
                .get_template("login.html")
                .unwrap()
                .render(context! {
                    lang => lang.code(), t => lang.texts(), title => "x",
                    operator => Value::from(()), csrf => "c", name => "<b>", error => "e",
                })
                .unwrap();
            assert!(login.contains("&lt;b&gt;"), "names are escaped: {login}");
            let overview = TEMPLATES
                .get_template("overview.html")
                .unwrap()
                .render(context! {
                    lang => lang.code(), t => lang.texts(), title => "x",
                    operator => "op", csrf => "c", services => Vec::<Value>::new(),
                    alerts => Vec::<Value>::new(),
                })
                .unwrap();
            assert!(
                overview
                    .contains(lang.say("등록된 서비스가 없습니다.", "No service is registered."))
            );
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("hallym"), "hallym");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }

    #[test]
    fn the_language_follows_the_cookie_then_the_browser() {
        let with = |pairs: &[(&str, &str)]| {
            let mut headers = HeaderMap::new();
            for (k, v) in pairs {
                headers.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            Lang::of(&headers)
        };
        assert_eq!(with(&[]), Lang::Ko);
        assert_eq!(with(&[("accept-language", "en-US,en;q=0.9")]), Lang::En);
        assert_eq!(with(&[("accept-language", "ko-KR,en;q=0.5")]), Lang::Ko);
        assert_eq!(with(&[("accept-language", "fr, en;q=0.5")]), Lang::En);
        assert_eq!(
            with(&[
                ("accept-language", "en"),
                ("cookie", "a=1; mtp_console_lang=ko")
            ]),
            Lang::Ko
        );
    }
}
