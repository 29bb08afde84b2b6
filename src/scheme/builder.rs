//! [`SchemeBuilder`]: a sender that no preset covers, described without crypto code.

use std::borrow::Cow;

use http::header::HeaderName;

use super::algorithm::Algorithm;
use super::body::{BodyForm, JSON_ONLY};
use super::format::SignatureFormat;
use super::source::{Part, SecretFormat, Source, TimestampFormat, Tolerance};
use super::spec::{signs_id, signs_scope, Rule, Scheme};
use crate::error::ConfigError;

impl Scheme {
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
            action: None,
            scope: None,
            timestamp: None,
            tolerance: None,
            delivery: None,
            unsigned_id_and_scope: false,
            secret_format: SecretFormat::Raw,
            algorithm: Algorithm::HmacSha256,
            bodies: JSON_ONLY,
        }
    }
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
///     .with_signed(vec![Part::Timestamp, Part::literal("."), Part::Body])
///     .with_timestamp(Source::header("x-webinone-timestamp"), TimestampFormat::UnixSeconds)
///     .with_tolerance(Tolerance::symmetric(Duration::from_secs(300)))
///     .with_event(Source::header("x-webinone-event"))
///     .with_id(Source::BodyDigest)
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
    action: Option<Source>,
    scope: Option<Source>,
    timestamp: Option<(Source, TimestampFormat)>,
    tolerance: Option<Tolerance>,
    delivery: Option<String>,
    unsigned_id_and_scope: bool,
    secret_format: SecretFormat,
    algorithm: Algorithm,
    bodies: Cow<'static, [BodyForm]>,
}

impl SchemeBuilder {
    /// The signed bytes, in order; the last part must be [`Part::Body`] (default: the body
    /// alone).
    #[must_use]
    pub fn with_signed(mut self, parts: Vec<Part>) -> Self {
        self.signed = parts;
        self
    }

    /// Where the event id comes from (default: [`Source::BodyDigest`]).
    #[must_use]
    pub fn with_id(mut self, source: Source) -> Self {
        self.id = source;
        self
    }

    /// Where the event type comes from (default: none).
    #[must_use]
    pub fn with_event(mut self, source: Source) -> Self {
        self.event = Some(source);
        self
    }

    /// Where the event's action comes from, for senders that name it apart from the event
    /// (GitHub's body `action`: `issues` + `opened`); an event router then matches
    /// `<event>.<action>` before `<event>` (default: none). Optional: an unusable value is
    /// dropped with a warning.
    #[must_use]
    pub fn with_action(mut self, source: Source) -> Self {
        self.action = Some(source);
        self
    }

    /// Where the scope of the event id comes from (an account or site id), so that two
    /// accounts' ids never collide (default: none).
    #[must_use]
    pub fn with_scope(mut self, source: Source) -> Self {
        self.scope = Some(source);
        self
    }

    /// Where the signed timestamp comes from, and how it is written (default: none).
    #[must_use]
    pub fn with_timestamp(mut self, source: Source, format: TimestampFormat) -> Self {
        self.timestamp = Some((source, format));
        self
    }

