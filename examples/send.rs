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

use std::fmt::Write as _;
use std::io::Write;

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower_webhook::scheme::Outgoing;

const USAGE: &str = "usage: cargo run --example send -- [EVENT_TYPE] [--action ACTION] \
    [--id EVENT_ID] [--data JSON] [--form] [--url URL]\n       \
    cargo run --example send -- --handshake [--url URL]";

struct Args {
    event: String,
    /// The body's `action`, from `--action` (GitHub's).
    action: Option<String>,
    /// Whether to send the JSON as a form's `payload` parameter (`--form`).
    form: bool,
    id: String,
    /// Whether `--id` named the event (a resend of one event must then be the same event).
    named: bool,
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
        id: random_uuid(),
        named: false,
        data: None,
        url: std::env::var("WEBHOOK_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:3000/webhooks".to_owned()),
        handshake: false,
    };
    let mut it = std::env::args().skip(1);
    let mut named_event = false;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--id" => {
                args.id = it.next().ok_or(USAGE)?;
                args.named = true;
            }
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

/// A UUIDv4-shaped random id, as Sotion's event ids are.
fn random_uuid() -> String {
    let bits = rand::random::<u128>();
    // Version 4 in bits 76..80, RFC 4122 variant in bits 62..64.
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A sample body in the sender's own shape; `data`, when given, is its data (for Stripe, its
/// `data.object`); `action`, GitHub's body `action`.
fn sample_body(
    scheme: &str,
    event: &str,
    action: Option<&str>,
    id: &str,
    now: &str,
    data: Option<serde_json::Value>,
) -> serde_json::Value {
    let member = serde_json::json!({ "id": "member_demo", "email": "ada@example.com", "name": "Ada", "status": "active" });
    let given = data.is_some();
    let member = data.unwrap_or(member);
    match scheme {
        "sotion" => {
            let data = if given {
                member
            } else if event.starts_with("access-group.member.") {
                serde_json::json!({ "accessGroupId": "group_demo", "memberId": "member_demo" })
            } else if event.starts_with("access-group.") {
                serde_json::json!({ "id": "group_demo", "name": "Pro", "description": "Paying members" })
            } else {
                member
            };
            serde_json::json!({ "id": id, "type": event, "timestamp": now, "version": "1", "siteId": "site_demo", "data": data })
        }
        "sota" => {
            let data = if given {
                member
            } else {
                serde_json::json!({ "url": "https://demo.sota.io", "status": "running" })
            };
            serde_json::json!({ "event": event, "project_id": "project_demo", "deployment_id": id, "timestamp": now, "data": data })
        }
        "stripe" => {
            serde_json::json!({ "id": id, "object": "event", "type": event, "created": 0, "data": { "object": member } })
        }
        "github" => {
            // GitHub's own bodies carry no event id (it is the unsigned `X-GitHub-Delivery`, and
            // deliveries are deduplicated by their body): the sample carries it, so that two ids
            // are two events.
            let mut body = serde_json::json!({ "sample_id": id, "sender": { "login": "octocat" } });
            if let Some(action) = action {
                body["action"] = action.into();
            }
            if given {
                body["data"] = member;
            }
            body
        }
        "shopify" | "woocommerce" => {
            // The topic is a header; the sample carries the id, so two ids are two events.
            serde_json::json!({ "id": id, "created_at": now, "customer": member })
        }
        // Discord's interaction types are numbers: 2 is an application command.
        "discord" => {
            serde_json::json!({ "type": 2, "id": id, "application_id": "demo", "token": "demo", "data": { "name": event, "member": member } })
        }
        "sendgrid" => {
            serde_json::json!([{ "event": event, "sg_event_id": id, "email": "ada@example.com", "timestamp": 0 }])
        }
        "square" => {
            serde_json::json!({ "merchant_id": "merchant_demo", "type": event, "event_id": id, "created_at": now, "data": { "object": member } })
        }
        "zoom" => {
            serde_json::json!({ "event": event, "event_ts": now, "payload": { "account_id": "account_demo", "object": member, "nonce": id } })
        }
        "meta" => {
            serde_json::json!({ "object": event, "entry": [{ "id": id, "time": now, "changes": [{ "field": "messages", "value": member }] }] })
        }
        "paddle" => {
            serde_json::json!({ "event_id": id, "event_type": event, "occurred_at": now, "notification_id": "ntf_demo", "data": member })
        }
        "twitch" => {
            serde_json::json!({ "subscription": { "type": event, "version": "1", "status": "enabled" }, "event": member })
        }
        _ => serde_json::json!({ "type": event, "id": id, "timestamp": now, "data": member }),
    }
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
    let (text, _) = shared::secret_from_env(&scheme);
    let key = scheme
        .signing_key(&shared::signing_key_from_env(&scheme)?)
        .map_err(|e| format!("the signing key: {e}"))?;
    let short_name = shared::short_name(&scheme);
    if args.action.is_some() && short_name != "github" {
        return Err(format!(
            "--action: the {} scheme names no action (GitHub does: issues --action opened)",
            scheme.name()
        ));
    }
    // The URL a URL-signed sender signs: the one the receiver is told senders call.
    let signed_url = std::env::var("WEBHOOK_PUBLIC_URL").unwrap_or_else(|_| args.url.clone());
    if args.handshake {
        return handshake(&scheme, &key, &signed_url, &args.url).await;
    }

    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())?;
    // The senders that send no event id: an event is its body's digest. Resending an event
    // named with `--id` must resend the same bytes, so its body's timestamp is fixed.
    let digest_id = matches!(
        short_name,
        "sota" | "slack" | "discord" | "twilio" | "sendgrid" | "zoom" | "meta" | "graph"
    );
    // Shopify and WooCommerce name the event in unsigned headers: an event is its body too.
    let body_keyed = digest_id || matches!(short_name, "shopify" | "woocommerce");
    let body_stamp = if body_keyed && args.named {
        "2026-01-01T00:00:00Z"
    } else {
        &stamp
    };
    let (body, content_type) = body_for(short_name, &args, &text, body_stamp, now);
    // The id the receiver will report: the scheme's own notion of it.
    let shown_id = if digest_id {
        hex_digest(body.as_bytes())
    } else {
        args.id.clone()
    };
    let headers = scheme
        .sign_with_url(
            &key,
            &signed_url,
            &Outgoing {
                id: &args.id,
                event: &args.event,
                timestamp: now.unix_timestamp(),
                body: body.as_bytes(),
            },
        )
        .map_err(|e| format!("cannot sign this event: {e}"))?;

    let mut request = http::Request::post(&args.url)
        .header("content-type", content_type)
        .header("user-agent", "tower-webhook example sender")
        .header("x-webhook-delivery", random_uuid())
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| format!("{}: {e}", args.url))?;
    request.headers_mut().extend(headers);
    let response = post(request)
        .await
        .map_err(|e| {
            format!(
                "could not reach {}: {e}\nIs the receiver running? Start it with `cargo run --example receiver`.",
                args.url
            )
        })?;
    report(response, &args.event, &shown_id, scheme.name()).await
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

