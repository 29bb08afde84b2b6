//! Signing secrets that never show themselves, and sets of them for rotation.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use hmac::{Hmac, Mac};
use http::request::Parts;
use sha2::Sha256;

use crate::asymmetric::AsymmetricKey;
use crate::error::ConfigError;
use crate::scheme::{Algorithm, SecretFormat};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// One signing secret, keyed into HMAC-SHA256 (and HMAC-SHA1 with the `sha1` feature) once when
/// it is created, or a sender's public key for the asymmetric schemes (Discord, Standard
/// Webhooks `v1a`, SendGrid), and the [`SecretFormat`] it was decoded for.
///
/// The raw key is not kept: only the keyed MAC state, which is cloned per request (cheaper than
/// keying each time). `Debug` prints `Secret(REDACTED)`.
///
/// Senders write their secrets differently: Sotion, GitHub, sota.io, Stripe and Slack use the
/// secret string's bytes as the key as they are (for Sotion the whole `whsec_...` string),
/// Standard Webhooks base64-decodes what follows `whsec_`. So let the scheme decode the text
/// ([`Scheme::secret`](crate::Scheme::secret), or the layer builder's
/// [`with_secret`](crate::layer::WebhookLayerBuilder::with_secret)); [`Secret::new`] takes the
/// key's bytes as they are, for a scheme with raw secrets. The secret remembers how it was
/// decoded, and a layer refuses to build with a secret decoded for another scheme's format
/// ([`ConfigError::SecretFormatMismatch`]).
///
/// ```
/// use tower_webhook::{Scheme, Secret};
///
/// let sotion = Secret::new("whsec_test_secret")?; // Sotion: the text is the key
/// assert_eq!(format!("{sotion:?}"), "Secret(REDACTED)");
///
/// // Standard Webhooks: the key is the base64 after `whsec_`.
/// let svix = Scheme::standard_webhooks().secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// # let _ = svix;
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Secret {
    key: Key,
    fingerprint: Fingerprint,
    format: SecretFormat,
    /// The key read other ways, keyed once too, to explain a refusal (never to accept one).
    alternatives: Vec<AlternativeKey>,
}

/// Another reading of a secret's key, tried only to explain a refusal: when a delivery's
/// signature matches it, the refusal's [`Reason`](crate::error::Reason) says why.
#[derive(Clone)]
pub(crate) struct AlternativeKey {
    pub(crate) mac: HmacSha256,
    pub(crate) kind: Alternative,
}

/// What an [`AlternativeKey`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Alternative {
    /// The key without its leading and trailing whitespace.
    Trimmed,
    /// The text read in another [`SecretFormat`] than the secret's.
    ReadAs(SecretFormat),
}

/// What a [`Secret`] holds: an HMAC key (as keyed MAC states, never the raw key), or an
/// asymmetric key.
// Not boxed: a layer holds a handful of secrets, made once.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum Key {
    /// An HMAC key: keyed for SHA-256, and for SHA-1 too when the `sha1` feature is built.
    Hmac {
        sha256: HmacSha256,
        #[cfg(feature = "sha1")]
        sha1: hmac::Hmac<sha1::Sha1>,
    },
    /// A sender's public key (or, for tests and the demo, a private key).
    Asymmetric(Algorithm, AsymmetricKey),
}

/// A secret's fingerprint: the first 16 bytes of the HMAC-SHA256, under the secret, of a fixed
/// label (of a public key: of its SHA-256 after the label). It names the endpoint whose secret
/// verified a delivery in idempotency keys, so that two endpoints with different secrets never
/// share keys while replicas holding the same secret always agree. A MAC output reveals nothing
/// of the key, and it is never printed.
pub(crate) type Fingerprint = [u8; 16];

/// The label whose MAC under a secret is its [`Fingerprint`].
const FINGERPRINT_LABEL: &[u8] = b"tower-webhook endpoint fingerprint v1";

