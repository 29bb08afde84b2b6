//! Crash recovery, for any backend: a receiver in inbox mode runs in a child process (the test
//! binary itself, running an ignored test), is killed with SIGKILL several times while it accepts
//! deliveries and its transactional handler runs, then restarted; every acknowledged delivery
//! must be processed, and the effect table must hold exactly one row per event.
//!
//! `INBOX_CRASH_EVENTS` sets how many events are sent (default 2,000), over `INBOX_CRASH_KILLS`
//! kills (default 4).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::handler::Handler;
use axum::routing::post;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_webhook::inbox::{InboxBackend, Workers};
use tower_webhook::testing::{sotion_event, sotion_request};
use tower_webhook::{EventRouter, Scheme, Secret, WebhookLayer};

pub(crate) const SECRET: &str = "whsec_inbox_crash";
/// The child's settings: `<inbox URL>|<port file>`.
pub(crate) const CHILD_ENV: &str = "TOWER_WEBHOOK_CRASH_CHILD";

/// The child's inbox URL and port file, when this process is a child.
pub(crate) fn child_settings() -> Option<(String, String)> {
    let settings = std::env::var(CHILD_ENV).ok()?;
    let (url, port_file) = settings.split_once('|')?;
    Some((url.to_owned(), port_file.to_owned()))
}

