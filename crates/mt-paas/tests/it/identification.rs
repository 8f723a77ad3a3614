//! Tenant identification through `create_app`: every method, their order, and every kind of
//! bad input answered with a 4xx problem — never a 500, never a default tenant.

use axum::{Json, Router, routing::get};
use http::Request;
use mt_paas::{
    JwtKeys, NewTenant, Tenant, TenantId, TenantStatus, current_tenant, http::ApiError,
    spawn_in_tenant,
};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestDb, on_both_backends};

const SECRET: &str = "test-secret-for-identification";

const ALL_METHODS: &str = r#"
tenant_identification:
  methods:
    - type: header
      name: X-Tenant-ID
    - type: subdomain
      extract_pattern: "^([^.]+)"
    - type: jwt_claim
      claim_name: tenant_id
    - type: query_param
      name: tenant_id
auth:
  jwt:
    secret: "test-secret-for-identification"
features:
  defaults:
    ai_chat: true
    quiz: false
"#;

async fn whoami(tenant: Tenant) -> Json<Value> {
    let from_task_local = current_tenant().map(|t| t.id().to_string());
    let from_spawned = spawn_in_tenant(async { current_tenant().map(|t| t.id().to_string()) })
        .await
        .unwrap();
    Json(json!({
        "id": tenant.id(),
        "name": tenant.name(),
        "current": from_task_local,
        "spawned": from_spawned,
    }))
}

async fn quiz(tenant: Tenant) -> Result<&'static str, ApiError> {
    tenant.require_feature("quiz")?;
    Ok("quiz")
}

async fn boom(_tenant: Tenant) -> &'static str {
    panic!("handler bug")
}

fn routes() -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/quiz", get(quiz))
        .route("/boom", get(boom))
}

async fn app_with(db: &TestDb, config_yaml: &str) -> TestApp {
    let app = TestApp::new(db.config(config_yaml), routes()).await;
    let tenants = app.framework.tenants();
    for (id, name) in [
        ("hallym", "한림대학교"),
        ("korea", "고려대학교"),
        ("snu", "서울대학교"),
    ] {
        tenants
            .create(NewTenant::new(id.parse().unwrap(), name))
            .await
            .unwrap();
    }
    app
}

fn token(claims: Value) -> String {
    let config = serde_json::from_value(json!({
        "secret": SECRET, "algorithm": "HS256", "expiry_hours": 1, "leeway_seconds": 0
    }))
    .unwrap();
    JwtKeys::from_config(&config)
        .unwrap()
        .issue(claims.as_object().unwrap().clone())
        .unwrap()
}

fn bearer(claims: Value) -> Vec<u8> {
    format!("Bearer {}", token(claims)).into_bytes()
}

async fn every_method_identifies_the_tenant(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = app_with(&db, ALL_METHODS).await;
    let jwt = bearer(json!({"tenant_id": "hallym", "sub": "u1"}));
    let cases: Vec<(&str, Vec<(&str, &[u8])>)> = vec![
        ("/whoami", vec![("x-tenant-id", b"hallym")]),
        ("/whoami", vec![("x-tenant-id", b"HALLYM")]),
        ("/whoami", vec![("host", b"hallym.localhost")]),
        ("/whoami", vec![("host", b"hallym.localhost:8000")]),
        ("/whoami", vec![("host", b"Hallym.Keli.K-University.AI")]),
        ("/whoami?tenant_id=hallym", vec![]),
        ("/whoami?x=1&tenant_id=hallym", vec![]),
        ("/whoami", vec![("authorization", &jwt)]),
    ];
    for (uri, headers) in cases {
        let answer = app.get(uri, &headers).await;
        assert_eq!(answer.status, 200, "{uri} {headers:?}: {:?}", answer.body);
        assert_eq!(answer.body["id"], "hallym");
        assert_eq!(answer.body["name"], "한림대학교");
        assert_eq!(
            answer.body["current"], "hallym",
            "current_tenant() inside the request"
        );
        assert_eq!(
            answer.body["spawned"], "hallym",
            "spawn_in_tenant carries the tenant"
        );
    }
    assert!(current_tenant().is_none(), "no tenant outside a request");
    db.cleanup().await;
}
on_both_backends!(every_method_identifies_the_tenant);

