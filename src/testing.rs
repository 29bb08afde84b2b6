//! Helpers for tests (feature `testing`):
//!
//! - [`Delivery`] signs a request for any scheme and any path, as the sender would (a form
//!   body too: [`Delivery::form_payload`]); [`sotion_request`] and [`sotion_event`] are the
//!   short forms for Sotion;
//! - [`MetaBuilder`] and [`verified_request`] (or [`verified_request_at`], at any path) build
//!   what the layer hands a handler, so a handler (or an [`EventRouter`](crate::EventRouter))
//!   can be unit-tested without the layer and its signatures;
//!
//! A helper refuses (panics, naming the fix) to build a request its scheme's sender would never
//! send: one without the event name a scheme reads from a header (GitHub's `X-GitHub-Event`),
//! which would reach no handler of an event router and be acknowledged unhandled, silently.
//! - [`Sample`] signs a sample delivery in each sender's own shape (or a body of yours) for
//!   any preset, as the `tower-webhook sign` and `send` commands and the `send` example do;
//! - [`Body`], the body type of every request built here;
//! - [`check_store`], the conformance suite for an [`IdempotencyStore`](crate::IdempotencyStore),
//!   and [`check_inbox`], the one for an [`InboxBackend`](crate::inbox::InboxBackend).
//!
//! ```
//! use axum::{routing::post, Router};
//! use tower::ServiceExt;
//! use tower_webhook::{testing, Envelope, Scheme, Secret, WebhookLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = WebhookLayer::new(Scheme::sotion(), "whsec_test")?;
//! let app = Router::new().route(
//!     "/webhooks",
//!     post(|event: Envelope| async move { event.id }).layer(layer),
//! );
//! let secret = Secret::new("whsec_test")?;
//!
//! let body = testing::sotion_event("member.created", "evt_1", "site_1");
//! let response = app.oneshot(testing::sotion_request(&secret, body)).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;

use bytes::Bytes;
use bytestring::ByteString;
use http::{header, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use serde_json::value::RawValue;
use time::OffsetDateTime;

pub use crate::idempotency::conformance::check_store;
use crate::idempotency::Token;
pub use crate::inbox::conformance::check_inbox;
use crate::layer::VerifiedBody;
use crate::meta::{KeyBasis, WebhookMeta};
pub use crate::sample::{random_uuid, Sample, SampleError, SignedSample};
use crate::scheme::{Outgoing, Scheme, Source};
use crate::secret::Secret;

/// The body of every request built here (`http_body_util::Full<bytes::Bytes>`), named so that
/// a test can write `Request<testing::Body>` without depending on those crates.
pub type Body = Full<Bytes>;

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
/// the body has no such field), and an `X-Webhook-Delivery` id. Short for
/// `Delivery::new(body).sign(&Scheme::sotion(), secret)`.
#[must_use]
pub fn sotion_request(secret: &Secret, body: impl Into<Bytes>) -> Request<Body> {
    Delivery::new(body).sign(&Scheme::sotion(), secret)
}

/// A `POST /webhooks` request carrying `message.body`, signed with `secret` the way `scheme`
/// signs (signature, timestamp, id and event headers as the scheme reads them), with
/// `Content-Type: application/json` and `Content-Length`. A header value the id or event
/// cannot be is left empty. [`Delivery`] fills the id, event and timestamp in for you, and
/// takes a path.
///
/// # Panics
/// When `scheme` reads the event name from a header (GitHub's `X-GitHub-Event`) and
/// `message.event` is empty: the sender never sends that.
#[must_use]
pub fn signed_request(scheme: &Scheme, secret: &Secret, message: &Outgoing<'_>) -> Request<Body> {
    require_event(scheme, Some(message.event), "signed_request");
    signed(
        scheme,
        secret,
        message,
        Uri::from_static("/webhooks"),
        &HeaderValue::from_static("application/json"),
        None,
    )
}

/// Panics, naming the fix, when `scheme` reads its event name from a header and `event` is
/// none: GitHub always sends `X-GitHub-Event`, and a request without it reaches no handler of
/// an event router.
fn require_event(scheme: &Scheme, event: Option<&str>, helper: &str) {
    if let Some(Source::Header(name)) = &scheme.event {
        assert!(
            event.is_some_and(|event| !event.is_empty()),
            "testing::{helper}: the {} scheme reads the event name from the `{name}` header, \
             which its sender always sends: give one (Delivery::with_event(\"push\"), \
             Outgoing {{ event: \"push\", .. }}, MetaBuilder::with_event(\"push\"))",
            scheme.name(),
        );
    }
}

fn signed(
    scheme: &Scheme,
    secret: &Secret,
    message: &Outgoing<'_>,
    uri: Uri,
    content_type: &HeaderValue,
    public_url: Option<&str>,
) -> Request<Body> {
    let url = public_url.map(|base| format!("{}{uri}", base.trim_end_matches('/')));
    let body = Bytes::copy_from_slice(message.body);
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type.clone());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let sign = |message: &Outgoing<'_>| match &url {
        Some(url) => scheme.sign_with_url(secret, url, message),
        None => scheme.sign(secret, message),
    };
    let signed = sign(message).or_else(|_| {
        // An id or event that cannot be a header value (tests of hostile ids): sign without
        // them; the caller sees the headers left empty.
        sign(&Outgoing {
            id: "",
            event: "",
            ..*message
        })
    });
    if let Ok(signed) = signed {
        headers.extend(signed);
    }
    request
}

