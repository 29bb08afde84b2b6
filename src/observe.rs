//! What the layer tells its operator: `tracing` spans and events, and counters through the
//! `metrics` facade. Neither ever carries a secret, a signature or a body; event ids and types
//! are recorded with `Debug` formatting, so control characters are escaped.
//!
//! Each delivery runs in a span named `webhook` with the fields `scheme`, `id`, `event`,
//! `outcome`, `code` and `duration_us`, and ends with one event: `debug` for an accepted or
//! duplicate delivery, `info` for a refused one, `warn` when the handler failed.
//!
//! | metric | kind | labels | counts |
//! | --- | --- | --- | --- |
//! | `webhook_verified_total` | counter | `scheme` | deliveries that passed verification |
//! | `webhook_rejected_total` | counter | `scheme`, `code` | deliveries refused, by `error` code (`in_flight` and `store_unavailable` included) |
//! | `webhook_duplicates_total` | counter | `scheme` | duplicates answered without calling the handler |
//! | `webhook_in_flight_total` | counter | `scheme` | deliveries refused because another delivery of the event was running |
//! | `webhook_store_errors_total` | counter | `operation` | idempotency store calls that failed (`reserve`, `complete`, `release`) |
//! | `webhook_handler_failures_total` | counter | `scheme` | handler answers that were not `2xx`, or errors |
//! | `webhook_duration_seconds` | histogram | `scheme`, `outcome` | time from the request reaching the layer to its answer |
//!
//! Install any `metrics` recorder (Prometheus exporter, ...) to collect them; without one they
//! cost next to nothing.

use std::borrow::Cow;
use std::time::Instant;

use metrics::{Key, Label, Level, Metadata};

use crate::error::Rejection;
use crate::meta::WebhookMeta;

/// Deliveries that passed verification (`scheme`).
pub const VERIFIED: &str = "webhook_verified_total";
/// Deliveries refused (`scheme`, `code`).
pub const REJECTED: &str = "webhook_rejected_total";
/// Duplicates answered without the handler (`scheme`).
pub const DUPLICATES: &str = "webhook_duplicates_total";
/// Deliveries refused as in flight (`scheme`).
pub const IN_FLIGHT: &str = "webhook_in_flight_total";
/// Failed idempotency store calls (`operation`).
pub const STORE_ERRORS: &str = "webhook_store_errors_total";
/// Handler answers that were not `2xx`, or errors (`scheme`).
pub const HANDLER_FAILURES: &str = "webhook_handler_failures_total";
/// Time to answer (`scheme`, `outcome`).
pub const DURATION: &str = "webhook_duration_seconds";

/// What the `metrics` macros would say of a call made here.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Handled,
    HandlerFailed,
    Duplicate,
    Rejected,
}

impl Outcome {
    const ALL: [Self; 4] = [
        Self::Handled,
        Self::HandlerFailed,
        Self::Duplicate,
        Self::Rejected,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::HandlerFailed => "handler_failed",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One layer's metric keys, built once when the layer is configured: the `metrics` macros
/// would build each key (and allocate its labels) on every delivery. The recorder is still
/// looked up on every call, so one installed after the layer was built is used.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    scheme: Cow<'static, str>,
    verified: Key,
    duplicates: Key,
    in_flight: Key,
    handler_failures: Key,
    /// By [`Outcome::index`].
    durations: [Key; 4],
}

impl Metrics {
    pub(crate) fn new(scheme: Cow<'static, str>) -> Self {
        let with_scheme =
            |name: &'static str| Key::from_parts(name, vec![Label::new("scheme", scheme.clone())]);
        Self {
            verified: with_scheme(VERIFIED),
            duplicates: with_scheme(DUPLICATES),
            in_flight: with_scheme(IN_FLIGHT),
            handler_failures: with_scheme(HANDLER_FAILURES),
            durations: Outcome::ALL.map(|outcome| {
                Key::from_parts(
                    DURATION,
                    vec![
                        Label::new("scheme", scheme.clone()),
                        Label::from_static_parts("outcome", outcome.as_str()),
                    ],
                )
            }),
            scheme,
        }
    }

    /// The span a delivery runs in.
    pub(crate) fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "webhook",
            scheme = %self.scheme,
            id = tracing::field::Empty,
            event = tracing::field::Empty,
            outcome = tracing::field::Empty,
            code = tracing::field::Empty,
            duration_us = tracing::field::Empty,
        )
    }
}

fn increment(key: &Key) {
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
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
        let span = tracing::Span::current();
        span.record("id", tracing::field::debug(meta.id()));
        span.record("event", tracing::field::debug(meta.event().as_str()));
        increment(&self.metrics.verified);
    }

    pub(crate) fn rejected(&self, rejection: &Rejection) {
        let code = rejection.kind().code();
        // Rejections are the slow path: their key is built here, per code.
        metrics::counter!(REJECTED, "scheme" => self.metrics.scheme.clone(), "code" => code)
            .increment(1);
        if code == "in_flight" {
            increment(&self.metrics.in_flight);
        }
        if code == "store_unavailable" {
            store_error("reserve");
        }
        tracing::Span::current().record("code", code);
        self.finish(Outcome::Rejected);
    }

    pub(crate) fn duplicate(&self) {
        increment(&self.metrics.duplicates);
        self.finish(Outcome::Duplicate);
    }

    pub(crate) fn handled(&self, succeeded: bool) {
        if succeeded {
            self.finish(Outcome::Handled);
        } else {
            increment(&self.metrics.handler_failures);
            self.finish(Outcome::HandlerFailed);
        }
    }

    fn finish(&self, outcome: Outcome) {
        let elapsed = self.started.elapsed();
        let span = tracing::Span::current();
        span.record("outcome", outcome.as_str());
        span.record(
            "duration_us",
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        );
        let key = &self.metrics.durations[outcome.index()];
        metrics::with_recorder(|recorder| {
            recorder
                .register_histogram(key, &METADATA)
                .record(elapsed.as_secs_f64());
        });
        match outcome {
            Outcome::Handled | Outcome::Duplicate => {
                tracing::debug!(outcome = outcome.as_str(), "webhook delivery answered");
            }
            Outcome::Rejected => {
                tracing::info!(outcome = outcome.as_str(), "webhook delivery refused");
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

/// Counts a failed store call made after the handler ran.
pub(crate) fn store_error(operation: &'static str) {
    metrics::counter!(STORE_ERRORS, "operation" => operation).increment(1);
}
