//! Signing as a sender would, for tests and local development: [`Scheme::sign`] and
//! [`Outgoing`].

use http::header::{HeaderMap, HeaderName, HeaderValue};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::source::{Part, Source, TimestampFormat};
use super::spec::{Rule, Scheme};
use crate::error::ConfigError;
use crate::secret::Secret;

impl Scheme {
    /// Signs an outgoing delivery as this sender would, for tests and local development:
    /// the headers to send with `message.body` (signature, and the timestamp, id and event
    /// headers the scheme reads). `Content-Type` is the caller's.
    ///
    /// For an asymmetric scheme (Discord, Standard Webhooks `v1a`, SendGrid) `secret` must be
    /// the private key ([`signing_key`](Self::signing_key)).
    ///
    /// # Errors
    /// [`ConfigError::InvalidHeaderValue`] when the id or event cannot be a header value;
    /// [`ConfigError::CannotSign`] with a public key; [`ConfigError::PublicUrlRequired`] for a
    /// scheme that signs the URL (use [`sign_with_url`](Self::sign_with_url)).
    pub fn sign(&self, secret: &Secret, message: &Outgoing<'_>) -> Result<HeaderMap, ConfigError> {
        self.sign_inner(secret, None, message)
    }

    /// [`sign`](Self::sign) for a scheme that signs the URL it calls (Square, Twilio): `url`
    /// is that URL, as the receiver's public URL and the request's path and query make it
    /// (`https://example.com/webhooks`). For Twilio the body is a form, whose parameters are
    /// signed; a URL with `bodySHA256=<hex SHA-256 of the body>` signs a JSON body. Other
    /// schemes ignore `url`.
    ///
    /// # Errors
    /// As [`sign`](Self::sign).
    pub fn sign_with_url(
        &self,
        secret: &Secret,
        url: &str,
        message: &Outgoing<'_>,
    ) -> Result<HeaderMap, ConfigError> {
        self.sign_inner(secret, Some(url), message)
    }

    fn sign_inner(
        &self,
        secret: &Secret,
        url: Option<&str>,
        message: &Outgoing<'_>,
    ) -> Result<HeaderMap, ConfigError> {
        let mut headers = HeaderMap::new();
        let timestamp = match self.timestamp {
            Some((_, TimestampFormat::UnixSeconds)) => message.timestamp.to_string(),
            Some((_, TimestampFormat::UnixMillis)) => {
                message.timestamp.saturating_mul(1000).to_string()
            }
            Some((Source::Header(_) | Source::SignatureTag(_), TimestampFormat::Rfc3339)) => {
                OffsetDateTime::from_unix_timestamp(message.timestamp)
                    .ok()
                    .and_then(|time| time.format(&Rfc3339).ok())
                    .unwrap_or_default()
            }
            _ => String::new(),
        };
        let url = match url {
            Some(url) => url,
            None if self.signs_url() => {
                return Err(ConfigError::PublicUrlRequired {
                    scheme: self.name.to_string(),
                })
            }
            None => "",
        };
        let mut mac_input = Vec::with_capacity(message.body.len() + 64);
        if self.rule == Rule::Twilio {
            let messages = super::twilio::messages(url, message.body)
                .map_err(|_| ConfigError::InvalidSignedUrl)?;
            mac_input = messages.into_iter().next().unwrap_or_default();
        } else {
            for part in &self.signed {
                match part {
                    Part::Literal(bytes) => mac_input.extend_from_slice(bytes),
                    Part::Id => mac_input.extend_from_slice(message.id.as_bytes()),
                    Part::Timestamp => mac_input.extend_from_slice(timestamp.as_bytes()),
                    Part::Url => mac_input.extend_from_slice(url.as_bytes()),
                    Part::Body => mac_input.extend_from_slice(message.body),
                }
            }
        }
        let signature = secret.signature(self.algorithm, &mac_input)?;
        let extra: Vec<(&str, &str)> = match &self.timestamp {
            Some((Source::SignatureTag(tag), _)) => vec![(tag.as_ref(), timestamp.as_str())],
            _ => Vec::new(),
        };
        let signature = self.format.format(&signature, &extra);
        // Microsoft Graph signs nothing: its token is in the body, the caller's to write.
        if self.rule != Rule::ClientState {
            insert(&mut headers, &self.signature_header, &signature)?;
        }
        if let Some((Source::Header(name), _)) = &self.timestamp {
            insert(&mut headers, name, &timestamp)?;
        }
        if let Source::Header(name) = &self.id {
            insert(&mut headers, name, message.id)?;
        }
        if let Some(Source::Header(name)) = &self.event {
            insert(&mut headers, name, message.event)?;
        }
        if let Some(envelope) = &self.envelope {
            insert(&mut headers, &envelope.id_header, message.id)?;
            insert(&mut headers, &envelope.event_header, message.event)?;
        }
        Ok(headers)
    }
}

fn insert(headers: &mut HeaderMap, name: &HeaderName, value: &str) -> Result<(), ConfigError> {
    let value = HeaderValue::from_str(value).map_err(|source| ConfigError::InvalidHeaderValue {
        name: name.clone(),
        source,
    })?;
    headers.insert(name.clone(), value);
    Ok(())
}

/// An outgoing delivery to [`Scheme::sign`].
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The event id (sent in the id header when the scheme reads one; for body-sourced ids,
    /// put the same id in the body).
    pub id: &'a str,
    /// The event type (sent in the event header when the scheme reads one).
    pub event: &'a str,
    /// The Unix time to sign, for timestamped schemes.
    pub timestamp: i64,
    /// The exact body bytes.
    pub body: &'a [u8],
}
