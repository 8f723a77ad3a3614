//! [`Budget`]: one bound on the connections open to tenant databases, for any number of
//! tenants. Connections are opened lazily, kept idle per target for reuse, evicted
//! least-recently-used when another target needs the room, and closed after `idle_timeout`.
//!
//! Unlike a pool per tenant (whose idle connections add up with the tenant count), the bound
//! here counts every open connection, idle or in use: `open <= max` always holds, also while
//! an evicted connection is being closed (its slot passes to the new one only after it is
//! closed), and while a returned one is being reset.
//!
//! A connection a request returns is reset ([`session`](super::session)) before anyone uses
//! it again: by the next checkout, in the round trip that puts it on that checkout's schema
//! (so a busy service pays no round trip more than the `SET search_path` it always paid), or,
//! when it stays idle past [`SWEEP_AFTER`], by a sweep in the background (so what a handler
//! left — an open transaction's locks above all — does not linger on an idle connection). A
//! reset connection remembers the schema it is on, and a checkout for a schema takes one
//! already on it first: that one costs no round trip at all.
//!
//! When every connection is in use, checkouts queue: a returned connection goes straight to
//! the longest-waiting checkout for its target, first come first served. (Waking every
//! waiter to race for it let newcomers overtake the queue: under a rotating load the p99
//! was twice a plain `sqlx` pool's, `benches/pg.sh`.)

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    future::Future,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::sync::{Notify, oneshot};

use super::session;

/// Reuse a connection idle longer than this only after a ping.
const PING_AFTER: Duration = Duration::from_secs(30);
/// An idle connection unused this long may be taken by a target that has connections of its
/// own but wants another (a warmer one is waited for instead).
const COLD_AFTER: Duration = Duration::from_millis(250);
/// A returned connection idle this long is reset by the sweep rather than its next checkout.
pub(crate) const SWEEP_AFTER: Duration = Duration::from_millis(250);

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

    /// Closes the socket without waiting for the server (it may still be busy).
    async fn close_hard(self) {
        let result = match self {
            Self::Sqlite(c) => c.close_hard().await,
            Self::Postgres(c) => c.close_hard().await,
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
    /// Checkouts waiting for a connection of their target, in arrival order.
    waiters: VecDeque<Waiter>,
}

/// A checkout waiting in line; a returned connection of its target is sent to it.
struct Waiter {
    id: u64,
    key: Arc<str>,
    tx: oneshot::Sender<Handoff>,
}

/// A returned connection on its way to a waiting checkout. Dropped unreceived (the
/// checkout was cancelled), its lease returns the connection to the budget.
struct Handoff {
    lease: Lease,
    session: Session,
    since: Instant,
}

/// A place in the line; leaving it (given up, timed out, cancelled) removes it.
struct InLine<'a> {
    budget: &'a Budget,
    id: u64,
    rx: oneshot::Receiver<Handoff>,
}

impl InLine<'_> {
    /// Out of the line; a connection handed over meanwhile is returned.
    fn leave(&mut self) -> Option<Handoff> {
        let mut state = self.budget.lock();
        if let Some(at) = state.waiters.iter().position(|w| w.id == self.id) {
            state.waiters.remove(at);
            return None;
        }
        drop(state);
        self.rx.try_recv().ok()
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        // A connection handed over but not taken returns through its lease's drop.
        drop(self.leave());
    }
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
    session: Session,
}

/// A connection taken by the sweep: its target, itself, its schema, and its place and age.
type Swept = (Arc<str>, AnyConn, Option<Arc<str>>, (u64, Instant));

/// What is known of an idle connection's session.
#[derive(Debug, Clone)]
enum Session {
    /// Returned by a request, checked out for `schema`: whatever the request left is still
    /// there. Reset before any use.
    Used(Option<Arc<str>>),
    /// New or reset; its `search_path` is on `schema` (`None`: the default).
    Clean(Option<Arc<str>>),
}

enum Plan {
    Reuse(Idle),
    Open,
    Evict(AnyConn),
    Wait,
}

