//! Shared fixtures: a receiver app whose handler records what it saw, and helpers to read
//! answers.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_webhook::idempotency::{
    IdempotencyKey, IdempotencyStore, MemoryStore, Reservation, StoreError, StoreFuture, Token,
};
use tower_webhook::layer::WebhookLayerBuilder;
use tower_webhook::{Envelope, Scheme, Secret, WebhookLayer, WebhookMeta};

pub const SECRET: &str = "whsec_test_secret_for_the_suite";

pub fn secret() -> Secret {
    Secret::new(SECRET).unwrap()
}

/// What the handler did: how often it ran, and the last body and metadata it saw.
#[derive(Clone, Default)]
pub struct Seen {
    pub runs: Arc<AtomicUsize>,
    pub last_body: Arc<Mutex<Option<Bytes>>>,
    pub last_meta: Arc<Mutex<Option<WebhookMeta>>>,
}

impl Seen {
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

/// What the handler does after recording the delivery.
#[derive(Clone, Copy)]
pub enum Behaviour {
    Ok,
    Fail,
    Panic,
    Sleep(Duration),
}

/// A layer, or a builder the suite expects to build.
pub trait IntoLayer {
    fn into_layer(self) -> WebhookLayer;
}

impl IntoLayer for WebhookLayer {
    fn into_layer(self) -> WebhookLayer {
        self
    }
}

impl IntoLayer for WebhookLayerBuilder {
    fn into_layer(self) -> WebhookLayer {
        self.build().expect("the suite's layers are valid")
    }
}

/// `POST /webhooks` behind `layer`, with a handler that records what it saw.
pub fn app(layer: impl IntoLayer, behaviour: Behaviour) -> (Router, Seen) {
    let layer = layer.into_layer();
    let seen = Seen::default();
    let state = seen.clone();
    let handler = move |meta: WebhookMeta, envelope: Envelope, body: Bytes| {
        let state = state.clone();
        async move {
            assert_eq!(envelope.id, meta.id());
            state.runs.fetch_add(1, Ordering::SeqCst);
            *state.last_body.lock().unwrap() = Some(body);
            *state.last_meta.lock().unwrap() = Some(meta);
            match behaviour {
                Behaviour::Ok => (StatusCode::OK, "handled"),
                Behaviour::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
                Behaviour::Panic => panic!("handler panicked on purpose"),
                Behaviour::Sleep(duration) => {
                    tokio::time::sleep(duration).await;
                    (StatusCode::OK, "handled")
                }
            }
        }
    };
    let router = Router::new().route("/webhooks", post(handler).route_layer(layer));
    (router, seen)
}

/// `route` behind `layer` for any scheme: the handler takes only `WebhookMeta` and the raw
/// body, and records them.
pub fn meta_app(layer: impl IntoLayer, route: &str) -> (Router, Seen) {
    let layer = layer.into_layer();
    let seen = Seen::default();
    let state = seen.clone();
    let handler = move |meta: WebhookMeta, body: Bytes| {
        let state = state.clone();
        async move {
            state.runs.fetch_add(1, Ordering::SeqCst);
            *state.last_body.lock().unwrap() = Some(body);
            *state.last_meta.lock().unwrap() = Some(meta);
            "handled"
        }
    };
    let router = Router::new().route(route, post(handler).route_layer(layer));
    (router, seen)
}

/// A Sotion layer builder with the suite's secret.
pub fn builder() -> WebhookLayerBuilder {
    WebhookLayer::builder(Scheme::sotion()).with_secret(SECRET)
}

/// A default Sotion layer with the suite's secret.
pub fn layer() -> WebhookLayer {
    builder().build().unwrap()
}

/// Sends `request` to `app`.
pub async fn send<B>(app: &Router, request: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    app.clone().oneshot(request.map(Body::new)).await.unwrap()
}

/// The `error` code of a rejection's JSON body.
pub async fn error_code(response: Response<Body>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["error"].as_str().unwrap().to_owned()
}

/// Asserts the status and error code of a rejection, and that the handler did not run.
pub async fn assert_rejected(response: Response<Body>, status: u16, code: &str, seen: &Seen) {
    assert_eq!(response.status(), status, "expected {status} {code}");
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "rejections are JSON"
    );
    let rejection = response
        .extensions()
        .get::<tower_webhook::Rejection>()
        .cloned()
        .expect("the rejection rides in the response extensions");
    assert_eq!(rejection.kind().code(), code);
    assert_eq!(error_code(response).await, code);
    assert_eq!(seen.runs(), 0, "the handler must not run for {code}");
}

/// A Sotion envelope with the given id and site.
pub fn event(id: &str, site: &str) -> Vec<u8> {
    tower_webhook::testing::sotion_event("member.created", id, site)
}

/// A memory store that counts every call reaching it.
#[derive(Clone, Default)]
pub struct Counting {
    pub inner: Arc<MemoryStore>,
    pub calls: Arc<AtomicUsize>,
}

impl Counting {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl IdempotencyStore for Counting {
    fn reserve<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        lease: Duration,
    ) -> StoreFuture<'a, Reservation> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.reserve(key, lease)
    }
    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        token: &'a Token,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(key, token, ttl)
    }
    fn release<'a>(&'a self, key: &'a IdempotencyKey, token: &'a Token) -> StoreFuture<'a, bool> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.release(key, token)
    }
}

/// A store that cannot be reached.
pub struct Down;

impl IdempotencyStore for Down {
    fn reserve<'a>(&'a self, _: &'a IdempotencyKey, _: Duration) -> StoreFuture<'a, Reservation> {
        StoreFuture::ready(Err(StoreError::Timeout))
    }
    fn complete<'a>(
        &'a self,
        _: &'a IdempotencyKey,
        _: &'a Token,
        _: Duration,
    ) -> StoreFuture<'a, bool> {
        StoreFuture::ready(Err(StoreError::Timeout))
    }
    fn release<'a>(&'a self, _: &'a IdempotencyKey, _: &'a Token) -> StoreFuture<'a, bool> {
        StoreFuture::ready(Err(StoreError::Timeout))
    }
}

/// A body that never sends a byte: an upload that stalls after its headers (or a forgery that
/// never ends).
pub struct Stalled;

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

/// One delivery of `tests/fixtures/signed.json`, signed by another ecosystem's library.
#[derive(serde::Deserialize)]
pub struct Fixture {
    pub library: String,
    pub scheme: String,
    pub secret: String,
    pub id: String,
    pub timestamp: i64,
    pub body: String,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Every fixture, or those of one scheme.
pub fn fixtures(scheme: Option<&str>) -> Vec<Fixture> {
    let all: Vec<Fixture> = serde_json::from_str(include_str!("../fixtures/signed.json")).unwrap();
    all.into_iter()
        .filter(|fixture| scheme.is_none_or(|scheme| fixture.scheme == scheme))
        .collect()
}

/// `POST /webhooks` with the fixture's headers and `body` (its own, or a tampered one).
pub fn fixture_request(fixture: &Fixture, body: &[u8]) -> Request<http_body_util::Full<Bytes>> {
    let mut request = Request::post("/webhooks")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    for (name, value) in &fixture.headers {
        request.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(value).unwrap(),
        );
    }
    request
}

/// The `WebhookMeta` the layer would make for `testing::sotion_event("member.created", id,
/// "site_1")`.
pub fn sotion_meta(id: &str) -> WebhookMeta {
    tower_webhook::testing::MetaBuilder::new(id)
        .with_event("member.created")
        .with_scope("site_1")
        .with_timestamp(time::macros::datetime!(2026-03-28 12:00 UTC))
        .with_version("1")
        .build()
}
