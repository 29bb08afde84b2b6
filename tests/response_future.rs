//! The response future's life: when it readies the inner service, when its reservation is
//! completed or released relative to the handler's future, and what dropping it may do.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{builder, event, layer, secret, send, Stalled};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::limit::ConcurrencyLimitLayer;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_webhook::idempotency::{
    Idempotency, IdempotencyKey, IdempotencyStore, MemoryStore, Reservation, StoreFuture, Token,
};
use tower_webhook::testing::sotion_request;
use tower_webhook::{Secret, WebhookService};

fn deliver(id: &str) -> Request<Full<Bytes>> {
    sotion_request(&secret(), event(id, "site_1"))
}

/// Waits until `done()` holds, for at most 5 s.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls `future` once, in the current task's context.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// Held by the first run of the handler: its drop takes a while, as a transaction's rollback
/// would, and the flags say when it started and when it ended.
struct SlowDrop {
    alive: Arc<AtomicBool>,
    dropping: Arc<AtomicBool>,
}

impl Drop for SlowDrop {
    fn drop(&mut self) {
        self.dropping.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        self.alive.store(false, Ordering::SeqCst);
    }
}

#[derive(Clone, Default)]
struct Runs {
    count: Arc<AtomicUsize>,
    alive: Arc<AtomicBool>,
    dropping: Arc<AtomicBool>,
    overlapped: Arc<AtomicBool>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_handler_is_gone_before_the_retry_of_its_event_starts() {
    let runs = Runs::default();
    let handler = {
        let runs = runs.clone();
        move || {
            let runs = runs.clone();
            async move {
                if runs.alive.load(Ordering::SeqCst) {
                    runs.overlapped.store(true, Ordering::SeqCst);
                }
                if runs.count.fetch_add(1, Ordering::SeqCst) == 0 {
                    runs.alive.store(true, Ordering::SeqCst);
                    let _guard = SlowDrop {
                        alive: runs.alive.clone(),
                        dropping: runs.dropping.clone(),
                    };
                    std::future::pending::<()>().await;
                }
                StatusCode::OK
            }
        }
    };
    let app = Router::new().route("/webhooks", post(handler).route_layer(layer()));
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, deliver("evt_1")).await }
    });
    until("the first run", || runs.alive.load(Ordering::SeqCst)).await;
    // The client goes away: a worker thread drops the response future, and the handler's.
    first.abort();
    until("the guard's drop", || runs.dropping.load(Ordering::SeqCst)).await;
    // The sender retries at once, while the cancelled handler's guard is still being dropped.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = send(&app, deliver("evt_1")).await.status();
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::CONFLICT, "the retry waits its turn");
        assert!(Instant::now() < deadline, "the retry was never processed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !runs.overlapped.load(Ordering::SeqCst),
        "the retry's handler started while the cancelled one was still being dropped"
    );
    assert_eq!(runs.count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_2xx_head_completes_the_event_even_if_its_body_then_fails() {
    let store = Arc::new(MemoryStore::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let runs = runs.clone();
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
            async {
                let chunks: [Result<Bytes, std::io::Error>; 2] = [
                    Ok(Bytes::from_static(b"partial")),
                    Err(std::io::Error::other("the stream broke")),
                ];
                Response::new(Body::from_stream(futures_util::stream::iter(chunks)))
            }
        }
    };
    let app = Router::new().route(
        "/webhooks",
        post(handler).route_layer(
            builder()
                .with_idempotency(Idempotency::from_shared(store.clone()))
                .build()
                .unwrap(),
        ),
    );
    let response = send(&app, deliver("evt_1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The event was recorded with the head: the handler's 2xx is its verdict.
    assert_eq!(store.done_len(), 1);
    assert_eq!(store.in_flight_len(), 0);
    assert!(response.into_body().collect().await.is_err());
    // The sender saw a broken answer and retries: the work was done, so it is a duplicate.
    let retry = send(&app, deliver("evt_1")).await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers()["x-webhook-duplicate"], "true");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stalled_bodies_do_not_hold_the_inner_services_capacity() {
    const LIMIT: usize = 2;
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        service_fn(move |_: Request<Full<Bytes>>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
        })
    };
    let service = ServiceBuilder::new()
        .layer(layer())
        .layer(ConcurrencyLimitLayer::new(LIMIT))
        .service(handler);
    // As many forged deliveries as the inner limit, whose bodies never arrive, in flight.
    let mut stalled = Vec::new();
    for n in 0..LIMIT {
        let forged = sotion_request(
            &Secret::new("whsec_attacker").unwrap(),
            event(&format!("evt_forged_{n}"), "site_1"),
        )
        .map(|_| Stalled);
        let mut call = Box::pin(service.clone().oneshot(forged));
        assert!(poll_once(&mut call).await.is_pending());
        stalled.push(call);
    }
    // A genuine delivery is handled at once.
    let genuine = tokio::time::timeout(
        Duration::from_secs(2),
        service.clone().oneshot(deliver("evt_1")),
    )
    .await
    .expect("the genuine delivery waited for capacity held by unverified requests")
    .unwrap();
    assert_eq!(genuine.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    drop(stalled);
}

/// A service that can never be made ready.
#[derive(Clone)]
struct Broken;

impl Service<Request<Full<Bytes>>> for Broken {
    type Response = Response<Full<Bytes>>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Err(std::io::Error::other("broken")))
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        unreachable!("a service that is not ready is never called")
    }
}