impl Secret {
    /// A secret whose bytes are the HMAC key as given ([`SecretFormat::Raw`]): for the schemes
    /// with raw secrets (Sotion, GitHub, sota.io, Stripe, Slack). A scheme that decodes its
    /// secrets (Standard Webhooks) refuses it; give it the text instead
    /// ([`Scheme::secret`](crate::Scheme::secret)).
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] when `key` is empty.
    pub fn new(key: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let key = key.as_ref();
        let mut secret = Self::keyed(key, SecretFormat::Raw)?;
        let trimmed = key.trim_ascii();
        if trimmed.len() != key.len() {
            secret.alternative(trimmed, Alternative::Trimmed);
        }
        if let Ok(text) = std::str::from_utf8(key) {
            secret.read_as_base64(text);
        }
        Ok(secret)
    }

    /// The secret written as `text` in `format`, for a scheme signing with `algorithm`: the
    /// text's bytes, its hex, or the base64 after the format's prefix (stripped when present);
    /// an HMAC key, or the sender's public key for an asymmetric algorithm.
    pub(crate) fn decode(
        text: &str,
        format: &SecretFormat,
        algorithm: Algorithm,
    ) -> Result<Self, ConfigError> {
        Self::decode_key(text, format, algorithm, false)
    }

    /// A private key for an asymmetric `algorithm` (for tests and development: a receiver only
    /// ever needs the public key), written as the scheme writes its keys: Ed25519, the 32-byte
    /// seed (hex for a hex format, base64 after `whsk_` or the format's prefix); P-256, PKCS#8
    /// DER in base64. For an HMAC the secret itself.
    pub(crate) fn decode_signing(
        text: &str,
        format: &SecretFormat,
        algorithm: Algorithm,
    ) -> Result<Self, ConfigError> {
        Self::decode_key(text, format, algorithm, true)
    }

    fn decode_key(
        text: &str,
        format: &SecretFormat,
        algorithm: Algorithm,
        private: bool,
    ) -> Result<Self, ConfigError> {
        // A newline from an env file or a pasted space would make every genuine delivery a 401;
        // a key that really has them is given as bytes (`Secret::new`).
        if text.trim() != text {
            return Err(ConfigError::SecretWhitespace);
        }
        if let Some(feature) = algorithm.feature().filter(|_| !algorithm.is_built()) {
            return Err(ConfigError::FeatureDisabled { algorithm, feature });
        }
        let bytes = match format {
            SecretFormat::Raw => text.as_bytes().to_vec(),
            SecretFormat::Base64 { prefix } => {
                let encoded = match text.strip_prefix(PRIVATE_PREFIX) {
                    Some(encoded) if private => encoded,
                    _ => text.strip_prefix(prefix.as_ref()).unwrap_or(text),
                };
                decode_base64(encoded)?
            }
            SecretFormat::Hex => decode_hex(text)?,
        };
        if bytes.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        let key = match algorithm {
            Algorithm::HmacSha256 | Algorithm::HmacSha1 => {
                let mut secret = Self::keyed(&bytes, format.clone())?;
                // Other readings of the text, to explain a refusal (see `Alternative`).
                if *format == SecretFormat::Raw {
                    secret.read_as_base64(text);
                } else {
                    let raw = Alternative::ReadAs(SecretFormat::Raw);
                    secret.alternative(text.as_bytes(), raw);
                }
                return Ok(secret);
            }
            #[cfg(feature = "ed25519")]
            Algorithm::Ed25519 if private => AsymmetricKey::ed25519_signing(&bytes),
            #[cfg(feature = "ed25519")]
            Algorithm::Ed25519 => AsymmetricKey::ed25519(&bytes),
            #[cfg(feature = "p256")]
            Algorithm::EcdsaP256Sha256 if private => AsymmetricKey::p256_signing(&bytes),
            #[cfg(feature = "p256")]
            Algorithm::EcdsaP256Sha256 => AsymmetricKey::p256(&bytes),
            #[allow(unreachable_patterns)]
            _ => Err(ConfigError::FeatureDisabled {
                algorithm,
                feature: algorithm.feature().unwrap_or("?"),
            }),
        };
        key.map(|key| Self::asymmetric(algorithm, key, format.clone()))
    }

    fn asymmetric(algorithm: Algorithm, key: AsymmetricKey, format: SecretFormat) -> Self {
        // A public key is no secret: its fingerprint is a digest of it (a private key's, of
        // its public key, so that both name the same endpoint).
        let mut hasher = <Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut hasher, FINGERPRINT_LABEL);
        sha2::Digest::update(&mut hasher, algorithm.to_string().as_bytes());
        sha2::Digest::update(&mut hasher, key.public_bytes());
        let mut fingerprint = Fingerprint::default();
        fingerprint.copy_from_slice(&sha2::Digest::finalize(hasher)[..16]);
        Self {
            key: Key::Asymmetric(algorithm, key),
            fingerprint,
            format,
            alternatives: Vec::new(),
        }
    }

    /// Keeps `key` as an alternative reading of this secret (an empty one is no key).
    fn alternative(&mut self, key: &[u8], kind: Alternative) {
        if let (false, Ok(mac)) = (key.is_empty(), HmacSha256::new_from_slice(key)) {
            self.alternatives.push(AlternativeKey { mac, kind });
        }
    }

    /// For a raw secret whose text is base64 after a `<letters>_` prefix (Standard Webhooks'
    /// `whsec_`), or base64 as a whole: that decoding, as another scheme would read it.
    fn read_as_base64(&mut self, text: &str) {
        let prefix_end = text
            .find('_')
            .filter(|&at| at > 0 && text[..at].bytes().all(|b| b.is_ascii_alphabetic()))
            .map_or(0, |at| at + 1);
        let (prefix, encoded) = text.split_at(prefix_end);
        if let Ok(key) = decode_base64(encoded) {
            let format = SecretFormat::base64(prefix.to_owned());
            self.alternative(&key, Alternative::ReadAs(format));
        }
    }

    fn keyed(key: &[u8], format: SecretFormat) -> Result<Self, ConfigError> {
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
        Ok(Self {
            key: Key::Hmac {
                sha256: mac,
                #[cfg(feature = "sha1")]
                sha1: hmac::Hmac::<sha1::Sha1>::new_from_slice(key)
                    .map_err(|_| ConfigError::EmptySecret)?,
            },
            fingerprint,
            format,
            alternatives: Vec::new(),
        })
    }

    /// The format this secret was decoded for.
    #[must_use]
    pub fn format(&self) -> &SecretFormat {
        &self.format
    }

    /// Whether this secret can verify `algorithm`'s signatures: an HMAC key any HMAC's, an
    /// asymmetric key its own algorithm's.
    pub(crate) fn fits(&self, algorithm: Algorithm) -> bool {
        match &self.key {
            Key::Hmac { .. } => !algorithm.is_asymmetric(),
            Key::Asymmetric(own, _) => *own == algorithm,
        }
    }

    /// The algorithm this secret is a key for (an HMAC key: HMAC-SHA256).
    pub(crate) fn algorithm(&self) -> Algorithm {
        match &self.key {
            Key::Hmac { .. } => Algorithm::HmacSha256,
            Key::Asymmetric(algorithm, _) => *algorithm,
        }
    }

    /// A secret no sender has (an all-zero key, not a valid configuration): for work that must
    /// look like verifying while never being able to accept anything.
    pub(crate) fn throwaway() -> Self {
        Self {
            key: Key::Hmac {
                sha256: <HmacSha256 as hmac::digest::KeyInit>::new(
                    &hmac::digest::generic_array::GenericArray::default(),
                ),
                #[cfg(feature = "sha1")]
                sha1: <hmac::Hmac<sha1::Sha1> as hmac::digest::KeyInit>::new(
                    &hmac::digest::generic_array::GenericArray::default(),
                ),
            },
            // Never used: a delivery MACed with this secret is refused whatever it carries.
            fingerprint: Fingerprint::default(),
            format: SecretFormat::Raw,
            alternatives: Vec::new(),
        }
    }

    /// A fresh HMAC-SHA256 keyed with this secret; for an asymmetric key, one keyed with a
    /// key nobody has (such a key never verifies an HMAC).
    pub(crate) fn mac(&self) -> HmacSha256 {
        match &self.key {
            Key::Hmac { sha256, .. } => sha256.clone(),
            Key::Asymmetric(..) => Self::throwaway().mac(),
        }
    }

    /// The signature of `message` with this key, as a sender signing with `algorithm` makes it.
    ///
    /// # Errors
    /// [`ConfigError::CannotSign`] for a public key, [`ConfigError::SecretAlgorithmMismatch`]
    /// for a key of another algorithm, [`ConfigError::FeatureDisabled`] for HMAC-SHA1 without
    /// the `sha1` feature.
    pub(crate) fn signature(
        &self,
        algorithm: Algorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, ConfigError> {
        match (&self.key, algorithm) {
            (Key::Hmac { sha256, .. }, Algorithm::HmacSha256) => {
                let mut mac = sha256.clone();
                mac.update(message);
                Ok(mac.finalize().into_bytes().to_vec())
            }
            #[cfg(feature = "sha1")]
            (Key::Hmac { sha1, .. }, Algorithm::HmacSha1) => {
                let mut mac = sha1.clone();
                mac.update(message);
                Ok(mac.finalize().into_bytes().to_vec())
            }
            (Key::Asymmetric(own, key), algorithm) if *own == algorithm => {
                key.sign(message).ok_or(ConfigError::CannotSign)
            }
            (_, Algorithm::HmacSha1) if !algorithm.is_built() => {
                Err(ConfigError::FeatureDisabled {
                    algorithm,
                    feature: "sha1",
                })
            }
            _ => Err(ConfigError::SecretAlgorithmMismatch {
                expected: algorithm,
                found: self.algorithm(),
            }),
        }
    }

    /// What this secret holds.
    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    /// This secret's fingerprint (see [`Fingerprint`]).
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The other readings of this secret's key, to explain a refusal.
    pub(crate) fn alternatives(&self) -> &[AlternativeKey] {
        &self.alternatives
    }
}

