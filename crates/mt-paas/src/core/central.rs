//! [`CentralDb`]: the service's own database (seed `database.central`): the tenant registry
//! and, as the framework grows, entitlements, kill-switch state and the outbox.
//!
//! SQLite (a file, the embedded default) or Postgres (production, several replicas). The
//! schema is managed by migrations embedded in the SDK and applied on start.

use std::{str::FromStr, time::Duration};

use sqlx::{
    PgPool, SqlitePool,
    migrate::{MigrateDatabase, Migrator},
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::config::{CentralDatabaseConfig, DatabaseKind, DatabaseUrl};

/// The Postgres channel on which replicas announce changes to each other.
pub(crate) const CHANGES_CHANNEL: &str = "mt_paas_changes";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/central/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/central/postgres");

/// The central database: a pool on SQLite or on Postgres. (Exhaustive by design: the two
/// engines are what [`on_pool!`](crate::on_pool) expands to.)
#[derive(Debug, Clone)]
pub enum CentralDb {
    /// A SQLite file.
    Sqlite(SqlitePool),
    /// A Postgres database.
    Postgres(PgPool),
}

/// Why the central database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CentralDbError {
    /// The URL names neither SQLite nor Postgres.
    #[error("database.central.url: {url} is not a sqlite: or postgresql: URL")]
    UnsupportedUrl {
        /// The URL, password redacted.
        url: String,
    },
    /// The URL could not be parsed.
    #[error("database.central.url: {url} cannot be parsed: {source}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// The parser's error.
        source: sqlx::Error,
    },
    /// The directory of the SQLite file could not be created.
    #[error("database.central.url: cannot create the directory {dir}: {source}")]
    CreateDir {
        /// The directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database could not be reached or created.
    #[error("database.central.url: cannot connect to {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("central DB migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Runs the same sqlx code on whichever pool a [`CentralDb`] holds: `$pool` is bound to the
/// `SqlitePool` or the `PgPool`. The SQL must be valid for both engines (`$1` placeholders
/// work on both).
///
/// ```no_run
/// # async fn demo(db: mt_paas::CentralDb) -> Result<(), sqlx::Error> {
/// let tenants: i64 = mt_paas::on_pool!(&db, pool => {
///     sqlx::query_scalar("SELECT COUNT(*) FROM tenants").fetch_one(pool).await?
/// });
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::CentralDb::Sqlite($pool) => $body,
            $crate::CentralDb::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

impl CentralDb {
    /// Opens the database at `config.url` (creating the SQLite file or the Postgres database
    /// when missing) and applies the SDK's migrations.
    pub async fn connect(config: &CentralDatabaseConfig) -> Result<Self, CentralDbError> {
        let db = Self::open(&config.url, config.pool_size).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Opens a pool of at most `pool_size` connections without migrating.
    pub async fn open(url: &DatabaseUrl, pool_size: u32) -> Result<Self, CentralDbError> {
        let redacted = url.redacted();
        match url.kind() {
            Some(DatabaseKind::Sqlite) => {
                let options = SqliteConnectOptions::from_str(url.expose())
                    .map_err(|source| CentralDbError::InvalidUrl {
                        url: redacted.clone(),
                        source,
                    })?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true);
                if let Some(dir) = options.get_filename().parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|source| CentralDbError::CreateDir {
                        dir: dir.display().to_string(),
                        source,
                    })?;
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(pool_size)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(|source| CentralDbError::Connect {
                        url: redacted,
                        source,
                    })?;
                Ok(Self::Sqlite(pool))
            }
            Some(DatabaseKind::Postgres) => {
                let options = url
                    .pg_options()
                    .map_err(|source| CentralDbError::InvalidUrl {
                        url: redacted.clone(),
                        source,
                    })?;
                let connect_error = |source| CentralDbError::Connect {
                    url: redacted.clone(),
                    source,
                };
                if !sqlx::Postgres::database_exists(url.expose())
                    .await
                    .map_err(connect_error)?
                {
                    match sqlx::Postgres::create_database(url.expose()).await {
                        Ok(()) => {}
                        // Another replica created it meanwhile.
                        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
                        Err(e) => return Err(connect_error(e)),
                    }
                }
                let pool = PgPoolOptions::new()
                    .max_connections(pool_size)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                Ok(Self::Postgres(pool))
            }
            None => Err(CentralDbError::UnsupportedUrl { url: redacted }),
        }
    }

    /// Applies the SDK's migrations (idempotent; safe with several replicas).
    pub async fn migrate(&self) -> Result<(), CentralDbError> {
        match self {
            Self::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Self::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))
    }

    /// The engine.
    pub fn kind(&self) -> DatabaseKind {
        match self {
            Self::Sqlite(_) => DatabaseKind::Sqlite,
            Self::Postgres(_) => DatabaseKind::Postgres,
        }
    }

    /// Tells the other replicas on this central DB that `key` of `topic` changed
    /// (`kill_switch`, `entitlement`, `tenant`): Postgres `NOTIFY` on `mt_paas_changes`,
    /// nothing on SQLite (one process). Best effort: replicas also re-read periodically.
    pub async fn notify(&self, topic: &str, key: &str) {
        let result = match self {
            Self::Postgres(pool) => sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES_CHANNEL)
                .bind(format!("{topic}:{key}"))
                .execute(pool)
                .await
                .map(drop),
            // Read by the other processes' change feeds ([`Changes`]).
            Self::Sqlite(pool) => {
                sqlx::query("INSERT INTO changes (topic, key, at) VALUES ($1, $2, $3)")
                    .bind(topic)
                    .bind(key)
                    .bind(time::OffsetDateTime::now_utc())
                    .execute(pool)
                    .await
                    .map(drop)
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, topic, "notifying the other replicas failed");
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }
}

/// How often a process on a SQLite central DB reads the changes the others announced.
pub(crate) const CHANGE_POLL: Duration = Duration::from_millis(200);

/// The change feed of a SQLite central DB: what other processes announced since the last
/// read. (On Postgres, `LISTEN` does this.)
#[derive(Debug)]
pub(crate) struct Changes {
    pool: SqlitePool,
    last: i64,
    pruned: std::time::Instant,
}

impl Changes {
    /// A feed starting after what is already there.
    pub(crate) async fn open(pool: SqlitePool) -> Result<Self, sqlx::Error> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM changes")
            .fetch_one(&pool)
            .await?;
        Ok(Self {
            pool,
            last: last.unwrap_or(0),
            pruned: std::time::Instant::now(),
        })
    }

    /// The `(topic, key)` pairs announced since the last call, oldest first.
    pub(crate) async fn next(&mut self) -> Result<Vec<(String, String)>, sqlx::Error> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, topic, key FROM changes WHERE seq > $1 ORDER BY seq LIMIT 1000",
        )
        .bind(self.last)
        .fetch_all(&self.pool)
        .await?;
        if let Some((seq, ..)) = rows.last() {
            self.last = *seq;
        }
        if self.pruned.elapsed() > Duration::from_secs(60) {
            self.pruned = std::time::Instant::now();
            let before = time::OffsetDateTime::now_utc() - Duration::from_secs(600);
            sqlx::query("DELETE FROM changes WHERE at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?;
        }
        Ok(rows.into_iter().map(|(_, t, k)| (t, k)).collect())
    }
}

impl crate::http::ApiError {
    /// The 503 for a central-DB failure on the request path (`Retry-After: 5`); the cause is
    /// logged by the problem layer.
    pub fn central(error: impl std::fmt::Display) -> Self {
        Self::new(crate::http::ProblemCode::CentralDbUnavailable)
            .header(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            )
            .cause(error)
    }
}
