//! Inbox mode: after verification, the delivery is stored instead of handed to the inner
//! service, and answered once the store committed it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, request, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::body::LayerBody;
use crate::error::{Rejection, RejectionKind};
use crate::idempotency::{duplicate_response, IdempotencyKey, OnDuplicate};
use crate::inbox::{Accepted, Delivery, InboxBackend, InboxError};
use crate::meta::WebhookMeta;
use crate::scheme::{Scheme, Source};

/// In the extensions of every request the inbox's workers rebuild from a stored delivery (which
/// a layer verified before storing it): the layer hands such a request to its inner service as
/// it is, neither verified again nor stored again. Only this crate can make one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FromInbox;

/// The path a delivery is stored with: the one the request was sent to. Inside a nested axum
/// router the request's own path lacks the prefix the router was nested at; axum keeps the
/// full one as `OriginalUri`.
fn original_path(parts: &request::Parts) -> &str {
    #[cfg(feature = "axum")]
    if let Some(original) = parts.extensions.get::<axum::extract::OriginalUri>() {
        return original.0.path();
    }
    parts.uri.path()
}

/// The default `Retry-After` of a `503 inbox_unavailable` or `503 inbox_full` answer.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Where a layer in inbox mode stores its deliveries.
#[derive(Clone)]
pub(crate) struct InboxMode {
    pub(crate) backend: Arc<dyn InboxBackend>,
    /// The headers stored with each delivery: the ones the scheme reads, and `Content-Type`.
    pub(crate) headers: Vec<HeaderName>,
    pub(crate) retry_after: Duration,
    /// The answer to a delivery stored already: the idempotency configuration's
    /// [`on_duplicate`](crate::Idempotency::on_duplicate), or else the default one (its store is
    /// not used: the inbox deduplicates).
    pub(crate) on_duplicate: Arc<dyn OnDuplicate>,
}

impl std::fmt::Debug for InboxMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxMode")
            .field("headers", &self.headers)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

impl InboxMode {
    pub(crate) fn new(
        backend: Arc<dyn InboxBackend>,
        scheme: &Scheme,
        retry_after: Duration,
        on_duplicate: Arc<dyn OnDuplicate>,
    ) -> Self {
        Self {
            backend,
            headers: headers_read(scheme),
            retry_after,
            on_duplicate,
        }
    }
}

/// What the answer to a stored delivery is: the delivery was stored, or refused.
pub(crate) enum Stored {
    /// Committed: `200 {"status":"accepted"}`.
    New(Response<LayerBody>),
    /// Stored already, in any state: the duplicate answer.
    Duplicate(Response<LayerBody>),
    /// Not stored: `503` with `Retry-After`.
    Refused(Rejection),
}

/// Stores a verified delivery (steps 1 to 5 passed), keyed as the idempotency guard keys it.
pub(crate) async fn store(
    inbox: &InboxMode,
    parts: &request::Parts,
    body: Bytes,
    meta: &WebhookMeta,
) -> Stored {
    let headers = inbox.headers.iter().flat_map(|name| {
        parts
            .headers
            .get_all(name)
            .iter()
            .map(move |value| (name.clone(), value.clone()))
    });
    let key = IdempotencyKey::for_delivery(meta);
    let delivery = Delivery::new(meta, key, original_path(parts), headers, body);
    // Held before the accept: a worker here may claim the delivery as soon as it is committed.
    let accepting = crate::observe::Accepting::hold(&key);
    match inbox.backend.accept(&delivery).await {
        Ok(Accepted::New) => {
            accepting.keep();
            Stored::New(accepted())
        }
        Ok(Accepted::Duplicate(_)) => {
            Stored::Duplicate(duplicate_response(&*inbox.on_duplicate, meta))
        }
        Err(InboxError::Full) => {
            crate::observe::warn!("the inbox is full; answering 503");
            Stored::Refused(
                Rejection::new(
                    RejectionKind::InboxFull,
                    "the receiver has too many deliveries waiting; retry later",
                )
                .with_retry_after(inbox.retry_after),
            )
        }
        Err(error) => {
            crate::observe::error!(%error, "the inbox could not store a delivery; answering 503");
            Stored::Refused(
                Rejection::new(
                    RejectionKind::InboxUnavailable,
                    "the receiver cannot store deliveries right now; retry later",
                )
                .with_retry_after(inbox.retry_after),
            )
        }
    }
}

/// `200 {"status":"accepted"}`.
fn accepted() -> Response<LayerBody> {
    let mut response = Response::new(Full::new(Bytes::from_static(br#"{"status":"accepted"}"#)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.map(LayerBody::full)
}

/// The headers `scheme` reads (signature, id, event, action, scope, timestamp, delivery id, the
/// envelope's agreeing headers), and `Content-Type` (axum's `Json` needs it): what a worker
/// hands the handler again.
fn headers_read(scheme: &Scheme) -> Vec<HeaderName> {
    let from = |source: Option<&Source>| match source {
        Some(Source::Header(name)) => Some(name.clone()),
        _ => None,
    };
    let mut names = vec![header::CONTENT_TYPE, scheme.signature_header.clone()];
    names.extend(from(Some(&scheme.id)));
    names.extend(from(scheme.event.as_ref()));
    names.extend(from(scheme.action.as_ref()));
    names.extend(from(scheme.scope.as_ref()));
    names.extend(from(scheme.timestamp.as_ref().map(|(source, _)| source)));
    names.extend(scheme.delivery.clone());
    if let Some(envelope) = &scheme.envelope {
        names.push(envelope.id_header.clone());
        names.push(envelope.event_header.clone());
    }
    // The other names those headers may be sent under (Svix's for Standard Webhooks).
    let aliases: Vec<HeaderName> = scheme
        .aliases
        .iter()
        .filter(|(name, _)| names.contains(name))
        .map(|(_, alias)| alias.clone())
        .collect();
    names.extend(aliases);
    let mut unique = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headers_stored_are_those_the_scheme_reads_and_the_content_type() {
        let names = |scheme: &Scheme| -> Vec<String> {
            headers_read(scheme)
                .iter()
                .map(|name| name.as_str().to_owned())
                .collect()
        };
        assert_eq!(
            names(&Scheme::sotion()),
            [
                "content-type",
                "x-webhook-signature",
                "x-webhook-delivery",
                "x-webhook-id",
                "x-webhook-event"
            ]
        );
        assert!(names(&Scheme::standard_webhooks()).contains(&"svix-id".to_owned()));
        assert_eq!(
            names(&Scheme::github()),
            [
                "content-type",
                "x-hub-signature-256",
                "x-github-delivery",
                "x-github-event"
            ]
        );
    }
}
