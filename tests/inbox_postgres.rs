//! The Postgres inbox, against a real Postgres server this test starts (feature
//! `postgres`): `initdb` in a temporary directory, a free 127.0.0.1 port, run as the
//! `postgres` user when the test runs as root, stopped when the test ends. Without `initdb` and
//! `pg_ctl` (on the PATH, in `PG_BIN`, or in `/usr/lib/postgresql/<version>/bin`) these tests
//! fail under `CI=true` and are skipped, loudly, otherwise.
#![cfg(all(feature = "postgres", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

// The shared delivery builder: inbox_common's (it needs `axum`), or the file alone.
#[cfg(not(feature = "axum"))]
#[path = "inbox_common/backend.rs"]
mod inbox_backend;
#[cfg(feature = "axum")]
mod inbox_common;

use inbox_backend::{delivery, history};
#[path = "common/servers.rs"]
mod servers;
#[cfg(feature = "axum")]
use inbox_common::backend as inbox_backend;
use servers::PostgresServer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower_webhook::inbox::{
    Accepted, DeliveryState, Filter, HistoryKind, InboxBackend, InboxError, InboxOptions,
    PostgresInbox,
};

/// The inbox on a server.
trait Connect {
    async fn inbox(&self, options: InboxOptions) -> PostgresInbox;
}

impl Connect for PostgresServer {
    async fn inbox(&self, options: InboxOptions) -> PostgresInbox {
        PostgresInbox::connect(&self.url(), options).await.unwrap()
    }
}

/// A fresh table prefix for each inbox in one database.
fn prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("t{}_", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_inbox_passes_the_inbox_conformance_suite() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let url = server.url();
    tokio::time::timeout(
        Duration::from_secs(60),
        tower_webhook::inbox::conformance::check_inbox(|options: InboxOptions| {
            let url = url.clone();
            async move {
                let options = options.with_prefix(prefix()).unwrap();
                PostgresInbox::connect(&url, options).await.unwrap()
            }
        }),
    )
    .await
    .expect("the conformance suite took more than 60 s");
}

#[tokio::test]
async fn a_handler_s_effects_and_the_completion_commit_together_or_not_at_all() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    sqlx::raw_sql("CREATE TABLE effects (event_id text PRIMARY KEY)")
        .execute(inbox.pool())
        .await
        .unwrap();
    let effects = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM effects")
            .fetch_one(inbox.pool())
            .await
            .unwrap()
    };
    let stored = delivery("evt_tx");
    assert_eq!(inbox.accept(&stored).await.unwrap(), Accepted::New);
    let lease = inbox.claim(Duration::from_secs(60), 1).await.unwrap()[0]
        .lease
        .clone();

    // The handler writes, then fails before committing: neither the effect nor the completion.
    let mut completion = inbox.begin_complete(&lease).await.unwrap().unwrap();
    sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
        .bind("evt_tx")
        .execute(&mut *completion)
        .await
        .unwrap();
    drop(completion);
    assert_eq!(effects().await, 0);
    let record = inbox.get(stored.key()).await.unwrap().unwrap();
    assert_eq!(record.state, DeliveryState::Running);

    // It writes and commits: both.
    let mut completion = inbox.begin_complete(&lease).await.unwrap().unwrap();
    sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
        .bind("evt_tx")
        .execute(&mut *completion)
        .await
        .unwrap();
    completion.commit().await.unwrap();
    assert_eq!(effects().await, 1);
    let record = inbox.get(stored.key()).await.unwrap().unwrap();
    assert_eq!(record.state, DeliveryState::Done);

    // A lease that is no longer the owner's gets no transaction.
    assert!(inbox.begin_complete(&lease).await.unwrap().is_none());
}

#[tokio::test]
async fn the_schema_lives_under_its_prefix_and_migrating_twice_changes_nothing() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let options = InboxOptions::new().with_prefix("billing_").unwrap();
    let first = server.inbox(options.clone()).await;
    let stored = delivery("evt_schema");
    first.accept(&stored).await.unwrap();
    // A second replica starting, then a restart: the schema is there, the delivery too.
    let (second, third) = tokio::join!(server.inbox(options.clone()), server.inbox(options));
    for inbox in [&second, &third] {
        assert_eq!(
            inbox.accept(&stored).await.unwrap(),
            Accepted::Duplicate(DeliveryState::Pending)
        );
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() ORDER BY 1",
    )
    .fetch_all(first.pool())
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "billing_deliveries",
            "billing_depth",
            "billing_schema_version"
        ]
    );
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM billing_schema_version ORDER BY version")
            .fetch_all(first.pool())
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3]);
    // Nothing secret-bearing, nor the query string, was stored.
    let record = first.get(stored.key()).await.unwrap().unwrap();
    assert_eq!(record.delivery.path(), "/webhooks");
    assert_eq!(record.delivery.body(), stored.body());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_claiming_at_once_take_each_delivery_once() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let options = InboxOptions::new().with_prefix(prefix()).unwrap();
    let a = server.inbox(options.clone()).await;
    let b = server.inbox(options).await;
    inbox_backend::two_inboxes_take_each_delivery_once(a, b).await;
}

