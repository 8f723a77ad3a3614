//! The request guard without a market: JWT auth, cross-tenant refusal with an audit alert,
//! guard layers, per-tenant rate limits (memory and Redis), field encryption.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Json, Router, routing::get};
use mt_paas::{
    CurrentUser, JwtKeys, NewTenant, Tenant, outbox::Kind, require_feature, require_user,
};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestDb};

const SECRET: &str = "guard-test-secret";

async fn me(tenant: Tenant, user: CurrentUser) -> Json<Value> {
    Json(
        json!({ "tenant": tenant.id(), "sub": user.sub(), "name": user.name(), "current": mt_paas::current_user().map(|u| u.sub().to_owned()) }),
    )
}

async fn open(tenant: Tenant, user: Option<CurrentUser>) -> Json<Value> {
    Json(json!({ "tenant": tenant.id(), "sub": user.map(|u| u.sub().to_owned()) }))
}

fn routes() -> Router {
    Router::new()
        .route("/me", get(me))
        .route("/open", get(open))
        .route(
            "/admin",
            get(|| async { "admin" }).route_layer(require_user()),
        )
        .route(
            "/quiz",
            get(|| async { "quiz" }).route_layer(require_feature("quiz")),
        )
        .route(
            "/chat",
            get(|| async { "chat" }).route_layer(require_feature("ai_chat")),
        )
}

fn keys() -> JwtKeys {
    let config = serde_json::from_value(
        json!({"secret": SECRET, "algorithm": "HS256", "expiry_hours": 1, "leeway_seconds": 0}),
    )
    .unwrap();
    JwtKeys::from_config(&config).unwrap()
}

fn bearer(claims: Value) -> Vec<u8> {
    format!(
        "Bearer {}",
        keys().issue(claims.as_object().unwrap().clone()).unwrap()
    )
    .into_bytes()
}

async fn app(db: &TestDb, extra: &str) -> TestApp {
    let yaml = format!(
        "auth:\n  jwt:\n    secret: \"{SECRET}\"\nfeatures:\n  defaults:\n    ai_chat: true\n    quiz: false\n{extra}"
    );
    let app = TestApp::new(db.config(&yaml), routes()).await;
    for (id, name) in [("hallym", "한림대학교"), ("korea", "고려대학교")] {
        app.framework
            .tenants()
            .create(NewTenant::new(id.parse().unwrap(), name))
            .await
            .unwrap();
    }
    app
}

#[tokio::test]
async fn tokens_make_users_and_routes_choose_whether_they_need_one() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app(&db, "").await;
    let alice = bearer(json!({"sub": "alice", "tenant_id": "hallym", "name": "Alice"}));

    let anonymous = app.get("/open", &[("x-tenant-id", b"hallym")]).await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.body["sub"], Value::Null);
    let missing = app.get("/me", &[("x-tenant-id", b"hallym")]).await;
    missing.assert_problem(401, "authentication_required");
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    app.get("/admin", &[("x-tenant-id", b"hallym")])
        .await
        .assert_problem(401, "authentication_required");

    let me = app
        .get(
            "/me",
            &[("x-tenant-id", b"hallym"), ("authorization", &alice)],
        )
        .await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["sub"], "alice");
    assert_eq!(me.body["name"], "Alice");
    assert_eq!(
        me.body["current"], "alice",
        "current_user() inside the request"
    );
    assert_eq!(
        app.get(
            "/admin",
            &[("x-tenant-id", b"hallym"), ("authorization", &alice)]
        )
        .await
        .status,
        200
    );

    // A token naming no tenant is a user of whichever tenant the request names.
    let plain = bearer(json!({"sub": "bob"}));
    assert_eq!(
        app.get(
            "/me",
            &[("x-tenant-id", b"korea"), ("authorization", &plain)]
        )
        .await
        .body["sub"],
        "bob"
    );

    let forged = {
        let genuine =
            String::from_utf8(bearer(json!({"sub": "alice", "tenant_id": "hallym"}))).unwrap();
        let other =
            String::from_utf8(bearer(json!({"sub": "admin", "tenant_id": "hallym"}))).unwrap();
        let g: Vec<&str> = genuine.split('.').collect();
        let o: Vec<&str> = other.split('.').collect();
        format!("{}.{}.{}", g[0], o[1], g[2]).into_bytes()
    };
    let expired = bearer(json!({"sub": "alice", "exp": 1000}));
    let none =
        b"Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0."
            .to_vec();
    let hs512 = format!(
        "Bearer {}",
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
            &json!({"sub": "alice", "exp": 9_999_999_999u64}),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    )
    .into_bytes();
    for token in [forged, expired, none, hs512] {
        // Refused on every tenant route, optional user or not.
        for path in ["/open", "/me"] {
            app.get(
                path,
                &[("x-tenant-id", b"hallym"), ("authorization", &token)],
            )
            .await
            .assert_problem(401, "invalid_token");
        }
    }
}

