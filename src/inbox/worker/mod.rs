//! The workers: a producer claims due deliveries in batches for the free executor slots,
//! executors hand each to the application's service as the layer would have, and a completer
//! records the outcomes in batches and renews the running deliveries' leases.
//!
//! - `mod.rs`: [`Workers`] (the builder), [`WorkersHandle`] (shutdown), [`Outcome`];
//! - `producer.rs`: the one task that claims and starts executors;
//! - `executor.rs`: one delivery's run (its handler on its own task, timeout, panic, lease);
//! - `completer.rs`: the one task that records outcomes and renews leases, in batches;
//! - `attempt.rs`: [`Attempt`], and how a handler's own completion is followed;
//! - `backoff.rs`: the delay before a retry.

mod attempt;
mod backoff;
mod completer;
mod executor;
mod producer;

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_service::Service;

use super::backend::{InboxBackend, DEFAULT_DEDUP_WINDOW};
use super::delivery::Delivery;
use crate::error::ConfigError;
use crate::idempotency::checked;
use crate::observe::InboxName;
#[cfg(doc)]
use crate::observe::DEFAULT_INBOX_NAME;

pub use self::attempt::Attempt;
#[cfg(feature = "redis")]
pub(crate) use self::attempt::Fence;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) use self::attempt::Tracked;