impl State {
    /// What a checkout for `key` does. Of several idle connections a clean one already on
    /// `schema` is taken first (no round trip), then any clean one, then the one returned
    /// last (reset on the way).
    fn plan(&mut self, key: &Arc<str>, schema: Option<&str>, max: usize) -> Plan {
        if let Some(slot) = self.slots.get_mut(key)
            && !slot.closing
            && let Some(last) = slot.idle.len().checked_sub(1)
        {
            let on_schema =
                |i: &Idle| matches!(&i.session, Session::Clean(on) if on.as_deref() == schema);
            let clean = |i: &Idle| matches!(i.session, Session::Clean(_));
            let pick = slot
                .idle
                .iter()
                .rposition(on_schema)
                .or_else(|| slot.idle.iter().rposition(clean))
                .unwrap_or(last);
            let idle = slot.idle.swap_remove(pick);
            self.lru.remove(&idle.seq);
            return Plan::Reuse(idle);
        }
        if self.open < max {
            self.open += 1;
            self.slots.entry(key.clone()).or_default().open += 1;
            return Plan::Open;
        }
        // Full, and the target already has connections (all in use): wait for one of its
        // own, unless another target's idle connection has gone cold. Taking a warm one
        // makes rotating traffic a connect per request — a Postgres backend started and
        // another ended each time (`benches/pg.sh`, a database per tenant, 100 tenants
        // rotating: 5 % of bare throughput before this) — while a cold one is what lets a
        // hot tenant grow (Zipf traffic).
        if self
            .slots
            .get(key)
            .is_some_and(|s| s.open > 0 && !s.closing)
        {
            let coldest = self
                .lru
                .first_key_value()
                .and_then(|(_, k)| self.slots.get(k))
                .and_then(|slot| slot.idle.iter().map(|i| i.since).min());
            if coldest.is_none_or(|since| since.elapsed() < COLD_AFTER) {
                return Plan::Wait;
            }
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

    /// A place at the end of the line for a connection of `key`.
    fn join_line(&mut self, key: &Arc<str>) -> (u64, oneshot::Receiver<Handoff>) {
        let (tx, rx) = oneshot::channel();
        self.seq += 1;
        let id = self.seq;
        self.waiters.push_back(Waiter {
            id,
            key: key.clone(),
            tx,
        });
        (id, rx)
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

/// A connection checked out of the budget, on its schema; returned for reuse (and reset
/// before that) when dropped.
pub(crate) struct Lease {
    conn: Option<AnyConn>,
    key: Arc<str>,
    budget: Arc<Budget>,
    /// The schema it was checked out for.
    schema: Option<Arc<str>>,
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
            self.budget
                .put_idle(&self.key, conn, Session::Used(self.schema.take()), None);
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

    /// Idle connections (reset and ready for the next checkout).
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.lock().lru.len()
    }

    /// Open connections to one target.
    pub(crate) fn open_for(&self, key: &str) -> usize {
        self.lock().slots.get(key).map_or(0, |s| s.open)
    }

    /// A connection to `key`, reset and on `schema`: an idle one (one already on `schema`
    /// first), a new one, or one made room for by closing the least recently used idle
    /// connection of another target; waits up to the acquire timeout when every connection
    /// is in use. An idle connection whose reset or switch fails is closed and another tried.
    pub(crate) async fn checkout<F, Fut>(
        self: &Arc<Self>,
        key: &Arc<str>,
        schema: Option<&Arc<str>>,
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
            let (plan, line) = {
                let mut state = self.lock();
                let plan = state.plan(key, schema.map(|s| &**s), self.max);
                let line = matches!(plan, Plan::Wait).then(|| state.join_line(key));
                (plan, line)
            };
            let mut lease = match plan {
                Plan::Reuse(idle) => {
                    let lease = self.lease(key, idle.conn);
                    match ready(lease, idle.session, idle.since, schema).await {
                        Some(lease) => lease,
                        None => continue,
                    }
                }
                Plan::Open => self.open_reserved(key, &connect, schema).await?,
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
                    self.open_reserved(key, &connect, schema).await?
                }
                Plan::Wait => {
                    let (id, rx) = line.expect("a waiting plan has its place in line");
                    let mut line = InLine {
                        budget: self,
                        id,
                        rx,
                    };
                    let handed = tokio::select! {
                        handed = &mut line.rx => handed.ok(),
                        // A slot was freed (a connection closed): plan again.
                        () = &mut freed => line.leave(),
                        () = tokio::time::sleep_until(deadline) => match line.leave() {
                            Some(handed) => Some(handed),
                            None => return Err(BudgetError::Timeout(self.acquire_timeout)),
                        },
                    };
                    let Some(Handoff {
                        lease,
                        session,
                        since,
                    }) = handed
                    else {
                        continue;
                    };
                    match ready(lease, session, since, schema).await {
                        Some(lease) => lease,
                        None => continue,
                    }
                }
            };
            lease.schema = schema.cloned();
            return Ok(lease);
        }
    }

    /// A new connection, on `schema`; one whose switch fails is closed.
    async fn open_reserved<F, Fut>(
        self: &Arc<Self>,
        key: &Arc<str>,
        connect: &F,
        schema: Option<&Arc<str>>,
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
        let mut lease = self.lease(key, conn);
        if let Err(e) = switch(lease.conn(), schema.map(|s| &**s)).await {
            lease.discard();
            return Err(BudgetError::Connect(e));
        }
        Ok(lease)
    }

    fn lease(self: &Arc<Self>, key: &Arc<str>, conn: AnyConn) -> Lease {
        Lease {
            conn: Some(conn),
            key: key.clone(),
            budget: self.clone(),
            schema: None,
        }
    }

    /// Makes `conn` idle with what is known of its `session` (a connection of a closing
    /// target is closed instead).
    fn put_idle(
        self: &Arc<Self>,
        key: &Arc<str>,
        conn: AnyConn,
        session: Session,
        // A connection the sweep reset keeps its place and age: a reset is not a use.
        kept: Option<(u64, Instant)>,
    ) {
        let mut state = self.lock();
        let closing = state.slots.get(key).is_none_or(|s| s.closing);
        if closing {
            drop(state);
            self.close_and_release(key.clone(), conn);
            return;
        }
        let (seq, since) = kept.unwrap_or_else(|| {
            state.seq += 1;
            (state.seq, Instant::now())
        });
        // The longest-waiting checkout for this target takes it, if one is waiting.
        let mut handoff = Handoff {
            lease: self.lease(key, conn),
            session,
            since,
        };
        while let Some(at) = state.waiters.iter().position(|w| w.key == *key) {
            let waiter = state.waiters.remove(at).expect("a found waiter is in line");
            match waiter.tx.send(handoff) {
                Ok(()) => return,
                Err(back) => handoff = back,
            }
        }
        let Handoff {
            mut lease, session, ..
        } = handoff;
        let conn = lease.conn.take().expect("a handoff holds its connection");
        state.lru.insert(seq, key.clone());
        if let Some(slot) = state.slots.get_mut(key) {
            slot.idle.push(Idle {
                conn,
                seq,
                since,
                session,
            });
        }
        drop(state);
        self.freed.notify_waiters();
    }

    /// Resets, in the background, the returned connections that stayed idle past
    /// [`SWEEP_AFTER`] (each back on the schema it was used for); one whose reset fails is
    /// closed.
    async fn sweep(self: &Arc<Self>) {
        let used: Vec<Swept> = {
            let mut state = self.lock();
            let mut out = Vec::new();
            let mut seqs = Vec::new();
            for (key, slot) in &mut state.slots {
                let mut i = 0;
                while i < slot.idle.len() {
                    let idle = &slot.idle[i];
                    if matches!(idle.session, Session::Used(_))
                        && idle.since.elapsed() >= SWEEP_AFTER
                    {
                        let idle = slot.idle.swap_remove(i);
                        seqs.push(idle.seq);
                        let Session::Used(schema) = idle.session else {
                            continue;
                        };
                        out.push((key.clone(), idle.conn, schema, (idle.seq, idle.since)));
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
        for (key, mut conn, schema, kept) in used {
            let budget = self.clone();
            tokio::spawn(async move {
                match reset(&mut conn, schema.as_deref()).await {
                    Ok(()) => budget.put_idle(&key, conn, Session::Clean(schema), Some(kept)),
                    Err(Unusable::Failed) => {
                        conn.close().await;
                        budget.release(&key);
                    }
                    Err(Unusable::Busy) => {
                        conn.close_hard().await;
                        budget.release(&key);
                    }
                }
            });
        }
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

    /// Closes every idle connection (at shutdown, once the last request is answered), so the
    /// servers see a clean goodbye rather than a dropped socket.
    pub(crate) async fn close_idle(self: &Arc<Self>) {
        let idle: Vec<(Arc<str>, Idle)> = {
            let mut state = self.lock();
            let mut idle = Vec::new();
            for (key, slot) in &mut state.slots {
                idle.extend(
                    std::mem::take(&mut slot.idle)
                        .into_iter()
                        .map(|i| (key.clone(), i)),
                );
            }
            for (_, i) in &idle {
                state.lru.remove(&i.seq);
            }
            idle
        };
        for (key, idle) in idle {
            idle.conn.close().await;
            self.release(&key);
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
            let sweeper = weak.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_AFTER);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(budget) = sweeper.upgrade() else {
                        return;
                    };
                    budget.sweep().await;
                }
            });
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

/// Why a connection cannot be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unusable {
    /// Its reset failed (a broken connection, a transaction sqlx still counts as open).
    Failed,
    /// It was still busy past the reset's time (a query whose future was dropped).
    Busy,
}

/// `lease`, reset (`Used`) or switched to `schema` (`Clean` on another), or pinged when it
/// sat idle long; `None` when that failed and the connection was closed.
async fn ready(
    mut lease: Lease,
    session: Session,
    since: Instant,
    schema: Option<&Arc<str>>,
) -> Option<Lease> {
    let schema = schema.map(|s| &**s);
    let ready = match session {
        Session::Used(_) => reset(lease.conn(), schema).await.is_ok(),
        Session::Clean(on) if on.as_deref() != schema => switch(lease.conn(), schema).await.is_ok(),
        Session::Clean(_) => since.elapsed() < PING_AFTER || lease.conn().ping().await.is_ok(),
    };
    if ready {
        Some(lease)
    } else {
        lease.discard();
        None
    }
}

/// [`session::reset`] within [`session::RESET_TIMEOUT`].
async fn reset(conn: &mut AnyConn, schema: Option<&str>) -> Result<(), Unusable> {
    match tokio::time::timeout(session::RESET_TIMEOUT, session::reset(conn, schema)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "a returned tenant connection is closed, not reused");
            Err(Unusable::Failed)
        }
        Err(_) => {
            tracing::debug!("a returned tenant connection was still busy; it is closed");
            Err(Unusable::Busy)
        }
    }
}

/// Puts a clean connection on `schema` (Postgres; nothing for SQLite or no schema).
async fn switch(conn: &mut AnyConn, schema: Option<&str>) -> Result<(), sqlx::Error> {
    match (conn, schema) {
        (AnyConn::Postgres(conn), Some(schema)) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(session::switch_sql(schema)))
                .execute(conn)
                .await
                .map(drop)
        }
        _ => Ok(()),
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

    /// Waits until `n` connections are idle (returned connections are reset first).
    async fn idle_is(budget: &Budget, n: usize) {
        for _ in 0..400 {
            if budget.idle() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{} idle connections, not {n}", budget.idle());
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
            let lease = budget.checkout(&key("a"), None, connect).await.unwrap();
            drop(lease);
            idle_is(&budget, 1).await;
        }
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        assert_eq!(budget.open(), 1);
    }

    /// Budget full, and "a" has a connection in use: a second checkout of "a" waits for it
    /// while "b"'s idle connection is warm (taking it would cost "b" a connect on its next
    /// request), and takes "b"'s once that has gone cold.
    #[tokio::test]
    async fn a_busy_target_waits_for_its_own_unless_another_is_cold() {
        let budget = Budget::new(2, Duration::from_secs(60), Duration::from_millis(100));
        drop(budget.checkout(&key("b"), None, memory).await.unwrap());
        idle_is(&budget, 1).await;
        let held = budget.checkout(&key("a"), None, memory).await.unwrap();
        // "b" is warm: "a" waits, and with "a"'s own connection held, times out.
        let waited = budget.checkout(&key("a"), None, memory).await;
        assert!(matches!(waited, Err(BudgetError::Timeout(_))), "{waited:?}");
        assert_eq!(budget.open_for("b"), 1, "the warm connection was not taken");
        // Returned, "a"'s own connection serves the next checkout of "a".
        drop(held);
        idle_is(&budget, 2).await;
        let again = budget.checkout(&key("a"), None, memory).await.unwrap();
        assert_eq!((budget.open_for("a"), budget.open_for("b")), (1, 1));
        // Once "b" has been idle past COLD_AFTER, a second connection of "a" may take it.
        tokio::time::sleep(COLD_AFTER + Duration::from_millis(50)).await;
        let second = budget.checkout(&key("a"), None, memory).await.unwrap();
        assert_eq!((budget.open_for("a"), budget.open_for("b")), (2, 0));
        drop((again, second));
    }

    /// Checkouts queued on a full budget get the returned connection in arrival order, and
    /// one arriving after the return waits its turn rather than overtaking the line.
    #[tokio::test]
    async fn a_returned_connection_goes_to_the_first_in_line() {
        let budget = Budget::new(1, Duration::from_secs(60), Duration::from_secs(5));
        let held = budget.checkout(&key("a"), None, memory).await.unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut queued = Vec::new();
        for n in 0..3 {
            let (waiter, served) = (budget.clone(), served.clone());
            queued.push(tokio::spawn(async move {
                let lease = waiter.checkout(&key("a"), None, memory).await.unwrap();
                served.lock().unwrap().push(n);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(lease);
            }));
            while budget.lock().waiters.len() < n + 1 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        drop(held);
        let newcomer = budget.checkout(&key("a"), None, memory).await.unwrap();
        served.lock().unwrap().push(99);
        for task in queued {
            task.await.unwrap();
        }
        assert_eq!(*served.lock().unwrap(), [0, 1, 2, 99]);
        assert!(budget.lock().waiters.is_empty());
        drop(newcomer);
    }

    /// A checkout that gives up (cancelled, or timed out) leaves the line, and a connection
    /// handed to it meanwhile is not lost: the next checkout gets it.
    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_line_and_loses_no_connection() {
        let budget = Budget::new(1, Duration::from_secs(60), Duration::from_secs(5));
        let held = budget.checkout(&key("a"), None, memory).await.unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.checkout(&key("a"), None, memory).await.map(drop) })
        };
        while budget.lock().waiters.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Handed over, then cancelled before it ran: the connection comes back.
        drop(held);
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        assert!(budget.lock().waiters.is_empty());
        idle_is(&budget, 1).await;
        let again = tokio::time::timeout(
            Duration::from_secs(1),
            budget.checkout(&key("a"), None, memory),
        )
        .await
        .expect("the connection came back")
        .unwrap();
        assert_eq!(budget.open(), 1);
        drop(again);
    }

    #[tokio::test]
    async fn the_least_recently_used_idle_connection_makes_room() {
        let budget = Budget::new(2, Duration::from_secs(60), Duration::from_secs(1));
        drop(budget.checkout(&key("a"), None, memory).await.unwrap());
        idle_is(&budget, 1).await;
        drop(budget.checkout(&key("b"), None, memory).await.unwrap());
        idle_is(&budget, 2).await;
        assert_eq!(budget.open(), 2);
        // "a" is the oldest idle connection: "c" takes its slot.
        drop(budget.checkout(&key("c"), None, memory).await.unwrap());
        assert_eq!(budget.open(), 2);
        assert_eq!(budget.open_for("a"), 0);
        assert_eq!(budget.open_for("b"), 1);
        assert_eq!(budget.open_for("c"), 1);
    }

    #[tokio::test]
    async fn a_full_budget_waits_then_times_out() {
        let budget = Budget::new(1, Duration::from_secs(60), Duration::from_millis(200));
        let held = budget.checkout(&key("a"), None, memory).await.unwrap();
        let err = budget.checkout(&key("b"), None, memory).await.unwrap_err();
        assert!(matches!(err, BudgetError::Timeout(_)), "{err}");
        // A waiter gets the connection's slot as soon as it is returned.
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.checkout(&key("b"), None, memory).await.map(drop) })
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
                let lease = budget.checkout(&k, None, memory).await.unwrap();
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
        let abandoned = tokio::time::timeout(
            Duration::from_millis(50),
            budget.checkout(&key("a"), None, never),
        )
        .await;
        assert!(abandoned.is_err());
        assert_eq!(budget.open(), 0);
        budget.checkout(&key("b"), None, memory).await.unwrap();
    }

    #[tokio::test]
    async fn idle_connections_close_after_the_idle_timeout() {
        let budget = Budget::new(4, Duration::from_millis(100), Duration::from_secs(1));
        drop(budget.checkout(&key("a"), None, memory).await.unwrap());
        assert_eq!(budget.open(), 1);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(budget.open(), 0);
    }

    #[tokio::test]
    async fn a_returned_transaction_is_rolled_back_and_temp_tables_close_the_connection() {
        let budget = Budget::new(1, Duration::from_secs(60), Duration::from_secs(1));
        let shared = || async {
            let options = SqliteConnectOptions::new()
                .filename("file:budget_reset?mode=memory&cache=shared")
                .shared_cache(true);
            Ok(AnyConn::Sqlite(
                SqliteConnection::connect_with(&options).await?,
            ))
        };
        let mut keeper = shared().await.unwrap();
        let AnyConn::Sqlite(keeper_conn) = &mut keeper else {
            unreachable!()
        };
        sqlx::raw_sql("CREATE TABLE t (v INTEGER)")
            .execute(&mut *keeper_conn)
            .await
            .unwrap();
        let mut lease = budget.checkout(&key("a"), None, shared).await.unwrap();
        let AnyConn::Sqlite(conn) = lease.conn() else {
            unreachable!()
        };
        sqlx::raw_sql("BEGIN; INSERT INTO t VALUES (1)")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(lease);
        idle_is(&budget, 1).await;
        let mut lease = budget.checkout(&key("a"), None, shared).await.unwrap();
        let AnyConn::Sqlite(conn) = lease.conn() else {
            unreachable!()
        };
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(rows, 0, "the open transaction was rolled back");
        sqlx::raw_sql("CREATE TEMP TABLE scratch (v INTEGER)")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(lease);
        for _ in 0..400 {
            if budget.open() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(budget.open(), 0, "a connection with temp tables is closed");
    }

    #[tokio::test]
    async fn closing_a_target_closes_its_connections() {
        let budget = Budget::new(4, Duration::from_secs(60), Duration::from_secs(1));
        drop(budget.checkout(&key("a"), None, memory).await.unwrap());
        drop(budget.checkout(&key("b"), None, memory).await.unwrap());
        budget.close_target("a").await;
        assert_eq!(budget.open_for("a"), 0);
        assert_eq!(budget.open_for("b"), 1);
        // The target can be used again afterwards.
        drop(budget.checkout(&key("a"), None, memory).await.unwrap());
        assert_eq!(budget.open_for("a"), 1);
    }
}
