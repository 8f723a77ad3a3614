//! pgvector: a table per collection in the tenant's own Postgres database (or, in
//! SCHEMA_PER_TENANT, its schema: the connection's `search_path` is the tenant's alone).
//! The extension lives in `public` and is named with its schema (`public.vector`,
//! `OPERATOR(public.<=>)`), so a tenant schema never needs `public` on its path.

use serde_json::{Map, Value};
use sqlx::{Connection as _, PgConnection};

use super::{Exported, Hit, TenantVectors, VectorError, VectorRecord, same_dimension};
use crate::core::database::{DbConn, TenantDb};

/// id, score, text, metadata.
type HitRow = (
    String,
    Option<f64>,
    Option<String>,
    sqlx::types::Json<Map<String, Value>>,
);

/// The quoted identifier of a stored name (built only from checked parts: no quote inside).
fn ident(stored: &str) -> String {
    format!("\"{}\"", stored.replace('"', ""))
}

fn postgres<'a>(db: &'a mut TenantDb, tenant: &str) -> Result<&'a mut PgConnection, VectorError> {
    match db.conn() {
        DbConn::Postgres(conn) => Ok(conn),
        DbConn::Sqlite(_) => Err(VectorError::Store(format!(
            "pgvector keeps vectors in Postgres, and tenant {tenant}'s database is SQLite"
        ))),
    }
}

/// The dimension of the table `stored`, if it exists.
async fn dimension(conn: &mut PgConnection, stored: &str) -> Result<Option<usize>, VectorError> {
    let ty: Option<String> = sqlx::query_scalar(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
         WHERE a.attrelid = to_regclass($1) AND a.attname = 'embedding' AND NOT a.attisdropped",
    )
    .bind(ident(stored))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(ty.and_then(|ty| {
        let inside = ty.rsplit_once('(')?.1.strip_suffix(')')?;
        inside.parse().ok()
    }))
}

async fn existing(conn: &mut PgConnection, stored: &str, name: &str) -> Result<usize, VectorError> {
    dimension(conn, stored)
        .await?
        .ok_or_else(|| VectorError::NotFound(name.to_owned()))
}

async fn ensure_extension(conn: &mut PgConnection) -> Result<(), VectorError> {
    for attempt in 0..2 {
        match sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
            .execute(&mut *conn)
            .await
        {
            Ok(_) => return Ok(()),
            // Two tenants creating it at once: the loser sees a unique violation; retry.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() && attempt == 0 => {}
            Err(e) => {
                return Err(VectorError::Store(format!(
                    "pgvector: the vector extension cannot be created (is postgresql-*-pgvector installed?): {e}"
                )));
            }
        }
    }
    Ok(())
}

async fn create(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    dimension_wanted: usize,
) -> Result<(), VectorError> {
    let mut db = v.database().await?;
    let conn = postgres(&mut db, v.id.as_str())?;
    if let Some(existing) = dimension(conn, stored).await? {
        return same_dimension(name, existing, dimension_wanted);
    }
    ensure_extension(conn).await?;
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {table} (\
            id TEXT PRIMARY KEY, \
            embedding public.vector({dimension_wanted}) NOT NULL, \
            text TEXT, \
            metadata JSONB NOT NULL DEFAULT '{{}}')",
        table = ident(stored),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn list(v: &TenantVectors) -> Result<Vec<String>, VectorError> {
    let mut db = v.database().await?;
    let conn = postgres(&mut db, v.id.as_str())?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c \
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' \
           AND starts_with(c.relname::text, $1)",
    )
    .bind(v.prefix())
    .fetch_all(&mut *conn)
    .await?;
    Ok(names)
}

async fn drop(v: &TenantVectors, stored: &str) -> Result<bool, VectorError> {
    let mut db = v.database().await?;
    let conn = postgres(&mut db, v.id.as_str())?;
    if dimension(conn, stored).await?.is_none() {
        return Ok(false);
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {}",
        ident(stored)
    )))
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

async fn upsert(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    records: &[VectorRecord],
) -> Result<(), VectorError> {
    let mut db = v.database().await?;
    let conn = postgres(&mut db, v.id.as_str())?;
    let dimension = existing(conn, stored, name).await?;
    for record in records {
        record.check(name, dimension)?;
    }
    let sql = format!(
        "INSERT INTO {} (id, embedding, text, metadata) \
         VALUES ($1, $2::real[]::public.vector, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, \
           text = EXCLUDED.text, metadata = EXCLUDED.metadata",
        ident(stored)
    );
    let mut tx = conn.begin().await?;
    for record in records {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&record.id)
            .bind(&record.embedding)
            .bind(record.text.as_deref())
            .bind(sqlx::types::Json(&record.metadata))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn search(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    query: &[f32],
    limit: usize,
) -> Result<Vec<Hit>, VectorError> {
    let mut db = v.database().await?;
    let conn = postgres(&mut db, v.id.as_str())?;
    let dimension = existing(conn, stored, name).await?;
    same_dimension(name, dimension, query.len())?;
    let sql = format!(
        "SELECT id, (1 - (embedding OPERATOR(public.<=>) $1::real[]::public.vector))::float8, \
                text, metadata \
         FROM {} ORDER BY embedding OPERATOR(public.<=>) $1::real[]::public.vector LIMIT $2",
        ident(stored)
    );
    let rows: Vec<HitRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(query)
        .bind(i64::try_from(limit).unwrap_or(1000))
        .fetch_all(&mut *conn)
        .await?;
    #[allow(clippy::cast_possible_truncation)]
    Ok(rows
        .into_iter()
        .map(|(id, score, text, metadata)| Hit {
            id,
            score: score.unwrap_or(0.0) as f32,
            text,
            metadata: metadata.0,
        })
        .collect())
}

async fn delete(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    ids: &[&str],
) -> Result<(), VectorError> {
    let mut db = v.database().await?;
    let conn = postgres(&mut db, v.id.as_str())?;
    existing(conn, stored, name).await?;
    let sql = format!("DELETE FROM {} WHERE id = ANY($1)", ident(stored));
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn count(v: &TenantVectors, stored: &str, name: &str) -> Result<u64, VectorError> {
    let mut db = v.database().await?;
    let conn = postgres(&mut db, v.id.as_str())?;
    existing(conn, stored, name).await?;
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {}",
        ident(stored)
    )))
    .fetch_one(&mut *conn)
    .await?;
    Ok(u64::try_from(n).unwrap_or_default())
}

/// No export of its own: the tables travel in the tenant database's dump.
async fn export(_: &TenantVectors, _: &str, _: &str) -> Result<Option<Exported>, VectorError> {
    Ok(None)
}

/// The `pgvector` backend: its tables travel in the tenant database's dump.
pub(super) struct Pgvector;

/// The tables live in the tenant's own database.
const IN_TENANT_DATABASE: bool = true;

super::backend_of_this_module!(Pgvector);
