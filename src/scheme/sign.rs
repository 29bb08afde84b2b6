//! Signing as a sender would, for tests and local development: [`Scheme::sign`] and
//! [`Outgoing`].

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::format::DIGEST_LEN;
use super::source::{Part, Source, TimestampFormat};
use super::spec::Scheme;
use crate::error::ConfigError;
use crate::secret::Secret;

impl Scheme {
    /// Signs an outgoing delivery as this sender would, for tests and local development:
    /// the headers to send with `message.body` (signature, and the timestamp, id and event
    /// headers the scheme reads). `Content-Type` is the caller's.
    ///
    /// # Errors
    /// [`ConfigError::InvalidHeaderValue`] when the id or event cannot be a header value.
    pub fn sign(&self, secret: &Secret, message: &Outgoing<'_>) -> Result<HeaderMap, ConfigError> {
        let mut headers = HeaderMap::new();
        let timestamp = match self.timestamp {
            Some((_, TimestampFormat::UnixSeconds)) => message.timestamp.to_string(),
            _ => String::new(),
        };
        let mut mac_input = Vec::with_capacity(message.body.len() + 64);
        for part in &self.signed {
            match part {
                Part::Literal(bytes) => mac_input.extend_from_slice(bytes),
                Part::Id => mac_input.extend_from_slice(message.id.as_bytes()),
                Part::Timestamp => mac_input.extend_from_slice(timestamp.as_bytes()),
                Part::Body => mac_input.extend_from_slice(message.body),
            }
        }
        let digest: [u8; DIGEST_LEN] = crate::verify::digest(secret, &mac_input);
        let extra: Vec<(&str, &str)> = match &self.timestamp {
            Some((Source::SignatureTag(tag), _)) => vec![(tag.as_ref(), timestamp.as_str())],
            _ => Vec::new(),
        };
        let signature = self.format.format(&digest, &extra);
        insert(&mut headers, &self.signature_header, &signature)?;
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
