//! Helpers that build correctly signed deliveries, for tests (feature `testing`), and
//! [`check_store`], the conformance suite for an [`IdempotencyStore`](crate::IdempotencyStore).
//!
//! ```
//! use axum::{routing::post, Router};
//! use tower::ServiceExt;
//! use tower_webhook::{testing, Envelope, Secret, WebhookLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = Secret::new("whsec_test")?;
//! let app = Router::new().route(
//!     "/webhooks",
//!     post(|event: Envelope| async move { event.id }).layer(WebhookLayer::new(secret.clone())),
//! );
//!
//! let body = testing::sotion_event("member.created", "evt_1", "site_1");
//! let response = app.oneshot(testing::sotion_request(&secret, body)).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request};
use http_body_util::Full;

pub use crate::idempotency::conformance::check_store;
use crate::idempotency::Token;
use crate::scheme::{Outgoing, Scheme, SOTION_DELIVERY, SOTION_EVENT, SOTION_ID};
use crate::secret::Secret;

/// A Sotion envelope for event `event_type` with id `id` from site `site_id`, with a small
/// sample `data` object, as bytes.
#[must_use]
pub fn sotion_event(event_type: &str, id: &str, site_id: &str) -> Vec<u8> {
    let data = if event_type.starts_with("access-group.member.") {
        serde_json::json!({ "accessGroupId": "group_1", "memberId": "member_1" })
    } else if event_type.starts_with("access-group.") {
        serde_json::json!({ "id": "group_1", "name": "Pro", "description": "Paying members" })
    } else {
        serde_json::json!({ "id": "member_1", "email": "ada@example.com", "name": "Ada" })
    };
    sotion_event_with_data(event_type, id, site_id, &data)
}

/// A Sotion envelope with the given `data`, as bytes. The timestamp is fixed
/// (`2026-03-28T12:00:00.000Z`), so the bytes are reproducible.
#[must_use]
pub fn sotion_event_with_data(
    event_type: &str,
    id: &str,
    site_id: &str,
    data: &serde_json::Value,
) -> Vec<u8> {
    serde_json::json!({
        "id": id,
        "type": event_type,
        "timestamp": "2026-03-28T12:00:00.000Z",
        "version": "1",
        "siteId": site_id,
        "data": data,
    })
    .to_string()
    .into_bytes()
}

/// A `POST /webhooks` request carrying `body` exactly as Sotion sends it: signed with `secret`,
/// with `Content-Type`, `X-Webhook-Event` and `X-Webhook-Id` taken from the body (left out when
/// the body has no such field), and an `X-Webhook-Delivery` id.
#[must_use]
pub fn sotion_request(secret: &Secret, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let body = body.into();
    let fields: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let field = |name: &str| {
        fields
            .get(name)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
    };
    let mut request = signed_request(
        &Scheme::sotion(),
        secret,
        &Outgoing {
            id: field("id"),
            event: field("type"),
            timestamp: 0,
            body: &body,
        },
    );
    let headers = request.headers_mut();
    for name in [SOTION_ID, SOTION_EVENT] {
        if headers.get(&name).is_some_and(HeaderValue::is_empty) {
            headers.remove(&name);
        }
    }
    headers.insert(
        SOTION_DELIVERY,
        HeaderValue::from_str(&Token::random().to_hex())
            .unwrap_or(HeaderValue::from_static("delivery")),
    );
    request
}

/// A `POST /webhooks` request carrying `message.body`, signed with `secret` the way `scheme`
/// signs (signature, timestamp, id and event headers as the scheme reads them), with
/// `Content-Type: application/json` and `Content-Length`. A header value the id or event
/// cannot be is left out.
#[must_use]
pub fn signed_request(
    scheme: &Scheme,
    secret: &Secret,
    message: &Outgoing<'_>,
) -> Request<Full<Bytes>> {
    let body = Bytes::copy_from_slice(message.body);
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = http::Uri::from_static("/webhooks");
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let signed = scheme.sign(secret, message).or_else(|_| {
        // An id or event that cannot be a header value (tests of hostile ids): sign without
        // them; the caller sees the headers left empty.
        scheme.sign(
            secret,
            &Outgoing {
                id: "",
                event: "",
                ..*message
            },
        )
    });
    if let Ok(signed) = signed {
        headers.extend(signed);
    }
    request
}
