//! [`TenantManager`]: the tenant registry in the central DB, with a small cache in front for
//! the request path (positive and negative entries, so repeated unknown ids cost no query).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache};
use time::OffsetDateTime;

use super::{
    central::{CentralDb, on_pool},
    models::{IsolationMode, Placement, TenantId, TenantRecord, TenantStatus},
    tenant::{Features, Tenant},
};

/// How long a found tenant is served from the cache.
const FOUND_TTL: Duration = Duration::from_secs(30);
/// How long "no such tenant" is remembered.
const MISSING_TTL: Duration = Duration::from_secs(5);
/// Most entries the cache holds (found and missing together).
const CACHE_CAPACITY: u64 = 100_000;
/// Longest display name.
const MAX_NAME_CHARS: usize = 200;

/// Errors of the tenant registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// A tenant with this id is already registered.
    #[error("tenant {0} already exists")]
    AlreadyExists(TenantId),
    /// No tenant with this id is registered.
    #[error("tenant {0} does not exist")]
    NotFound(TenantId),
    /// The display name is empty, too long or holds control characters.
    #[error("display name: {0}")]
    InvalidName(&'static str),
    /// A stored row holds a value this version does not know.
    #[error("tenant {id}: stored {field} is invalid: {value}")]
    Corrupt {
        /// The tenant's id as stored.
        id: String,
        /// The column.
        field: &'static str,
        /// The value, shortened.
        value: String,
    },
    /// Concurrent allocations kept taking the free port block.
    #[error("no port block could be allocated after repeated contention")]
    PortBlocksExhausted,
    /// The central DB failed.
    #[error("central DB: {0}")]
    Db(#[from] sqlx::Error),
}

/// A tenant to register.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewTenant {
    /// The id.
    pub id: TenantId,
    /// The display name.
    pub display_name: String,
    /// The initial status (active unless provisioning first).
    pub status: TenantStatus,
    /// An isolation mode overriding `isolation.mode` for this tenant.
    pub isolation: Option<IsolationMode>,
    /// Where its data lives, when not derived from the configuration.
    pub placement: Placement,
    /// Its port block (DOCKER_PER_TENANT).
    pub port_block: Option<u32>,
}

impl NewTenant {
    /// An active tenant with the configured isolation.
    pub fn new(id: TenantId, display_name: impl Into<String>) -> Self {
        Self {
            id,
            display_name: display_name.into(),
            status: TenantStatus::Active,
            isolation: None,
            placement: Placement::default(),
            port_block: None,
        }
    }

    /// Sets the initial status.
    pub fn status(mut self, status: TenantStatus) -> Self {
        self.status = status;
        self
    }

