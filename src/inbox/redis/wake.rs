//! Wake-ups: [`InboxBackend::wait_for_work`](crate::inbox::InboxBackend::wait_for_work) on
//! Redis, resolved by an accept in this process (a [`Notify`]) or in any other (a blocking
//! `XREAD` on the stream), or by the timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{backend, millis, RedisInbox};
use crate::idempotency::MAX_DURATION;
use crate::inbox::error::InboxError;

/// How long a wait pauses after its blocking connection failed (Redis restarting, ...)
/// before it connects again, while the timeout allows.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// How many idle blocking connections an inbox keeps for its next waits.
const IDLE_CONNECTIONS: usize = 4;

/// What the handles of one [`RedisInbox`] (it and its clones) share to wake their waits.
#[derive(Debug, Default)]
pub(super) struct Wake {
    /// Notified after this process stored a delivery that is due now.
    local: Notify,
    /// Connections for blocking reads, one per concurrent wait (a blocked connection answers
    /// nothing else), kept for the next waits.
    idle: Mutex<Vec<MultiplexedConnection>>,
}

impl Wake {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Wakes every wait of this process.
    pub(super) fn notify(&self) {
        self.local.notify_waiters();
    }

    fn take(&self) -> Option<MultiplexedConnection> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    fn forget_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    fn give_back(&self, connection: MultiplexedConnection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < IDLE_CONNECTIONS {
                idle.push(connection);
            }
        }
    }
}

impl RedisInbox {
    /// Waits until a delivery is appended to the stream (by any process) or this process
    /// notifies, for at most `timeout`. Never fails: a Redis that cannot be reached makes it
    /// wait as a poll would, reconnecting while the timeout allows.
    pub(super) async fn wait(&self, timeout: Duration) {
        // `Duration::MAX` waits as long as any timeout can (100 years).
        let deadline = Instant::now() + timeout.min(MAX_DURATION);
        let notified = self.wake.local.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered now: a notification from here on wakes this wait.
        notified.as_mut().enable();
        // Bounded as a whole: a stalled Redis does not hold the wait past its timeout.
        let stream = std::pin::pin!(tokio::time::timeout_at(
            deadline,
            self.wait_on_stream(deadline)
        ));
        futures_util::future::select(notified, stream).await;
    }

    async fn wait_on_stream(&self, deadline: Instant) {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return;
            }
            match self.block(remaining).await {
                Ok(()) => return,
                Err(error) => {
                    crate::observe::event!(
                        debug,
                        %error,
                        "inbox: the blocking wait on the stream failed; waiting and reconnecting"
                    );
                    tokio::time::sleep_until(deadline.min(Instant::now() + RECONNECT_PAUSE)).await;
                }
            }
        }
    }

    /// One blocking `XREAD` from the group's position, on a connection of its own: it answers
    /// at once when entries wait that no claim took yet (appended since this process last
    /// claimed: no accept is missed between a claim and the wait), otherwise when one is
    /// appended, or after `remaining`.
    ///
    /// The read runs in a task of its own that gives the connection back when Redis answers:
    /// a wait that ends first (notified in process, or dropped) leaves it to finish (at the
    /// next append, which usually is what notified) rather than close the connection.
    async fn block(&self, remaining: Duration) -> Result<(), InboxError> {
        let position: String = self.run(&self.scripts.position, &[]).await?;
        let mut connection = match self.wake.take() {
            Some(connection) => connection,
            None => self.blocking_connection().await?,
        };
        let mut read = redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(millis(remaining).max(1))
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(position);
        let wake = Arc::clone(&self.wake);
        let limit = remaining + self.options.timeout();
        let reading = tokio::spawn(async move {
            // A stalled Redis: the connection is dropped with its read, the wait ends.
            let answer =
                tokio::time::timeout(limit, read.query_async::<redis::Value>(&mut connection))
                    .await;
            match answer {
                Ok(Ok(_)) => {
                    wake.give_back(connection);
                    Ok(())
                }
                Ok(Err(error)) => {
                    // Redis went away: the kept connections went with it.
                    wake.forget_idle();
                    Err(backend(error))
                }
                Err(_) => Ok(()),
            }
        });
        reading
            .await
            .map_err(|error| InboxError::Backend(Box::new(error)))?
    }

    async fn blocking_connection(&self) -> Result<MultiplexedConnection, InboxError> {
        // No response timeout: the read blocks for as long as it asks to.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.timeout()))
            .set_response_timeout(None);
        tokio::time::timeout(
            self.options.timeout(),
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| InboxError::Timeout)?
        .map_err(backend)
    }
}
