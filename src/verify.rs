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
//! let now = std::time::SystemTime::now();
//! let meta = verify::verify(&Scheme::sotion(), &Secrets::new(secret), &headers, body, now)?;
//! assert_eq!(meta.id(), "evt_1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::time::SystemTime;

use bytes::Bytes;
use hmac::Mac;
use http::HeaderMap;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::error::{Rejection, RejectionKind};
use crate::meta::WebhookMeta;
use crate::scheme::{
    Algorithm, Candidates, Described, Headers, Prepared, Rule, Scheme, DIGEST_LEN, SHA256_PREFIX,
};
use crate::secret::{Fingerprint, HmacSha256, Secret, Secrets};

/// The HMAC-SHA256 of `payload` keyed with `secret` (an HMAC secret: a public key has no HMAC,
/// and gives the digest under a key nobody has).
#[must_use]
pub fn digest(secret: &Secret, payload: &[u8]) -> [u8; 32] {
    let mut mac = secret.mac();
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

/// The signature header value for `body`: `sha256=<lower-case hex>` of its HMAC-SHA256. This
/// is the form Sotion (and GitHub, and sota.io) send; [`Scheme::sign`] signs for any scheme.
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
    format!(
        "{SHA256_PREFIX}{}",
        faster_hex::hex_string(&digest(secret, body))
    )
}