#[tokio::test]
async fn the_first_configured_method_wins() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app_with(&db, ALL_METHODS).await;
    let korea_jwt = bearer(json!({"tenant_id": "korea"}));
    let cases: Vec<(&str, Vec<(&str, &[u8])>, &str)> = vec![
        (
            "/whoami?tenant_id=korea",
            vec![("x-tenant-id", b"hallym")],
            "hallym",
        ),
        (
            "/whoami",
            vec![("x-tenant-id", b"hallym"), ("host", b"korea.localhost")],
            "hallym",
        ),
        (
            "/whoami?tenant_id=hallym",
            vec![("host", b"korea.localhost")],
            "korea",
        ),
        (
            "/whoami?tenant_id=hallym",
            vec![("authorization", &korea_jwt)],
            "korea",
        ),
    ];
    for (uri, headers, want) in cases {
        let answer = app.get(uri, &headers).await;
        assert_eq!(answer.body["id"], want, "{uri} {headers:?}");
    }
    // A verified token of another tenant than the one identified is not a tie to break:
    // it is refused (DESIGN §4).
    let answer = app
        .get(
            "/whoami",
            &[("host", b"snu.localhost"), ("authorization", &korea_jwt)],
        )
        .await;
    answer.assert_problem(403, "cross_tenant_access");

    // Another order in the configuration gives another winner.
    let db2 = TestDb::new(Backend::Sqlite).await.unwrap();
    let reordered = app_with(
        &db2,
        "tenant_identification:\n  methods:\n    - type: query_param\n    - type: header\n",
    )
    .await;
    let answer = reordered
        .get("/whoami?tenant_id=korea", &[("x-tenant-id", b"hallym")])
        .await;
    assert_eq!(answer.body["id"], "korea");
}

#[tokio::test]
async fn ip_literals_and_single_labels_name_no_tenant() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app_with(&db, ALL_METHODS).await;
    for host in [
        "127.0.0.1:8000",
        "127.0.0.1",
        "localhost",
        "localhost:8000",
        "[::1]:8000",
        "[::1]",
    ] {
        app.get("/whoami", &[("host", host.as_bytes())])
            .await
            .assert_problem(400, "tenant_required");
        let answer = app
            .get("/whoami?tenant_id=snu", &[("host", host.as_bytes())])
            .await;
        assert_eq!(
            answer.body["id"], "snu",
            "{host} falls through to the query parameter"
        );
    }
}

#[tokio::test]
async fn malformed_ids_are_refused_before_any_lookup() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app_with(&db, ALL_METHODS).await;
    let long = "a".repeat(300);
    let bad_headers: Vec<&[u8]> = vec![
        b"../etc",
        b"a'; drop table t;--",
        long.as_bytes(),
        b"",
        b"   ",
        b"\xff\xfe",
        b"hall\xc3\xa9ym",
        b"-hallym",
        b"hallym.korea",
        b"hallym%00",
        b"hallym korea",
    ];
    for value in bad_headers {
        app.get("/whoami", &[("x-tenant-id", value)])
            .await
            .assert_problem(400, "invalid_tenant_id");
    }
    for query in [
        "tenant_id=..%2Fetc",
        "tenant_id=%FF",
        "tenant_id=",
        "tenant_id=a%27%3B%20drop%20table%20t%3B--",
        "tenant_id=%E2%80%AEhallym",
    ] {
        app.get(&format!("/whoami?{query}"), &[])
            .await
            .assert_problem(400, "invalid_tenant_id");
    }
    app.get("/whoami", &[("host", b"a'b.example.com")])
        .await
        .assert_problem(400, "invalid_tenant_id");
    app.get("/whoami", &[("host", b"\xff.example.com")])
        .await
        .assert_problem(400, "invalid_tenant_id");
    let non_string_claim = bearer(json!({"tenant_id": 42}));
    app.get("/whoami", &[("authorization", &non_string_claim)])
        .await
        .assert_problem(400, "invalid_tenant_id");
    let bad_claim = bearer(json!({"tenant_id": "../x"}));
    app.get("/whoami", &[("authorization", &bad_claim)])
        .await
        .assert_problem(400, "invalid_tenant_id");
}

