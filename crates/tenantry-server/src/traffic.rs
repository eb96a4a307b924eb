//! Each tenant's recent calls over HTTP, for the dashboard and `/usage`: how many per
//! second, how slow (p50, p99) and how many failed, over the last ten whole seconds.
//!
//! A tenant's calls are counted in a ring of one-second slots, each a histogram of
//! latencies in buckets a fifth of an octave wide (a p99 is exact to within 15%). A call
//! takes its tenant's ring when it starts (a read lock and a reference count on the
//! table) and counts itself into it when answered, or as cancelled if its client went
//! away first: two relaxed increments. A slot is cleared once a second, by the first call
//! that finds it stale. Only active tenants are counted: a ring is made on a tenant's
//! first call and forgotten when the tenant is retired, so a request cannot make the
//! server keep anything for a name it made up, and a call begun by a tenant since
//! offboarded counts into the forgotten ring, never into a new tenant's of that name.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tenantry::Partition;

/// The whole seconds a summary covers.
pub const WINDOW_SECS: u64 = 10;
/// Slots in the ring: the window, the second being counted, and the next one, which a
/// call may be clearing while a summary reads the window.
const SLOTS: usize = WINDOW_SECS as usize + 2;
/// Latency buckets per octave.
const PER_OCTAVE: u32 = 5;
/// Octaves above one microsecond (2^28 µs is about 4.5 minutes; slower calls share the
/// last bucket).
const OCTAVES: u32 = 28;
const BUCKETS: usize = (PER_OCTAVE * OCTAVES) as usize + 1;

/// How a call over HTTP ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx.
    Ok,
    /// A 429: a limit refused it (counted, but left out of the latencies).
    Throttled,
    /// Another 4xx: the caller's request or the handler's own error answer.
    Rejected,
    /// A 5xx: the runtime or the handler failed (panic, timeout, stopped, store down).
    Error,
    /// Its client went away before the answer.
    Cancelled,
}

/// Answers in [`Answer`]'s order.
const ANSWERS: usize = 5;

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
    /// The whole seconds covered.
    pub window_secs: u64,
    /// Calls that ended, however they ended.
    pub calls: u64,
    /// Calls that ended, per second.
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
    /// Calls whose client went away before the answer.
    pub cancelled: u64,
}

/// One second's counts.
struct Slot {
    /// The second counted (since the ring's epoch, plus one; 0: never used).
    second: AtomicU64,
    latency: [AtomicU32; BUCKETS],
    /// Calls by [`Answer`], in its order.
    answers: [AtomicU32; ANSWERS],
}

