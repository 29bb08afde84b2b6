//! Sample deliveries for any preset, signed as the sender signs them (feature `testing`):
//! what the `tower-webhook sign` and `send` commands and the `send` example build. Reached as
//! [`testing::Sample`](crate::testing::Sample).

use std::collections::HashMap;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sha2::Digest as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ConfigError;
use crate::scheme::{Scheme, Source};

/// The body timestamp of a sample named by its id whose key the receiver derives from the
/// body: fixed, so that sending the same id again sends the same event (a duplicate).
const FIXED_STAMP: &str = "2026-01-01T00:00:00Z";

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// A delivery to sign as a sender would, for any preset: a sample body in the sender's own
/// shape (Sotion's envelope, a Stripe event, a GitHub payload, a Twilio form, ...) or a body of
/// your own, signed with the headers the scheme reads. For tests, local development and the
/// `tower-webhook sign` / `send` commands.
///
/// ```
/// use tower_webhook::{testing::Sample, verify, Scheme, Secrets};
///
/// let scheme = Scheme::stripe();
/// let signed = Sample::new("invoice.paid")
///     .with_id("evt_1")
///     .sign(&scheme, "whsec_test", "http://127.0.0.1:3000/webhooks")?;
/// assert_eq!(signed.id, "evt_1");
///
/// let secrets = Secrets::new(scheme.secret("whsec_test")?);
/// let now = std::time::SystemTime::now();
/// let meta = verify::verify(&scheme, &secrets, &signed.headers, &signed.body, now)?;
/// assert_eq!(meta.event(), Some("invoice.paid"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sample {
    event: String,
    action: Option<String>,
    id: Option<String>,
    data: Option<Value>,
    body: Option<Bytes>,
    form: bool,
    at: Option<OffsetDateTime>,
}

/// A signed [`Sample`]: the body and every header to send with it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SignedSample {
    /// The event id as the receiver will report it ([`WebhookMeta::id`](crate::WebhookMeta::id)):
    /// the id given or made up, or, for a sender that sends none, the hex SHA-256 of the body.
    pub id: String,
    /// The event type signed.
    pub event: String,
    /// `Content-Type`, the signature headers the scheme reads (signature, timestamp, id,
    /// event) and its delivery-attempt header with a random id (Sotion's
    /// `X-Webhook-Delivery`).
    pub headers: HeaderMap,
    /// The exact bytes signed.
    pub body: Bytes,
}

