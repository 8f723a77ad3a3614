//! [`Entitlements`]: what the market says each tenant may do, cached in memory and in the
//! central DB so that no request waits on the market except a cold tenant's first, and a
//! market outage never blocks a tenant with a cached entitlement (up to
//! `marketplace.offline_grace_hours`).
//!
//! Freshness: an entitlement older than `entitlement_ttl_seconds` is still served while a
//! background refresh (with its ETag) runs; the market's hints refresh at once; a bulk sync
//! of every change since the last known revision runs at start and every
//! `sync_interval_seconds`.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache};
use mt_paas_protocol::Entitlement;
use time::OffsetDateTime;

use super::marketplace::{Fetched, MarketError, MarketplaceClient};
use crate::{
    config::MarketplaceConfig,
    core::{
        background::Background,
        central::{CentralDb, on_pool},
        models::TenantId,
        tenant::CachedEntitlement,
    },
};

/// How long "no subscription" is remembered.
const NOT_SUBSCRIBED_TTL: Duration = Duration::from_secs(5);
/// How long an entitlement stays in memory without use (it stays in the central DB).
const IDLE_IN_MEMORY: Duration = Duration::from_secs(3600);
/// Entitlements fetched per bulk page, as the market pages them.
const PAGE: usize = 500;

/// What the market says of a tenant.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Lookup {
    /// A subscription, with its entitlement.
    Subscribed(Arc<CachedEntitlement>),
    /// No subscription to this service.
    NotSubscribed,
}

/// Why no entitlement could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntitlementError {
    /// The market could not answer, and nothing usable is cached.
    #[error(transparent)]
    Market(#[from] MarketError),
    /// The central DB failed.
    #[error("central DB: {0}")]
    Db(#[from] sqlx::Error),
}

type Entry = Option<Arc<CachedEntitlement>>;

struct EntryExpiry;

impl Expiry<TenantId, Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &TenantId,
        value: &Entry,
        _at: Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            IDLE_IN_MEMORY
        } else {
            NOT_SUBSCRIBED_TTL
        })
    }

    fn expire_after_update(
        &self,
        key: &TenantId,
        value: &Entry,
        at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, at)
    }
}

/// The entitlement cache of one service.
#[derive(Clone)]
pub struct Entitlements {
    inner: Arc<Inner>,
}

struct Inner {
    client: MarketplaceClient,
    db: CentralDb,
    memory: Cache<TenantId, Entry>,
    ttl: Duration,
    grace: Duration,
    refreshing: Mutex<HashSet<TenantId>>,
}

impl std::fmt::Debug for Entitlements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entitlements")
            .field("cached", &self.inner.memory.entry_count())
            .finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    body: String,
    etag: Option<String>,
    fetched_at: OffsetDateTime,
}

impl Entitlements {
    /// A cache over `client`, kept in `db`.
    pub fn new(client: MarketplaceClient, db: CentralDb, config: &MarketplaceConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                db,
                memory: Cache::builder()
                    .max_capacity(200_000)
                    .expire_after(EntryExpiry)
                    .build(),
                ttl: Duration::from_secs(config.entitlement_ttl_seconds),
                grace: Duration::from_secs(config.offline_grace_hours.saturating_mul(3600)),
                refreshing: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// The market client.
    pub fn client(&self) -> &MarketplaceClient {
        &self.inner.client
    }

    /// What the market says of `id`: from memory, else the central DB, else the market
    /// (the one network call a request may wait on, bounded by the request timeout).
    pub async fn get(&self, id: &TenantId) -> Result<Lookup, EntitlementError> {
        let cached = match self.inner.memory.get(id).await {
            Some(None) => return Ok(Lookup::NotSubscribed),
            Some(Some(cached)) => Some(cached),
            // Boxed, like the refreshes below: the database and the market are large
            // futures, and this one is awaited inside every request's pipeline future.
            None => Box::pin(self.load(id)).await?,
        };
        match cached.and_then(|cached| self.servable(id, cached)) {
            Some(lookup) => Ok(lookup),
            // Nothing held, or beyond the offline grace: only the market's word counts.
            None => Box::pin(self.refresh(id)).await,
        }
    }

    /// What [`get`](Self::get) answers for `id` when memory holds a fresh enough entry, without
    /// waiting; `None` when only the database or the market can say.
    pub(crate) fn get_now(&self, id: &TenantId) -> Option<Lookup> {
        use futures_util::FutureExt;
        match self.inner.memory.get(id).now_or_never()?? {
            None => Some(Lookup::NotSubscribed),
            Some(cached) => self.servable(id, cached),
        }
    }

    /// `cached` as the answer for `id`: while fresh, and within the offline grace (refreshed
    /// in the background meanwhile); `None` beyond it.
    fn servable(&self, id: &TenantId, cached: Arc<CachedEntitlement>) -> Option<Lookup> {
        let age = cached.age();
        if age >= self.inner.ttl {
            if age >= self.inner.grace {
                return None;
            }
            self.refresh_in_background(id);
        }
        Some(Lookup::Subscribed(cached))
    }

    async fn load(&self, id: &TenantId) -> Result<Entry, EntitlementError> {
        let row: Option<Row> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as("SELECT body, etag, fetched_at FROM entitlements WHERE tenant_id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        let Some(row) = row else { return Ok(None) };
        let Ok(entitlement) = serde_json::from_str::<Entitlement>(&row.body) else {
            tracing::warn!(tenant = %id, "a stored entitlement is unreadable; fetching it again");
            return Ok(None);
        };
        let cached = Arc::new(CachedEntitlement::new(
            entitlement,
            row.etag,
            row.fetched_at,
        ));
        self.inner
            .memory
            .insert(id.clone(), Some(cached.clone()))
            .await;
        Ok(Some(cached))
    }

    /// Fetches `id`'s entitlement from the market now (a hint, a provisioning, a stale or
    /// cold entry) and stores it.
    pub async fn refresh(&self, id: &TenantId) -> Result<Lookup, EntitlementError> {
        let current = match self.inner.memory.get(id).await {
            Some(entry) => entry,
            None => self.load(id).await?,
        };
        let etag = current.as_ref().and_then(|c| c.etag.clone());
        match self
            .inner
            .client
            .entitlement(id.as_str(), etag.as_deref())
            .await?
        {
            Fetched::Fresh(entitlement, etag) => {
                let cached = CachedEntitlement::new(*entitlement, etag, now());
                Ok(Lookup::Subscribed(self.store(id, cached).await?))
            }
            Fetched::NotModified => match current {
                Some(current) => {
                    let mut confirmed = (*current).clone();
                    confirmed.fetched_at = now();
                    Ok(Lookup::Subscribed(self.store(id, confirmed).await?))
                }
                // A 304 for nothing we hold: ask again without the ETag next time.
                None => {
                    Err(MarketError::Invalid("304 without a cached entitlement".to_owned()).into())
                }
            },
            Fetched::NotSubscribed => {
                on_pool!(&self.inner.db, pool => {
                    sqlx::query("DELETE FROM entitlements WHERE tenant_id = $1").bind(id.as_str()).execute(pool).await?;
                });
                self.inner.memory.insert(id.clone(), None).await;
                self.inner.db.notify("entitlement", id.as_str()).await;
                Ok(Lookup::NotSubscribed)
            }
        }
    }

    fn refresh_in_background(&self, id: &TenantId) {
        let fresh_claim = self
            .inner
            .refreshing
            .lock()
            .map(|mut set| set.insert(id.clone()))
            .unwrap_or(false);
        if !fresh_claim {
            return;
        }
        let this = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            if let Err(e) = this.refresh(&id).await {
                tracing::warn!(tenant = %id, error = %e, "refreshing an entitlement failed; serving the cached one");
            }
            if let Ok(mut set) = this.inner.refreshing.lock() {
                set.remove(&id);
            }
        });
    }

