//! The workers: claim due deliveries with a lease, hand each to the application's service as the
//! layer would have, and record the outcome.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::num::{NonZeroU32, NonZeroUsize};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_service::Service;

use super::backend::{Claim, InboxBackend, InboxError, InboxFuture, Lease, DEFAULT_DEDUP_WINDOW};
use super::delivery::{Delivery, DeliveryState, Record};
use crate::error::ConfigError;
use crate::idempotency::checked;
use crate::layer::{FromInbox, VerifiedBody};
use crate::meta::WebhookMeta;
use crate::observe::Span;

const DEFAULT_WORKERS: NonZeroUsize = NonZeroUsize::new(4).unwrap();
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
const DEFAULT_MAX_ATTEMPTS: NonZeroU32 = NonZeroU32::new(8).unwrap();
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How often the gauges are refreshed.
const STATS_INTERVAL: Duration = Duration::from_secs(10);
/// How often done deliveries past the deduplication window are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// A handler whose lease could not be renewed is stopped this fraction of the lease before the
/// lease ends.
const LEASE_MARGIN_DIVISOR: u32 = 10;
/// How much of a failed handler's answer is kept as the delivery's last error.
const ERROR_BODY_LIMIT: usize = 512;
/// How many times a delivery is read again when recording its outcome failed (the connection
/// that answered may just have been cut), and the pause between two reads.
const READ_AGAIN_TRIES: u32 = 3;
const READ_AGAIN_PAUSE: Duration = Duration::from_millis(100);
/// A completion begun (`Attempt::begin_complete`) and dropped without a commit: the attempt's
/// error.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
const DROPPED: &str =
    "completion dropped without commit: the handler's writes in it were rolled back";
/// A completion still open when the handler ended (moved out of it).
const STILL_OPEN: &str = "completion still open when the handler ended: it was not committed";

/// Runs the handlers of an inbox's deliveries: `N` workers (tasks) in this process, each
/// claiming one due delivery at a time with a lease and calling the application's service with
/// it. Needs no feature, and a Tokio runtime with its timer.
///
/// The service is the one that serves the route in inline mode: an
/// [`EventRouter`](crate::EventRouter) with its state (`events.with_state(app)`), the whole
/// axum application (the [`WebhookLayer`](crate::WebhookLayer) lets the workers' requests
/// through to its inner service: they were verified when stored; route parameters are matched
/// against the stored path, the full one the request was sent to, nested routers' prefixes
/// included), or any `Service<Request<Full<Bytes>>>` routing the same paths. Each delivery is
/// rebuilt as the layer hands it over inline: `POST` to the stored path, the stored headers (the
/// ones the scheme read, and `Content-Type`), the exact bytes received as the body, and
/// [`WebhookMeta`] and the verified body in the extensions, so the extractors (`Envelope<T>`,
/// `Event<T>`, `Verified<T>`, `WebhookMeta`) work unchanged. An [`Attempt`] in the extensions
/// says which attempt runs, and lets a handler complete its delivery in its own transaction
/// (`begin_complete` on the SQL backends).
///
/// | the handler | the delivery |
/// | --- | --- |
/// | answers `2xx` | done |
/// | committed its own completion (`begin_complete`) | done (by that commit), whatever it answers |
/// | answers anything else, errors, panics, or outlives the handler timeout; or began its own completion and did not commit it (dropped, rolled back, a commit that failed), whatever it answers | pending again, due after a backoff (`backoff · 2^(n-1)`, plus up to half of that at random, at most the maximum backoff); dead-lettered with the error instead after the last attempt |
/// | is still running at shutdown's deadline | given back (released): due now, the attempt not counted |
/// | never ends (its worker was killed, or lost its lease) | claimable again once the lease runs out, the attempt counted; claimed past the last attempt, it is dead-lettered without running the handler again |
///
/// While a handler runs, its lease is renewed every third of the lease. A renewal refused (the
/// lease ran out and another worker claimed the delivery) stops the handler; so do renewals
/// failing until a tenth of the lease before it ends (measured from before the claim or the
/// last renewal was sent, so never later than the backend's end): the delivery may then be
/// claimed by another worker, and the margin keeps the two from running at once while the
/// clocks (the database server's and this process's; the wall clock on `SQLite`) agree to
/// within it. A stale owner's outcome would be refused by the backend anyway. Stopping is
/// cooperative: a handler that blocks its thread without yielding cannot be stopped.
///
/// A handler's own completion changes that (see [`Attempt`]): while it is open, the lease does
/// not stop the handler (the completion keeps other workers off the delivery, or is refused at
/// commit if it was taken over), and no renewal waits on it; once it committed, the delivery is
/// done and the handler runs to its end (a refused renewal that finds the delivery done by this
/// very attempt is no takeover). The handler timeout bounds it in every case.
///
/// Each attempt's outcome is recorded in the backend, in a `tracing` span and the attempts
/// metric, and given to [`on_outcome`](Self::on_outcome)'s hook when one is set. When recording
/// it fails with an unknown result (a connection cut after the database committed), or is
/// refused, the worker reads the delivery again and reports what it finds ([`Outcome`]).
///
/// Defaults: 4 workers, a 30 s lease, 8 attempts, a 1 s first backoff (at most 1 h), a 500 ms
/// poll interval when nothing is due, a 5 min handler timeout, done deliveries pruned after
/// 7 days ([`DEFAULT_DEDUP_WINDOW`]).
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
    on_outcome: Option<OutcomeHook>,
    /// The first mistake, reported by `start`.
    error: Option<ConfigError>,
}