#[tokio::test]
async fn a_token_of_another_tenant_is_refused_and_reported() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app(&db, "").await;
    let alice = bearer(json!({"sub": "alice", "tenant_id": "hallym"}));
    let answer = app
        .get(
            "/open",
            &[
                ("x-tenant-id", b"korea"),
                ("authorization", &alice),
                ("accept-language", b"en"),
            ],
        )
        .await;
    answer.assert_problem(403, "cross_tenant_access");
    assert_eq!(
        answer.body["detail"],
        "A token of tenant 'hallym' cannot be used for tenant 'korea'."
    );

    // The alert is in the durable outbox (high severity: written before the answer).
    let outbox = app.framework.outbox();
    let items = outbox.list(Some("pending"), 10).await.unwrap();
    let alerts: Vec<_> = items
        .iter()
        .filter(|i| i.kind == Kind::Audit.as_str())
        .collect();
    assert_eq!(alerts.len(), 1, "{items:?}");
    assert_eq!(outbox.counts(Some(Kind::Audit)).await.unwrap().pending, 1);
    let body: Value = {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let text: String = sqlx::query_scalar("SELECT body FROM outbox WHERE kind = 'audit'")
            .fetch_one(&pool)
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(body["alert_type"], "cross_tenant_access_attempt");
    assert_eq!(body["severity"], "high");
    assert_eq!(body["details"]["source_tenant"], "hallym");
    assert_eq!(body["details"]["target_tenant"], "korea");
    assert_eq!(body["details"]["endpoint"], "/open");
    assert!(body["event_id"].as_str().is_some_and(|e| e.len() == 36));

    // Without cross_tenant_audit the request is still refused, but nothing is reported.
    let db2 = TestDb::new(Backend::Sqlite).await.unwrap();
    let quiet = app_with_audit_off(&db2).await;
    quiet
        .get(
            "/open",
            &[("x-tenant-id", b"korea"), ("authorization", &alice)],
        )
        .await
        .assert_problem(403, "cross_tenant_access");
    assert_eq!(
        quiet.framework.outbox().counts(None).await.unwrap().pending,
        0
    );
}

async fn app_with_audit_off(db: &TestDb) -> TestApp {
    app(
        db,
        "security:\n  cross_tenant_audit: false\n  rate_limit:\n    default_rpm: 100000\n    anonymous_rpm: 100000\n",
    )
    .await
}

#[tokio::test]
async fn feature_guards_use_the_tenants_features() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app(&db, "").await;
    assert_eq!(
        app.get("/chat", &[("x-tenant-id", b"hallym")]).await.status,
        200
    );
    let quiz = app.get("/quiz", &[("x-tenant-id", b"hallym")]).await;
    quiz.assert_problem(403, "feature_not_available");
    assert_eq!(quiz.body["feature"], "quiz");
}

/// `requests` requests of a signed-in user of `tenant` (theirs spend the tenant's limit).
async fn burst(app: &Arc<TestApp>, tenant: &'static str, requests: usize) -> (usize, usize) {
    let user = bearer(json!({"sub": format!("user-of-{tenant}"), "tenant_id": tenant}));
    burst_as(app, tenant, requests, Some(user), None).await
}

