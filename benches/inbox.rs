//! The durable inbox on each backend, each measure beside its floor from the same run (issue
//! #20's targets; issue #13's measures kept where they still matter). Per backend, in this
//! order:
//!
//! - **the disk**: the load average (`/proc/loadavg`), then the disk's own `fdatasync`: 4 KiB
//!   overwrites of a preallocated file in the directory of the SQLite file / the Postgres data
//!   directory / Redis' append-only file, each followed by `fdatasync`, for `INBOX_FSYNC_COUNT`
//!   syncs (default 2,000) or `INBOX_FSYNC_SECONDS` (default 2), whichever ends first: its rate,
//!   p50, p99 and max.
//! - **accept → handler start, idle inbox**: `INBOX_IDLE_COUNT` (default 40) single deliveries
//!   sent one at a time through the layer, each once the previous one's handler started and a
//!   pause of `INBOX_IDLE_PAUSE_MS` (default 100) plus a random part of up to
//!   `INBOX_IDLE_SPREAD_MS` (default 500, today's idle poll interval, so that the sends fall at
//!   every phase of a poll rather than lock onto one); the handler records when it starts. The
//!   time runs from the layer's `200` (the delivery is committed) to the handler's start, both
//!   read from the wall clock (`SystemTime`, `CLOCK_REALTIME`: one clock, one machine), so it
//!   can come out slightly negative when the handler starts before the answer is back. In process (`Workers` with
//!   the default settings in this process), and on PostgreSQL and Redis also across two
//!   processes: this binary runs itself again (`INBOX_BENCH_WORKER`) as the worker process,
//!   which prints each handler start on its standard output. Target: p50 ≤ 10 ms, p99 ≤ 50 ms.
//! - **accept throughput**: 1 KiB signed Sotion deliveries, each with a new id, through the real
//!   `WebhookLayer` in inbox mode (an axum router called in process, no TCP), answered `200`
//!   once committed, a closed loop of `INBOX_CONCURRENCY` senders (default 64), `INBOX_COUNT`
//!   deliveries (default 4,000). The floor: the same closed loop of bare single-row committed
//!   `INSERT`s (Redis: one `XADD`) of the same row into a table of the same shape, through the
//!   same pool (same PRAGMAs, same server). Target: SQLite ≥ 5× the floor (group commit),
//!   PostgreSQL and Redis ≥ 1.0×. For context, a batched floor: one loop writing
//!   `INBOX_FLOOR_BATCH` rows (default 64) per commit (one multi-row `INSERT`; Redis: a
//!   `MULTI` of `XADD`s).
//! - **acknowledgement latency**: an open loop at `INBOX_RATE` deliveries/s (default 1,000) for
//!   `INBOX_SECONDS` (default 10), p50/p99/max from the send to the answer; the target is
//!   p99 ≤ 3× the disk's `fdatasync` p99 (SQLite and PostgreSQL). Printed for context, each
//!   through the same open loop: the single-row `INSERT` floor; the same route with the layer
//!   verifying and no store (the loop's own noise); and one 4 KiB overwrite and `fdatasync` of a
//!   preallocated file on a blocking thread (`spawn_blocking`, one at a time), which is the
//!   disk as the open loop meets it, beside the quiet sequential figure the target names.
//! - **drain**: what the accept phases stored is drained by `Workers` with the default settings
//!   (`INBOX_WORKERS` overrides the number of workers) and a no-op handler answering `200`; the
//!   floor is one bare batched claim-and-complete loop on the floor's table: a claiming statement
//!   of `INBOX_FLOOR_BATCH` rows (Postgres: `FOR UPDATE SKIP LOCKED`; Redis: `XREADGROUP
//!   COUNT`) and one completing statement for them (Redis: `XACK` and `XDEL` in one `MULTI`),
//!   each its own commit. Target: ≥ 0.5× that floor. Issue #13's one-at-a-time floor (4 tasks,
//!   each claiming one row per statement and completing it with another, at most `INBOX_COUNT`
//!   rows) is printed for context.
//!
//! Then one table per backend: the measure, the inbox, the floor, the ratio, the target, and
//! whether this run met it; and the load average at the end. Bounded: fixed counts, and each
//! phase stops after `INBOX_PHASE_SECONDS` (default 180).
//!
//! A backend is one [`Backend`] entry: its inbox, its floor's bare statements, how workers start
//! on it, and its URL for a worker process.
//!
//! `cargo bench --manifest-path benches/Cargo.toml --features sqlite,postgres,redis --bench inbox`
//! (`INBOX_BACKENDS=sqlite` runs one backend). Postgres is started here (`initdb` in a temporary
//! directory under `INBOX_DIR`, default `/var/tmp`, as the `postgres` user when run as root, on a
//! free 127.0.0.1 port, default durability: `fsync` and `synchronous_commit` on), and so is
//! Redis (`appendonly yes`, `appendfsync always`); both are stopped at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// Reporting numbers: the casts to and from f64 are intended. The prose names the backends as
// people write them (SQLite, PostgreSQL).
#![allow(
    clippy::doc_markdown,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tower::ServiceExt;
use tower_webhook::inbox::{
    sqlx, InboxBackend, InboxOptions, PostgresInbox, SqliteInbox, Workers, WorkersHandle,
};
use tower_webhook::{testing, Scheme, Secret, WebhookLayer};

