//! Issue #13, the durable inbox, on each backend against its floor:
//!
//! - **accept**: 1 KiB signed Sotion deliveries, each with a new id, through the real
//!   `WebhookLayer` in inbox mode (an axum router called in process, no TCP), answered `200`
//!   once committed; the floor is a bare loop of single-row committed `INSERT`s of the same row
//!   into a table of the same shape, through the same pool (same PRAGMAs, same server).
//!   (a) throughput: a closed loop of `INBOX_CONCURRENCY` callers (default 16) on both sides;
//!   (b) latency: an open loop at `INBOX_RATE` deliveries/s (default 1,000) for `INBOX_SECONDS`
//!   (default 10), p50/p99/max of the time to the answer.
//! - **processing**: what the accept phases stored is drained by `Workers` (`INBOX_WORKERS`,
//!   default 4, the default) with a no-op handler answering `200`; the floor drains its table
//!   with as many tasks, each a bare loop of one claiming `UPDATE ... RETURNING` (Postgres:
//!   `FOR UPDATE SKIP LOCKED`) and one completing `UPDATE`.
//!
//! A backend is one [`Backend`] entry (`backends()`): its inbox, its floor's two statements,
//! and how workers start on it. Bounded: a fixed count per phase and a time limit.
//!
//! `cargo bench --manifest-path benches/Cargo.toml --features sqlite,postgres --bench inbox`
//! (`INBOX_BACKENDS=sqlite` runs one backend; `INBOX_COUNT` sets the closed loop's deliveries
//! per side, default 4,000). Postgres is started here (`initdb` in a temporary directory, as
//! the `postgres` user when run as root, on a free 127.0.0.1 port, default durability:
//! `fsync` and `synchronous_commit` on), and stopped at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// Reporting numbers: the casts to and from f64 are intended.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use tower_webhook::inbox::{
    sqlx, InboxBackend, InboxOptions, PostgresInbox, SqliteInbox, Workers, WorkersHandle,
};
use tower_webhook::{testing, Scheme, Secret, WebhookLayer};

const SECRET: &str = "whsec_inbox_benchmark";
/// The longest any phase may run.
const TIME_LIMIT: Duration = Duration::from_secs(180);
/// The floor's claim lease, as the workers' default.
const LEASE_MS: i64 = 30_000;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One backend under test: its inbox, and its floor's bare statements on a table of the same
/// shape (made by opening a second inbox under the prefix `floor_`), through the same pool.
trait Backend: Send + Sync + 'static {
    /// Its name and durability settings, for the table's title.
    fn describe(&self) -> String;
    /// The inbox, for the layer.
    fn inbox(&self) -> Arc<dyn InboxBackend>;
    /// Starts `workers` workers on the inbox with `handler`.
    fn start_workers(&self, workers: NonZeroUsize, handler: NoOp) -> WorkersHandle;
    /// The floor's accept: one single-row committed `INSERT`.
    fn floor_insert<'a>(&'a self, row: &'a FloorRow) -> BoxFuture<'a, Result<(), String>>;
    /// The floor's processing step: claim one due row and complete it; `false` when none was due.
    fn floor_claim_complete(&self) -> BoxFuture<'_, Result<bool, String>>;
}

/// A row for the floor: what the inbox stores for the same delivery.
struct FloorRow {
    key: [u8; 32],
    id: String,
    headers: String,
    body: Bytes,
}

