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

use super::backend::{Claim, InboxBackend, InboxError, Lease, DEFAULT_DEDUP_WINDOW};
use super::delivery::Delivery;
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
/// | answers anything else, errors, panics, or outlives the handler timeout | pending again, due after a backoff (`backoff · 2^(n-1)`, plus up to half of that at random, at most the maximum backoff); dead-lettered with the error instead after the last attempt |
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
/// Each attempt's outcome is recorded in the backend, in a `tracing` span and the attempts
/// metric, and given to [`on_outcome`](Self::on_outcome)'s hook when one is set.
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
    /// so it only bounds how long a delivery waits after its worker died.
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
    /// and the attempt counts as failed.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// The handler answered `2xx`: the delivery is done.
    Done,
    /// The attempt failed (an answer other than `2xx`, an error, a panic, a timeout): the
    /// delivery is due again after a backoff.
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
    /// The delivery was no longer this attempt's: its lease was lost (the handler was
    /// stopped) or the outcome was refused as a stale owner's. Also a `2xx` after the handler
    /// completed the delivery itself (`begin_complete`).
    Stale,
    /// The outcome could not be recorded (the backend failed): the delivery is claimed again
    /// once its lease runs out.
    Unrecorded,
}

impl Outcome<'_> {
    /// The outcome's name in the attempt's span and the attempts metric: `done`, `retried`,
    /// `dead`, `released`, `stale` or `lost`.
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
        record_outcome(shared, &record.delivery, &lease, &span, Ran::Failed(error)).await;
        return;
    }
    let request = rebuild(
        &record.delivery,
        Attempt {
            backend: Arc::clone(&shared.backend),
            lease: lease.clone(),
            max_attempts: settings.max_attempts.get(),
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
    let ran = supervise(shared, &lease, call, claimed_at, watching).await;
    record_outcome(shared, &record.delivery, &lease, &span, ran).await;
}

/// Runs the handler on its own task, renewing the lease, until it ends, times out, loses its
/// lease, or shutdown's deadline comes.
async fn supervise<B, F>(
    shared: &Shared<B>,
    lease: &Lease,
    call: F,
    claimed_at: Instant,
    watching: &mut watch::Receiver<Phase>,
) -> Ran
where
    B: InboxBackend,
    F: Future<Output = Result<(StatusCode, String), String>> + Send + 'static,
{
    let settings = shared.settings;
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
    // Its own task: it runs while the lease is renewed, and a panic is caught as the task's.
    let mut handler = tokio::spawn(call);
    let mut stopping = pin!(reached(watching, Phase::Stopping));
    loop {
        // Wakes to renew, at the timeout, and when the lease runs out (renewals failing).
        let wake = next_renewal.min(timeout_at).min(stop_by(lease_ends));
        let mut timer = pin!(tokio::time::sleep_until(wake));
        let step = std::future::poll_fn(|cx| {
            if let Poll::Ready(joined) = Pin::new(&mut handler).poll(cx) {
                return Poll::Ready(Step::Joined(joined));
            }
            if stopping.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Step::Stop);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Step::Tick);
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Joined(Ok(Ok((status, text)))) => return Ran::Answered(status, text),
            Step::Joined(Ok(Err(error))) => return Ran::Failed(error),
            Step::Joined(Err(joined)) => {
                return Ran::Failed(match joined.try_into_panic() {
                    Ok(panic) => format!("the handler panicked: {}", panic_message(&*panic)),
                    Err(_) => "the handler was cancelled".to_owned(),
                });
            }
            Step::Stop => return stop_handler(handler, Ran::Stopped).await,
            Step::Tick => {}
        }
        let now = Instant::now();
        if now >= stop_by(lease_ends) {
            crate::observe::warn!("the inbox lease ran out while the handler ran; stopping it");
            return stop_handler(handler, Ran::Lost).await;
        }
        if now >= timeout_at {
            let error = format!(
                "the handler did not finish within {:?}",
                settings.handler_timeout
            );
            return stop_handler(handler, Ran::Failed(error)).await;
        }
        // A renewal that has not answered when the lease ends is a failed one: the delivery
        // may be another worker's from then on, so the handler must not run past it.
        let renewed = tokio::time::timeout_at(
            stop_by(lease_ends),
            shared.backend.renew(lease, settings.lease),
        )
        .await;
        match renewed.unwrap_or(Err(InboxError::Timeout)) {
            Ok(true) => lease_ends = now + settings.lease,
            Ok(false) => {
                crate::observe::warn!(
                    "the inbox lease was taken over while the handler ran; stopping it"
                );
                return stop_handler(handler, Ran::Lost).await;
            }
            // Past the lease's end, the next turn stops the handler, unless it has finished.
            Err(error) => {
                crate::observe::warn!(%error, "the inbox lease could not be renewed");
            }
        }
        next_renewal = Instant::now() + renew_every;
    }
}