const SECRET: &str = "whsec_inbox_benchmark";
/// The floor's claim lease, as the workers' default.
const LEASE_MS: i64 = 30_000;
/// Set (to the backend's name) in the worker process this bench starts; its URL is in
/// [`WORKER_URL`].
const WORKER: &str = "INBOX_BENCH_WORKER";
const WORKER_URL: &str = "INBOX_BENCH_WORKER_URL";
/// The longest the idle measure waits for one handler to start.
const IDLE_WAIT: Duration = Duration::from_secs(10);
/// The accept → handler start target: p50 and p99, in milliseconds.
const IDLE_P50_MS: f64 = 10.0;
const IDLE_P99_MS: f64 = 50.0;
/// The drain target: the inbox's rate over the batched floor's.
const DRAIN_TARGET: f64 = 0.5;
/// The acknowledgement target: its p99 over the disk's `fdatasync` p99.
const ACK_TARGET: f64 = 3.0;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One backend under test: its inbox, and its floor's bare statements on a table of the same
/// shape (made by opening a second inbox under the prefix `floor_`), through the same pool.
trait Backend: Send + Sync + 'static {
    /// Its name and durability settings, for the table's title.
    fn describe(&self) -> String;
    /// The inbox, for the layer.
    fn inbox(&self) -> Arc<dyn InboxBackend>;
    /// Starts `Workers` on the inbox with `handler`: the default settings, but `workers` when
    /// given.
    fn start_workers(&self, workers: Option<NonZeroUsize>, handler: Handler) -> WorkersHandle;
    /// The URL a worker process opens the inbox with (`None`: not measured across processes).
    fn worker_url(&self) -> Option<(&'static str, String)>;
    /// The accept throughput target: the inbox over the single-row floor.
    fn accept_target(&self) -> f64;
    /// Whether the acknowledgement target (p99 ≤ 3× the disk's `fdatasync` p99) applies.
    fn ack_target(&self) -> bool;
    /// The floor's accept: one single-row committed `INSERT`.
    fn floor_insert<'a>(&'a self, row: &'a FloorRow) -> BoxFuture<'a, Result<(), String>>;
    /// The batched floor's accept: `rows` in one commit.
    fn floor_insert_batch<'a>(&'a self, rows: &'a [FloorRow]) -> BoxFuture<'a, Result<(), String>>;
    /// The floor's processing step: claim one due row and complete it; `false` when none was due.
    fn floor_claim_complete(&self) -> BoxFuture<'_, Result<bool, String>>;
    /// The batched floor's processing step: claim up to `limit` due rows in one statement, then
    /// complete them in one statement; how many (0 when none was due).
    fn floor_claim_complete_batch(&self, limit: usize) -> BoxFuture<'_, Result<usize, String>>;
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
    /// `None`: the `Workers` default.
    workers: Option<NonZeroUsize>,
    idle: usize,
    idle_pause: Duration,
    idle_spread: Duration,
    floor_batch: usize,
    fsync_count: usize,
    fsync_time: Duration,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The longest any phase may run (`INBOX_PHASE_SECONDS`, default 180).
fn phase_limit() -> Duration {
    static LIMIT: OnceLock<Duration> = OnceLock::new();
    *LIMIT.get_or_init(|| Duration::from_secs(env("INBOX_PHASE_SECONDS", 180)))
}

fn main() {
    let workers = std::env::var("INBOX_WORKERS")
        .ok()
        .and_then(|value| value.parse().ok());
    if let Ok(kind) = std::env::var(WORKER) {
        worker_process(&kind, workers);
        return;
    }
    let settings = Settings {
        concurrency: env("INBOX_CONCURRENCY", 64),
        count: env("INBOX_COUNT", 4_000),
        rate: env("INBOX_RATE", 1_000),
        seconds: env("INBOX_SECONDS", 10),
        workers,
        idle: env("INBOX_IDLE_COUNT", 40),
        idle_pause: Duration::from_millis(env("INBOX_IDLE_PAUSE_MS", 100)),
        idle_spread: Duration::from_millis(env("INBOX_IDLE_SPREAD_MS", 500)),
        floor_batch: env("INBOX_FLOOR_BATCH", 64).max(1),
        fsync_count: env("INBOX_FSYNC_COUNT", 2_000).max(1),
        fsync_time: Duration::from_secs(env("INBOX_FSYNC_SECONDS", 2)),
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
        "inbox: 1 KiB Sotion deliveries, new ids; idle: {} single deliveries, each after a pause of {}-{} ms; \
         accept: closed loop of {} senders x {} deliveries a side, floor batches of {}; open \
         loop at {}/s for {} s; drain: Workers ({}), no-op handler; phases stop after {} s; \
         handler starts read from the wall clock (CLOCK_REALTIME, one machine)",
        settings.idle,
        settings.idle_pause.as_millis(),
        (settings.idle_pause + settings.idle_spread).as_millis(),
        settings.concurrency,
        settings.count,
        settings.floor_batch,
        settings.rate,
        settings.seconds,
        settings
            .workers
            .map_or_else(|| "default settings".to_owned(), |n| format!("{n} workers")),
        phase_limit().as_secs(),
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
            run(&backend, &settings, &dir.0).await;
        });
    }
}

