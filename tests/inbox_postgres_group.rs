//! `PostgreSQL`'s group-committed accepts (feature `postgres`), against a real server each test
//! starts (as `tests/inbox_postgres.rs` does): the scenarios of `inbox_common/group.rs`, the
//! gate a transaction holding a lock on the deliveries table that inserts wait for.
#![cfg(all(feature = "postgres", feature = "testing", unix))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "inbox_common/group.rs"]
mod group;
#[path = "inbox_common/backend.rs"]
mod inbox_backend;
#[path = "common/servers.rs"]
mod servers;

use group::{Harness, TIMEOUT};
use servers::PostgresServer;
use tower_webhook::inbox::sqlx::{self, Postgres, Transaction};
use tower_webhook::inbox::{InboxOptions, PostgresInbox};

impl Harness for PostgresServer {
    type Inbox = PostgresInbox;
    const POISON_READABLE: bool = true;
    type Gate = Transaction<'static, Postgres>;

    async fn open(&self, options: InboxOptions) -> PostgresInbox {
        PostgresInbox::connect(&self.url(), options.with_timeout(TIMEOUT))
            .await
            .unwrap()
    }

    /// Inserts wait for `SHARE` (reads do not).
    async fn gate(&self, inbox: &PostgresInbox) -> Self::Gate {
        let mut gate = inbox.pool().begin().await.unwrap();
        sqlx::raw_sql("LOCK TABLE tower_webhook_deliveries IN SHARE MODE")
            .execute(&mut *gate)
            .await
            .unwrap();
        gate
    }

    async fn release(gate: Self::Gate) {
        gate.rollback().await.unwrap();
    }

    async fn commits(&self, inbox: &PostgresInbox) -> u64 {
        inbox.accept_commits()
    }

    async fn poison(&self, inbox: &PostgresInbox) {
        sqlx::raw_sql(&format!(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.event_id = '{}' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; \
             END $$; \
             CREATE TRIGGER poison BEFORE INSERT ON tower_webhook_deliveries \
             FOR EACH ROW EXECUTE FUNCTION poison()",
            group::POISON
        ))
        .execute(inbox.pool())
        .await
        .unwrap();
    }

    async fn depth_counter(&self, inbox: &PostgresInbox) -> i64 {
        sqlx::query_scalar("SELECT sum(n)::bigint FROM tower_webhook_depth")
            .fetch_one(inbox.pool())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn two_hundred_concurrent_accepts_are_committed_in_fewer_transactions_than_deliveries() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    group::two_hundred_concurrent_accepts_are_committed_in_fewer_transactions_than_deliveries(
        server,
    )
    .await;
}

#[tokio::test]
async fn a_duplicate_within_one_batch_is_answered_as_a_duplicate() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    group::a_duplicate_within_one_batch_is_answered_as_a_duplicate(server).await;
}

#[tokio::test]
async fn the_depth_limit_holds_exactly_within_one_batch() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    group::the_depth_limit_holds_exactly_within_one_batch(server).await;
}

/// One delivery of the batch fails its insert (an application's trigger refuses it): the
/// batch's statement fails as a whole, and every delivery in it is answered an error; none is
/// stored, and each is accepted when sent again.
#[tokio::test]
async fn a_failed_batch_answers_every_delivery_an_error_and_stores_nothing() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    group::a_failed_batch_answers_every_delivery_an_error_and_stores_nothing(server).await;
}

/// A delivery `PostgreSQL` cannot store (a NUL in its tenant id, a `text` column) in a batch
/// of others: the others are still accepted (attack on the group commit, #20).
#[tokio::test]
async fn a_delivery_the_database_refuses_does_not_fail_the_others_of_its_batch() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    group::a_delivery_the_database_refuses_does_not_fail_the_others_of_its_batch(server).await;
}

/// The child's settings: the server's URL and the round.
const CHILD_ENV: &str = "TOWER_WEBHOOK_PG_GROUP_CHILD";

/// The child: accepts until killed (`group::accept_until_killed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the group commit's crash test"]
async fn group_commit_child() {
    let Ok(settings) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (url, round) = settings.rsplit_once('|').unwrap();
    let inbox = PostgresInbox::connect(url, InboxOptions::new())
        .await
        .unwrap();
    group::accept_until_killed(inbox, round).await;
}

/// SIGKILL while group commits are in flight: every delivery the child acknowledged is stored
/// (and so none was acknowledged that was not committed), over three kills.
#[test]
fn a_kill_during_a_group_commit_loses_no_acknowledged_delivery() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let url = server.url();
    let acknowledged = group::acknowledged_over_three_kills("group_commit_child", CHILD_ENV, &url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let inbox = server.open(InboxOptions::new()).await;
        group::every_acknowledged_delivery_is_stored(&inbox, &acknowledged).await;
    });
}