impl<B, S> fmt::Debug for Workers<B, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("settings", &self.settings)
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
            settings: Settings {
                workers: DEFAULT_WORKERS,
                lease: DEFAULT_LEASE,
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                backoff: DEFAULT_BACKOFF,
                max_backoff: DEFAULT_MAX_BACKOFF,
                poll_interval: DEFAULT_POLL_INTERVAL,
                handler_timeout: DEFAULT_HANDLER_TIMEOUT,
                dedup_window: DEFAULT_DEDUP_WINDOW,
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

    /// How many deliveries this process handles at once (default 4): one task each.
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

    /// How long an idle worker waits before it looks for due deliveries again (default
    /// 500 ms): the longest a new or retried delivery waits for an idle worker.
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
    /// outcome). It runs on the worker's task: keep it short and non-blocking.
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
    /// Starts the workers (and one task refreshing the gauges and pruning old done deliveries)
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
        });
        let mut tasks: Vec<JoinHandle<()>> = (0..self.settings.workers.get())
            .map(|_| {
                tokio::spawn(work(
                    Arc::clone(&shared),
                    self.service.clone(),
                    watching.clone(),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(housekeeping(shared, watching)));
        Ok(WorkersHandle { phase, tasks })
    }
}

/// What the workers share.
struct Shared<B> {
    backend: Arc<B>,
    settings: Settings,
    on_outcome: Option<OutcomeHook>,
}

/// [`Workers::on_outcome`]'s hook.
type OutcomeHook = Arc<dyn Fn(&Delivery, u32, Outcome<'_>) + Send + Sync>;

/// How an attempt ended, as [`Workers::on_outcome`] reports it (the `outcome` of the attempt's
/// span and of the attempts metric).
///
/// When recording the outcome fails with an unknown result (the connection was cut after the
/// database committed, a timeout), or is refused, the worker reads the delivery again and
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
    /// counted, for the next process to take. Returns once every worker has stopped.
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

/// One worker: claim, run, record; idle for the poll interval when nothing is due.
async fn work<B, S, ResBody>(
    shared: Arc<Shared<B>>,
    service: S,
    mut watching: watch::Receiver<Phase>,
) where
    B: InboxBackend,
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: fmt::Display,
{
    let settings = shared.settings;
    loop {
        if *watching.borrow() != Phase::Running {
            return;
        }
        let claimed_at = Instant::now();
        match shared.backend.claim(settings.lease, 1).await {
            Ok(claims) if !claims.is_empty() => {
                for claim in claims {
                    attempt(&shared, service.clone(), claim, claimed_at, &mut watching).await;
                }
                continue;
            }
            Ok(_) => {}
            Err(error) => {
                crate::observe::error!(%error, "inbox worker could not claim deliveries; retrying");
            }
        }
        let _ = tokio::time::timeout(
            settings.poll_interval,
            reached(&mut watching, Phase::Draining),
        )
        .await;
    }
}

/// Refreshes the gauges, and prunes done deliveries past the deduplication window.
async fn housekeeping<B: InboxBackend>(
    shared: Arc<Shared<B>>,
    mut watching: watch::Receiver<Phase>,
) {
    let mut last_prune: Option<Instant> = None;
    loop {
        match shared.backend.stats().await {
            Ok(stats) => crate::observe::inbox_stats(stats.depth(), stats.oldest_waiting),
            Err(error) => crate::observe::warn!(%error, "inbox stats unavailable"),
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_INTERVAL) {
            last_prune = Some(Instant::now());
            if let Err(error) = shared.backend.prune(shared.settings.dedup_window).await {
                crate::observe::warn!(%error, "inbox could not prune done deliveries");
            }
        }
        if tokio::time::timeout(STATS_INTERVAL, reached(&mut watching, Phase::Draining))
            .await
            .is_ok()
        {
            return;
        }
    }
}

/// How one attempt's handler ended.
enum Ran {
    /// It answered with this status; for a failure, the start of its answer's body.
    Answered(StatusCode, String),
    /// It failed (an error, a panic, a timeout): the delivery's last error.
    Failed(String),
    /// The lease was lost while it ran: it was stopped, and the delivery is another's.
    Lost,
    /// Shutdown's deadline came: it was stopped.
    Stopped,
}

/// Runs one claimed delivery's handler and records its outcome.
async fn attempt<B, S, ResBody>(
    shared: &Arc<Shared<B>>,
    mut service: S,
    claim: Claim,
    claimed_at: Instant,
    watching: &mut watch::Receiver<Phase>,
) where
    B: InboxBackend,
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: fmt::Display,
{
    let settings = shared.settings;
    let Claim { record, lease } = claim;
    let facts = record.delivery.facts();
    let span = crate::observe::inbox_span(
        &facts.scheme,
        &facts.id,
        facts.event.as_deref(),
        lease.attempt(),
    );
    if lease.attempt() > settings.max_attempts.get() {
        // Every attempt allowed was claimed and none recorded an outcome: its worker stopped
        // (the process was killed, maybe by this very handler) or lost the lease. Running it
        // again could take this process down too, forever: dead-letter it instead.
        let error = format!(
            "attempt {} of at most {}: the earlier attempts ended without an outcome (their \
             worker stopped or lost its lease)",
            lease.attempt(),
            settings.max_attempts
        );
        let ran = Ran::Failed(error);
        record_outcome(
            shared,
            &record.delivery,
            &lease,
            &span,
            ran,
            &Progress::default(),
        )
        .await;
        return;
    }
    // What the handler does with its own completion, shared with its `Attempt` (kept alive
    // here, so the worker's receiver never sees it closed).
    let progress = Arc::new(watch::Sender::new(Progress::default()));
    let request = rebuild(
        &record.delivery,
        Attempt {
            backend: Arc::clone(&shared.backend),
            lease: lease.clone(),
            max_attempts: settings.max_attempts.get(),
            progress: Arc::clone(&progress),
        },
    );
    let call = InSpan {
        span: span.clone(),
        inner: async move {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(|error| format!("the service failed: {}", error.into()))?;
            let response = service
                .call(request)
                .await
                .map_err(|error| format!("the service failed: {}", error.into()))?;
            let status = response.status();
            let text = if status.is_success() {
                String::new()
            } else {
                body_start(response.into_body()).await
            };
            Ok::<_, String>((status, text))
        },
    };
    let ran = supervise(
        shared,
        &lease,
        call,
        claimed_at,
        watching,
        progress.subscribe(),
    )
    .await;
    let progress = progress.borrow().clone();
    record_outcome(shared, &record.delivery, &lease, &span, ran, &progress).await;
}

/// Runs the handler on its own task, renewing the lease, until it ends, times out, loses its
/// lease, or shutdown's deadline comes.
///
/// While a completion the handler began is open, the lease does not bound the handler (the
/// handler timeout does): a completion that locks the delivery (SQL) keeps every other claim
/// off it, and no renewal is sent (it would wait on the lock); one that does not (Redis) is
/// refused at commit if the delivery was taken over, and the lease is still renewed. Once the
/// delivery is done by this attempt (its completion committed), nothing is renewed and the
/// handler runs to its end.
async fn supervise<B, F>(
    shared: &Shared<B>,
    lease: &Lease,
    call: F,
    claimed_at: Instant,
    watching: &mut watch::Receiver<Phase>,
    mut progress: watch::Receiver<Progress>,
) -> Ran
where
    B: InboxBackend,
    F: Future<Output = Result<(StatusCode, String), String>> + Send + 'static,
{
    let settings = shared.settings;
    let backend = &*shared.backend;
    let started = Instant::now();
    let timeout_at = started + settings.handler_timeout;
    let renew_every = settings.lease / 3;
    // The handler must be stopped before the lease ends in the backend, where another worker
    // may claim the delivery: it ends no earlier than this process computes (measured from
    // before the claim or renewal was sent), and the margin covers clocks that drift apart
    // (the database server's, or the wall clock `SQLite` uses) and the handler's last poll.
    let margin = settings.lease / LEASE_MARGIN_DIVISOR;
    let stop_by = |lease_ends: Instant| lease_ends.checked_sub(margin).unwrap_or(lease_ends);
    let mut lease_ends = claimed_at + settings.lease;
    let mut next_renewal = started + renew_every;
    // The renewal in flight, and when it was sent.
    let mut renewal: Option<(Instant, InboxFuture<'_, bool>)> = None;
    // Done by this attempt: its completion committed, or a refused renewal found it so.
    let mut done = false;
    // A completion held the delivery at the last turn.
    let mut held = false;
    // Its own task: it runs while the lease is renewed, and a panic is caught as the task's.
    let mut handler = tokio::spawn(call);
    let mut stopping = pin!(reached(watching, Phase::Stopping));
    loop {
        let (open, fence, committed) = {
            let now = progress.borrow_and_update();
            (now.open > 0, now.fence, now.committed)
        };
        done |= committed;
        let holding = open && !done;
        let locked = holding && fence == Fence::Lock;
        if done || locked {
            // A renewal would wait on the completion's lock, or there is nothing to renew.
            renewal = None;
        }
        if held && !holding && !done && Instant::now() >= stop_by(lease_ends) {
            // The completion ended without a commit after the lease's end (it held the
            // delivery meanwhile): the delivery is this attempt's only if a renewal says so.
            renewal = None;
            match confirm(backend, lease, settings.lease).await {
                Confirmed::Renewed(ends) => {
                    lease_ends = ends;
                    next_renewal = Instant::now() + renew_every;
                }
                Confirmed::Done => done = true,
                Confirmed::Lost => {
                    crate::observe::warn!(
                        "the inbox lease ran out while the handler held its completion, and \
                         could not be renewed once it ended; stopping the handler"
                    );
                    return stop_handler(handler, Ran::Lost).await;
                }
            }
        }
        held = holding;
        // The lease bounds the handler unless a completion holds the delivery or completed it.
        let leased = !done && !holding;
        let renewing = !done && !locked;
        let now = Instant::now();
        if now >= timeout_at {
            let error = format!(
                "the handler did not finish within {:?}",
                settings.handler_timeout
            );
            return stop_handler(handler, Ran::Failed(error)).await;
        }
        if leased && now >= stop_by(lease_ends) {
            crate::observe::warn!("the inbox lease ran out while the handler ran; stopping it");
            return stop_handler(handler, Ran::Lost).await;
        }
        if renewing && renewal.is_none() && now >= next_renewal {
            renewal = Some((now, backend.renew(lease, settings.lease)));
        }
        // Wakes at the timeout, when the lease runs out (renewals failing), and to renew.
        let mut wake = timeout_at;
        if leased {
            wake = wake.min(stop_by(lease_ends));
        }
        if renewing && renewal.is_none() {
            wake = wake.min(next_renewal);
        }
        let changed = pin!(progress.changed());
        match next_step(&mut handler, stopping.as_mut(), changed, &mut renewal, wake).await {
            Step::Joined(joined) => return ended(joined),
            Step::Stop => return stop_handler(handler, Ran::Stopped).await,
            Step::Progress | Step::Tick => {}
            Step::Renewed(sent, Ok(true)) => {
                lease_ends = sent + settings.lease;
                next_renewal = Instant::now() + renew_every;
            }
            Step::Renewed(_, Ok(false)) => {
                // Refused: the delivery is no longer running under this lease. Done by this
                // very attempt (its completion committed, maybe not yet reported) is no
                // takeover: the handler runs on.
                if completed_by(backend, lease).await {
                    done = true;
                } else {
                    crate::observe::warn!(
                        "the inbox lease was taken over while the handler ran; stopping it"
                    );
                    return stop_handler(handler, Ran::Lost).await;
                }
            }
            // Past the lease's end, a later turn stops the handler, unless it has finished.
            Step::Renewed(_, Err(error)) => {
                crate::observe::warn!(%error, "the inbox lease could not be renewed");
                next_renewal = Instant::now() + renew_every;
            }
        }
    }
}

/// What wakes the supervisor first: the handler's end, shutdown's deadline, a change in the
/// handler's completion, the renewal's answer, or `wake`.
async fn next_step<T>(
    handler: &mut JoinHandle<T>,
    mut stopping: Pin<&mut impl Future<Output = ()>>,
    mut changed: Pin<&mut impl Future>,
    renewal: &mut Option<(Instant, InboxFuture<'_, bool>)>,
    wake: Instant,
) -> Step<T> {
    let mut timer = pin!(tokio::time::sleep_until(wake));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(joined) = Pin::new(&mut *handler).poll(cx) {
            return Poll::Ready(Step::Joined(joined));
        }
        if stopping.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Step::Stop);
        }
        if changed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Step::Progress);
        }
        if let Some((sent, renewing)) = renewal.as_mut() {
            if let Poll::Ready(renewed) = renewing.as_mut().poll(cx) {
                let sent = *sent;
                *renewal = None;
                return Poll::Ready(Step::Renewed(sent, renewed));
            }
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Step::Tick);
        }
        Poll::Pending
    })
    .await
}

