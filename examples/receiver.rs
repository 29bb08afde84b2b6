//! A demo receiver: `POST /webhooks` behind the verification layer.
//!
//! ```text
//! cargo run --example receiver
//! ```
//!
//! Environment:
//! - `WEBHOOK_ADDR`: where to listen (default `127.0.0.1:3000`);
//! - `WEBHOOK_SCHEME`: `sotion` (default), `sota`, `github`, `standard`, `standard-v1a`,
//!   `stripe`, `slack`, `shopify`, `woocommerce`, `discord`, `twilio`, `sendgrid`, `square`,
//!   `zoom`, `meta`, `paddle`, `linear`, `twitch` or `graph`;
//! - `WEBHOOK_SECRET`: the key as the sender hands it out: the signing secret, or for Discord,
//!   Standard Webhooks `v1a` and SendGrid their public key (default: a development key, printed
//!   at start; `send` signs with its private half);
//! - `WEBHOOK_PUBLIC_URL`: the URL senders call, for the schemes that sign it (Square, Twilio):
//!   default `http://<WEBHOOK_ADDR>/webhooks`;
//! - `WEBHOOK_VERIFY_TOKEN`: Meta's `hub.verify_token` (default: a development token, printed);
//! - `REDIS_URL`: when set (and built with `--features redis`), deduplicate in Redis, shared by
//!   every replica; otherwise in memory.
//!
//! Sotion's nine event types each reach a handler of their own through an `EventRouter`. With
//! `WEBHOOK_SCHEME=github`, `push` and `issues` events have handlers of their own, and every
//! other GitHub event is left to the router's own fallback, which acknowledges it with the
//! `x-webhook-ignored` header and prints nothing; other senders' events reach a fallback of the
//! demo's. Prints `handled <event> <id>` on stdout for each event a handler runs (the id as the
//! scheme defines it), and nothing for an endpoint handshake (the layer answers it); everything
//! else goes to stderr, and a start-up error is one sentence. Send it an event with
//! `cargo run --example send -- member.created`, a handshake with `send -- --handshake`.

mod shared;

use std::io::Write;

use axum::http::StatusCode;
use axum::routing::{on, MethodFilter};
use axum::Router;
use tower_webhook::envelope::{AccessGroupData, AccessGroupMemberData, MemberData};
use tower_webhook::layer::WebhookLayerBuilder;
use tower_webhook::{Envelope, EventRouter, EventType, Scheme, WebhookLayer, WebhookMeta};

/// A handler per event name: for Sotion, its nine documented types, each with its typed
/// `data`; for GitHub, `push` and `issues`, every other event left to the router's own
/// fallback (answered with `x-webhook-ignored`, printing nothing); everything else (other
/// senders' events, a Sotion type this demo does not know) goes to the demo's fallback, which
/// acknowledges it.
fn events(scheme: &Scheme) -> EventRouter {
    if scheme.name() == "github" {
        // `issues` matches every action (`issues.opened`, ...); GitHub's bodies, JSON or the
        // `form` content type's `payload=`, are read alike.
        return EventRouter::new()
            .on_any(log_delivery)
            .on("push", github_event)
            .on("issues", github_event);
    }
    let mut events = EventRouter::new().on_any(log_delivery).fallback(other);
    if scheme.name() != "sotion" {
        // Other senders' bodies are not Sotion envelopes: every event goes to the fallback.
        return events;
    }
    for event in EventType::KNOWN {
        let name = event.as_str();
        events = if name.starts_with("access-group.member.") {
            events.on(name, group_member)
        } else if name.starts_with("access-group.") {
            events.on(name, access_group)
        } else {
            events.on(name, member)
        };
    }
    events
}

async fn member(meta: WebhookMeta, event: Envelope<MemberData>) -> &'static str {
    handled(&meta);
    eprintln!("  member {}", event.data.id.as_deref().unwrap_or("-"));
    "ok"
}

async fn access_group(meta: WebhookMeta, event: Envelope<AccessGroupData>) -> &'static str {
    handled(&meta);
    eprintln!("  access group {}", event.data.id.as_deref().unwrap_or("-"));
    "ok"
}

async fn group_member(meta: WebhookMeta, event: Envelope<AccessGroupMemberData>) -> &'static str {
    handled(&meta);
    eprintln!(
        "  member {} in access group {}",
        event.data.member_id.as_deref().unwrap_or("-"),
        event.data.access_group_id.as_deref().unwrap_or("-")
    );
    "ok"
}

