//! The completer: one task per [`Workers`](super::Workers) that records the executors' outcomes
//! in batches (one [`InboxBackend::finish`] call per flush, up to [`FLUSH_MAX`] outcomes, the next
//! batch gathering while one flushes), reports each once recorded, and renews the leases of all
//! running deliveries with one [`InboxBackend::renew_all`] call per interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::super::backend::{Finish, InboxBackend, Lease};
use super::super::delivery::{Delivery, DeliveryState, Record};
use super::super::error::InboxError;
use super::{Outcome, Shared};
use crate::observe::Span;

/// The most outcomes one flush records.
pub(super) const FLUSH_MAX: usize = 128;
/// How many outcomes may wait for the completer before the executors wait to hand theirs over
/// (holding their slots: backpressure on the claims).
pub(super) const QUEUE: usize = 8 * FLUSH_MAX;
/// How many times a delivery is read again when recording its outcome failed (the connection
/// that answered may just have been cut), and the pause between two reads.
const READ_AGAIN_TRIES: u32 = 3;
const READ_AGAIN_PAUSE: Duration = Duration::from_millis(100);

/// An attempt's outcome, handed by its executor to the completer to record and report.
pub(super) struct Finished {
    pub(super) delivery: Delivery,
    /// When the delivery was accepted (the backend's clock), for the accept-to-done time.
    pub(super) accepted_at: OffsetDateTime,
    pub(super) lease: Lease,
    pub(super) span: Span,
    pub(super) finish: Finish,
    /// The lease's place among the renewed ones, kept until the outcome is recorded (so that a
    /// flush held up does not let the lease run out after the handler ended); `None` for a
    /// delivery that never ran.
    pub(super) registration: Option<Registration>,
}

