//! An executor: runs one claimed delivery's handler on its own task (the handler timeout, a
//! panic caught, shutdown's stop, the lease followed), then hands the outcome to the completer.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_service::Service;

use super::super::backend::{Claim, Finish, InboxBackend, Lease};
use super::super::delivery::{Delivery, DeliveryState};
use super::attempt::{Attempt, Fence, Progress};
use super::backoff::backoff;
use super::completer::{self, Finished, Registration, Renewal, Renewals};
use super::{reached, Outcome, Phase, Shared};
use crate::layer::{FromInbox, VerifiedBody};
use crate::meta::WebhookMeta;
use crate::observe::Span;

/// A handler whose lease could not be renewed is stopped this fraction of the lease before the
/// lease ends.
const LEASE_MARGIN_DIVISOR: u32 = 10;
/// How much of a failed handler's answer is kept as the delivery's last error.
const ERROR_BODY_LIMIT: usize = 512;
/// A completion still open when the handler ended (moved out of it).
const STILL_OPEN: &str = "completion still open when the handler ended: it was not committed";

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

/// What the producer hands an executor with its claim.
pub(super) struct Start<B, S> {
    pub(super) shared: Arc<Shared<B>>,
    pub(super) service: S,
    pub(super) claim: Claim,
    /// When the claim was sent: its lease ends no later than `lease` after it.
    pub(super) claimed_at: Instant,
    pub(super) watching: watch::Receiver<Phase>,
    pub(super) completer: mpsc::Sender<Finished>,
    pub(super) renewals: Arc<Renewals>,
    /// The executor slot, given back once the handler ended.
    pub(super) slot: OwnedSemaphorePermit,
}

/// Runs one claimed delivery's handler, then hands its outcome to the completer (or reports it
/// at once when there is nothing to record).
pub(super) async fn execute<B, S, ResBody>(start: Start<B, S>)
where
    B: InboxBackend,
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: fmt::Display,
{
    let Start {
        shared,
        mut service,
        claim,
        claimed_at,
        mut watching,
        completer,
        renewals,
        slot,
    } = start;
    let settings = shared.settings;
    let Claim { record, lease } = claim;
    // Only a first attempt follows from the accept: the accepting span is taken by it.
    let span = attempt_span(&shared, &record.delivery, &lease, lease.attempt() == 1);
    // Renewed by the completer, with every running delivery's, until the outcome is recorded.
    let mut registration = renewals.register(lease.clone());
    let (ran, progress) = if lease.attempt() > settings.max_attempts.get() {
        // Every attempt allowed was claimed and none recorded an outcome: its worker stopped
        // (the process was killed, maybe by this very handler) or lost the lease. Running it
        // again could take this process down too, forever: dead-letter it instead.
        let error = format!(
            "attempt {} of at most {}: the earlier attempts ended without an outcome (their \
             worker stopped or lost its lease)",
            lease.attempt(),
            settings.max_attempts
        );
        (Ran::Failed(error), Progress::default())
    } else {
        // What the handler does with its own completion, shared with its `Attempt` (kept
        // alive here, so the executor's receiver never sees it closed).
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
            &shared,
            &mut registration,
            &lease,
            call,
            claimed_at,
            &mut watching,
            progress.subscribe(),
        )
        .await;
        let progress = progress.borrow().clone();
        (ran, progress)
    };
    let delivery = record.delivery;
    let accepted_at = record.accepted_at;
    match decide(&shared, &delivery, &lease, ran, &progress) {
        Decided::Report(outcome) => {
            drop(slot);
            drop(registration);
            completer::report(
                &shared,
                &delivery,
                accepted_at,
                lease.attempt(),
                &span,
                outcome,
            );
        }
        Decided::Record(finish) => {
            let finished = Finished {
                delivery,
                accepted_at,
                lease,
                span,
                finish,
                registration: Some(registration),
            };
            // Normally at once; when the completer falls behind, the slot is held meanwhile
            // (backpressure on the claims).
            if let Err(mpsc::error::SendError(finished)) = completer.send(finished).await {
                // The completer has stopped (never before the executors): recorded here.
                drop(slot);
                completer::record_alone(&shared, finished).await;
            }
        }
    }
}

/// The span of the attempt of `lease` on `delivery`; `linked` to the span that accepted the
/// delivery when that was in this process (and held for it), for a first attempt that runs the
/// handler.
pub(super) fn attempt_span<B>(
    shared: &Shared<B>,
    delivery: &Delivery,
    lease: &Lease,
    linked: bool,
) -> Span {
    let facts = delivery.facts();
    crate::observe::inbox_span(
        &crate::observe::AttemptFields {
            inbox: shared.name.as_str(),
            scheme: &facts.scheme,
            id: &facts.id,
            event: facts.event.as_deref(),
            key: lease.key(),
            attempt: lease.attempt(),
        },
        linked,
    )
}

