//! How a signature header is written: one prefixed digest, or a list of tagged digests.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::algorithm::SignatureLength;
use crate::error::{Rejection, RejectionKind};

/// The length of an HMAC-SHA256 digest, in bytes.
pub(crate) const DIGEST_LEN: usize = 32;

/// The most signature entries of one header that are examined (rotation needs two; senders
/// send a handful at most). Entries past it are ignored, not refused, so a request cannot make
/// the layer decode or compare without bound. Entries that do not decode count towards it.
pub(crate) const MAX_SIGNATURES: usize = 16;

/// How many decoded signatures are kept inline; more (rare) go to one heap allocation.
const INLINE_SIGNATURES: usize = 4;

/// How the digest bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// Hexadecimal; either case is accepted, lower case is produced.
    Hex,
    /// Standard base64 with padding (`+/=`).
    Base64,
}

impl Encoding {
    /// Decodes exactly one digest into `out`; `false` when `text` is not one.
    fn decode_into(self, text: &[u8], out: &mut [u8; DIGEST_LEN]) -> bool {
        match self {
            // `hex_decode` accepts a longer input than it needs: insist on the exact length.
            Self::Hex => text.len() == 2 * DIGEST_LEN && faster_hex::hex_decode(text, out).is_ok(),
            Self::Base64 => {
                // Room for the decoder's estimate; exactly 32 bytes must come out.
                let mut buffer = [0_u8; DIGEST_LEN + 16];
                match BASE64.decode_slice(text, &mut buffer) {
                    Ok(DIGEST_LEN) => {
                        out.copy_from_slice(&buffer[..DIGEST_LEN]);
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// Decodes a signature of any length; `None` when `text` is not in this encoding.
    fn decode(self, text: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::Hex => {
                if !text.len().is_multiple_of(2) {
                    return None;
                }
                let mut out = vec![0; text.len() / 2];
                faster_hex::hex_decode(text, &mut out).ok().map(|()| out)
            }
            Self::Base64 => BASE64.decode(text).ok(),
        }
    }

    pub(crate) fn encode(self, signature: &[u8]) -> String {
        match self {
            Self::Hex => faster_hex::hex_string(signature),
            Self::Base64 => BASE64.encode(signature),
        }
    }
}

/// The shape of a signature header's value.
///
/// ```
/// use tower_webhook::scheme::{Encoding, SignatureFormat};
///
/// // Sotion, GitHub, sota.io: `sha256=<hex>`.
/// let sotion = SignatureFormat::single("sha256=", Encoding::Hex);
/// // Standard Webhooks: `v1,<base64> v1,<base64>` (several during rotation).
/// let standard = SignatureFormat::list(' ', "v1", ',', Encoding::Base64);
/// // Stripe: `t=<unix>,v1=<hex>,v1=<hex>`; the `t` entry is read as the timestamp.
/// let stripe = SignatureFormat::list(',', "v1", '=', Encoding::Hex);
/// # let _ = (sotion, standard, stripe);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureFormat {
    /// Exactly one `<prefix><digest>`; the prefix is case-sensitive.
    Single {
        /// The text before the digest (`sha256=`, `v0=`, or empty).
        prefix: Cow<'static, str>,
        /// How the digest is written.
        encoding: Encoding,
    },
    /// Entries separated by `separator`, each `<tag><tag_separator><value>`. Entries whose tag
    /// is `tag` are signatures (any may match); other entries are ignored, or read by a
    /// [`Source::SignatureTag`](super::Source::SignatureTag).
    List {
        /// Between entries (`' '`, `','`).
        separator: char,
        /// The tag of signature entries (`v1`).
        tag: Cow<'static, str>,
        /// Between a tag and its value (`','`, `'='`).
        tag_separator: char,
        /// How each digest is written.
        encoding: Encoding,
    },
}

impl SignatureFormat {
    /// One `<prefix><digest>` value.
    #[must_use]
    pub fn single(prefix: impl Into<Cow<'static, str>>, encoding: Encoding) -> Self {
        Self::Single {
            prefix: prefix.into(),
            encoding,
        }
    }

    /// A list of tagged entries (see [`SignatureFormat::List`]).
    #[must_use]
    pub fn list(
        separator: char,
        tag: impl Into<Cow<'static, str>>,
        tag_separator: char,
        encoding: Encoding,
    ) -> Self {
        Self::List {
            separator,
            tag: tag.into(),
            tag_separator,
            encoding,
        }
    }

    /// Reads the signatures a header value carries into `candidates` (built in place by the
    /// caller: no copies of the digests on the way out).
    pub(crate) fn parse_into(
        &self,
        value: &[u8],
        length: SignatureLength,
        candidates: &mut Candidates,
    ) -> Result<(), Rejection> {
        match self {
            Self::Single { prefix, encoding } => {
                let text = value.strip_prefix(prefix.as_bytes()).ok_or(MALFORMED)?;
                candidates.push(*encoding, length, text);
            }
            Self::List {
                separator,
                tag,
                tag_separator,
                encoding,
            } => {
                let value = std::str::from_utf8(value).map_err(|_| MALFORMED)?;
                // Like the reference libraries, an entry that does not decode is skipped: any
                // other may still match. At most `MAX_SIGNATURES` entries are examined.
                let signatures = entries(value, *separator, *tag_separator)
                    .filter(|(entry_tag, _)| entry_tag == tag)
                    .take(MAX_SIGNATURES);
                for (_, text) in signatures {
                    candidates.push(*encoding, length, text.as_bytes());
                }
            }
        }
        if candidates.is_empty() {
            return Err(MALFORMED);
        }
        Ok(())
    }

    #[cfg(test)]
    fn parse(&self, value: &[u8]) -> Result<Candidates, Rejection> {
        let mut candidates = Candidates::default();
        self.parse_into(value, SignatureLength::Exactly(DIGEST_LEN), &mut candidates)
            .map(|()| candidates)
    }

    /// The shape of a header value in this format, for a refusal's reason:
    /// `` `sha256=<64 hex digits>` ``, or a list of such entries.
    pub(crate) fn expected(&self) -> String {
        let digest = |encoding: &Encoding| match encoding {
            Encoding::Hex => "<64 hex digits>",
            Encoding::Base64 => "<base64 of 32 bytes>",
        };
        match self {
            Self::Single { prefix, encoding } => format!("`{prefix}{}`", digest(encoding)),
            Self::List {
                separator,
                tag,
                tag_separator,
                encoding,
            } => format!(
                "a list of `{tag}{tag_separator}{}` entries separated by `{separator}`",
                digest(encoding)
            ),
        }
    }

    /// The value of the entry tagged `wanted`, for a list format (exactly one such entry).
    pub(crate) fn tagged<'v>(&self, value: &'v str, wanted: &str) -> Option<&'v str> {
        let Self::List {
            separator,
            tag_separator,
            ..
        } = self
        else {
            return None;
        };
        let mut found = entries(value, *separator, *tag_separator)
            .filter(|(tag, _)| *tag == wanted)
            .map(|(_, text)| text);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    /// Writes a header value carrying `digest` (a signature of any length), preceded by
    /// `extra` tagged entries (Stripe's `t=`), for a list format.
    pub(crate) fn format(&self, digest: &[u8], extra: &[(&str, &str)]) -> String {
        match self {
            Self::Single { prefix, encoding } => format!("{prefix}{}", encoding.encode(digest)),
            Self::List {
                separator,
                tag,
                tag_separator,
                encoding,
            } => {
                let mut out = String::new();
                for (extra_tag, value) in extra {
                    out.push_str(extra_tag);
                    out.push(*tag_separator);
                    out.push_str(value);
                    out.push(*separator);
                }
                out.push_str(tag);
                out.push(*tag_separator);
                out.push_str(&encoding.encode(digest));
                out
            }
        }
    }
}

const MALFORMED: Rejection = Rejection::new(
    RejectionKind::MalformedSignature,
    "the signature header is not in the sender's format",
);

fn entries(
    value: &str,
    separator: char,
    tag_separator: char,
) -> impl Iterator<Item = (&str, &str)> {
    value
        .split(separator)
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(move |entry| entry.split_once(tag_separator).unwrap_or((entry, "")))
}

/// The signatures one request carries: at most [`MAX_SIGNATURES`]. HMAC-SHA256 digests (the
/// common case) are kept as arrays, the first `INLINE_SIGNATURES` inline (no allocation), the
/// rare others in one boxed array; signatures of other lengths (HMAC-SHA1, Ed25519, ECDSA) each
/// in a vector of their own.
#[derive(Debug, Clone, Default)]
pub(crate) struct Candidates {
    inline: [[u8; DIGEST_LEN]; INLINE_SIGNATURES],
    more: Option<Box<[[u8; DIGEST_LEN]; MAX_SIGNATURES - INLINE_SIGNATURES]>>,
    len: usize,
    others: Vec<Vec<u8>>,
    /// Every signature examined, decodable or not (bounds the work for other lengths).
    examined: usize,
}

impl Candidates {
    /// Decodes one more signature of the expected length.
    fn push(&mut self, encoding: Encoding, length: SignatureLength, text: &[u8]) {
        if length == SignatureLength::Exactly(DIGEST_LEN) {
            self.push_decoded(encoding, text);
            return;
        }
        self.examined += 1;
        if self.examined > MAX_SIGNATURES {
            return;
        }
        if let Some(signature) = encoding.decode(text).filter(|s| length.allows(s.len())) {
            self.others.push(signature);
        }
    }

    /// The signatures that are not HMAC-SHA256 digests.
    pub(crate) fn others(&self) -> &[Vec<u8>] {
        &self.others
    }

    /// Decodes one more signature straight into its slot; one that does not decode, or one
    /// past [`MAX_SIGNATURES`], is not kept.
    fn push_decoded(&mut self, encoding: Encoding, text: &[u8]) {
        let slot = match self.len.checked_sub(INLINE_SIGNATURES) {
            None => self.inline.get_mut(self.len),
            Some(index) => self
                .more
                .get_or_insert_with(|| {
                    Box::new([[0; DIGEST_LEN]; MAX_SIGNATURES - INLINE_SIGNATURES])
                })
                .get_mut(index),
        };
        if slot.is_some_and(|slot| encoding.decode_into(text, slot)) {
            self.len += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0 && self.others.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8; DIGEST_LEN]> {
        let more = self.more.as_deref().map_or(&[][..], |more| &more[..]);
        self.inline.iter().chain(more).take(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(format: &SignatureFormat, value: &str) -> Result<usize, RejectionKind> {
        format
            .parse(value.as_bytes())
            .map(|c| c.iter().count())
            .map_err(|r| r.kind())
    }

    const B64: &str = "tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    const HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn reads_a_list_of_base64_signatures_and_ignores_other_versions() {
        let standard = SignatureFormat::list(' ', "v1", ',', Encoding::Base64);
        assert_eq!(count(&standard, &format!("v1,{B64}")), Ok(1));
        assert_eq!(count(&standard, &format!("v1,{B64} v1,{B64}")), Ok(2));
        assert_eq!(
            count(&standard, &format!("v1a,xyz v2,abc  v1,{B64}")),
            Ok(1)
        );
        // No entry that decodes: nothing to compare, the header is malformed.
        let malformed = Err(RejectionKind::MalformedSignature);
        assert_eq!(count(&standard, "v1,"), malformed);
        assert_eq!(count(&standard, "v2,abc"), malformed);
        assert_eq!(count(&standard, &format!("v1,{}", &B64[..40])), malformed);
        assert_eq!(count(&standard, &format!("v1,{B64}AAAA")), malformed);
        assert_eq!(count(&standard, "v1,garbage v1,!!"), malformed);
        assert_eq!(count(&standard, ""), malformed);
    }

    #[test]
    fn skips_signature_entries_that_do_not_decode() {
        // The reference libraries skip them; refusing the header would refuse a valid delivery
        // (this used to answer `malformed_signature`).
        let standard = SignatureFormat::list(' ', "v1", ',', Encoding::Base64);
        assert_eq!(count(&standard, &format!("v1, v1,{B64}")), Ok(1));
        assert_eq!(count(&standard, &format!("v1,garbage v1,{B64} v1,")), Ok(1));
        let stripe = SignatureFormat::list(',', "v1", '=', Encoding::Hex);
        assert_eq!(count(&stripe, &format!("t=1,v1=zz,v1={HEX}")), Ok(1));
    }

    #[test]
    fn examines_at_most_max_signatures_entries_and_ignores_the_rest() {
        let standard = SignatureFormat::list(' ', "v1", ',', Encoding::Base64);
        // More than the old limit of four: all kept (the extra ones on the heap).
        let many = vec![format!("v1,{B64}"); MAX_SIGNATURES].join(" ");
        assert_eq!(count(&standard, &many), Ok(MAX_SIGNATURES));
        // Past the bound: ignored, not refused.
        let more = vec![format!("v1,{B64}"); MAX_SIGNATURES + 3].join(" ");
        assert_eq!(count(&standard, &more), Ok(MAX_SIGNATURES));
        // Undecodable entries count towards the bound: a valid one after it is not examined.
        let garbage = vec!["v1,x"; MAX_SIGNATURES].join(" ");
        assert_eq!(
            count(&standard, &format!("{garbage} v1,{B64}")),
            Err(RejectionKind::MalformedSignature)
        );
        let mixed = format!("{} v1,{B64}", vec!["v1,x"; MAX_SIGNATURES - 1].join(" "));
        assert_eq!(count(&standard, &mixed), Ok(1));
        // Entries with other tags cost nothing towards it.
        let others = format!("{} v1,{B64}", vec!["v2,x"; 100].join(" "));
        assert_eq!(count(&standard, &others), Ok(1));
    }

    #[test]
    fn reads_stripe_style_key_value_lists_and_their_timestamp() {
        let stripe = SignatureFormat::list(',', "v1", '=', Encoding::Hex);
        let value = format!("t=1492774577,v1={HEX},v0=6ffbb59b2300aae63f27240606,v1={HEX}");
        assert_eq!(count(&stripe, &value), Ok(2));
        assert_eq!(stripe.tagged(&value, "t"), Some("1492774577"));
        assert_eq!(
            stripe.tagged("t=1,t=2,v1=x", "t"),
            None,
            "a repeated tag is ambiguous"
        );
        assert_eq!(
            count(&stripe, "t=1492774577"),
            Err(RejectionKind::MalformedSignature)
        );
    }

    #[test]
    fn reads_one_prefixed_hex_digest_in_either_case_and_exactly_64_digits() {
        let sotion = SignatureFormat::single("sha256=", Encoding::Hex);
        let lower = sotion.parse(format!("sha256={HEX}").as_bytes()).unwrap();
        let upper = sotion
            .parse(format!("sha256={}", HEX.to_uppercase()).as_bytes())
            .unwrap();
        assert_eq!(
            lower.iter().collect::<Vec<_>>(),
            upper.iter().collect::<Vec<_>>()
        );
        let malformed = Err(RejectionKind::MalformedSignature);
        for bad in [
            String::new(),
            "sha256=".to_owned(),
            HEX.to_owned(),
            format!("SHA256={HEX}"),
            format!("sha256= {HEX}"),
            format!("sha256={}", &HEX[..63]),
            format!("sha256={HEX}0"),
            format!("sha256={HEX}00"), // the decoder alone would ignore trailing digits
            format!("sha256={}zz", &HEX[..62]),
        ] {
            assert_eq!(count(&sotion, &bad), malformed, "{bad:?}");
        }
    }

    #[test]
    fn formats_what_it_parses() {
        let digest = [7_u8; DIGEST_LEN];
        for format in [
            SignatureFormat::single("sha256=", Encoding::Hex),
            SignatureFormat::single("", Encoding::Base64),
            SignatureFormat::list(' ', "v1", ',', Encoding::Base64),
            SignatureFormat::list(',', "v1", '=', Encoding::Hex),
        ] {
            let value = format.format(&digest, &[("t", "12")]);
            let parsed = format.parse(value.as_bytes()).unwrap();
            assert_eq!(parsed.iter().collect::<Vec<_>>(), vec![&digest], "{value}");
        }
    }
}
