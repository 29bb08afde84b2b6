use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{request, HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use super::body::{LayerBody, ResponseBody};
use super::config::{Config, Guard, SecretSource};
use super::future::{Admission, ResponseFuture};
use super::inbox::Stored;
use super::read::{check_declared_length, read_body_in_time};
use crate::error::{Reason, Rejection, RejectionKind};
use crate::idempotency::{IdempotencyKey, Reservation, Reserved, StoreError};
use crate::meta::WebhookMeta;
use crate::observe::Observation;
use crate::scheme::{BodyForm, Described};
use crate::secret::{Secret, SecretResolver, Secrets, Tenant};
use crate::verify::Pipeline;

/// The middleware built by [`WebhookLayer`](super::WebhookLayer): verifies each request, then
/// calls the inner service with the verified body (`Full<Bytes>`, the exact bytes received)
/// and a [`WebhookMeta`](crate::WebhookMeta) in the request's extensions.
#[derive(Debug, Clone)]
pub struct WebhookService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> WebhookService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The verified body, the event's JSON (the body itself, or what its form carries), and the
/// raw `data` of a Sotion envelope, for the `Verified<T>`, `Event<T>` and `Envelope<T>`
/// extractors (one extension, so one allocation).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) struct VerifiedBody {
    /// The raw bytes whose signature verified.
    pub(crate) body: Bytes,
    /// The event's JSON (see [`BodyForm`]).
    pub(crate) event: Bytes,
    pub(crate) envelope_data: Option<Bytes>,
}

impl VerifiedBody {
    /// The verified body of a stored delivery, read again as verification read it: its form
    /// from the stored `Content-Type` (as the layer decided it), and for an envelope
    /// (Sotion's; its facts then carry a `version`) its raw `data`.
    pub(crate) fn stored(body: Bytes, content_type: Option<&HeaderValue>, envelope: bool) -> Self {
        #[derive(serde::Deserialize)]
        struct Data<'a> {
            #[serde(borrow)]
            data: &'a serde_json::value::RawValue,
        }
        // A stored delivery passed the layer's check, so its form is known; were it not, the
        // raw body is what a reader gets.
        let event = BodyForm::of_content_type(content_type)
            .unwrap_or(BodyForm::Json)
            .event_json(&body);
        let envelope_data = envelope
            .then(|| serde_json::from_slice::<Data<'_>>(&event).ok())
            .flatten()
            .map(|Data { data }| Bytes::copy_from_slice(data.get().as_bytes()));
        Self {
            body,
            event,
            envelope_data,
        }
    }

