//! The Redis Streams inbox, against a real `redis-server` this test starts on 127.0.0.1 (features
//! `redis`, `testing`; the worker scenarios also `axum`). Without `redis-server` on the PATH
//! these tests fail under `CI=true` and are skipped, loudly, otherwise.
#![cfg(all(feature = "redis", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

// The shared delivery builder and backend checks: inbox_common's (it needs `axum`), or the
// file alone.
#[cfg(not(feature = "axum"))]
#[path = "inbox_common/backend.rs"]
mod inbox_backend;
#[cfg(feature = "axum")]
mod inbox_common;
#[cfg(feature = "axum")]
use inbox_common::backend as inbox_backend;
#[path = "inbox_common/group.rs"]
mod inbox_group;
#[path = "common/servers.rs"]
mod servers;
use servers::RedisServer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tower_webhook::idempotency::IdempotencyKey;
use tower_webhook::inbox::{
    Accepted, Delivery, DeliveryState, Facts, InboxBackend, InboxOptions, RedisInbox, Replay,
};

/// The inbox on a server, and a connection to it.
trait Connect {
    async fn inbox(&self, options: InboxOptions) -> RedisInbox;
    async fn connection(&self) -> redis::aio::MultiplexedConnection;
}

impl Connect for RedisServer {
    async fn inbox(&self, options: InboxOptions) -> RedisInbox {
        RedisInbox::connect(&self.url(), options).await.unwrap()
    }

    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

/// A prefix no other inbox of this process uses.
fn prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("t{}_", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn bare(id: &str) -> Delivery {
    Delivery::from_facts(
        Facts::new("test", id),
        IdempotencyKey::new("test", "site", id),
        "/webhooks",
        [],
        Bytes::from_static(b"{}"),
    )
}

#[tokio::test]
async fn the_redis_inbox_passes_the_inbox_conformance_suite() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    tower_webhook::inbox::conformance::check_inbox(|options: InboxOptions| {
        let options = options.with_prefix(prefix()).unwrap();
        server.inbox(options)
    })
    .await;
}

async fn xlen(connection: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(connection)
        .await
        .unwrap()
}

/// `XPENDING`'s summary: count, smallest and largest id, entries per consumer.
type XPending = (
    u64,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);

/// `XPENDING key workers`: how many entries are delivered and not acknowledged, and by which
/// consumers.
async fn pending(
    connection: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> (u64, Vec<String>) {
    let answer: XPending = redis::cmd("XPENDING")
        .arg(key)
        .arg("workers")
        .query_async(connection)
        .await
        .unwrap();
    let consumers = answer.3.unwrap_or_default();
    (
        answer.0,
        consumers.into_iter().map(|(name, _)| name).collect(),
    )
}

#[tokio::test]
async fn deliveries_travel_through_the_stream_its_consumer_group_and_the_dead_letter_stream() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    let other = server.inbox(InboxOptions::new()).await;
    assert_ne!(
        inbox.consumer(),
        other.consumer(),
        "two processes (or inboxes) share a consumer name"
    );
    let pid = std::process::id().to_string();
    assert!(inbox.consumer().split('-').any(|part| part == pid));
    let mut redis = server.connection().await;
    let stream = inbox.stream_key().to_owned();
    let dead = inbox.dead_letter_key().to_owned();

    let done = bare("evt_done");
    assert_eq!(inbox.accept(&done).await.unwrap(), Accepted::New);
    assert_eq!(
        xlen(&mut redis, &stream).await,
        1,
        "accept appends an entry"
    );
    let claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(
        pending(&mut redis, &stream).await,
        (1, vec![inbox.consumer().to_owned()]),
        "a claim reads the entry through the group, under this inbox's consumer"
    );
    assert!(inbox.complete(&claims[0].lease).await.unwrap());
    assert_eq!(
        (
            xlen(&mut redis, &stream).await,
            pending(&mut redis, &stream).await.0
        ),
        (0, 0),
        "a done entry is acknowledged and trimmed from the stream"
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg(inbox.delivery_key(done.key()))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(exists, "the key is kept for the dedup window");
    assert_eq!(
        inbox.accept(&done).await.unwrap(),
        Accepted::Duplicate(DeliveryState::Done)
    );

    // Taken over by another process's consumer once the lease ran out.
    let orphan = bare("evt_orphan");
    assert_eq!(inbox.accept(&orphan).await.unwrap(), Accepted::New);
    let first = inbox.claim(Duration::from_millis(100), 1).await.unwrap();
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = other.claim(Duration::from_secs(60), 1).await.unwrap();
    assert_eq!(second.len(), 1, "an expired lease is taken over");
    assert_eq!(second[0].lease.attempt(), 2);
    assert_eq!(
        pending(&mut redis, &stream).await,
        (1, vec![other.consumer().to_owned()]),
        "the entry moved to the consumer that took it over"
    );
    assert!(!inbox.complete(&first[0].lease).await.unwrap());

    // Dead letters go to their own stream; a replay brings the entry back.
    assert!(other
        .dead_letter(&second[0].lease, "gave up")
        .await
        .unwrap());
    assert_eq!(
        (
            xlen(&mut redis, &stream).await,
            xlen(&mut redis, &dead).await
        ),
        (0, 1)
    );
    assert!(inbox.replay(orphan.key(), Replay::Dead).await.unwrap());
    assert_eq!(
        (
            xlen(&mut redis, &stream).await,
            xlen(&mut redis, &dead).await
        ),
        (1, 0)
    );

    // A retry leaves the stream for the schedule, and comes back when due.
    let claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    assert!(inbox
        .retry(&claims[0].lease, Duration::from_millis(200), "500")
        .await
        .unwrap());
    assert_eq!(xlen(&mut redis, &stream).await, 0);
    assert!(inbox
        .claim(Duration::from_secs(60), 1)
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    assert_eq!(again.len(), 1, "a due retry is moved back onto the stream");
    assert_eq!(again[0].record.last_error.as_deref(), Some("500"));
}

/// The consumers in the group, by name.
async fn consumers(connection: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    let infos: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(key)
        .arg("workers")
        .query_async(connection)
        .await
        .unwrap();
    infos
        .into_iter()
        .filter_map(|info| match info.get(1) {
            Some(redis::Value::BulkString(name)) => {
                Some(String::from_utf8_lossy(name).into_owned())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn prune_removes_the_consumers_of_processes_that_ended_and_keeps_those_holding_entries() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (ended, holding) = (
        server.inbox(InboxOptions::new()).await,
        server.inbox(InboxOptions::new()).await,
    );
    let mut redis = server.connection().await;
    let stream = ended.stream_key().to_owned();
    ended.accept(&bare("evt_1")).await.unwrap();
    let claims = ended.claim(Duration::from_secs(60), 1).await.unwrap();
    assert!(ended.complete(&claims[0].lease).await.unwrap());
    holding.accept(&bare("evt_2")).await.unwrap();
    assert_eq!(
        holding
            .claim(Duration::from_secs(60), 1)
            .await
            .unwrap()
            .len(),
        1
    );
    let mut before = consumers(&mut redis, &stream).await;
    before.sort();
    let mut both = vec![ended.consumer().to_owned(), holding.consumer().to_owned()];
    both.sort();
    assert_eq!(before, both);

    tokio::time::sleep(Duration::from_millis(100)).await;
    holding.prune(Duration::from_millis(50)).await.unwrap();
    assert_eq!(
        consumers(&mut redis, &stream).await,
        [holding.consumer().to_owned()],
        "prune keeps a consumer that holds an entry and removes an idle one with nothing"
    );
}

#[tokio::test]
async fn a_fenced_completion_writes_the_effects_and_the_completion_together_or_neither() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    let mut redis = server.connection().await;
    let effects = |redis: &mut redis::aio::MultiplexedConnection| {
        let mut redis = redis.clone();
        async move {
            let count: Option<u64> = redis::cmd("HGET")
                .arg("effects")
                .arg("evt_1")
                .query_async(&mut redis)
                .await
                .unwrap();
            count.unwrap_or(0)
        }
    };

    let delivery = bare("evt_1");
    inbox.accept(&delivery).await.unwrap();
    let stale = inbox.claim(Duration::from_millis(100), 1).await.unwrap();
    let stale = stale[0].lease.clone();
    // Begun while the lease was the owner's; taken over before it commits.
    let mut late = inbox.begin_complete(&stale).await.unwrap().unwrap();
    late.hincr("effects", "evt_1", 1).ignore();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    let fresh = fresh[0].lease.clone();
    assert!(
        !late.commit().await.unwrap(),
        "a completion whose delivery was taken over committed"
    );
    assert_eq!(
        effects(&mut redis).await,
        0,
        "the stale owner's effect was written"
    );
    assert!(
        inbox.begin_complete(&stale).await.unwrap().is_none(),
        "a stale owner may begin a completion"
    );

    let mut completion = inbox.begin_complete(&fresh).await.unwrap().unwrap();
    completion.hincr("effects", "evt_1", 1).ignore();
    // A renewal while the handler runs does not break the fence.
    assert!(inbox.renew(&fresh, Duration::from_secs(60)).await.unwrap());
    assert!(completion.commit().await.unwrap());
    assert_eq!(effects(&mut redis).await, 1);
    let record = inbox.get(delivery.key()).await.unwrap().unwrap();
    assert_eq!(record.state, DeliveryState::Done);
    assert!(
        !inbox.complete(&fresh).await.unwrap(),
        "the worker's own completion after the handler's is refused"
    );

    // Dropped without a commit: neither.
    let other = bare("evt_2");
    inbox.accept(&other).await.unwrap();
    let lease = inbox.claim(Duration::from_secs(60), 1).await.unwrap()[0]
        .lease
        .clone();
    let mut dropped = inbox.begin_complete(&lease).await.unwrap().unwrap();
    dropped.hincr("effects", "evt_2", 1).ignore();
    drop(dropped);
    let record = inbox.get(other.key()).await.unwrap().unwrap();
    assert_eq!(record.state, DeliveryState::Running);
}

#[tokio::test]
async fn an_unreachable_redis_fails_each_call_within_the_timeout() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_timeout(Duration::from_millis(500)))
        .await;
    server.kill();
    let started = Instant::now();
    assert!(inbox.accept(&bare("evt_down")).await.is_err());
    assert!(inbox.claim(Duration::from_secs(1), 1).await.is_err());
    assert!(inbox.stats().await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_stalled_redis_times_every_call_out_and_the_inbox_recovers_when_it_answers_again() {
    use tower_webhook::inbox::InboxError;

    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_timeout(Duration::from_millis(300)))
        .await;
    let delivery = bare("evt_stalled");
    server.signal("STOP");
    let started = Instant::now();
    let accepted = inbox.accept(&delivery).await;
    let claimed = inbox.claim(Duration::from_secs(1), 1).await;
    let got = inbox.get(delivery.key()).await;
    let elapsed = started.elapsed();
    server.signal("CONT");
    assert!(matches!(accepted, Err(InboxError::Timeout)), "{accepted:?}");
    assert!(matches!(claimed, Err(InboxError::Timeout)), "{claimed:?}");
    assert!(matches!(got, Err(InboxError::Timeout)), "{got:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // The accept that timed out may have run once Redis answered again: its retry is then a
    // duplicate, and the delivery is stored once either way.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match inbox.accept(&delivery).await {
            Ok(Accepted::New | Accepted::Duplicate(DeliveryState::Pending)) => break,
            other => assert!(Instant::now() < deadline, "did not recover: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(inbox.stats().await.unwrap().pending, 1);
}

/// The workers and the layer's inbox mode (the scenarios `tests/inbox_worker.rs` runs on
/// `SQLite`), on one server, each scenario in an inbox of its own.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_and_the_layer_s_inbox_mode_run_their_scenarios_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let fresh = || server.inbox(InboxOptions::new().with_prefix(prefix()).unwrap());
    inbox_common::every_scenario(fresh).await;
}

/// The admin router's listing, filters, paging and replays, read through this backend's
/// `search` (feature `admin`).
#[cfg(all(feature = "axum", feature = "admin"))]
#[tokio::test]
async fn the_admin_lists_and_replays_deliveries_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    inbox_common::admin::the_admin_lists_filters_pages_and_replays(inbox).await;
}

/// The crash tests' receiver, when this binary runs as their child (see
/// `tests/inbox_common/crash.rs`): its handler counts its effect (`HINCRBY effects <event> 1`)
/// and completes the delivery in one fenced transaction.
#[cfg(all(feature = "axum", unix))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the crash tests"]
async fn crash_child() {
    use axum::http::StatusCode;
    use axum::Extension;
    use tower_webhook::inbox::Attempt;
    use tower_webhook::WebhookMeta;

    async fn handle(
        Extension(attempt): Extension<Attempt<RedisInbox>>,
        meta: WebhookMeta,
    ) -> StatusCode {
        inbox_common::crash::pause().await;
        let Ok(Some(mut completion)) = attempt.begin_complete().await else {
            return StatusCode::SERVICE_UNAVAILABLE;
        };
        completion.hincr("effects", meta.id(), 1).ignore();
        match completion.commit().await {
            Ok(true) => StatusCode::OK,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    let Some((url, port_file)) = inbox_common::crash::child_settings() else {
        return;
    };
    let inbox = RedisInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    inbox_common::crash::serve(inbox, handle, &port_file).await;
}

/// Every effect written, one row per count: an event counted twice appears twice.
#[cfg(all(feature = "axum", unix))]
async fn effect_rows(server: &RedisServer) -> Vec<String> {
    let mut redis = server.connection().await;
    let counts: Vec<(String, usize)> = redis::cmd("HGETALL")
        .arg("effects")
        .query_async(&mut redis)
        .await
        .unwrap();
    counts
        .into_iter()
        .flat_map(|(id, count)| std::iter::repeat_n(id, count))
        .collect()
}

#[cfg(all(feature = "axum", unix))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_while_it_works_loses_nothing_and_applies_each_effect_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    inbox_common::crash::run("crash_child", &server.url(), &inbox, || {
        effect_rows(&server)
    })
    .await;
}

#[cfg(all(feature = "axum", unix))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_on_one_redis_process_each_event_once_and_survive_one_dying() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    inbox_common::crash::run_two("crash_child", &server.url(), &inbox, || {
        effect_rows(&server)
    })
    .await;
}