#[tokio::test]
async fn one_source_naming_two_tenants_is_ambiguous() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app_with(&db, ALL_METHODS).await;
    app.get(
        "/whoami",
        &[("x-tenant-id", b"hallym"), ("x-tenant-id", b"korea")],
    )
    .await
    .assert_problem(400, "ambiguous_tenant");
    app.get("/whoami?tenant_id=hallym&tenant_id=korea", &[])
        .await
        .assert_problem(400, "ambiguous_tenant");
    let same = app
        .get(
            "/whoami",
            &[("x-tenant-id", b"hallym"), ("x-tenant-id", b"hallym")],
        )
        .await;
    assert_eq!(same.body["id"], "hallym");
}

#[tokio::test]
async fn tokens_are_verified_before_their_claim_is_trusted() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app_with(&db, ALL_METHODS).await;
    // A real token for korea whose payload is swapped for one naming hallym.
    let forged = {
        let genuine = token(json!({"tenant_id": "korea"}));
        let other = token(json!({"tenant_id": "hallym"}));
        let parts: Vec<&str> = genuine.split('.').collect();
        let payload = other.split('.').nth(1).unwrap();
        format!("Bearer {}.{}.{}", parts[0], payload, parts[2])
    };
    let other_secret = format!(
        "Bearer {}",
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"tenant_id": "hallym", "exp": 9_999_999_999u64}),
            &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret"),
        )
        .unwrap()
    );
    let none = "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ0ZW5hbnRfaWQiOiJoYWxseW0iLCJleHAiOjk5OTk5OTk5OTl9.".to_owned();
    let expired = String::from_utf8(bearer(json!({"tenant_id": "hallym", "exp": 1_000}))).unwrap();
    for value in [
        forged,
        other_secret,
        none,
        expired,
        "Bearer garbage".to_owned(),
        "Bearer ".to_owned(),
    ] {
        let answer = app
            .get(
                "/whoami?tenant_id=korea",
                &[("authorization", value.as_bytes())],
            )
            .await;
        answer.assert_problem(401, "invalid_token");
        assert_eq!(
            answer.headers["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }
    // A valid token without the claim names nothing; the next method decides.
    let no_claim = bearer(json!({"sub": "u1"}));
    let answer = app
        .get("/whoami?tenant_id=korea", &[("authorization", &no_claim)])
        .await;
    assert_eq!(answer.body["id"], "korea");
    // Other schemes are not tokens.
    let answer = app
        .get(
            "/whoami?tenant_id=korea",
            &[("authorization", b"Basic dTpw")],
        )
        .await;
    assert_eq!(answer.body["id"], "korea");
}

#[tokio::test]
async fn unknown_and_missing_tenants_get_404_and_400_in_korean_or_english() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app_with(&db, ALL_METHODS).await;
    let ko = app.get("/whoami", &[("x-tenant-id", b"nope")]).await;
    ko.assert_problem(404, "tenant_not_found");
    assert_eq!(ko.body["detail"], "'nope' 테넌트가 등록되어 있지 않습니다.");
    assert_eq!(ko.headers["content-language"], "ko");
    // Repeats are answered from the negative cache, identically.
    for _ in 0..3 {
        app.get("/whoami", &[("x-tenant-id", b"nope")])
            .await
            .assert_problem(404, "tenant_not_found");
    }

    let en = app
        .get(
            "/whoami",
            &[
                ("x-tenant-id", b"nope"),
                ("accept-language", b"en-US,en;q=0.9"),
            ],
        )
        .await;
    en.assert_problem(404, "tenant_not_found");
    assert_eq!(en.body["detail"], "No tenant 'nope' is registered.");
    assert_eq!(en.headers["content-language"], "en");

    let none = app.get("/whoami", &[]).await;
    none.assert_problem(400, "tenant_required");
    assert!(
        none.body["detail"]
            .as_str()
            .unwrap()
            .contains("X-Tenant-ID 헤더")
    );
    let none_en = app.get("/whoami", &[("accept-language", b"en")]).await;
    assert!(
        none_en.body["detail"]
            .as_str()
            .unwrap()
            .contains("the X-Tenant-ID header")
    );
}

#[tokio::test]
async fn registry_status_decides_access() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app_with(&db, ALL_METHODS).await;
    let tenants = app.framework.tenants();
    let id = |s: &str| s.parse::<TenantId>().unwrap();
    tenants
        .set_status(&id("korea"), TenantStatus::Suspended)
        .await
        .unwrap();
    tenants
        .set_status(&id("snu"), TenantStatus::Provisioning)
        .await
        .unwrap();
    tenants
        .set_status(&id("hallym"), TenantStatus::Archived)
        .await
        .unwrap();
    app.get("/whoami", &[("x-tenant-id", b"korea")])
        .await
        .assert_problem(403, "tenant_suspended");
    let not_ready = app.get("/whoami", &[("x-tenant-id", b"snu")]).await;
    not_ready.assert_problem(503, "tenant_not_ready");
    assert_eq!(not_ready.headers["retry-after"], "5");
    app.get("/whoami", &[("x-tenant-id", b"hallym")])
        .await
        .assert_problem(410, "tenant_archived");
}

