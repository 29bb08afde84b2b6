//! What the operator sees: logs and metrics say what happened to each delivery, and never show
//! a secret, a signature or a body.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use common::{event, meta_app, send};
use http_body_util::BodyExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower_webhook::idempotency::{
    IdempotencyKey, IdempotencyStore, Reservation, StoreError, StoreFuture, Token,
};
use tower_webhook::scheme::Outgoing;
use tower_webhook::testing::{signed_request, sotion_event_with_data, sotion_request};
use tower_webhook::{observe, Scheme, Secret, Secrets, WebhookLayer};

const SECRET: &str = "whsec_TOP_SECRET_never_printed_42";
/// A counter's name, labels and value.
type Counter = (String, Vec<(String, String)>, u64);

const BODY_MARKER: &str = "BODY_CONTENT_MUST_NOT_BE_LOGGED";

/// Collects everything a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct Down;

impl IdempotencyStore for Down {
    fn reserve<'a>(
        &'a self,
        _: &'a IdempotencyKey,
        _: std::time::Duration,
    ) -> StoreFuture<'a, Reservation> {
        StoreFuture::ready(Err(StoreError::Timeout))
    }
    fn complete<'a>(
        &'a self,
        _: &'a IdempotencyKey,
        _: &'a Token,
        _: std::time::Duration,
    ) -> StoreFuture<'a, bool> {
        StoreFuture::ready(Err(StoreError::Timeout))
    }
    fn release<'a>(&'a self, _: &'a IdempotencyKey, _: &'a Token) -> StoreFuture<'a, bool> {
        StoreFuture::ready(Err(StoreError::Timeout))
    }
}

fn secret() -> Secret {
    Secret::new(SECRET).unwrap()
}

fn body_with_marker(id: &str) -> Vec<u8> {
    let data = serde_json::json!({ "note": BODY_MARKER });
    sotion_event_with_data("member.created", id, "site_1", &data)
}

