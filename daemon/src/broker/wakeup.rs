//! How a sleeping scheduler learns of work due earlier than it planned for.
//!
//! The scheduler sleeps until the earliest deadline it can see (never more
//! than one tick). A token stored while it sleeps (at warm-up, by a request
//! that fetched on demand) or a backoff that ends sooner may be due before
//! that: without a wake-up it would first be looked at up to a tick late,
//! and every token that came due meanwhile would be refreshed in the same
//! second. The benchmark's refresh burst (figure 6b) showed exactly that at
//! t = 30 s, the default tick.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

pub struct Wakeup {
    notify: Notify,
    /// The planned wake-up in milliseconds since the epoch; `u64::MAX`
    /// while the scheduler is working out its next sleep, so that anything
    /// scheduled meanwhile wakes it.
    planned: AtomicU64,
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1))
}

impl Default for Wakeup {
    fn default() -> Self {
        Wakeup {
            notify: Notify::new(),
            planned: AtomicU64::new(u64::MAX),
        }
    }
}

impl Wakeup {
    /// The scheduler is about to look for its next deadline: until it has
    /// called [`Wakeup::plan`], every [`Wakeup::schedule`] wakes it.
    pub fn planning(&self) {
        self.planned.store(u64::MAX, Ordering::SeqCst);
    }

    /// The scheduler sleeps until `at`.
    pub fn plan(&self, at: SystemTime) {
        self.planned.store(millis(at), Ordering::SeqCst);
    }

    /// Work is due at `at`: wakes the scheduler if it planned to sleep past
    /// that. The wake-up is remembered if the scheduler is not waiting yet
    /// (`Notify` keeps one permit), so it cannot be lost in between.
    pub fn schedule(&self, at: SystemTime) {
        let at = millis(at);
        if self.planned.fetch_min(at, Ordering::SeqCst) > at {
            self.notify.notify_one();
        }
    }

    /// Resolves when something was scheduled earlier than planned.
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn woken_now(w: &Wakeup) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(20), w.woken())
                .await
                .is_ok()
        })
    }

    #[test]
    fn earlier_work_wakes_later_work_does_not() {
        let w = Wakeup::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        w.plan(t0 + Duration::from_secs(30));
        w.schedule(t0 + Duration::from_secs(45));
        assert!(!woken_now(&w), "work after the planned wake-up");
        w.schedule(t0 + Duration::from_secs(5));
        assert!(woken_now(&w), "work before the planned wake-up");
        // Once woken for t0+5 s, work at t0+10 s is not earlier any more.
        w.schedule(t0 + Duration::from_secs(10));
        assert!(!woken_now(&w));
    }

    #[test]
    fn work_scheduled_while_planning_is_not_lost() {
        let w = Wakeup::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        w.planning();
        w.schedule(t0 + Duration::from_secs(3600));
        w.plan(t0 + Duration::from_secs(30));
        assert!(
            woken_now(&w),
            "the permit survives until the scheduler waits"
        );
    }
}
