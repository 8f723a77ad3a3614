//! The durable outbox (DESIGN §7): audit alerts, usage records and xAPI statements are kept in
//! the central DB until their receiver has them, and delivered in the background — a request
//! never waits on these networks.
//!
//! - [`Outbox::push`] costs a channel send on the request path; a writer task moves items into
//!   the central DB within milliseconds, in batches. [`Outbox::push_now`] writes before it
//!   returns (high and critical alerts, provisioning results).
//! - The channel is bounded (16,384 items): memory never grows without bound, whatever
//!   floods in. When it is full (the central DB stalls), [`Outbox::push`] refuses the item —
//!   it returns [`Full`], the item was not accepted, and `mt_paas_outbox_refused_total`
//!   counts it — and [`Outbox::push_wait`] waits for room; nothing accepted is ever dropped.
//! - Workers claim due items with a lease (so several replicas on one Postgres central DB never
//!   send one item at the same time), deliver them in bounded batches, and on failure back off
//!   exponentially with jitter, honouring `Retry-After`. After `logging.outbox.max_attempts` an
//!   item is dead-lettered; `mt-paas outbox list|retry|purge` handles those.
//! - Every item has a stable id (statement id, `event_id`, usage key): a redelivery after a
//!   crash is recognised by the receiver, never counted twice.
//! - A graceful shutdown flushes the buffer and tries to deliver what is due.

mod sinks;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};

pub(crate) use self::sinks::LrsClient;
pub use self::sinks::Sinks;
use crate::{
    config::OutboxConfig,
    core::{
        background::Background,
        central::{CentralDb, on_pool},
    },
};

/// How long a claimed batch is reserved for its worker. A worker that dies (kill -9) holds
/// its batch this long; a round ends well within it (request timeouts, the sinks' budget).
const LEASE: Duration = Duration::from_secs(15);
/// The longest backoff between attempts of one item.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The longest pause of a kind whose receiver is down.
const MAX_PAUSE: Duration = Duration::from_secs(10);
/// Items written to the central DB in one transaction.
const WRITE_BATCH: usize = 1000;
/// How often the pending items are counted for `/metrics`.
pub(crate) const PENDING_EVERY: Duration = Duration::from_secs(10);
/// Items the channel to the writer holds at most.
pub(crate) const BUFFER: usize = 16_384;

/// The outbox's buffer is full: the item was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the outbox buffer is full ({BUFFER} items); the item was not accepted")]
pub struct Full;

/// What an item is, and so where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// An audit alert → the market's `/audit/alerts`.
    Audit,
    /// A usage record → the market's usage intake.
    Usage,
    /// An xAPI statement → the LRS.
    Activity,
    /// A provisioning result → the market's provisioning-result intake.
    Provisioning,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::Audit, Self::Usage, Self::Activity, Self::Provisioning];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audit => "audit",
            Self::Usage => "usage",
            Self::Activity => "activity",
            Self::Provisioning => "provisioning",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One item: a stable id, its kind and its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The stable id.
    pub id: String,
    /// The kind.
    pub kind: Kind,
    /// The body, as the receiver gets it.
    pub body: serde_json::Value,
}

enum Message {
    Item(Item),
    /// An item built by the writer, off the request path.
    Deferred(Box<dyn FnOnce() -> Item + Send>),
    /// Answered once everything sent before it is in the central DB.
    Flush(oneshot::Sender<()>),
}

/// An item as stored, for `mt-paas outbox list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredItem {
    /// The stable id.
    pub id: String,
    /// The kind.
    pub kind: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// When it was accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Counts per status, for operators and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    /// Waiting for delivery.
    pub pending: u64,
    /// Delivered.
    pub delivered: u64,
    /// Dead-lettered.
    pub dead: u64,
}

/// The outbox of one service.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    db: CentralDb,
    config: OutboxConfig,
    sinks: Sinks,
    tx: mpsc::Sender<Message>,
    due: Notify,
    stopping: AtomicBool,
    /// Items refused because the buffer was full.
    refused: AtomicU64,
    /// Pending items at the last count (refreshed in the background, never per scrape).
    pending: AtomicU64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// What one delivery round did.
/// What a delivery round does with one claimed item.
enum Outcome {
    /// Not attempted (the sink stopped early): free for the next round.
    Release,
    Delivered,
    /// Failed for now: try again after the wait.
    RetryLater(String, Duration),
    /// Failed for good.
    Dead(String),
}

