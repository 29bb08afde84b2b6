//! The Redis store, against a real `redis-server` this test starts on 127.0.0.1 (feature
//! `redis`). Without `redis-server` on the PATH these tests fail under `CI=true` and are
//! skipped, loudly, otherwise; `scripts/test` installs it.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
#[path = "common/servers.rs"]
mod servers;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{app, assert_rejected, builder, event, secret, send, Behaviour};
use servers::RedisServer;
use tower_webhook::idempotency::{
    Idempotency, IdempotencyKey, IdempotencyStore, RedisStore, Reservation, MAX_DURATION,
};
use tower_webhook::layer::WebhookLayerBuilder;
use tower_webhook::testing::sotion_request;
use tower_webhook::Secret;

/// The Redis store on a server.
trait Connect {
    async fn store(&self) -> RedisStore;
}

impl Connect for RedisServer {
    async fn store(&self) -> RedisStore {
        RedisStore::connect(&self.url())
            .await
            .unwrap()
            .with_timeout(Duration::from_millis(500))
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
async fn the_redis_store_passes_the_store_conformance_suite() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    tokio::time::timeout(
        Duration::from_secs(10),
        tower_webhook::testing::check_store(&store),
    )
    .await
    .expect("the conformance suite took more than 10 s");
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
    // A thousand concurrent calls on a shared 2-core machine can take longer than the
    // suite's short store timeout: this test is about duplicates, not about timeouts.
    let patient = || async {
        RedisStore::connect(&server.url())
            .await
            .unwrap()
            .with_timeout(Duration::from_secs(10))
    };
    let (replica_a, seen_a) = app(
        builder().with_store(patient().await),
        Behaviour::Sleep(Duration::from_millis(300)),
    );
    let (replica_b, seen_b) = app(
        builder().with_store(patient().await),
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
    // The key the layer computes for this delivery: the same pure verification, then the key.
    let body = event("evt_orphan", "site_1");
    let signed = sotion_request(&secret(), body.clone());
    let meta = tower_webhook::verify::verify(
        &tower_webhook::Scheme::sotion(),
        &tower_webhook::Secrets::new(secret()),
        signed.headers(),
        &body,
        std::time::SystemTime::now(),
    )
    .unwrap();
    let key = IdempotencyKey::for_delivery(&meta);
    new_token(
        dead.reserve(&key, Duration::from_millis(400))
            .await
            .unwrap(),
    );
    drop(dead);

    let (survivor, seen) = app(builder().with_store(server.store().await), Behaviour::Ok);
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
    let (app, seen) = app(builder().with_idempotency(idempotency), Behaviour::Ok);
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
    let (app, seen) = app(builder().with_store(server.store().await), Behaviour::Ok);
    assert_eq!(
        send(&app, sotion_request(&secret(), event("evt_before", "s")))
            .await
            .status(),
        200
    );

    server.kill();
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

/// A layer with its own secret, on `store`.
fn layer_with(secrets: &[&str], store: RedisStore) -> WebhookLayerBuilder {
    secrets
        .iter()
        .fold(
            tower_webhook::WebhookLayer::builder(tower_webhook::Scheme::sotion()),
            |layer, secret| layer.with_secret(secret),
        )
        .with_store(store)
}

#[tokio::test]
async fn two_endpoints_with_their_own_secrets_sharing_redis_each_handle_the_same_event() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Stripe, GitHub, Svix and Sotion send the same event id to every subscribed endpoint,
    // each signed with that endpoint's secret.
    let (orders, seen_orders) = app(
        layer_with(&["whsec_orders"], server.store().await),
        Behaviour::Ok,
    );
    let (billing, seen_billing) = app(
        layer_with(&["whsec_billing"], server.store().await),
        Behaviour::Ok,
    );
    let orders_secret = Secret::new("whsec_orders").unwrap();
    let billing_secret = Secret::new("whsec_billing").unwrap();
    for _ in 0..2 {
        let to_orders = sotion_request(&orders_secret, event("evt_shared", "site_1"));
        assert_eq!(send(&orders, to_orders).await.status(), 200);
        let to_billing = sotion_request(&billing_secret, event("evt_shared", "site_1"));
        assert_eq!(send(&billing, to_billing).await.status(), 200);
    }
    assert_eq!(
        seen_orders.runs(),
        1,
        "the orders endpoint lost or repeated the event"
    );
    assert_eq!(
        seen_billing.runs(),
        1,
        "the billing endpoint lost or repeated the event"
    );
}

#[tokio::test]
async fn replicas_with_the_same_secret_handle_an_event_once_even_mid_rotation() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Two replicas, same secret.
    let (a, seen_a) = app(
        layer_with(&["whsec_old"], server.store().await),
        Behaviour::Ok,
    );
    let (b, seen_b) = app(
        layer_with(&["whsec_old"], server.store().await),
        Behaviour::Ok,
    );
    let old = Secret::new("whsec_old").unwrap();
    assert_eq!(
        send(&a, sotion_request(&old, event("evt_1", "s")))
            .await
            .status(),
        200
    );
    let again = send(&b, sotion_request(&old, event("evt_1", "s"))).await;
    assert_eq!(again.headers()["x-webhook-duplicate"], "true");
    assert_eq!(seen_a.runs() + seen_b.runs(), 1);

    // Rotation under way: replica C already has the new secret (first) beside the old one;
    // replica D does not yet. A delivery signed with the old secret is one event for both.
    let (c, seen_c) = app(
        layer_with(&["whsec_new", "whsec_old"], server.store().await),
        Behaviour::Ok,
    );
    let (d, seen_d) = app(
        layer_with(&["whsec_old"], server.store().await),
        Behaviour::Ok,
    );
    assert_eq!(
        send(&d, sotion_request(&old, event("evt_2", "s")))
            .await
            .status(),
        200
    );
    let again = send(&c, sotion_request(&old, event("evt_2", "s"))).await;
    assert_eq!(again.headers()["x-webhook-duplicate"], "true");
    assert_eq!(seen_c.runs() + seen_d.runs(), 1);
}

#[tokio::test]
async fn endpoints_named_alike_share_keys_whatever_their_secrets() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, seen_a) = app(
        layer_with(&["whsec_a"], server.store().await).with_endpoint("orders"),
        Behaviour::Ok,
    );
    let (b, seen_b) = app(
        layer_with(&["whsec_b"], server.store().await).with_endpoint("orders"),
        Behaviour::Ok,
    );
    let first = sotion_request(&Secret::new("whsec_a").unwrap(), event("evt_1", "s"));
    assert_eq!(send(&a, first).await.status(), 200);
    // The sender switched secrets and re-signed its retry: still the same event.
    let retry = sotion_request(&Secret::new("whsec_b").unwrap(), event("evt_1", "s"));
    let retry = send(&b, retry).await;
    assert_eq!(retry.headers()["x-webhook-duplicate"], "true");
    assert_eq!(seen_a.runs() + seen_b.runs(), 1);
}

