//! Why a delivery was refused, for the operator: a [`Reason`] with a hint, in the refusal's log
//! line and in the [`Rejection`](crate::Rejection) that rides in the response's extensions,
//! never in the answer the sender reads (its status, headers and body are the same with and
//! without a reason).
//!
//! The work a reason takes is done on the refusal path only: when no configured secret signs a
//! delivery, the secrets' other readings (trimmed of whitespace, decoded as another scheme
//! decodes them), the previous secrets, and the body with its JSON whitespace changed are tried
//! in turn, until one signs it.

use std::fmt;

use http::HeaderName;

use crate::scheme::{BodyForm, Candidates, SecretFormat};
use crate::secret::{Alternative, HmacSha256, Secrets};

/// The largest body whose JSON whitespace is changed to look for a re-encoded body: larger
/// ones are not tried (each try is one more HMAC over the body, on the refusal path).
const MAX_REFORMATTED: usize = 256 * 1024;

/// Why a delivery was refused, for the operator: [`code`](Self::code) is stable and
/// machine-readable, `Display` gives a hint in a sentence. Found in the refusal's log line
/// (fields `reason` and `hint`) and in [`Rejection::reason`](crate::Rejection::reason), never
/// in the answer: no hint names the secret that matched or shows a signature.
///
/// ```
/// use tower_webhook::error::Reason;
///
/// let reason = Reason::TimestampSkew { age_secs: 412, tolerance_secs: 300 };
/// assert_eq!(reason.code(), "timestamp_skew");
/// assert!(reason.to_string().contains("412 s old"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A header the scheme reads is not in the request; the scheme's own name for it
    /// (`x-hub-signature-256`, `webhook-id`).
    MissingHeader(HeaderName),
    /// A header the scheme reads once was sent more than once.
    RepeatedHeader(HeaderName),
    /// A header that must repeat a signed value (Sotion's `x-webhook-id`) differs from it.
    HeaderDisagrees(HeaderName),
    /// The signature header is not in the scheme's format.
    SignatureFormat {
        /// The signature header.
        header: HeaderName,
        /// The shape the scheme expects (`` `sha256=<64 hex digits>` ``).
        expected: String,
    },
    /// The signed timestamp is not in the scheme's format.
    TimestampFormat {
        /// Where the scheme reads it (`header x-slack-request-timestamp`).
        source: String,
        /// How the scheme writes it (`Unix seconds`).
        expected: &'static str,
    },
    /// The signed timestamp lies further from the receiver's clock than the tolerance.
    TimestampSkew {
        /// The receiver's time minus the signed timestamp, in seconds: positive when the
        /// timestamp is in the past, negative when it is ahead.
        age_secs: i64,
        /// The tolerance it exceeds (the past's or the future's), in seconds.
        tolerance_secs: u64,
    },
    /// No configured secret signs the delivery, and none of the checks below explains why.
    NoSecretMatches,
    /// A configured secret signs the delivery once its leading or trailing whitespace is
    /// removed (a newline from a file).
    SecretWhitespace,
    /// A configured secret signs the delivery when read another way: it is in another scheme's
    /// format.
    SecretFormat {
        /// How this scheme reads its secrets.
        scheme: SecretFormat,
        /// How the secret, read, signs the delivery.
        read_as: SecretFormat,
    },
    /// A previous secret ([`Secrets::with_retired`](crate::Secrets::with_retired), the layer
    /// builder's `with_retired_secret`) signs the delivery: the sender still signs with it.
    PreviousSecret,
    /// A configured secret signs the body once its JSON whitespace is changed: the body was
    /// re-encoded before verification (a proxy, or a framework that parsed and re-serialized
    /// it). Pass the raw bytes.
    BodyChanged,
    /// A per-tenant resolver knows no tenant for the request (answered as a wrong signature).
    UnknownTenant,
    /// The body's `Content-Type` is not one the scheme reads.
    UnsupportedMediaType {
        /// The media type sent (its first 64 visible characters), or `None` when the request
        /// has no `Content-Type`.
        found: Option<String>,
        /// The forms the scheme reads.
        reads: Vec<BodyForm>,
    },
}

