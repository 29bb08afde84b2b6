//! Why the admin router answered a request with an error: a status, a stable machine-readable
//! code and a fixed message, in the crate's refusal body (`{"error": ..., "message": ...}`).

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;

use crate::inbox::InboxError;

/// An admin request refused: the status, the code (the body's `error`) and a fixed message
/// (never request data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: &'static str,
}

impl Refusal {
    const fn new(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
        }
    }

    /// `400 <code>`.
    pub(super) const fn bad(code: &'static str, message: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// `403 <code>`: a state-changing request that may come from another site.
    pub(super) const fn forbidden(code: &'static str, message: &'static str) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// `404 not_found`: no delivery under that key.
    pub(super) const NOT_FOUND: Self = Self::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no delivery is stored under this key",
    );

    /// `404 not_found` for a path the admin router does not serve.
    pub(super) const NO_ROUTE: Self = Self::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "the admin router serves no such path",
    );

    /// `409 not_replayable`: the delivery is in a state replay does not take it from.
    pub(super) const NOT_REPLAYABLE: Self = Self::new(
        StatusCode::CONFLICT,
        "not_replayable",
        "only a dead delivery is replayed (and a done one with done=true)",
    );

    /// `413 payload_too_large`: a form larger than an admin form ever is.
    pub(super) const TOO_LARGE: Self = Self::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than an admin form",
    );

    /// `401 unauthorized`.
    pub(super) const UNAUTHORIZED: Self = Self::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the inbox admin needs an authorized request",
    );

    /// `503 inbox_unavailable`: the inbox failed or did not answer in time.
    pub(super) const UNAVAILABLE: Self = Self::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "inbox_unavailable",
        "the inbox did not answer: try again",
    );

    /// `400 bad_key`.
    pub(super) const BAD_KEY: Self = Self::bad(
        "bad_key",
        "a delivery's key is 64 hex digits (the `key` of a listed delivery)",
    );
}

impl From<InboxError> for Refusal {
    fn from(error: InboxError) -> Self {
        #[cfg(feature = "tracing")]
        tracing::warn!(%error, "inbox admin: the inbox failed");
        let _ = error;
        Self::UNAVAILABLE
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        crate::error::json_error_response(self.status, self.code, self.message)
    }
}
