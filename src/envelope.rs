//! Sotion's signed event envelope, its event types and typed `data` for the known events.
//!
//! Every Sotion delivery is one JSON object:
//!
//! ```json
//! {"id": "a1b2…", "type": "member.created", "timestamp": "2026-03-28T12:00:00.000Z",
//!  "version": "1", "siteId": "site-uuid", "data": { … }}
//! ```
//!
//! [`Envelope<T>`] is that object with a typed `data`. Behind the
//! [`WebhookLayer`](crate::WebhookLayer) it is an axum extractor (feature `axum`); without the
//! layer, [`Envelope::from_bytes`] parses and checks an already verified body.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use bytestring::ByteString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{Rejection, RejectionKind};

/// The longest event id (and site id) accepted, in bytes.
pub const MAX_ID_LEN: usize = 255;

/// The envelope versions this crate understands.
pub const SUPPORTED_VERSIONS: &[&str] = &["1"];

/// A Sotion event type: the nine documented ones, and any other string kept as it is.
///
/// An unknown type is not an error: Sotion asks receivers to answer `200` to events they do not
/// know, so a handler can match on [`EventType::Other`] and acknowledge it.
///
/// ```
/// use tower_webhook::EventType;
///
/// assert_eq!("member.created".parse::<EventType>(), Ok(EventType::MemberCreated));
/// assert_eq!(EventType::from("site.renamed"), EventType::Other("site.renamed".into()));
/// assert_eq!(EventType::AccessGroupMemberAdded.as_str(), "access-group.member.added");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// `member.created`: a new member was added to the site.
    MemberCreated,
    /// `member.updated`: a member's details were changed (email, name, status, ...).
    MemberUpdated,
    /// `member.auth`: a member logged in or logged out.
    MemberAuth,
    /// `member.deleted`: a member was removed from the site.
    MemberDeleted,
    /// `access-group.created`: a new access group was created.
    AccessGroupCreated,
    /// `access-group.updated`: an access group's name or description was changed.
    AccessGroupUpdated,
    /// `access-group.deleted`: an access group was deleted.
    AccessGroupDeleted,
    /// `access-group.member.added`: a member was added to an access group.
    AccessGroupMemberAdded,
    /// `access-group.member.removed`: a member was removed from an access group.
    AccessGroupMemberRemoved,
    /// Any other type string, kept as sent.
    Other(String),
}

impl EventType {
    /// The nine documented Sotion event types.
    pub const KNOWN: [EventType; 9] = [
        Self::MemberCreated,
        Self::MemberUpdated,
        Self::MemberAuth,
        Self::MemberDeleted,
        Self::AccessGroupCreated,
        Self::AccessGroupUpdated,
        Self::AccessGroupDeleted,
        Self::AccessGroupMemberAdded,
        Self::AccessGroupMemberRemoved,
    ];

    /// The type as it appears on the wire.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::MemberCreated => "member.created",
            Self::MemberUpdated => "member.updated",
            Self::MemberAuth => "member.auth",
            Self::MemberDeleted => "member.deleted",
            Self::AccessGroupCreated => "access-group.created",
            Self::AccessGroupUpdated => "access-group.updated",
            Self::AccessGroupDeleted => "access-group.deleted",
            Self::AccessGroupMemberAdded => "access-group.member.added",
            Self::AccessGroupMemberRemoved => "access-group.member.removed",
            Self::Other(other) => other,
        }
    }

    /// Whether this is one of the nine documented types.
    #[must_use]
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Other(_))
    }
}

impl From<&str> for EventType {
    fn from(s: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|known| known.as_str() == s)
            .cloned()
            .unwrap_or_else(|| Self::Other(s.to_owned()))
    }
}

impl FromStr for EventType {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from(s))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Self::from(s.as_ref()))
    }
}

