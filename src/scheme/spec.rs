use std::borrow::Cow;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::format::{Encoding, SignatureFormat, DIGEST_LEN};
use super::source::{Part, SecretFormat, Source, TimestampFormat, Tolerance};
use crate::error::ConfigError;
use crate::secret::Secret;

/// Sotion's signature header: `sha256=<64 hex digits>`, HMAC-SHA256 of the raw body.
pub const SOTION_SIGNATURE: HeaderName = HeaderName::from_static("x-webhook-signature");
/// Sotion's event-type header; must equal the envelope's `type`.
pub const SOTION_EVENT: HeaderName = HeaderName::from_static("x-webhook-event");
/// Sotion's event-id header; must equal the envelope's `id`.
pub const SOTION_ID: HeaderName = HeaderName::from_static("x-webhook-id");
/// Sotion's delivery-attempt header: a new value on every retry.
pub const SOTION_DELIVERY: HeaderName = HeaderName::from_static("x-webhook-delivery");
/// The prefix of a `sha256=<hex>` signature (Sotion, GitHub, sota.io).
pub const SHA256_PREFIX: &str = "sha256=";
/// The tolerance of the timestamped presets: 5 minutes each way.
pub const DEFAULT_TOLERANCE: Tolerance = Tolerance::symmetric(Duration::from_secs(300));

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
///
/// Idempotency keys hold only signed values. Where the event id (or scope) comes from a header
/// the signature does not cover (GitHub), anyone who captured one delivery could replay it
/// under ids of their choosing; such a delivery is therefore deduplicated by the SHA-256 of its
/// signed body, and its header id is kept for display and logs only (see
/// [`SchemeBuilder::allow_unsigned_id_and_scope`]).
#[derive(Debug, Clone)]
pub struct Scheme {
    pub(crate) name: Cow<'static, str>,
    pub(crate) signature_header: HeaderName,
    pub(crate) format: SignatureFormat,
    pub(crate) signed: Vec<Part>,
    pub(crate) id: Source,
    pub(crate) event: Option<Source>,
    pub(crate) scope: Option<Source>,
    pub(crate) timestamp: Option<(Source, TimestampFormat)>,
    pub(crate) tolerance: Option<Tolerance>,
    pub(crate) delivery: Option<HeaderName>,
    pub(crate) envelope: Option<SotionEnvelope>,
    pub(crate) secret_format: SecretFormat,
}

impl Default for Scheme {
    fn default() -> Self {
        Self::sotion()
    }
}

impl Scheme {
    /// Sotion: `X-Webhook-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body keyed with
    /// the whole secret string (`whsec_...`); the body is the JSON envelope, whose `id` (scoped
    /// by `siteId`) is the idempotency key; `X-Webhook-Id` and `X-Webhook-Event` must repeat its
    /// `id` and `type`; `X-Webhook-Delivery` names the attempt.
    ///
    /// Sotion signs no timestamp header; the envelope's `timestamp` is signed, so a maximum age
    /// can be enforced with [`with_tolerance`](Self::with_tolerance) (off by default: Sotion
    /// does not document its retry schedule, and an old retry would be refused).
    #[must_use]
    pub fn sotion() -> Self {
        Self {
            name: Cow::Borrowed("sotion"),
            signature_header: SOTION_SIGNATURE,
            format: SignatureFormat::single(SHA256_PREFIX, Encoding::Hex),
            signed: vec![Part::Body],
            id: Source::body_field("id"),
            event: Some(Source::body_field("type")),
            scope: Some(Source::body_field("siteId")),
            timestamp: Some((Source::body_field("timestamp"), TimestampFormat::Rfc3339)),
            tolerance: None,
            delivery: Some(SOTION_DELIVERY),
            envelope: Some(SotionEnvelope {
                id_header: SOTION_ID,
                event_header: SOTION_EVENT,
            }),
            secret_format: SecretFormat::Raw,
        }
    }

