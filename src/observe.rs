//! What the layer tells its operator: `tracing` spans and events (feature `tracing`), and
//! counters through the `metrics` facade (feature `metrics`); both features are on by default.
//! Neither ever carries a secret, a signature or a body; event ids and types are recorded with
//! `Debug` formatting, so control characters are escaped.
//!
//! Each delivery runs in a span named `webhook` (`SPAN`) with the fields `scheme`, `id`,
//! `event`, `outcome`, `code` and `duration_us`, and ends with one event: `debug` for an accepted
//! or duplicate delivery and an endpoint handshake the layer answered, `info` for a refused one
//! (with `reason`, the [`Reason`]'s code, and `hint`, when the layer knows more than the code),
//! `warn` when the handler failed. An [`EventRouter`](crate::EventRouter) whose default
//! fallback acknowledges an event no handler ran for logs it at `info` (`event`, `id`).
//!
//! | metric | kind | labels | counts |
//! | --- | --- | --- | --- |
//! | `webhook_verified_total` | counter | `scheme` | deliveries that passed verification |
//! | `webhook_rejected_total` | counter | `scheme`, `code` | deliveries refused, by `error` code (`in_flight` and `store_unavailable` included) |
//! | `webhook_duplicates_total` | counter | `scheme` | duplicates answered without calling the handler |
//! | `webhook_in_flight_total` | counter | `scheme` | deliveries refused because another delivery of the event was running |
//! | `webhook_store_errors_total` | counter | `operation` | idempotency store calls that failed (`reserve`, `complete`, `release`) |
//! | `webhook_handler_failures_total` | counter | `scheme` | handler answers that were not `2xx`, or errors |
//! | `webhook_duration_seconds` | histogram | `scheme`, `outcome` | time from the request reaching the layer to its answer (`stored` in inbox mode, `handshake` for an endpoint handshake the layer answered) |
//! | `webhook_ignored_total` | counter | `scheme` | deliveries an [`EventRouter`](crate::EventRouter)'s default fallback acknowledged: no handler ran (the event's name is in the log line, never a label: names are not bounded) |
//! | `webhook_inbox_accepted_total` | counter | `scheme`, `inbox` | deliveries the layer stored in its inbox (answered `2xx` once committed) |
//! | `webhook_inbox_duplicates_total` | counter | `scheme`, `inbox` | deliveries the layer's inbox had stored already, in any state (answered as duplicates; also counted in `webhook_duplicates_total`) |
//! | `webhook_inbox_attempts_total` | counter | `inbox`, `outcome` | inbox handler runs, by outcome (`inbox::Outcome`): `done` (processed: answered `2xx`, or its own completion committed), `retried` (failed, due again after a backoff; a completion begun and not committed is a failure), `dead` (failed, dead-lettered), `released` (stopped by a graceful shutdown, given back), `stale` (the delivery was no longer the attempt's: its lease ran out or was taken over while the handler ran, which was stopped, or it was claimed again, purged or replayed before the outcome was recorded), `lost` (the outcome could not be recorded, and the delivery read again was still running under the attempt, or could not be read: it runs again once its lease runs out). An outcome whose answer was lost is read again and counted as found |
//! | `webhook_inbox_dead_letters_total` | counter | `inbox` | deliveries dead-lettered after their last attempt |
//! | `webhook_inbox_replayed_total` | counter | `inbox` | dead (or done) deliveries made pending again through [`inbox::replay`](crate::inbox::replay) (the admin page's replays) |
//! | `webhook_inbox_accept_to_done_seconds` | histogram | `inbox` | from a delivery's accept (its `accepted_at`, the backend's clock) to its attempt reported `done` (this process's clock; 0 when the clocks disagree that far); a replayed delivery counts from its first accept |
//! | `webhook_inbox_deliveries` | gauge | `inbox`, `status` | deliveries by [`Status`](crate::inbox::Status): `waiting`, `running`, `retrying`, `dead`, `done` (not yet pruned) |
//! | `webhook_inbox_depth` | gauge | `inbox` | deliveries waiting to be processed (pending or running: the number `InboxOptions::with_max_depth` bounds) |
//! | `webhook_inbox_oldest_waiting_seconds` | gauge | `inbox` | the lag: age of the oldest delivery waiting to be processed (pending or running; 0 when none) |
//!
//! The gauges are read from [`InboxBackend::stats`](crate::inbox::InboxBackend::stats) by the
//! workers: when they start, then every 10 s
//! ([`Workers::with_stats_interval`](crate::inbox::Workers::with_stats_interval)), one `stats`
//! call each time (on the SQL backends, counts over the state index: its cost grows with the
//! deliveries stored, done ones included until pruned). Every process running workers sets them,
//! to the same values (the inbox's, not the process's): aggregate them with `max`, not `sum`.
//! The counters count what this process did.
//!
//! The `inbox` label is the name given to
//! [`Workers::with_name`](crate::inbox::Workers::with_name) and
//! [`WebhookLayerBuilder::with_inbox_name`](crate::layer::WebhookLayerBuilder::with_inbox_name)
//! ([`DEFAULT_INBOX_NAME`] unless named): give the layer, the workers and the admin page of one
//! inbox the same name, a few characters chosen by the application. No label ever holds an id,
//! an event type, a tenant or an error text: their values are bounded.
//!
//! Each inbox attempt runs in a span named `webhook_inbox_attempt` (`INBOX_SPAN`) with the fields
//! `inbox`, `scheme`, `id` (the event id), `event`, `key` (the idempotency key, hex), `attempt`
//! and `outcome`; never the body or a header. When the delivery was accepted by a layer in this
//! process, its first attempt's span `follows_from` the accepting request's `webhook` span (a
//! retry is not linked again; a replayed delivery is not linked): that span
//! is held (at most 1,024 of them, for at most 10 s, and only while workers run in this process)
//! until the delivery's first attempt here starts, so it closes that much later than its
//! answer. A delivery accepted by another process (another replica) is not linked.
//!
//! Install any `metrics` recorder (Prometheus exporter, ...) to collect them; without one they
//! cost next to nothing. Without the features, none of this is compiled.