/// `payload=<json>`, form-encoded as GitHub's sender encodes it: letters, digits and `*-._` as
/// they are, a space as `+`, every other byte as `%XX`.
fn form_payload(json: &str) -> String {
    let mut form = String::from("payload=");
    for byte in json.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                form.push(char::from(byte));
            }
            b' ' => form.push('+'),
            other => {
                let _ = write!(form, "%{other:02X}");
            }
        }
    }
    form
}

/// The lower-case hex SHA-256 of `bytes`: the event id of a sender that sends none.
fn hex_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    faster_hex::hex_string(&sha2::Sha256::digest(bytes))
}

/// The body to send, in the sender's own shape, and its content type.
fn body_for(
    short_name: &str,
    args: &Args,
    secret_text: &str,
    body_stamp: &str,
    now: time::OffsetDateTime,
) -> (String, &'static str) {
    match short_name {
        // Twilio posts a form; Graph's notifications carry the subscription's clientState.
        "twilio" => (
            twilio_form(&args.event, &args.id),
            "application/x-www-form-urlencoded",
        ),
        "graph" => (
            serde_json::json!({ "value": [{ "clientState": secret_text, "id": args.id, "changeType": args.event, "resource": "users/demo" }] })
                .to_string(),
            "application/json",
        ),
        // Linear signs the time it sends at, in milliseconds, in the body.
        "linear" => (
            serde_json::json!({ "action": "create", "type": args.event, "createdAt": body_stamp, "organizationId": "org_demo", "webhookTimestamp": now.unix_timestamp() * 1000, "data": { "id": args.id } })
                .to_string(),
            "application/json",
        ),
        _ => {
            let json = sample_body(
                short_name,
                &args.event,
                args.action.as_deref(),
                &args.id,
                body_stamp,
                args.data.clone(),
            )
            .to_string();
            if args.form {
                (form_payload(&json), "application/x-www-form-urlencoded")
            } else {
                (json, "application/json")
            }
        }
    }
}

/// A Twilio SMS webhook's form body.
fn twilio_form(event: &str, id: &str) -> String {
    format!(
        "MessageSid={id}&AccountSid=AC_demo&From=%2B15551234567&To=%2B15557654321&Body=Hello+from+Zo%C3%AB&SmsStatus={event}"
    )
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
