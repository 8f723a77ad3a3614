//! The service's background tasks — outbox delivery, heartbeats, usage periods, entitlement
//! sync, the change feed, pruning — on one tracker, stopped together at shutdown. A task stops
//! at its next wait, never in the middle of its work, so no round is cut in half (a usage
//! period taken but not queued, an item delivered but not marked) and none touches a pool
//! after it is closed.

use std::{future::Future, time::Duration};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Spawns and stops the background tasks of one service.
#[derive(Debug, Clone, Default)]
pub struct Background {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Background {
    /// Spawns `task`; it should `select!` on [`stopping`](Self::stopping) where it waits.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Completes once the service is stopping.
    pub async fn stopping(&self) {
        self.stop.cancelled().await;
    }

    /// Whether the service is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Sleeps for `duration`; `false` when the service began stopping first.
    pub async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            () = tokio::time::sleep(duration) => true,
        }
    }

    /// Asks every task to stop and waits up to `deadline` for them to finish their current
    /// work; `false` when some were still running at the deadline (they are left to finish).
    pub async fn stop(&self, deadline: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }
}
