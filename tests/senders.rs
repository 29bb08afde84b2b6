//! The presets of issue 22 (Shopify, WooCommerce, Discord, Standard Webhooks `v1a` and the
//! `svix-*` names, Twilio, SendGrid, Square, Zoom, Meta, Paddle, Linear, Twitch, Microsoft
//! Graph) and the endpoint handshakes the layer answers, against fixtures made by the senders'
//! own libraries or from their documented examples (`tests/fixtures/senders.json`, made by
//! `tests/fixtures/generate_senders.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use common::send;
use http_body_util::BodyExt;
#[cfg(feature = "sqlite")]
use tower_webhook::inbox::InboxBackend as _;
use tower_webhook::layer::WebhookLayerBuilder;
use tower_webhook::scheme::Outgoing;
use tower_webhook::{ConfigError, Scheme, WebhookLayer, WebhookMeta};

#[derive(Debug, serde::Deserialize)]
struct Fixture {
    library: String,
    scheme: String,
    secret: String,
    public_url: Option<String>,
    verify_token: Option<String>,
    now: i64,
    method: String,
    path: String,
    content_type: Option<String>,
    body: String,
    headers: std::collections::BTreeMap<String, String>,
    expect: Expect,
}

#[derive(Debug, serde::Deserialize)]
struct Expect {
    status: u16,
    id: Option<String>,
    event: Option<String>,
    error: Option<String>,
    handshake: Option<serde_json::Value>,
}

fn fixtures() -> Vec<Fixture> {
    serde_json::from_str(include_str!("fixtures/senders.json")).unwrap()
}

fn at(unix: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap())
}

/// What the handler saw.
#[derive(Clone, Default)]
struct Seen {
    runs: Arc<AtomicUsize>,
    meta: Arc<Mutex<Option<WebhookMeta>>>,
}

/// `/webhooks` for `POST` and `GET` (Meta's handshake is a `GET`) behind `layer`, with a
/// handler that records what it saw.
fn app_for(layer: WebhookLayerBuilder) -> (Router, Seen) {
    let layer = layer.build().unwrap();
    let seen = Seen::default();
    let state = seen.clone();
    let handler = move |meta: WebhookMeta| {
        let state = state.clone();
        async move {
            state.runs.fetch_add(1, Ordering::SeqCst);
            *state.meta.lock().unwrap() = Some(meta);
            "handled"
        }
    };
    // The senders' own examples call their own paths (`/myapp.php`, `/webhook`).
    let route = post(handler.clone()).get(handler).route_layer(layer);
    let router = Router::new()
        .route("/webhooks", route.clone())
        .route("/{*path}", route);
    (router, seen)
}

fn layer_for(fixture: &Fixture, secret: &str) -> WebhookLayerBuilder {
    let scheme = Scheme::preset(&fixture.scheme).unwrap();
    let now = fixture.now;
    let mut layer = WebhookLayer::builder(scheme)
        .with_secret(secret)
        .with_clock(move || at(now));
    if let Some(url) = &fixture.public_url {
        layer = layer.with_public_url(url);
    }
    if let Some(token) = &fixture.verify_token {
        layer = layer.with_verify_token(token);
    }
    layer
}

fn request(fixture: &Fixture, body: &[u8]) -> Request<Body> {
    let mut request = Request::builder()
        .method(fixture.method.as_str())
        .uri(&fixture.path)
        .body(Body::from(body.to_vec()))
        .unwrap();
    if let Some(content_type) = &fixture.content_type {
        request
            .headers_mut()
            .insert("content-type", HeaderValue::from_str(content_type).unwrap());
    }
    for (name, value) in &fixture.headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    request
}