const DEFAULT_WORKERS: NonZeroUsize = NonZeroUsize::new(64).unwrap();
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
const DEFAULT_MAX_ATTEMPTS: NonZeroU32 = NonZeroU32::new(8).unwrap();
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How often the gauges are refreshed by default.
const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(10);
/// How often done deliveries past the deduplication window are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Runs the handlers of an inbox's deliveries: up to `N` at once in this process (the executor
/// slots, [`with_workers`](Self::with_workers)), claimed in batches with a lease, each handed to
/// the application's service. Needs no feature, and a Tokio runtime with its timer.
///
/// How deliveries flow (the shape of River, Oban and graphile-worker):
///
/// - **one producer** claims as many due deliveries as there are free slots, in one
///   [`claim`](InboxBackend::claim) call, and starts an executor for each. When it found fewer
///   than it asked for, nothing more is due: it waits for the backend's wake-up
///   ([`wait_for_work`](InboxBackend::wait_for_work): an accept in this process, or a
///   notification from another, where the backend has them), or at most the poll interval
///   ([`with_poll_interval`](Self::with_poll_interval), the fallback for a missed wake-up and
///   for retries coming due); when it filled every slot, it claims again as soon as one frees,
///   for that slot and those the executors ending with it free (so quick handlers are claimed
///   for a batch at a time, never one slot at a time);
/// - **executors** each run one delivery's handler on its own task (the handler timeout, a
///   panic caught, shutdown's stop), and free their slot as soon as the handler ended;
/// - **one completer** records the outcomes in batches: what gathered while the previous flush
///   ran (up to 128) in one [`finish`](InboxBackend::finish) call (one transaction or script on
///   the crate's backends), then reports each as recorded; it also renews the leases of every
///   running delivery in one [`renew_all`](InboxBackend::renew_all) call per third of the lease.
///
/// So a `2xx` from the handler is recorded in the completer's next flush (usually within a few
/// milliseconds), not before the executor slot is reused; and nothing is marked done before its
/// handler finished: a process killed in between leaves the delivery running, claimed again
/// once its lease runs out (the handler then runs again: at least once). A handler's own
/// completion ([`Attempt`]'s `begin_complete`) commits on its own, never batched.
///
/// The service is the one that serves the route in inline mode: an
/// [`EventRouter`](crate::EventRouter) with its state (`events.with_state(app)`), the whole
/// axum application (the [`WebhookLayer`](crate::WebhookLayer) lets the workers' requests
/// through to its inner service: they were verified when stored; route parameters are matched
/// against the stored path, the full one the request was sent to, nested routers' prefixes
/// included), or any `Service<Request<Full<Bytes>>>` routing the same paths. Each delivery is
/// rebuilt as the layer hands it over inline: `POST` to the stored path, the stored headers (the
/// ones the scheme read, and `Content-Type`), the exact bytes received as the body, and
/// [`WebhookMeta`](crate::WebhookMeta) and the verified body in the extensions, so the
/// extractors (`Envelope<T>`, `Event<T>`, `Verified<T>`, `WebhookMeta`) work unchanged. An
/// [`Attempt`] in the extensions says which attempt runs, and lets a handler complete its
/// delivery in its own transaction (`begin_complete`).
///
/// | the handler | the delivery |
/// | --- | --- |
/// | answers `2xx` | done, recorded in the completer's next flush (with the other outcomes that gathered meanwhile); the process killed before that flush: as "never ends" below |
/// | committed its own completion (`begin_complete`) | done (by that commit, on its own, never batched), whatever it answers |
/// | answers anything else, errors, panics, or outlives the handler timeout; or began its own completion and did not commit it (dropped, rolled back, a commit that failed), whatever it answers | pending again, due after a backoff (`backoff · 2^(n-1)`, plus up to half of that at random, at most the maximum backoff); dead-lettered with the error instead after the last attempt (recorded in the next flush) |
/// | is still running at shutdown's deadline | given back (released): due now, the attempt not counted (flushed before `shutdown` returns) |
/// | never ends (its worker was killed, or lost its lease) | claimable again once the lease runs out, the attempt counted; claimed past the last attempt, it is dead-lettered without running the handler again |
///
/// While a handler runs, and until its outcome is recorded, its lease is renewed every third
/// of the lease (with every other running delivery's, by the completer's renewal task): an
/// outcome waiting for a flush that is held up does not let the lease run out and the handler
/// run again. A renewal refused (the lease ran out and another
/// worker claimed the delivery) stops the handler; so do renewals failing until a tenth of the
/// lease before it ends (measured from before the claim or the last renewal was sent, so never
/// later than the backend's end): the delivery may then be claimed by another worker, and the
/// margin keeps the two from running at once while the clocks (the database server's and this
/// process's; the wall clock on `SQLite`) agree to within it. A stale owner's outcome would be
/// refused by the backend anyway. Stopping is cooperative: a handler that blocks its thread
/// without yielding cannot be stopped.
///
/// A handler's own completion changes that (see [`Attempt`]): while it is open, the lease does
/// not stop the handler (the completion keeps other workers off the delivery, or is refused at
/// commit if it was taken over), and no renewal waits on it; once it committed, the delivery is
/// done and the handler runs to its end (a refused renewal that finds the delivery done by this
/// very attempt is no takeover). The handler timeout bounds it in every case.
///
/// Each attempt's outcome is recorded in the backend, then reported in a `tracing` span and the
/// attempts metric, and given to [`on_outcome`](Self::on_outcome)'s hook when one is set. When
/// recording it fails with an unknown result (a connection cut after the database committed),
/// or is refused, the completer reads the delivery again and reports what it finds
/// ([`Outcome`]); after a failed flush, a delivery found still running under its attempt has
/// its outcome recorded on its own.
///
/// Defaults: 64 executor slots, a 30 s lease, 8 attempts, a 1 s first backoff (at most 1 h), a
/// 500 ms poll interval when no wake-up comes, a 5 min handler timeout, done deliveries pruned
/// after 7 days ([`DEFAULT_DEDUP_WINDOW`]), the inbox's gauges refreshed every 10 s under the
/// name `default` ([`with_name`](Self::with_name); the metrics are listed in
/// [`observe`](crate::observe)).
///
/// ```no_run
/// # #[cfg(all(feature = "sqlite", feature = "axum"))]
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use axum::{handler::Handler, routing::post, Router};
/// use tower_webhook::inbox::{InboxOptions, SqliteInbox, Workers};
/// use tower_webhook::{Envelope, EventRouter, Scheme, WebhookLayer};
///
/// async fn member_created(event: Envelope) -> &'static str {
///     println!("member.created {}", event.id);
///     "ok"
/// }
///
/// let inbox = SqliteInbox::open("webhooks.db", InboxOptions::new()).await?;
/// let events = EventRouter::new().on("member.created", member_created);
/// let layer = WebhookLayer::builder(Scheme::sotion())
///     .with_secret("whsec_from_your_dashboard")
///     .with_inbox(inbox.clone()) // the one line: verify, store, answer 2xx
///     .build()?;
/// let workers = Workers::new(inbox, events.clone().with_state(())).start()?;
/// let app: Router = Router::new().route("/webhooks", post(events).route_layer(layer));
/// // ... serve `app`; then, on shutdown:
/// workers.shutdown(Duration::from_secs(30)).await;
/// # Ok(())
/// # }
/// ```
#[must_use = "workers do nothing until started"]
pub struct Workers<B, S> {
    backend: Arc<B>,
    service: S,
    settings: Settings,
    /// The `inbox` label of the metrics.
    name: InboxName,
    on_outcome: Option<OutcomeHook>,
    /// The first mistake, reported by `start`.
    error: Option<ConfigError>,
}

