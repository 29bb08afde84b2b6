//! The event router behind the real layer: each event reaches the handler registered for its
//! name, the most specific first; unknown events are acknowledged; `on_any` runs first and
//! its failure is the answer; a handler's failure leaves the event for the sender's retry.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::handler::Handler;
use axum::http::{Request, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use common::{error_code, send, sotion_meta};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use tower::ServiceExt;
use tower_webhook::envelope::{AccessGroupData, AccessGroupMemberData, MemberData};
use tower_webhook::testing::{self, Delivery, MetaBuilder};
use tower_webhook::{Envelope, EventRouter, EventType, Scheme, WebhookLayer, WebhookMeta};

const SECRET: &str = "whsec_router_suite";
/// Standard Webhooks secrets are base64 after `whsec_`.
const STANDARD_SECRET: &str = "whsec_cm91dGVyX3N1aXRl";

/// The one place this file builds a layer: `scheme`, keyed with the secret written `text`.
fn layer(scheme: Scheme, text: &str) -> WebhookLayer {
    WebhookLayer::new(scheme, text).unwrap()
}

/// `POST /webhooks` running `events` behind a layer for `scheme`.
fn app(events: EventRouter, scheme: Scheme, text: &str) -> Router {
    Router::new().route("/webhooks", post(events).route_layer(layer(scheme, text)))
}

/// What the handlers saw, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

type Answer = Pin<Box<dyn Future<Output = (StatusCode, String)> + Send>>;

/// A handler that logs `<label> <event>[.<action>] <id>` and answers `200 <label>`.
fn named(log: &Log, label: &'static str) -> impl Fn(WebhookMeta) -> Answer + Clone + Send + Sync {
    let log = log.clone();
    move |meta: WebhookMeta| {
        let line = match (meta.event(), meta.action()) {
            (Some(event), Some(action)) => format!("{label} {event}.{action} {}", meta.id()),
            (event, _) => format!("{label} {} {}", event.unwrap_or("-"), meta.id()),
        };
        log.push(line);
        Box::pin(std::future::ready((StatusCode::OK, label.to_owned())))
    }
}

/// A handler taking Sotion's envelope with `data` typed as `T`, logging `<label> <type> <id>`
/// and answering `200 <label>`.
fn typed<T>(log: &Log, label: &str) -> impl Fn(Envelope<T>) -> Answer + Clone + Send + Sync
where
    T: DeserializeOwned + Send + 'static,
{
    let log = log.clone();
    let label = label.to_owned();
    move |event: Envelope<T>| {
        log.push(format!("{label} {} {}", event.event_type, event.id));
        Box::pin(std::future::ready((StatusCode::OK, label.clone())))
    }
}

async fn text(response: Response<Body>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

async fn sotion(app: &Router, event: &str, id: &str) -> Response<Body> {
    let secret = Scheme::sotion().secret(SECRET).unwrap();
    let body = testing::sotion_event(event, id, "site_1");
    send(app, testing::sotion_request(&secret, body)).await
}

async fn github(app: &Router, event: &str, body: &str, id: &str) -> Response<Body> {
    let scheme = Scheme::github();
    let secret = scheme.secret(SECRET).unwrap();
    let request = Delivery::new(body.to_owned())
        .with_event(event)
        .with_id(id)
        .sign(&scheme, &secret);
    send(app, request).await
}

#[tokio::test]
async fn each_of_the_nine_sotion_types_reaches_its_own_typed_handler() {
    let log = Log::default();
    let mut events = EventRouter::new();
    for event in EventType::KNOWN {
        let name = event.as_str();
        events = if name.starts_with("access-group.member.") {
            events.on(name, typed::<AccessGroupMemberData>(&log, name))
        } else if name.starts_with("access-group.") {
            events.on(name, typed::<AccessGroupData>(&log, name))
        } else {
            events.on(name, typed::<MemberData>(&log, name))
        };
    }
    let app = app(events, Scheme::sotion(), SECRET);

    for (n, event) in EventType::KNOWN.iter().enumerate() {
        let id = format!("evt_{n}");
        let response = sotion(&app, event.as_str(), &id).await;
        assert_eq!(response.status(), StatusCode::OK, "{event}");
        assert_eq!(text(response).await, event.as_str());
        assert_eq!(log.take(), [format!("{event} {event} {id}")]);
    }
}

#[tokio::test]
async fn an_unknown_type_is_acknowledged_by_the_default_fallback() {
    let log = Log::default();
    let events = EventRouter::new().on("member.created", named(&log, "created"));
    let app = app(events, Scheme::sotion(), SECRET);

    let response = sotion(&app, "site.renamed", "evt_1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    // The answer says no handler ran.
    assert_eq!(response.headers()["x-webhook-ignored"], "site.renamed");
    assert_eq!(text(response).await, r#"{"status":"ignored"}"#);
    assert!(log.take().is_empty(), "no handler ran");

    // Acknowledged means handled: the retry is a duplicate.
    let again = sotion(&app, "site.renamed", "evt_1").await;
    assert!(again.headers().contains_key("x-webhook-duplicate"));
}

#[tokio::test]
async fn a_fallback_of_our_own_gets_unknown_types() {
    let log = Log::default();
    let events = EventRouter::new()
        .on("member.created", named(&log, "created"))
        .fallback(named(&log, "fallback"));
    let app = app(events, Scheme::sotion(), SECRET);

    let response = sotion(&app, "site.renamed", "evt_1").await;
    assert!(
        !response.headers().contains_key("x-webhook-ignored"),
        "a fallback of our own is a handler that ran"
    );
    assert_eq!(text(response).await, "fallback");
    let response = sotion(&app, "member.created", "evt_2").await;
    assert!(!response.headers().contains_key("x-webhook-ignored"));
    assert_eq!(text(response).await, "created");
    assert_eq!(
        log.take(),
        [
            "fallback site.renamed evt_1",
            "created member.created evt_2"
        ]
    );
}

#[tokio::test]
async fn github_events_route_by_event_and_action_most_specific_first() {
    let log = Log::default();
    let events = EventRouter::new()
        .on("issues.opened", named(&log, "opened"))
        .on("issues", named(&log, "issues"))
        .on("push", named(&log, "push"))
        .on_prefix("pull_request", named(&log, "pull requests"));
    let app = app(events, Scheme::github(), SECRET);

    let cases = [
        ("issues", r#"{"action":"opened"}"#, "opened"),
        ("issues", r#"{"action":"closed"}"#, "issues"),
        ("push", r#"{"ref":"refs/heads/main"}"#, "push"),
        ("pull_request", r#"{"action":"opened"}"#, "pull requests"),
        (
            "pull_request_review",
            r#"{"action":"submitted"}"#,
            "pull requests",
        ),
    ];
    for (n, (event, body, handler)) in cases.into_iter().enumerate() {
        let response = github(&app, event, body, &format!("d{n}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{event} {body}");
        assert_eq!(text(response).await, handler, "{event} {body}");
    }
    assert_eq!(
        log.take(),
        [
            "opened issues.opened d0",
            "issues issues.closed d1",
            "push push d2",
            "pull requests pull_request.opened d3",
            "pull requests pull_request_review.submitted d4",
        ]
    );

    // An event nobody handles, with or without an action, is acknowledged.
    let response = github(&app, "star", r#"{"action":"created"}"#, "d5").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, r#"{"status":"ignored"}"#);
}

#[tokio::test]
async fn the_longest_prefix_wins_and_an_exact_name_beats_every_prefix() {
    let log = Log::default();
    let events = EventRouter::new()
        .on_prefix("access-group.", named(&log, "groups"))
        .on_prefix("access-group.member.", named(&log, "group members"))
        .on("access-group.member.removed", named(&log, "removed"))
        .on_prefix("member", named(&log, "members"));
    let app = app(events, Scheme::sotion(), SECRET);

    let cases = [
        ("access-group.created", "groups"),
        ("access-group.member.added", "group members"),
        ("access-group.member.removed", "removed"),
        ("member.auth", "members"),
        ("site.created", r#"{"status":"ignored"}"#),
    ];
    for (n, (event, answer)) in cases.into_iter().enumerate() {
        let response = sotion(&app, event, &format!("evt_{n}")).await;
        assert_eq!(text(response).await, answer, "{event}");
    }
}

#[tokio::test]
async fn other_presets_route_by_their_own_event_names() {
    let log = Log::default();
    let events = || {
        EventRouter::new()
            .on("invoice.paid", named(&log, "paid"))
            .on("user.created", named(&log, "user"))
            .on("deployment.succeeded", named(&log, "deployed"))
            .fallback(named(&log, "fallback"))
    };

    // Stripe: the body's `type`.
    let stripe = app(events(), Scheme::stripe(), SECRET);
    let secret = Scheme::stripe().secret(SECRET).unwrap();
    let request =
        Delivery::new(r#"{"id":"evt_s","type":"invoice.paid"}"#).sign(&Scheme::stripe(), &secret);
    assert_eq!(text(send(&stripe, request).await).await, "paid");

    // Standard Webhooks: the body's `type`, the id in `webhook-id`.
    let standard = app(events(), Scheme::standard_webhooks(), STANDARD_SECRET);
    let secret = Scheme::standard_webhooks().secret(STANDARD_SECRET).unwrap();
    let request = Delivery::new(r#"{"type":"user.created"}"#)
        .with_id("msg_1")
        .sign(&Scheme::standard_webhooks(), &secret);
    assert_eq!(text(send(&standard, request).await).await, "user");

    // sota.io: the body's `event`.
    let sota = app(events(), Scheme::sota(), SECRET);
    let secret = Scheme::sota().secret(SECRET).unwrap();
    let request = Delivery::new(
        r#"{"event":"deployment.succeeded","project_id":"p1","timestamp":"2026-03-28T12:00:00Z"}"#,
    )
    .sign(&Scheme::sota(), &secret);
    assert_eq!(text(send(&sota, request).await).await, "deployed");

    // Slack: a slash command (form-encoded) has no event name: the fallback.
    let slack = app(events(), Scheme::slack(), SECRET);
    let secret = Scheme::slack().secret(SECRET).unwrap();
    let request = Delivery::new("command=%2Fdeploy&text=now").sign(&Scheme::slack(), &secret);
    assert_eq!(text(send(&slack, request).await).await, "fallback");

    let lines = log.take();
    assert_eq!(
        lines[..2],
        ["paid invoice.paid evt_s", "user user.created msg_1"]
    );
    // sota.io and Slack ids are the body's digest.
    assert!(
        lines[2].starts_with("deployed deployment.succeeded "),
        "{lines:?}"
    );
    assert!(lines[3].starts_with("fallback - "), "{lines:?}");
    assert_eq!(lines.len(), 4);
}

#[tokio::test]
async fn on_any_runs_first_for_every_event_and_its_failure_is_the_answer() {
    let log = Log::default();
    let refuse = Arc::new(AtomicUsize::new(1));
    let any = {
        let log = log.clone();
        let refuse = Arc::clone(&refuse);
        move |meta: WebhookMeta, body: String| {
            let log = log.clone();
            let refuse = Arc::clone(&refuse);
            async move {
                log.push(format!("any {} {} bytes", meta.id(), body.len()));
                // Refuses the first `member.deleted` delivery: its answer is the delivery's.
                if meta.event() == Some("member.deleted")
                    && refuse
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                {
                    return (StatusCode::SERVICE_UNAVAILABLE, "not now");
                }
                (StatusCode::ACCEPTED, "ignored")
            }
        }
    };
    let deleted = {
        let log = log.clone();
        move |meta: WebhookMeta, body: Bytes| {
            let log = log.clone();
            async move {
                // The handler still gets the whole verified body.
                assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
                log.push(format!("deleted {}", meta.id()));
                "deleted"
            }
        }
    };
    let events = EventRouter::new().on_any(any).on("member.deleted", deleted);
    let app = app(events, Scheme::sotion(), SECRET);

    // A handled event, then one for the fallback: `on_any` ran before each.
    let size = testing::sotion_event("member.deleted", "evt_1", "site_1").len();
    let response = sotion(&app, "site.renamed", "evt_0").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, r#"{"status":"ignored"}"#);

    // `on_any` refuses: its answer, the handler does not run, and the event is not handled.
    let response = sotion(&app, "member.deleted", "evt_1").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(text(response).await, "not now");

    // The sender's retry runs both.
    let response = sotion(&app, "member.deleted", "evt_1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "deleted");
    let fallback_size = testing::sotion_event("site.renamed", "evt_0", "site_1").len();
    assert_eq!(
        log.take(),
        [
            format!("any evt_0 {fallback_size} bytes"),
            format!("any evt_1 {size} bytes"),
            format!("any evt_1 {size} bytes"),
            "deleted evt_1".to_owned(),
        ]
    );
}

#[derive(Clone)]
struct AppState {
    greeting: &'static str,
    log: Log,
}

async fn greet(State(app): State<AppState>, meta: WebhookMeta) -> String {
    app.log.push(format!("{} {}", app.greeting, meta.id()));
    app.greeting.to_owned()
}

async fn count(State(app): State<AppState>) -> StatusCode {
    app.log.push("any".to_owned());
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn the_routers_state_reaches_every_handler() {
    let log = Log::default();
    let events = EventRouter::new()
        .on("member.created", greet)
        .on_any(count)
        .fallback(greet);
    let app = Router::new()
        .route(
            "/webhooks",
            post(events).route_layer(layer(Scheme::sotion(), SECRET)),
        )
        .with_state(AppState {
            greeting: "welcome",
            log: log.clone(),
        });

    assert_eq!(
        text(sotion(&app, "member.created", "evt_1").await).await,
        "welcome"
    );
    assert_eq!(
        text(sotion(&app, "site.renamed", "evt_2").await).await,
        "welcome"
    );
    assert_eq!(log.take(), ["any", "welcome evt_1", "any", "welcome evt_2"]);
}

#[tokio::test]
async fn a_failing_handler_leaves_the_event_for_the_senders_retry() {
    let runs = Arc::new(AtomicUsize::new(0));
    let flaky = {
        let runs = Arc::clone(&runs);
        move || {
            let run = runs.fetch_add(1, Ordering::SeqCst);
            async move {
                if run == 0 {
                    (StatusCode::INTERNAL_SERVER_ERROR, "database down")
                } else {
                    (StatusCode::OK, "handled")
                }
            }
        }
    };
    let events = EventRouter::new().on("member.updated", flaky);
    let app = app(events, Scheme::sotion(), SECRET);

    let first = sotion(&app, "member.updated", "evt_1").await;
    assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let retry = sotion(&app, "member.updated", "evt_1").await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert!(!retry.headers().contains_key("x-webhook-duplicate"));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the retry ran the handler again"
    );
    let third = sotion(&app, "member.updated", "evt_1").await;
    assert!(third.headers().contains_key("x-webhook-duplicate"));
    assert_eq!(runs.load(Ordering::SeqCst), 2, "a handled event runs once");
}

#[tokio::test]
async fn without_the_layer_the_router_answers_500_naming_it() {
    let log = Log::default();
    let events = EventRouter::new().on("member.created", named(&log, "created"));
    let app = Router::new().route("/webhooks", post(events));
    let body = testing::sotion_event("member.created", "evt_1", "site_1");
    let request = Request::post("/webhooks").body(Body::from(body)).unwrap();

    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(response).await, "missing_webhook_layer");
    assert!(log.take().is_empty());
}

#[tokio::test]
async fn a_handler_is_unit_tested_without_the_layer_through_the_testing_meta() {
    async fn welcome(meta: WebhookMeta, member: Envelope<MemberData>) -> (StatusCode, String) {
        match member.data.email {
            Some(email) => (StatusCode::OK, format!("{} welcomes {email}", meta.id())),
            None => (StatusCode::UNPROCESSABLE_ENTITY, "no email".to_owned()),
        }
    }
    let events = EventRouter::new().on("member.created", welcome);
    let meta = sotion_meta("evt_1");
    let body = testing::sotion_event("member.created", "evt_1", "site_1");

    let response = events
        .clone()
        .with_state(())
        .oneshot(testing::verified_request(meta.clone(), body))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "evt_1 welcomes ada@example.com");

    // Another event goes to the default fallback, without the layer too.
    let other = MetaBuilder::new("evt_2").with_event("member.auth").build();
    let response = events
        .with_state(())
        .oneshot(testing::verified_request(other, "{}"))
        .await
        .unwrap();
    assert_eq!(text(response).await, r#"{"status":"ignored"}"#);
}

#[tokio::test]
async fn on_any_reads_the_body_of_a_request_made_by_hand() {
    // A request carrying only a meta (no verified body): both handlers still see the body.
    let log = Log::default();
    let any = {
        let log = log.clone();
        move |body: String| {
            let log = log.clone();
            async move {
                log.push(format!("any {body}"));
                StatusCode::OK
            }
        }
    };
    let handler = {
        let log = log.clone();
        move |body: String| {
            let log = log.clone();
            async move {
                log.push(format!("handler {body}"));
                StatusCode::OK
            }
        }
    };
    let events = EventRouter::new().on_any(any).on("ping", handler);
    let mut request = Request::post("/webhooks").body(Body::from("pong")).unwrap();
    request
        .extensions_mut()
        .insert(MetaBuilder::new("p1").with_event("ping").build());

    let response = events.with_state(()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(log.take(), ["any pong", "handler pong"]);
}

#[test]
#[should_panic(expected = "`member.created` already has a handler")]
fn a_name_given_twice_panics_as_axum_does_for_a_route() {
    let log = Log::default();
    let _ = EventRouter::<()>::new()
        .on("member.created", named(&log, "a"))
        .on("member.created", named(&log, "b"));
}

#[test]
#[should_panic(expected = "`access-group.` already has a handler")]
fn a_prefix_given_twice_panics() {
    let log = Log::default();
    let _ = EventRouter::<()>::new()
        .on_prefix("access-group.", named(&log, "a"))
        .on_prefix("access-group.", named(&log, "b"));
}

#[test]
fn debug_lists_the_registered_names() {
    let log = Log::default();
    let events = EventRouter::<()>::new()
        .on("member.created", named(&log, "a"))
        .on_prefix("access-group.", named(&log, "b"));
    let printed = format!("{events:?}");
    assert!(printed.contains("member.created"), "{printed}");
    assert!(printed.contains("access-group."), "{printed}");
}

#[tokio::test]
async fn a_misspelled_github_name_shows_in_the_ignored_header_and_strict_makes_it_an_error() {
    let log = Log::default();
    // GitHub names the event `issues`: `issue.opened` never matches.
    let misspelled = || EventRouter::new().on("issue.opened", named(&log, "opened"));
    let app = app(misspelled(), Scheme::github(), SECRET);
    let response = github(&app, "issues", r#"{"action":"opened"}"#, "d-1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-webhook-ignored"], "issues.opened");
    // A delivery without an event name (GitHub always sends one; this one lost it): `-`.
    let scheme = Scheme::github();
    let mut request = Delivery::new(r#"{"action":"opened"}"#)
        .with_event("issues")
        .sign(&scheme, &scheme.secret(SECRET).unwrap());
    request.headers_mut().remove("x-github-event");
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-webhook-ignored"], "-");

    let strict = app_strict(misspelled().strict());
    let response = github(&strict, "issues", r#"{"action":"opened"}"#, "d-3").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-webhook-ignored"], "issues.opened");
    assert_eq!(error_code(response).await, "unhandled_event");
    // Not acknowledged: the sender's retry is processed again.
    let retry = github(&strict, "issues", r#"{"action":"opened"}"#, "d-3").await;
    assert_eq!(retry.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(log.take().is_empty());

    // A fallback given after `strict` replaces it.
    let relaxed = app_strict(misspelled().strict().fallback(named(&log, "fallback")));
    let response = github(&relaxed, "issues", r#"{"action":"opened"}"#, "d-4").await;
    assert_eq!(text(response).await, "fallback");
}

/// `app` for GitHub, under a name that says what the tests above use it for.
fn app_strict(events: EventRouter) -> Router {
    app(events, Scheme::github(), SECRET)
}
