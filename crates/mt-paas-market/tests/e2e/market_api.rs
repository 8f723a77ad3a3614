//! The market API answers bad input with 4xx problem+json, stores telemetry idempotently, and
//! runs the SSO flow with PKCE.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::helpers::{API_KEY, OPERATOR, SERVICE, register_service, start_market, subscribe};

async fn call(
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new().request(method.clone(), url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let is_problem = headers.get("content-type").is_some_and(|v| {
        v.to_str()
            .unwrap_or_default()
            .starts_with("application/problem+json")
    });
    let body = response.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert!(is_problem, "{status} without problem+json: {body}");
        assert!(status < 500, "a server error for bad input: {body}");
    }
    assert_documented(method.as_str(), url, status);
    (status, body, headers)
}

/// Every answer of a protocol endpoint is one the OpenAPI document lists for it.
pub(crate) fn assert_documented(method: &str, url: &str, status: u16) {
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or("", |(_, path)| path);
    let path = format!("/{}", path.split('?').next().unwrap_or_default());
    let protocol = path.starts_with("/api/v1/") && !path.starts_with("/api/v1/admin");
    if protocol {
        assert!(
            mt_paas_protocol::openapi::documents(method, &path, status),
            "docs/openapi.json does not list {status} for {method} {path}"
        );
    }
}

#[tokio::test]
async fn bad_input_gets_4xx_problems() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    register_service(&market.url, None).await;
    subscribe(&market.url, "hallym", "basic", false).await;
    let api = format!("{}/api/v1", market.url);
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    let heartbeat = format!("{api}/services/{SERVICE}/heartbeat");
    assert_eq!(
        call(
            post.clone(),
            &heartbeat,
            Some(API_KEY),
            Some(b"{nope".to_vec()),
            &[]
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            post.clone(),
            &heartbeat,
            Some(API_KEY),
            Some(b"{}".to_vec()),
            &[]
        )
        .await
        .0,
        422
    );
    assert_eq!(
        call(post.clone(), &heartbeat, None, Some(b"{}".to_vec()), &[])
            .await
            .0,
        401
    );
    assert_eq!(
        call(
            post.clone(),
            &heartbeat,
            Some("wrong-key-value"),
            Some(b"{}".to_vec()),
            &[]
        )
        .await
        .0,
        401
    );
    let unknown = format!("{api}/services/nobody/heartbeat");
    assert_eq!(
        call(
            post.clone(),
            &unknown,
            Some(API_KEY),
            Some(b"{}".to_vec()),
            &[]
        )
        .await
        .0,
        401
    );
    let huge = vec![b'x'; 10 * 1024 * 1024];
    assert_eq!(
        call(post.clone(), &heartbeat, Some(API_KEY), Some(huge), &[])
            .await
            .0,
        413
    );

    let entitlement =
        |tenant: &str| format!("{api}/services/{SERVICE}/tenants/{tenant}/entitlement");
    assert_eq!(
        call(
            get.clone(),
            &entitlement("nobody"),
            Some(API_KEY),
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            get.clone(),
            &entitlement("BAD%20ID"),
            Some(API_KEY),
            None,
            &[]
        )
        .await
        .0,
        400
    );
    let ack = format!("{api}/commands/cmd_nothing/ack");
    let body = serde_json::to_vec(&json!({"status": "applied"})).unwrap();
    assert_eq!(
        call(post.clone(), &ack, Some(API_KEY), Some(body), &[])
            .await
            .0,
        404
    );
    let bulk = format!("{api}/services/{SERVICE}/entitlements?since_revision=banana");
    assert_eq!(
        call(get.clone(), &bulk, Some(API_KEY), None, &[]).await.0,
        400
    );

    let admin = format!("{api}/admin");
    assert_eq!(
        call(get.clone(), &format!("{admin}/plans"), None, None, &[])
            .await
            .0,
        401
    );
    assert_eq!(
        call(
            get.clone(),
            &format!("{admin}/plans"),
            Some(API_KEY),
            None,
            &[]
        )
        .await
        .0,
        401
    );
    let missing = format!("{admin}/services/{SERVICE}/tenants/nobody/suspend");
    assert_eq!(
        call(post.clone(), &missing, Some(OPERATOR), None, &[])
            .await
            .0,
        404
    );
    let bad_plan = serde_json::to_vec(&json!({"id": "Bad Plan", "name": "x"})).unwrap();
    let (status, body, _) = call(
        post.clone(),
        &format!("{admin}/plans"),
        Some(OPERATOR),
        Some(bad_plan),
        &[],
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "id");
    let unknown_field =
        serde_json::to_vec(&json!({"id": "p1", "name": "x", "colour": "red"})).unwrap();
    assert_eq!(
        call(
            post.clone(),
            &format!("{admin}/plans"),
            Some(OPERATOR),
            Some(unknown_field),
            &[]
        )
        .await
        .0,
        422
    );
    let suspend = format!("{admin}/services/{SERVICE}/tenants/hallym/reinstate");
    assert_eq!(
        call(post.clone(), &suspend, Some(OPERATOR), None, &[])
            .await
            .0,
        409,
        "reinstating an active subscription"
    );
    market.running.stop().await;
}

