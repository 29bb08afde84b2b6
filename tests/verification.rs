//! The verification layer, request by request: every rejection and the accepted path.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use common::{
    app, assert_rejected, builder, error_code, event, layer, secret, send, Behaviour, Stalled,
};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use tower_webhook::envelope::MemberData;
use tower_webhook::testing::{self, sotion_request};
use tower_webhook::{verify, Envelope, EventType, Rejection, Scheme, Secret, WebhookLayer};

fn signed(body: &[u8]) -> Request<Full<Bytes>> {
    sotion_request(&secret(), Bytes::copy_from_slice(body))
}

fn with_header(
    mut request: Request<Full<Bytes>>,
    name: &str,
    value: &[u8],
) -> Request<Full<Bytes>> {
    request.headers_mut().insert(
        name.parse::<axum::http::HeaderName>().unwrap(),
        HeaderValue::from_bytes(value).unwrap(),
    );
    request
}

fn without_header(mut request: Request<Full<Bytes>>, name: &str) -> Request<Full<Bytes>> {
    request.headers_mut().remove(name);
    request
}

#[tokio::test]
async fn accepts_a_signed_delivery_and_hands_over_the_same_bytes_and_metadata() {
    let (app, seen) = app(layer(), Behaviour::Ok);
    let body = event("evt_1", "site_1");
    let request = with_header(signed(&body), "x-webhook-delivery", b"dlv_1");
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.runs(), 1);
    assert_eq!(seen.last_body.lock().unwrap().as_deref(), Some(&body[..]));
    let meta = seen.last_meta.lock().unwrap().clone().unwrap();
    assert_eq!(meta.id(), "evt_1");
    assert_eq!(meta.event(), Some("member.created"));
    assert_eq!(
        EventType::from(meta.event().unwrap()),
        EventType::MemberCreated
    );
    assert_eq!(meta.scope(), Some("site_1"));
    assert_eq!(meta.delivery(), Some("dlv_1"));
    assert_eq!(meta.version(), Some("1"));
    assert_eq!(meta.scheme(), "sotion");
    assert_eq!(
        meta.timestamp().unwrap(),
        tower_webhook::time::macros::datetime!(2026-03-28 12:00:00 UTC)
    );
}

#[tokio::test]
async fn accepts_upper_case_hex() {
    let (app, seen) = app(layer(), Behaviour::Ok);
    let body = event("evt_upper", "site_1");
    let upper = verify::sign(&secret(), &body)
        .replace("sha256=", "")
        .to_uppercase();
    let request = with_header(
        signed(&body),
        "x-webhook-signature",
        format!("sha256={upper}").as_bytes(),
    );
    assert_eq!(send(&app, request).await.status(), StatusCode::OK);
    assert_eq!(seen.runs(), 1);
}

#[tokio::test]
async fn refuses_a_missing_signature() {
    let (app, seen) = app(layer(), Behaviour::Ok);
    let request = without_header(signed(&event("e", "s")), "x-webhook-signature");
    assert_rejected(send(&app, request).await, 401, "missing_signature", &seen).await;
}

#[tokio::test]
async fn refuses_malformed_signatures() {
    let body = event("e", "s");
    let good = verify::sign(&secret(), &body);
    let hex = good.trim_start_matches("sha256=").to_owned();
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"sha256=".to_vec(),
        hex.clone().into_bytes(),
        format!("sha1={hex}").into_bytes(),
        format!("SHA256={hex}").into_bytes(),
        format!("sha256= {hex}").into_bytes(),
        format!("sha256={}", &hex[..63]).into_bytes(),
        format!("sha256={hex}0").into_bytes(),
        format!("sha256={}", "zz".repeat(32)).into_bytes(),
        format!("sha256={}\u{e9}", &hex[..63]).into_bytes(),
        format!("{good},{good}").into_bytes(),
    ];
    for value in cases {
        let (app, seen) = app(layer(), Behaviour::Ok);
        let request = with_header(signed(&body), "x-webhook-signature", &value);
        assert_rejected(send(&app, request).await, 401, "malformed_signature", &seen).await;
    }
}

