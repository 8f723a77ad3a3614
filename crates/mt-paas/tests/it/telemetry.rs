//! The outbox against a real HTTP peer that follows the xAPI statements resource: nothing
//! accepted is lost through an outage, ids are stable, dead letters can be retried, and
//! `Retry-After` is honoured.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use mt_paas::{TenantId, outbox::Kind};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{Backend, TestApp, TestDb};

/// An LRS as the xAPI 1.0.3 statements resource defines it: statements by id, a resent id
/// with the same content changes nothing, a reused id with other content is 409, a batch is
/// all or nothing, and the version header is required.
#[derive(Clone, Default)]
struct Lrs {
    statements: Arc<Mutex<HashMap<String, Value>>>,
    posts: Arc<Mutex<Vec<Instant>>>,
    conflicts: Arc<Mutex<u64>>,
    /// Answers to give before behaving (status, Retry-After).
    scripted: Arc<Mutex<Vec<(StatusCode, Option<&'static str>)>>>,
}

async fn statements(State(lrs): State<Lrs>, headers: HeaderMap, body: Bytes) -> Response {
    lrs.posts.lock().unwrap().push(Instant::now());
    if let Some((status, retry_after)) = {
        let mut scripted = lrs.scripted.lock().unwrap();
        if scripted.is_empty() {
            None
        } else {
            Some(scripted.remove(0))
        }
    } {
        let mut response = (status, "scripted").into_response();
        if let Some(after) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", after.parse().unwrap());
        }
        return response;
    }
    if headers.get("x-experience-api-version").is_none() {
        return (
            StatusCode::BAD_REQUEST,
            "X-Experience-API-Version is required",
        )
            .into_response();
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let batch = match value {
        Value::Array(items) => items,
        single => vec![single],
    };
    let mut stored = lrs.statements.lock().unwrap();
    for statement in &batch {
        let Some(id) = statement["id"].as_str() else {
            return (StatusCode::BAD_REQUEST, "a statement without id").into_response();
        };
        if statement["actor"].is_null()
            || statement["verb"]["id"].is_null()
            || statement["object"]["id"].is_null()
        {
            return (
                StatusCode::BAD_REQUEST,
                "actor, verb and object are required",
            )
                .into_response();
        }
        if stored.get(id).is_some_and(|existing| existing != statement) {
            *lrs.conflicts.lock().unwrap() += 1;
            return (StatusCode::CONFLICT, "the id is taken by another statement").into_response();
        }
    }
    let ids: Vec<String> = batch
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    for statement in batch {
        let id = statement["id"].as_str().unwrap().to_owned();
        stored.entry(id).or_insert(statement);
    }
    Json(ids).into_response()
}

async fn serve_lrs(lrs: Lrs, listener: TcpListener) {
    let app = Router::new()
        .route("/xapi/statements", post(statements))
        .with_state(lrs);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
}

async fn service(db: &TestDb, lrs_port: u16) -> TestApp {
    let yaml = format!(
        "logging:\n  activity_log:\n    enabled: true\n    endpoint: \"http://127.0.0.1:{lrs_port}/xapi\"\n  outbox:\n    batch_size: 200\n    max_attempts: 50\n"
    );
    TestApp::new(db.config(&yaml), Router::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_activities_survive_a_thirty_second_lrs_outage() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    // Reserve a port for the LRS, then leave it closed: the LRS is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = service(&db, port).await;
    let logger = app.framework.activity_log().clone();
    let tenants: Vec<TenantId> = ["hallym", "korea", "snu"]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    let down_since = Instant::now();
    let mut ids = Vec::with_capacity(10_000);
    for i in 0..10_000usize {
        let tenant = &tenants[i % 3];
        let id = logger
            .log(
                tenant,
                Some(&format!("user{}", i % 50)),
                "asked",
                "ai_tutor",
                json!({ "n": i }),
            )
            .expect("activity logging is on");
        ids.push(id);
        if i % 1000 == 999 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    app.framework.outbox().flush().await;
    assert_eq!(
        app.framework
            .outbox()
            .counts(Some(Kind::Activity))
            .await
            .unwrap()
            .pending,
        10_000,
        "all accepted and stored"
    );

    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_since.elapsed())).await;
    let lrs = Lrs::default();
    serve_lrs(
        lrs.clone(),
        TcpListener::bind(("127.0.0.1", port)).await.unwrap(),
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(90);
    while lrs.statements.lock().unwrap().len() < 10_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = lrs.statements.lock().unwrap().clone();
    assert_eq!(
        stored.len(),
        10_000,
        "the LRS holds exactly 10,000 distinct statements"
    );
    assert_eq!(*lrs.conflicts.lock().unwrap(), 0);
    for id in &ids {
        assert!(stored.contains_key(id), "statement {id} is missing");
    }
    let sample = &stored[&ids[4]];
    assert_eq!(sample["verb"]["id"], "http://adlnet.gov/expapi/verbs/asked");
    assert_eq!(sample["actor"]["account"]["name"], "user4");
    assert_eq!(
        sample["context"]["extensions"]["https://mt-paas.dev/xapi/extensions/tenant"],
        "korea"
    );
    assert_eq!(
        sample["result"]["extensions"]["https://mt-paas.dev/xapi/extensions/result"]["n"],
        4
    );
    assert!(
        sample["object"]["id"]
            .as_str()
            .unwrap()
            .ends_with("/mt_paas_service/ai_tutor")
    );
    let counts = app
        .framework
        .outbox()
        .counts(Some(Kind::Activity))
        .await
        .unwrap();
    assert_eq!((counts.pending, counts.dead), (0, 0));
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_dead_letters_can_be_retried() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let lrs = Lrs::default();
    lrs.scripted
        .lock()
        .unwrap()
        .push((StatusCode::SERVICE_UNAVAILABLE, Some("2")));
    serve_lrs(lrs.clone(), listener).await;
    let app = service(&db, port).await;
    let tenant: TenantId = "hallym".parse().unwrap();
    app.framework
        .activity_log()
        .log(&tenant, None, "asked", "ai_tutor", json!({}));
    let deadline = Instant::now() + Duration::from_secs(15);
    while lrs.statements.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lrs.statements.lock().unwrap().len(), 1);
    let posts = lrs.posts.lock().unwrap().clone();
    assert!(posts.len() >= 2);
    assert!(
        posts[1] - posts[0] >= Duration::from_millis(1900),
        "waited for Retry-After: {:?}",
        posts[1] - posts[0]
    );

    // A statement the LRS refuses for good (400) is dead-lettered, and can be put back.
    lrs.scripted
        .lock()
        .unwrap()
        .push((StatusCode::BAD_REQUEST, None));
    app.framework
        .activity_log()
        .log(&tenant, None, "answered", "quiz", json!({}));
    let outbox = app.framework.outbox();
    let deadline = Instant::now() + Duration::from_secs(10);
    while outbox.counts(Some(Kind::Activity)).await.unwrap().dead == 0 && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = outbox.list(Some("dead"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("400")
    );
    assert_eq!(outbox.retry(None).await.unwrap(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lrs.statements.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        lrs.statements.lock().unwrap().len(),
        2,
        "the retried statement arrived"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn metrics_are_exposed_without_tenant_labels() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = TestApp::new(
        db.config(""),
        Router::new().route("/x", axum::routing::get(|| async { "x" })),
    )
    .await;
    app.framework
        .tenants()
        .create(mt_paas::NewTenant::new("hallym".parse().unwrap(), "H"))
        .await
        .unwrap();
    for _ in 0..3 {
        app.get("/x", &[("x-tenant-id", b"hallym")]).await;
    }
    app.get("/x", &[("x-tenant-id", b"nobody")]).await;
    // A path no route matches is counted, but never becomes a label of its own.
    app.get("/no/such/path-4f2a", &[("x-tenant-id", b"hallym")])
        .await;
    let answer = app
        .send(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, 200);
    let text = answer.body.as_str().unwrap().to_owned();
    let has = |line: &str| text.lines().any(|l| l == line);
    // Labelled by the matched route: the unknown tenant's 404 is the same route's.
    assert!(
        has("mt_paas_requests_total{route=\"/x\",class=\"2xx\"} 3"),
        "{text}"
    );
    assert!(
        has("mt_paas_requests_total{route=\"/x\",class=\"4xx\"} 1"),
        "{text}"
    );
    assert!(
        has("mt_paas_request_duration_seconds_count{route=\"/x\"} 4"),
        "{text}"
    );
    assert!(
        has("mt_paas_requests_total{route=\"<unmatched>\",class=\"4xx\"} 1"),
        "{text}"
    );
    assert!(!text.contains("path-4f2a"), "{text}");
    assert!(text.contains("mt_paas_tenants_active 1"), "{text}");
    assert!(!text.contains("hallym"), "no tenant label: {text}");
    db.cleanup().await;
}

/// A scrape never queries the database: with the central DB gone, `/metrics` still answers
/// its counters (the outbox gauge is counted in the background).
#[tokio::test]
async fn metrics_never_query_the_database() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = TestApp::new(db.config(""), Router::new()).await;
    if let mt_paas::CentralDb::Sqlite(pool) = app.framework.central_db() {
        pool.close().await;
    }
    let answer = app
        .send(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, 200);
    let text = answer.body.as_str().unwrap().to_owned();
    assert!(text.contains("mt_paas_outbox_pending 0"), "{text}");
    assert!(text.contains("mt_paas_outbox_refused_total 0"), "{text}");
    // Readiness does ask the database: it is down.
    let ready = app
        .send(
            axum::http::Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(ready.status, 503);
    db.cleanup().await;
}