/// One delivery to sign as a sender would, for any scheme and any path: the id, event name and
/// timestamp are filled in unless given.
///
/// ```
/// use axum::{routing::post, Router};
/// use tower::ServiceExt;
/// use tower_webhook::{testing::Delivery, Scheme, Secret, WebhookLayer, WebhookMeta};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Router::new().route(
///     "/hooks/github",
///     post(|meta: WebhookMeta| async move { format!("{:?} {:?}", meta.event(), meta.action()) })
///         .route_layer(WebhookLayer::new(Scheme::github(), "gh-secret")?),
/// );
/// let secret = Scheme::github().secret("gh-secret")?;
///
/// let request = Delivery::new(r#"{"action":"opened"}"#)
///     .with_path("/hooks/github")
///     .with_event("issues") // GitHub names the event in a header
///     .sign(&Scheme::github(), &secret);
/// let response = app.oneshot(request).await?;
/// assert_eq!(response.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Delivery {
    body: Bytes,
    path: Uri,
    id: Option<String>,
    event: Option<String>,
    timestamp: Option<i64>,
    public_url: Option<String>,
    content_type: HeaderValue,
    /// The JSON the body carries, when [`form_payload`](Self::form_payload) encoded it (the
    /// id and event fields are read from it).
    json: Option<Bytes>,
}

