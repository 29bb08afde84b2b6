//! What runs before every admin handler: the authorization decision, then, for a POST, the
//! checks against cross-site requests (same origin, and the form token).

use std::fmt;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum_core::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::refusal::Refusal;

/// The largest form body an admin POST may carry: 16 KiB.
const FORM_LIMIT: usize = 16 * 1024;
/// The form field that carries the token.
pub(super) const TOKEN_FIELD: &str = "csrf_token";
/// The header a script (or a page's `fetch`) sends the token in.
pub(super) const TOKEN_HEADER: &str = "x-csrf-token";
/// The challenges of a 401 from [`Check::Token`]: a script sends a bearer token; a browser
/// prompts for a user name and password, the token being the password.
const CHALLENGES: [&str; 2] = [
    "Bearer realm=\"tower-webhook admin\"",
    "Basic realm=\"tower-webhook admin\", charset=\"UTF-8\"",
];

/// A request's authorization check.
pub(super) enum Check {
    /// `Authorization: Bearer <token>`, or `Basic` with the token as the password: the token's
    /// SHA-256, compared in constant time.
    Token([u8; 32]),
    /// The application's own check over the request's head.
    Closure(Arc<dyn Fn(&Parts) -> bool + Send + Sync>),
    /// Decided elsewhere: by the application's tower layer, or nobody (local development).
    Elsewhere,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Token(_) => "Token(REDACTED)",
            Self::Closure(_) => "Closure",
            Self::Elsewhere => "Elsewhere",
        })
    }
}

impl Check {
    /// The check of `token`.
    pub(super) fn token(token: &str) -> Self {
        Self::Token(Sha256::digest(token.as_bytes()).into())
    }

    fn allows(&self, parts: &Parts) -> bool {
        match self {
            Self::Token(expected) => presented_token(&parts.headers)
                .is_some_and(|token| bool::from(Sha256::digest(token).ct_eq(expected))),
            Self::Closure(check) => check(parts),
            Self::Elsewhere => true,
        }
    }

    fn refuse(&self) -> Response {
        let mut response = Refusal::UNAUTHORIZED.into_response();
        if matches!(self, Self::Token(_)) {
            for challenge in CHALLENGES {
                response.headers_mut().append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
        }
        response
    }
}

/// The token a request presents: a bearer token, or a Basic password.
fn presented_token(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    let rest = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        Some(rest.to_vec())
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        Some(decoded[colon + 1..].to_vec())
    } else {
        None
    }
}

/// The form token: an HMAC-SHA256, under a key of this router's (random unless given), of a
/// fixed label. It does not depend on a session: what makes it worth having is that only a
/// page served by this router (to an authorized request) holds it, and another site cannot
/// read that page.
#[derive(Clone)]
pub(super) struct FormToken {
    mac: [u8; 32],
    hex: String,
}

impl fmt::Debug for FormToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FormToken(REDACTED)")
    }
}

impl FormToken {
    /// The token under `key`.
    pub(super) fn new(key: &[u8; 32]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(b"tower-webhook inbox admin: form token v1");
        let mac: [u8; 32] = mac.finalize().into_bytes().into();
        Self {
            hex: faster_hex::hex_string(&mac),
            mac,
        }
    }

    /// The token, as the pages embed it.
    pub(super) fn as_str(&self) -> &str {
        &self.hex
    }

    /// Whether `presented` is the token (hex), compared in constant time.
    fn verifies(&self, presented: &str) -> bool {
        let mut bytes = [0_u8; 32];
        presented.len() == 64
            && faster_hex::hex_decode(presented.as_bytes(), &mut bytes).is_ok()
            && bool::from(bytes.ct_eq(&self.mac))
    }
}

/// The guard's configuration, shared by every request.
#[derive(Debug)]
pub(super) struct Guard {
    pub(super) check: Check,
    pub(super) token: FormToken,
}

