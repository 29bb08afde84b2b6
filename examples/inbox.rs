//! A demo receiver in inbox mode: `POST /webhooks` is verified, stored, and answered `200` at
//! once; workers run the handler later, with retries and dead letters.
//!
//! ```text
//! cargo run --example inbox --features sqlite                  # serve
//! cargo run --example inbox --features sqlite -- dead          # list the dead-lettered events
//! cargo run --example inbox --features sqlite -- replay <id>   # make a dead event due again
//! ```
//!
//! Environment (as the `receiver` example): `WEBHOOK_ADDR` (default `127.0.0.1:3000`),
//! `WEBHOOK_SCHEME` (default `sotion`), `WEBHOOK_SECRET` (default: a development secret). And:
//! - `INBOX_URL`: `sqlite://PATH` (default `sqlite://tower-webhook-inbox.db`, in the working
//!   directory; the file and the schema are created when missing), `postgres://...` (build
//!   with `--features sqlite,postgres`) or `redis://...` (build with `--features sqlite,redis`;
//!   a Redis Streams inbox, see `RedisInbox`);
//! - `INBOX_MAX_ATTEMPTS` (default 8), `INBOX_BACKOFF_MS` (the first retry's delay, default
//!   1000, doubling with jitter), `INBOX_LEASE_MS` (default 30000), `INBOX_WORKERS`
//!   (default 4);
//! - `ADMIN_TOKEN`: mounts the inbox's admin page at `/admin` (`tower_webhook::inbox::admin`),
//!   for requests with `Authorization: Bearer $ADMIN_TOKEN`, or a browser's login prompt with
//!   the token as the password. Unset: no admin page.
//!
//! The demo handler reads the event's `data`: `fail` (an integer N) makes its first N attempts
//! answer 500, `sleep_ms` makes each attempt sleep that long first. It prints one line per
//! attempt on stdout, `processed <event> <id> attempt <n>` or `failed <event> <id> attempt <n>`,
//! and `dead-lettered <event> <id>` when it gives up. Try
//! `cargo run --example send -- --data '{"fail":2}'`.

mod shared;

use std::io::Write;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use axum::handler::Handler;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use tower_webhook::extract::Verified;
use tower_webhook::inbox::admin::Admin;
use tower_webhook::inbox::{
    Attempt, DeliveryState, InboxBackend, InboxOptions, Outcome, Replay, SqliteInbox, Workers,
};
use tower_webhook::{EventRouter, RawObject, WebhookLayer, WebhookMeta};

const USAGE: &str = "usage: cargo run --example inbox --features sqlite -- [dead | replay <id>]";

/// What the command line asks for.
enum Command {
    Serve(Settings),
    Dead,
    Replay(String),
}

/// The workers' settings, read from `INBOX_*` before anything is opened.
struct Settings {
    workers: NonZeroUsize,
    max_attempts: NonZeroU32,
    backoff: Duration,
    lease: Duration,
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let at_least_one = |name: &str, value: u64| {
            if value == 0 {
                Err(format!("{name} must be at least 1"))
            } else {
                Ok(Duration::from_millis(value))
            }
        };
        Ok(Self {
            workers: NonZeroUsize::new(env_number("INBOX_WORKERS", 4)?)
                .ok_or("INBOX_WORKERS must be at least 1")?,
            max_attempts: NonZeroU32::new(env_number("INBOX_MAX_ATTEMPTS", 8)?)
                .ok_or("INBOX_MAX_ATTEMPTS must be at least 1")?,
            backoff: at_least_one("INBOX_BACKOFF_MS", env_number("INBOX_BACKOFF_MS", 1000)?)?,
            lease: at_least_one("INBOX_LEASE_MS", env_number("INBOX_LEASE_MS", 30_000)?)?,
        })
    }
}

fn command() -> Result<Command, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Ok(Command::Serve(Settings::from_env()?)),
        ["dead"] => Ok(Command::Dead),
        ["replay", id] => Ok(Command::Replay((*id).to_owned())),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            std::process::exit(0);
        }
        _ => Err(USAGE.to_owned()),
    }
}