/// Runs `CLIENT <args>` on a connection of its own (pausing and unpausing Redis).
async fn client_command(server: &RedisServer, args: &[&str]) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("CLIENT")
        .arg(args)
        .query_async(&mut connection)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reserve_that_timed_out_is_undone_so_the_first_retry_after_a_stall_is_processed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    let (app, seen) = app(builder().with_store(store), Behaviour::Ok);
    // A first delivery loads the scripts, as in any running app.
    let warm = send(&app, sotion_request(&secret(), event("evt_warm", "s"))).await;
    assert_eq!(warm.status(), 200);

    // Redis stalls past the store's timeout: the reserve is answered 503, and Redis runs it
    // once the stall ends.
    client_command(&server, &["PAUSE", "10000", "WRITE"]).await;
    let during = send(&app, sotion_request(&secret(), event("evt_stall", "s"))).await;
    assert_eq!(during.status(), StatusCode::SERVICE_UNAVAILABLE);
    client_command(&server, &["UNPAUSE"]).await;

    let retry = send(&app, sotion_request(&secret(), event("evt_stall", "s"))).await;
    assert_eq!(
        retry.status(),
        200,
        "the reserve that timed out left an orphan reservation"
    );
    assert_eq!(seen.runs(), 2);
}

#[tokio::test]
async fn a_reserve_whose_request_was_dropped_is_undone_so_the_retry_is_processed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (app, seen) = app(builder().with_store(server.store().await), Behaviour::Ok);
    let warm = send(&app, sotion_request(&secret(), event("evt_warm", "s"))).await;
    assert_eq!(warm.status(), 200);

    // The client goes away (or a timeout layer fires) while the reserve waits on a stalled
    // Redis: the request's future is dropped before Redis answered.
    client_command(&server, &["PAUSE", "10000", "WRITE"]).await;
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        send(&app, sotion_request(&secret(), event("evt_gone", "s"))),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the request was answered during the stall"
    );
    client_command(&server, &["UNPAUSE"]).await;

    let retry = send(&app, sotion_request(&secret(), event("evt_gone", "s"))).await;
    assert_eq!(
        retry.status(),
        200,
        "the dropped reserve left an orphan reservation"
    );
    assert_eq!(seen.runs(), 2);
}

#[tokio::test]
async fn a_lease_or_ttl_too_large_for_redis_is_clamped_rather_than_failing_every_call() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let key = IdempotencyKey::new("sotion", "site", "evt_forever");
    let token = new_token(store.reserve(&key, Duration::MAX).await.unwrap());
    assert!(store.complete(&key, &token, Duration::MAX).await.unwrap());
    assert_eq!(
        store.reserve(&key, Duration::MAX).await.unwrap(),
        Reservation::Done
    );
}

#[tokio::test]
async fn an_unanswered_reserve_with_the_longest_lease_is_undone_too() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    let key = IdempotencyKey::new("sotion", "site", "evt_long_stall");
    let warm = IdempotencyKey::new("sotion", "site", "evt_long_warm");
    new_token(store.reserve(&warm, Duration::MAX).await.unwrap());

    client_command(&server, &["PAUSE", "10000", "WRITE"]).await;
    assert!(store.reserve(&key, Duration::MAX).await.is_err());
    client_command(&server, &["UNPAUSE"]).await;
    new_token(store.reserve(&key, Duration::MAX).await.unwrap());
}