#[tokio::test]
async fn refuses_a_repeated_signature_header_even_if_one_is_right() {
    let (app, seen) = app(layer(), Behaviour::Ok);
    let body = event("e", "s");
    let mut request = signed(&body);
    let good = request.headers()["x-webhook-signature"].clone();
    request.headers_mut().append("x-webhook-signature", good);
    assert_rejected(send(&app, request).await, 401, "malformed_signature", &seen).await;
}

#[tokio::test]
async fn refuses_a_wrong_secret_without_revealing_the_expected_signature() {
    let (app, seen) = app(layer(), Behaviour::Ok);
    let body = event("e", "s");
    let request = sotion_request(&Secret::new("whsec_someone_else").unwrap(), body.clone());
    let response = send(&app, request).await;
    assert_eq!(response.status(), 401);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    let expected = verify::sign(&secret(), &body);
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(
        !text.contains(expected.trim_start_matches("sha256=")),
        "{text}"
    );
    assert!(!text.contains(common::SECRET), "{text}");
    assert!(text.contains("signature_mismatch"));
    assert_eq!(seen.runs(), 0);
}

#[tokio::test]
async fn accepts_every_configured_secret_during_rotation_and_no_other() {
    let old = Secret::new("whsec_old").unwrap();
    let new = Secret::new("whsec_new").unwrap();
    let layer = WebhookLayer::builder(Scheme::sotion())
        .with_secret("whsec_new")
        .with_secret("whsec_old")
        .build()
        .unwrap();
    let (app, seen) = app(layer, Behaviour::Ok);
    let response = send(&app, sotion_request(&old, event("evt_old", "s"))).await;
    assert_eq!(response.status(), 200);
    let response = send(&app, sotion_request(&new, event("evt_new", "s"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(seen.runs(), 2);
    let stranger = Secret::new("whsec_unknown").unwrap();
    let response = send(&app, sotion_request(&stranger, event("evt_x", "s"))).await;
    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await, "signature_mismatch");
    assert_eq!(seen.runs(), 2);
}

/// A body that records whether it was ever polled, and yields `chunks` of `size` bytes.
struct Probe {
    polled: Arc<AtomicBool>,
    bytes_read: Arc<AtomicUsize>,
    chunks: usize,
    size: usize,
}

impl http_body::Body for Probe {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polled.store(true, Ordering::SeqCst);
        if self.chunks == 0 {
            return Poll::Ready(None);
        }
        self.chunks -= 1;
        self.bytes_read.fetch_add(self.size, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; self.size])))))
    }
}

fn probe(chunks: usize, size: usize) -> (Probe, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let polled = Arc::new(AtomicBool::new(false));
    let bytes_read = Arc::new(AtomicUsize::new(0));
    let body = Probe {
        polled: polled.clone(),
        bytes_read: bytes_read.clone(),
        chunks,
        size,
    };
    (body, polled, bytes_read)
}

fn signed_headers_with_body<B>(body: B, content_length: Option<u64>) -> Request<B> {
    let template = signed(&event("e", "s"));
    let (mut parts, _) = template.into_parts();
    parts.headers.remove("content-length");
    if let Some(length) = content_length {
        parts
            .headers
            .insert("content-length", HeaderValue::from(length));
    }
    Request::from_parts(parts, body)
}

fn limit(bytes: usize) -> NonZeroUsize {
    NonZeroUsize::new(bytes).unwrap()
}

#[tokio::test]
async fn refuses_an_oversized_content_length_before_reading_the_body() {
    let (app, seen) = app(builder().with_body_limit(limit(1024)), Behaviour::Ok);
    let (body, polled, _) = probe(64, 1024 * 1024);
    let request = signed_headers_with_body(body, Some(64 * 1024 * 1024));
    assert_rejected(send(&app, request).await, 413, "payload_too_large", &seen).await;
    assert!(!polled.load(Ordering::SeqCst), "the body was read");
}

