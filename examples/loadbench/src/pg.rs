//! `loadbench pg-bare DIR PORT`: the hand-written reference of the Postgres scenarios — axum +
//! sqlx doing the same work as mt-paas's `TenantDb` route, the way a vendor would write it
//! without a framework: the tenant from `X-Tenant-ID` or the first label of `Host`, checked
//! against the known tenants (404 otherwise), then `SELECT id, title FROM … LIMIT 10`.
//!
//! - `LOADBENCH_MODE=schema`: every tenant a schema `t…` of one database (`mtp_lbbare`), one
//!   pool of `LOADBENCH_POOL` (10) connections, schema-qualified SQL.
//! - `LOADBENCH_MODE=database`: every tenant a database `mtp_lbbare_t…`, one pool per
//!   database with `LOADBENCH_POOL / LOADBENCH_TENANTS` (at least 1) connections, so the
//!   total is the same.
//!
//! The data is made when missing, so a second start takes seconds.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::get,
};
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::Course;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `t000`, `t001`, …: the tenants of every scenario (the same ids mt-paas serves).
pub(crate) fn tenant_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i:03}")).collect()
}

enum Pools {
    /// One pool; the schema is named in the SQL.
    Schemas(PgPool, Arc<HashMap<String, String>>),
    /// One pool per tenant database; the SQL per tenant is the same.
    Databases(Arc<HashMap<String, PgPool>>),
}

#[derive(Clone)]
struct Bare(Arc<Pools>);

/// The tenant a request names, as a hand-written server would read it.
fn tenant_of(headers: &HeaderMap) -> Option<&str> {
    if let Some(t) = headers.get("x-tenant-id").and_then(|v| v.to_str().ok()) {
        return Some(t);
    }
    let host = headers.get("host").and_then(|v| v.to_str().ok())?;
    host.split('.').next()
}

async fn courses(
    State(bare): State<Bare>,
    headers: HeaderMap,
) -> Result<Json<Vec<Course>>, StatusCode> {
    let tenant = tenant_of(&headers).ok_or(StatusCode::BAD_REQUEST)?;
    let rows = match &*bare.0 {
        Pools::Schemas(pool, sql) => {
            let sql = sql.get(tenant).ok_or(StatusCode::NOT_FOUND)?;
            sqlx::query_as::<_, Course>(sqlx::AssertSqlSafe(sql.as_str()))
                .fetch_all(pool)
                .await
        }
        Pools::Databases(pools) => {
            let pool = pools.get(tenant).ok_or(StatusCode::NOT_FOUND)?;
            sqlx::query_as::<_, Course>("SELECT id, title FROM courses ORDER BY id LIMIT 10")
                .fetch_all(pool)
                .await
        }
    };
    rows.map(Json)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

async fn ensure_database(admin: &PgPool, name: &str) -> anyhow::Result<()> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(admin)
        .await?;
    if exists.is_none() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin)
            .await?;
    }
    Ok(())
}

/// `courses` with ten rows in `schema` (or the default one), when missing.
async fn ensure_courses(pool: &PgPool, schema: Option<&str>) -> anyhow::Result<()> {
    let table = match schema {
        Some(s) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {s}"
            )))
            .execute(pool)
            .await?;
            format!("{s}.courses")
        }
        None => "courses".to_owned(),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (id BIGSERIAL PRIMARY KEY, title TEXT NOT NULL); \
         INSERT INTO {table} (title) SELECT '강좌 ' || g FROM generate_series(1, 10 - (SELECT COUNT(*) FROM {table})::int) g"
    )))
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn pg_bare(port: u16) -> anyhow::Result<()> {
    let n = env_usize("LOADBENCH_TENANTS", 100);
    let total = env_usize("LOADBENCH_POOL", 10);
    // Seconds an idle connection stays open (`LOADBENCH_IDLE`), as mt-paas's idle timeout.
    let idle = u64::try_from(env_usize("LOADBENCH_IDLE", 300))?;
    let tenants = tenant_ids(n);
    let admin = PgPool::connect(&format!("{SERVER}/postgres")).await?;
    let pools = if std::env::var("LOADBENCH_MODE").as_deref() == Ok("database") {
        let per = u32::try_from((total / n).max(1))?;
        let mut pools = HashMap::new();
        for t in &tenants {
            let name = format!("mtp_lbbare_{t}");
            ensure_database(&admin, &name).await?;
            let pool = PgPoolOptions::new()
                .max_connections(per)
                .min_connections(0)
                .idle_timeout(std::time::Duration::from_secs(idle))
                .connect(&format!("{SERVER}/{name}"))
                .await?;
            ensure_courses(&pool, None).await?;
            pools.insert(t.clone(), pool);
        }
        Pools::Databases(Arc::new(pools))
    } else {
        ensure_database(&admin, "mtp_lbbare").await?;
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(total)?)
            .idle_timeout(std::time::Duration::from_secs(idle))
            .connect(&format!("{SERVER}/mtp_lbbare"))
            .await?;
        let mut sql = HashMap::new();
        for t in &tenants {
            ensure_courses(&pool, Some(t)).await?;
            sql.insert(
                t.clone(),
                format!("SELECT id, title FROM {t}.courses ORDER BY id LIMIT 10"),
            );
        }
        Pools::Schemas(pool, Arc::new(sql))
    };
    admin.close().await;
    let app = Router::new()
        .route("/courses", get(courses))
        .with_state(Bare(Arc::new(pools)));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("ready");
    axum::serve(listener, app).await?;
    Ok(())
}
