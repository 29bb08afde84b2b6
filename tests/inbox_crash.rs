//! Crash recovery on `SQLite` (features `sqlite`, `axum`, `testing`): see
//! `tests/inbox_common/crash.rs`; `tests/inbox_postgres.rs` runs it on Postgres. Also: a
//! receiver killed while its completer flushes batches of outcomes never leaves a delivery done
//! whose handler did not finish.
#![cfg(all(feature = "sqlite", feature = "axum", feature = "testing", unix))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod inbox_common;

use axum::http::StatusCode;
use axum::Extension;
use inbox_common::crash;
use tower_webhook::inbox::{sqlx, Attempt, DeliveryState, InboxBackend, InboxOptions, SqliteInbox};
use tower_webhook::WebhookMeta;

/// The handler: writes its effect and completes the delivery in one transaction.
async fn handle(
    Extension(attempt): Extension<Attempt<SqliteInbox>>,
    meta: WebhookMeta,
) -> StatusCode {
    crash::pause().await;
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

/// The receiver, when this binary runs as the child: serves until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the crash test"]
async fn crash_child() {
    let Some((url, port_file)) = crash::child_settings() else {
        return;
    };
    let inbox = SqliteInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    crash::serve(inbox, handle, &port_file).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_while_it_works_loses_nothing_and_applies_each_effect_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let inbox = SqliteInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    // No unique constraint: a second effect for one event would be counted, not refused.
    sqlx::raw_sql("CREATE TABLE effects (event_id TEXT NOT NULL)")
        .execute(inbox.pool())
        .await
        .unwrap();
    crash::run("crash_child", &url, &inbox, || async {
        sqlx::query_scalar("SELECT event_id FROM effects")
            .fetch_all(inbox.pool())
            .await
            .unwrap()
    })
    .await;
}

/// A handler without its own completion: it writes that its attempt finished (committed on its
/// own), then answers `200`, and the workers' completer marks the delivery done in its next
/// flush.
async fn finish_then_answer(
    Extension(attempt): Extension<Attempt<SqliteInbox>>,
    meta: WebhookMeta,
) -> StatusCode {
    crash::pause().await;
    let written = sqlx::query("INSERT INTO finished (event_id, attempt) VALUES ($1, $2)")
        .bind(meta.id())
        .bind(i64::from(attempt.number()))
        .execute(attempt.backend().pool())
        .await;
    if written.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    StatusCode::OK
}

/// The receiver of the batched-completions test, when this binary runs as the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the batched completions crash test"]
async fn crash_child_batched() {
    let Some((url, port_file)) = crash::child_settings() else {
        return;
    };
    let inbox = SqliteInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    crash::serve(inbox, finish_then_answer, &port_file).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_while_outcomes_are_flushed_never_marks_done_an_unfinished_handler() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let inbox = SqliteInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE finished (event_id TEXT NOT NULL, attempt INTEGER NOT NULL)")
        .execute(inbox.pool())
        .await
        .unwrap();
    let acknowledged = crash::kill_while_sending("crash_child_batched", &url, &inbox).await;

    // Each delivery is done by an attempt whose handler finished: the attempt that marked it
    // done (its count of attempts) wrote its row before answering.
    let finished: std::collections::HashSet<(String, i64)> =
        sqlx::query_as("SELECT event_id, attempt FROM finished")
            .fetch_all(inbox.pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    let done = inbox
        .list(DeliveryState::Done, acknowledged.len() + 1)
        .await
        .unwrap();
    assert_eq!(done.len(), acknowledged.len());
    let unfinished: Vec<_> = done
        .iter()
        .map(|record| {
            (
                record.delivery.facts().id.clone(),
                i64::from(record.attempts),
            )
        })
        .filter(|done_by| !finished.contains(done_by))
        .collect();
    assert!(
        unfinished.is_empty(),
        "done by an attempt whose handler did not finish: {unfinished:?}"
    );
    // The kills interrupted some handlers or flushes: an attempt after the first.
    let again = done.iter().filter(|record| record.attempts > 1).count();
    assert!(again > 0, "no delivery was interrupted");
}