/// A verified Sotion event with typed `data` (default: any JSON, [`serde_json::Value`]).
///
/// As an axum extractor (feature `axum`) it needs the [`WebhookLayer`](crate::WebhookLayer) in
/// front of the handler; without it the handler answers `500` naming the missing layer. It reads
/// the envelope the layer already parsed and verified (it does not consume the body, so it may
/// stand in any argument position), and only deserializes `data` into `T`; if that fails the
/// answer is `422 invalid_data`.
///
/// ```
/// use tower_webhook::{Envelope, EventType};
/// use tower_webhook::envelope::MemberData;
///
/// let body = br#"{"id":"evt_1","type":"member.created","timestamp":"2026-03-28T12:00:00.000Z",
///     "version":"1","siteId":"site_1","data":{"email":"ada@example.com","plan":"pro"}}"#;
/// let envelope = Envelope::<MemberData>::from_bytes(body)?;
/// assert_eq!(envelope.event_type, EventType::MemberCreated);
/// assert_eq!(envelope.data.email.as_deref(), Some("ada@example.com"));
/// assert_eq!(envelope.data.extra["plan"], "pro"); // fields not modelled are kept
/// # Ok::<(), tower_webhook::envelope::EnvelopeError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<T = serde_json::Value> {
    /// The event id, unique per event and kept across retries: the idempotency key.
    pub id: String,
    /// The event type.
    pub event_type: EventType,
    /// When the event occurred.
    pub timestamp: OffsetDateTime,
    /// The envelope schema version (currently `"1"`).
    pub version: String,
    /// The site that generated the event.
    pub site_id: String,
    /// The event-specific payload.
    pub data: T,
}

impl<T: DeserializeOwned> Envelope<T> {
    /// Parses and checks an envelope from bytes whose signature has **already been verified**
    /// (for example with [`verify`](crate::verify::verify)). Checks the same rules as the layer:
    /// well-formed JSON, every field present and of the right type, a valid event id, a known
    /// version, an RFC 3339 timestamp, an object as `data`, and then `data` as `T`.
    ///
    /// # Errors
    /// [`EnvelopeError::Envelope`] when the envelope itself is invalid,
    /// [`EnvelopeError::Data`] when `data` does not deserialize into `T`.
    pub fn from_bytes(body: &[u8]) -> Result<Self, EnvelopeError> {
        let parsed = ParsedEnvelope::parse(&Bytes::copy_from_slice(body))
            .map_err(EnvelopeError::Envelope)?;
        let data = serde_json::from_slice(&parsed.data).map_err(EnvelopeError::Data)?;
        Ok(Self {
            id: parsed.id.to_string(),
            event_type: EventType::from(&*parsed.event),
            timestamp: parsed.timestamp,
            version: parsed.version.to_string(),
            site_id: parsed.site_id.to_string(),
            data,
        })
    }
}

/// Why [`Envelope::from_bytes`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The body is not a valid envelope; the rejection says which rule failed.
    #[error("{0}")]
    Envelope(Rejection),
    /// The envelope is valid but its `data` does not deserialize into the requested type.
    #[error("the event's data does not match the expected type: {0}")]
    Data(serde_json::Error),
}

/// `data` of the `member.*` events.
///
/// Sotion does not publish the full shape, so every modelled field is optional and every other
/// field is kept in [`extra`](Self::extra).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberData {
    /// The member's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The member's email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The member's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The member's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Every field not modelled above, as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `data` of the `access-group.created|updated|deleted` events.
///
/// Every modelled field is optional and every other field is kept in [`extra`](Self::extra).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessGroupData {
    /// The access group's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The access group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The access group's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Every field not modelled above, as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `data` of the `access-group.member.added|removed` events.
///
/// Every modelled field is optional and every other field is kept in [`extra`](Self::extra).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessGroupMemberData {
    /// The access group's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_group_id: Option<String>,
    /// The member's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    /// Every field not modelled above, as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The envelope fields as they are on the wire; `data` is only located, not parsed into a type.
#[derive(Deserialize)]
struct WireEnvelope<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    version: Cow<'a, str>,
    #[serde(rename = "siteId", borrow)]
    site_id: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// A checked envelope whose strings and raw `data` share the verified body's buffer (no copy,
/// unless a string had JSON escapes to undo).
#[derive(Debug, Clone)]
pub(crate) struct ParsedEnvelope {
    pub(crate) id: ByteString,
    pub(crate) event: ByteString,
    pub(crate) timestamp: OffsetDateTime,
    pub(crate) version: ByteString,
    pub(crate) site_id: ByteString,
    pub(crate) data: Bytes,
}

