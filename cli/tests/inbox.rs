//! `tower-webhook inbox ...` against real stores: a `SQLite` file, a `PostgreSQL` and a
//! `redis-server` started here (as the library's inbox tests start them). One scenario, run on
//! each: the JSON contract, stats, list (filters, pages), show, replay (ids, `--dead`), purge,
//! and the exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "../../tests/common/servers.rs"]
mod servers;
mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::Value;
use servers::{PostgresServer, RedisServer};
use support::cli;
use tower_webhook::idempotency::IdempotencyKey;
use tower_webhook::inbox::{
    Delivery, Facts, InboxBackend, InboxOptions, PostgresInbox, RedisInbox, SqliteInbox,
};

const PREFIX: &str = "cli_";

/// What becomes of a delivery before the command line looks at it.
#[derive(Clone, Copy)]
enum Fate {
    Waiting,
    Retrying,
    Dead,
    Done,
}

fn delivery(id: &str, event: &str, path: &str, data: &str) -> Delivery {
    let mut facts = Facts::new("sotion", id);
    facts.event = Some(event.to_owned());
    facts.scope = Some("site_1".to_owned());
    let body = format!(
        r#"{{"id":"{id}","type":"{event}","siteId":"site_1","data":{{"email":"ada@example.com","note":"{data}"}}}}"#
    );
    Delivery::from_facts(
        facts,
        IdempotencyKey::new("sotion", &format!("{path}|site_1"), id),
        path,
        [
            (
                HeaderName::from_static("x-webhook-event"),
                HeaderValue::from_str(event).unwrap(),
            ),
            (
                HeaderName::from_static("x-webhook-signature"),
                HeaderValue::from_static("sha256=00"),
            ),
        ],
        Bytes::from(body),
    )
}

/// Accepts `delivery` and takes it to `fate` (claiming it alone: every delivery before it is
/// settled, or waits unclaimable behind a retry's delay).
async fn settle(inbox: &impl InboxBackend, delivery: Delivery, fate: Fate) {
    inbox.accept(&delivery).await.unwrap();
    if matches!(fate, Fate::Waiting) {
        return;
    }
    let claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].lease.key(), delivery.key());
    let lease = &claims[0].lease;
    let recorded = match fate {
        Fate::Dead => inbox
            .dead_letter(lease, "boom: the handler answered 500")
            .await
            .unwrap(),
        Fate::Done => inbox.complete(lease).await.unwrap(),
        Fate::Retrying => inbox
            .retry(lease, Duration::from_secs(3_600), "timed out")
            .await
            .unwrap(),
        Fate::Waiting => unreachable!(),
    };
    assert!(recorded);
}

/// The deliveries every scenario starts from: 3 dead (2 `member.created`), 1 done, 1 retrying,
/// 4 waiting (one event id on two endpoints, one with a 10 KB body).
async fn populate(inbox: &impl InboxBackend) {
    let big = "x".repeat(10_000);
    for (id, event, path, data, fate) in [
        ("evt_d1", "member.created", "/webhooks", "", Fate::Dead),
        ("evt_d2", "member.created", "/webhooks", "", Fate::Dead),
        ("evt_d3", "member.deleted", "/webhooks", "", Fate::Dead),
        ("evt_done", "member.updated", "/webhooks", "", Fate::Done),
        (
            "evt_retry",
            "member.created",
            "/webhooks",
            "",
            Fate::Retrying,
        ),
        ("evt_wait", "member.created", "/webhooks", "", Fate::Waiting),
        ("evt_twice", "member.created", "/a", "", Fate::Waiting),
        ("evt_twice", "member.created", "/b", "", Fate::Waiting),
        (
            "evt_big",
            "bulk.import",
            "/webhooks",
            big.as_str(),
            Fate::Waiting,
        ),
    ] {
        settle(inbox, delivery(id, event, path, data), fate).await;
    }
}

