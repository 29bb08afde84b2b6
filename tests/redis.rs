//! The Redis store, against a real `redis-server` this test starts on 127.0.0.1 (feature
//! `redis`). Without `redis-server` on the PATH these tests fail under `CI=true` and are
//! skipped, loudly, otherwise; `scripts/test` installs it.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{app, assert_rejected, event, layer, secret, send, Behaviour};
use tower_webhook::idempotency::{
    Idempotency, IdempotencyKey, IdempotencyStore, RedisStore, Reservation, MAX_DURATION,
};
use tower_webhook::testing::sotion_request;

/// A `redis-server` child process on a free loopback port, killed on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts a server, or returns `None` (skip) when none is installed outside CI.
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { child: None, port };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true but redis-server could not be started ({error}): install it (apt-get install -y redis-server)")
            }
            Err(error) => {
                eprintln!("SKIPPED: redis-server could not be started ({error}); run scripts/test, which installs it");
                None
            }
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(
                    "redis-server did not start listening within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap();
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn store(&self) -> RedisStore {
        RedisStore::connect(&self.url())
            .await
            .unwrap()
            .with_timeout(Duration::from_millis(500))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn new_token(reservation: Reservation) -> tower_webhook::idempotency::Token {
    match reservation {
        Reservation::New(token) => token,
        other => panic!("expected a new reservation, got {other:?}"),
    }
}

#[tokio::test]
async fn the_store_keeps_the_contract() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let key = IdempotencyKey::new("sotion", "site", "evt_1");
    let lease = Duration::from_secs(60);
    let token = new_token(store.reserve(&key, lease).await.unwrap());
    assert_eq!(
        store.reserve(&key, lease).await.unwrap(),
        Reservation::InFlight
    );
    assert!(store.release(&key, &token).await.unwrap());
    assert!(
        !store.release(&key, &token).await.unwrap(),
        "a second release changed something"
    );
    let token = new_token(store.reserve(&key, lease).await.unwrap());
    assert!(store
        .complete(&key, &token, Duration::from_secs(60))
        .await
        .unwrap());
    assert_eq!(store.reserve(&key, lease).await.unwrap(), Reservation::Done);

    // The key lives under the prefix, and holds `done`.
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let value: Option<String> = redis::cmd("GET")
        .arg(store.redis_key(&key))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("done"));
    assert!(store.redis_key(&key).starts_with("tower-webhook:"));
}

#[tokio::test]
async fn a_stale_owner_changes_nothing_after_its_lease_was_taken_over() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let key = IdempotencyKey::new("sotion", "site", "evt_stale");
    let stale = new_token(
        store
            .reserve(&key, Duration::from_millis(100))
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let fresh = new_token(store.reserve(&key, Duration::from_secs(60)).await.unwrap());
    assert!(!store
        .complete(&key, &stale, Duration::from_secs(60))
        .await
        .unwrap());
    assert!(!store.release(&key, &stale).await.unwrap());
    assert_eq!(
        store.reserve(&key, Duration::from_secs(60)).await.unwrap(),
        Reservation::InFlight
    );
    assert!(store
        .complete(&key, &fresh, Duration::from_secs(60))
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_sharing_redis_run_a_thousand_concurrent_deliveries_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (replica_a, seen_a) = app(
        layer().with_store(server.store().await),
        Behaviour::Sleep(Duration::from_millis(300)),
    );
    let (replica_b, seen_b) = app(
        layer().with_store(server.store().await),
        Behaviour::Sleep(Duration::from_millis(300)),
    );
    let tasks: Vec<_> = (0..1000)
        .map(|n| {
            let replica = if n % 2 == 0 {
                replica_a.clone()
            } else {
                replica_b.clone()
            };
            tokio::spawn(async move {
                send(
                    &replica,
                    sotion_request(&secret(), event("evt_hot", "site_1")),
                )
                .await
                .status()
            })
        })
        .collect();
    let mut conflicts = 0;
    for task in tasks {
        let status = task.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status}"
        );
        conflicts += usize::from(status == StatusCode::CONFLICT);
    }
    assert_eq!(
        seen_a.runs() + seen_b.runs(),
        1,
        "the event ran more than once"
    );
    assert!(
        conflicts > 0,
        "the deliveries did not overlap; the test proves nothing"
    );
}

#[tokio::test]
async fn a_replica_that_died_holding_a_reservation_frees_the_event_after_its_lease() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // The dead replica reserved the event and never completed nor released it.
    let dead = server.store().await;
    let key = IdempotencyKey::new("sotion", "site_1", "evt_orphan");
    new_token(
        dead.reserve(&key, Duration::from_millis(400))
            .await
            .unwrap(),
    );
    drop(dead);

    let (survivor, seen) = app(layer().with_store(server.store().await), Behaviour::Ok);
    let early = send(
        &survivor,
        sotion_request(&secret(), event("evt_orphan", "site_1")),
    )
    .await;
    assert_rejected(early, 409, "in_flight", &seen).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let retry = send(
        &survivor,
        sotion_request(&secret(), event("evt_orphan", "site_1")),
    )
    .await;
    assert_eq!(retry.status(), 200);
    assert_eq!(seen.runs(), 1);
}

#[tokio::test]
async fn redis_represents_the_longest_lease_and_ttl_accepted() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let idempotency = Idempotency::new(server.store().await)
        .with_lease(MAX_DURATION)
        .unwrap()
        .with_ttl(MAX_DURATION)
        .unwrap();
    let (app, seen) = app(layer().with_idempotency(idempotency), Behaviour::Ok);
    let deliver = || sotion_request(&secret(), event("evt_forever", "site_1"));
    assert_eq!(send(&app, deliver()).await.status(), 200);
    let again = send(&app, deliver()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["x-webhook-duplicate"], "true");
    assert_eq!(seen.runs(), 1);
}

#[tokio::test]
async fn redis_going_away_answers_503_and_processing_resumes_when_it_returns() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let (app, seen) = app(layer().with_store(server.store().await), Behaviour::Ok);
    assert_eq!(
        send(&app, sotion_request(&secret(), event("evt_before", "s")))
            .await
            .status(),
        200
    );

    server.stop();
    let during = send(&app, sotion_request(&secret(), event("evt_during", "s"))).await;
    assert_eq!(during.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(during.headers().contains_key("retry-after"));
    assert_eq!(common::error_code(during).await, "store_unavailable");
    assert_eq!(seen.runs(), 1, "the handler ran without a reservation");

    server.restart();
    // The sender retries; the app was not restarted. Bounded: at most 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let retry = send(&app, sotion_request(&secret(), event("evt_during", "s"))).await;
        if retry.status() == StatusCode::OK {
            break;
        }
        assert_eq!(retry.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            Instant::now() < deadline,
            "processing did not resume after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.runs(), 2);
}