    /// How far the timestamp may lie from now (default: not checked).
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Tolerance) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// The header naming a delivery attempt, reported in [`WebhookMeta::delivery`](crate::WebhookMeta::delivery).
    #[must_use]
    pub fn with_delivery_header(mut self, name: &str) -> Self {
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

    /// The function the sender signs with (default [`Algorithm::HmacSha256`]). For an
    /// asymmetric algorithm the secrets are the sender's public keys, written in the
    /// [`with_secret_format`](Self::with_secret_format) format (for example
    /// [`SecretFormat::Hex`] for a 32-byte Ed25519 key in hex).
    #[must_use]
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The body forms the sender uses, told apart by `Content-Type` (default: JSON only; see
    /// [`BodyForm`]): `&[BodyForm::Json, BodyForm::Form]` for a sender that sends forms too
    /// (GitHub, Slack), `&[BodyForm::Form]` for one that sends only forms (Twilio). A delivery
    /// in another form is refused with `415 unsupported_media_type` once its signature
    /// verified. An empty list is taken as JSON only.
    #[must_use]
    pub fn with_body_forms(mut self, forms: impl Into<Cow<'static, [BodyForm]>>) -> Self {
        let forms = forms.into();
        self.bodies = if forms.is_empty() { JSON_ONLY } else { forms };
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
    /// ([`WebhookMeta::id`](crate::WebhookMeta::id), [`scope`](crate::WebhookMeta::scope)),
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
    pub fn with_unsigned_id_and_scope(mut self) -> Self {
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
    ///   without [`with_unsigned_id_and_scope`](Self::with_unsigned_id_and_scope).
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
        let header_parts = |part: &Part| matches!(part, Part::Id | Part::Timestamp | Part::Url);
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
        let reads_tags = [
            Some(&self.id),
            self.event.as_ref(),
            self.action.as_ref(),
            self.scope.as_ref(),
        ]
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
            action: self.action,
            scope: self.scope,
            timestamp: self.timestamp,
            tolerance: self.tolerance,
            delivery: self.delivery.as_deref().map(header).transpose()?,
            envelope: None,
            secret_format: self.secret_format,
            algorithm: self.algorithm,
            aliases: Vec::new(),
            handshake: None,
            rule: Rule::Parts,
            integer_event: false,
            bodies: self.bodies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::spec::DEFAULT_TOLERANCE;
    use crate::scheme::Encoding;
    use crate::secret::Secret;

    #[test]
    fn the_builder_refuses_descriptions_that_cannot_work() {
        let base = || Scheme::builder("x", "x-sig", SignatureFormat::single("", Encoding::Hex));
        assert!(base().build().is_ok());
        let refused = |builder: SchemeBuilder| builder.build().unwrap_err();
        assert!(matches!(
            refused(base().with_signed(vec![Part::Body, Part::literal(".")])),
            ConfigError::BodyNotSignedLast
        ));
        assert!(matches!(
            refused(base().with_signed(vec![Part::Body, Part::Body])),
            ConfigError::BodyNotSignedLast
        ));
        assert!(matches!(
            refused(base().with_signed(vec![Part::Id, Part::Body])),
            ConfigError::SignedIdNotFromHeader
        ));
        assert!(matches!(
            refused(base().with_signed(vec![Part::Timestamp, Part::Body])),
            ConfigError::SignedTimestampNotFromHeader
        ));
        assert!(matches!(
            refused(
                base()
                    .with_signed(vec![Part::Timestamp, Part::Body])
                    .with_timestamp(Source::body_field("ts"), TimestampFormat::UnixSeconds)
            ),
            ConfigError::SignedTimestampNotFromHeader
        ));
        assert!(matches!(
            refused(base().with_tolerance(DEFAULT_TOLERANCE)),
            ConfigError::ToleranceWithoutTimestamp
        ));
        // The id and the timestamp signed back to back are ambiguous; a literal between them
        // is not.
        let headers = || {
            base()
                .with_id(Source::header("x-id"))
                .with_timestamp(Source::header("x-ts"), TimestampFormat::UnixSeconds)
        };
        for ambiguous in [
            vec![Part::Id, Part::Timestamp, Part::Body],
            vec![Part::Timestamp, Part::Id, Part::literal("."), Part::Body],
        ] {
            assert!(matches!(
                refused(headers().with_signed(ambiguous)),
                ConfigError::AmbiguousSignedParts
            ));
        }
        assert!(headers()
            .with_signed(vec![
                Part::Id,
                Part::literal("."),
                Part::Timestamp,
                Part::Body
            ])
            .build()
            .is_ok());
        assert!(matches!(
            refused(
                base().with_timestamp(Source::signature_tag("t"), TimestampFormat::UnixSeconds)
            ),
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
            refused(list().with_id(Source::signature_tag("id"))),
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
            base().with_id(Source::header("x-id")),
            base().with_scope(Source::header("x-account")),
            base()
                .with_id(Source::body_field("id"))
                .with_scope(Source::header("x-account")),
            base()
                .with_signed(vec![Part::Id, Part::literal("."), Part::Body])
                .with_id(Source::header("x-id"))
                .with_scope(Source::header("x-account")),
        ];
        for builder in unsigned {
            assert!(matches!(
                builder.clone().build(),
                Err(ConfigError::UnsignedIdOrScope)
            ));
            let scheme = builder.with_unsigned_id_and_scope().build().unwrap();
            assert!(!scheme.signs_id_and_scope());
        }
        // Signed ids and scopes need no opt-in: a header id the signature covers, body fields,
        // the body's digest.
        let signed = [
            base()
                .with_signed(vec![Part::Id, Part::literal("."), Part::Body])
                .with_id(Source::header("x-id")),
            base()
                .with_id(Source::body_field("id"))
                .with_scope(Source::body_field("account")),
            base(),
        ];
        for builder in signed {
            assert!(builder.build().unwrap().signs_id_and_scope());
        }
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
}
