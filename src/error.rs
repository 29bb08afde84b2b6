//! Why a request was refused, configuration mistakes, and why a store or an inbox could not
//! answer.
//!
//! A refused delivery is never a [`Service`](tower_service::Service) error: the layer answers it
//! with a small JSON body (`{"error": "<code>", "message": "<text>"}`), the right status code and,
//! in the response's extensions, the [`Rejection`] itself so that outer layers (logging, metrics)
//! can read [`Rejection::kind`] without parsing the body.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

pub use crate::diagnose::Reason;

/// The largest `Retry-After` sent, in seconds: `i32::MAX`, so that no client overflows it.
const MAX_RETRY_AFTER_SECS: u64 = 2_147_483_647;

/// The reason the layer answered a request itself instead of calling the inner service.
///
/// Every kind has a fixed HTTP status and a stable, machine-readable code
/// ([`RejectionKind::code`]) that appears as the `error` field of the JSON body. Messages never
/// reveal the expected signature or which secret was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// The signature header is absent. `401 missing_signature`.
    MissingSignature,
    /// The signature header is empty, repeated, not ASCII, lacks its prefix or does not hold
    /// exactly one well-formed digest. `401 malformed_signature`.
    MalformedSignature,
    /// A header the signature covers (such as Standard Webhooks' `webhook-id`) is absent or
    /// repeated. `401 missing_signed_header`.
    MissingSignedHeader,
    /// The body is larger than the configured limit, by `Content-Length` or while streaming.
    /// `413 payload_too_large`.
    PayloadTooLarge,
    /// The body carries a `Content-Encoding` other than `identity`: signatures cover the bytes
    /// sent, so a compressed body cannot be verified. `415 unsupported_content_encoding`.
    UnsupportedContentEncoding,
    /// The body's `Content-Type` is not one of the forms the scheme reads
    /// ([`Scheme::body_forms`](crate::Scheme::body_forms): JSON, forms), or is sent more than
    /// once; checked once the signature verified, so an authentic delivery is never
    /// acknowledged unread. `415 unsupported_media_type`.
    UnsupportedMediaType,
    /// Reading the body failed (the client went away, or the connection broke).
    /// `400 body_read_failed`.
    BodyReadFailed,
    /// The client did not send the whole body within the body read timeout.
    /// `408 body_timeout`.
    BodyTimeout,
    /// No configured secret produces the signature sent. `401 signature_mismatch`.
    SignatureMismatch,
    /// The scheme signs a timestamp and it is older than the tolerance allows.
    /// `401 timestamp_too_old`.
    TimestampTooOld,
    /// The scheme signs a timestamp and it lies further in the future than the tolerance
    /// allows. `401 timestamp_in_future`.
    TimestampInFuture,
    /// The timestamp the scheme signs is missing or not a valid number or date.
    /// `401 malformed_timestamp`.
    MalformedTimestamp,
    /// The signed body is not JSON (empty, not UTF-8, a syntax error, trailing bytes).
    /// `400 invalid_json`.
    InvalidJson,
    /// The signed body is JSON but not a valid envelope: a field is missing or of the wrong type.
    /// `400 invalid_envelope`.
    InvalidEnvelope,
    /// The envelope's event id is empty, longer than 255 bytes or holds control characters.
    /// `400 invalid_event_id`.
    InvalidEventId,
    /// The envelope's `version` is not one this crate understands. `400 unsupported_version`.
    UnsupportedVersion,
    /// The event-id header is missing or differs from the id in the signed body.
    /// `400 id_mismatch`.
    IdMismatch,
    /// The event-type header is missing or differs from the type in the signed body.
    /// `400 event_mismatch`.
    EventMismatch,
    /// Another delivery of the same event is being handled right now; the sender should retry
    /// later. `409 in_flight` with `Retry-After`.
    InFlight,
    /// The per-request secret resolver failed (its backing store is down); nothing was
    /// processed and the sender should retry later. `503 secrets_unavailable` with
    /// `Retry-After`.
    SecretsUnavailable,
    /// The idempotency store could not be reached; nothing was processed and the sender should
    /// retry later. `503 store_unavailable` with `Retry-After`.
    StoreUnavailable,
    /// Inbox mode: the inbox could not store the delivery (its database failed, or did not
    /// answer in time); nothing was acknowledged and the sender should retry later.
    /// `503 inbox_unavailable` with `Retry-After`.
    InboxUnavailable,
    /// Inbox mode: the inbox holds as many waiting deliveries as it may (backpressure); the
    /// delivery was not stored and the sender should retry later. `503 inbox_full` with
    /// `Retry-After`.
    InboxFull,
    /// A subscription handshake that is not signed (Meta's `hub.verify_token`) carried another
    /// token than the layer's, or the layer has none. `403 verify_token_mismatch`.
    VerifyTokenMismatch,
}