struct Settings {
    concurrency: usize,
    count: usize,
    rate: u32,
    seconds: u32,
    workers: NonZeroUsize,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let settings = Settings {
        concurrency: env("INBOX_CONCURRENCY", 16),
        count: env("INBOX_COUNT", 4_000),
        rate: env("INBOX_RATE", 1_000),
        seconds: env("INBOX_SECONDS", 10),
        workers: NonZeroUsize::new(env("INBOX_WORKERS", 4)).unwrap(),
    };
    let all = if cfg!(feature = "redis") {
        "sqlite,postgres,redis"
    } else {
        "sqlite,postgres"
    };
    let only: String = env("INBOX_BACKENDS", all.to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "inbox: 1 KiB Sotion deliveries, new ids; accept: closed loop of {} callers x {} \
         deliveries a side, open loop at {}/s for {} s; processing: {} workers / floor tasks, \
         no-op handler",
        settings.concurrency, settings.count, settings.rate, settings.seconds, settings.workers
    );
    for name in only.split(',') {
        runtime.block_on(async {
            let dir = TempDir::new(name);
            #[cfg(feature = "redis")]
            let mut _redis: Option<RedisServer> = None;
            let (backend, _server): (Arc<dyn Backend>, Option<PostgresServer>) = match name {
                "sqlite" => (Arc::new(SqliteBackend::open(&dir.0).await), None),
                "postgres" => {
                    let server = PostgresServer::start(&dir.0);
                    (
                        Arc::new(PostgresBackend::open(&server.url()).await),
                        Some(server),
                    )
                }
                #[cfg(feature = "redis")]
                "redis" => {
                    let server = RedisServer::start(&dir.0);
                    let backend = RedisBackend::open(&server.url()).await;
                    _redis = Some(server);
                    (Arc::new(backend), None)
                }
                other => panic!("unknown backend {other} (sqlite, postgres, redis)"),
            };
            run(&backend, &settings).await;
        });
    }
}

/// The three measures, inbox and floor side by side, and the table.
async fn run(backend: &Arc<dyn Backend>, settings: &Settings) {
    let app = Router::new()
        .route(
            "/webhooks",
            post(|| async { "never called in inbox mode" }).route_layer(
                WebhookLayer::builder(Scheme::sotion())
                    .with_secret(SECRET)
                    .with_shared_inbox(backend.inbox())
                    .build()
                    .unwrap(),
            ),
        )
        .with_state(());
    let mut next = 0;
    let mut batch = |n: usize| {
        let batch = Batch::new(next, n);
        next += n;
        batch
    };
    let layer = |batch: &Batch, index: usize| {
        let request = batch.request(index);
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            response.status() == StatusCode::OK
        }
    };
    let floor = |batch: &Batch, index: usize| {
        let row = batch.row(index);
        let backend = Arc::clone(backend);
        async move { backend.floor_insert(&row).await.is_ok() }
    };
    // Warm up: open the pools' connections, fill the caches.
    let warm = batch(400);
    closed_loop(settings.concurrency, &warm, &layer).await;
    let warm = batch(400);
    closed_loop(settings.concurrency, &warm, &floor).await;

    // (a) throughput, floor first then the inbox, a fresh batch each.
    let floor_batch = batch(settings.count);
    let floor_tput = closed_loop(settings.concurrency, &floor_batch, &floor).await;
    let inbox_batch = batch(settings.count);
    let inbox_tput = closed_loop(settings.concurrency, &inbox_batch, &layer).await;
    // (b) latency at the rate, the inbox first then the floor.
    let n = (settings.rate * settings.seconds) as usize;
    let inbox_batch = batch(n);
    let inbox_lat = open_loop(settings.rate, &inbox_batch, &layer).await;
    let floor_batch = batch(n);
    let floor_lat = open_loop(settings.rate, &floor_batch, &floor).await;

    // Processing: drain what was stored.
    let stored = backend.inbox().stats().await.unwrap().depth() as usize;
    let floor_proc = floor_drain(&**backend, settings.workers.get()).await;
    let inbox_proc = inbox_drain(&**backend, settings.workers, stored).await;

    println!();
    println!("### {}", backend.describe());
    println!();
    println!("| measure | inbox | floor | inbox ÷ floor | target |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| accept throughput, closed loop, {} callers | {:.0}/s ({} in {:.2} s, {} errors) | {:.0}/s ({} in {:.2} s, {} errors) | **{:.2}×** | ≥ 0.8× |",
        settings.concurrency,
        inbox_tput.rate(),
        inbox_tput.done,
        inbox_tput.elapsed.as_secs_f64(),
        inbox_tput.errors,
        floor_tput.rate(),
        floor_tput.done,
        floor_tput.elapsed.as_secs_f64(),
        floor_tput.errors,
        inbox_tput.rate() / floor_tput.rate(),
    );
    println!(
        "| acknowledgement at {}/s for {} s: p50 / p99 / max | {} | {} | p99 {:.2}× | p99 ≤ 5 ms |",
        settings.rate,
        settings.seconds,
        inbox_lat.describe(),
        floor_lat.describe(),
        inbox_lat.percentile(0.99) / floor_lat.percentile(0.99),
    );
    println!(
        "| processing throughput, no-op handler, {} workers / floor tasks | {:.0}/s ({} in {:.2} s) | {:.0}/s ({} in {:.2} s) | **{:.2}×** | ≥ 0.7× |",
        settings.workers,
        inbox_proc.rate(),
        inbox_proc.done,
        inbox_proc.elapsed.as_secs_f64(),
        floor_proc.rate(),
        floor_proc.done,
        floor_proc.elapsed.as_secs_f64(),
        inbox_proc.rate() / floor_proc.rate(),
    );
}

