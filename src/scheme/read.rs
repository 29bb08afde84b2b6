//! What a scheme reads from one request: before the body (signatures, signed prefix, header
//! timestamp) and after the signature verified (id, event, scope, timestamp, envelope).

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::algorithm::Algorithm;
use super::format::Candidates;
use super::headers::{Headers, Single};
use super::source::{Part, Source, TimestampFormat, Tolerance};
use super::spec::{Rule, Scheme, SotionEnvelope};
use crate::diagnose::Reason;
use crate::envelope::{check_id, check_token, ParsedEnvelope};
use crate::error::{Rejection, RejectionKind};
use crate::meta::{KeyBasis, WebhookMeta};

/// What the headers say before the body is read.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The signatures to compare.
    pub(crate) candidates: Candidates,
    /// The signed bytes that come before the body (empty for body-only schemes).
    pub(crate) prefix: Vec<u8>,
    /// The signed timestamp from a header or signature tag, in Unix seconds.
    pub(crate) timestamp: Option<i64>,
    /// The URL the sender called, for a scheme that signs it.
    pub(crate) url: Option<String>,
    /// The algorithm this request is signed with: the scheme's, or for Twilio the one
    /// `X-Twilio-Webhooks-Signature-Settings` names.
    pub(crate) algorithm: Algorithm,
}

/// What the verified request says.
#[derive(Debug)]
pub(crate) struct Described {
    pub(crate) meta: WebhookMeta,
    /// The event's JSON: the body itself, or what its form carries (see
    /// [`BodyForm`](super::BodyForm)).
    pub(crate) event: Bytes,
    /// The raw `data` of a Sotion envelope.
    pub(crate) data: Option<Bytes>,
}

const MALFORMED_TIMESTAMP: Rejection = Rejection::new(
    RejectionKind::MalformedTimestamp,
    "the signed timestamp is missing or not in the sender's format",
);

const MISSING_SIGNED_HEADER: Rejection = Rejection::new(
    RejectionKind::MissingSignedHeader,
    "a header the signature covers (the event id) is missing or repeated",
);

impl Scheme {
    /// Steps before the body: the signature header, and the signed bytes that precede the body
    /// (`url`: the URL the sender called, for a scheme that signs it).
    pub(crate) fn prepare(
        &self,
        headers: &Headers<'_>,
        url: Option<&str>,
    ) -> Result<Prepared, Rejection> {
        let headers = &headers.with_aliases(&self.aliases);
        if self.rule == Rule::ClientState {
            // No signature header: the token is in the body.
            return Ok(Prepared {
                candidates: Candidates::default(),
                prefix: Vec::new(),
                timestamp: None,
                url: None,
                algorithm: self.algorithm,
            });
        }
        let name = &self.signature_header;
        let value = match headers.single(name) {
            Single::One(value) => value.as_bytes(),
            Single::None => {
                return Err(Rejection::new(
                    RejectionKind::MissingSignature,
                    "the request carries no signature header",
                )
                .with_reason(Reason::MissingHeader(name.clone())))
            }
            Single::Many => {
                return Err(Rejection::new(
                    RejectionKind::MalformedSignature,
                    "the request carries more than one signature header",
                )
                .with_reason(Reason::RepeatedHeader(name.clone())))
            }
        };
        let algorithm = match self.rule {
            Rule::Twilio if super::twilio::signs_with_sha256(headers)? => Algorithm::HmacSha256,
            _ => self.algorithm,
        };
        let mut prepared = Prepared {
            candidates: Candidates::default(),
            prefix: Vec::new(),
            timestamp: None,
            url: None,
            algorithm,
        };
        self.format
            .parse_into(
                value,
                algorithm.signature_length(),
                &mut prepared.candidates,
            )
            .map_err(|rejection| {
                rejection.with_reason(Reason::SignatureFormat {
                    header: name.clone(),
                    expected: self.format.expected(),
                })
            })?;
        if self.signs_url() {
            let url = url.ok_or(Rejection::new(
                RejectionKind::SignatureMismatch,
                "this sender signs the URL it called: verify with that URL",
            ))?;
            prepared.url = Some(url.to_owned());
        }
        let malformed = || self.malformed_timestamp();
        let timestamp_text = match &self.timestamp {
            Some((Source::Header(name), _)) => match headers.single(name) {
                Single::One(value) => {
                    Some(std::str::from_utf8(value.as_bytes()).map_err(|_| malformed())?)
                }
                Single::None => {
                    return Err(MALFORMED_TIMESTAMP.with_reason(Reason::MissingHeader(name.clone())))
                }
                Single::Many => {
                    return Err(
                        MALFORMED_TIMESTAMP.with_reason(Reason::RepeatedHeader(name.clone()))
                    )
                }
            },
            Some((Source::SignatureTag(tag), _)) => {
                let value = std::str::from_utf8(value).map_err(|_| malformed())?;
                Some(self.format.tagged(value, tag).ok_or_else(malformed)?)
            }
            _ => None,
        };
        prepared.timestamp = match (timestamp_text, &self.timestamp) {
            (Some(text), Some((_, format))) => {
                Some(parse_timestamp(text, *format).map_err(|_| malformed())?)
            }
            _ => None,
        };
        // Twilio's signed bytes need the whole body: nothing precedes it.
        if self.rule != Rule::Twilio {
            prepared.prefix = self.signed_prefix(headers, url, timestamp_text)?;
        }
        Ok(prepared)
    }