impl RejectionKind {
    /// The HTTP status the layer answers with.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingSignature
            | Self::MalformedSignature
            | Self::MissingSignedHeader
            | Self::SignatureMismatch
            | Self::TimestampTooOld
            | Self::TimestampInFuture
            | Self::MalformedTimestamp => StatusCode::UNAUTHORIZED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedContentEncoding | Self::UnsupportedMediaType => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyReadFailed
            | Self::InvalidJson
            | Self::InvalidEnvelope
            | Self::InvalidEventId
            | Self::UnsupportedVersion
            | Self::IdMismatch
            | Self::EventMismatch => StatusCode::BAD_REQUEST,
            Self::InFlight => StatusCode::CONFLICT,
            Self::VerifyTokenMismatch => StatusCode::FORBIDDEN,
            Self::StoreUnavailable
            | Self::SecretsUnavailable
            | Self::InboxUnavailable
            | Self::InboxFull => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable machine-readable code, the `error` field of the JSON body.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::MissingSignedHeader => "missing_signed_header",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedContentEncoding => "unsupported_content_encoding",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyReadFailed => "body_read_failed",
            Self::BodyTimeout => "body_timeout",
            Self::SignatureMismatch => "signature_mismatch",
            Self::TimestampTooOld => "timestamp_too_old",
            Self::TimestampInFuture => "timestamp_in_future",
            Self::MalformedTimestamp => "malformed_timestamp",
            Self::InvalidJson => "invalid_json",
            Self::InvalidEnvelope => "invalid_envelope",
            Self::InvalidEventId => "invalid_event_id",
            Self::UnsupportedVersion => "unsupported_version",
            Self::IdMismatch => "id_mismatch",
            Self::EventMismatch => "event_mismatch",
            Self::InFlight => "in_flight",
            Self::StoreUnavailable => "store_unavailable",
            Self::SecretsUnavailable => "secrets_unavailable",
            Self::InboxUnavailable => "inbox_unavailable",
            Self::InboxFull => "inbox_full",
            Self::VerifyTokenMismatch => "verify_token_mismatch",
        }
    }

    /// Whether this kind means the request was not proven authentic (a 401): such requests
    /// never reach JSON parsing or the idempotency store.
    #[must_use]
    pub fn is_authentication_failure(self) -> bool {
        self.status() == StatusCode::UNAUTHORIZED
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused request: its [`kind`](Self::kind), a short human-readable message, and for the
/// operator the [`reason`](Self::reason) with a hint.
///
/// The layer puts a clone of this value in the extensions of the response it sends, so an outer
/// layer can tell why a request was refused (extensions stay in the process: the sender reads
/// the status, the code and the message, never the reason):
///
/// ```
/// use tower_webhook::{Rejection, RejectionKind};
///
/// fn log_refusals<B>(response: &http::Response<B>) {
///     if let Some(rejection) = response.extensions().get::<Rejection>() {
///         if rejection.kind() == RejectionKind::SignatureMismatch {
///             let hint = rejection.reason().map(ToString::to_string).unwrap_or_default();
///             eprintln!("forged or misconfigured sender: {rejection} ({hint})");
///         }
///     }
/// }
/// # log_refusals(&http::Response::new(()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    message: &'static str,
    retry_after: Option<Duration>,
    /// Boxed: refusals are the rare path, and a `Result<_, Rejection>` stays small.
    reason: Option<Box<Reason>>,
}

