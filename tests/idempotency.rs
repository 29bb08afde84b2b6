//! The idempotency guard in the layer, with the in-memory store and with test doubles.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use common::{
    app, assert_rejected, builder, error_code, event, layer, secret, send, Behaviour, Counting,
    Down,
};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tower_webhook::idempotency::{
    Duplicate, Idempotency, IdempotencyKey, IdempotencyStore, MemoryStore, Reservation,
    StoreFuture, Token,
};
use tower_webhook::testing::sotion_request;
use tower_webhook::Secret;

fn deliver(id: &str, site: &str) -> http::Request<http_body_util::Full<Bytes>> {
    sotion_request(&secret(), event(id, site))
}

#[tokio::test]
async fn a_duplicate_gets_200_marked_as_such_and_the_handler_runs_once() {
    let (app, seen) = app(layer(), Behaviour::Ok);
    let first = send(&app, deliver("evt_1", "site_1")).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("x-webhook-duplicate").is_none());
    let again = send(&app, deliver("evt_1", "site_1")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["x-webhook-duplicate"], "true");
    assert!(again.extensions().get::<Duplicate>().is_some());
    assert_eq!(seen.runs(), 1);
}

#[tokio::test]
async fn the_answer_to_a_duplicate_is_configurable() {
    let idempotency = Idempotency::new(MemoryStore::default()).on_duplicate(
        |meta: &tower_webhook::WebhookMeta| {
            let mut response = http::Response::new(http_body_util::Full::new(Bytes::from(
                format!("seen {}", meta.id()),
            )));
            *response.status_mut() = StatusCode::ACCEPTED;
            response
        },
    );
    let (app, seen) = app(builder().with_idempotency(idempotency), Behaviour::Ok);
    send(&app, deliver("evt_1", "s")).await;
    let again = send(&app, deliver("evt_1", "s")).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["x-webhook-duplicate"], "true");
    let body = again.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"seen evt_1");
    assert_eq!(seen.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_deliveries_of_one_event_run_the_handler_once() {
    let (app, seen) = app(layer(), Behaviour::Sleep(Duration::from_millis(200)));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let response = send(&app, deliver("evt_hot", "site_1")).await;
                let duplicate = response.headers().contains_key("x-webhook-duplicate");
                (response.status(), duplicate)
            })
        })
        .collect();
    let (mut handled, mut duplicates, mut in_flight) = (0, 0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (StatusCode::OK, false) => handled += 1,
            (StatusCode::OK, true) => duplicates += 1,
            (StatusCode::CONFLICT, _) => in_flight += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(seen.runs(), 1);
    assert_eq!(handled, 1);
    assert_eq!(handled + duplicates + in_flight, 1000);
    assert!(
        in_flight > 0,
        "the deliveries did not overlap; the test proves nothing"
    );
}

#[tokio::test]
async fn in_flight_answers_409_with_retry_after() {
    let (app, seen) = app(
        builder().with_idempotency(
            Idempotency::new(MemoryStore::default())
                .with_in_flight_retry_after(Duration::from_secs(7)),
        ),
        Behaviour::Sleep(Duration::from_millis(300)),
    );
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, deliver("evt_slow", "s")).await.status() }
    });
    while seen.runs() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = send(&app, deliver("evt_slow", "s")).await;
    assert_eq!(second.status(), StatusCode::CONFLICT);
    assert_eq!(second.headers()["retry-after"], "7");
    assert_eq!(error_code(second).await, "in_flight");
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(seen.runs(), 1);
}

#[tokio::test]
async fn a_failed_handler_releases_the_event_so_the_retry_is_processed() {
    let store = Arc::new(MemoryStore::default());
    let shared = Idempotency::from_shared(store.clone());
    let (failing, failed) = app(builder().with_idempotency(shared.clone()), Behaviour::Fail);
    assert_eq!(send(&failing, deliver("evt_1", "s")).await.status(), 500);
    assert_eq!(failed.runs(), 1);
    assert_eq!(store.in_flight_len(), 0);
    let (working, worked) = app(builder().with_idempotency(shared), Behaviour::Ok);
    let retry = send(&working, deliver("evt_1", "s")).await;
    assert_eq!(retry.status(), 200);
    assert!(retry.headers().get("x-webhook-duplicate").is_none());
    assert_eq!(worked.runs(), 1);
}

#[tokio::test]
async fn a_panicking_handler_releases_the_event_so_the_retry_is_processed() {
    let shared = Idempotency::new(MemoryStore::default());
    let (panicking, panicked) = app(builder().with_idempotency(shared.clone()), Behaviour::Panic);
    let outcome = tokio::spawn(async move { send(&panicking, deliver("evt_1", "s")).await }).await;
    assert!(outcome.unwrap_err().is_panic());
    assert_eq!(panicked.runs(), 1);
    let (working, worked) = app(builder().with_idempotency(shared), Behaviour::Ok);
    assert_eq!(send(&working, deliver("evt_1", "s")).await.status(), 200);
    assert_eq!(worked.runs(), 1);
}