    /// The signed bytes that come before the body.
    fn signed_prefix(
        &self,
        headers: &Headers<'_>,
        url: Option<&str>,
        timestamp_text: Option<&str>,
    ) -> Result<Vec<u8>, Rejection> {
        let mut prefix = Vec::new();
        for part in &self.signed {
            match part {
                Part::Literal(bytes) => prefix.extend_from_slice(bytes),
                Part::Url => prefix.extend_from_slice(url.unwrap_or("").as_bytes()),
                Part::Timestamp => {
                    prefix.extend_from_slice(timestamp_text.unwrap_or("").as_bytes());
                }
                Part::Id => {
                    let Source::Header(name) = &self.id else {
                        continue;
                    };
                    let id = match headers.single(name) {
                        Single::One(id) => id,
                        Single::None => {
                            return Err(MISSING_SIGNED_HEADER
                                .with_reason(Reason::MissingHeader(name.clone())))
                        }
                        Single::Many => {
                            return Err(MISSING_SIGNED_HEADER
                                .with_reason(Reason::RepeatedHeader(name.clone())))
                        }
                    };
                    prefix.extend_from_slice(id.as_bytes());
                }
                Part::Body => break,
            }
        }
        Ok(prefix)
    }

    /// `401 malformed_timestamp`, its reason naming where the scheme reads the timestamp and
    /// how it writes it.
    fn malformed_timestamp(&self) -> Rejection {
        let Some((source, format)) = &self.timestamp else {
            return MALFORMED_TIMESTAMP;
        };
        let source = match source {
            Source::Header(name) => format!("header `{name}`"),
            Source::SignatureTag(tag) => {
                format!("the `{tag}` entry of header `{}`", self.signature_header)
            }
            Source::BodyField(name) => format!("body field `{name}`"),
            Source::BodyDigest => String::new(),
        };
        let expected = match format {
            TimestampFormat::UnixSeconds => "Unix seconds",
            TimestampFormat::Rfc3339 => "an RFC 3339 date-time",
            TimestampFormat::UnixMillis => "Unix milliseconds",
        };
        MALFORMED_TIMESTAMP.with_reason(Reason::TimestampFormat { source, expected })
    }

