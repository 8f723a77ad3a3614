//! A pooled connection carries nothing from one request to the next (DESIGN §10.6): a handler
//! that leaves a temp table named like a tenant table, session settings, an open or failed
//! transaction, or a query still running, on a budget of ONE connection, and the next
//! request — of another tenant or the same one — sees none of it.

use std::time::Duration;

use axum::{Json, Router, routing::get};
use mt_paas::{TenantDb, http::ApiError};
use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::{
    helpers::{Store, TestApp, TestDb},
    isolation_read, isolation_routes, isolation_write,
};

fn pg(db: &mut TenantDb) -> &mut PgConnection {
    match db.conn() {
        mt_paas::DbConn::Postgres(conn) => conn,
        mt_paas::DbConn::Sqlite(_) => panic!("a Postgres test"),
    }
}

async fn exec(conn: &mut PgConnection, sql: &'static str) -> Result<(), ApiError> {
    sqlx::raw_sql(sql)
        .execute(conn)
        .await
        .map(drop)
        .map_err(ApiError::database)
}

/// Everything a careless handler can leave behind, then a normal answer.
async fn careless(mut db: TenantDb) -> Result<Json<Value>, ApiError> {
    let conn = pg(&mut db);
    exec(
        conn,
        "CREATE TEMP TABLE notes (id BIGINT, tenant TEXT, value BIGINT); \
         INSERT INTO pg_temp.notes VALUES (1, 'intruder', 666)",
    )
    .await?;
    exec(conn, "SET application_name = 'careless'").await?;
    exec(conn, "SET statement_timeout = '1234s'").await?;
    exec(
        conn,
        "BEGIN; INSERT INTO notes (tenant, value) VALUES ('uncommitted', 999)",
    )
    .await?;
    exec(conn, "SET search_path TO public").await?;
    exec(conn, "SET ROLE pg_read_all_data").await?;
    Ok(Json(json!({"left": "everything"})))
}

/// A transaction left failed: every statement on it would be refused.
async fn failed(mut db: TenantDb) -> Result<Json<Value>, ApiError> {
    let conn = pg(&mut db);
    exec(conn, "BEGIN").await?;
    let _ = exec(conn, "SELECT 1 / 0").await;
    Ok(Json(json!({"left": "a failed transaction"})))
}

/// A query whose future is dropped while the server still runs it.
async fn abandoned(mut db: TenantDb) -> Json<Value> {
    let conn = pg(&mut db);
    let query = sqlx::query("SELECT pg_sleep(3)").execute(conn);
    let _ = tokio::time::timeout(Duration::from_millis(100), query).await;
    Json(json!({"left": "a running query"}))
}

/// What the connection is like.
async fn inspect(mut db: TenantDb) -> Result<Json<Value>, ApiError> {
    let conn = pg(&mut db);
    let row: (String, String, String, String, i64, bool) = sqlx::query_as(
        "SELECT current_setting('search_path'), current_user::text, \
                current_setting('application_name'), current_setting('statement_timeout'), \
                (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()), \
                txid_current_if_assigned() IS NULL",
    )
    .fetch_one(conn)
    .await
    .map_err(ApiError::database)?;
    Ok(Json(json!({
        "search_path": row.0,
        "user": row.1,
        "application_name": row.2,
        "statement_timeout": row.3,
        "temp_tables": row.4,
        "fresh_transaction": row.5,
    })))
}

fn routes() -> Router {
    isolation_routes()
        .route("/careless", get(careless))
        .route("/failed", get(failed))
        .route("/abandoned", get(abandoned))
        .route("/inspect", get(inspect))
}

async fn clean(app: &TestApp, tenant: &str, store: Store) {
    let answer = app
        .get("/inspect", &[("x-tenant-id", tenant.as_bytes())])
        .await;
    assert_eq!(answer.status, 200, "{tenant}: {:?}", answer.body);
    let body = &answer.body;
    let path = body["search_path"].as_str().unwrap_or_default();
    match store {
        Store::PgSchemas => assert_eq!(path, format!("tenant_{tenant}, pg_temp"), "{body}"),
        _ => assert_eq!(path, "\"$user\", public", "{body}"),
    }
    assert_eq!(body["user"], "postgres", "{body}");
    assert!(
        body["application_name"]
            .as_str()
            .is_some_and(|n| n.starts_with("mt-paas ")),
        "{body}"
    );
    assert_eq!(body["statement_timeout"], "0", "{body}");
    assert_eq!(body["temp_tables"], 0, "{body}");
    assert_eq!(
        body["fresh_transaction"], true,
        "no transaction left open: {body}"
    );
}