impl Rejection {
    /// A rejection of `kind` with the given message. Messages are fixed strings so that no
    /// request data (and no secret) can ever be echoed back.
    #[must_use]
    pub const fn new(kind: RejectionKind, message: &'static str) -> Self {
        Self {
            kind,
            message,
            retry_after: None,
            reason: None,
        }
    }

    /// Adds the operator's reason: in the refusal's log line and in this value (the response's
    /// extensions), never in the answer sent.
    #[must_use]
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(Box::new(reason));
        self
    }

    /// Why the request was refused, for the operator, when the layer knows more than the
    /// [`kind`](Self::kind): which header is missing (by the scheme's own name), how far the
    /// signed timestamp lies from the clock, that the secret has stray whitespace, is in
    /// another scheme's format or was retired, that the body was re-encoded. Its `Display` is
    /// a hint. Never sent to the sender.
    #[must_use]
    pub fn reason(&self) -> Option<&Reason> {
        self.reason.as_deref()
    }

    /// Adds a `Retry-After` hint to the response: whole seconds, rounded up, at least 1 and at
    /// most 2,147,483,647 (about 68 years, the largest count a client reading it as a signed
    /// 32-bit number accepts); a longer duration is sent as that maximum.
    #[must_use]
    pub const fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Why the request was refused.
    #[must_use]
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The human-readable message sent in the `message` field.
    #[must_use]
    pub fn message(&self) -> &'static str {
        self.message
    }

    /// The `Retry-After` hint, when there is one.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The HTTP status of the response.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The JSON body: `{"error":"<code>","message":"<message>"}`.
    #[must_use]
    pub fn body(&self) -> Bytes {
        json_error_body(self.kind.code(), self.message)
    }

    /// The complete response: status, `Content-Type: application/json`, `Retry-After` where
    /// set, the JSON body, and this rejection in the extensions.
    #[must_use]
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(after) = self.retry_after {
            let secs = after
                .as_secs()
                .saturating_add(u64::from(after.subsec_nanos() > 0));
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(secs.clamp(1, MAX_RETRY_AFTER_SECS)),
            );
        }
        response.extensions_mut().insert(self.clone());
        response
    }
}

