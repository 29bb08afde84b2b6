//! The asymmetric keys: Ed25519 (feature `ed25519`) and ECDSA P-256 (feature `p256`), decoded
//! from the bytes a sender hands out, verifying and (for tests and the demo) signing.
//!
//! A receiver holds the sender's public key, which verifies but cannot sign; a private key
//! (a development key pair, a test) does both.

#[cfg(any(feature = "ed25519", feature = "p256"))]
use crate::error::ConfigError;

/// One asymmetric key.
#[derive(Clone)]
pub(crate) enum AsymmetricKey {
    /// An Ed25519 public key.
    #[cfg(feature = "ed25519")]
    Ed25519(ed25519_dalek::VerifyingKey),
    /// An Ed25519 private key (its 32-byte seed).
    #[cfg(feature = "ed25519")]
    Ed25519Signing(Box<ed25519_dalek::SigningKey>),
    /// A P-256 public key.
    #[cfg(feature = "p256")]
    P256(p256::ecdsa::VerifyingKey),
    /// A P-256 private key.
    #[cfg(feature = "p256")]
    P256Signing(Box<p256::ecdsa::SigningKey>),
}

#[cfg(any(feature = "ed25519", feature = "p256"))]
fn invalid(what: &'static str) -> ConfigError {
    ConfigError::InvalidPublicKey { reason: what }
}

impl AsymmetricKey {
    /// An Ed25519 public key: exactly 32 bytes, a point on the curve.
    #[cfg(feature = "ed25519")]
    pub(crate) fn ed25519(bytes: &[u8]) -> Result<Self, ConfigError> {
        let bytes: &[u8; 32] = bytes
            .try_into()
            .map_err(|_| invalid("an Ed25519 public key is 32 bytes"))?;
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self::Ed25519)
            .map_err(|_| invalid("the bytes are not an Ed25519 public key"))
    }

    /// An Ed25519 private key from its 32-byte seed (as Standard Webhooks' `whsk_` keys hold).
    #[cfg(feature = "ed25519")]
    pub(crate) fn ed25519_signing(seed: &[u8]) -> Result<Self, ConfigError> {
        let seed: &[u8; 32] = seed
            .try_into()
            .map_err(|_| invalid("an Ed25519 private key is a 32-byte seed"))?;
        Ok(Self::Ed25519Signing(Box::new(
            ed25519_dalek::SigningKey::from_bytes(seed),
        )))
    }

    /// A P-256 public key in DER (`SubjectPublicKeyInfo`, as SendGrid shows it in base64) or
    /// SEC1 (a 65-byte uncompressed or 33-byte compressed point).
    #[cfg(feature = "p256")]
    pub(crate) fn p256(bytes: &[u8]) -> Result<Self, ConfigError> {
        use p256::pkcs8::DecodePublicKey as _;
        p256::ecdsa::VerifyingKey::from_public_key_der(bytes)
            .or_else(|_| p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes))
            .map(Self::P256)
            .map_err(|_| invalid("the bytes are not a P-256 public key (DER or SEC1)"))
    }

    /// A P-256 private key in PKCS#8 DER.
    #[cfg(feature = "p256")]
    pub(crate) fn p256_signing(bytes: &[u8]) -> Result<Self, ConfigError> {
        use p256::pkcs8::DecodePrivateKey as _;
        p256::ecdsa::SigningKey::from_pkcs8_der(bytes)
            .map(|key| Self::P256Signing(Box::new(key)))
            .map_err(|_| invalid("the bytes are not a P-256 private key in PKCS#8 DER"))
    }

    /// The public key's bytes (Ed25519: 32 bytes; P-256: the compressed point), which the
    /// key's fingerprint is made of.
    pub(crate) fn public_bytes(&self) -> Vec<u8> {
        match self {
            #[cfg(feature = "ed25519")]
            Self::Ed25519(key) => key.as_bytes().to_vec(),
            #[cfg(feature = "ed25519")]
            Self::Ed25519Signing(key) => key.verifying_key().as_bytes().to_vec(),
            #[cfg(feature = "p256")]
            Self::P256(key) => key.to_encoded_point(true).as_bytes().to_vec(),
            #[cfg(feature = "p256")]
            Self::P256Signing(key) => key
                .verifying_key()
                .to_encoded_point(true)
                .as_bytes()
                .to_vec(),
            #[allow(unreachable_patterns)]
            _ => Vec::new(),
        }
    }

    /// Whether `signature` signs `message` under this key. Ed25519 is checked strictly (no
    /// small-order keys, canonical `S`), ECDSA signatures must be DER and low-`S` or high-`S`
    /// alike (as the senders' own libraries accept).
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let _ = (message, signature);
        match self {
            #[cfg(feature = "ed25519")]
            Self::Ed25519(key) => ed25519_verify(key, message, signature),
            #[cfg(feature = "ed25519")]
            Self::Ed25519Signing(key) => ed25519_verify(&key.verifying_key(), message, signature),
            #[cfg(feature = "p256")]
            Self::P256(key) => p256_verify(key, message, signature),
            #[cfg(feature = "p256")]
            Self::P256Signing(key) => p256_verify(key.verifying_key(), message, signature),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The signature of `message`, when this is a private key.
    pub(crate) fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        let _ = message;
        match self {
            #[cfg(feature = "ed25519")]
            Self::Ed25519Signing(key) => {
                use ed25519_dalek::Signer as _;
                Some(key.sign(message).to_bytes().to_vec())
            }
            #[cfg(feature = "p256")]
            Self::P256Signing(key) => {
                use p256::ecdsa::signature::Signer as _;
                let signature: p256::ecdsa::Signature = key.sign(message);
                Some(signature.to_der().as_bytes().to_vec())
            }
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

#[cfg(feature = "ed25519")]
fn ed25519_verify(key: &ed25519_dalek::VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &signature).is_ok()
}

#[cfg(feature = "p256")]
fn p256_verify(key: &p256::ecdsa::VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    use p256::ecdsa::signature::Verifier as _;
    let Ok(signature) = p256::ecdsa::Signature::from_der(signature) else {
        return false;
    };
    // Senders' libraries (OpenSSL, Java) may write a high `S`; the curve accepts both.
    let signature = signature.normalize_s().unwrap_or(signature);
    key.verify(message, &signature).is_ok()
}
