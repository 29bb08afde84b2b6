use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::ConfigError;
use crate::idempotency::{IdempotencyKey, Token};

use super::delivery::{Delivery, DeliveryState, Record};
use super::query::{Cursor, Filter, Page};

/// How long one inbox call may take by default before it fails with [`InboxError::Timeout`]
/// (the layer then answers `503` with `Retry-After`): 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many deliveries may wait (pending or running) by default before
/// [`InboxBackend::accept`] refuses new ones with [`InboxError::Full`]: 100,000.
pub const DEFAULT_MAX_DEPTH: u64 = 100_000;
/// How long done deliveries are kept by default to answer duplicates, before
/// [`InboxBackend::prune`] removes them: 7 days, longer than the senders' retry windows.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How many deliveries of each state the default [`InboxBackend::search`] reads: 10,000.
pub const DEFAULT_SEARCH_SCAN: usize = 10_000;
/// The default prefix of the SQL backends' table names (`tower_webhook_deliveries`, ...).
pub const DEFAULT_PREFIX: &str = "tower_webhook_";

/// The future an inbox call returns.
pub type InboxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, InboxError>> + Send + 'a>>;

/// An inbox could not answer. The layer answers `503` with `Retry-After` to an accept that
/// failed, so the sender retries; a worker tries again later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// The backend (the database, ...) failed or could not be reached, or holds a row it cannot
    /// read.
    #[error("inbox backend error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// The backend did not answer within the configured timeout. The call may still take
    /// effect: an accept that timed out may have stored the delivery (its retry is then a
    /// duplicate, and the delivery is processed once).
    #[error("inbox timed out")]
    Timeout,
    /// The inbox holds as many waiting deliveries as it may ([`InboxOptions::with_max_depth`]):
    /// backpressure, the delivery was not stored (never dropped after an acknowledgement).
    #[error("inbox is full")]
    Full,
}

/// The answer to [`InboxBackend::accept`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accepted {
    /// The delivery was stored, durably (committed), as pending and due now.
    New,
    /// A delivery with the same key is stored already, in this state; nothing changed.
    Duplicate(DeliveryState),
}

/// Which states [`InboxBackend::replay`] may take a delivery from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replay {
    /// Only a dead-lettered delivery.
    Dead,
    /// A dead-lettered one, or (explicitly) one that was processed already: its handler runs
    /// again.
    DeadOrDone,
}

/// An owner's outcome for [`InboxBackend::finish`], which records many in one call: each is
/// what the single call of the same name records.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finish {
    /// [`InboxBackend::complete`]: done.
    Done,
    /// [`InboxBackend::retry`]: pending, due `delay` from now, with `error` as the last error.
    Retry {
        /// How long from now the delivery is due again.
        delay: Duration,
        /// The attempt's error.
        error: String,
    },
    /// [`InboxBackend::dead_letter`]: dead, with `error`.
    Dead {
        /// The last attempt's error.
        error: String,
    },
    /// [`InboxBackend::release`]: pending, due now, the attempt not counted.
    Release,
}

/// A worker's hold on a running delivery: the delivery's key, the fencing token of this claim,
/// and the attempt it started. Every outcome is recorded only while the token is the one stored
/// with the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    key: IdempotencyKey,
    token: Token,
    attempt: u32,
}

impl Lease {
    /// A lease on `key` held through `token`, for `attempt` (1 for the first). For backends.
    #[must_use]
    pub fn new(key: IdempotencyKey, token: Token, attempt: u32) -> Self {
        Self {
            key,
            token,
            attempt,
        }
    }

    /// The delivery's key.
    #[must_use]
    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// The fencing token: new for each claim.
    #[must_use]
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// Which attempt this claim started: 1 for the first.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// A claimed delivery: what is stored, and the lease to record its outcome with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claim {
    /// The delivery, as stored (state [`DeliveryState::Running`]).
    pub record: Record,
    /// The lease.
    pub lease: Lease,
}