impl<B, S> fmt::Debug for Workers<B, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("settings", &self.settings)
            .field("name", &self.name)
            .field("on_outcome", &self.on_outcome.is_some())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    workers: NonZeroUsize,
    lease: Duration,
    max_attempts: NonZeroU32,
    backoff: Duration,
    max_backoff: Duration,
    poll_interval: Duration,
    handler_timeout: Duration,
    dedup_window: Duration,
    stats_interval: Duration,
}

impl<B: InboxBackend, S> Workers<B, S> {
    /// Workers taking `backend`'s deliveries to `service`, with the default settings.
    pub fn new(backend: B, service: S) -> Self {
        Self::from_shared(Arc::new(backend), service)
    }

    /// As [`new`](Self::new), with a backend shared with other code.
    pub fn from_shared(backend: Arc<B>, service: S) -> Self {
        Self {
            backend,
            service,
            on_outcome: None,
            name: InboxName::default(),
            settings: Settings {
                workers: DEFAULT_WORKERS,
                lease: DEFAULT_LEASE,
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                backoff: DEFAULT_BACKOFF,
                max_backoff: DEFAULT_MAX_BACKOFF,
                poll_interval: DEFAULT_POLL_INTERVAL,
                handler_timeout: DEFAULT_HANDLER_TIMEOUT,
                dedup_window: DEFAULT_DEDUP_WINDOW,
                stats_interval: DEFAULT_STATS_INTERVAL,
            },
            error: None,
        }
    }

    fn duration(mut self, value: Duration, option: &'static str) -> (Self, Duration) {
        match checked(value, option) {
            Ok(value) => (self, value),
            Err(error) => {
                self.error.get_or_insert(error);
                (self, value)
            }
        }
    }

    /// How many deliveries this process handles at once (default 64): the executor slots the
    /// producer claims for, and so the largest batch one claim takes. Handlers are tasks, so
    /// slots are cheap; what bounds them is what the handlers share. Each running delivery holds
    /// its body, and each open [`begin_complete`](Attempt) holds one of the inbox pool's
    /// connections (10 on `PostgreSQL`, 4 on `SQLite`, which writes one transaction at a time
    /// anyway): handlers that open completions and wait in them queue for a connection, up to
    /// the inbox's timeout. Lower it for handlers that call a rate-limited service, or give
    /// the inbox a larger pool (`from_pool`).
    pub fn with_workers(mut self, workers: NonZeroUsize) -> Self {
        self.settings.workers = workers;
        self
    }

    /// How long a claim holds a delivery before another worker (or process) may take it over,
    /// unless renewed (default 30 s). It is renewed every third of it while the handler runs,
    /// so it only bounds how long a delivery waits after its worker died; a handler that holds
    /// its own completion open longer than the lease is not stopped for it (see [`Attempt`]).
    ///
    /// [`start`](Self::start) fails with [`ConfigError::InvalidDuration`] when it is zero or
    /// over 100 years.
    pub fn with_lease(self, lease: Duration) -> Self {
        let (mut this, lease) = self.duration(lease, "Workers::with_lease");
        this.settings.lease = lease;
        this
    }

    /// How many attempts a delivery gets before it is dead-lettered (default 8).
    pub fn with_max_attempts(mut self, max_attempts: NonZeroU32) -> Self {
        self.settings.max_attempts = max_attempts;
        self
    }