#[cfg(feature = "tracing")]
mod links;
/// Without `tracing`: nothing held, nothing linked.
#[cfg(not(feature = "tracing"))]
#[allow(clippy::unused_self)] // the same calls as with `tracing`
mod links {
    use crate::idempotency::IdempotencyKey;

    pub(crate) struct WorkersRunning;

    impl WorkersRunning {
        pub(crate) fn new() -> Self {
            Self
        }
    }

    pub(crate) struct Accepting;

    impl Accepting {
        pub(crate) fn hold(_: &IdempotencyKey) -> Self {
            Self
        }

        pub(crate) fn keep(self) {}
    }

    pub(crate) fn follow(_: &super::Span, _: &IdempotencyKey) {}

    pub(crate) fn evict() {}
}

use std::borrow::Cow;
use std::time::Instant;

use crate::error::{Reason, Rejection};
use crate::idempotency::IdempotencyKey;
use crate::inbox::Stats;
use crate::meta::WebhookMeta;

pub(crate) use self::links::{Accepting, WorkersRunning};
pub(crate) use self::span::Span;

/// The name of the span each delivery runs in.
#[cfg(feature = "tracing")]
pub const SPAN: &str = "webhook";
/// The name of the span each inbox attempt runs in.
#[cfg(feature = "tracing")]
pub const INBOX_SPAN: &str = "webhook_inbox_attempt";

