//! The inbox's workers and the layer's inbox mode, as scenarios run against each backend
//! (`tests/inbox_worker.rs` for `SQLite`, one test each; `tests/inbox_postgres.rs` and
//! `tests/inbox_redis.rs` all of them on one server, through [`every_scenario`]).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::manual_assert
)] // tests may panic

#[cfg(feature = "admin")]
pub(crate) mod admin;
pub(crate) mod backend;
pub(crate) mod completion;
#[cfg(unix)]
pub(crate) mod crash;
pub(crate) mod proxy;
pub(crate) mod restart;

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use tower::ServiceExt;
use tower_webhook::envelope::MemberData;
use tower_webhook::idempotency::IdempotencyKey;
use tower_webhook::inbox::{
    Attempt, Delivery, DeliveryState, InboxBackend, Record, Replay, Stats, Workers,
};
use tower_webhook::testing::{sotion_event_with_data, sotion_request};
use tower_webhook::{Envelope, EventRouter, Scheme, Secret, WebhookLayer, WebhookMeta};

pub(crate) const SECRET: &str = "whsec_inbox_worker";

/// One handler run: the event id, the attempt number, the data's email.
pub(crate) type Run = (String, u32, Option<String>);

/// What each event's handler does, by event id, and what it saw.
#[derive(Clone, Default)]
pub(crate) struct App {
    /// Event id → how many attempts answer 500 before one succeeds (`u32::MAX`: always).
    pub(crate) fail: Arc<Mutex<HashMap<String, u32>>>,
    /// Event ids whose handler panics.
    pub(crate) panic: Arc<Mutex<Vec<String>>>,
    /// Event ids whose handler sleeps this long.
    pub(crate) sleep: Arc<Mutex<HashMap<String, Duration>>>,
    /// Each run: (event id, attempt number, data email).
    pub(crate) runs: Arc<Mutex<Vec<Run>>>,
}

impl App {
    pub(crate) fn runs_of(&self, id: &str) -> Vec<u32> {
        let runs = self.runs.lock().unwrap();
        runs.iter()
            .filter(|(run, _, _)| run == id)
            .map(|(_, attempt, _)| *attempt)
            .collect()
    }

    pub(crate) fn sleep(&self, id: &str, duration: Duration) {
        self.sleep.lock().unwrap().insert(id.into(), duration);
    }

    pub(crate) fn fail(&self, id: &str, attempts: u32) {
        self.fail.lock().unwrap().insert(id.into(), attempts);
    }
}

