//! [`DatabaseRouter`] and the [`TenantDb`] extractor: a connection to the request's tenant's
//! own database, whatever the isolation mode (DESIGN §5.2).
//!
//! The same handler runs in every mode and on SQLite or Postgres; [`with_db!`](crate::with_db)
//! runs one block of sqlx code on whichever connection the tenant has:
//!
//! ```no_run
//! use axum::Json;
//! use mt_paas::{TenantDb, http::ApiError, with_db};
//!
//! #[derive(serde::Serialize, sqlx::FromRow)]
//! struct Course { id: i64, title: String }
//!
//! async fn list_courses(mut db: TenantDb) -> Result<Json<Vec<Course>>, ApiError> {
//!     let courses = with_db!(db, conn => {
//!         sqlx::query_as::<_, Course>("SELECT id, title FROM courses ORDER BY id")
//!             .fetch_all(conn)
//!             .await
//!     })
//!     .map_err(ApiError::database)?;
//!     Ok(Json(courses))
//! }
//! ```
//!
//! - DATABASE_PER_TENANT: a SQLite file or a Postgres database per tenant;
//! - SCHEMA_PER_TENANT: one Postgres database; a connection is on the tenant's schema (with
//!   `pg_temp` last) before it is handed out, so no query runs with another tenant's
//!   `search_path`, and the connection count does not grow with the tenant count;
//! - DOCKER_PER_TENANT: the database in the tenant's own stack, at its port block.
//!
//! Connections are opened lazily and bounded by one budget for all tenants
//! (`database.tenant.max_connections`); a tenant holds at most
//! `database.tenant.pool_size_per_tenant` at once; idle ones close after
//! `idle_timeout_seconds`, and the least recently used idle one makes room when the budget is
//! full.
//!
//! Whatever a handler leaves on its connection — an open or failed transaction, temp tables,
//! session settings, a query still running — is undone before the connection is used again,
//! or the connection is closed ([`session`]).

mod budget;
mod session;
pub(crate) mod target;

use std::{sync::Arc, time::Duration};

use crate::core::slots::TenantSlots;
use axum::extract::FromRequestParts;
use http::{HeaderValue, header, request::Parts};
use sqlx::{
    Connection, PgConnection, SqliteConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) use self::budget::AnyConn;
use self::budget::{Budget, BudgetError, Lease};
pub(crate) use self::target::{Target, TargetError, docker_database_url, quote_ident};
#[cfg(feature = "docker")]
pub(crate) use self::target::{db_port, router_key};
use crate::{
    config::{Config, DatabaseKind},
    core::{
        models::{TenantId, TenantRecord},
        tenant::Tenant,
    },
    http::{ApiError, ProblemCode},
};

/// Why no tenant connection could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The tenant's database cannot be derived from the configuration.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The budget stayed full, or the tenant held its maximum, for the acquire timeout.
    #[error("tenant {tenant}: no connection free within {waited:?}")]
    Timeout {
        /// The tenant.
        tenant: TenantId,
        /// How long the request waited.
        waited: Duration,
    },
    /// The database refused or failed.
    #[error("tenant {tenant}: {source}")]
    Connect {
        /// The tenant.
        tenant: TenantId,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// No tenant in scope (outside a tenant route).
    #[error("no tenant in scope: get_tenant_db() works inside a tenant route")]
    NoTenant,
}

/// Routes each tenant to its database, within one connection budget.
#[derive(Clone)]
pub struct DatabaseRouter {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    budget: Arc<Budget>,
    per_tenant: usize,
    acquire_timeout: Duration,
    /// Each tenant's connection permits (`pool_size_per_tenant`).
    permits: TenantSlots<Semaphore>,
}

/// Where a tenant's data lives and the budget's key for its connections.
#[derive(Debug)]
pub(crate) struct Placement {
    target: Target,
    key: Arc<str>,
    /// The schema of a SCHEMA_PER_TENANT target.
    schema: Option<Arc<str>>,
}

impl Placement {
    fn new(target: Target) -> Self {
        let key = target.pool_key();
        let schema = match &target {
            Target::PgSchema { schema, .. } => Some(Arc::from(schema.as_str())),
            _ => None,
        };
        Self {
            target,
            key,
            schema,
        }
    }
}

impl std::fmt::Debug for DatabaseRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseRouter")
            .field("open_connections", &self.open_connections())
            .finish_non_exhaustive()
    }
}

