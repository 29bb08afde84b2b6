use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use time::OffsetDateTime;

use crate::idempotency::IdempotencyKey;
use crate::meta::WebhookMeta;

/// Whether a header is never stored in an inbox, whatever the caller passes to
/// [`Delivery::new`]: `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, and every
/// name containing `token`, `secret`, `password`, `api-key` or `apikey` (names are lower-case
/// in `http`).
#[must_use]
pub fn is_never_stored(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || ["token", "secret", "password", "api-key", "apikey"]
        .iter()
        .any(|word| name.contains(word))
}

/// The verified facts about a delivery, as [`WebhookMeta`] gives them: what an inbox stores
/// besides the body, the key, the path and the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Facts {
    /// [`WebhookMeta::scheme`].
    pub scheme: String,
    /// [`WebhookMeta::id`]: the event id.
    pub id: String,
    /// [`WebhookMeta::event`].
    pub event: Option<String>,
    /// [`WebhookMeta::action`].
    pub action: Option<String>,
    /// [`WebhookMeta::delivery`]: the (unsigned) delivery-attempt id of the accepted attempt.
    pub delivery: Option<String>,
    /// [`WebhookMeta::scope`].
    pub scope: Option<String>,
    /// [`WebhookMeta::tenant`].
    pub tenant: Option<String>,
    /// [`WebhookMeta::timestamp`].
    pub timestamp: Option<OffsetDateTime>,
    /// [`WebhookMeta::version`].
    pub version: Option<String>,
}

impl Facts {
    /// Facts with only the scheme and the event id set (the other fields are public: set them
    /// after). For a backend reading a stored delivery back; the layer uses
    /// [`from_meta`](Self::from_meta).
    #[must_use]
    pub fn new(scheme: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            scheme: scheme.into(),
            id: id.into(),
            event: None,
            action: None,
            delivery: None,
            scope: None,
            tenant: None,
            timestamp: None,
            version: None,
        }
    }

    /// The facts of a verified delivery.
    #[must_use]
    pub fn from_meta(meta: &WebhookMeta) -> Self {
        Self {
            scheme: meta.scheme().to_owned(),
            id: meta.id().to_owned(),
            event: meta.event().map(str::to_owned),
            action: meta.action().map(str::to_owned),
            delivery: meta.delivery().map(str::to_owned),
            scope: meta.scope().map(str::to_owned),
            tenant: meta.tenant().map(str::to_owned),
            timestamp: meta.timestamp(),
            version: meta.version().map(str::to_owned),
        }
    }
}

/// A verified delivery, as an inbox stores it: made by the layer after verification, never from
/// an unauthenticated request.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    pub(crate) key: IdempotencyKey,
    pub(crate) facts: Facts,
    pub(crate) path: String,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
}

impl fmt::Debug for Delivery {
    // Never the body, nor header values: a `Debug` line may end up in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("key", &self.key)
            .field("facts", &self.facts)
            .field("path", &self.path)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Delivery {
    /// The delivery verified as `meta`, keyed by `key` (the key the layer's guard uses), received
    /// at `path` (a query string is cut off: some senders' URLs carry a token there), with the
    /// `headers` the scheme read and the raw `body`. Headers that carry credentials are dropped
    /// ([`is_never_stored`]).
    #[must_use]
    pub fn new(
        meta: &WebhookMeta,
        key: IdempotencyKey,
        path: &str,
        headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
        body: Bytes,
    ) -> Self {
        Self::from_facts(Facts::from_meta(meta), key, path, headers, body)
    }

    /// As [`new`](Self::new), from facts already extracted.
    #[must_use]
    pub fn from_facts(
        facts: Facts,
        key: IdempotencyKey,
        path: &str,
        headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
        body: Bytes,
    ) -> Self {
        let path = path.split('?').next().unwrap_or_default().to_owned();
        let headers = headers
            .into_iter()
            .filter(|(name, _)| !is_never_stored(name))
            .collect();
        Self {
            key,
            facts,
            path,
            headers,
            body,
        }
    }

    /// The idempotency key: one stored delivery per key.
    #[must_use]
    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// The verified facts.
    #[must_use]
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// The request's path, without its query string.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The headers the scheme read, less those never stored.
    #[must_use]
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// The raw body, exactly the bytes whose signature was verified.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// Where a stored delivery is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeliveryState {
    /// Waiting for a worker: due now, or at a later time (a retry's backoff).
    Pending,
    /// Claimed by a worker whose lease has not been given back; claimable again once the lease
    /// runs out.
    Running,
    /// Its handler succeeded. Kept for the deduplication window, then pruned.
    Done,
    /// Given up after the maximum attempts, with the last error. Kept until replayed or purged.
    Dead,
}

impl DeliveryState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Running, Self::Done, Self::Dead];

    /// The state's name, as the SQL backends store it: `pending`, `running`, `done`, `dead`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`DeliveryState`] from a name it does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown delivery state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for DeliveryState {
    type Err = UnknownState;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
            .ok_or_else(|| UnknownState(name.to_owned()))
    }
}