    /// A verified JSON body (the testing helpers').
    #[cfg(feature = "testing")]
    pub(crate) fn json(body: Bytes, envelope_data: Option<Bytes>) -> Self {
        Self {
            event: body.clone(),
            body,
            envelope_data,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for WebhookService<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S>;

    /// Always ready: the inner service is made ready by each request's future, once the
    /// delivery is verified and reserved, so that requests still being read or refused (a forged
    /// one, a stalled upload) never hold its capacity (a concurrency-limit permit, a buffer
    /// slot). Backpressure from the inner service therefore applies to verified deliveries only.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The response future makes the inner service ready, then calls it: it takes this one
        // and leaves a clone for the next request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        let span = self.config.metrics.span();
        let (parts, body) = request.into_parts();
        let admitting = Box::pin(admit(self.config.clone(), parts, body, started));
        ResponseFuture::new(admitting, inner, started, span)
    }
}

/// Verification, then the idempotency guard: steps 1 to 6 of the module docs. Runs in the box
/// the response future polls; the inner service's future is kept apart, unboxed.
#[allow(clippy::manual_async_fn)] // not an `async fn`: see BENCHMARKS.md ("the future")
fn admit<B: Body>(
    config: Arc<Config>,
    parts: request::Parts,
    body: B,
    started: Instant,
) -> impl Future<Output = Admission> {
    async move {
        if parts.extensions.get::<super::FromInbox>().is_some() {
            // The inbox's workers: the delivery was verified when it was stored, and its
            // request carries the verified body and meta already.
            if let Some(verified) = parts.extensions.get::<VerifiedBody>() {
                let body = Full::new(verified.body.clone());
                return Admission::Call(Request::from_parts(parts, body), None, config);
            }
        }
        let observation = Observation::new(&config.metrics, started);
        // An unsigned handshake (Meta's, Graph's) is answered before anything else.
        let unsigned = config.scheme.handshake.and_then(|handshake| {
            handshake.answer_unsigned(&parts, config.verify_token.as_deref())
        });
        match unsigned {
            Some(Ok(answer)) => {
                observation.handshake();
                return Admission::Answer(answer.map(LayerBody::full));
            }
            Some(Err(rejection)) => return Admission::Answer(reject(&observation, &rejection)),
            None => {}
        }
        let (body, Described { meta, event, data }) =
            match verify_request(&config, &parts, body).await {
                Ok(Verified::Delivery(body, described)) => (body, described),
                Ok(Verified::Handshake(answer)) => {
                    // Answered by the layer: never stored, never handed to the handler.
                    observation.handshake();
                    return Admission::Answer(answer.map(LayerBody::full));
                }
                Err(rejection) => return Admission::Answer(reject(&observation, &rejection)),
            };
        observation.verified(&meta);
        let verified = VerifiedBody {
            body,
            event,
            envelope_data: data,
        };
        let idempotency = match &config.guard {
            Guard::Idempotency(idempotency) => idempotency,
            Guard::Off => {
                return Admission::Call(inner_request(parts, verified, meta), None, config);
            }
            Guard::Inbox(inbox) => {
                let stored = super::inbox::store(inbox, &parts, verified.body, &meta).await;
                return Admission::Answer(match stored {
                    Stored::New(response) => {
                        observation.stored();
                        response
                    }
                    Stored::Duplicate(response) => {
                        observation.stored_already();
                        response
                    }
                    Stored::Refused(rejection) => reject(&observation, &rejection),
                });
            }
        };
        let key = IdempotencyKey::for_delivery(&meta);
        let reserved = match idempotency.store.reserve(&key, idempotency.lease).await {
            Ok(Reservation::New(token)) => Some(Reserved::new(key, token)),
            Ok(Reservation::Done) => {
                observation.duplicate();
                return Admission::Answer(idempotency.duplicate_response(&meta));
            }
            Ok(Reservation::InFlight) => {
                let rejection = Rejection::new(
                    RejectionKind::InFlight,
                    "this event is being handled by another delivery; retry later",
                )
                .with_retry_after(idempotency.in_flight_retry_after);
                return Admission::Answer(reject(&observation, &rejection));
            }
            // A full store protects the process's memory: no outage, so never bypassed.
            Err(error) if idempotency.fail_open && !matches!(error, StoreError::Full) => {
                crate::observe::store_error("reserve");
                crate::observe::warn!(
                    %error,
                    "idempotency store unavailable; failing open as configured"
                );
                None
            }
            Err(error) => {
                crate::observe::error!(%error, "idempotency store unavailable; answering 503");
                let rejection = Rejection::new(
                    RejectionKind::StoreUnavailable,
                    "the receiver cannot record deliveries right now; retry later",
                )
                .with_retry_after(idempotency.unavailable_retry_after);
                return Admission::Answer(reject(&observation, &rejection));
            }
        };
        Admission::Call(inner_request(parts, verified, meta), reserved, config)
    }
}

/// The request for the inner service: the same bytes, and what was verified.
fn inner_request(
    mut parts: request::Parts,
    verified: VerifiedBody,
    meta: WebhookMeta,
) -> Request<Full<Bytes>> {
    let body = verified.body.clone();
    parts.extensions.insert(verified);
    parts.extensions.insert(meta);
    Request::from_parts(parts, Full::new(body))
}

fn reject(observation: &Observation<'_>, rejection: &Rejection) -> Response<LayerBody> {
    observation.rejected(rejection);
    rejection.to_response().map(LayerBody::full)
}

/// What a verified request is: a delivery for the handler, or a handshake the layer answered.
// Not boxed: the delivery is the common case, and lives only until it is admitted.
#[allow(clippy::large_enum_variant)]
enum Verified {
    Delivery(Bytes, Described),
    Handshake(Response<Full<Bytes>>),
}

/// Steps 1 to 5 of the module docs, the crate's one verification [`Pipeline`] with the
/// layer's own steps between: the declared length, the tenant's secrets, reading the body;
/// then, for a scheme whose sender signs its handshakes, the handshake answer.
#[allow(clippy::manual_async_fn)] // not an `async fn`: see BENCHMARKS.md ("the future")
fn verify_request<'a, B: Body + 'a>(
    config: &'a Config,
    parts: &'a request::Parts,
    body: B,
) -> impl Future<Output = Result<Verified, Rejection>> + 'a {
    async move {
        let url = match &config.public_url {
            Some(public) if config.scheme.signs_url() => Some(public.signed_url(parts)?),
            _ => None,
        };
        let pipeline = Pipeline::start(&config.scheme, &parts.headers, url.as_deref())?;
        check_declared_length(&parts.headers, &body, config.body_limit)?;
        let mut tenant_secrets = None;
        let (mut check, tenant, unknown_tenant) = match &config.secrets {
            SecretSource::Static(secrets) => {
                (pipeline.with_secrets(Cow::Borrowed(secrets)), None, false)
            }
            SecretSource::Resolver(resolver) => {
                match resolve(config, resolver.as_ref(), parts).await? {
                    Some(tenant) => {
                        let (id, secrets) = config.tenant_secrets(tenant)?;
                        // Kept for a signed handshake's answer (Zoom's is a MAC under the secret
                        // that verified it).
                        tenant_secrets = config.scheme.handshake.map(|_| secrets.clone());
                        (pipeline.with_secrets(Cow::Owned(secrets)), Some(id), false)
                    }
                    // No such tenant: the body is read exactly as for a known one (same limit,
                    // timeout and answers), MACed with a key nobody has, then refused as a wrong
                    // signature: no answer without a valid signature tells whether it exists.
                    None => (
                        pipeline.with_secrets(Cow::Borrowed(&UNKNOWN_TENANT)),
                        None,
                        true,
                    ),
                }
            }
        };
        let bytes = read_body_in_time(body, config, &mut check).await?;
        let signed = check.finish(|| config.clock.now(), &bytes);
        if unknown_tenant {
            return Err(MISMATCH.with_reason(Reason::UnknownTenant));
        }
        let signed = signed?;
        let verified_by = signed.verified_by;
        if let Some(handshake) = config.scheme.handshake.filter(|h| h.is_signed()) {
            let secrets = match (&tenant_secrets, &config.secrets) {
                (Some(secrets), _) | (None, SecretSource::Static(secrets)) => Some(secrets),
                (None, SecretSource::Resolver(_)) => None,
            };
            let secret =
                secrets.and_then(|secrets| secrets.iter().find(|s| s.fingerprint() == verified_by));
            if let Some(answer) = handshake.answer_signed(&parts.headers, &bytes, secret) {
                return Ok(Verified::Handshake(answer));
            }
        }
        let mut described = signed.describe(&parts.headers, &bytes)?;
        described.meta.tenant = tenant;
        described.meta.key.endpoint = config.endpoint.unwrap_or(verified_by);
        Ok(Verified::Delivery(bytes, described))
    }
}