/// Pre-made deliveries `first..first + n`: signed requests for the layer, rows for the floor.
struct Batch {
    requests: Vec<Mutex<Option<Request<Body>>>>,
    rows: Vec<Mutex<Option<FloorRow>>>,
}

impl Batch {
    fn new(first: usize, n: usize) -> Self {
        let secret = Secret::new(SECRET).unwrap();
        let mut requests = Vec::with_capacity(n);
        let mut rows = Vec::with_capacity(n);
        for index in first..first + n {
            let id = format!("evt-{index:012}");
            let note = "x".repeat(900);
            let body = testing::sotion_event_with_data(
                "member.created",
                &id,
                "site_bench",
                &serde_json::json!({ "email": "ada@example.com", "name": "Ada", "note": note }),
            );
            let body = Bytes::from(body);
            let request = testing::sotion_request(&secret, body.clone());
            let signature = request
                .headers()
                .get("x-webhook-signature")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            let headers = format!(
                r#"[["content-type","application/json"],["x-webhook-signature","{signature}"],["x-webhook-delivery","{id}"],["x-webhook-id","{id}"],["x-webhook-event","member.created"]]"#
            );
            let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
            rows.push(Mutex::new(Some(FloorRow {
                key,
                id,
                headers,
                body,
            })));
            requests.push(Mutex::new(Some(request.map(Body::new))));
        }
        Self { requests, rows }
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn request(&self, index: usize) -> Request<Body> {
        self.requests[index].lock().unwrap().take().unwrap()
    }

    fn row(&self, index: usize) -> FloorRow {
        self.rows[index].lock().unwrap().take().unwrap()
    }
}

/// How a throughput phase went.
struct Throughput {
    done: usize,
    errors: usize,
    elapsed: Duration,
}

impl Throughput {
    fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }
}

