//! Sotion's signed event envelope, its event types and typed `data` for the known events.
//!
//! Every Sotion delivery is one JSON object:
//!
//! ```json
//! {"id": "a1b2…", "type": "member.created", "timestamp": "2026-03-28T12:00:00.000Z",
//!  "version": "1", "siteId": "site-uuid", "data": { … }}
//! ```
//!
//! [`SotionEvent`] is the event with its `data` typed by its `type`: match on it to handle each
//! documented type, and acknowledge the others. [`Envelope<T>`] is the object with a `data` of
//! one type `T`. Behind the
//! [`WebhookLayer`](crate::WebhookLayer) it is an axum extractor (feature `axum`); without the
//! layer, [`Envelope::from_bytes`] parses and checks an already verified body.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use bytestring::ByteString;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{Rejection, RejectionKind};
use crate::event::FromEvent;
use crate::meta::WebhookMeta;
use crate::raw_object::FieldName;
pub use crate::raw_object::RawObject;

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
            Self::Other(other) => other,
            known => known.known_str(),
        }
    }

    /// The wire name of a documented type (`""` for [`Other`](Self::Other)).
    fn known_str(&self) -> &'static str {
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
            Self::Other(_) => "",
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

/// A verified Sotion event with typed `data` (default: any JSON object, [`RawObject`]).
///
/// As an axum extractor (feature `axum`) it needs the [`WebhookLayer`](crate::WebhookLayer) in
/// front of the handler; without it the handler answers `500` naming the missing layer. It reads
/// the envelope the layer already parsed and verified (it does not consume the body, so it may
/// stand in any argument position), and only deserializes `data` into `T`; if that fails the
/// answer is `422 invalid_data`. Sotion's data types ([`MemberData`], [`AccessGroupData`],
/// [`AccessGroupMemberData`]) and the default [`RawObject`] never fail on an object, whatever
/// its values; a `T` of your own should be as tolerant (every field optional, unknown fields
/// ignored). [`serde_json::Value`] is not: it refuses a number beyond `f64` (`1e400`), nesting
/// deeper than 128 and a lone surrogate escape, all valid JSON.
///
/// Every event's `data` is read as the same `T`: to handle each event type with its own data,
/// match on [`SotionEvent`] instead.
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
/// // Fields not modelled are kept, as their raw JSON text.
/// assert_eq!(envelope.data.extra.get_as::<String>("plan")?.as_deref(), Some("pro"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<T = RawObject> {
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

