//! Group-committed accepts, as scenarios run against each backend that batches them
//! (`tests/inbox_sqlite_group.rs`, `tests/inbox_redis.rs`): concurrent accepts share one
//! transaction or script call, each answered after it, with duplicates, the depth limit and
//! failures answered per delivery; and a process killed while batches are in flight
//! acknowledged only what was stored. Included with `#[path]` beside `inbox_common/backend.rs`
//! (as `inbox_backend`).
//!
//! The batches are made deterministic by a [`Gate`]: the backend's writes are held (another
//! connection holds `SQLite`'s write lock; Redis pauses its clients' writes) while the accepts
//! hand their deliveries to the writer (on the test's one-threaded runtime, every accept task
//! has handed its delivery over before the writer task runs), then let go.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use tower_webhook::inbox::{Accepted, Delivery, DeliveryState, InboxBackend, InboxError};

use super::inbox_backend::delivery;

/// What holds a backend's writes while accepts gather, and counts its accept calls.
pub(crate) trait Gate {
    /// Holds the backend's writes (returns once they are held).
    async fn hold(&mut self);
    /// Lets them go.
    async fn let_go(&mut self);
    /// How many accept transactions or script calls the inbox has made so far.
    async fn calls(&mut self) -> u64;
}

/// Accepts `deliveries` at once while `gate` holds the writes, then lets go: the answers, in
/// the deliveries' order.
pub(crate) async fn gated<B>(
    inbox: &B,
    gate: &mut impl Gate,
    deliveries: Vec<Delivery>,
) -> Vec<Result<Accepted, InboxError>>
where
    B: InboxBackend + Clone + 'static,
{
    gate.hold().await;
    let tasks: Vec<_> = deliveries
        .into_iter()
        .map(|delivery| {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.accept(&delivery).await })
        })
        .collect();
    // Every accept task runs (and hands its delivery over) before this one wakes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.let_go().await;
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

pub(crate) async fn stored(inbox: &impl InboxBackend, id: &str) -> bool {
    inbox.get(delivery(id).key()).await.unwrap().is_some()
}

/// 200 concurrent accepts: each answered new and stored, in one or two calls.
pub(crate) async fn many_accepts_take_fewer_calls_than_deliveries<B>(
    inbox: &B,
    gate: &mut impl Gate,
) where
    B: InboxBackend + Clone + 'static,
{
    let before = gate.calls().await;
    let ids: Vec<String> = (0..200).map(|n| format!("evt_group_{n}")).collect();
    let answers = gated(inbox, gate, ids.iter().map(|id| delivery(id)).collect()).await;
    let calls = gate.calls().await - before;
    assert!(
        (1..=2).contains(&calls),
        "200 deliveries took {calls} calls"
    );
    for (id, answer) in ids.iter().zip(&answers) {
        assert!(matches!(answer, Ok(Accepted::New)), "{id}: {answer:?}");
        assert!(stored(inbox, id).await, "{id} acknowledged but not stored");
    }
    assert_eq!(inbox.stats().await.unwrap().pending, 200);
}

/// A key twice or more in one batch: the first is new, the others duplicates.
pub(crate) async fn a_duplicate_within_one_batch_is_a_duplicate<B>(inbox: &B, gate: &mut impl Gate)
where
    B: InboxBackend + Clone + 'static,
{
    let before = gate.calls().await;
    let answers = gated(
        inbox,
        gate,
        vec![
            delivery("evt_twice"),
            delivery("evt_other"),
            delivery("evt_twice"),
            delivery("evt_twice"),
        ],
    )
    .await;
    assert_eq!(
        gate.calls().await - before,
        1,
        "the four were not one batch"
    );
    let answers: Vec<Accepted> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        answers,
        [
            Accepted::New,
            Accepted::New,
            Accepted::Duplicate(DeliveryState::Pending),
            Accepted::Duplicate(DeliveryState::Pending),
        ]
    );
    assert_eq!(inbox.stats().await.unwrap().pending, 2);
}

/// An inbox opened with a depth limit of 10 (`InboxOptions::with_max_depth`), with 4 deliveries stored takes 6 of a burst of 30 (the
/// first six, in order) and refuses 24 as full, in one batch; a stored key and a key of the
/// batch itself are duplicates, not refused, even when full.
pub(crate) async fn the_depth_limit_holds_exactly_within_one_batch<B>(
    inbox: &B,
    gate: &mut impl Gate,
) where
    B: InboxBackend + Clone + 'static,
{
    for n in 0..4 {
        let id = format!("evt_before_{n}");
        assert_eq!(inbox.accept(&delivery(&id)).await.unwrap(), Accepted::New);
    }
    let before = gate.calls().await;
    let mut deliveries: Vec<Delivery> = (0..30)
        .map(|n| delivery(&format!("evt_burst_{n}")))
        .collect();
    deliveries.push(delivery("evt_before_0"));
    deliveries.push(delivery("evt_burst_0"));
    let answers = gated(inbox, gate, deliveries).await;
    assert_eq!(
        gate.calls().await - before,
        1,
        "the burst was not one batch"
    );
    let new = answers
        .iter()
        .filter(|answer| matches!(answer, Ok(Accepted::New)))
        .count();
    let full = answers
        .iter()
        .filter(|answer| matches!(answer, Err(InboxError::Full)))
        .count();
    assert_eq!((new, full), (6, 24), "{answers:?}");
    for (n, answer) in answers.iter().take(30).enumerate() {
        assert_eq!(
            matches!(answer, Ok(Accepted::New)),
            n < 6,
            "{n}: {answer:?}"
        );
        assert_eq!(stored(inbox, &format!("evt_burst_{n}")).await, n < 6);
    }
    for answer in &answers[30..] {
        assert!(
            matches!(answer, Ok(Accepted::Duplicate(DeliveryState::Pending))),
            "{answer:?}"
        );
    }
    assert_eq!(inbox.stats().await.unwrap().depth(), 10);
}