impl ParsedEnvelope {
    /// Parses and checks the envelope. Called only on bytes whose signature verified.
    pub(crate) fn parse(body: &Bytes) -> Result<Self, Rejection> {
        let wire: WireEnvelope<'_> = serde_json::from_slice(body).map_err(|error| {
            Rejection::from_json(
                &error,
                "the body is not a Sotion envelope: a field is missing, repeated or of the wrong type",
            )
        })?;
        check_id(&wire.id)
            .map_err(|message| Rejection::new(RejectionKind::InvalidEventId, message))?;
        check_token(&wire.event).map_err(|()| {
            Rejection::new(
                RejectionKind::InvalidEnvelope,
                "`type` must be 1 to 255 bytes without control characters",
            )
        })?;
        check_token(&wire.site_id).map_err(|()| {
            Rejection::new(
                RejectionKind::InvalidEnvelope,
                "`siteId` must be 1 to 255 bytes without control characters",
            )
        })?;
        if !SUPPORTED_VERSIONS.contains(&wire.version.as_ref()) {
            return Err(Rejection::new(
                RejectionKind::UnsupportedVersion,
                "the envelope version is not supported (this receiver understands \"1\")",
            ));
        }
        let timestamp = OffsetDateTime::parse(&wire.timestamp, &Rfc3339).map_err(|_| {
            Rejection::new(
                RejectionKind::InvalidEnvelope,
                "`timestamp` is not an RFC 3339 date-time",
            )
        })?;
        let raw = wire.data.get();
        if !raw.starts_with('{') {
            return Err(Rejection::new(
                RejectionKind::InvalidEnvelope,
                "`data` must be a JSON object",
            ));
        }
        let data = subslice(body, raw.as_bytes()).ok_or(Rejection::new(
            RejectionKind::InvalidEnvelope,
            "`data` could not be located in the body",
        ))?;
        Ok(Self {
            id: text(body, wire.id),
            event: text(body, wire.event),
            timestamp,
            version: text(body, wire.version),
            site_id: text(body, wire.site_id),
            data,
        })
    }
}

/// A string of the body as a `ByteString` sharing the body's buffer when it was borrowed from
/// it, or owning the unescaped copy.
fn text(body: &Bytes, value: Cow<'_, str>) -> ByteString {
    match value {
        Cow::Borrowed(borrowed) => subslice(body, borrowed.as_bytes())
            .and_then(|bytes| ByteString::try_from(bytes).ok())
            .unwrap_or_else(|| ByteString::from(borrowed)),
        Cow::Owned(owned) => ByteString::from(owned),
    }
}

/// The part of `whole` that `part` borrows from, as `Bytes` sharing `whole`'s buffer.
fn subslice(whole: &Bytes, part: &[u8]) -> Option<Bytes> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then(|| whole.slice(start..end))
}

/// An event id: 1 to [`MAX_ID_LEN`] bytes, no control characters.
pub(crate) fn check_id(id: &str) -> Result<(), &'static str> {
    check_token(id).map_err(|()| "the event id must be 1 to 255 bytes without control characters")
}

