//! `tower-webhook sign` and `send`: a delivery signed as the sender signs it (the library's
//! `testing::Sample`), printed as a curl command or JSON, or sent.

use std::io::Read as _;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde::Serialize;
use tower_webhook::testing::{Sample, SignedSample};
use tower_webhook::Scheme;

use crate::args::SignArgs;
use crate::exit::{self, Exit};
use crate::output::{self, json_line};

/// Signs what `args` describe.
fn signed(args: &SignArgs) -> anyhow::Result<SignedSample> {
    let scheme = Scheme::preset(&args.scheme)
        .ok_or_else(|| exit::usage(format!("--scheme {}: not a preset", args.scheme)))?;
    let mut sample = Sample::new(&args.event);
    if let Some(id) = &args.id {
        sample = sample.with_id(id);
    }
    if let Some(action) = &args.action {
        sample = sample.with_action(action);
    }
    if let Some(source) = &args.data {
        let mut body = Vec::new();
        if source == "-" {
            std::io::stdin()
                .read_to_end(&mut body)
                .map_err(|error| exit::usage(format!("reading the body from stdin: {error}")))?;
        } else {
            body = std::fs::read(source)
                .map_err(|error| exit::usage(format!("reading --data {source}: {error}")))?;
        }
        sample = sample.with_body(body);
    }
    if args.form {
        sample = sample.form();
    }
    let url = args.public_url.as_deref().unwrap_or(&args.url);
    if args.secret.is_empty() {
        return Err(exit::usage(
            "the secret is empty: give the endpoint's signing secret with --secret or \
             WEBHOOK_SECRET (an unset shell variable in --secret \"$VAR\" is empty)",
        ));
    }
    sample
        .sign(&scheme, &args.secret, url)
        .map_err(|error| exit::usage(error.to_string()))
}

/// `sign --json`: what to send.
#[derive(Debug, Serialize)]
struct Request<'a> {
    /// Where.
    url: &'a str,
    /// The event id as the receiver will report it.
    id: &'a str,
    /// The event type.
    event: &'a str,
    /// Every header, `[name, value]`.
    headers: Vec<(String, String)>,
    /// The body, as text (lossily when it is not UTF-8).
    body: String,
}

/// The headers of `signed`, as text.
fn header_pairs(signed: &SignedSample) -> Vec<(String, String)> {
    signed
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// `sign`: prints the signed delivery as a curl command, or as JSON.
pub(crate) fn sign(args: &SignArgs) -> anyhow::Result<Exit> {
    let signed = signed(args)?;
    if args.json {
        json_line(&Request {
            url: &args.url,
            id: &signed.id,
            event: &signed.event,
            headers: header_pairs(&signed),
            body: String::from_utf8_lossy(&signed.body).into_owned(),
        })?;
        return Ok(Exit::Ok);
    }
    let body = std::str::from_utf8(&signed.body)
        .map_err(|_| exit::usage("the body is not UTF-8: use --json, or send it with `send`"))?;
    let mut command = format!("curl -sS -X POST {}", quote(&args.url));
    for (name, value) in header_pairs(&signed) {
        command.push_str(" \\\n  -H ");
        command.push_str(&quote(&format!("{name}: {value}")));
    }
    command.push_str(" \\\n  --data-binary ");
    command.push_str(&quote(body));
    output::line(&command);
    Ok(Exit::Ok)
}

/// `text` in single quotes for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `send --json`: the receiver's answer.
#[derive(Debug, Serialize)]
struct Answer<'a> {
    /// The event id as the receiver reports it.
    id: &'a str,
    /// The event type.
    event: &'a str,
    /// The HTTP status.
    status: u16,
    /// Whether the receiver answered that it had the event already (`x-webhook-duplicate`).
    duplicate: bool,
    /// The answer's body, as text.
    body: String,
}

/// `send`: posts the signed delivery and prints the answer; exit 1 unless it is a 2xx.
pub(crate) async fn send(args: SignArgs) -> anyhow::Result<Exit> {
    let signed = signed(&args)?;
    let uri: http::Uri = args
        .url
        .parse()
        .map_err(|error| exit::usage(format!("--url {}: {error}", args.url)))?;
    if uri.scheme_str() != Some("http") {
        return Err(exit::usage(format!(
            "--url {}: send speaks plain http:// (a local receiver); for https, run the curl \
             command `tower-webhook sign` prints",
            args.url
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| exit::usage(format!("--url {}: no host", args.url)))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let mut request = http::Request::post(
        uri.path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str),
    )
    .header(http::header::HOST, format!("{host}:{port}"))
    .header(http::header::USER_AGENT, "tower-webhook-cli")
    .body(Full::new(signed.body.clone()))?;
    request.headers_mut().extend(signed.headers.clone());
    let response = post(&host, port, request)
        .await
        .map_err(|error| exit::unreachable(format!("could not reach {}: {error}", args.url)))?;
    let status = response.status();
    let duplicate = response.headers().contains_key("x-webhook-duplicate");
    let body = response
        .into_body()
        .collect()
        .await
        .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
        .unwrap_or_default();
    if args.json {
        json_line(&Answer {
            id: &signed.id,
            event: &signed.event,
            status: status.as_u16(),
            duplicate,
            body,
        })?;
    } else {
        output::line(&format!(
            "sent {} {} -> {status} {body}{}",
            signed.event,
            signed.id,
            if duplicate { " (a duplicate)" } else { "" }
        ));
    }
    Ok(if status.is_success() {
        Exit::Ok
    } else {
        Exit::Refused
    })
}

/// Sends `request` over a new HTTP/1.1 connection to `host:port`.
async fn post(
    host: &str,
    port: u16,
    request: http::Request<Full<Bytes>>,
) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?)
}