/// Deliveries that passed verification (`scheme`).
#[cfg(feature = "metrics")]
pub const VERIFIED: &str = "webhook_verified_total";
/// Deliveries refused (`scheme`, `code`).
#[cfg(feature = "metrics")]
pub const REJECTED: &str = "webhook_rejected_total";
/// Duplicates answered without the handler (`scheme`).
#[cfg(feature = "metrics")]
pub const DUPLICATES: &str = "webhook_duplicates_total";
/// Deliveries refused as in flight (`scheme`).
#[cfg(feature = "metrics")]
pub const IN_FLIGHT: &str = "webhook_in_flight_total";
/// Failed idempotency store calls (`operation`).
#[cfg(feature = "metrics")]
pub const STORE_ERRORS: &str = "webhook_store_errors_total";
/// Handler answers that were not `2xx`, or errors (`scheme`).
#[cfg(feature = "metrics")]
pub const HANDLER_FAILURES: &str = "webhook_handler_failures_total";
/// Time to answer (`scheme`, `outcome`).
#[cfg(feature = "metrics")]
pub const DURATION: &str = "webhook_duration_seconds";
/// Deliveries an event router's default fallback acknowledged: no handler ran (`scheme`).
#[cfg(feature = "metrics")]
pub const IGNORED: &str = "webhook_ignored_total";
/// Deliveries the layer stored in its inbox (`scheme`, `inbox`).
#[cfg(feature = "metrics")]
pub const INBOX_ACCEPTED: &str = "webhook_inbox_accepted_total";
/// Deliveries the layer's inbox had stored already, answered as duplicates (`scheme`, `inbox`).
#[cfg(feature = "metrics")]
pub const INBOX_DUPLICATES: &str = "webhook_inbox_duplicates_total";
/// Inbox handler runs (`inbox`, `outcome`).
#[cfg(feature = "metrics")]
pub const INBOX_ATTEMPTS: &str = "webhook_inbox_attempts_total";
/// Deliveries dead-lettered (`inbox`).
#[cfg(feature = "metrics")]
pub const INBOX_DEAD_LETTERS: &str = "webhook_inbox_dead_letters_total";
/// Deliveries replayed through [`inbox::replay`](crate::inbox::replay) (`inbox`).
#[cfg(feature = "metrics")]
pub const INBOX_REPLAYED: &str = "webhook_inbox_replayed_total";
/// Time from a delivery's accept to its attempt reported done, in seconds (histogram, `inbox`).
#[cfg(feature = "metrics")]
pub const INBOX_ACCEPT_TO_DONE: &str = "webhook_inbox_accept_to_done_seconds";
/// Deliveries by status (gauge, `inbox`, `status`).
#[cfg(feature = "metrics")]
pub const INBOX_DELIVERIES: &str = "webhook_inbox_deliveries";
/// Deliveries waiting to be processed: pending or running (gauge, `inbox`).
#[cfg(feature = "metrics")]
pub const INBOX_DEPTH: &str = "webhook_inbox_depth";
/// The lag: age of the oldest delivery waiting to be processed, in seconds (gauge, `inbox`).
#[cfg(feature = "metrics")]
pub const INBOX_OLDEST_WAITING: &str = "webhook_inbox_oldest_waiting_seconds";

/// The `inbox` label of an inbox nobody named: `default`.
pub const DEFAULT_INBOX_NAME: &str = "default";

/// `tracing`'s event macros for the rest of the crate: `observe::warn!(key = %key, "...")`
/// forwards to `tracing::warn!` with the `tracing` feature. Without it, the fields' values
/// (`name = %value`, `name = ?value`, `name = value`, `%value`, `?value`, `value`) go into a
/// closure that is never called: they count as used, and nothing is evaluated.
macro_rules! event {
    ($level:ident, $($field:tt)+) => {{
        #[cfg(feature = "tracing")]
        {
            tracing::$level!($($field)+);
        }
        #[cfg(not(feature = "tracing"))]
        {
            $crate::observe::unheard!(() $($field)+);
        }
    }};
}

