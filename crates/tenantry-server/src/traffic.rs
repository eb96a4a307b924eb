//! Each tenant's recent calls over HTTP, for the dashboard and `/usage`: how many per
//! second, how slow (p50, p99) and how many failed, over the last ten whole seconds.
//!
//! A tenant's calls are counted in a ring of one-second slots, each a histogram of
//! latencies in buckets a fifth of an octave wide (a p99 is exact to within 15%). A
//! call costs two relaxed atomic increments; a slot is cleared once a second by the
//! first call that finds it stale. Only active tenants are counted (the entry is made on
//! their first call and forgotten at offboarding), so a request cannot make the server
//! keep anything for a name it made up.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};
use tenantry::Partition;

/// The whole seconds a summary covers.
pub const WINDOW_SECS: u64 = 10;
/// Slots in the ring: the window and the second being counted.
const SLOTS: usize = WINDOW_SECS as usize + 1;
/// Latency buckets per octave.
const PER_OCTAVE: u32 = 5;
/// Octaves above one microsecond (2^28 µs is about 4.5 minutes; slower calls share the
/// last bucket).
const OCTAVES: u32 = 28;
const BUCKETS: usize = (PER_OCTAVE * OCTAVES) as usize + 1;

/// How a call over HTTP was answered, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx.
    Ok,
    /// A 429: a limit refused it (counted in `/usage`'s `throttled`, not here).
    Throttled,
    /// Another 4xx: the caller's request or the handler's own error answer.
    Rejected,
    /// A 5xx: the runtime or the handler failed (panic, timeout, stopped, store down).
    Error,
}

impl Answer {
    /// The answer an HTTP status stands for.
    pub fn of_status(status: u16) -> Self {
        match status {
            429 => Answer::Throttled,
            400..=499 => Answer::Rejected,
            500.. => Answer::Error,
            _ => Answer::Ok,
        }
    }
}

/// A tenant's calls over the last [`WINDOW_SECS`] whole seconds (fewer while the server
/// is younger).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RecentCalls {
    /// The seconds covered.
    pub window_secs: u64,
    /// Calls answered, however they were answered.
    pub calls: u64,
    /// Calls answered per second.
    pub per_sec: f64,
    /// Median latency in milliseconds, of the calls not throttled (`None`: no call).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds, as `p50_ms`.
    pub p99_ms: Option<f64>,
    /// Calls answered with a 5xx.
    pub errors: u64,
    /// Calls answered with a 4xx other than 429.
    pub rejected: u64,
    /// Calls answered with a 429.
    pub throttled: u64,
}

/// One second's counts.
struct Slot {
    /// The second counted (since the ring's epoch, plus one; 0: never used).
    second: AtomicU64,
    latency: [AtomicU32; BUCKETS],
    /// Calls by [`Answer`], in its order.
    answers: [AtomicU32; 4],
}

impl Slot {
    fn clear(&self) {
        for c in self.latency.iter().chain(&self.answers) {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// One tenant's ring of seconds.
struct Ring {
    slots: [Slot; SLOTS],
    /// Held while a stale slot is cleared, so two calls do not both clear it.
    clearing: Mutex<()>,
}

impl Ring {
    fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| Slot {
                second: AtomicU64::new(0),
                latency: std::array::from_fn(|_| AtomicU32::new(0)),
                answers: Default::default(),
            }),
            clearing: Mutex::new(()),
        }
    }

    fn record(&self, second: u64, latency: Duration, answer: Answer) {
        let slot = &self.slots[(second % SLOTS as u64) as usize];
        if slot.second.load(Ordering::Acquire) != second {
            let _held = self.clearing.lock().unwrap_or_else(|e| e.into_inner());
            if slot.second.load(Ordering::Acquire) != second {
                slot.clear();
                slot.second.store(second, Ordering::Release);
            }
        }
        slot.answers[answer as usize].fetch_add(1, Ordering::Relaxed);
        if answer != Answer::Throttled {
            slot.latency[bucket(latency)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The window of whole seconds before `now_second`.
    fn summary(&self, now_second: u64) -> RecentCalls {
        let mut latency = [0u64; BUCKETS];
        let mut answers = [0u64; 4];
        let first = now_second.saturating_sub(WINDOW_SECS).max(1);
        for slot in &self.slots {
            let second = slot.second.load(Ordering::Acquire);
            if second < first || second >= now_second {
                continue;
            }
            for (sum, c) in latency.iter_mut().zip(&slot.latency) {
                *sum += u64::from(c.load(Ordering::Relaxed));
            }
            for (sum, c) in answers.iter_mut().zip(&slot.answers) {
                *sum += u64::from(c.load(Ordering::Relaxed));
            }
        }
        let calls = answers.iter().sum();
        // A server up for less than the window divides by the seconds it was up.
        let covered = now_second.saturating_sub(first).max(1);
        RecentCalls {
            window_secs: covered,
            calls,
            per_sec: calls as f64 / covered as f64,
            p50_ms: quantile_ms(&latency, 0.50),
            p99_ms: quantile_ms(&latency, 0.99),
            errors: answers[Answer::Error as usize],
            rejected: answers[Answer::Rejected as usize],
            throttled: answers[Answer::Throttled as usize],
        }
    }
}

/// The bucket of `latency`: a fifth of an octave of microseconds.
fn bucket(latency: Duration) -> usize {
    let micros = latency.as_secs_f64() * 1e6;
    if micros <= 1.0 {
        return 0;
    }
    ((micros.log2() * f64::from(PER_OCTAVE)).ceil() as usize).min(BUCKETS - 1)
}

/// The upper edge of bucket `i`, in milliseconds.
fn bucket_ms(i: usize) -> f64 {
    (i as f64 / f64::from(PER_OCTAVE)).exp2() / 1e3
}

/// The latency under which `q` of the counted calls fell (the upper edge of its bucket).
fn quantile_ms(latency: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64 * q).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, n) in latency.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bucket_ms(i));
        }
    }
    Some(bucket_ms(BUCKETS - 1))
}