    /// sota.io: `X-Sota-Signature: sha256=<hex>` over the body; the body is
    /// `{event, project_id, deployment_id, timestamp, data}`. It carries no event id, so the id
    /// is the SHA-256 of the signed body (a retry resends the same bytes), scoped by
    /// `project_id`.
    #[must_use]
    pub fn sota() -> Self {
        Self {
            name: Cow::Borrowed("sota"),
            signature_header: HeaderName::from_static("x-sota-signature"),
            format: SignatureFormat::single(SHA256_PREFIX, Encoding::Hex),
            signed: vec![Part::Body],
            id: Source::BodyDigest,
            event: Some(Source::body_field("event")),
            scope: Some(Source::body_field("project_id")),
            timestamp: Some((Source::body_field("timestamp"), TimestampFormat::Rfc3339)),
            tolerance: None,
            delivery: None,
            envelope: None,
            secret_format: SecretFormat::Raw,
        }
    }

    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body; the event in
    /// `X-GitHub-Event`, the id in `X-GitHub-Delivery` (kept by redeliveries). GitHub signs
    /// neither header nor a timestamp: the event and id are as trustworthy as the transport.
    ///
    /// Since the id is unsigned, deliveries are deduplicated by the SHA-256 of the signed body
    /// and the event name instead (as with [`SchemeBuilder::allow_unsigned_id_and_scope`]): a
    /// redelivery (same body, same id) is a duplicate; a captured body replayed under any other
    /// `X-GitHub-Delivery` is a duplicate of itself, and never blocks or swallows the event
    /// that id belongs to. Replayed under another `X-GitHub-Event`, it reaches that event's
    /// handler once, and never completes the genuine event's key.
    /// [`WebhookMeta::id`](crate::WebhookMeta::id) still reports the header's id. Two
    /// genuinely different events with byte-identical bodies would count as one.
    #[must_use]
    pub fn github() -> Self {
        Self {
            name: Cow::Borrowed("github"),
            signature_header: HeaderName::from_static("x-hub-signature-256"),
            format: SignatureFormat::single(SHA256_PREFIX, Encoding::Hex),
            signed: vec![Part::Body],
            id: Source::header("x-github-delivery"),
            event: Some(Source::header("x-github-event")),
            scope: None,
            timestamp: None,
            tolerance: None,
            delivery: None,
            envelope: None,
            secret_format: SecretFormat::Raw,
        }
    }

    /// Standard Webhooks (Svix and others): `webhook-signature` holds space-separated
    /// `v1,<base64>` entries over `<webhook-id>.<webhook-timestamp>.<body>`; secrets are
    /// `whsec_<base64>`, decoded; the timestamp must be within 5 minutes either way; the event
    /// type is the body's `type`, when there is one.
    #[must_use]
    pub fn standard_webhooks() -> Self {
        Self {
            name: Cow::Borrowed("standard-webhooks"),
            signature_header: HeaderName::from_static("webhook-signature"),
            format: SignatureFormat::list(' ', "v1", ',', Encoding::Base64),
            signed: vec![
                Part::Id,
                Part::literal("."),
                Part::Timestamp,
                Part::literal("."),
                Part::Body,
            ],
            id: Source::header("webhook-id"),
            event: Some(Source::body_field("type")),
            scope: None,
            timestamp: Some((
                Source::header("webhook-timestamp"),
                TimestampFormat::UnixSeconds,
            )),
            tolerance: Some(DEFAULT_TOLERANCE),
            delivery: None,
            envelope: None,
            secret_format: SecretFormat::Base64 {
                prefix: Cow::Borrowed("whsec_"),
            },
        }
    }

    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` over `<t>.<body>`, keyed
    /// with the whole `whsec_...` string; any `v1` may match; the timestamp must be within
    /// 300 s (Stripe's own libraries check only the past; a clock more than 5 minutes ahead is
    /// refused here too); the event id and type are the body's `id` and `type`.
    #[must_use]
    pub fn stripe() -> Self {
        Self {
            name: Cow::Borrowed("stripe"),
            signature_header: HeaderName::from_static("stripe-signature"),
            format: SignatureFormat::list(',', "v1", '=', Encoding::Hex),
            signed: vec![Part::Timestamp, Part::literal("."), Part::Body],
            id: Source::body_field("id"),
            event: Some(Source::body_field("type")),
            scope: None,
            timestamp: Some((Source::signature_tag("t"), TimestampFormat::UnixSeconds)),
            tolerance: Some(DEFAULT_TOLERANCE),
            delivery: None,
            envelope: None,
            secret_format: SecretFormat::Raw,
        }
    }

    /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:<X-Slack-Request-Timestamp>:<body>`,
    /// within 5 minutes. Slack bodies carry no common id, so the id is the SHA-256 of the body;
    /// the event type is a JSON body's `type` (`event_callback`, ...), and none for
    /// form-encoded bodies (slash commands, interactions).
    #[must_use]
    pub fn slack() -> Self {
        Self {
            name: Cow::Borrowed("slack"),
            signature_header: HeaderName::from_static("x-slack-signature"),
            format: SignatureFormat::single("v0=", Encoding::Hex),
            signed: vec![
                Part::literal("v0:"),
                Part::Timestamp,
                Part::literal(":"),
                Part::Body,
            ],
            id: Source::BodyDigest,
            event: Some(Source::body_field("type")),
            scope: None,
            timestamp: Some((
                Source::header("x-slack-request-timestamp"),
                TimestampFormat::UnixSeconds,
            )),
            tolerance: Some(DEFAULT_TOLERANCE),
            delivery: None,
            envelope: None,
            secret_format: SecretFormat::Raw,
        }
    }

