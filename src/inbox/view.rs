//! What the admin tools print of the inbox, as JSON: one shape for the command line
//! (`tower-webhook inbox ... --json`) and the admin page's API, so that a script reads the
//! same fields from either.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::backend::Stats;
use super::delivery::{HistoryEntry, Record};

/// One delivery as a row of a listing (`inbox list --json`, `GET .../deliveries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeliveryRow {
    /// The sender's event id.
    pub id: String,
    /// The key it is stored under, as 64 hex digits: what tells apart two deliveries with one
    /// event id (two endpoints, two scopes).
    pub key: String,
    /// The scheme that verified it (`sotion`, `github`, ...).
    pub scheme: String,
    /// Its event type, when the scheme names one.
    pub event: Option<String>,
    /// Its action (GitHub's `action`), when there is one.
    pub action: Option<String>,
    /// Its scope (Sotion's `siteId`), when there is one.
    pub scope: Option<String>,
    /// The tenant whose secret verified it, when a resolver matched one.
    pub tenant: Option<String>,
    /// The request path it arrived on (the endpoint).
    pub path: String,
    /// Its status: `waiting`, `running`, `retrying`, `dead` or `done`.
    pub state: &'static str,
    /// Attempts counted.
    pub attempts: u32,
    /// The last failed attempt's error.
    pub last_error: Option<String>,
    /// When it was accepted (RFC 3339).
    pub accepted_at: String,
    /// When it is due (pending), when its lease ends (running), or when it got done or dead
    /// (RFC 3339).
    pub due_at: String,
    /// When it became done or dead (RFC 3339).
    pub finished_at: Option<String>,
}

impl DeliveryRow {
    /// The row of `record`.
    #[must_use]
    pub fn of(record: &Record) -> Self {
        let facts = record.delivery.facts();
        Self {
            id: facts.id.clone(),
            key: record.delivery.key().to_hex(),
            scheme: facts.scheme.clone(),
            event: facts.event.clone(),
            action: facts.action.clone(),
            scope: facts.scope.clone(),
            tenant: facts.tenant.clone(),
            path: record.delivery.path().to_owned(),
            state: record.status().as_str(),
            attempts: record.attempts,
            last_error: record.last_error.clone(),
            accepted_at: rfc3339(record.accepted_at),
            due_at: rfc3339(record.due_at),
            finished_at: record.finished_at.map(rfc3339),
        }
    }
}

/// One entry of a delivery's history, as [`DeliveryDetail`] prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HistoryRow {
    /// The attempt it ended.
    pub attempt: u32,
    /// What happened: `done`, `retried`, `dead`, `released` or `replayed`.
    pub outcome: &'static str,
    /// The attempt's error.
    pub error: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

impl HistoryRow {
    /// The row of `entry`.
    #[must_use]
    pub fn of(entry: &HistoryEntry) -> Self {
        Self {
            attempt: entry.attempt,
            outcome: entry.kind.as_str(),
            error: entry.error.clone(),
            at: rfc3339(entry.at),
        }
    }
}

/// One delivery in full (`inbox show --json`, `GET .../deliveries/{key}`): its row, the
/// stored headers (credential headers were never stored), the body and the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeliveryDetail {
    /// Everything a listing shows.
    #[serde(flatten)]
    pub row: DeliveryRow,
    /// The stored headers, in order, as `[name, value]` (a value that is not UTF-8 written
    /// lossily).
    pub headers: Vec<(String, String)>,
    /// The body as text (lossily, when it is not UTF-8), whole.
    pub body: String,
    /// What became of its attempts, oldest first.
    pub history: Vec<HistoryRow>,
}

impl DeliveryDetail {
    /// The detail of `record`.
    #[must_use]
    pub fn of(record: &Record) -> Self {
        Self {
            row: DeliveryRow::of(record),
            headers: record
                .delivery
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(record.delivery.body()).into_owned(),
            history: record.history.iter().map(HistoryRow::of).collect(),
        }
    }
}

/// The inbox's counts (`inbox stats --json`, `GET .../stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StatsView {
    /// Pending, never attempted.
    pub waiting: u64,
    /// Claimed by a worker.
    pub running: u64,
    /// Pending after a failed attempt.
    pub retrying: u64,
    /// Dead-lettered.
    pub dead: u64,
    /// Done and not yet pruned.
    pub done: u64,
    /// How long ago the oldest waiting (pending or running) delivery was accepted, in
    /// milliseconds; `0` when none waits.
    pub lag_ms: u64,
}

impl StatsView {
    /// The view of `stats`.
    #[must_use]
    pub fn of(stats: &Stats) -> Self {
        Self {
            waiting: stats.waiting(),
            running: stats.running,
            retrying: stats.retrying,
            dead: stats.dead,
            done: stats.done,
            lag_ms: stats
                .oldest_waiting
                .map_or(0, |age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// `at` in RFC 3339 (UTC, as the backends give it).
fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stats_print_waiting_apart_from_retrying_and_the_lag_in_milliseconds() {
        let stats = Stats {
            pending: 7,
            retrying: 2,
            running: 1,
            done: 3,
            dead: 4,
            oldest_waiting: Some(Duration::from_millis(1_500)),
        };
        let json = serde_json::to_value(StatsView::of(&stats)).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"waiting": 5, "running": 1, "retrying": 2, "dead": 4, "done": 3,
                "lag_ms": 1500})
        );
    }
}