/// A verified Sotion event with its typed `data`: a variant per documented event type, and
/// [`Other`](Self::Other) for any other type, with its name and raw `data`.
///
/// Matching on it is how a handler handles "only `member.created`": behind the
/// [`WebhookLayer`](crate::WebhookLayer), extract it with
/// [`Event<SotionEvent>`](crate::extract::Event) (feature `axum`), and take
/// [`WebhookMeta`] for the event's id, site and timestamp. Building it
/// never fails on an authentic delivery: the data types keep fields they do not model, and a
/// field of an unexpected type, in their `extra` object ([`RawObject`]) as raw JSON text, so
/// any valid JSON value is kept, even one that [`serde_json::Value`] cannot hold (a number
/// beyond `f64`, nesting past 128 levels, a lone surrogate escape); and an unknown type is
/// `Other` (answer it `2xx`: Sotion asks receivers to acknowledge events they do not know).
///
/// The exact signed bytes stay available: the raw `Bytes` extractor in the same handler gives
/// the whole envelope, and `Other` keeps its `data` as sent.
///
/// ```
/// use tower_webhook::extract::Event;
/// use tower_webhook::{SotionEvent, WebhookMeta};
///
/// async fn on_event(meta: WebhookMeta, Event(event): Event<SotionEvent>) -> &'static str {
///     match event {
///         SotionEvent::MemberCreated(member) => {
///             println!("welcome {:?} (event {})", member.email, meta.id());
///         }
///         SotionEvent::AccessGroupMemberAdded(added) => {
///             println!("{:?} joined {:?}", added.member_id, added.access_group_id);
///         }
///         other => println!("acknowledging {}", other.name()),
///     }
///     "ok"
/// }
/// # let _ = on_event;
/// ```
///
/// Without the layer, [`FromEvent::from_event`] builds it from a [`WebhookMeta`]
/// and the envelope's `data`. Behind a layer of another scheme, a delivery whose event name is
/// not one of Sotion's is `Other` with the whole body as `data`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SotionEvent {
    /// `member.created`: a new member was added to the site.
    MemberCreated(MemberData),
    /// `member.updated`: a member's details were changed (email, name, status, ...).
    MemberUpdated(MemberData),
    /// `member.auth`: a member logged in or logged out. Sotion does not document what tells the
    /// two apart: look in [`MemberData::extra`].
    MemberAuth(MemberData),
    /// `member.deleted`: a member was removed from the site.
    MemberDeleted(MemberData),
    /// `access-group.created`: a new access group was created.
    AccessGroupCreated(AccessGroupData),
    /// `access-group.updated`: an access group's name or description was changed.
    AccessGroupUpdated(AccessGroupData),
    /// `access-group.deleted`: an access group was deleted.
    AccessGroupDeleted(AccessGroupData),
    /// `access-group.member.added`: a member was added to an access group.
    AccessGroupMemberAdded(AccessGroupMemberData),
    /// `access-group.member.removed`: a member was removed from an access group.
    AccessGroupMemberRemoved(AccessGroupMemberData),
    /// Any other event type: a type Sotion added after this crate's release, kept whole so it
    /// can be acknowledged, logged or forwarded.
    Other {
        /// The event type as sent (`""` if the delivery named none).
        name: String,
        /// The raw `data` object, byte for byte as signed.
        data: Bytes,
    },
}

impl SotionEvent {
    /// The event type as it appears on the wire (`member.created`, or an unknown type's name).
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Other { name, .. } => name,
            known => known.event_type().known_str(),
        }
    }

    /// The event type. An [`Other`](Self::Other) event gives [`EventType::Other`] with its name.
    #[must_use]
    pub fn event_type(&self) -> EventType {
        match self {
            Self::MemberCreated(_) => EventType::MemberCreated,
            Self::MemberUpdated(_) => EventType::MemberUpdated,
            Self::MemberAuth(_) => EventType::MemberAuth,
            Self::MemberDeleted(_) => EventType::MemberDeleted,
            Self::AccessGroupCreated(_) => EventType::AccessGroupCreated,
            Self::AccessGroupUpdated(_) => EventType::AccessGroupUpdated,
            Self::AccessGroupDeleted(_) => EventType::AccessGroupDeleted,
            Self::AccessGroupMemberAdded(_) => EventType::AccessGroupMemberAdded,
            Self::AccessGroupMemberRemoved(_) => EventType::AccessGroupMemberRemoved,
            Self::Other { name, .. } => EventType::Other(name.clone()),
        }
    }
}

impl FromEvent for SotionEvent {
    /// The variant named by [`WebhookMeta::event`], its data read
    /// from `payload` (the envelope's `data`).
    ///
    /// # Errors
    /// Only when `payload` is not a JSON object, which the layer never lets through for
    /// Sotion (it refuses such an envelope with `400 invalid_envelope`).
    fn from_event(meta: &WebhookMeta, payload: &Bytes) -> Result<Self, serde_json::Error> {
        let name = meta.event().unwrap_or_default();
        Ok(match EventType::from(name) {
            EventType::MemberCreated => Self::MemberCreated(serde_json::from_slice(payload)?),
            EventType::MemberUpdated => Self::MemberUpdated(serde_json::from_slice(payload)?),
            EventType::MemberAuth => Self::MemberAuth(serde_json::from_slice(payload)?),
            EventType::MemberDeleted => Self::MemberDeleted(serde_json::from_slice(payload)?),
            EventType::AccessGroupCreated => {
                Self::AccessGroupCreated(serde_json::from_slice(payload)?)
            }
            EventType::AccessGroupUpdated => {
                Self::AccessGroupUpdated(serde_json::from_slice(payload)?)
            }
            EventType::AccessGroupDeleted => {
                Self::AccessGroupDeleted(serde_json::from_slice(payload)?)
            }
            EventType::AccessGroupMemberAdded => {
                Self::AccessGroupMemberAdded(serde_json::from_slice(payload)?)
            }
            EventType::AccessGroupMemberRemoved => {
                Self::AccessGroupMemberRemoved(serde_json::from_slice(payload)?)
            }
            EventType::Other(name) => Self::Other {
                name,
                data: payload.clone(),
            },
        })
    }
}