/// Why a [`Sample`] could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// The signing key is not one the scheme reads (for an asymmetric scheme: the private
    /// key, not the public one).
    #[error("the signing key: {0}")]
    Key(#[source] ConfigError),
    /// An action was given for a scheme whose deliveries carry none (GitHub's do).
    #[error("the {scheme} scheme names no action (GitHub does: issues with action opened)")]
    NoAction {
        /// The scheme's name.
        scheme: String,
    },
    /// The scheme could not sign this delivery (an id or event that cannot be a header
    /// value).
    #[error("cannot sign this delivery: {0}")]
    Sign(#[source] ConfigError),
}

impl Sample {
    /// A sample of event type `event` (`member.created`, `invoice.paid`, `push`), with a random
    /// id, the sender's sample data, signed now.
    #[must_use]
    pub fn new(event: impl Into<String>) -> Self {
        Self {
            event: event.into(),
            action: None,
            id: None,
            data: None,
            body: None,
            form: false,
            at: None,
        }
    }

    /// GitHub's body `action` (`issues` with action `opened`); any other scheme refuses it
    /// when signing ([`SampleError::NoAction`]).
    #[must_use]
    pub fn with_action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// The event id (default: a random UUID). Sending one id twice sends the same event: for
    /// a sender whose events the receiver tells apart by their body, the sample's body
    /// timestamp is then fixed.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The event's data in the sample body (for Stripe and Square its `data.object`) instead
    /// of the sender's sample data.
    #[must_use]
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Signs `body`, exactly these bytes, instead of a sample body (a captured delivery, a
    /// file): sent as `application/json`, or as a form when it starts with `payload=` (or,
    /// with [`form`](Self::form), encoded as one). A scheme that reads the id or the event
    /// type from the body reads them from it.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sends the JSON (the sample's, or [`with_body`](Self::with_body)'s) as a form whose
    /// `payload` parameter holds it, as GitHub does with the webhook's content type set to
    /// `form`, and Slack's interactivity. Twilio's sample is a form already, Graph's and
    /// Linear's are JSON whatever this says.
    #[must_use]
    pub fn form(mut self) -> Self {
        self.form = true;
        self
    }

    /// Signs at `at` instead of now (the signed timestamp of a timestamped scheme, and the
    /// sample body's time).
    #[must_use]
    pub fn at(mut self, at: OffsetDateTime) -> Self {
        self.at = Some(at);
        self
    }

    /// Signs the sample for `scheme` with `signing_key` (the shared secret's text; for
    /// Discord, Standard Webhooks `v1a` and SendGrid, the private key's), for a request to
    /// `url` (the URL a URL-signing scheme signs: Square, Twilio).
    ///
    /// # Errors
    /// [`SampleError`] when the key is not one the scheme signs with, an action is given to a
    /// scheme without actions, or the id or event cannot be a header value.
    pub fn sign(
        &self,
        scheme: &Scheme,
        signing_key: &str,
        url: &str,
    ) -> Result<SignedSample, SampleError> {
        let key = scheme.signing_key(signing_key).map_err(SampleError::Key)?;
        let name = scheme.name();
        if self.action.is_some() && name != "github" {
            return Err(SampleError::NoAction {
                scheme: name.to_owned(),
            });
        }
        let now = self.at.unwrap_or_else(OffsetDateTime::now_utc);
        let given_id = self.id.clone().unwrap_or_else(random_uuid);
        let given_id = given_id.as_str();
        let (body, content_type) = if let Some(body) = &self.body {
            match (self.form, body.starts_with(b"payload=")) {
                // Form-encoded already: sent as it is.
                (_, true) => (body.clone(), FORM),
                (true, false) => (Bytes::from(form_payload(body)), FORM),
                (false, false) => (body.clone(), JSON),
            }
        } else {
            let (text, content_type) = self.sample_body(scheme, signing_key, given_id, now);
            (Bytes::from(text), content_type)
        };
        // A scheme that reads the id or event from the body signs the body's.
        let (body_id, body_event) = body_facts(scheme, &json_of(&body));
        let id = match (&self.body, body_id) {
            (Some(_), Some(body_id)) => body_id,
            _ => given_id.to_owned(),
        };
        let event = match (&self.body, body_event) {
            (Some(_), Some(body_event)) => body_event,
            _ => self.event.clone(),
        };
        let mut headers = scheme
            .sign_with_url(
                &key,
                url,
                &crate::scheme::Outgoing {
                    id: &id,
                    event: &event,
                    timestamp: now.unix_timestamp(),
                    body: &body,
                },
            )
            .map_err(SampleError::Sign)?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(name) = &scheme.delivery {
            if let Ok(value) = HeaderValue::from_str(&random_uuid()) {
                headers.insert(name.clone(), value);
            }
        }
        let id = if scheme.id == Source::BodyDigest {
            faster_hex::hex_string(&sha2::Sha256::digest(&body))
        } else {
            id
        };
        Ok(SignedSample {
            id,
            event,
            headers,
            body,
        })
    }

    /// The sample body in the sender's shape, and its content type.
    fn sample_body(
        &self,
        scheme: &Scheme,
        secret_text: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> (String, &'static str) {
        let stamp = now.format(&Rfc3339).unwrap_or_default();
        // A sender whose events the receiver tells apart by their body: an event named by its
        // id keeps its bytes from one sending to the next.
        let body_keyed = scheme.id == Source::BodyDigest || !scheme.signs_id_and_scope();
        let body_stamp = if body_keyed && self.id.is_some() {
            FIXED_STAMP
        } else {
            &stamp
        };
        let event = self.event.as_str();
        match scheme.name() {
            // Twilio posts a form; Graph's notifications carry the subscription's clientState.
            "twilio" => (
                format!(
                    "MessageSid={id}&AccountSid=AC_demo&From=%2B15551234567&To=%2B15557654321&Body=Hello+from+Zo%C3%AB&SmsStatus={event}"
                ),
                FORM,
            ),
            "microsoft-graph" => (
                json!({ "value": [{ "clientState": secret_text, "id": id, "changeType": event, "resource": "users/demo" }] })
                    .to_string(),
                JSON,
            ),
            // Linear signs the time it sends at, in milliseconds, in the body.
            "linear" => (
                json!({ "action": "create", "type": event, "createdAt": body_stamp, "organizationId": "org_demo", "webhookTimestamp": now.unix_timestamp() * 1000, "data": { "id": id } })
                    .to_string(),
                JSON,
            ),
            name => {
                let json = self.sample_json(name, id, body_stamp).to_string();
                if self.form {
                    (form_payload(json.as_bytes()), FORM)
                } else {
                    (json, JSON)
                }
            }
        }
    }

    /// A sample JSON body in the shape of the sender named `scheme`; the data given, if any,
    /// is its data (for Stripe and Square, its `data.object`).
    fn sample_json(&self, scheme: &str, id: &str, now: &str) -> Value {
        let event = self.event.as_str();
        let given = self.data.is_some();
        let member = self.data.clone().unwrap_or_else(|| {
            json!({ "id": "member_demo", "email": "ada@example.com", "name": "Ada", "status": "active" })
        });
        match scheme {
            "sotion" => {
                let data = if given {
                    member
                } else if event.starts_with("access-group.member.") {
                    json!({ "accessGroupId": "group_demo", "memberId": "member_demo" })
                } else if event.starts_with("access-group.") {
                    json!({ "id": "group_demo", "name": "Pro", "description": "Paying members" })
                } else {
                    member
                };
                json!({ "id": id, "type": event, "timestamp": now, "version": "1", "siteId": "site_demo", "data": data })
            }
            "sota" => {
                let data = if given {
                    member
                } else {
                    json!({ "url": "https://demo.sota.io", "status": "running" })
                };
                json!({ "event": event, "project_id": "project_demo", "deployment_id": id, "timestamp": now, "data": data })
            }
            "stripe" => {
                json!({ "id": id, "object": "event", "type": event, "created": 0, "data": { "object": member } })
            }
            "github" => {
                // GitHub's own bodies carry no event id (it is the unsigned `X-GitHub-Delivery`,
                // and deliveries are deduplicated by their body): the sample carries it, so that
                // two ids are two events.
                let mut body = json!({ "sample_id": id, "sender": { "login": "octocat" } });
                if let Some(action) = &self.action {
                    body["action"] = action.as_str().into();
                }
                if given {
                    body["data"] = member;
                }
                body
            }
            // The topic is a header; the sample carries the id, so two ids are two events.
            "shopify" | "woocommerce" => {
                json!({ "id": id, "created_at": now, "customer": member })
            }
            // Discord's interaction types are numbers: 2 is an application command.
            "discord" => {
                json!({ "type": 2, "id": id, "application_id": "demo", "token": "demo", "data": { "name": event, "member": member } })
            }
            "sendgrid" => {
                json!([{ "event": event, "sg_event_id": id, "email": "ada@example.com", "timestamp": 0 }])
            }
            "square" => {
                json!({ "merchant_id": "merchant_demo", "type": event, "event_id": id, "created_at": now, "data": { "object": member } })
            }
            "zoom" => {
                json!({ "event": event, "event_ts": now, "payload": { "account_id": "account_demo", "object": member, "nonce": id } })
            }
            "meta" => {
                json!({ "object": event, "entry": [{ "id": id, "time": now, "changes": [{ "field": "messages", "value": member }] }] })
            }
            "paddle" => {
                json!({ "event_id": id, "event_type": event, "occurred_at": now, "notification_id": "ntf_demo", "data": member })
            }
            "twitch" => {
                json!({ "subscription": { "type": event, "version": "1", "status": "enabled" }, "event": member })
            }
            _ => json!({ "type": event, "id": id, "timestamp": now, "data": member }),
        }
    }
}

/// A UUIDv4-shaped random id, as Sotion's event ids are.
#[must_use]
pub fn random_uuid() -> String {
    let bits = rand::random::<u128>();
    // Version 4 in bits 76..80, RFC 4122 variant in bits 62..64.
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `payload=<json>`, form-encoded as GitHub's sender encodes it: letters, digits and `*-._`
/// as they are, a space as `+`, every other byte as `%XX`.
pub(crate) fn form_payload(json: &[u8]) -> String {
    let mut form = String::from("payload=");
    for byte in json.iter().copied() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                form.push(char::from(byte));
            }
            b' ' => form.push('+'),
            other => {
                form.push('%');
                form.push_str(&faster_hex::hex_string(&[other]).to_ascii_uppercase());
            }
        }
    }
    form
}

/// The event id and type `scheme` reads from the JSON body `json`, for a scheme that reads
/// them there (each field left raw, so that a body `serde_json::Value` cannot hold elsewhere,
/// `1e400` or deep nesting, still names its id and type).
pub(crate) fn body_facts(scheme: &Scheme, json: &[u8]) -> (Option<String>, Option<String>) {
    let fields: HashMap<String, &RawValue> = serde_json::from_slice(json).unwrap_or_default();
    let field = |source: Option<&Source>| match source {
        Some(Source::BodyField(name)) => fields
            .get(name.as_ref())
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok()),
        _ => None,
    };
    (field(Some(&scheme.id)), field(scheme.event.as_ref()))
}

