//! The inbox's metrics, against real `SQLite` files in temporary directories: each counter
//! moves when its event happens, the gauges are the inbox's stats after a refresh, the
//! accept-to-done histogram records each delivery done, and no label holds an id. (The attempt
//! spans are tested in `inbox_spans.rs`, alone in their binary, as `tracing` tests must be.)
#![cfg(all(feature = "sqlite", feature = "axum", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod inbox_common;

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use inbox_common::{delivery, key, member_created, send, wait_for, App, Routed, SECRET};
use tower_webhook::inbox::{
    DeliveryState, InboxBackend, InboxOptions, Replay, SqliteInbox, Workers,
};
use tower_webhook::{EventRouter, Scheme, WebhookLayer};

/// The inbox's name in these tests: the `inbox` label.
const NAME: &str = "billing";

async fn inbox(dir: &tempfile::TempDir) -> SqliteInbox {
    SqliteInbox::open(dir.path().join("inbox.db"), InboxOptions::new())
        .await
        .unwrap()
}

/// The receiver, its layer in inbox mode under [`NAME`].
fn receiver(inbox: &SqliteInbox, app: &App) -> Router {
    let layer = WebhookLayer::builder(Scheme::sotion())
        .with_secret(SECRET)
        .with_inbox(inbox.clone())
        .with_inbox_name(NAME)
        .build()
        .unwrap();
    let events = EventRouter::new().on("member.created", member_created::<SqliteInbox>);
    Router::new()
        .route("/webhooks", post(events).route_layer(layer))
        .with_state(app.clone())
}

/// Fast workers under [`NAME`]: short backoff and poll interval, 3 attempts.
fn workers(inbox: &SqliteInbox, app: &App) -> Workers<SqliteInbox, Routed> {
    Workers::new(inbox.clone(), inbox_common::router::<SqliteInbox>(app))
        .with_name(NAME)
        .with_backoff(Duration::from_millis(20))
        .with_poll_interval(Duration::from_millis(20))
        .with_max_attempts(NonZeroU32::new(3).unwrap())
}

#[cfg(feature = "metrics")]
mod recorded {
    use metrics_util::debugging::{DebugValue, Snapshotter};

    /// One metric as recorded: its name, its labels (`key=value`), its value.
    pub(crate) type Metric = (String, Vec<String>, DebugValue);

