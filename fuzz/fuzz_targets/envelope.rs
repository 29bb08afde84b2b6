//! Arbitrary bodies, parsed as Sotion envelopes and, correctly signed, verified by every
//! preset: parsing after a valid signature must never panic, and what passes is well formed.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use tower_webhook::scheme::Outgoing;
use tower_webhook::{verify, Envelope, Scheme, Secrets};

const NOW: i64 = 1_700_000_000;

fuzz_target!(|body: &[u8]| {
    if let Ok(envelope) = Envelope::<serde_json::Value>::from_bytes(body) {
        assert!(!envelope.id.is_empty() && envelope.id.len() <= 255);
        assert!(!envelope.id.chars().any(char::is_control));
        assert_eq!(envelope.version, "1");
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.unsigned_abs());
    for name in ["sotion", "sota", "github", "standard", "stripe", "slack"] {
        let scheme = Scheme::preset(name).unwrap();
        let secret = scheme.secret("whsec_ZnV6emluZy1zZWNyZXQ=").unwrap();
        // Take the id and type from the body when it has them, as the sender would.
        let fields: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let id = fields.get("id").and_then(|v| v.as_str()).unwrap_or("evt_fuzz");
        let event = fields.get("type").and_then(|v| v.as_str()).unwrap_or("member.created");
        let message = Outgoing { id, event, timestamp: NOW, body };
        let Ok(headers) = scheme.sign(&secret, &message) else { continue };
        if let Ok(meta) = verify::verify(&scheme, &Secrets::new(secret), &headers, body, now) {
            assert!(!meta.id().is_empty() && meta.id().len() <= 255, "{name}: {meta:?}");
            assert!(!meta.id().chars().any(char::is_control), "{name}: {meta:?}");
        }
    }
});