    /// The delay before the first retry (default 1 s); it doubles with each attempt, plus up to
    /// half of it at random (so retries of many deliveries that failed together spread out),
    /// up to [`with_max_backoff`](Self::with_max_backoff).
    ///
    /// [`start`](Self::start) fails with [`ConfigError::InvalidDuration`] when it is zero or
    /// over 100 years.
    pub fn with_backoff(self, backoff: Duration) -> Self {
        let (mut this, backoff) = self.duration(backoff, "Workers::with_backoff");
        this.settings.backoff = backoff;
        this
    }

    /// The longest delay between two attempts (default 1 h).
    ///
    /// [`start`](Self::start) fails with [`ConfigError::InvalidDuration`] when it is zero or
    /// over 100 years.
    pub fn with_max_backoff(self, max_backoff: Duration) -> Self {
        let (mut this, max_backoff) = self.duration(max_backoff, "Workers::with_max_backoff");
        this.settings.max_backoff = max_backoff;
        this
    }

    /// The fallback interval (default 500 ms): how long the producer, having found nothing
    /// more to claim, waits for the backend's wake-up
    /// ([`InboxBackend::wait_for_work`]) before it looks for due deliveries again anyway. It
    /// bounds how long a delivery waits when no wake-up comes: a retry coming due, a wake-up
    /// missed, or a backend that has none (the default `wait_for_work` only waits).
    ///
    /// [`start`](Self::start) fails with [`ConfigError::InvalidDuration`] when it is zero or
    /// over 100 years.
    pub fn with_poll_interval(self, interval: Duration) -> Self {
        let (mut this, interval) = self.duration(interval, "Workers::with_poll_interval");
        this.settings.poll_interval = interval;
        this
    }

    /// How long one attempt's handler may run (default 5 min); past it the handler is dropped
    /// and the attempt counts as failed (unless its own completion committed: the delivery is
    /// then done). It bounds a handler holding its completion open too.
    ///
    /// [`start`](Self::start) fails with [`ConfigError::InvalidDuration`] when it is zero or
    /// over 100 years.
    pub fn with_handler_timeout(self, timeout: Duration) -> Self {
        let (mut this, timeout) = self.duration(timeout, "Workers::with_handler_timeout");
        this.settings.handler_timeout = timeout;
        this
    }

    /// Calls `hook` when an attempt has ended and its outcome was recorded (or could not be),
    /// with the delivery, the attempt's number (1 for the first) and the [`Outcome`]: to print
    /// or count what happened to each delivery, a dead letter included, however the attempt
    /// ended (an answer, an error, a panic, a timeout, or attempts that ran out without an
    /// outcome). It runs once the outcome was recorded, on the completer's task (or the
    /// executor's, when there was nothing to record): keep it short and non-blocking, it holds
    /// up the other outcomes' recording and reports (not the running deliveries' lease
    /// renewals, which have a task of their own).
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # fn hook(workers: tower_webhook::inbox::Workers<tower_webhook::inbox::SqliteInbox, ()>) {
    /// use tower_webhook::inbox::Outcome;
    ///
    /// let workers = workers.on_outcome(|delivery, attempt, outcome| {
    ///     if let Outcome::DeadLettered { error } = outcome {
    ///         eprintln!("gave up on {} after attempt {attempt}: {error}", delivery.facts().id);
    ///     }
    /// });
    /// # }
    /// ```
    pub fn on_outcome(
        mut self,
        hook: impl Fn(&Delivery, u32, Outcome<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.on_outcome = Some(Arc::new(hook));
        self
    }

    /// The inbox's name in the metrics and the attempts' spans: the `inbox` label (default
    /// [`DEFAULT_INBOX_NAME`], `default`). Give the layer that stores the inbox's deliveries
    /// the same one
    /// ([`with_inbox_name`](crate::layer::WebhookLayerBuilder::with_inbox_name)). A few
    /// characters the application chooses (`billing`), never a value that comes with requests:
    /// each name is a series of its own. See [`observe`](crate::observe) for the metrics.
    pub fn with_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = InboxName::new(name.into());
        self
    }

