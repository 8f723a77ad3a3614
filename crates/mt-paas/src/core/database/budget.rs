//! [`Budget`]: one bound on the connections open to tenant databases, for any number of
//! tenants. Connections are opened lazily, kept idle per target for reuse, evicted
//! least-recently-used when another target needs the room, and closed after `idle_timeout`.
//!
//! Unlike a pool per tenant (whose idle connections add up with the tenant count), the bound
//! here counts every open connection, idle or in use: `open <= max` always holds, also while
//! an evicted connection is being closed (its slot passes to the new one only after it is
//! closed).

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::sync::Notify;

/// Reuse a connection idle longer than this only after a ping.
const PING_AFTER: Duration = Duration::from_secs(30);

/// An open connection to a tenant database.
#[derive(Debug)]
pub(crate) enum AnyConn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl AnyConn {
    async fn close(self) {
        let result = match self {
            Self::Sqlite(c) => c.close().await,
            Self::Postgres(c) => c.close().await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "closing a tenant connection");
        }
    }

    async fn ping(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(c) => c.ping().await,
            Self::Postgres(c) => c.ping().await,
        }
    }
}

/// Why no connection was handed out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BudgetError {
    #[error("no connection became free within {0:?} (database.tenant.max_connections reached)")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(#[from] sqlx::Error),
}

pub(crate) struct Budget {
    max: usize,
    idle_timeout: Duration,
    acquire_timeout: Duration,
    state: Mutex<State>,
    freed: Notify,
    reaper: std::sync::Once,
}

#[derive(Default)]
struct State {
    open: usize,
    slots: HashMap<Arc<str>, Slot>,
    /// Idle connections, oldest first: sequence number → target.
    lru: BTreeMap<u64, Arc<str>>,
    seq: u64,
}

#[derive(Default)]
struct Slot {
    open: usize,
    idle: Vec<Idle>,
    closing: bool,
}

struct Idle {
    conn: AnyConn,
    seq: u64,
    since: Instant,
}

enum Plan {
    Reuse(AnyConn, Instant),
    Open,
    Evict(AnyConn),
    Wait,
}

impl State {
    fn plan(&mut self, key: &Arc<str>, max: usize) -> Plan {
        if let Some(slot) = self.slots.get_mut(key)
            && !slot.closing
            && let Some(idle) = slot.idle.pop()
        {
            self.lru.remove(&idle.seq);
            return Plan::Reuse(idle.conn, idle.since);
        }
        if self.open < max {
            self.open += 1;
            self.slots.entry(key.clone()).or_default().open += 1;
            return Plan::Open;
        }
        // Full: take the least recently used idle connection of another target.
        let Some((_, victim_key)) = self.lru.pop_first() else {
            return Plan::Wait;
        };
        let victim = {
            let slot = self
                .slots
                .get_mut(&victim_key)
                .expect("an idle entry has a slot");
            let oldest = slot
                .idle
                .iter()
                .enumerate()
                .min_by_key(|(_, i)| i.seq)
                .map(|(n, _)| n)
                .expect("an lru entry has an idle connection");
            slot.open -= 1;
            slot.idle.swap_remove(oldest)
        };
        self.lru.remove(&victim.seq);
        self.drop_empty(&victim_key);
        self.slots.entry(key.clone()).or_default().open += 1;
        Plan::Evict(victim.conn)
    }

    fn drop_empty(&mut self, key: &Arc<str>) {
        if self.slots.get(key).is_some_and(|s| s.open == 0) {
            self.slots.remove(key);
        }
    }
}

/// A reserved slot for a connection being opened; released if the opening is abandoned.
struct Reservation {
    budget: Arc<Budget>,
    key: Arc<str>,
    armed: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed {
            self.budget.release(&self.key);
        }
    }
}

/// A connection checked out of the budget; returned for reuse when dropped.
pub(crate) struct Lease {
    conn: Option<AnyConn>,
    key: Arc<str>,
    budget: Arc<Budget>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("target", &self.key)
            .finish_non_exhaustive()
    }
}

impl Lease {
    pub(crate) fn conn(&mut self) -> &mut AnyConn {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }

    /// Closes the connection instead of returning it (it may be in an unknown state).
    pub(crate) fn discard(mut self) {
        if let Some(conn) = self.conn.take() {
            self.budget.close_and_release(self.key.clone(), conn);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.budget.give_back(&self.key, conn);
        }
    }
}

