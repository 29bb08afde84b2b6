//! Adversarial checks of the inbox's workers and inbox mode against real `SQLite` files: the
//! lease while its renewal hangs, and the facts a handler sees (features `sqlite`, `axum`,
//! `testing`).
#![cfg(all(feature = "sqlite", feature = "axum", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod inbox_common;

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use http_body_util::Full;
use inbox_common::{delivery, send, wait_for, SECRET};
use tower_webhook::idempotency::IdempotencyKey;
use tower_webhook::inbox::{
    Accepted, Attempt, Claim, Delivery, DeliveryState, Finish, InboxBackend, InboxError,
    InboxFuture, InboxOptions, Lease, Outcome, Record, Replay, SqliteInbox, Stats, Workers,
};
use tower_webhook::{Scheme, WebhookLayer, WebhookMeta};

async fn inbox(dir: &tempfile::TempDir) -> SqliteInbox {
    SqliteInbox::open(dir.path().join("inbox.db"), InboxOptions::new())
        .await
        .unwrap()
}

/// A backend whose lease renewals hang for `renew_hangs` before they reach the database (a
/// network partition, a database that stalls), as a renewal may for up to the inbox's timeout.
#[derive(Clone)]
struct StallingRenewals {
    inner: SqliteInbox,
    renew_hangs: Duration,
}

impl InboxBackend for StallingRenewals {
    fn accept<'a>(&'a self, delivery: &'a Delivery) -> InboxFuture<'a, Accepted> {
        self.inner.accept(delivery)
    }
    fn claim(&self, lease: Duration, limit: usize) -> InboxFuture<'_, Vec<Claim>> {
        self.inner.claim(lease, limit)
    }
    fn renew<'a>(&'a self, lease: &'a Lease, duration: Duration) -> InboxFuture<'a, bool> {
        Box::pin(async move {
            tokio::time::sleep(self.renew_hangs).await;
            self.inner.renew(lease, duration).await
        })
    }
    fn complete<'a>(&'a self, lease: &'a Lease) -> InboxFuture<'a, bool> {
        self.inner.complete(lease)
    }
    fn retry<'a>(
        &'a self,
        lease: &'a Lease,
        delay: Duration,
        error: &'a str,
    ) -> InboxFuture<'a, bool> {
        self.inner.retry(lease, delay, error)
    }
    fn dead_letter<'a>(&'a self, lease: &'a Lease, error: &'a str) -> InboxFuture<'a, bool> {
        self.inner.dead_letter(lease, error)
    }
    fn release<'a>(&'a self, lease: &'a Lease) -> InboxFuture<'a, bool> {
        self.inner.release(lease)
    }
    fn list(&self, state: DeliveryState, limit: usize) -> InboxFuture<'_, Vec<Record>> {
        self.inner.list(state, limit)
    }
    fn get<'a>(&'a self, key: &'a IdempotencyKey) -> InboxFuture<'a, Option<Record>> {
        self.inner.get(key)
    }
    fn replay<'a>(&'a self, key: &'a IdempotencyKey, from: Replay) -> InboxFuture<'a, bool> {
        self.inner.replay(key, from)
    }
    fn purge<'a>(&'a self, key: &'a IdempotencyKey) -> InboxFuture<'a, bool> {
        self.inner.purge(key)
    }
    fn prune(&self, window: Duration) -> InboxFuture<'_, u64> {
        self.inner.prune(window)
    }
    fn stats(&self) -> InboxFuture<'_, Stats> {
        self.inner.stats()
    }
}

