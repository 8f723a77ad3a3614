//! [`TenantSlots`]: per-tenant state read on every request (a rate limiter's clock, a
//! tenant's connection permits). A hit is a read lock and one hash lookup — a fraction of a
//! general cache's cost — and the map stays bounded: once it grows past a mark, entries that
//! no one holds and that carry no state worth keeping are swept.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::models::TenantId;

/// The size below which the map is never swept.
const SWEEP_FLOOR: usize = 1024;

/// Slots keyed by tenant (or by a tenant and something more, `K`).
pub(crate) struct TenantSlots<V, K = TenantId> {
    map: RwLock<HashMap<K, Arc<V>>>,
    sweep_at: AtomicUsize,
    /// Whether a slot holds nothing worth keeping (a full bucket, a free semaphore).
    idle: fn(&V) -> bool,
}

impl<V, K: Hash + Eq + Clone> TenantSlots<V, K> {
    pub(crate) fn new(idle: fn(&V) -> bool) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            sweep_at: AtomicUsize::new(SWEEP_FLOOR),
            idle,
        }
    }

    // Every mutation is a single map operation, so a poisoned map is still consistent.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<K, Arc<V>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<K, Arc<V>>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// `id`'s slot, made by `make` when it has none.
    pub(crate) fn get_or_insert_with(&self, id: &K, make: impl FnOnce() -> V) -> Arc<V> {
        if let Some(slot) = self.read().get(id) {
            return slot.clone();
        }
        let mut map = self.write();
        if map.len() >= self.sweep_at.load(Ordering::Relaxed) {
            let idle = self.idle;
            // A slot someone holds (strong count > 1) is in use whatever it says.
            map.retain(|_, slot| Arc::strong_count(slot) > 1 || !idle(slot));
            self.sweep_at
                .store((map.len() * 2).max(SWEEP_FLOOR), Ordering::Relaxed);
        }
        map.entry(id.clone())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }

    /// Tenants with a slot.
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    fn id(i: usize) -> TenantId {
        format!("t{i}").parse().unwrap()
    }

    #[test]
    fn hits_share_a_slot_and_idle_slots_are_swept_past_the_mark() {
        let slots: TenantSlots<AtomicU64> = TenantSlots::new(|v| v.load(Ordering::Relaxed) == 0);
        let a = slots.get_or_insert_with(&id(0), || AtomicU64::new(0));
        a.store(7, Ordering::Relaxed);
        assert_eq!(
            slots
                .get_or_insert_with(&id(0), || AtomicU64::new(0))
                .load(Ordering::Relaxed),
            7
        );
        drop(a);
        // One busy slot (value 7) among many idle ones.
        for i in 1..=SWEEP_FLOOR * 3 {
            slots.get_or_insert_with(&id(i), || AtomicU64::new(0));
        }
        assert!(slots.len() < SWEEP_FLOOR * 2, "swept: {}", slots.len());
        assert_eq!(
            slots
                .get_or_insert_with(&id(0), || AtomicU64::new(0))
                .load(Ordering::Relaxed),
            7
        );
        // A held slot survives a sweep even when idle.
        let held = slots.get_or_insert_with(&id(99_999), || AtomicU64::new(0));
        for i in 0..SWEEP_FLOOR * 4 {
            slots.get_or_insert_with(&id(100_000 + i), || AtomicU64::new(0));
        }
        assert!(Arc::ptr_eq(
            &held,
            &slots.get_or_insert_with(&id(99_999), || AtomicU64::new(0))
        ));
    }
}
