//! Whatever arrives at a public endpoint: every hostile request is refused with the right status
//! and code, the handler does not run, the idempotency store is not touched, nothing panics;
//! and the genuine delivery that follows is still processed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderValue, Request};
use axum::routing::post;
use axum::Router;
use common::{builder, error_code, event, layer, meta_app, secret, send, Counting, Seen};
use http_body_util::Full;
use tower_webhook::testing::{sotion_event_with_data, sotion_request};
use tower_webhook::{verify, Envelope, Secret, WebhookLayer};

fn signed(body: &[u8]) -> Request<Full<Bytes>> {
    sotion_request(&secret(), Bytes::copy_from_slice(body))
}

/// Signed, with the id and event headers given rather than read from the body (for bodies
/// `serde_json::Value` cannot hold).
fn signed_as(body: &[u8], id: &str) -> Request<Full<Bytes>> {
    let mut request = signed(body);
    request
        .headers_mut()
        .insert("x-webhook-id", id.parse().unwrap());
    request
        .headers_mut()
        .insert("x-webhook-event", "member.created".parse().unwrap());
    request
}

fn with(
    mut request: Request<Full<Bytes>>,
    name: &'static str,
    value: &[u8],
) -> Request<Full<Bytes>> {
    request
        .headers_mut()
        .insert(name, HeaderValue::from_bytes(value).unwrap());
    request
}

fn nested(depth: usize) -> Vec<u8> {
    let data = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    format!(
        r#"{{"id":"evt_deep","type":"member.created","timestamp":"2026-03-28T12:00:00Z","version":"1","siteId":"s","data":{{"deep":{data}}}}}"#
    )
    .into_bytes()
}

/// A genuine body with its bytes replaced after signing (same length), as a proxy or attacker
/// rewriting the JSON would.
fn reserialized() -> Request<Full<Bytes>> {
    let compact = event("evt_re", "site_1");
    let signature = verify::sign(&secret(), &compact);
    let value: serde_json::Value = serde_json::from_slice(&compact).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    let mut request = signed(&pretty);
    request
        .headers_mut()
        .insert("x-webhook-signature", signature.parse().unwrap());
    request
}