/// The prefix of Standard Webhooks' Ed25519 private keys (`whsk_<base64 seed>`).
const PRIVATE_PREFIX: &str = "whsk_";

/// Decodes a hex secret (either case).
fn decode_hex(text: &str) -> Result<Vec<u8>, ConfigError> {
    let invalid = || ConfigError::InvalidSecretEncoding {
        source: "the secret is not hexadecimal".into(),
    };
    if !text.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let mut out = vec![0; text.len() / 2];
    faster_hex::hex_decode(text.as_bytes(), &mut out).map_err(|_| invalid())?;
    Ok(out)
}

/// Decodes a base64 secret (standard alphabet, padded).
///
/// # Errors
/// [`ConfigError::InvalidSecretEncoding`], whose source names the offset of a wrong character
/// but never the character: base64's own error would print a byte of the secret.
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, ConfigError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|error| ConfigError::InvalidSecretEncoding {
            source: Box::new(DecodeError(error)),
        })
}

/// base64's decoding error, printed (`Display` and `Debug`) without the byte it found.
struct DecodeError(base64::DecodeError);

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DecodeError({self})")
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            base64::DecodeError::InvalidByte(offset, _) => {
                write!(f, "a character that is not base64 at offset {offset}")
            }
            base64::DecodeError::InvalidLength(length) => {
                write!(f, "{length} base64 symbols, a length no encoding produces")
            }
            base64::DecodeError::InvalidLastSymbol(offset, _) => {
                write!(
                    f,
                    "a last symbol that encodes stray bits, at offset {offset}"
                )
            }
            base64::DecodeError::InvalidPadding => f.write_str("missing or misplaced padding"),
        }
    }
}

