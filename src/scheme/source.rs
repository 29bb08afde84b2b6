//! Where a scheme finds each fact, what bytes it signs, and how it writes times and secrets.

use std::borrow::Cow;
use std::time::Duration;

use http::HeaderName;

/// Where a delivery fact (event id, event type, scope, timestamp) is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// A request header. **Unsigned** unless the scheme's signed content includes it
    /// ([`Part::Id`], [`Part::Timestamp`]).
    Header(HeaderName),
    /// A top-level field of the signed JSON body (a string; for a timestamp, a string or an
    /// integer).
    BodyField(Cow<'static, str>),
    /// A tagged entry of a list-shaped signature header, such as Stripe's `t=`.
    SignatureTag(Cow<'static, str>),
    /// The hex SHA-256 of the signed body: an event id for senders that send none (a retry
    /// resends the same bytes, so it keeps the same id).
    BodyDigest,
}

impl Source {
    /// A header source.
    ///
    /// # Panics
    /// Never at run time for a valid static name; use [`Source::Header`] with a parsed
    /// [`HeaderName`] for names that come from configuration.
    #[must_use]
    pub const fn header(name: &'static str) -> Self {
        Self::Header(HeaderName::from_static(name))
    }

    /// A top-level JSON field of the signed body.
    #[must_use]
    pub fn body_field(name: impl Into<Cow<'static, str>>) -> Self {
        Self::BodyField(name.into())
    }

    /// A tagged entry of the signature header.
    #[must_use]
    pub fn signature_tag(tag: impl Into<Cow<'static, str>>) -> Self {
        Self::SignatureTag(tag.into())
    }
}

/// One piece of the bytes a sender signs. The body is always the last piece.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// Fixed bytes, such as `.` or Slack's `v0:`.
    Literal(Cow<'static, [u8]>),
    /// The event id header's value, as sent (its [`Source`] must be a header).
    Id,
    /// The timestamp as sent (its [`Source`] must be a header or a signature tag).
    Timestamp,
    /// The URL the sender called, as it wrote it (Square, Twilio): the layer's public URL
    /// ([`WebhookLayerBuilder::with_public_url`](crate::layer::WebhookLayerBuilder::with_public_url))
    /// followed by the request's path and query.
    Url,
    /// The raw body.
    Body,
}

impl Part {
    /// Fixed text.
    #[must_use]
    pub fn literal(text: &'static str) -> Self {
        Self::Literal(Cow::Borrowed(text.as_bytes()))
    }
}

/// How a timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimestampFormat {
    /// Whole seconds since the Unix epoch (`1649367553`).
    UnixSeconds,
    /// An RFC 3339 date-time (`2026-03-28T12:00:00.000Z`).
    Rfc3339,
    /// Whole milliseconds since the Unix epoch (`1649367553123`, Linear's `webhookTimestamp`).
    UnixMillis,
}

/// How far a signed timestamp may lie from now, in each direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tolerance {
    /// The greatest accepted age.
    pub past: Duration,
    /// The greatest accepted lead (sender clock ahead of ours).
    pub future: Duration,
}

impl Tolerance {
    /// The same tolerance both ways.
    #[must_use]
    pub const fn symmetric(both: Duration) -> Self {
        Self {
            past: both,
            future: both,
        }
    }
}

/// How a secret's text becomes the key (an HMAC key, or a sender's public key for the asymmetric
/// [`Algorithm`](super::Algorithm)s): a scheme's presets know their sender's format, and
/// [`SchemeBuilder::with_secret_format`](crate::scheme::SchemeBuilder::with_secret_format)
/// declares it for another sender. A [`Secret`](crate::Secret) remembers the format it was
/// decoded for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretFormat {
    /// The text's bytes, as they are (Sotion, GitHub, Stripe, Slack, sota.io).
    Raw,
    /// Base64 after an optional prefix (Standard Webhooks: `whsec_<base64>`, and `whpk_<base64>`
    /// for its Ed25519 public keys; SendGrid's base64 DER public key).
    Base64 {
        /// The prefix, stripped when present.
        prefix: Cow<'static, str>,
    },
    /// Hexadecimal, either case (Discord's public key).
    Hex,
}

impl SecretFormat {
    /// Base64 after `prefix` (stripped when present), as Standard Webhooks' `whsec_`.
    #[must_use]
    pub fn base64(prefix: impl Into<Cow<'static, str>>) -> Self {
        Self::Base64 {
            prefix: prefix.into(),
        }
    }

    /// Whether both formats make the same key of the same text, the prefix aside.
    pub(crate) fn decodes_like(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (Self::Raw, Self::Raw)
                | (Self::Base64 { .. }, Self::Base64 { .. })
                | (Self::Hex, Self::Hex)
        )
    }
}

impl std::fmt::Display for SecretFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Raw => f.write_str("raw text"),
            Self::Base64 { prefix } if prefix.is_empty() => f.write_str("base64"),
            Self::Base64 { prefix } => write!(f, "base64 after `{prefix}`"),
            Self::Hex => f.write_str("hexadecimal"),
        }
    }
}
