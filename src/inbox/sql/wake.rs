//! Wake-ups in one process: how an SQL inbox tells the producers waiting in
//! [`InboxBackend::wait_for_work`](super::InboxBackend::wait_for_work) that deliveries may have
//! become due (an accept committed one, a replay made one due).

use std::time::Duration;

use tokio::sync::Notify;

/// The producers waiting for work on one inbox (shared by its clones).
#[derive(Debug, Default)]
pub(super) struct Wakeups {
    notify: Notify,
}

impl Wakeups {
    /// Wakes every producer waiting now, and the next one to wait when none is (it may be
    /// between a claim that found nothing and its wait: it claims again at once rather than
    /// wait for the poll). At most one wait resolves spuriously for it.
    pub(super) fn wake(&self) {
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Resolves on the next [`wake`](Self::wake) (or one that came while nobody waited), or
    /// after `timeout`.
    pub(super) async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_with_nobody_waiting_is_kept_for_the_next_wait_and_a_wait_times_out() {
        let wakeups = Wakeups::default();
        wakeups.wake();
        tokio::time::timeout(
            Duration::from_secs(5),
            wakeups.wait(Duration::from_secs(60)),
        )
        .await
        .expect("a wake before the wait is not lost");
        let started = std::time::Instant::now();
        wakeups.wait(Duration::from_millis(50)).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wake_wakes_every_waiting_producer() {
        let wakeups = std::sync::Arc::new(Wakeups::default());
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let wakeups = std::sync::Arc::clone(&wakeups);
                tokio::spawn(async move { wakeups.wait(Duration::from_secs(60)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        wakeups.wake();
        for task in waiting {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("every waiting producer is woken")
                .expect("the task ran");
        }
    }
}
