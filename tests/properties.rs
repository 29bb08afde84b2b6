//! Properties over arbitrary inputs, for every preset: what is signed verifies, any single flipped
//! bit does not, and no header value makes the parsers panic or pass.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use tower_webhook::scheme::Outgoing;
use tower_webhook::{verify, Scheme, Secret, Secrets};

const NOW: i64 = 1_700_000_000;
const PRESETS: [&str; 6] = ["sotion", "sota", "github", "standard", "stripe", "slack"];

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.unsigned_abs())
}

fn scheme(index: usize) -> Scheme {
    Scheme::preset(PRESETS[index % PRESETS.len()]).unwrap()
}

fn sign(scheme: &Scheme, secret: &Secret, body: &[u8], timestamp: i64) -> HeaderMap {
    let message = Outgoing {
        id: "evt_property",
        event: "member.created",
        timestamp,
        body,
    };
    scheme.sign(secret, &message).unwrap()
}

/// The secret whose key bytes are `key`, written the way `scheme` decodes secrets (base64 after
/// `whsec_` for Standard Webhooks, the bytes as they are otherwise).
fn secret_for(scheme: &Scheme, key: &[u8]) -> Secret {
    if scheme.name() == "standard-webhooks" {
        let text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
        scheme.secret(&format!("whsec_{text}")).unwrap()
    } else {
        Secret::new(key).unwrap()
    }
}

fn check(scheme: &Scheme, secret: &Secret, headers: &HeaderMap, body: &[u8]) -> bool {
    verify::verify_signature(scheme, &Secrets::new(secret.clone()), headers, body, now()).is_ok()
}

/// Flips bit `bit` of the digest carried in the signature header, keeping its format.
fn flip_signature_bit(scheme: &Scheme, headers: &mut HeaderMap, bit: usize) {
    let name = scheme.signature_header().clone();
    let value = headers[&name].to_str().unwrap().to_owned();
    let flipped = if scheme.name() == "standard-webhooks" {
        let encoded = value.strip_prefix("v1,").unwrap();
        let mut digest =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap();
        digest[bit / 8] ^= 1 << (bit % 8);
        format!(
            "v1,{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest)
        )
    } else {
        let (prefix, hex) = value.split_at(value.len() - 64);
        let mut digest = [0_u8; 32];
        faster_hex::hex_decode(hex.as_bytes(), &mut digest).unwrap();
        digest[bit / 8] ^= 1 << (bit % 8);
        format!("{prefix}{}", faster_hex::hex_string(&digest))
    };
    headers.insert(name, HeaderValue::from_str(&flipped).unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn what_is_signed_verifies_for_any_bytes_and_any_secret(
        preset in 0..PRESETS.len(),
        key in proptest::collection::vec(any::<u8>(), 1..80),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let scheme = scheme(preset);
        let secret = secret_for(&scheme, &key);
        let headers = sign(&scheme, &secret, &body, NOW);
        prop_assert!(check(&scheme, &secret, &headers, &body));
    }

    #[test]
    fn flipping_any_bit_of_the_body_fails(
        preset in 0..PRESETS.len(),
        body in proptest::collection::vec(any::<u8>(), 1..1024),
        position in any::<prop::sample::Index>(),
        bit in 0_u8..8,
    ) {
        let scheme = scheme(preset);
        let secret = secret_for(&scheme, b"whsec_property");
        let headers = sign(&scheme, &secret, &body, NOW);
        let mut tampered = body.clone();
        tampered[position.index(body.len())] ^= 1 << bit;
        prop_assert!(!check(&scheme, &secret, &headers, &tampered));
    }

    #[test]
    fn flipping_any_bit_of_the_signature_fails(
        preset in 0..PRESETS.len(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        bit in 0_usize..256,
    ) {
        let scheme = scheme(preset);
        let secret = secret_for(&scheme, b"whsec_property");
        let mut headers = sign(&scheme, &secret, &body, NOW);
        flip_signature_bit(&scheme, &mut headers, bit);
        prop_assert!(!check(&scheme, &secret, &headers, &body));
    }

    #[test]
    fn flipping_any_bit_of_a_signed_timestamp_fails(
        preset in prop::sample::select(vec![3_usize, 4, 5]), // standard, stripe, slack
        body in proptest::collection::vec(any::<u8>(), 0..512),
        bit in 0_u32..63,
    ) {
        let scheme = scheme(preset);
        let secret = secret_for(&scheme, b"whsec_property");
        let genuine = sign(&scheme, &secret, &body, NOW);
        // The same signature with another timestamp: move the timestamp only.
        let forged_time = NOW ^ (1_i64 << bit);
        let mut headers = sign(&scheme, &secret, &body, forged_time);
        let signature = scheme.signature_header().clone();
        match scheme.name() {
            "stripe" => {
                let original = genuine[&signature].to_str().unwrap();
                let moved = original.replacen(&format!("t={NOW}"), &format!("t={forged_time}"), 1);
                headers.insert(signature, HeaderValue::from_str(&moved).unwrap());
            }
            _ => {
                headers.insert(signature.clone(), genuine[&signature].clone());
            }
        }
        prop_assert!(!check(&scheme, &secret, &headers, &body));
    }

    #[test]
    fn no_header_value_makes_the_parsers_panic_or_pass(
        preset in 0..PRESETS.len(),
        values in proptest::collection::vec(
            (0_usize..6, proptest::collection::vec(any::<u8>(), 0..120)),
            0..6,
        ),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let scheme = scheme(preset);
        let names = [
            scheme.signature_header().as_str(), "webhook-id", "webhook-timestamp",
            "x-slack-request-timestamp", "x-github-delivery", "content-encoding",
        ];
        let mut headers = HeaderMap::new();
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.append(HeaderName::from_bytes(names[name].as_bytes()).unwrap(), value);
            }
        }
        let secret = secret_for(&scheme, b"whsec_property");
        prop_assert!(!check(&scheme, &secret, &headers, &body));
        let full = verify::verify(&scheme, &Secrets::new(secret), &headers, &body, now());
        prop_assert!(full.is_err());
    }
}