#[tokio::test]
async fn a_stopped_server_fails_calls_in_bounded_time_and_a_restarted_one_is_used_again() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let options = InboxOptions::new().with_timeout(Duration::from_secs(1));
    let inbox = server.inbox(options).await;
    assert_eq!(
        inbox.accept(&delivery("evt_before")).await.unwrap(),
        Accepted::New
    );

    server.pg_stop();
    let started = std::time::Instant::now();
    let during = inbox.accept(&delivery("evt_during")).await;
    assert!(
        matches!(during, Err(InboxError::Backend(_) | InboxError::Timeout)),
        "{during:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    server.pg_start().unwrap();
    // The pool reconnects by itself: no new inbox. Bounded: at most 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match inbox.accept(&delivery("evt_during")).await {
            Ok(accepted) => {
                assert_eq!(accepted, Accepted::New);
                break;
            }
            Err(error) => assert!(
                std::time::Instant::now() < deadline,
                "the inbox did not recover: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(inbox.stats().await.unwrap().pending, 2);
}

/// The workers and the layer's inbox mode (the scenarios `tests/inbox_worker.rs` runs on
/// `SQLite`), on one server, each scenario in an inbox of its own.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_and_the_layer_s_inbox_mode_run_their_scenarios_on_postgres() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let fresh = || server.inbox(InboxOptions::new().with_prefix(prefix()).unwrap());
    inbox_common::every_scenario(fresh).await;
}

/// The admin router's listing, filters, paging and replays, read through this backend's
/// `search` (feature `admin`).
#[cfg(all(feature = "axum", feature = "admin"))]
#[tokio::test]
async fn the_admin_lists_and_replays_deliveries_on_postgres() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    inbox_common::admin::the_admin_lists_filters_pages_and_replays(inbox).await;
}

/// The crash test's receiver, when this binary runs as its child (see
/// `tests/inbox_common/crash.rs`).
#[cfg(all(feature = "axum", unix))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the crash test"]
async fn crash_child() {
    use axum::http::StatusCode;
    use axum::Extension;
    use tower_webhook::inbox::Attempt;
    use tower_webhook::WebhookMeta;

    /// Writes its effect and completes the delivery in one transaction.
    async fn handle(
        Extension(attempt): Extension<Attempt<PostgresInbox>>,
        meta: WebhookMeta,
    ) -> StatusCode {
        inbox_common::crash::pause().await;
        let Ok(Some(mut completion)) = attempt.begin_complete().await else {
            return StatusCode::SERVICE_UNAVAILABLE;
        };
        let inserted = sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
            .bind(meta.id())
            .execute(&mut *completion)
            .await;
        if inserted.is_err() || completion.commit().await.is_err() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        StatusCode::OK
    }

    let Some((url, port_file)) = inbox_common::crash::child_settings() else {
        return;
    };
    let inbox = PostgresInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    inbox_common::crash::serve(inbox, handle, &port_file).await;
}

#[cfg(all(feature = "axum", unix))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_while_it_works_loses_nothing_and_applies_each_effect_once() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    // No unique constraint: a second effect for one event would be counted, not refused.
    sqlx::raw_sql("CREATE TABLE effects (event_id text NOT NULL)")
        .execute(inbox.pool())
        .await
        .unwrap();
    inbox_common::crash::run("crash_child", &server.url(), &inbox, || async {
        sqlx::query_scalar("SELECT event_id FROM effects")
            .fetch_all(inbox.pool())
            .await
            .unwrap()
    })
    .await;
}

#[cfg(all(feature = "axum", unix))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_on_one_database_process_each_event_once_and_survive_one_dying() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    sqlx::raw_sql("CREATE TABLE effects (event_id text NOT NULL)")
        .execute(inbox.pool())
        .await
        .unwrap();
    inbox_common::crash::run_two("crash_child", &server.url(), &inbox, || async {
        sqlx::query_scalar("SELECT event_id FROM effects")
            .fetch_all(inbox.pool())
            .await
            .unwrap()
    })
    .await;
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_answered_503_and_a_restarted_one_accepts_and_processes_again() {
    use axum::http::StatusCode;
    use inbox_common::{key, receiver, send, wait_for, workers, App, SECRET};

    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_timeout(Duration::from_secs(1)))
        .await;
    let app = App::default();
    let router = receiver(&inbox, &app);
    let running = workers(&inbox, &app).start().unwrap();

    server.pg_stop();
    let (status, _, text) = send(&router, SECRET, "evt_during").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(
        text.contains("inbox_unavailable") && text.contains("retry-after=30"),
        "{text}"
    );

    // Started again: the same receiver and workers, no restart of the app.
    server.pg_start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, text) = send(&router, SECRET, "evt_during").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not accepting after the restart: {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for(&inbox, &key("evt_during"), DeliveryState::Done).await;
    assert_eq!(app.runs_of("evt_during"), [1]);
    running.shutdown(Duration::from_secs(5)).await;
}