impl Reason {
    /// The stable machine-readable code: `missing_header`, `repeated_header`,
    /// `header_disagrees`, `signature_format`, `timestamp_format`, `timestamp_skew`,
    /// `no_secret_matches`, `secret_whitespace`, `secret_format`, `previous_secret`,
    /// `body_changed`, `unknown_tenant`, `unsupported_media_type`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::RepeatedHeader(_) => "repeated_header",
            Self::HeaderDisagrees(_) => "header_disagrees",
            Self::SignatureFormat { .. } => "signature_format",
            Self::TimestampFormat { .. } => "timestamp_format",
            Self::TimestampSkew { .. } => "timestamp_skew",
            Self::NoSecretMatches => "no_secret_matches",
            Self::SecretWhitespace => "secret_whitespace",
            Self::SecretFormat { .. } => "secret_format",
            Self::PreviousSecret => "previous_secret",
            Self::BodyChanged => "body_changed",
            Self::UnknownTenant => "unknown_tenant",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHeader(name) => write!(
                f,
                "the request has no `{name}` header, which this scheme reads: is the layer's \
                 scheme the sender's?"
            ),
            Self::RepeatedHeader(name) => write!(
                f,
                "the request carries the `{name}` header more than once; this scheme reads it once"
            ),
            Self::HeaderDisagrees(name) => write!(
                f,
                "the `{name}` header differs from the value the signed body holds"
            ),
            Self::SignatureFormat { header, expected } => write!(
                f,
                "the `{header}` header is not {expected}: is the layer's scheme the sender's?"
            ),
            Self::TimestampFormat { source, expected } => {
                write!(f, "the signed timestamp ({source}) is not {expected}")
            }
            Self::TimestampSkew {
                age_secs,
                tolerance_secs,
            } => {
                if *age_secs >= 0 {
                    write!(f, "the signed timestamp is {age_secs} s old")?;
                } else {
                    write!(
                        f,
                        "the signed timestamp is {} s ahead of this receiver's clock",
                        age_secs.unsigned_abs()
                    )?;
                }
                write!(
                    f,
                    " and this receiver accepts {tolerance_secs} s: check both clocks (NTP), or \
                     what held the delivery back"
                )
            }
            Self::NoSecretMatches => f.write_str(
                "no configured secret signs these bytes: check that the secret is this \
                 endpoint's and the scheme the sender's",
            ),
            Self::SecretWhitespace => f.write_str(
                "the secret has leading/trailing whitespace: the signature matches the secret \
                 without it (a newline from a file?)",
            ),
            Self::SecretFormat { scheme, read_as } => write!(
                f,
                "this secret is in another scheme's format: it signs this delivery read as \
                 {read_as}, and this scheme reads its secrets as {scheme}"
            ),
            Self::PreviousSecret => f.write_str(
                "the signature matches a previous secret: the sender still signs with it \
                 (finish the rotation on the sender's side, or accept that secret again)",
            ),
            Self::BodyChanged => f.write_str(
                "the body was changed before verification: pass the raw bytes (the signature \
                 matches the body with its JSON whitespace changed: a proxy or a framework \
                 re-encoded it)",
            ),
            Self::UnknownTenant => f.write_str("the secret resolver knows no such tenant"),
            Self::UnsupportedMediaType { found, reads } => {
                match found {
                    Some(found) => write!(f, "the body's Content-Type is `{found}`")?,
                    None => f.write_str("the request has no Content-Type")?,
                }
                f.write_str(", and this scheme reads ")?;
                for (n, form) in reads.iter().enumerate() {
                    if n > 0 {
                        f.write_str(" or ")?;
                    }
                    f.write_str(match form {
                        BodyForm::Json => "application/json",
                        BodyForm::Form => "application/x-www-form-urlencoded",
                    })?;
                }
                Ok(())
            }
        }
    }
}