/// The completer: flushes the outcomes `gathered` until every executor (and the producer) has
/// dropped its sender, and renews the running deliveries' leases meanwhile.
pub(super) async fn complete<B: InboxBackend>(
    shared: std::sync::Arc<Shared<B>>,
    mut gathered: mpsc::Receiver<Finished>,
    renewals: std::sync::Arc<Renewals>,
) {
    // The renewals on a task of their own: a flush held up (a slow backend, or the outcome
    // hook blocking its thread) must not hold them up, or every running handler would be
    // stopped when its lease runs out. Renewing never ends: stopped once the last outcome was
    // flushed (or when this task is dropped).
    let renewing = AbortOnDrop(tokio::spawn({
        let shared = std::sync::Arc::clone(&shared);
        async move { renew(&shared, &renewals).await }
    }));
    let mut batch = Vec::with_capacity(FLUSH_MAX);
    // What arrived while the previous flush ran, up to `FLUSH_MAX`, or the next to come.
    while gathered.recv_many(&mut batch, FLUSH_MAX).await > 0 {
        flush(&shared, std::mem::take(&mut batch)).await;
    }
    drop(renewing);
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Records `batch` in one `finish` call, then reports each outcome as recorded (or as the
/// delivery, read again, shows it when the call was refused or failed).
async fn flush<B: InboxBackend>(shared: &Shared<B>, batch: Vec<Finished>) {
    let backend = &*shared.backend;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut about = Vec::with_capacity(batch.len());
    // The leases stay renewed until their outcomes are recorded.
    let mut held = Vec::with_capacity(batch.len());
    for Finished {
        delivery,
        accepted_at,
        lease,
        span,
        finish,
        registration,
    } in batch
    {
        outcomes.push((lease, finish));
        about.push((delivery, span, accepted_at));
        held.push(registration);
    }
    let recorded = match backend.finish(&outcomes).await {
        Ok(owned) if owned.len() == outcomes.len() => Ok(owned),
        Ok(owned) => Err(format!(
            "the backend answered {} of {} outcomes",
            owned.len(),
            outcomes.len()
        )),
        Err(error) => Err(error.to_string()),
    };
    match recorded {
        Ok(owned) => {
            drop(held);
            for (((lease, finish), (delivery, span, accepted_at)), owned) in
                outcomes.iter().zip(&about).zip(owned)
            {
                let outcome = settle(backend, lease, Ok(owned), expected(finish)).await;
                report(
                    shared,
                    delivery,
                    *accepted_at,
                    lease.attempt(),
                    span,
                    outcome,
                );
            }
        }
        Err(error) => {
            // Which took effect is unknown: each delivery read again says, and one found still
            // running under its attempt (its outcome not recorded) is recorded on its own.
            crate::observe::error!(
                %error,
                outcomes = outcomes.len(),
                "inbox could not record a batch of outcomes; reading each delivery again"
            );
            for ((lease, finish), (delivery, span, accepted_at)) in outcomes.iter().zip(&about) {
                let outcome = recover(backend, lease, finish).await;
                report(
                    shared,
                    delivery,
                    *accepted_at,
                    lease.attempt(),
                    span,
                    outcome,
                );
            }
            drop(held);
        }
    }
}

/// Records `finished` on its own and reports it: when the completer has stopped.
pub(super) async fn record_alone<B: InboxBackend>(shared: &Shared<B>, finished: Finished) {
    let Finished {
        delivery,
        accepted_at,
        lease,
        span,
        finish,
        registration,
    } = finished;
    let recorded = record_one(&*shared.backend, &lease, &finish).await;
    drop(registration);
    let outcome = settle(&*shared.backend, &lease, recorded, expected(&finish)).await;
    report(
        shared,
        &delivery,
        accepted_at,
        lease.attempt(),
        &span,
        outcome,
    );
}

/// Records one outcome with its single call.
async fn record_one<B: InboxBackend>(
    backend: &B,
    lease: &Lease,
    finish: &Finish,
) -> Result<bool, InboxError> {
    match finish {
        Finish::Done => backend.complete(lease).await,
        Finish::Retry { delay, error } => backend.retry(lease, *delay, error).await,
        Finish::Dead { error } => backend.dead_letter(lease, error).await,
        Finish::Release => backend.release(lease).await,
    }
}

/// What recording `finish` reports when it takes effect.
fn expected(finish: &Finish) -> Outcome<'_> {
    match finish {
        Finish::Done => Outcome::Done,
        Finish::Retry { error, .. } => Outcome::Retried { error },
        Finish::Dead { error } => Outcome::DeadLettered { error },
        Finish::Release => Outcome::Released,
    }
}

/// The outcome of `finish`, for a lease whose batch failed: what reading the delivery again
/// shows, after recording it on its own when it is still running under this attempt.
///
/// Correct whatever the failed batch did: it took effect whole or not at all (one statement or
/// script), and the single call is fenced by the lease's token as the batch was, so it never
/// touches a delivery claimed again since (a released one claimed again may show the same
/// attempt number: its call is refused and it is reported unrecorded). An outcome that cannot
/// be read nor recorded is reported unrecorded: the delivery stays running and is claimed again
/// once its lease runs out (at least once; exactly once with a transactional completion).
/// Bounded: per outcome at most 3 reads, one call and 3 more reads, each bounded by the
/// inbox's timeout (7 timeouts and 0.4 s of pauses; about 35 s at the default 5 s), for at most
/// [`FLUSH_MAX`] outcomes one after the other. A server that refuses connections fails each
/// call at once; one that stalls holds the completer for that long, the executors then wait to
/// hand over their outcomes (at most [`QUEUE`]) and the producer claims nothing meanwhile, while
/// the batch's leases are still renewed until the last of its outcomes is reported.
async fn recover<'e, B: InboxBackend>(
    backend: &B,
    lease: &Lease,
    finish: &'e Finish,
) -> Outcome<'e> {
    let expected = expected(finish);
    match read_again(backend, lease).await {
        Some(Some(record))
            if record.state == DeliveryState::Running && record.attempts == lease.attempt() =>
        {
            let recorded = record_one(backend, lease, finish).await;
            settle(backend, lease, recorded, expected).await
        }
        Some(record) => found(record.as_ref(), lease, expected),
        None => Outcome::Unrecorded,
    }
}

/// Reports an attempt's outcome: its span, the metrics (for a done one, its time since
/// `accepted_at`), the hook.
pub(super) fn report<B>(
    shared: &Shared<B>,
    delivery: &Delivery,
    accepted_at: OffsetDateTime,
    attempt: u32,
    span: &Span,
    outcome: Outcome<'_>,
) {
    crate::observe::inbox_outcome(&shared.name, span, outcome.as_str(), accepted_at);
    if let Some(hook) = &shared.on_outcome {
        // The application's code: its panic must not end the completer.
        let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            hook(delivery, attempt, outcome);
        }));
        if called.is_err() {
            crate::observe::error!("the inbox workers' outcome hook panicked");
        }
    }
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
    match read_again(backend, lease).await {
        Some(record) => found(record.as_ref(), lease, expected),
        None => Outcome::Unrecorded,
    }
}

