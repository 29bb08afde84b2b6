//! What a handler may rely on when it completes its delivery itself (`Attempt::begin_complete`),
//! as scenarios run against each backend: its effect (a row, or a Redis hash field) is written
//! in the completion, and the delivery is done exactly when the effect is committed, whatever the
//! handler answers; a completion held open longer than the lease, or work after the commit, is
//! not stopped. Each backend's test file implements [`Transactional`].

use std::collections::HashMap;
use std::future::Future;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use tower_webhook::inbox::{
    Attempt, DeliveryState, InboxBackend, InboxError, Outcome, Record, Workers,
};
use tower_webhook::{EventRouter, WebhookMeta};

use super::{delivery, wait_for};

/// A backend's completion, as the scenarios drive it: an effect per event, written in the
/// completion.
pub(crate) trait Transactional: InboxBackend + Clone {
    /// What `Attempt::begin_complete` gives.
    type Completion: Send + 'static;

    /// Creates the effect store (a table, ...) in a fresh inbox.
    fn prepare(&self) -> impl Future<Output = ()> + Send;

    /// `Attempt::begin_complete`.
    fn begin(
        attempt: &Attempt<Self>,
    ) -> impl Future<Output = Result<Option<Self::Completion>, InboxError>> + Send;

    /// Writes event `id`'s effect in the completion (an insert; the key is the event id).
    fn write<'a>(
        &'a self,
        completion: &'a mut Self::Completion,
        id: &'a str,
    ) -> impl Future<Output = ()> + Send + 'a;

    /// Runs a statement that fails in the completion, and ignores its error: the "ignore a
    /// duplicate" pattern (the same insert again).
    fn fail<'a>(
        &'a self,
        completion: &'a mut Self::Completion,
        id: &'a str,
    ) -> impl Future<Output = ()> + Send + 'a;

    /// Commits; `true` when commit said it committed.
    fn commit(completion: Self::Completion) -> impl Future<Output = bool> + Send;

    /// The effects committed: one event id per effect.
    fn effects(&self) -> impl Future<Output = Vec<String>> + Send;
}

/// What the handler does with its completion at one attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Plan {
    /// Write, commit.
    Commit,
    /// Write, run a statement that fails (error ignored), commit.
    FailInside,
    /// Write, then drop the completion.
    Drop,
    /// Write, hold the completion open this long, commit.
    Hold(Duration),
    /// Write, commit, then go on working this long.
    CommitThenWork(Duration),
    /// Work this long, then begin the completion, write, commit.
    WorkThenCommit(Duration),
    /// Work this long, then begin the completion, write, hold it open that long, commit.
    WorkThenHold(Duration, Duration),
}

