//! `--since`: an RFC 3339 time, or a time relative to now (`30m`, `1h`, `2d`).

use std::time::Duration;

use tower_webhook::time::format_description::well_known::Rfc3339;
use tower_webhook::time::OffsetDateTime;

/// Reads `text` as an RFC 3339 time (`2026-05-01T12:00:00Z`) or as an age: a whole number
/// followed by `s`, `m`, `h`, `d` or `w` (that long before `now`).
pub(crate) fn parse(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    let error = || {
        format!(
            "{text:?} is neither an RFC 3339 time (2026-05-01T12:00:00Z) nor an age (30s, 15m, 1h, 2d, 1w)"
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| error())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(error()),
    };
    let age = Duration::from_secs(number.checked_mul(seconds).ok_or_else(error)?);
    now.checked_sub(age.try_into().map_err(|_| error())?)
        .ok_or_else(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rfc_3339_and_ages() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let ago = |text| parse(text, now).map(|at| (now - at).whole_seconds());
        assert_eq!(ago("30m"), Ok(1_800));
        assert_eq!(ago("1h"), Ok(3_600));
        assert_eq!(ago("2d"), Ok(172_800));
        assert_eq!(
            parse("2026-05-01T12:00:00Z", now).map(OffsetDateTime::unix_timestamp),
            Ok(1_777_636_800)
        );
        for bad in ["", "h", "1y", "-1h", "1.5h", "yesterday"] {
            assert!(parse(bad, now).is_err(), "{bad}");
        }
    }
}