/// `name`, a number, from the environment, or `default`.
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{name}={text} is not a valid number")),
        Err(_) => Ok(default),
    }
}

/// One line on stdout (what a user watches); never panics on a closed stdout.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// The event's `data`, where `send --data` puts it: the body's `data`, and for Stripe (whose
/// events carry their object in `data.object`) `data.object`. Read from a `RawObject`, which
/// keeps any JSON object (a `serde_json::Value` refuses `1e400`, and the delivery would be
/// retried until dead-lettered).
fn event_data(scheme: &str, body: &RawObject) -> Option<RawObject> {
    let data: RawObject = body.get_as("data").ok().flatten()?;
    if scheme == "stripe" {
        data.get_as("object").ok().flatten()
    } else {
        Some(data)
    }
}

/// The demo handler, for every event: `data.fail` and `data.sleep_ms` decide what it does.
/// What it leads to is printed by [`report`], once recorded.
async fn demo<B: InboxBackend>(
    meta: WebhookMeta,
    Extension(attempt): Extension<Attempt<B>>,
    Verified(body): Verified<RawObject>,
) -> StatusCode {
    let data = event_data(meta.scheme(), &body);
    let number = |field: &str| data.as_ref()?.get_as::<u64>(field).ok().flatten();
    if let Some(ms) = number("sleep_ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if number("fail").is_some_and(|fail| u64::from(attempt.number()) <= fail) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

/// The lines a user watches, one per attempt once its outcome is recorded, however it ended
/// (an answer, a timeout, a panic), and one when the inbox gives up on an event.
fn report(
    max_attempts: u32,
    event: &str,
    id: &str,
    attempt: u32,
    outcome: Outcome<'_>,
) -> Vec<String> {
    match outcome {
        Outcome::Done => vec![format!("processed {event} {id} attempt {attempt}")],
        Outcome::Retried { .. } => vec![format!("failed {event} {id} attempt {attempt}")],
        Outcome::DeadLettered { .. } => {
            let mut lines = Vec::new();
            // Past the last attempt, the handler did not run (the earlier attempts ended
            // without an outcome: the receiver was killed while they ran).
            if attempt <= max_attempts {
                lines.push(format!("failed {event} {id} attempt {attempt}"));
            }
            lines.push(format!("dead-lettered {event} {id}"));
            lines
        }
        // Given back at shutdown, or no longer this attempt's: another attempt will report.
        _ => Vec::new(),
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let command = command()?;
    let url =
        std::env::var("INBOX_URL").unwrap_or_else(|_| "sqlite://tower-webhook-inbox.db".to_owned());
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return postgres(&url, command).await;
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        return redis(&url, command).await;
    }
    if !url.starts_with("sqlite:") {
        return Err(unknown_url(&url));
    }
    let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = std::path::Path::new(path.split('?').next().unwrap_or(path));
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(format!(
                "INBOX_URL={url}: the directory {} does not exist (the database file is created \
                 when missing, its directory is not)",
                dir.display()
            ));
        }
    }
    let inbox = SqliteInbox::connect(&url, InboxOptions::new())
        .await
        .map_err(|e| format!("INBOX_URL={url}: {e}"))?;
    eprintln!("inbox: {url}");
    dispatch(inbox, command).await
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str, command: Command) -> Result<(), String> {
    let inbox = tower_webhook::inbox::PostgresInbox::connect(url, InboxOptions::new())
        .await
        .map_err(|e| format!("INBOX_URL: {e}"))?;
    eprintln!("inbox: PostgreSQL");
    dispatch(inbox, command).await
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_: &str, _: Command) -> Result<(), String> {
    Err(
        "INBOX_URL is a PostgreSQL URL, but this build has no PostgreSQL support: run \
         `cargo run --example inbox --features sqlite,postgres`"
            .to_owned(),
    )
}

