//! Refusals explain themselves to the operator, never to the sender: each keeps its code and
//! generic message, and gains a `Reason` (in the log line and the `Rejection` extension) that
//! names the scheme's own header, the timestamp's skew, a secret with stray whitespace, in
//! another scheme's format or retired, or a body re-encoded before verification. The answer
//! the sender reads is the same byte for byte with and without the condition.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use axum::Router;
use base64::Engine as _;
use common::{fixture_request, fixtures, meta_app, send};
use http_body_util::BodyExt;
use tower_webhook::error::Reason;
use tower_webhook::layer::WebhookLayerBuilder;
use tower_webhook::scheme::{Outgoing, SecretFormat};
use tower_webhook::testing::{signed_request, Delivery};
use tower_webhook::{verify, Rejection, Scheme, Secret, Secrets, WebhookLayer};

const NOW: i64 = 1_700_000_000;

fn at(unix: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap())
}

/// A layer for `scheme` with the secret written `text`, its clock at `NOW`.
fn builder(scheme: &Scheme, text: &str) -> WebhookLayerBuilder {
    WebhookLayer::builder(scheme.clone())
        .with_secret(text)
        .with_clock(|| at(NOW))
}

fn app(layer: WebhookLayerBuilder) -> Router {
    meta_app(layer, "/webhooks").0
}

/// A delivery of `body` signed with the key `secret` for `scheme`, at `timestamp`.
fn signed(scheme: &Scheme, secret: &Secret, body: &[u8], timestamp: i64) -> Request<Body> {
    let message = Outgoing {
        id: "evt_1",
        event: "thing.happened",
        timestamp,
        body,
    };
    signed_request(scheme, secret, &message).map(Body::new)
}

/// What the sender reads of an answer: status, headers and body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    rejection: Rejection,
}

async fn answer(response: Response<Body>) -> Answer {
    let rejection = response.extensions().get::<Rejection>().cloned().unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
        rejection,
    }
}

/// Sends `request`, and checks that the sender reads exactly what it reads for `plain` (the
/// same refusal without the condition): the reason is for the operator only. Returns the
/// reason.
async fn refused_like(app: &Router, request: Request<Body>, plain: Request<Body>) -> Reason {
    let with = answer(send(app, request).await).await;
    let without = answer(send(app, plain).await).await;
    assert_eq!(with.status, without.status);
    assert_eq!(with.headers, without.headers, "headers differ");
    assert_eq!(with.body, without.body, "bodies differ");
    assert_eq!(with.rejection.kind(), without.rejection.kind());
    assert_ne!(with.rejection.reason(), without.rejection.reason());
    with.rejection.reason().cloned().unwrap()
}