#[tokio::test]
async fn an_inner_service_that_cannot_get_ready_releases_the_event() {
    let store = Arc::new(MemoryStore::default());
    let service = builder()
        .with_idempotency(Idempotency::from_shared(store.clone()))
        .build()
        .unwrap()
        .layer(Broken);
    let error = service.oneshot(deliver("evt_1")).await.unwrap_err();
    assert_eq!(error.to_string(), "broken");
    assert_eq!(store.in_flight_len(), 0);
    assert_eq!(store.done_len(), 0);
}

/// A memory store whose `release` does I/O, as a remote store's does: it needs the runtime.
struct TimedRelease(MemoryStore);

impl IdempotencyStore for TimedRelease {
    fn reserve<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        lease: Duration,
    ) -> StoreFuture<'a, Reservation> {
        self.0.reserve(key, lease)
    }
    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        token: &'a Token,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.0.complete(key, token, ttl)
    }
    fn release<'a>(&'a self, key: &'a IdempotencyKey, token: &'a Token) -> StoreFuture<'a, bool> {
        StoreFuture::boxed(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.0.release(key, token).await
        })
    }
}

/// A handler that counts its calls and never answers.
#[derive(Clone, Default)]
struct NeverAnswers(Arc<AtomicUsize>);

impl Service<Request<Full<Bytes>>> for NeverAnswers {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Pending<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::pending()
    }
}

/// A layer over `TimedRelease` around a handler that never answers, and its call count.
fn never_answering() -> (WebhookService<NeverAnswers>, Arc<AtomicUsize>) {
    let handler = NeverAnswers::default();
    let started = handler.0.clone();
    let layer = builder()
        .with_idempotency(Idempotency::new(TimedRelease(MemoryStore::default())))
        .build()
        .unwrap();
    (layer.layer(handler), started)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn dropping_a_response_future_outside_any_runtime_does_not_panic() {
    let (mut service, started) = never_answering();
    let mut future = Box::pin(service.call(deliver("evt_1")));
    let runtime = current_thread();
    runtime.block_on(async { assert!(poll_once(&mut future).await.is_pending()) });
    assert_eq!(started.load(Ordering::SeqCst), 1, "the handler runs");
    drop(runtime);
    // Its reservation cannot be released without a runtime: that is logged, not a panic.
    drop(future);
}

#[test]
fn dropping_a_response_future_reading_its_body_outside_any_runtime_does_not_panic() {
    let (mut service, _) = never_answering();
    let mut future = Box::pin(service.call(deliver("evt_1").map(|_| Stalled)));
    let runtime = current_thread();
    // The body read timeout is armed.
    runtime.block_on(async { assert!(poll_once(&mut future).await.is_pending()) });
    drop(runtime);
    drop(future);
}

#[test]
fn dropping_a_response_future_during_runtime_shutdown_does_not_panic() {
    for flavor in ["current_thread", "multi_thread"] {
        let runtime = match flavor {
            "current_thread" => current_thread(),
            _ => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        };
        let (service, started) = never_answering();
        let task = runtime.spawn(service.oneshot(deliver("evt_1")));
        runtime.block_on(until("the handler", || started.load(Ordering::SeqCst) == 1));
        // Shutting down drops the task's future, on the runtime's way out.
        drop(runtime);
        let outcome = current_thread().block_on(task).map(|_| ()).unwrap_err();
        assert!(outcome.is_cancelled(), "{flavor}: {outcome}");
    }
}