/// `data` of the `member.*` events: `member.created`, `member.updated`, `member.auth` and
/// `member.deleted`.
///
/// Sotion does not publish the shape of its events' `data` (nor what says whether a
/// `member.auth` was a log-in or a log-out), so this type never refuses an object: every
/// modelled field is optional, every other field is kept in [`extra`](Self::extra) as its raw
/// JSON text (any valid JSON, even a number beyond `f64` or nesting deeper than
/// [`serde_json::Value`] allows), and so is a modelled field whose value is not a string
/// (`"email": 42` leaves `email` `None` and keeps `42` in `extra`). JSON `null` is `None`. Read
/// a kept field as the type you expect with [`RawObject::get_as`].
///
/// ```
/// use tower_webhook::envelope::MemberData;
///
/// let data: MemberData = serde_json::from_str(
///     r#"{"email":"ada@example.com","name":7,"plan":"pro","credits":1e400}"#,
/// )?;
/// assert_eq!(data.email.as_deref(), Some("ada@example.com"));
/// assert_eq!(data.name, None);
/// // A modelled field of the wrong type is kept, and so are the fields not modelled.
/// assert_eq!(data.extra.get_as::<u32>("name")?, Some(7));
/// assert_eq!(data.extra.get_as::<String>("plan")?.as_deref(), Some("pro"));
/// // As sent, even what no `f64` holds.
/// assert_eq!(data.extra.get("credits").map(|raw| raw.get()), Some("1e400"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MemberData {
    /// The member's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The member's email address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The member's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The member's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Every field not modelled above, and every modelled field whose value is not a string,
    /// each as its raw JSON text, as sent.
    #[serde(flatten)]
    pub extra: RawObject,
}

impl<'de> Deserialize<'de> for MemberData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ([id, email, name, status], extra) =
            deserializer.deserialize_map(TolerantFields(&["id", "email", "name", "status"]))?;
        Ok(Self {
            id,
            email,
            name,
            status,
            extra,
        })
    }
}

/// `data` of the `access-group.created`, `access-group.updated` and `access-group.deleted`
/// events.
///
/// Never refuses an object: every modelled field is optional, and every other field, or
/// modelled field whose value is not a string, is kept in [`extra`](Self::extra) as its raw
/// JSON text (as in [`MemberData`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AccessGroupData {
    /// The access group's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The access group's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The access group's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Every field not modelled above, and every modelled field whose value is not a string,
    /// each as its raw JSON text, as sent.
    #[serde(flatten)]
    pub extra: RawObject,
}

impl<'de> Deserialize<'de> for AccessGroupData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ([id, name, description], extra) =
            deserializer.deserialize_map(TolerantFields(&["id", "name", "description"]))?;
        Ok(Self {
            id,
            name,
            description,
            extra,
        })
    }
}

/// `data` of the `access-group.member.added` and `access-group.member.removed` events.
///
/// Never refuses an object: every modelled field is optional, and every other field, or
/// modelled field whose value is not a string, is kept in [`extra`](Self::extra) as its raw
/// JSON text (as in [`MemberData`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AccessGroupMemberData {
    /// The access group's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_group_id: Option<String>,
    /// The member's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    /// Every field not modelled above, and every modelled field whose value is not a string,
    /// each as its raw JSON text, as sent.
    #[serde(flatten)]
    pub extra: RawObject,
}

