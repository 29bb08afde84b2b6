//! The in-memory idempotency store: bytes per remembered key at capacity (counted by an
//! instrumented allocator), and the cost of one reserve + complete through the store trait, on
//! one thread and on two.
//!
//! `cargo bench --manifest-path benches/Cargo.toml --bench store`
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
