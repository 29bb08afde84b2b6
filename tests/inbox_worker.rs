//! The inbox's workers and the layer's inbox mode against real `SQLite` files in temporary
//! directories (features `sqlite`, `axum`, `testing`). The scenarios are in
//! `tests/inbox_common`, run against Postgres too by `tests/inbox_postgres.rs`.
#![cfg(all(feature = "sqlite", feature = "axum", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod inbox_common;

use std::time::Duration;

use axum::http::StatusCode;
use axum::Extension;
use inbox_common::{delivery, receiver, router, send, wait_for, App, SECRET};
use tower_webhook::inbox::{
    Attempt, DeliveryState, InboxBackend, InboxOptions, SqliteInbox, Workers,
};
use tower_webhook::{EventRouter, WebhookMeta};

async fn inbox(dir: &tempfile::TempDir) -> SqliteInbox {
    SqliteInbox::open(dir.path().join("inbox.db"), InboxOptions::new())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_reaches_the_router_with_its_meta_envelope_and_attempt() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::a_delivery_reaches_the_router_with_its_meta_envelope_and_attempt(
        inbox(&dir).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_fails_twice_then_succeeds_is_done_at_attempt_3() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::a_handler_that_fails_twice_then_succeeds_is_done_at_attempt_3(inbox(&dir).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_always_fails_is_dead_lettered_after_the_maximum_and_replay_processes_it() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::a_handler_that_always_fails_is_dead_lettered_after_the_maximum_and_replay_processes_it(inbox(&dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried_and_its_panic_is_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::a_panicking_handler_is_retried_and_its_panic_is_the_last_error(inbox(&dir).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_timeout_is_stopped_and_counted_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::a_handler_past_its_timeout_is_stopped_and_counted_as_failed(inbox(&dir).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_longer_than_its_lease_keeps_it_by_renewing_and_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::a_handler_longer_than_its_lease_keeps_it_by_renewing_and_runs_once(
        inbox(&dir).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_short_handlers_finish_and_releases_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::graceful_shutdown_lets_short_handlers_finish_and_releases_the_rest(
        inbox(&dir).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_s_delivery_is_answered_before_it_runs_and_processed_later() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::a_slow_handler_s_delivery_is_answered_before_it_runs_and_processed_later(
        inbox(&dir).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_while_pending_running_done_or_dead_never_runs_the_handler_again() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::a_duplicate_while_pending_running_done_or_dead_never_runs_the_handler_again(
        inbox(&dir).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_delivery_is_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::a_forged_delivery_is_never_stored(inbox(&dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_whose_lease_is_taken_from_it_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::a_handler_whose_lease_is_taken_from_it_is_stopped(inbox(&dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_handler_commits_its_effect_with_the_completion() {
    use tower_webhook::inbox::sqlx;

    async fn handle(
        Extension(attempt): Extension<Attempt<SqliteInbox>>,
        meta: WebhookMeta,
    ) -> StatusCode {
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

    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(&dir).await;
    sqlx::raw_sql("CREATE TABLE effects (event_id TEXT PRIMARY KEY)")
        .execute(inbox.pool())
        .await
        .unwrap();
    let stored = delivery("evt_tx");
    inbox.accept(&stored).await.unwrap();
    let service = {
        use axum::handler::Handler;
        EventRouter::new().fallback(handle).with_state(())
    };
    let running = Workers::new(inbox.clone(), service)
        .with_poll_interval(Duration::from_millis(20))
        .start()
        .unwrap();

    let record = wait_for(&inbox, stored.key(), DeliveryState::Done).await;
    assert_eq!(record.attempts, 1);
    let effects: Vec<String> = sqlx::query_scalar("SELECT event_id FROM effects")
        .fetch_all(inbox.pool())
        .await
        .unwrap();
    assert_eq!(effects, ["evt_tx"]);
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_full_or_failing_inbox_is_answered_503_with_retry_after_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(
        dir.path().join("full.db"),
        InboxOptions::new().with_max_depth(1),
    )
    .await
    .unwrap();
    let router = receiver(&inbox, &App::default());
    assert_eq!(send(&router, SECRET, "evt_1").await.0, StatusCode::OK);
    let (status, _, text) = send(&router, SECRET, "evt_2").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        text.contains("inbox_full") && text.contains("retry-after=30"),
        "{text}"
    );
    // A duplicate is still answered as one.
    assert!(send(&router, SECRET, "evt_1").await.1);

    // The database fails: 503 inbox_unavailable, nothing acknowledged.
    tower_webhook::inbox::sqlx::raw_sql("DROP TABLE tower_webhook_deliveries")
        .execute(inbox.pool())
        .await
        .unwrap();
    let (status, _, text) = send(&router, SECRET, "evt_3").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        text.contains("inbox_unavailable") && text.contains("retry-after=30"),
        "{text}"
    );
}

#[tokio::test]
async fn options_that_cannot_work_are_refused_when_the_workers_start() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(&dir).await;
    let error = Workers::new(inbox, router::<SqliteInbox>(&App::default()))
        .with_lease(Duration::ZERO)
        .start()
        .unwrap_err();
    assert!(error.to_string().contains("Workers::with_lease"), "{error}");
}

#[cfg(feature = "metrics")]
#[test]
fn metrics_count_stored_deliveries_attempts_by_outcome_dead_letters_and_the_depth() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tower_webhook::observe;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // One thread: the recorder is installed for it, and the workers' tasks run on it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let inbox = inbox(&dir).await;
            let app = App::default();
            app.fail("evt_m_dead", u32::MAX);
            let router = receiver(&inbox, &app);
            for id in ["evt_m_ok", "evt_m_dead"] {
                assert_eq!(send(&router, SECRET, id).await.0, StatusCode::OK);
            }
            assert!(send(&router, SECRET, "evt_m_ok").await.1);
            let running = inbox_common::workers(&inbox, &app).start().unwrap();
            wait_for(&inbox, &inbox_common::key("evt_m_ok"), DeliveryState::Done).await;
            wait_for(
                &inbox,
                &inbox_common::key("evt_m_dead"),
                DeliveryState::Dead,
            )
            .await;
            running.shutdown(Duration::from_secs(5)).await;
        });
    });

    let metrics: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    let counter = |name: &str, label: &str| {
        metrics
            .iter()
            .find(|(n, labels, _)| {
                n == name && (label.is_empty() || labels.iter().any(|l| l == label))
            })
            .map(|(_, _, value)| match value {
                DebugValue::Counter(count) => *count,
                _ => u64::MAX,
            })
    };
    assert_eq!(counter(observe::INBOX_ATTEMPTS, "outcome=done"), Some(1));
    assert_eq!(counter(observe::INBOX_ATTEMPTS, "outcome=retried"), Some(2));
    assert_eq!(counter(observe::INBOX_ATTEMPTS, "outcome=dead"), Some(1));
    assert_eq!(counter(observe::INBOX_DEAD_LETTERS, ""), Some(1));
    assert_eq!(counter(observe::DUPLICATES, ""), Some(1));
    // Two answered `stored`, and the gauges were set when the workers started (two waiting).
    let stored = metrics.iter().find(|(name, labels, _)| {
        name == observe::DURATION && labels.iter().any(|l| l == "outcome=stored")
    });
    assert!(
        matches!(stored, Some((_, _, DebugValue::Histogram(values))) if values.len() == 2),
        "{stored:?}"
    );
    let depth = metrics
        .iter()
        .find(|(name, _, _)| name == observe::INBOX_DEPTH);
    assert!(
        matches!(depth, Some((_, _, DebugValue::Gauge(depth))) if (depth.0 - 2.0).abs() < 1e-9),
        "{depth:?}"
    );
    assert!(metrics
        .iter()
        .any(|(name, _, _)| name == observe::INBOX_OLDEST_WAITING));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_whose_text_holds_a_nul_byte_is_retried_and_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::a_failure_whose_text_holds_a_nul_byte_is_retried_and_dead_lettered(
        inbox(&dir).await,
    )
    .await;
}

/// The completion scenarios' effect on `SQLite`: a row in `{prefix}effects`, keyed by event id.
impl inbox_common::completion::Transactional for SqliteInbox {
    type Completion = tower_webhook::inbox::Completion<tower_webhook::inbox::sqlx::Sqlite>;

    async fn prepare(&self) {
        let table = format!("{}effects", self.options().prefix());
        tower_webhook::inbox::sqlx::raw_sql(&format!(
            "CREATE TABLE {table} (event_id TEXT PRIMARY KEY)"
        ))
        .execute(self.pool())
        .await
        .unwrap();
    }

    async fn begin(
        attempt: &Attempt<Self>,
    ) -> Result<Option<Self::Completion>, tower_webhook::inbox::InboxError> {
        attempt.begin_complete().await
    }

    async fn write(&self, completion: &mut Self::Completion, id: &str) {
        let table = format!("{}effects", self.options().prefix());
        tower_webhook::inbox::sqlx::query(&format!("INSERT INTO {table} (event_id) VALUES ($1)"))
            .bind(id)
            .execute(&mut **completion)
            .await
            .unwrap();
    }

    async fn fail(&self, completion: &mut Self::Completion, id: &str) {
        let table = format!("{}effects", self.options().prefix());
        let duplicate = tower_webhook::inbox::sqlx::query(&format!(
            "INSERT INTO {table} (event_id) VALUES ($1)"
        ))
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
        tower_webhook::inbox::sqlx::query_scalar(&format!("SELECT event_id FROM {table}"))
            .fetch_all(self.pool())
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_whose_transaction_failed_is_never_reported_committed() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::completion::a_completion_whose_transaction_failed_is_never_reported_committed(
        inbox(&dir).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_dropped_without_commit_is_a_failed_attempt_despite_a_2xx() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::completion::a_completion_dropped_without_commit_is_a_failed_attempt_despite_a_2xx(
        inbox(&dir).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_held_open_past_the_lease_commits_once() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::completion::a_completion_held_open_past_the_lease_commits_once(inbox(&dir).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_committed_runs_to_its_end_and_is_reported_done() {
    let dir = tempfile::tempdir().unwrap();
    inbox_common::completion::a_handler_that_committed_runs_to_its_end_and_is_reported_done(
        inbox(&dir).await,
    )
    .await;
}

/// An `on_outcome` hook that blocks its thread (a synchronous write to a slow log, say) holds up
/// the completer's reports; it must not hold up the lease renewals of the handlers still
/// running, or each of them is stopped when its lease runs out, and run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocking_outcome_hook_does_not_stop_the_renewals_of_running_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(&dir).await;
    let app = App::default();
    app.sleep("evt_long", Duration::from_millis(2500));
    let quick = delivery("evt_quick");
    let long = delivery("evt_long");
    inbox.accept(&quick).await.unwrap();
    inbox.accept(&long).await.unwrap();
    let blocked = std::sync::atomic::AtomicBool::new(false);
    // A 900 ms lease, renewed every 300 ms; the hook blocks its thread 2 s once.
    let running = inbox_common::workers(&inbox, &app)
        .with_lease(Duration::from_millis(900))
        .on_outcome(move |_, _, _| {
            if !blocked.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(2));
            }
        })
        .start()
        .unwrap();
    let record = wait_for(&inbox, long.key(), DeliveryState::Done).await;
    assert_eq!(
        app.runs_of("evt_long"),
        [1],
        "the long handler was stopped and run again"
    );
    assert_eq!(record.attempts, 1);
    running.shutdown(Duration::from_secs(5)).await;
}

/// An outcome waiting for the completer (here behind a hook that blocks its thread) keeps its
/// lease: a handler that answered `2xx` is not run again because its outcome was recorded
/// after the lease it ran under would have run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outcome_waiting_for_the_completer_keeps_its_lease_and_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(&dir).await;
    let app = App::default();
    app.sleep("evt_second", Duration::from_millis(200));
    let first = delivery("evt_first");
    let second = delivery("evt_second");
    inbox.accept(&first).await.unwrap();
    inbox.accept(&second).await.unwrap();
    let blocked = std::sync::atomic::AtomicBool::new(false);
    // A 900 ms lease; the first outcome's report blocks the completer 2 s, while the second
    // handler's outcome waits behind it.
    let running = inbox_common::workers(&inbox, &app)
        .with_lease(Duration::from_millis(900))
        .on_outcome(move |_, _, _| {
            if !blocked.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(2));
            }
        })
        .start()
        .unwrap();
    wait_for(&inbox, second.key(), DeliveryState::Done).await;
    wait_for(&inbox, first.key(), DeliveryState::Done).await;
    running.shutdown(Duration::from_secs(5)).await;
    assert_eq!(app.runs_of("evt_first"), [1]);
    assert_eq!(
        app.runs_of("evt_second"),
        [1],
        "run again after it answered 2xx"
    );
}

/// A delivery committed by the group writer wakes the waiting workers even when the accept that
/// handed it over gave up before its answer (the sender disconnected): it must not wait for
/// the workers' fallback poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_accept_was_dropped_after_the_writer_took_it_wakes_the_workers() {
    use sqlx::Connection;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    let inbox = SqliteInbox::open(&path, InboxOptions::new()).await.unwrap();
    let app = App::default();
    let running = inbox_common::workers(&inbox, &app)
        .with_poll_interval(Duration::from_secs(60))
        .start()
        .unwrap();
    // The producer found nothing and waits (for a wake-up, or a minute).
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Another connection holds the write lock: the writer takes the delivery and waits for it.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let stored = delivery("evt_abandoned");
    let accepting = tokio::spawn({
        let (inbox, stored) = (inbox.clone(), stored.clone());
        async move { inbox.accept(&stored).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    accepting.abort();
    let _ = accepting.await;
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let state = inbox
            .get(stored.key())
            .await
            .unwrap()
            .map(|record| record.state);
        if state == Some(DeliveryState::Done) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the committed delivery ({state:?}) waited for the poll: no wake-up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_names_the_sqlite_inbox_and_its_workers_and_prints_no_secret() {
    // A path holds no password; the check is that `Debug` is there and says what it is.
    let dir = tempfile::tempdir().unwrap();
    inbox_common::debug_names_the_backend_and_prints_no_secret(
        inbox(&dir).await,
        "SqliteInbox",
        "whsec_",
    )
    .await;
}
