//! [`Verified<T>`]: the whole verified body as `T`, for any scheme.

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::rejection::{InvalidData, MissingWebhookLayer, VerifiedRejection};
use crate::layer::VerifiedBody;

/// The whole verified body, deserialized from JSON into `T`, for any scheme: a tuple newtype
/// like axum's `Json<T>`, but only ever built from bytes whose signature verified.
///
/// A form body is read as the event's JSON it carries (see
/// [`BodyForm`](crate::scheme::BodyForm)): the JSON in its `payload` parameter (GitHub's
/// `form` content type, Slack's interactivity), or an object of its parameters (Slack's slash
/// commands). The raw `Bytes` extractor still gives the exact bytes that were signed.
///
/// Needs the [`WebhookLayer`](crate::WebhookLayer) (`500` without it); a body that does not
/// fit `T` is `422 invalid_data`, and the sender retries it. Pair it with
/// [`WebhookMeta`](crate::WebhookMeta) for the id, event and timestamp.
///
/// Choose a `T` that fits every authentic delivery: every field optional, unknown fields
/// ignored (serde's default), or the whole body as a [`RawObject`](crate::RawObject), which
/// keeps any JSON object and reads each field when asked
/// ([`get_as`](crate::RawObject::get_as)). `serde_json::Value` is no such type: it refuses
/// valid JSON it cannot hold (a number beyond `f64` such as `1e400`, nesting deeper than 128,
/// a lone surrogate escape).
///
/// ```
/// use serde::Deserialize;
/// use tower_webhook::{extract::Verified, WebhookMeta};
///
/// #[derive(Deserialize)]
/// struct StripeEvent {
///     id: String,
///     #[serde(rename = "type")]
///     kind: String,
/// }
///
/// async fn handler(meta: WebhookMeta, Verified(event): Verified<StripeEvent>) -> String {
///     format!("{} {} {}", meta.id(), event.id, event.kind)
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verified<T>(pub T);

impl<T, S> FromRequestParts<S> for Verified<T>
where
    T: DeserializeOwned,
    S: Sync,
{
    type Rejection = VerifiedRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let VerifiedBody { event, .. } = parts
            .extensions
            .get::<VerifiedBody>()
            .ok_or(MissingWebhookLayer)?;
        serde_json::from_slice(event)
            .map(Verified)
            .map_err(|error| InvalidData(error).into())
    }
}