/// `concurrency` callers, each taking the next delivery of `batch` until none is left (or the
/// time limit).
async fn closed_loop<'b, F, Fut>(concurrency: usize, batch: &'b Batch, call: &F) -> Throughput
where
    F: Fn(&'b Batch, usize) -> Fut,
    Fut: Future<Output = bool>,
{
    let next = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let started = Instant::now();
    let caller = || async {
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= batch.len() || started.elapsed() > TIME_LIMIT {
                return;
            }
            if !call(batch, index).await {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    futures_util::future::join_all((0..concurrency).map(|_| caller())).await;
    let elapsed = started.elapsed();
    let errors = errors.into_inner();
    Throughput {
        done: next.into_inner().min(batch.len()) - errors,
        errors,
        elapsed,
    }
}

/// Latencies of an open loop.
struct Latencies {
    sorted: Vec<Duration>,
    errors: usize,
    /// The most the sender fell behind its schedule.
    lag: Duration,
}

impl Latencies {
    fn percentile(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let index = ((self.sorted.len() as f64 * p).ceil() as usize).clamp(1, self.sorted.len());
        self.sorted[index - 1].as_secs_f64() * 1e3
    }

    fn describe(&self) -> String {
        format!(
            "{:.2} / {:.2} / {:.1} ms ({} errors, sender lag ≤ {:.1} ms)",
            self.percentile(0.5),
            self.percentile(0.99),
            self.sorted
                .last()
                .map_or(f64::NAN, |max| max.as_secs_f64() * 1e3),
            self.errors,
            self.lag.as_secs_f64() * 1e3
        )
    }
}

/// Sends the deliveries of `batch` at `rate` per second, each on its own task, without waiting
/// for earlier answers; each latency runs from when it was sent to its answer.
async fn open_loop<'b, F, Fut>(rate: u32, batch: &'b Batch, call: &F) -> Latencies
where
    F: Fn(&'b Batch, usize) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let period = Duration::from_secs(1) / rate;
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let mut tasks = Vec::with_capacity(batch.len());
    let mut lag = Duration::ZERO;
    for index in 0..batch.len() {
        let at = start + period * index as u32;
        tokio::time::sleep_until(at).await;
        if at.elapsed() > TIME_LIMIT {
            break;
        }
        lag = lag.max(at.elapsed());
        let call = call(batch, index);
        let sent = Instant::now();
        tasks.push(tokio::spawn(async move {
            let ok = call.await;
            (ok, sent.elapsed())
        }));
    }
    let mut sorted = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for task in tasks {
        let (ok, latency) = task.await.unwrap();
        if ok {
            sorted.push(latency);
        } else {
            errors += 1;
        }
    }
    sorted.sort();
    Latencies {
        sorted,
        errors,
        lag,
    }
}

/// The floor's processing: `tasks` bare claim-and-complete loops until nothing is due.
async fn floor_drain(backend: &dyn Backend, tasks: usize) -> Throughput {
    let done = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let started = Instant::now();
    let task = || async {
        while started.elapsed() < TIME_LIMIT {
            match backend.floor_claim_complete().await {
                Ok(true) => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => return,
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    futures_util::future::join_all((0..tasks).map(|_| task())).await;
    Throughput {
        done: done.into_inner(),
        errors: errors.into_inner(),
        elapsed: started.elapsed(),
    }
}

/// The inbox's processing: `Workers` with a no-op handler until the `stored` deliveries are done.
async fn inbox_drain(backend: &dyn Backend, workers: NonZeroUsize, stored: usize) -> Throughput {
    let handler = NoOp::default();
    let started = Instant::now();
    let handle = backend.start_workers(workers, handler.clone());
    let inbox = backend.inbox();
    // The handler's count first (no queries), then the inbox's own word that nothing waits.
    while handler.calls.load(Ordering::Relaxed) < stored && started.elapsed() < TIME_LIMIT {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while started.elapsed() < TIME_LIMIT {
        if inbox.stats().await.is_ok_and(|stats| stats.depth() == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    handle.shutdown(Duration::from_secs(5)).await;
    Throughput {
        done: handler.calls.load(Ordering::Relaxed),
        errors: 0,
        elapsed,
    }
}

/// The no-op handler: answers `200` at once, and counts its calls.
#[derive(Clone, Default)]
struct NoOp {
    calls: Arc<AtomicUsize>,
}

impl tower::Service<Request<Full<Bytes>>> for NoOp {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
    }
}

fn start<B: InboxBackend>(inbox: &Arc<B>, workers: NonZeroUsize, handler: NoOp) -> WorkersHandle {
    Workers::from_shared(Arc::clone(inbox), handler)
        .with_workers(workers)
        .start()
        .unwrap()
}

fn now_ms() -> i64 {
    time_ms(std::time::SystemTime::now())
}

fn time_ms(at: std::time::SystemTime) -> i64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

fn token() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("floor-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

// --- SQLite -------------------------------------------------------------------------------

/// A file, WAL, `synchronous = FULL`, the pool `SqliteInbox::open` makes (4 connections).
struct SqliteBackend {
    inbox: Arc<SqliteInbox>,
}

impl SqliteBackend {
    async fn open(dir: &Path) -> Self {
        let inbox = SqliteInbox::open(dir.join("inbox.db"), InboxOptions::new())
            .await
            .unwrap();
        // The floor's table: the inbox's own schema, under another prefix, in the same file.
        SqliteInbox::from_pool(
            inbox.pool().clone(),
            InboxOptions::new().with_prefix("floor_").unwrap(),
        )
        .await
        .unwrap();
        Self {
            inbox: Arc::new(inbox),
        }
    }
}

impl Backend for SqliteBackend {
    fn describe(&self) -> String {
        "SQLite: a file on ext4, WAL, synchronous = FULL, a pool of 4 connections".to_owned()
    }

    fn inbox(&self) -> Arc<dyn InboxBackend> {
        self.inbox.clone()
    }

    fn start_workers(&self, workers: NonZeroUsize, handler: NoOp) -> WorkersHandle {
        start(&self.inbox, workers, handler)
    }

    fn floor_insert<'a>(&'a self, row: &'a FloorRow) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let now = now_ms();
            sqlx::query(
                "INSERT INTO floor_deliveries (key, state, attempts, due_at, accepted_at, path, \
                 headers, body, scheme, event_id, event, delivery, version) \
                 VALUES ($1, 'pending', 0, $2, $2, '/webhooks', $3, $4, 'sotion', $5, \
                 'member.created', $5, '1')",
            )
            .bind(row.key.as_slice())
            .bind(now)
            .bind(&row.headers)
            .bind(row.body.as_ref())
            .bind(&row.id)
            .execute(self.inbox.pool())
            .await
            .map(drop)
            .map_err(|error| error.to_string())
        })
    }

    fn floor_claim_complete(&self) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            let owner = token();
            let now = now_ms();
            let claimed: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
                "UPDATE floor_deliveries SET state = 'running', owner = $1, \
                 attempts = attempts + 1, due_at = $2 + $3 \
                 WHERE key IN (SELECT key FROM floor_deliveries \
                 WHERE state IN ('pending', 'running') AND due_at <= $2 ORDER BY due_at LIMIT 1) \
                 RETURNING key, body",
            )
            .bind(&owner)
            .bind(now)
            .bind(LEASE_MS)
            .fetch_optional(self.inbox.pool())
            .await
            .map_err(|error| error.to_string())?;
            let Some((key, body)) = claimed else {
                return Ok(false);
            };
            std::hint::black_box(body);
            sqlx::query(
                "UPDATE floor_deliveries SET state = 'done', owner = NULL, due_at = $3, \
                 finished_at = $3 WHERE key = $1 AND owner = $2 AND state = 'running'",
            )
            .bind(key)
            .bind(&owner)
            .bind(now_ms())
            .execute(self.inbox.pool())
            .await
            .map_err(|error| error.to_string())?;
            Ok(true)
        })
    }
}

// --- PostgreSQL ---------------------------------------------------------------------------

/// A server started here with its default durability, the pool `PostgresInbox::connect`
/// makes (10 connections).
struct PostgresBackend {
    inbox: Arc<PostgresInbox>,
}

impl PostgresBackend {
    async fn open(url: &str) -> Self {
        let inbox = PostgresInbox::connect(url, InboxOptions::new())
            .await
            .unwrap();
        PostgresInbox::from_pool(
            inbox.pool().clone(),
            InboxOptions::new().with_prefix("floor_").unwrap(),
        )
        .await
        .unwrap();
        Self {
            inbox: Arc::new(inbox),
        }
    }
}

impl Backend for PostgresBackend {
    fn describe(&self) -> String {
        "PostgreSQL 15 on 127.0.0.1, data on ext4, fsync = on, synchronous_commit = on, a pool \
         of 10 connections"
            .to_owned()
    }

    fn inbox(&self) -> Arc<dyn InboxBackend> {
        self.inbox.clone()
    }

    fn start_workers(&self, workers: NonZeroUsize, handler: NoOp) -> WorkersHandle {
        start(&self.inbox, workers, handler)
    }

    fn floor_insert<'a>(&'a self, row: &'a FloorRow) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO floor_deliveries (key, state, attempts, due_at, accepted_at, path, \
                 headers, body, scheme, event_id, event, delivery, version) \
                 VALUES ($1, 'pending', 0, now(), now(), '/webhooks', $2, $3, 'sotion', $4, \
                 'member.created', $4, '1')",
            )
            .bind(row.key.as_slice())
            .bind(&row.headers)
            .bind(row.body.as_ref())
            .bind(&row.id)
            .execute(self.inbox.pool())
            .await
            .map(drop)
            .map_err(|error| error.to_string())
        })
    }

    fn floor_claim_complete(&self) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            let owner = token();
            let claimed: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
                "WITH due AS (SELECT key FROM floor_deliveries \
                 WHERE state IN ('pending', 'running') AND due_at <= now() \
                 ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 UPDATE floor_deliveries AS d SET state = 'running', owner = $1, \
                 attempts = d.attempts + 1, due_at = now() + interval '30 seconds' \
                 FROM due WHERE d.key = due.key RETURNING d.key, d.body",
            )
            .bind(&owner)
            .fetch_optional(self.inbox.pool())
            .await
            .map_err(|error| error.to_string())?;
            let Some((key, body)) = claimed else {
                return Ok(false);
            };
            std::hint::black_box(body);
            sqlx::query(
                "UPDATE floor_deliveries SET state = 'done', owner = NULL, due_at = now(), \
                 finished_at = now() WHERE key = $1 AND owner = $2 AND state = 'running'",
            )
            .bind(key)
            .bind(&owner)
            .execute(self.inbox.pool())
            .await
            .map_err(|error| error.to_string())?;
            Ok(true)
        })
    }
}

