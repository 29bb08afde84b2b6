//! `SQLite`'s group-committed accepts (feature `sqlite`): the scenarios of
//! `inbox_common/group.rs`, the gate another connection holding the write lock; and a batch
//! that cannot take the write lock.
#![cfg(all(feature = "sqlite", feature = "testing", unix))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "inbox_common/group.rs"]
mod group;
#[path = "inbox_common/backend.rs"]
mod inbox_backend;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use group::{stored, Harness, TIMEOUT};
use inbox_backend::delivery;
use tower_webhook::inbox::sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tower_webhook::inbox::sqlx::{self, Sqlite, Transaction};
use tower_webhook::inbox::{InboxBackend, InboxError, InboxOptions, SqliteInbox};

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

/// A database file in a directory of its own; the gate holds its write lock.
struct File {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl File {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("group.db");
        Self { _dir: dir, path }
    }
}

impl Harness for File {
    type Inbox = SqliteInbox;
    const POISON_READABLE: bool = true;
    type Gate = Transaction<'static, Sqlite>;

    async fn open(&self, options: InboxOptions) -> SqliteInbox {
        open(&self.path, options).await
    }

    async fn gate(&self, _: &SqliteInbox) -> Self::Gate {
        let pool = other_pool(&self.path, TIMEOUT).await;
        lock(&pool).await
    }

    async fn release(gate: Self::Gate) {
        gate.rollback().await.unwrap();
    }

    async fn commits(&self, inbox: &SqliteInbox) -> u64 {
        inbox.accept_commits()
    }

    async fn poison(&self, inbox: &SqliteInbox) {
        sqlx::raw_sql(&format!(
            "CREATE TRIGGER poison BEFORE INSERT ON tower_webhook_deliveries \
             WHEN NEW.event_id = '{}' BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
            group::POISON
        ))
        .execute(inbox.pool())
        .await
        .unwrap();
    }

    async fn depth_counter(&self, inbox: &SqliteInbox) -> i64 {
        sqlx::query_scalar("SELECT n FROM tower_webhook_depth")
            .fetch_one(inbox.pool())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn two_hundred_concurrent_accepts_are_committed_in_fewer_transactions_than_deliveries() {
    group::two_hundred_concurrent_accepts_are_committed_in_fewer_transactions_than_deliveries(
        File::new(),
    )
    .await;
}

#[tokio::test]
async fn a_duplicate_within_one_batch_is_answered_as_a_duplicate() {
    group::a_duplicate_within_one_batch_is_answered_as_a_duplicate(File::new()).await;
}

#[tokio::test]
async fn the_depth_limit_holds_exactly_within_one_batch() {
    group::the_depth_limit_holds_exactly_within_one_batch(File::new()).await;
}

/// One delivery of the batch fails its insert (an application's trigger refuses it): the batch
/// is rolled back, and every delivery in it is answered an error; none is stored, and each is
/// accepted when sent again.
#[tokio::test]
async fn a_failed_batch_answers_every_delivery_an_error_and_stores_nothing() {
    group::a_failed_batch_answers_every_delivery_an_error_and_stores_nothing(File::new()).await;
}

/// A delivery with a NUL in its tenant id in a batch of others (`PostgreSQL` cannot store it):
/// `SQLite` stores them all (pins the scenario's other side).
#[tokio::test]
async fn a_delivery_the_database_refuses_does_not_fail_the_others_of_its_batch() {
    group::a_delivery_the_database_refuses_does_not_fail_the_others_of_its_batch(File::new()).await;
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

/// The child's settings: the database's path and the round.
const CHILD_ENV: &str = "TOWER_WEBHOOK_GROUP_CHILD";

/// The child: accepts until killed (`group::accept_until_killed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the group commit's crash test"]
async fn group_commit_child() {
    let Ok(settings) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, round) = settings.split_once('|').unwrap();
    let inbox = SqliteInbox::open(path, InboxOptions::new()).await.unwrap();
    group::accept_until_killed(inbox, round).await;
}

/// SIGKILL while group commits are in flight: every delivery the child acknowledged is stored
/// (and so none was acknowledged that was not committed), over three kills.
#[test]
fn a_kill_during_a_group_commit_loses_no_acknowledged_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.db");
    let acknowledged = group::acknowledged_over_three_kills(
        "group_commit_child",
        CHILD_ENV,
        &path.display().to_string(),
    );
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
        group::every_acknowledged_delivery_is_stored(&inbox, &acknowledged).await;
    });
}
