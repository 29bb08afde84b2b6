//! The verified facts about one delivery, handed to the inner service in request extensions.

use time::OffsetDateTime;

use crate::envelope::EventType;

/// What the layer verified about a delivery: put in the request's extensions before the inner
/// service is called, and an axum extractor (feature `axum`) for handlers.
///
/// Every field except [`delivery`](Self::delivery) comes from the **signed** body, never from an
/// unsigned header (the headers were only checked to agree with it).
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use tower_webhook::WebhookMeta;
///
/// async fn handler(meta: WebhookMeta) -> &'static str {
///     println!("{} {} (delivery {:?})", meta.event(), meta.id(), meta.delivery());
///     "ok"
/// }
/// # let _ = handler;
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookMeta {
    pub(crate) scheme: &'static str,
    pub(crate) id: String,
    pub(crate) event: EventType,
    pub(crate) delivery: Option<String>,
    pub(crate) site_id: Option<String>,
    pub(crate) timestamp: Option<OffsetDateTime>,
    pub(crate) version: Option<String>,
}

impl WebhookMeta {
    /// The name of the scheme that verified the delivery (`"sotion"`, ...).
    #[must_use]
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// The event id from the signed body: the same across retries of one event.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The event type from the signed body.
    #[must_use]
    pub fn event(&self) -> &EventType {
        &self.event
    }

    /// The delivery-attempt id from the (unsigned) delivery header, when the sender sent one.
    /// It differs on every retry, so it identifies an attempt, not an event: use it in logs,
    /// never as an idempotency key.
    #[must_use]
    pub fn delivery(&self) -> Option<&str> {
        self.delivery.as_deref()
    }

    /// The site (tenant) the event belongs to, from the signed body.
    #[must_use]
    pub fn site_id(&self) -> Option<&str> {
        self.site_id.as_deref()
    }

    /// When the event occurred, from the signed body.
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