#[tokio::test]
async fn cuts_a_chunked_body_at_the_limit_without_buffering_it_all() {
    let (app, seen) = app(builder().with_body_limit(limit(4096)), Behaviour::Ok);
    // 64 MiB announced by nobody: 1,024 chunks of 64 KiB.
    let (body, _, bytes_read) = probe(1024, 64 * 1024);
    let request = signed_headers_with_body(body, None);
    assert_rejected(send(&app, request).await, 413, "payload_too_large", &seen).await;
    assert_eq!(
        bytes_read.load(Ordering::SeqCst),
        64 * 1024,
        "read past the first chunk over the limit"
    );
}

#[tokio::test]
async fn accepts_a_body_of_exactly_the_limit() {
    let body = event("evt_limit", "s");
    let (app, seen) = app(builder().with_body_limit(limit(body.len())), Behaviour::Ok);
    assert_eq!(send(&app, signed(&body)).await.status(), 200);
    assert_eq!(seen.runs(), 1);
    let (app, seen) = common::app(
        builder().with_body_limit(limit(body.len() - 1)),
        Behaviour::Ok,
    );
    assert_rejected(
        send(&app, signed(&body)).await,
        413,
        "payload_too_large",
        &seen,
    )
    .await;
}

#[tokio::test]
async fn refuses_compressed_bodies() {
    for encoding in ["gzip", "br", "deflate", "identity, gzip"] {
        let (app, seen) = app(layer(), Behaviour::Ok);
        let request = with_header(
            signed(&event("e", "s")),
            "content-encoding",
            encoding.as_bytes(),
        );
        assert_rejected(
            send(&app, request).await,
            415,
            "unsupported_content_encoding",
            &seen,
        )
        .await;
    }
    let (app, seen) = app(layer(), Behaviour::Ok);
    let request = with_header(signed(&event("e", "s")), "content-encoding", b"identity");
    assert_eq!(send(&app, request).await.status(), 200);
    assert_eq!(seen.runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn answers_408_to_a_body_that_stalls() {
    let layer = builder().with_body_timeout(Duration::from_secs(5));
    let (app, seen) = app(layer, Behaviour::Ok);
    let request = signed_headers_with_body(Stalled, Some(100));
    assert_rejected(send(&app, request).await, 408, "body_timeout", &seen).await;
}

fn envelope_with(id: &str, event_type: &str, version: &str, data: &str) -> Vec<u8> {
    format!(
        r#"{{"id":{id},"type":{event_type},"timestamp":"2026-03-28T12:00:00.000Z","version":{version},"siteId":"site_1","data":{data}}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn refuses_bodies_that_are_not_envelopes_only_after_the_signature_verified() {
    let long_id = format!("\"{}\"", "x".repeat(256));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "invalid_json"),
        (b"not json".to_vec(), "invalid_json"),
        (b"\xef\xbb\xbf{}".to_vec(), "invalid_json"),
        (b"{\"id\":\"\xff\xfe\"}".to_vec(), "invalid_json"),
        (b"[]".to_vec(), "invalid_envelope"),
        (
            br#"{"id":"e","type":"member.created"}"#.to_vec(),
            "invalid_envelope",
        ),
        (
            envelope_with("1", r#""member.created""#, r#""1""#, "{}"),
            "invalid_envelope",
        ),
        (
            envelope_with(r#""e""#, r#""member.created""#, r#""1""#, "[]"),
            "invalid_envelope",
        ),
        (
            envelope_with(r#""""#, r#""member.created""#, r#""1""#, "{}"),
            "invalid_event_id",
        ),
        (
            envelope_with(&long_id, r#""member.created""#, r#""1""#, "{}"),
            "invalid_event_id",
        ),
        (
            envelope_with(r#""a\r\nb""#, r#""member.created""#, r#""1""#, "{}"),
            "invalid_event_id",
        ),
        (
            envelope_with(r#""a\u0000""#, r#""member.created""#, r#""1""#, "{}"),
            "invalid_event_id",
        ),
        (
            envelope_with(r#""e""#, r#""member.created""#, r#""2""#, "{}"),
            "unsupported_version",
        ),
    ];
    for (body, code) in cases {
        let (app, seen) = app(layer(), Behaviour::Ok);
        let mut request = signed(&body);
        // Headers that would agree with a well-formed envelope.
        request
            .headers_mut()
            .insert("x-webhook-id", HeaderValue::from_static("e"));
        request.headers_mut().insert(
            "x-webhook-event",
            HeaderValue::from_static("member.created"),
        );
        assert_rejected(send(&app, request).await, 400, code, &seen).await;
    }
}

#[tokio::test]
async fn a_signed_body_that_is_not_utf8_passes_the_signature_then_fails_as_json() {
    let (app, seen) = app(layer(), Behaviour::Ok);
    let body = b"\xff\xfe\x00garbage";
    assert_rejected(send(&app, signed(body)).await, 400, "invalid_json", &seen).await;
    // The same bytes with a wrong signature are a 401, not a 400: the signature comes first.
    let (app, seen) = common::app(layer(), Behaviour::Ok);
    let forged = sotion_request(
        &Secret::new("whsec_other").unwrap(),
        Bytes::from_static(body),
    );
    assert_rejected(send(&app, forged).await, 401, "signature_mismatch", &seen).await;
}

#[tokio::test]
async fn refuses_headers_that_disagree_with_the_signed_body() {
    let body = event("evt_1", "site_1");
    let cases = vec![
        (
            with_header(signed(&body), "x-webhook-id", b"evt_2"),
            "id_mismatch",
        ),
        (without_header(signed(&body), "x-webhook-id"), "id_mismatch"),
        (
            with_header(signed(&body), "x-webhook-event", b"member.deleted"),
            "event_mismatch",
        ),
        (
            without_header(signed(&body), "x-webhook-event"),
            "event_mismatch",
        ),
    ];
    for (request, code) in cases {
        let (app, seen) = app(layer(), Behaviour::Ok);
        assert_rejected(send(&app, request).await, 400, code, &seen).await;
    }
}

#[tokio::test]
async fn verifies_the_bytes_received_never_re_serialized_json() {
    let bodies: Vec<&[u8]> = vec![
        "{\"id\":\"evt_emoji\",\"type\":\"member.created\",\"timestamp\":\"2026-03-28T12:00:00.000Z\",\"version\":\"1\",\"siteId\":\"s\",\"data\":{\"name\":\"Zoë 🦀\"}}".as_bytes(),
        br#"{"id":"evt_ls","type":"member.created","timestamp":"2026-03-28T12:00:00.000Z","version":"1","siteId":"s","data":{"bio":"a\u2028b \u00e9 \"quoted\" \/ \\"}}"#,
        b"{ \"id\" : \"evt_ws\" ,\n\t\"type\":\"member.created\",\r\n \"timestamp\":\"2026-03-28T12:00:00Z\",\"version\":\"1\",  \"siteId\":\"s\",\"data\":{ }\n}\n",
        "{\"id\":\"evt_raw_ls\",\"type\":\"member.created\",\"timestamp\":\"2026-03-28T12:00:00Z\",\"version\":\"1\",\"siteId\":\"s\",\"data\":{\"bio\":\"a\u{2028}b\"}}".as_bytes(),
    ];
    for body in bodies {
        let (app, seen) = app(layer(), Behaviour::Ok);
        let response = send(&app, signed(body)).await;
        assert_eq!(response.status(), 200, "{}", String::from_utf8_lossy(body));
        assert_eq!(seen.last_body.lock().unwrap().as_deref(), Some(body));
    }
}

#[tokio::test]
async fn the_envelope_extractor_types_data_and_keeps_unknown_fields() {
    let handler = |event: Envelope<MemberData>| async move {
        assert_eq!(event.event_type, EventType::MemberCreated);
        format!(
            "{} {}",
            event.data.email.unwrap_or_default(),
            event.data.extra.get("plan").map_or("-", |raw| raw.get())
        )
    };
    let app = Router::new().route("/webhooks", post(handler).route_layer(layer()));
    let data = serde_json::json!({"email": "ada@example.com", "plan": "pro"});
    let body = tower_webhook::testing::sotion_event_with_data("member.created", "e1", "s", &data);
    let response = send(&app, signed(&body)).await;
    assert_eq!(response.status(), 200);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"ada@example.com \"pro\"");
}

#[tokio::test]
async fn an_unknown_event_type_reaches_the_handler() {
    let handler = |event: Envelope| async move { event.event_type.to_string() };
    let app = Router::new().route("/webhooks", post(handler).route_layer(layer()));
    let body = tower_webhook::testing::sotion_event("site.renamed", "e1", "s");
    let response = send(&app, signed(&body)).await;
    assert_eq!(response.status(), 200);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"site.renamed");
}

#[tokio::test]
async fn data_that_does_not_fit_the_handlers_type_is_422() {
    #[derive(serde::Deserialize)]
    struct Strict {
        #[allow(dead_code)]
        required_number: u64,
    }
    let handler = |_: Envelope<Strict>| async { "unreachable" };
    let app = Router::new().route("/webhooks", post(handler).route_layer(layer()));
    let response = send(&app, signed(&event("e1", "s"))).await;
    assert_eq!(response.status(), 422);
    assert_eq!(error_code(response).await, "invalid_data");
}

#[tokio::test]
async fn extractors_without_the_layer_answer_500_naming_it() {
    let envelope = |_: Envelope| async { "unreachable" };
    let meta = |_: tower_webhook::WebhookMeta| async { "unreachable" };
    let app = Router::new()
        .route("/envelope", post(envelope))
        .route("/meta", post(meta));
    for path in ["/envelope", "/meta"] {
        let request = Request::post(path)
            .body(Body::from(event("e", "s")))
            .unwrap();
        let response = send(&app, request).await;
        assert_eq!(response.status(), 500);
        let text = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(json["error"], "missing_webhook_layer");
        assert!(json["message"].as_str().unwrap().contains("WebhookLayer"));
    }
}

async fn body_text(response: axum::response::Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn an_optional_meta_is_none_without_the_layer_and_some_behind_it() {
    let handler = |meta: Option<tower_webhook::WebhookMeta>| async move {
        meta.map_or_else(|| "none".to_owned(), |meta| meta.id().to_owned())
    };
    let app = Router::new()
        .route("/plain", post(handler))
        .route("/webhooks", post(handler).route_layer(layer()));
    let plain = Request::post("/plain").body(Body::from("{}")).unwrap();
    let response = send(&app, plain).await;
    assert_eq!(response.status(), 200);
    assert_eq!(body_text(response).await, "none");
    let signed = testing::sotion_request(&secret(), event("evt_optional", "site_1"));
    let response = send(&app, signed).await;
    assert_eq!(response.status(), 200);
    assert_eq!(body_text(response).await, "evt_optional");
}

#[tokio::test]
async fn every_extractor_rejection_has_a_status_and_a_body_text_matching_its_answer() {
    use axum::response::IntoResponse;
    use tower_webhook::extract::{
        EnvelopeRejection, MissingWebhookLayer, NotAnEnvelope, VerifiedRejection,
    };
    let rejections: Vec<(StatusCode, String, &str, axum::response::Response)> = vec![
        {
            let r = EnvelopeRejection::from(MissingWebhookLayer);
            (
                r.status(),
                r.body_text(),
                "missing_webhook_layer",
                r.into_response(),
            )
        },
        {
            let r = EnvelopeRejection::from(NotAnEnvelope);
            (
                r.status(),
                r.body_text(),
                "not_an_envelope",
                r.into_response(),
            )
        },
        {
            let r = VerifiedRejection::from(MissingWebhookLayer);
            (
                r.status(),
                r.body_text(),
                "missing_webhook_layer",
                r.into_response(),
            )
        },
    ];
    let statuses: Vec<u16> = rejections.iter().map(|r| r.0.as_u16()).collect();
    assert_eq!(statuses, [500, 500, 500]);
    for (status, text, code, response) in rejections {
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert_eq!(json["error"], code);
        assert_eq!(json["message"], text);
    }
}

#[tokio::test]
async fn other_methods_get_405_when_the_layer_is_a_route_layer() {
    let (app, seen) = app(layer(), Behaviour::Ok);
    let request = Request::get("/webhooks").body(Body::empty()).unwrap();
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(seen.runs(), 0);
}

#[tokio::test]
async fn the_layer_works_on_a_plain_tower_service() {
    use tower::{service_fn, Layer, ServiceExt};
    let service = builder()
        .without_idempotency()
        .build()
        .unwrap()
        .layer(service_fn(|request: Request<Full<Bytes>>| async move {
            let meta = request
                .extensions()
                .get::<tower_webhook::WebhookMeta>()
                .cloned();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                "{} {}",
                meta.map(|m| m.id().to_owned()).unwrap_or_default(),
                body.len()
            )))))
        }));
    let body = event("evt_plain", "s");
    let response = service.oneshot(signed(&body)).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, format!("evt_plain {}", body.len()));

    let response = layer()
        .layer(service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
        }))
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.extensions().get::<Rejection>().is_some());
}