/// Postgres stopped hard (`pg_ctl -m immediate`) and started again on the same data, three
/// times, while deliveries are accepted and claimed in batches and handlers complete them in
/// their own transactions: every accepted delivery ends done with its effect exactly once,
/// none stranded (see `tests/inbox_common/restart.rs`).
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_claim_interrupted_by_a_database_restart_leaves_no_delivery_stranded() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let prefix = prefix();
    let inbox = server
        .inbox(
            InboxOptions::new()
                .with_prefix(prefix.clone())
                .unwrap()
                .with_timeout(Duration::from_secs(1)),
        )
        .await;
    // No unique constraint: a second effect of one event would be counted, not refused.
    let effects = format!("{prefix}effects");
    sqlx::raw_sql(&format!("CREATE TABLE {effects} (event_id text NOT NULL)"))
        .execute(inbox.pool())
        .await
        .unwrap();
    // Claims made slow (2 ms per row claimed, before their commit), as on a slow disk: a
    // restart most likely finds one in flight.
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION {prefix}slow() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(0.002); RETURN NULL; END $$; \
         CREATE TRIGGER {prefix}slow_claim AFTER UPDATE ON {prefix}deliveries FOR EACH ROW \
         WHEN (OLD.state = 'pending' AND NEW.state = 'running') EXECUTE FUNCTION {prefix}slow();"
    ))
    .execute(inbox.pool())
    .await
    .unwrap();
    inbox_common::restart::a_batch_claim_interrupted_by_a_restart_strands_no_delivery(
        inbox.clone(),
        || {
            server.pg_stop();
            std::thread::sleep(Duration::from_millis(300));
            server.pg_start().unwrap();
        },
        || async {
            sqlx::query_scalar(&format!("SELECT event_id FROM {effects}"))
                .fetch_all(inbox.pool())
                .await
                .unwrap()
        },
    )
    .await;
}

/// A batch claim carried out by the server whose answer was lost strands none of its
/// deliveries: claimed again once its lease runs out. The claim's request is the one binding
/// the lease and the batch size (`int8` parameters, each after its length).
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_claim_whose_answer_was_lost_strands_none_of_its_deliveries_on_postgres() {
    use inbox_common::restart::{LOST_CLAIM_LEASE, LOST_CLAIM_SLOTS};

    let Some(server) = PostgresServer::start() else {
        return;
    };
    let proxy = inbox_common::proxy::Proxy::start(server.port).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port());
    let inbox = PostgresInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    let mut marker = 8_i32.to_be_bytes().to_vec();
    marker.extend(
        i64::try_from(LOST_CLAIM_LEASE.as_millis())
            .unwrap()
            .to_be_bytes(),
    );
    marker.extend(8_i32.to_be_bytes());
    marker.extend(i64::try_from(LOST_CLAIM_SLOTS).unwrap().to_be_bytes());
    inbox_common::restart::a_batch_claim_whose_answer_was_lost_strands_none_of_its_deliveries(
        inbox, &proxy, &marker,
    )
    .await;
}

/// `Debug` on an inbox opened with a password in its URL (the test server trusts any), on its
/// workers and their handle: present, and the password never printed.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_names_the_postgres_inbox_and_its_workers_and_prints_no_password() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let password = "pg-s3cret-password";
    let url = format!(
        "postgres://postgres:{password}@127.0.0.1:{}/postgres",
        server.port
    );
    let inbox = PostgresInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    // Its listener started (it holds the connect options, password included).
    inbox
        .wait_for_work(Duration::from_millis(50))
        .await
        .unwrap();
    // What a derived `Debug` would print: the pool's options hold the password.
    let options = format!("{:?}", inbox.pool().connect_options());
    assert!(options.contains(password), "{options}");
    inbox_common::debug_names_the_backend_and_prints_no_secret(inbox, "PostgresInbox", password)
        .await;
}

/// Two inboxes on one database (two replicas), each with a depth limit of 10.
async fn two_replicas(server: &PostgresServer) -> (PostgresInbox, PostgresInbox) {
    let options = InboxOptions::new()
        .with_prefix(prefix())
        .unwrap()
        .with_max_depth(10);
    (
        server.inbox(options.clone()).await,
        server.inbox(options).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_keep_one_depth_limit_exactly_and_pass_it_only_by_the_accepts_at_once() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let (a, b) = two_replicas(&server).await;
    inbox_backend::two_inboxes_keep_one_depth_limit_exactly(a, b).await;
    let (a, b) = two_replicas(&server).await;
    inbox_backend::accepts_running_at_once_pass_the_depth_limit_by_at_most_their_number(a, b).await;
    let options = InboxOptions::new()
        .with_prefix(prefix())
        .unwrap()
        .with_max_depth(4);
    inbox_backend::the_depth_limit_follows_every_change_of_state(server.inbox(options).await).await;
}

/// Writes `count` done deliveries, finished a week ago, in one statement.
async fn backlog(pool: &sqlx::PgPool, count: u64) {
    sqlx::query(
        "INSERT INTO tower_webhook_deliveries (key, state, attempts, due_at, accepted_at, \
         finished_at, path, headers, body, scheme, event_id) \
         SELECT sha256(('evt_old_' || i)::bytea), 'done', 1, t, t, t, '/webhooks', \
         '[[\"x-webhook-id\",\"evt_old\"]]', convert_to(repeat(md5(i::text), 12), 'UTF8'), \
         'sotion', 'evt_old_' || i \
         FROM generate_series(1, $1) AS i, (SELECT now() - interval '7 days' AS t) AS w",
    )
    .bind(i64::try_from(count).unwrap())
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_of_200_000_done_deliveries_lets_deliveries_in_meanwhile() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_timeout(Duration::from_secs(2)))
        .await;
    backlog(inbox.pool(), inbox_backend::BACKLOG).await;
    inbox_backend::a_prune_of_a_large_backlog_lets_deliveries_in(inbox).await;
}

