//! A bounded map for per-client state. A flood of distinct clients must neither grow memory
//! without limit nor cost a full scan per new client, and the memory it took must be given
//! back once it is over.

use std::collections::HashMap;
use std::hash::Hash;
use tokio::time::Instant;

/// How many entries a table holds unless told otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;

pub struct Table<K, V> {
    map: HashMap<K, Slot<V>>,
    capacity: usize,
    /// Bumped on every touch; an entry's `touched` is the value it last saw. Wraps, so ages
    /// are taken with `wrapping_sub` (an entry untouched for 2^32 touches looks young again,
    /// which only makes it a later eviction candidate).
    clock: u32,
}

struct Slot<V> {
    value: V,
    touched: u32,
}

impl<K: Eq + Hash + Copy, V> Table<K, V> {
    /// Bytes one entry takes in the map, key and touch stamp included (the map adds one
    /// control byte per bucket and keeps up to 1/8 of its buckets free).
    #[cfg(test)]
    pub const STORED_SIZE: usize = size_of::<(K, Slot<V>)>();

    /// A capacity of 0 is taken as 1.
    pub fn new(capacity: usize) -> Self {
        Table {
            map: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The entry for `key`, touched.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let now = self.tick();
        let slot = self.map.get_mut(key)?;
        slot.touched = now;
        Some(&mut slot.value)
    }

    /// The entry for `key`, touched; created with `make` if missing, evicting the least
    /// recently touched entries first when the table is full.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            self.evict();
        }
        let now = self.tick();
        let slot = self.map.entry(key).or_insert_with(|| Slot {
            value: make(),
            touched: now,
        });
        slot.touched = now;
        &mut slot.value
    }

    pub fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Drops the entries `expired` picks, and hands memory back when most of it is unused.
    pub fn purge(&mut self, now: Instant, expired: impl Fn(&V, Instant) -> bool) {
        self.map.retain(|_, slot| !expired(&slot.value, now));
        if self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to_fit();
        }
    }

    fn tick(&mut self) -> u32 {
        self.clock = self.clock.wrapping_add(1);
        self.clock
    }

    /// Removes the oldest 1/64 of the capacity at once, so the O(n) selection is paid once
    /// per that many inserts rather than on each.
    fn evict(&mut self) {
        let batch = (self.capacity / 64).max(1);
        let clock = self.clock;
        let age = |slot: &Slot<V>| clock.wrapping_sub(slot.touched);
        let mut ages: Vec<u32> = self.map.values().map(age).collect();
        let Some(nth) = ages.len().checked_sub(batch) else {
            self.map.clear();
            return;
        };
        let (_, &mut threshold, _) = ages.select_nth_unstable(nth);
        // Touch stamps are distinct unless the clock wrapped, so this removes `batch` entries
        // (a few more on ties, never fewer).
        self.map.retain(|_, slot| age(slot) < threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_touched_in_batches() {
        let mut table = Table::new(128);
        for k in 0..128u32 {
            table.get_or_insert_with(k, || k);
        }
        // Keep 0 and 1 fresh; 2 and 3 are now the oldest.
        assert!(table.get_mut(&0).is_some());
        assert!(table.get_mut(&1).is_some());
        table.get_or_insert_with(1000, || 1000);
        // 128 / 64 = 2 evicted, then one inserted.
        assert_eq!(table.len(), 127);
        assert!(table.get_mut(&0).is_some());
        assert!(table.get_mut(&1).is_some());
        assert!(table.get_mut(&2).is_none());
        assert!(table.get_mut(&3).is_none());
        assert!(table.get_mut(&4).is_some());
    }

    #[test]
    fn stays_bounded_under_a_flood() {
        let mut table = Table::new(1000);
        for k in 0..50_000u32 {
            table.get_or_insert_with(k, || ());
            assert!(table.len() <= 1000);
        }
        // The newest survive.
        assert!(table.get_mut(&49_999).is_some());
    }

    #[test]
    fn existing_key_never_evicts() {
        let mut table = Table::new(2);
        table.get_or_insert_with(1, || 1);
        table.get_or_insert_with(2, || 2);
        *table.get_or_insert_with(1, || 0) += 10;
        assert_eq!(table.len(), 2);
        assert_eq!(table.get_mut(&1).copied(), Some(11));
    }

    #[test]
    fn purge_drops_expired_and_gives_memory_back() {
        let mut table = Table::new(100_000);
        for k in 0..50_000u32 {
            table.get_or_insert_with(k, || k);
        }
        let big = table.map.capacity();
        table.purge(Instant::now(), |&v, _| v >= 10);
        assert_eq!(table.len(), 10);
        assert!(table.map.capacity() < big / 100);
        table.purge(Instant::now(), |_, _| true);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn capacity_one() {
        let mut table = Table::new(0);
        table.get_or_insert_with(1, || ());
        table.get_or_insert_with(2, || ());
        assert_eq!(table.len(), 1);
        assert!(table.get_mut(&2).is_some());
    }
}