// base64's error is not the source: it prints the byte found.
impl std::error::Error for DecodeError {}

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
/// keys (unless the layer has [`with_endpoint`](crate::layer::WebhookLayerBuilder::with_endpoint)), and when
/// several verify it (senders sign with both secrets during a rotation) the one added last
/// counts. Add the new secret first and the old one after it, so that replicas still holding
/// only the old secret key the delivery the same way.
///
/// Once the rotation is over, a secret no longer accepted may stay as a **retired** one
/// ([`with_retired`](Self::with_retired)): a delivery it signs is refused like any wrong
/// signature, and the refusal's [`Reason`](crate::error::Reason) (in the log line, never in the
/// answer) says the signature matches a previous secret, so a sender that did not switch is
/// told apart from a forgery.
///
/// ```
/// use tower_webhook::{Secret, Secrets};
///
/// // During rotation: the new secret first, the old one until every sender has switched.
/// let secrets = Secrets::new(Secret::new("whsec_new")?).with(Secret::new("whsec_old")?);
/// assert_eq!(secrets.len(), 2);
/// // After it: the old one is refused, and remembered to explain the refusals.
/// let after = Secrets::new(Secret::new("whsec_new")?).with_retired(Secret::new("whsec_old")?);
/// assert_eq!(after.len(), 1);
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Secrets {
    secrets: Vec<Secret>,
    retired: Vec<Secret>,
}