    /// How often the workers read [`InboxBackend::stats`] to set the inbox's gauges (default
    /// 10 s; also once when they start, before anything is claimed). Each read is one `stats`
    /// call: on the SQL backends, counts over the state index, whose cost grows with the
    /// deliveries stored (done ones included, until pruned).
    ///
    /// [`start`](Self::start) fails with [`ConfigError::InvalidDuration`] when it is zero or
    /// over 100 years.
    pub fn with_stats_interval(self, interval: Duration) -> Self {
        let (mut this, interval) = self.duration(interval, "Workers::with_stats_interval");
        this.settings.stats_interval = interval;
        this
    }

    /// How long done deliveries are kept to answer duplicates before the workers prune them
    /// (default [`DEFAULT_DEDUP_WINDOW`], 7 days; checked every hour). Keep it longer than the
    /// senders' retry windows.
    ///
    /// [`start`](Self::start) fails with [`ConfigError::InvalidDuration`] when it is zero or
    /// over 100 years.
    pub fn with_dedup_window(self, window: Duration) -> Self {
        let (mut this, window) = self.duration(window, "Workers::with_dedup_window");
        this.settings.dedup_window = window;
        this
    }
}

impl<B, S, ResBody> Workers<B, S>
where
    B: InboxBackend,
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: fmt::Display,
{
    /// Starts the workers (the producer, its executors and the completer, and one task
    /// refreshing the gauges, first before anything is claimed, then every 10 s
    /// ([`with_stats_interval`](Self::with_stats_interval)), and pruning old done deliveries)
    /// on the current Tokio runtime. They run until [`WorkersHandle::shutdown`], or until the
    /// runtime stops (dropping the handle leaves them running).
    ///
    /// # Errors
    /// The first mistake an option made ([`ConfigError::InvalidDuration`]).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start(self) -> Result<WorkersHandle, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let (phase, watching) = watch::channel(Phase::Running);
        let shared = Arc::new(Shared {
            backend: self.backend,
            settings: self.settings,
            on_outcome: self.on_outcome,
            name: self.name,
        });
        let renewals = Arc::new(completer::Renewals::default());
        let (outcomes, gathered) = mpsc::channel(completer::QUEUE);
        // The gauges are read once before the first claim, so that they start from the inbox
        // as the workers found it.
        let (refreshed, first_refresh) = tokio::sync::oneshot::channel();
        let produce = producer::produce(
            Arc::clone(&shared),
            self.service,
            watching.clone(),
            outcomes,
            Arc::clone(&renewals),
        );
        let tasks = vec![
            tokio::spawn(async move {
                let _ = first_refresh.await;
                produce.await;
            }),
            tokio::spawn(completer::complete(Arc::clone(&shared), gathered, renewals)),
            // Accepting spans are held for the attempts while workers run in this process.
            tokio::spawn(housekeeping(
                shared,
                watching,
                refreshed,
                crate::observe::WorkersRunning::new(),
            )),
        ];
        Ok(WorkersHandle { phase, tasks })
    }
}

/// What the workers share.
struct Shared<B> {
    backend: Arc<B>,
    settings: Settings,
    on_outcome: Option<OutcomeHook>,
    /// The `inbox` label of the metrics.
    name: InboxName,
}

/// [`Workers::on_outcome`]'s hook.
type OutcomeHook = Arc<dyn Fn(&Delivery, u32, Outcome<'_>) + Send + Sync>;

/// How an attempt ended, as [`Workers::on_outcome`] reports it (the `outcome` of the attempt's
/// span and of the attempts metric).
///
/// When recording the outcome fails with an unknown result (the connection was cut after the
/// database committed, a timeout), or is refused, the completer reads the delivery again and
/// reports what it finds: `Done` when it is done (by this attempt), the outcome it recorded
/// when that took effect, `Stale` when another worker has claimed it since, `Unrecorded` when
/// it is still running under this attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// The delivery is done: the handler answered `2xx` and the worker marked it done, or the
    /// handler's own completion ([`Attempt`]'s `begin_complete`) committed, whatever the
    /// handler did after.
    Done,
    /// The attempt failed: an answer other than `2xx`, an error, a panic, a timeout, or a
    /// completion begun and not committed (dropped, rolled back, its commit failed or was
    /// refused). The delivery is due again after a backoff.
    Retried {
        /// The error recorded as the delivery's last.
        error: &'a str,
    },
    /// The attempt failed and was the last one, or the attempts ran out without an outcome
    /// (the handler did not run again): the delivery is dead-lettered.
    DeadLettered {
        /// The error recorded as the delivery's last.
        error: &'a str,
    },
    /// Shutdown's deadline stopped the handler: the delivery was given back, due now, the
    /// attempt not counted.
    Released,
    /// The delivery was no longer this attempt's: the lease ran out (renewals failing) or was
    /// taken over while the handler ran, which was then stopped; or, when the outcome was
    /// recorded, another worker had claimed the delivery since, or it had been purged or
    /// replayed. Nothing was recorded; the delivery's next attempt reports what happens to it.
    Stale,
    /// The outcome could not be recorded (the backend failed), and the delivery, read again,
    /// is still running under this attempt (or could not be read: then the outcome may have
    /// been recorded after all). A delivery still running is claimed again once its lease
    /// runs out, the attempt counted.
    Unrecorded,
}

