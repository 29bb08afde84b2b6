//! The [`Scheme`] type: what it holds, and what the rest of the crate asks of it.

use std::borrow::Cow;
use std::time::Duration;

use http::header::HeaderName;

use super::algorithm::Algorithm;
use super::body::BodyForm;
use super::format::SignatureFormat;
use super::handshake::Handshake;
use super::source::{Part, SecretFormat, Source, TimestampFormat, Tolerance};
use crate::error::ConfigError;
use crate::secret::Secret;

// Sotion's headers, named in `Scheme::sotion`'s docs.
/// Sotion's signature header: `sha256=<64 hex digits>`, HMAC-SHA256 of the raw body.
pub(crate) const SOTION_SIGNATURE: HeaderName = HeaderName::from_static("x-webhook-signature");
/// Sotion's event-type header; must equal the envelope's `type`.
pub(crate) const SOTION_EVENT: HeaderName = HeaderName::from_static("x-webhook-event");
/// Sotion's event-id header; must equal the envelope's `id`.
pub(crate) const SOTION_ID: HeaderName = HeaderName::from_static("x-webhook-id");
/// Sotion's delivery-attempt header: a new value on every retry.
pub(crate) const SOTION_DELIVERY: HeaderName = HeaderName::from_static("x-webhook-delivery");
/// The prefix of a `sha256=<hex>` signature (Sotion, GitHub, sota.io).
pub(crate) const SHA256_PREFIX: &str = "sha256=";
/// The tolerance of the timestamped presets: 5 minutes each way (said in each preset's docs).
pub(crate) const DEFAULT_TOLERANCE: Tolerance = Tolerance::symmetric(Duration::from_secs(300));

/// Sotion's envelope rules: the body is `{id, type, timestamp, version, siteId, data}` and the
/// id and event headers must repeat the signed `id` and `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SotionEnvelope {
    pub(crate) id_header: HeaderName,
    pub(crate) event_header: HeaderName,
}