#[tokio::test]
async fn a_dropped_response_future_releases_the_event_so_the_retry_is_processed() {
    let shared = Idempotency::new(MemoryStore::default());
    let (slow, started) = app(
        builder().with_idempotency(shared.clone()),
        Behaviour::Sleep(Duration::from_secs(3600)),
    );
    let delivery = tokio::spawn(async move { send(&slow, deliver("evt_1", "s")).await });
    while started.runs() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The client goes away (or a timeout layer fires): the response future is dropped.
    delivery.abort();
    assert!(delivery.await.unwrap_err().is_cancelled());
    let (working, worked) = app(builder().with_idempotency(shared), Behaviour::Ok);
    assert_eq!(send(&working, deliver("evt_1", "s")).await.status(), 200);
    assert_eq!(worked.runs(), 1);
}

/// A store doing I/O: `complete` answers only after a pause, as a remote store would.
struct SlowToComplete {
    inner: MemoryStore,
    pause: Duration,
}

impl IdempotencyStore for SlowToComplete {
    fn reserve<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        lease: Duration,
    ) -> StoreFuture<'a, Reservation> {
        self.inner.reserve(key, lease)
    }
    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        token: &'a Token,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        StoreFuture::boxed(async move {
            tokio::time::sleep(self.pause).await;
            self.inner.complete(key, token, ttl).await
        })
    }
    fn release<'a>(&'a self, key: &'a IdempotencyKey, token: &'a Token) -> StoreFuture<'a, bool> {
        self.inner.release(key, token)
    }
}

#[tokio::test]
async fn a_store_doing_io_finishes_recording_a_handled_event_even_if_the_response_is_dropped() {
    let shared = Idempotency::new(SlowToComplete {
        inner: MemoryStore::default(),
        pause: Duration::from_millis(200),
    });
    let (app, seen) = app(builder().with_idempotency(shared.clone()), Behaviour::Ok);
    let delivery = {
        let app = app.clone();
        tokio::spawn(async move { send(&app, deliver("evt_1", "s")).await })
    };
    // The handler has run and the layer is recording it; then the client goes away.
    while seen.runs() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    delivery.abort();
    assert!(delivery.await.unwrap_err().is_cancelled());
    // The recording finishes on its own task: the retry is a duplicate, the handler ran once.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let retry = send(&app, deliver("evt_1", "s")).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["x-webhook-duplicate"], "true");
    assert_eq!(seen.runs(), 1);
}