impl Outcome<'_> {
    /// The outcome's name in the attempt's span and the attempts metric: `done`, `retried`,
    /// `dead`, `released`, `stale` or `lost` (`Unrecorded`).
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Retried { .. } => "retried",
            Self::DeadLettered { .. } => "dead",
            Self::Released => "released",
            Self::Stale => "stale",
            Self::Unrecorded => "lost",
        }
    }
}

/// Where the workers are in their life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Claim nothing more; let running handlers finish.
    Draining,
    /// Stop the handlers still running and give their deliveries back.
    Stopping,
}

/// Started [`Workers`]: stop them with [`shutdown`](Self::shutdown).
#[must_use = "dropping the handle leaves the workers running until the runtime stops; keep it to shut them down"]
#[derive(Debug)]
pub struct WorkersHandle {
    phase: watch::Sender<Phase>,
    tasks: Vec<JoinHandle<()>>,
}

impl WorkersHandle {
    /// Graceful shutdown: the workers claim nothing more, handlers still running may finish
    /// (their outcome is recorded as usual) for up to `deadline`, then those still running are
    /// stopped (their futures dropped) and their deliveries released: due now, the attempt not
    /// counted, for the next process to take. Returns once every handler has stopped and every
    /// outcome was flushed (the completer's last batch recorded).
    pub async fn shutdown(self, deadline: Duration) {
        let Self { phase, tasks } = self;
        phase.send_replace(Phase::Draining);
        let mut all = pin!(futures_util::future::join_all(tasks));
        if tokio::time::timeout(deadline, all.as_mut()).await.is_err() {
            phase.send_replace(Phase::Stopping);
            all.await;
        }
    }
}

/// Resolves once the workers enter `phase` (or a later one); never when the handle was dropped.
async fn reached(watching: &mut watch::Receiver<Phase>, phase: Phase) {
    let later = |current: &Phase| match phase {
        Phase::Running => true,
        Phase::Draining => *current != Phase::Running,
        Phase::Stopping => *current == Phase::Stopping,
    };
    if watching.wait_for(later).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Refreshes the gauges (the first time before the producer claims anything: `refreshed` is
/// then sent), and prunes done deliveries past the deduplication window.
async fn housekeeping<B: InboxBackend>(
    shared: Arc<Shared<B>>,
    mut watching: watch::Receiver<Phase>,
    refreshed: tokio::sync::oneshot::Sender<()>,
    // Held until the workers stop (an `async fn` keeps its arguments to its end).
    _running: crate::observe::WorkersRunning,
) {
    let mut last_prune: Option<Instant> = None;
    let mut refreshed = Some(refreshed);
    loop {
        match shared.backend.stats().await {
            Ok(stats) => crate::observe::inbox_stats(&shared.name, &stats),
            Err(error) => crate::observe::warn!(%error, "inbox stats unavailable"),
        }
        if let Some(refreshed) = refreshed.take() {
            let _ = refreshed.send(());
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_INTERVAL) {
            last_prune = Some(Instant::now());
            if let Err(error) = shared.backend.prune(shared.settings.dedup_window).await {
                crate::observe::warn!(%error, "inbox could not prune done deliveries");
            }
        }
        let interval = shared.settings.stats_interval;
        if tokio::time::timeout(interval, reached(&mut watching, Phase::Draining))
            .await
            .is_ok()
        {
            return;
        }
    }
}