async fn text(response: axum::http::Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn every_senders_fixture_gets_the_answer_its_sender_expects() {
    let fixtures = fixtures();
    let schemes: std::collections::BTreeSet<_> = fixtures.iter().map(|f| &f.scheme).collect();
    for name in [
        "shopify",
        "woocommerce",
        "discord",
        "standard-v1a",
        "standard",
        "twilio",
        "sendgrid",
        "square",
        "zoom",
        "meta",
        "paddle",
        "linear",
        "twitch",
        "slack",
        "graph",
    ] {
        assert!(schemes.contains(&name.to_owned()), "no fixture for {name}");
    }
    for fixture in &fixtures {
        let what = format!("{}: {}", fixture.scheme, fixture.library);
        let (app, seen) = app_for(layer_for(fixture, &fixture.secret));
        let response = send(&app, request(fixture, fixture.body.as_bytes())).await;
        assert_eq!(response.status(), fixture.expect.status, "{what}");
        let expect = &fixture.expect;
        if let Some(error) = &expect.error {
            assert_eq!(common::error_code(response).await, *error, "{what}");
            assert_eq!(seen.runs.load(Ordering::SeqCst), 0, "{what}");
            continue;
        }
        if let Some(handshake) = &expect.handshake {
            // Answered by the layer: the handler never runs.
            let content_type = response
                .headers()
                .get("content-type")
                .map(|value| value.to_str().unwrap().to_owned());
            let answer = text(response).await;
            match handshake {
                serde_json::Value::String(expected) => {
                    assert_eq!(answer, *expected, "{what}");
                    if !expected.is_empty() {
                        assert_eq!(
                            content_type.as_deref(),
                            Some("text/plain; charset=utf-8"),
                            "{what}"
                        );
                    }
                }
                json => {
                    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
                    assert_eq!(answer, *json, "{what}");
                    assert_eq!(content_type.as_deref(), Some("application/json"), "{what}");
                }
            }
            assert_eq!(seen.runs.load(Ordering::SeqCst), 0, "{what}");
            continue;
        }
        assert_eq!(seen.runs.load(Ordering::SeqCst), 1, "{what}");
        let meta = seen.meta.lock().unwrap().clone().unwrap();
        if let Some(id) = &expect.id {
            assert_eq!(meta.id(), id, "{what}");
        }
        assert_eq!(meta.event(), expect.event.as_deref(), "{what}");

        // One byte of the body changed: refused, and the handler does not run.
        let mut tampered = fixture.body.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] ^= 0x01;
        let (app, seen) = app_for(layer_for(fixture, &fixture.secret));
        let response = send(&app, request(fixture, &tampered)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(seen.runs.load(Ordering::SeqCst), 0, "{what}");
    }
}

fn fixture(scheme: &str, library_part: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.scheme == scheme && f.library.contains(library_part))
        .unwrap()
}

#[tokio::test]
async fn a_url_signed_scheme_needs_a_public_url_and_checks_the_one_configured() {
    let twilio = fixture("twilio", "documented example");
    // No public URL: the layer cannot be built.
    let error = WebhookLayer::builder(Scheme::twilio())
        .with_secret(&twilio.secret)
        .build()
        .unwrap_err();
    assert!(
        matches!(error, ConfigError::PublicUrlRequired { .. }),
        "{error}"
    );
    for bad in [
        "mycompany.com",
        "https://mycompany.com/?a=1",
        "ftp://mycompany.com",
    ] {
        let error = WebhookLayer::builder(Scheme::twilio())
            .with_secret(&twilio.secret)
            .with_public_url(bad)
            .build()
            .unwrap_err();
        assert!(matches!(error, ConfigError::InvalidPublicUrl), "{bad}");
    }
    // Another host than the one Twilio called: refused.
    let mut elsewhere = layer_for(&twilio, &twilio.secret);
    elsewhere = elsewhere.with_public_url("https://attacker.example");
    let (app, seen) = app_for(elsewhere);
    let response = send(&app, request(&twilio, twilio.body.as_bytes())).await;
    assert_eq!(response.status(), 401);
    assert_eq!(seen.runs.load(Ordering::SeqCst), 0);
    // The port is tried with and without, as Twilio's libraries do.
    let with_port = layer_for(&twilio, &twilio.secret).with_public_url("https://mycompany.com:443");
    let (app, _) = app_for(with_port);
    let response = send(&app, request(&twilio, twilio.body.as_bytes())).await;
    assert_eq!(response.status(), 200);
    // Another query than the one signed: refused.
    let mut other = request(&twilio, twilio.body.as_bytes());
    *other.uri_mut() = "/myapp.php?foo=1&bar=3".parse().unwrap();
    let (app, _) = app_for(layer_for(&twilio, &twilio.secret));
    assert_eq!(send(&app, other).await.status(), 401);
}

