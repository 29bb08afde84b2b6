use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tower_layer::Layer;

use super::service::WebhookService;
use crate::clock::{Clock, SystemClock};
use crate::idempotency::{Idempotency, IdempotencyStore};
use crate::observe::Metrics;
use crate::scheme::Scheme;
use crate::secret::{Fingerprint, Secret, SecretResolver, Secrets};

/// The default body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The default time a client has to send the whole body once its headers arrived: 10 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The default time a [`SecretResolver`] has to answer: 5 s. A lookup that has not answered by
/// then is treated as down (`503 secrets_unavailable`), so the sender retries later, well
/// within the 10 to 30 s senders wait for an answer.
pub const DEFAULT_RESOLVER_TIMEOUT: Duration = Duration::from_secs(5);
/// The default `Retry-After` of a `503 secrets_unavailable` answer: 30 s.
pub const DEFAULT_RESOLVER_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A tower [`Layer`] that verifies signed webhook deliveries before they reach the service it
/// wraps, and runs each event's handler once.
///
/// Configuration only: cheap to clone. Built with [`new`](Self::new) (the secrets are the one
/// required setting), then `with_*` options. Defaults: Sotion's scheme, a 1 MiB body limit, a
/// 10 s body read timeout, and an in-memory idempotency store (100,000 events, 7 days).
///
/// Requires a Tokio runtime with its timer enabled (as every axum server has).
///
/// ```
/// use axum::{routing::post, Router};
/// use tower_webhook::{Envelope, Secret, WebhookLayer};
///
/// async fn handle(event: Envelope) -> &'static str {
///     println!("handled {} {}", event.event_type, event.id);
///     "ok"
/// }
///
/// let layer = WebhookLayer::new(Secret::new("whsec_current")?)
///     .with_secret(Secret::new("whsec_previous")?) // rotation: both accepted
///     .with_body_limit(256 * 1024);
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
#[derive(Clone)]
#[repr(align(128))]
pub(crate) struct Config {
    pub(crate) scheme: Scheme,
    pub(crate) secrets: SecretSource,
    pub(crate) body_limit: usize,
    pub(crate) body_timeout: Option<Duration>,
    pub(crate) idempotency: Option<Idempotency>,
    /// The fingerprint of the name given to `with_endpoint`; `None`: the verifying secret's.
    pub(crate) endpoint: Option<Fingerprint>,
    /// How long a resolver may take, and the `Retry-After` when it fails or takes longer.
    pub(crate) resolver_timeout: Duration,
    pub(crate) resolver_retry_after: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    /// The metric keys, for the scheme's name.
    pub(crate) metrics: Metrics,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("scheme", &self.scheme.name())
            .field("secrets", &self.secrets)
            .field("body_limit", &self.body_limit)
            .field("body_timeout", &self.body_timeout)
            .field("idempotency", &self.idempotency)
            .field("named_endpoint", &self.endpoint.is_some())
            .field("resolver_timeout", &self.resolver_timeout)
            .field("resolver_retry_after", &self.resolver_retry_after)
            .finish_non_exhaustive()
    }
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

impl WebhookLayer {
    /// A layer accepting deliveries signed with any of `secrets` (a [`Secret`] or [`Secrets`]).
    #[must_use]
    pub fn new(secrets: impl Into<Secrets>) -> Self {
        Self::with_source(SecretSource::Static(secrets.into()))
    }

    /// A layer for a multi-tenant receiver: `resolver` picks each request's tenant and its
    /// secrets (see [`SecretResolver`]). Idempotency keys are scoped by tenant.
    #[must_use]
    pub fn per_tenant(resolver: impl SecretResolver) -> Self {
        Self::with_source(SecretSource::Resolver(Arc::new(resolver)))
    }

    fn with_source(secrets: SecretSource) -> Self {
        Self {
            config: Arc::new(Config {
                scheme: Scheme::default(),
                secrets,
                body_limit: DEFAULT_BODY_LIMIT,
                body_timeout: Some(DEFAULT_BODY_TIMEOUT),
                idempotency: Some(Idempotency::default()),
                endpoint: None,
                resolver_timeout: DEFAULT_RESOLVER_TIMEOUT,
                resolver_retry_after: DEFAULT_RESOLVER_RETRY_AFTER,
                clock: Arc::new(SystemClock),
                metrics: Metrics::new(Scheme::default().shared_name()),
            }),
        }
    }

    /// Also accepts deliveries signed with `secret` (for rotation: configure the new secret
    /// first and the old one after it, then remove the old one once the sender no longer signs
    /// with it). The order matters for idempotency keys: a delivery that several secrets verify
    /// counts under the one configured last (see [`with_endpoint`](Self::with_endpoint)). On a
    /// [`per_tenant`](Self::per_tenant) layer the resolver decides, and this has no effect.
    #[must_use]
    pub fn with_secret(mut self, secret: Secret) -> Self {
        let config = Arc::make_mut(&mut self.config);
        if let SecretSource::Static(secrets) = &config.secrets {
            config.secrets = SecretSource::Static(secrets.clone().with(secret));
        }
        self
    }