/// The event id of the delivery that the caller made fail its backend's write (before this
/// scenario runs), so that the batch holding it fails.
pub(crate) const POISON: &str = "evt_poison";

/// A batch holding the [`POISON`]ed delivery: every delivery in it is answered an error, none
/// is stored, and each is accepted when sent again.
pub(crate) async fn a_failed_batch_answers_every_delivery_an_error_and_stores_nothing<B>(
    inbox: &B,
    gate: &mut impl Gate,
) where
    B: InboxBackend + Clone + 'static,
{
    let before = gate.calls().await;
    let mut ids: Vec<String> = (0..20).map(|n| format!("evt_batch_{n}")).collect();
    ids.insert(10, POISON.to_owned());
    let answers = gated(inbox, gate, ids.iter().map(|id| delivery(id)).collect()).await;
    for (id, answer) in ids.iter().zip(&answers) {
        assert!(
            matches!(answer, Err(InboxError::Backend(_))),
            "{id}: {answer:?}"
        );
    }
    assert_eq!(
        gate.calls().await,
        before,
        "a failed batch counted as a call"
    );
    for id in ids.iter().filter(|id| *id != POISON) {
        assert!(
            !stored(inbox, id).await,
            "{id} answered an error but stored"
        );
    }
    assert_eq!(inbox.stats().await.unwrap().depth(), 0);
    for id in ids.iter().filter(|id| *id != POISON) {
        assert_eq!(inbox.accept(&delivery(id)).await.unwrap(), Accepted::New);
    }
}

/// The child of [`a_kill_during_a_group_commit_loses_no_acknowledged_delivery`]: 64 tasks accept
/// deliveries of `round` as fast as they can, each printing `ack <id>` once its delivery is
/// acknowledged, until the process is killed.
pub(crate) async fn accept_until_killed<B>(inbox: B, round: &str)
where
    B: InboxBackend + Clone + 'static,
{
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let inbox = inbox.clone();
            let round = round.to_owned();
            tokio::spawn(async move {
                for n in 0.. {
                    let id = format!("evt_{round}_{task}_{n}");
                    if let Ok(Accepted::New) = inbox.accept(&delivery(&id)).await {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {id}").unwrap();
                        out.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// SIGKILL while group commits are in flight, three times: runs this test binary's `child`
/// test (which calls [`accept_until_killed`]) with `env` set to `settings|<round>`, and kills it
/// after a few hundred acknowledgements. Answers every id the children acknowledged (each
/// once); the caller checks that each is stored.
pub(crate) fn acknowledged_over_three_kills(child: &str, env: &str, settings: &str) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([child, "--exact", "--ignored", "--nocapture"])
            .env(env, format!("{settings}|{round}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        // Killed after a few hundred acknowledgements, mid-stream.
        let kill_after = 100 + usize::try_from(rand::random::<u64>() % 300).unwrap();
        let mut seen = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        for line in lines.by_ref() {
            if let Some(id) = line.unwrap().strip_prefix("ack ") {
                acknowledged.push(id.to_owned());
                seen += 1;
            }
            if seen >= kill_after || std::time::Instant::now() > deadline {
                break;
            }
        }
        assert!(seen > 0, "round {round}: the child acknowledged nothing");
        process.kill().unwrap(); // SIGKILL
        process.wait().unwrap();
        // What the child printed before it died.
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("ack ") {
                acknowledged.push(id.to_owned());
            }
        }
    }
    let unique: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(unique.len(), acknowledged.len(), "an id acknowledged twice");
    acknowledged
}

/// Every id in `acknowledged` is stored, pending (no workers ran).
pub(crate) async fn every_acknowledged_delivery_is_stored(
    inbox: &impl InboxBackend,
    acknowledged: &[String],
) {
    for id in acknowledged {
        assert!(stored(inbox, id).await, "{id} acknowledged but not stored");
    }
    let stats = inbox.stats().await.unwrap();
    assert!(stats.pending >= acknowledged.len() as u64);
    eprintln!(
        "{} acknowledged over 3 kills, {} stored",
        acknowledged.len(),
        stats.pending
    );
}
