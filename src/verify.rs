//! The pure verification core: no tower, no clock, no I/O.
//!
//! [`sign`] computes a signature header value; [`verify`] checks a whole delivery (headers and
//! raw body) and returns its [`WebhookMeta`]. The layer runs the same steps, hashing the body as
//! it streams in instead of after it is buffered.
//!
//! ```
//! use http::HeaderMap;
//! use tower_webhook::{verify, Scheme, Secret, Secrets};
//!
//! let secret = Secret::new("whsec_test")?;
//! let body = br#"{"id":"evt_1","type":"member.created","timestamp":"2026-03-28T12:00:00Z","version":"1","siteId":"site_1","data":{}}"#;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("x-webhook-signature", verify::sign(&secret, body).parse()?);
//! headers.insert("x-webhook-id", "evt_1".parse()?);
//! headers.insert("x-webhook-event", "member.created".parse()?);
//!
//! let meta = verify::verify(&Scheme::sotion(), &Secrets::new(secret), &headers, body)?;
//! assert_eq!(meta.id(), "evt_1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::Bytes;
use hmac::Mac;
use http::HeaderMap;
use subtle::{Choice, ConstantTimeEq};

use crate::error::{Rejection, RejectionKind};
use crate::meta::WebhookMeta;
use crate::scheme::{Scheme, DIGEST_LEN, SHA256_PREFIX};
use crate::secret::{HmacSha256, Secret, Secrets};

/// The HMAC-SHA256 of `payload` keyed with `secret`.
#[must_use]
pub fn digest(secret: &Secret, payload: &[u8]) -> [u8; DIGEST_LEN] {
    let mut mac = secret.mac();
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

/// The signature header value for `body`: `sha256=<lower-case hex>` of its HMAC-SHA256. This
/// is the form Sotion (and GitHub, and sota.io) send.
///
/// ```
/// use tower_webhook::{verify::sign, Secret};
///
/// // GitHub's published example.
/// let secret = Secret::new("It's a Secret to Everybody")?;
/// assert_eq!(
///     sign(&secret, b"Hello, World!"),
///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
/// );
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[must_use]
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    format!("{SHA256_PREFIX}{}", hex::encode(digest(secret, body)))
}

/// Verifies a complete delivery: the signature over exactly `body`, then the envelope and the
/// agreement of the headers with it, in the layer's order (see the crate docs).
///
/// # Errors
/// The [`Rejection`] the layer would answer with.
pub fn verify(
    scheme: &Scheme,
    secrets: &Secrets,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<WebhookMeta, Rejection> {
    let expected = scheme.read_signature(headers)?;
    scheme.check_content_encoding(headers)?;
    let mut mac = BodyMac::new(secrets);
    mac.update(body);
    mac.finish(&expected)?;
    let (meta, _data) = scheme.verified_meta(headers, &Bytes::copy_from_slice(body))?;
    Ok(meta)
}

/// One running MAC per accepted secret, fed as the body arrives.
pub(crate) struct BodyMac {
    macs: Vec<HmacSha256>,
}

impl BodyMac {
    pub(crate) fn new(secrets: &Secrets) -> Self {
        Self {
            macs: secrets.iter().map(Secret::mac).collect(),
        }
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) {
        for mac in &mut self.macs {
            mac.update(chunk);
        }
    }

    /// Whether any secret's MAC equals `expected`. Every MAC is finished and compared in
    /// constant time; no early exit.
    pub(crate) fn finish(self, expected: &[u8; DIGEST_LEN]) -> Result<(), Rejection> {
        let matched = self.macs.into_iter().fold(Choice::from(0), |matched, mac| {
            matched | mac.finalize().into_bytes().as_slice().ct_eq(expected)
        });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Rejection::new(
                RejectionKind::SignatureMismatch,
                "the signature does not match the body for any configured secret",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn secret(key: &str) -> Secret {
        Secret::new(key).unwrap()
    }

    #[test]
    fn matches_githubs_published_example() {
        assert_eq!(
            sign(&secret("It's a Secret to Everybody"), b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn matches_rfc_4231_test_case_2() {
        assert_eq!(
            hex::encode(digest(&secret("Jefe"), b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn any_configured_secret_may_match_and_no_other() {
        let body = b"payload";
        let expected = digest(&secret("old"), body);
        let both = Secrets::new(secret("new")).with(secret("old"));
        let mut mac = BodyMac::new(&both);
        mac.update(body);
        assert!(mac.finish(&expected).is_ok());

        let only_new = Secrets::new(secret("new"));
        let mut mac = BodyMac::new(&only_new);
        mac.update(body);
        assert_eq!(
            mac.finish(&expected).unwrap_err().kind(),
            RejectionKind::SignatureMismatch
        );
    }

    #[test]
    fn hashing_in_chunks_equals_hashing_at_once() {
        let body = b"a body that arrives in several frames";
        let expected = digest(&secret("k"), body);
        let mut mac = BodyMac::new(&Secrets::new(secret("k")));
        for chunk in body.chunks(5) {
            mac.update(chunk);
        }
        assert!(mac.finish(&expected).is_ok());
    }

    #[test]
    fn verify_checks_signature_before_the_envelope() {
        let key = secret("k");
        let body = b"not json";
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-webhook-signature",
            HeaderValue::from_str(&sign(&secret("other"), body)).unwrap(),
        );
        let secrets = Secrets::new(key.clone());
        let scheme = Scheme::sotion();
        assert_eq!(
            verify(&scheme, &secrets, &headers, body)
                .unwrap_err()
                .kind(),
            RejectionKind::SignatureMismatch
        );
        headers.insert(
            "x-webhook-signature",
            HeaderValue::from_str(&sign(&key, body)).unwrap(),
        );
        assert_eq!(
            verify(&scheme, &secrets, &headers, body)
                .unwrap_err()
                .kind(),
            RejectionKind::InvalidJson
        );
    }
}