/// GitHub's `push` and `issues` events (any `action`).
async fn github_event(meta: WebhookMeta) -> &'static str {
    handled(&meta);
    eprintln!("  action {}", meta.action().unwrap_or("-"));
    "ok"
}

/// Every other event: acknowledged, so that the sender does not retry it.
async fn other(meta: WebhookMeta) -> &'static str {
    handled(&meta);
    eprintln!("  no handler of its own: acknowledged");
    "ok"
}

/// Runs before every event's handler (a non-2xx answer here would be the delivery's answer).
async fn log_delivery(meta: WebhookMeta) -> StatusCode {
    eprintln!(
        "{} delivery: scope {}, signed at {}, delivery {}",
        meta.scheme(),
        meta.scope().unwrap_or("-"),
        meta.timestamp()
            .and_then(|t| t
                .format(&time::format_description::well_known::Rfc3339)
                .ok())
            .unwrap_or_else(|| "-".to_owned()),
        meta.delivery().unwrap_or("-")
    );
    StatusCode::OK
}

/// `handled <event> <id>` on stdout (what `scripts/smoke` reads).
fn handled(meta: &WebhookMeta) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "handled {} {}",
        meta.event().unwrap_or(""),
        meta.id()
    );
    let _ = stdout.flush();
}

#[tokio::main]
async fn main() {
    // A start-up error as the sentence it is (`main` returning it would print its `Debug`).
    if let Err(error) = run().await {
        eprintln!("{error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The layer's refusals (`info`) and failures (`warn`, `error`) on stderr: never a secret,
    // a signature or a body.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let addr = std::env::var("WEBHOOK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let scheme = shared::scheme_from_env()?;
    let (secret, dev) = shared::secret_from_env(&scheme);
    if let Some(dev) = dev {
        eprintln!("WEBHOOK_SECRET is not set: using the development key {dev}");
    }
    eprintln!("verifying {} deliveries", scheme.name());

    let events = events(&scheme);
    // Meta's subscription handshake is a GET, answered by the layer: the route takes GET too.
    let methods = if shared::short_name(&scheme) == "meta" {
        MethodFilter::POST.or(MethodFilter::GET)
    } else {
        MethodFilter::POST
    };
    let mut layer = WebhookLayer::builder(scheme.clone()).with_secret(&secret);
    if scheme.signs_url() {
        let public = shared::public_url_from_env(&addr);
        let base = public.strip_suffix("/webhooks").ok_or_else(|| {
            format!(
                "WEBHOOK_PUBLIC_URL must be the URL senders call, ending with /webhooks: {public}"
            )
        })?;
        layer = layer.with_public_url(base);
        eprintln!("verifying signatures over the URL {public}");
    }
    if shared::short_name(&scheme) == "meta" {
        let (token, dev) = shared::verify_token_from_env();
        if let Some(dev) = dev {
            eprintln!("WEBHOOK_VERIFY_TOKEN is not set: using the development token {dev}");
        }
        layer = layer.with_verify_token(&token);
    }
    let layer = with_store(layer)?
        .build()
        .map_err(|e| format!("WEBHOOK_SECRET: {e}"))?;
    // `route_layer`: the layer guards these methods only; others get 405 without touching it.
    let app = Router::new().route("/webhooks", on(methods, events).route_layer(layer));

    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        format!("cannot listen on {addr}: {e} (set WEBHOOK_ADDR to another address)")
    })?;
    eprintln!("listening on http://{addr}/webhooks");
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(feature = "redis")]
fn with_store(
    layer: WebhookLayerBuilder,
) -> Result<WebhookLayerBuilder, Box<dyn std::error::Error>> {
    use std::time::Duration;
    use tower_webhook::idempotency::RedisStore;
    if let Ok(url) = std::env::var("REDIS_URL") {
        let store = RedisStore::connect_lazy(&url)
            .map_err(|e| format!("REDIS_URL: {e}"))?
            .with_timeout(Duration::from_secs(2));
        eprintln!("deduplicating deliveries in Redis at {url}");
        Ok(layer.with_store(store))
    } else {
        eprintln!("deduplicating deliveries in memory (set REDIS_URL to share them)");
        Ok(layer)
    }
}

#[cfg(not(feature = "redis"))]
fn with_store(
    layer: WebhookLayerBuilder,
) -> Result<WebhookLayerBuilder, Box<dyn std::error::Error>> {
    if std::env::var_os("REDIS_URL").is_some() {
        return Err("REDIS_URL is set, but this build has no Redis support: \
            run `cargo run --example receiver --features redis`"
            .into());
    }
    eprintln!("deduplicating deliveries in memory");
    Ok(layer)
}
