use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tokio::task::JoinHandle;
use tower_service::Service;

use super::body::ResponseBody;
use super::builder::Config;
use crate::idempotency::Reserved;
use crate::observe::Observation;

/// What the layer decided before the inner service: call it, or answer itself.
pub(crate) enum Admission {
    /// Verified (and, with a store, reserved): call the inner service with this request. The
    /// configuration comes back with it, for the steps after the call.
    Call(Request<Full<Bytes>>, Option<Reserved>, Arc<Config>),
    /// The layer's own answer: a rejection, a duplicate, a conflict.
    Answer(Response<Full<Bytes>>),
}

/// Verification and the idempotency guard, up to the decision. Boxed: its type depends on the
/// request's body type, which the response future's type does not name.
pub(crate) type Admitting = Pin<Box<dyn Future<Output = Admission> + Send>>;

pin_project! {
    /// The response future of [`WebhookService`](super::WebhookService).
    ///
    /// It verifies the delivery and takes its reservation, calls the inner service (whose
    /// future it holds as is, unboxed), then completes or releases the reservation. Dropping it
    /// while the handler runs releases the event's reservation, so the sender's retry is
    /// processed.
    ///
    /// `S` is the inner service, `F` its future, `B` its response body and `E` its error.
    pub struct ResponseFuture<S, F, B, E> {
        #[pin]
        state: State<S, F, B, E>,
        // Set when admitted (the admission owned it until then: one reference per request).
        config: Option<Arc<Config>>,
        started: Instant,
        span: tracing::Span,
        reserved: Option<Reserved>,
    }

    impl<S, F, B, E> PinnedDrop for ResponseFuture<S, F, B, E> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let idempotency = this.config.as_ref().and_then(|config| config.idempotency.as_ref());
            if let (Some(reserved), Some(idempotency)) = (this.reserved.take(), idempotency) {
                reserved.abandon(&idempotency.store);
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, B, E> {
        Admitting { admitting: Admitting, inner: Option<S> },
        Calling { #[pin] future: F },
        /// A store doing I/O records the outcome on its own task; the answer waits for it.
        Finishing {
            task: JoinHandle<()>,
            succeeded: bool,
            result: Option<Result<Response<B>, E>>,
        },
        Done,
    }
}

impl<S, F, B, E> ResponseFuture<S, F, B, E> {
    pub(crate) fn new(
        admitting: Admitting,
        inner: S,
        started: Instant,
        span: tracing::Span,
    ) -> Self {
        Self {
            state: State::Admitting {
                admitting,
                inner: Some(inner),
            },
            config: None,
            started,
            span,
            reserved: None,
        }
    }
}

impl<S, B, E> Future for ResponseFuture<S, S::Future, B, E>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = E>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Admitting { admitting, inner } => {
                    match ready!(admitting.as_mut().poll(cx)) {
                        Admission::Answer(response) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(response.map(ResponseBody::layer)));
                        }
                        Admission::Call(request, reserved, config) => {
                            let Some(mut inner) = inner.take() else {
                                unreachable!("the inner service is taken once, when admitted");
                            };
                            *this.reserved = reserved;
                            *this.config = Some(config);
                            let future = inner.call(request);
                            this.state.set(State::Calling { future });
                        }
                    }
                }
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    let succeeded =
                        matches!(&result, Ok(response) if response.status().is_success());
                    let Some(config) = this.config.as_ref() else {
                        unreachable!("the configuration is set when admitted");
                    };
                    let task = match (this.reserved.take(), config.idempotency.as_ref()) {
                        (Some(reserved), Some(idempotency)) => {
                            reserved.finish(&idempotency.store, succeeded, idempotency.ttl)
                        }
                        _ => None,
                    };
                    let Some(task) = task else {
                        Observation::new(&config.metrics, *this.started).handled(succeeded);
                        this.state.set(State::Done);
                        return Poll::Ready(
                            result.map(|response| response.map(ResponseBody::inner)),
                        );
                    };
                    this.state.set(State::Finishing {
                        task,
                        succeeded,
                        result: Some(result),
                    });
                }
                StateProj::Finishing {
                    task,
                    succeeded,
                    result,
                } => {
                    // The task reports its own failures; a cancelled one has nothing to add.
                    let _ = ready!(Pin::new(task).poll(cx));
                    if let Some(config) = this.config.as_ref() {
                        Observation::new(&config.metrics, *this.started).handled(*succeeded);
                    }
                    let Some(result) = result.take() else {
                        unreachable!("the answer is taken once, when the store has finished");
                    };
                    this.state.set(State::Done);
                    return Poll::Ready(result.map(|response| response.map(ResponseBody::inner)));
                }
                StateProj::Done => panic!("ResponseFuture polled after it completed"),
            }
        }
    }
}

impl<S, F, B, E> fmt::Debug for ResponseFuture<S, F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