    /// Refuses bodies that were not sent as the bytes that were signed.
    pub(crate) fn check_content_encoding(headers: &HeaderMap) -> Result<(), Rejection> {
        let identity = |value: &HeaderValue| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .all(|c| c.trim().eq_ignore_ascii_case("identity"))
            })
        };
        let all_identity = headers.get_all(CONTENT_ENCODING).iter().all(identity);
        if all_identity {
            Ok(())
        } else {
            Err(Rejection::new(
                RejectionKind::UnsupportedContentEncoding,
                "compressed bodies cannot be verified: send the body without Content-Encoding",
            ))
        }
    }

    /// The freshness check of a header or tag timestamp, right after the signature verified.
    pub(crate) fn check_prepared_timestamp(
        &self,
        prepared: &Prepared,
        now: i64,
    ) -> Result<(), Rejection> {
        match (prepared.timestamp, self.tolerance) {
            (Some(timestamp), Some(tolerance)) => check_freshness(timestamp, now, tolerance),
            _ => Ok(()),
        }
    }

    /// Steps after the signature verified: the body's form (by `Content-Type`, among the
    /// scheme's), then the id, event, scope and timestamp, and for Sotion the envelope and the
    /// agreement of its headers.
    pub(crate) fn describe(
        &self,
        headers: &Headers<'_>,
        body: &Bytes,
        prepared: &Prepared,
        now: i64,
    ) -> Result<Described, Rejection> {
        let headers = &headers.with_aliases(&self.aliases);
        let event_json = self.body_form(headers)?.event_json(body);
        if let Some(envelope) = &self.envelope {
            return self.describe_envelope(envelope, headers, event_json, now);
        }

        // Optional facts (event, scope) read from a body that is not JSON are simply absent
        // (a GitHub body that is no JSON at all); a required one makes it an error.
        let required = matches!(self.id, Source::BodyField(_))
            || matches!(self.timestamp, Some((Source::BodyField(_), _)));
        let fields = match self.body_fields(&event_json) {
            Ok(fields) => fields,
            Err(rejection) if required || rejection.kind() != RejectionKind::InvalidJson => {
                return Err(rejection)
            }
            Err(_) => Fields::default(),
        };
        let id = self.id(headers, &fields, body)?;
        let event = self.optional_token("event type", self.event.as_ref(), headers, &fields);
        let action = self.optional_token("action", self.action.as_ref(), headers, &fields);
        let scope = self.scope(headers, &fields);
        let timestamp = match &self.timestamp {
            Some((Source::BodyField(name), format)) => {
                let unix = fields.timestamp(name, *format)?;
                match (unix, self.tolerance) {
                    (Some(unix), Some(tolerance)) => check_freshness(unix, now, tolerance)?,
                    (None, Some(_)) => return Err(self.malformed_timestamp()),
                    _ => {}
                }
                unix
            }
            _ => prepared.timestamp,
        };
        let mut meta = WebhookMeta {
            scheme: self.name.clone(),
            id,
            event: event.map(|event| ByteString::from(event.into_owned())),
            action: action.map(|action| ByteString::from(action.into_owned())),
            delivery: self.delivery(headers),
            scope,
            tenant: None,
            timestamp: timestamp.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
            version: None,
            key: KeyBasis::default(),
        };
        if !self.signs_id_and_scope() {
            meta.key.signed_bytes = Some(self.signed_digest(&meta, body));
        }
        drop(fields);
        Ok(Described {
            meta,
            event: event_json,
            data: None,
        })
    }

    /// Sotion's envelope: parsed from the signed body, its timestamp checked, and its id and
    /// event headers agreeing with it.
    fn describe_envelope(
        &self,
        envelope: &SotionEnvelope,
        headers: &Headers<'_>,
        event_json: Bytes,
        now: i64,
    ) -> Result<Described, Rejection> {
        let parsed = ParsedEnvelope::parse(&event_json)?;
        if let Some(tolerance) = self.tolerance {
            check_freshness(parsed.timestamp.unix_timestamp(), now, tolerance)?;
        }
        agree(headers, &envelope.id_header, parsed.id.as_bytes()).map_err(|reason| {
            Rejection::new(
                RejectionKind::IdMismatch,
                "the event-id header is missing or differs from the signed body's `id`",
            )
            .with_reason(reason)
        })?;
        agree(headers, &envelope.event_header, parsed.event.as_bytes()).map_err(|reason| {
            Rejection::new(
                RejectionKind::EventMismatch,
                "the event-type header is missing or differs from the signed body's `type`",
            )
            .with_reason(reason)
        })?;
        let meta = WebhookMeta {
            scheme: self.name.clone(),
            event: Some(parsed.event),
            action: None,
            id: parsed.id,
            delivery: self.delivery(headers),
            scope: Some(parsed.site_id),
            tenant: None,
            timestamp: Some(parsed.timestamp),
            version: Some(parsed.version),
            // The id and scope are the signed body's.
            key: KeyBasis::default(),
        };
        Ok(Described {
            meta,
            event: event_json,
            data: Some(parsed.data),
        })
    }

    /// The event id, from where the scheme reads it.
    fn id(
        &self,
        headers: &Headers<'_>,
        fields: &Fields<'_>,
        body: &Bytes,
    ) -> Result<ByteString, Rejection> {
        Ok(match &self.id {
            Source::Header(name) if self.signs_id() => header_text(headers, name)
                .ok_or(INVALID_ID)
                .and_then(|id| check_id(id).map(|()| id.into()).map_err(|_| INVALID_ID))?,
            // Unsigned (GitHub's `X-GitHub-Delivery`): for display only, so a missing or
            // unusable one is no reason to refuse an authentic delivery.
            Source::Header(name) => {
                if let Some(id) = header_text(headers, name).filter(|id| check_id(id).is_ok()) {
                    id.into()
                } else {
                    crate::observe::warn!(
                        scheme = %self.name,
                        field = name.as_str(),
                        "the (unsigned) id header is missing or unusable; the delivery's id is \
                         the SHA-256 of its body"
                    );
                    faster_hex::hex_string(&Sha256::digest(body)).into()
                }
            }
            Source::BodyField(name) => match fields.string(name)? {
                Some(id) => {
                    check_id(&id).map_err(|_| INVALID_ID)?;
                    ByteString::from(id.into_owned())
                }
                None => return Err(INVALID_ID),
            },
            Source::BodyDigest => faster_hex::hex_string(&Sha256::digest(body)).into(),
            Source::SignatureTag(_) => return Err(INVALID_ID),
        })
    }

    /// What the idempotency key of a delivery whose id or scope is unsigned is built from
    /// instead: the SHA-256 of its signed values (the id and the scope where signed, each
    /// length-prefixed, an unsigned one left out), the event name when it comes from a header,
    /// and its body. A signed timestamp is left out, so a retry re-signed later still maps to
    /// the same key.
    fn signed_digest(&self, meta: &WebhookMeta, body: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        let id = self.signs_id().then_some(meta.id());
        let scope = if self.signs_scope() {
            meta.scope()
        } else {
            None
        };
        // An event name from a header is unsigned too, but it is what the handler acts on: it
        // is bound into the key, so that a captured body replayed under another event name (a
        // `ping` the app acknowledges without work) can never complete the genuine event's key.
        // The cost: a replay under an event name of the attacker's choosing runs once per name.
        let event = matches!(
            self.event,
            Some(Source::Header(_) | Source::SignatureTag(_))
        )
        .then(|| meta.event().unwrap_or(""));
        for value in [id, scope, event] {
            match value {
                Some(value) => {
                    hasher.update([1]);
                    hasher.update((value.len() as u64).to_be_bytes());
                    hasher.update(value.as_bytes());
                }
                None => hasher.update([0]),
            }
        }
        hasher.update(body);
        hasher.finalize().into()
    }

    /// An optional fact (the event type, the action), when the sender's value is a usable
    /// token. A value that is not one (not a string, empty, too long, control characters; a
    /// repeated or non-UTF-8 header) is dropped with a warning, and the delivery is handled
    /// without it.
    fn optional_token<'a>(
        &self,
        fact: &'static str,
        source: Option<&Source>,
        headers: &Headers<'a>,
        fields: &Fields<'a>,
    ) -> Option<Cow<'a, str>> {
        let source = source?;
        // Discord's interaction `type` is an integer, read as its decimal text.
        let integers = self.integer_event && fact == "event type";
        match optional_fact(source, headers, fields, integers) {
            Ok(value) => value,
            Err(reason) => {
                crate::observe::warn!(
                    scheme = %self.name,
                    fact,
                    field = source_name(source),
                    reason,
                    "an optional fact is not a usable token; handling the delivery without it"
                );
                None
            }
        }
    }

    /// The scope of the event id. It is part of the idempotency key, so a value that is not a
    /// usable token is not dropped (two scopes would then share keys) but kept apart, with a
    /// warning: a number or boolean as its JSON text (`12345`), anything else as
    /// `sha256:<hex>` of its raw JSON text (of a header, its values joined by `\n`).
    fn scope(&self, headers: &Headers<'_>, fields: &Fields<'_>) -> Option<ByteString> {
        let source = self.scope.as_ref()?;
        match optional_fact(source, headers, fields, false) {
            Ok(scope) => scope.map(|scope| ByteString::from(scope.into_owned())),
            Err(reason) => {
                crate::observe::warn!(
                    scheme = %self.name,
                    field = source_name(source),
                    reason,
                    "the scope is not a usable token; keeping deliveries apart by a stand-in"
                );
                Some(stand_in(source, headers, fields).into())
            }
        }
    }

    /// The delivery-attempt id, when the sender's header holds a usable one. It is optional and
    /// informational (unsigned, never part of a key): a repeated, non-UTF-8, empty, too long or
    /// control-character value is dropped with a warning, and the delivery is handled without it.
    fn delivery(&self, headers: &Headers<'_>) -> Option<HeaderValue> {
        let name = self.delivery.as_ref()?;
        let reason = match headers.single(name) {
            Single::None => return None,
            Single::Many => "the header is repeated",
            Single::One(value) => match std::str::from_utf8(value.as_bytes()) {
                Ok(text) if check_id(text).is_ok() => return Some(value.clone()),
                Ok(_) => "the value is empty, longer than 255 bytes or holds control characters",
                Err(_) => "the header is not UTF-8",
            },
        };
        crate::observe::warn!(
            scheme = %self.name,
            field = name.as_str(),
            reason,
            "the delivery id is not usable; handling the delivery without one"
        );
        None
    }

    fn body_fields<'b>(&self, body: &'b [u8]) -> Result<Fields<'b>, Rejection> {
        let mut wanted: Vec<&str> = Vec::new();
        let sources = [
            Some(&self.id),
            self.event.as_ref(),
            self.action.as_ref(),
            self.scope.as_ref(),
        ];
        let timestamp = self.timestamp.as_ref().map(|(source, _)| source);
        for source in sources.into_iter().chain([timestamp]).flatten() {
            if let Source::BodyField(name) = source {
                wanted.push(name);
            }
        }
        if wanted.is_empty() {
            return Ok(Fields::default());
        }
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let values = FieldsSeed { wanted: &wanted }
            .deserialize(&mut deserializer)
            .and_then(|values| deserializer.end().map(|()| values))
            .map_err(|error| {
                Rejection::from_json(
                    &error,
                    "the body is not a JSON object with each field at most once",
                )
            })?;
        Ok(Fields {
            names: wanted.iter().map(|name| (*name).to_owned()).collect(),
            values,
        })
    }
}

