//! The group commit of accepts, as scenarios each backend runs (`tests/inbox_sqlite_group.rs`,
//! `tests/inbox_postgres_group.rs`, `tests/inbox_redis.rs`): concurrent accepts share one
//! transaction or script call, each answered after it, with duplicates, the depth limit and
//! failures answered per delivery; and a process killed while batches are written
//! acknowledged only what was stored. Included with `#[path]` beside `inbox_common/backend.rs`
//! (as `inbox_backend`).
//!
//! The batches are made deterministic by a gate ([`Harness::gate`]): the backend's writes are
//! held (another `SQLite` connection holds the write lock; a `PostgreSQL` transaction holds
//! `LOCK TABLE ... IN SHARE MODE`, which inserts wait for; Redis pauses its clients' writes,
//! `CLIENT PAUSE ... WRITE`) while the accepts hand their deliveries to the writer (on the
//! test's one-threaded runtime, every accept task has handed its delivery over before the
//! writer task runs), then let go.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use tower_webhook::inbox::{
    Accepted, Delivery, DeliveryState, InboxBackend, InboxError, InboxOptions,
};

use crate::inbox_backend::delivery;

/// The inbox's timeout in these tests: long, so that a busy machine times nothing out.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// The event id [`Harness::poison`] makes an insert fail for.
pub(crate) const POISON: &str = "evt_poison";

/// A backend whose accepts are group-committed, and what the scenarios need of its database.
pub(crate) trait Harness {
    /// The inbox.
    type Inbox: InboxBackend + Clone + Send + Sync + 'static;
    /// What holds the writer's next transaction or script call back until released.
    type Gate;
    /// Whether a delivery of event [`POISON`] can be read back with `get` once its batch
    /// failed (on Redis its key holds a string, which `get` fails on).
    const POISON_READABLE: bool;
    /// An inbox on the harness's database, with [`TIMEOUT`].
    async fn open(&self, options: InboxOptions) -> Self::Inbox;
    /// Holds the backend's writes (returns once they are held).
    async fn gate(&self, inbox: &Self::Inbox) -> Self::Gate;
    /// Lets the writer go.
    async fn release(gate: Self::Gate);
    /// How many accept transactions or script calls the backend has committed so far (an
    /// inbox's counter, or the server's own count; compared before and after).
    async fn commits(&self, inbox: &Self::Inbox) -> u64;
    /// Makes the write of a delivery of event [`POISON`] fail, and so its batch's (an
    /// application's trigger; on Redis, its key holding a string).
    async fn poison(&self, inbox: &Self::Inbox);
    /// The depth as stored (the SQL depth counter; Redis's pending and running indexes).
    async fn depth_counter(&self, inbox: &Self::Inbox) -> i64;
}

/// Accepts `deliveries` at once while `gate` holds the writer back, then lets go: the answers,
/// in the deliveries' order.
async fn gated<H: Harness>(
    inbox: &H::Inbox,
    gate: H::Gate,
    deliveries: Vec<Delivery>,
) -> Vec<Result<Accepted, InboxError>> {
    let tasks: Vec<_> = deliveries
        .into_iter()
        .map(|delivery| {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.accept(&delivery).await })
        })
        .collect();
    // Every accept task runs (and hands its delivery over) before this one wakes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    H::release(gate).await;
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// Whether the delivery of event `id` is stored.
pub(crate) async fn stored<B: InboxBackend>(inbox: &B, id: &str) -> bool {
    inbox.get(delivery(id).key()).await.unwrap().is_some()
}

/// 200 concurrent accepts: each answered new and stored, in one or two transactions or
/// script calls. The inbox, for the caller's own checks.
pub(crate) async fn two_hundred_concurrent_accepts_are_committed_in_fewer_transactions_than_deliveries<
    H: Harness,
>(
    harness: H,
) -> H::Inbox {
    let inbox = harness.open(InboxOptions::new()).await;
    let before = harness.commits(&inbox).await;
    let ids: Vec<String> = (0..200).map(|n| format!("evt_group_{n}")).collect();
    let answers = gated::<H>(
        &inbox,
        harness.gate(&inbox).await,
        ids.iter().map(|id| delivery(id)).collect(),
    )
    .await;
    // Counted before the reads below (on Redis, reads are scripts too).
    let commits = harness.commits(&inbox).await - before;
    for (id, answer) in ids.iter().zip(&answers) {
        assert!(matches!(answer, Ok(Accepted::New)), "{id}: {answer:?}");
        assert!(stored(&inbox, id).await, "{id} acknowledged but not stored");
    }
    assert!(
        (1..=2).contains(&commits),
        "200 deliveries took {commits} transactions"
    );
    assert_eq!(inbox.stats().await.unwrap().pending, 200);
    inbox
}