#[tokio::test]
async fn features_public_routes_and_errors_are_problems() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app_with(&db, ALL_METHODS).await;

    let quiz = app.get("/quiz", &[("x-tenant-id", b"hallym")]).await;
    quiz.assert_problem(403, "feature_not_available");
    assert_eq!(
        quiz.body["detail"],
        "이 기능은 현재 요금제에 포함되어 있지 않습니다."
    );
    assert_eq!(quiz.body["feature"], "quiz");
    let quiz_en = app
        .get(
            "/quiz",
            &[("x-tenant-id", b"hallym"), ("accept-language", b"en")],
        )
        .await;
    assert_eq!(
        quiz_en.body["detail"],
        "This feature is not part of the tenant's plan."
    );

    for path in ["/healthz", "/readyz"] {
        let answer = app.get(path, &[]).await;
        assert_eq!(answer.status, 200, "{path} needs no tenant");
    }
    app.get("/nothing-here", &[])
        .await
        .assert_problem(404, "not_found");
    let boom = app.get("/boom", &[("x-tenant-id", b"hallym")]).await;
    boom.assert_problem(500, "internal_error");
    assert!(
        !boom.body.to_string().contains("handler bug"),
        "panic text is logged, not shown"
    );

    let wrong_method = app
        .send(
            Request::post("/whoami")
                .header("x-tenant-id", "hallym")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    wrong_method.assert_problem(405, "method_not_allowed");
}

#[test]
fn arbitrary_header_bytes_never_cause_a_server_error() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (db, app) = runtime.block_on(async {
        let db = TestDb::new(Backend::Sqlite).await.unwrap();
        let app = app_with(&db, ALL_METHODS).await;
        (db, app)
    });
    let value = proptest::collection::vec(
        prop_oneof![
            4 => proptest::sample::select(b"abcz09_-".to_vec()),
            1 => 0x20u8..=0x7e,
            1 => 0x80u8..=0xff,
        ],
        0..80,
    );
    let header = proptest::sample::select(vec!["x-tenant-id", "host", "authorization"]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(400));
    runner
        .run(&(header, value), |(header, value)| {
            let answer = runtime.block_on(app.get("/whoami", &[(header, &value)]));
            let status = answer.status.as_u16();
            prop_assert!(
                [200, 400, 401, 404].contains(&status),
                "{header}: {value:?} answered {status}"
            );
            if status != 200 {
                prop_assert_eq!(
                    answer
                        .headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok()),
                    Some("application/problem+json")
                );
            }
            Ok(())
        })
        .unwrap();
    drop(db);
}