/// How many deliveries the AOF test sends before Redis is killed.
#[cfg(feature = "axum")]
const EVENTS: usize = 200;

/// Redis with `appendonly yes`, `appendfsync always`, killed (SIGKILL) right after it
/// acknowledged a burst, and restarted on the same directory: every acknowledged delivery is
/// there, the same receiver and workers (no restart of the app) process all of them, and a
/// resent one is still a duplicate.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_with_aof_loses_nothing_acknowledged() {
    use axum::http::StatusCode;
    use inbox_common::{key, receiver, send, workers, App, SECRET};

    let Some(mut server) = RedisServer::start_durable() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_timeout(Duration::from_secs(1)))
        .await;
    let app = App::default();
    let router = receiver(&inbox, &app);
    // Short leases: handlers cut off by the kill are taken over soon after the restart.
    let running = workers(&inbox, &app)
        .with_lease(Duration::from_secs(2))
        .start()
        .unwrap();
    let ids: Vec<String> = (0..EVENTS).map(|n| format!("evt_{n}")).collect();
    for id in &ids {
        // Slow handlers: most deliveries still wait when Redis dies.
        app.sleep(id, Duration::from_millis(30));
    }
    for id in &ids {
        let (status, duplicate, text) = send(&router, SECRET, id).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(!duplicate);
    }
    let before = inbox.stats().await.unwrap();
    assert!(
        before.depth() > 0,
        "nothing was left to process: {before:?}"
    );
    server.kill();
    let (status, _, text) = send(&router, SECRET, "evt_during").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");

    server.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match inbox.stats().await {
            Ok(after) if after.depth() == 0 => {
                assert_eq!(
                    after.done, EVENTS as u64,
                    "acknowledged deliveries were lost: {after:?}"
                );
                break;
            }
            _ => assert!(
                Instant::now() < deadline,
                "processing did not resume after Redis restarted"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        assert!(!app.runs_of(id).is_empty(), "{id} was never processed");
        let record = inbox.get(&key(id)).await.unwrap().unwrap();
        assert_eq!(record.state, DeliveryState::Done);
    }
    let (status, duplicate, _) = send(&router, SECRET, &ids[0]).await;
    assert_eq!((status, duplicate), (StatusCode::OK, true));
    running.shutdown(Duration::from_secs(5)).await;
}

/// Redis (`appendonly yes`, `appendfsync always`) killed (SIGKILL) and started again on the
/// same directory, three times, while deliveries are accepted and claimed in batches and
/// handlers complete them in their own fenced transactions (`RedisCompletion`): every accepted
/// delivery ends done with its effect exactly once, none stranded (see
/// `tests/inbox_common/restart.rs`).
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_claim_interrupted_by_a_redis_restart_leaves_no_delivery_stranded() {
    let Some(mut server) = RedisServer::start_durable() else {
        return;
    };
    let prefix = prefix();
    let inbox = server
        .inbox(
            InboxOptions::new()
                .with_prefix(prefix.clone())
                .unwrap()
                .with_timeout(Duration::from_secs(1)),
        )
        .await;
    let url = server.url();
    inbox_common::restart::a_batch_claim_interrupted_by_a_restart_strands_no_delivery(
        inbox,
        || {
            server.kill();
            std::thread::sleep(Duration::from_millis(300));
            server.spawn().unwrap();
        },
        || async {
            let mut redis = redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let counts: Vec<(String, usize)> = redis::cmd("HGETALL")
                .arg(format!("{prefix}effects"))
                .query_async(&mut redis)
                .await
                .unwrap();
            counts
                .into_iter()
                .flat_map(|(id, count)| std::iter::repeat_n(id, count))
                .collect()
        },
    )
    .await;
}

/// A batch claim carried out by Redis whose answer was lost strands none of its deliveries:
/// claimed again once its lease runs out. The claim's request is the one passing the lease and
/// the batch size (RESP bulk strings).
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_claim_whose_answer_was_lost_strands_none_of_its_deliveries_on_redis() {
    use inbox_common::restart::{LOST_CLAIM_LEASE, LOST_CLAIM_SLOTS};

    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = inbox_common::proxy::Proxy::start(server.port).await;
    let url = format!("redis://127.0.0.1:{}/", proxy.port());
    let inbox = RedisInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    let (lease, slots) = (
        LOST_CLAIM_LEASE.as_millis().to_string(),
        LOST_CLAIM_SLOTS.to_string(),
    );
    let marker = format!(
        "${}\r\n{lease}\r\n${}\r\n{slots}\r\n",
        lease.len(),
        slots.len()
    );
    inbox_common::restart::a_batch_claim_whose_answer_was_lost_strands_none_of_its_deliveries(
        inbox,
        &proxy,
        marker.as_bytes(),
    )
    .await;
}

/// `Debug` on an inbox opened with a password in its URL (the server requires it), on its
/// workers and their handle: present, and the password never printed.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_names_the_redis_inbox_and_its_workers_and_prints_no_password() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let password = "rd-s3cret-password";
    let mut redis = server.connection().await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(password)
        .query_async(&mut redis)
        .await
        .unwrap();
    let url = format!("redis://:{password}@127.0.0.1:{}/", server.port);
    let inbox = RedisInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    inbox
        .wait_for_work(Duration::from_millis(50))
        .await
        .unwrap();
    inbox_common::debug_names_the_backend_and_prints_no_secret(inbox, "RedisInbox", password).await;
}