    /// The preset called `name`: `sotion`, `sota`, `github`, `standard` (or
    /// `standard-webhooks`), `stripe`, `slack`.
    #[must_use]
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "sotion" => Self::sotion(),
            "sota" => Self::sota(),
            "github" => Self::github(),
            "standard" | "standard-webhooks" => Self::standard_webhooks(),
            "stripe" => Self::stripe(),
            "slack" => Self::slack(),
            _ => return None,
        })
    }

    /// Describes another sender (see [`SchemeBuilder`]).
    #[must_use]
    pub fn builder(
        name: impl Into<Cow<'static, str>>,
        signature_header: &str,
        format: SignatureFormat,
    ) -> SchemeBuilder {
        SchemeBuilder {
            name: name.into(),
            signature_header: signature_header.to_owned(),
            format,
            signed: vec![Part::Body],
            id: Source::BodyDigest,
            event: None,
            scope: None,
            timestamp: None,
            tolerance: None,
            delivery: None,
            unsigned_id_and_scope: false,
            secret_format: SecretFormat::Raw,
        }
    }

    /// Enforces (or, with `None`, stops enforcing) how far the signed timestamp may lie from
    /// now. A scheme without a timestamp ignores it.
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Option<Tolerance>) -> Self {
        self.tolerance = tolerance;
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

    /// The header that carries the signature.
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
    /// [`ConfigError::EmptySecret`], or [`ConfigError::InvalidSecretEncoding`] when a base64
    /// secret does not decode.
    pub fn secret(&self, text: &str) -> Result<Secret, ConfigError> {
        Secret::decode(text, &self.secret_format)
    }

    /// How this scheme's secrets are written.
    #[must_use]
    pub fn secret_format(&self) -> &SecretFormat {
        &self.secret_format
    }

    /// Signs an outgoing delivery as this sender would, for tests and local development:
    /// the headers to send with `message.body` (signature, and the timestamp, id and event
    /// headers the scheme reads). `Content-Type` is the caller's.
    ///
    /// # Errors
    /// [`ConfigError::InvalidHeaderValue`] when the id or event cannot be a header value.
    pub fn sign(&self, secret: &Secret, message: &Outgoing<'_>) -> Result<HeaderMap, ConfigError> {
        let mut headers = HeaderMap::new();
        let timestamp = match self.timestamp {
            Some((_, TimestampFormat::UnixSeconds)) => message.timestamp.to_string(),
            _ => String::new(),
        };
        let mut mac_input = Vec::with_capacity(message.body.len() + 64);
        for part in &self.signed {
            match part {
                Part::Literal(bytes) => mac_input.extend_from_slice(bytes),
                Part::Id => mac_input.extend_from_slice(message.id.as_bytes()),
                Part::Timestamp => mac_input.extend_from_slice(timestamp.as_bytes()),
                Part::Body => mac_input.extend_from_slice(message.body),
            }
        }
        let digest: [u8; DIGEST_LEN] = crate::verify::digest(secret, &mac_input);
        let extra: Vec<(&str, &str)> = match &self.timestamp {
            Some((Source::SignatureTag(tag), _)) => vec![(tag.as_ref(), timestamp.as_str())],
            _ => Vec::new(),
        };
        let signature = self.format.format(&digest, &extra);
        insert(&mut headers, &self.signature_header, &signature)?;
        if let Some((Source::Header(name), _)) = &self.timestamp {
            insert(&mut headers, name, &timestamp)?;
        }
        if let Source::Header(name) = &self.id {
            insert(&mut headers, name, message.id)?;
        }
        if let Some(Source::Header(name)) = &self.event {
            insert(&mut headers, name, message.event)?;
        }
        if let Some(envelope) = &self.envelope {
            insert(&mut headers, &envelope.id_header, message.id)?;
            insert(&mut headers, &envelope.event_header, message.event)?;
        }
        Ok(headers)
    }
}

