//! The presets: the senders this crate knows by name.

use std::borrow::Cow;
use std::time::Duration;

use http::header::HeaderName;

use super::algorithm::Algorithm;
use super::body::{JSON_ONLY, JSON_OR_FORM};
use super::format::{Encoding, SignatureFormat};
use super::handshake::Handshake;
use super::source::{Part, SecretFormat, Source, TimestampFormat, Tolerance};
use super::spec::{
    Rule, Scheme, SotionEnvelope, DEFAULT_TOLERANCE, SHA256_PREFIX, SOTION_DELIVERY, SOTION_EVENT,
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
            ..Self::defaults()
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
            ..Self::defaults()
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
            ..Self::defaults()
        }
    }

    /// Standard Webhooks (Svix and others): `webhook-signature` holds space-separated
    /// `v1,<base64>` entries over `<webhook-id>.<webhook-timestamp>.<body>`; secrets are
    /// `whsec_<base64>`, decoded; the timestamp must be within 5 minutes either way; the event
    /// type is the body's `type`, when there is one. Svix's own header names (`svix-id`,
    /// `svix-timestamp`, `svix-signature`, as Clerk and Resend send them) are read when the
    /// `webhook-*` ones are absent.
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
            aliases: svix_aliases(),
            ..Self::defaults()
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
            ..Self::defaults()
        }
    }

    /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:<X-Slack-Request-Timestamp>:<body>`,
    /// within 5 minutes. Slack bodies carry no common id, so the id is the SHA-256 of the body.
    /// Bodies are JSON (the Events API) or forms: interactivity sends its JSON in a `payload`
    /// parameter, slash commands plain parameters (read as a JSON object of them). The event
    /// type is the JSON's `type` (`event_callback`, `block_actions`, ...), and none for a slash
    /// command (its `command` parameter names it). The layer answers the Events API's
    /// `url_verification` handshake itself, once its signature verified.
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
            handshake: Some(Handshake::Slack),
            ..Self::defaults()
        }
    }

    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>`, the HMAC-SHA256 of the body keyed with the
    /// app's client secret (as is); the event in `X-Shopify-Topic` (`orders/create`), the id in
    /// `X-Shopify-Webhook-Id` and the shop in `X-Shopify-Shop-Domain`. None of these headers is
    /// signed, nor a timestamp: as for GitHub, deliveries are deduplicated by the SHA-256 of the
    /// body and the topic, and the header id is for display.
    #[must_use]
    pub fn shopify() -> Self {
        Self {
            name: Cow::Borrowed("shopify"),
            signature_header: HeaderName::from_static("x-shopify-hmac-sha256"),
            format: SignatureFormat::single("", Encoding::Base64),
            id: Source::header("x-shopify-webhook-id"),
            event: Some(Source::header("x-shopify-topic")),
            scope: Some(Source::header("x-shopify-shop-domain")),
            ..Self::defaults()
        }
    }

    /// WooCommerce: `X-WC-Webhook-Signature: <base64>`, the HMAC-SHA256 of the body keyed with
    /// the webhook's secret (as is); the event in `X-WC-Webhook-Topic` (`order.created`), the
    /// id in `X-WC-Webhook-Delivery-ID`, the shop in `X-WC-Webhook-Source`, none of them
    /// signed: deliveries are deduplicated by the SHA-256 of the body and the topic.
    #[must_use]
    pub fn woocommerce() -> Self {
        Self {
            name: Cow::Borrowed("woocommerce"),
            signature_header: HeaderName::from_static("x-wc-webhook-signature"),
            format: SignatureFormat::single("", Encoding::Base64),
            id: Source::header("x-wc-webhook-delivery-id"),
            event: Some(Source::header("x-wc-webhook-topic")),
            scope: Some(Source::header("x-wc-webhook-source")),
            ..Self::defaults()
        }
    }

    /// Discord (interactions and webhook events), feature `ed25519`: `X-Signature-Ed25519:
    /// <hex>`, an Ed25519 signature of `<X-Signature-Timestamp><body>`, verified with the
    /// application's public key (64 hex digits, from the developer portal); the timestamp must be
    /// within 5 minutes either way. The id is the SHA-256 of the body (interactions carry their
    /// `id`, webhook events none); the event is the body's `type` (`2` for a command). Discord
    /// checks an endpoint by sending deliberately invalid signatures, which are refused `401`,
    /// and a `PING`, which the layer answers itself once its signature verified (`{"type":1}`
    /// for interactions, `204` for webhook events).
    // Built without the feature too (so `preset` knows every name), but usable only with it:
    // its secret cannot be decoded otherwise (`ConfigError::FeatureDisabled`).
    #[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
    #[must_use]
    pub fn discord() -> Self {
        Self {
            name: Cow::Borrowed("discord"),
            signature_header: HeaderName::from_static("x-signature-ed25519"),
            format: SignatureFormat::single("", Encoding::Hex),
            signed: vec![Part::Timestamp, Part::Body],
            event: Some(Source::body_field("type")),
            timestamp: Some((
                Source::header("x-signature-timestamp"),
                TimestampFormat::UnixSeconds,
            )),
            tolerance: Some(DEFAULT_TOLERANCE),
            secret_format: SecretFormat::Hex,
            algorithm: Algorithm::Ed25519,
            handshake: Some(Handshake::Discord),
            integer_event: true,
            ..Self::defaults()
        }
    }

    /// Standard Webhooks with asymmetric signatures, feature `ed25519`: `webhook-signature`
    /// holds `v1a,<base64>` entries, Ed25519 signatures of
    /// `<webhook-id>.<webhook-timestamp>.<body>`, verified with the sender's public key, `whpk_<base64>` (its private key,
    /// `whsk_<base64>`, signs). Otherwise as [`standard_webhooks`](Self::standard_webhooks),
    /// `svix-*` header names included.
    // Built without the feature too (so `preset` knows every name), but usable only with it:
    // its secret cannot be decoded otherwise (`ConfigError::FeatureDisabled`).
    #[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
    #[must_use]
    pub fn standard_webhooks_v1a() -> Self {
        Self {
            name: Cow::Borrowed("standard-webhooks-v1a"),
            format: SignatureFormat::list(' ', "v1a", ',', Encoding::Base64),
            secret_format: SecretFormat::base64("whpk_"),
            algorithm: Algorithm::Ed25519,
            ..Self::standard_webhooks()
        }
    }

    /// Twilio, feature `sha1`: `X-Twilio-Signature: <base64>`, the HMAC-SHA1 keyed with the
    /// account's Auth Token (as is) of the URL Twilio called followed by the form body's
    /// parameters, sorted by name, each name followed by its value (a JSON body instead: the
    /// URL alone, which then carries the body's SHA-256 as `bodySHA256`). A request with
    /// `X-Twilio-Webhooks-Signature-Settings: ...,algorithm=HMAC_SHA256` is signed with
    /// HMAC-SHA256 keyed with a SharedKey instead. The layer needs the public URL Twilio calls
    /// ([`with_public_url`](crate::layer::WebhookLayerBuilder::with_public_url)); with and
    /// without its port are both tried, as Twilio's libraries do. No timestamp, no id: the id is
    /// the SHA-256 of the body (a retry resends the same parameters). Its forms are read as a
    /// JSON object of their parameters (`Verified<T>`, `Event<T>`).
    // Built without the feature too (so `preset` knows every name), but usable only with it:
    // its secret cannot be decoded otherwise (`ConfigError::FeatureDisabled`).
    #[cfg_attr(docsrs, doc(cfg(feature = "sha1")))]
    #[must_use]
    pub fn twilio() -> Self {
        Self {
            name: Cow::Borrowed("twilio"),
            signature_header: HeaderName::from_static("x-twilio-signature"),
            format: SignatureFormat::single("", Encoding::Base64),
            signed: vec![Part::Url, Part::Body],
            algorithm: Algorithm::HmacSha1,
            rule: Rule::Twilio,
            // Forms, read as a JSON object of their parameters; JSON with `bodySHA256`.
            bodies: JSON_OR_FORM,
            ..Self::defaults()
        }
    }

    /// SendGrid's Event Webhook, feature `p256`: `X-Twilio-Email-Event-Webhook-Signature:
    /// <base64>`, an ECDSA P-256 SHA-256 signature (DER) of
    /// `<X-Twilio-Email-Event-Webhook-Timestamp><body>`, verified with the public key SendGrid
    /// shows (base64, as is); the timestamp must be within 5 minutes either way. The body is an
    /// array of events: the id is its SHA-256, and there is no single event type.
    // Built without the feature too (so `preset` knows every name), but usable only with it:
    // its secret cannot be decoded otherwise (`ConfigError::FeatureDisabled`).
    #[cfg_attr(docsrs, doc(cfg(feature = "p256")))]
    #[must_use]
    pub fn sendgrid() -> Self {
        Self {
            name: Cow::Borrowed("sendgrid"),
            signature_header: HeaderName::from_static("x-twilio-email-event-webhook-signature"),
            format: SignatureFormat::single("", Encoding::Base64),
            signed: vec![Part::Timestamp, Part::Body],
            timestamp: Some((
                Source::header("x-twilio-email-event-webhook-timestamp"),
                TimestampFormat::UnixSeconds,
            )),
            tolerance: Some(DEFAULT_TOLERANCE),
            secret_format: SecretFormat::base64(""),
            algorithm: Algorithm::EcdsaP256Sha256,
            ..Self::defaults()
        }
    }

    /// Square: `X-Square-HmacSha256-Signature: <base64>`, the HMAC-SHA256 keyed with the
    /// subscription's signature key (as is) of the notification URL followed by the body; the
    /// layer needs the public URL Square calls
    /// ([`with_public_url`](crate::layer::WebhookLayerBuilder::with_public_url)). The id, type
    /// and scope are the body's `event_id`, `type` and `merchant_id`. No timestamp.
    #[must_use]
    pub fn square() -> Self {
        Self {
            name: Cow::Borrowed("square"),
            signature_header: HeaderName::from_static("x-square-hmacsha256-signature"),
            format: SignatureFormat::single("", Encoding::Base64),
            signed: vec![Part::Url, Part::Body],
            id: Source::body_field("event_id"),
            event: Some(Source::body_field("type")),
            scope: Some(Source::body_field("merchant_id")),
            ..Self::defaults()
        }
    }

    /// Zoom: `x-zm-signature: v0=<hex>`, the HMAC-SHA256 keyed with the app's secret token (as
    /// is) of `v0:<x-zm-request-timestamp>:<body>`, within 5 minutes either way; the event is the
    /// body's `event`, the id the SHA-256 of the body. The layer answers Zoom's
    /// `endpoint.url_validation` (sent when the URL is saved, then every 72 hours) itself, once
    /// its signature verified: the `plainToken` and its HMAC-SHA256 under the secret token, hex,
    /// as `encryptedToken`.
    #[must_use]
    pub fn zoom() -> Self {
        Self {
            name: Cow::Borrowed("zoom"),
            signature_header: HeaderName::from_static("x-zm-signature"),
            format: SignatureFormat::single("v0=", Encoding::Hex),
            signed: vec![
                Part::literal("v0:"),
                Part::Timestamp,
                Part::literal(":"),
                Part::Body,
            ],
            event: Some(Source::body_field("event")),
            timestamp: Some((
                Source::header("x-zm-request-timestamp"),
                TimestampFormat::UnixSeconds,
            )),
            tolerance: Some(DEFAULT_TOLERANCE),
            handshake: Some(Handshake::Zoom),
            ..Self::defaults()
        }
    }

    /// Meta (Facebook, Instagram, WhatsApp Cloud API): `X-Hub-Signature-256: sha256=<hex>`, the
    /// HMAC-SHA256 of the body keyed with the app secret (as is); the event is the body's
    /// `object` (`page`, `whatsapp_business_account`), the id the SHA-256 of the body. No
    /// timestamp. The layer answers Meta's subscription check itself: a `GET` with
    /// `hub.mode=subscribe`, whose `hub.verify_token` must equal the layer's
    /// ([`with_verify_token`](crate::layer::WebhookLayerBuilder::with_verify_token), compared in
    /// constant time), is answered with its `hub.challenge` (mount the route for `GET` too).
    #[must_use]
    pub fn meta() -> Self {
        Self {
            name: Cow::Borrowed("meta"),
            signature_header: HeaderName::from_static("x-hub-signature-256"),
            format: SignatureFormat::single(SHA256_PREFIX, Encoding::Hex),
            event: Some(Source::body_field("object")),
            handshake: Some(Handshake::Meta),
            ..Self::defaults()
        }
    }

    /// Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>` (several `h1` while a secret
    /// rotates), the HMAC-SHA256 keyed with the destination's secret key (`pdl_ntfset_...`, as
    /// is) of `<ts>:<body>`; the id and type are the body's `event_id` and `event_type`. The
    /// timestamp must be within 5 seconds either way, as Paddle's own libraries require
    /// (Paddle signs each attempt afresh; widen it with [`with_tolerance`](Self::with_tolerance)
    /// if your clock drifts).
    #[must_use]
    pub fn paddle() -> Self {
        Self {
            name: Cow::Borrowed("paddle"),
            signature_header: HeaderName::from_static("paddle-signature"),
            format: SignatureFormat::list(';', "h1", '=', Encoding::Hex),
            signed: vec![Part::Timestamp, Part::literal(":"), Part::Body],
            id: Source::body_field("event_id"),
            event: Some(Source::body_field("event_type")),
            timestamp: Some((Source::signature_tag("ts"), TimestampFormat::UnixSeconds)),
            tolerance: Some(Tolerance::symmetric(Duration::from_secs(5))),
            ..Self::defaults()
        }
    }

    /// Linear: `Linear-Signature: <hex>`, the HMAC-SHA256 of the body keyed with the webhook's
    /// signing secret (as is); the signed body's `webhookTimestamp` (milliseconds) must be within
    /// a minute either way, as Linear's SDK requires. The event and action are the body's `type`
    /// (`Issue`) and `action` (`create`), so an event router matches `Issue.create` before
    /// `Issue`; the scope is its `organizationId`. The id is `Linear-Delivery`, unsigned: for
    /// display, and deliveries are deduplicated by the SHA-256 of the body. Linear re-signs the
    /// body's `webhookTimestamp` each time it sends, so a retry is a new body and runs again:
    /// keep Linear handlers idempotent.
    #[must_use]
    pub fn linear() -> Self {
        Self {
            name: Cow::Borrowed("linear"),
            signature_header: HeaderName::from_static("linear-signature"),
            format: SignatureFormat::single("", Encoding::Hex),
            id: Source::header("linear-delivery"),
            event: Some(Source::body_field("type")),
            action: Some(Source::body_field("action")),
            scope: Some(Source::body_field("organizationId")),
            timestamp: Some((
                Source::body_field("webhookTimestamp"),
                TimestampFormat::UnixMillis,
            )),
            tolerance: Some(Tolerance::symmetric(Duration::from_secs(60))),
            ..Self::defaults()
        }
    }

    /// Twitch EventSub: `Twitch-Eventsub-Message-Signature: sha256=<hex>`, the HMAC-SHA256 keyed
    /// with the subscription's secret (as is) of
    /// `<Twitch-Eventsub-Message-Id><Twitch-Eventsub-Message-Timestamp><body>` (no separators;
    /// the id is a UUID and the timestamp RFC 3339);
    /// the timestamp must be within 10 minutes, as Twitch asks. The id is the (signed) message
    /// id; the event `Twitch-Eventsub-Subscription-Type` (`channel.follow`), unsigned: a
    /// captured message replayed under another type is a duplicate of its id. The layer answers
    /// the `webhook_callback_verification` handshake itself (its `challenge`, as text), once its
    /// signature verified.
    #[must_use]
    pub fn twitch() -> Self {
        Self {
            name: Cow::Borrowed("twitch"),
            signature_header: HeaderName::from_static("twitch-eventsub-message-signature"),
            format: SignatureFormat::single(SHA256_PREFIX, Encoding::Hex),
            signed: vec![Part::Id, Part::Timestamp, Part::Body],
            id: Source::header("twitch-eventsub-message-id"),
            event: Some(Source::header("twitch-eventsub-subscription-type")),
            timestamp: Some((
                Source::header("twitch-eventsub-message-timestamp"),
                TimestampFormat::Rfc3339,
            )),
            tolerance: Some(Tolerance::symmetric(Duration::from_secs(600))),
            handshake: Some(Handshake::Twitch),
            ..Self::defaults()
        }
    }

    /// Microsoft Graph change notifications: no signature; each notification in the body's
    /// `value` must carry the subscription's `clientState`, the secret here (as is), compared in
    /// constant time. The id is the SHA-256 of the body. The layer answers Graph's subscription
    /// validation itself: a request with a `validationToken` query parameter is answered with
    /// the token, as text. (Graph's signed rich notifications are not verified here.)
    #[must_use]
    pub fn microsoft_graph() -> Self {
        Self {
            name: Cow::Borrowed("microsoft-graph"),
            // Graph sends no signature header; nothing reads this one.
            signature_header: HeaderName::from_static("clientstate"),
            rule: Rule::ClientState,
            handshake: Some(Handshake::Graph),
            ..Self::defaults()
        }
    }

    /// The preset called `name`: `sotion`, `sota`, `github`, `standard` (or
    /// `standard-webhooks`), `standard-v1a` (or `standard-webhooks-v1a`), `stripe`, `slack`,
    /// `shopify`, `woocommerce`, `discord`, `twilio`, `sendgrid`, `square`, `zoom`, `meta`,
    /// `paddle`, `linear`, `twitch`, `graph` (or `microsoft-graph`).
    #[must_use]
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "sotion" => Self::sotion(),
            "sota" => Self::sota(),
            "github" => Self::github(),
            "standard" | "standard-webhooks" => Self::standard_webhooks(),
            "standard-v1a" | "standard-webhooks-v1a" => Self::standard_webhooks_v1a(),
            "stripe" => Self::stripe(),
            "slack" => Self::slack(),
            "shopify" => Self::shopify(),
            "woocommerce" => Self::woocommerce(),
            "discord" => Self::discord(),
            "twilio" => Self::twilio(),
            "sendgrid" => Self::sendgrid(),
            "square" => Self::square(),
            "zoom" => Self::zoom(),
            "meta" => Self::meta(),
            "paddle" => Self::paddle(),
            "linear" => Self::linear(),
            "twitch" => Self::twitch(),
            "graph" | "microsoft-graph" => Self::microsoft_graph(),
            _ => return None,
        })
    }

    /// Every preset's name, as [`preset`](Self::preset) takes it.
    pub const PRESETS: [&'static str; 19] = [
        "sotion",
        "sota",
        "github",
        "standard",
        "standard-v1a",
        "stripe",
        "slack",
        "shopify",
        "woocommerce",
        "discord",
        "twilio",
        "sendgrid",
        "square",
        "zoom",
        "meta",
        "paddle",
        "linear",
        "twitch",
        "graph",
    ];

    /// What the presets have unless they say otherwise: the raw body signed with HMAC-SHA256
    /// under a raw secret, the id its SHA-256, no other fact, no handshake.
    fn defaults() -> Self {
        Self {
            name: Cow::Borrowed(""),
            signature_header: SOTION_SIGNATURE,
            format: SignatureFormat::single(SHA256_PREFIX, Encoding::Hex),
            signed: vec![Part::Body],
            id: Source::BodyDigest,
            event: None,
            action: None,
            scope: None,
            timestamp: None,
            tolerance: None,
            delivery: None,
            envelope: None,
            secret_format: SecretFormat::Raw,
            algorithm: Algorithm::HmacSha256,
            aliases: Vec::new(),
            handshake: None,
            rule: Rule::Parts,
            integer_event: false,
            bodies: JSON_ONLY,
        }
    }
}

