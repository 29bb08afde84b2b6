//! `SQLite`'s group-committed accepts (feature `sqlite`): concurrent accepts share one
//! transaction, each answered after its commit, with duplicates, the depth limit and failures
//! answered per delivery; and a process killed while a batch commits acknowledged only what
//! was committed.
//!
//! The batches are made deterministic by a gate: another connection holds the write lock while
//! the accepts hand their deliveries to the writer (on the test's one-threaded runtime, every
//! accept task has handed its delivery over before the writer task runs), then lets go.
#![cfg(all(feature = "sqlite", feature = "testing", unix))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "inbox_common/backend.rs"]
mod inbox_backend;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use inbox_backend::delivery;
use tower_webhook::inbox::sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tower_webhook::inbox::sqlx::{self, Sqlite, Transaction};
use tower_webhook::inbox::{
    Accepted, Delivery, DeliveryState, InboxBackend, InboxError, InboxOptions, SqliteInbox,
};

/// The inbox's timeout in these tests: long, so that a busy machine times nothing out.
const TIMEOUT: Duration = Duration::from_secs(30);

async fn open(path: &Path, options: InboxOptions) -> SqliteInbox {
    SqliteInbox::open(path, options.with_timeout(TIMEOUT))
        .await
        .unwrap()
}

/// A pool on `path` as another process would have it, with `SQLite`'s busy timeout.
async fn other_pool(path: &Path, busy: Duration) -> SqlitePool {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .busy_timeout(busy);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

/// Holds the database's write lock until rolled back.
async fn lock(pool: &SqlitePool) -> Transaction<'static, Sqlite> {
    pool.begin_with("BEGIN IMMEDIATE").await.unwrap()
}

/// Accepts `deliveries` at once while `gate` holds the write lock, then lets go: the answers,
/// in the deliveries' order.
async fn gated(
    inbox: &SqliteInbox,
    gate: Transaction<'static, Sqlite>,
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
    gate.rollback().await.unwrap();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

async fn stored(inbox: &SqliteInbox, id: &str) -> bool {
    inbox.get(delivery(id).key()).await.unwrap().is_some()
}

#[tokio::test]
async fn two_hundred_concurrent_accepts_are_committed_in_fewer_transactions_than_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("group.db");
    let inbox = open(&path, InboxOptions::new()).await;
    let gate = other_pool(&path, TIMEOUT).await;
    let ids: Vec<String> = (0..200).map(|n| format!("evt_group_{n}")).collect();
    let answers = gated(
        &inbox,
        lock(&gate).await,
        ids.iter().map(|id| delivery(id)).collect(),
    )
    .await;
    for (id, answer) in ids.iter().zip(&answers) {
        assert!(matches!(answer, Ok(Accepted::New)), "{id}: {answer:?}");
        assert!(stored(&inbox, id).await, "{id} acknowledged but not stored");
    }
    let commits = inbox.accept_commits();
    assert!(
        (1..=2).contains(&commits),
        "200 deliveries took {commits} transactions"
    );
    assert_eq!(inbox.stats().await.unwrap().pending, 200);
}

#[tokio::test]
async fn a_duplicate_within_one_batch_is_answered_as_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("duplicate.db");
    let inbox = open(&path, InboxOptions::new()).await;
    let gate = other_pool(&path, TIMEOUT).await;
    let answers = gated(
        &inbox,
        lock(&gate).await,
        vec![
            delivery("evt_twice"),
            delivery("evt_other"),
            delivery("evt_twice"),
            delivery("evt_twice"),
        ],
    )
    .await;
    assert_eq!(inbox.accept_commits(), 1, "the four were not one batch");
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

#[tokio::test]
async fn the_depth_limit_holds_exactly_within_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("depth.db");
    let inbox = open(&path, InboxOptions::new().with_max_depth(10)).await;
    for n in 0..4 {
        let id = format!("evt_before_{n}");
        assert_eq!(inbox.accept(&delivery(&id)).await.unwrap(), Accepted::New);
    }
    let gate = other_pool(&path, TIMEOUT).await;
    let mut deliveries: Vec<Delivery> = (0..30)
        .map(|n| delivery(&format!("evt_burst_{n}")))
        .collect();
    // A stored key and a key of the batch itself are duplicates, not refused, even when full.
    deliveries.push(delivery("evt_before_0"));
    deliveries.push(delivery("evt_burst_0"));
    let answers = gated(&inbox, lock(&gate).await, deliveries).await;
    assert_eq!(inbox.accept_commits(), 5, "the burst was not one batch");
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
    let counter: i64 = sqlx::query_scalar("SELECT n FROM tower_webhook_depth")
        .fetch_one(inbox.pool())
        .await
        .unwrap();
    assert_eq!(counter, 10);
}