/// One outcome reported by the hook: event id, attempt, outcome, error.
pub(crate) type Reported = (String, u32, &'static str, Option<String>);

/// The transactional handler's plans, and what happened.
#[derive(Clone, Default)]
pub(crate) struct Ledger {
    /// By event id and attempt; `Commit` when absent.
    plans: Arc<Mutex<HashMap<(String, u32), Plan>>>,
    /// What each commit said: event id, attempt, committed.
    pub(crate) commits: Arc<Mutex<Vec<(String, u32, bool)>>>,
    /// The handlers that ran to their end: event id, attempt.
    pub(crate) ended: Arc<Mutex<Vec<(String, u32)>>>,
    /// What the outcome hook reported.
    pub(crate) reported: Arc<Mutex<Vec<Reported>>>,
    /// Called just before each commit.
    before_commit: Arc<Mutex<Option<BeforeCommit>>>,
}

/// [`Ledger::before_commit`]'s call.
type BeforeCommit = Arc<dyn Fn() + Send + Sync>;

impl Ledger {
    pub(crate) fn plan(&self, id: &str, attempt: u32, plan: Plan) {
        self.plans
            .lock()
            .unwrap()
            .insert((id.to_owned(), attempt), plan);
    }

    /// Calls `call` just before each commit.
    pub(crate) fn before_commit(&self, call: impl Fn() + Send + Sync + 'static) {
        *self.before_commit.lock().unwrap() = Some(Arc::new(call));
    }

    fn plan_of(&self, id: &str, attempt: u32) -> Plan {
        let plans = self.plans.lock().unwrap();
        plans
            .get(&(id.to_owned(), attempt))
            .copied()
            .unwrap_or(Plan::Commit)
    }

    pub(crate) fn reported_of(&self, id: &str) -> Vec<(u32, &'static str, Option<String>)> {
        let reported = self.reported.lock().unwrap();
        reported
            .iter()
            .filter(|(seen, ..)| seen == id)
            .map(|(_, attempt, outcome, error)| (*attempt, *outcome, error.clone()))
            .collect()
    }

    pub(crate) fn commits_of(&self, id: &str) -> Vec<(u32, bool)> {
        let commits = self.commits.lock().unwrap();
        commits
            .iter()
            .filter(|(seen, ..)| seen == id)
            .map(|(_, attempt, ok)| (*attempt, *ok))
            .collect()
    }

    pub(crate) fn ended_of(&self, id: &str) -> Vec<u32> {
        let ended = self.ended.lock().unwrap();
        ended
            .iter()
            .filter(|(seen, _)| seen == id)
            .map(|(_, attempt)| *attempt)
            .collect()
    }

    /// Waits (at most 20 s) until the hook reported `outcome` for `id`.
    pub(crate) async fn wait_reported(&self, id: &str, outcome: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !self.reported_of(id).iter().any(|(_, o, _)| *o == outcome) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id}: no {outcome} reported: {:?}",
                self.reported_of(id)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Two workers running [`transactional`], reporting to this ledger: short backoff and poll
    /// interval, 3 attempts.
    pub(crate) fn workers<B: Transactional>(&self, inbox: &B) -> Workers<B, LedgerService> {
        use axum::handler::Handler;
        let service = EventRouter::new()
            .fallback(transactional::<B>)
            .with_state(self.clone());
        let reported = Arc::clone(&self.reported);
        Workers::new(inbox.clone(), service)
            .with_workers(NonZeroUsize::new(2).unwrap())
            .with_backoff(Duration::from_millis(20))
            .with_poll_interval(Duration::from_millis(20))
            .with_max_attempts(NonZeroU32::new(3).unwrap())
            .on_outcome(move |delivery, attempt, outcome| {
                let error = match outcome {
                    Outcome::Retried { error } | Outcome::DeadLettered { error } => {
                        Some(error.to_owned())
                    }
                    _ => None,
                };
                reported.lock().unwrap().push((
                    delivery.facts().id.clone(),
                    attempt,
                    outcome.as_str(),
                    error,
                ));
            })
    }
}

/// The service the workers call: [`transactional`] for every event, with the ledger.
pub(crate) type LedgerService = axum::handler::HandlerService<EventRouter<Ledger>, (), Ledger>;

/// The handler: begins its completion, writes its effect, then follows its plan; answers `200`
/// whatever happened (the worst case: a handler that ignores its errors).
pub(crate) async fn transactional<B: Transactional>(
    State(ledger): State<Ledger>,
    meta: WebhookMeta,
    Extension(attempt): Extension<Attempt<B>>,
) -> StatusCode {
    let id = meta.id().to_owned();
    let number = attempt.number();
    if let Plan::WorkThenCommit(duration) | Plan::WorkThenHold(duration, _) =
        ledger.plan_of(&id, number)
    {
        tokio::time::sleep(duration).await;
    }
    let Ok(Some(mut completion)) = B::begin(&attempt).await else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    let inbox = attempt.backend();
    inbox.write(&mut completion, &id).await;
    let commit = |completion| {
        let ledger = ledger.clone();
        let id = id.clone();
        async move {
            let before = ledger.before_commit.lock().unwrap().clone();
            if let Some(before) = before {
                before();
            }
            let committed = B::commit(completion).await;
            ledger.commits.lock().unwrap().push((id, number, committed));
        }
    };
    match ledger.plan_of(&id, number) {
        Plan::Commit | Plan::WorkThenCommit(_) => commit(completion).await,
        Plan::FailInside => {
            inbox.fail(&mut completion, &id).await;
            commit(completion).await;
        }
        Plan::Drop => drop(completion),
        Plan::Hold(duration) | Plan::WorkThenHold(_, duration) => {
            tokio::time::sleep(duration).await;
            commit(completion).await;
        }
        Plan::CommitThenWork(duration) => {
            commit(completion).await;
            tokio::time::sleep(duration).await;
        }
    }
    ledger.ended.lock().unwrap().push((id, number));
    StatusCode::OK
}

/// Runs event `id` through [`Ledger::workers`] (with `lease` when given) until the hook reported
/// it done; returns its record.
async fn run_until_done<B: Transactional>(
    inbox: &B,
    ledger: &Ledger,
    id: &str,
    lease: Option<Duration>,
) -> Record {
    inbox.prepare().await;
    let stored = delivery(id);
    inbox.accept(&stored).await.unwrap();
    let mut workers = ledger.workers(inbox);
    if let Some(lease) = lease {
        workers = workers.with_lease(lease);
    }
    let running = workers.start().unwrap();
    let record = wait_for(inbox, stored.key(), DeliveryState::Done).await;
    ledger.wait_reported(id, "done").await;
    running.shutdown(Duration::from_secs(5)).await;
    record
}

/// A handler runs a statement that fails inside its completion and ignores the error (on
/// Postgres the transaction is then aborted, and `COMMIT` is answered `ROLLBACK`), ignores
/// commit's answer too, and answers `200`: a commit is reported only when the effect was
/// committed, and the delivery is done only with its effect.
pub(crate) async fn a_completion_whose_transaction_failed_is_never_reported_committed<
    B: Transactional,
>(
    inbox: B,
) {
    let ledger = Ledger::default();
    ledger.plan("evt_aborted", 1, Plan::FailInside);
    let record = run_until_done(&inbox, &ledger, "evt_aborted", None).await;

    assert_eq!(
        inbox.effects().await,
        ["evt_aborted"],
        "done without its effect, or the effect twice"
    );
    let commits = ledger.commits_of("evt_aborted");
    // The attempt whose commit said "committed" is the one that completed the delivery.
    if let Some((attempt, _)) = commits.iter().find(|(_, committed)| *committed) {
        assert_eq!(record.attempts, *attempt, "{commits:?}");
    }
    let reported = ledger.reported_of("evt_aborted");
    let (last, earlier) = reported.split_last().unwrap();
    assert_eq!((last.0, last.1), (record.attempts, "done"), "{reported:?}");
    assert!(
        earlier.iter().all(|(_, outcome, _)| *outcome == "retried"),
        "{reported:?}"
    );
}

/// A handler writes its effect in its completion, drops it without a commit (an early return,
/// a `?`), and answers `200`: the effect was rolled back, so the attempt failed and is retried;
/// the next one commits.
pub(crate) async fn a_completion_dropped_without_commit_is_a_failed_attempt_despite_a_2xx<
    B: Transactional,
>(
    inbox: B,
) {
    let ledger = Ledger::default();
    ledger.plan("evt_dropped", 1, Plan::Drop);
    let record = run_until_done(&inbox, &ledger, "evt_dropped", None).await;

    assert_eq!(inbox.effects().await, ["evt_dropped"]);
    assert_eq!(record.attempts, 2, "{record:?}");
    let reported = ledger.reported_of("evt_dropped");
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert_eq!((reported[0].0, reported[0].1), (1, "retried"));
    let error = reported[0].2.clone().unwrap();
    assert!(
        error.contains("completion dropped without commit"),
        "{error}"
    );
    assert_eq!((reported[1].0, reported[1].1), (2, "done"));
}

/// A handler holds its completion open three times as long as the lease (1 s), then commits:
/// it is not stopped (the handler timeout bounds it, not the lease), no other worker takes the
/// delivery meanwhile, and it is processed once.
pub(crate) async fn a_completion_held_open_past_the_lease_commits_once<B: Transactional>(inbox: B) {
    let ledger = Ledger::default();
    ledger.plan("evt_held", 1, Plan::Hold(Duration::from_secs(3)));
    let record = run_until_done(&inbox, &ledger, "evt_held", Some(Duration::from_secs(1))).await;

    assert_eq!(record.attempts, 1, "{record:?}");
    assert_eq!(inbox.effects().await, ["evt_held"]);
    assert_eq!(ledger.commits_of("evt_held"), [(1, true)]);
    assert_eq!(ledger.ended_of("evt_held"), [1]);
    let reported = ledger.reported_of("evt_held");
    assert_eq!(reported, [(1, "done", None)]);
}

/// A handler commits its completion, then goes on working past several renewals (lease 1 s):
/// the renewal that finds the delivery done (by this very attempt) is no takeover, the handler
/// runs to its end, and the hook reports `done`.
pub(crate) async fn a_handler_that_committed_runs_to_its_end_and_is_reported_done<
    B: Transactional,
>(
    inbox: B,
) {
    let ledger = Ledger::default();
    ledger.plan(
        "evt_after",
        1,
        Plan::CommitThenWork(Duration::from_millis(2500)),
    );
    let record = run_until_done(&inbox, &ledger, "evt_after", Some(Duration::from_secs(1))).await;
    // The hook runs once the handler ended.
    assert_eq!(
        ledger.ended_of("evt_after"),
        [1],
        "stopped after its commit"
    );
    assert_eq!(record.attempts, 1);
    assert_eq!(inbox.effects().await, ["evt_after"]);
    assert_eq!(ledger.reported_of("evt_after"), [(1, "done", None)]);
}

/// One handler holds its completion open three times as long as the lease (1 s) while another
/// delivery's handler works as long, then commits: the open completion is no reason to stop
/// the other handler (its lease is renewed meanwhile); both are processed once. Not on
/// `SQLite`, whose completion holds the database's write lock, the other deliveries' renewals
/// included (there the other handler is stopped, as `SqliteInbox::begin_complete` says).
pub(crate) async fn a_completion_held_open_does_not_stop_another_delivery_s_handler<
    B: Transactional,
>(
    inbox: B,
) {
    let ledger = Ledger::default();
    // Both claimed before the completion is begun.
    ledger.plan(
        "evt_holder",
        1,
        Plan::WorkThenHold(Duration::from_millis(200), Duration::from_secs(3)),
    );
    ledger.plan(
        "evt_other",
        1,
        Plan::WorkThenCommit(Duration::from_millis(2500)),
    );
    inbox.prepare().await;
    let (holder, other) = (delivery("evt_holder"), delivery("evt_other"));
    inbox.accept(&holder).await.unwrap();
    inbox.accept(&other).await.unwrap();
    let running = ledger
        .workers(&inbox)
        .with_lease(Duration::from_secs(1))
        .start()
        .unwrap();
    wait_for(&inbox, holder.key(), DeliveryState::Done).await;
    wait_for(&inbox, other.key(), DeliveryState::Done).await;
    ledger.wait_reported("evt_holder", "done").await;
    ledger.wait_reported("evt_other", "done").await;
    running.shutdown(Duration::from_secs(5)).await;

    assert_eq!(ledger.reported_of("evt_holder"), [(1, "done", None)]);
    assert_eq!(
        ledger.reported_of("evt_other"),
        [(1, "done", None)],
        "the other handler was stopped while the completion was open"
    );
    assert_eq!(ledger.ended_of("evt_other"), [1]);
    let mut effects = inbox.effects().await;
    effects.sort();
    assert_eq!(effects, ["evt_holder", "evt_other"]);
}

/// A handler's commit is carried out by the server, and its connection cut before the answer
/// (`proxy`, between `inbox` and its server, armed with `marker`: what the commit sends,
/// `COMMIT` on Postgres, `EXEC` on Redis). `commit` reports an error, so the attempt counts as
/// failed; recording that is refused (the delivery is done), and the worker, reading the
/// delivery again, reports it done. The effect is there once, and the handler does not run
/// again.
pub(crate) async fn a_commit_whose_answer_was_lost_is_reported_done<B: Transactional>(
    inbox: B,
    proxy: Arc<super::proxy::Proxy>,
    marker: &'static [u8],
) {
    let ledger = Ledger::default();
    let armer = Arc::clone(&proxy);
    ledger.before_commit(move || armer.arm(marker));
    let record = run_until_done(&inbox, &ledger, "evt_lost_commit", None).await;

    assert_eq!(proxy.cuts(), 1, "the commit's connection was not cut");
    assert_eq!(ledger.commits_of("evt_lost_commit"), [(1, false)]);
    assert_eq!(record.attempts, 1, "{record:?}");
    assert_eq!(inbox.effects().await, ["evt_lost_commit"]);
    assert_eq!(ledger.ended_of("evt_lost_commit"), [1]);
    assert_eq!(ledger.reported_of("evt_lost_commit"), [(1, "done", None)]);
}

/// Every completion scenario, each in a fresh inbox from `fresh`.
pub(crate) async fn every_completion_scenario<B, F, Fut>(fresh: F)
where
    B: Transactional,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    a_completion_whose_transaction_failed_is_never_reported_committed(fresh().await).await;
    a_completion_dropped_without_commit_is_a_failed_attempt_despite_a_2xx(fresh().await).await;
    a_completion_held_open_past_the_lease_commits_once(fresh().await).await;
    a_handler_that_committed_runs_to_its_end_and_is_reported_done(fresh().await).await;
    a_completion_held_open_does_not_stop_another_delivery_s_handler(fresh().await).await;
}