#[cfg(feature = "redis")]
async fn redis(url: &str, command: Command) -> Result<(), String> {
    let inbox = tower_webhook::inbox::RedisInbox::connect(url, InboxOptions::new())
        .await
        .map_err(|e| format!("INBOX_URL: {e}"))?;
    eprintln!("inbox: Redis Streams");
    dispatch(inbox, command).await
}

#[cfg(not(feature = "redis"))]
async fn redis(_: &str, _: Command) -> Result<(), String> {
    Err(
        "INBOX_URL is a Redis URL, but this build has no Redis support: run \
         `cargo run --example inbox --features sqlite,redis`"
            .to_owned(),
    )
}

/// The error for an `INBOX_URL` of no known kind: it names the URL's scheme only, since the
/// rest may hold a password (a mistyped `postgress://app:secret@db/app`).
fn unknown_url(url: &str) -> String {
    let scheme = url
        .split_once(':')
        .map_or("", |(scheme, _)| scheme)
        .chars()
        .take(20)
        .collect::<String>();
    format!("INBOX_URL ({scheme}:...): expected sqlite://PATH, postgres://... or redis://...")
}

async fn dispatch<B: InboxBackend + Clone>(inbox: B, command: Command) -> Result<(), String> {
    match command {
        Command::Serve(settings) => serve(inbox, settings).await,
        Command::Dead => {
            for record in dead(&inbox).await? {
                let facts = record.delivery.facts();
                say(&format!(
                    "{} {}",
                    facts.event.as_deref().unwrap_or("-"),
                    facts.id
                ));
            }
            Ok(())
        }
        Command::Replay(id) => {
            let dead = dead(&inbox).await?;
            let Some(record) = dead.iter().find(|record| record.delivery.facts().id == id) else {
                return Err(format!("no dead-lettered event {id} (see `-- dead`)"));
            };
            let key = *record.delivery.key();
            inbox
                .replay(&key, Replay::Dead)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("event {id} is due again; a running receiver will process it");
            Ok(())
        }
    }
}

async fn dead<B: InboxBackend>(inbox: &B) -> Result<Vec<tower_webhook::inbox::Record>, String> {
    inbox
        .list(DeliveryState::Dead, 10_000)
        .await
        .map_err(|e| e.to_string())
}

async fn serve<B: InboxBackend + Clone>(inbox: B, settings: Settings) -> Result<(), String> {
    let Settings {
        workers,
        max_attempts,
        backoff,
        lease,
    } = settings;
    let addr = std::env::var("WEBHOOK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let scheme = shared::scheme_from_env()?;
    let (secret, dev) = shared::secret_from_env(&scheme);
    if let Some(dev) = dev {
        eprintln!("WEBHOOK_SECRET is not set: using the development secret {dev}");
    }
    eprintln!(
        "verifying {} deliveries, storing them in the inbox",
        scheme.name()
    );

    let events = EventRouter::new().fallback(demo::<B>);
    let layer = WebhookLayer::builder(scheme)
        .with_secret(&secret)
        .with_inbox(inbox.clone()) // the one line that makes it an inbox receiver
        .build()
        .map_err(|e| format!("WEBHOOK_SECRET: {e}"))?;
    let admin = admin(&inbox)?;
    let running = Workers::new(inbox, events.clone().with_state(()))
        .on_outcome(move |delivery, attempt, outcome| {
            let facts = delivery.facts();
            let event = facts.event.as_deref().unwrap_or("-");
            for line in report(max_attempts.get(), event, &facts.id, attempt, outcome) {
                say(&line);
            }
        })
        .with_workers(workers)
        .with_max_attempts(max_attempts)
        .with_backoff(backoff)
        .with_lease(lease)
        .start()
        .map_err(|e| format!("INBOX_BACKOFF_MS / INBOX_LEASE_MS: {e}"))?;
    let mut app = Router::new().route("/webhooks", post(events).route_layer(layer));
    let admin_line = if let Some(admin) = admin {
        app = app.nest("/admin", admin);
        format!(
            "admin page on http://{addr}/admin (Authorization: Bearer $ADMIN_TOKEN; a browser \
             asks for a user name and password: any name, the token as the password)"
        )
    } else {
        "no admin page: set ADMIN_TOKEN to mount one at /admin".to_owned()
    };

    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        format!("cannot listen on {addr}: {e} (set WEBHOOK_ADDR to another address)")
    })?;
    eprintln!("{admin_line}");
    eprintln!("listening on http://{addr}/webhooks (Ctrl-C stops, letting handlers finish)");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("stopping: running handlers have 10 s to finish");
    running.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

