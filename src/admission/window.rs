//! A sliding-window event counter in the manner of HAProxy's `freq_ctr`: time is cut into
//! fixed buckets one window long, and the count over the last window is estimated as the
//! current bucket's count plus the previous bucket's count weighted by the share of it still
//! inside the window (rounded down, as HAProxy does). Constant memory per counter, and a
//! burst at a bucket boundary cannot double the allowed rate the way plain fixed buckets can.

use std::time::Duration;
use tokio::time::Instant;

/// A window length and the instant its buckets are numbered from. Shared by every counter of
/// one table, so each counter stores a 4-byte bucket number instead of an `Instant`.
#[derive(Debug, Clone, Copy)]
pub struct WindowClock {
    epoch: Instant,
    window_ns: u64,
}

/// Where an instant falls on a clock's bucket grid.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// Bucket number since the epoch, wrapping at 2^32 (see `SlidingWindow`).
    bucket: u32,
    /// Nanoseconds into that bucket, `< window_ns`.
    offset_ns: u64,
    window_ns: u64,
}

impl WindowClock {
    /// A zero window is taken as 1 ns; instants before `epoch` count as the epoch itself.
    pub fn new(window: Duration, epoch: Instant) -> WindowClock {
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1);
        WindowClock { epoch, window_ns }
    }

    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_ns)
    }

    pub fn at(&self, now: Instant) -> Tick {
        let elapsed = now.saturating_duration_since(self.epoch).as_nanos();
        let window = u128::from(self.window_ns);
        Tick {
            // Truncation is the wrap-around documented on `SlidingWindow`.
            bucket: (elapsed / window) as u32,
            offset_ns: (elapsed % window) as u64,
            window_ns: self.window_ns,
        }
    }
}

/// Events in the current and the previous bucket. 12 bytes.
///
/// `start` is the bucket number (from a `WindowClock`) that `curr` counts; it wraps at 2^32
/// buckets, which only matters for a counter left untouched for 2^31 windows (68 years for a
/// one-second window; see `clamp`). The tables purge idle counters long before that.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlidingWindow {
    start: u32,
    curr: u32,
    prev: u32,
}

impl SlidingWindow {
    /// The estimated number of events in the window ending at `at`.
    pub fn estimate(&self, at: Tick) -> u64 {
        let (at, _) = self.clamp(at);
        let (curr, prev) = self.counts(at);
        u64::from(curr) + weighted(prev, at)
    }

    /// Counts one event if fewer than `limit` are estimated in the window; otherwise returns
    /// how long until one would be admitted (whole seconds, at least one), provided no other
    /// event is counted meanwhile. A `limit` of 0 admits nothing.
    pub fn try_add(&mut self, limit: u64, at: Tick) -> Result<(), Duration> {
        let (at, behind_ns) = self.clamp(at);
        (self.curr, self.prev) = self.counts(at);
        self.start = at.bucket;
        if self.estimate(at) < limit && self.curr < u32::MAX {
            self.curr += 1;
            return Ok(());
        }
        Err(round_up_to_seconds(behind_ns + self.wait_ns(limit, at)))
    }

    /// Whether no counted event is inside the window at `at` any more, so the counter may be
    /// forgotten without changing any future decision: nothing in the current bucket, and the
    /// previous bucket's weighted share has rounded down to 0. That share only shrinks until
    /// the bucket ends, so from `at` on the estimate is what a fresh counter's would be. (Waiting
    /// until both buckets are empty would keep a client seen once for up to two windows.)
    pub fn is_idle(&self, at: Tick) -> bool {
        let (at, _) = self.clamp(at);
        match self.counts(at) {
            (0, prev) => weighted(prev, at) == 0,
            _ => false,
        }
    }

    /// The current and previous bucket counts as seen from `at` (not older than `start`).
    fn counts(&self, at: Tick) -> (u32, u32) {
        match at.bucket.wrapping_sub(self.start) {
            0 => (self.curr, self.prev),
            1 => (0, self.curr),
            _ => (0, 0),
        }
    }

    /// `at`, or when it lies before this counter's bucket, that bucket's start and how many
    /// nanoseconds `at` lies before it. That happens when an instant is read just before
    /// another thread counts an event in a later bucket; moving the counter back would forget
    /// that event. A distance of over 2^31 buckets is taken as such a step back, which halves
    /// the wrap-around span to 2^31 windows.
    fn clamp(&self, at: Tick) -> (Tick, u128) {
        let back = self.start.wrapping_sub(at.bucket);
        if back == 0 || back > u32::MAX / 2 {
            return (at, 0);
        }
        let w = u128::from(at.window_ns);
        let behind_ns = u128::from(back) * w - u128::from(at.offset_ns);
        let start = Tick {
            bucket: self.start,
            offset_ns: 0,
            window_ns: at.window_ns,
        };
        (start, behind_ns)
    }

