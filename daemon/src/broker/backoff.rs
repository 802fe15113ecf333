//! Retry pacing after transient failures: exponential backoff with full
//! jitter (1 s doubling up to 5 min), never sooner than upstream's
//! `Retry-After`. Deadlines are wall-clock instants, like token expiry, so a
//! machine that slept through a backoff retries on the first tick after it
//! wakes.

use std::time::{Duration, SystemTime};

use rand::Rng;

pub const BASE: Duration = Duration::from_secs(1);
pub const CAP: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Clone)]
pub struct Backoff {
    failures: u32,
    next_attempt: Option<SystemTime>,
    /// After a failure that waiting does not fix (a blocked identity), the
    /// scheduler still looks again, but only this late: requests are not
    /// held back by it.
    recheck_at: Option<SystemTime>,
    /// What failed last, for status and for requests turned away meanwhile.
    pub last_error: Option<(String, String)>,
}

impl Backoff {
    /// The upper bound of the jittered delay after `failures` failures.
    pub fn ceiling(failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(16);
        BASE.saturating_mul(1 << exp).min(CAP)
    }

    /// Records a transient failure and returns when to try next. `jitter`
    /// is uniform in [0, 1): the tests pass their own.
    pub fn fail_with(
        &mut self,
        now: SystemTime,
        retry_after: Option<Duration>,
        jitter: f64,
        error: (String, String),
    ) -> SystemTime {
        self.failures = self.failures.saturating_add(1);
        let ceiling = Self::ceiling(self.failures);
        // Full jitter, but at least the base: a zero delay would make a
        // flapping endpoint see bursts.
        let delay = ceiling.mul_f64(jitter.clamp(0.0, 1.0)).max(BASE);
        let delay = retry_after.map_or(delay, |r| delay.max(r.min(CAP)));
        let at = now + delay;
        self.next_attempt = Some(at);
        self.recheck_at = None;
        self.last_error = Some(error);
        at
    }

    pub fn fail(
        &mut self,
        now: SystemTime,
        retry_after: Option<Duration>,
        error: (String, String),
    ) -> SystemTime {
        let jitter = rand::rng().random::<f64>();
        self.fail_with(now, retry_after, jitter, error)
    }

    /// Records a failure that is not retried on a timer.
    pub fn park(&mut self, recheck_at: SystemTime, error: (String, String)) {
        self.next_attempt = None;
        self.recheck_at = Some(recheck_at);
        self.last_error = Some(error);
    }

    /// When the scheduler should look again, if a failure decides it.
    pub fn scheduled(&self) -> Option<SystemTime> {
        self.next_attempt.or(self.recheck_at)
    }

    pub fn succeed(&mut self) {
        *self = Backoff::default();
    }

    /// `Some(at)` while upstream must not be asked before `at`.
    pub fn wait_until(&self, now: SystemTime) -> Option<SystemTime> {
        self.next_attempt.filter(|at| *at > now)
    }

    pub fn next_attempt(&self) -> Option<SystemTime> {
        self.next_attempt
    }

    #[cfg(test)]
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err() -> (String, String) {
        ("down".into(), String::new())
    }

    #[test]
    fn doubles_up_to_five_minutes() {
        let c: Vec<u64> = (1..=12).map(|n| Backoff::ceiling(n).as_secs()).collect();
        assert_eq!(c, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(Backoff::ceiling(u32::MAX), CAP);
    }

    #[test]
    fn full_jitter_within_bounds_and_retry_after_honoured() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.fail_with(now, None, 0.0, err());
        }
        // Ceiling 16 s, jitter 0: the 1 s floor.
        assert_eq!(b.wait_until(now), Some(now + BASE));
        let at = b.fail_with(now, None, 0.5, err());
        assert_eq!(at, now + Duration::from_secs(16));
        let at = b.fail_with(now, Some(Duration::from_secs(120)), 0.1, err());
        assert_eq!(at, now + Duration::from_secs(120));
        // An absurd Retry-After is capped like everything else.
        let at = b.fail_with(now, Some(Duration::from_secs(86400)), 0.1, err());
        assert_eq!(at, now + CAP);
        assert_eq!(b.wait_until(now + CAP), None);
        b.succeed();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.wait_until(now), None);
    }

    #[test]
    fn random_jitter_stays_in_range() {
        let now = SystemTime::UNIX_EPOCH;
        for n in 1..40u32 {
            let mut b = Backoff::default();
            let mut at = now;
            for _ in 0..n {
                at = b.fail(now, None, err());
            }
            let d = at.duration_since(now).unwrap();
            assert!(d >= BASE && d <= Backoff::ceiling(n), "{n}: {d:?}");
        }
    }
}
