//! What a [`WebhookLayer`](super::WebhookLayer) holds: the configuration every request reads.

use std::sync::Arc;
use std::time::Duration;

use super::inbox::InboxMode;
use super::public_url::PublicUrl;
use crate::clock::Clock;
use crate::error::{Rejection, RejectionKind};
use crate::idempotency::Idempotency;
use crate::observe::Metrics;
use crate::scheme::Scheme;
use crate::secret::{Fingerprint, SecretResolver, Secrets, Tenant};

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