fn insert(headers: &mut HeaderMap, name: &HeaderName, value: &str) -> Result<(), ConfigError> {
    let value = HeaderValue::from_str(value).map_err(|source| ConfigError::InvalidHeaderValue {
        name: name.clone(),
        source,
    })?;
    headers.insert(name.clone(), value);
    Ok(())
}

/// An outgoing delivery to [`Scheme::sign`].
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The event id (sent in the id header when the scheme reads one; for body-sourced ids,
    /// put the same id in the body).
    pub id: &'a str,
    /// The event type (sent in the event header when the scheme reads one).
    pub event: &'a str,
    /// The Unix time to sign, for timestamped schemes.
    pub timestamp: i64,
    /// The exact body bytes.
    pub body: &'a [u8],
}

/// Describes a sender that no preset covers, without writing crypto code.
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::scheme::{Encoding, Part, Scheme, SignatureFormat, Source, TimestampFormat, Tolerance};
///
/// // A WebinOne-style sender: timestamp, event name and signature in headers of its own, the
/// // signature over `<timestamp>.<body>` in hex.
/// let scheme = Scheme::builder("webinone", "x-webinone-signature", SignatureFormat::single("", Encoding::Hex))
///     .signed(vec![Part::Timestamp, Part::literal("."), Part::Body])
///     .timestamp(Source::header("x-webinone-timestamp"), TimestampFormat::UnixSeconds)
///     .tolerance(Tolerance::symmetric(Duration::from_secs(300)))
///     .event(Source::header("x-webinone-event"))
///     .id(Source::BodyDigest)
///     .build()?;
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SchemeBuilder {
    name: Cow<'static, str>,
    signature_header: String,
    format: SignatureFormat,
    signed: Vec<Part>,
    id: Source,
    event: Option<Source>,
    scope: Option<Source>,
    timestamp: Option<(Source, TimestampFormat)>,
    tolerance: Option<Tolerance>,
    delivery: Option<String>,
    unsigned_id_and_scope: bool,
    secret_format: SecretFormat,
}

/// Whether an id from `id` is signed: read from the body (a field or its digest), or from a
/// header the signature covers ([`Part::Id`]). A signature tag is signed only as the signed
/// timestamp, never as an id.
fn signs_id(id: &Source, signed: &[Part]) -> bool {
    match id {
        Source::BodyField(_) | Source::BodyDigest => true,
        Source::Header(_) => signed.contains(&Part::Id),
        Source::SignatureTag(_) => false,
    }
}

/// Whether a scope from `scope` is signed (or there is none): only the body signs a scope.
fn signs_scope(scope: Option<&Source>) -> bool {
    matches!(
        scope,
        None | Some(Source::BodyField(_) | Source::BodyDigest)
    )
}

impl SchemeBuilder {
    /// The signed bytes, in order; the last part must be [`Part::Body`] (default: the body
    /// alone).
    #[must_use]
    pub fn signed(mut self, parts: Vec<Part>) -> Self {
        self.signed = parts;
        self
    }

    /// Where the event id comes from (default: [`Source::BodyDigest`]).
    #[must_use]
    pub fn id(mut self, source: Source) -> Self {
        self.id = source;
        self
    }

    /// Where the event type comes from (default: none).
    #[must_use]
    pub fn event(mut self, source: Source) -> Self {
        self.event = Some(source);
        self
    }

    /// Where the scope of the event id comes from (an account or site id), so that two
    /// accounts' ids never collide (default: none).
    #[must_use]
    pub fn scope(mut self, source: Source) -> Self {
        self.scope = Some(source);
        self
    }

    /// Where the signed timestamp comes from, and how it is written (default: none).
    #[must_use]
    pub fn timestamp(mut self, source: Source, format: TimestampFormat) -> Self {
        self.timestamp = Some((source, format));
        self
    }

