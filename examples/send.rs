//! Sends one signed sample event to a receiver, as its sender would.
//!
//! ```text
//! cargo run --example send -- [EVENT_TYPE] [--action ACTION] [--id EVENT_ID] [--data JSON] [--form] [--url URL]
//! cargo run --example send -- --handshake [--url URL]
//! ```
//!
//! `EVENT_TYPE` defaults to `member.created`; `--action` sets the body's `action` (GitHub's:
//! `send -- issues --action opened`); `--id` defaults to a fresh id (send the same id twice to
//! see the duplicate answer); `--data` sets the event's `data` (a JSON value, such as
//! `'{"fail":2}'` for the inbox example; default a sample); `--form` sends the JSON as GitHub
//! does with the webhook's content type set to `form` (its default), and Slack's
//! interactivity: `payload=<JSON>`, `application/x-www-form-urlencoded`; `--url` defaults to
//! `WEBHOOK_URL` or `http://127.0.0.1:3000/webhooks`. `--handshake` sends the scheme's endpoint
//! handshake instead (Slack's `url_verification`, Discord's `PING`, Zoom's
//! `endpoint.url_validation`, Twitch's `webhook_callback_verification`, Meta's `hub.challenge`
//! GET, Graph's `validationToken`) and checks the receiver's answer. `WEBHOOK_SCHEME` picks the
//! sender (`sotion` by default, or any name the receiver takes) and `WEBHOOK_SECRET` the secret
//! (by default the development secret the receiver example uses). The asymmetric senders
//! (Discord, Standard Webhooks `v1a`, SendGrid) sign with a private key: `WEBHOOK_SIGNING_KEY`,
//! or the development key pair's when neither it nor `WEBHOOK_SECRET` is set. Schemes that sign
//! the URL (Square, Twilio) sign `WEBHOOK_PUBLIC_URL` when it is set, else the URL they post to;
//! Meta's handshake sends `WEBHOOK_VERIFY_TOKEN` (default the receiver's development token).
//! When no handler of the receiver ran for the event, its answer says so (`x-webhook-ignored`),
//! and so does `send`.

mod shared;

use std::io::Write;

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower_webhook::scheme::Outgoing;
use tower_webhook::testing::{random_uuid, Sample};

const USAGE: &str = "usage: cargo run --example send -- [EVENT_TYPE] [--action ACTION] \
    [--id EVENT_ID] [--data JSON] [--form] [--url URL]\n       \
    cargo run --example send -- --handshake [--url URL]";