/// Counts the handler runs in progress; decremented when the handler's future is dropped.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_whose_lease_renewal_hangs_is_stopped_when_its_lease_ends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = inbox(&dir).await;
    let backend = StallingRenewals {
        inner: sqlite.clone(),
        renew_hangs: Duration::from_secs(3),
    };
    let stalled = delivery("evt_stalled");
    sqlite.accept(&stalled).await.unwrap();

    // One worker with a 300 ms lease (renewed from 100 ms on: the renewal hangs 3 s), and a
    // handler that would run 2 s.
    let running_now = Arc::new(AtomicUsize::new(0));
    let handler_runs = Arc::clone(&running_now);
    let service = tower::service_fn(move |_: Request<Full<Bytes>>| {
        let runs = Arc::clone(&handler_runs);
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let _running = Running(runs);
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let workers = Workers::new(backend, service)
        .with_workers(NonZeroUsize::new(1).unwrap())
        .with_lease(Duration::from_millis(300))
        .with_poll_interval(Duration::from_millis(20))
        .start()
        .unwrap();
    wait_for(&sqlite, stalled.key(), DeliveryState::Running).await;

    // Another process claims the delivery as soon as the lease has run out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let claim = loop {
        let mut claims = sqlite.claim(Duration::from_secs(60), 1).await.unwrap();
        if let Some(claim) = claims.pop() {
            break claim;
        }
        assert!(tokio::time::Instant::now() < deadline, "never claimable");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(claim.lease.key(), stalled.key());
    // The first owner's handler must have been stopped by then (a little slack for the
    // timer): its lease ended, whether or not its renewal answered.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        running_now.load(Ordering::SeqCst),
        0,
        "the first owner's handler still runs after another owner claimed the delivery"
    );
    workers.shutdown(Duration::from_secs(5)).await;
}

/// What an inbox-mode handler saw: the key `IdempotencyKey::for_delivery` gives for its meta,
/// and its attempt's (the stored delivery's) key.
type Seen = Arc<Mutex<Vec<(IdempotencyKey, IdempotencyKey)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_computes_the_same_idempotency_key_from_its_meta_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = inbox(&dir).await;
    let layer = |inbox: Option<&SqliteInbox>| {
        let builder = WebhookLayer::builder(Scheme::sotion())
            .with_secret(SECRET)
            .with_endpoint("billing");
        match inbox {
            Some(inbox) => builder.with_inbox(inbox.clone()),
            None => builder,
        }
        .build()
        .unwrap()
    };

    // Inline: the key the handler computes from its meta.
    let inline_key: Arc<Mutex<Option<IdempotencyKey>>> = Arc::default();
    let seen_inline = Arc::clone(&inline_key);
    let inline = Router::new().route(
        "/webhooks",
        post(move |meta: WebhookMeta| async move {
            *seen_inline.lock().unwrap() = Some(IdempotencyKey::for_delivery(&meta));
            StatusCode::OK
        })
        .route_layer(layer(None)),
    );
    assert_eq!(send(&inline, SECRET, "evt_key").await.0, StatusCode::OK);
    let inline_key = inline_key.lock().unwrap().expect("the inline handler ran");

    // Through the inbox: the same route, the same delivery.
    let receiver = Router::new().route(
        "/webhooks",
        post(|| async { StatusCode::OK }).route_layer(layer(Some(&sqlite))),
    );
    assert_eq!(send(&receiver, SECRET, "evt_key").await.0, StatusCode::OK);
    let seen: Seen = Arc::default();
    let seen_by_worker = Arc::clone(&seen);
    let service = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let meta = request.extensions().get::<WebhookMeta>().unwrap().clone();
        let attempt = request
            .extensions()
            .get::<Attempt<SqliteInbox>>()
            .unwrap()
            .clone();
        seen_by_worker
            .lock()
            .unwrap()
            .push((IdempotencyKey::for_delivery(&meta), *attempt.lease().key()));
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    });
    let workers = Workers::new(sqlite.clone(), service)
        .with_poll_interval(Duration::from_millis(20))
        .start()
        .unwrap();
    wait_for(&sqlite, &inline_key, DeliveryState::Done).await;
    workers.shutdown(Duration::from_secs(5)).await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (from_meta, stored) = seen[0];
    assert_eq!(stored, inline_key, "the inbox stores under the guard's key");
    assert_eq!(
        from_meta, inline_key,
        "IdempotencyKey::for_delivery(&meta) differs between inline and inbox mode"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_attempts_all_ended_without_an_outcome_is_dead_lettered_not_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = inbox(&dir).await;
    let poison = delivery("evt_poison");
    sqlite.accept(&poison).await.unwrap();
    // Three workers took it in turn and died while its handler ran (it aborts the process:
    // a stack overflow, an out-of-memory kill): three attempts, no outcome recorded.
    for attempt in 1..=3 {
        let claim = loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(claim) = sqlite
                .claim(Duration::from_millis(1), 1)
                .await
                .unwrap()
                .pop()
            {
                break claim;
            }
        };
        assert_eq!(claim.lease.attempt(), attempt);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Workers allowing 3 attempts: the fourth claim must not run the handler (it would take
    // this process down too, forever); the delivery is dead-lettered, for an operator.
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let service = tower::service_fn(move |_: Request<Full<Bytes>>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    });
    let workers = Workers::new(sqlite.clone(), service)
        .with_max_attempts(std::num::NonZeroU32::new(3).unwrap())
        .with_poll_interval(Duration::from_millis(20))
        .start()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        let record = sqlite.get(poison.key()).await.unwrap().unwrap();
        if matches!(record.state, DeliveryState::Done | DeliveryState::Dead) {
            break record;
        }
        assert!(tokio::time::Instant::now() < deadline, "{record:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    workers.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the handler ran a fourth time"
    );
    assert_eq!(record.state, DeliveryState::Dead);
    let error = record.last_error.unwrap();
    assert!(error.contains("without an outcome"), "{error}");
}