pub(crate) async fn member_created<B: InboxBackend>(
    State(app): State<App>,
    meta: WebhookMeta,
    Extension(attempt): Extension<Attempt<B>>,
    event: Envelope<MemberData>,
) -> StatusCode {
    let id = meta.id().to_owned();
    assert_eq!(event.id, id, "the envelope and the meta agree");
    app.runs
        .lock()
        .unwrap()
        .push((id.clone(), attempt.number(), event.data.email.clone()));
    let sleep = app.sleep.lock().unwrap().get(&id).copied();
    if let Some(sleep) = sleep {
        tokio::time::sleep(sleep).await;
    }
    if app.panic.lock().unwrap().contains(&id) {
        panic!("the handler of {id} panics");
    }
    let fail = app.fail.lock().unwrap().get(&id).copied().unwrap_or(0);
    if attempt.number() <= fail {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

pub(crate) type Routed = axum::handler::HandlerService<EventRouter<App>, (), App>;

fn events<B: InboxBackend>() -> EventRouter<App> {
    EventRouter::new().on("member.created", member_created::<B>)
}

/// The service the workers call: the router the route serves, with its state.
pub(crate) fn router<B: InboxBackend>(app: &App) -> Routed {
    use axum::handler::Handler;
    events::<B>().with_state(app.clone())
}

/// The body of a `member.created` event `id`.
pub(crate) fn body(id: &str) -> Vec<u8> {
    sotion_event_with_data(
        "member.created",
        id,
        "site_1",
        &serde_json::json!({ "id": "member_1", "email": "ada@example.com" }),
    )
}

/// A verified Sotion `member.created` delivery of event `id`, as the layer would store it.
pub(crate) fn delivery(id: &str) -> Delivery {
    backend::verified(SECRET, body(id), "/webhooks")
}

pub(crate) fn key(id: &str) -> IdempotencyKey {
    *delivery(id).key()
}

/// Fast workers for tests: two of them, short backoff and poll interval, 3 attempts.
pub(crate) fn workers<B: InboxBackend + Clone>(inbox: &B, app: &App) -> Workers<B, Routed> {
    Workers::new(inbox.clone(), router::<B>(app))
        .with_workers(NonZeroUsize::new(2).unwrap())
        .with_backoff(Duration::from_millis(20))
        .with_poll_interval(Duration::from_millis(20))
        .with_max_attempts(NonZeroU32::new(3).unwrap())
}

/// Waits (at most 20 s) until the delivery under `key` is in `state`, and returns it.
pub(crate) async fn wait_for<B: InboxBackend>(
    inbox: &B,
    key: &IdempotencyKey,
    state: DeliveryState,
) -> Record {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let record = inbox.get(key).await.unwrap().unwrap();
        if record.state == state {
            return record;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?} (attempts {}, error {:?}), waiting for {state:?}",
            record.state,
            record.attempts,
            record.last_error
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The receiver: the same route as inline mode, plus the one line `with_inbox`.
pub(crate) fn receiver<B: InboxBackend + Clone>(inbox: &B, app: &App) -> Router {
    let layer = WebhookLayer::builder(Scheme::sotion())
        .with_secret(SECRET)
        .with_inbox(inbox.clone())
        .build()
        .unwrap();
    Router::new()
        .route("/webhooks", post(events::<B>()).route_layer(layer))
        .with_state(app.clone())
}

/// Sends event `id`, signed with `secret`; returns the status, whether `X-Webhook-Duplicate`
/// was set, and the body (with ` retry-after=N` appended when the header was set).
pub(crate) async fn send(router: &Router, secret: &str, id: &str) -> (StatusCode, bool, String) {
    let request = sotion_request(&Secret::new(secret).unwrap(), body(id));
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let duplicate = response.headers().contains_key("x-webhook-duplicate");
    let retry_after = response.headers().get("retry-after").cloned();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if let Some(after) = retry_after {
        text = format!("{text} retry-after={}", after.to_str().unwrap());
    }
    (status, duplicate, text)
}

// Scenarios: each takes a fresh, empty inbox.

pub(crate) async fn a_delivery_reaches_the_router_with_its_meta_envelope_and_attempt<
    B: InboxBackend + Clone,
>(
    inbox: B,
) {
    let app = App::default();
    let stored = delivery("evt_ok");
    inbox.accept(&stored).await.unwrap();
    let running = workers(&inbox, &app).start().unwrap();

    let record = wait_for(&inbox, stored.key(), DeliveryState::Done).await;
    assert_eq!(record.attempts, 1);
    let runs = app.runs.lock().unwrap().clone();
    assert_eq!(
        runs,
        [("evt_ok".to_owned(), 1, Some("ada@example.com".to_owned()))]
    );
    running.shutdown(Duration::from_secs(5)).await;
}

pub(crate) async fn a_handler_that_fails_twice_then_succeeds_is_done_at_attempt_3<
    B: InboxBackend + Clone,
>(
    inbox: B,
) {
    let app = App::default();
    app.fail("evt_flaky", 2);
    let stored = delivery("evt_flaky");
    inbox.accept(&stored).await.unwrap();
    let running = workers(&inbox, &app).start().unwrap();

    let record = wait_for(&inbox, stored.key(), DeliveryState::Done).await;
    assert_eq!(record.attempts, 3);
    assert_eq!(app.runs_of("evt_flaky"), [1, 2, 3]);
    // The last failure is kept as the last error.
    let error = record.last_error.unwrap();
    assert!(error.contains("500"), "{error}");
    running.shutdown(Duration::from_secs(5)).await;
}

pub(crate) async fn a_handler_that_always_fails_is_dead_lettered_after_the_maximum_and_replay_processes_it<
    B: InboxBackend + Clone,
>(
    inbox: B,
) {
    let app = App::default();
    app.fail("evt_bad", u32::MAX);
    let stored = delivery("evt_bad");
    inbox.accept(&stored).await.unwrap();
    let running = workers(&inbox, &app).start().unwrap();

    let record = wait_for(&inbox, stored.key(), DeliveryState::Dead).await;
    assert_eq!(record.attempts, 3);
    assert_eq!(app.runs_of("evt_bad"), [1, 2, 3]);
    let error = record.last_error.unwrap();
    assert!(error.contains("500"), "{error}");

    // Fixed, then replayed: processed, from attempt 1.
    app.fail.lock().unwrap().remove("evt_bad");
    assert!(inbox.replay(stored.key(), Replay::Dead).await.unwrap());
    let record = wait_for(&inbox, stored.key(), DeliveryState::Done).await;
    assert_eq!(record.attempts, 1);
    assert_eq!(app.runs_of("evt_bad"), [1, 2, 3, 1]);
    running.shutdown(Duration::from_secs(5)).await;
}

pub(crate) async fn a_panicking_handler_is_retried_and_its_panic_is_the_last_error<
    B: InboxBackend + Clone,
>(
    inbox: B,
) {
    let app = App::default();
    app.panic.lock().unwrap().push("evt_panic".into());
    let stored = delivery("evt_panic");
    inbox.accept(&stored).await.unwrap();
    let running = workers(&inbox, &app).start().unwrap();

    let record = wait_for(&inbox, stored.key(), DeliveryState::Dead).await;
    assert_eq!(app.runs_of("evt_panic"), [1, 2, 3]);
    let error = record.last_error.unwrap();
    assert!(
        error.contains("panicked") && error.contains("evt_panic"),
        "{error}"
    );
    // The workers survived the panics: another delivery is still processed.
    let next = delivery("evt_after_panic");
    inbox.accept(&next).await.unwrap();
    wait_for(&inbox, next.key(), DeliveryState::Done).await;
    running.shutdown(Duration::from_secs(5)).await;
}

pub(crate) async fn a_handler_past_its_timeout_is_stopped_and_counted_as_failed<
    B: InboxBackend + Clone,
>(
    inbox: B,
) {
    let app = App::default();
    app.sleep("evt_slow", Duration::from_secs(3600));
    let stored = delivery("evt_slow");
    inbox.accept(&stored).await.unwrap();
    let running = workers(&inbox, &app)
        .with_handler_timeout(Duration::from_millis(100))
        .start()
        .unwrap();

    let record = wait_for(&inbox, stored.key(), DeliveryState::Dead).await;
    assert_eq!(record.attempts, 3);
    let error = record.last_error.unwrap();
    assert!(error.contains("did not finish within"), "{error}");
    running.shutdown(Duration::from_secs(5)).await;
}

pub(crate) async fn a_handler_longer_than_its_lease_keeps_it_by_renewing_and_runs_once<
    B: InboxBackend + Clone,
>(
    inbox: B,
) {
    let app = App::default();
    app.sleep("evt_long", Duration::from_millis(2500));
    let stored = delivery("evt_long");
    inbox.accept(&stored).await.unwrap();
    // A 900 ms lease, renewed every 300 ms, while the handler runs 2.5 s; the second worker
    // would take the delivery over if the lease ran out.
    let running = workers(&inbox, &app)
        .with_lease(Duration::from_millis(900))
        .start()
        .unwrap();

    let record = wait_for(&inbox, stored.key(), DeliveryState::Done).await;
    assert_eq!(record.attempts, 1);
    assert_eq!(app.runs_of("evt_long"), [1]);
    running.shutdown(Duration::from_secs(5)).await;
}

pub(crate) async fn graceful_shutdown_lets_short_handlers_finish_and_releases_the_rest<
    B: InboxBackend + Clone,
>(
    inbox: B,
) {
    let app = App::default();
    app.sleep("evt_stuck", Duration::from_secs(3600));
    app.sleep("evt_short", Duration::from_millis(300));
    let stuck = delivery("evt_stuck");
    let short = delivery("evt_short");
    inbox.accept(&stuck).await.unwrap();
    inbox.accept(&short).await.unwrap();
    let running = workers(&inbox, &app).start().unwrap();
    wait_for(&inbox, stuck.key(), DeliveryState::Running).await;
    wait_for(&inbox, short.key(), DeliveryState::Running).await;

    running.shutdown(Duration::from_secs(1)).await;
    // The short one finished within the deadline; the stuck one was given back, its attempt
    // not counted, due now for the next process.
    let short = inbox.get(short.key()).await.unwrap().unwrap();
    assert_eq!(short.state, DeliveryState::Done);
    let stuck = inbox.get(stuck.key()).await.unwrap().unwrap();
    assert_eq!(stuck.state, DeliveryState::Pending);
    assert_eq!(stuck.attempts, 0);

    // Nothing is claimed after shutdown.
    let later = delivery("evt_later");
    inbox.accept(&later).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = inbox.get(later.key()).await.unwrap().unwrap();
    assert_eq!(later.state, DeliveryState::Pending);
}

pub(crate) async fn a_slow_handler_s_delivery_is_answered_before_it_runs_and_processed_later<
    B: InboxBackend + Clone,
>(
    inbox: B,
) {
    let state = App::default();
    state.sleep("evt_slow", Duration::from_secs(5));
    let router = receiver(&inbox, &state);
    let running = workers(&inbox, &state).start().unwrap();

    let started = std::time::Instant::now();
    let (status, duplicate, text) = send(&router, SECRET, "evt_slow").await;
    let answered_in = started.elapsed();
    assert_eq!((status, duplicate), (StatusCode::OK, false), "{text}");
    assert_eq!(text, r#"{"status":"accepted"}"#);
    // Answered before the handler's 5 s sleep could end: it was stored, not run.
    assert!(answered_in < Duration::from_secs(5), "{answered_in:?}");
    let stored = inbox.get(&key("evt_slow")).await.unwrap().unwrap();
    assert_ne!(stored.state, DeliveryState::Done);
    // The stored delivery keeps the path without a query string, and the body exactly.
    assert_eq!(stored.delivery.path(), "/webhooks");
    assert_eq!(stored.delivery.body().as_ref(), body("evt_slow").as_slice());

    wait_for(&inbox, &key("evt_slow"), DeliveryState::Done).await;
    assert_eq!(state.runs_of("evt_slow"), [1]);
    running.shutdown(Duration::from_secs(5)).await;
}

pub(crate) async fn a_duplicate_while_pending_running_done_or_dead_never_runs_the_handler_again<
    B: InboxBackend + Clone,
>(
    inbox: B,
) {
    let state = App::default();
    state.sleep("evt_running", Duration::from_millis(1500));
    state.fail("evt_dead", u32::MAX);
    let router = receiver(&inbox, &state);
    for id in ["evt_pending", "evt_running", "evt_done", "evt_dead"] {
        assert_eq!(send(&router, SECRET, id).await.0, StatusCode::OK);
    }

    // Pending: no worker yet.
    let (status, duplicate, text) = send(&router, SECRET, "evt_pending").await;
    assert_eq!((status, duplicate), (StatusCode::OK, true), "{text}");
    assert_eq!(text, r#"{"status":"duplicate"}"#);

    let running = workers(&inbox, &state).start().unwrap();
    wait_for(&inbox, &key("evt_running"), DeliveryState::Running).await;
    assert!(send(&router, SECRET, "evt_running").await.1, "running");
    wait_for(&inbox, &key("evt_done"), DeliveryState::Done).await;
    assert!(send(&router, SECRET, "evt_done").await.1, "done");
    wait_for(&inbox, &key("evt_dead"), DeliveryState::Dead).await;
    assert!(send(&router, SECRET, "evt_dead").await.1, "dead");
    wait_for(&inbox, &key("evt_running"), DeliveryState::Done).await;
    wait_for(&inbox, &key("evt_pending"), DeliveryState::Done).await;
    running.shutdown(Duration::from_secs(5)).await;

    assert_eq!(state.runs_of("evt_pending"), [1]);
    assert_eq!(state.runs_of("evt_running"), [1]);
    assert_eq!(state.runs_of("evt_done"), [1]);
    assert_eq!(state.runs_of("evt_dead"), [1, 2, 3]);
}

pub(crate) async fn a_forged_delivery_is_never_stored<B: InboxBackend + Clone>(inbox: B) {
    let router = receiver(&inbox, &App::default());

    let (status, _, text) = send(&router, "whsec_not_the_endpoint_s", "evt_forged").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    // Unsigned.
    let mut request = sotion_request(&Secret::new(SECRET).unwrap(), body("evt_unsigned"));
    request.headers_mut().remove("x-webhook-signature");
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Signed, but its event id holds a NUL byte (a Postgres `text` column would refuse it):
    // refused before the inbox, `400 invalid_event_id`, never a `503` the sender retries
    // forever.
    let (status, _, text) = send(&router, SECRET, "evt_\0nul").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("invalid_event_id"), "{text}");

    assert!(inbox.get(&key("evt_forged")).await.unwrap().is_none());
    assert!(inbox.get(&key("evt_unsigned")).await.unwrap().is_none());
    assert_eq!(inbox.stats().await.unwrap(), Stats::default());
    // The authentic one, after: stored.
    assert_eq!(send(&router, SECRET, "evt_forged").await.0, StatusCode::OK);
    assert_eq!(inbox.stats().await.unwrap().pending, 1);
}

pub(crate) async fn a_handler_whose_lease_is_taken_from_it_is_stopped<B: InboxBackend + Clone>(
    inbox: B,
) {
    let app = App::default();
    app.sleep("evt_taken", Duration::from_secs(3600));
    let taken = delivery("evt_taken");
    inbox.accept(&taken).await.unwrap();
    // One worker, a 300 ms lease renewed every 100 ms.
    let running = workers(&inbox, &app)
        .with_workers(NonZeroUsize::new(1).unwrap())
        .with_lease(Duration::from_millis(300))
        .start()
        .unwrap();
    wait_for(&inbox, taken.key(), DeliveryState::Running).await;
    // The delivery is removed (an operator purged it): the next renewal is refused, and the
    // handler is stopped rather than left running for an hour, so the one worker is free.
    assert!(inbox.purge(taken.key()).await.unwrap());
    let next = delivery("evt_next");
    inbox.accept(&next).await.unwrap();
    wait_for(&inbox, next.key(), DeliveryState::Done).await;
    assert_eq!(app.runs_of("evt_taken"), [1]);
    running.shutdown(Duration::from_secs(5)).await;
}

pub(crate) async fn a_failure_whose_text_holds_a_nul_byte_is_retried_and_dead_lettered<
    B: InboxBackend + Clone,
>(
    inbox: B,
) {
    // A handler whose failed answer holds a NUL byte (which a Postgres `text` column refuses):
    // its attempt is still recorded (retried after the backoff, then dead-lettered), not left
    // running until the lease runs out with its error lost.
    let service = tower::service_fn(
        |_: axum::http::Request<http_body_util::Full<bytes::Bytes>>| async {
            let mut response = axum::http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"boom\0after the nul"),
            ));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            Ok::<_, std::convert::Infallible>(response)
        },
    );
    let stored = delivery("evt_nul");
    inbox.accept(&stored).await.unwrap();
    let running = Workers::new(inbox.clone(), service)
        .with_lease(Duration::from_secs(3600))
        .with_backoff(Duration::from_millis(20))
        .with_poll_interval(Duration::from_millis(20))
        .with_max_attempts(NonZeroU32::new(2).unwrap())
        .start()
        .unwrap();
    let record = wait_for(&inbox, stored.key(), DeliveryState::Dead).await;
    running.shutdown(Duration::from_secs(5)).await;
    assert_eq!(record.attempts, 2);
    let error = record.last_error.unwrap();
    assert!(
        error.contains("500") && error.contains("boom") && error.contains("after the nul"),
        "{error}"
    );
}

/// What the outcome hook reported: event id, attempt, outcome.
type Outcomes = (String, u32, &'static str);

/// The worker's own completion (after a `200`) reaches the server and is committed, but the
/// connection is cut before the answer comes back (through `proxy`, which `inbox` connects
/// through): the worker reads the delivery again and reports what it finds, `done`, rather than
/// an outcome lost; the handler never runs again. For the backends reached over a connection.
pub(crate) async fn an_outcome_whose_answer_was_lost_is_read_again_and_reported_as_found<
    B: InboxBackend + Clone,
>(
    inbox: B,
    proxy: Arc<proxy::Proxy>,
) {
    let runs: Arc<Mutex<Vec<String>>> = Arc::default();
    let ran = Arc::clone(&runs);
    let armer = Arc::clone(&proxy);
    let service = tower::service_fn(
        move |request: axum::http::Request<http_body_util::Full<bytes::Bytes>>| {
            let id = request
                .extensions()
                .get::<WebhookMeta>()
                .unwrap()
                .id()
                .to_owned();
            let token = request
                .extensions()
                .get::<Attempt<B>>()
                .unwrap()
                .lease()
                .token()
                .to_hex();
            ran.lock().unwrap().push(id.clone());
            // The next request carrying this attempt's token (the worker's completion, the
            // lease being too long to need a renewal) is cut after it reached the server.
            if id == "evt_cut" {
                armer.arm(token.as_bytes());
            }
            async {
                Ok::<_, std::convert::Infallible>(axum::http::Response::new(
                    http_body_util::Full::new(bytes::Bytes::new()),
                ))
            }
        },
    );
    let reported: Arc<Mutex<Vec<Outcomes>>> = Arc::default();
    let into = Arc::clone(&reported);
    let running = Workers::new(inbox.clone(), service)
        .with_workers(NonZeroUsize::new(1).unwrap())
        .with_lease(Duration::from_secs(60))
        .with_poll_interval(Duration::from_millis(20))
        .on_outcome(move |delivery, attempt, outcome| {
            into.lock()
                .unwrap()
                .push((delivery.facts().id.clone(), attempt, outcome.as_str()));
        })
        .start()
        .unwrap();
    let reported_of = |id: &str| -> Vec<(u32, &'static str)> {
        let reported = reported.lock().unwrap();
        reported
            .iter()
            .filter(|(seen, ..)| seen == id)
            .map(|(_, attempt, outcome)| (*attempt, *outcome))
            .collect()
    };
    let until_reported = |id: &'static str| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while reported_of(id).is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never reported"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // A first delivery, so that every statement and script the completion needs is known to
    // the server (prepared, loaded) before the cut.
    let warm = delivery("evt_warm");
    inbox.accept(&warm).await.unwrap();
    until_reported("evt_warm").await;
    assert_eq!(reported_of("evt_warm"), [(1, "done")]);

    let cut = delivery("evt_cut");
    inbox.accept(&cut).await.unwrap();
    until_reported("evt_cut").await;
    let record = wait_for(&inbox, cut.key(), DeliveryState::Done).await;
    running.shutdown(Duration::from_secs(5)).await;
    assert_eq!(proxy.cuts(), 1, "the completion's connection was not cut");
    assert_eq!(reported_of("evt_cut"), [(1, "done")]);
    assert_eq!(record.attempts, 1);
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs, ["evt_warm", "evt_cut"]);
}

/// Every scenario above, each in a fresh inbox from `fresh` (the servers' tests run them in one
/// test, on one server).
pub(crate) async fn every_scenario<B, F, Fut>(fresh: F)
where
    B: InboxBackend + Clone,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = B>,
{
    a_delivery_reaches_the_router_with_its_meta_envelope_and_attempt(fresh().await).await;
    a_handler_that_fails_twice_then_succeeds_is_done_at_attempt_3(fresh().await).await;
    a_handler_that_always_fails_is_dead_lettered_after_the_maximum_and_replay_processes_it(
        fresh().await,
    )
    .await;
    a_panicking_handler_is_retried_and_its_panic_is_the_last_error(fresh().await).await;
    a_handler_past_its_timeout_is_stopped_and_counted_as_failed(fresh().await).await;
    a_handler_longer_than_its_lease_keeps_it_by_renewing_and_runs_once(fresh().await).await;
    graceful_shutdown_lets_short_handlers_finish_and_releases_the_rest(fresh().await).await;
    a_slow_handler_s_delivery_is_answered_before_it_runs_and_processed_later(fresh().await).await;
    a_duplicate_while_pending_running_done_or_dead_never_runs_the_handler_again(fresh().await)
        .await;
    a_forged_delivery_is_never_stored(fresh().await).await;
    a_handler_whose_lease_is_taken_from_it_is_stopped(fresh().await).await;
    a_failure_whose_text_holds_a_nul_byte_is_retried_and_dead_lettered(fresh().await).await;
}

/// `Debug` on an inbox (`name`, its type), on workers built on it and on their started handle:
/// each present and naming what it is, none printing `secret` (the password in the URL the
/// inbox was opened with), in either form (`{:?}`, `{:#?}`).
pub(crate) async fn debug_names_the_backend_and_prints_no_secret<B>(
    inbox: B,
    name: &str,
    secret: &str,
) where
    B: InboxBackend + Clone + std::fmt::Debug,
{
    let workers = workers(&inbox, &App::default());
    let printed_workers = [format!("{workers:?}"), format!("{workers:#?}")];
    let handle = workers.start().unwrap();
    let printed_handle = [format!("{handle:?}"), format!("{handle:#?}")];
    for (printed, expected) in [
        ([format!("{inbox:?}"), format!("{inbox:#?}")], name),
        (printed_workers, "Workers"),
        (printed_handle, "WorkersHandle"),
    ] {
        for text in printed {
            assert!(text.contains(expected), "{expected}: {text}");
            assert!(
                !text.contains(secret),
                "{expected} prints the secret: {text}"
            );
        }
    }
    handle.shutdown(Duration::from_secs(5)).await;
}
