//! One small type per extractor failure, and one rejection enum per extractor.

use std::fmt;

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::json_error_response;

/// An extractor or the [`EventRouter`](crate::EventRouter) ran on a request that did not go
/// through the [`WebhookLayer`](crate::WebhookLayer): a programming error, answered
/// `500 missing_webhook_layer`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MissingWebhookLayer;

impl MissingWebhookLayer {
    /// `500 Internal Server Error`.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    /// The message sent: it names the layer to add.
    #[must_use]
    pub fn body_text(&self) -> String {
        "no verified webhook in this request: add tower_webhook::WebhookLayer to this route \
         (`.route_layer(layer)`) before using the webhook extractors or the EventRouter"
            .to_owned()
    }

    const CODE: &'static str = "missing_webhook_layer";
}

/// [`Envelope<T>`](crate::Envelope) was used behind a layer whose scheme is not Sotion's: a
/// programming error, answered `500 not_an_envelope`. Other senders' bodies are read with
/// [`Verified<T>`](super::Verified).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotAnEnvelope;

impl NotAnEnvelope {
    /// `500 Internal Server Error`.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    /// The message sent.
    #[must_use]
    pub fn body_text(&self) -> String {
        "Envelope<T> reads Sotion envelopes, and this delivery is not one: the route's \
         WebhookLayer uses another scheme (extract Verified<T> or Event<T> and WebhookMeta \
         instead), or a test's WebhookMeta lacks the envelope's scope, timestamp or version"
            .to_owned()
    }

    const CODE: &'static str = "not_an_envelope";
}

/// The verified payload does not deserialize into the handler's type: `422 invalid_data`. The
/// message names the serde error (which may quote part of the data, never a secret).
///
/// The sender retries a `422`: a type that must accept every authentic event keeps its fields
/// optional and the rest ignored or kept as raw JSON in a [`RawObject`](crate::RawObject) (as
/// the crate's Sotion types do), never in a `serde_json::Value`, which refuses valid JSON such
/// as `1e400`.
#[derive(Debug)]
pub struct InvalidData(pub(crate) serde_json::Error);

impl InvalidData {
    /// The deserialization error.
    #[must_use]
    pub fn error(&self) -> &serde_json::Error {
        &self.0
    }

    /// `422 Unprocessable Entity`.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::UNPROCESSABLE_ENTITY
    }

    /// The message sent, naming the serde error.
    #[must_use]
    pub fn body_text(&self) -> String {
        format!(
            "the event's data does not match the expected type: {}",
            self.0
        )
    }

    const CODE: &'static str = "invalid_data";
}

/// `Display`, `Error` and `IntoResponse` for a failure type, from its `status`, `body_text` and
/// code.
macro_rules! failure {
    ($($failure:ty),+) => {$(
        impl fmt::Display for $failure {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.body_text())
            }
        }

        impl std::error::Error for $failure {}

        impl IntoResponse for $failure {
            fn into_response(self) -> Response {
                json_error_response(self.status(), Self::CODE, &self.body_text())
            }
        }
    )+};
}

failure!(MissingWebhookLayer, NotAnEnvelope, InvalidData);

/// A rejection enum over failure types: `status`, `body_text`, `Display`, `Error`,
/// `IntoResponse` and a `From` per variant, each delegating to the failure.
macro_rules! composite {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant($variant),)+
        }

        impl $name {
            /// The HTTP status of the answer.
            #[must_use]
            pub fn status(&self) -> StatusCode {
                match self {
                    $(Self::$variant(inner) => inner.status(),)+
                }
            }

            /// The message sent in the answer's JSON body.
            #[must_use]
            pub fn body_text(&self) -> String {
                match self {
                    $(Self::$variant(inner) => inner.body_text(),)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$variant(inner) => inner.fmt(f),)+
                }
            }
        }

        impl std::error::Error for $name {}

        impl IntoResponse for $name {
            fn into_response(self) -> Response {
                match self {
                    $(Self::$variant(inner) => inner.into_response(),)+
                }
            }
        }

        $(impl From<$variant> for $name {
            fn from(inner: $variant) -> Self {
                Self::$variant(inner)
            }
        })+
    };
}

composite! {
    /// Why [`Envelope<T>`](crate::Envelope) could not be extracted.
    EnvelopeRejection {
        /// The route lacks the layer (`500`).
        MissingWebhookLayer,
        /// The layer's scheme is not Sotion's (`500`).
        NotAnEnvelope,
        /// `data` does not fit `T` (`422`).
        InvalidData,
    }
}

composite! {
    /// Why [`Verified<T>`](super::Verified) could not be extracted.
    VerifiedRejection {
        /// The route lacks the layer (`500`).
        MissingWebhookLayer,
        /// The body does not fit `T` (`422`).
        InvalidData,
    }
}

composite! {
    /// Why [`Event<T>`](super::Event) could not be extracted.
    EventRejection {
        /// The route lacks the layer (`500`).
        MissingWebhookLayer,
        /// [`FromEvent::from_event`](crate::FromEvent::from_event) failed (`422`).
        InvalidData,
    }
}
