//! How a sender signs its deliveries: which headers, which bytes, which encoding.
//!
//! A [`Scheme`] is a value handed to the [`WebhookLayer`](crate::WebhookLayer); the service
//! only asks it to read the signature, and to turn the verified body and headers into a
//! [`WebhookMeta`]. Sotion's scheme is the default.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, CONTENT_ENCODING};

use crate::envelope::{check_id, EventType, ParsedEnvelope};
use crate::error::{Rejection, RejectionKind};
use crate::meta::WebhookMeta;

/// The length of an HMAC-SHA256 digest, in bytes.
pub const DIGEST_LEN: usize = 32;

/// Sotion's signature header: `sha256=<64 hex digits>`, HMAC-SHA256 of the raw body.
pub const SOTION_SIGNATURE: HeaderName = HeaderName::from_static("x-webhook-signature");
/// Sotion's event-type header; must equal the envelope's `type`.
pub const SOTION_EVENT: HeaderName = HeaderName::from_static("x-webhook-event");
/// Sotion's event-id header; must equal the envelope's `id`.
pub const SOTION_ID: HeaderName = HeaderName::from_static("x-webhook-id");
/// Sotion's delivery-attempt header: a new value on every retry.
pub const SOTION_DELIVERY: HeaderName = HeaderName::from_static("x-webhook-delivery");
/// The prefix of a `sha256=<hex>` signature.
pub const SHA256_PREFIX: &str = "sha256=";

/// A sender's signing scheme.
///
/// Today's preset is Sotion's ([`Scheme::sotion`], also the `Default`): the header
/// `X-Webhook-Signature: sha256=<hex>` holds the HMAC-SHA256 of the raw body, keyed with the
/// whole secret string (`whsec_...`); the body is the JSON envelope; `X-Webhook-Id` and
/// `X-Webhook-Event` must repeat its `id` and `type`; `X-Webhook-Delivery` names the attempt.
#[derive(Debug, Clone)]
pub struct Scheme {
    name: &'static str,
    signature_header: HeaderName,
    signature_prefix: &'static str,
    id_header: HeaderName,
    event_header: HeaderName,
    delivery_header: HeaderName,
}

impl Default for Scheme {
    fn default() -> Self {
        Self::sotion()
    }
}

impl Scheme {
    /// Sotion's scheme (see the type's docs).
    #[must_use]
    pub fn sotion() -> Self {
        Self {
            name: "sotion",
            signature_header: SOTION_SIGNATURE,
            signature_prefix: SHA256_PREFIX,
            id_header: SOTION_ID,
            event_header: SOTION_EVENT,
            delivery_header: SOTION_DELIVERY,
        }
    }

    /// The scheme's name, also the scope of its idempotency keys.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The header that carries the signature.
    #[must_use]
    pub fn signature_header(&self) -> &HeaderName {
        &self.signature_header
    }

    /// The header that carries the event id.
    #[must_use]
    pub fn id_header(&self) -> &HeaderName {
        &self.id_header
    }

    /// The header that carries the event type.
    #[must_use]
    pub fn event_header(&self) -> &HeaderName {
        &self.event_header
    }

    /// The header that carries the delivery-attempt id.
    #[must_use]
    pub fn delivery_header(&self) -> &HeaderName {
        &self.delivery_header
    }

    /// Formats a digest the way this scheme sends it (`sha256=<lower-case hex>`).
    #[must_use]
    pub fn format_signature(&self, digest: &[u8; DIGEST_LEN]) -> String {
        format!("{}{}", self.signature_prefix, hex::encode(digest))
    }

    /// Reads the one signature the request carries. Pure: headers in, digest out.
    ///
    /// # Errors
    /// `401 missing_signature` when the header is absent; `401 malformed_signature` when it is
    /// repeated, empty, not visible ASCII, lacks the `sha256=` prefix (which is case-sensitive),
    /// or is not followed by exactly 64 hex digits (either case).
    pub fn read_signature(&self, headers: &HeaderMap) -> Result<[u8; DIGEST_LEN], Rejection> {
        const MALFORMED: Rejection = Rejection::new(
            RejectionKind::MalformedSignature,
            "the signature header must be exactly one `sha256=` followed by 64 hex digits",
        );
        let mut values = headers.get_all(&self.signature_header).iter();
        let value = values.next().ok_or(Rejection::new(
            RejectionKind::MissingSignature,
            "the request carries no signature header",
        ))?;
        if values.next().is_some() {
            return Err(MALFORMED);
        }
        let hex_digits = value
            .as_bytes()
            .strip_prefix(self.signature_prefix.as_bytes())
            .ok_or(MALFORMED)?;
        let mut digest = [0_u8; DIGEST_LEN];
        hex::decode_to_slice(hex_digits, &mut digest).map_err(|_| MALFORMED)?;
        Ok(digest)
    }