/// A directory of this run's, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        // On the disk (`/var/tmp`, not a tmpfs), so that syncs are real.
        let base =
            std::env::var_os("INBOX_DIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
        let dir = base.join(format!(
            "tower-webhook-inbox-bench-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Postgres server in `dir`, with the default durability settings, stopped on drop (as
/// `tests/inbox_postgres.rs` starts one, without its `fsync = off`).
struct PostgresServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    user: Option<&'static str>,
}

impl PostgresServer {
    fn start(dir: &Path) -> Self {
        let bin =
            find_bin().expect("initdb and pg_ctl not found (PG_BIN, PATH, /usr/lib/postgresql)");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.trim_ascii() == b"0");
        let user = root.then_some("postgres");
        if let Some(user) = user {
            run_command(Command::new("chown").arg(format!("{user}:")).arg(dir));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Self {
            bin,
            dir: dir.to_owned(),
            port,
            user,
        };
        let data = server.data();
        server.tool(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let settings = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            server.port,
            dir.display()
        );
        let log = dir.join("server.log").display().to_string();
        server.tool(
            "pg_ctl",
            &[
                "-D", &data, "-o", &settings, "-l", &log, "-w", "-t", "30", "start",
            ],
        );
        server
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn tool(&self, name: &str, args: &[&str]) {
        let program = self.bin.join(name);
        let mut command = match self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        run_command(command.args(args));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.tool("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }
}

fn run_command(command: &mut Command) {
    let output = command.stdin(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Where `initdb` and `pg_ctl` are: `PG_BIN`, the PATH, or Debian's versioned directory.
fn find_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        return has_tools(&dir).then_some(dir);
    }
    if let Some(dir) = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| has_tools(dir)))
    {
        return Some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|dir| has_tools(dir))
        .collect();
    versions.sort();
    versions.pop()
}

// --- Redis Streams (feature `redis`) -------------------------------------------------------

/// A `redis-server` started here with `appendonly yes`, `appendfsync always` (each write
/// fsynced before the answer), the inbox's connection manager; the floor is bare stream
/// commands on a connection of its own.
#[cfg(feature = "redis")]
struct RedisBackend {
    inbox: Arc<tower_webhook::inbox::RedisInbox>,
    floor: redis::aio::MultiplexedConnection,
}

#[cfg(feature = "redis")]
impl RedisBackend {
    async fn open(url: &str) -> Self {
        let inbox = tower_webhook::inbox::RedisInbox::connect(url, InboxOptions::new())
            .await
            .unwrap();
        let mut floor = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("floor")
            .arg("floor")
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut floor)
            .await
            .unwrap();
        Self {
            inbox: Arc::new(inbox),
            floor,
        }
    }
}

#[cfg(feature = "redis")]
impl Backend for RedisBackend {
    fn describe(&self) -> String {
        "Redis Streams: redis-server 7, appendonly yes, appendfsync always, one multiplexed \
         connection (the inbox's connection manager; the floor's own)"
            .to_owned()
    }

    fn inbox(&self) -> Arc<dyn InboxBackend> {
        self.inbox.clone()
    }

    fn start_workers(&self, workers: NonZeroUsize, handler: NoOp) -> WorkersHandle {
        start(&self.inbox, workers, handler)
    }

    /// One `XADD` carrying the delivery: a single write, fsynced before the answer.
    fn floor_insert<'a>(&'a self, row: &'a FloorRow) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut floor = self.floor.clone();
            redis::cmd("XADD")
                .arg("floor")
                .arg("*")
                .arg("key")
                .arg(row.key.as_slice())
                .arg("id")
                .arg(&row.id)
                .arg("headers")
                .arg(&row.headers)
                .arg("body")
                .arg(row.body.as_ref())
                .query_async::<String>(&mut floor)
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        })
    }

    /// `XREADGROUP COUNT 1`, then `XACK` and `XDEL` in one `MULTI`/`EXEC`.
    fn floor_claim_complete(&self) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            let mut floor = self.floor.clone();
            let read: redis::Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("floor")
                .arg("floor-consumer")
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg("floor")
                .arg(">")
                .query_async(&mut floor)
                .await
                .map_err(|error| error.to_string())?;
            let Some(id) = first_entry_id(&read) else {
                return Ok(false);
            };
            std::hint::black_box(&read);
            redis::pipe()
                .atomic()
                .cmd("XACK")
                .arg("floor")
                .arg("floor")
                .arg(&id)
                .ignore()
                .cmd("XDEL")
                .arg("floor")
                .arg(&id)
                .ignore()
                .query_async::<()>(&mut floor)
                .await
                .map_err(|error| error.to_string())?;
            Ok(true)
        })
    }
}

/// The id of the first entry of an `XREADGROUP` answer (RESP2: streams, each a name and its
/// entries, each an id and its fields).
#[cfg(feature = "redis")]
fn first_entry_id(read: &redis::Value) -> Option<Vec<u8>> {
    use redis::Value::{Array, BulkString};
    let Array(streams) = read else { return None };
    let Array(stream) = streams.first()? else {
        return None;
    };
    let Array(entries) = stream.get(1)? else {
        return None;
    };
    let Array(entry) = entries.first()? else {
        return None;
    };
    match entry.first()? {
        BulkString(id) => Some(id.clone()),
        _ => None,
    }
}

/// A `redis-server` on a free 127.0.0.1 port, its files in `dir`, killed on drop.
#[cfg(feature = "redis")]
struct RedisServer {
    child: std::process::Child,
    port: u16,
}

#[cfg(feature = "redis")]
impl RedisServer {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server, or REDIS_SERVER)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

#[cfg(feature = "redis")]
impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
