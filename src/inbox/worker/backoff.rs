//! How long a failed delivery waits before its next attempt.

use std::time::Duration;

/// The delay before the attempt after attempt `attempt` (1 for the first): `first · 2^(attempt-1)`
/// plus `jitter` (a number in `[0, 1)`) times half of that, at most `max`. Each attempt's delay
/// is at least the previous one's, whatever the jitter.
pub(crate) fn backoff(first: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let doubling = 2f64.powi(i32::try_from(attempt.saturating_sub(1).min(62)).unwrap_or(62));
    let base = first.as_secs_f64() * doubling;
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let delay = base * (1.0 + 0.5 * jitter);
    Duration::try_from_secs_f64(delay).map_or(max, |delay| delay.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn backoff_doubles_from_the_first_delay_and_stops_at_the_maximum() {
        let hour = Duration::from_secs(3600);
        let delays: Vec<Duration> = (1..=5).map(|n| backoff(SECOND, hour, n, 0.0)).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16].map(Duration::from_secs));
        assert_eq!(backoff(SECOND, hour, 20, 0.0), hour);
        assert_eq!(backoff(SECOND, hour, u32::MAX, 0.99), hour);
    }

    #[test]
    fn jitter_adds_up_to_half_and_delays_still_grow_whatever_it_draws() {
        let max = Duration::from_secs(3600);
        assert_eq!(backoff(SECOND, max, 1, 0.5), Duration::from_millis(1250));
        assert!(backoff(SECOND, max, 3, 0.999) < Duration::from_secs(6));
        for attempt in 1..10 {
            // The longest draw of one attempt is shorter than the shortest of the next.
            assert!(backoff(SECOND, max, attempt, 1.0) < backoff(SECOND, max, attempt + 1, 0.0));
        }
        // Out-of-range draws are clamped.
        assert_eq!(backoff(SECOND, max, 1, -3.0), SECOND);
        assert_eq!(backoff(SECOND, max, 1, f64::NAN), SECOND);
    }

    #[test]
    fn jitter_spreads_the_retries_of_deliveries_that_failed_together() {
        let max = Duration::from_secs(3600);
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| backoff(SECOND, max, 3, rand::random::<f64>()))
            .collect();
        assert!(delays.len() > 1, "every draw gave the same delay");
        assert!(delays.iter().all(|d| *d >= SECOND * 4 && *d < SECOND * 6));
    }
}
