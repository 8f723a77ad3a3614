//! `loadbench pg-bare DIR PORT`: the hand-written reference of the Postgres scenarios — axum +
//! sqlx doing the same work as mt-paas's `TenantDb` route, the way a vendor would write it
//! without a framework: the tenant from `X-Tenant-ID` or the first label of `Host`, checked
//! against the known tenants (404 otherwise), then `SELECT id, title FROM … LIMIT 10`.
//!
//! - `LOADBENCH_MODE=schema`: every tenant a schema `t…` of one database (`mtp_lbbare`), one
//!   pool of `LOADBENCH_POOL` (10) connections, schema-qualified SQL.
//! - `LOADBENCH_MODE=database`: every tenant a database `mtp_lbbare_t…`, one pool per
//!   database, opened on first use, of up to `LOADBENCH_PER_TENANT` (4) connections, as
//!   mt-paas's `pool_size_per_tenant` in the same run; while the pools hold `LOADBENCH_POOL`
//!   connections in all, a new one closes the least recently used others first (an LRU of
//!   pools, the usual hand-written answer). An evicted pool's connections close once their
//!   queries are done, so the total can briefly exceed the budget by the requests in flight.
//!
//! The data is made when missing, so a second start takes seconds.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

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
    Databases(DatabasePools),
}

/// Connections of one tenant database: `LOADBENCH_PER_TENANT` (4), for the bare server's
/// pools and mt-paas's `pool_size_per_tenant` alike.
pub(crate) fn per_tenant() -> u32 {
    u32::try_from(env_usize("LOADBENCH_PER_TENANT", 4).max(1)).unwrap_or(4)
}

/// The open pools by tenant, each with when it was last used.
type OpenPools = HashMap<String, (PgPool, u64)>;

/// The pools of the tenant databases: while they hold `total` connections, the least
/// recently used ones are closed to make room.
struct DatabasePools {
    urls: HashMap<String, String>,
    total: usize,
    idle: Duration,
    open: Mutex<(OpenPools, u64)>,
}

impl DatabasePools {
    fn pool(&self, tenant: &str) -> Option<PgPool> {
        let url = self.urls.get(tenant)?;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (pools, tick) = &mut *open;
        *tick += 1;
        if let Some((pool, used)) = pools.get_mut(tenant) {
            *used = *tick;
            return Some(pool.clone());
        }
        while pools
            .values()
            .map(|(p, _)| p.size() as usize)
            .sum::<usize>()
            >= self.total
        {
            let Some(oldest) = pools
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(t, _)| t.clone())
            else {
                break;
            };
            if let Some((pool, _)) = pools.remove(&oldest) {
                tokio::spawn(async move { pool.close().await });
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(per_tenant())
            .min_connections(0)
            .idle_timeout(self.idle)
            .connect_lazy(url)
            .ok()?;
        pools.insert(tenant.to_owned(), (pool.clone(), *tick));
        Some(pool)
    }
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
            let query = || {
                sqlx::query_as::<_, Course>("SELECT id, title FROM courses ORDER BY id LIMIT 10")
            };
            // A pool evicted between the lookup and the query: again, with a new pool.
            let mut tries = 0;
            loop {
                let pool = pools.pool(tenant).ok_or(StatusCode::NOT_FOUND)?;
                match query().fetch_all(&pool).await {
                    Err(sqlx::Error::PoolClosed) if tries < 5 => tries += 1,
                    rows => break rows,
                }
            }
        }
    };
    rows.map(Json).map_err(|e| {
        eprintln!("tenant {tenant}: {e}");
        StatusCode::INTERNAL_SERVER_ERROR
    })
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
    let idle = Duration::from_secs(u64::try_from(env_usize("LOADBENCH_IDLE", 300))?);
    let tenants = tenant_ids(n);
    let admin = PgPool::connect(&format!("{SERVER}/postgres")).await?;
    let pools = if std::env::var("LOADBENCH_MODE").as_deref() == Ok("database") {
        let mut urls = HashMap::new();
        for t in &tenants {
            let name = format!("mtp_lbbare_{t}");
            ensure_database(&admin, &name).await?;
            let url = format!("{SERVER}/{name}");
            let setup = PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await?;
            ensure_courses(&setup, None).await?;
            setup.close().await;
            urls.insert(t.clone(), url);
        }
        Pools::Databases(DatabasePools {
            urls,
            total,
            idle,
            open: Mutex::default(),
        })
    } else {
        ensure_database(&admin, "mtp_lbbare").await?;
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(total)?)
            .idle_timeout(idle)
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
