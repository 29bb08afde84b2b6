use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::{join, ready as ready_future, Join, Ready};
use http::{Request, Response};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tokio::task::JoinHandle;
use tower_service::Service;

use super::body::{LayerBody, ResponseBody};
use super::config::Config;
use crate::idempotency::{Idempotency, Reserved};
use crate::observe::Observation;

/// What the layer decided before the inner service: call it, or answer itself.
pub(crate) enum Admission {
    /// Verified (and, with a store, reserved): call the inner service with this request. The
    /// configuration comes back with it, for the steps after the call.
    Call(Request<Full<Bytes>>, Option<Reserved>, Arc<Config>),
    /// The layer's own answer: a rejection, a duplicate, a conflict.
    Answer(Response<LayerBody>),
}

/// Verification and the idempotency guard, up to the decision. Boxed: its type depends on the
/// request's body type, which the response future's type does not name.
pub(crate) type Admitting = Pin<Box<dyn Future<Output = Admission> + Send>>;

pin_project! {
    /// The response future of [`WebhookService`](super::WebhookService), for the inner service
    /// `S`.
    ///
    /// It verifies the delivery and takes its reservation, makes the inner service ready (only
    /// then: an unverified request never holds the inner service's capacity), calls it (holding
    /// its future as is, unboxed), then completes or releases the reservation.
    ///
    /// The reservation is completed when the inner service answers a `2xx` **head**: that answer
    /// is the handler's verdict that the event was handled (an axum handler builds its response
    /// after its work). A response body that fails to stream afterwards is a transport failure:
    /// the sender retries and is answered as a duplicate, which is right, since the work was
    /// done; completing at the body's end instead would run the handler twice.
    ///
    /// Dropping it before the handler answered (the client went away, a timeout layer fired)
    /// drops the handler's future first, then releases the event's reservation, so the sender's
    /// retry is processed, and never while the cancelled handler's destructors still run.
    pub struct ResponseFuture<S>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        #[pin]
        state: State<S::Future, Result<S::Response, S::Error>>,
        // The inner service, made ready and called once the delivery is admitted.
        inner: S,
        // Set when admitted (the admission owned it until then: one reference per request).
        config: Option<Arc<Config>>,
        started: Instant,
        span: crate::observe::Span,
        reserved: Option<Reserved>,
    }

    impl<S> PinnedDrop for ResponseFuture<S>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let idempotency = this.config.as_deref().and_then(Config::idempotency);
            // Released when this guard goes, after the handler's future: even if dropping that
            // future panics.
            let _release = Abandon(this.reserved.take().zip(idempotency));
            // The handler's future goes first, in place: its destructors (a transaction's
            // rollback, a guard) belong to this run, and the retry must not start before them.
            this.state.set(State::Done);
        }
    }
}

/// Releases the reservation of a dropped response future, when dropped itself.
struct Abandon<'a>(Option<(Reserved, &'a Idempotency)>);

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some((reserved, idempotency)) = self.0.take() {
            reserved.abandon(&idempotency.store);
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R> {
        Admitting { admitting: Admitting },
        /// Admitted: the inner service is made ready, then called with `request`.
        Readying { request: Request<Full<Bytes>> },
        Calling { #[pin] future: F },
        /// A store doing I/O records the outcome on its own task; the answer waits for it.
        Finishing {
            #[pin]
            finishing: Join<JoinHandle<()>, Ready<R>>,
            succeeded: bool,
        },
        Done,
    }
}

impl<S> ResponseFuture<S>
where
    S: Service<Request<Full<Bytes>>>,
{
    pub(crate) fn new(
        admitting: Admitting,
        inner: S,
        started: Instant,
        span: crate::observe::Span,
    ) -> Self {
        Self {
            state: State::Admitting { admitting },
            inner,
            config: None,
            started,
            span,
            reserved: None,
        }
    }
}

impl<S, B> Future for ResponseFuture<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            let result = match this.state.as_mut().project() {
                StateProj::Admitting { admitting } => match ready!(admitting.as_mut().poll(cx)) {
                    Admission::Answer(response) => {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(response.map(ResponseBody::layer)));
                    }
                    Admission::Call(request, reserved, config) => {
                        *this.reserved = reserved;
                        *this.config = Some(config);
                        this.state.set(State::Readying { request });
                        continue;
                    }
                },
                StateProj::Readying { request } => match ready!(this.inner.poll_ready(cx)) {
                    Ok(()) => {
                        // The request's place is left empty (no allocation): it is never read.
                        let future = this.inner.call(std::mem::take(request));
                        this.state.set(State::Calling { future });
                        continue;
                    }
                    Err(error) => Err(error),
                },
                StateProj::Calling { future } => ready!(future.poll(cx)),
                StateProj::Finishing {
                    finishing,
                    succeeded,
                } => {
                    // The task reports its own failures; a cancelled one has nothing to add.
                    let (_, result) = ready!(finishing.poll(cx));
                    if let Some(config) = this.config.as_ref() {
                        Observation::new(&config.metrics, *this.started).handled(*succeeded);
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(result.map(|response| response.map(ResponseBody::inner)));
                }
                StateProj::Done => panic!("ResponseFuture polled after it completed"),
            };
            // The inner service answered (or could not be made ready): record the outcome.
            let succeeded = matches!(&result, Ok(response) if response.status().is_success());
            let config = this.config.as_ref();
            let task = match (
                this.reserved.take(),
                config.and_then(|config| config.idempotency()),
            ) {
                (Some(reserved), Some(idempotency)) => {
                    reserved.finish(&idempotency.store, succeeded, idempotency.ttl)
                }
                _ => None,
            };
            if let Some(task) = task {
                let finishing = join(task, ready_future(result));
                this.state.set(State::Finishing {
                    finishing,
                    succeeded,
                });
                continue;
            }
            if let Some(config) = config {
                Observation::new(&config.metrics, *this.started).handled(succeeded);
            }
            this.state.set(State::Done);
            return Poll::Ready(result.map(|response| response.map(ResponseBody::inner)));
        }
    }
}

impl<S> fmt::Debug for ResponseFuture<S>
where
    S: Service<Request<Full<Bytes>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