/// The values of an event's fields, unevaluated (see [`event!`]).
#[cfg(not(feature = "tracing"))]
macro_rules! unheard {
    (($($value:expr),*) $(,)?) => {
        let _ = || {
            $(let _ = &$value;)*
        };
    };
    (($($value:expr),*) $message:literal $(,)?) => {
        $crate::observe::unheard!(($($value),*))
    };
    (($($value:expr),*) $name:ident = % $field:expr $(, $($rest:tt)*)?) => {
        $crate::observe::unheard!(($($value,)* $field) $($($rest)*)?)
    };
    (($($value:expr),*) $name:ident = ? $field:expr $(, $($rest:tt)*)?) => {
        $crate::observe::unheard!(($($value,)* $field) $($($rest)*)?)
    };
    (($($value:expr),*) $name:ident = $field:expr $(, $($rest:tt)*)?) => {
        $crate::observe::unheard!(($($value,)* $field) $($($rest)*)?)
    };
    (($($value:expr),*) % $field:expr $(, $($rest:tt)*)?) => {
        $crate::observe::unheard!(($($value,)* $field) $($($rest)*)?)
    };
    (($($value:expr),*) ? $field:expr $(, $($rest:tt)*)?) => {
        $crate::observe::unheard!(($($value,)* $field) $($($rest)*)?)
    };
    (($($value:expr),*) $field:ident $(, $($rest:tt)*)?) => {
        $crate::observe::unheard!(($($value,)* $field) $($($rest)*)?)
    };
}

macro_rules! warn_event {
    ($($field:tt)+) => { $crate::observe::event!(warn, $($field)+) };
}
macro_rules! error_event {
    ($($field:tt)+) => { $crate::observe::event!(error, $($field)+) };
}

#[cfg(not(feature = "tracing"))]
pub(crate) use unheard;
// Named apart, then renamed: a macro named `warn` is ambiguous with the built-in attribute.
pub(crate) use {error_event as error, event, warn_event as warn};

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Handled,
    HandlerFailed,
    Duplicate,
    Rejected,
    /// Stored in the inbox (inbox mode): the handler runs later.
    Stored,
    /// An endpoint handshake, answered by the layer.
    Handshake,
}

impl Outcome {
    #[cfg(feature = "metrics")]
    const ALL: [Self; 6] = [
        Self::Handled,
        Self::HandlerFailed,
        Self::Duplicate,
        Self::Rejected,
        Self::Stored,
        Self::Handshake,
    ];

    #[cfg(any(feature = "tracing", feature = "metrics"))]
    fn as_str(self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::HandlerFailed => "handler_failed",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
            Self::Stored => "stored",
            Self::Handshake => "handshake",
        }
    }

    #[cfg(feature = "metrics")]
    fn index(self) -> usize {
        self as usize
    }
}

/// One layer's observability, built once when the layer is configured: its scheme's name and,
/// with the `metrics` feature, its metric keys.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    scheme: Cow<'static, str>,
    #[cfg(feature = "metrics")]
    keys: count::Keys,
}

impl Metrics {
    pub(crate) fn new(scheme: Cow<'static, str>) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            keys: count::Keys::new(&metrics::Label::new("scheme", scheme.clone())),
            scheme,
        }
    }

    /// A layer in inbox mode: its accepts count under the inbox's name too.
    #[cfg_attr(not(feature = "metrics"), allow(unused_mut, unused_variables))]
    pub(crate) fn with_inbox(mut self, inbox: &InboxName) -> Self {
        #[cfg(feature = "metrics")]
        {
            let scheme = metrics::Label::new("scheme", self.scheme.clone());
            self.keys.inbox = Some(count::InboxKeys::new(&scheme, inbox));
        }
        self
    }

    /// The span a delivery runs in.
    pub(crate) fn span(&self) -> Span {
        span::delivery(&self.scheme)
    }
}

/// One delivery's observation: started when the request reaches the layer.
pub(crate) struct Observation<'a> {
    metrics: &'a Metrics,
    started: Instant,
}

impl<'a> Observation<'a> {
    pub(crate) fn new(metrics: &'a Metrics, started: Instant) -> Self {
        Self { metrics, started }
    }

    pub(crate) fn verified(&self, meta: &WebhookMeta) {
        span::verified(meta);
        count::verified(self.metrics);
    }

    pub(crate) fn rejected(&self, rejection: &Rejection) {
        let code = rejection.kind().code();
        count::rejected(self.metrics, code);
        span::rejected(code);
        self.finish_with(Outcome::Rejected, rejection.reason());
    }

