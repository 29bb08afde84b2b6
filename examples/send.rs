//! Sends one signed sample event, as Sotion would, to a receiver.
//!
//! ```text
//! cargo run --example send -- [EVENT_TYPE] [--id EVENT_ID] [--url URL]
//! ```
//!
//! `EVENT_TYPE` defaults to `member.created`; `--id` defaults to a fresh id (send the same id
//! twice to see the duplicate answer); `--url` defaults to `WEBHOOK_URL` or
//! `http://127.0.0.1:3000/webhooks`. The secret is `WEBHOOK_SECRET`, or the development secret
//! the receiver example uses when it is unset.

use tower_webhook::{verify, Secret};

const DEV_SECRET: &str = "whsec_dev_only_do_not_use_in_production";
const USAGE: &str = "usage: cargo run --example send -- [EVENT_TYPE] [--id EVENT_ID] [--url URL]";

struct Args {
    event: String,
    id: String,
    url: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        event: "member.created".to_owned(),
        id: random_uuid(),
        url: std::env::var("WEBHOOK_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:3000/webhooks".to_owned()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--id" => args.id = it.next().ok_or(USAGE)?,
            "--url" => args.url = it.next().ok_or(USAGE)?,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other if other.starts_with('-') => {
                return Err(format!("unknown option {other}\n{USAGE}"))
            }
            other => other.clone_into(&mut args.event),
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

fn sample_data(event: &str) -> serde_json::Value {
    if event.starts_with("access-group.member.") {
        serde_json::json!({ "accessGroupId": "group_demo", "memberId": "member_demo" })
    } else if event.starts_with("access-group.") {
        serde_json::json!({ "id": "group_demo", "name": "Pro", "description": "Paying members" })
    } else {
        serde_json::json!({ "id": "member_demo", "email": "ada@example.com", "name": "Ada", "status": "active" })
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
    let secret_text = std::env::var("WEBHOOK_SECRET").unwrap_or_else(|_| DEV_SECRET.to_owned());
    let secret = Secret::new(&secret_text).map_err(|e| format!("WEBHOOK_SECRET: {e}"))?;

    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())?;
    let body = serde_json::json!({
        "id": args.id,
        "type": args.event,
        "timestamp": timestamp,
        "version": "1",
        "siteId": "site_demo",
        "data": sample_data(&args.event),
    })
    .to_string();

    let response = reqwest::Client::new()
        .post(&args.url)
        .header("content-type", "application/json")
        .header("user-agent", "Sotion-Webhooks/1.0 (tower-webhook example)")
        .header("x-webhook-signature", verify::sign(&secret, body.as_bytes()))
        .header("x-webhook-event", &args.event)
        .header("x-webhook-id", &args.id)
        .header("x-webhook-delivery", random_uuid())
        .body(body)
        .send()
        .await
        .map_err(|e| {
            format!(
                "could not reach {}: {e}\nIs the receiver running? Start it with `cargo run --example receiver`.",
                args.url
            )
        })?;
    let status = response.status();
    let duplicate = response.headers().contains_key("x-webhook-duplicate");
    let text = response.text().await.unwrap_or_default();
    println!("sent {} {} -> {status} {text}", args.event, args.id);
    if duplicate {
        println!("(the receiver had already handled this event)");
    }
    if status == 401 {
        return Err(
            "the receiver refused the signature: both sides must use the same \
            WEBHOOK_SECRET (or neither sets it)"
                .to_owned(),
        );
    }
    if !status.is_success() {
        return Err(format!("the receiver answered {status}"));
    }
    Ok(())
}