/// `tower-webhook inbox <args> --url <url> --prefix cli_`.
fn inbox(url: &str, args: &[&str]) -> support::Run {
    let mut all = vec!["inbox"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--url", url, "--prefix", PREFIX]);
    cli(&all)
}

fn stats(url: &str) -> Value {
    let run = inbox(url, &["stats", "--json"]).expect_code(0);
    let mut lines = run.json_lines();
    assert_eq!(lines.len(), 1, "{run:?}");
    lines.remove(0)
}

fn ids(lines: &[Value]) -> Vec<&str> {
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|line| line["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

/// Pending deliveries: waiting and retrying.
fn pending(counts: &Value) -> u64 {
    counts["waiting"].as_u64().unwrap() + counts["retrying"].as_u64().unwrap()
}

/// The scenario, on the inbox at `url` populated by [`populate`].
fn scenario(url: &str) {
    stats_and_lists(url);
    let keys = show_and_ambiguity(url);
    replay_and_purge(url, &keys);
    usage_errors(url);
}

/// stats and list, their JSON contract, filters and pages.
fn stats_and_lists(url: &str) {
    // stats: one object with the contract's fields.
    let counts = stats(url);
    for field in ["waiting", "running", "retrying", "dead", "done", "lag_ms"] {
        assert!(counts[field].is_u64(), "{field}: {counts}");
    }
    assert_eq!(
        (
            &counts["waiting"],
            &counts["running"],
            &counts["retrying"],
            &counts["dead"],
            &counts["done"]
        ),
        (&4.into(), &0.into(), &1.into(), &3.into(), &1.into()),
        "{counts}"
    );
    let human = inbox(url, &["stats"]).expect_code(0);
    assert!(
        human.stdout.contains("dead") && human.stdout.contains("lag:"),
        "{human:?}"
    );

    // list --state dead: JSON Lines with the contract's fields.
    let dead = inbox(url, &["list", "--state", "dead", "--json"])
        .expect_code(0)
        .json_lines();
    assert_eq!(ids(&dead), ["evt_d1", "evt_d2", "evt_d3"]);
    for row in &dead {
        assert_eq!(row["state"], "dead");
        assert_eq!(row["attempts"], 1);
        assert_eq!(row["last_error"], "boom: the handler answered 500");
        assert_eq!(row["scheme"], "sotion");
        assert_eq!(row["key"].as_str().map(str::len), Some(64));
        assert!(row["event"].is_string() && row["accepted_at"].is_string());
    }
    let created = inbox(
        url,
        &[
            "list",
            "--state",
            "dead",
            "--event",
            "member.created",
            "--json",
        ],
    )
    .expect_code(0)
    .json_lines();
    assert_eq!(ids(&created), ["evt_d1", "evt_d2"]);
    let retrying = inbox(url, &["list", "--state", "retrying", "--json"])
        .expect_code(0)
        .json_lines();
    assert_eq!(ids(&retrying), ["evt_retry"]);
    assert_eq!(retrying[0]["last_error"], "timed out");
    let recent = inbox(url, &["list", "--since", "1h", "--json"])
        .expect_code(0)
        .json_lines();
    assert_eq!(recent.len(), 9);
    assert!(
        inbox(url, &["list", "--since", "2999-01-01T00:00:00Z", "--json"])
            .expect_code(0)
            .stdout
            .is_empty()
    );
    let table = inbox(url, &["list", "--state", "dead"]).expect_code(0);
    assert!(
        table.stdout.contains("LAST ERROR") && table.stdout.contains("evt_d2"),
        "{table:?}"
    );

    // Pages: --limit, then --after the cursor printed on stderr.
    let first = inbox(url, &["list", "--limit", "4", "--json"]).expect_code(0);
    assert_eq!(first.json_lines().len(), 4);
    let cursor = first
        .stderr
        .lines()
        .find_map(|line| line.strip_prefix("more: --after "))
        .unwrap_or_else(|| panic!("no cursor: {first:?}"))
        .to_owned();
    let rest = inbox(url, &["list", "--after", &cursor, "--json"])
        .expect_code(0)
        .json_lines();
    assert_eq!(rest.len(), 5);
    let mut all: Vec<Value> = first.json_lines();
    all.extend(rest);
    let mut keys: Vec<&str> = all.iter().map(|row| row["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 9, "the pages overlap or miss a delivery");
}

/// show, with an id, a key, an ambiguous id and an unknown one; returns the keys of the
/// ambiguous id's two deliveries.
fn show_and_ambiguity(url: &str) -> Vec<String> {
    // show: the headers, the pretty body, the last error; --json is the detail.
    let shown = inbox(url, &["show", "evt_d1"]).expect_code(0);
    assert!(
        shown.stdout.contains("x-webhook-event: member.created"),
        "{shown:?}"
    );
    assert!(
        shown.stdout.contains(r#""email": "ada@example.com""#),
        "{shown:?}"
    );
    assert!(
        shown.stdout.contains("boom: the handler answered 500"),
        "{shown:?}"
    );
    let detail = inbox(url, &["show", "evt_d1", "--json"])
        .expect_code(0)
        .json_lines();
    let detail = &detail[0];
    assert_eq!(detail["id"], "evt_d1");
    assert_eq!(detail["state"], "dead");
    assert!(detail["body"].as_str().unwrap().contains("ada@example.com"));
    assert!(detail["headers"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(["x-webhook-event", "member.created"])));
    // The history: the dead-lettering attempt, last.
    let last = detail["history"].as_array().unwrap().last().unwrap();
    assert_eq!(last["outcome"], "dead", "{detail}");
    assert_eq!(last["attempt"], 1);
    assert_eq!(last["error"], "boom: the handler answered 500");
    assert!(shown.stdout.contains("OUTCOME"), "{shown:?}");
    let big = inbox(url, &["show", "evt_big"]).expect_code(0);
    assert!(
        big.stdout.contains("more bytes (--full prints them)"),
        "{big:?}"
    );
    assert!(big.stdout.len() < 8_000);
    let full = inbox(url, &["show", "evt_big", "--full"]).expect_code(0);
    assert!(full.stdout.contains(&"x".repeat(10_000)));

    // One event id, two endpoints: refused as ambiguous, with both keys; a key works.
    let twice = inbox(url, &["show", "evt_twice"]).expect_code(1);
    assert!(twice.stderr.contains("ambiguous"), "{twice:?}");
    let keys: Vec<String> = twice
        .stderr
        .lines()
        .map(str::trim)
        .filter(|line| line.len() == 64)
        .map(str::to_owned)
        .collect();
    assert_eq!(keys.len(), 2, "{twice:?}");
    let by_key = inbox(url, &["show", &keys[0], "--json"])
        .expect_code(0)
        .json_lines();
    assert_eq!(by_key[0]["key"], keys[0].as_str());
    inbox(url, &["show", "evt_nope"]).expect_code(1);
    keys
}

/// replay and purge, by ids (`keys`: the ambiguous id's) and in bulk.
fn replay_and_purge(url: &str, keys: &[String]) {
    // replay: what changed is printed, an unknown id exits 1 after the others.
    let replayed = inbox(url, &["replay", "evt_d3", "evt_nope", "--json"]).expect_code(1);
    let lines = replayed.json_lines();
    assert_eq!(lines.len(), 1, "{replayed:?}");
    assert_eq!(
        (&lines[0]["action"], &lines[0]["id"], &lines[0]["from"]),
        (&"replayed".into(), &"evt_d3".into(), &"dead".into())
    );
    assert!(
        replayed.stderr.contains("not found: evt_nope"),
        "{replayed:?}"
    );
    let not_dead = inbox(url, &["replay", "evt_wait"]).expect_code(1);
    assert!(not_dead.stderr.contains("not replayed"), "{not_dead:?}");

    // replay --dead --event: every dead delivery of the event, a page of one at a time.
    let bulk = inbox(
        url,
        &[
            "replay",
            "--dead",
            "--event",
            "member.created",
            "--page",
            "1",
            "--json",
        ],
    )
    .expect_code(0);
    assert_eq!(ids(&bulk.json_lines()), ["evt_d1", "evt_d2"]);
    let counts = stats(url);
    assert_eq!(
        (&counts["dead"], pending(&counts)),
        (&0.into(), 8),
        "{counts}"
    );
    let none_left = inbox(url, &["replay", "--dead"]).expect_code(0);
    assert!(none_left.stdout.is_empty(), "{none_left:?}");

    // A done delivery replays only when asked to.
    inbox(url, &["replay", "evt_done"]).expect_code(1);
    let again = inbox(url, &["replay", "evt_done", "--include-done", "--json"]).expect_code(0);
    assert_eq!(again.json_lines()[0]["from"], "done");

    // purge: removed, then unknown.
    let purged = inbox(url, &["purge", &keys[0], "evt_big", "--json"]).expect_code(0);
    let lines = purged.json_lines();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|line| line["action"] == "purged"));
    inbox(url, &["purge", "evt_big"]).expect_code(1);
    // The other endpoint's delivery is now the only one with that id.
    inbox(url, &["show", "evt_twice"]).expect_code(0);
    assert_eq!(pending(&stats(url)), 7);
}

fn usage_errors(url: &str) {
    // Usage errors exit 2.
    inbox(url, &["list", "--state", "gone"]).expect_code(2);
    inbox(url, &["list", "--since", "yesterday"]).expect_code(2);
    inbox(url, &["list", "--after", "12.zz"]).expect_code(2);
    inbox(url, &["purge", "--dead"]).expect_code(2);
    inbox(url, &["replay"]).expect_code(2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inbox_commands_work_on_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    let options = InboxOptions::new().with_prefix(PREFIX).unwrap();
    let store = SqliteInbox::open(&path, options).await.unwrap();
    populate(&store).await;
    let url = format!("sqlite:{}", path.display());
    tokio::task::spawn_blocking(move || scenario(&url))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inbox_commands_work_on_postgres() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let options = InboxOptions::new().with_prefix(PREFIX).unwrap();
    let store = PostgresInbox::connect(&server.url(), options)
        .await
        .unwrap();
    populate(&store).await;
    let url = server.url();
    tokio::task::spawn_blocking(move || scenario(&url))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inbox_commands_work_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let options = InboxOptions::new().with_prefix(PREFIX).unwrap();
    let store = RedisInbox::connect(&server.url(), options).await.unwrap();
    populate(&store).await;
    let url = server.url();
    tokio::task::spawn_blocking(move || scenario(&url))
        .await
        .unwrap();
}

#[test]
fn a_store_that_cannot_be_reached_exits_3() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite:{}", dir.path().join("missing.db").display());
    for url in [
        format!("postgres://postgres:hunter2@127.0.0.1:{port}/postgres"),
        format!("redis://127.0.0.1:{port}/"),
        missing,
    ] {
        let run = cli(&["inbox", "stats", "--url", &url, "--timeout", "2"]).expect_code(3);
        assert!(
            !run.stderr.contains("hunter2"),
            "a password was printed: {run:?}"
        );
    }
    // The command line never creates an inbox where none was.
    assert!(!dir.path().join("missing.db").exists());
}

#[test]
fn usage_errors_exit_2_and_help_has_examples() {
    cli(&["inbox"]).expect_code(2);
    cli(&["inbox", "stats"]).expect_code(2); // no --url, no INBOX_URL
    cli(&["inbox", "stats", "--url", "ftp://example.com/"]).expect_code(2);
    cli(&[
        "inbox",
        "stats",
        "--url",
        "sqlite:x.db",
        "--prefix",
        "Bad-Prefix",
    ])
    .expect_code(2);
    let help = cli(&["inbox", "replay", "--help"]).expect_code(0);
    assert!(help.stdout.contains("Examples:"), "{help:?}");
    let help = cli(&["--help"]).expect_code(0);
    assert!(help.stdout.contains("Exit codes"), "{help:?}");
}