    /// How far the timestamp may lie from now (default: not checked).
    #[must_use]
    pub fn tolerance(mut self, tolerance: Tolerance) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// The header naming a delivery attempt, reported in [`WebhookMeta::delivery`](crate::WebhookMeta::delivery).
    #[must_use]
    pub fn delivery_header(mut self, name: &str) -> Self {
        self.delivery = Some(name.to_owned());
        self
    }

    /// How the sender writes its secrets (default [`SecretFormat::Raw`]: the text's bytes are
    /// the key). A sender whose secrets are base64, possibly after a prefix, declares
    /// [`SecretFormat::base64`]; [`Scheme::secret`] then decodes them.
    #[must_use]
    pub fn with_secret_format(mut self, format: SecretFormat) -> Self {
        self.secret_format = format;
        self
    }

    /// **Costly.** Accepts an event id or scope from a header the signature does not cover
    /// (a [`Source::Header`] id without [`Part::Id`] among the signed parts, or any header
    /// scope), as GitHub's `X-GitHub-Delivery`. Without this, [`build`](Self::build) refuses
    /// such a description with [`ConfigError::UnsignedIdOrScope`].
    ///
    /// # What it costs
    /// Whoever sends the request chooses an unsigned value, so nothing unsigned is trusted:
    /// the id and scope are then for display and logs only
    /// ([`WebhookMeta::id`](crate::WebhookMeta::id), [`site_id`](crate::WebhookMeta::site_id)),
    /// and deliveries are deduplicated by the SHA-256 of the **signed** bytes instead (the body,
    /// with the id or scope where those are signed, and the event name when it comes from a
    /// header, since the handler acts on it). A captured delivery replayed under other id or
    /// scope headers is then a duplicate of itself, and can neither run the handler again nor
    /// block or swallow another event; replayed under another event name, it counts as that
    /// event, once. A signed timestamp is not hashed, so a retry re-signed
    /// with a fresh timestamp is still a duplicate. But two genuinely different events whose
    /// hashed bytes are identical count as one: the second is answered as a duplicate and
    /// never handled.
    #[must_use]
    pub fn allow_unsigned_id_and_scope(mut self) -> Self {
        self.unsigned_id_and_scope = true;
        self
    }