#[tokio::test]
async fn entitlements_heartbeats_usage_and_alerts_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    entitlements_heartbeats_usage_and_alerts(&format!("sqlite://{}/m.db", dir.path().display()))
        .await;
}

#[tokio::test]
async fn entitlements_heartbeats_usage_and_alerts_on_postgres() {
    let admin = std::env::var("MT_PAAS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    if let Err(e) = sqlx::PgPool::connect(&admin).await {
        panic!(
            "Postgres at {admin} is not reachable ({e}): the suites need it (`bash .ci/test` starts it)"
        );
    }
    let name = format!("mtp_test_market_{}", std::process::id());
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    entitlements_heartbeats_usage_and_alerts(&url).await;
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&pool)
    .await
    .unwrap();
}

async fn entitlements_heartbeats_usage_and_alerts(db_url: &str) {
    let market = start_market(db_url, None).await;
    register_service(&market.url, None).await;
    subscribe(&market.url, "hallym", "premium", false).await;
    subscribe(&market.url, "korea", "basic", true).await;
    let api = format!("{}/api/v1", market.url);
    let (post, get) = (reqwest::Method::POST, reqwest::Method::GET);

    // ETag: an unchanged entitlement costs a 304.
    let url = format!("{api}/services/{SERVICE}/tenants/hallym/entitlement");
    let (status, body, headers) = call(get.clone(), &url, Some(API_KEY), None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["features"]["quiz"], true);
    assert_eq!(body["limits"]["requests_per_minute"], 600);
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        call(
            get.clone(),
            &url,
            Some(API_KEY),
            None,
            &[("if-none-match", &etag)]
        )
        .await
        .0,
        304
    );
    let (_, page, _) = call(
        get.clone(),
        &format!("{api}/services/{SERVICE}/entitlements?since_revision=0"),
        Some(API_KEY),
        None,
        &[],
    )
    .await;
    assert_eq!(page["entitlements"].as_array().unwrap().len(), 2);
    let since = page["revision"].as_i64().unwrap();
    let (_, page, _) = call(
        get.clone(),
        &format!("{api}/services/{SERVICE}/entitlements?since_revision={since}"),
        Some(API_KEY),
        None,
        &[],
    )
    .await;
    assert_eq!(page["entitlements"], json!([]), "nothing changed since");

    // Heartbeats: the response carries commands waiting for a service the market cannot reach.
    let beat = |seq: u64| {
        serde_json::to_vec(&json!({
            "service_id": SERVICE, "status": "healthy", "active_tenants": ["hallym"],
            "metrics": {"requests_per_minute": 150, "error_rate": 0.01, "avg_response_time_ms": 250},
            "timestamp": "2026-01-03T12:00:00Z", "instance_id": "i-1", "seq": seq
        }))
        .unwrap()
    };
    let hb = format!("{api}/services/{SERVICE}/heartbeat");
    let (status, first, _) = call(post.clone(), &hb, Some(API_KEY), Some(beat(1)), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(first["accepted"], true);
    let commands = first["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 1, "korea's provision command: {first}");
    assert_eq!(commands[0]["kind"], "provision");
    let (_, again, _) = call(post.clone(), &hb, Some(API_KEY), Some(beat(1)), &[]).await;
    assert_eq!(
        again["accepted"], false,
        "a repeated seq is not stored again"
    );
    let command_id = commands[0]["command_id"].as_str().unwrap();
    let pulled = market
        .market
        .store()
        .command(command_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        pulled.status == "pending" && pulled.delivered_at.is_some(),
        "a pulled command is delivered, not yet answered: {pulled:?}"
    );
    let ack = serde_json::to_vec(&json!({"status": "applied", "instance_id": "i-1"})).unwrap();
    assert_eq!(
        call(
            post.clone(),
            &format!("{api}/commands/{command_id}/ack"),
            Some(API_KEY),
            Some(ack),
            &[]
        )
        .await
        .0,
        200
    );
    let (_, after, _) = call(post.clone(), &hb, Some(API_KEY), Some(beat(2)), &[]).await;
    assert_eq!(
        after["commands"],
        json!([]),
        "an acknowledged command is not pulled again"
    );
    let (_, instances, _) = call(
        get.clone(),
        &format!("{api}/admin/services/{SERVICE}/instances"),
        Some(OPERATOR),
        None,
        &[],
    )
    .await;
    assert_eq!(instances[0]["seq"], 2);
    // The two accepted heartbeats (not the repeat) are in the console's samples, their
    // per-minute summary standing for a minute each: 150 requests, 1.5 → 2 errors, 250 ms.
    let buckets = market
        .market
        .store()
        .metric_buckets(
            SERVICE,
            time::OffsetDateTime::now_utc() - time::Duration::hours(1),
        )
        .await
        .unwrap();
    let sum =
        |f: fn(&mt_paas_market::store::MetricBucket) -> i64| buckets.iter().map(f).sum::<i64>();
    assert_eq!(sum(|b| b.requests), 300, "{buckets:?}");
    assert_eq!(sum(|b| b.errors), 4, "{buckets:?}");
    assert_eq!(sum(|b| b.window_seconds), 120, "{buckets:?}");
    let latency: f64 = buckets.iter().map(|b| b.latency_sum_ms).sum();
    assert!((latency - 75_000.0).abs() < 1e-6, "{buckets:?}");
    assert_eq!(
        instances[0]["heartbeat"]["metrics"]["requests_per_minute"],
        150
    );

    // Usage: a resend is a duplicate, never a double count.
    let usage = serde_json::to_vec(&json!({
        "service_id": SERVICE, "instance_id": "i-1",
        "records": [
            {"tenant_id": "hallym", "dimension": "requests", "period_start": "2026-01-03T12:00:00Z", "period_seconds": 300, "quantity": 42},
            {"tenant_id": "hallym", "dimension": "errors", "period_start": "2026-01-03T12:00:00Z", "period_seconds": 300, "quantity": 1}
        ]
    }))
    .unwrap();
    let url = format!("{api}/services/{SERVICE}/usage");
    let (_, receipt, _) = call(post.clone(), &url, Some(API_KEY), Some(usage.clone()), &[]).await;
    assert_eq!(receipt, json!({"accepted": 2, "duplicates": 0}));
    let (_, receipt, _) = call(post.clone(), &url, Some(API_KEY), Some(usage), &[]).await;
    assert_eq!(receipt, json!({"accepted": 0, "duplicates": 2}));
    let (_, totals, _) = call(
        get.clone(),
        &format!("{api}/admin/services/{SERVICE}/usage?tenant_id=hallym"),
        Some(OPERATOR),
        None,
        &[],
    )
    .await;
    let requests: Vec<&Value> = totals
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["dimension"] == "requests")
        .collect();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["quantity"], 42);

    // Alerts: the seed's body (no event_id) twice is stored once.
    let alert = serde_json::to_vec(&json!({
        "service_id": SERVICE, "alert_type": "cross_tenant_access_attempt", "severity": "high",
        "details": {"source_tenant": "hallym", "target_tenant": "korea", "endpoint": "/api/courses/123", "ip_address": "123.45.67.89"},
        "timestamp": "2026-01-03T12:00:00Z"
    }))
    .unwrap();
    let url = format!("{api}/audit/alerts");
    assert_eq!(
        call(post.clone(), &url, Some(API_KEY), Some(alert.clone()), &[])
            .await
            .0,
        201
    );
    let (status, body, _) = call(post.clone(), &url, Some(API_KEY), Some(alert), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["duplicate"], true);
    let (_, alerts, _) = call(
        get.clone(),
        &format!("{api}/admin/alerts?service_id={SERVICE}"),
        Some(OPERATOR),
        None,
        &[],
    )
    .await;
    assert_eq!(alerts.as_array().unwrap().len(), 1);
    assert_eq!(alerts[0]["details"]["ip_address"], "123.45.67.89");
    market.running.stop().await;
}

