//! The presets: the senders this crate knows by name.

use std::borrow::Cow;

use http::header::HeaderName;

use super::body::{JSON_ONLY, JSON_OR_FORM};
use super::format::{Encoding, SignatureFormat};
use super::source::{Part, SecretFormat, Source, TimestampFormat};
use super::spec::{
    Scheme, SotionEnvelope, DEFAULT_TOLERANCE, SHA256_PREFIX, SOTION_DELIVERY, SOTION_EVENT,
    SOTION_ID, SOTION_SIGNATURE,
};

impl Scheme {
    /// Sotion: `X-Webhook-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body keyed with
    /// the whole secret string (`whsec_...`); the body is the JSON envelope, whose `id` (scoped
    /// by `siteId`) is the idempotency key; `X-Webhook-Id` and `X-Webhook-Event` must repeat its
    /// `id` and `type`; `X-Webhook-Delivery` names the attempt.
    ///
    /// Sotion signs no timestamp header; the envelope's `timestamp` is signed, so a maximum age
    /// can be enforced with [`with_tolerance`](Self::with_tolerance) (off by default: Sotion
    /// does not document its retry schedule, and an old retry would be refused).
    #[must_use]
    pub fn sotion() -> Self {
        Self {
            name: Cow::Borrowed("sotion"),
            signature_header: SOTION_SIGNATURE,
            format: SignatureFormat::single(SHA256_PREFIX, Encoding::Hex),
            signed: vec![Part::Body],
            id: Source::body_field("id"),
            event: Some(Source::body_field("type")),
            action: None,
            scope: Some(Source::body_field("siteId")),
            timestamp: Some((Source::body_field("timestamp"), TimestampFormat::Rfc3339)),
            tolerance: None,
            delivery: Some(SOTION_DELIVERY),
            envelope: Some(SotionEnvelope {
                id_header: SOTION_ID,
                event_header: SOTION_EVENT,
            }),
            secret_format: SecretFormat::Raw,
            bodies: JSON_ONLY,
        }
    }

    /// sota.io: `X-Sota-Signature: sha256=<hex>` over the body; the body is
    /// `{event, project_id, deployment_id, timestamp, data}`. It carries no event id, so the id
    /// is the SHA-256 of the signed body (a retry resends the same bytes), scoped by
    /// `project_id`.
    #[must_use]
    pub fn sota() -> Self {
        Self {
            name: Cow::Borrowed("sota"),
            signature_header: HeaderName::from_static("x-sota-signature"),
            format: SignatureFormat::single(SHA256_PREFIX, Encoding::Hex),
            signed: vec![Part::Body],
            id: Source::BodyDigest,
            event: Some(Source::body_field("event")),
            action: None,
            scope: Some(Source::body_field("project_id")),
            timestamp: Some((Source::body_field("timestamp"), TimestampFormat::Rfc3339)),
            tolerance: None,
            delivery: None,
            envelope: None,
            secret_format: SecretFormat::Raw,
            bodies: JSON_ONLY,
        }
    }

    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body; the event in
    /// `X-GitHub-Event`, the id in `X-GitHub-Delivery` (kept by redeliveries). GitHub signs
    /// neither header nor a timestamp: the event and id are as trustworthy as the transport.
    ///
    /// Since the id is unsigned, deliveries are deduplicated by the SHA-256 of the signed body
    /// and the event name instead (as with [`SchemeBuilder::with_unsigned_id_and_scope`](super::SchemeBuilder::with_unsigned_id_and_scope)): a
    /// redelivery (same body, same id) is a duplicate; a captured body replayed under any other
    /// `X-GitHub-Delivery` is a duplicate of itself, and never blocks or swallows the event
    /// that id belongs to. Replayed under another `X-GitHub-Event`, it reaches that event's
    /// handler once, and never completes the genuine event's key.
    /// [`WebhookMeta::id`](crate::WebhookMeta::id) still reports the header's id (for display
    /// only: a delivery without a usable `X-GitHub-Delivery` is handled all the same, its id
    /// then the hex SHA-256 of the body). Two genuinely different events with byte-identical
    /// bodies would count as one.
    ///
    /// Bodies are JSON (`application/json`) or, with the webhook's content type set to `form`
    /// (the REST API's default), `application/x-www-form-urlencoded` with the JSON in its
    /// `payload` parameter: both are verified over the bytes sent and read alike (the
    /// `action`, the extractors, the event router).
    #[must_use]
    pub fn github() -> Self {
        Self {
            name: Cow::Borrowed("github"),
            signature_header: HeaderName::from_static("x-hub-signature-256"),
            format: SignatureFormat::single(SHA256_PREFIX, Encoding::Hex),
            signed: vec![Part::Body],
            id: Source::header("x-github-delivery"),
            event: Some(Source::header("x-github-event")),
            action: Some(Source::body_field("action")),
            scope: None,
            timestamp: None,
            tolerance: None,
            delivery: None,
            envelope: None,
            secret_format: SecretFormat::Raw,
            bodies: JSON_OR_FORM,
        }
    }