/// A done delivery locked by another transaction (a replay, an operator's query) holds the
/// prune back neither past its timeout nor from the others: it is left for the next prune.
#[tokio::test]
async fn a_prune_removes_the_others_past_a_locked_done_delivery_within_its_timeout() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_timeout(Duration::from_secs(1)))
        .await;
    backlog(inbox.pool(), 2500).await;
    let mut lock = inbox.pool().begin().await.unwrap();
    sqlx::query(
        "SELECT key FROM tower_webhook_deliveries WHERE event_id = 'evt_old_2000' FOR UPDATE",
    )
    .execute(&mut *lock)
    .await
    .unwrap();
    assert_eq!(inbox.prune(Duration::from_secs(3600)).await.unwrap(), 2499);
    lock.rollback().await.unwrap();
    assert_eq!(inbox.prune(Duration::from_secs(3600)).await.unwrap(), 1);
    assert_eq!(inbox.stats().await.unwrap().done, 0);
}

/// A database written by a version before the depth counter (schema version 1), with
/// deliveries in every state: connecting adds the counter, counted from the waiting
/// deliveries, in the inbox's schema whatever the search path of the sessions that write.
#[tokio::test]
async fn a_database_from_before_the_depth_counter_is_migrated_with_its_waiting_deliveries_counted()
{
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    sqlx::raw_sql(
        "DROP TABLE tower_webhook_depth; \
         DROP FUNCTION tower_webhook_depth_change, tower_webhook_depth_reset CASCADE; \
         ALTER TABLE tower_webhook_deliveries DROP COLUMN history; \
         DELETE FROM tower_webhook_schema_version WHERE version >= 2;",
    )
    .execute(inbox.pool())
    .await
    .unwrap();
    // As version 1 wrote them: two pending, one running, one done, one dead.
    for (n, state) in ["pending", "pending", "running", "done", "dead"]
        .into_iter()
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO tower_webhook_deliveries (key, state, attempts, due_at, accepted_at, \
             path, headers, body, scheme, event_id) \
             VALUES (sha256($2::bytea), $1, 0, now(), now(), '/webhooks', '[]', '\\x7b7d', \
             'sotion', $2)",
        )
        .bind(state)
        .bind(format!("evt_v1_{n}"))
        .execute(inbox.pool())
        .await
        .unwrap();
    }
    inbox.pool().close().await;
    let inbox = server.inbox(InboxOptions::new().with_max_depth(5)).await;
    for id in ["evt_new_1", "evt_new_2"] {
        assert_eq!(inbox.accept(&delivery(id)).await.unwrap(), Accepted::New);
    }
    assert!(matches!(
        inbox.accept(&delivery("evt_over")).await,
        Err(InboxError::Full)
    ));
    // A session whose search path does not hold the inbox's schema still keeps the count.
    let mut other = inbox.pool().acquire().await.unwrap();
    sqlx::raw_sql(
        "CREATE SCHEMA elsewhere; SET search_path = elsewhere; \
         DELETE FROM public.tower_webhook_deliveries WHERE event_id = 'evt_new_1'; \
         RESET search_path;",
    )
    .execute(&mut *other)
    .await
    .unwrap();
    drop(other);
    assert_eq!(
        inbox.accept(&delivery("evt_new_3")).await.unwrap(),
        Accepted::New
    );
    assert!(matches!(
        inbox.accept(&delivery("evt_over")).await,
        Err(InboxError::Full)
    ));
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM tower_webhook_schema_version ORDER BY version")
            .fetch_all(inbox.pool())
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3]);
}

/// The completion scenarios' effect on Postgres: a row in `{prefix}effects`, keyed by event id.
#[cfg(feature = "axum")]
impl inbox_common::completion::Transactional for PostgresInbox {
    type Completion = tower_webhook::inbox::Completion<sqlx::Postgres>;

    async fn prepare(&self) {
        let table = format!("{}effects", self.options().prefix());
        sqlx::raw_sql(&format!("CREATE TABLE {table} (event_id text PRIMARY KEY)"))
            .execute(self.pool())
            .await
            .unwrap();
    }

    async fn begin(
        attempt: &tower_webhook::inbox::Attempt<Self>,
    ) -> Result<Option<Self::Completion>, InboxError> {
        attempt.begin_complete().await
    }

    async fn write(&self, completion: &mut Self::Completion, id: &str) {
        let table = format!("{}effects", self.options().prefix());
        sqlx::query(&format!("INSERT INTO {table} (event_id) VALUES ($1)"))
            .bind(id)
            .execute(&mut **completion)
            .await
            .unwrap();
    }

    async fn fail(&self, completion: &mut Self::Completion, id: &str) {
        let table = format!("{}effects", self.options().prefix());
        // "Ignore a duplicate": the error is tolerated, but Postgres aborts the transaction.
        let duplicate = sqlx::query(&format!("INSERT INTO {table} (event_id) VALUES ($1)"))
            .bind(id)
            .execute(&mut **completion)
            .await;
        assert!(duplicate.is_err(), "the second insert of one key succeeded");
    }

    async fn commit(completion: Self::Completion) -> bool {
        completion.commit().await.is_ok()
    }

    async fn effects(&self) -> Vec<String> {
        let table = format!("{}effects", self.options().prefix());
        sqlx::query_scalar(&format!("SELECT event_id FROM {table} ORDER BY 1"))
            .fetch_all(self.pool())
            .await
            .unwrap()
    }
}

/// What a handler may rely on when it completes its delivery itself (the scenarios of
/// `tests/inbox_common/completion.rs`), each in an inbox of its own on one server.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_completion_scenarios_run_on_postgres() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let fresh = || server.inbox(InboxOptions::new().with_prefix(prefix()).unwrap());
    inbox_common::completion::every_completion_scenario(fresh).await;
}