    async fn store(
        &self,
        id: &TenantId,
        cached: CachedEntitlement,
    ) -> Result<Arc<CachedEntitlement>, EntitlementError> {
        let body = serde_json::to_string(&cached.entitlement).unwrap_or_default();
        on_pool!(&self.inner.db, pool => {
            sqlx::query(
                "INSERT INTO entitlements (tenant_id, body, etag, revision, fetched_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant_id) DO UPDATE SET body = $2, etag = $3, revision = $4, fetched_at = $5 \
                 WHERE entitlements.revision <= $4",
            )
            .bind(id.as_str())
            .bind(&body)
            .bind(&cached.etag)
            .bind(cached.entitlement.revision)
            .bind(cached.fetched_at)
            .execute(pool)
            .await?;
        });
        let cached = Arc::new(cached);
        self.inner
            .memory
            .insert(id.clone(), Some(cached.clone()))
            .await;
        Ok(cached)
    }

    /// Forgets what memory holds (another replica changed the central DB).
    pub async fn forget(&self, id: &TenantId) {
        self.inner.memory.invalidate(id).await;
    }

    /// Fetches every entitlement changed since the last sync. Returns how many changed.
    pub async fn sync(&self) -> Result<usize, EntitlementError> {
        let mut revision: i64 = on_pool!(&self.inner.db, pool => {
            sqlx::query_scalar::<_, i64>("SELECT revision FROM market_sync WHERE id = 1")
                .fetch_optional(pool)
                .await?
                .unwrap_or(0)
        });
        let mut changed = 0;
        loop {
            let page = self.inner.client.entitlements_since(revision).await?;
            let count = page.entitlements.len();
            for entitlement in page.entitlements {
                let Ok(id) = TenantId::parse(&entitlement.tenant_id) else {
                    tracing::warn!(tenant = %entitlement.tenant_id.chars().take(64).collect::<String>(), "the market sent an entitlement for an invalid tenant id");
                    continue;
                };
                let etag = Some(format!("\"{}\"", entitlement.revision));
                self.store(&id, CachedEntitlement::new(entitlement, etag, now()))
                    .await?;
                changed += 1;
            }
            let done = count < PAGE || page.revision <= revision;
            revision = page.revision.max(revision);
            if done {
                break;
            }
        }
        on_pool!(&self.inner.db, pool => {
            sqlx::query(
                "INSERT INTO market_sync (id, revision, synced_at) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET revision = $1, synced_at = $2",
            )
            .bind(revision)
            .bind(now())
            .execute(pool)
            .await?;
        });
        Ok(changed)
    }

    /// Syncs every `interval` until the service stops or the cache is dropped.
    pub fn spawn_sync_loop(&self, interval: Duration, background: &Background) {
        let weak = Arc::downgrade(&self.inner);
        let bg = background.clone();
        background.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    () = bg.stopping() => return,
                    _ = tick.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                let this = Entitlements { inner };
                match this.sync().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(changed = n, "entitlements synced"),
                    Err(e) => tracing::warn!(error = %e, "entitlement sync failed; will retry"),
                }
            }
        });
    }
}

fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}
