//! How a delivery is stored in its hash, and read back from a script's answer.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::idempotency::IdempotencyKey;
use crate::inbox::delivery::{
    Delivery, DeliveryState, Facts, HistoryEntry, HistoryKind, Record, HISTORY_LIMIT,
};
use crate::inbox::error::{backend, corrupt, InboxError};

/// The fields a delivery is stored as, besides the inbox's own.
pub(super) fn encode(delivery: &Delivery) -> Result<Vec<(&'static str, Vec<u8>)>, InboxError> {
    let facts = delivery.facts();
    let mut fields = vec![
        ("key", delivery.key().as_bytes().to_vec()),
        ("path", delivery.path().as_bytes().to_vec()),
        ("headers", encode_headers(delivery.headers())),
        ("body", delivery.body().to_vec()),
        ("scheme", facts.scheme.as_bytes().to_vec()),
        ("id", facts.id.as_bytes().to_vec()),
    ];
    let optional = [
        ("event", &facts.event),
        ("action", &facts.action),
        ("delivery", &facts.delivery),
        ("scope", &facts.scope),
        ("tenant", &facts.tenant),
        ("version", &facts.version),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            fields.push((name, value.as_bytes().to_vec()));
        }
    }
    if let Some(timestamp) = facts.timestamp {
        let text = timestamp.format(&Rfc3339).map_err(backend)?;
        fields.push(("signed_at", text.into_bytes()));
    }
    Ok(fields)
}

/// Headers as stored: `name:value` lines (a value never holds a line break, a name never a
/// colon), byte for byte.
fn encode_headers(headers: &[(HeaderName, HeaderValue)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

fn decode_headers(bytes: &[u8]) -> Result<Vec<(HeaderName, HeaderValue)>, InboxError> {
    bytes
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let colon = line
                .iter()
                .position(|byte| *byte == b':')
                .ok_or_else(|| corrupt("a stored header has no name"))?;
            let name = HeaderName::from_bytes(&line[..colon]).map_err(backend)?;
            let value = HeaderValue::from_bytes(&line[colon + 1..]).map_err(backend)?;
            Ok((name, value))
        })
        .collect()
}

/// A record from the flat `field, value, ...` list a script answers.
pub(super) fn decode(row: Vec<Vec<u8>>) -> Result<Record, InboxError> {
    let mut fields: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut items = row.into_iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        fields.insert(name, value);
    }
    let mut take = |name: &str| fields.remove(name.as_bytes());
    let text = |value: Vec<u8>| String::from_utf8(value).map_err(backend);
    let required = |value: Option<Vec<u8>>, name: &'static str| value.ok_or_else(|| corrupt(name));
    let key: [u8; 32] = required(take("key"), "a stored delivery has no key")?
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("a stored key is not 32 bytes"))?;
    let state: DeliveryState = text(required(take("state"), "a stored delivery has no state")?)?
        .parse()
        .map_err(backend)?;
    let number = |value: Option<Vec<u8>>| -> Result<Option<i64>, InboxError> {
        value
            .map(|value| {
                // Scores (whole milliseconds) come back without an exponent.
                String::from_utf8(value)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok())
                    .ok_or_else(|| corrupt("a stored number does not parse"))
            })
            .transpose()
    };
    let optional = |value: Option<Vec<u8>>| value.map(text).transpose();
    let accepted = number(take("accepted"))?.ok_or_else(|| corrupt("no acceptance time"))?;
    let due = number(take("due"))?;
    let lease_end = number(take("lease_end"))?;
    let finished = number(take("finished"))?;
    let timestamp = optional(take("signed_at"))?
        .map(|text| OffsetDateTime::parse(&text, &Rfc3339))
        .transpose()
        .map_err(backend)?;
    let facts = Facts {
        scheme: text(required(take("scheme"), "a stored delivery has no scheme")?)?,
        id: text(required(take("id"), "a stored delivery has no event id")?)?,
        event: optional(take("event"))?,
        action: optional(take("action"))?,
        delivery: optional(take("delivery"))?,
        scope: optional(take("scope"))?,
        tenant: optional(take("tenant"))?,
        timestamp,
        version: optional(take("version"))?,
    };
    let delivery = Delivery {
        key: IdempotencyKey::from_bytes(key),
        facts,
        path: text(take("path").unwrap_or_default())?,
        headers: decode_headers(&take("headers").unwrap_or_default())?,
        body: Bytes::from(take("body").unwrap_or_default()),
    };
    let due_ms = match state {
        DeliveryState::Pending => due.unwrap_or(accepted),
        DeliveryState::Running => lease_end.or(due).unwrap_or(accepted),
        DeliveryState::Done | DeliveryState::Dead => finished.unwrap_or(accepted),
    };
    let mut record = Record::new(delivery, state, from_ms(accepted)?);
    record.attempts = number(take("attempts"))?
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    record.last_error = optional(take("error"))?;
    record.history = take("history")
        .map(|json| decode_history(&json))
        .unwrap_or_default();
    record.due_at = from_ms(due_ms)?;
    record.finished_at = match state {
        DeliveryState::Done | DeliveryState::Dead => finished.map(from_ms).transpose()?,
        DeliveryState::Pending | DeliveryState::Running => None,
    };
    Ok(record)
}