/// Keys in the claims, sorted.
fn claimed_ids(claims: &[tower_webhook::inbox::Claim]) -> Vec<String> {
    let mut ids: Vec<String> = claims
        .iter()
        .map(|claim| claim.record.delivery.facts().id.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn two_inboxes_with_different_prefixes_in_one_redis_never_see_each_other() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let billing = server
        .inbox(InboxOptions::new().with_prefix("billing_").unwrap())
        .await;
    let orders = server
        .inbox(InboxOptions::new().with_prefix("orders_").unwrap())
        .await;
    let delivery = bare("evt_1");
    assert_eq!(billing.accept(&delivery).await.unwrap(), Accepted::New);
    assert_eq!(
        orders.accept(&delivery).await.unwrap(),
        Accepted::New,
        "a key stored in another inbox is a duplicate here"
    );
    let claims = billing.claim(Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert!(
        !orders.complete(&claims[0].lease).await.unwrap(),
        "another inbox's lease completed a delivery here"
    );
    assert!(billing.complete(&claims[0].lease).await.unwrap());
    assert_eq!(orders.stats().await.unwrap().pending, 1);
    assert_eq!(
        orders.get(delivery.key()).await.unwrap().unwrap().state,
        DeliveryState::Pending
    );
    assert!(orders.purge(delivery.key()).await.unwrap());
    assert_eq!(
        billing.get(delivery.key()).await.unwrap().unwrap().state,
        DeliveryState::Done,
        "a purge in another inbox removed the delivery here"
    );
    assert_ne!(billing.stream_key(), orders.stream_key());
}

/// An entry of a running delivery deleted from the stream (an operator's `XDEL`, `XTRIM`):
/// the delivery's hash, not the entry, says who holds it, so the next claim after the lease
/// takes it over (`XCLAIM` of the deleted entry only drops it from the pending list) and its
/// outcome is recorded.
#[tokio::test]
async fn a_running_delivery_whose_entry_was_deleted_is_taken_over_and_completed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    let mut redis = server.connection().await;
    let stream = inbox.stream_key().to_owned();
    inbox.accept(&bare("evt_1")).await.unwrap();
    let first = inbox.claim(Duration::from_millis(100), 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let () = redis::cmd("XTRIM")
        .arg(&stream)
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    assert_eq!(claimed_ids(&second), ["evt_1"]);
    assert!(!inbox.complete(&first[0].lease).await.unwrap());
    assert!(inbox.complete(&second[0].lease).await.unwrap());
    assert_eq!(pending(&mut redis, &stream).await.0, 0);
    assert_eq!(inbox.stats().await.unwrap().depth(), 0);
}

/// One delivery whose stored hash is odd (here a counter that is not a number) makes a claim
/// fail half-way; Redis does not roll a script back, so the deliveries the claim had read from
/// the stream must still be claimable afterwards, not stranded in the group's pending list.
#[tokio::test]
async fn a_claim_that_fails_on_one_odd_delivery_strands_none_of_the_others() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    let mut redis = server.connection().await;
    for id in ["evt_a", "evt_b", "evt_c"] {
        inbox.accept(&bare(id)).await.unwrap();
    }
    let () = redis::cmd("HSET")
        .arg(inbox.delivery_key(bare("evt_b").key()))
        .arg("attempts")
        .arg("not a number")
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut seen = Vec::new();
    if let Ok(claims) = inbox.claim(Duration::from_millis(100), 10).await {
        seen.extend(claimed_ids(&claims));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Ok(claims) = inbox.claim(Duration::from_secs(60), 10).await {
        seen.extend(claimed_ids(&claims));
    }
    for id in ["evt_a", "evt_c"] {
        assert!(
            seen.iter().any(|seen| seen == id),
            "{id} stranded: {seen:?}"
        );
    }
}

/// Pending deliveries whose entries were trimmed from the stream (`XTRIM`, a `MAXLEN`, an
/// `XDEL` by hand) are appended again by the next prune, and a scheduled retry is left to its
/// schedule.
#[tokio::test]
async fn prune_appends_again_the_pending_deliveries_a_stream_trim_removed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    let mut redis = server.connection().await;
    inbox.accept(&bare("evt_retry")).await.unwrap();
    let claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    assert!(inbox
        .retry(&claims[0].lease, Duration::from_secs(600), "later")
        .await
        .unwrap());
    for id in ["evt_a", "evt_b"] {
        inbox.accept(&bare(id)).await.unwrap();
    }
    let () = redis::cmd("XTRIM")
        .arg(inbox.stream_key())
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut redis)
        .await
        .unwrap();
    inbox
        .prune(tower_webhook::inbox::DEFAULT_DEDUP_WINDOW)
        .await
        .unwrap();
    let claims = inbox.claim(Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(claimed_ids(&claims), ["evt_a", "evt_b"]);
    assert_eq!(inbox.stats().await.unwrap().pending, 1, "the retry waits");
}

/// Odd data in a delivery's hash (written by hand, by another program, a bad restore) fails
/// the calls that read it with a backend error; nothing panics, and the deliveries claimed
/// with it are still returned.
#[tokio::test]
async fn odd_stored_data_is_a_backend_error_never_a_panic_nor_holds_back_the_others() {
    use tower_webhook::inbox::InboxError;

    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    let mut redis = server.connection().await;
    let odd = bare("evt_odd");
    inbox.accept(&odd).await.unwrap();
    inbox.accept(&bare("evt_fine")).await.unwrap();
    let () = redis::cmd("HSET")
        .arg(inbox.delivery_key(odd.key()))
        .arg("key")
        .arg("short")
        .arg("headers")
        .arg("no colon")
        .arg("signed_at")
        .arg("yesterday")
        .query_async(&mut redis)
        .await
        .unwrap();
    let got = inbox.get(odd.key()).await;
    assert!(matches!(got, Err(InboxError::Backend(_))), "{got:?}");
    let listed = inbox.list(DeliveryState::Pending, 10).await;
    assert!(matches!(listed, Err(InboxError::Backend(_))), "{listed:?}");
    assert_eq!(inbox.stats().await.unwrap().pending, 2);
    // Claimed in the same batch as the odd one, again and again: the fine one must come out.
    let mut seen = Vec::new();
    for _ in 0..3 {
        if let Ok(claims) = inbox.claim(Duration::from_millis(100), 10).await {
            seen.extend(claimed_ids(&claims));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        seen.iter().any(|id| id == "evt_fine"),
        "a fine delivery claimed with an odd one is never returned: {seen:?}"
    );
}

/// The repair leaves healthy deliveries alone even when it scans (here a running delivery's
/// entry is gone, so the counts differ): a pending one with its entry, a scheduled retry.
#[tokio::test]
async fn prune_appends_nothing_for_deliveries_that_still_have_their_entry_or_schedule() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    let mut redis = server.connection().await;
    let stream = inbox.stream_key().to_owned();
    inbox.accept(&bare("evt_running")).await.unwrap();
    inbox.accept(&bare("evt_retry")).await.unwrap();
    let claims = inbox.claim(Duration::from_secs(60), 2).await.unwrap();
    let retry = claims
        .iter()
        .find(|claim| claim.record.delivery.facts().id == "evt_retry")
        .unwrap();
    assert!(inbox
        .retry(&retry.lease, Duration::from_secs(600), "later")
        .await
        .unwrap());
    inbox.accept(&bare("evt_pending")).await.unwrap();
    let first: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    let () = redis::cmd("XDEL")
        .arg(&stream)
        .arg(&first[0].0)
        .query_async(&mut redis)
        .await
        .map(|_: u64| ())
        .unwrap();
    assert_eq!(xlen(&mut redis, &stream).await, 1);

    inbox
        .prune(tower_webhook::inbox::DEFAULT_DEDUP_WINDOW)
        .await
        .unwrap();
    assert_eq!(xlen(&mut redis, &stream).await, 1, "an entry was appended");
    let claims = inbox.claim(Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(claimed_ids(&claims), ["evt_pending"]);
}

/// A queued command that fails when the transaction runs (a wrong type) fails alone: the
/// completion still applies, and `commit` says so with an error, as documented.
#[tokio::test]
async fn a_queued_command_that_fails_in_the_transaction_makes_commit_an_error() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server.inbox(InboxOptions::new()).await;
    let mut redis = server.connection().await;
    let () = redis::cmd("SET")
        .arg("not-a-hash")
        .arg("text")
        .query_async(&mut redis)
        .await
        .unwrap();
    let delivery = bare("evt_wrongtype");
    inbox.accept(&delivery).await.unwrap();
    let claimed = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    let lease = claimed[0].lease.clone();
    let mut completion = inbox.begin_complete(&lease).await.unwrap().unwrap();
    completion.hincr("not-a-hash", "evt_wrongtype", 1).ignore();
    let committed = completion.commit().await;
    assert!(
        committed.is_err(),
        "a failed command was hidden: {committed:?}"
    );
    let record = inbox.get(delivery.key()).await.unwrap().unwrap();
    assert_eq!(record.state, DeliveryState::Done);
}

/// Two inboxes on one Redis under one prefix (two replicas), each with a depth limit of 10:
/// the accept script counts the waiting deliveries itself, so the limit holds exactly, even
/// for accepts running at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_keep_one_depth_limit_exactly() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let replicas = || async {
        let options = InboxOptions::new()
            .with_prefix(prefix())
            .unwrap()
            .with_max_depth(10);
        (
            server.inbox(options.clone()).await,
            server.inbox(options).await,
        )
    };
    let (a, b) = replicas().await;
    inbox_backend::two_inboxes_keep_one_depth_limit_exactly(a, b).await;
    let (a, b) = replicas().await;
    inbox_backend::accepts_running_at_once_pass_the_depth_limit_by_at_most_their_number(a, b).await;
    let options = InboxOptions::new()
        .with_prefix(prefix())
        .unwrap()
        .with_max_depth(4);
    inbox_backend::the_depth_limit_follows_every_change_of_state(server.inbox(options).await).await;
}

/// The server the completion scenarios run on (their effects are read from it).
#[cfg(feature = "axum")]
static COMPLETION_SERVER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The completion scenarios' effect on Redis: `HINCRBY {prefix}effects <event id> 1`, queued in
/// the completion's transaction.
#[cfg(feature = "axum")]
impl inbox_common::completion::Transactional for RedisInbox {
    type Completion = tower_webhook::inbox::RedisCompletion;

    async fn prepare(&self) {}

    async fn begin(
        attempt: &tower_webhook::inbox::Attempt<Self>,
    ) -> Result<Option<Self::Completion>, tower_webhook::inbox::InboxError> {
        attempt.begin_complete().await
    }