impl<'de> Deserialize<'de> for AccessGroupMemberData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ([access_group_id, member_id], extra) =
            deserializer.deserialize_map(TolerantFields(&["accessGroupId", "memberId"]))?;
        Ok(Self {
            access_group_id,
            member_id,
            extra,
        })
    }
}

/// Reads a JSON object into the string fields named `.0` (in that order) and a [`RawObject`]
/// of the rest: a named field whose value is a string fills its slot, `null` leaves it `None`,
/// any other value (a lone surrogate escape in a string included) goes to the object under its
/// name, as its raw JSON text, so that drift in the sender's data is kept, not refused. Of a
/// repeated field, the last value counts.
struct TolerantFields<const N: usize>(&'static [&'static str; N]);

impl<'de, const N: usize> Visitor<'de> for TolerantFields<N> {
    type Value = ([Option<String>; N], RawObject);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut slots: [Option<String>; N] = std::array::from_fn(|_| None);
        let mut extra = RawObject::new();
        while let Some(FieldName(name)) = map.next_key()? {
            let value: Box<RawValue> = map.next_value()?;
            let Some(slot) = self.0.iter().position(|field| *field == name) else {
                extra.insert(name, value);
                continue;
            };
            if let Ok(text) = serde_json::from_str::<Option<String>>(value.get()) {
                slots[slot] = text;
                extra.remove(&name);
            } else {
                slots[slot] = None;
                extra.insert(name, value);
            }
        }
        Ok((slots, extra))
    }
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
        assert_eq!(data.extra.get("role").unwrap().get(), r#""admin""#);
    }

    #[test]
    fn typed_data_keeps_a_modelled_field_of_the_wrong_type_in_extra() {
        let data: MemberData =
            serde_json::from_str(r#"{"id":"m1","email":["a@b.c"],"name":null,"status":3}"#)
                .unwrap();
        assert_eq!(data.id.as_deref(), Some("m1"));
        assert_eq!((data.email, data.name, data.status), (None, None, None));
        assert_eq!(data.extra.get("email").unwrap().get(), r#"["a@b.c"]"#);
        assert_eq!(data.extra.get_as::<u8>("status").unwrap(), Some(3));
        assert!(!data.extra.contains_key("name"));

        let data: AccessGroupData = serde_json::from_str(r#"{"name":false}"#).unwrap();
        assert_eq!(data.name, None);
        assert_eq!(data.extra.get_as::<bool>("name").unwrap(), Some(false));
        let data: AccessGroupMemberData = serde_json::from_str(r#"{"memberId":12}"#).unwrap();
        assert_eq!(data.member_id, None);
        assert_eq!(data.extra.get_as::<u8>("memberId").unwrap(), Some(12));
    }

    #[test]
    fn typed_data_takes_the_last_of_a_repeated_field_and_reads_escaped_names() {
        let data: MemberData = serde_json::from_str(r#"{"email":"a@b.c","email":5}"#).unwrap();
        assert_eq!(data.email, None);
        assert_eq!(data.extra.get("email").unwrap().get(), "5");
        let data: MemberData = serde_json::from_str(r#"{"email":5,"email":"a@b.c"}"#).unwrap();
        assert_eq!(data.email.as_deref(), Some("a@b.c"));
        assert!(data.extra.is_empty());
        let data: MemberData =
            serde_json::from_str(r#"{"em\u0061il":"a@b.c","pl\u0061n":1}"#).unwrap();
        assert_eq!(data.email.as_deref(), Some("a@b.c"));
        assert_eq!(data.extra.get("plan").unwrap().get(), "1");
    }

    #[test]
    fn typed_data_serializes_back_to_what_was_sent() {
        let sent = r#"{"accessGroupId":"g1","memberId":7,"role":"admin"}"#;
        let data: AccessGroupMemberData = serde_json::from_str(sent).unwrap();
        assert_eq!(
            serde_json::to_value(&data).unwrap(),
            serde_json::from_str::<serde_json::Value>(sent).unwrap()
        );
    }

    #[test]
    fn typed_data_keeps_any_json_value_as_sent() {
        let digits = "1".repeat(4_000);
        let deep = format!("{}0{}", "[".repeat(300), "]".repeat(300));
        let sent = format!(
            r#"{{"id":"m1","email":1e400,"name":"Ada \ud83d","status":-0,"n":{digits},"deep":{deep},"e":-1e-999}}"#
        );
        let data: MemberData = serde_json::from_str(&sent).unwrap();
        assert_eq!(data.id.as_deref(), Some("m1"));
        assert_eq!(
            (&data.email, &data.name, &data.status),
            (&None, &None, &None)
        );
        let raw = |name| data.extra.get(name).unwrap().get();
        assert_eq!(raw("email"), "1e400");
        assert_eq!(raw("name"), r#""Ada \ud83d""#);
        assert_eq!(raw("status"), "-0");
        assert_eq!(raw("n"), digits);
        assert_eq!(raw("deep"), deep);
        assert_eq!(raw("e"), "-1e-999");
        // Written back as JSON, each kept value is its text as sent.
        let written = serde_json::to_string(&data).unwrap();
        let again: MemberData = serde_json::from_str(&written).unwrap();
        assert_eq!(again, data);
        assert!(written.contains(&digits) && written.contains(&deep));
        // Read from a `Value` and from a reader too.
        let value = serde_json::json!({"id": "m1", "plan": {"seats": 3}});
        let data: MemberData = serde_json::from_value(value).unwrap();
        assert_eq!(data.extra.get("plan").unwrap().get(), r#"{"seats":3}"#);
        let data: MemberData = serde_json::from_reader(sent.as_bytes()).unwrap();
        assert_eq!(data.extra.get("n").unwrap().get(), digits);
    }

    #[test]
    fn the_default_envelope_keeps_any_data_object() {
        let bytes = body(r#""e""#, r#""1""#, r#"{"n":1e400,"s":"\udfff"}"#);
        let envelope = Envelope::<RawObject>::from_bytes(&bytes).unwrap();
        assert_eq!(envelope.data.get("n").unwrap().get(), "1e400");
        assert_eq!(envelope.data.get("s").unwrap().get(), r#""\udfff""#);
        let envelope: Envelope = Envelope::from_bytes(&bytes).unwrap();
        assert_eq!(envelope.data.len(), 2);
        assert!(matches!(
            Envelope::<serde_json::Value>::from_bytes(&bytes),
            Err(EnvelopeError::Data(_))
        ));
    }

    #[test]
    fn typed_data_refuses_only_what_is_not_an_object() {
        assert!(serde_json::from_str::<MemberData>("{}").is_ok());
        assert!(serde_json::from_str::<MemberData>("[]").is_err());
        assert!(serde_json::from_str::<MemberData>(r#""text""#).is_err());
    }

    #[test]
    fn an_envelope_of_member_data_accepts_drifted_data() {
        let bytes = body(r#""e""#, r#""1""#, r#"{"email":42,"name":"Ada"}"#);
        let envelope = Envelope::<MemberData>::from_bytes(&bytes).unwrap();
        assert_eq!(envelope.data.name.as_deref(), Some("Ada"));
        assert_eq!(envelope.data.extra.get("email").unwrap().get(), "42");
    }

    #[test]
    fn sotion_event_names_match_event_types() {
        let other = SotionEvent::Other {
            name: "site.renamed".into(),
            data: Bytes::from_static(b"{}"),
        };
        assert_eq!(other.name(), "site.renamed");
        assert_eq!(other.event_type(), EventType::Other("site.renamed".into()));
        let created = SotionEvent::MemberCreated(MemberData::default());
        assert_eq!(created.name(), "member.created");
        assert_eq!(created.event_type(), EventType::MemberCreated);
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