#[tokio::test]
async fn sso_issues_a_code_redeemable_once_with_the_pkce_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    register_service(&market.url, Some("http://service.example".to_owned())).await;
    subscribe(&market.url, "hallym", "basic", false).await;
    let (status, _) = crate::helpers::operator(
        &market.url,
        reqwest::Method::POST,
        "/users",
        Some(json!({"id": "alice", "tenant_id": "hallym", "name": "Alice", "email": "alice@hallym.ac.kr", "password": "correct-horse"})),
    )
    .await;
    assert_eq!(status, 201);
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let redirect = "http://service.example/auth/marketplace/callback";
    let params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", SERVICE),
        ("redirect_uri", redirect),
        ("state", "st-123"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = format!("{}/api/v1/sso/authorize", market.url);
    let form = http.get(&authorize).query(&params).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("<form"));

    let mut wrong = params.clone();
    wrong.push(("username", "alice"));
    wrong.push(("password", "wrong"));
    assert_eq!(
        http.post(&authorize)
            .form(&wrong)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let mut evil = params.clone();
    evil[2] = ("redirect_uri", "http://evil.example/steal");
    evil.push(("username", "alice"));
    evil.push(("password", "correct-horse"));
    assert_eq!(
        http.post(&authorize)
            .form(&evil)
            .send()
            .await
            .unwrap()
            .status(),
        422
    );

    let mut login = params.clone();
    login.push(("username", "alice"));
    login.push(("password", "correct-horse"));
    let redirected = http.post(&authorize).form(&login).send().await.unwrap();
    assert_eq!(redirected.status(), 302);
    let location = redirected.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(location.starts_with(redirect));
    let query: HashMap<String, String> =
        form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(query["state"], "st-123");
    let code = &query["code"];

    let token = format!("{}/api/v1/sso/token", market.url);
    let exchange = |verifier: &str| json!({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "code_verifier": verifier});
    let bad = http
        .post(&token)
        .bearer_auth(API_KEY)
        .json(&exchange(&"x".repeat(43)))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "a wrong verifier burns the code");
    // A fresh code for the real exchange.
    let redirected = http.post(&authorize).form(&login).send().await.unwrap();
    let location = redirected.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let query: HashMap<String, String> =
        form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    let body = json!({"grant_type": "authorization_code", "code": query["code"], "redirect_uri": redirect, "code_verifier": verifier});
    let user: Value = http
        .post(&token)
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["sub"], "alice");
    assert_eq!(user["tenant_id"], "hallym");
    let reused = http
        .post(&token)
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), 400, "a code works once");
    market.running.stop().await;
}