async fn nothing_crosses(store: Store) {
    let Some(db) = TestDb::new(store.backend()).await else {
        return;
    };
    let app = TestApp::new(db.tenant_config(store, 1, ""), routes()).await;
    for tenant in ["a", "b"] {
        app.framework
            .provisioner()
            .create(tenant.parse().unwrap(), tenant, None)
            .await
            .unwrap();
        isolation_write(&app, tenant, 1).await;
    }
    for (handler, left) in [
        ("/careless", "everything"),
        ("/failed", "a failed transaction"),
        ("/abandoned", "a running query"),
    ] {
        let answer = app.get(handler, &[("x-tenant-id", b"a")]).await;
        assert_eq!(answer.body["left"], left, "{handler}: {:?}", answer.body);
        // The same tenant, then the other: on the one connection (schemas) or the same
        // tenant's next request on it (databases), never seeing what the handler left.
        for tenant in ["a", "b"] {
            clean(&app, tenant, store).await;
            assert_eq!(
                isolation_read(&app, tenant).await,
                vec![(tenant.to_owned(), 1)],
                "after {handler}, {tenant} reads its own rows only"
            );
        }
    }
    assert!(app.framework.databases().open_connections() <= 1);
    db.cleanup().await;
}

#[tokio::test]
async fn nothing_crosses_on_postgres_schemas() {
    nothing_crosses(Store::PgSchemas).await;
}

#[tokio::test]
async fn nothing_crosses_on_postgres_databases() {
    nothing_crosses(Store::PgDatabases).await;
}

/// What a handler's database error means for the caller.
async fn erring(
    mut db: TenantDb,
    axum::extract::Path(what): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let result = mt_paas::with_db!(db, conn => {
        match what.as_str() {
            "missing" => sqlx::query_scalar::<_, i64>("SELECT value FROM notes WHERE value = -1")
                .fetch_one(&mut *conn)
                .await
                .map(drop),
            "duplicate" => {
                let _ = sqlx::raw_sql("CREATE UNIQUE INDEX notes_value_unique ON notes (value)")
                    .execute(&mut *conn)
                    .await;
                let insert = "INSERT INTO notes (tenant, value) VALUES ('x', 7)";
                let _ = sqlx::query(insert).execute(&mut *conn).await;
                sqlx::query(insert).execute(&mut *conn).await.map(drop)
            }
            _ => sqlx::query("SELECT no_such_column FROM notes")
                .execute(&mut *conn)
                .await
                .map(drop),
        }
    });
    result.map_err(ApiError::database)?;
    Ok(Json(json!({})))
}

async fn database_errors(store: Store) {
    let Some(db) = TestDb::new(store.backend()).await else {
        return;
    };
    let routes = Router::new().route("/err/{what}", get(erring));
    let app = TestApp::new(db.tenant_config(store, 2, ""), routes).await;
    app.framework
        .provisioner()
        .create("a".parse().unwrap(), "a", None)
        .await
        .unwrap();
    let get = |what: &'static str| {
        let app = &app;
        async move {
            app.get(&format!("/err/{what}"), &[("x-tenant-id", b"a")])
                .await
        }
    };
    get("missing")
        .await
        .assert_problem(404, "resource_not_found");
    let duplicate = get("duplicate").await;
    duplicate.assert_problem(409, "constraint_violation");
    if store != Store::SqliteFiles {
        assert_eq!(duplicate.body["constraint"], "notes_value_unique");
    }
    // A bug in the handler's SQL is ours to fix: 500, the cause logged, not shown.
    let bug = get("bug").await;
    bug.assert_problem(500, "internal_error");
    assert!(!bug.body.to_string().contains("no_such_column"));
    db.cleanup().await;
}

#[tokio::test]
async fn database_errors_answer_what_they_mean_on_postgres() {
    database_errors(Store::PgSchemas).await;
}

#[tokio::test]
async fn database_errors_answer_what_they_mean_on_sqlite() {
    database_errors(Store::SqliteFiles).await;
}