#[tokio::test]
async fn a_completion_whose_transaction_was_aborted_is_not_committed_and_says_so() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    sqlx::raw_sql("CREATE TABLE orders (id text PRIMARY KEY)")
        .execute(inbox.pool())
        .await
        .unwrap();
    let stored = delivery("evt_aborted");
    inbox.accept(&stored).await.unwrap();
    let lease = inbox.claim(Duration::from_secs(60), 1).await.unwrap()[0]
        .lease
        .clone();
    let mut completion = inbox.begin_complete(&lease).await.unwrap().unwrap();
    for _ in 0..2 {
        // The second insert fails (a duplicate), and aborts the transaction.
        let _ = sqlx::query("INSERT INTO orders (id) VALUES ('ord_1')")
            .execute(&mut *completion)
            .await;
    }
    let committed = completion.commit().await;
    assert!(
        committed.is_err(),
        "an aborted transaction was reported committed"
    );
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(inbox.pool())
        .await
        .unwrap();
    assert_eq!(orders, 0);
    // Nothing happened: the delivery is still its owner's, to retry.
    let record = inbox.get(stored.key()).await.unwrap().unwrap();
    assert_eq!(record.state, DeliveryState::Running);
    assert!(inbox
        .retry(&lease, Duration::ZERO, "aborted")
        .await
        .unwrap());
}

/// The worker's completion is committed, and its connection cut before the answer.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_whose_answer_was_lost_is_read_again_on_postgres() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let proxy = std::sync::Arc::new(inbox_common::proxy::Proxy::start(server.port).await);
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port());
    let inbox = PostgresInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    inbox_common::an_outcome_whose_answer_was_lost_is_read_again_and_reported_as_found(
        inbox, proxy,
    )
    .await;
}

/// A handler's own commit is carried out, and its connection cut before the answer.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_is_reported_done_on_postgres() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let proxy = std::sync::Arc::new(inbox_common::proxy::Proxy::start(server.port).await);
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port());
    let inbox = PostgresInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    inbox_common::completion::a_commit_whose_answer_was_lost_is_reported_done(
        inbox, proxy, b"COMMIT",
    )
    .await;
}

/// An inbox whose pool's sessions use schema `schema` (created when missing) as their search
/// path, under the default prefix.
async fn inbox_in_schema(
    server: &PostgresServer,
    schema: &str,
    options: InboxOptions,
) -> PostgresInbox {
    let plain = sqlx::PgPool::connect(&server.url()).await.unwrap();
    sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&plain)
        .await
        .unwrap();
    plain.close().await;
    let connect = server
        .url()
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .options([("search_path", schema)]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(connect)
        .await
        .unwrap();
    PostgresInbox::from_pool(pool, options).await.unwrap()
}

/// Two inboxes under the same prefix in two schemas of one database (each pool's search path
/// its own schema) keep two depth counters, each following every change of state of its own
/// deliveries only.
#[tokio::test]
async fn two_schemas_under_one_prefix_keep_a_depth_counter_each() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let a = inbox_in_schema(&server, "tenant_a", InboxOptions::new().with_max_depth(4)).await;
    let b = inbox_in_schema(&server, "tenant_b", InboxOptions::new().with_max_depth(2)).await;
    for id in ["evt_b1", "evt_b2"] {
        assert_eq!(b.accept(&delivery(id)).await.unwrap(), Accepted::New);
    }
    assert!(matches!(
        b.accept(&delivery("evt_b3")).await,
        Err(InboxError::Full)
    ));
    inbox_backend::the_depth_limit_follows_every_change_of_state(a.clone()).await;
    assert!(matches!(
        b.accept(&delivery("evt_b3")).await,
        Err(InboxError::Full)
    ));
    for (schema, waiting) in [("tenant_a", 0_i64), ("tenant_b", 2)] {
        let counted: i64 = sqlx::query_scalar(&format!(
            "SELECT sum(n)::bigint FROM {schema}.tower_webhook_depth"
        ))
        .fetch_one(a.pool())
        .await
        .unwrap();
        assert_eq!(counted, waiting, "{schema}");
    }
}

/// A Workers-like loop on `inbox`: claims, and when nothing was due waits for work (up to 60 s,
/// far longer than the test), until it claimed one delivery.
async fn first_claim_after_waiting(inbox: PostgresInbox) {
    loop {
        let claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
        if !claims.is_empty() {
            return;
        }
        inbox.wait_for_work(Duration::from_secs(60)).await.unwrap();
    }
}