/// How the handler's task ended.
fn ended(joined: Result<Result<(StatusCode, String), String>, tokio::task::JoinError>) -> Ran {
    match joined {
        Ok(Ok((status, text))) => Ran::Answered(status, text),
        Ok(Err(error)) => Ran::Failed(error),
        Err(joined) => Ran::Failed(match joined.try_into_panic() {
            Ok(panic) => format!("the handler panicked: {}", panic_message(&*panic)),
            Err(_) => "the handler was cancelled".to_owned(),
        }),
    }
}

/// Whether the delivery is still an attempt's, asked with a renewal.
enum Confirmed {
    /// Renewed: the lease now ends then.
    Renewed(Instant),
    /// Done by the attempt itself.
    Done,
    /// Not the attempt's any more, or unknown.
    Lost,
}

/// Renews `lease` for `duration` to learn whether the delivery is still this attempt's.
async fn confirm<B: InboxBackend>(backend: &B, lease: &Lease, duration: Duration) -> Confirmed {
    let sent = Instant::now();
    match backend.renew(lease, duration).await {
        Ok(true) => Confirmed::Renewed(sent + duration),
        Ok(false) if completed_by(backend, lease).await => Confirmed::Done,
        Ok(false) | Err(_) => Confirmed::Lost,
    }
}