/// `requests` requests to `tenant`, with a bearer token when `user`, from `address` (the
/// trusted proxy header) when given.
async fn burst_as(
    app: &Arc<TestApp>,
    tenant: &'static str,
    requests: usize,
    user: Option<Vec<u8>>,
    address: Option<&'static str>,
) -> (usize, usize) {
    let passed = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let semaphore = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for _ in 0..requests {
        let (app, passed, refused) = (app.clone(), passed.clone(), refused.clone());
        let user = user.clone();
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut headers: Vec<(&str, &[u8])> = vec![("x-tenant-id", tenant.as_bytes())];
            if let Some(user) = &user {
                headers.push(("authorization", user));
            }
            if let Some(address) = address {
                headers.push(("x-forwarded-for", address.as_bytes()));
            }
            let answer = app.get("/open", &headers).await;
            drop(permit);
            match answer.status.as_u16() {
                200 => {
                    assert!(answer.headers.contains_key("ratelimit-remaining"));
                    passed.fetch_add(1, Ordering::SeqCst);
                }
                429 => {
                    answer.assert_problem(429, "rate_limited");
                    assert!(
                        answer.headers["retry-after"]
                            .to_str()
                            .unwrap()
                            .parse::<u64>()
                            .unwrap()
                            >= 1
                    );
                    assert_eq!(answer.headers["ratelimit-remaining"], "0");
                    refused.fetch_add(1, Ordering::SeqCst);
                }
                other => panic!("unexpected {other}: {:?}", answer.body),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (
        passed.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_rpm_requests_pass_under_concurrency() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = Arc::new(app(&db, "security:\n  rate_limit:\n    default_rpm: 30\n").await);
    let (passed, refused) = burst(&app, "hallym", 100).await;
    assert_eq!((passed, refused), (30, 70));
    let (passed, _) = burst(&app, "korea", 10).await;
    assert_eq!(passed, 10, "another tenant is unaffected");
}

/// A tenant refused 100 times in a minute is reported once, with its limit; a refusal is
/// decided (and counted) like any other request, never skipped by a fast path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_limit_is_reported_once() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = Arc::new(app(&db, "security:\n  rate_limit:\n    default_rpm: 5\n").await);
    let audits = || async {
        let outbox = app.framework.outbox();
        outbox.flush().await;
        let items = outbox.list(Some("pending"), 100).await.unwrap();
        items
            .into_iter()
            .filter(|i| i.kind == Kind::Audit.as_str())
            .count()
    };
    assert_eq!(burst(&app, "hallym", 104).await, (5, 99));
    assert_eq!(audits().await, 0, "99 refusals are not reported");
    assert_eq!(burst(&app, "hallym", 11).await, (0, 11));
    assert_eq!(audits().await, 1, "the 100th refusal is, once");
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let text: String = sqlx::query_scalar("SELECT body FROM outbox WHERE kind = 'audit'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["alert_type"], "rate_limit_exceeded");
    assert_eq!(body["details"]["tenant"], "hallym");
    assert_eq!(body["details"]["limit_per_minute"], 5);
}

/// Requests without a user never spend the tenant's limit: they are limited per tenant and
/// client address; a route for users answers them 401 every time, at no cost; usage counts
/// only what was served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_cannot_spend_a_tenant() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = Arc::new(
        app(
            &db,
            "security:\n  trusted_proxy_header: X-Forwarded-For\n  rate_limit:\n    default_rpm: 10\n    anonymous_rpm: 5\n",
        )
        .await,
    );
    // A flood from one address is cut at 5 a minute...
    let (passed, refused) = burst_as(&app, "hallym", 40, None, Some("203.0.113.1")).await;
    assert_eq!((passed, refused), (5, 35));
    // ... another address has its own 5, and the tenant's users still have all 10.
    assert_eq!(
        burst_as(&app, "hallym", 8, None, Some("203.0.113.2")).await,
        (5, 3)
    );
    assert_eq!(burst(&app, "hallym", 12).await, (10, 2));
    // A route for signed-in users answers 401 before any allowance is spent.
    for _ in 0..20 {
        let answer = app
            .get(
                "/admin",
                &[
                    ("x-tenant-id", b"korea"),
                    ("x-forwarded-for", b"203.0.113.3"),
                ],
            )
            .await;
        answer.assert_problem(401, "authentication_required");
    }
    assert_eq!(
        burst_as(&app, "korea", 6, None, Some("203.0.113.3")).await,
        (5, 1),
        "the 401s cost that address nothing"
    );
    // Usage: served requests only (5 + 5 anonymous, 10 of users for hallym; 5 for korea).
    let usage = app.framework.usage().meter().take_period();
    let of = |tenant: &str| {
        usage
            .iter()
            .find(|p| p.tenant.as_str() == tenant)
            .map_or(0, |p| p.requests)
    };
    assert_eq!(of("hallym"), 20, "{usage:?}");
    assert_eq!(of("korea"), 5, "{usage:?}");
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_the_limit_holds_across_two_instances() {
    let redis =
        std::env::var("MT_PAAS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    assert!(
        redis::Client::open(redis.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .is_ok(),
        "Redis at {redis} is not reachable: the suites need it (`bash .ci/test` starts it)"
    );
    // A fresh service id keeps this run's keys apart from any other.
    let service = format!("rl{}", std::process::id());
    let extra = format!(
        "service:\n  id: {service}\nsecurity:\n  rate_limit:\n    default_rpm: 20\n    redis_url: \"{redis}\"\n"
    );
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let one = Arc::new(app(&db, &extra).await);
    let db2 = TestDb::new(Backend::Sqlite).await.unwrap();
    let two = Arc::new(app(&db2, &extra).await);
    // Concurrently on both: 20 pass in all (each limiting alone would pass 40).
    let (a, b) = tokio::join!(burst(&one, "hallym", 30), burst(&two, "hallym", 30));
    assert_eq!(a.0 + b.0, 20, "20 pass across both instances: {a:?} {b:?}");
    // Another tenant is unaffected; alternating on it, its allowance is spent half on each.
    let (mut on_one, mut on_two) = (0, 0);
    for _ in 0..15 {
        on_one += burst(&one, "korea", 1).await.0;
        on_two += burst(&two, "korea", 1).await.0;
    }
    assert_eq!(
        (on_one, on_two),
        (10, 10),
        "alternating requests share one limit"
    );
}

#[tokio::test]
async fn field_encryption_is_available_when_configured() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let off = app(&db, "").await;
    assert!(off.framework.encryption().is_err());
    let db2 = TestDb::new(Backend::Sqlite).await.unwrap();
    let on = app(
        &db2,
        "security:\n  encryption:\n    enabled: true\n    key: \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n  rate_limit:\n    default_rpm: 100000\n    anonymous_rpm: 100000\n",
    )
    .await;
    let cipher = on.framework.encryption().unwrap();
    let sealed = cipher
        .seal_str("hallym/users.email", "alice@hallym.ac.kr")
        .unwrap();
    assert_eq!(
        cipher.open_str("hallym/users.email", &sealed).unwrap(),
        "alice@hallym.ac.kr"
    );
    assert!(cipher.open_str("korea/users.email", &sealed).is_err());
}