/// `waiter` finds nothing and waits; an accept through `accepter` wakes it within a second.
async fn an_accept_wakes(waiter: &PostgresInbox, accepter: &PostgresInbox, id: &str) {
    let worker = tokio::spawn(first_claim_after_waiting(waiter.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!worker.is_finished(), "{id}: nothing to claim yet");
    assert_eq!(accepter.accept(&delivery(id)).await.unwrap(), Accepted::New);
    tokio::time::timeout(Duration::from_secs(1), worker)
        .await
        .unwrap_or_else(|_| panic!("{id}: the waiting worker was not woken within 1 s"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_worker_wakes_at_once_on_an_accept_in_its_process_or_another_replica() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let options = InboxOptions::new().with_prefix(prefix()).unwrap();
    // Two pools: two replicas.
    let (here, there) = (
        server.inbox(options.clone()).await,
        server.inbox(options).await,
    );
    an_accept_wakes(&here, &here, "evt_same_process").await;
    an_accept_wakes(&here, &there, "evt_other_replica").await;
    an_accept_wakes(&there, &here, "evt_other_way").await;

    // The listener's connection is killed while a worker waits: it listens again, and the
    // next accept in the other replica wakes the worker still waiting.
    let worker = tokio::spawn(first_claim_after_waiting(here.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(here.pool())
    .await
    .unwrap();
    assert!(!killed.is_empty(), "the waiting inboxes listen");
    for pid in &killed {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(here.pool())
            .await
            .unwrap();
    }
    // Listening again takes a moment (the worker would poll meanwhile; its claim after the
    // listener is back finds nothing).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!worker.is_finished(), "nothing to claim yet");
    assert_eq!(
        there.accept(&delivery("evt_after_kill")).await.unwrap(),
        Accepted::New
    );
    tokio::time::timeout(Duration::from_secs(1), worker)
        .await
        .expect("the waiting worker was not woken after its listener was killed")
        .unwrap();
    an_accept_wakes(&there, &here, "evt_after_kill_other_way").await;
}

/// An accept whose `INSERT` the server committed but whose answer never came back, its
/// future dropped meanwhile (a sender that hung up, a timeout around the call) or its
/// connection cut (an error), still wakes a worker waiting in another replica (its own pool
/// and listener) at once, not at its fallback poll (60 s here).
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_whose_answer_never_came_still_wakes_a_worker_in_another_replica() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let options = InboxOptions::new().with_prefix(prefix()).unwrap();
    let proxy = inbox_common::proxy::Proxy::start(server.port).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port());
    let accepter = PostgresInbox::connect(&url, options.clone()).await.unwrap();
    let waiter = server.inbox(options).await;
    for (id, drop_it) in [("evt_dropped", true), ("evt_cut", false)] {
        let worker = tokio::spawn(first_claim_after_waiting(waiter.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!worker.is_finished(), "{id}: nothing to claim yet");
        proxy.arm(id.as_bytes());
        let stored = delivery(id);
        let accept = accepter.accept(&stored);
        if drop_it {
            // Dropped before the answer (the proxy holds it back for 200 ms, then cuts).
            let answered = tokio::time::timeout(Duration::from_millis(100), accept).await;
            assert!(answered.is_err(), "{id}: answered {answered:?}");
        } else {
            let answered = accept.await;
            assert!(answered.is_err(), "{id}: answered {answered:?}");
        }
        // The server committed it.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while waiter.get(stored.key()).await.unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "{id} was not stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::timeout(Duration::from_secs(1), worker)
            .await
            .unwrap_or_else(|_| panic!("{id}: the waiting worker was not woken within 1 s"))
            .unwrap();
    }
    assert_eq!(proxy.cuts(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_accepts_leaves_no_delivery_waiting_for_the_poll_in_another_replica() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let options = InboxOptions::new().with_prefix(prefix()).unwrap();
    let (worker, sender) = (
        server.inbox(options.clone()).await,
        server.inbox(options).await,
    );
    let claimer = tokio::spawn(async move {
        let mut claimed = 0;
        while claimed < 50 {
            let claims = worker.claim(Duration::from_secs(60), 100).await.unwrap();
            claimed += claims.len();
            if claims.is_empty() {
                worker.wait_for_work(Duration::from_secs(60)).await.unwrap();
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Bursts of accepts at once, closer together than the NOTIFY interval: the last of each
    // still wakes the worker.
    for burst in 0..5 {
        let mut accepts = tokio::task::JoinSet::new();
        for n in 0..10 {
            let sender = sender.clone();
            accepts.spawn(async move {
                sender
                    .accept(&delivery(&format!("evt_burst_{burst}_{n}")))
                    .await
                    .unwrap()
            });
        }
        while let Some(accepted) = accepts.join_next().await {
            assert_eq!(accepted.unwrap(), Accepted::New);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::timeout(Duration::from_secs(2), claimer)
        .await
        .expect("a delivery of the burst waited for the poll")
        .unwrap();
}

#[tokio::test]
async fn a_batch_of_outcomes_replaces_nul_and_refuses_an_outcome_the_handler_committed() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    inbox_backend::a_batch_of_outcomes_refuses_an_outcome_the_handler_committed(
        inbox,
        |inbox: PostgresInbox, lease| async move {
            let completion = inbox.begin_complete(&lease).await.unwrap().unwrap();
            completion.commit().await.unwrap();
            inbox
        },
        |error| tower_webhook::inbox::Finish::Dead { error },
        DeliveryState::Dead,
    )
    .await;
}

#[tokio::test]
async fn renewing_a_batch_skips_a_row_held_by_an_open_completion_without_calling_it_lost() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server
        .inbox(
            InboxOptions::new()
                .with_prefix(prefix())
                .unwrap()
                .with_timeout(Duration::from_secs(2)),
        )
        .await;
    let (held, free) = (delivery("evt_held"), delivery("evt_free"));
    inbox.accept(&held).await.unwrap();
    inbox.accept(&free).await.unwrap();
    let claims = inbox.claim(Duration::from_secs(60), 2).await.unwrap();
    let leases: Vec<_> = claims.iter().map(|claim| claim.lease.clone()).collect();
    let held_lease = leases
        .iter()
        .find(|lease| lease.key() == held.key())
        .unwrap()
        .clone();
    let completion = inbox.begin_complete(&held_lease).await.unwrap().unwrap();
    let started = std::time::Instant::now();
    let answers = inbox
        .renew_all(&leases, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "renew_all waited for the open completion's row lock"
    );
    assert_eq!(answers, [true, true], "a skipped lease is not lost");
    completion.commit().await.unwrap();
    let answers = inbox
        .renew_all(&leases, Duration::from_secs(60))
        .await
        .unwrap();
    let expected: Vec<bool> = leases
        .iter()
        .map(|lease| lease.key() != held.key())
        .collect();
    assert_eq!(
        answers, expected,
        "a completed delivery's lease is not renewed"
    );
}

/// As on `SQLite`: a row that cannot be read (headers that are not JSON) is skipped by a batch
/// claim, not fail it, so the deliveries claimed with it come out.
#[tokio::test]
async fn a_batch_claim_with_one_unreadable_delivery_returns_the_others() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let prefix = prefix();
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix.clone()).unwrap())
        .await;
    let odd = delivery("evt_odd");
    inbox.accept(&odd).await.unwrap();
    inbox.accept(&delivery("evt_fine")).await.unwrap();
    sqlx::query(&format!(
        "UPDATE {prefix}deliveries SET headers = 'not json' WHERE event_id = 'evt_odd'"
    ))
    .execute(inbox.pool())
    .await
    .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        match inbox.claim(Duration::from_millis(100), 10).await {
            Ok(claims) => seen.extend(
                claims
                    .iter()
                    .map(|claim| claim.record.delivery.facts().id.clone()),
            ),
            Err(error) => seen.push(format!("error: {error}")),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        seen.iter().any(|id| id == "evt_fine"),
        "a fine delivery claimed with an unreadable one is never returned: {seen:?}"
    );
}

/// As on `SQLite`: the unreadable row itself is dead-lettered by the claim that took it.
#[tokio::test]
async fn an_unreadable_row_is_dead_lettered_by_the_claim_that_took_it() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let prefix = prefix();
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix.clone()).unwrap())
        .await;
    let table = format!("{prefix}deliveries");
    inbox_backend::an_unreadable_row_is_dead_lettered_by_the_claim_that_took_it(
        inbox,
        async |inbox: &PostgresInbox| {
            sqlx::query(&format!(
                "UPDATE {table} SET headers = 'not json' WHERE event_id = 'evt_odd'"
            ))
            .execute(inbox.pool())
            .await
            .unwrap();
        },
        async |inbox: &PostgresInbox| {
            sqlx::query_scalar(&format!(
                "SELECT last_error FROM {table} WHERE event_id = 'evt_odd'"
            ))
            .fetch_one(inbox.pool())
            .await
            .unwrap()
        },
    )
    .await;
}

/// A database written by a version before the history (schema version 2), with a dead
/// delivery: connecting adds the column; the delivery reads back with no history, and what
/// happens to it from then on is kept.
#[tokio::test]
async fn a_database_from_before_the_history_is_migrated_and_keeps_history_from_then_on() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    sqlx::raw_sql(
        "ALTER TABLE tower_webhook_deliveries DROP COLUMN history; \
         DELETE FROM tower_webhook_schema_version WHERE version = 3;",
    )
    .execute(inbox.pool())
    .await
    .unwrap();
    // As version 2 wrote it: dead after two attempts.
    sqlx::query(
        "INSERT INTO tower_webhook_deliveries (key, state, attempts, due_at, accepted_at, \
         finished_at, last_error, path, headers, body, scheme, event_id) \
         VALUES (sha256('evt_v2'::bytea), 'dead', 2, now(), now(), now(), 'gave up', \
         '/webhooks', '[]', '\\x7b7d', 'sotion', 'evt_v2')",
    )
    .execute(inbox.pool())
    .await
    .unwrap();
    inbox.pool().close().await;
    let inbox = server.inbox(InboxOptions::new()).await;
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM tower_webhook_schema_version ORDER BY version")
            .fetch_all(inbox.pool())
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3]);
    inbox_backend::an_old_dead_delivery_keeps_history_from_then_on(&inbox).await;
}

/// A history that is not an array, or holds entries that are not ours (written by hand), makes
/// neither the delivery unreadable nor its next outcome fail: what cannot be read is left out,
/// and the outcome is recorded.
#[tokio::test]
async fn a_history_that_cannot_be_read_reads_as_empty_and_starts_again() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let prefix = prefix();
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix.clone()).unwrap())
        .await;
    let odd = delivery("evt_odd_history");
    assert_eq!(inbox.accept(&odd).await.unwrap(), Accepted::New);
    for garbage in [
        "\"text\"",
        "{\"an\": \"object\"}",
        "[5, {\"kind\": \"exploded\"}]",
        // What broke SQLite's append: an entry that is a string.
        "[\"x\", {\"kind\": \"exploded\"}]",
    ] {
        sqlx::query(&format!(
            "UPDATE {prefix}deliveries SET history = $1::jsonb"
        ))
        .bind(garbage)
        .execute(inbox.pool())
        .await
        .unwrap();
        let record = inbox.get(odd.key()).await.unwrap().unwrap();
        assert!(record.history.is_empty(), "{garbage}: {:?}", record.history);
        let claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
        let outcome = inbox
            .finish(&[(
                claims[0].lease.clone(),
                tower_webhook::inbox::Finish::Retry {
                    delay: Duration::ZERO,
                    error: "boom".into(),
                },
            )])
            .await
            .unwrap();
        assert_eq!(outcome, [true], "{garbage}");
        let record = inbox.get(odd.key()).await.unwrap().unwrap();
        assert_eq!(
            history(&record).pop(),
            Some((
                record.attempts,
                HistoryKind::Retried,
                Some("boom".to_owned())
            )),
            "{garbage}"
        );
    }
}

