//! Signing secrets that never show themselves, and sets of them for rotation.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use hmac::{Hmac, Mac};
use http::request::Parts;
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
    fingerprint: Fingerprint,
}

/// A secret's fingerprint: the first 16 bytes of the HMAC-SHA256, under the secret, of a fixed
/// label. It names the endpoint whose secret verified a delivery in idempotency keys, so that
/// two endpoints with different secrets never share keys while replicas holding the same secret
/// always agree. A MAC output reveals nothing of the key, and it is never printed.
pub(crate) type Fingerprint = [u8; 16];

/// The label whose MAC under a secret is its [`Fingerprint`].
const FINGERPRINT_LABEL: &[u8] = b"tower-webhook endpoint fingerprint v1";

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
        // One more MAC (two SHA-256 blocks), once per secret, not per request.
        let mut labelled = mac.clone();
        labelled.update(FINGERPRINT_LABEL);
        let mut fingerprint = Fingerprint::default();
        fingerprint.copy_from_slice(&labelled.finalize().into_bytes()[..16]);
        Ok(Self { mac, fingerprint })
    }

    /// A secret no sender has (an all-zero key, not a valid configuration): for work that must
    /// look like verifying while never being able to accept anything.
    pub(crate) fn throwaway() -> Self {
        Self {
            mac: <HmacSha256 as hmac::digest::KeyInit>::new(
                &hmac::digest::generic_array::GenericArray::default(),
            ),
            // Never used: a delivery MACed with this secret is refused whatever it carries.
            fingerprint: Fingerprint::default(),
        }
    }

    /// A fresh MAC keyed with this secret.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }

    /// This secret's fingerprint (see [`Fingerprint`]).
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
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
/// The order matters: the secret that verified a delivery names its endpoint in idempotency
/// keys (unless the layer has [`with_endpoint`](crate::WebhookLayer::with_endpoint)), and when
/// several verify it (senders sign with both secrets during a rotation) the one added last
/// counts. Add the new secret first and the old one after it, so that replicas still holding
/// only the old secret key the delivery the same way.
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

    pub(crate) fn as_slice(&self) -> &[Secret] {
        &self.secrets
    }
}

impl From<Secret> for Secrets {
    fn from(secret: Secret) -> Self {
        Self::new(secret)
    }
}

/// A customer (tenant) of a multi-tenant receiver and the secrets its deliveries are signed
/// with, as a [`SecretResolver`] finds them.
#[derive(Clone, Debug)]
pub struct Tenant {
    id: String,
    secrets: Secrets,
}

impl Tenant {
    /// The tenant `id` (it scopes idempotency keys and is reported in
    /// [`WebhookMeta::tenant`](crate::WebhookMeta::tenant)) and its current secrets.
    #[must_use]
    pub fn new(id: impl Into<String>, secrets: impl Into<Secrets>) -> Self {
        Self {
            id: id.into(),
            secrets: secrets.into(),
        }
    }

    /// The tenant's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn into_parts(self) -> (String, Secrets) {
        (self.id, self.secrets)
    }
}

/// A resolver could not look the secrets up (its database is down, ...). The layer answers
/// `503 secrets_unavailable` with `Retry-After`, so the sender retries later.
#[derive(Debug, thiserror::Error)]
#[error("secret resolver failed: {0}")]
pub struct ResolveError(pub Box<dyn std::error::Error + Send + Sync>);

/// The future a [`SecretResolver`] returns.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Tenant>, ResolveError>> + Send + 'a>>;

/// Picks the secrets per request, for receivers that serve many customers, each with its own
/// secret: typically from the request's path (`/webhooks/{customer}`) or an unsigned header.
///
/// What it reads is **not** trusted: it only selects which secrets to try, and the signature is
/// then verified against them as usual. `Ok(None)` (no such tenant) is answered like a wrong
/// signature, `401 signature_mismatch`, after the body was read exactly as for a known tenant
/// (same limit, timeout and answers), so that without a valid signature no answer reveals
/// which tenants exist.
///
/// A resolver that fails, or does not answer within
/// [`with_resolver_timeout`](crate::WebhookLayer::with_resolver_timeout) (default 5 s), is
/// answered `503 secrets_unavailable` with the `Retry-After` of
/// [`with_resolver_retry_after`](crate::WebhookLayer::with_resolver_retry_after) (default 30 s).
///
/// Implemented for closures `Fn(&Parts) -> impl Future<Output = Result<Option<Tenant>,
/// ResolveError>>`. With axum, [`PathParams`](crate::PathParams) reads the route's path
/// parameters (`{tenant}` in `/webhooks/{tenant}`); they are there when the layer is the
/// route's (`route_layer`), not when it wraps the whole application:
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use axum::{routing::post, Router};
/// use tower_webhook::{PathParams, ResolveError, Secret, Tenant, WebhookLayer};
///
/// let layer = WebhookLayer::per_tenant(|parts: &http::request::Parts| {
///     let customer = PathParams::from_parts(parts)
///         .and_then(|params| params.get("tenant").map(str::to_owned));
///     async move {
///         let Some(customer) = customer else { return Ok(None) };
///         // Look the customer's secret up in your database here.
///         let secret = match customer.as_str() {
///             "acme" => Secret::new("whsec_acme").map_err(|e| ResolveError(e.into()))?,
///             _ => return Ok(None),
///         };
///         Ok(Some(Tenant::new(customer, secret)))
///     }
/// });
/// let app: Router = Router::new().route(
///     "/webhooks/{tenant}",
///     post(|| async { "ok" }).route_layer(layer),
/// );
/// # let _ = app;
/// # }
/// ```
pub trait SecretResolver: Send + Sync + 'static {
    /// The tenant a request claims to come from, with its secrets; `None` if there is none.
    fn resolve<'a>(&'a self, request: &'a Parts) -> ResolveFuture<'a>;
}

impl<F, Fut> SecretResolver for F
where
    F: Fn(&Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Tenant>, ResolveError>> + Send + 'static,
{
    fn resolve<'a>(&'a self, request: &'a Parts) -> ResolveFuture<'a> {
        Box::pin(self(request))
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

    #[test]
    fn fingerprints_tell_secrets_apart_and_agree_for_the_same_secret() {
        let a = Secret::new("whsec_a").unwrap();
        assert_eq!(
            a.fingerprint(),
            Secret::new("whsec_a").unwrap().fingerprint()
        );
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_ne!(
            a.fingerprint(),
            Secret::new("whsec_b").unwrap().fingerprint()
        );
        // Not the key, nor its plain digest.
        let key = b"whsec_a";
        assert!(!a.fingerprint().windows(key.len()).any(|w| w == key));
        let plain = <Sha256 as sha2::Digest>::digest(key);
        assert_ne!(a.fingerprint()[..], plain[..16]);
    }
}
