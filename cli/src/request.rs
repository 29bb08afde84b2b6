//! A captured request, read from a raw HTTP request file or from a headers file and a body
//! file, with `httparse`.

use anyhow::{anyhow, bail};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The most headers a captured request may have.
const MAX_HEADERS: usize = 128;

/// A captured request: its target (path and query), when the file had a request line, its
/// headers and its body.
#[derive(Debug)]
pub(crate) struct Captured {
    /// The request line's target (`/webhooks?x=1`).
    pub(crate) target: Option<String>,
    /// The headers, in order.
    pub(crate) headers: HeaderMap,
    /// The body, exactly.
    pub(crate) body: Vec<u8>,
}

/// Reads a raw HTTP/1.x request: request line, headers, a blank line, the body (cut to
/// `Content-Length` when there is one). Lines may end in CRLF or LF.
pub(crate) fn parse_request(raw: &[u8]) -> anyhow::Result<Captured> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let end = match request.parse(raw)? {
        httparse::Status::Complete(end) => end,
        httparse::Status::Partial => {
            bail!("the request ends before its headers do (a blank line must follow them)")
        }
    };
    let target = request.path.map(str::to_owned);
    let headers = header_map(request.headers)?;
    let mut body = raw[end..].to_vec();
    if headers
        .get(http::header::TRANSFER_ENCODING)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        bail!(
            "the body is chunked (Transfer-Encoding: chunked): save the body alone and use \
             --headers and --body"
        );
    }
    if let Some(length) = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<usize>().ok())
    {
        if length > body.len() {
            bail!(
                "Content-Length says {length} bytes and the file holds {} after the headers",
                body.len()
            );
        }
        body.truncate(length);
    }
    Ok(Captured {
        target,
        headers,
        body,
    })
}

/// Reads a headers file: `Name: value` lines, optionally after a request line, up to a blank
/// line or the end.
pub(crate) fn parse_headers(raw: &[u8], body: Vec<u8>) -> anyhow::Result<Captured> {
    let mut text = raw.to_vec();
    // httparse wants the blank line that ends the headers.
    while text.last().is_some_and(|b| matches!(b, b'\r' | b'\n')) {
        text.pop();
    }
    text.extend_from_slice(b"\r\n\r\n");
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    if first_line.windows(6).any(|window| window == b" HTTP/") {
        let mut captured = parse_request(&text)?;
        captured.body = body;
        return Ok(captured);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(&text, &mut headers)? {
        httparse::Status::Complete((_, headers)) => Ok(Captured {
            target: None,
            headers: header_map(headers)?,
            body,
        }),
        httparse::Status::Partial => Err(anyhow!("the headers file is incomplete")),
    }
}

fn header_map(headers: &[httparse::Header<'_>]) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for header in headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| anyhow!("{:?} is not a header name", header.name))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| anyhow!("the value of {name} is not a header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_request_gives_its_target_headers_and_body() {
        let raw = b"POST /webhooks?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\nX-A: 1\r\nX-A: 2\r\n\r\n{}\n";
        let captured = parse_request(raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(captured.target.as_deref(), Some("/webhooks?x=1"));
        assert_eq!(captured.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(captured.body, b"{}");
    }

    #[test]
    fn lf_line_endings_are_read_too() {
        let raw = b"POST / HTTP/1.1\nHost: h\n\nbody";
        let captured = parse_request(raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(captured.body, b"body");
    }

    #[test]
    fn a_headers_file_with_or_without_a_request_line() {
        for raw in [
            &b"X-Webhook-Id: evt_1\nX-Webhook-Event: e\n"[..],
            &b"POST /webhooks HTTP/1.1\r\nX-Webhook-Id: evt_1\r\nX-Webhook-Event: e\r\n"[..],
        ] {
            let captured = parse_headers(raw, b"{}".to_vec()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(captured.headers["x-webhook-id"], "evt_1");
            assert_eq!(captured.body, b"{}");
        }
    }

    #[test]
    fn a_chunked_body_is_refused_with_advice() {
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        let error = parse_request(raw).map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("--body"), "{error}");
    }
}