#[tokio::test]
async fn a_forged_delivery_never_reaches_the_store() {
    let store = Counting::default();
    let calls = store.calls.clone();
    let (app, seen) = app(builder().with_store(store), Behaviour::Ok);
    // An attacker who knows a real event id tries to poison the dedup cache.
    let forged = sotion_request(
        &Secret::new("whsec_attacker").unwrap(),
        event("evt_real", "site_1"),
    );
    assert_rejected(send(&app, forged).await, 401, "signature_mismatch", &seen).await;
    let mut unsigned = deliver("evt_real", "site_1");
    unsigned.headers_mut().remove("x-webhook-signature");
    assert_rejected(send(&app, unsigned).await, 401, "missing_signature", &seen).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "an unauthenticated request touched the store"
    );
    // The genuine delivery is processed.
    assert_eq!(
        send(&app, deliver("evt_real", "site_1")).await.status(),
        200
    );
    assert_eq!(seen.runs(), 1);
    assert!(calls.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn an_invalid_envelope_never_reaches_the_store() {
    let store = Counting::default();
    let calls = store.calls.clone();
    let (app, seen) = app(builder().with_store(store), Behaviour::Ok);
    let mut mismatched = deliver("evt_1", "site_1");
    mismatched
        .headers_mut()
        .insert("x-webhook-id", "evt_2".parse().unwrap());
    assert_rejected(send(&app, mismatched).await, 400, "id_mismatch", &seen).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_same_event_id_from_two_sites_is_processed_once_per_site() {
    let (app, seen) = app(layer(), Behaviour::Ok);
    for site in ["site_a", "site_b", "site_a", "site_b"] {
        assert_eq!(send(&app, deliver("evt_same", site)).await.status(), 200);
    }
    assert_eq!(seen.runs(), 2);
}

#[tokio::test]
async fn an_unreachable_store_answers_503_with_retry_after_and_runs_nothing() {
    let (app, seen) = app(builder().with_store(Down), Behaviour::Ok);
    let response = send(&app, deliver("evt_1", "s")).await;
    assert_eq!(response.headers()["retry-after"], "30");
    assert_rejected(response, 503, "store_unavailable", &seen).await;
}

#[tokio::test]
async fn failing_open_runs_the_handler_when_the_store_is_down() {
    let (app, seen) = app(
        builder().with_idempotency(Idempotency::new(Down).fail_open(true)),
        Behaviour::Ok,
    );
    assert_eq!(send(&app, deliver("evt_1", "s")).await.status(), 200);
    assert_eq!(seen.runs(), 1);
}

#[tokio::test]
async fn failing_open_does_not_bypass_a_full_store() {
    let store = MemoryStore::default().with_max_in_flight(NonZeroUsize::MIN);
    let (app, seen) = app(
        builder().with_idempotency(Idempotency::new(store).fail_open(true)),
        Behaviour::Sleep(Duration::from_secs(3600)),
    );
    let holding = tokio::spawn({
        let app = app.clone();
        async move { send(&app, deliver("evt_1", "s")).await }
    });
    while seen.runs() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The store refuses a second reservation to protect its memory: that is no outage.
    let response = tokio::time::timeout(Duration::from_secs(5), send(&app, deliver("evt_2", "s")))
        .await
        .expect("the handler was called without a reservation");
    assert_eq!(response.status(), 503);
    assert_eq!(error_code(response).await, "store_unavailable");
    assert_eq!(seen.runs(), 1, "the handler ran without a reservation");
    holding.abort();
}

#[tokio::test]
async fn an_inner_service_error_releases_the_event() {
    use std::convert::Infallible;
    use tower::{service_fn, Layer, ServiceExt};
    let store = Arc::new(MemoryStore::default());
    let erroring = builder()
        .with_idempotency(Idempotency::from_shared(store.clone()))
        .build()
        .unwrap()
        .layer(service_fn(
            |_: http::Request<http_body_util::Full<Bytes>>| async {
                Err::<http::Response<http_body_util::Full<Bytes>>, _>(std::io::Error::other("boom"))
            },
        ));
    assert!(erroring.oneshot(deliver("evt_1", "s")).await.is_err());
    assert_eq!(store.in_flight_len(), 0);
    assert_eq!(store.done_len(), 0);
    let working = builder()
        .with_idempotency(Idempotency::from_shared(store.clone()))
        .build()
        .unwrap()
        .layer(service_fn(
            |_: http::Request<http_body_util::Full<Bytes>>| async {
                Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(Bytes::new())))
            },
        ));
    assert_eq!(
        working
            .oneshot(deliver("evt_1", "s"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(store.done_len(), 1);
}

#[tokio::test]
async fn without_idempotency_every_delivery_reaches_the_handler() {
    let (app, seen) = app(builder().without_idempotency(), Behaviour::Ok);
    send(&app, deliver("evt_1", "s")).await;
    send(&app, deliver("evt_1", "s")).await;
    assert_eq!(seen.runs(), 2);
}

#[tokio::test]
async fn the_memory_store_stays_bounded_under_a_stream_of_new_events() {
    let store = Arc::new(MemoryStore::with_capacity(NonZeroUsize::new(50).unwrap()));
    let (app, seen) = app(
        builder().with_idempotency(Idempotency::from_shared(store.clone())),
        Behaviour::Ok,
    );
    for n in 0..500 {
        assert_eq!(
            send(&app, deliver(&format!("evt_{n}"), "s")).await.status(),
            200
        );
        assert!(store.done_len() <= 50);
    }
    assert_eq!(seen.runs(), 500);
    assert_eq!(store.done_len(), 50);
    assert_eq!(store.in_flight_len(), 0);
}

#[tokio::test]
async fn two_layers_sharing_a_memory_store_with_their_own_secrets_each_handle_the_same_event() {
    let shared = Idempotency::from_shared(Arc::new(MemoryStore::default()));
    let orders_secret = Secret::new("whsec_orders").unwrap();
    let billing_secret = Secret::new("whsec_billing").unwrap();
    let sotion = || tower_webhook::WebhookLayer::builder(tower_webhook::Scheme::sotion());
    let (orders, seen_orders) = app(
        sotion()
            .with_secret("whsec_orders")
            .with_idempotency(shared.clone()),
        Behaviour::Ok,
    );
    let (billing, seen_billing) = app(
        sotion()
            .with_secret("whsec_billing")
            .with_idempotency(shared),
        Behaviour::Ok,
    );
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
async fn clones_of_one_layer_share_keys_unless_each_names_its_endpoint() {
    // One layer (one secret, one store) on two routes: the same endpoint as far as the keys go.
    let shared = layer();
    let (first, seen_first) = app(shared.clone(), Behaviour::Ok);
    let (second, seen_second) = app(shared, Behaviour::Ok);
    assert_eq!(send(&first, deliver("evt_1", "s")).await.status(), 200);
    let again = send(&second, deliver("evt_1", "s")).await;
    assert_eq!(again.headers()["x-webhook-duplicate"], "true");
    assert_eq!(seen_first.runs() + seen_second.runs(), 1);

    // Named apart, two routes with that secret and store each handle the event.
    let store = Idempotency::from_shared(Arc::new(MemoryStore::default()));
    let named = |name| {
        builder()
            .with_idempotency(store.clone())
            .with_endpoint(name)
    };
    let (orders, seen_orders) = app(named("orders"), Behaviour::Ok);
    let (billing, seen_billing) = app(named("billing"), Behaviour::Ok);
    assert_eq!(send(&orders, deliver("evt_1", "s")).await.status(), 200);
    let other = send(&billing, deliver("evt_1", "s")).await;
    assert!(other.headers().get("x-webhook-duplicate").is_none());
    assert_eq!(seen_orders.runs(), 1);
    assert_eq!(seen_billing.runs(), 1);
}

/// A store doing I/O whose futures start their work before they are first polled (the call is
/// made when the method is called; the future only waits for the answer), counting its calls.
#[derive(Default)]
struct Eager {
    inner: MemoryStore,
    completes: std::sync::atomic::AtomicUsize,
    releases: std::sync::atomic::AtomicUsize,
}

impl IdempotencyStore for Eager {
    fn reserve<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        lease: Duration,
    ) -> StoreFuture<'a, Reservation> {
        self.inner.reserve(key, lease)
    }
    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        token: &'a Token,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.completes.fetch_add(1, Ordering::SeqCst);
        let answer = self.inner.complete(key, token, ttl).now_or_never().unwrap();
        StoreFuture::boxed(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            answer
        })
    }
    fn release<'a>(&'a self, key: &'a IdempotencyKey, token: &'a Token) -> StoreFuture<'a, bool> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        let answer = self.inner.release(key, token).now_or_never().unwrap();
        StoreFuture::boxed(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            answer
        })
    }
}