impl Rejection {
    /// The refusal of a verified body that serde could not read: `invalid_json` for a syntax
    /// error (or an empty, truncated or non-UTF-8 body), `invalid_envelope` with `message` when
    /// the JSON is well formed but not of the expected shape.
    pub(crate) fn from_json(error: &serde_json::Error, message: &'static str) -> Self {
        if error.is_data() {
            Self::new(RejectionKind::InvalidEnvelope, message)
        } else {
            Self::new(RejectionKind::InvalidJson, "the body is not valid JSON")
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for Rejection {}

/// The JSON body of every refusal, the layer's and the extractors':
/// `{"error":"<code>","message":"<message>"}`.
pub(crate) fn json_error_body(code: &str, message: &str) -> Bytes {
    let body = serde_json::json!({ "error": code, "message": message });
    Bytes::from(body.to_string())
}

/// A refusal as an axum response: `status`, `Content-Type: application/json` and
/// [`json_error_body`].
#[cfg(feature = "axum")]
pub(crate) fn json_error_response(
    status: StatusCode,
    code: &str,
    message: &str,
) -> axum_core::response::Response {
    let mut response = axum_core::response::Response::new(axum_core::body::Body::from(
        json_error_body(code, message),
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Rejection {
    fn into_response(self) -> axum_core::response::Response {
        self.to_response().map(axum_core::body::Body::new)
    }
}

/// A configuration mistake, reported when a secret, scheme or layer is built, never at request
/// time.
///
/// Builders ([`WebhookLayerBuilder`](crate::layer::WebhookLayerBuilder),
/// [`SchemeBuilder`](crate::scheme::SchemeBuilder)) keep the first mistake and report it from
/// `build()`. Where a mistake has a cause of its own (a header name that does not parse, a
/// secret that does not decode), it is kept as the error's [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A secret was empty (or decoded to no bytes).
    #[error("a webhook secret must not be empty")]
    EmptySecret,
    /// A secret's text begins or ends with whitespace (a newline from an env file, a pasted
    /// space): no sender's secret does, and with it every genuine delivery would be refused.
    /// Trim it; a key that really has such bytes is given as bytes, with
    /// [`Secret::new`](crate::Secret::new) and `with_secrets`.
    #[error("the secret's text begins or ends with whitespace (a newline from a file?): trim it")]
    SecretWhitespace,
    /// A secret that the scheme decodes as base64 (Standard Webhooks: `whsec_<base64>`) did not
    /// decode. The source says why and where, without the secret's characters.
    #[error("the secret is not base64 after its prefix")]
    InvalidSecretEncoding {
        /// Why it did not decode (the offset of a wrong character, a wrong length, ...).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A secret decoded for one format was given to a scheme that decodes its secrets another
    /// way: a raw [`Secret::new`](crate::Secret::new) key for a base64 scheme, or the reverse.
    /// Give the secret's text to the scheme instead
    /// ([`Scheme::secret`](crate::Scheme::secret), or the layer builder's `with_secret`).
    #[error(
        "a secret decoded as {found} was given to a scheme whose secrets are {expected}: give the \
         secret's text to the scheme (scheme.secret(text), or the layer builder's with_secret)"
    )]
    SecretFormatMismatch {
        /// How the scheme decodes its secrets.
        expected: crate::scheme::SecretFormat,
        /// How the secret given was decoded.
        found: crate::scheme::SecretFormat,
    },
    /// A layer was built with neither secrets nor a resolver: it could verify nothing.
    #[error("the layer has no secret: give it one (with_secret) or a resolver (with_resolver)")]
    NoSecret,
    /// A layer was given both static secrets and a per-tenant resolver; the resolver picks
    /// every request's secrets, so the static ones would never be used.
    #[error(
        "the layer has both secrets and a per-tenant resolver: the resolver picks every \
         request's secrets, so give one or the other"
    )]
    SecretsWithResolver,
    /// A header name given to a scheme is not a valid HTTP header name.
    #[error("`{name}` is not a valid header name")]
    InvalidHeaderName {
        /// The name as given.
        name: String,
        /// Why it is not a header name.
        #[source]
        source: http::header::InvalidHeaderName,
    },
    /// A value to sign ([`Scheme::sign`](crate::Scheme::sign): an event id or type) cannot be
    /// sent in its header.
    #[error("the value for header `{name}` is not a valid header value")]
    InvalidHeaderValue {
        /// The header it was meant for.
        name: http::HeaderName,
        /// Why it is not a header value.
        #[source]
        source: http::header::InvalidHeaderValue,
    },
    /// A duration option is zero, where zero means nothing would work, or longer than
    /// 100 years, which not every store or timer represents.
    #[error("`{option}` must be more than zero and at most 100 years")]
    InvalidDuration {
        /// The option, by the name of the method that sets it.
        option: &'static str,
    },
    /// A scheme's signed parts do not end with the body, or sign it twice.
    #[error("the body must be signed exactly once, as the last signed part")]
    BodyNotSignedLast,
    /// A scheme signs the event id ([`Part::Id`](crate::scheme::Part::Id)) but reads the id
    /// from somewhere other than a header.
    #[error("a signed event id must come from a header")]
    SignedIdNotFromHeader,
    /// A scheme signs the timestamp ([`Part::Timestamp`](crate::scheme::Part::Timestamp)) but
    /// reads it from somewhere other than a header or a signature tag.
    #[error("a signed timestamp must come from a header or a signature tag")]
    SignedTimestampNotFromHeader,
    /// A scheme signs the event id and the timestamp back to back: `ab` + `1` and `a` + `b1`
    /// would sign the same bytes, so a captured delivery could be replayed as another.
    #[error("the signed event id and timestamp need a literal between them")]
    AmbiguousSignedParts,
    /// A scheme has a timestamp tolerance but no timestamp to check it against.
    #[error("a timestamp tolerance needs a timestamp source")]
    ToleranceWithoutTimestamp,
    /// A scheme reads a signature tag but its signature format is a single value, which has no
    /// tags.
    #[error("signature tags need a list-shaped signature format")]
    SignatureTagWithoutList,
    /// A scheme reads its event id from the signature header.
    #[error("the event id cannot come from the signature header")]
    IdFromSignatureTag,
    /// A scheme's event id or scope comes from a header the signature does not cover, so
    /// anyone could choose it; see
    /// [`SchemeBuilder::with_unsigned_id_and_scope`](crate::scheme::SchemeBuilder::with_unsigned_id_and_scope).
    #[error(
        "the event id or scope comes from an unsigned header: sign it (Part::Id), read it from \
         the body, or call with_unsigned_id_and_scope() to use it for display only"
    )]
    UnsignedIdOrScope,
    /// An inbox's table prefix is not 1 to 40 of `[a-z0-9_]` starting with a letter or `_` (it
    /// becomes part of SQL identifiers).
    #[error("an inbox prefix is 1 to 40 of [a-z0-9_], starting with a letter or _")]
    InvalidInboxPrefix,
    /// The scheme signs with an algorithm this build does not have: enable the Cargo feature
    /// named (`ed25519` for Discord and Standard Webhooks `v1a`, `p256` for SendGrid, `sha1`
    /// for Twilio).
    #[error("{algorithm} signatures need the `{feature}` feature of tower-webhook")]
    FeatureDisabled {
        /// The scheme's algorithm.
        algorithm: crate::scheme::Algorithm,
        /// The Cargo feature that builds it.
        feature: &'static str,
    },
    /// A key for one algorithm was given to a scheme that signs with another: an HMAC secret
    /// to an Ed25519 scheme, a P-256 key to an Ed25519 scheme. Give the key's text to the
    /// scheme instead ([`Scheme::secret`](crate::Scheme::secret)).
    #[error(
        "a key for {found} was given to a scheme that signs with {expected}: give the key's text          to the scheme (scheme.secret(text), or the layer builder's with_secret)"
    )]
    SecretAlgorithmMismatch {
        /// The scheme's algorithm.
        expected: crate::scheme::Algorithm,
        /// The key's.
        found: crate::scheme::Algorithm,
    },
    /// A public (or private) key's bytes are not a key of the scheme's algorithm: a Discord
    /// public key is 64 hex digits, a `whpk_` key 32 bytes in base64, SendGrid's the base64 of
    /// a DER public key.
    #[error("the key is not valid: {reason}")]
    InvalidPublicKey {
        /// What is wrong with it (never its bytes).
        reason: &'static str,
    },
    /// The scheme signs the URL the sender called (Square, Twilio), which the layer cannot
    /// know by itself: give it with
    /// [`with_public_url`](crate::layer::WebhookLayerBuilder::with_public_url) (or trust a
    /// proxy's headers with
    /// [`with_trusted_proxy`](crate::layer::WebhookLayerBuilder::with_trusted_proxy)).
    #[error(
        "the {scheme} scheme signs the URL the sender called: give the layer its public URL \
         (with_public_url(\"https://example.com\"))"
    )]
    PublicUrlRequired {
        /// The scheme's name.
        scheme: String,
    },
    /// The public URL is not an absolute `http://` or `https://` URL with a host, or has a
    /// query or fragment.
    #[error(
        "the public URL must be http:// or https://, with a host and at most a path prefix \
         (no query or fragment)"
    )]
    InvalidPublicUrl,
    /// Twilio signs a JSON body by naming its SHA-256 in the URL (`bodySHA256=<hex>`): the URL
    /// given names another body.
    #[error("the URL's bodySHA256 is not the SHA-256 of the body")]
    InvalidSignedUrl,
    /// A verify token (Meta's `hub.verify_token`) must not be empty.
    #[error("a verify token must not be empty")]
    EmptyVerifyToken,
    /// A public key can verify but not sign: signing for an asymmetric scheme needs the private
    /// key ([`Scheme::signing_key`](crate::Scheme::signing_key)).
    #[error("a public key cannot sign: give the private key (scheme.signing_key(text))")]
    CannotSign,
    /// The inbox's admin router (feature `admin`) was built without an authorization decision:
    /// give it one (`bearer_token`, `authorize` or `layer`), or say
    /// `allow_unauthenticated_for_local_development()`.
    #[error(
        "the inbox admin has no authorization decision: give it bearer_token, authorize or \
         layer (or allow_unauthenticated_for_local_development for a local machine)"
    )]
    AdminWithoutAuthorization,
    /// The inbox's admin router (feature `admin`) was given two authorization decisions: one
    /// decides, so give one.
    #[error("the inbox admin was given two authorization decisions: give one")]
    AdminAuthorizationTwice,
    /// The inbox's admin router (feature `admin`) was given an empty bearer token, which would
    /// let anyone in.
    #[error("the inbox admin's token must not be empty")]
    EmptyAdminToken,
}