/// A key four times in one batch with another: the first of each key is new, the others
/// duplicates of the pending delivery. The inbox, for the caller's own checks.
pub(crate) async fn a_duplicate_within_one_batch_is_answered_as_a_duplicate<H: Harness>(
    harness: H,
) -> H::Inbox {
    let inbox = harness.open(InboxOptions::new()).await;
    let before = harness.commits(&inbox).await;
    let answers = gated::<H>(
        &inbox,
        harness.gate(&inbox).await,
        vec![
            delivery("evt_twice"),
            delivery("evt_other"),
            delivery("evt_twice"),
            delivery("evt_twice"),
        ],
    )
    .await;
    assert_eq!(
        harness.commits(&inbox).await - before,
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
    inbox
}

/// An inbox with a depth limit of 10 and 4 deliveries stored (one transaction or call each)
/// takes 6 of a burst of 30 (the first six, in order) and refuses 24 as full, in one batch; a
/// stored key and a key of the batch itself are duplicates, not refused, even when full. The
/// inbox, for the caller's own checks.
pub(crate) async fn the_depth_limit_holds_exactly_within_one_batch<H: Harness>(
    harness: H,
) -> H::Inbox {
    let inbox = harness.open(InboxOptions::new().with_max_depth(10)).await;
    let start = harness.commits(&inbox).await;
    for n in 0..4 {
        let id = format!("evt_before_{n}");
        assert_eq!(inbox.accept(&delivery(&id)).await.unwrap(), Accepted::New);
    }
    let before = harness.commits(&inbox).await;
    assert_eq!(before - start, 4, "four accepts one after another");
    let mut deliveries: Vec<Delivery> = (0..30)
        .map(|n| delivery(&format!("evt_burst_{n}")))
        .collect();
    // A stored key and a key of the batch itself are duplicates, not refused, even when full.
    deliveries.push(delivery("evt_before_0"));
    deliveries.push(delivery("evt_burst_0"));
    let answers = gated::<H>(&inbox, harness.gate(&inbox).await, deliveries).await;
    assert_eq!(
        harness.commits(&inbox).await - before,
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
    // The first six of the batch were taken, in order.
    for (n, answer) in answers.iter().take(30).enumerate() {
        assert_eq!(
            matches!(answer, Ok(Accepted::New)),
            n < 6,
            "{n}: {answer:?}"
        );
        assert_eq!(stored(&inbox, &format!("evt_burst_{n}")).await, n < 6);
    }
    for answer in &answers[30..] {
        assert!(
            matches!(answer, Ok(Accepted::Duplicate(DeliveryState::Pending))),
            "{answer:?}"
        );
    }
    let stats = inbox.stats().await.unwrap();
    assert_eq!(stats.depth(), 10);
    assert_eq!(harness.depth_counter(&inbox).await, 10);
    inbox
}

/// One delivery of the batch fails its write ([`Harness::poison`]): the batch is rolled back
/// (or, on Redis, fails before it wrote anything), and every delivery in it is answered an
/// error; none is stored, no commit is counted, and each is accepted when sent again. The
/// inbox, for the caller's own checks.
pub(crate) async fn a_failed_batch_answers_every_delivery_an_error_and_stores_nothing<
    H: Harness,
>(
    harness: H,
) -> H::Inbox {
    let inbox = harness.open(InboxOptions::new()).await;
    harness.poison(&inbox).await;
    let before = harness.commits(&inbox).await;
    let mut ids: Vec<String> = (0..20).map(|n| format!("evt_batch_{n}")).collect();
    ids.insert(10, POISON.to_owned());
    let answers = gated::<H>(
        &inbox,
        harness.gate(&inbox).await,
        ids.iter().map(|id| delivery(id)).collect(),
    )
    .await;
    assert_eq!(
        harness.commits(&inbox).await,
        before,
        "a failed batch counted as a commit"
    );
    for (id, answer) in ids.iter().zip(&answers) {
        assert!(
            matches!(answer, Err(InboxError::Backend(_))),
            "{id}: {answer:?}"
        );
        if id != POISON || H::POISON_READABLE {
            assert!(
                !stored(&inbox, id).await,
                "{id} answered an error but stored"
            );
        }
    }
    let stats = inbox.stats().await.unwrap();
    assert_eq!(stats.depth(), 0);
    assert_eq!(harness.depth_counter(&inbox).await, 0);
    for id in ids.iter().filter(|id| *id != POISON) {
        assert_eq!(inbox.accept(&delivery(id)).await.unwrap(), Accepted::New);
    }
    inbox
}

/// The event id of the delivery
/// [`a_delivery_the_database_refuses_does_not_fail_the_others_of_its_batch`] sends with a
/// tenant id holding a NUL character (what a `SecretResolver` may return: the layer checks
/// event ids and optional facts for control characters, not the application's tenant ids), no
/// `text` value `PostgreSQL` stores.
pub(crate) const NUL_TENANT_ID: &str = "evt_nul_tenant";

/// The delivery of event `id`, of a tenant whose id holds a NUL character.
pub(crate) fn nul_tenant_delivery(id: &str) -> Delivery {
    let plain = delivery(id);
    let mut facts = plain.facts().clone();
    facts.tenant = Some("tenant_\u{0}_1".to_owned());
    Delivery::from_facts(
        facts,
        *plain.key(),
        plain.path(),
        plain.headers().iter().cloned(),
        plain.body().clone(),
    )
}

/// A delivery the backend cannot store (its tenant id holds a NUL, [`nul_tenant_delivery`]) in
/// one batch with 20 others: whatever the backend does with it (stores it, or refuses it
/// alone), the 20 others are answered new and stored, and it is answered the same when sent
/// alone again. `PostgresInbox`'s docs promise that only that tenant's accepts fail: one
/// delivery no sender retry can fix must not turn every batch it is retried in into 503s for
/// the other senders. The inbox, for the caller's own checks.
pub(crate) async fn a_delivery_the_database_refuses_does_not_fail_the_others_of_its_batch<
    H: Harness,
>(
    harness: H,
) -> H::Inbox {
    let inbox = harness.open(InboxOptions::new()).await;
    let mut ids: Vec<String> = (0..20).map(|n| format!("evt_with_nul_{n}")).collect();
    ids.insert(7, NUL_TENANT_ID.to_owned());
    let deliveries = ids
        .iter()
        .map(|id| {
            if id == NUL_TENANT_ID {
                nul_tenant_delivery(id)
            } else {
                delivery(id)
            }
        })
        .collect();
    let answers = gated::<H>(&inbox, harness.gate(&inbox).await, deliveries).await;
    for (id, answer) in ids.iter().zip(&answers) {
        if id == NUL_TENANT_ID {
            continue;
        }
        assert!(
            matches!(answer, Ok(Accepted::New)),
            "{id}: {answer:?} (in a batch with a delivery the backend refuses)"
        );
        assert!(stored(&inbox, id).await, "{id} acknowledged but not stored");
    }
    // The odd delivery itself: stored and then a duplicate, or refused alone and not stored.
    let again = inbox.accept(&nul_tenant_delivery(NUL_TENANT_ID)).await;
    match &answers[7] {
        Ok(Accepted::New) => assert!(
            matches!(again, Ok(Accepted::Duplicate(_))),
            "stored, then {again:?}"
        ),
        Err(InboxError::Backend(_)) => {
            assert!(matches!(again, Err(InboxError::Backend(_))), "{again:?}");
            assert!(!stored(&inbox, NUL_TENANT_ID).await);
        }
        other => panic!("the NUL tenant's delivery was answered {other:?}"),
    }
    assert_eq!(
        inbox.stats().await.unwrap().depth(),
        20 + u64::from(answers[7].is_ok())
    );
    inbox
}

/// The crash test's child: 64 tasks accept deliveries of ids `evt_{round}_{task}_{n}` as fast
/// as they can, each printing `ack <id>` once its delivery is acknowledged, until the process
/// is killed.
pub(crate) async fn accept_until_killed<B: InboxBackend + Clone + Send + Sync + 'static>(
    inbox: B,
    round: &str,
) {
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
/// after a few hundred acknowledgements. The ids the children acknowledged (each once); the
/// caller checks that each is stored ([`every_acknowledged_delivery_is_stored`]).
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

/// Every delivery the killed children acknowledged is stored (and so none was acknowledged
/// that was not committed).
pub(crate) async fn every_acknowledged_delivery_is_stored<B: InboxBackend>(
    inbox: &B,
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