#[tokio::test]
async fn forwarded_headers_are_ignored_unless_a_trusted_proxy_is_configured() {
    let square = fixture("square", "squareup");
    // The body was signed for https://example.com/webhook; the request claims that host.
    let forwarded = |request: &mut Request<Body>| {
        let headers = request.headers_mut();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("example.com"));
        headers.insert("host", HeaderValue::from_static("internal:8080"));
    };
    // Configured for another URL: the forwarded headers change nothing.
    let configured = layer_for(&square, &square.secret).with_public_url("https://internal:8080");
    let (app, seen) = app_for(configured);
    let mut request_one = request(&square, square.body.as_bytes());
    forwarded(&mut request_one);
    assert_eq!(send(&app, request_one).await.status(), 401);
    assert_eq!(seen.runs.load(Ordering::SeqCst), 0);
    // Behind a trusted proxy that sets them, they name the URL.
    let scheme = Scheme::square();
    let proxied = WebhookLayer::builder(scheme)
        .with_secret(&square.secret)
        .with_trusted_proxy();
    let (app, seen) = app_for(proxied);
    let mut request_two = request(&square, square.body.as_bytes());
    forwarded(&mut request_two);
    assert_eq!(send(&app, request_two).await.status(), 200);
    assert_eq!(seen.runs.load(Ordering::SeqCst), 1);
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn handshakes_are_never_stored_nor_handled_in_inbox_mode() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Arc::new(
        tower_webhook::inbox::SqliteInbox::open(
            dir.path().join("inbox.db"),
            tower_webhook::inbox::InboxOptions::new(),
        )
        .await
        .unwrap(),
    );
    for (scheme, library) in [
        ("slack", "url_verification"),
        ("zoom", "url_validation"),
        ("twitch", "verification example"),
        ("discord", "PING"),
        ("meta", "verification request"),
        ("graph", "validation request"),
    ] {
        let handshake = fixture(scheme, library);
        let layer = layer_for(&handshake, &handshake.secret).with_shared_inbox(inbox.clone());
        let (app, seen) = app_for(layer);
        let response = send(&app, request(&handshake, handshake.body.as_bytes())).await;
        assert_eq!(response.status(), 200, "{scheme}");
        assert_ne!(text(response).await, r#"{"status":"accepted"}"#, "{scheme}");
        assert_eq!(seen.runs.load(Ordering::SeqCst), 0, "{scheme}");
    }
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.done), (0, 0, 0));
    // An event of the same layer is stored.
    let event = fixture("zoom", "algorithm (no Zoom");
    let layer = layer_for(&event, &event.secret).with_shared_inbox(inbox.clone());
    let (app, _) = app_for(layer);
    let response = send(&app, request(&event, event.body.as_bytes())).await;
    assert_eq!(text(response).await, r#"{"status":"accepted"}"#);
    assert_eq!(inbox.stats().await.unwrap().pending, 1);
}