const INVALID_ID: Rejection = Rejection::new(
    RejectionKind::InvalidEventId,
    "the event id is missing, empty, longer than 255 bytes or holds control characters",
);

/// An optional fact (event type, scope): `Ok(None)` when it was not sent (or is JSON `null`),
/// the usable token, or why the value sent is not one (never the value itself: it is logged).
fn optional_fact<'a>(
    source: &Source,
    headers: &Headers<'a>,
    fields: &Fields<'a>,
    integers: bool,
) -> Result<Option<Cow<'a, str>>, &'static str> {
    let value = match source {
        Source::Header(name) => match headers.single(name) {
            Single::None => return Ok(None),
            Single::Many => return Err("the header is repeated"),
            Single::One(value) => Cow::Borrowed(
                std::str::from_utf8(value.as_bytes()).map_err(|_| "the header is not UTF-8")?,
            ),
        },
        Source::BodyField(name) => {
            let Some(raw) = fields.raw(name) else {
                return Ok(None);
            };
            match raw.get().as_bytes().first() {
                Some(b'"') => serde_json::from_str::<Cow<'a, str>>(raw.get())
                    .map_err(|_| "the field is not a valid string")?,
                _ if raw.get() == "null" => return Ok(None),
                _ if integers && is_integer(raw.get()) => Cow::Borrowed(raw.get()),
                _ => return Err("the field is not a string"),
            }
        }
        Source::SignatureTag(_) | Source::BodyDigest => return Ok(None),
    };
    check_token(&value)
        .map(|()| Some(value))
        .map_err(|()| "the value is empty, longer than 255 bytes or holds control characters")
}