/// One entry of the `history` field, as the scripts write it (`remember` in
/// `lua/prelude.lua`, through `cjson`).
#[derive(serde::Deserialize)]
struct StoredEntry {
    attempt: f64,
    kind: String,
    at: f64,
    #[serde(default)]
    error: Option<String>,
}

/// The `history` field (a JSON array, oldest first): empty when it does not read, never an
/// error (the history is for people; a damaged one must not hide the delivery).
fn decode_history(json: &[u8]) -> Vec<HistoryEntry> {
    let Ok(stored) = serde_json::from_slice::<Vec<StoredEntry>>(json) else {
        return Vec::new();
    };
    let entries: Option<Vec<HistoryEntry>> = stored
        .into_iter()
        .map(|entry| {
            let kind = HistoryKind::from_name(&entry.kind)?;
            let attempt = whole(entry.attempt).and_then(|n| u32::try_from(n).ok())?;
            let at = from_ms(whole(entry.at)?).ok()?;
            let mut out = HistoryEntry::new(attempt, kind, at);
            out.error = entry.error;
            Some(out)
        })
        .collect();
    let mut entries = entries.unwrap_or_default();
    let extra = entries.len().saturating_sub(HISTORY_LIMIT);
    entries.drain(..extra);
    entries
}

/// A JSON number that holds a whole number (`cjson` writes integers without a fraction, up to
/// 14 digits), as an `i64`.
fn whole(number: f64) -> Option<i64> {
    // Within ±2^53 every whole f64 is exact, and the cast cannot truncate (outside, `as`
    // saturates, and the value is not used).
    const EXACT: f64 = 9_007_199_254_740_992.0;
    #[allow(clippy::cast_possible_truncation)]
    (number.fract() == 0.0 && number.abs() <= EXACT).then_some(number as i64)
}

fn from_ms(ms: i64) -> Result<OffsetDateTime, InboxError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_reads_back_and_an_unreadable_one_is_empty() {
        let json = br#"[{"attempt":1,"kind":"retried","at":1733510000123,"error":"boom"},
            {"kind":"done","attempt":2,"at":1733510000456}]"#;
        let history = decode_history(json);
        assert_eq!(history.len(), 2);
        assert_eq!(
            (
                history[0].attempt,
                history[0].kind,
                history[0].error.as_deref()
            ),
            (1, HistoryKind::Retried, Some("boom"))
        );
        assert_eq!(
            history[0].at.unix_timestamp_nanos(),
            1_733_510_000_123_000_000
        );
        assert_eq!(
            (history[1].attempt, history[1].kind),
            (2, HistoryKind::Done)
        );
        assert_eq!(history[1].error, None);
        for odd in [
            &b"not json"[..],
            b"{}",
            b"[{\"attempt\":1}]",
            b"[{\"attempt\":-1,\"kind\":\"done\",\"at\":0}]",
            b"[{\"attempt\":1.5,\"kind\":\"done\",\"at\":0}]",
            b"[{\"attempt\":1,\"kind\":\"exploded\",\"at\":0}]",
            b"[{\"attempt\":1,\"kind\":\"done\",\"at\":1e300}]",
        ] {
            assert!(
                decode_history(odd).is_empty(),
                "{}",
                String::from_utf8_lossy(odd)
            );
        }
    }

    #[test]
    fn headers_round_trip_byte_for_byte() {
        let headers = vec![
            (
                HeaderName::from_static("x-webhook-id"),
                HeaderValue::from_static("evt:1 with: colons"),
            ),
            (
                HeaderName::from_static("x-odd"),
                HeaderValue::from_bytes(b"caf\xe9\t").unwrap_or(HeaderValue::from_static("")),
            ),
            (
                HeaderName::from_static("x-empty"),
                HeaderValue::from_static(""),
            ),
        ];
        let decoded = decode_headers(&encode_headers(&headers)).ok();
        assert_eq!(decoded, Some(headers));
    }
}