    /// Nanoseconds from `at` until `estimate < limit`. The estimate never rises without new
    /// events, so any later instant admits too.
    fn wait_ns(&self, limit: u64, at: Tick) -> u128 {
        let w = u128::from(at.window_ns);
        let to_next_bucket = w - u128::from(at.offset_ns);
        let (curr, prev) = (u128::from(self.curr), u128::from(self.prev));
        let limit = u128::from(limit);
        if limit == 0 || curr >= u128::from(u32::MAX) {
            // A zero limit never admits; a saturated counter admits in the next bucket at
            // the latest. A window covers the second and is as good an answer as any for the first.
            return w;
        }
        if curr < limit {
            // Admitted within this bucket once floor(prev * r / w) < limit - curr, where r is
            // the time left in the bucket: r <= ((limit - curr) * w - 1) / prev.
            let r_max = ((limit - curr) * w - 1) / prev.max(1);
            return to_next_bucket.saturating_sub(r_max);
        }
        // In the next bucket `curr` becomes the weighted previous count; the same bound with
        // `curr` as prev and nothing current tells how far into that bucket to wait.
        let r_max = (limit * w - 1) / curr;
        to_next_bucket + (w - r_max)
    }
}

/// The previous bucket's `prev` events weighted by the share of that bucket still inside the
/// window ending at `at` (the rest of the current bucket's length), rounded down.
fn weighted(prev: u32, at: Tick) -> u64 {
    let remaining = u128::from(at.window_ns - at.offset_ns);
    // At most `prev`, so it fits.
    (u128::from(prev) * remaining / u128::from(at.window_ns)) as u64
}