    async fn write(&self, completion: &mut Self::Completion, id: &str) {
        let effects = format!("{}effects", self.options().prefix());
        completion.hincr(effects, id, 1).ignore();
    }

    async fn fail(&self, completion: &mut Self::Completion, _: &str) {
        // `INCR` on the effects hash: a wrong type, an error when the transaction runs (Redis
        // runs the other commands anyway).
        let effects = format!("{}effects", self.options().prefix());
        completion.incr(effects, 1).ignore();
    }

    async fn commit(completion: Self::Completion) -> bool {
        matches!(completion.commit().await, Ok(true))
    }

    async fn effects(&self) -> Vec<String> {
        let url = COMPLETION_SERVER.get().unwrap();
        let mut redis = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let effects: Vec<(String, usize)> = redis::cmd("HGETALL")
            .arg(format!("{}effects", self.options().prefix()))
            .query_async(&mut redis)
            .await
            .unwrap();
        effects
            .into_iter()
            .flat_map(|(id, count)| std::iter::repeat_n(id, count))
            .collect()
    }
}

/// What a handler may rely on when it completes its delivery itself (the scenarios of
/// `tests/inbox_common/completion.rs`), each in an inbox of its own on one server.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_completion_scenarios_run_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    COMPLETION_SERVER.set(server.url()).unwrap();
    let fresh = || server.inbox(InboxOptions::new().with_prefix(prefix()).unwrap());
    inbox_common::completion::every_completion_scenario(fresh).await;

    // A handler's own commit carried out, its connection cut before the answer.
    let proxy = std::sync::Arc::new(inbox_common::proxy::Proxy::start(server.port).await);
    let url = format!("redis://127.0.0.1:{}/", proxy.port());
    let options = InboxOptions::new().with_prefix(prefix()).unwrap();
    let inbox = RedisInbox::connect(&url, options).await.unwrap();
    inbox_common::completion::a_commit_whose_answer_was_lost_is_reported_done(
        inbox, proxy, b"EXEC",
    )
    .await;
}

/// The worker's completion is carried out, and its connection cut before the answer.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_whose_answer_was_lost_is_read_again_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = std::sync::Arc::new(inbox_common::proxy::Proxy::start(server.port).await);
    let url = format!("redis://127.0.0.1:{}/", proxy.port());
    let inbox = RedisInbox::connect(&url, InboxOptions::new())
        .await
        .unwrap();
    inbox_common::an_outcome_whose_answer_was_lost_is_read_again_and_reported_as_found(
        inbox, proxy,
    )
    .await;
}

/// How many scripts Redis has run so far (`EVAL` and `EVALSHA` calls from `INFO`, less those
/// that failed: an `EVALSHA` answered `NOSCRIPT` is sent again as `EVAL`).
async fn scripts_run(connection: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .unwrap();
    let field = |line: &str, name: &str| -> u64 {
        line.split(&format!("{name}="))
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    info.lines()
        .filter(|line| line.starts_with("cmdstat_eval:") || line.starts_with("cmdstat_evalsha:"))
        .map(|line| field(line, "calls") - field(line, "failed_calls"))
        .sum()
}

#[tokio::test]
async fn finish_and_renew_all_are_one_script_each_and_fenced_per_lease() {
    use tower_webhook::inbox::Finish;

    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    let mut connection = server.connection().await;
    for n in 0..5 {
        inbox.accept(&bare(&format!("evt_{n}"))).await.unwrap();
    }
    let mut claims = inbox.claim(Duration::from_secs(30), 5).await.unwrap();
    claims.sort_by(|a, b| {
        a.record
            .delivery
            .facts()
            .id
            .cmp(&b.record.delivery.facts().id)
    });
    let leases: Vec<_> = claims.iter().map(|claim| claim.lease.clone()).collect();
    // A stale owner: evt_4 was taken over after its lease ran out (a shorter one, renewed to
    // end now, then claimed again).
    assert!(inbox.renew(&leases[4], Duration::ZERO).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = inbox.claim(Duration::from_secs(30), 1).await.unwrap();
    assert_eq!(claimed_ids(&again), ["evt_4"]);

    let before = scripts_run(&mut connection).await;
    let renewed = inbox
        .renew_all(&leases, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(renewed, [true, true, true, true, false]);
    let after_renew = scripts_run(&mut connection).await;
    assert_eq!(after_renew - before, 1, "renew_all is one script");

    let outcomes = vec![
        (leases[0].clone(), Finish::Done),
        (
            leases[1].clone(),
            Finish::Retry {
                delay: Duration::from_secs(60),
                error: "try later".to_owned(),
            },
        ),
        (
            leases[2].clone(),
            Finish::Dead {
                error: "poison".to_owned(),
            },
        ),
        (leases[3].clone(), Finish::Release),
        (leases[4].clone(), Finish::Done),
        // The same lease twice: the second finds it done already.
        (leases[0].clone(), Finish::Release),
    ];
    let answers = inbox.finish(&outcomes).await.unwrap();
    assert_eq!(answers, [true, true, true, true, false, false]);
    assert_eq!(
        scripts_run(&mut connection).await - after_renew,
        1,
        "finish is one script"
    );

    let state = |n: usize| {
        let inbox = inbox.clone();
        async move {
            inbox
                .get(&IdempotencyKey::new("test", "site", &format!("evt_{n}")))
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert_eq!(state(0).await.state, DeliveryState::Done);
    let retried = state(1).await;
    assert_eq!(retried.state, DeliveryState::Pending);
    assert_eq!(retried.last_error.as_deref(), Some("try later"));
    let dead = state(2).await;
    assert_eq!(dead.state, DeliveryState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("poison"));
    let released = state(3).await;
    assert_eq!(
        (released.state, released.attempts),
        (DeliveryState::Pending, 0)
    );
    // The stale owner changed nothing: evt_4 is still the new claim's.
    let taken = state(4).await;
    assert_eq!((taken.state, taken.attempts), (DeliveryState::Running, 2));
    assert!(inbox.complete(&again[0].lease).await.unwrap());
    // An empty batch is no call at all.
    assert!(inbox.finish(&[]).await.unwrap().is_empty());
    assert!(inbox
        .renew_all(&[], Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    // The stream, the dead letters and the schedule are as the single calls leave them.
    assert_eq!(
        xlen(&mut connection, inbox.stream_key()).await,
        1,
        "evt_3 released"
    );
    assert_eq!(xlen(&mut connection, inbox.dead_letter_key()).await, 1);
}

/// One claim and one finish of 4,001 deliveries: the scripts' index and stream commands are sent
/// in chunks (4,000 items at most, for Lua's stack), here three chunks of score-member pairs and
/// two of keys, with a retry and a dead letter among the done outcomes. Every delivery is
/// claimed once, every outcome recorded, and the indexes, the leases and the stream agree with
/// the hashes afterwards (attack on #20's leaner scripts: a chunk boundary that drops or repeats
/// an item would leave a lease or an index entry behind).
#[tokio::test]
async fn a_claim_and_a_finish_past_the_scripts_chunk_size_keep_every_index_exact() {
    use tower_webhook::inbox::Finish;

    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    let mut connection = server.connection().await;
    let total = 4001;
    let accepts: Vec<_> = (0..total)
        .map(|n| {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.accept(&bare(&format!("evt_{n}"))).await })
        })
        .collect();
    for accept in accepts {
        assert_eq!(accept.await.unwrap().unwrap(), Accepted::New);
    }
    let claims = inbox.claim(Duration::from_secs(60), total).await.unwrap();
    assert_eq!(claims.len(), total, "one claim takes them all");
    let mut ids: Vec<String> = claimed_ids(&claims);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "a delivery claimed twice");
    let leases_key = inbox.stream_key().replace(":stream", ":leases");
    let zcard = |key: String| {
        let mut connection = connection.clone();
        async move {
            redis::cmd("ZCARD")
                .arg(key)
                .query_async::<u64>(&mut connection)
                .await
                .unwrap()
        }
    };
    assert_eq!(zcard(leases_key.clone()).await, total as u64);
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.running), (0, total as u64));
    assert!(inbox
        .claim(Duration::from_secs(60), 10)
        .await
        .unwrap()
        .is_empty());

    let outcomes: Vec<_> = claims
        .iter()
        .enumerate()
        .map(|(n, claim)| {
            let finish = match n {
                17 => Finish::Retry {
                    delay: Duration::from_secs(600),
                    error: "later".to_owned(),
                },
                2500 => Finish::Dead {
                    error: "poison".to_owned(),
                },
                _ => Finish::Done,
            };
            (claim.lease.clone(), finish)
        })
        .collect();
    let answers = inbox.finish(&outcomes).await.unwrap();
    assert!(answers.iter().all(|owned| *owned), "an outcome refused");
    let stats = inbox.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.running, stats.done, stats.dead),
        (1, 0, total as u64 - 2, 1),
        "{stats:?}"
    );
    assert_eq!(zcard(leases_key).await, 0, "a lease left behind");
    assert_eq!(
        xlen(&mut connection, inbox.stream_key()).await,
        0,
        "a stream entry left behind"
    );
    for (n, claim) in claims.iter().enumerate() {
        let record = inbox
            .get(claim.record.delivery.key())
            .await
            .unwrap()
            .unwrap();
        let expected = match n {
            17 => DeliveryState::Pending,
            2500 => DeliveryState::Dead,
            _ => DeliveryState::Done,
        };
        assert_eq!(record.state, expected, "{n}");
    }
    // Nothing is due: the retry waits for its delay.
    assert!(inbox
        .claim(Duration::from_secs(60), 10)
        .await
        .unwrap()
        .is_empty());
}

/// A task that claims like the workers' producer and waits with `wait_for_work(60 s)` when it
/// finds nothing; sends each claimed delivery's id and completes it.
fn waiter(
    inbox: RedisInbox,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::task::JoinHandle<()>,
) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match inbox.claim(Duration::from_secs(30), 10).await {
                Ok(claims) if !claims.is_empty() => {
                    for claim in claims {
                        let _ = inbox.complete(&claim.lease).await;
                        let _ = sender.send(claim.record.delivery.facts().id.clone());
                    }
                    continue;
                }
                Ok(_) => {}
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            let _ = inbox.wait_for_work(Duration::from_secs(60)).await;
        }
    });
    (receiver, task)
}