/// Why no configured secret signs a delivery (`prefix`, then `body`, against `candidates`):
/// a previous secret signs it; a configured secret read another way signs it; a configured
/// secret signs the body with its JSON whitespace changed; or none of these. Runs on the
/// refusal path only, and stops at the first that signs.
pub(crate) fn mismatch(
    candidates: &Candidates,
    prefix: &[u8],
    body: &[u8],
    secrets: &Secrets,
    scheme_format: &SecretFormat,
) -> Reason {
    let signs = |mut mac: HmacSha256, body: &[u8]| {
        hmac::Mac::update(&mut mac, prefix);
        hmac::Mac::update(&mut mac, body);
        bool::from(crate::verify::matches_any(mac, candidates))
    };
    if secrets.retired().any(|secret| signs(secret.mac(), body)) {
        return Reason::PreviousSecret;
    }
    for secret in secrets.iter() {
        for alternative in secret.alternatives() {
            if signs(alternative.mac.clone(), body) {
                return match &alternative.kind {
                    Alternative::Trimmed => Reason::SecretWhitespace,
                    Alternative::ReadAs(format) => Reason::SecretFormat {
                        scheme: scheme_format.clone(),
                        read_as: format.clone(),
                    },
                };
            }
        }
    }
    if looks_like_json(body) && body.len() <= MAX_REFORMATTED {
        for style in [Style::Compact, Style::Spaced, Style::Indented] {
            let changed = reformat(body, style);
            if changed.as_slice() != body && secrets.iter().any(|s| signs(s.mac(), &changed)) {
                return Reason::BodyChanged;
            }
        }
        let toggled = toggle_final_newline(body);
        if secrets.iter().any(|s| signs(s.mac(), &toggled)) {
            return Reason::BodyChanged;
        }
    }
    Reason::NoSecretMatches
}

fn looks_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|byte| !byte.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// The body with a final newline removed, or added when it has none.
fn toggle_final_newline(body: &[u8]) -> Vec<u8> {
    match body {
        [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n'] => rest.to_vec(),
        _ => [body, b"\n"].concat(),
    }
}

/// How a JSON text's whitespace is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// None at all: `{"a":1,"b":[1,2]}` (`JSON.stringify(v)`, `serde_json::to_vec`).
    Compact,
    /// `{"a": 1, "b": [1, 2]}` (Python's `json.dumps(v)`).
    Spaced,
    /// Two spaces per level, one member per line (`JSON.stringify(v, null, 2)`,
    /// `serde_json::to_vec_pretty`, Stripe's bodies).
    Indented,
}