    /// How long a [`per_tenant`](Self::per_tenant) resolver may take to answer (default 5 s,
    /// [`DEFAULT_RESOLVER_TIMEOUT`]); past it the answer is `503 secrets_unavailable` with
    /// `Retry-After`. No effect on a layer with fixed secrets.
    #[must_use]
    pub fn with_resolver_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.config).resolver_timeout = timeout;
        self
    }

    /// The `Retry-After` of a `503 secrets_unavailable` answer, when a
    /// [`per_tenant`](Self::per_tenant) resolver fails or times out (default 30 s).
    #[must_use]
    pub fn with_resolver_retry_after(mut self, after: Duration) -> Self {
        Arc::make_mut(&mut self.config).resolver_retry_after = after;
        self
    }

    /// The clock the freshness checks read (default: the system clock). Tests pin it.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        Arc::make_mut(&mut self.config).clock = Arc::new(clock);
        self
    }

    /// The sender's signing scheme (default [`Scheme::sotion`]).
    #[must_use]
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.metrics = Metrics::new(scheme.shared_name());
        config.scheme = scheme;
        self
    }

    /// The largest body accepted, in bytes (default 1 MiB). A larger `Content-Length` is
    /// refused before reading; a streamed body is cut when it passes the limit. Never more than
    /// the limit is buffered.
    #[must_use]
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        Arc::make_mut(&mut self.config).body_limit = limit;
        self
    }

    /// How long a client may take to send the body once the request reached the layer (default
    /// 10 s); past it the answer is `408 body_timeout`. `None` waits forever (not advised: a
    /// stalled client then holds its connection and buffer for as long as the server lets it).
    #[must_use]
    pub fn with_body_timeout(mut self, timeout: Option<Duration>) -> Self {
        Arc::make_mut(&mut self.config).body_timeout = timeout;
        self
    }

    /// The idempotency guard (default: an in-memory store with default timings).
    #[must_use]
    pub fn with_idempotency(mut self, idempotency: Idempotency) -> Self {
        Arc::make_mut(&mut self.config).idempotency = Some(idempotency);
        self
    }

    /// Shorthand for [`with_idempotency`](Self::with_idempotency)`(Idempotency::new(store))`.
    #[must_use]
    pub fn with_store(self, store: impl IdempotencyStore) -> Self {
        self.with_idempotency(Idempotency::new(store))
    }

    /// Names the endpoint this layer guards, for its idempotency keys.
    ///
    /// Senders (Stripe, GitHub, Svix, Sotion) send the same event id to every endpoint
    /// subscribed to the event, each signed with that endpoint's secret. So that two endpoints
    /// sharing a store (one Redis, one [`Idempotency`] shared between layers, clones of one
    /// layer) never answer each other's events as duplicates, keys name the endpoint. By
    /// default the endpoint is a fingerprint of the secret that verified the delivery: two
    /// endpoints with different secrets never share keys, and replicas holding the same secret
    /// always do, also while a secret is being rotated (the new secret first, the old one after
    /// it, as in [`with_secret`](Self::with_secret): a delivery that both match counts under
    /// the old one, which the replicas not yet rotated hold too).
    ///
    /// Name the endpoint when the default is not enough:
    /// - **One secret, several endpoints.** Clones of one layer, or layers given the same
    ///   secret, are one endpoint as far as keys go: the second route answers the first one's
    ///   event as a duplicate. Give each a different name.
    /// - **A retry across a secret switch.** Without a name, a retry that the sender re-signs
    ///   with a *different* secret than the first attempt (it switched secrets in between)
    ///   counts as a new event, and runs again. So does a delivery that several secrets verify
    ///   once you remove the old secret from the layer (it then counts under the new one). Under
    ///   a name, every replica and every secret of the endpoint share keys, through any
    ///   rotation.
    ///
    /// The name must be the same on every replica of the endpoint, and stable across deploys
    /// (changing it forgets which events were handled). Per-tenant layers still scope keys by
    /// tenant too.
    #[must_use]
    pub fn with_endpoint(mut self, name: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"tower-webhook endpoint name v1\0");
        hasher.update(name.as_bytes());
        let mut fingerprint = Fingerprint::default();
        fingerprint.copy_from_slice(&hasher.finalize()[..16]);
        Arc::make_mut(&mut self.config).endpoint = Some(fingerprint);
        self
    }

    /// **Risky.** Turns the idempotency guard off: every authentic delivery, retries included,
    /// reaches the handler, which must then deduplicate by itself.
    #[must_use]
    pub fn without_idempotency(mut self) -> Self {
        Arc::make_mut(&mut self.config).idempotency = None;
        self
    }
}

impl<S> Layer<S> for WebhookLayer {
    type Service = WebhookService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WebhookService::new(inner, self.config.clone())
    }
}
