//! The `testing` helpers: `Delivery` signs for every preset and any path, as the real layer
//! verifies; `MetaBuilder` and `verified_request` give handlers what the layer would, without
//! it; the body type is nameable.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{error_code, send, sotion_meta};
use http_body_util::BodyExt;
use serde::Deserialize;
use tower::ServiceExt;
use tower_webhook::envelope::MemberData;
use tower_webhook::extract::Verified;
use tower_webhook::testing::{self, Delivery, MetaBuilder};
use tower_webhook::{Envelope, Scheme, WebhookLayer, WebhookMeta};

/// The one place this file builds a layer: `scheme`, keyed with the secret written `text`.
fn layer(scheme: Scheme, text: &str) -> WebhookLayer {
    WebhookLayer::new(scheme, text).unwrap()
}

/// What a handler saw of the meta, as one line.
async fn describe(meta: WebhookMeta) -> String {
    format!(
        "{} {} {} {}",
        meta.scheme(),
        meta.event().unwrap_or("-"),
        meta.action().unwrap_or("-"),
        meta.id()
    )
}

async fn text(response: http::Response<Body>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn delivery_signs_for_every_preset_at_any_path() {
    let standard = "whsec_dGVzdGluZy1zdWl0ZQ==";
    let cases: [(Scheme, &str, Delivery, &str); 6] = [
        (
            Scheme::sotion(),
            "whsec_t",
            Delivery::new(testing::sotion_event("member.created", "evt_1", "site_1")),
            "sotion member.created - evt_1",
        ),
        (
            Scheme::github(),
            "gh",
            Delivery::new(r#"{"action":"opened"}"#)
                .with_event("issues")
                .with_id("d-1"),
            "github issues opened d-1",
        ),
        (
            Scheme::stripe(),
            "whsec_s",
            Delivery::new(r#"{"id":"evt_s","type":"invoice.paid"}"#),
            "stripe invoice.paid - evt_s",
        ),
        (
            Scheme::standard_webhooks(),
            standard,
            Delivery::new(r#"{"type":"user.created"}"#).with_id("msg_1"),
            "standard-webhooks user.created - msg_1",
        ),
        (
            Scheme::sota(),
            "sota",
            Delivery::new(
                r#"{"event":"deploy","project_id":"p","timestamp":"2026-01-01T00:00:00Z"}"#,
            ),
            "sota deploy - ",
        ),
        (
            Scheme::slack(),
            "slack",
            Delivery::new(r#"{"type":"event_callback"}"#),
            "slack event_callback - ",
        ),
    ];
    for (scheme, secret_text, delivery, expected) in cases {
        let name = scheme.name().to_owned();
        let path = format!("/hooks/{name}/in");
        let app = Router::new().route(
            &path,
            post(describe).route_layer(layer(scheme.clone(), secret_text)),
        );
        let secret = scheme.secret(secret_text).unwrap();
        let request = delivery.with_path(&path).sign(&scheme, &secret);
        assert_eq!(request.uri().path(), path);
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        assert!(text(response).await.starts_with(expected), "{name}");
    }
}

#[tokio::test]
async fn a_delivery_signs_the_time_it_is_given() {
    let scheme = Scheme::stripe();
    let secret = scheme.secret("whsec_s").unwrap();
    let app = Router::new().route(
        "/webhooks",
        post(describe).route_layer(layer(scheme.clone(), "whsec_s")),
    );
    let stale = Delivery::new(r#"{"id":"evt_1","type":"a"}"#)
        .with_timestamp(time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .sign(&scheme, &secret);
    let response = send(&app, stale).await;
    assert_eq!(error_code(response).await, "timestamp_too_old");
}

#[test]
fn sotion_deliveries_repeat_the_body_and_name_the_attempt() {
    let secret = Scheme::sotion().secret("whsec_t").unwrap();
    let body = testing::sotion_event("member.created", "evt_1", "site_1");
    let request = testing::sotion_request(&secret, body);
    let headers = request.headers();
    assert_eq!(headers["x-webhook-id"], "evt_1");
    assert_eq!(headers["x-webhook-event"], "member.created");
    assert!(headers.contains_key("x-webhook-delivery"));
    assert_eq!(request.uri(), "/webhooks");

    // A body without an id or type: the headers are left out, not invented.
    let request = testing::sotion_request(&secret, r#"{"data":{}}"#);
    assert!(!request.headers().contains_key("x-webhook-id"));
    assert!(!request.headers().contains_key("x-webhook-event"));
}

#[test]
fn meta_builder_sets_every_fact() {
    let at = time::macros::datetime!(2026-03-28 12:00 UTC);
    let meta = MetaBuilder::new("evt_1")
        .with_scheme("github")
        .with_event("issues")
        .with_action("opened")
        .with_scope("org_1")
        .with_tenant("acme")
        .with_timestamp(at)
        .with_delivery("attempt-2")
        .with_version("1")
        .build();
    assert_eq!(meta.scheme(), "github");
    assert_eq!(meta.id(), "evt_1");
    assert_eq!(meta.event(), Some("issues"));
    assert_eq!(meta.action(), Some("opened"));
    assert_eq!(meta.scope(), Some("org_1"));
    assert_eq!(meta.tenant(), Some("acme"));
    assert_eq!(meta.timestamp(), Some(at));
    assert_eq!(meta.delivery(), Some("attempt-2"));
    assert_eq!(meta.version(), Some("1"));

    let bare = MetaBuilder::new("evt_2")
        .with_delivery("bad\nvalue")
        .build();
    assert_eq!(bare.scheme(), "sotion");
    assert_eq!(
        (bare.event(), bare.delivery(), bare.timestamp()),
        (None, None, None)
    );
}

#[tokio::test]
async fn a_verified_request_feeds_every_extractor_without_the_layer() {
    #[derive(Deserialize)]
    struct Whole {
        id: String,
    }
    async fn handler(
        meta: WebhookMeta,
        Verified(whole): Verified<Whole>,
        envelope: Envelope<MemberData>,
    ) -> String {
        format!(
            "{} {} {} {:?}",
            meta.id(),
            whole.id,
            envelope.site_id,
            envelope.data.email
        )
    }
    // No layer on this route.
    let app = Router::new().route("/webhooks", post(handler));
    let meta = sotion_meta("evt_1");
    let body = testing::sotion_event("member.created", "evt_1", "site_1");

    let response = app
        .clone()
        .oneshot(testing::verified_request(meta, body))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        text(response).await,
        r#"evt_1 evt_1 site_1 Some("ada@example.com")"#
    );

    // Another scheme's meta: `Envelope<T>` says it is not an envelope, as behind the layer.
    let github = MetaBuilder::new("d-1")
        .with_scheme("github")
        .with_event("push")
        .build();
    let body = testing::sotion_event("member.created", "evt_1", "site_1");
    let response = app
        .oneshot(testing::verified_request(github, body))
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "not_an_envelope");
}

#[test]
fn the_body_type_is_nameable_from_the_testing_module() {
    fn body_of(request: http::Request<testing::Body>) -> testing::Body {
        request.into_body()
    }
    let secret = Scheme::sotion().secret("whsec_t").unwrap();
    let body = testing::sotion_event("member.created", "evt_1", "site_1");
    let size = body.len() as u64;
    let request = testing::sotion_request(&secret, body);
    assert_eq!(
        http_body::Body::size_hint(&body_of(request)).exact(),
        Some(size)
    );
}

#[test]
fn a_sotion_delivery_repeats_the_id_and_type_of_a_body_value_cannot_hold() {
    // `1e400` is valid JSON that `serde_json::Value` refuses: the headers still repeat the body.
    let body = r#"{"id":"evt_1","type":"member.created","timestamp":"2026-03-28T12:00:00Z","version":"1","siteId":"site_1","data":{"score":1e400}}"#;
    let secret = Scheme::sotion().secret("whsec_testing").unwrap();
    let request = Delivery::new(body).sign(&Scheme::sotion(), &secret);
    assert_eq!(request.headers()["x-webhook-id"], "evt_1");
    assert_eq!(request.headers()["x-webhook-event"], "member.created");
}

#[test]
#[should_panic(expected = "reads the event name from the `x-github-event` header")]
fn a_github_delivery_without_an_event_name_is_refused() {
    let scheme = Scheme::github();
    let _ = Delivery::new(r#"{"action":"opened"}"#).sign(&scheme, &scheme.secret("gh").unwrap());
}

#[test]
#[should_panic(expected = "reads the event name from the `x-github-event` header")]
fn a_github_signed_request_without_an_event_name_is_refused() {
    let scheme = Scheme::github();
    let message = tower_webhook::scheme::Outgoing {
        id: "d-1",
        event: "",
        timestamp: 0,
        body: b"{}",
    };
    let _ = testing::signed_request(&scheme, &scheme.secret("gh").unwrap(), &message);
}

#[test]
#[should_panic(expected = "MetaBuilder::with_event")]
fn a_github_verified_request_without_an_event_name_is_refused() {
    let meta = MetaBuilder::new("d-1").with_scheme("github").build();
    let _ = testing::verified_request(meta, "{}");
}

#[tokio::test]
async fn a_verified_request_goes_to_any_path() {
    let app = Router::new().route("/hooks/{tenant}", post(describe));
    let meta = MetaBuilder::new("evt_1")
        .with_scheme("stripe")
        .with_event("invoice.paid")
        .build();
    let request = testing::verified_request_at("/hooks/acme?x=1", meta, "{}");
    assert_eq!(request.uri(), "/hooks/acme?x=1");
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "stripe invoice.paid - evt_1");
}

#[tokio::test]
async fn a_form_payload_delivery_is_signed_as_github_sends_it() {
    async fn read(meta: WebhookMeta, Verified(body): Verified<serde_json::Value>) -> String {
        format!(
            "{} {} {}",
            meta.event().unwrap_or("-"),
            meta.action().unwrap_or("-"),
            body["n"]
        )
    }
    let scheme = Scheme::github();
    let app = Router::new().route(
        "/webhooks",
        post(read).route_layer(layer(scheme.clone(), "gh")),
    );
    let json = r#"{"action":"opened","n":"a b&c=d/é"}"#;
    let request = Delivery::new(json)
        .form_payload()
        .with_event("issues")
        .sign(&scheme, &scheme.secret("gh").unwrap());
    assert_eq!(
        request.headers()["content-type"],
        "application/x-www-form-urlencoded"
    );
    let body = request.body().clone().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        b"payload=%7B%22action%22%3A%22opened%22%2C%22n%22%3A%22a+b%26c%3Dd%2F%C3%A9%22%7D"
    );
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, r#"issues opened "a b&c=d/é""#);
}