/// Whether the delivery of `lease` is done by that very lease's attempt: its attempt count
/// unchanged since the claim (a takeover counts another attempt).
async fn completed_by<B: InboxBackend>(backend: &B, lease: &Lease) -> bool {
    matches!(
        backend.get(lease.key()).await,
        Ok(Some(record)) if record.state == DeliveryState::Done && record.attempts == lease.attempt()
    )
}

/// What woke the supervisor.
enum Step<T> {
    Joined(Result<T, tokio::task::JoinError>),
    Stop,
    /// The handler's completion changed.
    Progress,
    /// The renewal sent at this instant answered.
    Renewed(Instant, Result<bool, InboxError>),
    Tick,
}

/// Stops a handler's task, and waits until its future was dropped: its destructors (a
/// transaction's rollback) belong to this run, before the delivery is given to another.
async fn stop_handler<T>(handler: JoinHandle<T>, reason: Ran) -> Ran {
    handler.abort();
    let _ = handler.await;
    reason
}

/// Records how the attempt ended, and reports it (span, metric, hook).
///
/// Once the handler began a completion, only its commit marks the delivery done: a completion
/// committed is `Done` (nothing left to record), one begun and not committed makes the attempt
/// a failed one, whatever the handler answered.
async fn record_outcome<B: InboxBackend>(
    shared: &Shared<B>,
    delivery: &Delivery,
    lease: &Lease,
    span: &Span,
    ran: Ran,
    progress: &Progress,
) {
    let settings = shared.settings;
    let backend = &*shared.backend;
    let report = |outcome: Outcome<'_>| {
        crate::observe::inbox_outcome(span, outcome.as_str());
        if let Some(hook) = &shared.on_outcome {
            // The application's code: its panic must not end this worker.
            let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                hook(delivery, lease.attempt(), outcome);
            }));
            if called.is_err() {
                crate::observe::error!("the inbox workers' outcome hook panicked");
            }
        }
    };
    if progress.committed {
        return report(Outcome::Done);
    }
    let uncommitted = if progress.open > 0 {
        Some(STILL_OPEN.to_owned())
    } else {
        progress.abandoned.clone()
    };
    let error = match ran {
        Ran::Answered(status, _) if status.is_success() => match uncommitted {
            None => {
                let recorded = backend.complete(lease).await;
                return report(settle(backend, lease, recorded, Outcome::Done).await);
            }
            Some(why) => {
                let facts = delivery.facts();
                crate::observe::warn!(
                    event = facts.event.as_deref().unwrap_or(""),
                    id = facts.id.as_str(),
                    attempt = lease.attempt(),
                    error = %why,
                    "the inbox handler answered 2xx without committing its completion; the \
                     attempt failed"
                );
                why
            }
        },
        Ran::Answered(status, text) if text.is_empty() => format!("the handler answered {status}"),
        Ran::Answered(status, text) => format!("the handler answered {status}: {text}"),
        Ran::Failed(error) => error,
        Ran::Lost => return report(Outcome::Stale),
        Ran::Stopped => {
            let recorded = backend.release(lease).await;
            return report(settle(backend, lease, recorded, Outcome::Released).await);
        }
    };
    let (recorded, outcome) = if lease.attempt() >= settings.max_attempts.get() {
        (
            backend.dead_letter(lease, &error).await,
            Outcome::DeadLettered { error: &error },
        )
    } else {
        let delay = backoff(
            settings.backoff,
            settings.max_backoff,
            lease.attempt(),
            rand::random::<f64>(),
        );
        (
            backend.retry(lease, delay, &error).await,
            Outcome::Retried { error: &error },
        )
    };
    report(settle(backend, lease, recorded, outcome).await);
}

