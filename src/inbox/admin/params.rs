//! The query strings and forms the admin router reads: each parameter once, known names only,
//! an empty value meaning "not set" (what an HTML form sends for an empty field).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::idempotency::IdempotencyKey;
use crate::inbox::{Cursor, Filter, Status, MAX_PAGE};

use super::refusal::Refusal;

/// The parameters of one request, by name; every one optional.
#[derive(Debug, Default)]
pub(super) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The parameters of `text` (a query string or a form body), refused with `400 bad_query`
    /// when it does not parse, names a parameter not in `known` or repeats one.
    pub(super) fn parse(text: Option<&str>, known: &[&str]) -> Result<Self, Refusal> {
        const BAD: Refusal = Refusal::bad(
            "bad_query",
            "unknown or repeated parameter, or a query that does not parse",
        );
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(text.unwrap_or_default()).map_err(|_| BAD)?;
        for (n, (name, _)) in pairs.iter().enumerate() {
            if !known.contains(&name.as_str()) || pairs[..n].iter().any(|(seen, _)| seen == name) {
                return Err(BAD);
            }
        }
        Ok(Self { pairs })
    }

    /// The value of `name`, unless absent or empty.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// Whether `name` is `true` (`false` or absent: no; anything else is refused).
    pub(super) fn flag(&self, name: &str) -> Result<bool, Refusal> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(Refusal::bad("bad_flag", "a flag is `true` or `false`")),
        }
    }

    /// A count set as `name`, or `None`.
    pub(super) fn count(&self, name: &str) -> Option<u64> {
        self.get(name)?.parse().ok()
    }

    /// The [`Filter`] of `state`, `event`, `id`, `since`, `after` and `limit`.
    pub(super) fn filter(&self) -> Result<Filter, Refusal> {
        let mut filter = Filter::new();
        if let Some(state) = self.get("state") {
            filter = filter.status(state.parse::<Status>().map_err(|_| {
                Refusal::bad(
                    "bad_state",
                    "state is one of waiting, running, retrying, dead, done",
                )
            })?);
        }
        if let Some(event) = self.get("event") {
            filter = filter.event(event);
        }
        if let Some(id) = self.get("id") {
            filter = filter.id(id);
        }
        if let Some(since) = self.get("since") {
            filter = filter.since(OffsetDateTime::parse(since, &Rfc3339).map_err(|_| {
                Refusal::bad(
                    "bad_since",
                    "since is a time in RFC 3339 (2026-12-06T18:00:00Z)",
                )
            })?);
        }
        if let Some(after) = self.get("after") {
            filter = filter.after(after.parse::<Cursor>().map_err(|_| {
                Refusal::bad(
                    "bad_cursor",
                    "after is a cursor from a previous page (x-next-cursor)",
                )
            })?);
        }
        if let Some(limit) = self.get("limit") {
            let limit = limit
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=MAX_PAGE).contains(limit))
                .ok_or(Refusal::bad(
                    "bad_limit",
                    "limit is a number from 1 to 1000",
                ))?;
            filter = filter.limit(limit);
        }
        Ok(filter)
    }
}

/// The key in a path, 64 hex digits, or `400 bad_key`.
pub(super) fn key(text: &str) -> Result<IdempotencyKey, Refusal> {
    IdempotencyKey::from_hex(text).ok_or(Refusal::BAD_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &["state", "event", "id", "since", "after", "limit"];

    #[test]
    fn a_filter_reads_every_parameter_and_empty_ones_are_unset() {
        let params = Params::parse(
            Some("state=dead&event=member.created&id=&since=2026-12-06T18%3A00%3A00Z&limit=5"),
            ALL,
        )
        .unwrap_or_default();
        let filter = params.filter().unwrap_or_default();
        assert_eq!(filter.status, Some(Status::Dead));
        assert_eq!(filter.event.as_deref(), Some("member.created"));
        assert_eq!(filter.id, None);
        assert!(filter.since.is_some());
        assert_eq!(filter.limit, 5);
    }

    #[test]
    fn bad_parameters_are_refused_with_their_own_codes() {
        let code = |query: &str| {
            Params::parse(Some(query), ALL)
                .and_then(|params| params.filter())
                .err()
                .map(|refusal| refusal.code)
        };
        assert_eq!(code("state=sleeping"), Some("bad_state"));
        assert_eq!(code("after=12.zz"), Some("bad_cursor"));
        assert_eq!(code("since=yesterday"), Some("bad_since"));
        assert_eq!(code("limit=0"), Some("bad_limit"));
        assert_eq!(code("limit=1001"), Some("bad_limit"));
        assert_eq!(code("color=red"), Some("bad_query"));
        assert_eq!(code("state=dead&state=done"), Some("bad_query"));
        assert_eq!(code("state=dead"), None);
        assert_eq!(key("abc").err(), Some(Refusal::BAD_KEY));
    }
}