/// Whether a raw JSON value is a plain integer (`2`, `-1`), as an event type may be.
fn is_integer(raw: &str) -> bool {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    !digits.is_empty() && digits.len() <= 19 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// What a scope that is no usable token is kept as (see [`Scheme::scope`]).
fn stand_in(source: &Source, headers: &Headers<'_>, fields: &Fields<'_>) -> String {
    let mut digest = Sha256::new();
    match source {
        Source::BodyField(name) => {
            let raw = fields.raw(name).map_or("", RawValue::get);
            let scalar = !matches!(raw.as_bytes().first(), Some(b'"' | b'{' | b'['));
            if scalar && check_token(raw).is_ok() {
                return raw.to_owned();
            }
            digest.update(raw.as_bytes());
        }
        Source::Header(name) => {
            for (index, value) in headers.all(name).enumerate() {
                if index > 0 {
                    digest.update(b"\n"); // never inside a header value
                }
                digest.update(value.as_bytes());
            }
        }
        Source::SignatureTag(_) | Source::BodyDigest => {}
    }
    format!("sha256:{}", faster_hex::hex_string(&digest.finalize()))
}

/// The name of a header or body field, for logs.
fn source_name(source: &Source) -> &str {
    match source {
        Source::Header(name) => name.as_str(),
        Source::BodyField(name) | Source::SignatureTag(name) => name,
        Source::BodyDigest => "",
    }
}

/// Refuses a timestamp further than `tolerance` from `now`, both in Unix seconds, without
/// overflow for any `i64`.
pub(crate) fn check_freshness(
    timestamp: i64,
    now: i64,
    tolerance: Tolerance,
) -> Result<(), Rejection> {
    let age = i128::from(now) - i128::from(timestamp);
    let skew = |tolerance: std::time::Duration| Reason::TimestampSkew {
        age_secs: i64::try_from(age).unwrap_or(if age < 0 { i64::MIN } else { i64::MAX }),
        tolerance_secs: tolerance.as_secs(),
    };
    if age > i128::from(tolerance.past.as_secs()) {
        return Err(Rejection::new(
            RejectionKind::TimestampTooOld,
            "the signed timestamp is older than this receiver accepts",
        )
        .with_reason(skew(tolerance.past)));
    }
    if -age > i128::from(tolerance.future.as_secs()) {
        return Err(Rejection::new(
            RejectionKind::TimestampInFuture,
            "the signed timestamp lies too far in the future (check the sender's clock)",
        )
        .with_reason(skew(tolerance.future)));
    }
    Ok(())
}

fn parse_timestamp(text: &str, format: TimestampFormat) -> Result<i64, Rejection> {
    match format {
        TimestampFormat::UnixSeconds => {
            let digits = text.strip_prefix('-').unwrap_or(text);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(MALFORMED_TIMESTAMP);
            }
            text.parse().map_err(|_| MALFORMED_TIMESTAMP)
        }
        TimestampFormat::Rfc3339 => OffsetDateTime::parse(text, &Rfc3339)
            .map(OffsetDateTime::unix_timestamp)
            .map_err(|_| MALFORMED_TIMESTAMP),
        TimestampFormat::UnixMillis => {
            parse_timestamp(text, TimestampFormat::UnixSeconds).map(|ms| ms.div_euclid(1000))
        }
    }
}