struct Args {
    event: String,
    /// The body's `action`, from `--action` (GitHub's).
    action: Option<String>,
    /// Whether to send the JSON as a form's `payload` parameter (`--form`).
    form: bool,
    /// The event id, from `--id` (default: a random one).
    id: Option<String>,
    /// The event's `data`, from `--data`.
    data: Option<serde_json::Value>,
    url: String,
    /// `--handshake`: send the scheme's endpoint handshake.
    handshake: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        event: "member.created".to_owned(),
        action: None,
        form: false,
        id: None,
        data: None,
        url: std::env::var("WEBHOOK_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:3000/webhooks".to_owned()),
        handshake: false,
    };
    let mut it = std::env::args().skip(1);
    let mut named_event = false;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--id" => args.id = Some(it.next().ok_or(USAGE)?),
            "--url" => args.url = it.next().ok_or(USAGE)?,
            "--handshake" => args.handshake = true,
            "--action" => args.action = Some(it.next().ok_or(USAGE)?),
            "--form" => args.form = true,
            "--data" => {
                let text = it.next().ok_or(USAGE)?;
                let data = serde_json::from_str(&text)
                    .map_err(|e| format!("--data is not JSON ({e}): {text}"))?;
                args.data = Some(data);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other if other.starts_with('-') => {
                return Err(format!("unknown option {other}\n{USAGE}"))
            }
            other if named_event => {
                return Err(format!("one event per send ({other} is a second)\n{USAGE}"))
            }
            other => {
                other.clone_into(&mut args.event);
                named_event = true;
            }
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("{error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let scheme = shared::scheme_from_env()?;
    // The URL a URL-signed sender signs: the one the receiver is told senders call.
    let signed_url = std::env::var("WEBHOOK_PUBLIC_URL").unwrap_or_else(|_| args.url.clone());
    if args.handshake {
        let key = scheme
            .signing_key(&shared::signing_key_from_env(&scheme)?)
            .map_err(|e| format!("the signing key: {e}"))?;
        return handshake(&scheme, &key, &signed_url, &args.url).await;
    }

    // The sample body in the sender's own shape, signed as the sender signs it (the
    // library's `testing::Sample`, which `tower-webhook sign` and `send` use too).
    let mut sample = Sample::new(&args.event);
    if let Some(id) = &args.id {
        sample = sample.with_id(id);
    }
    if let Some(action) = &args.action {
        sample = sample.with_action(action);
    }
    if let Some(data) = args.data.clone() {
        sample = sample.with_data(data);
    }
    if args.form {
        sample = sample.form();
    }
    let signed = sample
        .sign(
            &scheme,
            &shared::signing_key_from_env(&scheme)?,
            &signed_url,
        )
        .map_err(|e| e.to_string())?;

    let mut request = http::Request::post(&args.url)
        .header("user-agent", "tower-webhook example sender")
        .body(Full::new(signed.body.clone()))
        .map_err(|e| format!("{}: {e}", args.url))?;
    request.headers_mut().extend(signed.headers.clone());
    let response = post(request)
        .await
        .map_err(|e| {
            format!(
                "could not reach {}: {e}\nIs the receiver running? Start it with `cargo run --example receiver`.",
                args.url
            )
        })?;
    report(response, &signed.event, &signed.id, scheme.name()).await
}

/// Prints the receiver's answer to `event` (`shown_id`, as the receiver reports it), and says
/// what went wrong when it is not a `2xx`.
async fn report(
    response: http::Response<Incoming>,
    event: &str,
    shown_id: &str,
    scheme: &str,
) -> Result<(), String> {
    let status = response.status();
    let duplicate = response.headers().contains_key("x-webhook-duplicate");
    let ignored = response
        .headers()
        .get("x-webhook-ignored")
        .map(|name| String::from_utf8_lossy(name.as_bytes()).into_owned());
    let text = response
        .into_body()
        .collect()
        .await
        .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
        .unwrap_or_default();
    // Not `println!`: a closed stdout (`send | head -1`) must not panic.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "sent {event} {shown_id} -> {status} {text}");
    if duplicate {
        let _ = writeln!(
            stdout,
            "(a duplicate: the receiver has this event already, and runs its handler once)"
        );
    }
    if let Some(name) = ignored {
        let _ = writeln!(
            stdout,
            "(ignored: no handler of the receiver ran for {name}; x-webhook-ignored: {name})"
        );
    }
    if status == 401 {
        return Err(
            "the receiver refused the signature: both sides must use the same \
            WEBHOOK_SCHEME and WEBHOOK_SECRET (or neither sets them)"
                .to_owned(),
        );
    }
    if status == 415 {
        return Err(format!(
            "the receiver does not read this body's Content-Type for {scheme} (drop --form?)"
        ));
    }
    if !status.is_success() {
        return Err(format!("the receiver answered {status}"));
    }
    Ok(())
}

/// Sends one request over a new HTTP/1.1 connection (plain `http://` only: the demo receiver
/// listens on loopback), with hyper's client, which axum's server already builds.
async fn post(
    request: http::Request<Full<bytes::Bytes>>,
) -> Result<http::Response<Incoming>, Box<dyn std::error::Error>> {
    let uri = request.uri();
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs are supported".into());
    }
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let (mut parts, body) = request.into_parts();
    // HTTP/1.1 wants the origin form (`/webhooks`) in the request line, and a Host header.
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .parse()?;
    let authority = format!("{host}:{port}");
    parts.headers.insert(http::header::HOST, authority.parse()?);
    Ok(sender
        .send_request(http::Request::from_parts(parts, body))
        .await?)
}

