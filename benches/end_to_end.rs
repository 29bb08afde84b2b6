//! End to end on loopback: 1 KiB Sotion deliveries, each with a fresh event id, over 32
//! keep-alive connections, against three servers:
//!
//! - `plain`: axum with no verification, parsing the envelope with `Json<T>` (the ceiling);
//! - `layer_memory`: the `WebhookLayer` with its in-memory store and the `Envelope<T>` extractor;
//! - `layer_redis`: the same with the Redis store (needs `redis-server` on the PATH).
//!
//! Each server runs in its own process (this binary, re-executed), so its CPU time is read from
//! `/proc` apart from the load generator's (which shares the machine's cores). Bounded: a fixed
//! number of requests per scenario and a time limit.
//!
//! `cargo bench --manifest-path benches/Cargo.toml --features redis --bench end_to_end`
//! (`E2E_REQUESTS` sets the requests per scenario, default 100,000, spread over `E2E_ROUNDS`
//! interleaved rounds, default 5).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// Reporting numbers: the casts to and from f64 are intended.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
mod shared;

use shared::PlainEnvelope;
use tower_webhook::envelope::MemberData;
use tower_webhook::{verify, Envelope, Scheme, Secret, WebhookLayer};

const SECRET: &str = "whsec_end_to_end_benchmark";
const CONNECTIONS: usize = 32;
const TIME_LIMIT: Duration = Duration::from_secs(60);

fn main() {
    if let Ok(scenario) = std::env::var("E2E_SERVER") {
        serve(&scenario);
        return;
    }
    // `cargo bench` passes `--bench`; nothing else to parse.
    let requests: usize = std::env::var("E2E_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let rounds: usize = std::env::var("E2E_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    println!(
        "end to end: {rounds} rounds of {} requests per scenario, interleaved, {CONNECTIONS} connections, \
         1 KiB Sotion deliveries, fresh ids; medians over rounds",
        requests / rounds
    );
    let redis = RedisServer::start();
    let mut scenarios = vec!["plain", "layer_memory"];
    if redis.is_some() {
        scenarios.push("layer_redis");
    }
    // `E2E_ONLY=layer_memory` runs one scenario (to profile its server, whose pid is printed).
    if let Ok(only) = std::env::var("E2E_ONLY") {
        scenarios.retain(|scenario| *scenario == only);
    }
    // The machine is shared: run the scenarios in turn, round after round, so that a noisy
    // moment hits them all, and compare each round's results with the same round's baseline.
    let mut results: Vec<Vec<Outcome>> = scenarios.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (index, scenario) in scenarios.iter().enumerate() {
            let redis_url = redis.as_ref().map(RedisServer::url);
            let outcome = run_scenario(scenario, requests / rounds, redis_url.as_deref(), round);
            results[index].push(outcome);
        }
    }
    println!("| scenario | requests/s | p50 | p99 | server CPU µs/request | CPU × plain | rps × plain | errors |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (index, scenario) in scenarios.iter().enumerate() {
        let runs = &results[index];
        let median = |f: &dyn Fn(&Outcome) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let ratio = |f: &dyn Fn(&Outcome) -> f64| {
            let mut ratios: Vec<f64> = runs
                .iter()
                .zip(&results[0])
                .map(|(run, base)| f(run) / f(base))
                .collect();
            ratios.sort_by(f64::total_cmp);
            ratios[ratios.len() / 2]
        };
        println!(
            "| {scenario} | {:.0} | {:.0} µs | {:.0} µs | {:.2} | {:.2}× | {:.2}× | {} |",
            median(&|o| o.rps),
            median(&|o| o.p50),
            median(&|o| o.p99),
            median(&|o| o.cpu_per_request),
            ratio(&|o| o.cpu_per_request),
            ratio(&|o| o.rps),
            runs.iter().map(|o| o.errors).sum::<usize>(),
        );
    }
    if redis.is_none() {
        println!("(layer_redis skipped: redis-server is not installed)");
    }
}

struct Outcome {
    rps: f64,
    p50: f64,
    p99: f64,
    cpu_per_request: f64,
    errors: usize,
}

