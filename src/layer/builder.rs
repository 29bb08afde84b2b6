use std::borrow::Cow;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::config::{Config, Guard, SecretSource};
use super::inbox::{InboxMode, DEFAULT_RETRY_AFTER as DEFAULT_INBOX_RETRY_AFTER};
use super::layer::WebhookLayer;
use super::public_url::PublicUrl;
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::idempotency::{checked, AcknowledgeDuplicate, Idempotency, IdempotencyStore};
use crate::inbox::InboxBackend;
use crate::observe::{InboxName, Metrics, DEFAULT_INBOX_NAME};
use crate::scheme::Scheme;
use crate::secret::{Fingerprint, Secret, SecretResolver, Secrets};

/// The default body limit: 1 MiB.
const DEFAULT_BODY_LIMIT: NonZeroUsize = NonZeroUsize::new(1024 * 1024).unwrap();
/// The default time a client has to send the whole body once its headers arrived.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time a resolver has to answer.
const DEFAULT_RESOLVER_TIMEOUT: Duration = Duration::from_secs(5);
/// The default `Retry-After` of a `503 secrets_unavailable` answer.
const DEFAULT_RESOLVER_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Builds a [`WebhookLayer`]: [`WebhookLayer::builder`]`(scheme)`, its secrets (or a per-tenant
/// resolver), options, then [`build`](Self::build).
///
/// A mistake in an option is kept (the first one) and reported by [`build`](Self::build) as a
/// [`ConfigError`], as are combinations that cannot work: no secret and no resolver, both
/// secrets and a resolver, or a secret decoded for another scheme's format.
///
/// ```
/// use std::num::NonZeroUsize;
/// use axum::{routing::post, Router};
/// use tower_webhook::{Envelope, Scheme, WebhookLayer};
///
/// async fn handle(event: Envelope) -> &'static str {
///     println!("handled {} {}", event.event_type, event.id);
///     "ok"
/// }
///
/// let layer = WebhookLayer::builder(Scheme::sotion())
///     .with_secret("whsec_current")
///     .with_secret("whsec_previous") // rotation: both accepted
///     .with_body_limit(NonZeroUsize::new(256 * 1024).ok_or("zero")?)
///     .build()?;
/// let app: Router = Router::new().route("/webhooks", post(handle).layer(layer));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until it is built"]
pub struct WebhookLayerBuilder {
    scheme: Scheme,
    secrets: Option<Secrets>,
    /// Secrets no longer accepted, remembered to explain refusals.
    retired: Vec<Secret>,
    resolver: Option<Arc<dyn SecretResolver>>,
    body_limit: NonZeroUsize,
    body_timeout: Option<Duration>,
    idempotency: Option<Idempotency>,
    inbox: Option<Arc<dyn InboxBackend>>,
    inbox_retry_after: Duration,
    inbox_name: Cow<'static, str>,
    endpoint: Option<Fingerprint>,
    resolver_timeout: Duration,
    resolver_retry_after: Duration,
    clock: Arc<dyn Clock>,
    public_url: Option<PublicUrl>,
    verify_token: Option<Box<[u8]>>,
    /// The first mistake, reported by `build`.
    error: Option<ConfigError>,
}

impl std::fmt::Debug for WebhookLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookLayerBuilder")
            .field("scheme", &self.scheme.name())
            .field("secrets", &self.secrets)
            .field("retired", &self.retired.len())
            .field("resolver", &self.resolver.is_some())
            .field("body_limit", &self.body_limit)
            .field("body_timeout", &self.body_timeout)
            .field("idempotency", &self.idempotency)
            .field("inbox", &self.inbox.is_some())
            .field("inbox_name", &self.inbox_name)
            .field("named_endpoint", &self.endpoint.is_some())
            .field("resolver_timeout", &self.resolver_timeout)
            .field("resolver_retry_after", &self.resolver_retry_after)
            .field("public_url", &self.public_url)
            .field(
                "verify_token",
                &self.verify_token.as_ref().map(|_| "REDACTED"),
            )
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl WebhookLayerBuilder {
    pub(super) fn new(scheme: Scheme) -> Self {
        Self {
            scheme,
            secrets: None,
            retired: Vec::new(),
            resolver: None,
            body_limit: DEFAULT_BODY_LIMIT,
            body_timeout: Some(DEFAULT_BODY_TIMEOUT),
            idempotency: Some(Idempotency::default()),
            inbox: None,
            inbox_retry_after: DEFAULT_INBOX_RETRY_AFTER,
            inbox_name: Cow::Borrowed(DEFAULT_INBOX_NAME),
            endpoint: None,
            resolver_timeout: DEFAULT_RESOLVER_TIMEOUT,
            resolver_retry_after: DEFAULT_RESOLVER_RETRY_AFTER,
            clock: Arc::new(SystemClock),
            public_url: None,
            verify_token: None,
            error: None,
        }
    }

    /// Keeps `error` if it is the first mistake.
    fn fail(mut self, error: ConfigError) -> Self {
        self.error.get_or_insert(error);
        self
    }

    /// Accepts deliveries signed with the secret written as `text`, which the scheme decodes
    /// ([`Scheme::secret`]: the text as is for Sotion, GitHub, sota.io, Stripe and Slack,
    /// `whsec_<base64>` decoded for Standard Webhooks).
    ///
    /// Call it once per secret to accept several, for rotation: the new secret first and the
    /// old one after it, then remove the old one once the sender no longer signs with it. The
    /// order matters for idempotency keys: a delivery that several secrets verify counts under
    /// the one given last (see [`with_endpoint`](Self::with_endpoint)).
    ///
    /// [`build`](Self::build) fails with [`ConfigError::EmptySecret`] or
    /// [`ConfigError::InvalidSecretEncoding`] when the text is not a secret of the scheme.
    pub fn with_secret(self, text: &str) -> Self {
        match self.scheme.secret(text) {
            Ok(secret) => self.with_secrets(secret),
            Err(error) => self.fail(error),
        }
    }

    /// Accepts deliveries signed with any of `secrets` (a [`Secret`](crate::Secret) or
    /// [`Secrets`]), already decoded, added after those given before.
    ///
    /// [`build`](Self::build) fails with [`ConfigError::SecretFormatMismatch`] when one was
    /// decoded for another format than the scheme's (a raw [`Secret::new`](crate::Secret::new)
    /// key for Standard Webhooks): prefer [`with_secret`](Self::with_secret), which lets the
    /// scheme decode the text.
    pub fn with_secrets(mut self, secrets: impl Into<Secrets>) -> Self {
        let secrets = secrets.into();
        self.secrets = Some(match self.secrets.take() {
            Some(mut before) => {
                before.extend(secrets);
                before
            }
            None => secrets,
        });
        self
    }

    /// Remembers a secret no longer accepted, written as `text` (the scheme decodes it), once
    /// a rotation is over: a delivery it signs is still refused (`401 signature_mismatch`,
    /// the same answer as any wrong signature), and the refusal's reason says "the signature
    /// matches a previous secret" ([`Reason::PreviousSecret`](crate::error::Reason), in the
    /// log line and the [`Rejection`](crate::Rejection)), so a sender that did not switch is
    /// told apart from a forgery. Retired secrets are tried only on that refusal path.
    ///
    /// Needs at least one accepted secret ([`with_secret`](Self::with_secret)); a per-tenant
    /// resolver gives each tenant's retired secrets with [`Secrets::with_retired`].
    pub fn with_retired_secret(self, text: &str) -> Self {
        match self.scheme.secret(text) {
            Ok(secret) => {
                let mut builder = self;
                builder.retired.push(secret);
                builder
            }
            Err(error) => self.fail(error),
        }
    }

    /// Makes the layer per tenant, for a receiver serving many customers each with its own
    /// secret: `resolver` picks each request's tenant and its secrets (see
    /// [`SecretResolver`]). Idempotency keys are scoped by tenant.
    ///
    /// The resolver picks every request's secrets, so [`build`](Self::build) fails with
    /// [`ConfigError::SecretsWithResolver`] when static secrets were given too. A tenant's
    /// secrets must be decoded the way the scheme decodes them ([`Scheme::secret`]); since that
    /// can only be seen at request time, a tenant whose secrets are of another format is
    /// logged as an error and answered `503 secrets_unavailable`.
    pub fn with_resolver(mut self, resolver: impl SecretResolver) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// How long the [`with_resolver`](Self::with_resolver) resolver may take to answer
    /// (default 5 s, well within the 10 to 30 s senders wait for an answer); past it the
    /// answer is `503 secrets_unavailable` with `Retry-After`, so the sender retries later. No
    /// effect without a resolver.
    ///
    /// [`build`](Self::build) fails with [`ConfigError::InvalidDuration`] when `timeout` is
    /// zero or over 100 years.
    pub fn with_resolver_timeout(mut self, timeout: Duration) -> Self {
        match checked(timeout, "WebhookLayerBuilder::with_resolver_timeout") {
            Ok(timeout) => self.resolver_timeout = timeout,
            Err(error) => return self.fail(error),
        }
        self
    }

    /// The `Retry-After` of a `503 secrets_unavailable` answer, when the resolver fails or
    /// times out (default 30 s). Sent in whole seconds, rounded up, between 1 s and about
    /// 68 years (see [`Rejection::with_retry_after`](crate::Rejection::with_retry_after)).
    pub fn with_resolver_retry_after(mut self, after: Duration) -> Self {
        self.resolver_retry_after = after;
        self
    }

    /// The clock the freshness checks read (default: the system clock). Tests pin it.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The largest body accepted, in bytes (default 1 MiB). A larger `Content-Length` is
    /// refused before reading; a streamed body is cut when it passes the limit. Never more than
    /// the limit is buffered.
    pub fn with_body_limit(mut self, limit: NonZeroUsize) -> Self {
        self.body_limit = limit;
        self
    }

    /// How long a client may take to send the body once the request reached the layer (default
    /// 10 s); past it the answer is `408 body_timeout`.
    ///
    /// [`build`](Self::build) fails with [`ConfigError::InvalidDuration`] when `timeout` is
    /// zero or over 100 years.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        match checked(timeout, "WebhookLayerBuilder::with_body_timeout") {
            Ok(timeout) => self.body_timeout = Some(timeout),
            Err(error) => return self.fail(error),
        }
        self
    }

    /// **Risky.** Waits for the body as long as the client takes: a stalled client then holds
    /// its connection and buffer for as long as the server lets it.
    pub fn without_body_timeout(mut self) -> Self {
        self.body_timeout = None;
        self
    }

    /// The idempotency guard (default: an in-memory store with default timings, for one
    /// process).
    pub fn with_idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = Some(idempotency);
        self
    }

    /// Shorthand for [`with_idempotency`](Self::with_idempotency)`(Idempotency::new(store))`.
    pub fn with_store(self, store: impl IdempotencyStore) -> Self {
        self.with_idempotency(Idempotency::new(store))
    }

    /// **Risky.** Turns the idempotency guard off: every authentic delivery, retries included,
    /// reaches the handler, which must then deduplicate by itself.
    pub fn without_idempotency(mut self) -> Self {
        self.idempotency = None;
        self
    }

    /// Inbox mode: each verified delivery is stored in `inbox` and answered
    /// `200 {"status":"accepted"}` once the store has committed it, instead of being handed to
    /// the inner service; [`Workers`](crate::inbox::Workers) then run the handlers (the same
    /// service, with the same extractors), with retries and dead letters. Remove this line to
    /// handle deliveries inline again.
    ///
    /// A delivery is stored under the key the idempotency guard would use (per endpoint, see
    /// [`with_endpoint`](Self::with_endpoint)), with its raw body, its verified facts, its path
    /// (the full one it was sent to, a nested axum router's prefix included; not the query
    /// string) and the headers the scheme reads (and `Content-Type`), never a
    /// credential ([`is_never_stored`](crate::inbox::is_never_stored)). Nothing is stored before
    /// the signature verified. A key stored already (pending, running, done or dead) is
    /// answered as a duplicate (the idempotency configuration's
    /// [`on_duplicate`](Idempotency::on_duplicate) answer, if any), and the handler does not
    /// run again. An inbox that fails, or does not answer within its timeout, is answered
    /// `503 inbox_unavailable`; a full one `503 inbox_full`; both with `Retry-After`
    /// ([`with_inbox_retry_after`](Self::with_inbox_retry_after)), so the sender retries and
    /// nothing acknowledged is lost.
    ///
    /// The idempotency guard's store is not used in inbox mode: the inbox deduplicates.
    pub fn with_inbox(self, inbox: impl InboxBackend) -> Self {
        self.with_shared_inbox(Arc::new(inbox))
    }

    /// As [`with_inbox`](Self::with_inbox), with an inbox shared with other code.
    pub fn with_shared_inbox(mut self, inbox: Arc<dyn InboxBackend>) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// The inbox's name in the metrics: the `inbox` label of the accepted and duplicate
    /// counters (default [`DEFAULT_INBOX_NAME`], `default`). Give the inbox's
    /// [`Workers`](crate::inbox::Workers) the same one
    /// ([`with_name`](crate::inbox::Workers::with_name)). A few characters the application
    /// chooses (`billing`), never a value that comes with requests: each name is a series of
    /// its own. No effect without [`with_inbox`](Self::with_inbox). See [`observe`](crate::observe).
    pub fn with_inbox_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.inbox_name = name.into();
        self
    }

    /// The `Retry-After` of a `503 inbox_unavailable` or `503 inbox_full` answer (default
    /// 30 s). Sent in whole seconds, rounded up (see
    /// [`Rejection::with_retry_after`](crate::Rejection::with_retry_after)). No effect without
    /// [`with_inbox`](Self::with_inbox).
    pub fn with_inbox_retry_after(mut self, after: Duration) -> Self {
        self.inbox_retry_after = after;
        self
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
    pub fn with_endpoint(mut self, name: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"tower-webhook endpoint name v1\0");
        hasher.update(name.as_bytes());
        let mut fingerprint = Fingerprint::default();
        fingerprint.copy_from_slice(&hasher.finalize()[..16]);
        self.endpoint = Some(fingerprint);
        self
    }

    /// The public URL senders call this endpoint through, for the schemes that sign the URL
    /// (Square, Twilio): `https://`, the host as the sender writes it (and its port, if not the
    /// scheme's default), and the path prefix a proxy strips before the request reaches the app
    /// (usually none): `https://example.com`. The request's own path and query follow it (the
    /// full path inside a nested axum router), so one layer serves any route. The URL is never
    /// taken from the request's `Host` or `Forwarded` headers, which the sender of a forged
    /// request chooses; see [`with_trusted_proxy`](Self::with_trusted_proxy) for a proxy that
    /// sets them.
    ///
    /// [`build`](Self::build) fails with [`ConfigError::InvalidPublicUrl`] for anything else
    /// (a query, a fragment, another scheme), and with [`ConfigError::PublicUrlRequired`] when
    /// the scheme signs the URL and neither this nor `with_trusted_proxy` was called.
    pub fn with_public_url(mut self, base: &str) -> Self {
        match PublicUrl::base(base) {
            Ok(url) => self.public_url = Some(url),
            Err(error) => return self.fail(error),
        }
        self
    }

    /// **Risky.** Takes the public URL's scheme and host from the request's `Forwarded`
    /// header (else `X-Forwarded-Proto` and `X-Forwarded-Host`, else `Host` over `http`), for
    /// a receiver behind a proxy you control that **sets** these headers on every request
    /// (replacing what the client sent). Without such a proxy, anyone can choose the URL a
    /// signature is checked against; prefer [`with_public_url`](Self::with_public_url).
    pub fn with_trusted_proxy(mut self) -> Self {
        self.public_url = Some(PublicUrl::TrustedProxy);
        self
    }

    /// The verify token of an unsigned subscription handshake (Meta's `hub.verify_token`, the
    /// value you typed when subscribing): a `GET` carrying it, compared in constant time, is
    /// answered with its `hub.challenge`; any other token gets `403 verify_token_mismatch`. Only
    /// the schemes with such a handshake ([`Scheme::meta`]) read it.
    ///
    /// [`build`](Self::build) fails with [`ConfigError::EmptyVerifyToken`] for an empty token.
    pub fn with_verify_token(mut self, token: &str) -> Self {
        if token.is_empty() {
            return self.fail(ConfigError::EmptyVerifyToken);
        }
        self.verify_token = Some(token.as_bytes().into());
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    /// The first mistake an option made (see each option), then:
    /// - [`ConfigError::NoSecret`] with neither secrets nor a resolver;
    /// - [`ConfigError::SecretsWithResolver`] with both (retired secrets included);
    /// - [`ConfigError::SecretFormatMismatch`] when a secret given to
    ///   [`with_secrets`](Self::with_secrets) was decoded for another format than the scheme's,
    ///   or [`ConfigError::SecretAlgorithmMismatch`] for another algorithm;
    /// - [`ConfigError::FeatureDisabled`] when the scheme's algorithm needs a Cargo feature this
    ///   build does not have;
    /// - [`ConfigError::PublicUrlRequired`] when the scheme signs the URL and the layer has no
    ///   public URL.
    pub fn build(self) -> Result<WebhookLayer, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let algorithm = self.scheme.algorithm();
        if let Some(feature) = algorithm.feature().filter(|_| !algorithm.is_built()) {
            return Err(ConfigError::FeatureDisabled { algorithm, feature });
        }
        if self.scheme.signs_url() && self.public_url.is_none() {
            return Err(ConfigError::PublicUrlRequired {
                scheme: self.scheme.name().to_owned(),
            });
        }
        let secrets = match (self.secrets, self.resolver) {
            (Some(secrets), None) => {
                let secrets = self
                    .retired
                    .into_iter()
                    .fold(secrets, Secrets::with_retired);
                secrets.check_format(self.scheme.secret_format(), algorithm)?;
                SecretSource::Static(secrets)
            }
            (None, Some(_)) if !self.retired.is_empty() => {
                return Err(ConfigError::SecretsWithResolver)
            }
            (None, Some(resolver)) => SecretSource::Resolver(resolver),
            (None, None) => return Err(ConfigError::NoSecret),
            (Some(_), Some(_)) => return Err(ConfigError::SecretsWithResolver),
        };
        let mut metrics = Metrics::new(self.scheme.shared_name());
        let guard = match (self.inbox, self.idempotency) {
            (Some(inbox), idempotency) => {
                metrics = metrics.with_inbox(&InboxName::new(self.inbox_name));
                // Only the idempotency configuration's duplicate answer is used.
                let on_duplicate = match idempotency {
                    Some(idempotency) => idempotency.on_duplicate,
                    None => Arc::new(AcknowledgeDuplicate),
                };
                Guard::Inbox(InboxMode::new(
                    inbox,
                    &self.scheme,
                    self.inbox_retry_after,
                    on_duplicate,
                ))
            }
            (None, Some(idempotency)) => Guard::Idempotency(idempotency),
            (None, None) => Guard::Off,
        };
        Ok(WebhookLayer::from_config(Config {
            metrics,
            guard,
            scheme: self.scheme,
            secrets,
            body_limit: self.body_limit.get(),
            body_timeout: self.body_timeout,
            endpoint: self.endpoint,
            resolver_timeout: self.resolver_timeout,
            resolver_retry_after: self.resolver_retry_after,
            clock: self.clock,
            public_url: self.public_url,
            verify_token: self.verify_token,
        }))
    }
}