    /// What was recorded since the last snapshot (the debugging recorder resets what it
    /// reports: counters count from there).
    pub(crate) fn since(snapshotter: &Snapshotter) -> Vec<Metric> {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels = key
                    .labels()
                    .map(|label| format!("{}={}", label.key(), label.value()))
                    .collect();
                (key.name().to_owned(), labels, value)
            })
            .collect()
    }

    fn with<'a>(
        metrics: &'a [Metric],
        name: &'a str,
        labels: &'a [&'a str],
    ) -> impl Iterator<Item = &'a DebugValue> {
        metrics
            .iter()
            .filter(move |(n, l, _)| {
                n == name && labels.iter().all(|label| l.iter().any(|x| x == label))
            })
            .map(|(_, _, value)| value)
    }

    /// What was recorded from the last snapshot until `done` holds of it (at most 10 s).
    pub(crate) async fn until(
        snapshotter: &Snapshotter,
        done: impl Fn(&[Metric]) -> bool,
    ) -> Vec<Metric> {
        let mut metrics = Vec::new();
        for _ in 0..500 {
            metrics.extend(since(snapshotter));
            if done(&metrics) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        metrics
    }

    /// The counter `name` with every label of `labels`, summed (0 when absent).
    pub(crate) fn counter(metrics: &[Metric], name: &str, labels: &[&str]) -> u64 {
        with(metrics, name, labels)
            .map(|value| match value {
                DebugValue::Counter(count) => *count,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    /// The gauge `name` with every label of `labels`.
    pub(crate) fn gauge(metrics: &[Metric], name: &str, labels: &[&str]) -> Option<f64> {
        with(metrics, name, labels).next().map(|value| match value {
            DebugValue::Gauge(value) => value.0,
            other => panic!("{name} is not a gauge: {other:?}"),
        })
    }

    /// The values the histogram `name` with every label of `labels` recorded.
    pub(crate) fn histogram(metrics: &[Metric], name: &str, labels: &[&str]) -> Vec<f64> {
        with(metrics, name, labels)
            .flat_map(|value| match value {
                DebugValue::Histogram(values) => values.iter().map(|v| v.0).collect::<Vec<_>>(),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .collect()
    }

    /// Every label of every `webhook_inbox_*` metric is one of a few names, with a value from a
    /// bounded set: never an event id, a key or an event type.
    pub(crate) fn assert_bounded(metrics: &[Metric]) {
        for (name, labels, _) in metrics
            .iter()
            .filter(|(name, ..)| name.starts_with("webhook_inbox"))
        {
            for label in labels {
                let (key, value) = label.split_once('=').unwrap();
                let allowed: &[&str] = match key {
                    "inbox" => &[super::NAME],
                    "scheme" => &["sotion"],
                    "outcome" => &["done", "retried", "dead", "released", "stale", "lost"],
                    "status" => &["waiting", "running", "retrying", "dead", "done"],
                    _ => panic!("{name} has an unexpected label {label}"),
                };
                assert!(allowed.contains(&value), "{name}: {label}");
            }
        }
    }
}

#[cfg(feature = "metrics")]
#[test]
fn each_inbox_counter_moves_when_its_event_happens_and_no_label_holds_an_id() {
    use metrics_util::debugging::DebuggingRecorder;
    use recorded::{assert_bounded, counter, histogram, since, until};
    use tower_webhook::observe;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // One thread: the recorder is installed for it, and the workers' tasks run on it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let inbox = inbox(&dir).await;
            let app = App::default();
            app.fail("evt_c_flaky", 1);
            app.fail("evt_c_dead", u32::MAX);
            let router = receiver(&inbox, &app);

            // Accepted: three stored; the same event again is a duplicate.
            for id in ["evt_c_ok", "evt_c_flaky", "evt_c_dead"] {
                assert_eq!(send(&router, SECRET, id).await.0, StatusCode::OK);
            }
            assert!(send(&router, SECRET, "evt_c_ok").await.1);
            let accepted = since(&snapshotter);
            let labels = ["scheme=sotion", "inbox=billing"];
            assert_eq!(counter(&accepted, observe::INBOX_ACCEPTED, &labels), 3);
            assert_eq!(counter(&accepted, observe::INBOX_DUPLICATES, &labels), 1);
            assert_eq!(
                counter(&accepted, observe::DUPLICATES, &["scheme=sotion"]),
                1
            );
            assert_eq!(counter(&accepted, observe::INBOX_ATTEMPTS, &[]), 0);
            assert_bounded(&accepted);

            // Processed: ok done at once, flaky retried once then done, dead retried twice then
            // dead-lettered.
            let running = workers(&inbox, &app).start().unwrap();
            wait_for(&inbox, &key("evt_c_ok"), DeliveryState::Done).await;
            wait_for(&inbox, &key("evt_c_flaky"), DeliveryState::Done).await;
            wait_for(&inbox, &key("evt_c_dead"), DeliveryState::Dead).await;
            // The outcomes are reported once recorded: the last ones may still be on their way.
            let processed = until(&snapshotter, |metrics| {
                counter(metrics, observe::INBOX_ATTEMPTS, &["outcome=done"]) == 2
                    && counter(metrics, observe::INBOX_DEAD_LETTERS, &[]) == 1
            })
            .await;
            let attempts = |outcome: &str| {
                counter(
                    &processed,
                    observe::INBOX_ATTEMPTS,
                    &["inbox=billing", &format!("outcome={outcome}")],
                )
            };
            assert_eq!(attempts("done"), 2);
            assert_eq!(attempts("retried"), 3);
            assert_eq!(attempts("dead"), 1);
            assert_eq!(
                counter(&processed, observe::INBOX_DEAD_LETTERS, &["inbox=billing"]),
                1
            );
            let times = histogram(
                &processed,
                observe::INBOX_ACCEPT_TO_DONE,
                &["inbox=billing"],
            );
            assert_eq!(times.len(), 2, "one per delivery done: {times:?}");
            assert!(times.iter().all(|t| (0.0..60.0).contains(t)), "{times:?}");
            assert_eq!(counter(&processed, observe::INBOX_REPLAYED, &[]), 0);
            assert_bounded(&processed);

            // Replayed: the dead one, through the admin tools' helper, now succeeding; a replay
            // that changes nothing (it is no longer dead) is not counted.
            app.fail("evt_c_dead", 0);
            let dead = key("evt_c_dead");
            assert!(
                tower_webhook::inbox::replay(&inbox, &dead, Replay::Dead, NAME)
                    .await
                    .unwrap()
            );
            assert!(
                !tower_webhook::inbox::replay(&inbox, &dead, Replay::Dead, NAME)
                    .await
                    .unwrap()
            );
            wait_for(&inbox, &dead, DeliveryState::Done).await;
            let replayed = until(&snapshotter, |metrics| {
                counter(metrics, observe::INBOX_ATTEMPTS, &["outcome=done"]) == 1
            })
            .await;
            assert_eq!(
                counter(&replayed, observe::INBOX_REPLAYED, &["inbox=billing"]),
                1
            );
            assert_eq!(
                histogram(&replayed, observe::INBOX_ACCEPT_TO_DONE, &["inbox=billing"]).len(),
                1
            );
            assert_bounded(&replayed);
            running.shutdown(Duration::from_secs(5)).await;
        });
    });
}

#[cfg(feature = "metrics")]
#[test]
fn the_gauges_are_the_inbox_stats_by_status_after_a_refresh() {
    use metrics_util::debugging::DebuggingRecorder;
    use recorded::{assert_bounded, gauge, since};
    use tower_webhook::observe;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let inbox = inbox(&dir).await;
            // One delivery in each state: running (a lease held here), retrying (due in an
            // hour), dead, done; then one waiting.
            for id in [
                "evt_g_running",
                "evt_g_retrying",
                "evt_g_dead",
                "evt_g_done",
            ] {
                inbox.accept(&delivery(id)).await.unwrap();
            }
            let claims = inbox.claim(Duration::from_secs(3600), 4).await.unwrap();
            assert_eq!(claims.len(), 4);
            for claim in &claims {
                let id = claim.record.delivery.facts().id.clone();
                let lease = &claim.lease;
                match id.as_str() {
                    "evt_g_retrying" => assert!(inbox
                        .retry(lease, Duration::from_secs(3600), "failed")
                        .await
                        .unwrap()),
                    "evt_g_dead" => assert!(inbox.dead_letter(lease, "failed").await.unwrap()),
                    "evt_g_done" => assert!(inbox.complete(lease).await.unwrap()),
                    _ => {}
                }
            }
            inbox.accept(&delivery("evt_g_waiting")).await.unwrap();
            let stats = inbox.stats().await.unwrap();
            assert_eq!(
                (
                    stats.waiting(),
                    stats.running,
                    stats.retrying,
                    stats.dead,
                    stats.done
                ),
                (1, 1, 1, 1, 1)
            );

            // The workers read the stats before their first claim (and not again for an hour).
            let app = App::default();
            let running = workers(&inbox, &app)
                .with_stats_interval(Duration::from_secs(3600))
                .start()
                .unwrap();
            wait_for(&inbox, &key("evt_g_waiting"), DeliveryState::Done).await;
            running.shutdown(Duration::from_secs(5)).await;

            let metrics = since(&snapshotter);
            let by_status = |status: &str| {
                gauge(
                    &metrics,
                    observe::INBOX_DELIVERIES,
                    &["inbox=billing", &format!("status={status}")],
                )
            };
            #[allow(clippy::cast_precision_loss)]
            let expected = |count: u64| Some(count as f64);
            assert_eq!(by_status("waiting"), expected(stats.waiting()));
            assert_eq!(by_status("running"), expected(stats.running));
            assert_eq!(by_status("retrying"), expected(stats.retrying));
            assert_eq!(by_status("dead"), expected(stats.dead));
            assert_eq!(by_status("done"), expected(stats.done));
            assert_eq!(
                gauge(&metrics, observe::INBOX_DEPTH, &["inbox=billing"]),
                expected(stats.depth())
            );
            assert_eq!(stats.depth(), 3);
            let lag = gauge(&metrics, observe::INBOX_OLDEST_WAITING, &["inbox=billing"]).unwrap();
            let oldest = stats.oldest_waiting.unwrap().as_secs_f64();
            assert!(
                lag >= oldest && lag < oldest + 30.0,
                "lag {lag}, stats {oldest}"
            );
            assert_bounded(&metrics);
        });
    });
}

