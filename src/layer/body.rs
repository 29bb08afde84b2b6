use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

/// The error type of a [`ResponseBody`]: the inner body's error, boxed.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// The body of a [`WebhookService`](super::WebhookService) response: the inner service's
    /// body, or the body of an answer the layer gave itself (a refusal's small JSON, or the
    /// answer to a duplicate).
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Layer { #[pin] body: LayerBody },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn layer(body: LayerBody) -> Self {
        Self {
            kind: Kind::Layer { body },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    /// The inner body's error, boxed (the layer's own bodies do not fail).
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(Into::into))),
            KindProj::Layer { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Layer { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Layer { body } => body.size_hint(),
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Layer { .. } => "Layer",
        };
        f.debug_tuple("ResponseBody").field(&kind).finish()
    }
}

pin_project! {
    /// The body of an answer the layer gives itself: a refusal's JSON, or the answer to a
    /// duplicate, which with feature `axum` may be any `IntoResponse`'s body.
    #[project = LayerBodyProj]
    pub(crate) enum LayerBody {
        Full { #[pin] body: Full<Bytes> },
        Axum { #[pin] body: AxumBody },
    }
}

impl LayerBody {
    pub(crate) fn full(body: Full<Bytes>) -> Self {
        Self::Full { body }
    }

    #[cfg(feature = "axum")]
    pub(crate) fn axum(body: axum_core::body::Body) -> Self {
        let hint = body.size_hint();
        Self::Axum {
            body: AxumBody {
                body: sync_wrapper::SyncWrapper::new(body),
                hint,
            },
        }
    }
}

impl Body for LayerBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project() {
            LayerBodyProj::Full { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
            LayerBodyProj::Axum { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full { body } => body.is_end_stream(),
            Self::Axum { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full { body } => body.size_hint(),
            Self::Axum { body } => body.size_hint(),
        }
    }
}

#[cfg(feature = "axum")]
pin_project! {
    /// An axum body. `axum_core::body::Body` is `Send` but not `Sync`: the wrapper keeps the
    /// layer's bodies `Sync` with the feature as without it. It only lends the body mutably,
    /// so its size hint is kept beside it.
    pub(crate) struct AxumBody {
        #[pin]
        body: sync_wrapper::SyncWrapper<axum_core::body::Body>,
        hint: SizeHint,
    }
}

/// Without feature `axum`, there is no axum body.
#[cfg(not(feature = "axum"))]
pub(crate) enum AxumBody {}

impl Body for AxumBody {
    type Data = Bytes;
    type Error = BoxError;

    #[cfg(feature = "axum")]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.body.get_pin_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                let mut hint = SizeHint::new();
                hint.set_lower(this.hint.lower().saturating_sub(len));
                if let Some(upper) = this.hint.upper() {
                    hint.set_upper(upper.saturating_sub(len).max(hint.lower()));
                }
                *this.hint = hint;
            }
            Poll::Ready(None) => *this.hint = SizeHint::with_exact(0),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled.map(|frame| frame.map(|result| result.map_err(Into::into)))
    }

    #[cfg(not(feature = "axum"))]
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match *self {}
    }

    fn is_end_stream(&self) -> bool {
        self.size_hint().exact() == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        #[cfg(feature = "axum")]
        return self.hint;
        #[cfg(not(feature = "axum"))]
        match *self {}
    }
}
