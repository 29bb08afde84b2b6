//! Endpoint handshakes: the requests a sender makes before (and between) its events to check
//! that the endpoint is the receiver's, which the layer answers itself. A handshake never
//! reaches the handler, the idempotency store or the inbox.
//!
//! Signed ones are answered only once the signature verified (Slack, Discord, Zoom, Twitch);
//! the unsigned ones carry a token compared in constant time (Meta's `hub.verify_token`) or
//! echo a value and prove nothing (Microsoft Graph's `validationToken`).

use bytes::Bytes;
use hmac::Mac;
use http::header::{CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{request, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::query;
use crate::error::{Rejection, RejectionKind};
use crate::secret::Secret;

/// The handshake a sender makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// Slack's Events API `url_verification`: answer the body's `challenge` (signed).
    Slack,
    /// Discord's interactions `PING` (`type` 1): answer `{"type":1}`; its webhook events'
    /// `PING` (`type` 0): answer `204` (signed).
    Discord,
    /// Zoom's `endpoint.url_validation`: answer the `plainToken` and its HMAC-SHA256 under the
    /// secret, hex, as `encryptedToken` (signed).
    Zoom,
    /// Twitch EventSub's `webhook_callback_verification`: answer the body's `challenge` as
    /// text (signed).
    Twitch,
    /// Meta's (Facebook, Instagram, WhatsApp) subscription check: a `GET` with `hub.mode=subscribe`,
    /// `hub.verify_token` (compared with the layer's) and `hub.challenge` (answered).
    Meta,
    /// Microsoft Graph's subscription validation: a request with a `validationToken` query
    /// parameter, answered with the token as text.
    Graph,
}

/// Twitch's message-type header.
const TWITCH_MESSAGE_TYPE: HeaderName = HeaderName::from_static("twitch-eventsub-message-type");

impl Handshake {
    /// The answer to an unsigned handshake (Meta's, Graph's), checked before anything else;
    /// `None` when the request is not one. `verify_token`: the layer's, for Meta.
    pub(crate) fn answer_unsigned(
        self,
        parts: &request::Parts,
        verify_token: Option<&[u8]>,
    ) -> Option<Result<Response<Full<Bytes>>, Rejection>> {
        let query_string = parts.uri.query()?;
        match self {
            Self::Meta => {
                if parts.method != Method::GET {
                    return None;
                }
                let mode = query::param(query_string, "hub.mode")?;
                let token = query::param(query_string, "hub.verify_token").unwrap_or_default();
                let challenge = query::param(query_string, "hub.challenge").unwrap_or_default();
                let matches = verify_token
                    .is_some_and(|expected| bool::from(expected.ct_eq(token.as_bytes())));
                if mode != "subscribe" || !matches {
                    if verify_token.is_none() {
                        crate::observe::warn!(
                            "a subscription handshake arrived, but the layer has no verify token \
                             (with_verify_token); answering 403"
                        );
                    }
                    return Some(Err(Rejection::new(
                        RejectionKind::VerifyTokenMismatch,
                        "the verify token is not this endpoint's",
                    )));
                }
                Some(Ok(text(challenge)))
            }
            Self::Graph => {
                let token = query::param(query_string, "validationToken")?;
                Some(Ok(text(token)))
            }
            Self::Slack | Self::Discord | Self::Zoom | Self::Twitch => None,
        }
    }

    /// The answer to a signed handshake, once the request's signature verified; `None` when
    /// the request is an event. `secret`: the one that verified it (Zoom answers with a MAC
    /// under it).
    pub(crate) fn answer_signed(
        self,
        headers: &HeaderMap,
        body: &[u8],
        secret: Option<&Secret>,
    ) -> Option<Response<Full<Bytes>>> {
        match self {
            Self::Slack => {
                #[derive(Deserialize)]
                struct Body {
                    #[serde(rename = "type")]
                    kind: Option<String>,
                    challenge: Option<String>,
                }
                let parsed: Body = serde_json::from_slice(body).ok()?;
                if parsed.kind.as_deref() != Some("url_verification") {
                    return None;
                }
                Some(json(&serde_json::json!({ "challenge": parsed.challenge? })))
            }
            Self::Discord => {
                #[derive(Deserialize)]
                struct Body {
                    #[serde(rename = "type")]
                    kind: Option<i64>,
                    event: Option<serde::de::IgnoredAny>,
                }
                let parsed: Body = serde_json::from_slice(body).ok()?;
                match (parsed.kind, parsed.event) {
                    // An interaction `PING` (a webhook event of type 1 carries its `event`).
                    (Some(1), None) => Some(json(&serde_json::json!({ "type": 1 }))),
                    // A webhook events `PING`.
                    (Some(0), None) => Some(empty(StatusCode::NO_CONTENT)),
                    _ => None,
                }
            }
            Self::Zoom => {
                #[derive(Deserialize)]
                struct Payload {
                    #[serde(rename = "plainToken")]
                    plain_token: Option<String>,
                }
                #[derive(Deserialize)]
                struct Body {
                    event: Option<String>,
                    payload: Option<Payload>,
                }
                let parsed: Body = serde_json::from_slice(body).ok()?;
                if parsed.event.as_deref() != Some("endpoint.url_validation") {
                    return None;
                }
                let plain = parsed.payload?.plain_token?;
                let mut mac = secret?.mac();
                mac.update(plain.as_bytes());
                let encrypted = faster_hex::hex_string(&mac.finalize().into_bytes());
                Some(json(&serde_json::json!({
                    "plainToken": plain,
                    "encryptedToken": encrypted,
                })))
            }
            Self::Twitch => {
                #[derive(Deserialize)]
                struct Body {
                    challenge: Option<String>,
                }
                let verification = headers
                    .get(TWITCH_MESSAGE_TYPE)
                    .is_some_and(|kind| kind == "webhook_callback_verification");
                if !verification {
                    return None;
                }
                // Only a verification's (signed) body carries a `challenge`.
                let parsed: Body = serde_json::from_slice(body).ok()?;
                Some(text(parsed.challenge?))
            }
            Self::Meta | Self::Graph => None,
        }
    }

    /// Whether the handshake is made with a signed request (answered after verification).
    pub(crate) fn is_signed(self) -> bool {
        matches!(
            self,
            Self::Slack | Self::Discord | Self::Zoom | Self::Twitch
        )
    }
}

fn response(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    // An echoed value is never sniffed as HTML.
    response
        .headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn text(body: String) -> Response<Full<Bytes>> {
    response(
        StatusCode::OK,
        Some("text/plain; charset=utf-8"),
        Bytes::from(body),
    )
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    response(
        StatusCode::OK,
        Some("application/json"),
        Bytes::from(value.to_string()),
    )
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    response(status, None, Bytes::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(handshake: Handshake, headers: &[(&str, &str)], body: &str) -> Option<(u16, String)> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let secret = Secret::new("k").unwrap();
        let response = handshake.answer_signed(&map, body.as_bytes(), Some(&secret))?;
        let status = response.status().as_u16();
        let bytes = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
            response.into_body(),
        ))
        .unwrap()
        .unwrap()
        .to_bytes();
        Some((status, String::from_utf8(bytes.to_vec()).unwrap()))
    }

    #[test]
    fn only_a_handshakes_own_body_is_answered() {
        use Handshake::{Discord, Slack, Twitch};
        assert_eq!(
            signed(Discord, &[], r#"{"type":1,"id":"1"}"#),
            Some((200, r#"{"type":1}"#.to_owned()))
        );
        assert_eq!(
            signed(Discord, &[], r#"{"type":0,"version":1}"#),
            Some((204, String::new()))
        );
        // A webhook event of type 1 carries its event: it is an event, not a PING.
        assert_eq!(
            signed(Discord, &[], r#"{"type":1,"event":{"type":"X"}}"#),
            None
        );
        assert_eq!(signed(Discord, &[], r#"{"type":2,"id":"1"}"#), None);
        assert_eq!(
            signed(Slack, &[], "token=x&challenge=y&type=url_verification"),
            None
        );
        assert_eq!(
            signed(Slack, &[], r#"{"type":"event_callback","challenge":"y"}"#),
            None
        );
        // Twitch: the header says which message it is; a challenge alone is not enough.
        assert_eq!(signed(Twitch, &[], r#"{"challenge":"c"}"#), None);
        let verification = [(
            "twitch-eventsub-message-type",
            "webhook_callback_verification",
        )];
        assert_eq!(
            signed(Twitch, &verification, r#"{"challenge":"c"}"#),
            Some((200, "c".to_owned()))
        );
    }

    #[test]
    fn meta_answers_only_a_subscribe_get_with_its_token() {
        let parts = |method: &str, uri: &str| {
            http::Request::builder()
                .method(method)
                .uri(uri)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let answer = |method, uri, token: Option<&[u8]>| {
            Handshake::Meta
                .answer_unsigned(&parts(method, uri), token)
                .map(|answer| answer.map(|r| r.status().as_u16()).map_err(|r| r.kind()))
        };
        let query = "/webhooks?hub.mode=subscribe&hub.challenge=7&hub.verify_token=t%26k";
        assert_eq!(answer("GET", query, Some(b"t&k")), Some(Ok(200)));
        let refused = Some(Err(RejectionKind::VerifyTokenMismatch));
        assert_eq!(answer("GET", query, Some(b"t&")), refused);
        assert_eq!(answer("GET", query, None), refused);
        let other_mode = "/webhooks?hub.mode=unsubscribe&hub.verify_token=t%26k";
        assert_eq!(answer("GET", other_mode, Some(b"t&k")), refused);
        // Not a handshake: left to verification.
        assert_eq!(answer("POST", query, Some(b"t&k")), None);
        assert_eq!(answer("GET", "/webhooks?x=1", Some(b"t&k")), None);
        assert_eq!(answer("GET", "/webhooks", Some(b"t&k")), None);
    }
}