impl Claim {
    /// A claim of `record` through `lease`. For backends.
    #[must_use]
    pub fn new(record: Record, lease: Lease) -> Self {
        Self { record, lease }
    }
}

/// Counts and ages, for metrics ([`InboxBackend::stats`]). A backend starts from
/// `Stats::default()` and sets the fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Deliveries pending (due now or later), [`retrying`](Self::retrying) ones included.
    pub pending: u64,
    /// Of the pending deliveries, those attempted already ([`Status::Retrying`](super::Status::Retrying)): a failed
    /// attempt and due again at their backoff. The others are waiting
    /// ([`waiting`](Self::waiting)).
    pub retrying: u64,
    /// Deliveries running (claimed, lease given back or not).
    pub running: u64,
    /// Deliveries done and not yet pruned.
    pub done: u64,
    /// Dead-lettered deliveries.
    pub dead: u64,
    /// How long ago the oldest waiting (pending or running) delivery was accepted.
    pub oldest_waiting: Option<Duration>,
}

impl Stats {
    /// The inbox's depth: deliveries waiting (pending or running), the number
    /// [`InboxOptions::with_max_depth`] bounds.
    #[must_use]
    pub fn depth(&self) -> u64 {
        self.pending + self.running
    }

    /// Pending deliveries never attempted ([`Status::Waiting`](super::Status::Waiting)): `pending - retrying`.
    #[must_use]
    pub fn waiting(&self) -> u64 {
        self.pending.saturating_sub(self.retrying)
    }
}

/// An inbox backend's configuration: the SQL backends take it when they open.
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::inbox::InboxOptions;
///
/// let options = InboxOptions::new()
///     .with_prefix("billing_")?
///     .with_max_depth(10_000)
///     .with_timeout(Duration::from_secs(2));
/// assert_eq!(options.prefix(), "billing_");
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxOptions {
    prefix: String,
    max_depth: u64,
    timeout: Duration,
}

impl Default for InboxOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl InboxOptions {
    /// The defaults: prefix [`DEFAULT_PREFIX`], depth [`DEFAULT_MAX_DEPTH`], timeout
    /// [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            max_depth: DEFAULT_MAX_DEPTH,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The prefix of every table (and index) name the backend creates (default
    /// `tower_webhook_`): give each inbox sharing a database its own. Lower-case ASCII letters,
    /// digits and `_`, starting with a letter or `_`, at most 40 bytes (it is part of SQL
    /// identifiers).
    ///
    /// # Errors
    /// [`ConfigError::InvalidInboxPrefix`] when the prefix breaks those rules.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        let mut bytes = prefix.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !first_ok || !rest_ok || prefix.len() > 40 {
            return Err(ConfigError::InvalidInboxPrefix);
        }
        self.prefix = prefix;
        Ok(self)
    }

    /// How many deliveries may wait (pending or running) before accept answers
    /// [`InboxError::Full`] (default [`DEFAULT_MAX_DEPTH`]).
    ///
    /// The limit is the inbox's, not a process's: every process and replica that opens the
    /// inbox counts the same deliveries, so accepts made one after another never pass it,
    /// whichever processes make them. Accepts running at the same moment may pass it by their
    /// number on Postgres (each sees the depth as committed when it starts); on `SQLite` (one
    /// writer at a time) and Redis (one script per accept) they never do. Each process compares
    /// that depth with its own limit, so give them all the same one (a process given `0` stops
    /// taking new deliveries while the others go on).
    ///
    /// `0` refuses every new delivery (`503 inbox_full`, so the senders retry later) while
    /// duplicates are still answered as such: a way to stop intake while the workers drain
    /// the inbox.
    #[must_use]
    pub fn with_max_depth(mut self, max_depth: u64) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// How long one call may take before it fails with [`InboxError::Timeout`] (default
    /// [`DEFAULT_TIMEOUT`]); it also bounds waiting for a pooled connection.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The table-name prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The depth limit.
    #[must_use]
    pub fn max_depth(&self) -> u64 {
        self.max_depth
    }

    /// The timeout of one call.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Where verified deliveries wait to be processed, and how workers take them.