/// What `Workers::on_outcome` reported: (event id, attempt, outcome's name, error).
type Reported = Arc<Mutex<Vec<(String, u32, &'static str, Option<String>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcome_hook_reports_a_dead_letter_however_the_last_attempt_ended() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = inbox(&dir).await;
    // One attempt each: `evt_ok` succeeds, `evt_slow` outlives the handler timeout,
    // `evt_panic` panics, `evt_500` answers 500.
    let service = tower::service_fn(|request: Request<Full<Bytes>>| {
        let id = request
            .extensions()
            .get::<WebhookMeta>()
            .unwrap()
            .id()
            .to_owned();
        async move {
            let mut response = Response::new(Full::new(Bytes::new()));
            match id.as_str() {
                "evt_slow" => tokio::time::sleep(Duration::from_secs(3600)).await,
                "evt_panic" => panic!("the demo handler broke"),
                "evt_500" => *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
                _ => {}
            }
            Ok::<_, Infallible>(response)
        }
    });
    let reported: Reported = Arc::default();
    let into = Arc::clone(&reported);
    let ids = ["evt_ok", "evt_slow", "evt_panic", "evt_500"];
    for id in ids {
        sqlite.accept(&delivery(id)).await.unwrap();
    }
    let workers = Workers::new(sqlite.clone(), service)
        .on_outcome(move |delivery, attempt, outcome| {
            let error = match outcome {
                Outcome::Retried { error } | Outcome::DeadLettered { error } => {
                    Some(error.to_owned())
                }
                _ => None,
            };
            into.lock().unwrap().push((
                delivery.facts().id.clone(),
                attempt,
                outcome.as_str(),
                error,
            ));
        })
        .with_max_attempts(std::num::NonZeroU32::new(1).unwrap())
        .with_handler_timeout(Duration::from_millis(200))
        .with_poll_interval(Duration::from_millis(20))
        .start()
        .unwrap();
    for id in ["evt_slow", "evt_panic", "evt_500"] {
        wait_for(&sqlite, delivery(id).key(), DeliveryState::Dead).await;
    }
    wait_for(&sqlite, delivery("evt_ok").key(), DeliveryState::Done).await;
    workers.shutdown(Duration::from_secs(5)).await;

    let mut reported = reported.lock().unwrap().clone();
    reported.sort();
    let names: Vec<(&str, u32, &str)> = reported
        .iter()
        .map(|(id, attempt, outcome, _)| (id.as_str(), *attempt, *outcome))
        .collect();
    assert_eq!(
        names,
        [
            ("evt_500", 1, "dead"),
            ("evt_ok", 1, "done"),
            ("evt_panic", 1, "dead"),
            ("evt_slow", 1, "dead"),
        ]
    );
    let error_of = |id: &str| {
        reported
            .iter()
            .find(|(seen, ..)| seen == id)
            .and_then(|(.., error)| error.clone())
            .unwrap()
    };
    assert!(error_of("evt_slow").contains("did not finish"));
    assert!(error_of("evt_panic").contains("the demo handler broke"));
    assert!(error_of("evt_500").contains("500"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_outcome_hook_does_not_stop_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = inbox(&dir).await;
    let service = tower::service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let workers = Workers::new(sqlite.clone(), service)
        .on_outcome(|_, _, _| panic!("the hook broke"))
        .with_workers(NonZeroUsize::new(1).unwrap())
        .with_poll_interval(Duration::from_millis(20))
        .start()
        .unwrap();
    for id in ["evt_first", "evt_second"] {
        let stored = delivery(id);
        sqlite.accept(&stored).await.unwrap();
        wait_for(&sqlite, stored.key(), DeliveryState::Done).await;
    }
    workers.shutdown(Duration::from_secs(5)).await;
}

/// Notes, when dropped, the wall-clock time (`SQLite`'s clock).
struct Stopped(Arc<Mutex<Option<time::OffsetDateTime>>>);

impl Drop for Stopped {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(time::OffsetDateTime::now_utc());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_cannot_renew_is_stopped_a_margin_before_its_lease_ends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = inbox(&dir).await;
    let backend = StallingRenewals {
        inner: sqlite.clone(),
        renew_hangs: Duration::from_secs(3600),
    };
    let stalled = delivery("evt_margin");
    sqlite.accept(&stalled).await.unwrap();
    // When the handler's future was dropped, by the database's (the wall) clock.
    let stopped_at: Arc<Mutex<Option<time::OffsetDateTime>>> = Arc::default();
    let into = Arc::clone(&stopped_at);
    let service = tower::service_fn(move |_: Request<Full<Bytes>>| {
        let stopped = Stopped(Arc::clone(&into));
        async move {
            let _stopped = stopped;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    // A 3 s lease whose renewals never answer.
    let workers = Workers::new(backend, service)
        .with_workers(NonZeroUsize::new(1).unwrap())
        .with_lease(Duration::from_secs(3))
        .with_poll_interval(Duration::from_millis(20))
        .start()
        .unwrap();
    let lease_ends = wait_for(&sqlite, stalled.key(), DeliveryState::Running)
        .await
        .due_at;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stopped = loop {
        if let Some(at) = *stopped_at.lock().unwrap() {
            break at;
        }
        assert!(tokio::time::Instant::now() < deadline, "never stopped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    workers.shutdown(Duration::from_secs(5)).await;
    // Stopped a tenth of the lease (300 ms) before it ends in the database, so that another
    // worker claiming it then never runs beside it, even with clocks that drift a little (half
    // of the margin is left to the timers of a loaded machine).
    assert!(
        stopped <= lease_ends - Duration::from_millis(150),
        "stopped {} ms before the lease ended",
        (lease_ends - stopped).whole_milliseconds()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_given_the_whole_app_run_each_handler_once_nested_routes_included() {
    use tower::ServiceExt;
    use tower_webhook::testing::sotion_request;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = inbox(&dir).await;
    let layer = WebhookLayer::builder(Scheme::sotion())
        .with_secret(SECRET)
        .with_inbox(sqlite.clone())
        .build()
        .unwrap();
    let runs: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = |route: &'static str| {
        let runs = Arc::clone(&runs);
        move |meta: WebhookMeta| async move {
            runs.lock().unwrap().push(format!("{route} {}", meta.id()));
            StatusCode::OK
        }
    };
    // The whole application: a top-level webhook route and one in a nested router, both in
    // inbox mode.
    let app: Router = Router::new()
        .route("/webhooks", post(handler("top")).route_layer(layer.clone()))
        .nest(
            "/billing",
            Router::new().route("/webhooks", post(handler("nested")).route_layer(layer)),
        );
    for (path, id) in [
        ("/webhooks", "evt_top"),
        ("/billing/webhooks", "evt_nested"),
    ] {
        let mut request = sotion_request(
            &tower_webhook::Secret::new(SECRET).unwrap(),
            inbox_common::body(id),
        );
        *request.uri_mut() = path.parse().unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    // The workers are given the same application, layer and all.
    let workers = Workers::new(sqlite.clone(), app)
        .with_poll_interval(Duration::from_millis(20))
        .with_backoff(Duration::from_millis(20))
        .with_max_attempts(std::num::NonZeroU32::new(2).unwrap())
        .start()
        .unwrap();
    for id in ["evt_top", "evt_nested"] {
        let record = loop {
            let record = sqlite.get(&inbox_common::key(id)).await.unwrap().unwrap();
            if matches!(record.state, DeliveryState::Done | DeliveryState::Dead) {
                break record;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(
            record.state,
            DeliveryState::Done,
            "{id}: {:?}",
            record.last_error
        );
    }
    workers.shutdown(Duration::from_secs(5)).await;
    let mut runs = runs.lock().unwrap().clone();
    runs.sort();
    assert_eq!(runs, ["nested evt_nested", "top evt_top"]);
}

/// Counts the calls the workers make: claims (and the deliveries they asked for), and flushes
/// of outcomes (and the largest one).
#[derive(Clone)]
struct Counting {
    inner: SqliteInbox,
    calls: Arc<Calls>,
    /// Each flush fails: after recording its outcomes (`Some(true)`: the answer was lost), or
    /// before (`Some(false)`).
    flush_fails: Option<bool>,
}

#[derive(Default)]
struct Calls {
    claims: AtomicUsize,
    finishes: AtomicUsize,
    largest_finish: AtomicUsize,
    singles: AtomicUsize,
}

impl InboxBackend for Counting {
    fn accept<'a>(&'a self, delivery: &'a Delivery) -> InboxFuture<'a, Accepted> {
        self.inner.accept(delivery)
    }
    fn claim(&self, lease: Duration, limit: usize) -> InboxFuture<'_, Vec<Claim>> {
        self.calls.claims.fetch_add(1, Ordering::SeqCst);
        self.inner.claim(lease, limit)
    }
    fn renew<'a>(&'a self, lease: &'a Lease, duration: Duration) -> InboxFuture<'a, bool> {
        self.inner.renew(lease, duration)
    }
    fn complete<'a>(&'a self, lease: &'a Lease) -> InboxFuture<'a, bool> {
        self.calls.singles.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(lease)
    }
    fn retry<'a>(
        &'a self,
        lease: &'a Lease,
        delay: Duration,
        error: &'a str,
    ) -> InboxFuture<'a, bool> {
        self.calls.singles.fetch_add(1, Ordering::SeqCst);
        self.inner.retry(lease, delay, error)
    }
    fn dead_letter<'a>(&'a self, lease: &'a Lease, error: &'a str) -> InboxFuture<'a, bool> {
        self.calls.singles.fetch_add(1, Ordering::SeqCst);
        self.inner.dead_letter(lease, error)
    }
    fn release<'a>(&'a self, lease: &'a Lease) -> InboxFuture<'a, bool> {
        self.calls.singles.fetch_add(1, Ordering::SeqCst);
        self.inner.release(lease)
    }
    fn list(&self, state: DeliveryState, limit: usize) -> InboxFuture<'_, Vec<Record>> {
        self.inner.list(state, limit)
    }
    fn get<'a>(&'a self, key: &'a IdempotencyKey) -> InboxFuture<'a, Option<Record>> {
        self.inner.get(key)
    }
    fn replay<'a>(&'a self, key: &'a IdempotencyKey, from: Replay) -> InboxFuture<'a, bool> {
        self.inner.replay(key, from)
    }
    fn purge<'a>(&'a self, key: &'a IdempotencyKey) -> InboxFuture<'a, bool> {
        self.inner.purge(key)
    }
    fn prune(&self, window: Duration) -> InboxFuture<'_, u64> {
        self.inner.prune(window)
    }
    fn stats(&self) -> InboxFuture<'_, Stats> {
        self.inner.stats()
    }
    fn finish<'a>(&'a self, outcomes: &'a [(Lease, Finish)]) -> InboxFuture<'a, Vec<bool>> {
        self.calls.finishes.fetch_add(1, Ordering::SeqCst);
        self.calls
            .largest_finish
            .fetch_max(outcomes.len(), Ordering::SeqCst);
        match self.flush_fails {
            None => self.inner.finish(outcomes),
            Some(recorded) => Box::pin(async move {
                if recorded {
                    self.inner.finish(outcomes).await?;
                }
                Err(InboxError::Timeout)
            }),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_claimed_in_batches_and_its_outcomes_flushed_in_batches() {
    const BURST: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = inbox(&dir).await;
    for n in 0..BURST {
        sqlite.accept(&delivery(&format!("evt_{n}"))).await.unwrap();
    }
    let calls = Arc::new(Calls::default());
    let backend = Counting {
        inner: sqlite.clone(),
        calls: Arc::clone(&calls),
        flush_fails: None,
    };
    // Handlers that take a moment (as real ones do), so that slots free together.
    let service = tower::service_fn(|_: Request<Full<Bytes>>| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let workers = Workers::new(backend, service)
        .with_workers(NonZeroUsize::new(32).unwrap())
        .with_poll_interval(Duration::from_millis(20))
        .start()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sqlite.stats().await.unwrap().done < BURST as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the burst was not drained"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    workers.shutdown(Duration::from_secs(5)).await;
    let claims = calls.claims.load(Ordering::SeqCst);
    let finishes = calls.finishes.load(Ordering::SeqCst);
    let largest = calls.largest_finish.load(Ordering::SeqCst);
    eprintln!("{BURST} deliveries: {claims} claims, {finishes} flushes (largest {largest})");
    // One claim per batch of free slots, not one per delivery (the first alone takes 32).
    assert!(claims < BURST / 2, "{claims} claims for {BURST} deliveries");
    // One flush per batch of outcomes, each recorded by one `finish` call, none on its own.
    assert!(
        finishes < BURST / 2,
        "{finishes} flushes for {BURST} outcomes"
    );
    assert!(largest > 1, "every flush recorded one outcome");
    // None recorded on its own, outside a flush.
    assert_eq!(calls.singles.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_reads_each_delivery_again_and_records_what_was_not() {
    // Flushes whose answer is lost after they recorded everything, then flushes that fail
    // before recording anything: either way each delivery is done once, its handler run once,
    // and reported done (read again, or recorded on its own).
    for recorded in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = inbox(&dir).await;
        let ids: Vec<String> = (0..20).map(|n| format!("evt_{n}")).collect();
        for id in &ids {
            sqlite.accept(&delivery(id)).await.unwrap();
        }
        let calls = Arc::new(Calls::default());
        let backend = Counting {
            inner: sqlite.clone(),
            calls: Arc::clone(&calls),
            flush_fails: Some(recorded),
        };
        let runs = Arc::new(AtomicUsize::new(0));
        let ran = Arc::clone(&runs);
        let service = tower::service_fn(move |_: Request<Full<Bytes>>| {
            ran.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
        });
        let reported: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let into = Arc::clone(&reported);
        let workers = Workers::new(backend, service)
            .with_workers(NonZeroUsize::new(8).unwrap())
            .with_poll_interval(Duration::from_millis(20))
            .on_outcome(move |_, _, outcome| into.lock().unwrap().push(outcome.as_str()))
            .start()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while reported.lock().unwrap().len() < ids.len() {
            assert!(tokio::time::Instant::now() < deadline, "not all reported");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        workers.shutdown(Duration::from_secs(5)).await;
        assert_eq!(*reported.lock().unwrap(), vec!["done"; ids.len()]);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            ids.len(),
            "a handler ran twice"
        );
        assert_eq!(sqlite.stats().await.unwrap().done, ids.len() as u64);
        // Through the wrapper, not the flush (which calls the inner backend's): read again and
        // found done, nothing is recorded again; found running, each is recorded on its own.
        let singles = calls.singles.load(Ordering::SeqCst);
        let expected = if recorded { 0 } else { ids.len() };
        assert_eq!(singles, expected, "recorded on their own");
    }
}

/// Shutdown begun in the turn an executor's slot frees (here: the handler's end wakes the task
/// that calls `shutdown`, ahead of the executor that gives the slot back): the producer, woken
/// by both, claims nothing more, as `shutdown` says. The delivery still due stays pending for
/// the next process; its handler does not run during the drain (nor hold shutdown up to its
/// deadline). On a current-thread runtime, so that the turn's order is the one described.
#[tokio::test(flavor = "current_thread")]
async fn shutdown_begun_as_a_slot_frees_claims_nothing_more() {
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = inbox(&dir).await;
        for n in 0..=workers {
            sqlite.accept(&delivery(&format!("evt_{n}"))).await.unwrap();
        }
        let calls = Arc::new(Calls::default());
        let backend = Counting {
            inner: sqlite.clone(),
            calls: Arc::clone(&calls),
            flush_fails: None,
        };
        let (ended, ending) = tokio::sync::oneshot::channel::<()>();
        let ended = Arc::new(Mutex::new(Some(ended)));
        let (release, released) = tokio::sync::watch::channel(false);
        let runs = Arc::new(AtomicUsize::new(0));
        let ran = Arc::clone(&runs);
        // The first handler ends at once, telling the shutdown task; the others (when there
        // are more slots) run until the test lets them go.
        let service = tower::service_fn(move |_: Request<Full<Bytes>>| {
            ran.fetch_add(1, Ordering::SeqCst);
            let first = ended.lock().unwrap().take();
            let mut released = released.clone();
            async move {
                match first {
                    Some(ended) => {
                        let _ = ended.send(());
                    }
                    None => {
                        let _ = released.wait_for(|go| *go).await;
                    }
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }
        });
        let handle = Workers::new(backend, service)
            .with_workers(NonZeroUsize::new(workers).unwrap())
            .with_poll_interval(Duration::from_millis(20))
            .start()
            .unwrap();
        let claims = Arc::clone(&calls);
        let shutdown = tokio::spawn(async move {
            ending.await.unwrap();
            let before = claims.claims.load(Ordering::SeqCst);
            let mut stopping = std::pin::pin!(handle.shutdown(Duration::from_secs(5)));
            // Starts the drain (its first poll), then lets the running handlers end.
            std::future::poll_fn(|cx| {
                let _ = std::future::Future::poll(stopping.as_mut(), cx);
                std::task::Poll::Ready(())
            })
            .await;
            let _ = release.send(true);
            stopping.await;
            before
        });
        let before = tokio::time::timeout(Duration::from_secs(20), shutdown)
            .await
            .expect("shutdown did not end")
            .unwrap();
        assert_eq!(
            calls.claims.load(Ordering::SeqCst),
            before,
            "{workers} slot(s): a claim after shutdown began"
        );
        assert_eq!(runs.load(Ordering::SeqCst), workers, "{workers} slot(s)");
        let stats = sqlite.stats().await.unwrap();
        assert_eq!(
            (stats.done, stats.pending),
            (workers as u64, 1),
            "{workers} slot(s)"
        );
    }
}