/// The child: serves `handler` in inbox mode on `inbox` until killed; writes its port to
/// `port_file` once listening.
pub(crate) async fn serve<B, H, T>(inbox: B, handler: H, port_file: &str)
where
    B: InboxBackend + Clone,
    H: Handler<T, ()>,
    T: 'static,
{
    let events = EventRouter::new().fallback(handler);
    let layer = WebhookLayer::builder(Scheme::sotion())
        .with_secret(SECRET)
        .with_inbox(inbox.clone())
        .build()
        .unwrap();
    let _workers = Workers::new(inbox, events.clone().with_state(()))
        .with_lease(Duration::from_secs(1))
        .with_poll_interval(Duration::from_millis(10))
        .with_backoff(Duration::from_millis(10))
        .start()
        .unwrap();
    let app = Router::new().route("/webhooks", post(events).route_layer(layer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = format!("{port_file}.tmp");
    std::fs::write(&written, port.to_string()).unwrap();
    std::fs::rename(&written, port_file).unwrap();
    axum::serve(listener, app).await.unwrap();
}

/// A random pause of up to 20 ms, so that kills land in the middle of handlers.
pub(crate) async fn pause() {
    let pause = rand::random::<u64>() % 20;
    tokio::time::sleep(Duration::from_millis(pause)).await;
}

/// A child receiver, killed (SIGKILL) when dropped.
pub(crate) struct Receiver(Child);

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

/// Starts this test binary's ignored test `child_test` as a receiver on `url`; returns it and
/// its port.
fn spawn_child(child_test: &str, url: &str, dir: &Path, round: usize) -> (Receiver, u16) {
    let port_file = dir.join(format!("port-{round}"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args([child_test, "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, format!("{url}|{}", port_file.display()))
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

/// Sends every event to child receivers (`child_test` on `url`), killed and restarted several
/// times while they work, then restarts one that finishes everything in `inbox`; returns the
/// acknowledged events.
pub(crate) async fn kill_while_sending<B: InboxBackend>(
    child_test: &str,
    url: &str,
    inbox: &B,
) -> HashSet<String> {
    let total = env_number("INBOX_CRASH_EVENTS", 2000);
    let kills = env_number("INBOX_CRASH_KILLS", 4).max(1);
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = HashSet::new();
    let mut next = 0;
    for round in 0..kills {
        let (child, port) = spawn_child(child_test, url, dir.path(), round);
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
    let left = inbox.stats().await.unwrap();
    assert!(left.depth() > 0, "the kills interrupted nothing: {left:?}");

    // Restarted: it finishes everything.
    let (child, _) = spawn_child(child_test, url, dir.path(), kills);
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

    acknowledged
}

/// The parent: kills and restarts child receivers (`child_test` on `url`) while sending, then
/// checks `inbox` and the effect rows `effects` reads.
pub(crate) async fn run<B, E, F>(child_test: &str, url: &str, inbox: &B, effects: E)
where
    B: InboxBackend,
    E: Fn() -> F,
    F: Future<Output = Vec<String>>,
{
    let acknowledged = kill_while_sending(child_test, url, inbox).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for row in effects().await {
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

/// Waits (at most 120 s) until nothing waits in `inbox`; returns how many are done.
async fn drained<B: InboxBackend>(inbox: &B) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stats = inbox.stats().await.unwrap();
        if stats.depth() == 0 {
            assert_eq!(stats.dead, 0);
            return stats.done;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still waiting: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two receivers (`child_test` on `url`, one shared database): the events sent to both, half
/// each, are each processed exactly once (one attempt, one effect); then, while 2,000 more are
/// sent under load, one receiver is killed mid-way, and the other finishes its leased events
/// once their lease runs out: each event's effect exactly once, every one done.
pub(crate) async fn run_two<B, E, F>(child_test: &str, url: &str, inbox: &B, effects: E)
where
    B: InboxBackend,
    E: Fn() -> F,
    F: Future<Output = Vec<String>>,
{
    let total = env_number("INBOX_CRASH_EVENTS", 2000);
    let dir = tempfile::tempdir().unwrap();
    let (a, port_a) = spawn_child(child_test, url, dir.path(), 0);
    let (b, port_b) = spawn_child(child_test, url, dir.path(), 1);
    let send_all = |range: std::ops::Range<usize>, ports: [u16; 2]| async move {
        let mut acknowledged = HashSet::new();
        for n in range {
            let id = format!("evt_{n}");
            if post_event(ports[n % 2], &id).await == Some(200) {
                acknowledged.insert(id);
            }
        }
        acknowledged
    };

    // No failure, no death: each event once.
    let first = send_all(0..total, [port_a, port_b]).await;
    assert_eq!(first.len(), total);
    assert_eq!(drained(inbox).await, total as u64);
    let done = inbox
        .list(tower_webhook::inbox::DeliveryState::Done, total + 1)
        .await
        .unwrap();
    let retried: Vec<_> = done.iter().filter(|record| record.attempts != 1).collect();
    assert!(retried.is_empty(), "run more than once: {}", retried.len());

    // Under load (8 senders at once, so that A's workers fall behind), A is killed mid-way,
    // once half of the second 2,000 are acknowledged, while its handlers run: the senders
    // retry what A no longer answers on B, as a sender retries, and B finishes A's leased
    // events once their lease runs out.
    let a = std::sync::Arc::new(std::sync::Mutex::new(Some(a)));
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..8)
        .map(|sender| {
            let (a, acknowledged) = (a.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut ours = HashSet::new();
                for n in (total + sender..total * 2).step_by(8) {
                    let id = format!("evt_{n}");
                    let mut port = [port_a, port_b][n % 2];
                    let mut tries = 0;
                    while post_event(port, &id).await != Some(200) {
                        tries += 1;
                        assert!(tries < 50, "{id} was never acknowledged");
                        port = port_b;
                    }
                    ours.insert(id);
                    if acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
                        == total / 2
                    {
                        if let Some(a) = a.lock().unwrap().take() {
                            a.kill();
                        }
                    }
                }
                ours
            })
        })
        .collect();
    let mut second = HashSet::new();
    for sender in senders {
        second.extend(sender.await.unwrap());
    }
    assert!(a.lock().unwrap().is_none(), "A was not killed");
    assert_eq!(second.len(), total);
    assert_eq!(drained(inbox).await, 2 * total as u64);
    b.kill();
    let done = inbox
        .list(tower_webhook::inbox::DeliveryState::Done, 2 * total + 1)
        .await
        .unwrap();
    let taken_over = done.iter().filter(|record| record.attempts > 1).count();
    assert!(taken_over > 0, "A was killed with no delivery leased");

    let mut counts: HashMap<String, usize> = HashMap::new();
    for row in effects().await {
        *counts.entry(row).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "effects applied twice: {twice:?}");
    let missing: Vec<_> = first
        .iter()
        .chain(&second)
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged, never processed: {missing:?}"
    );
}
