//! [`InboxOptions`]: what the backends are opened with, and its defaults.

use std::time::Duration;

#[cfg(doc)]
use super::{InboxBackend, InboxError};
use crate::error::ConfigError;

/// How long one inbox call may take by default before it fails with [`InboxError::Timeout`]
/// (the layer then answers `503` with `Retry-After`): 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many deliveries may wait (pending or running) by default before
/// [`InboxBackend::accept`] refuses new ones with [`InboxError::Full`]: 100,000.
pub const DEFAULT_MAX_DEPTH: u64 = 100_000;
/// The default prefix of the SQL backends' table names (`tower_webhook_deliveries`, ...).
pub const DEFAULT_PREFIX: &str = "tower_webhook_";

/// An inbox backend's configuration: the SQL backends take it when they open.
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::inbox::InboxOptions;
///
/// let options = InboxOptions::new()
///     .with_prefix("billing_")?
///     .with_max_depth(10_000)
///     .with_timeout(Duration::from_secs(2));
/// assert_eq!(options.prefix(), "billing_");
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxOptions {
    prefix: String,
    max_depth: u64,
    timeout: Duration,
}

impl Default for InboxOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl InboxOptions {
    /// The defaults: prefix [`DEFAULT_PREFIX`], depth [`DEFAULT_MAX_DEPTH`], timeout
    /// [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            max_depth: DEFAULT_MAX_DEPTH,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The prefix of every table (and index) name the backend creates (default
    /// `tower_webhook_`): give each inbox sharing a database its own. Lower-case ASCII letters,
    /// digits and `_`, starting with a letter or `_`, at most 40 bytes (it is part of SQL
    /// identifiers).
    ///
    /// # Errors
    /// [`ConfigError::InvalidInboxPrefix`] when the prefix breaks those rules.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        let mut bytes = prefix.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !first_ok || !rest_ok || prefix.len() > 40 {
            return Err(ConfigError::InvalidInboxPrefix);
        }
        self.prefix = prefix;
        Ok(self)
    }

    /// How many deliveries may wait (pending or running) before accept answers
    /// [`InboxError::Full`] (default [`DEFAULT_MAX_DEPTH`]).
    ///
    /// The limit is the inbox's, not a process's: every process and replica that opens the
    /// inbox counts the same deliveries, so accepts made one after another never pass it,
    /// whichever processes make them. Accepts running at the same moment may pass it by their
    /// number on Postgres (each sees the depth as committed when it starts); on `SQLite` (one
    /// writer at a time) and Redis (one script per accept) they never do. Each process compares
    /// that depth with its own limit, so give them all the same one (a process given `0` stops
    /// taking new deliveries while the others go on).
    ///
    /// `0` refuses every new delivery (`503 inbox_full`, so the senders retry later) while
    /// duplicates are still answered as such: a way to stop intake while the workers drain
    /// the inbox.
    #[must_use]
    pub fn with_max_depth(mut self, max_depth: u64) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// How long one call may take before it fails with [`InboxError::Timeout`] (default
    /// [`DEFAULT_TIMEOUT`]); it also bounds waiting for a pooled connection.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The table-name prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The depth limit.
    #[must_use]
    pub fn max_depth(&self) -> u64 {
        self.max_depth
    }

    /// The timeout of one call.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked_because_they_are_part_of_sql_identifiers() {
        for good in ["tower_webhook_", "_x", "app1_"] {
            assert!(InboxOptions::new().with_prefix(good).is_ok(), "{good}");
        }
        for bad in ["", "1x", "x;drop", "X", "a-b", "\"x", &"a".repeat(41)] {
            assert!(InboxOptions::new().with_prefix(bad).is_err(), "{bad}");
        }
    }
}