/// A store or an inbox could not answer: the one error of the
/// [`IdempotencyStore`](crate::IdempotencyStore) and
/// [`InboxBackend`](crate::inbox::InboxBackend) contracts, named
/// [`StoreError`](crate::idempotency::StoreError) and [`InboxError`](crate::inbox::InboxError)
/// where each is used.
///
/// The layer answers a request it could not record or store `503` with `Retry-After`
/// (`store_unavailable`, `inbox_unavailable`, or `inbox_full` for an inbox that is
/// [`Full`](Self::Full)), so the sender retries; an inbox worker tries again later. Its logs say
/// which part failed; the message says how.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The backend (Redis, the database, ...) failed or could not be reached, or holds a value
    /// it cannot read.
    #[error("storage backend error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// The backend did not answer within the configured timeout. The call may still take
    /// effect: an inbox accept that timed out may have stored the delivery (its retry is then a
    /// duplicate, and the delivery is processed once).
    #[error("storage backend timed out")]
    Timeout,
    /// No room for a new entry, which is refused rather than another evicted: a store holds as
    /// many live reservations as it may (evicting one could let an event run twice); an inbox
    /// holds as many waiting deliveries as it may
    /// ([`InboxOptions::with_max_depth`](crate::inbox::InboxOptions::with_max_depth)):
    /// backpressure, the delivery was not stored (never dropped after an acknowledgement).
    /// Never bypassed by a layer configured to fail open.
    #[error("storage is full: new entries are refused, none is evicted")]
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_code() {
        let kinds = [
            RejectionKind::MissingSignature,
            RejectionKind::MalformedSignature,
            RejectionKind::MissingSignedHeader,
            RejectionKind::PayloadTooLarge,
            RejectionKind::UnsupportedContentEncoding,
            RejectionKind::UnsupportedMediaType,
            RejectionKind::BodyReadFailed,
            RejectionKind::BodyTimeout,
            RejectionKind::SignatureMismatch,
            RejectionKind::TimestampTooOld,
            RejectionKind::TimestampInFuture,
            RejectionKind::MalformedTimestamp,
            RejectionKind::InvalidJson,
            RejectionKind::InvalidEnvelope,
            RejectionKind::InvalidEventId,
            RejectionKind::UnsupportedVersion,
            RejectionKind::IdMismatch,
            RejectionKind::EventMismatch,
            RejectionKind::InFlight,
            RejectionKind::StoreUnavailable,
            RejectionKind::SecretsUnavailable,
            RejectionKind::InboxUnavailable,
            RejectionKind::InboxFull,
            RejectionKind::VerifyTokenMismatch,
        ];
        let codes: std::collections::HashSet<_> = kinds.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), kinds.len());
    }

    #[test]
    fn response_carries_json_status_retry_after_and_the_rejection() {
        let rejection = Rejection::new(RejectionKind::InFlight, "busy")
            .with_retry_after(Duration::from_millis(2500));
        let response = rejection.to_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.extensions().get::<Rejection>(), Some(&rejection));
        let body: serde_json::Value = serde_json::from_slice(&rejection.body()).unwrap();
        assert_eq!(body["error"], "in_flight");
        assert_eq!(body["message"], "busy");
    }

    #[test]
    fn a_retry_after_of_any_length_gives_a_sane_header() {
        for after in [Duration::MAX, Duration::from_secs(u64::MAX - 1)] {
            let response = Rejection::new(RejectionKind::InFlight, "busy")
                .with_retry_after(after)
                .to_response();
            assert_eq!(response.headers()[header::RETRY_AFTER], "2147483647");
        }
        let response = Rejection::new(RejectionKind::InFlight, "busy")
            .with_retry_after(Duration::ZERO)
            .to_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
