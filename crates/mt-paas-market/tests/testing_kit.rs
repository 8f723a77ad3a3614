//! A service tested the way a vendor tests theirs: built with `mt_paas::testing`, talking to
//! the reference market started by `mt_paas_market::testing`, each test with its own market,
//! service and SQLite files on random ports.

use std::{error::Error, time::Duration};

use axum::{Json, Router, http::StatusCode, routing::get};
use mt_paas::{
    CurrentUser, Tenant, TenantDb,
    http::ApiError,
    testing::{TestClient, TestConfig, TestService, eventually},
    with_db,
};
use mt_paas_market::testing::{ServiceRegistration, TestMarket, TokenRequest};
use serde::Deserialize;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn Error>>;

/// How long the market's commands may take to reach the service.
const WAIT: Duration = Duration::from_secs(10);

// ---- the service under test -------------------------------------------------------------

async fn list_courses(mut db: TenantDb) -> Result<Json<Vec<String>>, ApiError> {
    let titles = with_db!(db, conn => {
        sqlx::query_scalar("SELECT title FROM courses ORDER BY id").fetch_all(conn).await
    })
    .map_err(ApiError::database)?;
    Ok(Json(titles))
}

#[derive(Deserialize)]
struct NewCourse {
    title: String,
}

async fn create_course(
    mut db: TenantDb,
    Json(course): Json<NewCourse>,
) -> Result<StatusCode, ApiError> {
    with_db!(db, conn => {
        sqlx::query("INSERT INTO courses (title) VALUES ($1)")
            .bind(course.title)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })
    .map_err(ApiError::database)?;
    Ok(StatusCode::CREATED)
}

async fn quiz(tenant: Tenant) -> Result<&'static str, ApiError> {
    tenant.require_feature("quiz")?;
    Ok("quiz")
}

async fn me(tenant: Tenant, user: CurrentUser) -> Json<Value> {
    Json(json!({ "tenant": tenant.id(), "sub": user.sub(), "name": user.name() }))
}

fn app() -> Router {
    Router::new()
        .route("/courses", get(list_courses).post(create_course))
        .route("/quiz", get(quiz))
        .route("/me", get(me))
}

/// The service's migrations. A vendor's crate passes its own directory instead:
/// `TestConfig::new().migrations("migrations")`.
fn migrations() -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("20250101000000_courses.sql"),
        "CREATE TABLE courses (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL);",
    )?;
    Ok(dir)
}

// ---- the set-up -------------------------------------------------------------------------

/// A market with plans `basic` (no quiz) and `premium` (quiz), and the service registered at
/// it and started with `yaml` over the kit's configuration.
async fn market_and_service(yaml: &str) -> Result<(TestMarket, TestService), Box<dyn Error>> {
    let market = TestMarket::start().await?;
    market
        .create_plan("basic", &[("quiz", false)], Some(60))
        .await?;
    market
        .create_plan("premium", &[("quiz", true)], Some(600))
        .await?;
    let migrations = migrations()?;
    let config = TestConfig::new().migrations(migrations.path()).yaml(yaml);
    let service = market
        .start_service(&ServiceRegistration::new("courses"), config, app())
        .await?;
    Ok((market, service))
}

/// Subscribes a new tenant through the market and waits until the service serves it.
async fn subscribe(
    market: &TestMarket,
    service: &TestService,
    tenant: &str,
    plan: &str,
) -> TestResult {
    market
        .create_tenant(tenant, &format!("{tenant} 대학교"))
        .await?;
    market.subscribe("courses", tenant, plan).await?;
    let client = service.as_tenant(tenant);
    let served = || async { status(&client, "/courses").await == 200 };
    assert!(eventually(WAIT, served).await, "{tenant} is never served");
    Ok(())
}

