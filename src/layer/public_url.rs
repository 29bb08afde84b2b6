//! The URL a sender called, for the schemes that sign it (Square, Twilio): the receiver's
//! public URL from configuration followed by the request's path and query, or (opted in) the
//! one a trusted proxy reports.

use http::header::{FORWARDED, HOST};
use http::{request, HeaderMap, HeaderName, Uri};

use crate::error::{ConfigError, Rejection, RejectionKind};

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Where the layer learns the URL the sender called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicUrl {
    /// `https://host[:port][/prefix]`, without a trailing `/`: the request's path and query
    /// are appended.
    Base(String),
    /// The scheme and host a proxy in front of the receiver reports (`Forwarded`, else
    /// `X-Forwarded-Proto` and `X-Forwarded-Host`, else `Host` over `http`).
    TrustedProxy,
}

impl PublicUrl {
    /// The base URL `text`: `http://` or `https://`, a host, at most a path prefix.
    pub(crate) fn base(text: &str) -> Result<Self, ConfigError> {
        let uri: Uri = text.parse().map_err(|_| ConfigError::InvalidPublicUrl)?;
        let scheme = uri.scheme_str().ok_or(ConfigError::InvalidPublicUrl)?;
        let authority = uri.authority().ok_or(ConfigError::InvalidPublicUrl)?;
        let plain = matches!(scheme, "http" | "https")
            && !authority.host().is_empty()
            && uri.query().is_none()
            && !text.contains('#');
        if !plain {
            return Err(ConfigError::InvalidPublicUrl);
        }
        let prefix = uri.path().trim_end_matches('/');
        Ok(Self::Base(format!("{scheme}://{authority}{prefix}")))
    }

    /// The URL the sender called to send `parts`.
    ///
    /// # Errors
    /// `signature_mismatch` when a trusted proxy's headers name no host.
    pub(crate) fn signed_url(&self, parts: &request::Parts) -> Result<String, Rejection> {
        let path = original_path_and_query(parts);
        match self {
            Self::Base(base) => Ok(format!("{base}{path}")),
            Self::TrustedProxy => {
                let (scheme, host) = forwarded(&parts.headers).ok_or(Rejection::new(
                    RejectionKind::SignatureMismatch,
                    "the request names no host to verify its signed URL with",
                ))?;
                Ok(format!("{scheme}://{host}{path}"))
            }
        }
    }
}

/// The path and query the request was sent to (inside a nested axum router, the full one).
fn original_path_and_query(parts: &request::Parts) -> String {
    #[cfg(feature = "axum")]
    if let Some(original) = parts.extensions.get::<axum::extract::OriginalUri>() {
        return path_and_query(&original.0);
    }
    path_and_query(&parts.uri)
}

fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned())
}

/// The scheme and host a proxy reports.
fn forwarded(headers: &HeaderMap) -> Option<(String, String)> {
    let text = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            // Several proxies: the first (the client's side) is the one the sender called.
            .and_then(|value| value.split(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    if let Some(element) = text(&FORWARDED) {
        let mut proto = None;
        let mut host = None;
        for pair in element.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            let value = value.trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "proto" => proto = Some(value.to_owned()),
                "host" => host = Some(value.to_owned()),
                _ => {}
            }
        }
        if let Some(host) = host {
            return Some((proto.unwrap_or_else(|| "http".to_owned()), host));
        }
    }
    let host = text(&X_FORWARDED_HOST).or_else(|| text(&HOST))?;
    let proto = text(&X_FORWARDED_PROTO).unwrap_or("http");
    Some((proto.to_owned(), host.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> request::Parts {
        let mut builder = http::Request::post(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_base_url_takes_the_requests_path_and_query() {
        let base = PublicUrl::base("https://example.com/api/").unwrap();
        assert_eq!(
            base.signed_url(&parts("/webhooks?x=1", &[])).unwrap(),
            "https://example.com/api/webhooks?x=1"
        );
        let plain = PublicUrl::base("http://127.0.0.1:3000").unwrap();
        assert_eq!(
            plain.signed_url(&parts("/webhooks", &[])).unwrap(),
            "http://127.0.0.1:3000/webhooks"
        );
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://example.com/?a=1",
            "https://example.com/#x",
            "/webhooks",
            "",
        ] {
            assert!(PublicUrl::base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_trusted_proxy_names_the_scheme_and_host() {
        let proxy = PublicUrl::TrustedProxy;
        let url = |headers: &[(&str, &str)]| proxy.signed_url(&parts("/hook", headers)).ok();
        assert_eq!(
            url(&[(
                "forwarded",
                "for=1.2.3.4;proto=https;host=\"example.com\", for=5.6.7.8"
            )])
            .as_deref(),
            Some("https://example.com/hook")
        );
        assert_eq!(
            url(&[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "a.example"),
                ("host", "internal")
            ])
            .as_deref(),
            Some("https://a.example/hook")
        );
        assert_eq!(
            url(&[("host", "internal:8080")]).as_deref(),
            Some("http://internal:8080/hook")
        );
        assert_eq!(url(&[]), None);
    }
}