/// Accepts `id` through `inbox` (retrying while Redis comes back) and answers how long the
/// waiter took to claim it.
async fn woken(
    inbox: &RedisInbox,
    claimed: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    id: &str,
) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(10);
    while inbox.accept(&bare(id)).await.is_err() {
        assert!(Instant::now() < deadline, "Redis did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(5), claimed.recv())
        .await
        .unwrap_or_else(|_| panic!("{id} was not claimed within 5 s"))
        .unwrap();
    assert_eq!(got, id);
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_waiter_wakes_within_a_second_of_an_accept_here_elsewhere_and_after_restarts() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let options = InboxOptions::new()
        .with_prefix(prefix())
        .unwrap()
        .with_timeout(Duration::from_secs(1));
    let worker_side = server.inbox(options.clone()).await;
    // Another replica: its own connections, its own process-local wake-ups.
    let sender_side = server.inbox(options).await;
    let (mut claimed, task) = waiter(worker_side.clone());
    // Let the waiter reach its wait.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let local = woken(&worker_side, &mut claimed, "evt_local").await;
    assert!(local < Duration::from_secs(1), "in process: {local:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let remote = woken(&sender_side, &mut claimed, "evt_remote").await;
    assert!(
        remote < Duration::from_secs(1),
        "across replicas: {remote:?}"
    );

    // Redis restarts (no persistence here: the stream and group are gone, and come back).
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = woken(&sender_side, &mut claimed, "evt_after_restart").await;
    assert!(
        restarted < Duration::from_secs(1),
        "after a restart: {restarted:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = woken(&sender_side, &mut claimed, "evt_again").await;
    assert!(again < Duration::from_secs(1), "again: {again:?}");

    // Woken in process again and again: the blocking connections are reused, not opened anew
    // for each wait.
    let mut redis = server.connection().await;
    let before = connections_received(&mut redis).await;
    for n in 0..20 {
        let local = woken(&worker_side, &mut claimed, &format!("evt_burst_{n}")).await;
        assert!(local < Duration::from_secs(1), "in process: {local:?}");
    }
    let opened = connections_received(&mut redis).await - before;
    assert!(opened <= 10, "{opened} connections opened for 20 wake-ups");
    task.abort();
}

/// How many connections Redis has accepted since it started.
async fn connections_received(connection: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_batch_with_one_odd_delivery_records_the_others_and_refuses_that_one() {
    use tower_webhook::inbox::Finish;

    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    let mut redis = server.connection().await;
    for id in ["evt_a", "evt_odd", "evt_b"] {
        inbox.accept(&bare(id)).await.unwrap();
    }
    let mut claims = inbox.claim(Duration::from_secs(30), 3).await.unwrap();
    claims.sort_by(|a, b| {
        a.record
            .delivery
            .facts()
            .id
            .cmp(&b.record.delivery.facts().id)
    });
    let ids = claimed_ids(&claims);
    assert_eq!(ids, ["evt_a", "evt_b", "evt_odd"]);
    // A release cannot count the odd one's attempts back.
    let () = redis::cmd("HSET")
        .arg(inbox.delivery_key(claims[2].record.delivery.key()))
        .arg("attempts")
        .arg("many")
        .query_async(&mut redis)
        .await
        .unwrap();
    let outcomes = vec![
        (claims[0].lease.clone(), Finish::Release),
        (claims[2].lease.clone(), Finish::Release),
        (claims[1].lease.clone(), Finish::Done),
    ];
    // The odd one is refused (the caller reads it again, as after any refusal); the others
    // are recorded and answered, not failed with it.
    let answer = inbox.finish(&outcomes).await.unwrap();
    assert_eq!(answer, [true, false, true]);
    let state = |n: usize| inbox.get(claims[n].record.delivery.key());
    assert_eq!(
        state(0).await.unwrap().unwrap().state,
        DeliveryState::Pending
    );
    assert_eq!(state(1).await.unwrap().unwrap().state, DeliveryState::Done);
    let renewed = inbox
        .renew_all(&[claims[2].lease.clone()], Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(renewed, [true], "the odd one is still its owner's");
}

/// Review of #20: one lease whose delivery's hash was damaged must not fail the renewal of
/// every other running delivery (the workers would stop all their handlers when the leases
/// run out): that one is refused, the others renewed.
#[tokio::test]
async fn renew_all_refuses_a_damaged_lease_and_renews_the_others() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    let mut redis = server.connection().await;
    for id in ["evt_a", "evt_b", "evt_c"] {
        inbox.accept(&bare(id)).await.unwrap();
    }
    let mut claims = inbox.claim(Duration::from_secs(5), 3).await.unwrap();
    claims.sort_by(|a, b| {
        a.record
            .delivery
            .facts()
            .id
            .cmp(&b.record.delivery.facts().id)
    });
    assert_eq!(claimed_ids(&claims), ["evt_a", "evt_b", "evt_c"]);
    // evt_b's stream entry id is damaged: its renewal's `XCLAIM` fails.
    let () = redis::cmd("HSET")
        .arg(inbox.delivery_key(claims[1].record.delivery.key()))
        .arg("sid")
        .arg("not-an-entry-id")
        .query_async(&mut redis)
        .await
        .unwrap();
    let leases: Vec<_> = claims.iter().map(|claim| claim.lease.clone()).collect();
    let renewed = inbox
        .renew_all(&leases, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(renewed, [true, false, true]);
    for n in [0, 2] {
        let record = inbox
            .get(claims[n].record.delivery.key())
            .await
            .unwrap()
            .unwrap();
        assert!(
            record.due_at > claims[n].record.due_at + Duration::from_secs(60),
            "lease {n} was not renewed"
        );
    }
    // A delivery whose hash is not a hash any more is refused alike.
    let () = redis::cmd("DEL")
        .arg(inbox.delivery_key(claims[1].record.delivery.key()))
        .query_async(&mut redis)
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg(inbox.delivery_key(claims[1].record.delivery.key()))
        .arg("garbage")
        .query_async(&mut redis)
        .await
        .unwrap();
    let renewed = inbox
        .renew_all(&leases, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(renewed, [true, false, true]);
}

#[tokio::test]
async fn a_wait_without_an_end_is_woken_by_an_accept() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let options = InboxOptions::new().with_prefix(prefix()).unwrap();
    let waiting = server.inbox(options.clone()).await;
    let other = server.inbox(options).await;
    let wait = tokio::spawn(async move { waiting.wait_for_work(Duration::MAX).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !wait.is_finished(),
        "the wait ended with nothing to wake it"
    );
    other.accept(&bare("evt_1")).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(1), wait).await;
    assert!(matches!(woken, Ok(Ok(Ok(())))), "{woken:?}");
}

#[tokio::test]
async fn a_wait_ends_at_its_timeout_even_while_redis_is_stalled() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(
            InboxOptions::new()
                .with_prefix(prefix())
                .unwrap()
                .with_timeout(Duration::from_secs(2)),
        )
        .await;
    // A blocking connection kept from an earlier wait, and none.
    inbox
        .wait_for_work(Duration::from_millis(50))
        .await
        .unwrap();
    server.signal("STOP");
    let mut took = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let waited = inbox.wait_for_work(Duration::from_millis(300)).await;
        took.push(started.elapsed());
        assert!(waited.is_ok(), "{waited:?}");
    }
    server.signal("CONT");
    for elapsed in took {
        assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_a_durable_redis_wakes_after_it_restarted_with_its_stream_and_group() {
    let Some(mut server) = RedisServer::start_durable() else {
        return;
    };
    let options = InboxOptions::new()
        .with_prefix(prefix())
        .unwrap()
        .with_timeout(Duration::from_secs(1));
    let worker_side = server.inbox(options.clone()).await;
    let sender_side = server.inbox(options).await;
    let (mut claimed, task) = waiter(worker_side);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = woken(&sender_side, &mut claimed, "evt_before").await;
    assert!(before < Duration::from_secs(1), "{before:?}");

    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = woken(&sender_side, &mut claimed, "evt_after").await;
    assert!(after < Duration::from_secs(1), "after a restart: {after:?}");
    task.abort();
}

// Issue 21: what the admin tools read (search, retrying counts, history).

fn with_event(id: &str, event: &str) -> Delivery {
    let mut facts = Facts::new("test", id);
    facts.event = Some(event.to_owned());
    Delivery::from_facts(
        facts,
        IdempotencyKey::new("test", "site", id),
        "/webhooks",
        [],
        Bytes::from_static(b"{}"),
    )
}

/// Gives the pending delivery `key` the acceptance time `ms` in its hash and its index, as if
/// it had been accepted in that millisecond (many are, under load).
async fn accepted_at(
    redis: &mut redis::aio::MultiplexedConnection,
    inbox: &RedisInbox,
    key: &IdempotencyKey,
    ms: i64,
) {
    let pending = inbox.stream_key().replace(":stream", ":state:pending");
    let () = redis::cmd("HSET")
        .arg(inbox.delivery_key(key))
        .arg("accepted")
        .arg(ms)
        .arg("due")
        .arg(ms)
        .query_async(redis)
        .await
        .unwrap();
    let _: i64 = redis::cmd("ZADD")
        .arg(&pending)
        .arg(ms)
        .arg(key.to_hex())
        .query_async(redis)
        .await
        .unwrap();
}

/// Every page of `filter`, `limit` at a time, following `next`; checks that a full page has a
/// next and that no delivery comes twice.
async fn all_pages(
    inbox: &RedisInbox,
    filter: &tower_webhook::inbox::Filter,
) -> (Vec<tower_webhook::inbox::Record>, usize) {
    let mut records = Vec::new();
    let mut filter = filter.clone();
    let mut pages = 0;
    loop {
        let page = inbox.search(&filter).await.unwrap();
        pages += 1;
        assert!(pages < 1_000, "paging does not end");
        if page.records.len() == filter.limit_or_default() {
            assert!(page.next.is_some(), "a full page has a next");
        }
        records.extend(page.records);
        match page.next {
            Some(next) => filter = filter.after(next),
            None => break,
        }
    }
    (records, pages)
}

/// 250 deliveries (even numbers `member.created`, odd `member.deleted`), 200 accepted in the
/// millisecond `base` and 50 in the next; 30 claimed, of them 10 done, 10 dead, 5 retrying
/// and 5 still running. Their keys, in the order accepted.
async fn fill_every_state(
    inbox: &RedisInbox,
    redis: &mut redis::aio::MultiplexedConnection,
    base: i64,
) -> Vec<IdempotencyKey> {
    let mut keys = Vec::new();
    for n in 0..250 {
        let event = if n % 2 == 0 {
            "member.created"
        } else {
            "member.deleted"
        };
        let delivery = with_event(&format!("evt_{n:03}"), event);
        inbox.accept(&delivery).await.unwrap();
        // 200 in one millisecond, 50 in the next.
        let ms = if n < 200 { base } else { base + 1 };
        accepted_at(redis, inbox, delivery.key(), ms).await;
        keys.push(*delivery.key());
    }
    // Every state: 30 claimed; of them 10 done, 10 dead, 5 retrying, 5 still running.
    let claims = inbox.claim(Duration::from_secs(60), 30).await.unwrap();
    assert_eq!(claims.len(), 30);
    for (n, claim) in claims.iter().enumerate() {
        let lease = &claim.lease;
        match n {
            0..10 => assert!(inbox.complete(lease).await.unwrap()),
            10..20 => assert!(inbox.dead_letter(lease, "poison").await.unwrap()),
            20..25 => assert!(inbox
                .retry(lease, Duration::from_secs(60), "later")
                .await
                .unwrap()),
            _ => {}
        }
    }
    keys
}

#[tokio::test]
async fn search_filters_and_pages_in_accept_then_key_order_across_same_ms_accepts() {
    use tower_webhook::inbox::{Cursor, Filter, Status};

    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    let mut redis = server.connection().await;
    let base: i64 = 1_800_000_000_000;
    let keys = fill_every_state(&inbox, &mut redis, base).await;
    let mut truth = Vec::new();
    for key in &keys {
        truth.push(inbox.get(key).await.unwrap().unwrap());
    }
    truth.sort_by_key(Cursor::of);
    let keys_of = |records: &[tower_webhook::inbox::Record]| -> Vec<String> {
        records.iter().map(|r| r.delivery.key().to_hex()).collect()
    };
    let since =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(base + 1) * 1_000_000).unwrap();
    let filters = [
        Filter::new(),
        Filter::new().limit(7),
        Filter::new().status(Status::Waiting).limit(100),
        Filter::new().status(Status::Retrying).limit(2),
        Filter::new().status(Status::Running).limit(3),
        Filter::new().status(Status::Done).limit(4),
        Filter::new().status(Status::Dead),
        Filter::new().event("member.deleted").limit(30),
        Filter::new().event("member.unknown"),
        Filter::new().id("evt_201"),
        Filter::new().since(since).limit(9),
        Filter::new()
            .status(Status::Waiting)
            .event("member.created")
            .since(since)
            .limit(5),
        // A cursor inside a millisecond: everything of the next one follows it.
        Filter::new().after(Cursor {
            accepted_at: since - Duration::from_micros(500),
            key: keys[0],
        }),
    ];
    for filter in &filters {
        let expected: Vec<_> = truth
            .iter()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect();
        let (found, pages) = all_pages(&inbox, filter).await;
        assert_eq!(
            keys_of(&found),
            keys_of(&expected),
            "{filter:?} answered another set or order"
        );
        assert!(
            pages >= expected.len().div_ceil(filter.limit_or_default()),
            "{filter:?}"
        );
        for record in &found {
            assert!(filter.matches(record), "{filter:?} answered {record:?}");
        }
    }
    // The order is acceptance, then key byte by byte: 200 deliveries in one ms by key.
    let everything = all_pages(&inbox, &Filter::new().limit(1_000)).await.0;
    assert_eq!(everything.len(), 250);
    let mut sorted = everything.clone();
    sorted.sort_by_key(Cursor::of);
    assert_eq!(keys_of(&everything), keys_of(&sorted));
    // A page boundary between two deliveries of the same ms: nothing skipped, nothing twice.
    let first = inbox.search(&Filter::new().limit(100)).await.unwrap();
    let next = first.next.unwrap();
    assert_eq!(next.accepted_at, first.records[99].accepted_at);
    let second = inbox
        .search(&Filter::new().after(next).limit(100))
        .await
        .unwrap();
    assert_eq!(first.records[99].accepted_at, second.records[0].accepted_at);
    assert_eq!(keys_of(&second.records), keys_of(&everything[100..200]));
}

/// An event filter over many deliveries: each search examines a bounded number of them, so a
/// page may be short (here empty) yet have a next; following it finds the match.
#[tokio::test]
async fn a_search_over_many_deliveries_is_bounded_and_answers_where_to_go_on() {
    use tower_webhook::inbox::Filter;

    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    // Every third is `rare`; accepted 500 at a time, so many share a millisecond.
    let noise: Vec<Delivery> = (0..10_100)
        .map(|n| {
            with_event(
                &format!("evt_{n}"),
                if n % 3 == 0 { "rare" } else { "noise" },
            )
        })
        .collect();
    for chunk in noise.chunks(500) {
        let accepts = chunk.iter().map(|delivery| inbox.accept(delivery));
        for accepted in futures_util::future::join_all(accepts).await {
            assert_eq!(accepted.unwrap(), Accepted::New);
        }
    }
    let needle = with_event("evt_needle", "needle");
    tokio::time::sleep(Duration::from_millis(2)).await;
    inbox.accept(&needle).await.unwrap();

    let filter = Filter::new().event("needle").limit(10);
    let page = inbox.search(&filter).await.unwrap();
    assert!(page.records.is_empty(), "{} records", page.records.len());
    let next = page
        .next
        .expect("a short page whose scan ran out has a next");
    let page = inbox.search(&filter.clone().after(next)).await.unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].delivery.key(), needle.key());
    assert_eq!(page.next, None);

    // Filtered pages continue, script after script, from the last delivery examined (often
    // inside a millisecond): the same deliveries, in the same order, as the unfiltered pages.
    let (everything, _) = all_pages(&inbox, &Filter::new().limit(1_000)).await;
    assert_eq!(everything.len(), 10_101);
    let mut sorted = everything.clone();
    sorted.sort_by_key(tower_webhook::inbox::Cursor::of);
    sorted.dedup_by_key(|record| *record.delivery.key());
    assert_eq!(sorted.len(), 10_101, "a delivery came twice");
    assert!(everything == sorted, "pages out of order");
    let rare = |records: &[tower_webhook::inbox::Record]| -> Vec<IdempotencyKey> {
        records
            .iter()
            .filter(|record| record.delivery.facts().event.as_deref() == Some("rare"))
            .map(|record| *record.delivery.key())
            .collect()
    };
    let (filtered, pages) = all_pages(&inbox, &Filter::new().event("rare").limit(500)).await;
    assert_eq!(rare(&filtered), rare(&everything));
    assert_eq!(filtered.len(), 3_367);
    assert!(pages >= 7, "{pages} pages");
}

#[tokio::test]
async fn stats_count_retrying_apart_from_waiting_exactly() {
    use tower_webhook::inbox::{Filter, Status};

    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    for id in ["evt_retry", "evt_release", "evt_dead", "evt_idle"] {
        inbox.accept(&bare(id)).await.unwrap();
    }
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.retrying, stats.waiting()), (4, 0, 4));
    // Claims follow the stream's order: the first three accepted.
    let claims = inbox.claim(Duration::from_secs(60), 3).await.unwrap();
    assert_eq!(
        claimed_ids(&claims),
        ["evt_dead", "evt_release", "evt_retry"]
    );
    let lease = |id: &str| {
        claims
            .iter()
            .find(|claim| claim.record.delivery.facts().id == id)
            .unwrap()
            .lease
            .clone()
    };
    let (retry, release, dead) = (lease("evt_retry"), lease("evt_release"), lease("evt_dead"));
    assert!(inbox.retry(&retry, Duration::ZERO, "boom").await.unwrap());
    assert!(inbox.release(&release).await.unwrap());
    assert!(inbox.dead_letter(&dead, "poison").await.unwrap());
    let stats = inbox.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.retrying, stats.waiting(), stats.dead),
        (3, 1, 2, 1),
        "a retry is retrying; a release (attempts back to 0) is waiting"
    );
    assert!(inbox
        .replay(
            &IdempotencyKey::new("test", "site", "evt_dead"),
            Replay::Dead
        )
        .await
        .unwrap());
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.retrying), (4, 1), "a replay waits");
    let retrying = inbox
        .search(&Filter::new().status(Status::Retrying))
        .await
        .unwrap();
    assert_eq!(retrying.records.len(), 1);
    assert_eq!(retrying.records[0].delivery.facts().id, "evt_retry");
    let waiting = inbox
        .search(&Filter::new().status(Status::Waiting))
        .await
        .unwrap();
    assert_eq!(waiting.records.len(), 3);

    // Claimed again (due now, first in the stream after the others): running, not retrying.
    let all = inbox.claim(Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(all.len(), 4);
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.retrying, stats.running), (0, 0, 4));
    // Its second attempt released: attempts back to 1, so retrying again.
    let second = all
        .iter()
        .find(|claim| claim.record.delivery.facts().id == "evt_retry")
        .unwrap();
    assert_eq!(second.lease.attempt(), 2);
    assert!(inbox.release(&second.lease).await.unwrap());
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.retrying), (1, 1));
    // Purged: counted nowhere.
    assert!(inbox.purge(second.lease.key()).await.unwrap());
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.retrying), (0, 0));
}