    pub(crate) fn duplicate(&self) {
        count::duplicate(self.metrics);
        self.finish(Outcome::Duplicate);
    }

    /// Stored in the inbox: answered `2xx`, the handler runs later.
    pub(crate) fn stored(&self) {
        count::inbox_accepted(self.metrics);
        self.finish(Outcome::Stored);
    }

    /// Stored in the inbox already: answered as a duplicate.
    pub(crate) fn stored_already(&self) {
        count::inbox_duplicate(self.metrics);
        self.duplicate();
    }

    /// An endpoint handshake, answered by the layer (neither stored nor handled).
    pub(crate) fn handshake(&self) {
        self.finish(Outcome::Handshake);
    }

    pub(crate) fn handled(&self, succeeded: bool) {
        if succeeded {
            self.finish(Outcome::Handled);
        } else {
            count::handler_failed(self.metrics);
            self.finish(Outcome::HandlerFailed);
        }
    }

    fn finish(&self, outcome: Outcome) {
        self.finish_with(outcome, None);
    }

    /// Ends the delivery's observation; a refusal's line carries its reason and hint.
    fn finish_with(&self, outcome: Outcome, reason: Option<&Reason>) {
        let elapsed = self.started.elapsed();
        span::finished(outcome, elapsed, reason);
        count::finished(self.metrics, outcome, elapsed);
    }
}

/// Counts a failed store call made after the handler ran.
pub(crate) fn store_error(operation: &'static str) {
    count::store_error(operation);
}

/// Counts a delivery an event router's default fallback acknowledged (no handler ran).
#[cfg(feature = "axum")]
pub(crate) fn ignored(scheme: &str) {
    count::ignored(scheme);
}

/// An inbox's name: the `inbox` label of its metrics, and a field of its attempts' spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InboxName(Cow<'static, str>);