/// What the executor does with an attempt that ended.
enum Decided {
    /// Nothing to record (the handler's completion committed; the lease was lost): report it.
    Report(Outcome<'static>),
    /// Record this outcome (through the completer), then report it.
    Record(Finish),
}

/// What to record of how the attempt ended.
///
/// Once the handler began a completion, only its commit marks the delivery done: a completion
/// committed is `Done` (nothing left to record), one begun and not committed makes the attempt
/// a failed one, whatever the handler answered.
fn decide<B>(
    shared: &Shared<B>,
    delivery: &Delivery,
    lease: &Lease,
    ran: Ran,
    progress: &Progress,
) -> Decided {
    let settings = shared.settings;
    if progress.committed {
        return Decided::Report(Outcome::Done);
    }
    let uncommitted = if progress.open > 0 {
        Some(STILL_OPEN.to_owned())
    } else {
        progress.abandoned.clone()
    };
    let error = match ran {
        Ran::Answered(status, _) if status.is_success() => match uncommitted {
            None => return Decided::Record(Finish::Done),
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
        Ran::Lost => return Decided::Report(Outcome::Stale),
        Ran::Stopped => return Decided::Record(Finish::Release),
    };
    if lease.attempt() >= settings.max_attempts.get() {
        Decided::Record(Finish::Dead { error })
    } else {
        let delay = backoff(
            settings.backoff,
            settings.max_backoff,
            lease.attempt(),
            rand::random::<f64>(),
        );
        Decided::Record(Finish::Retry { delay, error })
    }
}

/// Runs the handler on its own task, following the lease (renewed by the completer), until it
/// ends, times out, loses its lease, or shutdown's deadline comes.
///
/// While a completion the handler began is open, the lease does not bound the handler (the
/// handler timeout does): a completion that locks the delivery (SQL) keeps every other claim
/// off it, and no renewal is sent (it would wait on the lock); one that does not (Redis) is
/// refused at commit if the delivery was taken over, and the lease is still renewed. Once the
/// delivery is done by this attempt (its completion committed), nothing is renewed and the
/// handler runs to its end.
async fn supervise<B, F>(
    shared: &Shared<B>,
    renewal: &mut Registration,
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
    // The handler must be stopped before the lease ends in the backend, where another worker
    // may claim the delivery: it ends no earlier than this process computes (measured from
    // before the claim or renewal was sent), and the margin covers clocks that drift apart
    // (the database server's, or the wall clock `SQLite` uses) and the handler's last poll.
    let margin = settings.lease / LEASE_MARGIN_DIVISOR;
    let stop_by = |lease_ends: Instant| lease_ends.checked_sub(margin).unwrap_or(lease_ends);
    let mut lease_ends = claimed_at + settings.lease;
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
        // A renewal would wait on the completion's lock, or there is nothing to renew.
        let renewing = !done && !locked;
        renewal.renewing(renewing);
        if held && !holding && !done && Instant::now() >= stop_by(lease_ends) {
            // The completion ended without a commit after the lease's end (it held the
            // delivery meanwhile): the delivery is this attempt's only if a renewal says so.
            match confirm(backend, lease, settings.lease).await {
                Confirmed::Renewed(ends) => lease_ends = ends,
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
        // Wakes at the timeout, and when the lease runs out (renewals failing).
        let mut wake = timeout_at;
        if leased {
            wake = wake.min(stop_by(lease_ends));
        }
        let changed = pin!(progress.changed());
        let step = next_step(
            &mut handler,
            stopping.as_mut(),
            changed,
            renewal.answers(),
            wake,
        )
        .await;
        match step {
            Step::Joined(joined) => return ended(joined),
            Step::Stop => return stop_handler(handler, Ran::Stopped).await,
            // A renewal sent before the completion began to hold the delivery, or after it was
            // done, says nothing of this attempt's hold (a refusal may be the lock's); a failed
            // one leaves the lease's end as it was (past it, a later turn stops the handler).
            Step::Progress | Step::Tick | Step::Renewed(Renewal::Failed) => {}
            Step::Renewed(_) if !renewal.is_renewing() => {}
            Step::Renewed(Renewal::Renewed(sent)) => lease_ends = sent + settings.lease,
            Step::Renewed(Renewal::Refused) => {
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
        }
    }
}

/// What wakes the supervisor first: the handler's end, shutdown's deadline, a change in the
/// handler's completion, a renewal's answer, or `wake`.
async fn next_step<T>(
    handler: &mut JoinHandle<T>,
    mut stopping: Pin<&mut impl Future<Output = ()>>,
    mut changed: Pin<&mut impl Future>,
    answers: &mut mpsc::UnboundedReceiver<Renewal>,
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
        if let Poll::Ready(Some(renewed)) = answers.poll_recv(cx) {
            return Poll::Ready(Step::Renewed(renewed));
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
    /// The completer's renewal answered.
    Renewed(Renewal),
    Tick,
}

/// Stops a handler's task, and waits until its future was dropped: its destructors (a
/// transaction's rollback) belong to this run, before the delivery is given to another.
async fn stop_handler<T>(handler: JoinHandle<T>, reason: Ran) -> Ran {
    handler.abort();
    let _ = handler.await;
    reason
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