/// Every measure of one backend, then its table.
#[allow(clippy::too_many_lines)]
async fn run(backend: &Arc<dyn Backend>, settings: &Settings, dir: &Path) {
    println!();
    println!("### {}", backend.describe());
    println!();
    println!("load average at start: {}", load_average());
    let disk = disk_sync(dir, settings.fsync_count, settings.fsync_time);
    println!(
        "disk: fdatasync after a 4 KiB overwrite, {} in {:.2} s: {:.0}/s, p50 / p99 / max {:.2} / {:.2} / {:.1} ms",
        disk.sorted.len(),
        disk.elapsed.as_secs_f64(),
        disk.sorted.len() as f64 / disk.elapsed.as_secs_f64(),
        disk.percentile(0.5),
        disk.percentile(0.99),
        disk.max(),
    );
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
    // The same route verifying and answering with no store: the open loop's own noise floor.
    let bare = Router::new()
        .route(
            "/webhooks",
            post(|| async { "verified" }).route_layer(
                WebhookLayer::builder(Scheme::sotion())
                    .with_secret(SECRET)
                    .without_idempotency()
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
    let verify_only = |batch: &Batch, index: usize| {
        let request = batch.request(index);
        let bare = bare.clone();
        async move {
            let response = bare.oneshot(request).await.unwrap();
            response.status() == StatusCode::OK
        }
    };
    let sync_probe = Arc::new(SyncProbe::open(dir));
    let fdatasync = |_: &Batch, _: usize| {
        let probe = Arc::clone(&sync_probe);
        async move {
            tokio::task::spawn_blocking(move || probe.sync())
                .await
                .is_ok()
        }
    };
    let floor = |batch: &Batch, index: usize| {
        let row = batch.row(index);
        let backend = Arc::clone(backend);
        async move { backend.floor_insert(&row).await.is_ok() }
    };

    // Accept → handler start on an idle inbox: in process, then across two processes.
    eprintln!("inbox bench: idle latency");
    let idle_here = idle_in_process(backend, settings, &app, &batch(settings.idle)).await;
    let idle_across = match backend.worker_url() {
        Some((kind, url)) => {
            Some(idle_across_processes(kind, &url, settings, &app, &batch(settings.idle)).await)
        }
        None => None,
    };

    // Warm up: open the pools' connections, fill the caches.
    eprintln!("inbox bench: accept throughput");
    let warm = batch(400);
    closed_loop(settings.concurrency, &warm, &layer).await;
    let warm = batch(400);
    closed_loop(settings.concurrency, &warm, &floor).await;
    // Accept throughput: the floors first, then the inbox, a fresh batch each.
    let floor_batch = batch(settings.count);
    let floor_tput = closed_loop(settings.concurrency, &floor_batch, &floor).await;
    let floor_batch = batch(settings.count);
    let batched_tput = batched_insert(&**backend, &floor_batch, settings.floor_batch).await;
    let inbox_batch = batch(settings.count);
    let inbox_tput = closed_loop(settings.concurrency, &inbox_batch, &layer).await;

    // Acknowledgement latency at the rate, the inbox first then the floor.
    eprintln!("inbox bench: acknowledgement latency");
    let n = (settings.rate * settings.seconds) as usize;
    let inbox_batch = batch(n);
    let inbox_lat = open_loop(settings.rate, &inbox_batch, &layer).await;
    let floor_batch = batch(n);
    let floor_lat = open_loop(settings.rate, &floor_batch, &floor).await;
    let verify_lat = open_loop(settings.rate, &batch(n), &verify_only).await;
    let sync_lat = open_loop(settings.rate, &batch(n), &fdatasync).await;

    // Drain what was stored: the batched floor takes as many rows as the inbox holds, the
    // one-at-a-time floor at most `count` of the rest.
    eprintln!("inbox bench: drain");
    let stored = backend.inbox().stats().await.unwrap().depth() as usize;
    let floor_batched = floor_drain_batched(&**backend, settings.floor_batch, stored).await;
    let floor_single = floor_drain(&**backend, 4, settings.count).await;
    let inbox_proc = inbox_drain(&**backend, settings.workers, stored).await;

    let mut table = Table::default();
    let idle_target = format!("p50 ≤ {IDLE_P50_MS} ms, p99 ≤ {IDLE_P99_MS} ms");
    for (place, idle) in [
        ("in process", Some(&idle_here)),
        ("across two processes", idle_across.as_ref()),
    ] {
        let Some(idle) = idle else { continue };
        table.row(
            format!("accept → handler start, idle inbox, {place}: p50 / p99 / max"),
            idle.describe(),
            "(absolute target)".to_owned(),
            format!(
                "p50 {:.2}×, p99 {:.2}× the bound",
                idle.percentile(0.5) / IDLE_P50_MS,
                idle.percentile(0.99) / IDLE_P99_MS
            ),
            idle_target.clone(),
            Some(
                idle.missed == 0
                    && idle.errors == 0
                    && idle.percentile(0.5) <= IDLE_P50_MS
                    && idle.percentile(0.99) <= IDLE_P99_MS,
            ),
        );
    }
    let workers = settings
        .workers
        .map_or_else(|| "default settings".to_owned(), |n| format!("{n} workers"));
    table.row(
        format!(
            "drain, no-op handler, Workers ({workers}) / floor: one loop, {} per batch",
            settings.floor_batch
        ),
        inbox_proc.describe(),
        floor_batched.describe(),
        format!("**{:.2}×**", inbox_proc.rate() / floor_batched.rate()),
        format!("≥ {DRAIN_TARGET}×"),
        Some(printed(inbox_proc.rate() / floor_batched.rate()) >= DRAIN_TARGET),
    );
    table.row(
        "(context) drain / floor: 4 tasks, one row per claim (issue #13)".to_owned(),
        format!("{:.0}/s", inbox_proc.rate()),
        floor_single.describe(),
        format!("{:.2}×", inbox_proc.rate() / floor_single.rate()),
        "—".to_owned(),
        None,
    );
    let accept_ratio = inbox_tput.rate() / floor_tput.rate();
    table.row(
        format!(
            "accept throughput, closed loop, {} senders / floor: one row per commit",
            settings.concurrency
        ),
        inbox_tput.describe(),
        floor_tput.describe(),
        format!("**{accept_ratio:.2}×**"),
        format!("≥ {:.1}×", backend.accept_target()),
        Some(printed(accept_ratio) >= backend.accept_target()),
    );
    table.row(
        format!(
            "(context) accept throughput / floor: one loop, {} rows per commit",
            settings.floor_batch
        ),
        format!("{:.0}/s", inbox_tput.rate()),
        batched_tput.describe(),
        format!("{:.2}×", inbox_tput.rate() / batched_tput.rate()),
        "—".to_owned(),
        None,
    );
    let ack_ratio = inbox_lat.percentile(0.99) / disk.percentile(0.99);
    table.row(
        format!(
            "acknowledgement at {}/s offered for {} s: p50 / p99 / max / floor: the disk's fdatasync p99",
            settings.rate, settings.seconds
        ),
        inbox_lat.describe(),
        format!("{:.2} ms", disk.percentile(0.99)),
        format!("**p99 {ack_ratio:.2}×**"),
        if backend.ack_target() {
            format!("≤ {ACK_TARGET}×")
        } else {
            "— (none on this backend)".to_owned()
        },
        backend
            .ack_target()
            .then_some(printed(ack_ratio) <= ACK_TARGET),
    );
    for (floor, latencies) in [
        ("floor: one row per commit, same open loop", &floor_lat),
        (
            "the same open loop, the layer verifying with no store",
            &verify_lat,
        ),
        (
            "the same open loop, one 4 KiB write and fdatasync on a blocking thread",
            &sync_lat,
        ),
    ] {
        table.row(
            format!("(context) acknowledgement at {}/s / {floor}", settings.rate),
            format!("p99 {:.2} ms", inbox_lat.percentile(0.99)),
            latencies.describe(),
            format!(
                "p99 {:.2}×",
                inbox_lat.percentile(0.99) / latencies.percentile(0.99)
            ),
            "—".to_owned(),
            None,
        );
    }
    table.print();
    println!();
    println!("load average at end: {}", load_average());
}

/// `ratio` as the table prints it (two decimals): a target is judged at that precision.
fn printed(ratio: f64) -> f64 {
    (ratio * 100.0).round() / 100.0
}

/// The report's table: measure, inbox, floor, ratio, target, met.
#[derive(Default)]
struct Table {
    rows: Vec<[String; 6]>,
}

impl Table {
    fn row(
        &mut self,
        measure: String,
        inbox: String,
        floor: String,
        ratio: String,
        target: String,
        met: Option<bool>,
    ) {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        self.rows
            .push([measure, inbox, floor, ratio, target, met.to_owned()]);
    }

    fn print(&self) {
        println!();
        println!("| measure | inbox | floor | inbox ÷ floor | target | met |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for row in &self.rows {
            println!("| {} |", row.join(" | "));
        }
    }
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

/// The disk's own sync: `count` 4 KiB overwrites of a preallocated file in `dir`, each followed
/// by `fdatasync` (`File::sync_data`), timed together, until `limit`.
fn disk_sync(dir: &Path, count: usize, limit: Duration) -> Latencies {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4096;
    let path = dir.join("fdatasync-probe");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // Real blocks, not a sparse `set_len`, as a WAL segment is: the loop then measures the
    // data's sync, not the file's growth.
    let zeros = vec![0_u8; BLOCK * 64];
    let mut written = 0;
    while written < count * BLOCK {
        file.write_all_at(&zeros, written as u64).unwrap();
        written += zeros.len();
    }
    file.sync_all().unwrap();
    let block = [0x5a_u8; BLOCK];
    let mut sorted = Vec::with_capacity(count);
    let started = Instant::now();
    for index in 0..count {
        if started.elapsed() > limit {
            break;
        }
        let at = Instant::now();
        file.write_all_at(&block, (index * BLOCK) as u64).unwrap();
        file.sync_data().unwrap();
        sorted.push(at.elapsed());
    }
    let elapsed = started.elapsed();
    drop(file);
    let _ = std::fs::remove_file(&path);
    sorted.sort();
    Latencies {
        sorted,
        errors: 0,
        lag: Duration::ZERO,
        elapsed,
    }
}

/// A preallocated file in the data's directory that [`sync`](Self::sync) overwrites a 4 KiB
/// block of and `fdatasync`s, one caller at a time: the disk as the open loop sees it.
struct SyncProbe {
    file: Mutex<(std::fs::File, usize)>,
    path: PathBuf,
}

impl SyncProbe {
    const BLOCKS: usize = 1024;

    fn open(dir: &Path) -> Self {
        use std::os::unix::fs::FileExt;
        let path = dir.join("fdatasync-open-loop");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        file.write_all_at(&vec![0_u8; 4096 * Self::BLOCKS], 0)
            .unwrap();
        file.sync_all().unwrap();
        Self {
            file: Mutex::new((file, 0)),
            path,
        }
    }

    fn sync(&self) {
        use std::os::unix::fs::FileExt;
        let mut guard = self.file.lock().unwrap();
        let (file, next) = &mut *guard;
        file.write_all_at(&[0x5a_u8; 4096], (*next * 4096) as u64)
            .unwrap();
        file.sync_data().unwrap();
        *next = (*next + 1) % Self::BLOCKS;
    }
}

impl Drop for SyncProbe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Pre-made deliveries `first..first + n`: signed requests for the layer, rows for the floor.
struct Batch {
    ids: Vec<String>,
    requests: Vec<Mutex<Option<Request<Body>>>>,
    rows: Vec<Mutex<Option<FloorRow>>>,
}

impl Batch {
    fn new(first: usize, n: usize) -> Self {
        let secret = Secret::new(SECRET).unwrap();
        let mut ids = Vec::with_capacity(n);
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
            ids.push(id.clone());
            rows.push(Mutex::new(Some(FloorRow {
                key,
                id,
                headers,
                body,
            })));
            requests.push(Mutex::new(Some(request.map(Body::new))));
        }
        Self {
            ids,
            requests,
            rows,
        }
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

    fn describe(&self) -> String {
        format!(
            "{:.0}/s ({} in {:.2} s, {} errors)",
            self.rate(),
            self.done,
            self.elapsed.as_secs_f64(),
            self.errors
        )
    }
}

/// `concurrency` callers, each taking the next delivery of `batch` until none is left (or the
/// phase's time limit).
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
            if index >= batch.len() || started.elapsed() > phase_limit() {
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

/// One loop writing the rows of `batch`, `per_commit` to a commit.
async fn batched_insert(backend: &dyn Backend, batch: &Batch, per_commit: usize) -> Throughput {
    let mut done = 0;
    let mut errors = 0;
    let started = Instant::now();
    for first in (0..batch.len()).step_by(per_commit) {
        if started.elapsed() > phase_limit() {
            break;
        }
        let rows: Vec<FloorRow> = (first..(first + per_commit).min(batch.len()))
            .map(|index| batch.row(index))
            .collect();
        match backend.floor_insert_batch(&rows).await {
            Ok(()) => done += rows.len(),
            Err(error) => {
                eprintln!("inbox bench: batched insert: {error}");
                errors += rows.len();
            }
        }
    }
    Throughput {
        done,
        errors,
        elapsed: started.elapsed(),
    }
}

/// Latencies, sorted.
struct Latencies {
    sorted: Vec<Duration>,
    errors: usize,
    /// The most the sender fell behind its schedule.
    lag: Duration,
    /// How long the phase took.
    elapsed: Duration,
}

impl Latencies {
    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.sorted, p).map_or(f64::NAN, |at| at.as_secs_f64() * 1e3)
    }

    fn max(&self) -> f64 {
        self.sorted
            .last()
            .map_or(f64::NAN, |max| max.as_secs_f64() * 1e3)
    }

    fn describe(&self) -> String {
        format!(
            "{:.2} / {:.2} / {:.1} ms ({} errors, sender lag ≤ {:.1} ms)",
            self.percentile(0.5),
            self.percentile(0.99),
            self.max(),
            self.errors,
            self.lag.as_secs_f64() * 1e3
        )
    }
}

/// The `p` quantile of `sorted` (nearest rank).
fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[index - 1])
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
        if at.elapsed() > phase_limit() {
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
        elapsed: start.elapsed(),
    }
}