/// The admin page of `inbox` (`tower_webhook::inbox::admin`) behind `ADMIN_TOKEN`, when it is
/// set.
fn admin<B: InboxBackend + Clone>(inbox: &B) -> Result<Option<Router>, String> {
    let Ok(token) = std::env::var("ADMIN_TOKEN") else {
        return Ok(None);
    };
    Admin::new(inbox.clone())
        .bearer_token(token.trim())
        .build()
        .map(Some)
        .map_err(|e| format!("ADMIN_TOKEN: {e}"))
}

#[cfg(test)]
mod tests {
    use super::{event_data, report, unknown_url};
    use serde_json::json;
    use tower_webhook::inbox::Outcome;

    #[test]
    fn one_line_per_attempt_and_one_when_the_inbox_gives_up_however_the_attempt_ended() {
        let line = |attempt, outcome| report(3, "member.created", "evt_1", attempt, outcome);
        assert_eq!(
            line(1, Outcome::Done),
            ["processed member.created evt_1 attempt 1"]
        );
        assert_eq!(
            line(
                1,
                Outcome::Retried {
                    error: "the handler answered 500"
                }
            ),
            ["failed member.created evt_1 attempt 1"]
        );
        // The last attempt failed, by an answer or a timeout or a panic: the same two lines.
        for error in [
            "the handler answered 500",
            "the handler did not finish within 5s",
        ] {
            assert_eq!(
                line(3, Outcome::DeadLettered { error }),
                [
                    "failed member.created evt_1 attempt 3",
                    "dead-lettered member.created evt_1"
                ]
            );
        }
        // Claimed past the last attempt (the receiver was killed during it): not run again.
        assert_eq!(
            line(
                4,
                Outcome::DeadLettered {
                    error: "attempt 4 of at most 3"
                }
            ),
            ["dead-lettered member.created evt_1"]
        );
        assert!(line(2, Outcome::Released).is_empty());
    }

    #[test]
    fn the_demo_reads_fail_where_send_data_puts_it_for_every_scheme() {
        let fail = |scheme: &str, body: serde_json::Value| {
            let body = serde_json::from_value(body).unwrap();
            event_data(scheme, &body)?.get_as::<u64>("fail").unwrap()
        };
        // Beside data `serde_json::Value` cannot hold, as a sender may send it (issue 19, 7).
        let text = r#"{"data":{"fail":2,"balance":1e400}}"#;
        let body = serde_json::from_str(text).unwrap();
        let data = event_data("sotion", &body).unwrap();
        assert_eq!(data.get_as::<u64>("fail").unwrap(), Some(2));
        // `send --data '{"fail":2}'`: the event's `data`, and Stripe's `data.object`.
        for scheme in ["sotion", "sota", "github", "standard", "slack"] {
            assert_eq!(
                fail(scheme, json!({ "data": { "fail": 2 } })),
                Some(2),
                "{scheme}"
            );
        }
        assert_eq!(
            fail("stripe", json!({ "data": { "object": { "fail": 2 } } })),
            Some(2),
            "stripe"
        );
    }

    #[test]
    fn an_unknown_inbox_url_is_refused_without_printing_its_password() {
        let error = unknown_url("postgress://app:s3cret@db/app");
        assert!(
            error.starts_with("INBOX_URL (postgress:...): expected"),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "{error}");
    }
}
