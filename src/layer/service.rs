use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{request, HeaderMap, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower_service::Service;
use tracing::Instrument;

use super::body::ResponseBody;
use super::builder::{Config, SecretSource};
use super::future::ResponseFuture;
use crate::error::{Rejection, RejectionKind};
use crate::idempotency::{Held, IdempotencyKey, Reservation};
use crate::meta::WebhookMeta;
use crate::observe::Observation;
use crate::scheme::{Described, Scheme};
use crate::verify::{unix_seconds, BodyMac};

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

/// The verified body, and the raw `data` of a Sotion envelope, for the `Verified<T>` and
/// `Envelope<T>` extractors (one extension, so one allocation).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) struct VerifiedBody {
    pub(crate) body: Bytes,
    pub(crate) envelope_data: Option<Bytes>,
}

/// The default `Retry-After` of a `503 secrets_unavailable` answer.
const RESOLVER_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

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
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Only the service that was polled ready may be called: take it, leave a clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        let span = self.config.metrics.span();
        ResponseFuture::new(handle(self.config.clone(), inner, request, started).instrument(span))
    }
}

async fn handle<S, ReqBody, ResBody>(
    config: Arc<Config>,
    mut inner: S,
    request: Request<ReqBody>,
    started: Instant,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    let observation = Observation::new(&config.metrics, started);
    let (mut parts, body) = request.into_parts();
    let (body, Described { meta, data }) = match verify_request(&config, &parts, body).await {
        Ok(verified) => verified,
        Err(rejection) => return Ok(reject(&observation, &rejection)),
    };
    observation.verified(&meta);
    // The request for the inner service: the same bytes, and what was verified.
    let into_request = move |meta: WebhookMeta| {
        parts.extensions.insert(VerifiedBody {
            body: body.clone(),
            envelope_data: data,
        });
        parts.extensions.insert(meta);
        Request::from_parts(parts, Full::new(body))
    };

    let Some(idempotency) = &config.idempotency else {
        return call_inner(&mut inner, into_request(meta), &observation).await;
    };
    let key = IdempotencyKey::for_delivery(&meta);
    let held = match idempotency.store.reserve(&key, idempotency.lease).await {
        Ok(Reservation::New(token)) => Held::new(&idempotency.store, key, token),
        Ok(Reservation::Done) => {
            observation.duplicate();
            return Ok(layer_response(idempotency.duplicate_response(&meta)));
        }
        Ok(Reservation::InFlight) => {
            let rejection = Rejection::new(
                RejectionKind::InFlight,
                "this event is being handled by another delivery; retry later",
            )
            .with_retry_after(idempotency.in_flight_retry_after);
            return Ok(reject(&observation, &rejection));
        }
        Err(error) if idempotency.fail_open => {
            crate::observe::store_error("reserve");
            tracing::warn!(%error, "idempotency store unavailable; failing open as configured");
            return call_inner(&mut inner, into_request(meta), &observation).await;
        }
        Err(error) => {
            tracing::error!(%error, "idempotency store unavailable; answering 503");
            let rejection = Rejection::new(
                RejectionKind::StoreUnavailable,
                "the receiver cannot record deliveries right now; retry later",
            )
            .with_retry_after(idempotency.unavailable_retry_after);
            return Ok(reject(&observation, &rejection));
        }
    };
    let request = into_request(meta);

    // `held` releases the reservation if this future is dropped or the handler panics.
    let result = inner.call(request).await;
    let succeeded = matches!(&result, Ok(response) if response.status().is_success());
    if succeeded {
        held.complete(idempotency.ttl).await;
    } else {
        held.release().await;
    }
    observation.handled(succeeded);
    result.map(|response| response.map(ResponseBody::inner))
}