/// Invariant 7 (DESIGN.md): an authentic delivery is never refused for an optional field.
/// Sotion's `X-Webhook-Delivery` is unsigned, optional and informational (it names an attempt,
/// it is not in the key): a repeated or garbled one used to refuse the signed delivery with
/// `400 invalid_header`, and a sender does not retry a 4xx: the event was lost.
#[tokio::test]
async fn an_unusable_delivery_attempt_header_does_not_refuse_an_authentic_delivery() {
    for value in [&b""[..], &[b'x'; 300][..], b"caf\xc3\xa9 \xff"] {
        let (app, seen) = app(layer(), Behaviour::Ok);
        let request = with_header(
            signed(&event("evt_1", "site_1")),
            "x-webhook-delivery",
            value,
        );
        let response = send(&app, request).await;
        assert_eq!(response.status(), 200, "{}", String::from_utf8_lossy(value));
        assert_eq!(seen.runs(), 1);
        let meta = seen.last_meta.lock().unwrap().clone().unwrap();
        assert_eq!(meta.delivery(), None, "an unusable attempt id is dropped");
    }
    let (app, seen) = app(layer(), Behaviour::Ok);
    let mut request = signed(&event("evt_2", "site_1"));
    for attempt in ["dlv_1", "dlv_2"] {
        request
            .headers_mut()
            .append("x-webhook-delivery", HeaderValue::from_static(attempt));
    }
    assert_eq!(send(&app, request).await.status(), 200, "a repeated header");
    assert_eq!(seen.runs(), 1);
}

