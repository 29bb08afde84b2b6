//! axum extractors for verified deliveries, and their rejections (feature `axum`).
//!
//! | extractor | gives | fails with |
//! | --- | --- | --- |
//! | [`WebhookMeta`](crate::WebhookMeta) | the verified facts (id, event, scope, timestamp, ...) of any scheme | [`MissingWebhookLayer`] |
//! | `Option<WebhookMeta>` | the same, or `None` on a route without the layer | never |
//! | [`Verified<T>`] | the whole verified body as `T`, for any scheme | [`VerifiedRejection`] |
//! | [`Event<T>`] | the event as a [`FromEvent`](crate::FromEvent) type, such as [`SotionEvent`](crate::SotionEvent), for any scheme | [`EventRejection`] |
//! | [`Envelope<T>`](crate::Envelope) | Sotion's envelope with `data` as `T` | [`EnvelopeRejection`] |
//!
//! Each reads what the [`WebhookLayer`](crate::WebhookLayer) put in the request's extensions;
//! none consumes the body, so they may stand in any argument position, and a handler may still
//! take the raw `Bytes` (the exact bytes that were signed).
//!
//! Every failure is a small type with a fixed [`status`](MissingWebhookLayer::status) and a
//! short [`body_text`](MissingWebhookLayer::body_text); each extractor's rejection is a
//! `#[non_exhaustive]` enum over them, answered as the same JSON body the layer's refusals use:
//! `{"error": "<code>", "message": "<text>"}`.

mod envelope;
mod event;
mod meta;
mod rejection;
mod verified;

pub use self::event::Event;
pub use self::rejection::{
    EnvelopeRejection, EventRejection, InvalidData, MissingWebhookLayer, NotAnEnvelope,
    VerifiedRejection,
};
pub use self::verified::Verified;