/// Operator changes racing each other (and the market's own writes) on SQLite: every one is
/// applied, none answers 500 ("database is locked").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_all_apply_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    register_service(&market.url, None).await;
    let tenants: Vec<String> = (0..6).map(|i| format!("race{i}")).collect();
    for tenant in &tenants {
        subscribe(&market.url, tenant, "basic", false).await;
    }
    let before = newest_revision(&market.url, &tenants).await;
    let mut calls = Vec::new();
    for round in 0..8 {
        for tenant in &tenants {
            let url = market.url.clone();
            let tenant = tenant.clone();
            let plan = if round % 2 == 0 { "premium" } else { "basic" };
            calls.push(tokio::spawn(async move {
                crate::helpers::operator(
                    &url,
                    reqwest::Method::POST,
                    &format!("/services/{SERVICE}/tenants/{tenant}/plan"),
                    Some(json!({ "plan_id": plan })),
                )
                .await
            }));
        }
    }
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // Every change took its own revision: the newest is the subscriptions' last plus 48.
    assert_eq!(newest_revision(&market.url, &tenants).await, before + 8 * 6);
}

async fn newest_revision(url: &str, tenants: &[String]) -> i64 {
    let mut newest = 0;
    for tenant in tenants {
        let (_, view) = crate::helpers::operator(
            url,
            reqwest::Method::GET,
            &format!("/services/{SERVICE}/tenants/{tenant}"),
            None,
        )
        .await;
        newest = newest.max(view["subscription"]["revision"].as_i64().unwrap());
    }
    newest
}

