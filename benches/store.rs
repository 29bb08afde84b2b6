//! The in-memory idempotency store: bytes per remembered key at capacity (counted by an
//! instrumented allocator), and the cost of one reserve + complete through the store trait, on
//! one thread and on two.
//!
//! `cargo bench --manifest-path benches/Cargo.toml --bench store`
//!
//! With feature `redis` and the argument `redis`, instead: the client-side cost of the Redis
//! store (needs `redis-server` on the PATH): CPU time and allocations per reserve + complete,
//! 32 at a time on one current-thread runtime (the store's connection task included), so that
//! what the store does per call is measured without the HTTP server around it.
//! `cargo bench --manifest-path benches/Cargo.toml --features redis --bench store -- redis`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// Reporting numbers: the casts to and from f64 are intended.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::alloc::System;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use futures_util::FutureExt;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tower_webhook::idempotency::{IdempotencyKey, IdempotencyStore, MemoryStore, Reservation};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const LEASE: Duration = Duration::from_secs(300);
const TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn keys(n: usize, salt: &str) -> Vec<IdempotencyKey> {
    (0..n)
        .map(|i| IdempotencyKey::new("sotion", salt, &i.to_string()))
        .collect()
}

/// One reserve + complete through the trait, as the layer does it.
fn handle(store: &MemoryStore, key: &IdempotencyKey) {
    let reservation = store.reserve(key, LEASE).now_or_never().unwrap().unwrap();
    if let Reservation::New(token) = reservation {
        black_box(
            store
                .complete(key, &token, TTL)
                .now_or_never()
                .unwrap()
                .unwrap(),
        );
    }
}

fn bytes_per_key(capacity: usize) {
    let keys = keys(capacity * 2, "bytes");
    let region = Region::new(GLOBAL);
    let store = MemoryStore::with_capacity(NonZeroUsize::new(capacity).unwrap());
    for key in &keys[..capacity] {
        handle(&store, key);
    }
    let at_capacity = region.change();
    // `stats_alloc` already counts a reallocation's growth in `bytes_allocated` (and its
    // shrinking in `bytes_deallocated`): what is held is the difference.
    let held = at_capacity.bytes_allocated as f64 - at_capacity.bytes_deallocated as f64;
    // Twice as many again: the store must stay at its bound.
    for key in &keys[capacity..] {
        handle(&store, key);
    }
    let after = region.change();
    let held_after = after.bytes_allocated as f64 - after.bytes_deallocated as f64;
    assert_eq!(store.done_len(), capacity);
    println!(
        "memory store at capacity {capacity:>9}: {:7.1} bytes/key ({:.1} MiB); after {} more keys: {:7.1} bytes/key",
        held / capacity as f64,
        held / (1024.0 * 1024.0),
        capacity,
        held_after / capacity as f64,
    );
    drop(store);
}

fn main() {
    #[cfg(feature = "redis")]
    if std::env::args().any(|arg| arg == "redis") {
        redis_client::run();
        return;
    }
    bytes_per_key(100_000);
    bytes_per_key(1_000_000);

    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let keys = keys(1 << 20, "ops");
    let mut group = c.benchmark_group("memory_store");
    // Default capacity (100,000): the store is full and evicting, as in steady state.
    let store = MemoryStore::default();
    let next = AtomicUsize::new(0);
    group.bench_function("reserve_complete/1_thread", |b| {
        b.iter(|| {
            let i = next.fetch_add(1, Ordering::Relaxed) & ((1 << 20) - 1);
            handle(&store, &keys[i]);
        });
    });
    // A store that fits in the CPU caches (10,000 keys, ~1 MB): the operation itself.
    let small = MemoryStore::with_capacity(NonZeroUsize::new(10_000).unwrap());
    let small_next = AtomicUsize::new(0);
    group.bench_function("reserve_complete/1_thread_cache_resident", |b| {
        b.iter(|| {
            let i = small_next.fetch_add(1, Ordering::Relaxed) % 20_000;
            handle(&small, &keys[i]);
        });
    });
    group.bench_function("reserve_complete/2_threads_per_op", |b| {
        b.iter_custom(|iters| {
            // Each thread walks its own run of keys: the threads share only the store.
            let half = usize::try_from(iters / 2).unwrap();
            let base = next.fetch_add(2 * half, Ordering::Relaxed);
            let start = Instant::now();
            std::thread::scope(|scope| {
                for thread in 0..2 {
                    let (store, keys) = (&store, &keys);
                    scope.spawn(move || {
                        for n in 0..half {
                            let i = (base + thread * half + n) & ((1 << 20) - 1);
                            handle(store, &keys[i]);
                        }
                    });
                }
            });
            // Aggregate: wall time per operation with two threads working.
            start.elapsed()
        });
    });
    group.finish();
    c.final_summary();
}

#[cfg(feature = "redis")]
mod redis_client {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use futures_util::StreamExt;
    use stats_alloc::Region;
    use tower_webhook::idempotency::{IdempotencyKey, IdempotencyStore, RedisStore, Reservation};

    use super::{keys, GLOBAL, LEASE, TTL};

    const OPS: usize = 20_000;
    const ROUNDS: usize = 11;
    const CONCURRENCY: usize = 32;

    /// The CPU time of this thread (the current-thread runtime runs everything on it).
    fn thread_cpu() -> Duration {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
    }

    /// One reserve + complete, as the layer does it.
    async fn handle(store: &RedisStore, key: &IdempotencyKey) {
        if let Reservation::New(token) = store.reserve(key, LEASE).await.unwrap() {
            assert!(store.complete(key, &token, TTL).await.unwrap());
        }
    }

    pub(crate) fn run() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = RedisStore::connect(&format!("redis://127.0.0.1:{port}/"))
                .await
                .unwrap();
            let warm = keys(2_000, "redis-warm");
            futures_util::stream::iter(&warm)
                .for_each_concurrent(CONCURRENCY, |key| handle(&store, key))
                .await;
            let (mut cpu, mut allocations, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                let keys = keys(OPS, &format!("redis-{}-{round}", std::process::id()));
                let region = Region::new(GLOBAL);
                let before = thread_cpu();
                futures_util::stream::iter(&keys)
                    .for_each_concurrent(CONCURRENCY, |key| handle(&store, key))
                    .await;
                cpu.push(thread_cpu().checked_sub(before).unwrap().as_secs_f64() * 1e6 / OPS as f64);
                let change = region.change();
                allocations.push(change.allocations as f64 / OPS as f64);
                bytes.push(change.bytes_allocated as f64 / OPS as f64);
            }
            let median = |values: &mut Vec<f64>| {
                values.sort_by(f64::total_cmp);
                values[values.len() / 2]
            };
            println!(
                "redis store, reserve + complete, {CONCURRENCY} at a time, {ROUNDS} rounds of {OPS}: \
                 client CPU {:.2} µs (median; rounds {:.2} to {:.2}), {:.1} allocations, {:.0} bytes allocated",
                median(&mut cpu),
                cpu[0],
                cpu[ROUNDS - 1],
                median(&mut allocations),
                median(&mut bytes),
            );
        });
        let _ = server.kill();
        let _ = server.wait();
    }
}