/// The outcome of an attempt whose outcome `expected` was `recorded`: `expected` when it was;
/// otherwise (refused, or failed with an unknown result) what reading the delivery again shows.
async fn settle<'e, B: InboxBackend>(
    backend: &B,
    lease: &Lease,
    recorded: Result<bool, InboxError>,
    expected: Outcome<'e>,
) -> Outcome<'e> {
    match recorded {
        Ok(true) => return expected,
        Ok(false) => {}
        Err(error) => crate::observe::error!(
            %error,
            outcome = expected.as_str(),
            "inbox could not record an attempt's outcome; reading the delivery again"
        ),
    }
    let mut tries = 0;
    loop {
        tries += 1;
        match backend.get(lease.key()).await {
            Ok(record) => return found(record.as_ref(), lease, expected),
            Err(error) if tries >= READ_AGAIN_TRIES => {
                crate::observe::error!(
                    %error,
                    "inbox could not read the delivery again: its outcome is unknown"
                );
                return Outcome::Unrecorded;
            }
            Err(_) => tokio::time::sleep(READ_AGAIN_PAUSE).await,
        }
    }
}

/// What `record` (the delivery read again) says of the attempt of `lease`, whose outcome
/// `expected` was refused or could not be confirmed.
fn found<'e>(record: Option<&Record>, lease: &Lease, expected: Outcome<'e>) -> Outcome<'e> {
    let Some(record) = record else {
        // Purged meanwhile.
        return Outcome::Stale;
    };
    if record.attempts > lease.attempt() {
        // Claimed again since.
        return Outcome::Stale;
    }
    match (record.state, expected) {
        (DeliveryState::Done, _) => Outcome::Done,
        (DeliveryState::Running, _) => Outcome::Unrecorded,
        (DeliveryState::Pending, Outcome::Retried { .. } | Outcome::Released)
        | (DeliveryState::Dead, Outcome::DeadLettered { .. }) => expected,
        _ => Outcome::Stale,
    }
}

