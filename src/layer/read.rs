//! Reading a request's body: refused before reading when its declared length is over the
//! limit, then read frame by frame into the MACs, cut at the limit, within the body timeout
//! (steps 2 and 3 of the module docs).

use std::future::Future;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;

use super::config::Config;
use crate::error::{Rejection, RejectionKind};
use crate::verify::BodyCheck;

const TOO_LARGE: Rejection = Rejection::new(
    RejectionKind::PayloadTooLarge,
    "the body is larger than this receiver accepts",
);

/// Reads the body within the body timeout, if one is set.
#[allow(clippy::manual_async_fn)] // not an `async fn`: see BENCHMARKS.md ("the future")
pub(super) fn read_body_in_time<'a, 'c, B: Body + 'a>(
    body: B,
    config: &'a Config,
    check: &'a mut BodyCheck<'c>,
) -> impl Future<Output = Result<Bytes, Rejection>> + use<'a, 'c, B> {
    async move {
        let mut reading = std::pin::pin!(read_body(body, config.body_limit, check));
        // Polled once before a timer is armed: see BENCHMARKS.md ("the body timer").
        let first = std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await;
        match (first, config.body_timeout) {
            (Poll::Ready(result), _) => result,
            // The timer is boxed: see BENCHMARKS.md ("the future").
            (Poll::Pending, Some(timeout)) => Box::pin(tokio::time::timeout(timeout, reading))
                .await
                .map_err(|_| {
                    Rejection::new(
                        RejectionKind::BodyTimeout,
                        "the body did not arrive in time",
                    )
                })?,
            (Poll::Pending, None) => reading.await,
        }
    }
}

/// Refuses a body whose declared length is over the limit, before reading any of it.
pub(super) fn check_declared_length<B: Body>(
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
async fn read_body<B: Body>(
    body: B,
    limit: usize,
    check: &mut BodyCheck<'_>,
) -> Result<Bytes, Rejection> {
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
        check.update(&chunk);
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
