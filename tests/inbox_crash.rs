//! Crash recovery on `SQLite` (features `sqlite`, `axum`, `testing`): see
//! `tests/inbox_common/crash.rs`; `tests/inbox_postgres.rs` runs it on Postgres.
#![cfg(all(feature = "sqlite", feature = "axum", feature = "testing", unix))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod inbox_common;

use axum::http::StatusCode;
use axum::Extension;
use inbox_common::crash;
use tower_webhook::inbox::{sqlx, Attempt, InboxOptions, SqliteInbox};
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