/// The delay before the attempt after attempt `attempt` (1 for the first): `first · 2^(attempt-1)`
/// plus `jitter` (a number in `[0, 1)`) times half of that, at most `max`. Each attempt's delay
/// is at least the previous one's, whatever the jitter.
pub(crate) fn backoff(first: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let doubling = 2f64.powi(i32::try_from(attempt.saturating_sub(1).min(62)).unwrap_or(62));
    let base = first.as_secs_f64() * doubling;
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let delay = base * (1.0 + 0.5 * jitter);
    Duration::try_from_secs_f64(delay).map_or(max, |delay| delay.min(max))
}

/// The request the layer would have handed the inner service, rebuilt from the stored delivery.
fn rebuild<B: InboxBackend>(delivery: &Delivery, attempt: Attempt<B>) -> Request<Full<Bytes>> {
    let body = delivery.body().clone();
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = Method::POST;
    // A stored path is what the request had; one that does not parse (never, from the layer)
    // goes to `/`.
    *request.uri_mut() = delivery
        .path()
        .parse::<Uri>()
        .unwrap_or_else(|_| Uri::from_static("/"));
    let headers = request.headers_mut();
    for (name, value) in delivery.headers() {
        headers.append(name.clone(), value.clone());
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let facts = delivery.facts();
    let extensions = request.extensions_mut();
    let content_type = delivery
        .headers()
        .iter()
        .find(|(name, _)| name == header::CONTENT_TYPE)
        .map(|(_, value)| value);
    extensions.insert(VerifiedBody::stored(
        body,
        content_type,
        facts.version.is_some(),
    ));
    extensions.insert(WebhookMeta::from_facts(facts, *delivery.key()));
    extensions.insert(attempt);
    extensions.insert(FromInbox);
    request
}

/// The start of a failed handler's answer, as text, for the delivery's last error.
async fn body_start<B>(body: B) -> String
where
    B: Body,
    B::Error: fmt::Display,
{
    let mut body = pin!(body);
    let mut kept = Vec::new();
    while kept.len() < ERROR_BODY_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(mut data) = frame.into_data() {
                    while data.has_remaining() && kept.len() < ERROR_BODY_LIMIT {
                        let chunk = data.chunk();
                        let take = chunk.len().min(ERROR_BODY_LIMIT - kept.len());
                        kept.extend_from_slice(&chunk[..take]);
                        data.advance(take);
                    }
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

pin_project! {
    /// A future polled inside a span.
    struct InSpan<F> {
        span: Span,
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        this.inner.poll(cx)
    }
}

/// The attempt an inbox worker is running, in the request's extensions of every delivery it
/// hands to the service: which attempt it is, its [`Lease`], and the backend, so a handler can
/// record its outcome itself.
///
/// `begin_complete` (on `Attempt<SqliteInbox>`, `Attempt<PostgresInbox>` and
/// `Attempt<RedisInbox>`) marks the delivery done in a transaction the handler writes its
/// effects to: both commit together, or neither. What the handler may rely on:
///
/// - **Committed** (`commit` returned `Ok`; on Redis `Ok(true)`): the delivery is done with its
///   effects, whatever the handler answers or does after; the handler runs to its end (bounded
///   by the handler timeout, not by the lease), and the attempt is reported
///   [`Outcome::Done`].
/// - **Not committed**: dropped without `commit` (an early return, a `?`), rolled back, a
///   commit that failed or was refused (Postgres: a statement failed in the transaction, even
///   one whose error the handler ignored, aborts it, and `commit` then returns an error rather
///   than report the `ROLLBACK` it would be answered as committed): the effects were not
///   written, so the attempt **failed**, even when the handler answers `2xx`. It is retried after
///   the backoff (dead-lettered after the last attempt), with the reason as its last error, and
///   a warning is logged. Once a completion was begun, the worker never marks the delivery done
///   by itself.
/// - **Long completions**: while a completion is open the lease does not stop the handler (the
///   handler timeout does). On `SQLite` and Postgres the completion holds the delivery (its
///   row lock on Postgres, the write lock on `SQLite`), so no other worker can claim it, and
///   no renewal is sent to wait on it; on Redis the lease is still renewed, and a completion
///   whose delivery was taken over all the same (renewals failing) is refused at commit. Keep
///   completions short all the same: on `SQLite` the write lock holds up every other writer
///   (accepts wait, and are answered `503` past the inbox's timeout), the other running
///   deliveries' lease renewals included: a completion held past the inbox's timeout or about
///   half the lease makes their handlers lose their leases (stopped, retried).
/// - **A commit whose answer was lost** (an error that leaves the result unknown): the attempt
///   counts as failed; recording it is then refused if the commit took effect, and the worker
///   reads the delivery again and reports it done.
///
/// An axum handler takes it as `Extension<Attempt<SqliteInbox>>` (with the backend type the
/// workers were started with); it is absent in inline mode. A completion begun through the
/// backend's own `begin_complete` (with [`lease`](Self::lease)) is not followed by the worker:
/// a `2xx` then makes the worker mark the delivery done unless the completion committed.
pub struct Attempt<B> {
    backend: Arc<B>,
    lease: Lease,
    max_attempts: u32,
    progress: Arc<watch::Sender<Progress>>,
}

impl<B> Clone for Attempt<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            lease: self.lease.clone(),
            max_attempts: self.max_attempts,
            progress: Arc::clone(&self.progress),
        }
    }
}

