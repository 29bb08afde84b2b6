//! [`FromEvent`]: a sender's events as one Rust type.

use bytes::Bytes;

use crate::meta::WebhookMeta;

/// A sender's events as one Rust type, built from a verified delivery: typically an enum with a
/// variant per event you handle, each carrying its typed payload, and a variant that keeps any
/// other event's name and raw payload.
///
/// [`SotionEvent`](crate::SotionEvent) implements it for Sotion's nine documented event types;
/// implement it for any other sender. Behind the [`WebhookLayer`](crate::WebhookLayer), the
/// [`Event<T>`](crate::extract::Event) extractor (feature `axum`) calls
/// [`from_event`](Self::from_event) with:
///
/// - `meta`: the delivery's verified facts. Choose the variant by [`WebhookMeta::event`] (the
///   event's name as the sender wrote it: Sotion's, Stripe's and Standard Webhooks' `type`,
///   GitHub's `X-GitHub-Event`) and, for GitHub, [`WebhookMeta::action`] (the body's
///   `action`: `opened` for an `issues` event).
/// - `payload`: for a Sotion envelope, its `data` object (the envelope's other fields are in
///   `meta`); for every other scheme, the whole verified body, or for a form body the event's
///   JSON it carries (GitHub's `payload=`, see [`BodyForm`](crate::scheme::BodyForm)). It
///   shares the request's buffer: keeping it (`payload.clone()`) copies nothing.
///
/// # Never refuse an authentic event
///
/// An error is answered `422 invalid_data`
/// ([`InvalidData`](crate::extract::InvalidData)), and the sender retries it, for days, and then
/// perhaps disables the endpoint. An event that was signed by its sender is real: a receiver
/// should acknowledge it even when it does not understand it. So an implementation should not
/// fail on what a sender may change without notice:
///
/// - **Unknown events are data, not errors**: keep a fallback variant holding the event's name
///   and its raw `payload` (it can still be logged, stored or forwarded), and acknowledge it.
/// - **Payload structs are tolerant**: every field `Option` (or `#[serde(default)]`), unknown
///   fields ignored (serde's default, which skips any valid JSON without interpreting it). Keep
///   no `serde_json::Value` and no `#[serde(flatten)]` map of them: valid JSON such as `1e400`
///   or nesting deeper than 128 does not fit one. To keep the fields you do not model, read the
///   payload as a [`RawObject`](crate::RawObject) too: it keeps any JSON object, each value as
///   its raw text, and reads a field as the type you ask for
///   ([`get_as`](crate::RawObject::get_as)).
/// - **A known event whose payload still does not fit** (a field changed its type) falls back to
///   the fallback variant instead of failing: the handler still sees its name and raw payload.
///   Sotion's data types go further and keep such a field in their `extra` object, as its raw
///   JSON text ([`MemberData`](crate::envelope::MemberData)).
///
/// Return `Err` only when the event must be retried later. The error is a
/// [`serde_json::Error`], what `serde_json::from_slice` returns, so that `?` works; build your
/// own with [`serde::de::Error::custom`].
///
/// The exact signed bytes are always available: take the raw `Bytes` extractor in the same
/// handler (as its last argument: it reads the body, which `Event<T>` leaves alone), or keep
/// `payload` in the fallback variant.
///
/// # Example: GitHub
///
/// GitHub names an event in its `X-GitHub-Event` header (`issues`, `push`) and, for most events,
/// what happened in the body's `action` (`opened`), which [`WebhookMeta::action`] reads.
///
/// ```
/// use axum::{body::Bytes, routing::post, Router};
/// use serde::Deserialize;
/// use tower::ServiceExt;
/// use tower_webhook::extract::Event;
/// use tower_webhook::scheme::{Outgoing, Scheme};
/// use tower_webhook::{testing, FromEvent, Secret, WebhookLayer, WebhookMeta};
///
/// /// The GitHub events this application handles, and every other one.
/// #[derive(Debug)]
/// enum GitHubEvent {
///     IssuesOpened(IssuesEvent),
///     Push(PushEvent),
///     Other { event: Option<String>, action: Option<String>, payload: Bytes },
/// }
///
/// // Tolerant payloads: every field optional, the others ignored.
/// #[derive(Debug, Deserialize)]
/// struct IssuesEvent {
///     issue: Option<Issue>,
/// }
///
/// #[derive(Debug, Deserialize)]
/// struct Issue {
///     number: Option<u64>,
///     title: Option<String>,
/// }
///
/// #[derive(Debug, Deserialize)]
/// struct PushEvent {
///     #[serde(rename = "ref")]
///     git_ref: Option<String>,
/// }
///
/// impl FromEvent for GitHubEvent {
///     fn from_event(meta: &WebhookMeta, payload: &Bytes) -> Result<Self, serde_json::Error> {
///         let typed = match (meta.event(), meta.action()) {
///             (Some("issues"), Some("opened")) => {
///                 serde_json::from_slice(payload).map(Self::IssuesOpened)
///             }
///             (Some("push"), _) => serde_json::from_slice(payload).map(Self::Push),
///             _ => return Ok(Self::other(meta, payload)),
///         };
///         // A known event whose payload drifted is still acknowledged, as `Other`.
///         Ok(typed.unwrap_or_else(|_| Self::other(meta, payload)))
///     }
/// }
///
/// impl GitHubEvent {
///     fn other(meta: &WebhookMeta, payload: &Bytes) -> Self {
///         Self::Other {
///             event: meta.event().map(str::to_owned),
///             action: meta.action().map(str::to_owned),
///             payload: payload.clone(),
///         }
///     }
/// }
///
/// async fn on_github(Event(event): Event<GitHubEvent>) -> String {
///     match event {
///         GitHubEvent::IssuesOpened(opened) => {
///             let issue = opened.issue.as_ref();
///             format!("issue #{:?} opened", issue.and_then(|issue| issue.number))
///         }
///         GitHubEvent::Push(push) => format!("push to {:?}", push.git_ref),
///         GitHubEvent::Other { event, .. } => format!("acknowledged {event:?}"),
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let secret = Secret::new("github-webhook-secret")?;
/// let layer = WebhookLayer::new(Scheme::github(), "github-webhook-secret")?;
/// let app = Router::new().route("/webhooks", post(on_github).layer(layer));
///
/// let body = br#"{"action":"opened","issue":{"number":7,"title":"Crash"}}"#;
/// let message = Outgoing { id: "delivery-1", event: "issues", timestamp: 0, body };
/// let request = testing::signed_request(&Scheme::github(), &secret, &message);
/// let response = app.oneshot(request).await?;
/// assert_eq!(response.status(), 200);
/// # use http_body_util::BodyExt;
/// # let text = response.into_body().collect().await?.to_bytes();
/// # assert_eq!(&text[..], b"issue #Some(7) opened");
/// # Ok(())
/// # }
/// ```
///
/// # Example: Stripe
///
/// Stripe names an event in its body's `type` (`invoice.paid`); the object it is about is
/// `data.object`.
///
/// ```
/// use axum::body::Bytes;
/// use serde::Deserialize;
/// use tower_webhook::{FromEvent, WebhookMeta};
///
/// #[derive(Debug)]
/// enum StripeEvent {
///     InvoicePaid(Invoice),
///     Other { event: Option<String>, payload: Bytes },
/// }
///
/// #[derive(Debug, Default, Deserialize)]
/// #[serde(default)]
/// struct Invoice {
///     id: Option<String>,
///     customer: Option<String>,
///     amount_paid: Option<i64>,
/// }
///
/// /// `{"data": {"object": T}}`: the object a Stripe event is about.
/// #[derive(Deserialize)]
/// struct Data<T> {
///     data: Object<T>,
/// }
///
/// #[derive(Deserialize)]
/// struct Object<T> {
///     object: T,
/// }
///
/// impl FromEvent for StripeEvent {
///     fn from_event(meta: &WebhookMeta, payload: &Bytes) -> Result<Self, serde_json::Error> {
///         let other = || Self::Other {
///             event: meta.event().map(str::to_owned),
///             payload: payload.clone(),
///         };
///         Ok(match meta.event() {
///             Some("invoice.paid") => serde_json::from_slice::<Data<Invoice>>(payload)
///                 .map_or_else(|_| other(), |data| Self::InvoicePaid(data.data.object)),
///             _ => other(),
///         })
///     }
/// }
/// # let _ = StripeEvent::from_event;
/// ```
pub trait FromEvent: Sized {
    /// Builds the event from a verified delivery's facts and payload (for Sotion: the
    /// envelope's `data`; for every other scheme: the whole body, or the JSON a form carries).
    ///
    /// # Errors
    /// When the delivery should be refused with `422 invalid_data`, and so retried by its
    /// sender. See the trait's docs: an implementation that keeps a fallback variant never
    /// needs to fail.
    fn from_event(meta: &WebhookMeta, payload: &Bytes) -> Result<Self, serde_json::Error>;
}