    /// Checks the description and builds the scheme.
    ///
    /// # Errors
    /// - [`ConfigError::InvalidHeaderName`] for a bad header name;
    /// - [`ConfigError::BodyNotSignedLast`] when the body is not the last signed part (or
    ///   appears twice);
    /// - [`ConfigError::SignedIdNotFromHeader`] when [`Part::Id`] is signed but the id is not a
    ///   header;
    /// - [`ConfigError::SignedTimestampNotFromHeader`] when [`Part::Timestamp`] is signed but
    ///   the timestamp is not a header or signature tag;
    /// - [`ConfigError::AmbiguousSignedParts`] when the id and the timestamp are signed back to
    ///   back without a literal between them;
    /// - [`ConfigError::ToleranceWithoutTimestamp`] when a tolerance is set without a timestamp;
    /// - [`ConfigError::SignatureTagWithoutList`] when a signature tag is read from a
    ///   single-valued signature format;
    /// - [`ConfigError::IdFromSignatureTag`] when the id comes from a signature tag;
    /// - [`ConfigError::UnsignedIdOrScope`] when the id or scope comes from an unsigned header
    ///   without [`allow_unsigned_id_and_scope`](Self::allow_unsigned_id_and_scope).
    pub fn build(self) -> Result<Scheme, ConfigError> {
        let header = |name: &str| {
            HeaderName::try_from(name).map_err(|source| ConfigError::InvalidHeaderName {
                name: name.to_owned(),
                source,
            })
        };
        let bodies = self.signed.iter().filter(|p| **p == Part::Body).count();
        if bodies != 1 || self.signed.last() != Some(&Part::Body) {
            return Err(ConfigError::BodyNotSignedLast);
        }
        if self.signed.contains(&Part::Id) && !matches!(self.id, Source::Header(_)) {
            return Err(ConfigError::SignedIdNotFromHeader);
        }
        let timestamp_before_body = matches!(
            self.timestamp,
            Some((Source::Header(_) | Source::SignatureTag(_), _))
        );
        if self.signed.contains(&Part::Timestamp) && !timestamp_before_body {
            return Err(ConfigError::SignedTimestampNotFromHeader);
        }
        // Two values the sender chooses, signed back to back, are ambiguous: `ab` + `1` and
        // `a` + `b1` sign the same bytes, so a captured delivery could be replayed as another.
        let header_parts = |part: &Part| matches!(part, Part::Id | Part::Timestamp);
        if self
            .signed
            .windows(2)
            .any(|pair| header_parts(&pair[0]) && header_parts(&pair[1]))
        {
            return Err(ConfigError::AmbiguousSignedParts);
        }
        if self.tolerance.is_some() && self.timestamp.is_none() {
            return Err(ConfigError::ToleranceWithoutTimestamp);
        }
        let reads_tags = [Some(&self.id), self.event.as_ref(), self.scope.as_ref()]
            .into_iter()
            .flatten()
            .chain(self.timestamp.as_ref().map(|(source, _)| source))
            .any(|source| matches!(source, Source::SignatureTag(_)));
        if reads_tags && !matches!(self.format, SignatureFormat::List { .. }) {
            return Err(ConfigError::SignatureTagWithoutList);
        }
        if matches!(self.id, Source::SignatureTag(_)) {
            return Err(ConfigError::IdFromSignatureTag);
        }
        let signed = signs_id(&self.id, &self.signed) && signs_scope(self.scope.as_ref());
        if !signed && !self.unsigned_id_and_scope {
            return Err(ConfigError::UnsignedIdOrScope);
        }
        Ok(Scheme {
            name: self.name,
            signature_header: header(&self.signature_header)?,
            format: self.format,
            signed: self.signed,
            id: self.id,
            event: self.event,
            scope: self.scope,
            timestamp: self.timestamp,
            tolerance: self.tolerance,
            delivery: self.delivery.as_deref().map(header).transpose()?,
            envelope: None,
            secret_format: self.secret_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_refuses_descriptions_that_cannot_work() {
        let base = || Scheme::builder("x", "x-sig", SignatureFormat::single("", Encoding::Hex));
        assert!(base().build().is_ok());
        let refused = |builder: SchemeBuilder| builder.build().unwrap_err();
        assert!(matches!(
            refused(base().signed(vec![Part::Body, Part::literal(".")])),
            ConfigError::BodyNotSignedLast
        ));
        assert!(matches!(
            refused(base().signed(vec![Part::Body, Part::Body])),
            ConfigError::BodyNotSignedLast
        ));
        assert!(matches!(
            refused(base().signed(vec![Part::Id, Part::Body])),
            ConfigError::SignedIdNotFromHeader
        ));
        assert!(matches!(
            refused(base().signed(vec![Part::Timestamp, Part::Body])),
            ConfigError::SignedTimestampNotFromHeader
        ));
        assert!(matches!(
            refused(
                base()
                    .signed(vec![Part::Timestamp, Part::Body])
                    .timestamp(Source::body_field("ts"), TimestampFormat::UnixSeconds)
            ),
            ConfigError::SignedTimestampNotFromHeader
        ));
        assert!(matches!(
            refused(base().tolerance(DEFAULT_TOLERANCE)),
            ConfigError::ToleranceWithoutTimestamp
        ));
        // The id and the timestamp signed back to back are ambiguous; a literal between them
        // is not.
        let headers = || {
            base()
                .id(Source::header("x-id"))
                .timestamp(Source::header("x-ts"), TimestampFormat::UnixSeconds)
        };
        for ambiguous in [
            vec![Part::Id, Part::Timestamp, Part::Body],
            vec![Part::Timestamp, Part::Id, Part::literal("."), Part::Body],
        ] {
            assert!(matches!(
                refused(headers().signed(ambiguous)),
                ConfigError::AmbiguousSignedParts
            ));
        }
        assert!(headers()
            .signed(vec![
                Part::Id,
                Part::literal("."),
                Part::Timestamp,
                Part::Body
            ])
            .build()
            .is_ok());
        assert!(matches!(
            refused(base().timestamp(Source::signature_tag("t"), TimestampFormat::UnixSeconds)),
            ConfigError::SignatureTagWithoutList
        ));
        let list = || {
            Scheme::builder(
                "x",
                "x-sig",
                SignatureFormat::list(',', "v1", '=', Encoding::Hex),
            )
        };
        assert!(matches!(
            refused(list().id(Source::signature_tag("id"))),
            ConfigError::IdFromSignatureTag
        ));
        let bad = refused(Scheme::builder(
            "x",
            "bad header",
            SignatureFormat::single("", Encoding::Hex),
        ));
        assert!(
            matches!(&bad, ConfigError::InvalidHeaderName { name, .. } if name == "bad header")
        );
        assert!(std::error::Error::source(&bad).is_some());
    }

    #[test]
    fn the_builder_refuses_an_unsigned_id_or_scope_unless_told_it_is_for_display_only() {
        let base = || Scheme::builder("x", "x-sig", SignatureFormat::single("", Encoding::Hex));
        let unsigned = [
            base().id(Source::header("x-id")),
            base().scope(Source::header("x-account")),
            base()
                .id(Source::body_field("id"))
                .scope(Source::header("x-account")),
            base()
                .signed(vec![Part::Id, Part::literal("."), Part::Body])
                .id(Source::header("x-id"))
                .scope(Source::header("x-account")),
        ];
        for builder in unsigned {
            assert!(matches!(
                builder.clone().build(),
                Err(ConfigError::UnsignedIdOrScope)
            ));
            let scheme = builder.allow_unsigned_id_and_scope().build().unwrap();
            assert!(!scheme.signs_id_and_scope());
        }
        // Signed ids and scopes need no opt-in: a header id the signature covers, body fields,
        // the body's digest.
        let signed = [
            base()
                .signed(vec![Part::Id, Part::literal("."), Part::Body])
                .id(Source::header("x-id")),
            base()
                .id(Source::body_field("id"))
                .scope(Source::body_field("account")),
            base(),
        ];
        for builder in signed {
            assert!(builder.build().unwrap().signs_id_and_scope());
        }
    }

    #[test]
    fn every_preset_is_a_description_the_builder_accepts() {
        for name in ["sotion", "sota", "github", "standard", "stripe", "slack"] {
            let preset = Scheme::preset(name).unwrap();
            let mut builder = Scheme::builder(
                preset.name.clone(),
                preset.signature_header.as_str(),
                preset.format.clone(),
            )
            .signed(preset.signed.clone())
            .id(preset.id.clone());
            if let Some(event) = preset.event.clone() {
                builder = builder.event(event);
            }
            if let Some(scope) = preset.scope.clone() {
                builder = builder.scope(scope);
            }
            if let Some((source, format)) = preset.timestamp.clone() {
                builder = builder.timestamp(source, format);
            }
            if let Some(tolerance) = preset.tolerance {
                builder = builder.tolerance(tolerance);
            }
            builder = builder.with_secret_format(preset.secret_format.clone());
            // GitHub's id is unsigned: its preset makes the same choice as this opt-in.
            assert_eq!(preset.signs_id_and_scope(), name != "github", "{name}");
            if !preset.signs_id_and_scope() {
                builder = builder.allow_unsigned_id_and_scope();
            }
            assert!(builder.build().is_ok(), "{name}");
        }
        assert!(Scheme::preset("unknown").is_none());
    }

    #[test]
    fn a_custom_scheme_declaring_base64_secrets_decodes_them() {
        let scheme = Scheme::builder("x", "x-sig", SignatureFormat::single("", Encoding::Hex))
            .with_secret_format(SecretFormat::base64("sk_"))
            .build()
            .unwrap();
        let secret = scheme.secret("sk_aGVsbG8=").unwrap();
        assert_eq!(secret.format(), &SecretFormat::base64("sk_"));
        // The key is the decoded bytes.
        assert_eq!(
            secret.fingerprint(),
            Secret::new("hello").unwrap().fingerprint()
        );
        // Without the declaration the text is the key.
        let raw = Scheme::builder("x", "x-sig", SignatureFormat::single("", Encoding::Hex))
            .build()
            .unwrap();
        assert_eq!(
            raw.secret("sk_aGVsbG8=").unwrap().format(),
            &SecretFormat::Raw
        );
        assert!(matches!(
            scheme.secret("sk_not base64"),
            Err(ConfigError::InvalidSecretEncoding { .. })
        ));
    }

    #[test]
    fn standard_webhooks_secrets_are_decoded_and_bad_ones_refused() {
        let scheme = Scheme::standard_webhooks();
        assert!(scheme
            .secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
            .is_ok());
        assert!(scheme.secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_ok());
        assert!(matches!(
            scheme.secret("whsec_not base64!"),
            Err(ConfigError::InvalidSecretEncoding { .. })
        ));
        assert!(matches!(
            scheme.secret("whsec_"),
            Err(ConfigError::EmptySecret)
        ));
    }
}
