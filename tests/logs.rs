//! What the logs say. One test in its own binary: `tracing` caches per call site whether anyone
//! listens, so tests that install different subscribers on concurrent threads would race.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use common::{meta_app, send, Down};
use http_body_util::BodyExt;
use tower_webhook::layer::WebhookLayerBuilder;
use tower_webhook::scheme::Outgoing;
use tower_webhook::testing::{signed_request, sotion_event_with_data, sotion_request};
use tower_webhook::{EventRouter, ResolveError, Scheme, Secret, Tenant, WebhookLayer};

const SECRET: &str = "whsec_TOP_SECRET_never_printed_42";
const STRIPE_SECRET: &str = "whsec_stripe_TOP_SECRET";
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

/// A Sotion layer with the secret.
fn sotion() -> WebhookLayerBuilder {
    WebhookLayer::builder(Scheme::sotion()).with_secret(SECRET)
}

fn secret() -> Secret {
    Secret::new(SECRET).unwrap()
}

fn body_with_marker(id: &str) -> Vec<u8> {
    let data = serde_json::json!({ "note": BODY_MARKER });
    sotion_event_with_data("member.created", id, "site_1", &data)
}

fn now_unix() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(since.unwrap().as_secs()).unwrap()
}

#[test]
#[allow(clippy::too_many_lines)] // one story, told in order
fn logs_say_what_happened_and_never_show_secrets_signatures_or_bodies() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (answered, signature) = runtime.block_on(async {
        let (app, _) = meta_app(sotion(), "/webhooks");
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
        let (down, _) = meta_app(sotion().with_store(Down), "/webhooks");
        responses.push(
            send(
                &down,
                sotion_request(&secret(), body_with_marker("evt_down")),
            )
            .await,
        );

        // Another scheme, logged under its name.
        let scheme = Scheme::stripe();
        let stripe_secret = scheme.secret(STRIPE_SECRET).unwrap();
        let unix = now_unix();
        let body = Bytes::from_static(br#"{"id":"evt_stripe_1","type":"invoice.paid"}"#);
        let message = Outgoing {
            id: "evt_stripe_1",
            event: "invoice.paid",
            timestamp: unix,
            body: &body,
        };
        let request = signed_request(&scheme, &stripe_secret, &message);
        let (stripe, seen) = meta_app(
            WebhookLayer::new(scheme.clone(), STRIPE_SECRET).unwrap(),
            "/webhooks",
        );
        responses.push(send(&stripe, request).await);
        assert_eq!(seen.runs(), 1);
        // An event type that is no usable token: dropped, and the warning never shows it.
        let body = format!(r#"{{"id":"evt_stripe_2","type":"{BODY_MARKER}\u0007"}}"#);
        let message = Outgoing {
            id: "evt_stripe_2",
            body: body.as_bytes(),
            ..message
        };
        responses.push(send(&stripe, signed_request(&scheme, &stripe_secret, &message)).await);
        assert_eq!(seen.runs(), 2);

        responses.push(misconfigured_tenant(unix).await);

        responses.extend(explained_and_ignored().await);

        let mut answered = String::new();
        for response in responses {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            answered.push_str(&String::from_utf8_lossy(&body));
        }
        (answered, signature)
    });

    #[cfg(feature = "sqlite")]
    runtime.block_on(completion_dropped_without_commit());

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    #[cfg(feature = "sqlite")]
    a_dropped_completion_is_warned_of(&logs);
    // What happened is there: ids (escaped), outcomes, codes, schemes, durations.
    assert!(logs.contains(r#"id="evt_logged\"q""#), "{logs}");
    assert!(logs.contains("outcome=\"handled\""), "{logs}");
    assert!(logs.contains("outcome=\"duplicate\""), "{logs}");
    assert!(logs.contains("code=\"signature_mismatch\""), "{logs}");
    assert!(logs.contains("code=\"store_unavailable\""), "{logs}");
    assert!(logs.contains("duration_us="), "{logs}");
    assert!(logs.contains("scheme=stripe"), "{logs}");
    assert!(logs.contains(r#"id="evt_stripe_1""#), "{logs}");
    let warned = [
        "is not a usable token",
        r#"fact="event type""#,
        r#"field="type""#,
    ];
    assert!(warned.iter().all(|text| logs.contains(text)), "{logs}");
    let cannot_use = logs
        .lines()
        .find(|l| l.contains("resolver gave secrets the scheme cannot"));
    assert!(cannot_use.is_some_and(|l| l.contains("ERROR") && l.contains("tenant=acme")));
    assert!(logs.contains("code=\"secrets_unavailable\""), "{logs}");
    assert_explained_and_ignored(&logs);
    // What must never be there.
    let hex = signature.trim_start_matches("sha256=");
    for (text, what) in [(&logs, "logs"), (&answered, "responses")] {
        assert!(!text.contains(SECRET), "the secret is in the {what}");
        assert!(
            !text.contains("TOP_SECRET"),
            "part of a secret is in the {what}"
        );
        assert!(!text.contains(hex), "the signature is in the {what}");
        assert!(!text.contains(BODY_MARKER), "the body is in the {what}");
    }
}

/// The inbox handler that dropped its completion and answered 200: a warning naming the event
/// and its id.
#[cfg(feature = "sqlite")]
fn a_dropped_completion_is_warned_of(logs: &str) {
    let dropped = logs
        .lines()
        .find(|l| l.contains("completion dropped without commit"))
        .unwrap_or_default();
    let named = [r#"id="evt_dropped""#, r#"event="member.created""#];
    assert!(
        dropped.contains("WARN") && named.iter().all(|n| dropped.contains(n)),
        "{logs}"
    );
}

/// An inbox handler (`SQLite`) that begins its completion and drops it without a commit, then
/// answers `200`, at its first attempt; the second commits.
#[cfg(feature = "sqlite")]
async fn completion_dropped_without_commit() {
    use std::time::Duration;

    use tower_webhook::idempotency::IdempotencyKey;
    use tower_webhook::inbox::{
        Attempt, Delivery, DeliveryState, Facts, InboxBackend, InboxOptions, SqliteInbox,
    };

    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(dir.path().join("inbox.db"), InboxOptions::new())
        .await
        .unwrap();
    let service = tower::service_fn(
        |request: http::Request<http_body_util::Full<Bytes>>| async move {
            let attempt = request.extensions().get::<Attempt<SqliteInbox>>().unwrap();
            let completion = attempt.begin_complete().await.unwrap().unwrap();
            if attempt.number() > 1 {
                completion.commit().await.unwrap();
            }
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                Bytes::new(),
            )))
        },
    );
    let mut facts = Facts::new("sotion", "evt_dropped");
    facts.event = Some("member.created".to_owned());
    let delivery = Delivery::from_facts(
        facts,
        IdempotencyKey::new("sotion", "site_1", "evt_dropped"),
        "/webhooks",
        [],
        Bytes::new(),
    );
    inbox.accept(&delivery).await.unwrap();
    let workers = tower_webhook::inbox::Workers::new(inbox.clone(), service)
        .with_backoff(Duration::from_millis(10))
        .with_poll_interval(Duration::from_millis(10))
        .start()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while inbox.get(delivery.key()).await.unwrap().unwrap().state != DeliveryState::Done {
        assert!(std::time::Instant::now() < deadline, "never done");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    workers.shutdown(Duration::from_secs(5)).await;
}

/// A resolver giving a Standard Webhooks tenant a raw key (`Secret::new` of the `whsec_` text,
/// which that scheme base64-decodes): a configuration mistake only a request shows, answered
/// 503 (the sender retries once it is fixed) and logged as an error.
async fn misconfigured_tenant(unix: i64) -> axum::response::Response {
    const TENANT_SECRET: &str = "whsec_VE9QX1NFQ1JFVF90ZW5hbnQ="; // "TOP_SECRET_tenant"
    let standard = Scheme::standard_webhooks();
    let misconfigured =
        WebhookLayer::builder(standard.clone()).with_resolver(|_: &http::request::Parts| async {
            let raw = Secret::new(TENANT_SECRET).map_err(|e| ResolveError(e.into()))?;
            Ok(Some(Tenant::new("acme", raw)))
        });
    let (misconfigured, seen) = meta_app(misconfigured, "/webhooks");
    let message = Outgoing {
        id: "msg_1",
        event: "invoice.paid",
        timestamp: unix,
        body: br#"{"type":"invoice.paid"}"#,
    };
    let signed = signed_request(
        &standard,
        &standard.secret(TENANT_SECRET).unwrap(),
        &message,
    );
    let response = send(&misconfigured, signed).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(seen.runs(), 0);
    response
}

/// A refusal with a reason (a sender still signing with a retired secret), and an event no
/// handler ran for.
async fn explained_and_ignored() -> Vec<axum::response::Response> {
    let mut responses = Vec::new();
    // A refusal's reason and hint: a sender still signing with a retired secret.
    let (rotated, _) = meta_app(
        WebhookLayer::builder(Scheme::sotion())
            .with_secret("whsec_new_secret")
            .with_retired_secret(SECRET),
        "/webhooks",
    );
    responses.push(
        send(
            &rotated,
            sotion_request(&secret(), body_with_marker("evt_old")),
        )
        .await,
    );

    // An event no handler ran for: logged at `info` with its name.
    let events = EventRouter::new().on("member.deleted", || async { "ok" });
    let routed = Router::new().route(
        "/webhooks",
        post(events).route_layer(sotion().build().unwrap()),
    );
    let ignored = send(
        &routed,
        sotion_request(&secret(), body_with_marker("evt_ignored")),
    )
    .await;
    assert_eq!(ignored.headers()["x-webhook-ignored"], "member.created");
    responses.push(ignored);
    responses
}

/// What `explained_and_ignored` logs: the refusals' reasons and hints, the ignored event.
fn assert_explained_and_ignored(logs: &str) {
    // Refusals say why, for the operator.
    let forged = logs
        .lines()
        .find(|l| l.contains("code=\"signature_mismatch\"") && l.contains("refused"));
    assert!(
        forged.is_some_and(|l| l.contains("reason=\"no_secret_matches\"") && l.contains("hint=")),
        "{logs}"
    );
    let retired = logs
        .lines()
        .find(|l| l.contains("reason=\"previous_secret\""));
    assert!(
        retired
            .is_some_and(|l| l.contains("INFO")
                && l.contains("hint=the signature matches a previous secret")),
        "{logs}"
    );
    let ignored = logs
        .lines()
        .find(|l| l.contains("no handler ran for this event"));
    assert!(
        ignored.is_some_and(|l| l.contains("INFO")
            && l.contains("event=\"member.created\"")
            && l.contains("id=\"evt_ignored\"")),
        "{logs}"
    );
}