/// Handler starts: the delivery's id and when its handler started (the wall clock).
type Starts = mpsc::UnboundedReceiver<(String, SystemTime)>;

/// How the idle measure went: from the layer's `200` to the handler's start, in milliseconds
/// (negative when the handler started first), sorted.
struct Idle {
    sorted: Vec<f64>,
    /// Sent and answered `200`, but no handler start seen within [`IDLE_WAIT`].
    missed: usize,
    /// Not answered `200`.
    errors: usize,
}

impl Idle {
    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.sorted, p).unwrap_or(f64::NAN)
    }

    fn describe(&self) -> String {
        format!(
            "{:.2} / {:.2} / {:.1} ms ({} of {}, {} missed, {} errors)",
            self.percentile(0.5),
            self.percentile(0.99),
            self.sorted.last().copied().unwrap_or(f64::NAN),
            self.sorted.len(),
            self.sorted.len() + self.missed + self.errors,
            self.missed,
            self.errors
        )
    }
}

/// Sends the deliveries of `batch` one at a time, each once the previous one's handler started
/// and a pause, and times each from its `200` to its handler's start (read from `starts`).
async fn idle_latency(
    app: &Router,
    settings: &Settings,
    batch: &Batch,
    starts: &mut Starts,
) -> Idle {
    let mut idle = Idle {
        sorted: Vec::with_capacity(batch.len()),
        missed: 0,
        errors: 0,
    };
    let mut random = Random::new();
    let started = Instant::now();
    for index in 0..batch.len() {
        if started.elapsed() > phase_limit() {
            break;
        }
        // The inbox is idle, and the sends keep no phase with any poll.
        let pause = settings.idle_pause + settings.idle_spread.mul_f64(random.unit());
        tokio::time::sleep(pause).await;
        let response = app.clone().oneshot(batch.request(index)).await.unwrap();
        let answered = SystemTime::now();
        if response.status() != StatusCode::OK {
            idle.errors += 1;
            continue;
        }
        let deadline = tokio::time::Instant::now() + IDLE_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, starts.recv()).await {
                Ok(Some((id, at))) if id == batch.ids[index] => {
                    idle.sorted.push(signed_ms(at, answered));
                    break;
                }
                // Another delivery's start (a late one, or a retry): not this one.
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    idle.missed += 1;
                    break;
                }
            }
        }
    }
    idle.sorted.sort_by(f64::total_cmp);
    idle
}