fn single_value<'h>(headers: &Headers<'h>, name: &HeaderName) -> Option<&'h [u8]> {
    headers.one(name).map(HeaderValue::as_bytes)
}

/// Whether header `name` was sent once with exactly `signed`, the value the signed body holds;
/// otherwise why not.
fn agree(headers: &Headers<'_>, name: &HeaderName, signed: &[u8]) -> Result<(), Reason> {
    match headers.single(name) {
        Single::One(value) if value.as_bytes() == signed => Ok(()),
        Single::One(_) => Err(Reason::HeaderDisagrees(name.clone())),
        Single::None => Err(Reason::MissingHeader(name.clone())),
        Single::Many => Err(Reason::RepeatedHeader(name.clone())),
    }
}

fn header_text<'h>(headers: &Headers<'h>, name: &HeaderName) -> Option<&'h str> {
    single_value(headers, name).and_then(|value| std::str::from_utf8(value).ok())
}

/// The top-level fields of the signed body a scheme reads.
#[derive(Default)]
struct Fields<'b> {
    names: Vec<String>,
    values: Vec<Option<&'b RawValue>>,
}

impl<'b> Fields<'b> {
    fn raw(&self, name: &str) -> Option<&'b RawValue> {
        let index = self.names.iter().position(|n| n == name)?;
        self.values.get(index).copied().flatten()
    }

    fn string(&self, name: &str) -> Result<Option<Cow<'b, str>>, Rejection> {
        let Some(raw) = self.raw(name) else {
            return Ok(None);
        };
        serde_json::from_str::<Cow<'b, str>>(raw.get())
            .map(Some)
            .map_err(|_| INVALID_FIELD_TYPE)
    }

    fn timestamp(&self, name: &str, format: TimestampFormat) -> Result<Option<i64>, Rejection> {
        let Some(raw) = self.raw(name) else {
            return Ok(None);
        };
        let text = raw.get();
        let parsed = if text.starts_with('"') {
            let inner: Cow<'_, str> = serde_json::from_str(text).map_err(|_| INVALID_FIELD_TYPE)?;
            parse_timestamp(&inner, format)
        } else if format == TimestampFormat::UnixMillis {
            parse_timestamp(text, format)
        } else {
            parse_timestamp(text, TimestampFormat::UnixSeconds)
        };
        parsed.map(Some).map_err(|_| {
            Rejection::new(
                RejectionKind::InvalidEnvelope,
                "the body's timestamp is not in the sender's format",
            )
        })
    }
}