/// Nothing runs with the public demo credentials unless dev mode is asked for: a market.yaml
/// that sets only `database.url` does not start; neither does a store holding demo services.
#[tokio::test]
async fn the_market_refuses_public_credentials_outside_dev_mode() {
    use mt_paas_market::{Market, MarketConfig, MarketError};
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/market.db", dir.path().display());
    let write = |yaml: &str| {
        let path = dir.path().join("market.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    };
    let only_db = write(&format!("database:\n  url: \"{db}\"\n"));
    let problems = MarketConfig::load(&only_db, None).unwrap_err().to_string();
    assert!(problems.contains("operator_token"), "{problems}");
    let demo_token = write(&format!(
        "database:\n  url: \"{db}\"\noperator_token: dev-operator-token\nseed_dev_data: true\n"
    ));
    let problems = MarketConfig::load(&demo_token, None)
        .unwrap_err()
        .to_string();
    assert!(problems.contains("public demo token"), "{problems}");
    assert!(problems.contains("seed_dev_data"), "{problems}");
    // Asked for explicitly, the demo runs.
    assert!(MarketConfig::load_as(&demo_token, None, true).is_ok());

    // A store with the demo's services (made in dev mode) keeps a real market from starting.
    let dev = MarketConfig::load_as(&demo_token, None, true).unwrap();
    drop(Market::start(dev).await.unwrap());
    let real = write(&format!(
        "database:\n  url: \"{db}\"\noperator_token: a-real-operator-secret-0123\n"
    ));
    let config = MarketConfig::load(&real, None).unwrap();
    match Market::start(config).await {
        Err(MarketError::PublicCredentials { service, .. }) => assert_eq!(service, "basic_service"),
        other => panic!(
            "a demo store started outside dev mode: {:?}",
            other.map(|_| ())
        ),
    }
}

/// Outside dev mode the operator API refuses the demo credentials and a webhook secret that
/// another service already has; and it authenticates before it reads a body.
#[tokio::test]
async fn services_get_credentials_of_their_own() {
    use mt_paas_market::{Market, MarketConfig};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("market.yaml");
    std::fs::write(
        &path,
        format!(
            "database:\n  url: \"sqlite://{}/market.db\"\noperator_token: a-real-operator-secret-0123\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let market = Market::start(MarketConfig::load(&path, None).unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/admin", listener.local_addr().unwrap());
    let serving = market.clone();
    tokio::spawn(async move {
        serving
            .serve_with_shutdown(listener, std::future::pending())
            .await
            .unwrap();
    });
    let token = Some("a-real-operator-secret-0123");
    let service = |id: &str, key: &str, secret: &str| {
        serde_json::to_vec(&json!({"id": id, "name": id, "api_key": key, "webhook_secret": secret}))
            .map(Some)
            .unwrap()
    };
    let own = "whsec_b3duLXNlY3JldC1vZi10aGUtZmlyc3Qtc2VydmljZQ==";
    let (status, body, _) = call(
        reqwest::Method::POST,
        &format!("{url}/services"),
        token,
        service("first", "first-service-key", own),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body, _) = call(
        reqwest::Method::POST,
        &format!("{url}/services"),
        token,
        service("second", "second-service-key", own),
        &[],
    )
    .await;
    assert_eq!(status, 409, "a shared webhook secret: {body}");
    let (status, body, _) = call(
        reqwest::Method::POST,
        &format!("{url}/services"),
        token,
        service(
            "third",
            mt_paas_market::DEV_API_KEY,
            "whsec_dGhpcmQtc2VydmljZS1zZWNyZXQtb2YtZW5vdWdo",
        ),
        &[],
    )
    .await;
    assert_eq!(status, 422, "the demo API key: {body}");
    assert_eq!(body["field"], "api_key");
    // Unauthenticated, a malformed body is not even read.
    for key in [None, Some("dev-operator-token")] {
        let (status, body, _) = call(
            reqwest::Method::POST,
            &format!("{url}/services"),
            key,
            Some(b"{not json".to_vec()),
            &[],
        )
        .await;
        assert_eq!(status, 401, "{body}");
    }
}

/// Alerts past their retention are pruned: the table never grows without bound.
#[tokio::test]
async fn old_alerts_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let url =
        mt_paas::config::DatabaseUrl::new(format!("sqlite://{}/market.db", dir.path().display()));
    let store = mt_paas_market::Store::open(&url, 2).await.unwrap();
    for n in 0..3 {
        let alert = mt_paas_protocol::AuditAlert {
            service_id: SERVICE.to_owned(),
            alert_type: "control_signature_failure".to_owned(),
            severity: mt_paas_protocol::Severity::Medium,
            details: json!({ "n": n }),
            timestamp: time::OffsetDateTime::now_utc(),
            event_id: format!("evt-{n}"),
        };
        assert!(store.record_alert(&alert).await.unwrap());
    }
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(
        store
            .prune_alerts(now - time::Duration::days(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune_alerts(now + time::Duration::seconds(1))
            .await
            .unwrap(),
        3
    );
    assert!(store.alerts(None, false, 10).await.unwrap().is_empty());
}