#[tokio::test]
async fn a_signed_handshake_is_answered_only_once_its_signature_verified() {
    for (scheme, library) in [
        ("slack", "url_verification"),
        ("zoom", "url_validation"),
        ("twitch", "verification example"),
        ("discord", "PING"),
    ] {
        let handshake = fixture(scheme, library);
        // Its body changed after signing: a forgery, refused like any other.
        let mut forged = request(&handshake, handshake.body.as_bytes());
        let mut tampered = handshake.body.clone().into_bytes();
        tampered.push(b' ');
        *forged.body_mut() = Body::from(tampered);
        let (app, seen) = app_for(layer_for(&handshake, &handshake.secret));
        let response = send(&app, forged).await;
        assert_eq!(response.status(), 401, "{scheme}");
        assert!(!text(response).await.contains("challenge"), "{scheme}");
        assert_eq!(seen.runs.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn zoom_answers_with_the_secret_that_verified_during_a_rotation() {
    let handshake = fixture("zoom", "url_validation");
    let layer = layer_for(&handshake, "a_newer_secret_token").with_secret(&handshake.secret);
    let (app, _) = app_for(layer);
    let response = send(&app, request(&handshake, handshake.body.as_bytes())).await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(answer, *handshake.expect.handshake.as_ref().unwrap());
}

#[tokio::test]
async fn meta_refuses_a_subscription_without_a_verify_token_and_other_gets_need_a_signature() {
    let handshake = fixture("meta", "verification request");
    let layer = WebhookLayer::builder(Scheme::meta()).with_secret(&handshake.secret);
    let (app, seen) = app_for(layer);
    let response = send(&app, request(&handshake, b"")).await;
    assert_eq!(response.status(), 403);
    assert_eq!(common::error_code(response).await, "verify_token_mismatch");
    // A GET that is no handshake is an unsigned delivery.
    let plain = Request::get("/webhooks?x=1").body(Body::empty()).unwrap();
    assert_eq!(send(&app, plain).await.status(), 401);
    assert_eq!(seen.runs.load(Ordering::SeqCst), 0);
    assert!(matches!(
        WebhookLayer::builder(Scheme::meta())
            .with_secret("s")
            .with_verify_token("")
            .build(),
        Err(ConfigError::EmptyVerifyToken)
    ));
}

/// A body each new preset can read, its event id as `id` where the scheme takes the id from
/// the body.
fn sample_body(scheme: &str, id: &str, now: i64, secret: &str) -> Vec<u8> {
    match scheme {
        "square" => format!(r#"{{"event_id":"{id}","type":"payment.created","merchant_id":"M1"}}"#),
        "paddle" => format!(r#"{{"event_id":"{id}","event_type":"transaction.completed"}}"#),
        "linear" => format!(
            r#"{{"type":"Issue","action":"create","organizationId":"o1","webhookTimestamp":{},"nonce":"{id}"}}"#,
            now * 1000
        ),
        "twilio" => format!("MessageSid={id}&Body=Hello+Zo%C3%AB&From=%2B15551234567"),
        "sendgrid" => format!(r#"[{{"event":"processed","sg_event_id":"{id}"}}]"#),
        "graph" => format!(r#"{{"value":[{{"clientState":"{secret}","id":"{id}"}}]}}"#),
        "discord" => format!(r#"{{"type":2,"id":"{id}"}}"#),
        "meta" => format!(r#"{{"object":"page","entry":[],"nonce":"{id}"}}"#),
        "zoom" => format!(r#"{{"event":"meeting.started","payload":{{}},"nonce":"{id}"}}"#),
        _ => format!(r#"{{"type":"thing.happened","nonce":"{id}"}}"#),
    }
    .into_bytes()
}

/// The key a test signs with, and the text the receiver is given, for each new preset.
fn keys(scheme: &str) -> (String, String) {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    match scheme {
        // Private keys verify too: the receiver is given the same text here.
        "discord" => ("07".repeat(32), "07".repeat(32)),
        "standard-v1a" => {
            let seed = format!("whsk_{}", b64(&[9; 32]));
            (seed.clone(), seed)
        }
        "sendgrid" => (SENDGRID_PKCS8.to_owned(), SENDGRID_PUBLIC.to_owned()),
        _ => ("a_shared_secret".to_owned(), "a_shared_secret".to_owned()),
    }
}

/// A P-256 private key for these tests, PKCS#8 DER in base64 (made with Python's
/// `cryptography`, as `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -outform
/// DER | base64` would).
const SENDGRID_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg09AqstQhoNrefrNhuUuZ1DvWJbq9s2W2oL+AMeL0nayhRANCAAQIGfUB5RkWX8GQ7wZVFGc5LhBerf85YnPM7FKucvCqj65F2lScfyIDhs22V0aIfe+3OmwqWWBfqJeVUp4EhgQw";
/// Its public key, base64 DER, as SendGrid shows one.
const SENDGRID_PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAECBn1AeUZFl/BkO8GVRRnOS4QXq3/OWJzzOxSrnLwqo+uRdpUnH8iA4bNtldGiH3vtzpsKllgX6iXlVKeBIYEMA==";

#[tokio::test]
async fn every_new_preset_verifies_what_it_signs_and_refuses_another_key() {
    let now = 1_700_000_000;
    for name in Scheme::PRESETS.iter().skip(7) {
        let scheme = Scheme::preset(name).unwrap();
        let (signing, verifying) = keys(name);
        let key = scheme.signing_key(&signing).unwrap();
        let id = format!("evt_{name}");
        let body = sample_body(name, &id, now, &signing);
        let message = Outgoing {
            id: &id,
            event: "thing.happened",
            timestamp: now,
            body: &body,
        };
        let signed = scheme
            .sign_with_url(&key, "http://127.0.0.1:3000/webhooks", &message)
            .unwrap();
        let builder = |secret: &str| {
            let layer = WebhookLayer::builder(scheme.clone())
                .with_clock(move || at(now))
                .with_public_url("http://127.0.0.1:3000");
            // Ed25519 receivers here are given the private key (which verifies too); SendGrid's
            // its public key.
            if scheme.algorithm().is_asymmetric() && *name != "sendgrid" {
                layer.with_secrets(scheme.signing_key(secret).unwrap())
            } else {
                layer.with_secret(secret)
            }
        };
        let make = || {
            let mut request = Request::post("/webhooks")
                .body(Body::from(body.clone()))
                .unwrap();
            let content_type = if *name == "twilio" {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            };
            request
                .headers_mut()
                .insert("content-type", HeaderValue::from_static(content_type));
            request.headers_mut().extend(signed.clone());
            request
        };
        let (app, seen) = app_for(builder(&verifying));
        let response = send(&app, make()).await;
        assert_eq!(response.status(), 200, "{name}: {}", text(response).await);
        assert_eq!(seen.runs.load(Ordering::SeqCst), 1, "{name}");
        // Another receiver's key: refused.
        let other = match *name {
            "discord" => "08".repeat(32),
            "standard-v1a" => format!(
                "whsk_{}",
                base64::engine::general_purpose::STANDARD.encode([8; 32])
            ),
            "sendgrid" => common_sendgrid_other(),
            _ => "another_secret".to_owned(),
        };
        let (app, seen) = app_for(builder(&other));
        let response = send(&app, make()).await;
        assert_eq!(response.status(), 401, "{name}");
        // The operator is told why, whatever the algorithm.
        let reason = response
            .extensions()
            .get::<tower_webhook::Rejection>()
            .and_then(|rejection| rejection.reason().map(tower_webhook::error::Reason::code));
        assert_eq!(reason, Some("no_secret_matches"), "{name}");
        assert_eq!(seen.runs.load(Ordering::SeqCst), 0, "{name}");
    }
}

#[test]
fn standard_webhooks_v1a_matches_the_go_librarys_published_signature() {
    // libraries/go/webhook_asymmetric_test.go, TestAsymmetricWebhookSign, in the Standard
    // Webhooks repository.
    let scheme = Scheme::standard_webhooks_v1a();
    let key = scheme
        .signing_key("whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=")
        .unwrap();
    let signed = scheme
        .sign(
            &key,
            &Outgoing {
                id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
                event: "",
                timestamp: 1_614_265_330,
                body: br#"{"test": 2432232314}"#,
            },
        )
        .unwrap();
    assert_eq!(
        signed["webhook-signature"],
        "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
    );
}

#[test]
fn keys_in_the_wrong_shape_are_refused_when_the_layer_is_built() {
    let refused = |scheme: Scheme, text: &str| {
        WebhookLayer::builder(scheme)
            .with_secret(text)
            .build()
            .unwrap_err()
    };
    assert!(matches!(
        refused(Scheme::discord(), "not hex"),
        ConfigError::InvalidSecretEncoding { .. }
    ));
    assert!(matches!(
        refused(Scheme::discord(), &"ab".repeat(31)),
        ConfigError::InvalidPublicKey { .. }
    ));
    assert!(matches!(
        refused(Scheme::standard_webhooks_v1a(), "whpk_AAAA"),
        ConfigError::InvalidPublicKey { .. }
    ));
    assert!(matches!(
        refused(Scheme::sendgrid(), "aGVsbG8="),
        ConfigError::InvalidPublicKey { .. }
    ));
    // An HMAC secret for an Ed25519 scheme: refused, naming both algorithms.
    let error = WebhookLayer::builder(Scheme::discord())
        .with_secrets(tower_webhook::Secret::new("hmac").unwrap())
        .build()
        .unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::SecretFormatMismatch { .. } | ConfigError::SecretAlgorithmMismatch { .. }
        ),
        "{error}"
    );
    // A public key cannot sign.
    let scheme = Scheme::discord();
    let public = scheme
        .secret("733a99c387d58ada1ee4b54e540293ea37141381d14ff341cbabee985e3db8bf")
        .unwrap();
    let message = Outgoing {
        id: "",
        event: "",
        timestamp: 0,
        body: b"{}",
    };
    assert!(matches!(
        scheme.sign(&public, &message),
        Err(ConfigError::CannotSign)
    ));
}

#[tokio::test]
async fn the_response_to_an_echoed_token_is_never_sniffed() {
    let handshake = fixture("graph", "validation request");
    let (app, _) = app_for(layer_for(&handshake, &handshake.secret));
    let response = send(&app, request(&handshake, b"")).await;
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let _: Bytes = response.into_body().collect().await.unwrap().to_bytes();
}

/// Another P-256 public key than the tests'.
fn common_sendgrid_other() -> String {
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEczWbv8bQn7kN4n/wIIVD3z4SswoSQS1qYzxJ1cJqP2fjl3kqwEzW+ECMJwYCsPhFBs5O+J8YSjTBOQEMUwghqw==".to_owned()
}

#[tokio::test]
async fn the_testing_delivery_signs_for_a_public_url() {
    let scheme = Scheme::square();
    let body = sample_body("square", "evt_square_1", 0, "");
    let layer = WebhookLayer::builder(scheme.clone())
        .with_secret("a_square_key")
        .with_public_url("https://example.com");
    let (app, seen) = app_for(layer);
    let secret = scheme.secret("a_square_key").unwrap();
    let signed = tower_webhook::testing::Delivery::new(body.clone())
        .with_path("/webhooks?x=1")
        .with_public_url("https://example.com");
    assert_eq!(
        send(&app, signed.sign(&scheme, &secret)).await.status(),
        200
    );
    assert_eq!(
        seen.meta.lock().unwrap().as_ref().unwrap().id(),
        "evt_square_1"
    );
    // Without the public URL, the request carries no signature.
    let unsigned = tower_webhook::testing::Delivery::new(body).sign(&scheme, &secret);
    assert_eq!(
        common::error_code(send(&app, unsigned).await).await,
        "missing_signature"
    );
}