/// How one sender signs its deliveries: the signature header and its format, the signed bytes,
/// where the event id, type, scope and timestamp come from, and how secrets are written.
///
/// Name the sender with a preset, or describe any other with [`Scheme::builder`]:
///
/// | preset | signature header | signed bytes | secret | event id | tolerance |
/// | --- | --- | --- | --- | --- | --- |
/// | [`sotion`](Self::sotion) (default) | `X-Webhook-Signature: sha256=<hex>` | body | `whsec_...` as is | body `id` (scope `siteId`) | none (opt-in) |
/// | [`sota`](Self::sota) | `X-Sota-Signature: sha256=<hex>` | body | as is | SHA-256 of the body (scope `project_id`) | none |
/// | [`github`](Self::github) | `X-Hub-Signature-256: sha256=<hex>` | body | as is | `X-GitHub-Delivery` (unsigned: shown, but deliveries are deduplicated by the body and event name) | none |
/// | [`standard_webhooks`](Self::standard_webhooks) | `webhook-signature: v1,<b64> ...` | `id.timestamp.body` | `whsec_<base64>`, decoded | `webhook-id` (signed) | ±5 min |
/// | [`stripe`](Self::stripe) | `Stripe-Signature: t=<unix>,v1=<hex>,...` | `t.body` | `whsec_...` as is | body `id` | ±5 min |
/// | [`slack`](Self::slack) | `X-Slack-Signature: v0=<hex>` | `v0:ts:body` | as is | SHA-256 of the body | ±5 min |
/// | [`shopify`](Self::shopify) | `X-Shopify-Hmac-Sha256: <base64>` | body | as is | `X-Shopify-Webhook-Id` (unsigned: shown; deduplicated by the body and topic) | none |
/// | [`woocommerce`](Self::woocommerce) | `X-WC-Webhook-Signature: <base64>` | body | as is | `X-WC-Webhook-Delivery-ID` (unsigned, as Shopify) | none |
/// | [`discord`](Self::discord) (`ed25519`) | `X-Signature-Ed25519: <hex>` | `ts` + body | public key, hex | SHA-256 of the body | ±5 min |
/// | [`standard_webhooks_v1a`](Self::standard_webhooks_v1a) (`ed25519`) | `webhook-signature: v1a,<b64> ...` | `id.timestamp.body` | public key, `whpk_<base64>` | `webhook-id` (signed) | ±5 min |
/// | [`twilio`](Self::twilio) (`sha1`) | `X-Twilio-Signature: <base64>` | URL + sorted form parameters | as is | SHA-256 of the body | none |
/// | [`sendgrid`](Self::sendgrid) (`p256`) | `X-Twilio-Email-Event-Webhook-Signature: <base64>` | `ts` + body | public key, base64 DER | SHA-256 of the body | ±5 min |
/// | [`square`](Self::square) | `X-Square-HmacSha256-Signature: <base64>` | URL + body | as is | body `event_id` | none |
/// | [`zoom`](Self::zoom) | `x-zm-signature: v0=<hex>` | `v0:ts:body` | as is | SHA-256 of the body | ±5 min |
/// | [`meta`](Self::meta) | `X-Hub-Signature-256: sha256=<hex>` | body | as is | SHA-256 of the body | none |
/// | [`paddle`](Self::paddle) | `Paddle-Signature: ts=<unix>;h1=<hex>` | `ts:body` | as is | body `event_id` | ±5 s |
/// | [`linear`](Self::linear) | `Linear-Signature: <hex>` | body | as is | `Linear-Delivery` (unsigned: shown; deduplicated by the body) | ±60 s (body `webhookTimestamp`) |
/// | [`twitch`](Self::twitch) | `Twitch-Eventsub-Message-Signature: sha256=<hex>` | id + ts + body | as is | the message id (signed) | ±10 min |
/// | [`microsoft_graph`](Self::microsoft_graph) | none: `clientState` in the body | — | as is | SHA-256 of the body | none |
///
/// Slack, Discord, Zoom, Twitch, Meta and Microsoft Graph make endpoint handshakes, which the
/// layer answers itself (see each preset).
///
/// Idempotency keys hold only signed values. Where the event id (or scope) comes from a header
/// the signature does not cover (GitHub), anyone who captured one delivery could replay it
/// under ids of their choosing; such a delivery is therefore deduplicated by the SHA-256 of its
/// signed body, and its header id is kept for display and logs only (see
/// [`SchemeBuilder::with_unsigned_id_and_scope`](super::SchemeBuilder::with_unsigned_id_and_scope)).
#[derive(Debug, Clone)]
pub struct Scheme {
    pub(crate) name: Cow<'static, str>,
    pub(crate) signature_header: HeaderName,
    pub(crate) format: SignatureFormat,
    pub(crate) signed: Vec<Part>,
    pub(crate) id: Source,
    pub(crate) event: Option<Source>,
    /// Where the event's action is read (GitHub's body `action`), when the sender names one.
    pub(crate) action: Option<Source>,
    pub(crate) scope: Option<Source>,
    pub(crate) timestamp: Option<(Source, TimestampFormat)>,
    pub(crate) tolerance: Option<Tolerance>,
    pub(crate) delivery: Option<HeaderName>,
    pub(crate) envelope: Option<SotionEnvelope>,
    pub(crate) secret_format: SecretFormat,
    /// The body forms the sender uses (`JSON_ONLY` for most), told apart by `Content-Type`.
    pub(crate) bodies: Cow<'static, [BodyForm]>,
    /// The function the signature is made with (HMAC-SHA256 for most senders).
    pub(crate) algorithm: Algorithm,
    /// Other names a header may be sent under, `(name, alias)`: the alias is read when the
    /// name is absent (Svix's `svix-id` for Standard Webhooks' `webhook-id`).
    pub(crate) aliases: Vec<(HeaderName, HeaderName)>,
    /// The endpoint handshake the sender makes, which the layer answers itself.
    pub(crate) handshake: Option<Handshake>,
    /// How the signed bytes are put together.
    pub(crate) rule: Rule,
    /// Whether a body's integer event type is read as its decimal text (Discord's interaction
    /// `type`); otherwise a value that is not a string is dropped.
    pub(crate) integer_event: bool,
}

/// How a scheme's signed bytes are put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// As its [`Part`]s say.
    Parts,
    /// Twilio's: the URL, then the form body's parameters sorted by name (each name followed
    /// by its value), or, when the URL carries `bodySHA256`, the URL alone and a body of that
    /// SHA-256; HMAC-SHA1, or HMAC-SHA256 when `X-Twilio-Webhooks-Signature-Settings` names it.
    Twilio,
    /// No signature: the body's notifications (`value`) each repeat a shared token as their
    /// `clientState` (Microsoft Graph), compared in constant time with the secret.
    ClientState,
}

impl Scheme {
    /// Enforces how far the signed timestamp may lie from now (the timestamped presets allow
    /// 5 minutes each way; Sotion checks none by default).
    ///
    /// # Errors
    /// [`ConfigError::ToleranceWithoutTimestamp`] for a scheme that reads no timestamp
    /// (GitHub): there would be nothing to check.
    pub fn with_tolerance(mut self, tolerance: Tolerance) -> Result<Self, ConfigError> {
        if self.timestamp.is_none() {
            return Err(ConfigError::ToleranceWithoutTimestamp);
        }
        self.tolerance = Some(tolerance);
        Ok(self)
    }