/// `later - earlier` in milliseconds, negative when `later` is earlier.
fn signed_ms(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(after) => after.as_secs_f64() * 1e3,
        Err(before) => -before.duration().as_secs_f64() * 1e3,
    }
}

/// A small xorshift, for the pauses (no dependency for a few random numbers).
struct Random(u64);

impl Random {
    fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64);
        Self(seed | 1)
    }

    /// In [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1_u64 << 53) as f64
    }
}

/// Accept → handler start with `Workers` in this process.
async fn idle_in_process(
    backend: &Arc<dyn Backend>,
    settings: &Settings,
    app: &Router,
    batch: &Batch,
) -> Idle {
    let (sender, mut starts) = mpsc::unbounded_channel();
    let handler = Handler::with_sink(Arc::new(move |id: &str, at| {
        let _ = sender.send((id.to_owned(), at));
    }));
    let workers = backend.start_workers(settings.workers, handler);
    let idle = idle_latency(app, settings, batch, &mut starts).await;
    workers.shutdown(Duration::from_secs(5)).await;
    idle
}

/// Accept → handler start with `Workers` in another process: this binary again, with
/// [`WORKER`] set, printing `ready` once its workers started, then `start <id> <ns since the
/// epoch>` for each handler start; it stops when its standard input closes.
async fn idle_across_processes(
    kind: &str,
    url: &str,
    settings: &Settings,
    app: &Router,
    batch: &Batch,
) -> Idle {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(WORKER, kind)
        .env(WORKER_URL, url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, mut starts) = mpsc::unbounded_channel();
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut ready = Some(ready);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line == "ready" {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            } else if let Some((id, nanos)) = line
                .strip_prefix("start ")
                .and_then(|rest| rest.split_once(' '))
            {
                if let Ok(nanos) = nanos.parse::<u64>() {
                    let at = UNIX_EPOCH + Duration::from_nanos(nanos);
                    let _ = sender.send((id.to_owned(), at));
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), is_ready)
        .await
        .expect("the worker process did not start in 30 s")
        .expect("the worker process ended before it was ready");
    let idle = idle_latency(app, settings, batch, &mut starts).await;
    // Its standard input closed: it shuts its workers down and ends.
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    idle
}