/// What woke the supervisor.
enum Step<T> {
    Joined(Result<T, tokio::task::JoinError>),
    Stop,
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
async fn record_outcome<B: InboxBackend>(
    shared: &Shared<B>,
    delivery: &Delivery,
    lease: &Lease,
    span: &Span,
    ran: Ran,
) {
    let settings = shared.settings;
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
    let error = match ran {
        Ran::Answered(status, _) if status.is_success() => {
            return report(match shared.backend.complete(lease).await {
                Ok(true) => Outcome::Done,
                // Completed already (in the handler's own transaction), or taken over.
                Ok(false) => Outcome::Stale,
                Err(error) => {
                    crate::observe::error!(%error, "inbox could not record a completion");
                    Outcome::Unrecorded
                }
            });
        }
        Ran::Answered(status, text) if text.is_empty() => format!("the handler answered {status}"),
        Ran::Answered(status, text) => format!("the handler answered {status}: {text}"),
        Ran::Failed(error) => error,
        Ran::Lost => return report(Outcome::Stale),
        Ran::Stopped => {
            return report(match shared.backend.release(lease).await {
                Ok(true) => Outcome::Released,
                Ok(false) => Outcome::Stale,
                Err(error) => {
                    crate::observe::error!(%error, "inbox could not release a delivery at shutdown");
                    Outcome::Unrecorded
                }
            });
        }
    };
    let (recorded, outcome) = if lease.attempt() >= settings.max_attempts.get() {
        (
            shared.backend.dead_letter(lease, &error).await,
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
            shared.backend.retry(lease, delay, &error).await,
            Outcome::Retried { error: &error },
        )
    };
    report(match recorded {
        Ok(true) => outcome,
        Ok(false) => Outcome::Stale,
        Err(error) => {
            crate::observe::error!(%error, "inbox could not record a failed attempt");
            Outcome::Unrecorded
        }
    });
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
/// record its outcome itself. With the SQL backends, `begin_complete` marks the delivery done
/// in a transaction the handler writes its effects to: both commit together, or neither (the
/// worker's own completion after the handler's `2xx` is then refused, harmlessly).
///
/// An axum handler takes it as `Extension<Attempt<SqliteInbox>>` (with the backend type the
/// workers were started with); it is absent in inline mode.
pub struct Attempt<B> {
    backend: Arc<B>,
    lease: Lease,
    max_attempts: u32,
}

impl<B> Clone for Attempt<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            lease: self.lease.clone(),
            max_attempts: self.max_attempts,
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
}

#[cfg(feature = "sqlite")]
impl Attempt<super::SqliteInbox> {
    /// [`SqliteInbox::begin_complete`](super::SqliteInbox::begin_complete) for this attempt's
    /// lease.
    ///
    /// # Errors
    /// As `begin_complete`.
    pub async fn begin_complete(
        &self,
    ) -> Result<Option<super::Completion<sqlx::Sqlite>>, super::InboxError> {
        self.backend.begin_complete(&self.lease).await
    }
}

#[cfg(feature = "postgres")]
impl Attempt<super::PostgresInbox> {
    /// [`PostgresInbox::begin_complete`](super::PostgresInbox::begin_complete) for this
    /// attempt's lease.
    ///
    /// # Errors
    /// As `begin_complete`.
    pub async fn begin_complete(
        &self,
    ) -> Result<Option<super::Completion<sqlx::Postgres>>, super::InboxError> {
        self.backend.begin_complete(&self.lease).await
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