/// The middleware: authorization on every request, then the cross-site checks on a POST; and
/// on every answer, headers that keep it out of caches and frames.
pub(super) async fn guard(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let mut response = if !guard.check.allows(&parts) {
        guard.check.refuse()
    } else if parts.method == Method::POST {
        match guard.cross_site_checks(&parts, body).await {
            Ok(body) => next.run(Request::from_parts(parts, body)).await,
            Err(refusal) => refusal.into_response(),
        }
    } else {
        next.run(Request::from_parts(parts, body)).await
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

impl Guard {
    /// A POST must come from this origin, and carry the form token: always for the pages'
    /// forms, and for the JSON API when it comes from a browser (it has an `Origin`,
    /// `Sec-Fetch-Site` or `Cookie` header). A script's request has none of these (an
    /// `Origin`-less request with the authorization header is not a browser's cross-site
    /// request) and needs no token. Gives back the body, read when it is a form.
    async fn cross_site_checks(&self, parts: &Parts, body: Body) -> Result<Body, Refusal> {
        if is_cross_site(parts) {
            return Err(Refusal::forbidden(
                "cross_site_request",
                "a state-changing request must come from the admin page's own origin",
            ));
        }
        let headers = &parts.headers;
        let from_browser = headers.contains_key(header::ORIGIN)
            || headers.contains_key("sec-fetch-site")
            || headers.contains_key(header::COOKIE);
        let is_api = parts.uri.path().starts_with("/api/");
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        let (presented, body) = if let Some(value) = headers.get(TOKEN_HEADER) {
            (value.to_str().ok().map(str::to_owned), body)
        } else if is_form {
            let bytes = axum::body::to_bytes(body, FORM_LIMIT)
                .await
                .map_err(|_| Refusal::TOO_LARGE)?;
            let fields: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
            let token = fields
                .into_iter()
                .find(|(name, _)| name == TOKEN_FIELD)
                .map(|(_, value)| value);
            (token, Body::from(bytes))
        } else {
            (None, body)
        };
        if is_api && !from_browser && presented.is_none() {
            return Ok(body);
        }
        match presented {
            None => Err(Refusal::forbidden(
                "csrf_token_missing",
                "a form's request must carry the page's token (csrf_token)",
            )),
            Some(token) if !self.token.verifies(&token) => Err(Refusal::forbidden(
                "csrf_token_invalid",
                "the request's token is not the page's: reload the page",
            )),
            Some(_) => Ok(body),
        }
    }
}

/// Whether a browser says the request comes from another site: `Sec-Fetch-Site` other than
/// `same-origin` (or `none`, a request the user made), or an `Origin` whose host and port are
/// not the request's `Host`.
fn is_cross_site(parts: &Parts) -> bool {
    let headers = &parts.headers;
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return true;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .map(HeaderValue::as_bytes)
        .or_else(|| {
            parts
                .uri
                .authority()
                .map(|authority| authority.as_str().as_bytes())
        });
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, host)| host.as_bytes());
    match (origin_host, host) {
        (Some(origin_host), Some(host)) => !origin_host.eq_ignore_ascii_case(host),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::post("/api/replay");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap_or_default().into_parts().0
    }

    #[test]
    fn a_bearer_token_or_a_basic_password_is_accepted_and_nothing_else() {
        let check = Check::token("s3cret");
        let basic = |user_pass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(user_pass)
            )
        };
        assert!(check.allows(&parts(&[("authorization", "Bearer s3cret")])));
        assert!(check.allows(&parts(&[("authorization", "bearer  s3cret")])));
        assert!(check.allows(&parts(&[("authorization", &basic("admin:s3cret"))])));
        assert!(!check.allows(&parts(&[("authorization", &basic("s3cret:x"))])));
        assert!(!check.allows(&parts(&[("authorization", "Bearer s3cre")])));
        assert!(!check.allows(&parts(&[("authorization", "s3cret")])));
        assert!(!check.allows(&parts(&[])));
        assert_eq!(format!("{check:?}"), "Token(REDACTED)");
    }

    #[test]
    fn another_origin_or_site_is_cross_site_and_a_script_is_not() {
        assert!(!is_cross_site(&parts(&[("host", "a.test:3000")])));
        assert!(!is_cross_site(&parts(&[
            ("host", "a.test:3000"),
            ("origin", "http://a.test:3000"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(is_cross_site(&parts(&[
            ("host", "a.test:3000"),
            ("origin", "http://evil.test:3000"),
        ])));
        assert!(is_cross_site(&parts(&[
            ("host", "a.test:3000"),
            ("origin", "http://a.test:3001"),
        ])));
        assert!(is_cross_site(&parts(&[
            ("host", "a.test"),
            ("origin", "null")
        ])));
        assert!(is_cross_site(&parts(&[
            ("host", "a.test"),
            ("sec-fetch-site", "same-site"),
        ])));
    }

    #[test]
    fn the_form_token_verifies_only_itself() {
        let token = FormToken::new(&[7; 32]);
        assert!(token.verifies(token.as_str()));
        assert!(!token.verifies(FormToken::new(&[8; 32]).as_str()));
        assert!(!token.verifies(""));
        assert!(!token.verifies(&"zz".repeat(32)));
        assert_eq!(format!("{token:?}"), "FormToken(REDACTED)");
    }
}
