//! The operator console over HTTP, as a browser sends it (cookies kept by hand, redirects
//! not followed): sign-in, the session cookie's attributes, CSRF on every form, throttling,
//! sign-out, the overview, and the demo password refused outside dev mode.

use mt_paas_market::{DEV_PASSWORD, Market, MarketConfig, MarketError, OperatorError};
use reqwest::{Client, StatusCode, header, redirect::Policy};

use std::time::Duration;

use crate::helpers::{
    SERVICE, as_tenant, eventually, register_service, stack, start_market, subscribe,
};

const WAIT: Duration = Duration::from_secs(10);

const NAME: &str = "minji";
const PASSWORD: &str = "a long operator password";

fn client() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

/// The value the response sets for cookie `name`, and the whole `Set-Cookie` line.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|line| line.starts_with(&format!("{name}=")))
        .map(|line| {
            let value = line[name.len() + 1..].split(';').next().unwrap().to_owned();
            (value, line.to_owned())
        })
}

/// The hidden CSRF field of a page.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has a CSRF field")
        + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// The sign-in page's CSRF token and the cookie it is bound to.
async fn login_form(url: &str) -> (String, String) {
    let response = client()
        .get(format!("{url}/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (cookie, _) = set_cookie(&response, "mtp_console_login").expect("a login cookie");
    let html = response.text().await.unwrap();
    (csrf_of(&html), cookie)
}

async fn sign_in(
    url: &str,
    name: &str,
    password: &str,
    csrf: &str,
    cookie: &str,
) -> reqwest::Response {
    client()
        .post(format!("{url}/console/login"))
        .header(header::COOKIE, format!("mtp_console_login={cookie}"))
        .form(&[("name", name), ("password", password), ("csrf", csrf)])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_sees_the_overview_and_signs_out() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    register_service(&market.url, None).await;
    assert!(
        mt_paas_market::put_operator(market.market.store(), NAME, PASSWORD)
            .await
            .unwrap()
    );
    let url = &market.url;

    // Signed out: the console sends to the sign-in page, which is Korean by default.
    let response = client().get(format!("{url}/console")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/console/login");
    let response = client()
        .get(format!("{url}/console/login"))
        .send()
        .await
        .unwrap();
    let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let html = response.text().await.unwrap();
    assert!(
        html.contains("<html lang=\"ko\">") && html.contains("로그인"),
        "{html}"
    );
    let english = client()
        .get(format!("{url}/console/login"))
        .header(header::ACCEPT_LANGUAGE, "en-US,en;q=0.9")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(english.contains("Sign in"), "{english}");

    // A form without its cookie's token, or with another, is refused.
    let (csrf, cookie) = login_form(url).await;
    let forged = sign_in(url, NAME, PASSWORD, "forged-token-000000000", &cookie).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.text().await.unwrap().contains("CSRF"));
    let no_cookie = client()
        .post(format!("{url}/console/login"))
        .form(&[
            ("name", NAME),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(no_cookie.status(), StatusCode::FORBIDDEN);

    // A wrong password is a 401 page with the name kept and the same form token.
    let wrong = sign_in(url, NAME, "not the password", &csrf, &cookie).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let html = wrong.text().await.unwrap();
    assert!(
        html.contains("이름 또는 비밀번호가 틀렸습니다.") && html.contains("value=\"minji\""),
        "{html}"
    );
    assert_eq!(csrf_of(&html), csrf);

    // Signed in: a session cookie the page's scripts cannot read and other sites cannot send.
    let signed = sign_in(url, NAME, PASSWORD, &csrf, &cookie).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed.headers()[header::LOCATION], "/console");
    let (session, line) = set_cookie(&signed, "mtp_console").expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(line.contains(attribute), "{line}");
    }
    assert!(!line.contains("Secure"), "http market: no Secure: {line}");
    let (_, cleared) =
        set_cookie(&signed, "mtp_console_login").expect("the login cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    let with_session = |path: &str| {
        client()
            .get(format!("{url}{path}"))
            .header(header::COOKIE, format!("mtp_console={session}"))
    };
    let overview = with_session("/console").send().await.unwrap();
    assert_eq!(overview.status(), 200);
    let html = overview.text().await.unwrap();
    assert!(
        html.contains("e2e_service") && html.contains("아직 하트비트가 없습니다."),
        "{html}"
    );
    assert!(html.contains(NAME), "the operator is named: {html}");
    let page_csrf = csrf_of(&html);
    assert_ne!(page_csrf, csrf, "the session has a token of its own");
    // A made-up session is no session.
    let made_up = client()
        .get(format!("{url}/console"))
        .header(header::COOKIE, "mtp_console=made-up-session-token")
        .send()
        .await
        .unwrap();
    assert_eq!(made_up.status(), StatusCode::SEE_OTHER);

    // Sign-out needs the session's token; then the session is over.
    let logout = |token: String| {
        client()
            .post(format!("{url}/console/logout"))
            .header(header::COOKIE, format!("mtp_console={session}"))
            .form(&[("csrf", token)])
            .send()
    };
    assert_eq!(
        logout(csrf.clone()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(with_session("/console").send().await.unwrap().status(), 200);
    let out = logout(page_csrf).await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(out.headers()[header::LOCATION], "/console/login");
    assert!(
        set_cookie(&out, "mtp_console")
            .unwrap()
            .1
            .contains("Max-Age=0")
    );
    let after = with_session("/console").send().await.unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    market.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_throttled_and_a_new_password_ends_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    mt_paas_market::put_operator(market.market.store(), NAME, PASSWORD)
        .await
        .unwrap();
    let url = &market.url;
    let (csrf, cookie) = login_form(url).await;
    let signed = sign_in(url, NAME, PASSWORD, &csrf, &cookie).await;
    let (session, _) = set_cookie(&signed, "mtp_console").unwrap();
    for _ in 0..5 {
        let wrong = sign_in(url, NAME, "not the password", &csrf, &cookie).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    // The sixth attempt is refused before the password is looked at, right or not.
    let throttled = sign_in(url, NAME, PASSWORD, &csrf, &cookie).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.text().await.unwrap().contains("15분"));

    // Setting the password again ends the operator's sessions.
    let overview = || {
        client()
            .get(format!("{url}/console"))
            .header(header::COOKIE, format!("mtp_console={session}"))
            .send()
    };
    assert_eq!(overview().await.unwrap().status(), 200);
    let new = mt_paas_market::put_operator(market.market.store(), NAME, "another long password")
        .await
        .unwrap();
    assert!(!new, "the operator existed");
    assert_eq!(overview().await.unwrap().status(), StatusCode::SEE_OTHER);

    // Names and passwords that are refused, each naming its field.
    let store = market.market.store();
    let short = mt_paas_market::put_operator(store, "ok", "short")
        .await
        .unwrap_err();
    assert!(matches!(short, OperatorError::Password), "{short}");
    assert!(short.to_string().starts_with("password:"));
    let bad = mt_paas_market::put_operator(store, "Minji Kim", PASSWORD)
        .await
        .unwrap_err();
    assert!(bad.to_string().starts_with("name:"), "{bad}");
    market.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_dev_mode_the_demo_operator_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/m.db", dir.path().display());
    let mut config = MarketConfig::with_database(&url).unwrap();
    config.seed_dev_data = false;
    let market = Market::start(config.clone()).await.unwrap();
    mt_paas_market::put_operator(market.store(), "ops", DEV_PASSWORD)
        .await
        .unwrap();
    market.store().close().await;
    config.dev_mode = false;
    let refused = Market::start(config).await.unwrap_err();
    assert!(
        matches!(&refused, MarketError::PublicOperatorPassword(name) if name == "ops"),
        "{refused}"
    );
}

/// The page at `path` as the operator of `session` sees it.
async fn page_text(url: &str, session: &str, path: &str) -> String {
    client()
        .get(format!("{url}{path}"))
        .header(header::COOKIE, format!("mtp_console={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A signed-in session's cookie and its CSRF token.
async fn signed_in(url: &str) -> (String, String) {
    let (csrf, cookie) = login_form(url).await;
    let signed = sign_in(url, NAME, PASSWORD, &csrf, &cookie).await;
    let (session, _) = set_cookie(&signed, "mtp_console").expect("signed in");
    let html = page_text(url, &session, "/console").await;
    (session, csrf_of(&html))
}

/// Submits an action form of the service page with `fields`, then its confirmation, as the
/// operator would click them; returns the confirmation page's text.
async fn act_with(
    url: &str,
    session: &str,
    csrf: &str,
    tenant: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> String {
    let path = format!("{url}/console/services/{SERVICE}/tenants/{tenant}/{action}");
    let mut form: Vec<(String, String)> = vec![("csrf".to_owned(), csrf.to_owned())];
    form.extend(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let confirm = client()
        .post(&path)
        .header(header::COOKIE, format!("mtp_console={session}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200, "a confirmation comes first");
    let question = confirm.text().await.unwrap();
    form.push(("confirm".to_owned(), "yes".to_owned()));
    let done = client()
        .post(&path)
        .header(header::COOKIE, format!("mtp_console={session}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "{action} {tenant}");
    question
}

async fn act(
    url: &str,
    session: &str,
    csrf: &str,
    tenant: &str,
    action: &str,
    message: &str,
) -> String {
    act_with(url, session, csrf, tenant, action, &[("message", message)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_and_blocking_from_the_console_reach_the_service() {
    let stack = stack().await;
    let url = stack.service.url.clone();
    let market = &stack.market.url;
    mt_paas_market::put_operator(stack.market.market.store(), NAME, PASSWORD)
        .await
        .unwrap();
    subscribe(market, "korea", "basic", true).await;
    subscribe(market, "snu", "basic", true).await;
    for tenant in ["korea", "snu"] {
        assert!(
            eventually(WAIT, || async {
                as_tenant(&url, tenant, "/whoami").await.0 == 200
            })
            .await
        );
    }
    let (session, csrf) = signed_in(market).await;

    // The service page lists both tenants with their actions.
    let page = page_text(market, &session, &format!("/console/services/{SERVICE}")).await;
    assert!(
        page.contains("id=\"tenant-korea\"") && page.contains("id=\"tenant-snu\""),
        "{page}"
    );
    assert!(page.contains("/tenants/korea/suspend"), "{page}");

    // A forged form changes nothing.
    let forged = client()
        .post(format!(
            "{market}/console/services/{SERVICE}/tenants/korea/suspend"
        ))
        .header(header::COOKIE, format!("mtp_console={session}"))
        .form(&[("csrf", "forged"), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(as_tenant(&url, "korea", "/whoami").await.0, 200);

    let question = act(market, &session, &csrf, "korea", "suspend", "").await;
    assert!(
        question.contains("korea") && question.contains("403"),
        "{question}"
    );
    assert!(
        eventually(WAIT, || async {
            let (status, body, _) = as_tenant(&url, "korea", "/whoami").await;
            status == 403 && body["code"] == "subscription_suspended"
        })
        .await,
        "the suspension reached the service"
    );
    act(market, &session, &csrf, "korea", "reinstate", "").await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "korea", "/whoami").await.0 == 200
        })
        .await
    );
    // An action the state does not allow is a 409 that says why.
    let again = client()
        .post(format!(
            "{market}/console/services/{SERVICE}/tenants/korea/reinstate"
        ))
        .header(header::COOKIE, format!("mtp_console={session}"))
        .form(&[("csrf", csrf.as_str()), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(again.text().await.unwrap().contains("active"));

    let message = "점검 중입니다. 곧 돌아옵니다.";
    act(market, &session, &csrf, "snu", "block", message).await;
    assert!(
        eventually(WAIT, || async {
            let (status, body, _) = as_tenant(&url, "snu", "/whoami").await;
            status == 403 && body["code"] == "tenant_blocked" && body["detail"] == message
        })
        .await,
        "the block reached the service with the operator's message"
    );
    // The page shows the block and its command's delivery.
    let applied = eventually(WAIT, || async {
        let page = page_text(market, &session, &format!("/console/services/{SERVICE}")).await;
        page.contains(message) && page.contains("<td>block</td><td>적용됨</td>")
    })
    .await;
    assert!(applied, "the block's delivery is shown as applied");
    act(market, &session, &csrf, "snu", "unblock", "").await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "snu", "/whoami").await.0 == 200
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_expiry_and_a_scheduled_block_from_the_console() {
    let stack = stack().await;
    let url = stack.service.url.clone();
    let market = &stack.market.url;
    mt_paas_market::put_operator(stack.market.market.store(), NAME, PASSWORD)
        .await
        .unwrap();
    subscribe(market, "korea", "basic", true).await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "korea", "/whoami").await.0 == 200
        })
        .await
    );
    let (session, csrf) = signed_in(market).await;
    let post = |action: &'static str, fields: Vec<(&'static str, &'static str)>| {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        client()
            .post(format!(
                "{market}/console/services/{SERVICE}/tenants/korea/{action}"
            ))
            .header(header::COOKIE, format!("mtp_console={session}"))
            .form(&form)
            .send()
    };

    // Fields that do not parse are a 400 naming the field, before any confirmation.
    for (action, fields, field) in [
        ("expiry", vec![("expires", "31/12/2099")], "expires:"),
        (
            "block",
            vec![("message", "점검"), ("block_at", "tomorrow")],
            "block_at:",
        ),
        (
            "block",
            vec![("message", "점검"), ("grace_period_hours", "-1")],
            "grace_period_hours:",
        ),
        ("block", vec![("message", "  ")], "message:"),
    ] {
        let refused = post(action, fields).await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert!(refused.text().await.unwrap().starts_with(field));
    }
    // An unknown plan is refused by the market, and says so.
    let unknown = post("plan", vec![("plan", "platinum"), ("confirm", "yes")])
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let question = act_with(
        market,
        &session,
        &csrf,
        "korea",
        "plan",
        &[("plan", "premium")],
    )
    .await;
    assert!(question.contains("premium"), "{question}");
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "korea", "/whoami").await.1["plan"] == "premium"
        })
        .await,
        "the plan change reached the service"
    );
    act_with(
        market,
        &session,
        &csrf,
        "korea",
        "expiry",
        &[("expires", "2099-12-31")],
    )
    .await;
    let (_, view) = crate::helpers::operator(
        market,
        reqwest::Method::GET,
        &format!("/services/{SERVICE}/tenants/korea"),
        None,
    )
    .await;
    assert_eq!(
        view["subscription"]["expires_at"], "2100-01-01T00:00:00Z",
        "{view}"
    );
    let page = page_text(market, &session, &format!("/console/services/{SERVICE}")).await;
    assert!(
        page.contains("value=\"2099-12-31\""),
        "the form shows the last valid day: {page}"
    );

    // A block a day ahead with grace: the service keeps serving, with the notice.
    let at = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]"
        ))
        .unwrap();
    let question = act_with(
        market,
        &session,
        &csrf,
        "korea",
        "block",
        &[
            ("message", "내일 점검합니다."),
            ("block_at", &at),
            ("grace_period_hours", "2"),
        ],
    )
    .await;
    assert!(
        question.contains("(UTC)") && question.contains("2"),
        "{question}"
    );
    let (_, view) = crate::helpers::operator(
        market,
        reqwest::Method::GET,
        &format!("/services/{SERVICE}/tenants/korea"),
        None,
    )
    .await;
    assert_eq!(
        view["subscription"]["block"]["grace_period_hours"], 2,
        "{view}"
    );
    assert_eq!(view["subscription"]["block"]["message"], "내일 점검합니다.");
    assert_eq!(
        as_tenant(&url, "korea", "/whoami").await.0,
        200,
        "not due yet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_by_day_as_a_chart_and_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    register_service(&market.url, None).await;
    mt_paas_market::put_operator(market.market.store(), NAME, PASSWORD)
        .await
        .unwrap();
    let day = |d: u8, h: u8| {
        time::PrimitiveDateTime::new(
            time::Date::from_calendar_date(2026, time::Month::November, d).unwrap(),
            time::Time::from_hms(h, 0, 0).unwrap(),
        )
        .assume_utc()
    };
    let record = |tenant: &str, d: u8, h: u8, quantity: u64| mt_paas_protocol::UsageRecord {
        tenant_id: tenant.to_owned(),
        dimension: "requests".to_owned(),
        period_start: day(d, h),
        period_seconds: 3600,
        quantity,
    };
    market
        .market
        .store()
        .record_usage(
            SERVICE,
            "replica-1",
            &[
                record("hallym", 30, 9, 10),
                record("hallym", 30, 10, 5),
                record("korea", 30, 9, 2),
            ],
        )
        .await
        .unwrap();
    market
        .market
        .store()
        .record_usage(SERVICE, "replica-2", &[record("hallym", 30, 9, 1)])
        .await
        .unwrap();
    let url = &market.url;
    let (session, _) = signed_in(url).await;
    let get = |path: String| {
        client()
            .get(format!("{url}{path}"))
            .header(header::COOKIE, format!("mtp_console={session}"))
            .send()
    };
    let page = get(format!("/console/services/{SERVICE}/usage"))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("hallym · requests") && html.contains("korea · requests"),
        "{html}"
    );
    assert!(
        html.contains("<title>2026-11-30: 16</title>"),
        "replicas and hours summed by day: {html}"
    );
    let csv = get(format!("/console/services/{SERVICE}/usage.csv"))
        .await
        .unwrap();
    assert_eq!(
        csv.headers()[header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    assert!(
        csv.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("usage-e2e_service.csv")
    );
    assert_eq!(
        csv.text().await.unwrap(),
        "day,tenant_id,dimension,quantity\r\n2026-11-30,hallym,requests,16\r\n2026-11-30,korea,requests,2\r\n"
    );
    // Signed out, neither is served.
    let anonymous = client()
        .get(format!("{url}/console/services/{SERVICE}/usage.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    market.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_alerts_filtered_by_service_tenant_type_and_severity() {
    use mt_paas_protocol::{AuditAlert, Severity};
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    register_service(&market.url, None).await;
    mt_paas_market::put_operator(market.market.store(), NAME, PASSWORD)
        .await
        .unwrap();
    let alert = |n: u32, kind: &str, severity, source: &str| AuditAlert {
        service_id: SERVICE.to_owned(),
        alert_type: kind.to_owned(),
        severity,
        details: serde_json::json!({"source_tenant": source, "target_tenant": "snu", "note": "<script>"}),
        timestamp: time::OffsetDateTime::now_utc(),
        event_id: format!("evt-{n}"),
    };
    let store = market.market.store();
    store
        .record_alert(&alert(
            1,
            "cross_tenant_access_attempt",
            Severity::Critical,
            "hallym",
        ))
        .await
        .unwrap();
    store
        .record_alert(&alert(2, "rate_limit_exceeded", Severity::Low, "korea"))
        .await
        .unwrap();
    store
        .record_alert(&alert(
            3,
            "cross_tenant_access_attempt",
            Severity::High,
            "korea",
        ))
        .await
        .unwrap();
    let url = &market.url;
    let (session, _) = signed_in(url).await;
    let listed = |query: &'static str| {
        let session = session.clone();
        async move {
            let html = page_text(url, &session, &format!("/console/alerts{query}")).await;
            let rows = html.matches("<td><code>").count();
            (rows, html)
        }
    };
    assert_eq!(listed("").await.0, 3);
    assert_eq!(
        listed("?tenant=korea").await.0,
        2,
        "a tenant named anywhere in the details"
    );
    assert_eq!(listed("?tenant=snu").await.0, 3);
    assert_eq!(listed("?type=cross_tenant_access_attempt").await.0, 2);
    assert_eq!(
        listed("?type=cross_tenant_access_attempt&severity=critical")
            .await
            .0,
        1
    );
    assert_eq!(listed("?service=another_service").await.0, 0);
    assert_eq!(listed("?since=2999-01-01").await.0, 0);
    let (_, html) = listed("?severity=low").await;
    assert!(
        html.contains("rate_limit_exceeded") && !html.contains("<script>"),
        "details are escaped: {html}"
    );
    let bad = client()
        .get(format!("{url}/console/alerts?since=yesterday"))
        .header(header::COOKIE, format!("mtp_console={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().starts_with("since:"));

    // Marking an alert seen takes it off the overview's open alerts, and names who did.
    let (session, csrf) = signed_in(url).await;
    let overview = page_text(url, &session, "/console").await;
    assert_eq!(overview.matches("value=\"evt-").count(), 3, "{overview}");
    let ack = |event: &'static str, csrf: String| {
        let session = session.clone();
        async move {
            client()
                .post(format!("{url}/console/alerts/acknowledge"))
                .header(header::COOKIE, format!("mtp_console={session}"))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("service_id", SERVICE),
                    ("event_id", event),
                    ("back", "alerts"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        ack("evt-1", "forged".to_owned()).await.status(),
        StatusCode::FORBIDDEN
    );
    let done = ack("evt-1", csrf.clone()).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()[header::LOCATION], "/console/alerts");
    assert_eq!(
        ack("evt-1", csrf.clone()).await.status(),
        StatusCode::NOT_FOUND,
        "an alert is acknowledged once"
    );
    let overview = page_text(url, &session, "/console").await;
    assert!(
        !overview.contains("value=\"evt-1\"") && overview.contains("value=\"evt-3\""),
        "{overview}"
    );
    let (rows, html) = listed("").await;
    assert_eq!(rows, 3, "the alerts page still lists it");
    assert!(html.contains(&format!("({NAME})")), "{html}");
    assert_eq!(listed("?state=open").await.0, 2);
    market.running.stop().await;
}

/// Sends a heartbeat of `instance` with these window counters; returns the response.
async fn heartbeat(
    market: &str,
    instance: &str,
    seq: u64,
    (requests, errors, latency_sum_ms): (u64, u64, f64),
) -> serde_json::Value {
    let body = serde_json::json!({
        "service_id": SERVICE,
        "status": "healthy",
        "active_tenants": ["hallym"],
        "metrics": {"requests_per_minute": requests * 2, "error_rate": 0.0, "avg_response_time_ms": 0.0},
        "timestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
        "instance_id": instance,
        "seq": seq,
        "window": {"window_seconds": 30, "requests": requests, "status_4xx": 0, "status_5xx": errors,
                   "latency_sum_ms": latency_sum_ms, "latency_buckets": []},
    });
    let response = reqwest::Client::new()
        .post(format!("{market}/api/v1/services/{SERVICE}/heartbeat"))
        .bearer_auth(crate::helpers::API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_charts_heartbeats_and_a_command_shows_its_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    // Pushes to this service fail at once (nothing listens on port 9).
    register_service(&market.url, Some("http://127.0.0.1:9".to_owned())).await;
    subscribe(&market.url, "hallym", "basic", false).await;
    mt_paas_market::put_operator(market.market.store(), NAME, PASSWORD)
        .await
        .unwrap();
    let url = &market.url;
    let (session, csrf) = signed_in(url).await;
    let page = page_text(url, &session, "/console").await;
    assert!(page.contains("아직 하트비트가 없습니다."), "{page}");

    // Two replicas: 1,000 requests, 100 of them 5xx, 50 ms on average, summed.
    heartbeat(url, "replica-1", 1, (600, 60, 30_000.0)).await;
    heartbeat(url, "replica-2", 1, (400, 40, 20_000.0)).await;
    let page = page_text(url, &session, "/console").await;
    assert!(
        page.contains("replica-1") && page.contains("replica-2"),
        "{page}"
    );
    assert!(
        page.contains(" UTC: 10 %</title>") && page.contains(" UTC: 50 ms</title>"),
        "error rate and latency over both replicas: {page}"
    );
    assert!(page.contains("최근 6시간"), "{page}");
    // A replayed heartbeat (same sequence number) is not counted twice.
    heartbeat(url, "replica-1", 1, (600, 600, 0.0)).await;
    let page = page_text(url, &session, "/console").await;
    assert!(page.contains(" UTC: 10 %</title>"), "{page}");

    // A block whose push fails shows the next try; pulled with a heartbeat, it is delivered.
    act(url, &session, &csrf, "hallym", "block", "점검").await;
    let service_page = format!("/console/services/{SERVICE}");
    let retrying = eventually(WAIT, || async {
        let page = page_text(url, &session, &service_page).await;
        page.contains("<td>block</td><td>전달 실패, 다음 시도 <time datetime=\"")
    })
    .await;
    assert!(
        retrying,
        "{}",
        page_text(url, &session, &service_page).await
    );
    let pulled = heartbeat(url, "replica-1", 2, (0, 0, 0.0)).await;
    assert_eq!(pulled["commands"][0]["kind"], "block", "{pulled}");
    let page = page_text(url, &session, &service_page).await;
    assert!(
        page.contains("<td>block</td><td>전달됨(응답 대기)</td>"),
        "{page}"
    );
    let english = client()
        .get(format!("{url}{service_page}"))
        .header(
            header::COOKIE,
            format!("mtp_console={session}; mtp_console_lang=en"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(english.contains("delivered (awaiting answer)"), "{english}");
    market.running.stop().await;
}

/// Posts a console form with the session's cookie.
async fn post_form(
    url: &str,
    session: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client()
        .post(format!("{url}{path}"))
        .header(header::COOKIE, format!("mtp_console={session}"))
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_and_signing_keys_from_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    register_service(&market.url, None).await;
    subscribe(&market.url, "hallym", "basic", false).await;
    let store = market.market.store();
    mt_paas_market::put_operator(store, NAME, PASSWORD)
        .await
        .unwrap();
    let url = &market.url;
    let (session, csrf) = signed_in(url).await;

    let page = page_text(url, &session, "/console/plans").await;
    assert!(
        page.contains("id=\"plan-basic\"")
            && page.contains("✓ ai_chat")
            && page.contains("<s>quiz</s>"),
        "{page}"
    );
    let edit = page_text(url, &session, "/console/plans?edit=basic").await;
    assert!(
        edit.contains("value=\"ai_chat, !quiz\""),
        "the form starts with the plan: {edit}"
    );

    // Bad fields are a 400 naming the field; a forged form a 403; none changes the plan.
    for (form, field) in [
        (
            vec![("id", "basic"), ("name", "Basic"), ("features", "ai chat")],
            "features",
        ),
        (
            vec![
                ("id", "basic"),
                ("name", "Basic"),
                ("requests_per_minute", "0"),
            ],
            "requests_per_minute",
        ),
        (vec![("id", "Basic Plan"), ("name", "Basic")], "id"),
        (vec![("id", "basic"), ("name", " ")], "name"),
    ] {
        let mut form = form.clone();
        form.push(("csrf", csrf.as_str()));
        form.push(("confirm", "yes"));
        let refused = post_form(url, &session, "/console/plans", &form).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{form:?}");
        assert!(refused.text().await.unwrap().starts_with(field), "{form:?}");
    }
    let forged = post_form(
        url,
        &session,
        "/console/plans",
        &[
            ("id", "basic"),
            ("name", "B"),
            ("csrf", "forged"),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // A change asks first, then reaches the plan and gives its subscriptions a new revision.
    let before = store
        .subscription(SERVICE, "hallym")
        .await
        .unwrap()
        .unwrap()
        .revision;
    let fields = [
        ("id", "basic"),
        ("name", "Basic"),
        ("requests_per_minute", "120"),
        ("features", "ai_chat, quiz"),
        ("csrf", csrf.as_str()),
    ];
    let confirm = post_form(url, &session, "/console/plans", &fields).await;
    assert_eq!(confirm.status(), 200);
    let question = confirm.text().await.unwrap();
    assert!(
        question.contains("basic") && question.contains("모든 구독"),
        "{question}"
    );
    assert!(!store.plan("basic").await.unwrap().unwrap().features["quiz"]);
    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let done = post_form(url, &session, "/console/plans", &confirmed).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let plan = store.plan("basic").await.unwrap().unwrap();
    assert!(plan.features["quiz"] && plan.features["ai_chat"]);
    assert_eq!(plan.requests_per_minute, Some(120));
    let after = store
        .subscription(SERVICE, "hallym")
        .await
        .unwrap()
        .unwrap()
        .revision;
    assert!(
        after > before,
        "the subscription was re-announced ({before} → {after})"
    );

    // Signing keys: none until the first is made; rotate twice, retire the older.
    let page = page_text(url, &session, "/console/keys").await;
    assert!(page.contains("아직 서명 키가 없습니다"), "{page}");
    for _ in 0..2 {
        let ask = post_form(url, &session, "/console/keys/rotate", &[("csrf", &csrf)]).await;
        assert_eq!(ask.status(), 200);
        let done = post_form(
            url,
            &session,
            "/console/keys/rotate",
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
        assert_eq!(done.status(), StatusCode::SEE_OTHER);
    }
    let keys = market.market.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys[1].current && !keys[0].current);
    let page = page_text(url, &session, "/console/keys").await;
    assert!(
        page.contains(&keys[0].kid) && page.contains("현재 서명 키"),
        "{page}"
    );
    let older = format!("/console/keys/{}/retire", keys[0].kid);
    let forged = post_form(
        url,
        &session,
        &older,
        &[("csrf", "forged"), ("confirm", "yes")],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let ask = post_form(url, &session, &older, &[("csrf", &csrf)]).await;
    let question = ask.text().await.unwrap();
    assert!(question.contains(&keys[0].kid), "{question}");
    let newer = format!("/console/keys/{}/retire", keys[1].kid);
    let warned = post_form(url, &session, &newer, &[("csrf", &csrf)])
        .await
        .text()
        .await
        .unwrap();
    assert!(
        warned.contains("지금 새 토큰에 쓰이는 키"),
        "retiring the current key warns: {warned}"
    );
    let done = post_form(
        url,
        &session,
        &older,
        &[("csrf", &csrf), ("confirm", "yes")],
    )
    .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let jwks = market.market.jwks().await.unwrap();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].kid, keys[1].kid);
    let again = post_form(
        url,
        &session,
        &older,
        &[("csrf", &csrf), ("confirm", "yes")],
    )
    .await;
    assert_eq!(
        again.status(),
        StatusCode::NOT_FOUND,
        "a retired key cannot be retired again"
    );
    market.running.stop().await;
}