#[tokio::test]
async fn a_missing_header_is_named_by_the_schemes_own_name() {
    let cases = [
        (Scheme::github(), "x-hub-signature-256", "missing_signature"),
        (Scheme::stripe(), "stripe-signature", "missing_signature"),
        (
            Scheme::standard_webhooks(),
            "webhook-id",
            "missing_signed_header",
        ),
        (
            Scheme::slack(),
            "x-slack-request-timestamp",
            "malformed_timestamp",
        ),
    ];
    for (scheme, header, code) in cases {
        let text = if scheme.name() == "standard-webhooks" {
            "whsec_ZGlhZ25vc3RpY3M="
        } else {
            "whsec_diagnostics"
        };
        let app = app(builder(&scheme, text));
        let secret = scheme.secret(text).unwrap();
        let mut request = signed(&scheme, &secret, br#"{"id":"evt_1","type":"a"}"#, NOW);
        request.headers_mut().remove(header);
        let refused = answer(send(&app, request).await).await;
        assert_eq!(refused.rejection.kind().code(), code, "{header}");
        let reason = refused.rejection.reason().unwrap();
        assert_eq!(
            reason,
            &Reason::MissingHeader(HeaderName::from_static(header)),
            "{header}"
        );
        assert!(reason.to_string().contains(&format!("`{header}`")));
        assert_eq!(reason.code(), "missing_header");
        // The public message is the kind's, and names no header of the request.
        let public = String::from_utf8(refused.body.to_vec()).unwrap();
        assert!(public.contains(code), "{public}");
    }
}

#[tokio::test]
async fn a_stale_or_early_timestamp_gives_its_skew_against_the_tolerance() {
    let scheme = Scheme::stripe();
    let app = app(builder(&scheme, "whsec_diagnostics"));
    let secret = scheme.secret("whsec_diagnostics").unwrap();
    let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    for (signed_at, code, age) in [
        (NOW - 412, "timestamp_too_old", 412),
        (NOW + 3600, "timestamp_in_future", -3600),
    ] {
        let refused = answer(send(&app, signed(&scheme, &secret, body, signed_at)).await).await;
        assert_eq!(refused.rejection.kind().code(), code);
        let reason = refused.rejection.reason().unwrap();
        assert_eq!(
            reason,
            &Reason::TimestampSkew {
                age_secs: age,
                tolerance_secs: 300
            }
        );
        assert_eq!(reason.code(), "timestamp_skew");
    }
    let stale = answer(send(&app, signed(&scheme, &secret, body, NOW - 412)).await).await;
    let hint = stale.rejection.reason().unwrap().to_string();
    assert!(
        hint.contains("412 s old") && hint.contains("300 s"),
        "{hint}"
    );
}

#[tokio::test]
async fn a_secret_with_stray_whitespace_is_named() {
    let scheme = Scheme::github();
    // Given as bytes (the text form refuses whitespace when the layer is built).
    let padded = Secret::new("gh-secret\n").unwrap();
    let layer = WebhookLayer::builder(scheme.clone()).with_secrets(padded);
    let app = app(layer);
    let sender = scheme.secret("gh-secret").unwrap();
    let stranger = scheme.secret("someone-else").unwrap();
    let body = br#"{"ref":"refs/heads/main"}"#;
    let reason = refused_like(
        &app,
        signed(&scheme, &sender, body, NOW),
        signed(&scheme, &stranger, body, NOW),
    )
    .await;
    assert_eq!(reason, Reason::SecretWhitespace);
    assert!(reason
        .to_string()
        .contains("the secret has leading/trailing whitespace"));
}

#[tokio::test]
async fn a_secret_in_another_schemes_format_is_named() {
    let key = b"diagnostics-key-bytes";
    let text = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    // GitHub (raw secrets) given a Standard Webhooks secret, whose sender signs with the
    // decoded key.
    let github = Scheme::github();
    let app = app(builder(&github, &text));
    let body = br#"{"ref":"refs/heads/main"}"#;
    let reason = refused_like(
        &app,
        signed(&github, &Secret::new(key).unwrap(), body, NOW),
        signed(&github, &Secret::new("stranger").unwrap(), body, NOW),
    )
    .await;
    assert_eq!(
        reason,
        Reason::SecretFormat {
            scheme: SecretFormat::Raw,
            read_as: SecretFormat::base64("whsec_"),
        }
    );
    assert!(reason
        .to_string()
        .starts_with("this secret is in another scheme's format"));

    // Standard Webhooks (base64 secrets) whose sender keys its HMAC with the text as is.
    let standard = Scheme::standard_webhooks();
    let app = self::app(builder(&standard, &text));
    let raw = Secret::new(text.as_bytes()).unwrap();
    let stranger = standard.secret("whsec_c3RyYW5nZXI=").unwrap();
    let body = br#"{"type":"a"}"#;
    let reason = refused_like(
        &app,
        signed(&standard, &raw, body, NOW),
        signed(&standard, &stranger, body, NOW),
    )
    .await;
    assert_eq!(
        reason,
        Reason::SecretFormat {
            scheme: SecretFormat::base64("whsec_"),
            read_as: SecretFormat::Raw,
        }
    );
}

#[tokio::test]
async fn a_signature_by_a_retired_secret_is_refused_and_named() {
    let scheme = Scheme::stripe();
    let layer = builder(&scheme, "whsec_new").with_retired_secret("whsec_old");
    let app = app(layer);
    let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    let old = scheme.secret("whsec_old").unwrap();
    let stranger = scheme.secret("whsec_stranger").unwrap();
    let reason = refused_like(
        &app,
        signed(&scheme, &old, body, NOW),
        signed(&scheme, &stranger, body, NOW),
    )
    .await;
    assert_eq!(reason, Reason::PreviousSecret);
    assert!(reason
        .to_string()
        .starts_with("the signature matches a previous secret"));
    // The new one is accepted.
    let new = scheme.secret("whsec_new").unwrap();
    let response = send(&app, signed(&scheme, &new, body, NOW)).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The pure core says the same.
    let secrets = Secrets::new(new).with_retired(old.clone());
    let request = signed(&scheme, &old, body, NOW);
    let refused = verify::verify(&scheme, &secrets, request.headers(), body, at(NOW)).unwrap_err();
    assert_eq!(refused.reason(), Some(&Reason::PreviousSecret));
}

#[tokio::test]
async fn a_body_re_encoded_before_verification_is_named() {
    // Stripe's own library signed a pretty-printed body; a proxy (or a framework that parsed
    // the JSON and wrote it again) passes it on compacted.
    let fixture = fixtures(Some("stripe"))
        .into_iter()
        .find(|fixture| fixture.body.contains('\n'))
        .unwrap();
    let scheme = Scheme::stripe();
    let layer = WebhookLayer::builder(scheme.clone())
        .with_secret(&fixture.secret)
        .with_clock(move || at(fixture.timestamp));
    let app = app(layer);
    // As `JSON.stringify(JSON.parse(body))` writes it: members in order, no whitespace.
    let compact = compacted(&fixture.body);
    let reencoded = String::from_utf8(compact.clone()).unwrap();
    assert!(reencoded.starts_with(r#"{"id":"evt_"#) && reencoded.contains("Zoë 🦀"));
    let value: serde_json::Value = serde_json::from_str(&fixture.body).unwrap();
    assert_eq!(
        value,
        serde_json::from_slice::<serde_json::Value>(&compact).unwrap()
    );
    let reason = refused_like(
        &app,
        fixture_request(&fixture, &compact).map(Body::new),
        fixture_request(&fixture, b"{\"id\":\"evt_other\"}").map(Body::new),
    )
    .await;
    assert_eq!(reason, Reason::BodyChanged, "{reencoded}");
    assert!(reason
        .to_string()
        .starts_with("the body was changed before verification: pass the raw bytes"));

    // A trailing newline added on the way counts too.
    let newline = [fixture.body.as_bytes(), b"\n"].concat();
    let refused =
        answer(send(&app, fixture_request(&fixture, &newline).map(Body::new)).await).await;
    assert_eq!(refused.rejection.reason(), Some(&Reason::BodyChanged));
}

#[tokio::test]
async fn an_ordinary_forgery_says_no_secret_matches_and_an_unknown_type_is_415() {
    let scheme = Scheme::github();
    let app = app(builder(&scheme, "gh-secret"));
    let forged = Delivery::new(r#"{"ref":"x"}"#)
        .with_event("push")
        .sign(&scheme, &scheme.secret("attacker").unwrap());
    let forged = answer(send(&app, forged.map(Body::new)).await).await;
    assert_eq!(forged.rejection.reason(), Some(&Reason::NoSecretMatches));

    let text = Delivery::new(r#"{"ref":"x"}"#)
        .with_event("push")
        .with_content_type("text/plain; charset=utf-8")
        .sign(&scheme, &scheme.secret("gh-secret").unwrap());
    let refused = answer(send(&app, text.map(Body::new)).await).await;
    assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(refused.rejection.kind().code(), "unsupported_media_type");
    let reason = refused.rejection.reason().unwrap();
    assert_eq!(reason.code(), "unsupported_media_type");
    assert!(reason
        .to_string()
        .contains("`text/plain; charset=utf-8`, and this scheme reads application/json or"));
}

/// `json` without whitespace outside its strings.
fn compacted(json: &str) -> Vec<u8> {
    let (mut out, mut in_string, mut escaped) = (Vec::new(), false, false);
    for byte in json.bytes() {
        if in_string {
            in_string = escaped || byte != b'"';
            escaped = !escaped && byte == b'\\';
        } else if byte == b'"' {
            in_string = true;
        } else if byte.is_ascii_whitespace() {
            continue;
        }
        out.push(byte);
    }
    out
}
