//! Signing secrets that never show themselves, and sets of them for rotation.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ConfigError;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// One signing secret, keyed into HMAC-SHA256 once when it is created.
///
/// The raw key is not kept: only the keyed MAC state, which is cloned per request (cheaper than
/// keying each time). `Debug` prints `Secret(REDACTED)`.
///
/// Sotion, GitHub, sota.io, Stripe and Slack use the secret string's bytes as the key as they are
/// (for Sotion the whole `whsec_...` string): use [`Secret::new`].
///
/// ```
/// use tower_webhook::Secret;
///
/// let secret = Secret::new("whsec_test_secret")?;
/// assert_eq!(format!("{secret:?}"), "Secret(REDACTED)");
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Secret {
    mac: HmacSha256,
}

impl Secret {
    /// A secret whose bytes are the HMAC key as given. Fails on an empty secret.
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] when `key` is empty.
    pub fn new(key: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let key = key.as_ref();
        if key.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        // HMAC accepts keys of any length, so this cannot fail; map it anyway rather than panic.
        let mac = HmacSha256::new_from_slice(key).map_err(|_| ConfigError::EmptySecret)?;
        Ok(Self { mac })
    }

    /// A fresh MAC keyed with this secret.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

/// The secrets a receiver currently accepts: one, or several while a secret is being rotated.
///
/// A delivery passes when its signature matches any of them. Every secret is tried, always, and
/// each comparison is constant time, so timing tells an attacker neither how close a guess was
/// nor which secret matched.
///
/// ```
/// use tower_webhook::{Secret, Secrets};
///
/// // During rotation: the new secret first, the old one until every sender has switched.
/// let secrets = Secrets::new(Secret::new("whsec_new")?).with(Secret::new("whsec_old")?);
/// assert_eq!(secrets.len(), 2);
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Secrets {
    secrets: Vec<Secret>,
}

impl Secrets {
    /// A set holding one secret (a set is never empty).
    #[must_use]
    pub fn new(secret: Secret) -> Self {
        Self {
            secrets: vec![secret],
        }
    }

    /// Adds another accepted secret.
    #[must_use]
    pub fn with(mut self, secret: Secret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// How many secrets the set holds (at least one).
    #[must_use]
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Always `false`: a set holds at least one secret.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The secrets, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.secrets.iter()
    }
}

impl From<Secret> for Secrets {
    fn from(secret: Secret) -> Self {
        Self::new(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_an_empty_secret() {
        assert_eq!(Secret::new("").unwrap_err(), ConfigError::EmptySecret);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let secrets = Secrets::new(Secret::new("whsec_supersecretvalue").unwrap())
            .with(Secret::new("another-key-9876").unwrap());
        let printed = format!("{secrets:?} {secrets:#?}");
        assert!(!printed.contains("supersecret"), "{printed}");
        assert!(!printed.contains("9876"), "{printed}");
        assert!(printed.contains("REDACTED"));
    }
}
