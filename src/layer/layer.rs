//! [`WebhookLayer`]: the configuration, cheap to clone, that wraps a service in a
//! [`WebhookService`].

use std::sync::Arc;

use tower_layer::Layer;

use super::builder::WebhookLayerBuilder;
use super::config::Config;
use super::service::WebhookService;
use crate::error::ConfigError;
use crate::scheme::Scheme;

/// A tower [`Layer`] that verifies signed webhook deliveries before they reach the service it
/// wraps, and runs each event's handler once.
///
/// Configuration only: cheap to clone. Built from the sender's [`Scheme`] and its secret with
/// [`new`](Self::new), or with [`builder`](Self::builder) for anything more (secret rotation,
/// per-tenant secrets, limits, idempotency). Configuration mistakes are errors when the layer is
/// built ([`ConfigError`]), never at request time. Defaults: a 1 MiB body limit, a 10 s body
/// read timeout, and an in-memory idempotency store (100,000 events, 7 days).
///
/// Requires a Tokio runtime with its timer enabled (as every axum server has).
///
/// ```
/// use axum::{routing::post, Router};
/// use tower_webhook::{Envelope, Scheme, WebhookLayer};
///
/// async fn handle(event: Envelope) -> &'static str {
///     println!("handled {} {}", event.event_type, event.id);
///     "ok"
/// }
///
/// let layer = WebhookLayer::new(Scheme::sotion(), "whsec_from_your_dashboard")?;
/// let app: Router = Router::new().route("/webhooks", post(handle).layer(layer));
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct WebhookLayer {
    // Shared: `layer()` may run once per request (axum converts a route's handler on every
    // call when the router has no state), so it must only bump a reference count.
    config: Arc<Config>,
}

impl WebhookLayer {
    /// A layer for `scheme` accepting deliveries signed with the secret written as
    /// `secret_text`, decoded by the scheme ([`Scheme::secret`]), with every other option at
    /// its default. Use [`builder`](Self::builder) for more.
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`], or [`ConfigError::InvalidSecretEncoding`] when the scheme
    /// decodes base64 secrets and `secret_text` is not base64.
    pub fn new(scheme: Scheme, secret_text: &str) -> Result<Self, ConfigError> {
        Self::builder(scheme).with_secret(secret_text).build()
    }

    /// A builder for a layer verifying `scheme`'s deliveries: give it secrets
    /// ([`with_secret`](WebhookLayerBuilder::with_secret)) or a per-tenant resolver
    /// ([`with_resolver`](WebhookLayerBuilder::with_resolver)), options, then
    /// [`build`](WebhookLayerBuilder::build) it.
    pub fn builder(scheme: Scheme) -> WebhookLayerBuilder {
        WebhookLayerBuilder::new(scheme)
    }

    pub(crate) fn from_config(config: Config) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for WebhookLayer {
    type Service = WebhookService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WebhookService::new(inner, self.config.clone())
    }
}
