//! Twilio's signing rule, which no list of [`Part`](super::Part)s describes: the URL Twilio
//! called, then the form body's parameters sorted by name (each name followed by its value,
//! values of one name sorted too, repeats once); or, when the URL carries `bodySHA256` (a JSON
//! body), the URL alone, and a body whose SHA-256 is that hex. HMAC-SHA1 keyed with the Auth
//! Token, or HMAC-SHA256 keyed with a SharedKey when `X-Twilio-Webhooks-Signature-Settings`
//! says `algorithm=HMAC_SHA256`. Twilio signs some URLs with the port and some without, so
//! both are tried, as its libraries do.

use std::collections::BTreeMap;

use http::HeaderName;
use sha2::{Digest, Sha256};

use super::headers::Headers;
use super::query;
use crate::error::{Rejection, RejectionKind};

/// The header that names the algorithm of a SharedKey signature.
const SETTINGS: HeaderName = HeaderName::from_static("x-twilio-webhooks-signature-settings");

/// Whether the request is signed with HMAC-SHA256 (a SharedKey) rather than HMAC-SHA1.
///
/// # Errors
/// `malformed_signature` when the settings header names another algorithm (Twilio's libraries
/// refuse those too).
pub(crate) fn signs_with_sha256(headers: &Headers<'_>) -> Result<bool, Rejection> {
    let Some(value) = headers.one(&SETTINGS) else {
        return Ok(false);
    };
    let value = value.to_str().map_err(|_| UNKNOWN_ALGORITHM)?;
    let algorithm = value.split(',').find_map(|part| {
        let (name, value) = part.split_once('=')?;
        (name.trim() == "algorithm").then(|| value.trim())
    });
    match algorithm {
        None | Some("" | "HMAC_SHA1") => Ok(false),
        Some("HMAC_SHA256") => Ok(true),
        Some(_) => Err(UNKNOWN_ALGORITHM),
    }
}

const UNKNOWN_ALGORITHM: Rejection = Rejection::new(
    RejectionKind::MalformedSignature,
    "X-Twilio-Webhooks-Signature-Settings names an algorithm this receiver does not know",
);

/// The messages Twilio may have signed for a request to `url` carrying `body`: the URL as
/// given and with its port added or removed, each followed by the sorted form parameters.
///
/// # Errors
/// `signature_mismatch` when the URL carries `bodySHA256` and the body's SHA-256 differs.
pub(crate) fn messages(url: &str, body: &[u8]) -> Result<Vec<Vec<u8>>, Rejection> {
    let query_string = url.split_once('?').map_or("", |(_, query)| query);
    let parameters = match query::param(query_string, "bodySHA256") {
        Some(expected) => {
            let actual = faster_hex::hex_string(&Sha256::digest(body));
            if actual != expected {
                return Err(Rejection::new(
                    RejectionKind::SignatureMismatch,
                    "the body's SHA-256 is not the bodySHA256 of the signed URL",
                ));
            }
            Vec::new()
        }
        None => sorted_parameters(body),
    };
    Ok(url_variants(url)
        .into_iter()
        .map(|url| {
            let mut message = url.into_bytes();
            message.extend_from_slice(&parameters);
            message
        })
        .collect())
}

/// Each parameter name (sorted, once) followed by each of its values (sorted, once).
fn sorted_parameters(body: &[u8]) -> Vec<u8> {
    let mut parameters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in super::body::parameters(body) {
        parameters.entry(name).or_default().push(value);
    }
    let mut out = Vec::with_capacity(body.len());
    for (name, mut values) in parameters {
        values.sort_unstable();
        values.dedup();
        for value in values {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(value.as_bytes());
        }
    }
    out
}

/// `url`, and the same URL with its port removed (when it has one) or the scheme's default
/// port added (when it has none).
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let port = authority
        .rsplit_once(':')
        .filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    let other = if let Some((host, _)) = port {
        format!("{scheme}://{host}{tail}")
    } else {
        let default = if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        format!("{scheme}://{authority}:{default}{tail}")
    };
    variants.push(other);
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_parameters_by_name_then_value_once_each() {
        let body = b"To=%2B15551234567&Body=Hello+world&From=x&Body=Again&Body=Again";
        assert_eq!(
            String::from_utf8(sorted_parameters(body)).unwrap(),
            "BodyAgainBodyHello worldFromxTo+15551234567"
        );
    }

    #[test]
    fn tries_the_url_with_and_without_its_port() {
        assert_eq!(
            url_variants("https://example.com/sms?x=1"),
            [
                "https://example.com/sms?x=1",
                "https://example.com:443/sms?x=1"
            ]
        );
        assert_eq!(
            url_variants("http://127.0.0.1:3000/webhooks"),
            [
                "http://127.0.0.1:3000/webhooks",
                "http://127.0.0.1/webhooks"
            ]
        );
    }

    #[test]
    fn a_json_body_must_have_the_signed_urls_sha256() {
        let body = br#"{"a":1}"#;
        let hex = faster_hex::hex_string(&Sha256::digest(body));
        let url = format!("https://example.com/hook?bodySHA256={hex}");
        let messages = messages(&url, body).unwrap();
        assert_eq!(messages[0], url.as_bytes(), "the URL alone is signed");
        let refused = messages_err(&url, br#"{"a":2}"#);
        assert_eq!(refused, RejectionKind::SignatureMismatch);
    }

    fn messages_err(url: &str, body: &[u8]) -> RejectionKind {
        messages(url, body).unwrap_err().kind()
    }
}