#[tokio::test]
async fn history_records_each_outcome_and_replay_oldest_first_and_keeps_the_last_twenty() {
    use tower_webhook::inbox::{HistoryKind, HISTORY_LIMIT};

    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    let mut redis = server.connection().await;
    let delivery = bare("evt_1");
    inbox.accept(&delivery).await.unwrap();
    let claim = |inbox: RedisInbox| async move {
        let mut claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
        assert_eq!(claims.len(), 1);
        claims.remove(0).lease
    };
    let first = claim(inbox.clone()).await;
    assert!(inbox.retry(&first, Duration::ZERO, "boom").await.unwrap());
    let second = claim(inbox.clone()).await;
    assert!(inbox.dead_letter(&second, "poison").await.unwrap());
    assert!(inbox.replay(delivery.key(), Replay::Dead).await.unwrap());
    let third = claim(inbox.clone()).await;
    assert_eq!(third.attempt(), 1, "a replay resets the attempts");
    // The handler's own transactional completion.
    let completion = inbox.begin_complete(&third).await.unwrap().unwrap();
    assert!(completion.commit().await.unwrap());

    let record = inbox.get(delivery.key()).await.unwrap().unwrap();
    let seen: Vec<_> = record
        .history
        .iter()
        .map(|entry| (entry.attempt, entry.kind, entry.error.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, HistoryKind::Retried, Some("boom")),
            (2, HistoryKind::Dead, Some("poison")),
            (2, HistoryKind::Replayed, None),
            (1, HistoryKind::Done, None),
        ]
    );
    assert!(record
        .history
        .windows(2)
        .all(|pair| pair[0].at <= pair[1].at));
    assert!(record.history[0].at >= record.accepted_at);

    // A release, and a replay of a done delivery.
    assert!(inbox
        .replay(delivery.key(), Replay::DeadOrDone)
        .await
        .unwrap());
    let fourth = claim(inbox.clone()).await;
    assert!(inbox.release(&fourth).await.unwrap());
    let record = inbox.get(delivery.key()).await.unwrap().unwrap();
    let tail: Vec<_> = record.history[4..]
        .iter()
        .map(|entry| (entry.attempt, entry.kind))
        .collect();
    assert_eq!(
        tail,
        [(1, HistoryKind::Replayed), (1, HistoryKind::Released)]
    );

    // The last twenty are kept; batches (`finish`) record them as the single calls do.
    for _ in 0..25 {
        let lease = claim(inbox.clone()).await;
        let outcome = tower_webhook::inbox::Finish::Retry {
            delay: Duration::ZERO,
            error: format!("attempt {}", lease.attempt()),
        };
        assert_eq!(inbox.finish(&[(lease, outcome)]).await.unwrap(), [true]);
    }
    let record = inbox.get(delivery.key()).await.unwrap().unwrap();
    assert_eq!(record.history.len(), HISTORY_LIMIT);
    let last = record.history.last().unwrap();
    assert_eq!(
        (last.attempt, last.kind, last.error.as_deref()),
        (25, HistoryKind::Retried, Some("attempt 25"))
    );
    assert_eq!(record.history[0].attempt, 6);

    // A damaged history reads as none, and the next outcome starts it again.
    let () = redis::cmd("HSET")
        .arg(inbox.delivery_key(delivery.key()))
        .arg("history")
        .arg("{not json")
        .query_async(&mut redis)
        .await
        .unwrap();
    let record = inbox.get(delivery.key()).await.unwrap().unwrap();
    assert!(record.history.is_empty());
    let lease = claim(inbox.clone()).await;
    assert!(inbox.complete(&lease).await.unwrap());
    let record = inbox.get(delivery.key()).await.unwrap().unwrap();
    let seen: Vec<_> = record.history.iter().map(|e| (e.attempt, e.kind)).collect();
    assert_eq!(seen, [(26, HistoryKind::Done)]);

    // Purged and accepted again: a new delivery, with no history.
    assert!(inbox.purge(delivery.key()).await.unwrap());
    inbox.accept(&delivery).await.unwrap();
    let record = inbox.get(delivery.key()).await.unwrap().unwrap();
    assert!(record.history.is_empty());
}

