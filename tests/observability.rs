//! What the operator sees: metrics count what happened, and `Debug` never shows a secret.
//! (The logs are tested in `logs.rs`, alone in their binary.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use axum::routing::post;
use axum::Router;
use common::{event, meta_app, send, Down};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower_webhook::testing::sotion_request;
use tower_webhook::{observe, EventRouter, Scheme, Secret, Secrets, WebhookLayer};

const SECRET: &str = "whsec_TOP_SECRET_never_printed_42";
/// A counter's name, labels and value.
type Counter = (String, Vec<(String, String)>, u64);

fn secret() -> Secret {
    Secret::new(SECRET).unwrap()
}

#[test]
fn debug_output_never_shows_a_secret() {
    let builder = WebhookLayer::builder(Scheme::sotion())
        .with_secret(SECRET)
        .with_secret("whsec_SECOND_secret");
    let unbuilt = format!("{builder:?} {builder:#?}");
    let layer = builder.build().unwrap();
    let standard = Scheme::standard_webhooks();
    let decoded = standard.secret("whsec_VE9QX1NFQ1JFVF9ieXRlcw==").unwrap(); // "TOP_SECRET_bytes"
    let printed = format!(
        "{unbuilt} {layer:?} {layer:#?} {:?} {:?} {decoded:?}",
        Secrets::new(secret()),
        secret()
    );
    for needle in [
        SECRET,
        "TOP_SECRET",
        "SECOND_secret",
        "VE9QX1NFQ1JFVF9ieXRlcw",
    ] {
        assert!(!printed.contains(needle), "{needle} in {printed}");
    }
    assert!(printed.contains("REDACTED"));
}

#[test]
fn metrics_count_verified_rejected_duplicates_conflicts_and_store_errors() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The recorder is installed for this thread only; the requests run on it.
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let (app, _) = meta_app(common::layer(), "/webhooks");
            send(&app, sotion_request(&common::secret(), event("evt_1", "s"))).await;
            send(&app, sotion_request(&common::secret(), event("evt_1", "s"))).await;
            send(
                &app,
                sotion_request(&Secret::new("whsec_x").unwrap(), event("evt_2", "s")),
            )
            .await;
            let (down, _) = meta_app(common::builder().with_store(Down), "/webhooks");
            send(
                &down,
                sotion_request(&common::secret(), event("evt_3", "s")),
            )
            .await;
            // An event no handler ran for: acknowledged, and counted.
            let events = EventRouter::new().on("member.deleted", || async { "ok" });
            let routed =
                Router::new().route("/webhooks", post(events).route_layer(common::layer()));
            let response = send(
                &routed,
                sotion_request(&common::secret(), event("evt_4", "s")),
            )
            .await;
            assert_eq!(response.headers()["x-webhook-ignored"], "member.created");
        });
    });
    let counters: Vec<Counter> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(count) => {
                let labels = key
                    .key()
                    .labels()
                    .map(|label| (label.key().to_owned(), label.value().to_owned()))
                    .collect();
                Some((key.key().name().to_owned(), labels, count))
            }
            _ => None,
        })
        .collect();
    let count = |name: &str, label: Option<(&str, &str)>| -> u64 {
        counters
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, c)| c)
            .sum()
    };
    assert_eq!(count(observe::VERIFIED, Some(("scheme", "sotion"))), 4);
    assert_eq!(count(observe::DUPLICATES, None), 1);
    assert_eq!(
        count(observe::REJECTED, Some(("code", "signature_mismatch"))),
        1
    );
    assert_eq!(
        count(observe::REJECTED, Some(("code", "store_unavailable"))),
        1
    );
    assert_eq!(
        count(observe::STORE_ERRORS, Some(("operation", "reserve"))),
        1
    );
    assert_eq!(count(observe::IN_FLIGHT, None), 0);
    assert_eq!(count(observe::IGNORED, Some(("scheme", "sotion"))), 1);
    // Event names are not bounded: they are never a label.
    let ignored: Vec<_> = counters
        .iter()
        .filter(|(n, ..)| n == observe::IGNORED)
        .collect();
    assert!(ignored
        .iter()
        .all(|(_, labels, _)| labels.iter().all(|(key, _)| key == "scheme")));
}
