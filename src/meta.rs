//! The verified facts about one delivery, handed to the inner service in request extensions.

use std::borrow::Cow;
use std::fmt;

use bytestring::ByteString;
use http::HeaderValue;
use time::OffsetDateTime;

use crate::secret::Fingerprint;

/// What the layer verified about a delivery: put in the request's extensions before the inner
/// service is called, and an axum extractor (feature `axum`) for handlers.
///
/// For Sotion, every field except [`delivery`](Self::delivery) comes from the **signed** body,
/// never from an unsigned header (the headers were only checked to agree with it). Other
/// schemes say in their docs which of their facts are signed.
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use tower_webhook::WebhookMeta;
///
/// async fn handler(meta: WebhookMeta) -> &'static str {
///     let event = meta.event().unwrap_or("-");
///     println!("{event} {} (delivery {:?})", meta.id(), meta.delivery());
///     "ok"
/// }
/// # let _ = handler;
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookMeta {
    // The strings read from the body share its buffer, and the delivery id is the header's own
    // value: cloning a `WebhookMeta` (each extractor does) copies no text.
    pub(crate) scheme: Cow<'static, str>,
    pub(crate) id: ByteString,
    pub(crate) event: Option<ByteString>,
    pub(crate) action: Option<ByteString>,
    /// Checked to be UTF-8 without control characters when the meta was made.
    pub(crate) delivery: Option<HeaderValue>,
    pub(crate) scope: Option<ByteString>,
    pub(crate) tenant: Option<String>,
    pub(crate) timestamp: Option<OffsetDateTime>,
    pub(crate) version: Option<ByteString>,
    /// What the idempotency key is built from besides the facts above.
    pub(crate) key: KeyBasis,
}

/// What, besides the scheme, the tenant, the scope and the event id, a delivery's
/// [`IdempotencyKey`](crate::idempotency::IdempotencyKey) is built from. Set by verification;
/// never shown.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct KeyBasis {
    /// The endpoint that received the delivery: the fingerprint of the secret that verified it,
    /// or of the name the layer was given with `with_endpoint`.
    pub(crate) endpoint: Fingerprint,
    /// Set when the scheme's event id or scope is unsigned (GitHub's `X-GitHub-Delivery`):
    /// the SHA-256 of the signed facts and the body, which the key is built from instead of
    /// the unsigned values.
    pub(crate) signed_bytes: Option<[u8; 32]>,
    /// The key of a stored delivery (an inbox worker's meta): the key the layer computed when
    /// it accepted it, from the endpoint and signed bytes no longer at hand.
    pub(crate) stored: Option<crate::idempotency::IdempotencyKey>,
}

impl fmt::Debug for KeyBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBasis")
    }
}

impl WebhookMeta {
    /// The meta of a stored delivery, from the facts verification produced when it was
    /// accepted (an inbox worker hands it to the handler), and the key it was stored under:
    /// [`IdempotencyKey::for_delivery`](crate::idempotency::IdempotencyKey::for_delivery) gives
    /// it back, as it gives the layer's key in inline mode.
    pub(crate) fn from_facts(
        facts: &crate::inbox::Facts,
        key: crate::idempotency::IdempotencyKey,
    ) -> Self {
        Self {
            scheme: Cow::Owned(facts.scheme.clone()),
            id: ByteString::from(facts.id.as_str()),
            event: facts.event.as_deref().map(ByteString::from),
            action: facts.action.as_deref().map(ByteString::from),
            // Checked to be UTF-8 without control characters, as when the meta was made.
            delivery: facts
                .delivery
                .as_deref()
                .and_then(|delivery| HeaderValue::from_str(delivery).ok()),
            scope: facts.scope.as_deref().map(ByteString::from),
            tenant: facts.tenant.clone(),
            timestamp: facts.timestamp,
            version: facts.version.as_deref().map(ByteString::from),
            key: KeyBasis {
                stored: Some(key),
                ..KeyBasis::default()
            },
        }
    }

    /// The name of the scheme that verified the delivery (`"sotion"`, `"github"`, ...).
    #[must_use]
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The event id, as the scheme defines it (Sotion: the signed body's `id`): the same across
    /// retries of one event.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The event's name as the sender wrote it: Sotion's, Stripe's and Standard Webhooks'
    /// body `type` (`member.created`, `invoice.paid`), GitHub's `X-GitHub-Event` (`issues`);
    /// `None` when the scheme or the delivery carries none (a Slack slash command).
    ///
    /// For Sotion, [`EventType::from`](crate::EventType) turns it into the enum of the nine
    /// documented types.
    #[must_use]
    pub fn event(&self) -> Option<&str> {
        self.event.as_deref()
    }

    /// What happened to the event's subject, where the sender names it apart from the event:
    /// GitHub's body `action` (`opened` for an `issues` event). `None` for the other presets,
    /// and for a GitHub event without one (`push`). An event router matches
    /// `<event>.<action>` (`issues.opened`) before `<event>`.
    #[must_use]
    pub fn action(&self) -> Option<&str> {
        self.action.as_deref()
    }

    /// The delivery-attempt id from the (unsigned) delivery header, when the sender sent one.
    /// It differs on every retry, so it identifies an attempt, not an event: use it in logs,
    /// never as an idempotency key.
    #[must_use]
    pub fn delivery(&self) -> Option<&str> {
        // Checked to be UTF-8 when the meta was made, so this never drops a value.
        self.delivery
            .as_ref()
            .and_then(|value| std::str::from_utf8(value.as_bytes()).ok())
    }

    /// The scope of the event id, from the signed body when the scheme has one (Sotion's
    /// `siteId`, sota.io's `project_id`): event ids are unique within it.
    ///
    /// The scope is part of the idempotency key. A scope that is not a usable string (1 to 255
    /// bytes without control characters) does not refuse the delivery (except in Sotion's
    /// envelope, where it is required); it is logged as a warning and kept apart instead: a
    /// number or boolean as its JSON text (`"project_id": 12345` gives `"12345"`), anything
    /// else as `sha256:` followed by the hex SHA-256 of its raw JSON text (for a header scope:
    /// of its values joined by `\n`). JSON `null` is no scope (`None`).
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The tenant a [`SecretResolver`](crate::SecretResolver) matched the request to, if the
    /// layer uses one.
    #[must_use]
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The signed timestamp (Sotion: when the event occurred, from the body; Standard
    /// Webhooks, Stripe, Slack: when the delivery was signed).
    #[must_use]
    pub fn timestamp(&self) -> Option<OffsetDateTime> {
        self.timestamp
    }

    /// The envelope schema version.
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
}
