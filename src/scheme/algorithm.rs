//! Which function a sender signs with: [`Algorithm`].

use std::fmt;

/// How a sender turns the signed bytes into its signature, and so what its keys are.
///
/// The HMACs share a secret with the receiver; the asymmetric ones sign with a private key that
/// only the sender holds, and the receiver verifies with the **public** key the sender shows
/// (which cannot sign). Only HMAC-SHA256 is in the default build; the others need a Cargo
/// feature, named by [`feature`](Self::feature) (a scheme's secret cannot be decoded without
/// it: [`ConfigError::FeatureDisabled`](crate::ConfigError::FeatureDisabled)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC-SHA256 with a shared secret (every preset but those below).
    HmacSha256,
    /// HMAC-SHA1 with a shared secret (Twilio's Auth Token), feature `sha1`.
    HmacSha1,
    /// Ed25519 (RFC 8032), verified with the sender's 32-byte public key (Discord, Standard
    /// Webhooks `v1a`), feature `ed25519`.
    Ed25519,
    /// ECDSA over P-256 with SHA-256, the signature DER-encoded, verified with the sender's
    /// public key (SendGrid), feature `p256`.
    EcdsaP256Sha256,
}

/// How long a decoded signature of an algorithm is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureLength {
    /// Exactly this many bytes.
    Exactly(usize),
    /// A DER-encoded ECDSA signature: a `SEQUENCE` of two integers, 8 to 72 bytes for P-256.
    Der,
}

impl Algorithm {
    /// The Cargo feature this algorithm needs (`None`: always built).
    #[must_use]
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Self::HmacSha256 => None,
            Self::HmacSha1 => Some("sha1"),
            Self::Ed25519 => Some("ed25519"),
            Self::EcdsaP256Sha256 => Some("p256"),
        }
    }

    /// Whether this build has the feature the algorithm needs.
    pub(crate) fn is_built(self) -> bool {
        match self {
            Self::HmacSha256 => true,
            Self::HmacSha1 => cfg!(feature = "sha1"),
            Self::Ed25519 => cfg!(feature = "ed25519"),
            Self::EcdsaP256Sha256 => cfg!(feature = "p256"),
        }
    }

    /// Whether the receiver holds a public key (that can verify but not sign).
    #[must_use]
    pub fn is_asymmetric(self) -> bool {
        matches!(self, Self::Ed25519 | Self::EcdsaP256Sha256)
    }

    /// How long the signatures are, once decoded.
    pub(crate) fn signature_length(self) -> SignatureLength {
        match self {
            Self::HmacSha256 => SignatureLength::Exactly(32),
            Self::HmacSha1 => SignatureLength::Exactly(20),
            Self::Ed25519 => SignatureLength::Exactly(64),
            Self::EcdsaP256Sha256 => SignatureLength::Der,
        }
    }
}

impl SignatureLength {
    /// Whether `len` decoded bytes can be a signature.
    pub(crate) fn allows(self, len: usize) -> bool {
        match self {
            Self::Exactly(exactly) => len == exactly,
            Self::Der => (8..=72).contains(&len),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HmacSha256 => "HMAC-SHA256",
            Self::HmacSha1 => "HMAC-SHA1",
            Self::Ed25519 => "Ed25519",
            Self::EcdsaP256Sha256 => "ECDSA P-256 SHA-256",
        })
    }
}
