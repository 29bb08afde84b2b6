//! Bodies as senders send them: verified over the raw bytes, then read as JSON or as a form
//! (`application/x-www-form-urlencoded`: GitHub's default content type and Slack's
//! interactivity carry the event's JSON in a `payload=` parameter; Slack's slash commands and
//! Twilio-style senders send plain parameters). The extractors and the router work the same for
//! both; a content type the scheme does not know is `415`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use common::send;
use http_body_util::BodyExt;
use serde::Deserialize;
use tower_webhook::extract::Verified;
use tower_webhook::testing::Delivery;
use tower_webhook::{EventRouter, Scheme, WebhookLayer, WebhookMeta};

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
            other => out.push_str(&format!("%{other:02X}")),
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