impl InboxName {
    pub(crate) fn new(name: Cow<'static, str>) -> Self {
        Self(name)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The label's value (cheap for a name given as a `&'static str`).
    #[cfg(feature = "metrics")]
    fn label(&self) -> Cow<'static, str> {
        self.0.clone()
    }
}

impl Default for InboxName {
    fn default() -> Self {
        Self(Cow::Borrowed(DEFAULT_INBOX_NAME))
    }
}

/// What an inbox attempt's span says of its delivery.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))] // the key links, the rest is the span's
pub(crate) struct AttemptFields<'a> {
    pub(crate) inbox: &'a str,
    pub(crate) scheme: &'a str,
    pub(crate) id: &'a str,
    pub(crate) event: Option<&'a str>,
    pub(crate) key: &'a IdempotencyKey,
    pub(crate) attempt: u32,
}

/// The span an inbox attempt runs in; it follows from the span that accepted the delivery when
/// that was in this process (and `linked`: an attempt that runs the handler).
pub(crate) fn inbox_span(fields: &AttemptFields<'_>, linked: bool) -> Span {
    let span = span::inbox_attempt(fields);
    if linked {
        links::follow(&span, fields.key);
    }
    span
}

/// Records how an inbox attempt ended, on its span and in the counters: `outcome` is one of
/// `done`, `retried`, `dead`, `released`, `lost`, `stale` (`inbox::Outcome::as_str`). A `done`
/// one records its time since `accepted_at` too.
pub(crate) fn inbox_outcome(
    inbox: &InboxName,
    span: &Span,
    outcome: &'static str,
    accepted_at: time::OffsetDateTime,
) {
    span::inbox_outcome(span, outcome);
    count::inbox_outcome(inbox, outcome);
    if outcome == "done" {
        count::inbox_done(inbox, since(accepted_at, time::OffsetDateTime::now_utc()));
    }
}

/// The time from `accepted_at` (the backend's clock) to `now` (this process's): 0 when the
/// clocks disagree so far that `now` is earlier.
fn since(accepted_at: time::OffsetDateTime, now: time::OffsetDateTime) -> std::time::Duration {
    std::time::Duration::try_from(now - accepted_at).unwrap_or_default()
}

/// Sets the inbox gauges from `stats`, and lets go of the accepting spans held too long.
pub(crate) fn inbox_stats(inbox: &InboxName, stats: &Stats) {
    count::inbox_stats(inbox, stats);
    links::evict();
}

/// Counts a replay that took effect.
pub(crate) fn inbox_replayed(inbox: &str) {
    count::inbox_replayed(inbox);
}

/// The `tracing` side.
#[cfg(feature = "tracing")]
mod span {
    use std::time::Duration;

    use super::{AttemptFields, Outcome, Reason, WebhookMeta};

    pub(crate) type Span = tracing::Span;

    pub(super) fn delivery(scheme: &str) -> Span {
        tracing::info_span!(
            super::SPAN,
            scheme = %scheme,
            id = tracing::field::Empty,
            event = tracing::field::Empty,
            outcome = tracing::field::Empty,
            code = tracing::field::Empty,
            duration_us = tracing::field::Empty,
        )
    }

    pub(super) fn verified(meta: &WebhookMeta) {
        let span = Span::current();
        span.record("id", tracing::field::debug(meta.id()));
        span.record("event", tracing::field::debug(meta.event().unwrap_or("")));
    }

    pub(super) fn rejected(code: &'static str) {
        Span::current().record("code", code);
    }

    pub(super) fn inbox_attempt(fields: &AttemptFields<'_>) -> Span {
        tracing::info_span!(
            super::INBOX_SPAN,
            inbox = %fields.inbox,
            scheme = %fields.scheme,
            id = ?fields.id,
            event = ?fields.event.unwrap_or(""),
            key = %fields.key.to_hex(),
            attempt = fields.attempt,
            outcome = tracing::field::Empty,
        )
    }

    pub(super) fn inbox_outcome(span: &Span, outcome: &'static str) {
        span.record("outcome", outcome);
        let _entered = span.enter();
        match outcome {
            "done" | "released" => tracing::debug!(outcome, "inbox attempt finished"),
            "dead" => tracing::error!(
                outcome,
                "inbox delivery dead-lettered after its last attempt"
            ),
            _ => tracing::warn!(outcome, "inbox attempt did not succeed"),
        }
    }

    pub(super) fn finished(outcome: Outcome, elapsed: Duration, reason: Option<&Reason>) {
        let span = Span::current();
        span.record("outcome", outcome.as_str());
        span.record(
            "duration_us",
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        );
        match outcome {
            Outcome::Handled | Outcome::Duplicate | Outcome::Stored | Outcome::Handshake => {
                tracing::debug!(outcome = outcome.as_str(), "webhook delivery answered");
            }
            Outcome::Rejected => {
                if let Some(reason) = reason {
                    tracing::info!(
                        outcome = outcome.as_str(),
                        reason = reason.code(),
                        hint = %reason,
                        "webhook delivery refused"
                    );
                } else {
                    tracing::info!(outcome = outcome.as_str(), "webhook delivery refused");
                }
            }
            Outcome::HandlerFailed => {
                tracing::warn!(
                    outcome = outcome.as_str(),
                    "webhook handler failed; the sender will retry"
                );
            }
        }
    }
}

/// Without `tracing`: a zero-sized span, and nothing recorded.
#[cfg(not(feature = "tracing"))]
mod span {
    use std::time::Duration;

    use super::{AttemptFields, Outcome, Reason, WebhookMeta};

    /// Stands in for `tracing::Span`.
    #[derive(Debug, Clone)]
    pub(crate) struct Span;

    impl Span {
        /// Stands in for `tracing::Span::enter`, whose guard is held while the span is entered.
        pub(crate) fn enter(&self) -> &Self {
            self
        }
    }

    pub(super) fn delivery(_: &str) -> Span {
        Span
    }

    pub(super) fn inbox_attempt(_: &AttemptFields<'_>) -> Span {
        Span
    }

    pub(super) fn inbox_outcome(_: &Span, _: &'static str) {}

    pub(super) fn verified(_: &WebhookMeta) {}

    pub(super) fn rejected(_: &'static str) {}

    pub(super) fn finished(_: Outcome, _: Duration, _: Option<&Reason>) {}
}

/// The `metrics` side.
#[cfg(feature = "metrics")]
mod count {
    use std::time::Duration;

    use metrics::{Key, Label, Level, Metadata};

    use super::{
        InboxName, Metrics, Outcome, Stats, DUPLICATES, DURATION, HANDLER_FAILURES, INBOX_ACCEPTED,
        INBOX_ACCEPT_TO_DONE, INBOX_ATTEMPTS, INBOX_DEAD_LETTERS, INBOX_DELIVERIES, INBOX_DEPTH,
        INBOX_DUPLICATES, INBOX_OLDEST_WAITING, INBOX_REPLAYED, IN_FLIGHT, REJECTED, STORE_ERRORS,
        VERIFIED,
    };
    use crate::inbox::Status;

    /// What the `metrics` macros would say of a call made here.
    static METADATA: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

    /// One layer's metric keys: the `metrics` macros would build each key (and allocate its
    /// labels) on every delivery. The recorder is still looked up on every call, so one
    /// installed after the layer was built is used.
    #[derive(Debug, Clone)]
    pub(super) struct Keys {
        verified: Key,
        duplicates: Key,
        in_flight: Key,
        handler_failures: Key,
        /// By [`Outcome::index`].
        durations: [Key; 6],
        /// In inbox mode.
        pub(super) inbox: Option<InboxKeys>,
    }

    /// A layer's inbox keys: its scheme's, and its inbox's name.
    #[derive(Debug, Clone)]
    pub(super) struct InboxKeys {
        accepted: Key,
        duplicates: Key,
    }

    impl InboxKeys {
        pub(super) fn new(scheme: &Label, inbox: &InboxName) -> Self {
            let key = |name: &'static str| {
                Key::from_parts(
                    name,
                    vec![scheme.clone(), Label::new("inbox", inbox.label())],
                )
            };
            Self {
                accepted: key(INBOX_ACCEPTED),
                duplicates: key(INBOX_DUPLICATES),
            }
        }
    }

    impl Keys {
        /// `scheme` is the `scheme` label.
        pub(super) fn new(scheme: &Label) -> Self {
            let with_scheme = |name: &'static str| Key::from_parts(name, vec![scheme.clone()]);
            Self {
                verified: with_scheme(VERIFIED),
                duplicates: with_scheme(DUPLICATES),
                in_flight: with_scheme(IN_FLIGHT),
                handler_failures: with_scheme(HANDLER_FAILURES),
                durations: Outcome::ALL.map(|outcome| {
                    Key::from_parts(
                        DURATION,
                        vec![
                            scheme.clone(),
                            Label::from_static_parts("outcome", outcome.as_str()),
                        ],
                    )
                }),
                inbox: None,
            }
        }
    }

    fn increment(key: &Key) {
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
    }

    pub(super) fn verified(metrics: &Metrics) {
        increment(&metrics.keys.verified);
    }

    pub(super) fn rejected(metrics: &Metrics, code: &'static str) {
        // Rejections are the slow path: their key is built here, per code.
        metrics::counter!(REJECTED, "scheme" => metrics.scheme.clone(), "code" => code)
            .increment(1);
        if code == "in_flight" {
            increment(&metrics.keys.in_flight);
        }
        if code == "store_unavailable" {
            store_error("reserve");
        }
    }

    pub(super) fn duplicate(metrics: &Metrics) {
        increment(&metrics.keys.duplicates);
    }

    pub(super) fn inbox_accepted(metrics: &Metrics) {
        if let Some(inbox) = &metrics.keys.inbox {
            increment(&inbox.accepted);
        }
    }

    pub(super) fn inbox_duplicate(metrics: &Metrics) {
        if let Some(inbox) = &metrics.keys.inbox {
            increment(&inbox.duplicates);
        }
    }

    pub(super) fn handler_failed(metrics: &Metrics) {
        increment(&metrics.keys.handler_failures);
    }

    pub(super) fn finished(metrics: &Metrics, outcome: Outcome, elapsed: Duration) {
        let key = &metrics.keys.durations[outcome.index()];
        metrics::with_recorder(|recorder| {
            recorder
                .register_histogram(key, &METADATA)
                .record(elapsed.as_secs_f64());
        });
    }

    pub(super) fn store_error(operation: &'static str) {
        metrics::counter!(STORE_ERRORS, "operation" => operation).increment(1);
    }

    #[cfg(feature = "axum")]
    pub(super) fn ignored(scheme: &str) {
        metrics::counter!(super::IGNORED, "scheme" => scheme.to_owned()).increment(1);
    }

    pub(super) fn inbox_outcome(inbox: &InboxName, outcome: &'static str) {
        metrics::counter!(INBOX_ATTEMPTS, "inbox" => inbox.label(), "outcome" => outcome)
            .increment(1);
        if outcome == "dead" {
            metrics::counter!(INBOX_DEAD_LETTERS, "inbox" => inbox.label()).increment(1);
        }
    }

    pub(super) fn inbox_done(inbox: &InboxName, elapsed: Duration) {
        metrics::histogram!(INBOX_ACCEPT_TO_DONE, "inbox" => inbox.label())
            .record(elapsed.as_secs_f64());
    }

    pub(super) fn inbox_replayed(inbox: &str) {
        metrics::counter!(INBOX_REPLAYED, "inbox" => inbox.to_owned()).increment(1);
    }

    #[allow(clippy::cast_precision_loss)] // a gauge: precision past 2^52 deliveries is moot
    pub(super) fn inbox_stats(inbox: &InboxName, stats: &Stats) {
        for status in Status::ALL {
            let count = match status {
                Status::Waiting => stats.waiting(),
                Status::Running => stats.running,
                Status::Retrying => stats.retrying,
                Status::Dead => stats.dead,
                Status::Done => stats.done,
            };
            metrics::gauge!(
                INBOX_DELIVERIES,
                "inbox" => inbox.label(),
                "status" => status.as_str()
            )
            .set(count as f64);
        }
        metrics::gauge!(INBOX_DEPTH, "inbox" => inbox.label()).set(stats.depth() as f64);
        metrics::gauge!(INBOX_OLDEST_WAITING, "inbox" => inbox.label())
            .set(stats.oldest_waiting.map_or(0.0, |age| age.as_secs_f64()));
    }
}

/// Without `metrics`: nothing counted.
#[cfg(not(feature = "metrics"))]
mod count {
    use std::time::Duration;

    use super::{InboxName, Metrics, Outcome, Stats};

    pub(super) fn verified(_: &Metrics) {}

    pub(super) fn rejected(_: &Metrics, _: &'static str) {}

    pub(super) fn duplicate(_: &Metrics) {}

    pub(super) fn handler_failed(_: &Metrics) {}

    pub(super) fn finished(_: &Metrics, _: Outcome, _: Duration) {}

    pub(super) fn store_error(_: &'static str) {}

    #[cfg(feature = "axum")]
    pub(super) fn ignored(_: &str) {}

    pub(super) fn inbox_accepted(_: &Metrics) {}

    pub(super) fn inbox_duplicate(_: &Metrics) {}

    pub(super) fn inbox_outcome(_: &InboxName, _: &'static str) {}

    pub(super) fn inbox_done(_: &InboxName, _: Duration) {}

    pub(super) fn inbox_replayed(_: &str) {}

    pub(super) fn inbox_stats(_: &InboxName, _: &Stats) {}
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::since;

    #[test]
    fn the_accept_to_done_time_is_clamped_at_zero_when_the_clocks_disagree() {
        let accepted = datetime!(2026-12-06 19:00:00 UTC);
        assert_eq!(
            since(accepted, datetime!(2026-12-06 19:00:02.5 UTC)),
            Duration::from_millis(2500)
        );
        // The database's clock ahead of this process's.
        assert_eq!(
            since(accepted, datetime!(2026-12-06 18:59:59 UTC)),
            Duration::ZERO
        );
    }
}