impl Budget {
    pub(crate) fn new(max: usize, idle_timeout: Duration, acquire_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            idle_timeout,
            acquire_timeout,
            state: Mutex::new(State::default()),
            freed: Notify::new(),
            reaper: std::sync::Once::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves counters that are still consistent
        // (every mutation is a single step), so a poisoned lock is safe to use.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open connections (idle and in use).
    pub(crate) fn open(&self) -> usize {
        self.lock().open
    }

    /// Open connections to one target.
    pub(crate) fn open_for(&self, key: &str) -> usize {
        self.lock().slots.get(key).map_or(0, |s| s.open)
    }

    /// A connection to `key`: an idle one, a new one, or one made room for by closing the
    /// least recently used idle connection of another target; waits up to the acquire
    /// timeout when every connection is in use.
    pub(crate) async fn checkout<F, Fut>(
        self: &Arc<Self>,
        key: &Arc<str>,
        connect: F,
    ) -> Result<Lease, BudgetError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<AnyConn, sqlx::Error>>,
    {
        self.start_reaper();
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let plan = self.lock().plan(key, self.max);
            match plan {
                Plan::Reuse(conn, since) => {
                    let mut lease = self.lease(key, conn);
                    if since.elapsed() < PING_AFTER || lease.conn().ping().await.is_ok() {
                        return Ok(lease);
                    }
                    lease.discard();
                }
                Plan::Open => return self.open_reserved(key, &connect).await,
                Plan::Evict(victim) => {
                    // The victim's slot is already ours; give it back if we are cancelled
                    // while the victim closes.
                    let mut reservation = Reservation {
                        budget: self.clone(),
                        key: key.clone(),
                        armed: true,
                    };
                    victim.close().await;
                    reservation.armed = false; // open_reserved reserves it again, no await between
                    return self.open_reserved(key, &connect).await;
                }
                Plan::Wait => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return Err(BudgetError::Timeout(self.acquire_timeout));
                    }
                }
            }
        }
    }

    async fn open_reserved<F, Fut>(
        self: &Arc<Self>,
        key: &Arc<str>,
        connect: &F,
    ) -> Result<Lease, BudgetError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<AnyConn, sqlx::Error>>,
    {
        let mut reservation = Reservation {
            budget: self.clone(),
            key: key.clone(),
            armed: true,
        };
        let conn = connect().await?;
        reservation.armed = false;
        Ok(self.lease(key, conn))
    }

    fn lease(self: &Arc<Self>, key: &Arc<str>, conn: AnyConn) -> Lease {
        Lease {
            conn: Some(conn),
            key: key.clone(),
            budget: self.clone(),
        }
    }

    fn give_back(self: &Arc<Self>, key: &Arc<str>, conn: AnyConn) {
        let mut state = self.lock();
        let closing = state.slots.get(key).is_none_or(|s| s.closing);
        if closing {
            drop(state);
            self.close_and_release(key.clone(), conn);
            return;
        }
        state.seq += 1;
        let seq = state.seq;
        state.lru.insert(seq, key.clone());
        if let Some(slot) = state.slots.get_mut(key) {
            slot.idle.push(Idle {
                conn,
                seq,
                since: Instant::now(),
            });
        }
        drop(state);
        self.freed.notify_waiters();
    }

    fn release(&self, key: &Arc<str>) {
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        if let Some(slot) = state.slots.get_mut(key) {
            slot.open = slot.open.saturating_sub(1);
        }
        state.drop_empty(key);
        drop(state);
        self.freed.notify_waiters();
    }

    /// Closes `conn`, then frees its slot (so the bound holds while it closes).
    fn close_and_release(self: &Arc<Self>, key: Arc<str>, conn: AnyConn) {
        let budget = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    conn.close().await;
                    budget.release(&key);
                });
            }
            Err(_) => {
                drop(conn);
                budget.release(&key);
            }
        }
    }

    /// Closes every connection to `key`: idle ones now, those in use when returned.
    pub(crate) async fn close_target(self: &Arc<Self>, key: &str) {
        let (key, idle) = {
            let mut state = self.lock();
            let Some(key) = state.slots.get_key_value(key).map(|(k, _)| k.clone()) else {
                return;
            };
            let idle = match state.slots.get_mut(&key) {
                Some(slot) => {
                    slot.closing = true;
                    std::mem::take(&mut slot.idle)
                }
                None => Vec::new(),
            };
            for i in &idle {
                state.lru.remove(&i.seq);
            }
            (key, idle)
        };
        for idle in idle {
            idle.conn.close().await;
            self.release(&key);
        }
        // Wait (bounded) for connections in use to come back and be closed.
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        while self.open_for(&key) > 0 {
            let freed = self.freed.notified();
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break;
            }
        }
    }

    fn start_reaper(self: &Arc<Self>) {
        self.reaper.call_once(|| {
            let weak: Weak<Self> = Arc::downgrade(self);
            let period =
                (self.idle_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(budget) = weak.upgrade() else { return };
                    budget.reap().await;
                }
            });
        });
    }

    /// Closes connections idle longer than the idle timeout.
    async fn reap(self: &Arc<Self>) {
        let expired: Vec<(Arc<str>, AnyConn)> = {
            let mut state = self.lock();
            let timeout = self.idle_timeout;
            let mut out = Vec::new();
            let mut seqs = Vec::new();
            for (key, slot) in &mut state.slots {
                let mut i = 0;
                while i < slot.idle.len() {
                    if slot.idle[i].since.elapsed() >= timeout {
                        let idle = slot.idle.swap_remove(i);
                        seqs.push(idle.seq);
                        out.push((key.clone(), idle.conn));
                    } else {
                        i += 1;
                    }
                }
            }
            for seq in seqs {
                state.lru.remove(&seq);
            }
            out
        };
        for (key, conn) in expired {
            conn.close().await;
            self.release(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    async fn memory() -> Result<AnyConn, sqlx::Error> {
        let options = SqliteConnectOptions::new().in_memory(true);
        Ok(AnyConn::Sqlite(
            SqliteConnection::connect_with(&options).await?,
        ))
    }

    fn key(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[tokio::test]
    async fn idle_connections_are_reused() {
        let budget = Budget::new(4, Duration::from_secs(60), Duration::from_secs(1));
        let opened = AtomicUsize::new(0);
        let connect = || {
            opened.fetch_add(1, Ordering::SeqCst);
            memory()
        };
        for _ in 0..5 {
            let lease = budget.checkout(&key("a"), connect).await.unwrap();
            drop(lease);
        }
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        assert_eq!(budget.open(), 1);
    }

    #[tokio::test]
    async fn the_least_recently_used_idle_connection_makes_room() {
        let budget = Budget::new(2, Duration::from_secs(60), Duration::from_secs(1));
        drop(budget.checkout(&key("a"), memory).await.unwrap());
        drop(budget.checkout(&key("b"), memory).await.unwrap());
        assert_eq!(budget.open(), 2);
        // "a" is the oldest idle connection: "c" takes its slot.
        drop(budget.checkout(&key("c"), memory).await.unwrap());
        assert_eq!(budget.open(), 2);
        assert_eq!(budget.open_for("a"), 0);
        assert_eq!(budget.open_for("b"), 1);
        assert_eq!(budget.open_for("c"), 1);
    }

    #[tokio::test]
    async fn a_full_budget_waits_then_times_out() {
        let budget = Budget::new(1, Duration::from_secs(60), Duration::from_millis(200));
        let held = budget.checkout(&key("a"), memory).await.unwrap();
        let err = budget.checkout(&key("b"), memory).await.unwrap_err();
        assert!(matches!(err, BudgetError::Timeout(_)), "{err}");
        // A waiter gets the connection's slot as soon as it is returned.
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.checkout(&key("b"), memory).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        waiter.await.unwrap().unwrap();
        assert_eq!(budget.open(), 1);
    }

    #[tokio::test]
    async fn the_bound_holds_under_concurrency() {
        let budget = Budget::new(5, Duration::from_secs(60), Duration::from_secs(10));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let budget = budget.clone();
            let peak = peak.clone();
            tasks.push(tokio::spawn(async move {
                let k = key(&format!("t{}", i % 37));
                let lease = budget.checkout(&k, memory).await.unwrap();
                peak.fetch_max(budget.open(), Ordering::SeqCst);
                tokio::task::yield_now().await;
                drop(lease);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            peak.load(Ordering::SeqCst) <= 5,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
        assert!(budget.open() <= 5);
    }

    #[tokio::test]
    async fn an_abandoned_checkout_gives_its_slot_back() {
        let budget = Budget::new(1, Duration::from_secs(60), Duration::from_secs(1));
        let never = || std::future::pending::<Result<AnyConn, sqlx::Error>>();
        let abandoned =
            tokio::time::timeout(Duration::from_millis(50), budget.checkout(&key("a"), never))
                .await;
        assert!(abandoned.is_err());
        assert_eq!(budget.open(), 0);
        budget.checkout(&key("b"), memory).await.unwrap();
    }

    #[tokio::test]
    async fn idle_connections_close_after_the_idle_timeout() {
        let budget = Budget::new(4, Duration::from_millis(100), Duration::from_secs(1));
        drop(budget.checkout(&key("a"), memory).await.unwrap());
        assert_eq!(budget.open(), 1);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(budget.open(), 0);
    }

    #[tokio::test]
    async fn closing_a_target_closes_its_connections() {
        let budget = Budget::new(4, Duration::from_secs(60), Duration::from_secs(1));
        drop(budget.checkout(&key("a"), memory).await.unwrap());
        drop(budget.checkout(&key("b"), memory).await.unwrap());
        budget.close_target("a").await;
        assert_eq!(budget.open_for("a"), 0);
        assert_eq!(budget.open_for("b"), 1);
        // The target can be used again afterwards.
        drop(budget.checkout(&key("a"), memory).await.unwrap());
        assert_eq!(budget.open_for("a"), 1);
    }
}