/// A stored delivery and where it is, as the admin calls ([`InboxBackend::get`],
/// [`InboxBackend::list`]) and [`InboxBackend::claim`] return it.
///
/// [`InboxBackend::get`]: super::InboxBackend::get
/// [`InboxBackend::list`]: super::InboxBackend::list
/// [`InboxBackend::claim`]: super::InboxBackend::claim
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// What was stored.
    pub delivery: Delivery,
    /// Where it is.
    pub state: DeliveryState,
    /// How many times it was claimed (attempts started), less those released unfinished.
    pub attempts: u32,
    /// The error of the last failed attempt, if any.
    pub last_error: Option<String>,
    /// When it was accepted.
    pub accepted_at: OffsetDateTime,
    /// Pending: when it is due. Running: when its lease runs out (it is claimable again from
    /// then). Done or dead: when it got there.
    pub due_at: OffsetDateTime,
    /// When it became done or dead.
    pub finished_at: Option<OffsetDateTime>,
    /// What became of its attempts (and replays), oldest first: the last
    /// [`HISTORY_LIMIT`] entries. Empty for a backend that keeps no history.
    pub history: Vec<HistoryEntry>,
}

impl Record {
    /// A record of `delivery` in `state`, accepted (and due) at `accepted_at`, with no attempt
    /// and no error (the other fields are public: set them after). For backends.
    #[must_use]
    pub fn new(delivery: Delivery, state: DeliveryState, accepted_at: OffsetDateTime) -> Self {
        Self {
            delivery,
            state,
            attempts: 0,
            last_error: None,
            accepted_at,
            due_at: accepted_at,
            finished_at: None,
            history: Vec::new(),
        }
    }

    /// Where it is, as an operator sees it: [`state`](Self::state) with a pending delivery
    /// that was attempted already told apart ([`Status::Retrying`]).
    #[must_use]
    pub fn status(&self) -> Status {
        Status::of(self.state, self.attempts)
    }
}

/// How many [`HistoryEntry`]s a backend keeps per delivery: the latest 20.
pub const HISTORY_LIMIT: usize = 20;

/// One thing that happened to a stored delivery: an attempt's recorded outcome, or a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// The attempt it ended (1 for the first); for [`HistoryKind::Replayed`], the attempts
    /// counted before the replay reset them.
    pub attempt: u32,
    /// What happened.
    pub kind: HistoryKind,
    /// The attempt's error (retried or dead).
    pub error: Option<String>,
    /// When, by the backend's clock.
    pub at: OffsetDateTime,
}

impl HistoryEntry {
    /// An entry of `kind` for `attempt` at `at`, with no error. For backends.
    #[must_use]
    pub fn new(attempt: u32, kind: HistoryKind, at: OffsetDateTime) -> Self {
        Self {
            attempt,
            kind,
            error: None,
            at,
        }
    }
}