impl Secrets {
    /// A set holding one secret (a set is never empty).
    #[must_use]
    pub fn new(secret: Secret) -> Self {
        Self {
            secrets: vec![secret],
            retired: Vec::new(),
        }
    }

    /// Adds another accepted secret.
    #[must_use]
    pub fn with(mut self, secret: Secret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// Remembers a secret no longer accepted (after a rotation): a delivery it signs is
    /// refused, with the reason [`Reason::PreviousSecret`](crate::error::Reason::PreviousSecret)
    /// in the log line and the [`Rejection`](crate::Rejection). It is tried only once no
    /// accepted secret matched.
    #[must_use]
    pub fn with_retired(mut self, secret: Secret) -> Self {
        self.retired.push(secret);
        self
    }

    /// The retired secrets, in the order they were added.
    pub fn retired(&self) -> impl Iterator<Item = &Secret> {
        self.retired.iter()
    }

    /// Adds every secret of `other`, accepted and retired, after this set's own.
    pub(crate) fn extend(&mut self, other: Secrets) {
        self.secrets.extend(other.secrets);
        self.retired.extend(other.retired);
    }

    /// How many accepted secrets the set holds (at least one; retired ones do not count).
    #[must_use]
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Always `false`: a set holds at least one secret.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The accepted secrets, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.secrets.iter()
    }

    pub(crate) fn as_slice(&self) -> &[Secret] {
        &self.secrets
    }