    /// Stops enforcing a tolerance: a signed timestamp of any age is accepted.
    #[must_use]
    pub fn without_tolerance(mut self) -> Self {
        self.tolerance = None;
        self
    }

    /// Renames the scheme. The name scopes idempotency keys (as do the endpoint and the
    /// tenant: see [`WebhookLayerBuilder::with_endpoint`](crate::layer::WebhookLayerBuilder::with_endpoint)).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The scheme's name, also the scope of its idempotency keys.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the event id comes from signed bytes.
    pub(crate) fn signs_id(&self) -> bool {
        signs_id(&self.id, &self.signed)
    }

    /// Whether the scope (if the scheme has one) comes from signed bytes.
    pub(crate) fn signs_scope(&self) -> bool {
        signs_scope(self.scope.as_ref())
    }

    /// Whether both the event id and its scope come from signed bytes, so that idempotency
    /// keys can be built from them.
    pub(crate) fn signs_id_and_scope(&self) -> bool {
        self.signs_id() && self.signs_scope()
    }

    /// The name, cheap to clone (a preset's is static).
    pub(crate) fn shared_name(&self) -> Cow<'static, str> {
        self.name.clone()
    }

    /// The header that carries the signature (Microsoft Graph sends none: its token is in the
    /// body).
    #[must_use]
    pub fn signature_header(&self) -> &HeaderName {
        &self.signature_header
    }

    /// The timestamp tolerance, when one is enforced.
    #[must_use]
    pub fn tolerance(&self) -> Option<Tolerance> {
        self.tolerance
    }

    /// Turns a secret's text into a key the way this sender means it (`whsec_<base64>`
    /// decoded for Standard Webhooks, the text as is for the others): the [`Secret`] remembers
    /// this scheme's [`SecretFormat`], and a layer with this scheme accepts it.
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`], [`ConfigError::SecretWhitespace`] when the text begins or
    /// ends with whitespace, or [`ConfigError::InvalidSecretEncoding`] when a base64 secret does
    /// not decode.
    pub fn secret(&self, text: &str) -> Result<Secret, ConfigError> {
        Secret::decode(text, &self.secret_format, self.algorithm)
    }

    /// The key to sign with, for tests and local development (the `send` example): for an
    /// HMAC scheme the secret itself ([`secret`](Self::secret)); for an asymmetric one the
    /// **private** key, which no receiver needs: an Ed25519 key's 32-byte seed written as the
    /// scheme writes its public keys (hex for Discord, `whsk_<base64>` for Standard Webhooks
    /// `v1a`), a P-256 key in PKCS#8 DER, base64 (SendGrid). The secret verifies too.
    ///
    /// # Errors
    /// As [`secret`](Self::secret), and [`ConfigError::InvalidPublicKey`] for bytes that are
    /// no such private key.
    pub fn signing_key(&self, text: &str) -> Result<Secret, ConfigError> {
        Secret::decode_signing(text, &self.secret_format, self.algorithm)
    }

    /// The function the sender signs with.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Whether the sender signs the URL it called (Square, Twilio): a layer for it needs a
    /// public URL ([`with_public_url`](crate::layer::WebhookLayerBuilder::with_public_url)).
    #[must_use]
    pub fn signs_url(&self) -> bool {
        self.signed.contains(&Part::Url)
    }

    /// How this scheme's secrets are written.
    #[must_use]
    pub fn secret_format(&self) -> &SecretFormat {
        &self.secret_format
    }
}

/// Whether an id from `id` is signed: read from the body (a field or its digest), or from a
/// header the signature covers ([`Part::Id`]). A signature tag is signed only as the signed
/// timestamp, never as an id.
pub(super) fn signs_id(id: &Source, signed: &[Part]) -> bool {
    match id {
        Source::BodyField(_) | Source::BodyDigest => true,
        Source::Header(_) => signed.contains(&Part::Id),
        Source::SignatureTag(_) => false,
    }
}

/// Whether a scope from `scope` is signed (or there is none): only the body signs a scope.
pub(super) fn signs_scope(scope: Option<&Source>) -> bool {
    matches!(
        scope,
        None | Some(Source::BodyField(_) | Source::BodyDigest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tolerance_needs_a_timestamp_to_check() {
        assert!(matches!(
            Scheme::github().with_tolerance(DEFAULT_TOLERANCE),
            Err(ConfigError::ToleranceWithoutTimestamp)
        ));
        let sotion = Scheme::sotion().with_tolerance(DEFAULT_TOLERANCE).unwrap();
        assert_eq!(sotion.tolerance(), Some(DEFAULT_TOLERANCE));
        assert_eq!(Scheme::stripe().without_tolerance().tolerance(), None);
    }
}