/// What a [`HistoryEntry`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HistoryKind {
    /// The attempt succeeded: done (by the worker, or by the handler's own completion).
    Done,
    /// The attempt failed and the delivery is due again later.
    Retried,
    /// The attempt failed and the delivery was dead-lettered.
    Dead,
    /// The attempt was given back unfinished (a graceful shutdown); not counted.
    Released,
    /// An operator replayed the delivery (dead or done to pending, attempts reset).
    Replayed,
}

impl HistoryKind {
    /// Every kind.
    pub const ALL: [Self; 5] = [
        Self::Done,
        Self::Retried,
        Self::Dead,
        Self::Released,
        Self::Replayed,
    ];

    /// The kind's name: `done`, `retried`, `dead`, `released`, `replayed` (how backends store it).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Retried => "retried",
            Self::Dead => "dead",
            Self::Released => "released",
            Self::Replayed => "replayed",
        }
    }

    /// The kind named `name` ([`as_str`](Self::as_str)), if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Where a delivery is, as an operator sees it: the stored [`DeliveryState`], with pending
/// split in two. What the admin filters ([`Filter::status`](super::Filter::status)), counts
/// ([`Stats`](super::Stats)) and prints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Pending and never attempted (or only released unfinished, or replayed).
    Waiting,
    /// Claimed by a worker whose lease has not been given back.
    Running,
    /// Pending after a failed attempt: due again at its backoff.
    Retrying,
    /// Dead-lettered.
    Dead,
    /// Processed.
    Done,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Waiting,
        Self::Running,
        Self::Retrying,
        Self::Dead,
        Self::Done,
    ];

    /// The status of a delivery in `state` with `attempts` counted: pending with attempts is
    /// retrying.
    #[must_use]
    pub fn of(state: DeliveryState, attempts: u32) -> Self {
        match state {
            DeliveryState::Pending if attempts > 0 => Self::Retrying,
            DeliveryState::Pending => Self::Waiting,
            DeliveryState::Running => Self::Running,
            DeliveryState::Done => Self::Done,
            DeliveryState::Dead => Self::Dead,
        }
    }

    /// The stored state it is part of.
    #[must_use]
    pub fn state(self) -> DeliveryState {
        match self {
            Self::Waiting | Self::Retrying => DeliveryState::Pending,
            Self::Running => DeliveryState::Running,
            Self::Done => DeliveryState::Done,
            Self::Dead => DeliveryState::Dead,
        }
    }

    /// The status's name: `waiting`, `running`, `retrying`, `dead`, `done`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Dead => "dead",
            Self::Done => "done",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = UnknownState;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
            .ok_or_else(|| UnknownState(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_stored() {
        for name in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "set-cookie",
            "x-api-token",
            "x-webhook-secret",
            "x-api-key",
            "x-apikey",
            "x-password",
        ] {
            assert!(is_never_stored(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["x-webhook-signature", "stripe-signature", "x-github-event"] {
            assert!(!is_never_stored(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn a_delivery_keeps_neither_credentials_nor_the_query_string() {
        let delivery = Delivery::from_facts(
            Facts::new("sotion", "evt_1"),
            IdempotencyKey::new("sotion", "", "evt_1"),
            "/hooks?token=abc",
            [
                (
                    http::header::AUTHORIZATION,
                    HeaderValue::from_static("Bearer x"),
                ),
                (http::header::COOKIE, HeaderValue::from_static("s=1")),
                (
                    HeaderName::from_static("x-webhook-signature"),
                    HeaderValue::from_static("v1,abc"),
                ),
            ],
            Bytes::from_static(b"{}"),
        );
        assert_eq!(delivery.path(), "/hooks");
        let names: Vec<&str> = delivery.headers().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-webhook-signature"]);
        assert!(!format!("{delivery:?}").contains("v1,abc"));
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in DeliveryState::ALL {
            assert_eq!(state.as_str().parse::<DeliveryState>(), Ok(state));
        }
        assert!("gone".parse::<DeliveryState>().is_err());
    }
}