pub(crate) fn check_token(value: &str) -> Result<(), ()> {
    if value.is_empty() || value.len() > MAX_ID_LEN || value.chars().any(char::is_control) {
        Err(())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(id: &str, version: &str, data: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"id":{id},"type":"member.created","timestamp":"2026-03-28T12:00:00.000Z","version":{version},"siteId":"site_1","data":{data}}}"#
        ))
    }

    fn kind_of(body: &Bytes) -> RejectionKind {
        ParsedEnvelope::parse(body).unwrap_err().kind()
    }

    #[test]
    fn parses_a_documented_envelope_and_slices_data_without_copying() {
        let bytes = body(r#""evt_1""#, r#""1""#, r#"{"email":"a@b.c"}"#);
        let parsed = ParsedEnvelope::parse(&bytes).unwrap();
        assert_eq!(parsed.id, "evt_1");
        assert_eq!(parsed.event, "member.created");
        assert_eq!(parsed.site_id, "site_1");
        assert_eq!(parsed.timestamp.unix_timestamp(), 1_774_699_200);
        assert_eq!(&parsed.data[..], br#"{"email":"a@b.c"}"#);
    }

    #[test]
    fn keeps_escaped_ids_exactly() {
        let bytes = body(r#""evt\u00e9\n""#, r#""1""#, "{}");
        // A newline is a control character: refused.
        assert_eq!(kind_of(&bytes), RejectionKind::InvalidEventId);
        let bytes = body(r#""evt\u00e9""#, r#""1""#, "{}");
        assert_eq!(ParsedEnvelope::parse(&bytes).unwrap().id, "evté");
    }

    #[test]
    fn refuses_bad_ids() {
        assert_eq!(
            kind_of(&body(r#""""#, r#""1""#, "{}")),
            RejectionKind::InvalidEventId
        );
        let long = format!("\"{}\"", "a".repeat(256));
        assert_eq!(
            kind_of(&body(&long, r#""1""#, "{}")),
            RejectionKind::InvalidEventId
        );
        let max = format!("\"{}\"", "a".repeat(255));
        assert!(ParsedEnvelope::parse(&body(&max, r#""1""#, "{}")).is_ok());
        assert_eq!(
            kind_of(&body(r#""a\u0000b""#, r#""1""#, "{}")),
            RejectionKind::InvalidEventId
        );
        assert_eq!(
            kind_of(&body("42", r#""1""#, "{}")),
            RejectionKind::InvalidEnvelope
        );
    }

    #[test]
    fn refuses_unknown_versions_and_non_object_data() {
        assert_eq!(
            kind_of(&body(r#""e""#, r#""2""#, "{}")),
            RejectionKind::UnsupportedVersion
        );
        assert_eq!(
            kind_of(&body(r#""e""#, "1", "{}")),
            RejectionKind::InvalidEnvelope
        );
        assert_eq!(
            kind_of(&body(r#""e""#, r#""1""#, "[]")),
            RejectionKind::InvalidEnvelope
        );
        assert_eq!(
            kind_of(&body(r#""e""#, r#""1""#, "null")),
            RejectionKind::InvalidEnvelope
        );
    }

    #[test]
    fn tells_syntax_errors_from_shape_errors() {
        assert_eq!(
            kind_of(&Bytes::from_static(b"")),
            RejectionKind::InvalidJson
        );
        assert_eq!(
            kind_of(&Bytes::from_static(b"{\"id\":")),
            RejectionKind::InvalidJson
        );
        assert_eq!(
            kind_of(&Bytes::from_static(b"[1,2]")),
            RejectionKind::InvalidEnvelope
        );
        assert_eq!(
            kind_of(&Bytes::from_static(b"{}")),
            RejectionKind::InvalidEnvelope
        );
        let mut trailing = body(r#""e""#, r#""1""#, "{}").to_vec();
        trailing.extend_from_slice(b" x");
        assert_eq!(kind_of(&Bytes::from(trailing)), RejectionKind::InvalidJson);
    }

    #[test]
    fn refuses_a_repeated_field() {
        let bytes = Bytes::from_static(
            br#"{"id":"a","id":"b","type":"member.created","timestamp":"2026-03-28T12:00:00Z","version":"1","siteId":"s","data":{}}"#,
        );
        assert_eq!(kind_of(&bytes), RejectionKind::InvalidEnvelope);
    }

    #[test]
    fn refuses_a_timestamp_that_is_not_rfc3339() {
        let bytes = Bytes::from_static(
            br#"{"id":"a","type":"member.created","timestamp":"yesterday","version":"1","siteId":"s","data":{}}"#,
        );
        assert_eq!(kind_of(&bytes), RejectionKind::InvalidEnvelope);
    }

    #[test]
    fn event_types_round_trip_and_keep_unknown_strings() {
        for known in EventType::KNOWN {
            assert_eq!(EventType::from(known.as_str()), known);
            assert!(known.is_known());
        }
        let other: EventType = serde_json::from_str(r#""site.renamed""#).unwrap();
        assert_eq!(other, EventType::Other("site.renamed".into()));
        assert_eq!(serde_json::to_string(&other).unwrap(), r#""site.renamed""#);
    }

    #[test]
    fn typed_data_keeps_fields_it_does_not_model() {
        let data: AccessGroupMemberData =
            serde_json::from_str(r#"{"accessGroupId":"g1","memberId":"m1","role":"admin"}"#)
                .unwrap();
        assert_eq!(data.access_group_id.as_deref(), Some("g1"));
        assert_eq!(data.member_id.as_deref(), Some("m1"));
        assert_eq!(data.extra["role"], "admin");
    }

    #[test]
    fn from_bytes_reports_data_that_does_not_fit_the_type() {
        #[derive(Debug, Deserialize)]
        struct Strict {
            #[allow(dead_code)]
            required: u32,
        }
        let bytes = body(r#""e""#, r#""1""#, r#"{"other":1}"#);
        assert!(matches!(
            Envelope::<Strict>::from_bytes(&bytes),
            Err(EnvelopeError::Data(_))
        ));
    }
}
