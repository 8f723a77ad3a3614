//! Sign-in attempts: password hashing off the async workers, at a bounded concurrency, at the
//! same cost whether the user exists or not; failed attempts throttled per user and per client
//! address.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

use crate::crypto;

/// Failed sign-ins of one user in a window before its next attempts are refused.
pub(crate) const PER_USER: u32 = 5;
/// Failed sign-ins from one address in a window.
pub(crate) const PER_ADDRESS: u32 = 20;
/// The window failures are counted over; a throttled key waits until it ends.
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Keys remembered at most (memory stays bounded whatever the attempts).
const MAX_TRACKED: usize = 10_000;

/// What a sign-in for an unknown user is checked against, so that it costs what a known
/// user's does (no user enumeration by timing).
/// (Without randomness for its salt it is empty, which no password matches: only the
/// timing differs then.)
static DECOY: LazyLock<String> =
    LazyLock::new(|| crypto::hash_password("decoy password").unwrap_or_default());

/// Password checks at once: each is a CPU-bound PBKDF2; more would only queue on the cores.
static HASHING: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
});

/// Whether `password` matches `stored` (or, for no user, the decoy — always false), computed
/// on a blocking thread.
pub(crate) async fn verify(password: String, stored: Option<String>) -> bool {
    let Ok(_permit) = HASHING.acquire().await else {
        return false;
    };
    let known = stored.is_some();
    let stored = stored.unwrap_or_else(|| DECOY.clone());
    let matched = tokio::task::spawn_blocking(move || crypto::verify_password(&password, &stored))
        .await
        .unwrap_or(false);
    known && matched
}

/// A password hash for a new user, computed on a blocking thread.
pub(crate) async fn hash(password: String) -> Result<String, crypto::NoRandomness> {
    let _permit = HASHING.acquire().await.ok();
    match tokio::task::spawn_blocking(move || crypto::hash_password(&password)).await {
        Ok(hash) => hash,
        // The blocking pool is gone (shutting down): hash here rather than fail.
        Err(_) => crypto::hash_password("unusable: the hash was not computed"),
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// Failed sign-ins per user and per client address.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        // Every mutation is one map operation: a poisoned map is still consistent.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keys(user: &str, address: Option<IpAddr>) -> [(String, u32); 2] {
        [
            (format!("user:{}", user.to_lowercase()), PER_USER),
            (
                format!(
                    "address:{}",
                    address.map(|a| a.to_string()).unwrap_or_default()
                ),
                PER_ADDRESS,
            ),
        ]
    }

    /// `Err(wait)` when the user or the address used up its failures in this window.
    pub(crate) fn check(&self, user: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let failures = self.lock();
        let wait = Self::keys(user, address)
            .iter()
            .filter_map(|(key, limit)| {
                let f = failures.get(key)?;
                let left = WINDOW.checked_sub(now.duration_since(f.since))?;
                (f.count >= *limit).then_some(left)
            })
            .max();
        wait.map_or(Ok(()), Err)
    }

    /// Counts a failed sign-in.
    pub(crate) fn failed(&self, user: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| now.duration_since(f.since) < WINDOW);
        }
        if failures.len() >= MAX_TRACKED {
            // Still full: forget the keys that are not throttled; the throttled stay.
            failures.retain(|key, f| {
                f.count
                    >= if key.starts_with("user:") {
                        PER_USER
                    } else {
                        PER_ADDRESS
                    }
            });
        }
        for (key, _) in Self::keys(user, address) {
            let entry = failures.entry(key).or_insert(Failures {
                count: 0,
                since: now,
            });
            if now.duration_since(entry.since) >= WINDOW {
                *entry = Failures {
                    count: 0,
                    since: now,
                };
            }
            entry.count = entry.count.saturating_add(1);
        }
    }

    /// A successful sign-in clears the user's failures (not the address's).
    pub(crate) fn succeeded(&self, user: &str) {
        let [(key, _), _] = Self::keys(user, None);
        self.lock().remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_and_an_address_are_throttled_after_their_failures() {
        let throttle = LoginThrottle::default();
        let here: Option<IpAddr> = "10.0.0.1".parse().ok();
        for _ in 0..PER_USER {
            assert!(throttle.check("alice", here).is_ok());
            throttle.failed("alice", here);
        }
        let wait = throttle.check("Alice", here).unwrap_err();
        assert!(wait > WINDOW - Duration::from_secs(5) && wait <= WINDOW);
        // Another user from the same address still may, until the address is used up too.
        assert!(throttle.check("bob", here).is_ok());
        for i in 0..PER_ADDRESS {
            throttle.failed(&format!("user{i}"), here);
        }
        assert!(
            throttle.check("carol", here).is_err(),
            "the address is throttled"
        );
        assert!(throttle.check("carol", "10.0.0.2".parse().ok()).is_ok());
        throttle.succeeded("alice");
        assert!(throttle.check("alice", "10.0.0.3".parse().ok()).is_ok());
    }

    #[tokio::test]
    async fn unknown_users_cost_a_hash_and_never_match() {
        let stored = crypto::hash_password("right").unwrap();
        assert!(verify("right".into(), Some(stored.clone())).await);
        assert!(!verify("wrong".into(), Some(stored)).await);
        assert!(!verify("decoy password".into(), None).await);
    }
}