impl Slot {
    fn clear(&self) {
        for c in self.latency.iter().chain(&self.answers) {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// One tenant's ring of seconds.
pub struct Ring {
    /// The seconds are counted from here (the table's epoch).
    epoch: Instant,
    slots: [Slot; SLOTS],
    /// Held while a stale slot is cleared, so two calls do not both clear it.
    clearing: Mutex<()>,
}

/// The second (since `epoch`, plus one) that `at` falls in.
fn second_of(epoch: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(epoch).as_secs() + 1
}

/// The first second of the window read at `now_second`, and how many whole seconds it
/// covers (fewer than [`WINDOW_SECS`] while the table is younger).
fn window(now_second: u64) -> (u64, u64) {
    let first = now_second.saturating_sub(WINDOW_SECS).max(1);
    (first, now_second.saturating_sub(first))
}

impl Ring {
    fn new(epoch: Instant) -> Self {
        Self {
            epoch,
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

    /// Counts a call begun at `started` that ended now.
    fn record_now(&self, started: Instant, answer: Answer) {
        let now = Instant::now();
        self.record(second_of(self.epoch, now), now - started, answer);
    }

    /// The window of whole seconds before `now_second`.
    fn summary(&self, now_second: u64) -> RecentCalls {
        let mut latency = [0u64; BUCKETS];
        let mut answers = [0u64; ANSWERS];
        let (first, covered) = window(now_second);
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
        RecentCalls {
            window_secs: covered,
            calls,
            per_sec: calls as f64 / covered.max(1) as f64,
            p50_ms: quantile_ms(&latency, 0.50),
            p99_ms: quantile_ms(&latency, 0.99),
            errors: answers[Answer::Error as usize],
            rejected: answers[Answer::Rejected as usize],
            throttled: answers[Answer::Throttled as usize],
            cancelled: answers[Answer::Cancelled as usize],
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

/// A call being counted: counts itself when [`answered`](Counted::answered), or as
/// cancelled when dropped before (its client went away and the server dropped the
/// request).
#[must_use = "a call counts as cancelled unless it is answered"]
pub struct Counted {
    ring: Option<Arc<Ring>>,
    started: Instant,
}

impl Counted {
    /// Counts the call as answered with `status`.
    pub fn answered(mut self, status: u16) {
        if let Some(ring) = self.ring.take() {
            ring.record_now(self.started, Answer::of_status(status));
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(ring) = self.ring.take() {
            ring.record_now(self.started, Answer::Cancelled);
        }
    }
}

/// Every active tenant's recent calls.
pub struct Traffic {
    epoch: Instant,
    /// Hashed with foldhash: only active tenants have a ring, so no request adds a key.
    tenants: RwLock<HashMap<Partition, Arc<Ring>, foldhash::fast::RandomState>>,
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
    /// Starts counting a call of `partition`. A partition not counted yet gets its ring
    /// only if `is_active` says it is an active tenant (asked under the table's write
    /// lock, which [`Traffic::forget`] takes too); otherwise the call is not counted.
    pub fn start(
        &self,
        partition: &Partition,
        is_active: impl FnOnce(&Partition) -> bool,
    ) -> Counted {
        let started = Instant::now();
        let found = self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(partition)
            .cloned();
        let ring = found.or_else(|| {
            let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
            is_active(partition).then(|| {
                tenants
                    .entry(partition.clone())
                    .or_insert_with(|| Arc::new(Ring::new(self.epoch)))
                    .clone()
            })
        });
        Counted { ring, started }
    }

    /// `partition`'s calls over the last whole seconds (all zero if it made none).
    pub fn recent(&self, partition: &Partition) -> RecentCalls {
        let now = second_of(self.epoch, Instant::now());
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(partition)
            .map_or_else(
                || RecentCalls {
                    window_secs: window(now).1,
                    ..RecentCalls::default()
                },
                |ring| ring.summary(now),
            )
    }

    /// Drops `partition`'s counts (when its tenant is retired, after it stopped being
    /// active). Calls still running count into the dropped ring.
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
        let ring = Ring::new(Instant::now());
        let ms = Duration::from_millis(2);
        ring.record(1, ms, Answer::Ok);
        ring.record(5, ms, Answer::Error);
        ring.record(5, ms, Answer::Rejected);
        ring.record(5, ms, Answer::Throttled);
        ring.record(5, ms, Answer::Cancelled);
        ring.record(12, ms, Answer::Ok);
        // At second 12: seconds 2..=11 are the window; 1 is too old, 12 not whole yet.
        let s = ring.summary(12);
        assert_eq!(
            (s.calls, s.errors, s.rejected, s.throttled, s.cancelled),
            (4, 1, 1, 1, 1)
        );
        assert!((s.per_sec - 0.4).abs() < 1e-9);
        // Second 13 reuses the slot of 1: clearing it leaves the window (3..=12) whole.
        ring.record(13, ms, Answer::Ok);
        assert_eq!(ring.summary(13).calls, 5);
        // Second 25 reuses the slot of 13 (and of 1).
        ring.record(25, ms, Answer::Ok);
        assert_eq!(ring.summary(25).calls, 0, "seconds 15..=24 made no call");
        assert_eq!(ring.summary(26).calls, 1);
        assert_eq!(ring.summary(40).calls, 0);
        // A server up for two whole seconds divides by two; in its first, by nothing.
        assert_eq!(window(1), (1, 0));
        let young = Ring::new(Instant::now());
        young.record(2, ms, Answer::Ok);
        let s = young.summary(3);
        assert_eq!((s.window_secs, s.calls), (2, 1));
        assert!((s.per_sec - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_call_dropped_before_its_answer_counts_as_cancelled_and_a_forgotten_ring_keeps_its_calls() {
        let traffic = Traffic::default();
        let acme = Partition::new("acme").unwrap();
        assert!(traffic.start(&acme, |_| false).ring.is_none(), "not active");
        let answered = traffic.start(&acme, |_| true);
        let dropped = traffic.start(&acme, |_| unreachable!("the ring exists"));
        let from_before = traffic.start(&acme, |_| true);
        answered.answered(200);
        drop(dropped);
        let ring = traffic.tenants.read().unwrap()[&acme].clone();
        // A window that holds the second of every call made so far.
        let after = || second_of(traffic.epoch, Instant::now()) + 1;
        let s = ring.summary(after());
        assert_eq!((s.calls, s.cancelled), (2, 1));
        // Offboarded, then onboarded again: the call begun before counts into the old ring.
        traffic.forget(&acme);
        let fresh = traffic.start(&acme, |_| true);
        from_before.answered(500);
        fresh.answered(200);
        assert_eq!(ring.summary(after()).errors, 1);
        let again = traffic.tenants.read().unwrap()[&acme].summary(after());
        assert_eq!((again.calls, again.errors), (1, 0));
    }
}