#[tokio::test]
async fn a_store_whose_futures_start_at_once_is_called_once_per_outcome() {
    let store = Arc::new(Eager::default());
    let idempotency = || Idempotency::from_shared(store.clone());
    // Handled: completed once, and the retry is a duplicate.
    let (ok, seen) = app(builder().with_idempotency(idempotency()), Behaviour::Ok);
    assert_eq!(send(&ok, deliver("evt_1", "s")).await.status(), 200);
    let retry = send(&ok, deliver("evt_1", "s")).await;
    assert_eq!(retry.headers()["x-webhook-duplicate"], "true");
    assert_eq!(seen.runs(), 1);
    assert_eq!(store.completes.load(Ordering::SeqCst), 1);
    // Failed: released once, and the retry runs the handler again.
    let (failing, seen) = app(builder().with_idempotency(idempotency()), Behaviour::Fail);
    assert_eq!(send(&failing, deliver("evt_2", "s")).await.status(), 500);
    assert_eq!(store.releases.load(Ordering::SeqCst), 1);
    send(&failing, deliver("evt_2", "s")).await;
    assert_eq!(seen.runs(), 2);
    assert_eq!(store.releases.load(Ordering::SeqCst), 2);
    assert_eq!(store.completes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_store_whose_futures_start_at_once_is_released_once_when_the_response_is_dropped() {
    let store = Arc::new(Eager::default());
    let (app, seen) = app(
        builder().with_idempotency(Idempotency::from_shared(store.clone())),
        Behaviour::Sleep(Duration::from_secs(60)),
    );
    let delivery = {
        let app = app.clone();
        tokio::spawn(async move { send(&app, deliver("evt_1", "s")).await })
    };
    while seen.runs() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    delivery.abort();
    assert!(delivery.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.releases.load(Ordering::SeqCst), 1);
    assert_eq!(store.inner.in_flight_len(), 0);
    assert_eq!(store.completes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_answer_to_a_duplicate_may_be_any_axum_response() {
    let idempotency = Idempotency::new(MemoryStore::default()).on_duplicate(
        |meta: &tower_webhook::WebhookMeta| {
            (
                StatusCode::ACCEPTED,
                [("x-seen-id", meta.id().to_owned())],
                "seen",
            )
        },
    );
    let (app, seen) = app(builder().with_idempotency(idempotency), Behaviour::Ok);
    send(&app, deliver("evt_1", "s")).await;
    let again = send(&app, deliver("evt_1", "s")).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["x-webhook-duplicate"], "true");
    assert_eq!(again.headers()["x-seen-id"], "evt_1");
    assert!(again.extensions().get::<Duplicate>().is_some());
    let body = again.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"seen");
    assert_eq!(seen.runs(), 1);
}