/// A history that decodes but cannot be encoded again (a number out of range, written by hand:
/// `cjson` reads it as infinity and refuses to write it) fails no outcome: it starts again
/// from that outcome, as one that does not decode does.
#[tokio::test]
async fn a_history_that_cannot_be_written_back_starts_again_rather_than_fail_the_outcome() {
    use tower_webhook::inbox::HistoryKind;

    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(InboxOptions::new().with_prefix(prefix()).unwrap())
        .await;
    let mut redis = server.connection().await;
    let delivery = bare("evt_inf_history");
    inbox.accept(&delivery).await.unwrap();
    let () = redis::cmd("HSET")
        .arg(inbox.delivery_key(delivery.key()))
        .arg("history")
        .arg(r#"[{"attempt": 1e400, "kind": "retried", "at": 0}]"#)
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    let lease = claims.remove(0).lease;
    assert!(inbox.retry(&lease, Duration::ZERO, "boom").await.unwrap());
    let record = inbox.get(delivery.key()).await.unwrap().unwrap();
    let seen: Vec<_> = record
        .history
        .iter()
        .map(|entry| (entry.attempt, entry.kind, entry.error.as_deref()))
        .collect();
    assert_eq!(seen, [(1, HistoryKind::Retried, Some("boom"))]);
}

/// An inbox written by a version without the index of retries: the first connect of this one
/// indexes the retries already pending, across batches, then marks it done.
#[tokio::test]
async fn connect_indexes_the_retries_of_an_inbox_from_before_the_index() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let options = InboxOptions::new().with_prefix(prefix()).unwrap();
    let inbox = server.inbox(options.clone()).await;
    let mut redis = server.connection().await;
    let deliveries: Vec<Delivery> = (0..1_203).map(|n| bare(&format!("evt_{n}"))).collect();
    for chunk in deliveries.chunks(400) {
        let accepts = chunk.iter().map(|delivery| inbox.accept(delivery));
        for accepted in futures_util::future::join_all(accepts).await {
            accepted.unwrap();
        }
    }
    let claims = inbox.claim(Duration::from_secs(60), 1_203).await.unwrap();
    for (n, claim) in claims.iter().enumerate() {
        if n % 2 == 0 {
            assert!(inbox
                .retry(&claim.lease, Duration::from_secs(60), "boom")
                .await
                .unwrap());
        } else {
            assert!(inbox.release(&claim.lease).await.unwrap());
        }
    }
    assert_eq!(inbox.stats().await.unwrap().retrying, 602);
    // As an older version leaves it: no index, no marker.
    let base = inbox.stream_key().trim_end_matches("stream").to_owned();
    let removed: i64 = redis::cmd("DEL")
        .arg(format!("{base}state:retrying"))
        .arg(format!("{base}retrying-indexed"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(inbox.stats().await.unwrap().retrying, 0);
    let upgraded = server.inbox(options).await;
    let stats = upgraded.stats().await.unwrap();
    assert_eq!((stats.pending, stats.retrying), (1_203, 602));
}

/// The group commit's scenarios (`tests/inbox_common/group.rs`) on a server of their own: the
/// gate pauses Redis's clients' writes (`CLIENT PAUSE ... WRITE`, which holds every script
/// call); the commits are the scripts Redis ran.
impl inbox_group::Harness for &RedisServer {
    type Inbox = RedisInbox;
    type Gate = redis::aio::MultiplexedConnection;
    /// The poisoned delivery's key holds a string, which `get` fails on.
    const POISON_READABLE: bool = false;

    async fn open(&self, options: InboxOptions) -> RedisInbox {
        self.inbox(options.with_timeout(inbox_group::TIMEOUT)).await
    }

    async fn gate(&self, _: &RedisInbox) -> Self::Gate {
        let mut control = control(self).await;
        let () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(60_000)
            .arg("WRITE")
            .query_async(&mut control)
            .await
            .unwrap();
        control
    }

    async fn release(mut control: Self::Gate) {
        let () = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query_async(&mut control)
            .await
            .unwrap();
    }

    async fn commits(&self, _: &RedisInbox) -> u64 {
        scripts_run(&mut control(self).await).await
    }

    /// The delivery's hash key holds a string: the accept script's read of it fails, before
    /// the script wrote anything.
    async fn poison(&self, inbox: &RedisInbox) {
        let () = redis::cmd("SET")
            .arg(inbox.delivery_key(inbox_backend::delivery(inbox_group::POISON).key()))
            .arg("not a hash")
            .query_async(&mut self.connection().await)
            .await
            .unwrap();
    }

    /// The pending and running state indexes, which the accept script counts the depth from.
    async fn depth_counter(&self, inbox: &RedisInbox) -> i64 {
        let base = inbox.stream_key().trim_end_matches("stream").to_owned();
        let (pending, running): (i64, i64) = redis::pipe()
            .zcard(format!("{base}state:pending"))
            .zcard(format!("{base}state:running"))
            .query_async(&mut self.connection().await)
            .await
            .unwrap();
        pending + running
    }
}

/// A connection of the harness's own with a long response timeout (a busy machine's `INFO` can
/// take longer than the default).
async fn control(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

#[tokio::test]
async fn two_hundred_concurrent_accepts_are_stored_in_fewer_script_calls_than_deliveries() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    inbox_group::two_hundred_concurrent_accepts_are_committed_in_fewer_transactions_than_deliveries(
        &server,
    )
    .await;
}

#[tokio::test]
async fn a_duplicate_within_one_accept_batch_is_answered_as_a_duplicate_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    inbox_group::a_duplicate_within_one_batch_is_answered_as_a_duplicate(&server).await;
}

#[tokio::test]
async fn the_depth_limit_holds_exactly_within_one_accept_batch_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    inbox_group::the_depth_limit_holds_exactly_within_one_batch(&server).await;
}