/// One delivery of the batch fails its insert (an application's trigger refuses it): the batch
/// is rolled back, and every delivery in it is answered an error; none is stored, and each is
/// accepted when sent again.
#[tokio::test]
async fn a_failed_batch_answers_every_delivery_an_error_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("failed.db");
    let inbox = open(&path, InboxOptions::new()).await;
    sqlx::raw_sql(
        "CREATE TRIGGER poison BEFORE INSERT ON tower_webhook_deliveries \
         WHEN NEW.event_id = 'evt_poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
    )
    .execute(inbox.pool())
    .await
    .unwrap();
    let gate = other_pool(&path, TIMEOUT).await;
    let mut ids: Vec<String> = (0..20).map(|n| format!("evt_batch_{n}")).collect();
    ids.insert(10, "evt_poison".to_owned());
    let answers = gated(
        &inbox,
        lock(&gate).await,
        ids.iter().map(|id| delivery(id)).collect(),
    )
    .await;
    for (id, answer) in ids.iter().zip(&answers) {
        assert!(
            matches!(answer, Err(InboxError::Backend(_))),
            "{id}: {answer:?}"
        );
        assert!(
            !stored(&inbox, id).await,
            "{id} answered an error but stored"
        );
    }
    assert_eq!(inbox.accept_commits(), 0);
    let stats = inbox.stats().await.unwrap();
    assert_eq!(stats.depth(), 0);
    for id in ids.iter().filter(|id| *id != "evt_poison") {
        assert_eq!(inbox.accept(&delivery(id)).await.unwrap(), Accepted::New);
    }
}

/// The batch cannot begin: another process holds the write lock past `SQLite`'s busy timeout
/// (shorter here than the inbox's own timeout). Each delivery is answered an error, none is
/// stored.
#[tokio::test]
async fn a_batch_that_cannot_take_the_write_lock_answers_every_delivery_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let inbox = open(&path, InboxOptions::new()).await;
    let short = other_pool(&path, Duration::from_millis(200)).await;
    let inbox = SqliteInbox::from_pool(short, inbox.options().clone())
        .await
        .unwrap();
    let gate = other_pool(&path, TIMEOUT).await;
    let held = lock(&gate).await;
    let ids: Vec<String> = (0..10).map(|n| format!("evt_busy_{n}")).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let inbox = inbox.clone();
            let delivery = delivery(id);
            tokio::spawn(async move { inbox.accept(&delivery).await })
        })
        .collect();
    for (id, task) in ids.iter().zip(tasks) {
        let answer = task.await.unwrap();
        assert!(
            matches!(answer, Err(InboxError::Backend(_))),
            "{id}: {answer:?}"
        );
    }
    held.rollback().await.unwrap();
    for id in &ids {
        assert!(
            !stored(&inbox, id).await,
            "{id} answered an error but stored"
        );
    }
    assert_eq!(inbox.accept_commits(), 0);
}

/// The child's settings: the database's path.
const CHILD_ENV: &str = "TOWER_WEBHOOK_GROUP_CHILD";

/// The child: 64 tasks accept deliveries as fast as they can, each printing `ack <id>` once
/// its delivery is acknowledged, until the process is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the group commit's crash test"]
async fn group_commit_child() {
    let Ok(settings) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, round) = settings.split_once('|').unwrap();
    let inbox = SqliteInbox::open(path, InboxOptions::new()).await.unwrap();
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

/// SIGKILL while group commits are in flight: every delivery the child acknowledged is stored
/// (and so none was acknowledged that was not committed), over three kills.
#[test]
fn a_kill_during_a_group_commit_loses_no_acknowledged_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.db");
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["group_commit_child", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_ENV, format!("{}|{round}", path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
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
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // What the child printed before it died.
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("ack ") {
                acknowledged.push(id.to_owned());
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let inbox = SqliteInbox::open(&path, InboxOptions::new()).await.unwrap();
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(inbox.pool())
            .await
            .unwrap();
        assert_eq!(integrity, "ok");
        let unique: HashSet<&String> = acknowledged.iter().collect();
        assert_eq!(unique.len(), acknowledged.len(), "an id acknowledged twice");
        for id in &acknowledged {
            assert!(stored(&inbox, id).await, "{id} acknowledged but not stored");
        }
        let stats = inbox.stats().await.unwrap();
        assert!(stats.pending >= acknowledged.len() as u64);
        eprintln!(
            "{} acknowledged over 3 kills, {} stored",
            acknowledged.len(),
            stats.pending
        );
    });
}