fn round_up_to_seconds(ns: u128) -> Duration {
    let secs = ns.div_ceil(1_000_000_000).max(1);
    Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn clock() -> (WindowClock, Instant) {
        let epoch = Instant::now();
        (WindowClock::new(MINUTE, epoch), epoch)
    }

    #[test]
    fn size() {
        assert_eq!(std::mem::size_of::<SlidingWindow>(), 12);
    }

    #[test]
    fn limit_then_refused_then_admitted_after_the_window() {
        let (clock, t0) = clock();
        let mut w = SlidingWindow::default();
        for _ in 0..5 {
            assert!(w.try_add(5, clock.at(t0)).is_ok());
        }
        assert_eq!(w.estimate(clock.at(t0)), 5);
        assert!(w.try_add(5, clock.at(t0)).is_err());
        assert!(
            w.try_add(5, clock.at(t0 + Duration::from_secs(30)))
                .is_err()
        );
        // Two windows on, nothing of the old bucket is left.
        let later = clock.at(t0 + 2 * MINUTE);
        assert!(w.is_idle(later));
        assert_eq!(w.estimate(later), 0);
        for _ in 0..5 {
            assert!(w.try_add(5, later).is_ok());
        }
    }

    #[test]
    fn previous_bucket_is_weighted_by_its_remaining_share() {
        let (clock, t0) = clock();
        let mut w = SlidingWindow::default();
        for _ in 0..10 {
            w.try_add(10, clock.at(t0)).unwrap();
        }
        // A quarter into the next bucket, three quarters of the previous one still count.
        let at = clock.at(t0 + MINUTE + Duration::from_secs(15));
        assert_eq!(w.estimate(at), 7);
        assert!(!w.is_idle(at));
        for _ in 0..3 {
            assert!(w.try_add(10, at).is_ok());
        }
        assert!(w.try_add(10, at).is_err());
    }

    #[test]
    fn boundary_burst_cannot_double_the_rate() {
        let (clock, t0) = clock();
        let mut w = SlidingWindow::default();
        let end_of_first = clock.at(t0 + MINUTE - Duration::from_millis(1));
        for _ in 0..10 {
            w.try_add(10, end_of_first).unwrap();
        }
        // Just past the boundary the previous bucket still counts (almost) fully.
        let start_of_second = clock.at(t0 + MINUTE);
        assert_eq!(w.estimate(start_of_second), 10);
        assert!(w.try_add(10, start_of_second).is_err());
        assert!(!w.is_idle(start_of_second));
        // One window after the boundary it is gone.
        assert!(w.is_idle(clock.at(t0 + 2 * MINUTE)));
    }

    #[test]
    fn retry_after_is_whole_seconds_and_sufficient() {
        let (clock, t0) = clock();
        let mut refusals = 0;
        for limit in [1u64, 2, 3, 7, 60, 1000] {
            for start_ms in [0u64, 1, 999, 17_250, 59_999] {
                for events_at_ms in [0u64, 30_000, 59_000, 61_000] {
                    let mut w = SlidingWindow::default();
                    let first = t0 + Duration::from_millis(start_ms);
                    for _ in 0..limit {
                        w.try_add(limit, clock.at(first)).unwrap();
                    }
                    let now = first + Duration::from_millis(events_at_ms);
                    let Err(retry) = w.try_add(limit, clock.at(now)) else {
                        continue;
                    };
                    refusals += 1;
                    assert!(retry >= Duration::from_secs(1));
                    assert_eq!(retry.subsec_nanos(), 0);
                    assert!(retry <= 2 * MINUTE);
                    let mut again = w;
                    assert!(
                        again.try_add(limit, clock.at(now + retry)).is_ok(),
                        "limit {limit} start {start_ms} at {events_at_ms}: retry {retry:?}"
                    );
                    // Rounding up adds less than a second to the exact wait.
                    let exact = Duration::from_nanos(w.wait_ns(limit, clock.at(now)) as u64);
                    assert!(exact <= retry && retry < exact + Duration::from_secs(1));
                }
            }
        }
        assert!(refusals > 50, "{refusals}");
    }

    #[test]
    fn single_event_limit_waits_for_the_weighted_share_to_drop() {
        let (clock, t0) = clock();
        let mut w = SlidingWindow::default();
        w.try_add(1, clock.at(t0)).unwrap();
        let Err(retry) = w.try_add(1, clock.at(t0)) else {
            panic!("second event admitted");
        };
        // At the start of the next bucket the previous one still weighs in full; a moment
        // later floor(1 * r / w) is 0.
        assert_eq!(retry, MINUTE + Duration::from_secs(1));
        assert!(w.try_add(1, clock.at(t0 + MINUTE)).is_err());
        assert!(w.try_add(1, clock.at(t0 + retry)).is_ok());
    }

    #[test]
    fn idle_once_the_previous_buckets_share_rounds_down_to_zero() {
        let (clock, t0) = clock();
        let mut one = SlidingWindow::default();
        one.try_add(10, clock.at(t0 + Duration::from_secs(10)))
            .unwrap();
        assert!(!one.is_idle(clock.at(t0 + MINUTE - Duration::from_millis(1))));
        // At the next bucket's first instant the previous one still weighs in full; from the
        // next instant on, one event weighs less than one.
        assert!(!one.is_idle(clock.at(t0 + MINUTE)));
        assert!(one.is_idle(clock.at(t0 + MINUTE + Duration::from_nanos(1))));
        // Four events weigh at least one until three quarters into the next bucket.
        let mut four = SlidingWindow::default();
        for _ in 0..4 {
            four.try_add(10, clock.at(t0)).unwrap();
        }
        let at = |secs| clock.at(t0 + MINUTE + Duration::from_secs(secs));
        assert_eq!(four.estimate(at(44)), 1);
        assert!(!four.is_idle(at(44)));
        assert_eq!(four.estimate(at(46)), 0);
        assert!(four.is_idle(at(46)));
        // An event in the current bucket is never idle.
        four.try_add(10, at(50)).unwrap();
        assert!(!four.is_idle(at(59)));
    }

    #[test]
    fn forgetting_an_idle_counter_changes_no_decision() {
        let (clock, t0) = clock();
        for events in [1u32, 2, 5, 30] {
            for limit in [1u64, 3, 10, 40] {
                let mut kept = SlidingWindow::default();
                for _ in 0..events {
                    let _ = kept.try_add(1000, clock.at(t0 + Duration::from_secs(10)));
                }
                let idle_at = (0..=240u64)
                    .map(|q| t0 + MINUTE + Duration::from_millis(250 * q))
                    .find(|&t| kept.is_idle(clock.at(t)))
                    .expect("idle within the next bucket");
                let mut fresh = SlidingWindow::default();
                for step in 0..200u64 {
                    let t = clock.at(idle_at + Duration::from_millis(700 * step));
                    assert_eq!(
                        kept.try_add(limit, t),
                        fresh.try_add(limit, t),
                        "{events} events, limit {limit}, step {step}"
                    );
                }
            }
        }
    }

    #[test]
    fn zero_limit_admits_nothing() {
        let (clock, t0) = clock();
        let mut w = SlidingWindow::default();
        assert_eq!(w.try_add(0, clock.at(t0)), Err(MINUTE));
    }

    #[test]
    fn a_slightly_older_instant_counts_in_the_newer_bucket() {
        let (clock, t0) = clock();
        let mut w = SlidingWindow::default();
        let late = clock.at(t0 + MINUTE);
        let early = clock.at(t0 + MINUTE - Duration::from_millis(1));
        w.try_add(2, late).unwrap();
        w.try_add(2, early).unwrap();
        assert_eq!(w.estimate(late), 2);
        assert!(!w.is_idle(early));
        // The wait counts from the earlier instant: the millisecond to the newer bucket, then
        // into the bucket after it.
        let retry = w.try_add(2, early).unwrap_err();
        assert_eq!(retry, MINUTE + Duration::from_secs(1));
        let before = t0 + MINUTE - Duration::from_millis(1) + retry - Duration::from_secs(1);
        assert!(w.try_add(2, clock.at(before)).is_err());
        assert!(
            w.try_add(2, clock.at(t0 + MINUTE - Duration::from_millis(1) + retry))
                .is_ok()
        );
    }

    #[test]
    fn instants_before_the_epoch_do_not_panic() {
        let t0 = Instant::now();
        let clock = WindowClock::new(MINUTE, t0 + MINUTE);
        let mut w = SlidingWindow::default();
        assert!(w.try_add(1, clock.at(t0)).is_ok());
    }
}