/// Two accept batches in flight at once (the Redis writer sends the next while the previous
/// one waits, here on a paused server): Redis runs their scripts one after the other, so a key
/// in both is stored once (the second answered a duplicate) and the depth limit counts the
/// first batch's deliveries for the second's.
#[tokio::test]
async fn two_accept_batches_in_flight_keep_duplicates_and_the_depth_limit_exact_on_redis() {
    use inbox_group::Harness as _;
    use tower_webhook::inbox::InboxError;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let harness = &server;
    let inbox = harness.open(InboxOptions::new().with_max_depth(3)).await;
    let before = harness.commits(&inbox).await;
    let gate = harness.gate(&inbox).await;
    let accept = |id: &'static str| {
        let inbox = inbox.clone();
        tokio::spawn(async move { inbox.accept(&inbox_backend::delivery(id)).await })
    };
    // The first batch: two deliveries, sent to the paused server.
    let first = [accept("evt_a"), accept("evt_b")];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The second, sent while the first waits: `evt_a` again, and two new ones of which the
    // depth limit (3) lets one in.
    let second = [accept("evt_a"), accept("evt_c"), accept("evt_d")];
    tokio::time::sleep(Duration::from_millis(100)).await;
    <&RedisServer as inbox_group::Harness>::release(gate).await;
    let mut answers = Vec::new();
    for task in first.into_iter().chain(second) {
        answers.push(task.await.unwrap());
    }
    assert_eq!(
        harness.commits(&inbox).await - before,
        2,
        "not two batches: {answers:?}"
    );
    assert!(matches!(answers[0], Ok(Accepted::New)), "{answers:?}");
    assert!(matches!(answers[1], Ok(Accepted::New)), "{answers:?}");
    assert!(
        matches!(answers[2], Ok(Accepted::Duplicate(DeliveryState::Pending))),
        "{answers:?}"
    );
    assert!(matches!(answers[3], Ok(Accepted::New)), "{answers:?}");
    assert!(matches!(answers[4], Err(InboxError::Full)), "{answers:?}");
    assert_eq!(inbox.stats().await.unwrap().pending, 3);
    let mut redis = server.connection().await;
    assert_eq!(xlen(&mut redis, inbox.stream_key()).await, 3);
}

/// Many concurrent accepts of overlapping keys from both threads (so batches two at a time, in
/// either order on the connection, and re-sent after `NOSCRIPT` while the script cache is
/// flushed), against a depth limit below the number of keys: each key
/// is stored at most once (one `new`, its other accepts duplicates) or refused every time
/// (`full`, the depth never falls here), and exactly the limit's worth of keys is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_of_overlapping_keys_store_each_once_within_the_depth_limit_on_redis() {
    use std::collections::BTreeMap;
    use tower_webhook::inbox::InboxError;
    const KEYS: usize = 80;
    const SENDERS: usize = 8;
    const LIMIT: u64 = 50;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox = server
        .inbox(
            InboxOptions::new()
                .with_max_depth(LIMIT)
                .with_timeout(inbox_group::TIMEOUT),
        )
        .await;
    // The script cache flushed again and again meanwhile: batches answered `NOSCRIPT` are
    // sent again (`SCRIPT LOAD`, `EVALSHA`), possibly after the batch behind them.
    let mut flusher = server.connection().await;
    let flushing = tokio::spawn(async move {
        for _ in 0..20 {
            let () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut flusher)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        for n in 0..KEYS {
            let id = format!("evt_{}", (n + sender * 7) % KEYS);
            let inbox = inbox.clone();
            tasks.push(tokio::spawn(async move {
                let delivery = inbox_backend::delivery(&id);
                // A flush between the script's load and its call fails the batch (`NOSCRIPT`
                // again: nothing ran): the sender's retry, until the flushes are over.
                for _ in 0..100 {
                    match inbox.accept(&delivery).await {
                        Err(InboxError::Backend(_)) => {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        answer => return (id, answer),
                    }
                }
                let answer = inbox.accept(&delivery).await;
                (id, answer)
            }));
        }
        tokio::task::yield_now().await;
    }
    let mut answers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for task in tasks {
        let (id, answer) = task.await.unwrap();
        let answer = match answer {
            Ok(Accepted::New) => "new".to_owned(),
            Ok(Accepted::Duplicate(DeliveryState::Pending)) => "duplicate".to_owned(),
            Err(InboxError::Full) => "full".to_owned(),
            other => panic!("{id}: {other:?}"),
        };
        answers.entry(id).or_default().push(answer);
    }
    flushing.await.unwrap();
    let mut stored = 0;
    for (id, answers) in &answers {
        let new = answers.iter().filter(|answer| *answer == "new").count();
        let full = answers.iter().filter(|answer| *answer == "full").count();
        match new {
            1 => assert_eq!(full, 0, "{id}: refused, yet stored: {answers:?}"),
            0 => assert_eq!(full, SENDERS, "{id}: a duplicate of nothing: {answers:?}"),
            _ => panic!("{id} stored twice: {answers:?}"),
        }
        stored += new as u64;
    }
    assert_eq!(stored, LIMIT, "the depth limit");
    assert_eq!(inbox.stats().await.unwrap().pending, LIMIT);
    let mut redis = server.connection().await;
    assert_eq!(xlen(&mut redis, inbox.stream_key()).await, LIMIT);
}

/// Two accept batches in flight (the first held on a paused server, the second sent behind
/// it) when the connection is cut after Redis received them, their answers lost: every accept
/// of both is answered an error (never a `2xx` it cannot vouch for), and the sender's retries,
/// on the connection made again, find each delivery stored once (duplicates), one stream entry
/// each.
#[cfg(feature = "axum")]
#[tokio::test]
async fn two_accept_batches_in_flight_whose_answers_were_lost_are_stored_once_each_on_redis() {
    use inbox_group::Harness as _;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = inbox_common::proxy::Proxy::start(server.port).await;
    let url = format!("redis://127.0.0.1:{}/", proxy.port());
    let inbox = RedisInbox::connect(&url, InboxOptions::new().with_timeout(inbox_group::TIMEOUT))
        .await
        .unwrap();
    // The accept script loaded (a `NOSCRIPT` answer would be lost with the others).
    inbox
        .accept(&inbox_backend::delivery("evt_warm"))
        .await
        .unwrap();
    let harness = &server;
    let before = harness.commits(&inbox).await;
    let gate = harness.gate(&inbox).await;
    let accept = |id: &'static str| {
        let inbox = inbox.clone();
        tokio::spawn(async move { inbox.accept(&inbox_backend::delivery(id)).await })
    };
    let first = [accept("evt_a"), accept("evt_b")];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The second batch's request cuts the connection: Redis gets it, its answers (and the
    // first batch's, which come before) are dropped.
    proxy.arm(b"evt_lost");
    let second = [accept("evt_a"), accept("evt_lost")];
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Within the proxy's grace, so that both scripts run before the connection closes.
    <&RedisServer as inbox_group::Harness>::release(gate).await;
    for task in first.into_iter().chain(second) {
        let answer = task.await.unwrap();
        assert!(
            answer.is_err(),
            "answered over a cut connection: {answer:?}"
        );
    }
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(
        harness.commits(&inbox).await - before,
        2,
        "both scripts ran"
    );
    for id in ["evt_a", "evt_b", "evt_lost"] {
        let mut retry = inbox.accept(&inbox_backend::delivery(id)).await;
        // The first call on the new connection may still meet the old one's end.
        if matches!(retry, Err(tower_webhook::inbox::InboxError::Backend(_))) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            retry = inbox.accept(&inbox_backend::delivery(id)).await;
        }
        assert!(
            matches!(retry, Ok(Accepted::Duplicate(DeliveryState::Pending))),
            "{id}: {retry:?}"
        );
    }
    let mut redis = server.connection().await;
    assert_eq!(xlen(&mut redis, inbox.stream_key()).await, 4);
    assert_eq!(inbox.stats().await.unwrap().pending, 4);
}

/// A delivery with a NUL in its tenant id in a batch of others (`PostgreSQL` cannot store it):
/// Redis stores them all (pins the scenario's other side).
#[tokio::test]
async fn a_delivery_with_a_nul_in_its_tenant_does_not_fail_its_accept_batch_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    inbox_group::a_delivery_the_database_refuses_does_not_fail_the_others_of_its_batch(&server)
        .await;
}

/// One delivery of the batch fails its script's read (its hash's key holds a string): the call
/// fails before it wrote anything, and every delivery in it is answered an error; none is
/// stored, and each is accepted when sent again (then in the stream once each).
#[tokio::test]
async fn a_failed_accept_batch_answers_every_delivery_an_error_and_stores_nothing_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let inbox =
        inbox_group::a_failed_batch_answers_every_delivery_an_error_and_stores_nothing(&server)
            .await;
    let mut redis = server.connection().await;
    assert_eq!(xlen(&mut redis, inbox.stream_key()).await, 20);
}

/// The child's settings: the server's URL, `|`, the round.
const GROUP_CHILD_ENV: &str = "TOWER_WEBHOOK_REDIS_GROUP_CHILD";

/// The child: 64 tasks accept deliveries as fast as they can, until the process is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the group commit's crash test"]
async fn group_commit_child() {
    let Ok(settings) = std::env::var(GROUP_CHILD_ENV) else {
        return;
    };
    let (url, round) = settings.split_once('|').unwrap();
    let inbox = RedisInbox::connect(url, InboxOptions::new()).await.unwrap();
    inbox_group::accept_until_killed(inbox, round).await;
}

/// SIGKILL of the accepting process while group-committed script calls are in flight, three
/// times, then Redis (`appendonly yes`, `appendfsync always`) killed and started again from its
/// append-only file: every delivery the children acknowledged is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_a_group_commit_loses_no_acknowledged_delivery_on_redis() {
    let Some(mut server) = RedisServer::start_durable() else {
        return;
    };
    let url = server.url();
    let acknowledged = tokio::task::spawn_blocking(move || {
        inbox_group::acknowledged_over_three_kills("group_commit_child", GROUP_CHILD_ENV, &url)
    })
    .await
    .unwrap();
    server.kill();
    server.spawn().unwrap();
    // Until Redis has loaded its append-only file.
    let deadline = Instant::now() + Duration::from_secs(60);
    let inbox = loop {
        match RedisInbox::connect(&server.url(), InboxOptions::new()).await {
            Ok(inbox) => break inbox,
            Err(error) => assert!(
                Instant::now() < deadline,
                "Redis did not come back: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    inbox_group::every_acknowledged_delivery_is_stored(&inbox, &acknowledged).await;
}