/// Sends the scheme's endpoint handshake and checks the receiver's answer.
async fn handshake(
    scheme: &tower_webhook::Scheme,
    key: &tower_webhook::Secret,
    signed_url: &str,
    url: &str,
) -> Result<(), String> {
    let short_name = shared::short_name(scheme);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (method, target, body, expected) = handshake_request(short_name, key, url, now)?;
    let mut request = http::Request::builder()
        .method(method)
        .uri(&target)
        .header("user-agent", "tower-webhook example sender")
        .body(Full::new(bytes::Bytes::from(body.clone())))
        .map_err(|e| format!("{target}: {e}"))?;
    if method == "POST" {
        request.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
    }
    if matches!(short_name, "slack" | "discord" | "zoom" | "twitch") {
        let signed = scheme
            .sign_with_url(
                key,
                signed_url,
                &Outgoing {
                    id: &random_uuid(),
                    event: "",
                    timestamp: now,
                    body: body.as_bytes(),
                },
            )
            .map_err(|e| format!("cannot sign the handshake: {e}"))?;
        request.headers_mut().extend(signed);
        if short_name == "twitch" {
            request.headers_mut().insert(
                "twitch-eventsub-message-type",
                http::HeaderValue::from_static("webhook_callback_verification"),
            );
        }
    }
    let response = post(request).await.map_err(|e| {
        format!(
            "could not reach {url}: {e}\nIs the receiver running? Start it with `cargo run --example receiver`."
        )
    })?;
    let status = response.status();
    let answer = response
        .into_body()
        .collect()
        .await
        .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
        .unwrap_or_default();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "handshake {short_name} -> {status} {answer}");
    if !status.is_success() || !answer.contains(&expected) {
        return Err(format!(
            "the receiver did not answer the {short_name} handshake as the sender expects ({expected})"
        ));
    }
    Ok(())
}

/// A handshake request of `short_name`'s sender: its method, URL and body, and what the
/// answer must contain.
fn handshake_request(
    short_name: &str,
    key: &tower_webhook::Secret,
    url: &str,
    now: i64,
) -> Result<(&'static str, String, String, String), String> {
    let challenge = random_uuid();
    Ok(match short_name {
        "slack" => (
            "POST",
            url.to_owned(),
            serde_json::json!({ "token": "demo", "challenge": challenge, "type": "url_verification" })
                .to_string(),
            challenge.clone(),
        ),
        "discord" => (
            "POST",
            url.to_owned(),
            serde_json::json!({ "type": 1, "id": challenge, "application_id": "demo", "token": "demo", "version": 1 })
                .to_string(),
            r#"{"type":1}"#.to_owned(),
        ),
        "zoom" => {
            // The answer's encryptedToken: the token's HMAC-SHA256 under the secret, in hex.
            let encrypted = tower_webhook::verify::digest(key, challenge.as_bytes());
            (
                "POST",
                url.to_owned(),
                serde_json::json!({ "event": "endpoint.url_validation", "event_ts": now * 1000, "payload": { "plainToken": challenge } })
                    .to_string(),
                faster_hex::hex_string(&encrypted),
            )
        }
        "twitch" => (
            "POST",
            url.to_owned(),
            serde_json::json!({ "challenge": challenge, "subscription": { "type": "channel.follow", "status": "webhook_callback_verification_pending" } })
                .to_string(),
            challenge.clone(),
        ),
        "meta" => {
            let (token, _) = shared::verify_token_from_env();
            (
                "GET",
                format!("{url}?hub.mode=subscribe&hub.challenge={now}&hub.verify_token={}", encode(&token)),
                String::new(),
                now.to_string(),
            )
        }
        "graph" => (
            "POST",
            format!("{url}?validationToken={challenge}"),
            String::new(),
            challenge.clone(),
        ),
        other => return Err(format!("{other} makes no endpoint handshake")),
    })
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