/// The worker process of [`idle_across_processes`].
fn worker_process(kind: &str, workers: Option<NonZeroUsize>) {
    let url = std::env::var(WORKER_URL).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let handler = Handler::with_sink(Arc::new(|id: &str, at: SystemTime| {
            let nanos = at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos());
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "start {id} {nanos}");
            let _ = out.flush();
        }));
        let handle = match kind {
            "postgres" => {
                let inbox = PostgresInbox::connect(&url, InboxOptions::new())
                    .await
                    .unwrap();
                start(&Arc::new(inbox), workers, handler)
            }
            #[cfg(feature = "redis")]
            "redis" => {
                let inbox = tower_webhook::inbox::RedisInbox::connect(&url, InboxOptions::new())
                    .await
                    .unwrap();
                start(&Arc::new(inbox), workers, handler)
            }
            other => panic!("no worker process for {other}"),
        };
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ready");
            let _ = out.flush();
        }
        let _ = tokio::task::spawn_blocking(|| {
            let mut rest = Vec::new();
            std::io::stdin().read_to_end(&mut rest)
        })
        .await;
        handle.shutdown(Duration::from_secs(5)).await;
    });
}

/// The one-at-a-time floor's processing: `tasks` bare claim-and-complete loops until nothing is
/// due or `limit` rows are done.
async fn floor_drain(backend: &dyn Backend, tasks: usize, limit: usize) -> Throughput {
    let done = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let started = Instant::now();
    let task = || async {
        while started.elapsed() < phase_limit() && done.load(Ordering::Relaxed) < limit {
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

/// The batched floor's processing: one loop claiming `per_batch` rows in one statement and
/// completing them in another, until nothing is due or `limit` rows are done.
async fn floor_drain_batched(backend: &dyn Backend, per_batch: usize, limit: usize) -> Throughput {
    let mut done = 0;
    let mut errors = 0;
    let started = Instant::now();
    while done < limit && started.elapsed() < phase_limit() && errors < 100 {
        match backend
            .floor_claim_complete_batch(per_batch.min(limit - done))
            .await
        {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(error) => {
                eprintln!("inbox bench: batched claim: {error}");
                errors += 1;
            }
        }
    }
    Throughput {
        done,
        errors,
        elapsed: started.elapsed(),
    }
}

/// The inbox's processing: `Workers` with a no-op handler until the `stored` deliveries are done.
async fn inbox_drain(
    backend: &dyn Backend,
    workers: Option<NonZeroUsize>,
    stored: usize,
) -> Throughput {
    let handler = Handler::default();
    let started = Instant::now();
    let handle = backend.start_workers(workers, handler.clone());
    let inbox = backend.inbox();
    // The handler's count first (no queries), then the inbox's own word that nothing waits.
    while handler.calls.load(Ordering::Relaxed) < stored && started.elapsed() < phase_limit() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while started.elapsed() < phase_limit() {
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

/// Where a handler's start is reported: the delivery's id (its `x-webhook-id`) and when.
type Sink = Arc<dyn Fn(&str, SystemTime) + Send + Sync>;

/// The handler: answers `200` at once, counts its calls, and reports its start to its sink when
/// it has one.
#[derive(Clone, Default)]
struct Handler {
    calls: Arc<AtomicUsize>,
    sink: Option<Sink>,
}

impl Handler {
    fn with_sink(sink: Sink) -> Self {
        Self {
            calls: Arc::default(),
            sink: Some(sink),
        }
    }
}

impl tower::Service<Request<Full<Bytes>>> for Handler {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let at = SystemTime::now();
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(sink) = &self.sink {
            let id = request
                .headers()
                .get("x-webhook-id")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            sink(id, at);
        }
        std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
    }
}

fn start<B: InboxBackend>(
    inbox: &Arc<B>,
    workers: Option<NonZeroUsize>,
    handler: Handler,
) -> WorkersHandle {
    let mut builder = Workers::from_shared(Arc::clone(inbox), handler);
    if let Some(workers) = workers {
        builder = builder.with_workers(workers);
    }
    builder.start().unwrap()
}

fn now_ms() -> i64 {
    time_ms(SystemTime::now())
}

fn time_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
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

    fn start_workers(&self, workers: Option<NonZeroUsize>, handler: Handler) -> WorkersHandle {
        start(&self.inbox, workers, handler)
    }

    fn worker_url(&self) -> Option<(&'static str, String)> {
        None
    }

    /// Group commit: several deliveries per synced commit.
    fn accept_target(&self) -> f64 {
        5.0
    }

    fn ack_target(&self) -> bool {
        true
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

    /// One multi-row `INSERT`, autocommitted.
    fn floor_insert_batch<'a>(&'a self, rows: &'a [FloorRow]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let now = now_ms();
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO floor_deliveries (key, state, attempts, due_at, accepted_at, path, \
                 headers, body, scheme, event_id, event, delivery, version) ",
            );
            query.push_values(rows, |mut values, row| {
                values
                    .push_bind(row.key.as_slice())
                    .push("'pending'")
                    .push("0")
                    .push_bind(now)
                    .push_bind(now)
                    .push("'/webhooks'")
                    .push_bind(row.headers.as_str())
                    .push_bind(row.body.as_ref())
                    .push("'sotion'")
                    .push_bind(row.id.as_str())
                    .push("'member.created'")
                    .push_bind(row.id.as_str())
                    .push("'1'");
            });
            query
                .build()
                .execute(self.inbox.pool())
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        })
    }

    /// One claiming `UPDATE ... RETURNING` of up to `limit` rows, then one completing `UPDATE`
    /// of those rows, each autocommitted.
    fn floor_claim_complete_batch(&self, limit: usize) -> BoxFuture<'_, Result<usize, String>> {
        Box::pin(async move {
            let owner = token();
            let now = now_ms();
            let claimed: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
                "UPDATE floor_deliveries SET state = 'running', owner = $1, \
                 attempts = attempts + 1, due_at = $2 + $3 \
                 WHERE key IN (SELECT key FROM floor_deliveries \
                 WHERE state IN ('pending', 'running') AND due_at <= $2 ORDER BY due_at LIMIT $4) \
                 RETURNING key, body",
            )
            .bind(&owner)
            .bind(now)
            .bind(LEASE_MS)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.inbox.pool())
            .await
            .map_err(|error| error.to_string())?;
            if claimed.is_empty() {
                return Ok(0);
            }
            std::hint::black_box(&claimed);
            let now = now_ms();
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "UPDATE floor_deliveries SET state = 'done', owner = NULL, due_at = ",
            );
            query
                .push_bind(now)
                .push(", finished_at = ")
                .push_bind(now)
                .push(" WHERE owner = ")
                .push_bind(&owner)
                .push(" AND state = 'running' AND key IN (");
            let mut keys = query.separated(", ");
            for (key, _) in &claimed {
                keys.push_bind(key.as_slice());
            }
            keys.push_unseparated(")");
            query
                .build()
                .execute(self.inbox.pool())
                .await
                .map_err(|error| error.to_string())?;
            Ok(claimed.len())
        })
    }
}

