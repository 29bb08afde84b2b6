//! A per-tenant endpoint does not tell which tenants exist: without a valid signature, every
//! answer is the same for a known and an unknown tenant. And a resolver that hangs is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, StatusCode};
use common::{error_code, meta_app, send};
use http::request::Parts;
use http_body::Frame;
use tower_webhook::layer::WebhookLayerBuilder;
use tower_webhook::testing::sotion_event;
use tower_webhook::{verify, ResolveError, Scheme, Secret, Tenant, WebhookLayer};

const LIMIT: usize = 1024;

/// A resolver that knows `acme` only.
fn tenant_layer() -> WebhookLayer {
    WebhookLayer::builder(Scheme::sotion())
        .with_resolver(|parts: &Parts| {
            let tenant = parts.uri.path().rsplit('/').next().unwrap_or("").to_owned();
            async move {
                if tenant == "acme" {
                    let secret = Secret::new("whsec_acme").unwrap();
                    Ok(Some(Tenant::new(tenant, secret)))
                } else {
                    Ok(None)
                }
            }
        })
        .with_body_limit(NonZeroUsize::new(LIMIT).unwrap())
        .with_body_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// What a body does each time it is polled.
#[derive(Clone)]
enum Step {
    Data(Bytes),
    Fail,
    Stall,
}

/// A body that plays `steps`, then ends, and records whether it was ever polled.
struct Scripted {
    steps: VecDeque<Step>,
    polled: Arc<AtomicBool>,
}

impl http_body::Body for Scripted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.polled.store(true, Ordering::SeqCst);
        match self.steps.pop_front() {
            None => Poll::Ready(None),
            Some(Step::Data(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Some(Step::Fail) => Poll::Ready(Some(Err(std::io::Error::other("connection reset")))),
            Some(Step::Stall) => {
                self.steps.push_front(Step::Stall);
                Poll::Pending
            }
        }
    }
}

/// A request to `tenant`'s endpoint, signed with `secret` over a genuine event, whose body
/// then plays `steps` (no `Content-Length`: streamed).
fn to_tenant(tenant: &str, secret: &str, steps: &[Step]) -> (Request<Scripted>, Arc<AtomicBool>) {
    let event = sotion_event("member.created", "evt_1", "site_1");
    let signature = verify::sign(&Secret::new(secret).unwrap(), &event);
    let polled = Arc::new(AtomicBool::new(false));
    let body = Scripted {
        steps: steps.iter().cloned().collect(),
        polled: polled.clone(),
    };
    let request = Request::post(format!("/webhooks/{tenant}"))
        .header("content-type", "application/json")
        .header("x-webhook-signature", signature)
        .header("x-webhook-id", "evt_1")
        .header("x-webhook-event", "member.created")
        .body(body)
        .unwrap();
    (request, polled)
}

#[tokio::test(start_paused = true)]
async fn known_and_unknown_tenants_get_the_same_answer_without_a_valid_signature() {
    let event = Bytes::from(sotion_event("member.created", "evt_1", "site_1"));
    let chunk = Bytes::from(vec![b' '; LIMIT / 2 + 1]);
    let cases: [(&str, Vec<Step>, u16, &str); 4] = [
        (
            "a broken body stream",
            vec![Step::Data(event.slice(..10)), Step::Fail],
            400,
            "body_read_failed",
        ),
        (
            "a streamed body over the limit",
            vec![Step::Data(chunk.clone()), Step::Data(chunk)],
            413,
            "payload_too_large",
        ),
        (
            "a body that stalls",
            vec![Step::Data(event.slice(..10)), Step::Stall],
            408,
            "body_timeout",
        ),
        (
            "a wrong signature",
            vec![Step::Data(event)],
            401,
            "signature_mismatch",
        ),
    ];
    for (case, steps, status, code) in cases {
        let mut answers = Vec::new();
        for tenant in ["acme", "initech"] {
            let (app, seen) = meta_app(tenant_layer(), "/webhooks/{tenant}");
            // Signed with a secret neither tenant has.
            let (request, polled) = to_tenant(tenant, "whsec_stranger", &steps);
            let started = tokio::time::Instant::now();
            let response = send(&app, request).await;
            let waited = started.elapsed();
            let answer = (response.status().as_u16(), error_code(response).await);
            assert!(
                polled.load(Ordering::SeqCst),
                "{case}: {tenant}'s body was not read"
            );
            assert_eq!(seen.runs(), 0, "{case}");
            answers.push((answer, waited));
        }
        assert_eq!(answers[0], answers[1], "{case}: known vs unknown tenant");
        assert_eq!(answers[0].0, (status, code.to_owned()), "{case}");
    }
}

#[tokio::test]
async fn a_known_tenant_with_its_secret_is_still_handled() {
    let (app, seen) = meta_app(tenant_layer(), "/webhooks/{tenant}");
    let event = Bytes::from(sotion_event("member.created", "evt_1", "site_1"));
    let (request, _) = to_tenant("acme", "whsec_acme", &[Step::Data(event.clone())]);
    assert_eq!(send(&app, request).await.status(), StatusCode::OK);
    assert_eq!(seen.runs(), 1);
    // The same delivery to an unknown tenant, signed with a secret it might have had.
    let (request, _) = to_tenant("initech", "whsec_initech", &[Step::Data(event)]);
    let response = send(&app, request).await;
    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await, "signature_mismatch");
}

/// Sends `request`, failing rather than hanging if no answer comes within a minute (of the
/// paused clock: no real minute passes).
async fn send_bounded(app: &axum::Router, request: Request<Scripted>) -> axum::response::Response {
    tokio::time::timeout(Duration::from_secs(60), send(app, request))
        .await
        .expect("no answer within a minute")
}

fn hanging_layer() -> WebhookLayerBuilder {
    WebhookLayer::builder(Scheme::sotion())
        .with_resolver(|_: &Parts| std::future::pending::<Result<Option<Tenant>, ResolveError>>())
}

#[tokio::test(start_paused = true)]
async fn a_resolver_that_never_answers_gets_503_after_its_timeout() {
    let layer = hanging_layer()
        .with_resolver_timeout(Duration::from_secs(2))
        .with_resolver_retry_after(Duration::from_secs(7))
        .build()
        .unwrap();
    let (app, _) = meta_app(layer, "/webhooks/{tenant}");
    let started = tokio::time::Instant::now();
    let (request, _) = to_tenant("acme", "whsec_acme", &[]);
    let response = send_bounded(&app, request).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(error_code(response).await, "secrets_unavailable");
}

#[tokio::test(start_paused = true)]
async fn the_resolver_has_a_default_timeout_and_retry_after() {
    let (app, _) = meta_app(hanging_layer(), "/webhooks/{tenant}");
    let started = tokio::time::Instant::now();
    let (request, _) = to_tenant("acme", "whsec_acme", &[]);
    let response = send_bounded(&app, request).await;
    let waited = started.elapsed();
    // The documented default: 5 s.
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "30");
}

#[tokio::test]
async fn a_failing_resolver_answers_with_the_configured_retry_after() {
    let layer = WebhookLayer::builder(Scheme::sotion())
        .with_resolver(|_: &Parts| async {
            Err::<Option<Tenant>, _>(ResolveError("the tenant database is unreachable".into()))
        })
        .with_resolver_retry_after(Duration::from_secs(12))
        .build()
        .unwrap();
    let (app, _) = meta_app(layer, "/webhooks/{tenant}");
    let (request, _) = to_tenant("acme", "whsec_acme", &[]);
    let response = send_bounded(&app, request).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "12");
}
