//! Deduplication never trusts an unsigned event id: GitHub's `X-GitHub-Delivery` is chosen by
//! whoever sends the request, so a captured delivery replayed under other ids must neither run
//! again nor block or swallow a genuine event.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, Request};
use axum::routing::post;
use axum::Router;
use common::{meta_app, send};
use http_body_util::Full;
use tokio::sync::Notify;
use tower_webhook::scheme::{Outgoing, Scheme};
use tower_webhook::testing::signed_request;
use tower_webhook::{Secret, WebhookLayer, WebhookMeta};

const SECRET: &str = "github-hook-secret";

fn github_layer() -> WebhookLayer {
    WebhookLayer::new(Scheme::github(), SECRET).unwrap()
}

/// A GitHub delivery of `body` under delivery id `guid`, signed as GitHub signs it.
fn github(guid: &str, body: &[u8]) -> Request<Full<Bytes>> {
    signed_request(
        &Scheme::github(),
        &Secret::new(SECRET).unwrap(),
        &Outgoing {
            id: guid,
            event: "push",
            timestamp: 0,
            body,
        },
    )
}

/// The same request under another `X-GitHub-Delivery`: what an attacker who captured it sends.
fn replayed(mut request: Request<Full<Bytes>>, guid: &str) -> Request<Full<Bytes>> {
    request
        .headers_mut()
        .insert("x-github-delivery", HeaderValue::from_str(guid).unwrap());
    request
}

const CAPTURED: &[u8] = br#"{"ref":"refs/heads/main","after":"aaa"}"#;
const GENUINE: &[u8] = br#"{"ref":"refs/heads/main","after":"bbb"}"#;

#[tokio::test]
async fn a_captured_delivery_replayed_under_fresh_delivery_ids_runs_the_handler_once() {
    let (app, seen) = meta_app(github_layer(), "/webhooks");
    assert_eq!(send(&app, github("guid-1", CAPTURED)).await.status(), 200);
    for n in 0..5 {
        let replay = replayed(github("guid-1", CAPTURED), &format!("forged-{n}"));
        let response = send(&app, replay).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-webhook-duplicate"], "true");
    }
    assert_eq!(
        seen.runs(),
        1,
        "a replay under a fresh id ran the handler again"
    );
}

#[tokio::test]
async fn a_replay_under_a_genuine_events_delivery_id_does_not_swallow_that_event() {
    let (app, seen) = meta_app(github_layer(), "/webhooks");
    assert_eq!(send(&app, github("guid-1", CAPTURED)).await.status(), 200);
    // The attacker guesses (or sees) the id of the next genuine delivery and gets there first.
    let replay = replayed(github("guid-1", CAPTURED), "guid-2");
    assert_eq!(send(&app, replay).await.status(), 200);
    let genuine = send(&app, github("guid-2", GENUINE)).await;
    assert_eq!(genuine.status(), 200);
    assert!(
        genuine.headers().get("x-webhook-duplicate").is_none(),
        "the genuine event was answered as a duplicate and never processed"
    );
    assert_eq!(seen.runs(), 2);
    let meta = seen.last_meta.lock().unwrap().clone().unwrap();
    assert_eq!(meta.id(), "guid-2", "the header's id is still shown");
    assert_eq!(seen.last_body.lock().unwrap().as_deref(), Some(GENUINE));

    // GitHub's redelivery resends the same body under the same id: a duplicate.
    let redelivery = send(&app, github("guid-2", GENUINE)).await;
    assert_eq!(redelivery.headers()["x-webhook-duplicate"], "true");
    assert_eq!(seen.runs(), 2);
}

#[tokio::test]
async fn a_replay_held_in_flight_does_not_make_the_genuine_delivery_wait() {
    // The handler holds the captured body until told to go on; the genuine one runs at once.
    let gate = Arc::new(Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (gate, runs) = (gate.clone(), runs.clone());
        move |_meta: WebhookMeta, body: Bytes| {
            let (gate, runs) = (gate.clone(), runs.clone());
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                if body.as_ref() == CAPTURED {
                    gate.notified().await;
                }
                "handled"
            }
        }
    };
    let app = Router::new().route("/webhooks", post(handler).route_layer(github_layer()));
    let replay = tokio::spawn({
        let app = app.clone();
        async move {
            let replay = replayed(github("guid-1", CAPTURED), "guid-2");
            send(&app, replay).await.status()
        }
    });
    tokio::time::timeout(Duration::from_secs(5), async {
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the replay never reached the handler");
    let genuine = send(&app, github("guid-2", GENUINE)).await;
    assert_eq!(
        genuine.status(),
        200,
        "the genuine delivery was refused while a replay under its id was in flight"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    gate.notify_one();
    let replay = tokio::time::timeout(Duration::from_secs(5), replay)
        .await
        .expect("the replay did not finish")
        .unwrap();
    assert_eq!(replay, 200);
}

/// GitHub signs neither `X-GitHub-Event` nor `X-GitHub-Delivery`, and the key of a GitHub
/// delivery is the digest of its body alone. Whoever captured a body can therefore replay it
/// under another event name that the app acknowledges without work (`ping`), complete the key,
/// and make GitHub's redelivery of the real event a "duplicate": the event is never handled.
#[tokio::test]
async fn a_replay_under_another_event_name_does_not_swallow_the_genuine_event() {
    let processed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let failures_left = Arc::new(AtomicUsize::new(1));
    let handler = {
        let (processed, failures_left) = (processed.clone(), failures_left.clone());
        move |meta: WebhookMeta| {
            let (processed, failures_left) = (processed.clone(), failures_left.clone());
            async move {
                let event = meta.event().unwrap_or("").to_owned();
                if event == "ping" {
                    return axum::http::StatusCode::OK; // nothing to do for a ping
                }
                // The first push fails for a moment (a database restart): 500, released.
                if failures_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                processed.lock().unwrap().push(event);
                axum::http::StatusCode::OK
            }
        }
    };
    let app = Router::new().route("/webhooks", post(handler).route_layer(github_layer()));
    assert_eq!(send(&app, github("guid-1", GENUINE)).await.status(), 500);
    // The attacker replays the captured body as a `ping`.
    let mut replay = replayed(github("guid-1", GENUINE), "forged");
    replay
        .headers_mut()
        .insert("x-github-event", HeaderValue::from_static("ping"));
    assert_eq!(send(&app, replay).await.status(), 200);
    // GitHub's redelivery (or the operator's): same body, same id, the real event name.
    let redelivery = send(&app, github("guid-1", GENUINE)).await;
    assert_eq!(redelivery.status(), 200);
    assert!(
        redelivery.headers().get("x-webhook-duplicate").is_none(),
        "the genuine push was answered as a duplicate of the forged ping"
    );
    assert_eq!(*processed.lock().unwrap(), vec!["push".to_owned()]);
}
