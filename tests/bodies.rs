//! Bodies as senders send them: verified over the raw bytes, then read as JSON or as a form
//! (`application/x-www-form-urlencoded`: GitHub's default content type and Slack's
//! interactivity carry the event's JSON in a `payload=` parameter; Slack's slash commands and
//! Twilio-style senders send plain parameters). The extractors and the router work the same for
//! both; a content type the scheme does not know is `415`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use common::{error_code, send};
use http_body_util::BodyExt;
use serde::Deserialize;
use tower_webhook::extract::{Event, Verified};
use tower_webhook::scheme::{BodyForm, Encoding, SignatureFormat};
use tower_webhook::testing::Delivery;
use tower_webhook::{EventRouter, FromEvent, Scheme, WebhookLayer, WebhookMeta};

const SECRET: &str = "It's a Secret to Everybody";
const FORM: &str = "application/x-www-form-urlencoded";

/// The example delivery of GitHub's documentation ("Webhook events and payloads", example
/// delivery: an `issues` event, action `opened`), its elisions left out.
const GITHUB_ISSUES_OPENED: &str = r#"{
  "action": "opened",
  "issue": {
    "url": "https://api.github.com/repos/octocat/Hello-World/issues/1347",
    "number": 1347
  },
  "repository" : {
    "id": 1296269,
    "full_name": "octocat/Hello-World",
    "owner": {
      "login": "octocat",
      "id": 1
    }
  },
  "sender": {
    "login": "octocat",
    "id": 1
  }
}"#;

/// A `push` payload in GitHub's shape (no `action`).
const GITHUB_PUSH: &str = r#"{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"0000000000000000000000000000000000000000","repository":{"id":1296269,"full_name":"octocat/Hello-World"},"sender":{"login":"octocat","id":1}}"#;

/// `value` encoded as GitHub's sender (Ruby's `URI.encode_www_form`) encodes a form value:
/// letters, digits and `*-._` as they are, a space as `+`, every other byte as `%XX`.
fn www_form_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            other => {
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    out
}

/// A GitHub delivery of `json` with the webhook's content type set to `form` (GitHub's
/// default): the body is `payload=<the JSON, form-encoded>`, signed as sent.
fn github_form(event: &str, json: &str) -> Request<tower_webhook::testing::Body> {
    let body = format!("payload={}", www_form_component(json));
    let scheme = Scheme::github();
    let mut request = Delivery::new(body)
        .with_event(event)
        .sign(&scheme, &scheme.secret(SECRET).unwrap());
    request
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(FORM));
    request
}

#[derive(Deserialize)]
struct IssuesEvent {
    issue: Issue,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
}

#[derive(Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: String,
}

async fn issue_opened(Verified(event): Verified<IssuesEvent>) -> String {
    format!("opened #{}", event.issue.number)
}

async fn push(meta: WebhookMeta, Verified(event): Verified<PushEvent>) -> String {
    format!("{} to {}", meta.event().unwrap_or("-"), event.git_ref)
}

fn github_app() -> Router {
    let events = EventRouter::new()
        .on("issues.opened", issue_opened)
        .on("push", push);
    let layer = WebhookLayer::new(Scheme::github(), SECRET).unwrap();
    Router::new().route("/webhooks", post(events).route_layer(layer))
}

