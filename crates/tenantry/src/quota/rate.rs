//! A token bucket without a lock: the generic cell rate algorithm over one atomic.
//!
//! The bucket keeps a "theoretical arrival time" (TAT): when the next call would be due
//! if calls came exactly at the rate. A call is admitted if, after it, the TAT runs at
//! most `burst` intervals ahead of now; it then moves the TAT one interval on. An idle
//! bucket (TAT in the past) admits `burst` calls at once, then one per interval.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One partition's rate limit.
#[derive(Debug, Default)]
pub(crate) struct RateGate {
    /// Nanoseconds per admitted call; 0: no rate limit.
    interval: AtomicU64,
    /// How far ahead of now the TAT may run: `burst` intervals.
    span: AtomicU64,
    /// The theoretical arrival time, in nanoseconds since the quotas' epoch.
    tat: AtomicU64,
}

impl RateGate {
    /// Admits `rate` calls a second with bursts of `burst`; `None`: no limit. A changed
    /// limit starts from a full bucket (what the old rate had used up does not carry
    /// over into the new one).
    pub(crate) fn set(&self, limit: Option<(f64, u32)>) {
        let (interval, span) = match limit {
            Some((rate, burst)) => {
                let interval = (1e9 / rate).round().max(1.0) as u64;
                (interval, interval.saturating_mul(u64::from(burst)))
            }
            None => (0, 0),
        };
        let changed = self.interval.load(Ordering::Acquire) != interval
            || self.span.load(Ordering::Relaxed) != span;
        self.span.store(span, Ordering::Relaxed);
        self.interval.store(interval, Ordering::Release);
        if changed {
            self.tat.store(0, Ordering::Release);
        }
    }

    /// Whether a limit is set.
    pub(crate) fn is_limited(&self) -> bool {
        self.interval.load(Ordering::Acquire) != 0
    }

    /// Admits one call at `now` (nanoseconds since the epoch), or says how long until
    /// one would be.
    pub(crate) fn admit(&self, now: u64) -> Result<(), Duration> {
        let interval = self.interval.load(Ordering::Acquire);
        if interval == 0 {
            return Ok(());
        }
        let span = self.span.load(Ordering::Relaxed);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(interval);
            let ahead = next - now;
            if ahead > span {
                return Err(Duration::from_nanos(ahead - span));
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn an_idle_bucket_admits_a_burst_then_the_rate() {
        let gate = RateGate::default();
        gate.set(Some((1000.0, 5)));
        let start = 10_000 * MS;
        for i in 0..5 {
            assert_eq!(gate.admit(start), Ok(()), "burst call {i}");
        }
        let wait = gate.admit(start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(1), "one interval");
        assert_eq!(gate.admit(start + MS), Ok(()));
        assert!(gate.admit(start + MS).is_err());
        // Over a second at the rate: about a thousand admitted, plus the burst.
        let admitted = (0..4000)
            .filter(|i| gate.admit(start + 2 * MS + i * MS / 4).is_ok())
            .count();
        assert!((999..=1006).contains(&admitted), "{admitted}");
        // A new limit starts from a full bucket.
        gate.set(Some((10.0, 2)));
        let later = start + 2_000 * MS;
        assert_eq!((gate.admit(later), gate.admit(later)), (Ok(()), Ok(())));
        assert!(gate.admit(later).is_err());
        gate.set(None);
        assert!(!gate.is_limited());
        assert_eq!(gate.admit(start), Ok(()));
    }
}