    /// Overrides the isolation mode.
    pub fn isolation(mut self, mode: IsolationMode) -> Self {
        self.isolation = Some(mode);
        self
    }
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: String,
    display_name: String,
    status: String,
    isolation_mode: Option<String>,
    placement: String,
    port_block: Option<i64>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<TenantRow> for TenantRecord {
    type Error = ManagerError;

    fn try_from(row: TenantRow) -> Result<Self, Self::Error> {
        let corrupt = |field, value: &str| ManagerError::Corrupt {
            id: row.id.chars().take(64).collect(),
            field,
            value: value.chars().take(64).collect(),
        };
        let id = TenantId::parse(&row.id).map_err(|_| corrupt("id", &row.id))?;
        let status = row
            .status
            .parse()
            .map_err(|_| corrupt("status", &row.status))?;
        let isolation = row
            .isolation_mode
            .as_deref()
            .map(|m| m.parse().map_err(|_| corrupt("isolation_mode", m)))
            .transpose()?;
        let placement = serde_json::from_str(&row.placement)
            .map_err(|_| corrupt("placement", &row.placement))?;
        let port_block = row
            .port_block
            .map(|b| u32::try_from(b).map_err(|_| corrupt("port_block", &b.to_string())))
            .transpose()?;
        Ok(Self {
            id,
            display_name: row.display_name,
            status,
            isolation,
            placement,
            port_block,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

const SELECT: &str = "SELECT id, display_name, status, isolation_mode, placement, port_block, created_at, updated_at FROM tenants";

/// The tenant registry (seed `TenantManager`).
#[derive(Clone)]
pub struct TenantManager {
    inner: Arc<Inner>,
}

struct Inner {
    db: CentralDb,
    cache: Cache<TenantId, Option<Tenant>>,
    default_isolation: IsolationMode,
    default_features: Features,
}

impl std::fmt::Debug for TenantManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantManager")
            .field("db", &self.inner.db.kind())
            .field("cached", &self.inner.cache.entry_count())
            .finish()
    }
}

struct LookupExpiry;

impl Expiry<TenantId, Option<Tenant>> for LookupExpiry {
    fn expire_after_create(
        &self,
        _key: &TenantId,
        value: &Option<Tenant>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            FOUND_TTL
        } else {
            MISSING_TTL
        })
    }
}

impl TenantManager {
    /// A registry on `db`. Tenants take `default_isolation` unless their record overrides
    /// it, and `default_features` until a subscription says otherwise.
    pub fn new(
        db: CentralDb,
        default_isolation: IsolationMode,
        default_features: Features,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                cache: Cache::builder()
                    .max_capacity(CACHE_CAPACITY)
                    .expire_after(LookupExpiry)
                    .build(),
                default_isolation,
                default_features,
            }),
        }
    }

    /// The central DB the registry lives in.
    pub fn db(&self) -> &CentralDb {
        &self.inner.db
    }

    /// Registers a tenant.
    pub async fn create(&self, new: NewTenant) -> Result<TenantRecord, ManagerError> {
        validate_name(&new.display_name)?;
        let now = now();
        let placement = serde_json::to_string(&new.placement).unwrap_or_else(|_| "{}".into());
        let isolation = new.isolation.map(IsolationMode::as_str);
        let result = on_pool!(&self.inner.db, pool => {
            sqlx::query(
                "INSERT INTO tenants (id, display_name, status, isolation_mode, placement, port_block, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(new.id.as_str())
            .bind(&new.display_name)
            .bind(new.status.as_str())
            .bind(isolation)
            .bind(&placement)
            .bind(new.port_block.map(i64::from))
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        });
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(ManagerError::AlreadyExists(new.id));
            }
            Err(e) => return Err(e.into()),
        }
        self.invalidate(&new.id).await;
        Ok(TenantRecord {
            id: new.id,
            display_name: new.display_name,
            status: new.status,
            isolation: new.isolation,
            placement: new.placement,
            port_block: new.port_block,
            created_at: now,
            updated_at: now,
        })
    }

    /// The registry record of `id`, read from the database.
    pub async fn get(&self, id: &TenantId) -> Result<Option<TenantRecord>, ManagerError> {
        let sql = format!("{SELECT} WHERE id = $1");
        let row: Option<TenantRow> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(pool).await?
        });
        row.map(TenantRecord::try_from).transpose()
    }

    /// Every registered tenant, by id.
    pub async fn list(&self) -> Result<Vec<TenantRecord>, ManagerError> {
        let sql = format!("{SELECT} ORDER BY id");
        let rows: Vec<TenantRow> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?
        });
        rows.into_iter().map(TenantRecord::try_from).collect()
    }

    /// How many tenants are registered.
    pub async fn count(&self) -> Result<u64, ManagerError> {
        let n: i64 = on_pool!(&self.inner.db, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM tenants").fetch_one(pool).await?
        });
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// Changes a tenant's status.
    pub async fn set_status(
        &self,
        id: &TenantId,
        status: TenantStatus,
    ) -> Result<(), ManagerError> {
        let done = on_pool!(&self.inner.db, pool => {
            sqlx::query("UPDATE tenants SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now())
                .bind(id.as_str())
                .execute(pool)
                .await?
                .rows_affected()
        });
        self.invalidate(id).await;
        if done == 0 {
            return Err(ManagerError::NotFound(id.clone()));
        }
        Ok(())
    }

    /// Gives a tenant the lowest free port block (DOCKER_PER_TENANT) and returns it; a
    /// tenant that has one keeps it. Blocks freed by [`release_port_block`] are reused. Safe
    /// against concurrent allocation: the column is unique and a lost race retries.
    ///
    /// [`release_port_block`]: Self::release_port_block
    pub async fn allocate_port_block(&self, id: &TenantId) -> Result<u32, ManagerError> {
        for _ in 0..32 {
            let record = self
                .get(id)
                .await?
                .ok_or_else(|| ManagerError::NotFound(id.clone()))?;
            if let Some(block) = record.port_block {
                return Ok(block);
            }
            let used: Vec<i64> = on_pool!(&self.inner.db, pool => {
                sqlx::query_scalar("SELECT port_block FROM tenants WHERE port_block IS NOT NULL ORDER BY port_block")
                    .fetch_all(pool)
                    .await?
            });
            let mut block = 0i64;
            for b in used {
                if b != block {
                    break;
                }
                block += 1;
            }
            let result = on_pool!(&self.inner.db, pool => {
                sqlx::query("UPDATE tenants SET port_block = $1, updated_at = $2 WHERE id = $3 AND port_block IS NULL")
                    .bind(block)
                    .bind(now())
                    .bind(id.as_str())
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
            });
            match result {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
            self.invalidate(id).await;
        }
        let record = self
            .get(id)
            .await?
            .ok_or_else(|| ManagerError::NotFound(id.clone()))?;
        record.port_block.ok_or(ManagerError::PortBlocksExhausted)
    }

    /// Frees a tenant's port block for reuse.
    pub async fn release_port_block(&self, id: &TenantId) -> Result<(), ManagerError> {
        on_pool!(&self.inner.db, pool => {
            sqlx::query("UPDATE tenants SET port_block = NULL, updated_at = $1 WHERE id = $2")
                .bind(now())
                .bind(id.as_str())
                .execute(pool)
                .await?
                .rows_affected()
        });
        self.invalidate(id).await;
        Ok(())
    }

    /// Removes a tenant's record (its data is the provisioning layer's business).
    pub async fn remove(&self, id: &TenantId) -> Result<(), ManagerError> {
        let done = on_pool!(&self.inner.db, pool => {
            sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(id.as_str())
                .execute(pool)
                .await?
                .rows_affected()
        });
        self.invalidate(id).await;
        if done == 0 {
            return Err(ManagerError::NotFound(id.clone()));
        }
        Ok(())
    }

    /// The tenant for a request: from the cache, else from the database (concurrent misses
    /// for one id share a single query). `Ok(None)` when no such tenant is registered.
    pub async fn resolve(&self, id: &TenantId) -> Result<Option<Tenant>, Arc<ManagerError>> {
        let inner = &self.inner;
        if let Some(cached) = inner.cache.get(id).await {
            return Ok(cached);
        }
        // Boxed: the registry query is a large future, and this one is awaited inside every
        // request's pipeline future; the cache hit above stays small.
        let load: std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>> = Box::pin(async {
            let record = self.get(id).await?;
            Ok(record
                .map(|r| Tenant::new(r, inner.default_isolation, inner.default_features.clone())))
        });
        inner.cache.try_get_with_by_ref(id, load).await
    }

    /// What [`resolve`](Self::resolve) answers for `id` when the cache holds it (a tenant,
    /// or `Some(None)`: known to be missing), without waiting; `None` when it does not, or
    /// when the cache's upkeep is busy (then `resolve` decides). A dropped lookup is safe:
    /// moka resumes an interrupted upkeep on its next call.
    pub(crate) fn resolve_now(&self, id: &TenantId) -> Option<Option<Tenant>> {
        use futures_util::FutureExt;
        self.inner.cache.get(id).now_or_never().flatten()
    }

    /// Forgets what the cache holds for `id`, here and (through the central DB) in the
    /// other replicas.
    pub async fn invalidate(&self, id: &TenantId) {
        self.forget(id).await;
        self.inner.db.notify("tenant", id.as_str()).await;
    }

    /// What this replica's cache holds for `id`, without a lookup.
    pub async fn cached(&self, id: &TenantId) -> Option<Tenant> {
        self.inner.cache.get(id).await.flatten()
    }

    /// Forgets what this replica's cache holds for `id`.
    pub async fn forget(&self, id: &TenantId) {
        self.inner.cache.invalidate(id).await;
    }
}

fn validate_name(name: &str) -> Result<(), ManagerError> {
    if name.trim().is_empty() {
        return Err(ManagerError::InvalidName("must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ManagerError::InvalidName("must be at most 200 characters"));
    }
    // Control characters, line and paragraph separators and bidirectional overrides: a name
    // is shown in logs, files and pages, and must neither break a line there nor reorder it.
    if name.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }) {
        return Err(ManagerError::InvalidName(
            "must not contain control characters, line separators or direction overrides",
        ));
    }
    Ok(())
}

/// Now, truncated to microseconds (what Postgres keeps), so a record read back equals the
/// one returned by `create`.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}