impl<B> fmt::Debug for Attempt<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("lease", &self.lease)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<B> Attempt<B> {
    /// Which attempt this is: 1 for the first.
    #[must_use]
    pub fn number(&self) -> u32 {
        self.lease.attempt()
    }

    /// Whether this is the last attempt: if it fails, the delivery is dead-lettered.
    #[must_use]
    pub fn is_last(&self) -> bool {
        self.lease.attempt() >= self.max_attempts
    }

    /// The lease the worker holds on the delivery (its key is the delivery's).
    #[must_use]
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The backend the delivery is stored in.
    #[must_use]
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Runs `begin` (the backend's `begin_complete` for this attempt's lease) as this attempt's
    /// completion, which holds the delivery as `fence` says; `track` hands the completion its
    /// [`Tracked`]. A completion not begun (`None`, an error) leaves the attempt failed unless
    /// another one commits.
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
    pub(crate) async fn begin<C>(
        &self,
        fence: Fence,
        begin: impl Future<Output = Result<Option<C>, InboxError>>,
        track: impl FnOnce(C, Tracked) -> C,
    ) -> Result<Option<C>, InboxError> {
        // Open before it is begun: the delivery is locked as soon as it is marked done.
        self.progress.send_modify(|progress| {
            progress.open += 1;
            progress.fence = fence;
        });
        let tracked = Tracked {
            progress: Arc::clone(&self.progress),
            ended: false,
        };
        match begin.await {
            Ok(Some(completion)) => Ok(Some(track(completion, tracked))),
            Ok(None) => {
                tracked.abandoned(
                    "completion not begun: the delivery was no longer this attempt's".to_owned(),
                );
                Ok(None)
            }
            Err(error) => {
                tracked.abandoned(format!("completion not begun: {error}"));
                Err(error)
            }
        }
    }
}