/// The JSON a body carries: itself, or the `payload` parameter of a form.
fn json_of(body: &Bytes) -> Bytes {
    body.strip_prefix(b"payload=")
        .map_or_else(|| body.clone(), |encoded| Bytes::from(form_decode(encoded)))
}

/// Percent-decodes a form value (`+` is a space).
fn form_decode(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut bytes = encoded.iter().copied();
    while let Some(byte) = bytes.next() {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let pair = [bytes.next().unwrap_or(b'0'), bytes.next().unwrap_or(b'0')];
                let mut decoded = [0u8];
                if faster_hex::hex_decode(&pair, &mut decoded).is_ok() {
                    out.push(decoded[0]);
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
    use crate::{verify, Secrets};

    const DEV_SECRET: &str = "whsec_ZGV2X29ubHlfZG9fbm90X3VzZV9pbl9wcm9kdWN0aW9u";

    #[test]
    fn every_hmac_preset_s_sample_verifies_with_its_own_scheme() {
        for name in Scheme::PRESETS {
            if matches!(name, "discord" | "standard-v1a" | "sendgrid") {
                continue; // asymmetric: a private key signs (tested in tests/)
            }
            let scheme = Scheme::preset(name).unwrap_or_else(Scheme::sotion);
            if !scheme.algorithm().is_built() {
                continue;
            }
            let url = "http://127.0.0.1:3000/webhooks";
            let signed = Sample::new("thing.happened")
                .with_id("evt_1")
                .sign(&scheme, DEV_SECRET, url);
            let Ok(signed) = signed else {
                panic!("{name}: {signed:?}");
            };
            let secrets = Secrets::new(scheme.secret(DEV_SECRET).unwrap_or_else(|e| panic!("{e}")));
            let now = std::time::SystemTime::now();
            let verified =
                verify::verify_with_url(&scheme, &secrets, url, &signed.headers, &signed.body, now);
            let meta = verified.unwrap_or_else(|e| panic!("{name}: {e} {:?}", e.reason()));
            assert_eq!(meta.id(), signed.id, "{name}");
        }
    }

    #[test]
    fn a_named_body_keyed_sample_is_the_same_bytes_each_time() {
        let scheme = Scheme::slack();
        let sign = || {
            Sample::new("x")
                .with_id("evt_1")
                .sign(&scheme, "secret", "http://h/webhooks")
                .map(|signed| signed.body)
                .ok()
        };
        assert_eq!(sign(), sign());
    }

    #[test]
    fn a_body_given_signs_its_own_id_and_event() {
        let body = br#"{"id":"evt_9","type":"member.deleted","timestamp":"2026-03-28T12:00:00Z","version":"1","siteId":"s","data":{}}"#;
        let signed = Sample::new("ignored")
            .with_id("ignored")
            .with_body(&body[..])
            .sign(&Scheme::sotion(), "whsec_x", "http://h/webhooks")
            .ok();
        let signed = signed.map(|s| (s.id, s.event, s.headers["x-webhook-id"].clone()));
        assert_eq!(
            signed,
            Some((
                "evt_9".to_owned(),
                "member.deleted".to_owned(),
                HeaderValue::from_static("evt_9")
            ))
        );
    }

    #[test]
    fn an_action_is_refused_where_the_sender_has_none() {
        let refused =
            Sample::new("x")
                .with_action("opened")
                .sign(&Scheme::stripe(), "whsec_x", "http://h/");
        assert!(matches!(refused, Err(SampleError::NoAction { .. })));
    }

    #[test]
    fn a_body_given_is_form_encoded_when_asked_and_still_names_its_id() {
        let signed = Sample::new("push")
            .with_body(&br#"{"id":"evt_3","type":"x"}"#[..])
            .form()
            .sign(&Scheme::sotion(), "whsec_x", "http://h/webhooks")
            .ok();
        let signed = signed.map(|s| (s.id, s.headers[CONTENT_TYPE].clone(), s.body));
        assert_eq!(
            signed,
            Some((
                "evt_3".to_owned(),
                HeaderValue::from_static(FORM),
                Bytes::from_static(b"payload=%7B%22id%22%3A%22evt_3%22%2C%22type%22%3A%22x%22%7D")
            ))
        );
    }

    #[test]
    fn form_payloads_decode_back() {
        let json = br#"{"a":"b c/%"}"#;
        let form = form_payload(json);
        assert_eq!(json_of(&Bytes::from(form)), Bytes::from_static(&json[..]));
    }
}