#[tokio::test]
async fn the_layer_verify_and_verify_signature_refuse_a_request_for_the_same_reason() {
    let good = event("evt_1", "site_1");
    let forged = sotion_request(&Secret::new("whsec_other").unwrap(), good.clone());
    let cases = [
        (
            "unsigned",
            without_header(signed(&good), "x-webhook-signature"),
        ),
        (
            "forged and compressed",
            with_header(forged.clone(), "content-encoding", b"gzip"),
        ),
        ("forged", forged),
        (
            "forged and not an envelope",
            sotion_request(
                &Secret::new("whsec_other").unwrap(),
                Bytes::from_static(b"[]"),
            ),
        ),
        ("not an envelope", signed(b"[]")),
        (
            "another id",
            with_header(signed(&good), "x-webhook-id", b"evt_2"),
        ),
    ];
    let (app, seen) = app(layer(), Behaviour::Ok);
    let secrets = tower_webhook::Secrets::new(secret());
    let scheme = tower_webhook::Scheme::sotion();
    for (case, request) in cases {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let now = std::time::SystemTime::now();
        let full = verify::verify(&scheme, &secrets, &parts.headers, &body, now).unwrap_err();
        let signature = verify::verify_signature(&scheme, &secrets, &parts.headers, &body, now);
        let answer = send(&app, Request::from_parts(parts, Full::new(body))).await;
        assert_eq!(error_code(answer).await, full.kind().code(), "{case}");
        // The signature check stops before the body is read as JSON: it agrees on the
        // refusals before that step, and passes a genuine signature.
        match signature {
            Err(rejection) => assert_eq!(rejection.kind(), full.kind(), "{case}"),
            Ok(()) => assert!(!full.kind().is_authentication_failure(), "{case}"),
        }
    }
    assert_eq!(seen.runs(), 0);
}
