//! The whole service, driven with arbitrary methods, headers and chunked bodies, sometimes
//! correctly signed: it must never panic, every answer must be one the crate documents, and the
//! handler must only ever see correctly signed bytes.
#![no_main]

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use libfuzzer_sys::fuzz_target;
use tower::{service_fn, Layer, ServiceExt};
use tower_webhook::{verify, Rejection, Scheme, Secret, WebhookLayer};

const HEADERS: [&str; 8] = [
    "x-webhook-signature", "x-webhook-id", "x-webhook-event", "x-webhook-delivery",
    "content-length", "content-encoding", "content-type", "transfer-encoding",
];

#[derive(Arbitrary, Debug)]
struct Input {
    sign: bool,
    headers: Vec<(u8, Vec<u8>)>,
    chunks: Vec<Vec<u8>>,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    })
}

fuzz_target!(|input: Input| {
    let secret = Secret::new("whsec_fuzz").unwrap();
    let body: Vec<u8> = input.chunks.iter().take(64).flatten().copied().collect();
    let mut request = Request::post("/webhooks");
    for (name, value) in input.headers.iter().take(16) {
        let name = HeaderName::from_static(HEADERS[usize::from(*name) % HEADERS.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            request = request.header(name, value);
        }
    }
    let expected = verify::sign(&secret, &body);
    if input.sign {
        request = request.header("x-webhook-signature", expected.as_str());
    }
    let chunks: Vec<Result<http_body::Frame<Bytes>, Infallible>> = input
        .chunks
        .iter()
        .take(64)
        .map(|chunk| Ok(http_body::Frame::data(Bytes::copy_from_slice(chunk))))
        .collect();
    let Ok(request) = request.body(StreamBody::new(futures_util::stream::iter(chunks))) else {
        return;
    };

    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let expected_body = body.clone();
    let handler = service_fn(move |request: Request<Full<Bytes>>| {
        let seen = seen.clone();
        let expected_body = expected_body.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            let got = request.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(got, expected_body, "the handler saw other bytes than were signed");
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let service = WebhookLayer::builder(Scheme::sotion())
        .with_secrets(secret)
        .with_body_limit(NonZeroUsize::new(4096).unwrap())
        .with_clock(|| SystemTime::UNIX_EPOCH + Duration::from_secs(1_774_699_200))
        .build()
        .unwrap()
        .layer(handler);
    let response = runtime().block_on(service.oneshot(request)).unwrap();

    let status = response.status().as_u16();
    if calls.load(Ordering::SeqCst) > 0 {
        let signature_ok = input.sign;
        assert!(signature_ok, "the handler ran for a request we did not sign");
        assert!(body.len() <= 4096);
    } else if let Some(rejection) = response.extensions().get::<Rejection>() {
        assert_eq!(rejection.status().as_u16(), status);
    } else {
        assert_eq!(status, 200, "an answer of the layer's own that is neither a rejection nor a duplicate");
    }
});