#[tokio::test]
async fn logs_say_what_happened_and_never_show_secrets_signatures_or_bodies() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (app, _) = meta_app(WebhookLayer::new(secret()), "/webhooks");
    let genuine = body_with_marker("evt_logged\"q");
    let signature = tower_webhook::verify::sign(&secret(), &genuine);
    let mut responses = Vec::new();
    responses.push(send(&app, sotion_request(&secret(), genuine.clone())).await);
    responses.push(send(&app, sotion_request(&secret(), genuine.clone())).await); // duplicate
    let forged = sotion_request(
        &Secret::new("whsec_attacker").unwrap(),
        body_with_marker("evt_x"),
    );
    responses.push(send(&app, forged).await);
    let (down, _) = meta_app(WebhookLayer::new(secret()).with_store(Down), "/webhooks");
    responses.push(
        send(
            &down,
            sotion_request(&secret(), body_with_marker("evt_down")),
        )
        .await,
    );

    let mut answered = String::new();
    for response in responses {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        answered.push_str(&String::from_utf8_lossy(&body));
    }
    let logs = captured.text();
    // What happened is there: ids (escaped), outcomes, codes.
    assert!(logs.contains(r#"id="evt_logged\"q""#), "{logs}");
    assert!(logs.contains("outcome=\"handled\""), "{logs}");
    assert!(logs.contains("outcome=\"duplicate\""), "{logs}");
    assert!(logs.contains("code=\"signature_mismatch\""), "{logs}");
    assert!(logs.contains("code=\"store_unavailable\""), "{logs}");
    assert!(logs.contains("duration_us="), "{logs}");
    // What must never be there.
    let hex = signature.trim_start_matches("sha256=");
    for (text, what) in [(&logs, "logs"), (&answered, "responses")] {
        assert!(!text.contains(SECRET), "the secret is in the {what}");
        assert!(
            !text.contains("TOP_SECRET"),
            "part of the secret is in the {what}"
        );
        assert!(!text.contains(hex), "the signature is in the {what}");
        assert!(!text.contains(BODY_MARKER), "the body is in the {what}");
    }
}

#[test]
fn debug_output_never_shows_a_secret() {
    let layer =
        WebhookLayer::new(secret()).with_secret(Secret::new("whsec_SECOND_secret").unwrap());
    let standard = Scheme::standard_webhooks();
    let decoded = standard.secret("whsec_VE9QX1NFQ1JFVF9ieXRlcw==").unwrap(); // "TOP_SECRET_bytes"
    let printed = format!(
        "{layer:?} {layer:#?} {:?} {:?} {decoded:?}",
        Secrets::new(secret()),
        secret()
    );
    for needle in [
        SECRET,
        "TOP_SECRET",
        "SECOND_secret",
        "VE9QX1NFQ1JFVF9ieXRlcw",
    ] {
        assert!(!printed.contains(needle), "{needle} in {printed}");
    }
    assert!(printed.contains("REDACTED"));
}

#[test]
fn metrics_count_verified_rejected_duplicates_conflicts_and_store_errors() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The recorder is installed for this thread only; the requests run on it.
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let (app, _) = meta_app(WebhookLayer::new(common::secret()), "/webhooks");
            send(&app, sotion_request(&common::secret(), event("evt_1", "s"))).await;
            send(&app, sotion_request(&common::secret(), event("evt_1", "s"))).await;
            send(
                &app,
                sotion_request(&Secret::new("whsec_x").unwrap(), event("evt_2", "s")),
            )
            .await;
            let (down, _) = meta_app(
                WebhookLayer::new(common::secret()).with_store(Down),
                "/webhooks",
            );
            send(
                &down,
                sotion_request(&common::secret(), event("evt_3", "s")),
            )
            .await;
        });
    });
    let counters: Vec<Counter> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(count) => {
                let labels = key
                    .key()
                    .labels()
                    .map(|label| (label.key().to_owned(), label.value().to_owned()))
                    .collect();
                Some((key.key().name().to_owned(), labels, count))
            }
            _ => None,
        })
        .collect();
    let count = |name: &str, label: Option<(&str, &str)>| -> u64 {
        counters
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, c)| c)
            .sum()
    };
    assert_eq!(count(observe::VERIFIED, Some(("scheme", "sotion"))), 3);
    assert_eq!(count(observe::DUPLICATES, None), 1);
    assert_eq!(
        count(observe::REJECTED, Some(("code", "signature_mismatch"))),
        1
    );
    assert_eq!(
        count(observe::REJECTED, Some(("code", "store_unavailable"))),
        1
    );
    assert_eq!(
        count(observe::STORE_ERRORS, Some(("operation", "reserve"))),
        1
    );
    assert_eq!(count(observe::IN_FLIGHT, None), 0);
}

#[tokio::test]
async fn a_stripe_delivery_is_logged_under_its_scheme() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let scheme = Scheme::stripe();
    let stripe_secret = scheme.secret("whsec_stripe_TOP_SECRET").unwrap();
    let now = std::time::SystemTime::now();
    let unix = i64::try_from(now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap();
    let body = Bytes::from_static(br#"{"id":"evt_stripe_1","type":"invoice.paid"}"#);
    let request = signed_request(
        &scheme,
        &stripe_secret,
        &Outgoing {
            id: "evt_stripe_1",
            event: "invoice.paid",
            timestamp: unix,
            body: &body,
        },
    );
    let layer = WebhookLayer::new(stripe_secret).with_scheme(scheme);
    let (app, seen) = meta_app(layer, "/webhooks");
    assert_eq!(send(&app, request).await.status(), 200);
    assert_eq!(seen.runs(), 1);
    let logs = captured.text();
    assert!(logs.contains("scheme=stripe"), "{logs}");
    assert!(logs.contains(r#"id="evt_stripe_1""#), "{logs}");
    assert!(!logs.contains("TOP_SECRET"), "{logs}");
}