/// What an attempt's handler did with its own completion, shared by its [`Attempt`] (and the
/// completions begun through it) and the worker running it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Completions begun and not ended (normally 0 or 1).
    open: u32,
    /// How the last completion begun holds the delivery.
    fence: Fence,
    /// A completion committed: the delivery is done.
    committed: bool,
    /// Why the last completion that ended was not committed.
    abandoned: Option<String>,
}

/// How an open completion holds its delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(
    not(all(feature = "redis", any(feature = "sqlite", feature = "postgres"))),
    allow(dead_code)
)] // each backend uses its own
pub(crate) enum Fence {
    /// It locks the delivery (Postgres: its row; `SQLite`: the database's write lock): no
    /// other claim can take it, and a renewal would wait on the lock.
    #[default]
    Lock,
    /// It watches the delivery (Redis `WATCH`): renewals go on, and a takeover makes the commit
    /// fail.
    Watch,
}

/// One completion an attempt began, as its worker follows it: open until committed or
/// abandoned; dropped, it was abandoned ("completion dropped without commit").
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
#[derive(Debug)]
pub(crate) struct Tracked {
    progress: Arc<watch::Sender<Progress>>,
    ended: bool,
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
impl Tracked {
    /// The completion committed: the delivery is done.
    pub(crate) fn committed(mut self) {
        self.end(None);
    }

    /// The completion ended without a commit, for this reason.
    pub(crate) fn abandoned(mut self, why: String) {
        self.end(Some(why));
    }

    fn end(&mut self, abandoned: Option<String>) {
        self.ended = true;
        self.progress.send_modify(|progress| {
            progress.open = progress.open.saturating_sub(1);
            match abandoned {
                None => progress.committed = true,
                Some(why) => progress.abandoned = Some(why),
            }
        });
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.ended {
            self.end(Some(DROPPED.to_owned()));
        }
    }
}

#[cfg(feature = "sqlite")]
impl Attempt<super::SqliteInbox> {
    /// [`SqliteInbox::begin_complete`](super::SqliteInbox::begin_complete) for this attempt's
    /// lease, followed by the worker: the delivery is done only if the completion commits (see
    /// [`Attempt`]).
    ///
    /// # Errors
    /// As `begin_complete`.
    pub async fn begin_complete(
        &self,
    ) -> Result<Option<super::Completion<sqlx::Sqlite>>, super::InboxError> {
        self.begin(
            Fence::Lock,
            self.backend.begin_complete(&self.lease),
            super::Completion::tracked,
        )
        .await
    }
}

#[cfg(feature = "postgres")]
impl Attempt<super::PostgresInbox> {
    /// [`PostgresInbox::begin_complete`](super::PostgresInbox::begin_complete) for this
    /// attempt's lease, followed by the worker: the delivery is done only if the completion
    /// commits (see [`Attempt`]).
    ///
    /// # Errors
    /// As `begin_complete`.
    pub async fn begin_complete(
        &self,
    ) -> Result<Option<super::Completion<sqlx::Postgres>>, super::InboxError> {
        self.begin(
            Fence::Lock,
            self.backend.begin_complete(&self.lease),
            super::Completion::tracked,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn backoff_doubles_from_the_first_delay_and_stops_at_the_maximum() {
        let hour = Duration::from_secs(3600);
        let delays: Vec<Duration> = (1..=5).map(|n| backoff(SECOND, hour, n, 0.0)).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16].map(Duration::from_secs));
        assert_eq!(backoff(SECOND, hour, 20, 0.0), hour);
        assert_eq!(backoff(SECOND, hour, u32::MAX, 0.99), hour);
    }

    #[test]
    fn jitter_adds_up_to_half_and_delays_still_grow_whatever_it_draws() {
        let max = Duration::from_secs(3600);
        assert_eq!(backoff(SECOND, max, 1, 0.5), Duration::from_millis(1250));
        assert!(backoff(SECOND, max, 3, 0.999) < Duration::from_secs(6));
        for attempt in 1..10 {
            // The longest draw of one attempt is shorter than the shortest of the next.
            assert!(backoff(SECOND, max, attempt, 1.0) < backoff(SECOND, max, attempt + 1, 0.0));
        }
        // Out-of-range draws are clamped.
        assert_eq!(backoff(SECOND, max, 1, -3.0), SECOND);
        assert_eq!(backoff(SECOND, max, 1, f64::NAN), SECOND);
    }

    #[test]
    fn jitter_spreads_the_retries_of_deliveries_that_failed_together() {
        let max = Duration::from_secs(3600);
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| backoff(SECOND, max, 3, rand::random::<f64>()))
            .collect();
        assert!(delays.len() > 1, "every draw gave the same delay");
        assert!(delays.iter().all(|d| *d >= SECOND * 4 && *d < SECOND * 6));
    }
}