// --- PostgreSQL ---------------------------------------------------------------------------

/// A server started here with its default durability, the pool `PostgresInbox::connect`
/// makes (10 connections).
struct PostgresBackend {
    inbox: Arc<PostgresInbox>,
    url: String,
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
            url: url.to_owned(),
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

    fn start_workers(&self, workers: Option<NonZeroUsize>, handler: Handler) -> WorkersHandle {
        start(&self.inbox, workers, handler)
    }

    fn worker_url(&self) -> Option<(&'static str, String)> {
        Some(("postgres", self.url.clone()))
    }

    fn accept_target(&self) -> f64 {
        1.0
    }

    fn ack_target(&self) -> bool {
        true
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

    /// One multi-row `INSERT`, autocommitted.
    fn floor_insert_batch<'a>(&'a self, rows: &'a [FloorRow]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO floor_deliveries (key, state, attempts, due_at, accepted_at, path, \
                 headers, body, scheme, event_id, event, delivery, version) ",
            );
            query.push_values(rows, |mut values, row| {
                values
                    .push_bind(row.key.as_slice())
                    .push("'pending'")
                    .push("0")
                    .push("now()")
                    .push("now()")
                    .push("'/webhooks'")
                    .push_bind(row.headers.as_str())
                    .push_bind(row.body.as_ref())
                    .push("'sotion'")
                    .push_bind(row.id.as_str())
                    .push("'member.created'")
                    .push_bind(row.id.as_str())
                    .push("'1'");
            });
            query
                .build()
                .execute(self.inbox.pool())
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        })
    }

    /// One claiming statement of up to `limit` rows (`FOR UPDATE SKIP LOCKED`), then one
    /// completing `UPDATE ... WHERE key = ANY($1)`, each autocommitted.
    fn floor_claim_complete_batch(&self, limit: usize) -> BoxFuture<'_, Result<usize, String>> {
        Box::pin(async move {
            let owner = token();
            let claimed: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
                "WITH due AS (SELECT key FROM floor_deliveries \
                 WHERE state IN ('pending', 'running') AND due_at <= now() \
                 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 UPDATE floor_deliveries AS d SET state = 'running', owner = $1, \
                 attempts = d.attempts + 1, due_at = now() + interval '30 seconds' \
                 FROM due WHERE d.key = due.key RETURNING d.key, d.body",
            )
            .bind(&owner)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.inbox.pool())
            .await
            .map_err(|error| error.to_string())?;
            if claimed.is_empty() {
                return Ok(0);
            }
            let keys: Vec<Vec<u8>> = claimed
                .into_iter()
                .map(|(key, body)| {
                    std::hint::black_box(body);
                    key
                })
                .collect();
            sqlx::query(
                "UPDATE floor_deliveries SET state = 'done', owner = NULL, due_at = now(), \
                 finished_at = now() WHERE key = ANY($1) AND owner = $2 AND state = 'running'",
            )
            .bind(&keys)
            .bind(&owner)
            .execute(self.inbox.pool())
            .await
            .map_err(|error| error.to_string())?;
            Ok(keys.len())
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
    url: String,
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
            url: url.to_owned(),
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

    fn start_workers(&self, workers: Option<NonZeroUsize>, handler: Handler) -> WorkersHandle {
        start(&self.inbox, workers, handler)
    }

    fn worker_url(&self) -> Option<(&'static str, String)> {
        Some(("redis", self.url.clone()))
    }

    fn accept_target(&self) -> f64 {
        1.0
    }

    fn ack_target(&self) -> bool {
        false
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
            let Some(id) = entry_ids(&read).into_iter().next() else {
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

    /// The `XADD`s of `rows` in one `MULTI`/`EXEC`: one write, fsynced once.
    fn floor_insert_batch<'a>(&'a self, rows: &'a [FloorRow]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut floor = self.floor.clone();
            let mut pipe = redis::pipe();
            pipe.atomic();
            for row in rows {
                pipe.cmd("XADD")
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
                    .ignore();
            }
            pipe.query_async::<()>(&mut floor)
                .await
                .map_err(|error| error.to_string())
        })
    }

    /// `XREADGROUP COUNT limit`, then one `XACK` and one `XDEL` of all of them in one
    /// `MULTI`/`EXEC`.
    fn floor_claim_complete_batch(&self, limit: usize) -> BoxFuture<'_, Result<usize, String>> {
        Box::pin(async move {
            let mut floor = self.floor.clone();
            let read: redis::Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("floor")
                .arg("floor-consumer")
                .arg("COUNT")
                .arg(limit)
                .arg("STREAMS")
                .arg("floor")
                .arg(">")
                .query_async(&mut floor)
                .await
                .map_err(|error| error.to_string())?;
            let ids = entry_ids(&read);
            if ids.is_empty() {
                return Ok(0);
            }
            std::hint::black_box(&read);
            redis::pipe()
                .atomic()
                .cmd("XACK")
                .arg("floor")
                .arg("floor")
                .arg(&ids)
                .ignore()
                .cmd("XDEL")
                .arg("floor")
                .arg(&ids)
                .ignore()
                .query_async::<()>(&mut floor)
                .await
                .map_err(|error| error.to_string())?;
            Ok(ids.len())
        })
    }
}

/// The ids of the entries of an `XREADGROUP` answer (RESP2: streams, each a name and its
/// entries, each an id and its fields).
#[cfg(feature = "redis")]
fn entry_ids(read: &redis::Value) -> Vec<Vec<u8>> {
    use redis::Value::{Array, BulkString};
    let Array(streams) = read else {
        return Vec::new();
    };
    let Some(Array(stream)) = streams.first() else {
        return Vec::new();
    };
    let Some(Array(entries)) = stream.get(1) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| match entry {
            Array(entry) => match entry.first() {
                Some(BulkString(id)) => Some(id.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
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