impl DatabaseRouter {
    /// A router for `config.database.tenant`.
    pub fn new(config: Arc<Config>) -> Self {
        let tenant_db = &config.database.tenant;
        let acquire_timeout = Duration::from_millis(tenant_db.acquire_timeout_ms);
        let budget = Budget::new(
            usize::try_from(tenant_db.max_connections).unwrap_or(usize::MAX),
            Duration::from_secs(tenant_db.idle_timeout_seconds),
            acquire_timeout,
        );
        Self {
            inner: Arc::new(Inner {
                per_tenant: usize::try_from(tenant_db.pool_size_per_tenant)
                    .unwrap_or(1)
                    .max(1),
                acquire_timeout,
                budget,
                // A semaphore no request holds or waits on has all its permits: no state.
                permits: TenantSlots::new(|_| true),
                config,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Where `record`'s data lives.
    pub fn target(&self, record: &TenantRecord) -> Result<Target, TargetError> {
        Target::of(&self.inner.config, record)
    }

    /// Connections open to tenant databases right now (idle and in use).
    pub fn open_connections(&self) -> usize {
        self.inner.budget.open()
    }

    /// A connection to `tenant`'s database.
    pub async fn acquire(&self, tenant: &Tenant) -> Result<TenantDb, DbError> {
        let cell = tenant.placement_cell();
        let placement = match cell.get() {
            Some(placement) => placement.clone(),
            None => {
                let placement = Arc::new(Placement::new(self.target(tenant.record())?));
                cell.get_or_init(|| placement).clone()
            }
        };
        self.acquire_placement(tenant.id(), &placement).await
    }

    /// A connection to `target` on behalf of `id` (provisioning and migrations use this with
    /// a target they derived themselves).
    pub async fn acquire_target(
        &self,
        id: &TenantId,
        target: &Target,
    ) -> Result<TenantDb, DbError> {
        self.acquire_placement(id, &Placement::new(target.clone()))
            .await
    }

    async fn acquire_placement(
        &self,
        id: &TenantId,
        placement: &Placement,
    ) -> Result<TenantDb, DbError> {
        let per_tenant = self.inner.per_tenant;
        let semaphore = self
            .inner
            .permits
            .get_or_insert_with(id, || Semaphore::new(per_tenant));
        let timeout = || DbError::Timeout {
            tenant: id.clone(),
            waited: self.inner.acquire_timeout,
        };
        // A free permit is taken at once; only a wait needs a timer.
        let permit = match semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(self.inner.acquire_timeout, semaphore.acquire_owned())
                .await
                .map_err(|_| timeout())?
                .map_err(|_| timeout())?,
        };
        let target = &placement.target;
        // Reset from its last request and on the tenant's schema (`budget` does both).
        let lease = self
            .inner
            .budget
            .checkout(&placement.key, placement.schema.as_ref(), || {
                connect(target, &self.inner.config.service.id)
            })
            .await
            .map_err(|e| match e {
                BudgetError::Timeout(_) => timeout(),
                BudgetError::Connect(source) => DbError::Connect {
                    tenant: id.clone(),
                    source,
                },
            })?;
        Ok(TenantDb {
            lease,
            _permit: permit,
            tenant: id.clone(),
        })
    }

    /// Closes every idle tenant connection (at shutdown, after the last request).
    pub async fn close_idle(&self) {
        self.inner.budget.close_idle().await;
    }

    /// Closes every connection to `target`, a tenant's own database, before it is dropped
    /// or restored. (A schema's connections are shared and stay open.)
    pub async fn close_target(&self, target: &Target) {
        if !matches!(target, Target::PgSchema { .. }) {
            self.inner.budget.close_target(&target.pool_key()).await;
        }
    }
}

async fn connect(target: &Target, service_id: &str) -> Result<AnyConn, sqlx::Error> {
    match target {
        Target::SqliteFile { path } => {
            let options = SqliteConnectOptions::new()
                .filename(path)
                // A tenant's file is made by provisioning; a missing one is an error, never a
                // fresh empty database.
                .create_if_missing(false)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            Ok(AnyConn::Sqlite(
                SqliteConnection::connect_with(&options).await?,
            ))
        }
        Target::PgDatabase { url, .. } | Target::PgSchema { url, .. } => {
            // Named, so an operator can tell the service's connections in pg_stat_activity.
            let options = url
                .pg_options()?
                .application_name(&format!("mt-paas {service_id} tenants"));
            Ok(AnyConn::Postgres(
                PgConnection::connect_with(&options).await?,
            ))
        }
    }
}

/// A connection to one tenant's database, held for the request (the [`TenantDb`] extractor,
/// or [`ServiceMarketFramework::get_tenant_db`](crate::ServiceMarketFramework::get_tenant_db)).
/// Returned for reuse when dropped.
pub struct TenantDb {
    lease: Lease,
    _permit: OwnedSemaphorePermit,
    tenant: TenantId,
}

impl std::fmt::Debug for TenantDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantDb")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// The connection inside a [`TenantDb`]: use it through [`with_db!`](crate::with_db), or
/// match on it for engine-specific SQL.
#[derive(Debug)]
pub enum DbConn<'a> {
    /// A SQLite connection.
    Sqlite(&'a mut SqliteConnection),
    /// A Postgres connection (its own database, or the shared one with the tenant's schema).
    Postgres(&'a mut PgConnection),
}

impl TenantDb {
    /// The tenant this connection belongs to.
    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant
    }

    /// The connection.
    pub fn conn(&mut self) -> DbConn<'_> {
        match self.lease.conn() {
            AnyConn::Sqlite(c) => DbConn::Sqlite(c),
            AnyConn::Postgres(c) => DbConn::Postgres(c),
        }
    }

    /// The engine.
    pub fn kind(&mut self) -> DatabaseKind {
        match self.lease.conn() {
            AnyConn::Sqlite(_) => DatabaseKind::Sqlite,
            AnyConn::Postgres(_) => DatabaseKind::Postgres,
        }
    }

    /// Closes the connection instead of returning it for reuse.
    pub fn discard(self) {
        self.lease.discard();
    }

    pub(crate) fn any_conn(&mut self) -> &mut AnyConn {
        self.lease.conn()
    }
}

/// Runs `$body` with `$conn` bound to the tenant's connection — `&mut SqliteConnection` or
/// `&mut PgConnection` — so one block of sqlx code serves both engines (`$1` placeholders work
/// on both).
#[macro_export]
macro_rules! with_db {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db.conn() {
            $crate::DbConn::Sqlite($conn) => $body,
            $crate::DbConn::Postgres($conn) => $body,
        }
    };
}

impl ApiError {
    /// The answer for a database error of a handler, by what it means for the caller (the
    /// cause is logged by [`ProblemLayer`](crate::http::ProblemLayer), never shown):
    ///
    /// - no row (`fetch_one` found nothing): 404 `resource_not_found`;
    /// - a unique or foreign-key violation: 409 `constraint_violation`, naming the
    ///   constraint (`constraint` member) when the database names it;
    /// - a serialization failure, a deadlock or a busy database: 503 with `Retry-After: 1`
    ///   (retrying succeeds);
    /// - the connection lost, refused or timed out: 503 with `Retry-After: 5`;
    /// - anything else (a bad query, a type that does not decode): 500, a bug to fix.
    pub fn database(error: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        let cause = error.to_string();
        let retry = |seconds: &'static str| {
            Self::new(ProblemCode::TenantDbUnavailable)
                .header(header::RETRY_AFTER, HeaderValue::from_static(seconds))
        };
        let answer = match &error {
            sqlx::Error::RowNotFound => Self::new(ProblemCode::ResourceNotFound),
            sqlx::Error::Database(e) => match e.kind() {
                ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation => {
                    let conflict = Self::new(ProblemCode::ConstraintViolation);
                    match e.constraint() {
                        Some(name) => conflict
                            .param("constraint", name.to_owned())
                            .member("constraint", name),
                        // SQLite names no constraint.
                        None => conflict.localized_param("constraint", "이름 없음", "unnamed"),
                    }
                }
                _ => match e.code().as_deref() {
                    // serialization_failure, deadlock_detected; SQLITE_BUSY, SQLITE_LOCKED.
                    Some("40001" | "40P01" | "5" | "6" | "517" | "262") => retry("1"),
                    // Postgres's connection-exception and operator-intervention classes.
                    Some(code) if code.starts_with("08") || code.starts_with("57") => retry("5"),
                    _ => Self::new(ProblemCode::Internal),
                },
            },
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => retry("5"),
            _ => Self::new(ProblemCode::Internal),
        };
        answer.cause(cause)
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        Self::new(ProblemCode::TenantDbUnavailable)
            .header(header::RETRY_AFTER, HeaderValue::from_static("5"))
            .cause(error.to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TenantDb {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let tenant = parts.extensions.get::<Tenant>().cloned();
        let router = parts.extensions.get::<DatabaseRouter>().cloned();
        let (Some(tenant), Some(router)) = (tenant, router) else {
            tracing::error!(
                path = %parts.uri.path(),
                "the TenantDb extractor found no tenant: is this route behind TenantLayer (create_app)?"
            );
            return Err(ApiError::new(ProblemCode::Internal));
        };
        Ok(router.acquire(&tenant).await?)
    }
}
