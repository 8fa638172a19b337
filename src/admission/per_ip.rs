//! Per-client-address limits: live connections (`maxConnectionsPerIP`) and new connections per
//! sliding minute (`connectionRateLimitPerMinute`).

use super::table::{DEFAULT_CAPACITY, Table};
use super::window::{SlidingWindow, WindowClock};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

pub const MAX_ENTRIES: usize = DEFAULT_CAPACITY;

const RATE_WINDOW: Duration = Duration::from_secs(60);

/// IPv6 octets, IPv4 as IPv4-mapped IPv6, so both spellings of one client share an entry.
type Key = [u8; 16];

pub struct PerIp {
    state: Mutex<State>,
    max_live: u64,
    max_per_minute: u64,
    clock: WindowClock,
}

struct State {
    table: Table<Key, Entry>,
    next_generation: u32,
}

/// 20 bytes; 40 per table slot with its key and touch stamp.
struct Entry {
    live: u32,
    /// Tells a slot whether its entry is still the one it counted in, or was evicted and
    /// replaced by a newer entry for the same address. Wraps after 2^32 entries.
    generation: u32,
    window: SlidingWindow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRefusal {
    TooManyLive,
    TooFast { retry_after: Duration },
}

/// Counts a live connection; dropping it releases the count (and touches the entry).
pub struct IpSlot {
    counted: Option<Counted>,
}

struct Counted {
    per_ip: Arc<PerIp>,
    key: Key,
    generation: u32,
}

impl PerIp {
    /// `max_live` and `max_per_minute`: 0 = off.
    pub fn new(max_live: u64, max_per_minute: u64) -> Arc<PerIp> {
        PerIp::with_capacity(max_live, max_per_minute, MAX_ENTRIES)
    }

    pub fn with_capacity(max_live: u64, max_per_minute: u64, capacity: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            state: Mutex::new(State {
                table: Table::new(capacity),
                next_generation: 0,
            }),
            max_live,
            max_per_minute,
            clock: WindowClock::new(RATE_WINDOW, Instant::now()),
        })
    }

    /// Admits one more connection (or HTTP request) from `ip`, counted live until the slot
    /// drops. `new_connection` also counts it in the rate window (an HTTP request on a
    /// connection already counted passes false).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        new_connection: bool,
        now: Instant,
    ) -> Result<IpSlot, IpRefusal> {
        let count_rate = new_connection && self.max_per_minute > 0;
        if self.max_live == 0 && !count_rate {
            return Ok(IpSlot { counted: None });
        }
        let key = key(ip);
        let mut state = self.lock();
        let State {
            table,
            next_generation,
        } = &mut *state;
        let entry = table.get_or_insert_with(key, || {
            *next_generation = next_generation.wrapping_add(1);
            Entry {
                live: 0,
                generation: *next_generation,
                window: SlidingWindow::default(),
            }
        });
        if self.max_live > 0 && (u64::from(entry.live) >= self.max_live || entry.live == u32::MAX) {
            return Err(IpRefusal::TooManyLive);
        }
        if count_rate {
            let at = self.clock.at(now);
            if let Err(retry_after) = entry.window.try_add(self.max_per_minute, at) {
                return Err(IpRefusal::TooFast { retry_after });
            }
        }
        if self.max_live == 0 {
            // Only the rate matters; the entry lives on in the table until purged.
            return Ok(IpSlot { counted: None });
        }
        entry.live += 1;
        Ok(IpSlot {
            counted: Some(Counted {
                per_ip: Arc::clone(self),
                key,
                generation: entry.generation,
            }),
        })
    }

    pub fn len(&self) -> usize {
        self.lock().table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries with no live connection and no event inside the window; gives memory
    /// back after a flood.
    pub fn purge(&self, now: Instant) {
        let at = self.clock.at(now);
        self.lock()
            .table
            .purge(now, |entry, _| entry.live == 0 && entry.window.is_idle(at));
    }

    fn release(&self, key: &Key, generation: u32) {
        let at = self.clock.at(Instant::now());
        let mut state = self.lock();
        let Some(entry) = state.table.get_mut(key) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        entry.live = entry.live.saturating_sub(1);
        if entry.live == 0 && entry.window.is_idle(at) {
            state.table.remove(key);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some(c) = self.counted.take() {
            c.per_ip.release(&c.key, c.generation);
        }
    }
}

impl fmt::Debug for PerIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerIp")
            .field("max_live", &self.max_live)
            .field("max_per_minute", &self.max_per_minute)
            .field("entries", &self.len())
            .finish()
    }
}