fn run_scenario(scenario: &str, requests: usize, redis_url: Option<&str>, round: usize) -> Outcome {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    command
        .env("E2E_SERVER", scenario)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(url) = redis_url {
        command.env("REDIS_URL", url);
    }
    let mut server = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let pid = server.id();
    if std::env::var_os("E2E_ONLY").is_some() {
        eprintln!("server pid {pid}");
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let salt = format!("{scenario}-{}-{round}", std::process::id());
    // Warm up (connections, allocator, JIT-free but caches), then measure.
    runtime.block_on(load(port, &deliveries(2_000, &format!("warm-{salt}"))));
    let measured = deliveries(requests, &salt);
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let (mut latencies, errors) = runtime.block_on(load(port, &measured));
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid).checked_sub(cpu_before).unwrap();
    stop(&mut server);

    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        f64::from(latencies.get(index).copied().unwrap_or_default())
    };
    let done = latencies.len();
    Outcome {
        rps: done as f64 / elapsed.as_secs_f64(),
        p50: percentile(0.50),
        p99: percentile(0.99),
        cpu_per_request: cpu.as_secs_f64() * 1e6 / done.max(1) as f64,
        errors,
    }
}

/// Pre-signed deliveries (body, signature, id), each with a fresh id and a 1 KiB body.
fn deliveries(count: usize, salt: &str) -> Arc<Vec<(Bytes, String, String)>> {
    let secret = Secret::new(SECRET).unwrap();
    Arc::new(
        (0..count)
            .map(|n| {
                let id = format!("{salt}-{n:08}");
                let head = format!(
                    r#"{{"id":"{id}","type":"member.created","timestamp":"2026-03-28T12:00:00.000Z","version":"1","siteId":"site_bench","data":{{"email":"ada@example.com","name":"Ada","note":""#
                );
                let tail = r#""}}"#;
                let body = format!("{head}{}{tail}", "x".repeat(1024 - head.len() - tail.len()));
                assert_eq!(body.len(), 1024);
                let signature = verify::sign(&secret, body.as_bytes());
                (Bytes::from(body), signature, id)
            })
            .collect(),
    )
}

/// Sends every delivery over `CONNECTIONS` keep-alive connections; returns each request's
/// latency in microseconds and the number of non-2xx answers.
async fn load(port: u16, deliveries: &Arc<Vec<(Bytes, String, String)>>) -> (Vec<u32>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + TIME_LIMIT;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (next, deliveries) = (next.clone(), deliveries.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let (mut latencies, mut errors) = (Vec::new(), 0);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some((body, signature, id)) = deliveries.get(index) else {
                    break;
                };
                if Instant::now() > deadline {
                    break;
                }
                let request = Request::post("/webhooks")
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/json")
                    .header("x-webhook-signature", signature)
                    .header("x-webhook-id", id)
                    .header("x-webhook-event", "member.created")
                    .header("x-webhook-delivery", id)
                    .body(Full::new(body.clone()))
                    .unwrap();
                let started = Instant::now();
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.unwrap();
                let status = response.status();
                response.into_body().collect().await.unwrap();
                latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
                errors += usize::from(!status.is_success());
            }
            (latencies, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (latencies, task_errors) = task.await.unwrap();
        all.extend(latencies);
        errors += task_errors;
    }
    (all, errors)
}

/// The CPU time (user + system) of every thread of process `pid`, from `/proc`, in
/// nanoseconds of `schedstat`.
fn cpu_time(pid: u32) -> Duration {
    let mut total = 0_u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

fn stop(server: &mut Child) {
    drop(server.stdin.take()); // the server exits when its stdin closes
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.kill();
    let _ = server.wait();
}

fn serve(scenario: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let secret = Secret::new(SECRET).unwrap();
        let app = match scenario {
            "plain" => Router::new().route(
                "/webhooks",
                post(|Json(event): Json<PlainEnvelope>| async move {
                    std::hint::black_box(event);
                    "ok"
                }),
            ),
            "layer_memory" | "layer_redis" => {
                let mut layer = WebhookLayer::builder(Scheme::sotion()).with_secrets(secret);
                if scenario == "layer_redis" {
                    let url = std::env::var("REDIS_URL").unwrap();
                    let store = tower_webhook::idempotency::RedisStore::connect(&url)
                        .await
                        .unwrap();
                    layer = layer.with_store(store);
                }
                Router::new().route(
                    "/webhooks",
                    post(|event: Envelope<MemberData>| async move {
                        std::hint::black_box(event);
                        "ok"
                    })
                    .route_layer(layer.build().unwrap()),
                )
            }
            other => panic!("unknown scenario {other}"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        let server = axum::serve(listener, app);
        tokio::select! {
            result = server => result.unwrap(),
            () = wait_for_stdin_to_close() => {}
        }
    });
}

async fn wait_for_stdin_to_close() {
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await
    .unwrap();
}

/// A `redis-server` on a free loopback port for the Redis scenario, stopped on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Option<Self> {
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { child, port })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