async fn call_inner<S, ResBody>(
    inner: &mut S,
    request: Request<Full<Bytes>>,
    observation: &Observation<'_>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
{
    let result = inner.call(request).await;
    observation.handled(matches!(&result, Ok(response) if response.status().is_success()));
    Ok(result?.map(ResponseBody::inner))
}

fn reject<B>(observation: &Observation<'_>, rejection: &Rejection) -> Response<ResponseBody<B>> {
    observation.rejected(rejection);
    layer_response(rejection.to_response())
}

fn layer_response<B>(response: Response<Full<Bytes>>) -> Response<ResponseBody<B>> {
    response.map(ResponseBody::layer)
}

/// Steps 1 to 5 of the module docs: everything up to the idempotency guard.
async fn verify_request<B: Body>(
    config: &Config,
    parts: &request::Parts,
    body: B,
) -> Result<(Bytes, Described), Rejection> {
    let scheme = &config.scheme;
    let headers = scheme.headers(&parts.headers);
    let prepared = scheme.prepare(&headers)?;
    check_declared_length(&parts.headers, &body, config.body_limit)?;
    Scheme::check_content_encoding(&parts.headers)?;

    let (mut mac, tenant) = match &config.secrets {
        SecretSource::Static(secrets) => (BodyMac::new(secrets, &prepared.prefix), None),
        SecretSource::Resolver(resolver) => match resolver.resolve(parts).await {
            Ok(Some(tenant)) => {
                let (id, secrets) = tenant.into_parts();
                (BodyMac::new(&secrets, &prepared.prefix), Some(id))
            }
            Ok(None) => return Err(MISMATCH),
            Err(error) => {
                tracing::error!(%error, "secret resolver failed; answering 503");
                return Err(Rejection::new(
                    RejectionKind::SecretsUnavailable,
                    "the receiver cannot look up its secrets right now; retry later",
                )
                .with_retry_after(RESOLVER_RETRY_AFTER));
            }
        },
    };
    let bytes = {
        let mut reading = std::pin::pin!(read_body(body, config.body_limit, &mut mac));
        // A small body usually arrives with the headers: poll once before arming a timer, so
        // most requests never touch the runtime's timer wheel.
        let first = std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await;
        match (first, config.body_timeout) {
            (Poll::Ready(result), _) => result?,
            (Poll::Pending, Some(timeout)) => {
                tokio::time::timeout(timeout, reading).await.map_err(|_| {
                    Rejection::new(
                        RejectionKind::BodyTimeout,
                        "the body did not arrive in time",
                    )
                })??
            }
            (Poll::Pending, None) => reading.await?,
        }
    };
    mac.finish(&prepared.candidates)?;
    // Only a scheme with a tolerance compares times: the others never read the clock.
    let now = match scheme.tolerance {
        Some(_) => unix_seconds(config.clock.now()),
        None => 0,
    };
    scheme.check_prepared_timestamp(&prepared, now)?;
    let mut described = scheme.describe(&headers, &bytes, &prepared, now)?;
    described.meta.tenant = tenant;
    Ok((bytes, described))
}

/// The same answer as a wrong signature, so that the endpoint does not reveal which tenants
/// exist.
const MISMATCH: Rejection = Rejection::new(
    RejectionKind::SignatureMismatch,
    "the signature does not match the body for any configured secret",
);

const TOO_LARGE: Rejection = Rejection::new(
    RejectionKind::PayloadTooLarge,
    "the body is larger than this receiver accepts",
);

/// Refuses a body whose declared length is over the limit, before reading any of it.
fn check_declared_length<B: Body>(
    headers: &HeaderMap,
    body: &B,
    limit: usize,
) -> Result<(), Rejection> {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) || body.size_hint().lower() > limit {
        return Err(TOO_LARGE);
    }
    Ok(())
}

/// Reads the body frame by frame, feeding each data frame to the MACs, and stops as soon as it
/// passes `limit`: never more than `limit` bytes are kept.
async fn read_body<B: Body>(body: B, limit: usize, mac: &mut BodyMac) -> Result<Bytes, Rejection> {
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            Rejection::new(
                RejectionKind::BodyReadFailed,
                "the body could not be read to its end",
            )
        })?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers are not signed; ignore them
        };
        let len = data.remaining();
        total = total.saturating_add(len);
        if total > limit {
            return Err(TOO_LARGE);
        }
        let chunk = data.copy_to_bytes(len);
        mac.update(&chunk);
        // One frame (the common case) is kept as it is, without a copy.
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(head), None) => {
                let mut buffer = BytesMut::with_capacity(head.len() + chunk.len());
                buffer.extend_from_slice(head);
                buffer.extend_from_slice(&chunk);
                rest = Some(buffer);
            }
            (Some(_), Some(buffer)) => buffer.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buffer)) => buffer.freeze(),
        (Some(head), None) => head,
        (None, None) => Bytes::new(),
    })
}
