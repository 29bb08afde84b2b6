//! Crash recovery on `SQLite` (features `sqlite`, `axum`, `testing`): a receiver in inbox mode,
//! in a child process (this test binary, running the ignored test `crash_child`), is killed
//! with SIGKILL several times while it accepts deliveries and its handlers run; restarted, it
//! processes every delivery it acknowledged, and the transactional handler's effect table holds
//! exactly one row per event.
//!
//! `INBOX_CRASH_EVENTS` sets how many events are sent (default 2,000), over
//! `INBOX_CRASH_KILLS` kills (default 4).
#![cfg(all(feature = "sqlite", feature = "axum", feature = "testing", unix))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_webhook::inbox::{sqlx, Attempt, InboxBackend, InboxOptions, SqliteInbox, Workers};
use tower_webhook::testing::{sotion_event, sotion_request};
use tower_webhook::{EventRouter, Scheme, Secret, WebhookLayer, WebhookMeta};

const SECRET: &str = "whsec_inbox_crash";
/// The child's settings: where its database is, and where it writes its port.
const CHILD_ENV: &str = "TOWER_WEBHOOK_CRASH_CHILD";

/// The handler: writes its effect and completes the delivery in one transaction, after a short
/// random pause (so that kills land in the middle of handlers).
async fn handle(
    Extension(attempt): Extension<Attempt<SqliteInbox>>,
    meta: WebhookMeta,
) -> StatusCode {
    let pause = rand::random::<u64>() % 20;
    tokio::time::sleep(Duration::from_millis(pause)).await;
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
#[ignore = "the child process of `a_receiver_killed_while_it_works_loses_nothing_and_applies_each_effect_once`"]
async fn crash_child() {
    let Ok(settings) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (db, port_file) = settings.split_once('|').unwrap();
    let inbox = SqliteInbox::open(db, InboxOptions::new()).await.unwrap();
    // No unique constraint: a second effect for one event would be counted, not refused.
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS effects (event_id TEXT NOT NULL)")
        .execute(inbox.pool())
        .await
        .unwrap();
    let events = EventRouter::new().fallback(handle);
    let layer = WebhookLayer::builder(Scheme::sotion())
        .with_secret(SECRET)
        .with_inbox(inbox.clone())
        .build()
        .unwrap();
    let _workers = {
        use axum::handler::Handler;
        Workers::new(inbox, events.clone().with_state(()))
            .with_lease(Duration::from_secs(1))
            .with_poll_interval(Duration::from_millis(10))
            .with_backoff(Duration::from_millis(10))
            .start()
            .unwrap()
    };
    let app = Router::new().route("/webhooks", post(events).route_layer(layer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = format!("{port_file}.tmp");
    std::fs::write(&written, port.to_string()).unwrap();
    std::fs::rename(&written, port_file).unwrap();
    axum::serve(listener, app).await.unwrap();
}

/// A child receiver, killed (SIGKILL) when dropped.
struct Receiver(Child);

impl Receiver {
    fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A child receiver on `db`; returns it and its port.
fn spawn_child(db: &Path, dir: &Path, round: usize) -> (Receiver, u16) {
    let port_file = dir.join(format!("port-{round}"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture"])
        .env(
            CHILD_ENV,
            format!("{}|{}", db.display(), port_file.display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Receiver(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            return (child, text.parse().unwrap());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Posts event `id` to the child; `Some(status)` if it answered.
async fn post_event(port: u16, id: &str) -> Option<u16> {
    let request = sotion_request(
        &Secret::new(SECRET).unwrap(),
        sotion_event("member.created", id, "site_1"),
    );
    let (parts, body) = request.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .ok()?
        .to_bytes();
    let mut head =
        format!("POST /webhooks HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (name, value) in &parts.headers {
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(value.to_str().ok()?);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(&body).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let line = String::from_utf8_lossy(&answer);
    line.split(' ').nth(1)?.parse().ok()
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_while_it_works_loses_nothing_and_applies_each_effect_once() {
    let total = env_number("INBOX_CRASH_EVENTS", 2000);
    let kills = env_number("INBOX_CRASH_KILLS", 4).max(1);
    let dir = tempfile::tempdir().unwrap();
    let db: PathBuf = dir.path().join("inbox.db");
    let mut acknowledged = HashSet::new();
    let mut next = 0;
    for round in 0..kills {
        let (child, port) = spawn_child(&db, dir.path(), round);
        let batch_end = total * (round + 1) / kills;
        while next < batch_end {
            let id = format!("evt_{next}");
            if post_event(port, &id).await == Some(200) {
                acknowledged.insert(id);
            }
            next += 1;
        }
        // Killed while its handlers still run on what it just accepted.
        child.kill();
    }
    assert!(
        acknowledged.len() == total,
        "only {} of {total} deliveries were acknowledged",
        acknowledged.len()
    );

    // The kills left work unfinished (else this test would show nothing).
    let inbox = SqliteInbox::open(&db, InboxOptions::new()).await.unwrap();
    let left = inbox.stats().await.unwrap();
    assert!(left.depth() > 0, "the kills interrupted nothing: {left:?}");

    // Restarted: it finishes everything.
    let (child, _) = spawn_child(&db, dir.path(), kills);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stats = inbox.stats().await.unwrap();
        if stats.depth() == 0 {
            assert_eq!(stats.dead, 0);
            assert_eq!(stats.done, total as u64, "{stats:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still waiting after the restart: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill();

    let rows: Vec<String> = sqlx::query_scalar("SELECT event_id FROM effects")
        .fetch_all(inbox.pool())
        .await
        .unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for row in rows {
        *counts.entry(row).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "effects applied twice: {twice:?}");
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged, never processed: {missing:?}"
    );
}