/// Svix's names for Standard Webhooks' headers.
fn svix_aliases() -> Vec<(HeaderName, HeaderName)> {
    [
        ("webhook-id", "svix-id"),
        ("webhook-timestamp", "svix-timestamp"),
        ("webhook-signature", "svix-signature"),
    ]
    .into_iter()
    .map(|(name, alias)| {
        (
            HeaderName::from_static(name),
            HeaderName::from_static(alias),
        )
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ConfigError;

    #[test]
    fn every_preset_is_a_description_the_builder_accepts() {
        // Not these: Twitch signs its id and timestamp back to back (a UUID and an RFC 3339
        // date cannot run into each other, which the builder cannot know of two arbitrary
        // headers); Twilio's rule and Graph's token in the body are code, not parts.
        let by_code = ["twitch", "twilio", "graph"];
        for name in Scheme::PRESETS
            .iter()
            .filter(|name| !by_code.contains(name))
        {
            let name = *name;
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
            if let Some(action) = preset.action.clone() {
                builder = builder.with_action(action);
            }
            if let Some(tolerance) = preset.tolerance {
                builder = builder.with_tolerance(tolerance);
            }
            builder = builder
                .with_secret_format(preset.secret_format.clone())
                .with_algorithm(preset.algorithm)
                .with_body_forms(preset.bodies.clone());
            // GitHub's id is unsigned, and those of the senders that send theirs in an unsigned
            // header: their presets make the same choice as this opt-in.
            let unsigned = ["github", "shopify", "woocommerce", "linear"];
            assert_eq!(
                preset.signs_id_and_scope(),
                !unsigned.contains(&name),
                "{name}"
            );
            if !preset.signs_id_and_scope() {
                builder = builder.with_unsigned_id_and_scope();
            }
            assert!(builder.build().is_ok(), "{name}");
        }
        assert!(Scheme::preset("unknown").is_none());
        for name in by_code {
            assert!(Scheme::preset(name).is_some());
        }
    }

    #[cfg(not(feature = "ed25519"))]
    #[test]
    fn an_ed25519_key_without_the_feature_names_the_feature() {
        let error = Scheme::discord()
            .secret("733a99c387d58ada1ee4b54e540293ea37141381d14ff341cbabee985e3db8bf")
            .unwrap_err();
        assert!(matches!(
            error,
            ConfigError::FeatureDisabled {
                feature: "ed25519",
                ..
            }
        ));
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
