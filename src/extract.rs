//! axum extractors for verified deliveries, and their rejections (feature `axum`).
//!
//! Both read what the [`WebhookLayer`](crate::WebhookLayer) put in the request's extensions;
//! neither consumes the body, so they may stand in any argument position, and a handler may
//! still take the raw `Bytes` (the exact bytes that were signed).

use std::fmt;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;

use crate::envelope::{Envelope, EventType};
use crate::layer::VerifiedBody;
use crate::meta::WebhookMeta;

/// The extractor ran on a request that did not go through the
/// [`WebhookLayer`](crate::WebhookLayer): a programming error, answered `500`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MissingWebhookLayer;

impl MissingWebhookLayer {
    const MESSAGE: &'static str = "no verified webhook in this request: add \
        tower_webhook::WebhookLayer to this route (`.layer(WebhookLayer::new(scheme, secret)?)`) \
        before using the Envelope or WebhookMeta extractors";
}

impl fmt::Display for MissingWebhookLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MESSAGE)
    }
}

impl std::error::Error for MissingWebhookLayer {}

impl IntoResponse for MissingWebhookLayer {
    fn into_response(self) -> Response {
        json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "missing_webhook_layer",
            Self::MESSAGE,
        )
    }
}

/// The verified event's `data` does not deserialize into the handler's type: `422
/// invalid_data`. The message names the serde error (which may quote part of the data, never a
/// secret).
#[derive(Debug)]
pub struct InvalidData(serde_json::Error);

impl InvalidData {
    /// The deserialization error.
    #[must_use]
    pub fn error(&self) -> &serde_json::Error {
        &self.0
    }
}

impl fmt::Display for InvalidData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the event's data does not match the expected type: {}",
            self.0
        )
    }
}

impl std::error::Error for InvalidData {}

impl IntoResponse for InvalidData {
    fn into_response(self) -> Response {
        json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_data",
            &self.to_string(),
        )
    }
}

/// [`Envelope<T>`] was used behind a layer whose scheme is not Sotion's: a programming error,
/// answered `500`. Use [`Verified<T>`] for other senders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotAnEnvelope;

impl NotAnEnvelope {
    const MESSAGE: &'static str = "Envelope<T> reads Sotion envelopes, and this route's \
        WebhookLayer uses another scheme: extract Verified<T> and WebhookMeta instead";
}

impl fmt::Display for NotAnEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MESSAGE)
    }
}

impl std::error::Error for NotAnEnvelope {}

impl IntoResponse for NotAnEnvelope {
    fn into_response(self) -> Response {
        json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "not_an_envelope",
            Self::MESSAGE,
        )
    }
}

/// Why [`Envelope<T>`] or [`Verified<T>`] could not be extracted.
#[derive(Debug)]
#[non_exhaustive]
pub enum EnvelopeRejection {
    /// The route lacks the layer (`500`).
    MissingWebhookLayer(MissingWebhookLayer),
    /// `Envelope<T>` behind a non-Sotion scheme (`500`).
    NotAnEnvelope(NotAnEnvelope),
    /// The data does not fit `T` (`422`).
    InvalidData(InvalidData),
}

impl fmt::Display for EnvelopeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingWebhookLayer(inner) => inner.fmt(f),
            Self::NotAnEnvelope(inner) => inner.fmt(f),
            Self::InvalidData(inner) => inner.fmt(f),
        }
    }
}

impl std::error::Error for EnvelopeRejection {}

impl IntoResponse for EnvelopeRejection {
    fn into_response(self) -> Response {
        match self {
            Self::MissingWebhookLayer(inner) => inner.into_response(),
            Self::NotAnEnvelope(inner) => inner.into_response(),
            Self::InvalidData(inner) => inner.into_response(),
        }
    }
}

/// The whole verified body, deserialized from JSON into `T`, for any scheme: a tuple newtype
/// like axum's `Json<T>`, but only ever built from bytes whose signature verified.
///
/// Needs the [`WebhookLayer`](crate::WebhookLayer) (`500` without it); a body that does not
/// fit `T` is `422 invalid_data`. Pair it with [`WebhookMeta`] for the id, event and timestamp.
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
    type Rejection = EnvelopeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let VerifiedBody { body, .. } = parts
            .extensions
            .get::<VerifiedBody>()
            .ok_or(EnvelopeRejection::MissingWebhookLayer(MissingWebhookLayer))?;
        serde_json::from_slice(body)
            .map(Verified)
            .map_err(|error| EnvelopeRejection::InvalidData(InvalidData(error)))
    }
}

fn json_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let mut response = Response::new(axum_core::body::Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl<S: Sync> FromRequestParts<S> for WebhookMeta {
    type Rejection = MissingWebhookLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<WebhookMeta>()
            .cloned()
            .ok_or(MissingWebhookLayer)
    }
}

impl<T, S> FromRequestParts<S> for Envelope<T>
where
    T: DeserializeOwned,
    S: Sync,
{
    type Rejection = EnvelopeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let missing = EnvelopeRejection::MissingWebhookLayer(MissingWebhookLayer);
        let meta = parts.extensions.get::<WebhookMeta>().ok_or(missing)?;
        let (Some(data), Some(site_id), Some(timestamp), Some(version)) = (
            parts
                .extensions
                .get::<VerifiedBody>()
                .and_then(|verified| verified.envelope_data.as_ref()),
            meta.site_id(),
            meta.timestamp(),
            meta.version(),
        ) else {
            return Err(EnvelopeRejection::NotAnEnvelope(NotAnEnvelope));
        };
        let data = serde_json::from_slice(data)
            .map_err(|error| EnvelopeRejection::InvalidData(InvalidData(error)))?;
        Ok(Envelope {
            id: meta.id().to_owned(),
            event_type: EventType::clone(meta.event()),
            timestamp,
            version: version.to_owned(),
            site_id: site_id.to_owned(),
            data,
        })
    }
}