fn hostile_cases() -> Vec<(&'static str, Request<Full<Bytes>>, u16, &'static str)> {
    let body = event("evt_1", "site_1");
    let good = verify::sign(&secret(), &body);
    let hex = good.trim_start_matches("sha256=").to_owned();
    let sig = |value: &[u8]| with(signed(&body), "x-webhook-signature", value);
    let mut missing = signed(&body);
    missing.headers_mut().remove("x-webhook-signature");
    let mut twice = signed(&body);
    twice
        .headers_mut()
        .append("x-webhook-signature", good.parse().unwrap());
    let long_id = format!("\"{}\"", "x".repeat(300));
    let envelope = |id: &str| {
        format!(r#"{{"id":{id},"type":"member.created","timestamp":"2026-03-28T12:00:00Z","version":"1","siteId":"s","data":{{}}}}"#)
            .into_bytes()
    };
    let mut trailing = body.clone();
    trailing.extend_from_slice(b" garbage");
    let mut with_nul = body.clone();
    with_nul.push(0);
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&body);
    vec![
        ("missing signature", missing, 401, "missing_signature"),
        ("empty signature", sig(b""), 401, "malformed_signature"),
        ("truncated signature", sig(&good.as_bytes()[..40]), 401, "malformed_signature"),
        ("overlong signature", sig(format!("{good}{hex}").as_bytes()), 401, "malformed_signature"),
        ("odd-length hex", sig(format!("sha256={}", &hex[..63]).as_bytes()), 401, "malformed_signature"),
        ("non-hex", sig(format!("sha256={}", "g".repeat(64)).as_bytes()), 401, "malformed_signature"),
        ("sha1= prefix", sig(format!("sha1={hex}").as_bytes()), 401, "malformed_signature"),
        ("SHA256= prefix", sig(format!("SHA256={hex}").as_bytes()), 401, "malformed_signature"),
        ("bare hex", sig(hex.as_bytes()), 401, "malformed_signature"),
        ("space after =", sig(format!("sha256= {hex}").as_bytes()), 401, "malformed_signature"),
        ("two signature headers", twice, 401, "malformed_signature"),
        ("non-ASCII header bytes", sig(format!("sha256={}\u{fc}\u{fc}", &hex[..60]).as_bytes()), 401, "malformed_signature"),
        ("wrong secret", sotion_request(&Secret::new("whsec_wrong").unwrap(), body.clone()), 401, "signature_mismatch"),
        ("body signed as re-serialized JSON", reserialized(), 401, "signature_mismatch"),
        ("64 MiB by Content-Length", with(signed(&body), "content-length", b"67108864"), 413, "payload_too_large"),
        ("gzip body", with(signed(&body), "content-encoding", b"gzip"), 415, "unsupported_content_encoding"),
        ("empty body", signed(b""), 400, "invalid_json"),
        ("invalid UTF-8", signed(b"{\"id\":\"\xff\"}"), 400, "invalid_json"),
        ("JSON nested 10,000 deep (unsigned)", sotion_request(&Secret::new("whsec_x").unwrap(), nested(10_000)), 401, "signature_mismatch"),
        ("duplicate keys", signed(br#"{"id":"a","id":"b","type":"member.created","timestamp":"2026-03-28T12:00:00Z","version":"1","siteId":"s","data":{}}"#), 400, "invalid_envelope"),
        ("trailing garbage", signed(&trailing), 400, "invalid_json"),
        ("a BOM", signed(&bom), 400, "invalid_json"),
        ("a NUL byte", signed(&with_nul), 400, "invalid_json"),
        ("missing fields", signed(br#"{"id":"evt_1","type":"member.created"}"#), 400, "invalid_envelope"),
        ("mistyped field", signed(&envelope("42")), 400, "invalid_envelope"),
        ("300-byte id", signed(&envelope(&long_id)), 400, "invalid_event_id"),
        ("CR/LF in id", signed(&envelope(r#""a\r\nb""#)), 400, "invalid_event_id"),
        ("NUL in id", signed(&envelope(r#""a\u0000b""#)), 400, "invalid_event_id"),
        ("id header mismatch", with(signed(&body), "x-webhook-id", b"evt_2"), 400, "id_mismatch"),
        ("type header mismatch", with(signed(&body), "x-webhook-event", b"member.deleted"), 400, "event_mismatch"),
    ]
}

#[tokio::test]
async fn every_hostile_request_is_refused_without_touching_the_handler_or_the_store() {
    for (name, request, status, code) in hostile_cases() {
        let store = Counting::default();
        let (app, seen) = meta_app(builder().with_store(store.clone()), "/webhooks");
        let response = send(&app, request).await;
        assert_eq!(response.status(), status, "{name}");
        assert_eq!(error_code(response).await, code, "{name}");
        assert_eq!(seen.runs(), 0, "{name}: the handler ran");
        assert_eq!(store.calls(), 0, "{name}: the store was touched");
        // The genuine delivery still goes through.
        let genuine = send(&app, signed(&event("evt_genuine", "site_1"))).await;
        assert_eq!(
            genuine.status(),
            200,
            "{name}: the genuine delivery after it"
        );
    }
}

#[tokio::test]
async fn large_but_legal_content_is_accepted_and_typed_extraction_decides_about_numbers() {
    let huge_string = serde_json::json!({ "note": "x".repeat(900 * 1024) });
    let (app, seen) = meta_app(layer(), "/webhooks");
    let body = sotion_event_with_data("member.created", "evt_big", "s", &huge_string);
    assert_eq!(send(&app, signed(&body)).await.status(), 200);
    assert_eq!(seen.runs(), 1);

    // A number no f64 holds: the layer (which never interprets `data`) lets it through, and so
    // does the default `Envelope` (its `data` is a `RawObject`, each value kept as sent), while
    // `Envelope<serde_json::Value>`, a type the handler chose, says the data does not fit.
    let body = br#"{"id":"evt_num","type":"member.created","timestamp":"2026-03-28T12:00:00Z","version":"1","siteId":"s","data":{"n":1e400}}"#;
    // So does JSON nested 10,000 deep inside `data` (serde_json skips it without recursing).
    for (body, id) in [(&body[..], "evt_num"), (&nested(10_000)[..], "evt_deep")] {
        let (bytes_app, bytes_seen) = meta_app(layer(), "/webhooks");
        assert_eq!(
            send(&bytes_app, signed_as(body, id)).await.status(),
            200,
            "{id}"
        );
        assert_eq!(bytes_seen.runs(), 1);
        let raw = Router::new().route(
            "/webhooks",
            post(|event: Envelope| async move { event.data.keys().collect::<String>() })
                .route_layer(layer()),
        );
        let response = send(&raw, signed_as(body, id)).await;
        assert_eq!(response.status(), 200, "{id}");
        let typed = Router::new().route(
            "/webhooks",
            post(|_: Envelope<serde_json::Value>| async { "unreachable" }).route_layer(layer()),
        );
        let response = send(&typed, signed_as(body, id)).await;
        assert_eq!(response.status(), 422, "{id}");
        assert_eq!(error_code(response).await, "invalid_data");
    }
    let digits = format!(
        r#"{{"id":"evt_digits","type":"member.created","timestamp":"2026-03-28T12:00:00Z","version":"1","siteId":"s","data":{{"n":{}}}}}"#,
        "9".repeat(100_000)
    );
    let (app, seen) = meta_app(layer(), "/webhooks");
    assert_eq!(
        send(&app, signed_as(digits.as_bytes(), "evt_digits"))
            .await
            .status(),
        200
    );
    assert_eq!(seen.runs(), 1);
}

/// Serves `POST /webhooks` behind `layer` on a loopback port; returns the port and what the
/// handler saw.
async fn serve(layer: WebhookLayer) -> (u16, Seen) {
    let (app, seen) = meta_app(layer, "/webhooks");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

fn raw_head(body: &[u8], content_length: usize) -> Vec<u8> {
    let signature = verify::sign(&secret(), body);
    format!(
        "POST /webhooks HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         x-webhook-signature: {signature}\r\nx-webhook-id: evt_slow\r\nx-webhook-event: member.created\r\n\
         content-length: {content_length}\r\n\r\n"
    )
    .into_bytes()
}

fn read_status(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut response = Vec::new();
    let mut buffer = [0_u8; 4096];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..n]);
        if response.windows(4).any(|w| w == b"\r\n\r\n") && response.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_body_gets_408_and_holds_no_reservation() {
    let store = Counting::default();
    let layer = builder()
        .with_store(store.clone())
        .with_body_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (port, seen) = serve(layer).await;
    let body = event("evt_slow", "site_1");
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(&raw_head(&body, body.len())).unwrap();
        let started = Instant::now();
        // One byte every 100 ms: the whole body would take minutes.
        for byte in body.iter().take(10) {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (read_status(&mut stream), started.elapsed())
    })
    .await
    .unwrap();
    let (response, elapsed) = answer;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("body_timeout"), "{response}");
    assert!(elapsed < Duration::from_secs(5));
    assert_eq!(seen.runs(), 0);
    assert_eq!(store.calls(), 0, "a stalled body must hold no reservation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_larger_than_the_body_sent_is_refused() {
    let store = Counting::default();
    let layer = builder()
        .with_store(store.clone())
        .with_body_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (port, seen) = serve(layer).await;
    let body = event("evt_short", "site_1");
    // The client announces more than it sends, and then waits: the body never completes.
    let waiting = tokio::task::spawn_blocking({
        let body = body.clone();
        move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .write_all(&raw_head(&body, body.len() + 100))
                .unwrap();
            stream.write_all(&body).unwrap();
            read_status(&mut stream)
        }
    });
    let response = waiting.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    // The client announces more, sends less, and closes its side: the body is incomplete.
    let closing = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(&raw_head(&body, body.len() + 100))
            .unwrap();
        stream.write_all(&body).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        read_status(&mut stream)
    });
    let response = closing.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("body_read_failed"), "{response}");
    assert_eq!(seen.runs(), 0);
    assert_eq!(store.calls(), 0);
}