async fn status(client: &TestClient, path: &str) -> u16 {
    client
        .get(path)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

// ---- the tests --------------------------------------------------------------------------

#[tokio::test]
async fn a_subscribed_tenant_is_served_with_its_plans_features() -> TestResult {
    let (market, service) = market_and_service("").await?;
    subscribe(&market, &service, "hallym", "premium").await?;
    subscribe(&market, &service, "korea", "basic").await?;

    // The provision command ran the service's migrations on each tenant's own database.
    let (hallym, korea) = (service.as_tenant("hallym"), service.as_tenant("korea"));
    let course = json!({"title": "데이터베이스 개론"});
    assert_eq!(
        hallym.post("/courses").json(&course).send().await?.status(),
        201
    );
    assert_eq!(
        hallym.get("/courses").send().await?.json(),
        &json!(["데이터베이스 개론"])
    );
    assert_eq!(korea.get("/courses").send().await?.json(), &json!([]));

    // The plan decides the features.
    assert_eq!(hallym.get("/quiz").send().await?.status(), 200);
    let refused = korea.get("/quiz").send().await?;
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json()["code"], "feature_not_available");

    service.stop().await?;
    market.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_block_refuses_the_tenant_until_it_is_lifted() -> TestResult {
    let (market, service) = market_and_service("").await?;
    subscribe(&market, &service, "snu", "basic").await?;
    let snu = service.as_tenant("snu");

    market
        .block("courses", "snu", "payment_overdue", "결제가 필요합니다")
        .await?;
    let blocked = || async {
        let response = snu.get("/courses").send().await;
        response.is_ok_and(|r| {
            r.status() == 403
                && r.json()["code"] == "tenant_blocked"
                && r.json()["detail"] == "결제가 필요합니다"
        })
    };
    assert!(eventually(WAIT, blocked).await, "the block never applied");

    market.unblock("courses", "snu").await?;
    assert!(eventually(WAIT, || async { status(&snu, "/courses").await == 200 }).await);

    service.stop().await?;
    market.stop().await?;
    Ok(())
}

#[tokio::test]
async fn the_markets_rs256_tokens_name_the_user_and_the_tenant() -> TestResult {
    // RS256: the service verifies the market's tokens against the keys it publishes, and
    // takes the tenant from the verified token.
    let (market, service) = market_and_service(
        "auth:\n  jwt:\n    algorithm: RS256\n\
         tenant_identification:\n  methods:\n    - type: jwt_claim\n    - type: header\n",
    )
    .await?;
    subscribe(&market, &service, "hallym", "premium").await?;

    let alice = TokenRequest::new("courses", "hallym", "alice").with_name("Alice Kim");
    let token = market.mint_token(&alice).await?;
    let me = service.client().bearer(&token).get("/me").send().await?;
    assert_eq!(me.status(), 200, "{}", me.text());
    assert_eq!(
        me.json(),
        &json!({"tenant": "hallym", "sub": "alice", "name": "Alice Kim"})
    );

    // A token for another service of the market is refused.
    market
        .register_service(&ServiceRegistration::new("other_service"))
        .await?;
    let elsewhere = TokenRequest::new("other_service", "hallym", "alice");
    let token = market.mint_token(&elsewhere).await?;
    let refused = service.client().bearer(&token).get("/me").send().await?;
    assert_eq!(refused.status(), 401);

    service.stop().await?;
    market.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_service_alone_has_its_own_tenants_and_tokens() -> TestResult {
    // Without a market, features come from `features.defaults`.
    let migrations = migrations()?;
    let config = TestConfig::new()
        .migrations(migrations.path())
        .yaml("features:\n  defaults:\n    quiz: true\n")
        .load()?;
    let service = TestService::start(config, app()).await?;
    service.create_tenant("hallym", "한림대학교").await?;
    service.create_tenant("korea", "고려대학교").await?;
    let (hallym, korea) = (service.as_tenant("hallym"), service.as_tenant("korea"));
    assert_eq!(korea.get("/quiz").send().await?.status(), 200);

    // The service's own HS256 tokens; one of hallym's is refused for korea.
    let token = service.token_with("hallym", "alice", json!({ "name": "Alice Kim" }))?;
    let me = hallym.bearer(&token).get("/me").send().await?;
    assert_eq!(me.json()["name"], "Alice Kim");
    let crossed = korea.bearer(&token).get("/me").send().await?;
    assert_eq!(crossed.status(), 403);
    assert_eq!(crossed.json()["code"], "cross_tenant_access");

    service.stop().await?;
    Ok(())
}