impl Delivery {
    /// A delivery of `body` (the exact bytes to sign) to `POST /webhooks`.
    #[must_use]
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            path: Uri::from_static("/webhooks"),
            id: None,
            event: None,
            timestamp: None,
            public_url: None,
            content_type: HeaderValue::from_static("application/json"),
            json: None,
        }
    }

    /// Sends the body as a form whose `payload` parameter holds it, as GitHub does with the
    /// webhook's content type set to `form` (its REST API's default) and Slack's interactivity:
    /// `payload=<the body, form-encoded>` with `Content-Type:
    /// application/x-www-form-urlencoded`, encoded as GitHub's sender encodes it (letters,
    /// digits and `*-._` as they are, a space as `+`, every other byte as `%XX`). The id and
    /// event fields a scheme reads from the body are read from the JSON.
    ///
    /// ```
    /// use tower_webhook::{testing::Delivery, Scheme};
    ///
    /// let scheme = Scheme::github();
    /// let request = Delivery::new(r#"{"ref":"refs/heads/main"}"#)
    ///     .form_payload()
    ///     .with_event("push")
    ///     .sign(&scheme, &scheme.secret("gh-secret")?);
    /// assert_eq!(request.headers()["content-type"], "application/x-www-form-urlencoded");
    /// # Ok::<(), tower_webhook::ConfigError>(())
    /// ```
    #[must_use]
    pub fn form_payload(mut self) -> Self {
        let form = crate::sample::form_payload(&self.body);
        self.json = Some(std::mem::replace(&mut self.body, Bytes::from(form)));
        self.content_type = HeaderValue::from_static("application/x-www-form-urlencoded");
        self
    }

    /// Sends it with this `Content-Type` instead of `application/json` (a form body written by
    /// hand: `application/x-www-form-urlencoded`).
    ///
    /// # Panics
    /// When `content_type` is not a valid header value.
    #[must_use]
    pub fn with_content_type(mut self, content_type: &str) -> Self {
        self.content_type = HeaderValue::from_str(content_type).unwrap_or_else(|error| {
            panic!("Delivery::with_content_type({content_type:?}): {error}")
        });
        self
    }

    /// Sends it to `path` (with a query, if any) instead of `/webhooks`.
    ///
    /// # Panics
    /// When `path` is not a valid URI path (`/webhooks/acme`).
    #[must_use]
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = path
            .parse()
            .unwrap_or_else(|error| panic!("Delivery::with_path({path:?}): {error}"));
        self
    }

    /// The event id, for a scheme that reads it from a header (Standard Webhooks'
    /// `webhook-id`, GitHub's `X-GitHub-Delivery`): default, a random id. A scheme that reads
    /// the id from the body (Sotion, Stripe) is given the body's, and sends it in a header
    /// too if it repeats it there (Sotion's `X-Webhook-Id`, left out when the body has none).
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The event name, for a scheme that reads it from a header (GitHub's `X-GitHub-Event`).
    /// Default: the body's field, for a scheme that reads the event from the body, or else
    /// none (the header is left out).
    #[must_use]
    pub fn with_event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    /// The time to sign, for a timestamped scheme (Standard Webhooks, Stripe, Slack).
    /// Default: now, from the system clock.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: OffsetDateTime) -> Self {
        self.timestamp = Some(timestamp.unix_timestamp());
        self
    }

    /// The public URL the request is signed for, for a scheme that signs the URL it calls
    /// (Square, Twilio): the same base as the layer's
    /// [`with_public_url`](crate::layer::WebhookLayerBuilder::with_public_url)
    /// (`https://example.com`), followed by the delivery's path and query. Without it such a
    /// scheme's request carries no signature.
    #[must_use]
    pub fn with_public_url(mut self, base: &str) -> Self {
        self.public_url = Some(base.to_owned());
        self
    }

    /// The request, signed with `secret` the way `scheme` signs: its signature, timestamp, id
    /// and event headers (a header whose value would be empty, or is not a valid header
    /// value, is left out), the scheme's delivery-attempt header with a random id (Sotion's
    /// `X-Webhook-Delivery`), `Content-Type` (`application/json` unless told otherwise) and
    /// `Content-Length`.
    ///
    /// # Panics
    /// When `scheme` reads the event name from a header (GitHub's `X-GitHub-Event`) and no
    /// event was given ([`with_event`](Self::with_event)): the sender never sends that, and
    /// such a request would reach no handler of an event router.
    #[must_use]
    pub fn sign(&self, scheme: &Scheme, secret: &Secret) -> Request<Body> {
        // The id and event from the body, for a scheme that reads them there.
        let json = self.json.as_ref().unwrap_or(&self.body);
        let (body_id, body_event) = crate::sample::body_facts(scheme, json);
        let random = Token::random().to_hex();
        let id = match (&self.id, &scheme.id) {
            (Some(id), _) => id.as_str(),
            (None, Source::Header(_)) => &random,
            (None, _) => body_id.as_deref().unwrap_or(""),
        };
        let event = match &self.event {
            Some(event) => event.as_str(),
            None => body_event.as_deref().unwrap_or(""),
        };
        require_event(scheme, Some(event), "Delivery::sign");
        let timestamp = self
            .timestamp
            .unwrap_or_else(|| OffsetDateTime::now_utc().unix_timestamp());
        let mut request = signed(
            scheme,
            secret,
            &Outgoing {
                id,
                event,
                timestamp,
                body: &self.body,
            },
            self.path.clone(),
            &self.content_type,
            self.public_url.as_deref(),
        );
        let headers = request.headers_mut();
        let empty: Vec<_> = headers
            .iter()
            .filter(|(_, value)| value.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in empty {
            headers.remove(name);
        }
        if let Some(name) = &scheme.delivery {
            if let Ok(value) = HeaderValue::from_str(&Token::random().to_hex()) {
                headers.insert(name.clone(), value);
            }
        }
        request
    }
}

/// Builds the [`WebhookMeta`] the layer would hand a handler, for unit-testing handlers
/// without the layer (with [`verified_request`]). Every fact but the id is optional, as in a
/// real delivery; the scheme defaults to `sotion`.
///
/// ```
/// use tower_webhook::testing::MetaBuilder;
///
/// let meta = MetaBuilder::new("delivery-1")
///     .with_scheme("github")
///     .with_event("issues")
///     .with_action("opened")
///     .build();
/// assert_eq!((meta.event(), meta.action()), (Some("issues"), Some("opened")));
/// ```
#[derive(Debug, Clone)]
pub struct MetaBuilder {
    meta: WebhookMeta,
}

impl MetaBuilder {
    /// A meta for event `id`, of scheme `sotion`, with no other fact.
    #[must_use]
    pub fn new(id: &str) -> Self {
        Self {
            meta: WebhookMeta {
                scheme: Cow::Borrowed("sotion"),
                id: ByteString::from(id),
                event: None,
                action: None,
                delivery: None,
                scope: None,
                tenant: None,
                timestamp: None,
                version: None,
                key: KeyBasis::default(),
            },
        }
    }

    /// The scheme's name ([`Scheme::name`]: `github`, `stripe`, `standard-webhooks`, ...).
    #[must_use]
    pub fn with_scheme(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.meta.scheme = name.into();
        self
    }

    /// The event name ([`WebhookMeta::event`]).
    #[must_use]
    pub fn with_event(mut self, event: &str) -> Self {
        self.meta.event = Some(event.into());
        self
    }

    /// The action ([`WebhookMeta::action`], GitHub's body `action`).
    #[must_use]
    pub fn with_action(mut self, action: &str) -> Self {
        self.meta.action = Some(action.into());
        self
    }