#[derive(Debug, Clone, Copy, Default)]
struct Round {
    delivered: usize,
    unreachable: bool,
}

#[derive(sqlx::FromRow)]
struct Claimed {
    id: String,
    body: String,
    attempts: i64,
}

fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

impl Outbox {
    /// An outbox in `db` delivering to `sinks`; starts its writer. Call
    /// [`spawn_workers`](Self::spawn_workers) to deliver.
    pub fn new(db: CentralDb, config: OutboxConfig, sinks: Sinks) -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        let this = Self {
            inner: Arc::new(Inner {
                db,
                config,
                sinks,
                tx,
                due: Notify::new(),
                stopping: AtomicBool::new(false),
                refused: AtomicU64::new(0),
                pending: AtomicU64::new(0),
            }),
        };
        tokio::spawn(writer(Arc::downgrade(&this.inner), rx));
        this
    }

    /// Accepts an item without waiting (the request path). It reaches the central DB within
    /// milliseconds; [`flush`](Self::flush) waits for that. [`Full`] when the buffer is full:
    /// the item was not accepted (and is counted).
    pub fn push(&self, item: Item) -> Result<(), Full> {
        self.offer(Message::Item(item))
    }

    /// Like [`push`](Self::push), but the item is built by the writer task: the request pays
    /// for a boxed closure and a channel send, not for serializing the item.
    pub fn push_with(&self, build: impl FnOnce() -> Item + Send + 'static) -> Result<(), Full> {
        self.offer(Message::Deferred(Box::new(build)))
    }

    fn offer(&self, message: Message) -> Result<(), Full> {
        match self.inner.tx.try_send(message) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                let refused = self.inner.refused.fetch_add(1, Ordering::Relaxed);
                if refused.is_power_of_two() {
                    tracing::error!(
                        refused = refused + 1,
                        "the outbox buffer is full; items are refused"
                    );
                }
                Err(Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("the outbox writer is gone; an item was not accepted");
                Err(Full)
            }
        }
    }

    /// Accepts an item, waiting for room in the buffer (background producers).
    pub async fn push_wait(&self, item: Item) {
        if self.inner.tx.send(Message::Item(item)).await.is_err() {
            tracing::error!("the outbox writer is gone; an item was not accepted");
        }
    }

    /// Items refused so far because the buffer was full.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Items waiting for delivery at the last background count (every
    /// 10 s); what `/metrics` shows, so a scrape never queries the database.
    pub fn pending_gauge(&self) -> u64 {
        self.inner.pending.load(Ordering::Relaxed)
    }

    /// Writes an item to the central DB before returning, and starts its delivery.
    pub async fn push_now(&self, item: Item) -> Result<(), sqlx::Error> {
        insert(&self.inner.db, std::slice::from_ref(&item)).await?;
        self.inner.due.notify_one();
        Ok(())
    }

    /// Waits until every item pushed before is in the central DB.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Starts one delivery worker per kind, the pending count and the pruning of delivered
    /// items, on `background`: each stops at its next wait once the service is stopping
    /// ([`shutdown`](Self::shutdown) then delivers what is left).
    pub fn spawn_workers(&self, background: &Background) {
        for kind in Kind::ALL {
            let weak = Arc::downgrade(&self.inner);
            let bg = background.clone();
            background.spawn(async move {
                let mut failures = 0i64;
                while !bg.is_stopping() {
                    let Some(inner) = weak.upgrade() else { return };
                    let this = Outbox { inner };
                    let woken = this.inner.due.notified();
                    let round = match this.round(kind).await {
                        Ok(round) => round,
                        Err(e) => {
                            tracing::warn!(kind = kind.as_str(), error = %e, "outbox delivery round failed");
                            Round::default()
                        }
                    };
                    if this.inner.stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    if round.unreachable {
                        // The receiver is down: pause this kind (a circuit breaker) instead of
                        // failing every waiting item in turn.
                        failures = failures.saturating_add(1);
                        if !bg.sleep(backoff(failures).min(MAX_PAUSE)).await {
                            return;
                        }
                    } else {
                        failures = 0;
                        if round.delivered == 0 {
                            // Nothing due: wait for new items or the next retry.
                            tokio::select! {
                                () = bg.stopping() => return,
                                _ = tokio::time::timeout(Duration::from_millis(500), woken) => {}
                            }
                        }
                    }
                }
            });
        }
        let weak = Arc::downgrade(&self.inner);
        let bg = background.clone();
        background.spawn(async move {
            let mut tick = tokio::time::interval(PENDING_EVERY);
            loop {
                tokio::select! {
                    () = bg.stopping() => return,
                    _ = tick.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                let this = Outbox { inner };
                match this.counts(None).await {
                    Ok(counts) => this.inner.pending.store(counts.pending, Ordering::Relaxed),
                    Err(e) => tracing::debug!(error = %e, "counting pending outbox items failed"),
                }
            }
        });
        let weak = Arc::downgrade(&self.inner);
        let bg = background.clone();
        background.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    () = bg.stopping() => return,
                    _ = tick.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                let keep = Duration::from_secs(inner.config.keep_delivered_seconds);
                if let Err(e) = (Outbox { inner }).purge("delivered", keep).await {
                    tracing::warn!(error = %e, "pruning delivered outbox items failed");
                }
            }
        });
    }

    /// One delivery round for `kind`: claims due items, delivers them, records the outcome.
    /// Returns how many were delivered.
    pub async fn deliver(&self, kind: Kind) -> Result<usize, sqlx::Error> {
        Ok(self.round(kind).await?.delivered)
    }

    async fn round(&self, kind: Kind) -> Result<Round, sqlx::Error> {
        if !self.inner.sinks.handles(kind) {
            return Ok(Round::default());
        }
        let batch = i64::from(self.inner.config.batch_size.max(1));
        let claimed = self.claim(kind, batch).await?;
        if claimed.is_empty() {
            return Ok(Round::default());
        }
        let mut items = Vec::with_capacity(claimed.len());
        let mut attempts = Vec::with_capacity(claimed.len());
        for row in claimed {
            match serde_json::from_str(&row.body) {
                Ok(body) => {
                    attempts.push(row.attempts);
                    items.push(Item {
                        id: row.id,
                        kind,
                        body,
                    });
                }
                Err(e) => self.dead(&row.id, &format!("unreadable body: {e}")).await?,
            }
        }
        let delivery = self.inner.sinks.deliver(kind, &items).await;
        let mut delivered = 0;
        let mut unreachable = false;
        let mut outcomes = Vec::with_capacity(items.len());
        for (item, attempts) in items.iter().zip(attempts) {
            let Some(outcome) = delivery.outcome(&item.id) else {
                outcomes.push((item.id.as_str(), Outcome::Release));
                continue;
            };
            match outcome {
                Ok(()) => {
                    outcomes.push((item.id.as_str(), Outcome::Delivered));
                    delivered += 1;
                }
                Err(failure) => {
                    let attempts = attempts + 1;
                    if failure.permanent || attempts >= i64::from(self.inner.config.max_attempts) {
                        tracing::error!(id = %item.id, kind = kind.as_str(), error = %failure.error, "outbox item dead-lettered");
                        outcomes.push((item.id.as_str(), Outcome::Dead(failure.error.clone())));
                    } else {
                        unreachable = true;
                        let wait = failure.retry_after.unwrap_or_else(|| backoff(attempts));
                        outcomes.push((
                            item.id.as_str(),
                            Outcome::RetryLater(failure.error.clone(), wait),
                        ));
                    }
                }
            }
        }
        self.record(&outcomes).await?;
        Ok(Round {
            delivered,
            unreachable,
        })
    }

    /// Records a round's outcomes in one transaction (one commit per round, not per item).
    /// Should the process die before the commit, the items stay leased and are delivered
    /// again once the lease lapses; receivers dedupe by id.
    async fn record(&self, outcomes: &[(&str, Outcome)]) -> Result<(), sqlx::Error> {
        let stamp = now();
        on_pool!(&self.inner.db, pool => {
            let mut tx = pool.begin().await?;
            for (id, outcome) in outcomes {
                let query = match outcome {
                    Outcome::Release => sqlx::query(
                        "UPDATE outbox SET leased_until = NULL WHERE id = $1 AND status = 'pending'",
                    )
                    .bind(*id),
                    Outcome::Delivered => sqlx::query(
                        "UPDATE outbox SET status = 'delivered', delivered_at = $1, leased_until = NULL, attempts = attempts + 1, last_error = NULL WHERE id = $2",
                    )
                    .bind(stamp)
                    .bind(*id),
                    Outcome::RetryLater(error, wait) => sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2, leased_until = NULL WHERE id = $3",
                    )
                    .bind(error.chars().take(500).collect::<String>())
                    .bind(stamp + *wait)
                    .bind(*id),
                    Outcome::Dead(error) => sqlx::query(
                        "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = $1, leased_until = NULL WHERE id = $2",
                    )
                    .bind(error.chars().take(500).collect::<String>())
                    .bind(*id),
                };
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn claim(&self, kind: Kind, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
        let stamp = now();
        let until = stamp + LEASE;
        // Postgres skips rows another replica is claiming; SQLite serializes writers.
        let rows: Vec<Claimed> = match &self.inner.db {
            CentralDb::Sqlite(pool) => {
                sqlx::query_as(
                    "UPDATE outbox SET leased_until = $1 WHERE id IN (SELECT id FROM outbox WHERE kind = $2 AND status = 'pending' \
                     AND next_attempt_at <= $3 AND (leased_until IS NULL OR leased_until < $3) ORDER BY created_at, id LIMIT $4) \
                     RETURNING id, body, attempts",
                )
                .bind(until)
                .bind(kind.as_str())
                .bind(stamp)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            CentralDb::Postgres(pool) => {
                sqlx::query_as(
                    "UPDATE outbox SET leased_until = $1 WHERE id IN (SELECT id FROM outbox WHERE kind = $2 AND status = 'pending' \
                     AND next_attempt_at <= $3 AND (leased_until IS NULL OR leased_until < $3) ORDER BY created_at, id LIMIT $4 \
                     FOR UPDATE SKIP LOCKED) RETURNING id, body, attempts",
                )
                .bind(until)
                .bind(kind.as_str())
                .bind(stamp)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows)
    }

    async fn dead(&self, id: &str, error: &str) -> Result<(), sqlx::Error> {
        on_pool!(&self.inner.db, pool => {
            sqlx::query("UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = $1, leased_until = NULL WHERE id = $2")
                .bind(error.chars().take(500).collect::<String>())
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Counts per status, of one kind or of all.
    pub async fn counts(&self, kind: Option<Kind>) -> Result<Counts, sqlx::Error> {
        let rows: Vec<(String, i64)> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as("SELECT status, COUNT(*) FROM outbox WHERE ($1 IS NULL OR kind = $1) GROUP BY status")
                .bind(kind.map(Kind::as_str))
                .fetch_all(pool)
                .await?
        });
        let mut counts = Counts::default();
        for (status, n) in rows {
            let n = u64::try_from(n).unwrap_or_default();
            match status.as_str() {
                "pending" => counts.pending = n,
                "delivered" => counts.delivered = n,
                "dead" => counts.dead = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// Items with `status` (any when `None`), newest first.
    pub async fn list(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredItem>, sqlx::Error> {
        let rows: Vec<(String, String, String, i64, Option<String>, OffsetDateTime)> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as(
                "SELECT id, kind, status, attempts, last_error, created_at FROM outbox WHERE ($1 IS NULL OR status = $1) \
                 ORDER BY created_at DESC, id LIMIT $2",
            )
            .bind(status)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, kind, status, attempts, last_error, created_at)| StoredItem {
                    id,
                    kind,
                    status,
                    attempts,
                    last_error,
                    created_at,
                },
            )
            .collect())
    }

    /// Puts dead items (one, or all when `id` is `None`) back in the queue with fresh
    /// attempts. Returns how many.
    pub async fn retry(&self, id: Option<&str>) -> Result<u64, sqlx::Error> {
        let n = on_pool!(&self.inner.db, pool => {
            sqlx::query(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, leased_until = NULL \
                 WHERE status = 'dead' AND ($2 IS NULL OR id = $2)",
            )
            .bind(now())
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        self.inner.due.notify_waiters();
        Ok(n)
    }

    /// Deletes items with `status` older than `older_than`. Returns how many.
    pub async fn purge(&self, status: &str, older_than: Duration) -> Result<u64, sqlx::Error> {
        let before = now() - older_than;
        Ok(on_pool!(&self.inner.db, pool => {
            sqlx::query("DELETE FROM outbox WHERE status = $1 AND created_at <= $2")
                .bind(status)
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// On shutdown: everything pushed goes to the central DB, then what is due is delivered
    /// until `deadline` passes. Nothing is lost either way: the rest waits in the central DB.
    pub async fn shutdown(&self, deadline: Duration) {
        self.flush().await;
        self.inner.stopping.store(true, Ordering::Relaxed);
        let until = tokio::time::Instant::now() + deadline;
        for kind in Kind::ALL {
            while tokio::time::Instant::now() < until {
                match tokio::time::timeout_at(until, self.deliver(kind)).await {
                    Ok(Ok(n)) if n > 0 => continue,
                    _ => break,
                }
            }
        }
    }
}

/// Moves pushed items into the central DB in batches; answers flushes in order.
async fn writer(inner: std::sync::Weak<Inner>, mut rx: mpsc::Receiver<Message>) {
    let mut batch = Vec::new();
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Item(item) => batch.push(item),
                Message::Deferred(build) => batch.push(build()),
                Message::Flush(done) => waiting.push(done),
            }
            if batch.len() >= WRITE_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        let Some(inner) = inner.upgrade() else { return };
        // The write is retried until it succeeds: an accepted item is never dropped.
        let mut wait = Duration::from_millis(50);
        while !batch.is_empty() {
            match insert(&inner.db, &batch).await {
                Ok(()) => batch.clear(),
                Err(e) => {
                    tracing::error!(error = %e, items = batch.len(), "writing to the outbox failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        inner.due.notify_waiters();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn insert(db: &CentralDb, items: &[Item]) -> Result<(), sqlx::Error> {
    let stamp = now();
    on_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        for item in items {
            sqlx::query(
                "INSERT INTO outbox (id, kind, body, status, attempts, next_attempt_at, created_at) \
                 VALUES ($1, $2, $3, 'pending', 0, $4, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&item.id)
            .bind(item.kind.as_str())
            .bind(item.body.to_string())
            .bind(stamp)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

/// 1 s × 2^(attempts-1), capped at five minutes, ±25 % jitter.
fn backoff(attempts: i64) -> Duration {
    use backon::{BackoffBuilder, ExponentialBuilder};
    let step = usize::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    let base = ExponentialBuilder::new()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(MAX_BACKOFF)
        .without_max_times()
        .build()
        .nth(step)
        .unwrap_or(MAX_BACKOFF);
    crate::random::jitter(base)
}

impl Kind {
    /// Parses the stored form.
    pub fn from_stored(s: &str) -> Option<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap() {
        assert!(backoff(1) <= Duration::from_millis(1300));
        assert!(backoff(5) >= Duration::from_secs(12));
        assert!(backoff(100) <= MAX_BACKOFF.mul_f64(1.25));
    }
}

#[cfg(test)]
mod buffer_tests {
    use super::*;

    /// Past [`BUFFER`] items waiting for the writer, `push` refuses (and counts) instead of
    /// growing memory; what it accepted all reaches the central DB.
    #[tokio::test(flavor = "current_thread")]
    async fn the_buffer_is_bounded_and_refusals_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::CentralDatabaseConfig {
            url: crate::config::DatabaseUrl::new(format!(
                "sqlite://{}",
                dir.path().join("central.db").display()
            )),
            pool_size: 2,
        };
        let db = CentralDb::connect(&config).await.unwrap();
        let config: OutboxConfig = serde_json::from_value(serde_json::json!({
            "max_attempts": 3, "batch_size": 10, "keep_delivered_seconds": 60
        }))
        .unwrap();
        let outbox = Outbox::new(db, config, Sinks::default());
        let item = |n: usize| Item {
            id: format!("activity:{n}"),
            kind: Kind::Activity,
            body: serde_json::json!({ "n": n }),
        };
        // No await: the writer cannot run, so nothing leaves the buffer meanwhile.
        let accepted = (0..BUFFER + 100)
            .filter(|n| outbox.push(item(*n)).is_ok())
            .count();
        assert_eq!(accepted, BUFFER);
        assert_eq!(outbox.refused(), 100);
        outbox.flush().await;
        let counts = outbox.counts(Some(Kind::Activity)).await.unwrap();
        assert_eq!(
            counts.pending, BUFFER as u64,
            "every accepted item is stored"
        );
    }
}