///
/// # Implementing your own backend
///
/// The layer and the workers rely on each rule below holding for every caller that shares the
/// backend (tasks, processes, replicas). [`inbox::conformance::check_inbox`](crate::inbox::conformance::check_inbox)
/// (feature `testing`) checks them.
///
/// **Accept.** [`accept`](Self::accept) stores a delivery **once per key**, atomically (an
/// insert-if-absent, never a read then a write): a new key is stored as pending, due now, and
/// [`Accepted::New`] is returned only once that is durable (committed). A key already stored,
/// in any state (pending, running, done, dead), returns [`Accepted::Duplicate`] with that state
/// and changes nothing. A new key while the depth (pending plus running) is at the configured
/// limit returns [`InboxError::Full`] and stores nothing: never drop a stored delivery to make
/// room. A duplicate is answered as such even when the inbox is full.
///
/// **Claim.** [`claim`](Self::claim)`(lease, limit)` takes up to `limit` deliveries that are
/// due (pending and due, or running with a lease that has run out), oldest due first, marks
/// them running with a lease that ends `lease` from now, counts an attempt, and gives each
/// claim a fresh [`Token`]. While a lease is live, no other claim returns that delivery: two
/// concurrent claims never return the same delivery.
///
/// **Outcomes** are recorded only by the current owner: the token stored with the delivery
/// (the one of its last claim) and state running. A token whose delivery was claimed again
/// after its lease ran out is stale: each call then changes nothing and returns `false`. A
/// lease that ran out and that nobody claimed again is still the current owner's.
/// - [`renew`](Self::renew)`(lease, duration)`: the lease now ends `duration` from now;
/// - [`complete`](Self::complete): done (kept to answer duplicates until pruned);
/// - [`retry`](Self::retry)`(lease, delay, error)`: pending, due `delay` from now, with
///   `error` as the last error (any text, a handler's answer included: a backend that cannot
///   store some characters, such as NUL, replaces them rather than fail);
/// - [`dead_letter`](Self::dead_letter)`(lease, error)`: dead, with `error`;
/// - [`release`](Self::release): pending and due now, the attempt not counted (for a graceful
///   shutdown that stops a handler before it finished).
///
/// **What the workers read back.** [`get`](Self::get) shows each recorded outcome (state, and
/// `attempts`: the claims counted, a takeover included, a release not), at once. A worker reads
/// a delivery again when recording an outcome failed with an unknown result (a connection cut
/// after the commit) or was refused, and when a renewal was refused: done with its own lease's
/// attempt count means its own attempt completed it (the handler's transaction, or the call
/// whose answer was lost); more attempts mean another worker took it over.
///
/// **Admin.** [`list`](Self::list) (by state, oldest accepted first), [`get`](Self::get),
/// [`search`](Self::search) (a [`Filter`]'s page, oldest accepted first then by key, every
/// condition holding; paging with [`Page::next`] returns each delivery once, those accepted in
/// the same instant included: the default through `list` does, and an override that filters in
/// its store must too), [`replay`](Self::replay) (dead, or with [`Replay::DeadOrDone`] done, to
/// pending due now with the attempts reset; `false` and no change from any other state),
/// [`purge`](Self::purge) (remove one delivery in any state: a later delivery with its key is
/// then new), [`prune`](Self::prune)`(window)` (remove done deliveries finished more than
/// `window` ago; dead ones stay until purged or replayed; see its docs for batches), and
/// [`stats`](Self::stats) (with [`Stats::retrying`], the pending deliveries attempted already).
///
/// **History.** A backend may keep each delivery's history ([`Record::history`], read by `get`,
/// `list` and `search`): one [`HistoryEntry`](super::HistoryEntry) per recorded outcome
/// (`complete` and a handler's own completion: done; `retry` and `dead_letter`, with the error;
/// `release`; the same through `finish`) with the lease's attempt, and per replay (with the
/// attempts it reset), oldest first, the last [`HISTORY_LIMIT`](super::HISTORY_LIMIT) of them;
/// a refused outcome adds none. Best written by the statement (or script) that records the
/// outcome, so that it costs nothing more. A backend that keeps none leaves it empty (the
/// admin tools then show the last error only); the built-in SQL backends keep it.
///
/// **Time.** "Now" is the backend's clock, the same for every caller (the database's for a
/// shared database). Every call fails with [`InboxError::Timeout`] rather than wait longer than
/// the configured timeout (for `prune`, each of its batches), and with [`InboxError::Backend`]
/// when the backend fails. A backend must not panic.
pub trait InboxBackend: Send + Sync + 'static {
    /// Stores `delivery` unless its key is stored already. See the trait docs.
    fn accept<'a>(&'a self, delivery: &'a Delivery) -> InboxFuture<'a, Accepted>;

    /// Claims up to `limit` due deliveries for `lease`. See the trait docs.
    fn claim(&self, lease: Duration, limit: usize) -> InboxFuture<'_, Vec<Claim>>;

    /// Extends a lease to end `duration` from now, if it is still the owner's.
    fn renew<'a>(&'a self, lease: &'a Lease, duration: Duration) -> InboxFuture<'a, bool>;

    /// Marks the delivery done, if the lease is still the owner's.
    fn complete<'a>(&'a self, lease: &'a Lease) -> InboxFuture<'a, bool>;

    /// Makes the delivery pending again, due `delay` from now, with `error` as its last error,
    /// if the lease is still the owner's.
    fn retry<'a>(
        &'a self,
        lease: &'a Lease,
        delay: Duration,
        error: &'a str,
    ) -> InboxFuture<'a, bool>;

    /// Dead-letters the delivery with `error`, if the lease is still the owner's.
    fn dead_letter<'a>(&'a self, lease: &'a Lease, error: &'a str) -> InboxFuture<'a, bool>;

    /// Gives the delivery back, due now and its attempt not counted, if the lease is still the
    /// owner's.
    fn release<'a>(&'a self, lease: &'a Lease) -> InboxFuture<'a, bool>;

    /// Up to `limit` deliveries in `state`, oldest accepted first.
    fn list(&self, state: DeliveryState, limit: usize) -> InboxFuture<'_, Vec<Record>>;

    /// The delivery stored under `key`.
    fn get<'a>(&'a self, key: &'a IdempotencyKey) -> InboxFuture<'a, Option<Record>>;

    /// Makes a dead (or, with [`Replay::DeadOrDone`], a done) delivery pending and due now, its
    /// attempts reset. Returns whether it did.
    fn replay<'a>(&'a self, key: &'a IdempotencyKey, from: Replay) -> InboxFuture<'a, bool>;

    /// Removes the delivery stored under `key`, in any state. Returns whether there was one.
    fn purge<'a>(&'a self, key: &'a IdempotencyKey) -> InboxFuture<'a, bool>;

    /// Removes done deliveries finished more than `window` ago (usually
    /// [`DEFAULT_DEDUP_WINDOW`]). Returns how many.
    ///
    /// A large backlog is removed in batches, each its own short transaction (or script) and
    /// each bounded by the configured timeout, so that accepts and claims are never held up
    /// for long: the whole call may take longer than the timeout. A batch that fails or times
    /// out ends the call: with its error when it was the first, otherwise with how many the
    /// batches before it removed (they stay removed, and the next prune goes on).
    fn prune(&self, window: Duration) -> InboxFuture<'_, u64>;

    /// Counts by state and the oldest waiting delivery's age.
    fn stats(&self) -> InboxFuture<'_, Stats>;

    /// A page of the deliveries that match `filter`, oldest accepted first (then by key), for
    /// the admin tools: the command line, the admin page. A backend that can filters and pages
    /// in its store (the built-in ones do, with an index on state and time accepted); the
    /// default reads up to [`DEFAULT_SEARCH_SCAN`] deliveries of each state the filter allows
    /// through [`list`](Self::list) and filters them here, so it sees no further than those.
    fn search<'a>(&'a self, filter: &'a Filter) -> InboxFuture<'a, Page> {
        Box::pin(async move {
            let states: Vec<DeliveryState> = match filter.status {
                Some(status) => vec![status.state()],
                None => DeliveryState::ALL.to_vec(),
            };
            let mut records = Vec::new();
            for state in states {
                records.extend(
                    self.list(state, DEFAULT_SEARCH_SCAN)
                        .await?
                        .into_iter()
                        .filter(|record| filter.matches(record)),
                );
            }
            records.sort_by_key(Cursor::of);
            let limit = filter.limit_or_default();
            records.truncate(limit);
            Ok(Page::new(records, limit))
        })
    }

    /// Records the outcomes of many leases, each as its single call would (`complete`,
    /// `retry`, `dead_letter`, `release`), and answers, in the same order, whether each was
    /// still its owner's. A backend that can records them in one transaction or script (the
    /// workers' completer flushes its outcomes through it); the default calls the single
    /// methods one after another.
    ///
    /// On an error, which of the outcomes took effect is unknown (none, for a backend that
    /// records them in one transaction): the caller reads the deliveries again.
    fn finish<'a>(&'a self, outcomes: &'a [(Lease, Finish)]) -> InboxFuture<'a, Vec<bool>> {
        Box::pin(async move {
            let mut owned = Vec::with_capacity(outcomes.len());
            for (lease, finish) in outcomes {
                owned.push(match finish {
                    Finish::Done => self.complete(lease).await?,
                    Finish::Retry { delay, error } => self.retry(lease, *delay, error).await?,
                    Finish::Dead { error } => self.dead_letter(lease, error).await?,
                    Finish::Release => self.release(lease).await?,
                });
            }
            Ok(owned)
        })
    }

    /// Extends many leases to end `duration` from now, each as [`renew`](Self::renew) would,
    /// and answers, in the same order, whether each was still its owner's. A backend that can
    /// does it in one statement or script (the workers renew every running delivery's lease
    /// through it once per interval); the default calls `renew` for each.
    fn renew_all<'a>(
        &'a self,
        leases: &'a [Lease],
        duration: Duration,
    ) -> InboxFuture<'a, Vec<bool>> {
        Box::pin(async move {
            let mut owned = Vec::with_capacity(leases.len());
            for lease in leases {
                owned.push(self.renew(lease, duration).await?);
            }
            Ok(owned)
        })
    }

    /// Resolves when deliveries may have become due (a new one was accepted, in this process
    /// or, for a shared backend that can tell, in another), or after `timeout` at the latest:
    /// the workers' producer waits here when it found nothing to claim, instead of polling.
    /// It may resolve early or spuriously; the caller claims and waits again. The default
    /// waits `timeout` (polling).
    fn wait_for_work(&self, timeout: Duration) -> InboxFuture<'_, ()> {
        Box::pin(async move {
            tokio::time::sleep(timeout).await;
            Ok(())
        })
    }
}

/// `future`, or [`InboxError::Timeout`] after `timeout`.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) async fn timed<T>(
    timeout: Duration,
    future: impl Future<Output = Result<T, InboxError>>,
) -> Result<T, InboxError> {
    tokio::time::timeout(timeout, future)
        .await
        .unwrap_or(Err(InboxError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked_because_they_are_part_of_sql_identifiers() {
        for good in ["tower_webhook_", "_x", "app1_"] {
            assert!(InboxOptions::new().with_prefix(good).is_ok(), "{good}");
        }
        for bad in ["", "1x", "x;drop", "X", "a-b", "\"x", &"a".repeat(41)] {
            assert!(InboxOptions::new().with_prefix(bad).is_err(), "{bad}");
        }
    }
}
