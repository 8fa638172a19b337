//! `security.rateLimit`: at most `maxRequests` requests per key within a sliding window.

use super::table::{DEFAULT_CAPACITY, Table};
use super::window::{SlidingWindow, WindowClock};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

pub const MAX_ENTRIES: usize = DEFAULT_CAPACITY;

/// What requests are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKey<'a> {
    Ip(IpAddr),
    Header(&'a [u8]),
}

/// 24 bytes. Header values are kept as a keyed 64-bit hash, so a key costs the same whatever
/// the header's length; the random key stops clients from choosing values that collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// IPv6 octets, IPv4 as IPv4-mapped IPv6.
    Ip([u8; 16]),
    Header(u64),
}

pub struct RequestRate {
    table: Mutex<Table<Key, SlidingWindow>>,
    max_requests: u64,
    clock: WindowClock,
    hasher: RandomState,
}

impl RequestRate {
    /// `max_requests` 0 = no limit.
    pub fn new(max_requests: u64, window: Duration) -> RequestRate {
        RequestRate::with_capacity(max_requests, window, MAX_ENTRIES)
    }

    pub fn with_capacity(max_requests: u64, window: Duration, capacity: usize) -> RequestRate {
        RequestRate {
            table: Mutex::new(Table::new(capacity)),
            max_requests,
            clock: WindowClock::new(window, Instant::now()),
            hasher: RandomState::new(),
        }
    }

    /// Counts one request for `key`, or says how long until it would be admitted (whole
    /// seconds, at least one). Refused requests are not counted.
    pub fn check(&self, key: RateKey<'_>, now: Instant) -> Result<(), Duration> {
        if self.max_requests == 0 {
            return Ok(());
        }
        let key = match key {
            RateKey::Ip(IpAddr::V4(v4)) => Key::Ip(v4.to_ipv6_mapped().octets()),
            RateKey::Ip(IpAddr::V6(v6)) => Key::Ip(v6.octets()),
            RateKey::Header(value) => Key::Header(self.hasher.hash_one(value)),
        };
        let at = self.clock.at(now);
        self.lock()
            .get_or_insert_with(key, SlidingWindow::default)
            .try_add(self.max_requests, at)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops keys with no request inside the window; gives memory back after a flood.
    pub fn purge(&self, now: Instant) {
        let at = self.clock.at(now);
        self.lock().purge(now, |window, _| window.is_idle(at));
    }

    fn lock(&self) -> MutexGuard<'_, Table<Key, SlidingWindow>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for RequestRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRate")
            .field("max_requests", &self.max_requests)
            .field("window", &self.clock.window())
            .field("keys", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    const WINDOW: Duration = Duration::from_secs(10);

    fn ip(n: u32) -> RateKey<'static> {
        RateKey::Ip(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn entry_size() {
        // 24-byte key, 12-byte window, 4-byte touch stamp.
        assert_eq!(Table::<Key, SlidingWindow>::STORED_SIZE, 40);
    }

    #[test]
    fn limit_enforced_then_released_after_the_window() {
        let rate = RequestRate::new(3, WINDOW);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rate.check(ip(1), t0).is_ok());
        }
        let retry = rate.check(ip(1), t0).unwrap_err();
        assert!(retry >= Duration::from_secs(1) && retry <= 2 * WINDOW);
        assert!(rate.check(ip(1), t0 + retry).is_ok());
        let later = t0 + 3 * WINDOW;
        for _ in 0..3 {
            assert!(rate.check(ip(1), later).is_ok());
        }
        assert!(rate.check(ip(1), later).is_err());
    }

    #[test]
    fn distinct_keys_are_independent() {
        let rate = RequestRate::new(1, WINDOW);
        let now = Instant::now();
        assert!(rate.check(ip(1), now).is_ok());
        assert!(rate.check(ip(1), now).is_err());
        assert!(rate.check(ip(2), now).is_ok());
        assert!(rate.check(RateKey::Header(b"alice"), now).is_ok());
        assert!(rate.check(RateKey::Header(b"alice"), now).is_err());
        assert!(rate.check(RateKey::Header(b"bob"), now).is_ok());
        assert!(rate.check(RateKey::Header(b""), now).is_ok());
        assert!(rate.check(RateKey::Header(b""), now).is_err());
        let mapped = Ipv4Addr::from(2).to_ipv6_mapped();
        assert!(rate.check(RateKey::Ip(IpAddr::V6(mapped)), now).is_err());
    }

    #[test]
    fn long_header_values_cost_one_small_entry() {
        let rate = RequestRate::new(1, WINDOW);
        let now = Instant::now();
        let long = vec![b'x'; 64 * 1024];
        let mut other = long.clone();
        if let Some(last) = other.last_mut() {
            *last = b'y';
        }
        assert!(rate.check(RateKey::Header(&long), now).is_ok());
        assert!(rate.check(RateKey::Header(&long), now).is_err());
        assert!(rate.check(RateKey::Header(&other), now).is_ok());
        assert_eq!(rate.len(), 2);
    }

    #[test]
    fn zero_means_no_limit() {
        let rate = RequestRate::new(0, WINDOW);
        let now = Instant::now();
        for _ in 0..100 {
            assert!(rate.check(ip(1), now).is_ok());
        }
        assert!(rate.is_empty());
    }

    #[test]
    fn bounded_under_a_flood_and_purged_after() {
        let rate = RequestRate::with_capacity(5, WINDOW, 1_000);
        let t0 = Instant::now();
        for n in 0..5_000u32 {
            assert!(rate.check(ip(n), t0).is_ok());
            let header = n.to_be_bytes();
            assert!(rate.check(RateKey::Header(&header), t0).is_ok());
            assert!(rate.len() <= 1_000);
        }
        rate.purge(t0 + Duration::from_secs(1));
        assert!(!rate.is_empty());
        rate.purge(t0 + 2 * WINDOW);
        assert!(rate.is_empty());
    }

    #[test]
    fn concurrent_checks_never_exceed_the_limit() {
        let rate = Arc::new(RequestRate::new(100, WINDOW));
        let now = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let rate = Arc::clone(&rate);
                std::thread::spawn(move || {
                    (0..200).filter(|_| rate.check(ip(7), now).is_ok()).count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, 100);
    }
}
