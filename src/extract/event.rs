//! [`Event<T>`]: the delivery as a [`FromEvent`] type, for any scheme.

use axum_core::extract::FromRequestParts;
use http::request::Parts;

use super::rejection::{EventRejection, InvalidData, MissingWebhookLayer};
use crate::event::FromEvent;
use crate::layer::VerifiedBody;
use crate::meta::WebhookMeta;

/// The verified delivery as `T`, a [`FromEvent`] type: [`SotionEvent`](crate::SotionEvent) for
/// Sotion, or your own enum for another sender (see [`FromEvent`] for GitHub and Stripe). A
/// tuple newtype like axum's `Json<T>`, but only ever built from a delivery whose signature
/// verified.
///
/// `T` is built from the delivery's [`WebhookMeta`] and its payload: a Sotion envelope's
/// `data`, every other scheme's whole body (for a form body, the event's JSON it carries: see
/// [`BodyForm`](crate::scheme::BodyForm)). Needs the [`WebhookLayer`](crate::WebhookLayer)
/// (`500 missing_webhook_layer` without it); when [`FromEvent::from_event`] fails the answer is
/// `422 invalid_data` (a well-written `T` never fails: see [`FromEvent`]). It does not consume
/// the body, so it may stand in any argument position, and the same handler may take the raw
/// `Bytes` (the exact signed body) as its last argument.
///
/// ```
/// use axum::{body::Bytes, routing::post, Router};
/// use tower::ServiceExt;
/// use tower_webhook::extract::Event;
/// use tower_webhook::{testing, Scheme, Secret, SotionEvent, WebhookLayer};
///
/// async fn on_event(Event(event): Event<SotionEvent>, raw: Bytes) -> String {
///     match event {
///         SotionEvent::MemberCreated(member) => format!("welcome {:?}", member.email),
///         other => format!("acknowledged {} ({} bytes)", other.name(), raw.len()),
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let secret = Secret::new("whsec_test")?;
/// let layer = WebhookLayer::new(Scheme::sotion(), "whsec_test")?;
/// let app = Router::new().route("/webhooks", post(on_event).layer(layer));
///
/// let body = testing::sotion_event("member.created", "evt_1", "site_1");
/// let response = app.oneshot(testing::sotion_request(&secret, body)).await?;
/// assert_eq!(response.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Event<T>(pub T);

impl<T, S> FromRequestParts<S> for Event<T>
where
    T: FromEvent,
    S: Sync,
{
    type Rejection = EventRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let (Some(meta), Some(verified)) = (
            parts.extensions.get::<WebhookMeta>(),
            parts.extensions.get::<VerifiedBody>(),
        ) else {
            return Err(MissingWebhookLayer.into());
        };
        let payload = verified.envelope_data.as_ref().unwrap_or(&verified.event);
        T::from_event(meta, payload)
            .map(Event)
            .map_err(|error| InvalidData(error).into())
    }
}
