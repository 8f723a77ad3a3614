//! What a tenant connection is put through when a request gives it back, before anyone —
//! another tenant or the same tenant's next request — gets it (DESIGN §10, invariant 6).
//!
//! A handler holds a plain `&mut PgConnection` and may leave anything on it: a transaction
//! opened with a raw `BEGIN` (or failed inside one), temp tables (which Postgres searches
//! before any schema unless `pg_temp` is placed in the path), session settings
//! (`search_path`, `role`, `application_name`, ...), or a query still running because its
//! future was dropped. None of that can be seen from
//! outside the connection, so every returned connection is reset before its next use — by
//! the next checkout, in the one round trip that also puts it on that checkout's schema, or
//! in the background once it has been idle a moment ([`SWEEP_AFTER`]) — and only a
//! connection whose reset succeeded within [`RESET_TIMEOUT`] is used again; any other is
//! closed.
//!
//! [`SWEEP_AFTER`]: super::budget::SWEEP_AFTER
//!
//! The Postgres reset is [`PG_RESET`]: not `DISCARD ALL`, whose `DEALLOCATE ALL` would
//! invalidate sqlx's statement cache and cost every request a re-prepare. In
//! SCHEMA_PER_TENANT the same round trip puts the connection on its tenant's schema with
//! `pg_temp` last.
//!
//! SQLite (one file per tenant, so nothing can cross tenants): an open transaction is rolled
//! back, and a connection with temp tables is closed rather than reused.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};

use super::{budget::AnyConn, target::quote_ident};

/// How long a reset may take. A reset waits for whatever the connection still has in flight
/// (a query whose future was dropped): past this, the connection is closed instead.
pub(crate) const RESET_TIMEOUT: Duration = Duration::from_secs(1);

/// Postgres's "in failed SQL transaction": every statement but `ROLLBACK` is refused.
const IN_FAILED_TRANSACTION: &str = "25P02";

/// The session state a handler can leave, undone, in as few statements as do it (each one
/// costs a busy service about as much CPU as the query it serves): `SET SESSION
/// AUTHORIZATION DEFAULT` resets `role` and the session user, which `RESET ALL` leaves alone;
/// `RESET ALL` returns every setting, `application_name` and `search_path` included, to its
/// value at connect; `DISCARD TEMP` drops temp tables. Prepared statements stay (sqlx's
/// cache), and Postgres re-plans them when `search_path` changes. Not undone: cursors
/// declared `WITH HOLD`, `LISTEN`s, session advisory locks and the sequence cache behind
/// `lastval()` — each reached only by a handler that names it (`FETCH c`, `pg_advisory_lock`,
/// `lastval()`), none through sqlx's API; a handler that makes them releases them.
const PG_RESET: &str = "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DISCARD TEMP";

/// `SET search_path` to a tenant's schema. `pg_temp` is named last: unnamed, Postgres would
/// search it first, and a temp table could stand in for a tenant table.
pub(crate) fn switch_sql(schema: &str) -> String {
    format!("SET search_path TO {}, pg_temp", quote_ident(schema))
}

fn reset_sql(schema: Option<&str>) -> String {
    match schema {
        Some(schema) => format!("{PG_RESET}; {}", switch_sql(schema)),
        None => PG_RESET.to_owned(),
    }
}

/// Resets `conn` (and puts it on `schema`, when given). An error means the connection must
/// be closed, never reused.
pub(crate) async fn reset(conn: &mut AnyConn, schema: Option<&str>) -> Result<(), sqlx::Error> {
    match conn {
        AnyConn::Postgres(conn) => reset_with(conn, &reset_sql(schema)).await,
        AnyConn::Sqlite(conn) => reset_sqlite(conn).await,
    }
}

async fn reset_with(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    let sql = sql.to_owned();
    // sqlx tracks only the transactions it began itself, so the server is asked: `begin_with`
    // runs the reset, then reports the server's transaction status. "Not in a transaction"
    // (BeginFailed) is the common case and means the reset is done, in one round trip.
    let failed = match conn.begin_with(AssertSqlSafe(sql.clone())).await {
        Err(sqlx::Error::BeginFailed) => return Ok(()),
        // A transaction was open: the reset ran inside it and goes with it.
        Ok(transaction) => {
            transaction.rollback().await?;
            false
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(IN_FAILED_TRANSACTION) => true,
        // Anything else — a transaction sqlx still counts as open (a forgotten
        // `Transaction`), a broken connection, an error left by a dropped query — closes it.
        Err(e) => return Err(e),
    };
    if failed {
        sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
    }
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One call on SQLite's worker: the statement fails when the connection holds temp tables
/// (`json('!')` is evaluated only for a row of `temp.sqlite_schema`, and is malformed), and
/// `begin_with` reports whether a transaction is open.
const SQLITE_PROBE: &str = "SELECT json('!') FROM temp.sqlite_schema";

async fn reset_sqlite(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    match conn.begin_with(SQLITE_PROBE).await {
        Err(sqlx::Error::BeginFailed) => return Ok(()),
        Ok(transaction) => transaction.rollback().await?,
        Err(sqlx::Error::Database(e)) if e.message().contains("malformed JSON") => {
            return Err(temp_tables());
        }
        Err(e) => return Err(e),
    }
    // A transaction was open and is rolled back; temp tables made before it are still there.
    let temp: i64 = sqlx::query_scalar("SELECT count(*) FROM temp.sqlite_schema")
        .fetch_one(&mut *conn)
        .await?;
    if temp > 0 {
        return Err(temp_tables());
    }
    Ok(())
}

fn temp_tables() -> sqlx::Error {
    sqlx::Error::Protocol("the connection holds temp tables".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_ends_on_the_schema_with_pg_temp_last() {
        assert_eq!(
            reset_sql(Some("tenant_a")),
            "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DISCARD TEMP; SET search_path TO \"tenant_a\", pg_temp"
        );
        assert_eq!(reset_sql(None), PG_RESET);
    }
}