impl fmt::Debug for IpSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpSlot")
            .field("counted", &self.counted.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn entry_size() {
        // 20 bytes; with its 16-byte key and 4-byte touch stamp, 40 in the table.
        assert_eq!(size_of::<Entry>(), 20);
        assert_eq!(Table::<Key, Entry>::STORED_SIZE, 40);
    }

    #[test]
    fn max_live_enforced_and_released_on_drop() {
        let per_ip = PerIp::new(2, 0);
        let now = Instant::now();
        let a = per_ip.admit(v4(1), true, now).unwrap();
        let b = per_ip.admit(v4(1), false, now).unwrap();
        assert_eq!(
            per_ip.admit(v4(1), true, now).unwrap_err(),
            IpRefusal::TooManyLive
        );
        // Another address is counted apart.
        let other = per_ip.admit(v4(2), true, now).unwrap();
        drop(a);
        let c = per_ip.admit(v4(1), true, now).unwrap();
        drop((b, c, other));
        // Without a rate limit, an entry goes as soon as its last slot does.
        assert!(per_ip.is_empty());
    }

    #[test]
    fn mapped_ipv6_is_the_same_client() {
        let per_ip = PerIp::new(1, 0);
        let now = Instant::now();
        let ip = Ipv4Addr::new(192, 0, 2, 7);
        let _slot = per_ip.admit(IpAddr::V4(ip), true, now).unwrap();
        let mapped = IpAddr::V6(ip.to_ipv6_mapped());
        assert_eq!(
            per_ip.admit(mapped, true, now).unwrap_err(),
            IpRefusal::TooManyLive
        );
        assert!(
            per_ip
                .admit(IpAddr::V6(Ipv6Addr::LOCALHOST), true, now)
                .is_ok()
        );
    }

    #[test]
    fn rate_limit_enforced_and_released_after_the_window() {
        let per_ip = PerIp::new(0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            drop(per_ip.admit(v4(1), true, t0).unwrap());
        }
        let Err(IpRefusal::TooFast { retry_after }) = per_ip.admit(v4(1), true, t0) else {
            panic!("fourth connection within the minute admitted");
        };
        assert!(retry_after >= Duration::from_secs(1));
        // Requests on connections already counted do not count again.
        assert!(per_ip.admit(v4(1), false, t0).is_ok());
        assert!(per_ip.admit(v4(2), true, t0).is_ok());
        assert!(per_ip.admit(v4(1), true, t0 + retry_after).is_ok());
        let later = t0 + 3 * RATE_WINDOW;
        for _ in 0..3 {
            assert!(per_ip.admit(v4(1), true, later).is_ok());
        }
    }

    #[test]
    fn refused_connections_use_no_rate() {
        let per_ip = PerIp::new(1, 2);
        let now = Instant::now();
        let slot = per_ip.admit(v4(1), true, now).unwrap();
        for _ in 0..10 {
            assert_eq!(
                per_ip.admit(v4(1), true, now).unwrap_err(),
                IpRefusal::TooManyLive
            );
        }
        drop(slot);
        assert!(per_ip.admit(v4(1), true, now).is_ok());
    }

    #[test]
    fn both_limits_off_never_refuse_nor_store() {
        let per_ip = PerIp::new(0, 0);
        let now = Instant::now();
        let slots: Vec<_> = (0..1000)
            .map(|_| per_ip.admit(v4(1), true, now).unwrap())
            .collect();
        assert!(per_ip.is_empty());
        drop(slots);
    }

    #[test]
    fn bounded_under_a_flood_and_purged_after() {
        let per_ip = PerIp::with_capacity(10, 10, 1_000);
        let t0 = Instant::now();
        let mut slots = Vec::new();
        for n in 0..5_000 {
            slots.push(per_ip.admit(v4(n), true, t0).unwrap());
            assert!(per_ip.len() <= 1_000);
        }
        drop(slots);
        // Events are still inside the window: kept.
        per_ip.purge(t0 + Duration::from_secs(1));
        assert!(!per_ip.is_empty());
        per_ip.purge(t0 + 2 * RATE_WINDOW);
        assert_eq!(per_ip.len(), 0);
    }

    #[test]
    fn evicted_entry_slots_leave_the_new_entry_alone() {
        let per_ip = PerIp::with_capacity(1, 0, 1);
        let now = Instant::now();
        let old = per_ip.admit(v4(1), true, now).unwrap();
        // Capacity 1: this evicts 1's entry, live slot and all.
        let other = per_ip.admit(v4(2), true, now).unwrap();
        let new = per_ip.admit(v4(1), true, now).unwrap();
        drop(other);
        // The stale slot must not release the new entry's count.
        drop(old);
        assert_eq!(
            per_ip.admit(v4(1), true, now).unwrap_err(),
            IpRefusal::TooManyLive
        );
        drop(new);
        assert!(per_ip.admit(v4(1), true, now).is_ok());
    }

    #[test]
    fn slots_are_send_sync_static() {
        fn assert_send_sync_static<T: Send + Sync + 'static>() {}
        assert_send_sync_static::<IpSlot>();
        assert_send_sync_static::<Arc<PerIp>>();
    }

    #[test]
    fn concurrent_admits_respect_the_limit() {
        let per_ip = PerIp::new(8, 0);
        let now = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let per_ip = Arc::clone(&per_ip);
                std::thread::spawn(move || {
                    for i in 0..2_000u32 {
                        let ip = v4(i % 16);
                        if let Ok(slot) = per_ip.admit(ip, true, now) {
                            if (i + t) % 3 == 0 {
                                std::thread::yield_now();
                            }
                            drop(slot);
                        }
                    }
                })
            })
            .collect();
        let held: Vec<_> = (0..8)
            .map(|_| per_ip.admit(v4(100), true, now).unwrap())
            .collect();
        assert!(per_ip.admit(v4(100), true, now).is_err());
        for t in threads {
            t.join().unwrap();
        }
        drop(held);
        assert!(per_ip.is_empty());
    }
}