/// Verifies a complete delivery in the layer's order (see the crate docs): the signature over
/// exactly the signed bytes, the freshness of a signed timestamp against `now`, then the body
/// (for Sotion, the envelope and the agreement of the headers with it).
///
/// # Errors
/// The [`Rejection`] the layer would answer with.
pub fn verify(
    scheme: &Scheme,
    secrets: &Secrets,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<WebhookMeta, Rejection> {
    verify_inner(scheme, secrets, None, headers, body, now)
}

/// [`verify`] for a scheme that signs the URL the sender called (Square, Twilio): `url` is
/// that URL as the sender wrote it (`https://example.com/webhooks?x=1`), scheme, host, path
/// and query. Other schemes ignore it.
///
/// # Errors
/// The [`Rejection`] the layer would answer with.
pub fn verify_with_url(
    scheme: &Scheme,
    secrets: &Secrets,
    url: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<WebhookMeta, Rejection> {
    verify_inner(scheme, secrets, Some(url), headers, body, now)
}

fn verify_inner(
    scheme: &Scheme,
    secrets: &Secrets,
    url: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<WebhookMeta, Rejection> {
    check_secret_formats(scheme, secrets)?;
    let mut check = Pipeline::start(scheme, headers, url)?.with_secrets(Cow::Borrowed(secrets));
    check.update(body);
    let signed = check.finish(|| now, body)?;
    Ok(signed
        .describe(headers, &Bytes::copy_from_slice(body))?
        .meta)
}

/// Checks only that `body` is authentically signed and fresh: the signature over exactly the
/// signed bytes and the tolerance of a signed header timestamp, without interpreting the body.
/// This is all [`verify`] does before the body is parsed; `svix::Webhook::verify` does the same.
///
/// # Errors
/// The [`Rejection`] the layer would answer with for these steps.
pub fn verify_signature(
    scheme: &Scheme,
    secrets: &Secrets,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Rejection> {
    check_secret_formats(scheme, secrets)?;
    let mut check = Pipeline::start(scheme, headers, None)?.with_secrets(Cow::Borrowed(secrets));
    check.update(body);
    check.finish(|| now, body).map(drop)
}

/// Refuses secrets decoded for another format than the scheme's (a raw `Secret::new` key for
/// Standard Webhooks), which could never verify a genuine delivery: the layer refuses them when
/// it is built; these functions, at each call, with a message that says so.
fn check_secret_formats(scheme: &Scheme, secrets: &Secrets) -> Result<(), Rejection> {
    if !scheme.algorithm().is_built() {
        return Err(Rejection::new(
            RejectionKind::SignatureMismatch,
            "this scheme's algorithm needs a Cargo feature this build does not have",
        ));
    }
    secrets
        .check_format(scheme.secret_format(), scheme.algorithm())
        .map_err(|_| {
            Rejection::new(
                RejectionKind::SignatureMismatch,
                "a secret was decoded for another format than this scheme's: make it with \
             scheme.secret(text)",
            )
        })
}

/// The verification pipeline: the steps the layer, [`verify`] and [`verify_signature`] share,
/// in one order. Before the body: the signature header (with the signed bytes that precede the
/// body and a header timestamp), then the `Content-Encoding`.
pub(crate) struct Pipeline<'s> {
    scheme: &'s Scheme,
    prepared: Prepared,
}

impl<'s> Pipeline<'s> {
    /// Reads what the headers say before the body; refuses a missing or malformed signature
    /// header, a malformed signed timestamp, and a compressed body. `url`: the URL the sender
    /// called, for a scheme that signs it.
    pub(crate) fn start(
        scheme: &'s Scheme,
        headers: &HeaderMap,
        url: Option<&str>,
    ) -> Result<Self, Rejection> {
        let prepared = scheme.prepare(&Headers::new(headers), url)?;
        Scheme::check_content_encoding(headers)?;
        Ok(Self { scheme, prepared })
    }

    /// The body's check, keyed with every accepted secret: HMAC-SHA256 over the signed parts
    /// while the body streams in; any other algorithm (or Twilio's rule) once it has arrived.
    /// The secrets stay with it, to explain a refusal (borrowed, or a tenant's, owned).
    pub(crate) fn with_secrets(self, secrets: Cow<'s, Secrets>) -> BodyCheck<'s> {
        let streamed = self.prepared.algorithm == Algorithm::HmacSha256
            && self.scheme.rule == Rule::Parts
            && self.scheme.signed.last() == Some(&crate::scheme::Part::Body);
        let mac = if streamed {
            Check::Streamed(BodyMac::new(&secrets, &self.prepared.prefix))
        } else {
            Check::Whole
        };
        BodyCheck {
            pipeline: self,
            mac,
            secrets,
        }
    }
}

/// The pipeline while the body streams in: each chunk goes to the MACs as it arrives.
pub(crate) struct BodyCheck<'s> {
    pipeline: Pipeline<'s>,
    mac: Check,
    secrets: Cow<'s, Secrets>,
}

/// How the signature is checked.
// Not boxed: one per request, and the streamed MAC is the common case.
#[allow(clippy::large_enum_variant)]
enum Check {
    /// HMAC-SHA256, chunk by chunk.
    Streamed(BodyMac),
    /// Once the whole body is there (the other algorithms, Twilio's and Graph's rules).
    Whole,
}

impl<'s> BodyCheck<'s> {
    pub(crate) fn update(&mut self, chunk: &[u8]) {
        if let Check::Streamed(mac) = &mut self.mac {
            mac.update(chunk);
        }
    }

    /// After the whole `body` (the bytes the MACs were fed): the signature (in constant time,
    /// against every secret), then the freshness of a signed header timestamp. The clock is
    /// read only for a scheme with a tolerance. When no HMAC-SHA256 secret matches, the refusal
    /// carries the [`Reason`](crate::error::Reason) the diagnosis finds (the only work done for
    /// it).
    pub(crate) fn finish(
        self,
        now: impl FnOnce() -> SystemTime,
        body: &[u8],
    ) -> Result<Signed<'s>, Rejection> {
        let Pipeline { scheme, prepared } = self.pipeline;
        let verified_by = match self.mac {
            Check::Whole => crate::whole_message::verify(scheme, &prepared, &self.secrets, body)
                .map_err(|rejection| {
                    // The asymmetric and whole-message rules name no finer cause (yet): the
                    // operator still gets a reason and its hint.
                    if rejection.reason().is_some() {
                        rejection
                    } else {
                        rejection.with_reason(crate::diagnose::Reason::NoSecretMatches)
                    }
                })?,
            Check::Streamed(mac) => match mac.finish(&prepared.candidates) {
                Ok(verified_by) => verified_by,
                Err(rejection) => {
                    let reason = crate::diagnose::mismatch(
                        &prepared.candidates,
                        &prepared.prefix,
                        body,
                        &self.secrets,
                        scheme.secret_format(),
                    );
                    return Err(rejection.with_reason(reason));
                }
            },
        };
        let now = match scheme.tolerance {
            Some(_) => unix_seconds(now()),
            None => 0,
        };
        scheme.check_prepared_timestamp(&prepared, now)?;
        Ok(Signed {
            scheme,
            prepared,
            now,
            verified_by,
        })
    }
}

/// An authentic, fresh delivery whose body is not interpreted yet.
pub(crate) struct Signed<'s> {
    scheme: &'s Scheme,
    prepared: Prepared,
    now: i64,
    /// The fingerprint of the secret that verified it.
    pub(crate) verified_by: Fingerprint,
}

impl Signed<'_> {
    /// The last step: the body (for Sotion, the envelope and the agreement of the headers with
    /// it) described as a [`WebhookMeta`], keyed by the secret that verified it.
    pub(crate) fn describe(
        self,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Described, Rejection> {
        let mut described =
            self.scheme
                .describe(&Headers::new(headers), body, &self.prepared, self.now)?;
        described.meta.key.endpoint = self.verified_by;
        Ok(described)
    }
}

/// Seconds since the Unix epoch, negative before it, saturating far away from it.
pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// One running MAC per accepted secret, fed the signed prefix and then the body as it arrives,
/// each beside its secret's fingerprint. One secret (the common case) is kept inline, without
/// an allocation.
pub(crate) enum BodyMac {
    One(HmacSha256, Fingerprint),
    Many(Vec<(HmacSha256, Fingerprint)>),
}

impl BodyMac {
    pub(crate) fn new(secrets: &Secrets, prefix: &[u8]) -> Self {
        let mut mac = match secrets.as_slice() {
            [only] => Self::One(only.mac(), only.fingerprint()),
            all => Self::Many(
                all.iter()
                    .map(|secret| (secret.mac(), secret.fingerprint()))
                    .collect(),
            ),
        };
        if !prefix.is_empty() {
            mac.update(prefix);
        }
        mac
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) {
        match self {
            Self::One(mac, _) => mac.update(chunk),
            Self::Many(macs) => macs.iter_mut().for_each(|(mac, _)| mac.update(chunk)),
        }
    }

    /// Whether any secret's MAC equals any of the signatures sent, and if so the fingerprint of
    /// the secret that matched. Every pair is compared, in constant time; no early exit, and
    /// the fingerprint is chosen by conditional selection, not by a branch.
    ///
    /// When several secrets match (during a rotation Stripe and Standard Webhooks send one
    /// signature per secret), the one configured **last** wins: with the documented order
    /// (the new secret first, the old one after it), that is the old secret, which replicas
    /// not yet rotated hold too, so they compute the same idempotency key.
    pub(crate) fn finish(self, candidates: &Candidates) -> Result<Fingerprint, Rejection> {
        let (matched, fingerprint) = match self {
            Self::One(mac, fingerprint) => (matches_any(mac, candidates), fingerprint),
            Self::Many(macs) => macs.into_iter().fold(
                (Choice::from(0), Fingerprint::default()),
                |(matched, chosen), (mac, fingerprint)| {
                    let this = matches_any(mac, candidates);
                    (matched | this, select(&chosen, &fingerprint, this))
                },
            ),
        };
        if bool::from(matched) {
            Ok(fingerprint)
        } else {
            Err(Rejection::new(
                RejectionKind::SignatureMismatch,
                "the signature does not match the body for any configured secret",
            ))
        }
    }
}

/// Compares a finished MAC with every candidate, in constant time, as four 64-bit words each
/// (see BENCHMARKS.md, "Tricks").
pub(crate) fn matches_any(mac: HmacSha256, candidates: &Candidates) -> Choice {
    let computed = words(&mac.finalize().into_bytes().into());
    candidates
        .iter()
        .fold(Choice::from(0), |matched, candidate| {
            matched | computed.ct_eq(&words(candidate))
        })
}

/// `b` where `choice` is set, else `a`, byte by byte, without a branch.
fn select(a: &Fingerprint, b: &Fingerprint, choice: Choice) -> Fingerprint {
    let mut chosen = *a;
    for (byte, (a, b)) in chosen.iter_mut().zip(a.iter().zip(b)) {
        *byte = u8::conditional_select(a, b, choice);
    }
    chosen
}

fn words(digest: &[u8; DIGEST_LEN]) -> [u64; 4] {
    let mut words = [0_u64; 4];
    for (word, bytes) in words.iter_mut().zip(digest.chunks_exact(8)) {
        let mut chunk = [0_u8; 8];
        chunk.copy_from_slice(bytes);
        *word = u64::from_ne_bytes(chunk);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn secret(key: &str) -> Secret {
        Secret::new(key).unwrap()
    }

    fn at(unix: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn kind(result: Result<WebhookMeta, Rejection>) -> RejectionKind {
        result.unwrap_err().kind()
    }

    #[test]
    fn matches_githubs_published_example() {
        assert_eq!(
            sign(&secret("It's a Secret to Everybody"), b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let github = Scheme::github();
        let good = headers(&[
            (
                "x-hub-signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-github-event", "issues"),
        ]);
        let secrets = Secrets::new(secret("It's a Secret to Everybody"));
        let meta = verify(&github, &secrets, &good, b"Hello, World!", at(0)).unwrap();
        assert_eq!(meta.id(), "72d3162e-cc78-11e3-81ab-4c9367dc0958");
        assert_eq!(meta.event(), Some("issues"));
        assert_eq!(
            kind(verify(&github, &secrets, &good, b"Hello, World?", at(0))),
            RejectionKind::SignatureMismatch
        );
    }

    #[test]
    fn github_reads_the_action_from_the_signed_body_and_drops_an_unusable_one() {
        let github = Scheme::github();
        let key = secret("gh");
        let secrets = Secrets::new(key.clone());
        let action = |body: &[u8]| {
            let headers = headers(&[
                ("x-hub-signature-256", &sign(&key, body)),
                ("x-github-delivery", "d-1"),
                ("x-github-event", "issues"),
            ]);
            let meta = verify(&github, &secrets, &headers, body, at(0)).unwrap();
            assert_eq!(meta.event(), Some("issues"));
            meta.action().map(str::to_owned)
        };
        assert_eq!(
            action(br#"{"action":"opened","issue":{}}"#).as_deref(),
            Some("opened")
        );
        assert_eq!(action(br#"{"ref":"refs/heads/main"}"#), None);
        assert_eq!(action(br#"{"action":7}"#), None);
        assert_eq!(action(br#"{"action":null}"#), None);
        assert_eq!(action(b"payload=%7B%7D"), None); // form-encoded: no JSON to read
                                                     // Sotion names no action.
        assert_eq!(Scheme::sotion().action, None);
    }

    #[test]
    fn verify_says_when_a_secret_was_decoded_for_another_format() {
        let scheme = Scheme::standard_webhooks();
        let raw = Secrets::new(secret(SW_SECRET)); // the text as is, not base64-decoded
        let headers = headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", "1649367553"),
            ("webhook-signature", SW_SIGNATURE),
        ]);
        let refused = verify(&scheme, &raw, &headers, SW_BODY, at(1_649_367_553)).unwrap_err();
        assert_eq!(refused.kind(), RejectionKind::SignatureMismatch);
        assert!(refused.message().contains("scheme.secret(text)"));
        let refused = verify_signature(&scheme, &raw, &headers, SW_BODY, at(1_649_367_553));
        assert!(refused.unwrap_err().message().contains("another format"));
    }

    #[test]
    fn matches_rfc_4231_test_case_2() {
        assert_eq!(
            faster_hex::hex_string(&digest(&secret("Jefe"), b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            faster_hex::hex_string(&digest(&secret("jefe"), b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SW_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SW_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SW_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn standard(signature: &str, timestamp: &str) -> Result<WebhookMeta, Rejection> {
        let scheme = Scheme::standard_webhooks();
        let secrets = Secrets::new(scheme.secret(SW_SECRET).unwrap());
        let headers = headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        ]);
        verify(&scheme, &secrets, &headers, SW_BODY, at(1_649_367_553))
    }

    #[test]
    fn matches_the_standard_webhooks_published_example_and_refuses_near_misses() {
        let meta = standard(SW_SIGNATURE, "1649367553").unwrap();
        assert_eq!(meta.id(), SW_ID);
        assert_eq!(meta.timestamp().unwrap().unix_timestamp(), 1_649_367_553);
        // Several signatures (rotation): any may match.
        let rotated = format!("v1,Zm9vYmFyYmF6Zm9vYmFyYmF6Zm9vYmFyYmF6Zm9vYmE= {SW_SIGNATURE}");
        assert!(standard(&rotated, "1649367553").is_ok());
        assert_eq!(
            kind(standard("v1,", "1649367553")),
            RejectionKind::MalformedSignature
        );
        assert_eq!(
            kind(standard(&SW_SIGNATURE[..30], "1649367553")),
            RejectionKind::MalformedSignature
        );
        let wrong = SW_SIGNATURE.replace("tZ1I", "tZ1J");
        assert_eq!(
            kind(standard(&wrong, "1649367553")),
            RejectionKind::SignatureMismatch
        );
        // The timestamp is signed: changing it breaks the signature.
        assert_eq!(
            kind(standard(SW_SIGNATURE, "1649367554")),
            RejectionKind::SignatureMismatch
        );
        assert_eq!(
            kind(standard(SW_SIGNATURE, "soon")),
            RejectionKind::MalformedTimestamp
        );
    }

    #[test]
    fn standard_webhooks_skips_signature_entries_that_do_not_decode() {
        // As the reference libraries do: an undecodable entry is skipped, any other may match.
        let garbage_first = format!("v1,garbage {SW_SIGNATURE}");
        assert_eq!(standard(&garbage_first, "1649367553").unwrap().id(), SW_ID);
        let empty_first = format!("v1, {SW_SIGNATURE}");
        assert!(standard(&empty_first, "1649367553").is_ok());
        // Five wrong (decodable) signatures, then the right one: more than the old limit of 4.
        let other = "v1,Zm9vYmFyYmF6Zm9vYmFyYmF6Zm9vYmFyYmF6Zm9vYmE=";
        let sixth = format!("{} {SW_SIGNATURE}", [other; 5].join(" "));
        assert!(standard(&sixth, "1649367553").is_ok());
        // Nothing that decodes is still malformed; decodable but wrong still a mismatch.
        assert_eq!(
            kind(standard("v1,garbage v1,", "1649367553")),
            RejectionKind::MalformedSignature
        );
        assert_eq!(
            kind(standard(&[other; 6].join(" "), "1649367553")),
            RejectionKind::SignatureMismatch
        );
    }

    #[test]
    fn stripe_skips_signature_entries_that_do_not_decode() {
        let scheme = Scheme::stripe();
        let key = secret("whsec_stripe");
        let secrets = Secrets::new(key.clone());
        let body = br#"{"id":"evt_1","object":"event","type":"invoice.paid"}"#;
        let message = crate::scheme::Outgoing {
            id: "evt_1",
            event: "invoice.paid",
            timestamp: 1_700_000_000,
            body,
        };
        let signed = scheme.sign(&key, &message).unwrap();
        let value = signed["stripe-signature"].to_str().unwrap().to_owned();
        let (t, v1) = value.split_once(',').unwrap();
        let wrong = format!("v1={}", "ab".repeat(32));
        let check = |signature: &str| {
            let mut headers = signed.clone();
            headers.insert("stripe-signature", signature.parse().unwrap());
            verify(&scheme, &secrets, &headers, body, at(1_700_000_000))
        };
        assert_eq!(check(&value).unwrap().id(), "evt_1");
        assert!(check(&format!("{t},v1=not-hex,{v1}")).is_ok());
        assert!(check(&format!("{t},{},{v1}", [wrong.as_str(); 5].join(","))).is_ok());
        assert_eq!(
            kind(check(&format!("{t},v1=not-hex"))),
            RejectionKind::MalformedSignature
        );
        assert_eq!(
            kind(check(&format!("{t},{}", [wrong.as_str(); 6].join(",")))),
            RejectionKind::SignatureMismatch
        );
    }

    #[test]
    fn matches_slacks_worked_example() {
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let scheme = Scheme::slack();
        let secrets = Secrets::new(secret("8f742231b10e8888abcd99yyyzzz85a5"));
        let signed = |signature: &str| {
            headers(&[
                ("x-slack-request-timestamp", "1531420618"),
                ("x-slack-signature", signature),
            ])
        };
        let good = signed("v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503");
        let meta = verify(&scheme, &secrets, &good, body, at(1_531_420_618)).unwrap();
        assert_eq!(meta.id().len(), 64, "the id is the body's digest");
        let near = signed("v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b504");
        assert_eq!(
            kind(verify(&scheme, &secrets, &near, body, at(1_531_420_618))),
            RejectionKind::SignatureMismatch
        );
        let stale = verify(&scheme, &secrets, &good, body, at(1_531_420_618 + 301));
        assert_eq!(kind(stale), RejectionKind::TimestampTooOld);
    }

    #[test]
    fn any_configured_secret_may_match_and_no_other() {
        let body = b"{}";
        let scheme = Scheme::github();
        let signed_by = |key: &str| {
            headers(&[
                ("x-hub-signature-256", &sign(&secret(key), body)),
                ("x-github-delivery", "d1"),
            ])
        };
        let both = Secrets::new(secret("new")).with(secret("old"));
        assert!(verify(&scheme, &both, &signed_by("old"), body, at(0)).is_ok());
        assert!(verify(&scheme, &both, &signed_by("new"), body, at(0)).is_ok());
        let only_new = Secrets::new(secret("new"));
        assert_eq!(
            kind(verify(&scheme, &only_new, &signed_by("old"), body, at(0))),
            RejectionKind::SignatureMismatch
        );
    }

    #[test]
    fn the_matching_secret_is_reported_and_the_last_configured_wins_among_several() {
        let scheme = Scheme::standard_webhooks();
        let (old, new) = (secret("old-key"), secret("new-key"));
        let message = crate::scheme::Outgoing {
            id: "msg_1",
            event: "",
            timestamp: 1_700_000_000,
            body: b"{}",
        };
        let signature = |key: &Secret| {
            let signed = scheme.sign(key, &message).unwrap();
            signed["webhook-signature"].to_str().unwrap().to_owned()
        };
        // The signature header as the sender writes it: one signature per secret it signs with.
        let finish = |secrets: &Secrets, signatures: &[&Secret]| {
            let list: Vec<String> = signatures.iter().map(|key| signature(key)).collect();
            let header = headers(&[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", "1700000000"),
                ("webhook-signature", &list.join(" ")),
            ]);
            let prepared = scheme.prepare(&Headers::new(&header), None).unwrap();
            let mut mac = BodyMac::new(secrets, &prepared.prefix);
            mac.update(message.body);
            mac.finish(&prepared.candidates).ok()
        };
        let rotating = Secrets::new(new.clone()).with(old.clone());
        let not_yet = Secrets::new(old.clone());
        assert_eq!(finish(&not_yet, &[&old]), Some(old.fingerprint()));
        assert_eq!(finish(&rotating, &[&old]), Some(old.fingerprint()));
        assert_eq!(finish(&rotating, &[&new]), Some(new.fingerprint()));
        // Signed with both: the secret configured last (the old one) wins, as on the replica
        // that does not know the new one yet.
        assert_eq!(finish(&rotating, &[&new, &old]), Some(old.fingerprint()));
        assert_eq!(finish(&rotating, &[&old, &new]), Some(old.fingerprint()));
        assert_eq!(finish(&not_yet, &[&new, &old]), Some(old.fingerprint()));
        assert_eq!(finish(&rotating, &[&secret("stranger")]), None);
    }

    #[test]
    fn hashing_in_chunks_equals_hashing_at_once() {
        let body = b"a body that arrives in several frames";
        let header = headers(&[("x-webhook-signature", &sign(&secret("k"), body))]);
        let scheme = Scheme::sotion();
        let prepared = scheme.prepare(&Headers::new(&header), None).unwrap();
        let mut mac = BodyMac::new(&Secrets::new(secret("k")), &prepared.prefix);
        for chunk in body.chunks(5) {
            mac.update(chunk);
        }
        assert!(mac.finish(&prepared.candidates).is_ok());
    }

    #[test]
    fn verify_checks_signature_before_the_envelope() {
        let key = secret("k");
        let body = b"not json";
        let scheme = Scheme::sotion();
        let secrets = Secrets::new(key.clone());
        let forged = headers(&[("x-webhook-signature", &sign(&secret("other"), body))]);
        assert_eq!(
            kind(verify(&scheme, &secrets, &forged, body, at(0))),
            RejectionKind::SignatureMismatch
        );
        let genuine = headers(&[("x-webhook-signature", &sign(&key, body))]);
        assert_eq!(
            kind(verify(&scheme, &secrets, &genuine, body, at(0))),
            RejectionKind::InvalidJson
        );
    }

    #[test]
    fn unix_seconds_saturates() {
        assert_eq!(unix_seconds(at(5)), 5);
        assert_eq!(
            unix_seconds(SystemTime::UNIX_EPOCH - Duration::from_secs(5)),
            -5
        );
    }
}
