//! [`WebhookMeta`] and `Option<WebhookMeta>` as extractors.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use super::rejection::MissingWebhookLayer;
use crate::meta::WebhookMeta;

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

/// `Option<WebhookMeta>`: `None` on a request that did not go through the layer, for handlers
/// shared between a webhook route and others.
impl<S: Sync> OptionalFromRequestParts<S> for WebhookMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<WebhookMeta>().cloned())
    }
}
