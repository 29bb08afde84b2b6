//! Sends one signed sample event to a receiver, as its sender would.
//!
//! ```text
//! cargo run --example send -- [EVENT_TYPE] [--action ACTION] [--id EVENT_ID] [--data JSON] [--form] [--url URL]
//! ```
//!
//! `EVENT_TYPE` defaults to `member.created`; `--action` sets the body's `action` (GitHub's:
//! `send -- issues --action opened`); `--id` defaults to a fresh id (send the same id twice to
//! see the duplicate answer); `--data` sets the event's `data` (a JSON value, such as
//! `'{"fail":2}'` for the inbox example; default a sample); `--form` sends the JSON as GitHub
//! does with the webhook's content type set to `form` (its default), and Slack's
//! interactivity: `payload=<JSON>`, `application/x-www-form-urlencoded`; `--url` defaults to
//! `WEBHOOK_URL` or `http://127.0.0.1:3000/webhooks`. `WEBHOOK_SCHEME` picks the sender
//! (`sotion` by default, `sota`, `github`, `standard`, `stripe`, `slack`) and `WEBHOOK_SECRET`
//! the secret (by default the development secret the receiver example uses). When no handler
//! of the receiver ran for the event, its answer says so (`x-webhook-ignored`), and so does
//! `send`.

mod shared;

use std::fmt::Write as _;
use std::io::Write;

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower_webhook::scheme::Outgoing;

const USAGE: &str = "usage: cargo run --example send -- [EVENT_TYPE] [--action ACTION] \
    [--id EVENT_ID] [--data JSON] [--form] [--url URL]";

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
    let secret = scheme
        .secret(&text)
        .map_err(|e| format!("WEBHOOK_SECRET: {e}"))?;
    let short_name = scheme.name().trim_end_matches("-webhooks");
    if args.action.is_some() && short_name != "github" {
        return Err(format!(
            "--action: the {} scheme names no action (GitHub does: issues --action opened)",
            scheme.name()
        ));
    }

    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())?;
    // sota.io and Slack send no event id: an event is its body's digest. Resending an event
    // named with `--id` must resend the same bytes, so its body's timestamp is fixed.
    let digest_id = matches!(short_name, "sota" | "slack");
    let body_stamp = if digest_id && args.named {
        "2026-01-01T00:00:00Z"
    } else {
        &stamp
    };
    let json = sample_body(
        short_name,
        &args.event,
        args.action.as_deref(),
        &args.id,
        body_stamp,
        args.data.clone(),
    )
    .to_string();
    let (body, content_type) = if args.form {
        (form_payload(&json), "application/x-www-form-urlencoded")
    } else {
        (json, "application/json")
    };
    // The id the receiver will report: the scheme's own notion of it.
    let shown_id = if digest_id {
        hex_digest(body.as_bytes())
    } else {
        args.id.clone()
    };
    let headers = scheme
        .sign(
            &secret,
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