    /// Checks that every secret was decoded the way a scheme with secrets in `expected`
    /// decodes them. Only the decoding counts, not a base64 prefix: the key is the decoded
    /// bytes whatever prefix the text had.
    ///
    /// # Errors
    /// [`ConfigError::SecretFormatMismatch`] for the first secret decoded otherwise.
    pub(crate) fn check_format(
        &self,
        expected: &SecretFormat,
        algorithm: Algorithm,
    ) -> Result<(), ConfigError> {
        if let Some(secret) = self
            .secrets
            .iter()
            .chain(&self.retired)
            .find(|secret| !secret.format.decodes_like(expected))
        {
            return Err(ConfigError::SecretFormatMismatch {
                expected: expected.clone(),
                found: secret.format.clone(),
            });
        }
        match self
            .secrets
            .iter()
            .chain(&self.retired)
            .find(|secret| !secret.fits(algorithm))
        {
            Some(secret) => Err(ConfigError::SecretAlgorithmMismatch {
                expected: algorithm,
                found: secret.algorithm(),
            }),
            None => Ok(()),
        }
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
/// [`with_resolver_timeout`](crate::layer::WebhookLayerBuilder::with_resolver_timeout)
/// (default 5 s), is answered `503 secrets_unavailable` with the `Retry-After` of
/// [`with_resolver_retry_after`](crate::layer::WebhookLayerBuilder::with_resolver_retry_after)
/// (default 30 s).
///
/// A tenant's secrets must be decoded the way the layer's scheme decodes them: let the scheme
/// decode each secret's text ([`Scheme::secret`](crate::Scheme::secret)). A tenant whose
/// secrets were decoded for another format (a raw [`Secret::new`] key for Standard Webhooks) is
/// a configuration mistake that only a request can show: it is logged as an error and answered
/// `503 secrets_unavailable`, so the sender retries once it is fixed.
///
/// Implemented for closures `Fn(&Parts) -> impl Future<Output = Result<Option<Tenant>,
/// ResolveError>>`, given to the layer builder's
/// [`with_resolver`](crate::layer::WebhookLayerBuilder::with_resolver). With axum,
/// [`PathParams`](crate::PathParams) reads the route's path parameters (`{tenant}` in
/// `/webhooks/{tenant}`); they are there when the layer is the route's (`route_layer`), not
/// when it wraps the whole application:
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use std::sync::Arc;
/// use axum::{routing::post, Router};
/// use tower_webhook::{PathParams, ResolveError, Scheme, Tenant, WebhookLayer};
///
/// let scheme = Arc::new(Scheme::standard_webhooks());
/// let decoder = scheme.clone();
/// let layer = WebhookLayer::builder(Scheme::clone(&scheme))
///     .with_resolver(move |parts: &http::request::Parts| {
///         let customer = PathParams::from_parts(parts)
///             .and_then(|params| params.get("tenant").map(str::to_owned));
///         let scheme = decoder.clone();
///         async move {
///             let Some(customer) = customer else { return Ok(None) };
///             // Look the customer's secret up in your database here.
///             let text = match customer.as_str() {
///                 "acme" => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
///                 _ => return Ok(None),
///             };
///             let secret = scheme.secret(text).map_err(|e| ResolveError(e.into()))?;
///             Ok(Some(Tenant::new(customer, secret)))
///         }
///     })
///     .build()?;
/// let app: Router = Router::new().route(
///     "/webhooks/{tenant}",
///     post(|| async { "ok" }).route_layer(layer),
/// );
/// # let _ = app;
/// # }
/// # Ok::<(), tower_webhook::ConfigError>(())
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
        assert!(matches!(Secret::new(""), Err(ConfigError::EmptySecret)));
    }

    #[test]
    fn a_secret_remembers_the_format_it_was_decoded_for() {
        let base64 = SecretFormat::base64("whsec_");
        assert_eq!(
            Secret::new("whsec_abc").unwrap().format(),
            &SecretFormat::Raw
        );
        let decoded = Secret::decode("whsec_aGVsbG8=", &base64, Algorithm::HmacSha256).unwrap();
        assert_eq!(decoded.format(), &base64);
        let raw = Secret::new("whsec_aGVsbG8=").unwrap();
        // A set with a secret of the other format is refused, whichever comes first.
        let mixed = Secrets::new(decoded.clone()).with(raw.clone());
        assert!(matches!(
            mixed.check_format(&base64, Algorithm::HmacSha256),
            Err(ConfigError::SecretFormatMismatch { expected, found })
                if expected == base64 && found == SecretFormat::Raw
        ));
        assert!(matches!(
            mixed.check_format(&SecretFormat::Raw, Algorithm::HmacSha256),
            Err(ConfigError::SecretFormatMismatch { .. })
        ));
        assert!(Secrets::new(raw)
            .check_format(&SecretFormat::Raw, Algorithm::HmacSha256)
            .is_ok());
        // Only the decoding counts: another prefix makes the same key of the same base64.
        assert!(Secrets::new(decoded)
            .check_format(&SecretFormat::base64(""), Algorithm::HmacSha256)
            .is_ok());
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
    fn a_base64_error_keeps_its_cause_but_never_shows_the_secret() {
        use std::error::Error as _;
        let error = decode_base64("C2FVsBQIhr-cChlQIMV+b5sSYspob7oD").unwrap_err();
        assert!(matches!(error, ConfigError::InvalidSecretEncoding { .. }));
        let source = error.source().unwrap();
        assert_eq!(
            source.to_string(),
            "a character that is not base64 at offset 10"
        );
        let printed = format!("{error} {error:?} {source} {source:?}");
        assert!(
            !printed.contains('-') && !printed.contains("45"),
            "{printed}"
        );
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