    /// The scope ([`WebhookMeta::scope`], Sotion's `siteId`).
    #[must_use]
    pub fn with_scope(mut self, scope: &str) -> Self {
        self.meta.scope = Some(scope.into());
        self
    }

    /// The tenant a resolver matched ([`WebhookMeta::tenant`]).
    #[must_use]
    pub fn with_tenant(mut self, tenant: &str) -> Self {
        self.meta.tenant = Some(tenant.to_owned());
        self
    }

    /// The signed timestamp ([`WebhookMeta::timestamp`]).
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: OffsetDateTime) -> Self {
        self.meta.timestamp = Some(timestamp);
        self
    }

    /// The delivery-attempt id ([`WebhookMeta::delivery`]); one that cannot be a header value
    /// (control characters) is left out, as the layer would never see it.
    #[must_use]
    pub fn with_delivery(mut self, delivery: &str) -> Self {
        self.meta.delivery = HeaderValue::from_str(delivery)
            .ok()
            .filter(|value| value.to_str().is_ok());
        self
    }

    /// The envelope's schema version ([`WebhookMeta::version`]).
    #[must_use]
    pub fn with_version(mut self, version: &str) -> Self {
        self.meta.version = Some(version.into());
        self
    }

    /// The meta.
    #[must_use]
    pub fn build(self) -> WebhookMeta {
        self.meta
    }
}

/// A `POST /webhooks` request as the layer hands it to the inner service once a delivery is
/// verified: `body` (JSON), with `meta` and the verified body in its extensions, so that
/// [`WebhookMeta`], `Verified<T>`, `Event<T>`, `Envelope<T>` and an
/// [`EventRouter`](crate::EventRouter) work on it without the layer. For a meta of scheme
/// `sotion`, the body's `data` field is the envelope's data (`Envelope<T>` needs the meta's
/// event, scope, timestamp and version too). [`verified_request_at`] sends it to another path.
///
/// ```
/// use axum::handler::Handler;
/// use tower::ServiceExt;
/// use tower_webhook::{testing, EventRouter, WebhookMeta};
///
/// async fn opened(meta: WebhookMeta) -> String {
///     format!("opened {}", meta.id())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = EventRouter::new().on("issues.opened", opened);
/// let meta = testing::MetaBuilder::new("delivery-1")
///     .with_scheme("github")
///     .with_event("issues")
///     .with_action("opened")
///     .build();
/// let request = testing::verified_request(meta, r#"{"action":"opened"}"#);
/// let response = router.with_state(()).oneshot(request).await?;
/// assert_eq!(response.status(), 200);
/// # Ok(())
/// # }
/// ```
///
/// # Panics
/// When `meta`'s scheme is a preset that reads the event name from a header (GitHub) and
/// `meta` has no event: the sender never sends that.
#[must_use]
pub fn verified_request(meta: WebhookMeta, body: impl Into<Bytes>) -> Request<Body> {
    verified_request_at("/webhooks", meta, body)
}

/// [`verified_request`] to `path` (with a query, if any), for a handler mounted elsewhere
/// (`/hooks/github`, `/webhooks/{tenant}`).
///
/// ```
/// use axum::{routing::post, Router};
/// use tower::ServiceExt;
/// use tower_webhook::{testing, WebhookMeta};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Router::new().route("/hooks/stripe", post(|meta: WebhookMeta| async move { meta.id().to_owned() }));
/// let meta = testing::MetaBuilder::new("evt_1").with_scheme("stripe").build();
/// let response = app.oneshot(testing::verified_request_at("/hooks/stripe", meta, "{}")).await?;
/// assert_eq!(response.status(), 200);
/// # Ok(())
/// # }
/// ```
///
/// # Panics
/// When `path` is not a valid URI path, or as [`verified_request`] does.
#[must_use]
pub fn verified_request_at(path: &str, meta: WebhookMeta, body: impl Into<Bytes>) -> Request<Body> {
    if let Some(scheme) = Scheme::preset(meta.scheme()) {
        require_event(&scheme, meta.event(), "verified_request");
    }
    let uri: Uri = path
        .parse()
        .unwrap_or_else(|error| panic!("testing::verified_request_at({path:?}): {error}"));
    let body = body.into();
    let envelope_data = (meta.scheme() == "sotion")
        .then(|| envelope_data(&body))
        .flatten();
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    request
        .extensions_mut()
        .insert(VerifiedBody::json(body, envelope_data));
    request.extensions_mut().insert(meta);
    request
}

/// The raw `data` of a JSON object body, if it has one.
fn envelope_data(body: &[u8]) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        data: &'a RawValue,
    }
    let Data { data } = serde_json::from_slice(body).ok()?;
    Some(Bytes::copy_from_slice(data.get().as_bytes()))
}