/// Asks the resolver for the request's tenant, within the configured time: a resolver that
/// fails or does not answer in time is answered `503 secrets_unavailable` with `Retry-After`.
async fn resolve(
    config: &Config,
    resolver: &dyn SecretResolver,
    parts: &request::Parts,
) -> Result<Option<Tenant>, Rejection> {
    let unavailable = || {
        Rejection::new(
            RejectionKind::SecretsUnavailable,
            "the receiver cannot look up its secrets right now; retry later",
        )
        .with_retry_after(config.resolver_retry_after)
    };
    let answer = tokio::time::timeout(config.resolver_timeout, resolver.resolve(parts))
        .await
        .map_err(|_| {
            crate::observe::error!(
                timeout = ?config.resolver_timeout,
                "secret resolver did not answer in time; answering 503"
            );
            unavailable()
        })?;
    answer.map_err(|error| {
        crate::observe::error!(%error, "secret resolver failed; answering 503");
        unavailable()
    })
}

/// The secrets an unknown tenant's body is hashed with: a key nobody has.
static UNKNOWN_TENANT: LazyLock<Secrets> = LazyLock::new(|| Secrets::new(Secret::throwaway()));

/// The same answer as a wrong signature, so that the endpoint does not reveal which tenants
/// exist.
const MISMATCH: Rejection = Rejection::new(
    RejectionKind::SignatureMismatch,
    "the signature does not match the body for any configured secret",
);
