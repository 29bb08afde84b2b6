//! What the admin calls ask for: a [`Filter`] on the stored deliveries, and the [`Page`] of
//! them [`InboxBackend::search`](super::InboxBackend::search) answers with.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::idempotency::IdempotencyKey;

use super::delivery::{Record, Status};

/// The most a [`Filter`] asks for in one page: 1,000.
pub const MAX_PAGE: usize = 1_000;

/// Which stored deliveries [`InboxBackend::search`](super::InboxBackend::search) returns: every
/// condition set must hold. Oldest accepted first, from after [`after`](Self::after), at most
/// [`limit`](Self::limit) (default 100, at most [`MAX_PAGE`]).
///
/// ```
/// use tower_webhook::inbox::{Filter, Status};
///
/// let filter = Filter::new().status(Status::Dead).event("member.created").limit(50);
/// assert_eq!(filter.limit_or_default(), 50);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Filter {
    /// Only deliveries in this status.
    pub status: Option<Status>,
    /// Only deliveries of this event type (exactly).
    pub event: Option<String>,
    /// Only deliveries with this event id (the sender's, [`Facts::id`](super::Facts::id)):
    /// one per endpoint and scope that received it.
    pub id: Option<String>,
    /// Only deliveries accepted at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only deliveries after this position in the order (the previous page's
    /// [`Page::next`]).
    pub after: Option<Cursor>,
    /// How many at most; `0` means the default, 100.
    pub limit: usize,
}

impl Filter {
    /// Every delivery, the first 100.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Only deliveries in `status`.
    #[must_use]
    pub fn status(mut self, status: Status) -> Self {
        self.status = Some(status);
        self
    }

    /// Only deliveries of event type `event`.
    #[must_use]
    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    /// Only deliveries with event id `id`.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Only deliveries accepted at or after `since`.
    #[must_use]
    pub fn since(mut self, since: OffsetDateTime) -> Self {
        self.since = Some(since);
        self
    }

    /// Only deliveries after `cursor` (a previous page's [`Page::next`]).
    #[must_use]
    pub fn after(mut self, cursor: Cursor) -> Self {
        self.after = Some(cursor);
        self
    }

    /// At most `limit` deliveries (capped at [`MAX_PAGE`]; `0` means 100).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The page size this filter asks for: its limit, 100 when unset, at most [`MAX_PAGE`].
    #[must_use]
    pub fn limit_or_default(&self) -> usize {
        match self.limit {
            0 => 100,
            limit => limit.min(MAX_PAGE),
        }
    }

    /// Whether `record` meets every condition but the page's position and size. A backend
    /// that filters in its store need not call it; the default
    /// [`search`](super::InboxBackend::search) does.
    #[must_use]
    pub fn matches(&self, record: &Record) -> bool {
        self.status.is_none_or(|status| record.status() == status)
            && self
                .event
                .as_deref()
                .is_none_or(|event| record.delivery.facts().event.as_deref() == Some(event))
            && self
                .id
                .as_deref()
                .is_none_or(|id| record.delivery.facts().id == id)
            && self.since.is_none_or(|since| record.accepted_at >= since)
            && self
                .after
                .as_ref()
                .is_none_or(|after| Cursor::of(record) > *after)
    }
}

/// A position in the admin order of deliveries: by time accepted, then by key. Written as
/// `<accepted, Unix nanoseconds>.<key, 64 hex digits>`, and read back from that (an API's or
/// a command line's `--after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// When the delivery at this position was accepted.
    pub accepted_at: OffsetDateTime,
    /// Its key.
    pub key: IdempotencyKey,
}

impl Cursor {
    /// The position of `record`.
    #[must_use]
    pub fn of(record: &Record) -> Self {
        Self {
            accepted_at: record.accepted_at,
            key: *record.delivery.key(),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            self.accepted_at.unix_timestamp_nanos(),
            self.key.to_hex()
        )
    }
}

/// The error of reading a [`Cursor`] from text that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor (expected <unix nanoseconds>.<64 hex digits>)")]
pub struct InvalidCursor;

impl FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (nanos, key) = text.split_once('.').ok_or(InvalidCursor)?;
        let nanos: i128 = nanos.parse().map_err(|_| InvalidCursor)?;
        let accepted_at =
            OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| InvalidCursor)?;
        let key = IdempotencyKey::from_hex(key).ok_or(InvalidCursor)?;
        Ok(Self { accepted_at, key })
    }
}

/// One page of [`InboxBackend::search`](super::InboxBackend::search)'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Page {
    /// The deliveries, oldest accepted first.
    pub records: Vec<Record>,
    /// Where the next page starts ([`Filter::after`]), when this one was full: there may be
    /// more.
    pub next: Option<Cursor>,
}

impl Page {
    /// A page of `records` (in order) for a filter that asked for `limit`: `next` is set when
    /// it is full. For backends.
    #[must_use]
    pub fn new(records: Vec<Record>, limit: usize) -> Self {
        let next = if records.len() >= limit {
            records.last().map(Cursor::of)
        } else {
            None
        };
        Self { records, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_through_their_text() {
        let cursor = Cursor {
            accepted_at: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            key: IdempotencyKey::new("sotion", "site", "evt_1"),
        };
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        assert_eq!("12".parse::<Cursor>(), Err(InvalidCursor));
        assert_eq!("12.zz".parse::<Cursor>(), Err(InvalidCursor));
    }

    #[test]
    fn limits_default_and_cap() {
        assert_eq!(Filter::new().limit_or_default(), 100);
        assert_eq!(Filter::new().limit(5).limit_or_default(), 5);
        assert_eq!(Filter::new().limit(5_000).limit_or_default(), MAX_PAGE);
    }
}