/// Every active tenant's recent calls.
pub struct Traffic {
    epoch: Instant,
    tenants: RwLock<HashMap<Partition, Box<Ring>>>,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            tenants: RwLock::default(),
        }
    }
}

impl Traffic {
    /// The second (since the epoch, plus one) that `at` falls in.
    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_secs() + 1
    }

    /// Counts a call of `partition` that began at `started` and was answered now. A
    /// partition not counted yet gets its ring only if `is_active` says it is an active
    /// tenant (asked under the table's write lock, which [`Traffic::forget`] takes too, so
    /// a call that ends while its tenant is retired leaves nothing behind).
    pub fn record(
        &self,
        partition: &Partition,
        started: Instant,
        answer: Answer,
        is_active: impl FnOnce(&Partition) -> bool,
    ) {
        let now = Instant::now();
        let (second, latency) = (self.second(now), now - started);
        // Under the read lock: no reference count bounced between cores on every call.
        if let Some(ring) = self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(partition)
        {
            return ring.record(second, latency, answer);
        }
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        if is_active(partition) {
            tenants
                .entry(partition.clone())
                .or_insert_with(|| Box::new(Ring::new()))
                .record(second, latency, answer);
        }
    }

    /// `partition`'s calls over the last whole seconds (all zero if it made none).
    pub fn recent(&self, partition: &Partition) -> RecentCalls {
        let now = self.second(Instant::now());
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(partition)
            .map_or(
                RecentCalls {
                    window_secs: WINDOW_SECS,
                    ..RecentCalls::default()
                },
                |ring| ring.summary(now),
            )
    }

    /// Drops `partition`'s counts (when its tenant is retired, after it stopped being
    /// active).
    pub fn forget(&self, partition: &Partition) {
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_a_fifth_of_an_octave_and_a_quantile_is_its_buckets_upper_edge() {
        assert_eq!(bucket(Duration::from_nanos(500)), 0);
        assert_eq!(bucket(Duration::from_micros(2)), 5);
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS - 1);
        let ms = Duration::from_millis(1);
        let edge = bucket_ms(bucket(ms));
        assert!((1.0..1.15).contains(&edge), "{edge}");
        let mut latency = [0u64; BUCKETS];
        latency[bucket(ms)] = 98;
        latency[bucket(Duration::from_millis(100))] = 2;
        assert!(quantile_ms(&latency, 0.5).unwrap() < 1.15);
        assert!(quantile_ms(&latency, 0.99).unwrap() >= 100.0);
        assert_eq!(quantile_ms(&[0; BUCKETS], 0.99), None);
    }

    #[test]
    fn a_summary_covers_the_whole_seconds_of_its_window_only() {
        let ring = Ring::new();
        let ms = Duration::from_millis(2);
        ring.record(1, ms, Answer::Ok);
        ring.record(5, ms, Answer::Error);
        ring.record(5, ms, Answer::Rejected);
        ring.record(5, ms, Answer::Throttled);
        ring.record(12, ms, Answer::Ok);
        // At second 12: seconds 2..=11 are the window; 1 is too old, 12 not whole yet.
        let s = ring.summary(12);
        assert_eq!((s.calls, s.errors, s.rejected, s.throttled), (3, 1, 1, 1));
        assert!((s.per_sec - 0.3).abs() < 1e-9);
        // Slot 1 was reused by second 12 and cleared: second 23 sees only second 12.
        // Second 23 reuses the slot of 12 (and of 1).
        ring.record(23, ms, Answer::Ok);
        assert_eq!(ring.summary(23).calls, 0, "seconds 13..=22 made no call");
        assert_eq!(ring.summary(24).calls, 1);
        assert_eq!(ring.summary(40).calls, 0);
        // A server up for two whole seconds divides by two.
        let young = Ring::new();
        young.record(2, ms, Answer::Ok);
        let s = young.summary(3);
        assert_eq!((s.window_secs, s.calls), (2, 1));
        assert!((s.per_sec - 0.5).abs() < 1e-9);
    }
}
