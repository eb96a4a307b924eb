//! Instances that gave up: the backoff before they may start again, and what is known of
//! each failure.
//!
//! An instance that crashes past its restart bound gives up. Its directory slot then
//! holds a [`Failure`] until the backoff has passed: a `get` meanwhile answers
//! [`Error::BackingOff`](crate::Error::BackingOff) (the caller learns when to retry and
//! nothing crash-loops), the first `get` after it starts the instance again, and
//! [`Manager::retry_now`](crate::Manager::retry_now) skips the wait. Delays grow
//! exponentially with consecutive failures and reset once an incarnation outlives the
//! longest delay.

use std::time::{Duration, SystemTime};

/// How long an instance that gave up waits before it may start again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub first: Duration,
    /// The longest delay; each consecutive failure doubles the previous one up to it.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (1 for the first failure).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// Why an instance gave up and when it may start again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why it gave up (the last crash; may hold a panic's text: host eyes only).
    pub reason: String,
    /// Consecutive failures, this one included.
    pub attempt: u32,
    /// When it may start again (wall clock, for listings).
    pub next_try_at: SystemTime,
    /// The same instant on the runtime's clock.
    pub(crate) retry_at: tokio::time::Instant,
}

impl Failure {
    pub(crate) fn new(reason: String, attempt: u32, delay: Duration) -> Self {
        Self {
            reason,
            attempt,
            next_try_at: SystemTime::now() + delay,
            retry_at: tokio::time::Instant::now() + delay,
        }
    }

    /// How long until it may start again (zero once it may).
    pub fn retry_in(&self) -> Duration {
        self.retry_at
            .saturating_duration_since(tokio::time::Instant::now())
    }

    /// Whether its backoff has passed.
    pub fn expired(&self) -> bool {
        tokio::time::Instant::now() >= self.retry_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_first_up_to_the_max() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=8).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30));
        assert_eq!(b.delay(0), Duration::from_secs(1));
    }
}