/// A replay through the admin page's API is counted under the name the admin was given, as
/// the workers' and the layer's series are; a replay that changes nothing is not.
#[cfg(all(feature = "metrics", feature = "admin"))]
#[test]
fn a_replay_through_the_admin_api_is_counted_under_the_inbox_s_name() {
    use metrics_util::debugging::DebuggingRecorder;
    use recorded::{counter, since};
    use tower::ServiceExt;
    use tower_webhook::inbox::admin::Admin;
    use tower_webhook::observe;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let inbox = inbox(&dir).await;
            let stored = delivery("evt_admin_dead");
            inbox.accept(&stored).await.unwrap();
            let claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
            assert!(inbox
                .dead_letter(&claims[0].lease, "gave up")
                .await
                .unwrap());
            let admin = Admin::new(inbox.clone())
                .with_inbox_name(NAME)
                .allow_unauthenticated_for_local_development()
                .build()
                .unwrap();
            let uri = format!("/api/deliveries/{}/replay", stored.key().to_hex());
            let mut answers = Vec::new();
            for _ in 0..2 {
                let request = http::Request::post(&uri)
                    .body(axum::body::Body::empty())
                    .unwrap();
                answers.push(admin.clone().oneshot(request).await.unwrap().status());
            }
            // The second finds it pending, no longer dead: refused, and not counted.
            assert_eq!(answers, [StatusCode::OK, StatusCode::CONFLICT]);
            let metrics = since(&snapshotter);
            assert_eq!(
                counter(&metrics, observe::INBOX_REPLAYED, &["inbox=billing"]),
                1
            );
            assert_eq!(counter(&metrics, observe::INBOX_REPLAYED, &[]), 1);
        });
    });
}
