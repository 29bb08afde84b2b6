use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::builder::WebhookLayerBuilder;
use super::inbox::InboxMode;
use super::public_url::PublicUrl;
use super::service::WebhookService;
use crate::clock::Clock;
use crate::error::{ConfigError, Rejection, RejectionKind};
use crate::idempotency::Idempotency;
use crate::observe::Metrics;
use crate::scheme::Scheme;
use crate::secret::{Fingerprint, SecretResolver, Secrets, Tenant};

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

/// Aligned to 128 bytes so that, inside its `Arc`, the reference counts (touched by every
/// request, from every worker thread) sit on cache lines of their own, apart from the settings
/// every request reads.
#[repr(align(128))]
pub(crate) struct Config {
    pub(crate) scheme: Scheme,
    pub(crate) secrets: SecretSource,
    pub(crate) body_limit: usize,
    pub(crate) body_timeout: Option<Duration>,
    /// What happens to a verified delivery.
    pub(crate) guard: Guard,
    /// The fingerprint of the name given to `with_endpoint`; `None`: the verifying secret's.
    pub(crate) endpoint: Option<Fingerprint>,
    /// How long a resolver may take, and the `Retry-After` when it fails or takes longer.
    pub(crate) resolver_timeout: Duration,
    pub(crate) resolver_retry_after: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    /// The metric keys, for the scheme's name.
    pub(crate) metrics: Metrics,
    /// Where the URL the sender called comes from, for a scheme that signs it.
    pub(crate) public_url: Option<PublicUrl>,
    /// The token an unsigned handshake must carry (Meta's `hub.verify_token`).
    pub(crate) verify_token: Option<Box<[u8]>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("scheme", &self.scheme.name())
            .field("secrets", &self.secrets)
            .field("body_limit", &self.body_limit)
            .field("body_timeout", &self.body_timeout)
            .field("guard", &self.guard)
            .field("named_endpoint", &self.endpoint.is_some())
            .field("resolver_timeout", &self.resolver_timeout)
            .field("resolver_retry_after", &self.resolver_retry_after)
            .field("public_url", &self.public_url)
            .field(
                "verify_token",
                &self.verify_token.as_ref().map(|_| "REDACTED"),
            )
            .finish_non_exhaustive()
    }
}

/// What the layer does with a verified delivery (steps 6 and 7 of the module docs): one of
/// three, so that a request reads one `match`.
#[derive(Debug)]
pub(crate) enum Guard {
    /// Reserve the event in the idempotency store, call the inner service, then complete the
    /// reservation or release it (the default).
    Idempotency(Idempotency),
    /// Inbox mode: store the delivery and answer once it is committed; the inbox's workers call
    /// the inner service later.
    Inbox(InboxMode),
    /// Call the inner service, deduplicating nothing (`without_idempotency`).
    Off,
}

/// Where the layer gets the secrets to try.
#[derive(Clone)]
pub(crate) enum SecretSource {
    Static(Secrets),
    Resolver(Arc<dyn SecretResolver>),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static(secrets) => secrets.fmt(f),
            Self::Resolver(_) => f.write_str("SecretResolver"),
        }
    }
}

impl Config {
    /// The idempotency guard, when deliveries are handled inline with one.
    pub(crate) fn idempotency(&self) -> Option<&Idempotency> {
        match &self.guard {
            Guard::Idempotency(idempotency) => Some(idempotency),
            Guard::Inbox(_) | Guard::Off => None,
        }
    }

    /// The `503 secrets_unavailable` answer when the resolver cannot give a request's secrets.
    pub(crate) fn secrets_unavailable(&self) -> Rejection {
        Rejection::new(
            RejectionKind::SecretsUnavailable,
            "the receiver cannot look up its secrets right now; retry later",
        )
        .with_retry_after(self.resolver_retry_after)
    }

    /// A resolved tenant's id and secrets, once its secrets are known to be decoded the way the
    /// scheme decodes them. That can only be seen at request time: a tenant whose secrets are
    /// of another format (a raw [`Secret::new`](crate::Secret::new) for a base64 scheme) is a
    /// configuration mistake, logged as an error and answered `503 secrets_unavailable`, so the
    /// sender retries once it is fixed rather than each delivery failing as a forgery.
    pub(crate) fn tenant_secrets(&self, tenant: Tenant) -> Result<(String, Secrets), Rejection> {
        let (id, secrets) = tenant.into_parts();
        if let Err(error) =
            secrets.check_format(self.scheme.secret_format(), self.scheme.algorithm())
        {
            crate::observe::error!(
                tenant = %id,
                %error,
                "the secret resolver gave secrets the scheme cannot use; answering 503"
            );
            return Err(self.secrets_unavailable());
        }
        Ok((id, secrets))
    }
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