/// `json` with its whitespace outside strings written in `style`; members, their order and
/// every string and number kept byte for byte. Text that is not JSON comes out changed
/// somehow, which is harmless: it is only ever hashed.
fn reformat(json: &[u8], style: Style) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + json.len() / 4);
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 2));
    };
    let mut bytes = json.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if in_string {
            out.push(byte);
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'"' => {
                in_string = true;
                out.push(byte);
            }
            b'{' | b'[' => {
                out.push(byte);
                // An empty object or array stays `{}` / `[]` in every style.
                while bytes.next_if(u8::is_ascii_whitespace).is_some() {}
                if matches!(bytes.peek(), Some(b'}' | b']')) {
                    continue;
                }
                depth += 1;
                if style == Style::Indented {
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                let empty = matches!(out.last(), Some(b'{' | b'['));
                if !empty {
                    depth = depth.saturating_sub(1);
                    if style == Style::Indented {
                        newline(&mut out, depth);
                    }
                }
                out.push(byte);
            }
            b',' => {
                out.push(byte);
                match style {
                    Style::Compact => {}
                    Style::Spaced => out.push(b' '),
                    Style::Indented => newline(&mut out, depth),
                }
            }
            b':' => {
                out.push(byte);
                if style != Style::Compact {
                    out.push(b' ');
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRETTY: &str = "{\n  \"id\": \"evt_1\",\n  \"data\": {\n    \"object\": {\n      \"tags\": [\n        \"a, b\",\n        \"c: d\"\n      ],\n      \"empty\": {},\n      \"none\": []\n    }\n  },\n  \"n\": 1.50\n}";
    const COMPACT: &str = r#"{"id":"evt_1","data":{"object":{"tags":["a, b","c: d"],"empty":{},"none":[]}},"n":1.50}"#;
    const SPACED: &str = r#"{"id": "evt_1", "data": {"object": {"tags": ["a, b", "c: d"], "empty": {}, "none": []}}, "n": 1.50}"#;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_whitespace_is_rewritten_in_each_style_and_strings_kept() {
        for source in [PRETTY, COMPACT, SPACED] {
            assert_eq!(text(reformat(source.as_bytes(), Style::Compact)), COMPACT);
            assert_eq!(text(reformat(source.as_bytes(), Style::Spaced)), SPACED);
            assert_eq!(text(reformat(source.as_bytes(), Style::Indented)), PRETTY);
        }
        // As serde_json writes them (its maps sort their keys).
        let value: serde_json::Value = serde_json::from_str(PRETTY).unwrap();
        let compact = serde_json::to_string(&value).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        assert_eq!(text(reformat(compact.as_bytes(), Style::Indented)), pretty);
        assert_eq!(text(reformat(pretty.as_bytes(), Style::Compact)), compact);
        let escaped = r#"{"q":"say \"hi\", {x}: [y]\\"}"#;
        assert_eq!(text(reformat(escaped.as_bytes(), Style::Compact)), escaped);
    }

    #[test]
    fn a_final_newline_is_toggled() {
        assert_eq!(toggle_final_newline(b"{}\n"), b"{}");
        assert_eq!(toggle_final_newline(b"{}\r\n"), b"{}");
        assert_eq!(toggle_final_newline(b"{}"), b"{}\n");
    }

    #[test]
    fn every_reason_has_a_code_and_a_hint() {
        let reasons = [
            Reason::MissingHeader(HeaderName::from_static("x-hub-signature-256")),
            Reason::RepeatedHeader(HeaderName::from_static("webhook-id")),
            Reason::HeaderDisagrees(HeaderName::from_static("x-webhook-id")),
            Reason::SignatureFormat {
                header: HeaderName::from_static("x-hub-signature-256"),
                expected: "`sha256=<64 hex digits>`".to_owned(),
            },
            Reason::TimestampFormat {
                source: "header `x-slack-request-timestamp`".to_owned(),
                expected: "Unix seconds",
            },
            Reason::TimestampSkew {
                age_secs: -400,
                tolerance_secs: 300,
            },
            Reason::NoSecretMatches,
            Reason::SecretWhitespace,
            Reason::SecretFormat {
                scheme: SecretFormat::Raw,
                read_as: SecretFormat::base64("whsec_"),
            },
            Reason::PreviousSecret,
            Reason::BodyChanged,
            Reason::UnknownTenant,
            Reason::UnsupportedMediaType {
                found: Some("text/plain".to_owned()),
                reads: vec![BodyForm::Json, BodyForm::Form],
            },
        ];
        let codes: std::collections::HashSet<_> = reasons.iter().map(Reason::code).collect();
        assert_eq!(codes.len(), reasons.len());
        for reason in &reasons {
            assert!(!reason.to_string().is_empty());
        }
        assert!(reasons[0].to_string().contains("`x-hub-signature-256`"));
        assert!(reasons[5].to_string().contains("400 s ahead"));
        assert!(reasons[12]
            .to_string()
            .ends_with("`text/plain`, and this scheme reads application/json or application/x-www-form-urlencoded"));
    }
}
