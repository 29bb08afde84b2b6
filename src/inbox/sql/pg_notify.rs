//! `PostgresInbox`'s wake-ups across replicas: `LISTEN`/`NOTIFY` on a channel named from the
//! prefix. Accepts send a debounced `NOTIFY` after their commit; a listener connection, started
//! by the first wait for work, wakes this process's producers on each notification.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::wake::Wakeups;

/// At most one `NOTIFY` per this interval from one process (a burst of accepts sends a few,
/// the last one after the burst's last commit).
pub(super) const NOTIFY_INTERVAL: Duration = Duration::from_millis(5);

/// How long the listener waits before connecting again after a failure, at first (doubled
/// after each failure, up to [`RECONNECT_MAX`]); the producers poll meanwhile.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to connect the listener.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The wake-ups of one `PostgresInbox` and its clones: in this process, and through
/// `LISTEN`/`NOTIFY` across processes. Its tasks end when the last clone is dropped.
#[derive(Debug)]
pub(super) struct PgWakeups {
    local: Arc<Wakeups>,
    pool: PgPool,
    channel: String,
    /// The listener task, started by the first wait.
    listener: Mutex<Option<JoinHandle<()>>>,
    /// The task sending the debounced `NOTIFY`, and how an accept asks it for one.
    notifier: Mutex<Option<(JoinHandle<()>, Arc<Notify>)>>,
}

/// The `NOTIFY` channel of the inbox with table-name `prefix`.
pub(super) fn channel(prefix: &str) -> String {
    format!("{prefix}wake")
}

impl PgWakeups {
    pub(super) fn new(pool: PgPool, prefix: &str) -> Self {
        Self {
            local: Arc::default(),
            pool,
            channel: channel(prefix),
            listener: Mutex::new(None),
            notifier: Mutex::new(None),
        }
    }

    /// A delivery was committed as due (an accept, a replay): wakes this process's producers
    /// at once, and the other processes' through a `NOTIFY` sent soon (debounced).
    pub(super) fn due(&self) {
        self.local.wake();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut notifier = self.notifier.lock().unwrap_or_else(PoisonError::into_inner);
        let running = notifier
            .as_ref()
            .filter(|(task, _)| !task.is_finished())
            .map(|(_, asked)| Arc::clone(asked));
        let asked = running.unwrap_or_else(|| {
            let asked = Arc::new(Notify::new());
            let task = runtime.spawn(send_notifications(
                self.pool.clone(),
                self.channel.clone(),
                Arc::clone(&asked),
            ));
            *notifier = Some((task, Arc::clone(&asked)));
            asked
        });
        // Kept as a permit while the task sends: it sends once more after that.
        asked.notify_one();
    }

    /// Waits for a wake-up (here or, once the listener listens, from another process) or
    /// `timeout`; starts the listener the first time.
    pub(super) async fn wait(&self, timeout: Duration) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
            if listener.as_ref().is_none_or(JoinHandle::is_finished) {
                *listener = Some(runtime.spawn(listen(
                    self.pool.clone(),
                    self.channel.clone(),
                    Arc::clone(&self.local),
                )));
            }
        }
        self.local.wait(timeout).await;
    }
}

impl Drop for PgWakeups {
    fn drop(&mut self) {
        let listener = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = listener.take() {
            task.abort();
        }
        let notifier = self
            .notifier
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((task, _)) = notifier.take() {
            task.abort();
        }
    }
}

/// Sends a `NOTIFY` on `channel` each time it is asked, debounced (see [`debounced`]).
async fn send_notifications(pool: PgPool, channel: String, asked: Arc<Notify>) {
    debounced(&asked, NOTIFY_INTERVAL, || async {
        if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(&channel)
            .execute(&pool)
            .await
        {
            // The other processes find the delivery at their next poll.
            crate::observe::warn!(%error, "inbox: NOTIFY to the other replicas failed");
        }
        !pool.is_closed()
    })
    .await;
}

/// Calls `send` each time `asked` is notified, at most once per `interval`: the first request
/// of a quiet period at once, the next ones at the interval's end, each call after the
/// requests it answers (so after the commits of the accepts that asked: the last accept of a
/// burst is always followed by one). Ends when `send` returns `false`.
async fn debounced<F, Fut>(asked: &Notify, interval: Duration, mut send: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut last: Option<Instant> = None;
    loop {
        // A request made while `send` ran was kept as a permit: it is answered by the next.
        asked.notified().await;
        if let Some(last) = last {
            tokio::time::sleep_until(last + interval).await;
        }
        last = Some(Instant::now());
        if !send().await {
            return;
        }
    }
}

/// Listens on `channel` on a connection of its own (opened with `pool`'s options, not taken
/// from it) and wakes `local` on each notification; connects again after a failure (the
/// producers poll meanwhile), and wakes `local` each time it starts listening, so that
/// whatever was accepted while it did not listen is claimed.
async fn listen(pool: PgPool, channel: String, local: Arc<Wakeups>) {
    let mut backoff = RECONNECT_MIN;
    loop {
        if pool.is_closed() {
            return;
        }
        // A pool of its own, so that the connection it holds is not one of the inbox's.
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(RECONNECT_MAX)
            .connect_lazy_with((*pool.connect_options()).clone());
        let listening = async {
            let mut listener = PgListener::connect_with(&own).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match listening {
            Ok(mut listener) => {
                backoff = RECONNECT_MIN;
                local.wake();
                loop {
                    match listener.try_recv().await {
                        // A notification, or the connection lost and listening again.
                        Ok(_) => local.wake(),
                        Err(error) => {
                            crate::observe::warn!(
                                %error,
                                "inbox: the LISTEN connection failed; connecting again (the \
                                 workers poll meanwhile)"
                            );
                            break;
                        }
                    }
                }
            }
            Err(error) => {
                crate::observe::warn!(
                    %error,
                    "inbox: LISTEN failed; trying again (the workers poll meanwhile)"
                );
            }
        }
        drop(own);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_s_last_request_is_always_followed_by_a_send_and_sends_are_spaced() {
        let asked = Arc::new(Notify::new());
        let sends = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (asked, sends) = (Arc::clone(&asked), Arc::clone(&sends));
            async move {
                debounced(&asked, NOTIFY_INTERVAL, || {
                    sends
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Instant::now());
                    async { true }
                })
                .await;
            }
        });
        let start = Instant::now();
        let mut requests = Vec::new();
        for step in [0, 1, 1, 1, 20, 1, 1] {
            tokio::time::sleep(Duration::from_millis(step)).await;
            requests.push(Instant::now());
            asked.notify_one();
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        task.abort();
        let sends = sends.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let last_request = requests.last().copied().unwrap_or(start);
        assert!(
            sends.last().is_some_and(|sent| *sent >= last_request),
            "the last request of a burst is followed by a send: {:?} after {:?}",
            sends.iter().map(|s| *s - start).collect::<Vec<_>>(),
            last_request - start
        );
        assert!(
            sends.len() < requests.len(),
            "requests in a burst share a send"
        );
        assert!(
            sends
                .windows(2)
                .all(|pair| pair[1] - pair[0] >= NOTIFY_INTERVAL),
            "at most one send per interval"
        );
        assert_eq!(
            sends.first().copied(),
            Some(start),
            "a quiet period's first request is sent at once"
        );
    }
}