    /// Standard Webhooks (Svix and others): `webhook-signature` holds space-separated
    /// `v1,<base64>` entries over `<webhook-id>.<webhook-timestamp>.<body>`; secrets are
    /// `whsec_<base64>`, decoded; the timestamp must be within 5 minutes either way; the event
    /// type is the body's `type`, when there is one.
    #[must_use]
    pub fn standard_webhooks() -> Self {
        Self {
            name: Cow::Borrowed("standard-webhooks"),
            signature_header: HeaderName::from_static("webhook-signature"),
            format: SignatureFormat::list(' ', "v1", ',', Encoding::Base64),
            signed: vec![
                Part::Id,
                Part::literal("."),
                Part::Timestamp,
                Part::literal("."),
                Part::Body,
            ],
            id: Source::header("webhook-id"),
            event: Some(Source::body_field("type")),
            action: None,
            scope: None,
            timestamp: Some((
                Source::header("webhook-timestamp"),
                TimestampFormat::UnixSeconds,
            )),
            tolerance: Some(DEFAULT_TOLERANCE),
            delivery: None,
            envelope: None,
            secret_format: SecretFormat::Base64 {
                prefix: Cow::Borrowed("whsec_"),
            },
            bodies: JSON_ONLY,
        }
    }

    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` over `<t>.<body>`, keyed
    /// with the whole `whsec_...` string; any `v1` may match; the timestamp must be within
    /// 300 s (Stripe's own libraries check only the past; a clock more than 5 minutes ahead is
    /// refused here too); the event id and type are the body's `id` and `type`.
    #[must_use]
    pub fn stripe() -> Self {
        Self {
            name: Cow::Borrowed("stripe"),
            signature_header: HeaderName::from_static("stripe-signature"),
            format: SignatureFormat::list(',', "v1", '=', Encoding::Hex),
            signed: vec![Part::Timestamp, Part::literal("."), Part::Body],
            id: Source::body_field("id"),
            event: Some(Source::body_field("type")),
            action: None,
            scope: None,
            timestamp: Some((Source::signature_tag("t"), TimestampFormat::UnixSeconds)),
            tolerance: Some(DEFAULT_TOLERANCE),
            delivery: None,
            envelope: None,
            secret_format: SecretFormat::Raw,
            bodies: JSON_ONLY,
        }
    }

    /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:<X-Slack-Request-Timestamp>:<body>`,
    /// within 5 minutes. Slack bodies carry no common id, so the id is the SHA-256 of the body.
    /// Bodies are JSON (the Events API) or forms: interactivity sends its JSON in a `payload`
    /// parameter, slash commands plain parameters (read as a JSON object of them). The event
    /// type is the JSON's `type` (`event_callback`, `block_actions`, ...), and none for a slash
    /// command (its `command` parameter names it).
    #[must_use]
    pub fn slack() -> Self {
        Self {
            name: Cow::Borrowed("slack"),
            signature_header: HeaderName::from_static("x-slack-signature"),
            format: SignatureFormat::single("v0=", Encoding::Hex),
            signed: vec![
                Part::literal("v0:"),
                Part::Timestamp,
                Part::literal(":"),
                Part::Body,
            ],
            id: Source::BodyDigest,
            event: Some(Source::body_field("type")),
            action: None,
            scope: None,
            timestamp: Some((
                Source::header("x-slack-request-timestamp"),
                TimestampFormat::UnixSeconds,
            )),
            tolerance: Some(DEFAULT_TOLERANCE),
            delivery: None,
            envelope: None,
            secret_format: SecretFormat::Raw,
            bodies: JSON_OR_FORM,
        }
    }

    /// The preset called `name`: `sotion`, `sota`, `github`, `standard` (or
    /// `standard-webhooks`), `stripe`, `slack`.
    #[must_use]
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "sotion" => Self::sotion(),
            "sota" => Self::sota(),
            "github" => Self::github(),
            "standard" | "standard-webhooks" => Self::standard_webhooks(),
            "stripe" => Self::stripe(),
            "slack" => Self::slack(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ConfigError;

    #[test]
    fn every_preset_is_a_description_the_builder_accepts() {
        for name in ["sotion", "sota", "github", "standard", "stripe", "slack"] {
            let preset = Scheme::preset(name).unwrap();
            let mut builder = Scheme::builder(
                preset.name.clone(),
                preset.signature_header.as_str(),
                preset.format.clone(),
            )
            .with_signed(preset.signed.clone())
            .with_id(preset.id.clone());
            if let Some(event) = preset.event.clone() {
                builder = builder.with_event(event);
            }
            if let Some(scope) = preset.scope.clone() {
                builder = builder.with_scope(scope);
            }
            if let Some((source, format)) = preset.timestamp.clone() {
                builder = builder.with_timestamp(source, format);
            }
            if let Some(tolerance) = preset.tolerance {
                builder = builder.with_tolerance(tolerance);
            }
            builder = builder
                .with_secret_format(preset.secret_format.clone())
                .with_body_forms(preset.bodies.clone());
            // GitHub's id is unsigned: its preset makes the same choice as this opt-in.
            assert_eq!(preset.signs_id_and_scope(), name != "github", "{name}");
            if !preset.signs_id_and_scope() {
                builder = builder.with_unsigned_id_and_scope();
            }
            assert!(builder.build().is_ok(), "{name}");
        }
        assert!(Scheme::preset("unknown").is_none());
    }

    #[test]
    fn standard_webhooks_secrets_are_decoded_and_bad_ones_refused() {
        let scheme = Scheme::standard_webhooks();
        assert!(scheme
            .secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
            .is_ok());
        assert!(scheme.secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_ok());
        assert!(matches!(
            scheme.secret("whsec_not base64!"),
            Err(ConfigError::InvalidSecretEncoding { .. })
        ));
        assert!(matches!(
            scheme.secret("whsec_"),
            Err(ConfigError::EmptySecret)
        ));
    }
}