/// Postgres stores the time accepted in microseconds: deliveries accepted within one
/// millisecond, some in the same microsecond, are paged through in order, each once (the
/// cursor keeps the microseconds), and a `since` between two microseconds leaves out the
/// earlier one.
#[tokio::test]
async fn deliveries_accepted_in_one_millisecond_are_paged_through_each_once() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let prefix = prefix();
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix.clone()).unwrap())
        .await;
    for n in 0..12 {
        let stored = delivery(&format!("evt_same_{n}"));
        assert_eq!(inbox.accept(&stored).await.unwrap(), Accepted::New);
        // 0, 250 or 500 microseconds past one millisecond.
        sqlx::query(&format!(
            "UPDATE {prefix}deliveries SET accepted_at = \
             timestamptz '2026-09-21 10:00:00.123+00' + $2 * interval '250 microseconds' \
             WHERE key = $1"
        ))
        .bind(stored.key().as_bytes().as_slice())
        .bind(f64::from(n % 3))
        .execute(inbox.pool())
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut filter = Filter::new().limit(5);
    loop {
        let page = inbox.search(&filter).await.unwrap();
        seen.extend(
            page.records
                .iter()
                .map(|r| (r.accepted_at, *r.delivery.key())),
        );
        match page.next {
            Some(next) => filter = filter.after(next.to_string().parse().unwrap()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "repeated or out of order");
    assert_eq!(seen.len(), 12);
    let base = seen[0].0;
    assert_eq!(base.microsecond(), 123_000);
    assert_eq!(seen[11].0.microsecond(), 123_500, "microseconds read back");
    let since = |at| {
        let inbox = &inbox;
        async move {
            inbox
                .search(&Filter::new().since(at))
                .await
                .unwrap()
                .records
                .len()
        }
    };
    assert_eq!(since(base).await, 12);
    assert_eq!(since(base + Duration::from_nanos(1)).await, 8);
    assert_eq!(since(base + Duration::from_micros(250)).await, 8);
    assert_eq!(since(base + Duration::from_micros(251)).await, 4);
}

/// The rows the statements since the last call read through the inbox's `due` index (the
/// partial index of the pending and running deliveries), once the server's statistics show
/// `updates` row updates on the table in all (statistics are flushed a while after each
/// statement: waited for, at most 30 s).
async fn due_index_reads(pool: &sqlx::PgPool, table: &str, updates: i64) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (seen, read): (i64, i64) = sqlx::query_as(
            "SELECT t.n_tup_upd, i.idx_tup_read FROM pg_stat_user_tables AS t \
             JOIN pg_stat_user_indexes AS i ON i.relid = t.relid \
             WHERE t.relname = $1 AND i.indexrelname = $1 || '_due'",
        )
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap();
        if seen >= updates {
            return read;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{seen} of {updates} updates in the statistics after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Statistics taken while the inbox was idle (every delivery done: no pending or running row)
/// make the planner believe the partial `due` index is empty. A statement that finds a
/// delivery by its key and checks that it is running must still look it up by its key, not scan
/// the `due` index's every running delivery (1,000 here, once per statement: a drain slowed
/// threefold on the bench, until autovacuum analyzed the table again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_found_by_key_even_with_statistics_from_an_idle_inbox() {
    use tower_webhook::inbox::Finish;
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let prefix = prefix();
    let table = format!("{prefix}deliveries");
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(&prefix).unwrap())
        .await;
    let lease = Duration::from_secs(60);
    // Idle: a few deliveries, all done; then the table analyzed.
    for n in 0..20 {
        inbox
            .accept(&delivery(&format!("evt_idle_{n}")))
            .await
            .unwrap();
    }
    for claim in inbox.claim(lease, 20).await.unwrap() {
        assert!(inbox.complete(&claim.lease).await.unwrap());
    }
    sqlx::query(&format!("ANALYZE {table}"))
        .execute(inbox.pool())
        .await
        .unwrap();
    // A burst: 1,000 deliveries, all running.
    for n in 0..1_000 {
        inbox
            .accept(&delivery(&format!("evt_burst_{n}")))
            .await
            .unwrap();
    }
    let claims = inbox.claim(lease, 1_000).await.unwrap();
    assert_eq!(claims.len(), 1_000);
    let before = due_index_reads(inbox.pool(), &table, 20 + 20 + 1_000).await;
    // One outcome alone, one renewal alone, a batch of 64 outcomes, a batch of renewals.
    assert!(inbox.complete(&claims[0].lease).await.unwrap());
    assert!(inbox.renew(&claims[1].lease, lease).await.unwrap());
    let outcomes: Vec<_> = claims[2..66]
        .iter()
        .map(|claim| (claim.lease.clone(), Finish::Done))
        .collect();
    assert!(inbox
        .finish(&outcomes)
        .await
        .unwrap()
        .iter()
        .all(|done| *done));
    let leases: Vec<_> = claims[66..130]
        .iter()
        .map(|claim| claim.lease.clone())
        .collect();
    assert_eq!(inbox.renew_all(&leases, lease).await.unwrap().len(), 64);
    let after = due_index_reads(inbox.pool(), &table, 20 + 20 + 1_000 + 1 + 1 + 64 + 64).await;
    assert!(
        after - before < 200,
        "the outcomes and renewals of 130 deliveries read {} rows of the due index",
        after - before
    );
}