    /// Refuses bodies that were not sent as the bytes that were signed.
    ///
    /// # Errors
    /// `415 unsupported_content_encoding` for any `Content-Encoding` but `identity`.
    pub fn check_content_encoding(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let all_identity = headers.get_all(CONTENT_ENCODING).iter().all(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .all(|c| c.trim().eq_ignore_ascii_case("identity"))
            })
        });
        if all_identity {
            Ok(())
        } else {
            Err(Rejection::new(
                RejectionKind::UnsupportedContentEncoding,
                "compressed bodies cannot be verified: send the body without Content-Encoding",
            ))
        }
    }

    /// Turns a body whose signature **has verified** into the delivery's metadata: parses the
    /// envelope, checks it, and checks that the unsigned headers agree with it. Returns the
    /// metadata and the raw `data` (sliced from `body`, not copied).
    pub(crate) fn verified_meta(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<(WebhookMeta, Bytes), Rejection> {
        let envelope = ParsedEnvelope::parse(body)?;
        if single_header(headers, &self.id_header) != Some(envelope.id.as_bytes()) {
            return Err(Rejection::new(
                RejectionKind::IdMismatch,
                "the event-id header is missing or differs from the signed body's `id`",
            ));
        }
        if single_header(headers, &self.event_header) != Some(envelope.event.as_bytes()) {
            return Err(Rejection::new(
                RejectionKind::EventMismatch,
                "the event-type header is missing or differs from the signed body's `type`",
            ));
        }
        let delivery = self.delivery(headers)?;
        let meta = WebhookMeta {
            scheme: self.name,
            event: EventType::from(envelope.event.as_str()),
            id: envelope.id,
            delivery,
            site_id: Some(envelope.site_id),
            timestamp: Some(envelope.timestamp),
            version: Some(envelope.version),
        };
        Ok((meta, envelope.data))
    }

    fn delivery(&self, headers: &HeaderMap) -> Result<Option<String>, Rejection> {
        const INVALID: Rejection = Rejection::new(
            RejectionKind::InvalidHeader,
            "the delivery header must be one value of 1 to 255 visible characters",
        );
        let mut values = headers.get_all(&self.delivery_header).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(INVALID);
        }
        let value = value.to_str().map_err(|_| INVALID)?;
        check_id(value).map_err(|_| INVALID)?;
        Ok(Some(value.to_owned()))
    }
}

/// The value of a header that appears exactly once.
fn single_header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h [u8]> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    values.next().is_none().then(|| value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&HeaderName, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    fn read(value: &[u8]) -> Result<[u8; 32], RejectionKind> {
        Scheme::sotion()
            .read_signature(&headers(&[(&SOTION_SIGNATURE, value)]))
            .map_err(|r| r.kind())
    }

    const HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn reads_lower_and_upper_case_hex_to_the_same_digest() {
        let lower = read(format!("sha256={HEX}").as_bytes()).unwrap();
        let upper = read(format!("sha256={}", HEX.to_uppercase()).as_bytes()).unwrap();
        assert_eq!(lower, upper);
        assert_eq!(hex::encode(lower), HEX);
    }

    #[test]
    fn refuses_malformed_signature_headers() {
        let malformed = RejectionKind::MalformedSignature;
        assert_eq!(read(b""), Err(malformed));
        assert_eq!(read(b"sha256="), Err(malformed));
        assert_eq!(read(HEX.as_bytes()), Err(malformed));
        assert_eq!(read(format!("SHA256={HEX}").as_bytes()), Err(malformed));
        assert_eq!(read(format!("sha1={HEX}").as_bytes()), Err(malformed));
        assert_eq!(read(format!("sha256= {HEX}").as_bytes()), Err(malformed));
        assert_eq!(
            read(format!("sha256={}", &HEX[..63]).as_bytes()),
            Err(malformed)
        );
        assert_eq!(
            read(format!("sha256={}", &HEX[..62]).as_bytes()),
            Err(malformed)
        );
        assert_eq!(read(format!("sha256={HEX}00").as_bytes()), Err(malformed));
        assert_eq!(
            read(format!("sha256={}zz", &HEX[..62]).as_bytes()),
            Err(malformed)
        );
        assert_eq!(
            read(format!("sha256={HEX}\u{e9}").as_bytes()),
            Err(malformed)
        );
    }

    #[test]
    fn refuses_a_missing_or_repeated_signature_header() {
        let scheme = Scheme::sotion();
        assert_eq!(
            scheme.read_signature(&HeaderMap::new()).unwrap_err().kind(),
            RejectionKind::MissingSignature
        );
        let value = format!("sha256={HEX}");
        let twice = headers(&[
            (&SOTION_SIGNATURE, value.as_bytes()),
            (&SOTION_SIGNATURE, value.as_bytes()),
        ]);
        assert_eq!(
            scheme.read_signature(&twice).unwrap_err().kind(),
            RejectionKind::MalformedSignature
        );
    }

    #[test]
    fn accepts_only_identity_content_encoding() {
        let scheme = Scheme::sotion();
        assert!(scheme.check_content_encoding(&HeaderMap::new()).is_ok());
        assert!(scheme
            .check_content_encoding(&headers(&[(&CONTENT_ENCODING, b"Identity")]))
            .is_ok());
        for encoding in [&b"gzip"[..], b"br", b"identity, gzip", b"\xff"] {
            assert_eq!(
                scheme
                    .check_content_encoding(&headers(&[(&CONTENT_ENCODING, encoding)]))
                    .unwrap_err()
                    .kind(),
                RejectionKind::UnsupportedContentEncoding
            );
        }
    }
}