async fn text(response: Response<Body>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_github_form_delivery_reaches_the_handlers_a_json_one_reaches() {
    let app = github_app();

    // GitHub's default content type: the event's JSON in `payload=`.
    let response = send(&app, github_form("issues", GITHUB_ISSUES_OPENED)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key("x-webhook-ignored"));
    assert_eq!(text(response).await, "opened #1347");

    let response = send(&app, github_form("push", GITHUB_PUSH)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "push to refs/heads/main");

    // The same events as JSON give the same answers.
    let scheme = Scheme::github();
    let secret = scheme.secret(SECRET).unwrap();
    for (event, json, expected) in [
        ("issues", GITHUB_ISSUES_OPENED, "opened #1347"),
        ("push", GITHUB_PUSH, "push to refs/heads/main"),
    ] {
        let request = Delivery::new(json).with_event(event).sign(&scheme, &secret);
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{event}");
        assert_eq!(text(response).await, expected);
    }
}

/// What a handler saw of a delivery: its event name and the event's JSON.
type Seen = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

/// `POST /webhooks` behind `layer`, recording the event name and the JSON `Verified<T>` reads.
fn recording(layer: WebhookLayer) -> (Router, Seen) {
    let seen = Seen::default();
    let state = seen.clone();
    let handler = move |meta: WebhookMeta, Verified(json): Verified<serde_json::Value>| {
        let state = state.clone();
        async move {
            state
                .lock()
                .unwrap()
                .push((meta.event().map(str::to_owned), json));
            "handled"
        }
    };
    let app = Router::new().route("/webhooks", post(handler).route_layer(layer));
    (app, seen)
}

fn at(unix: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
}

#[tokio::test]
async fn slacks_worked_example_of_a_slash_command_is_read_as_its_parameters() {
    // Slack's "Verifying requests from Slack" example: a slash command, form-encoded, with the
    // signature Slack publishes for it.
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let layer = WebhookLayer::builder(Scheme::slack())
        .with_secret("8f742231b10e8888abcd99yyyzzz85a5")
        .with_clock(|| at(1_531_420_618))
        .build()
        .unwrap();
    let (app, seen) = recording(layer);
    let request = Request::post("/webhooks")
        .header("content-type", FORM)
        .header("x-slack-request-timestamp", "1531420618")
        .header(
            "x-slack-signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        )
        .body(Body::from(body))
        .unwrap();
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (event, json) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(event, None, "a slash command has no `type`");
    assert_eq!(json["command"], "/webhook-collect");
    assert_eq!(json["text"], "");
    assert_eq!(
        json["response_url"],
        "https://hooks.slack.com/commands/T1DC2JH3J/397700885554/96rGlfmibIGlgcZRskXaIFfN"
    );
}

/// A `block_actions` interaction in the shape Slack's interactivity documentation gives.
const SLACK_BLOCK_ACTIONS: &str = r#"{"type":"block_actions","user":{"id":"U0CA5","username":"Amy McGee","name":"Amy McGee","team_id":"T3MDE"},"api_app_id":"A0CA5","token":"Shh_its_a_seekrit","container":{"type":"message","text":"The contents of the original message where the action originated"},"trigger_id":"12466734323.1395872398","team":{"id":"T0CAG","domain":"acme-creamery"},"enterprise":null,"is_enterprise_install":false,"state":{"values":{}},"response_url":"https://www.postresponsestomewherever.com/","actions":[{"action_id":"WaXA","block_id":"=qXel","text":{"type":"plain_text","text":"View","emoji":true},"value":"click_me_123","type":"button","action_ts":"1548426417.840180"}]}"#;

#[tokio::test]
async fn a_slack_interaction_is_routed_by_the_type_of_its_payload() {
    async fn clicked(Verified(json): Verified<serde_json::Value>) -> String {
        format!("clicked {}", json["actions"][0]["value"])
    }
    let scheme = Scheme::slack();
    let secret = "slack-signing-secret";
    let layer = WebhookLayer::builder(scheme.clone())
        .with_secret(secret)
        .with_clock(|| at(1_700_000_000))
        .build()
        .unwrap();
    let events = EventRouter::new().on("block_actions", clicked).strict();
    let app = Router::new().route("/webhooks", post(events).route_layer(layer));
    let request = Delivery::new(SLACK_BLOCK_ACTIONS)
        .form_payload()
        .with_timestamp(time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap())
        .sign(&scheme, &scheme.secret(secret).unwrap());
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, r#"clicked "click_me_123""#);
}

/// A Twilio-style sender: plain form parameters only (its signature scheme aside: here the
/// body's HMAC-SHA256 in a header of its own).
fn form_only() -> Scheme {
    Scheme::builder(
        "forms",
        "x-forms-signature",
        SignatureFormat::single("", Encoding::Hex),
    )
    .with_event(tower_webhook::scheme::Source::body_field("EventType"))
    .with_body_forms(&[BodyForm::Form][..])
    .build()
    .unwrap()
}

#[tokio::test]
async fn plain_parameters_are_the_events_json_object_and_its_facts() {
    let scheme = form_only();
    let (app, seen) = recording(WebhookLayer::new(scheme.clone(), "forms-secret").unwrap());
    let secret = scheme.secret("forms-secret").unwrap();
    let body = "AccountSid=AC123&From=%2B14158675309&Body=Hello+there%21&EventType=message.received&MediaUrl=a&MediaUrl=b";
    let request = Delivery::new(body)
        .with_content_type(FORM)
        .sign(&scheme, &secret);
    assert_eq!(send(&app, request).await.status(), StatusCode::OK);
    let (event, json) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(event.as_deref(), Some("message.received"));
    assert_eq!(
        json,
        serde_json::json!({
            "AccountSid": "AC123",
            "From": "+14158675309",
            "Body": "Hello there!",
            "EventType": "message.received",
            "MediaUrl": ["a", "b"],
        })
    );

    // JSON, or no Content-Type (read as JSON), is not what this sender sends: 415.
    for content_type in [Some("application/json"), None] {
        let mut request = Delivery::new(r#"{"EventType":"x"}"#).sign(&scheme, &secret);
        match content_type {
            Some(value) => {
                request
                    .headers_mut()
                    .insert("content-type", HeaderValue::from_static(value));
            }
            None => {
                request.headers_mut().remove("content-type");
            }
        }
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(error_code(response).await, "unsupported_media_type");
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_form_sent_to_a_json_only_scheme_is_415_never_acknowledged() {
    let scheme = Scheme::stripe();
    let (app, seen) = recording(WebhookLayer::new(scheme.clone(), "whsec_s").unwrap());
    let secret = scheme.secret("whsec_s").unwrap();
    for content_type in [FORM, "text/plain", "multipart/form-data; boundary=x"] {
        let request = Delivery::new(r#"{"id":"evt_1","type":"invoice.paid"}"#)
            .with_content_type(content_type)
            .sign(&scheme, &secret);
        let response = send(&app, request).await;
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "unsupported_media_type");
        assert_eq!(
            json["message"],
            "this receiver reads bodies sent as application/json"
        );
    }
    // Two Content-Type headers are one too many.
    let mut request =
        Delivery::new(r#"{"id":"evt_1","type":"invoice.paid"}"#).sign(&scheme, &secret);
    request
        .headers_mut()
        .append("content-type", HeaderValue::from_static("application/json"));
    assert_eq!(
        send(&app, request).await.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // A forged form is refused as forged first: the signature comes before the body.
    let forged = Delivery::new("a=1")
        .with_content_type(FORM)
        .sign(&scheme, &scheme.secret("whsec_attacker").unwrap());
    assert_eq!(
        error_code(send(&app, forged).await).await,
        "signature_mismatch"
    );
    // JSON with a charset, or a `+json` type, is JSON.
    for content_type in [
        "application/json; charset=utf-8",
        "application/vnd.api+json",
    ] {
        let request = Delivery::new(r#"{"id":"evt_2","type":"invoice.paid"}"#)
            .with_content_type(content_type)
            .sign(&scheme, &secret);
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{content_type}");
    }
    assert_eq!(seen.lock().unwrap().len(), 1, "evt_2 once");
}

/// GitHub's events as one type (see `FromEvent`'s docs).
enum GitHubEvent {
    IssuesOpened(IssuesEvent),
    Other(Option<String>),
}

impl FromEvent for GitHubEvent {
    fn from_event(
        meta: &WebhookMeta,
        payload: &axum::body::Bytes,
    ) -> Result<Self, serde_json::Error> {
        Ok(match (meta.event(), meta.action()) {
            (Some("issues"), Some("opened")) => {
                Self::IssuesOpened(serde_json::from_slice(payload)?)
            }
            (event, _) => Self::Other(event.map(str::to_owned)),
        })
    }
}

#[tokio::test]
async fn event_and_raw_bytes_extractors_read_a_form_delivery_too() {
    async fn handler(Event(event): Event<GitHubEvent>, raw: axum::body::Bytes) -> String {
        let event = match event {
            GitHubEvent::IssuesOpened(opened) => format!("opened #{}", opened.issue.number),
            GitHubEvent::Other(name) => format!("other {name:?}"),
        };
        format!("{event} {}", raw.starts_with(b"payload=%7B"))
    }
    let layer = WebhookLayer::new(Scheme::github(), SECRET).unwrap();
    let app = Router::new().route("/webhooks", post(handler).route_layer(layer));
    let response = send(&app, github_form("issues", GITHUB_ISSUES_OPENED)).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The event from the payload's JSON; the raw bytes as they were signed.
    assert_eq!(text(response).await, "opened #1347 true");
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_worker_reads_a_stored_form_delivery_as_the_layer_read_it() {
    use axum::handler::Handler;
    use std::num::NonZeroUsize;
    use tower_webhook::inbox::{InboxOptions, SqliteInbox, Workers};

    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(dir.path().join("inbox.db"), InboxOptions::new())
        .await
        .unwrap();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let log = handled.clone();
    let opened = move |Verified(event): Verified<IssuesEvent>| {
        let log = log.clone();
        async move {
            log.lock()
                .unwrap()
                .push(format!("opened #{}", event.issue.number));
            "ok"
        }
    };
    let log = handled.clone();
    let pushed = move |Verified(event): Verified<PushEvent>| {
        let log = log.clone();
        async move {
            log.lock()
                .unwrap()
                .push(format!("push to {}", event.git_ref));
            "ok"
        }
    };
    let events = EventRouter::new()
        .on("issues.opened", opened)
        .on("push", pushed)
        .strict();
    let layer = WebhookLayer::builder(Scheme::github())
        .with_secret(SECRET)
        .with_inbox(inbox.clone())
        .build()
        .unwrap();
    let app = Router::new().route("/webhooks", post(events.clone()).route_layer(layer));
    let workers = Workers::new(inbox, events.with_state(()))
        .with_workers(NonZeroUsize::new(1).unwrap())
        .with_poll_interval(Duration::from_millis(20))
        .start()
        .unwrap();

    for (event, json) in [("issues", GITHUB_ISSUES_OPENED), ("push", GITHUB_PUSH)] {
        let response = send(&app, github_form(event, json)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, r#"{"status":"accepted"}"#);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while handled.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    workers.shutdown(Duration::from_secs(5)).await;
    let mut handled = handled.lock().unwrap().clone();
    handled.sort();
    assert_eq!(handled, ["opened #1347", "push to refs/heads/main"]);
}