const INVALID_FIELD_TYPE: Rejection = Rejection::new(
    RejectionKind::InvalidEnvelope,
    "a field of the body has the wrong type",
);

/// Reads a JSON object, keeping the raw value of each wanted top-level key, refusing a wanted
/// key that appears twice, and skipping everything else (still checked to be valid JSON).
struct FieldsSeed<'w> {
    wanted: &'w [&'w str],
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = Vec<Option<&'de RawValue>>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = Vec<Option<&'de RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = vec![None; self.wanted.len()];
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match self.wanted.iter().position(|wanted| *wanted == key) {
                Some(index) => {
                    if values[index].is_some() {
                        return Err(serde::de::Error::custom("a field appears twice"));
                    }
                    values[index] = Some(map.next_value::<&'de RawValue>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const FIVE_MINUTES: Tolerance = Tolerance::symmetric(Duration::from_secs(300));

    #[test]
    fn freshness_edges_hold_and_extremes_do_not_overflow() {
        let now = 1_700_000_000;
        assert!(check_freshness(now - 299, now, FIVE_MINUTES).is_ok());
        assert!(check_freshness(now - 300, now, FIVE_MINUTES).is_ok());
        assert!(check_freshness(now + 299, now, FIVE_MINUTES).is_ok());
        let kind = |ts| check_freshness(ts, now, FIVE_MINUTES).unwrap_err().kind();
        assert_eq!(kind(now - 301), RejectionKind::TimestampTooOld);
        assert_eq!(kind(now + 301), RejectionKind::TimestampInFuture);
        assert_eq!(kind(-1), RejectionKind::TimestampTooOld);
        assert_eq!(kind(i64::MIN), RejectionKind::TimestampTooOld);
        assert_eq!(kind(i64::MAX), RejectionKind::TimestampInFuture);
        let huge = Tolerance::symmetric(Duration::MAX);
        assert!(check_freshness(i64::MIN, i64::MAX, huge).is_ok());
    }

    #[test]
    fn unix_timestamps_are_plain_integers() {
        assert_eq!(
            parse_timestamp("1649367553", TimestampFormat::UnixSeconds),
            Ok(1_649_367_553)
        );
        assert_eq!(parse_timestamp("-5", TimestampFormat::UnixSeconds), Ok(-5));
        for bad in [
            "",
            "+5",
            " 5",
            "5 ",
            "1e9",
            "0x10",
            "99999999999999999999",
            "-",
        ] {
            assert_eq!(
                parse_timestamp(bad, TimestampFormat::UnixSeconds)
                    .unwrap_err()
                    .kind(),
                RejectionKind::MalformedTimestamp,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn body_fields_refuse_repeated_keys_and_skip_the_rest() {
        let scheme = Scheme::stripe();
        let ok = scheme
            .body_fields(br#"{"id":"evt_1","nested":{"id":"x"},"type":"a.b"}"#)
            .unwrap();
        assert_eq!(ok.string("id").unwrap().as_deref(), Some("evt_1"));
        assert_eq!(ok.string("type").unwrap().as_deref(), Some("a.b"));
        let repeated = scheme.body_fields(br#"{"id":"a","id":"b"}"#).err().unwrap();
        assert_eq!(repeated.kind(), RejectionKind::InvalidEnvelope);
        let not_json = scheme.body_fields(b"id=a&type=b").err().unwrap();
        assert_eq!(not_json.kind(), RejectionKind::InvalidJson);
        let trailing = scheme.body_fields(br#"{"id":"a"} x"#).err().unwrap();
        assert_eq!(trailing.kind(), RejectionKind::InvalidJson);
    }
}