/// The delivery of `lease` read again (`None` when it could not be, after a few tries).
async fn read_again<B: InboxBackend>(backend: &B, lease: &Lease) -> Option<Option<Record>> {
    let mut tries = 0;
    loop {
        tries += 1;
        match backend.get(lease.key()).await {
            Ok(record) => return Some(record),
            Err(error) if tries >= READ_AGAIN_TRIES => {
                crate::observe::error!(
                    %error,
                    "inbox could not read the delivery again: its outcome is unknown"
                );
                return None;
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

/// What the completer's renewal answered one running delivery.
#[derive(Debug, Clone, Copy)]
pub(super) enum Renewal {
    /// Renewed by the call sent at this instant: the lease ends no earlier than `lease` after.
    Renewed(Instant),
    /// Refused: the delivery no longer runs under this lease.
    Refused,
    /// The call failed: unknown.
    Failed,
}

/// The running deliveries, as the completer renews their leases.
#[derive(Debug, Default)]
pub(super) struct Renewals {
    running: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    next: u64,
    entries: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    lease: Lease,
    /// Whether its lease is renewed (not while a completion locks the delivery, nor once it
    /// is done).
    renewing: bool,
    answers: mpsc::UnboundedSender<Renewal>,
}

impl Renewals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a running delivery's lease, renewed until the registration is dropped.
    pub(super) fn register(self: &Arc<Self>, lease: Lease) -> Registration {
        let (answers, answered) = mpsc::unbounded_channel();
        let mut running = self.lock();
        let id = running.next;
        running.next += 1;
        running.entries.insert(
            id,
            Entry {
                lease,
                renewing: true,
                answers,
            },
        );
        Registration {
            renewals: Arc::clone(self),
            id,
            renewing: true,
            answered,
        }
    }

    /// The leases to renew now, and whose they are.
    fn due(&self) -> (Vec<u64>, Vec<Lease>) {
        self.lock()
            .entries
            .iter()
            .filter(|(_, entry)| entry.renewing)
            .map(|(id, entry)| (*id, entry.lease.clone()))
            .unzip()
    }

    /// Hands each registration still there its answer.
    fn answer(&self, ids: &[u64], answers: impl IntoIterator<Item = Renewal>) {
        let running = self.lock();
        for (id, answer) in ids.iter().zip(answers) {
            if let Some(entry) = running.entries.get(id) {
                let _ = entry.answers.send(answer);
            }
        }
    }
}

/// A running delivery's place among the renewed leases; dropped, its lease is no longer renewed.
pub(super) struct Registration {
    renewals: Arc<Renewals>,
    id: u64,
    renewing: bool,
    answered: mpsc::UnboundedReceiver<Renewal>,
}

impl Registration {
    /// Whether the lease is to be renewed from now on.
    pub(super) fn renewing(&mut self, renewing: bool) {
        if renewing != self.renewing {
            self.renewing = renewing;
            if let Some(entry) = self.renewals.lock().entries.get_mut(&self.id) {
                entry.renewing = renewing;
            }
        }
    }

    /// Whether the lease is renewed.
    pub(super) fn is_renewing(&self) -> bool {
        self.renewing
    }

    /// The renewals' answers.
    pub(super) fn answers(&mut self) -> &mut mpsc::UnboundedReceiver<Renewal> {
        &mut self.answered
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.renewals.lock().entries.remove(&self.id);
    }
}

/// Renews every running delivery's lease (those [`Registration::renewing`]) once per third of
/// the lease, in one `renew_all` call; hands each its answer. Never ends.
async fn renew<B: InboxBackend>(shared: &Shared<B>, renewals: &Renewals) {
    let lease = shared.settings.lease;
    let every = lease / 3;
    let mut next = Instant::now() + every;
    loop {
        tokio::time::sleep_until(next).await;
        next = Instant::now() + every;
        let (ids, leases) = renewals.due();
        if leases.is_empty() {
            continue;
        }
        let sent = Instant::now();
        let answers = match shared.backend.renew_all(&leases, lease).await {
            Ok(owned) if owned.len() == leases.len() => owned
                .into_iter()
                .map(|renewed| {
                    if renewed {
                        Renewal::Renewed(sent)
                    } else {
                        Renewal::Refused
                    }
                })
                .collect(),
            Ok(owned) => {
                crate::observe::error!(
                    answers = owned.len(),
                    leases = leases.len(),
                    "the inbox backend answered a batch of lease renewals with the wrong count"
                );
                vec![Renewal::Failed; leases.len()]
            }
            Err(error) => {
                crate::observe::warn!(
                    %error,
                    leases = leases.len(),
                    "the inbox leases could not be renewed"
                );
                vec![Renewal::Failed; leases.len()]
            }
        };
        renewals.answer(&ids, answers);
    }
}
