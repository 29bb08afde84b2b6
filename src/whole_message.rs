//! Verifying the schemes whose signature cannot be checked while the body streams in: the
//! asymmetric ones (Ed25519, ECDSA P-256), HMAC-SHA1, and Twilio's rule (its signed bytes are
//! the body's parameters, sorted). The layer keeps the body anyway; these check it once it has
//! all arrived, against every accepted key, without an early exit.

use hmac::Mac;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::error::{Rejection, RejectionKind};
use crate::scheme::{Algorithm, Candidates, Prepared, Rule, Scheme};
use crate::secret::{Fingerprint, Key, Secret, Secrets};

/// The fingerprint of the accepted key that verifies the request, the one added last when
/// several do (as for HMAC-SHA256, see `BodyMac::finish`).
///
/// # Errors
/// `signature_mismatch` when none does (or, for Twilio, when a JSON body is not the one the
/// signed URL names).
pub(crate) fn verify(
    scheme: &Scheme,
    prepared: &Prepared,
    secrets: &Secrets,
    body: &[u8],
) -> Result<Fingerprint, Rejection> {
    if scheme.rule == Rule::ClientState {
        return client_state(secrets, body);
    }
    let messages = messages(scheme, prepared, body)?;
    let mut matched = Choice::from(0);
    let mut chosen = Fingerprint::default();
    for secret in secrets.iter() {
        let this = messages.iter().fold(Choice::from(0), |found, message| {
            found | verifies(secret, prepared.algorithm, message, &prepared.candidates)
        });
        matched |= this;
        let fingerprint = secret.fingerprint();
        for (byte, new) in chosen.iter_mut().zip(fingerprint) {
            *byte = u8::conditional_select(byte, &new, this);
        }
    }
    if bool::from(matched) {
        Ok(chosen)
    } else {
        Err(Rejection::new(
            RejectionKind::SignatureMismatch,
            "the signature does not match the body for any configured secret",
        ))
    }
}

/// The messages the sender may have signed: the signed prefix and the body, or Twilio's.
fn messages(scheme: &Scheme, prepared: &Prepared, body: &[u8]) -> Result<Vec<Vec<u8>>, Rejection> {
    match scheme.rule {
        Rule::Twilio => crate::scheme::twilio_messages(prepared.url.as_deref().unwrap_or(""), body),
        Rule::Parts | Rule::ClientState => {
            let mut message = Vec::with_capacity(prepared.prefix.len() + body.len());
            message.extend_from_slice(&prepared.prefix);
            message.extend_from_slice(body);
            Ok(vec![message])
        }
    }
}

/// Whether `secret` signs `message` with one of the signatures sent.
fn verifies(
    secret: &Secret,
    algorithm: Algorithm,
    message: &[u8],
    candidates: &Candidates,
) -> Choice {
    let compare = |computed: &[u8], sent: &mut dyn Iterator<Item = &[u8]>| {
        sent.fold(Choice::from(0), |found, signature| {
            found | computed.ct_eq(signature)
        })
    };
    match (secret.key(), algorithm) {
        (Key::Hmac { sha256, .. }, Algorithm::HmacSha256) => {
            let mut mac = sha256.clone();
            mac.update(message);
            let computed = mac.finalize().into_bytes();
            compare(&computed, &mut candidates.iter().map(|digest| &digest[..]))
        }
        #[cfg(feature = "sha1")]
        (Key::Hmac { sha1, .. }, Algorithm::HmacSha1) => {
            let mut mac = sha1.clone();
            mac.update(message);
            let computed = mac.finalize().into_bytes();
            compare(
                &computed,
                &mut candidates.others().iter().map(Vec::as_slice),
            )
        }
        (Key::Asymmetric(own, key), algorithm) if *own == algorithm => {
            // A public key: nothing to hide about it, and each verification is constant time
            // in the signature already.
            let found = candidates
                .others()
                .iter()
                .any(|signature| key.verifies(message, signature));
            Choice::from(u8::from(found))
        }
        _ => Choice::from(0),
    }
}

/// Microsoft Graph's notifications: `{"value": [{"clientState": "...", ...}, ...]}`, each of
/// which must carry an accepted secret as its `clientState`. The secret's raw bytes are not
/// kept, so each token is compared by its fingerprint (an HMAC-SHA256 keyed with it, of a fixed
/// label), in constant time, with every secret's: equal only for the same bytes.
fn client_state(secrets: &Secrets, body: &[u8]) -> Result<Fingerprint, Rejection> {
    #[derive(serde::Deserialize)]
    struct Notification {
        #[serde(rename = "clientState")]
        client_state: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Notifications {
        value: Vec<Notification>,
    }
    let mismatch = Rejection::new(
        RejectionKind::SignatureMismatch,
        "a notification's clientState is not this endpoint's",
    );
    let parsed: Notifications = serde_json::from_slice(body).map_err(|_| mismatch.clone())?;
    if parsed.value.is_empty() {
        return Err(mismatch);
    }
    let mut all = Choice::from(1);
    let mut chosen = Fingerprint::default();
    for notification in &parsed.value {
        let token = notification.client_state.as_deref().unwrap_or("");
        let Ok(token) = Secret::new(token) else {
            return Err(mismatch);
        };
        let mut this = Choice::from(0);
        for secret in secrets.iter() {
            let equal = secret.fingerprint().ct_eq(&token.fingerprint())
                & Choice::from(u8::from(matches!(secret.key(), Key::Hmac { .. })));
            this |= equal;
            let fingerprint = secret.fingerprint();
            for (byte, new) in chosen.iter_mut().zip(fingerprint) {
                *byte = u8::conditional_select(byte, &new, equal);
            }
        }
        all &= this;
    }
    if bool::from(all) {
        Ok(chosen)
    } else {
        Err(mismatch)
    }
}
