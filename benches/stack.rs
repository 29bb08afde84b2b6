//! The whole axum stack in process, without the network (whose cost dominates, and varies, on
//! a shared machine): one 1 KiB Sotion delivery through a router, unverified with `Json<T>`,
//! and behind the `WebhookLayer` with `Envelope<T>`, with and without the memory store.
//!
//! `cargo bench --manifest-path benches/Cargo.toml --bench stack` (`-- paired`: only the ratios
//! to the plain stack, measured in pairs)
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::routing::post;
use axum::{Json, Router};
use criterion::{criterion_group, BatchSize, Criterion};
use http::Request;
use tower::ServiceExt;
mod shared;

use shared::PlainEnvelope;
use tower_webhook::envelope::MemberData;
use tower_webhook::{verify, Envelope, Scheme, Secret, WebhookLayer};

const SECRET: &str = "whsec_stack_benchmark";

/// A signed 1 KiB delivery with a fresh id.
fn delivery(n: usize) -> Request<Body> {
    let id = format!("evt-{n:012}");
    let head = format!(
        r#"{{"id":"{id}","type":"member.created","timestamp":"2026-03-28T12:00:00.000Z","version":"1","siteId":"site_bench","data":{{"email":"ada@example.com","name":"Ada","note":""#
    );
    let tail = r#""}}"#;
    let body = format!("{head}{}{tail}", "x".repeat(1024 - head.len() - tail.len()));
    let signature = verify::sign(&Secret::new(SECRET).unwrap(), body.as_bytes());
    Request::post("/webhooks")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("x-webhook-signature", signature)
        .header("x-webhook-id", &id)
        .header("x-webhook-event", "member.created")
        .header("x-webhook-delivery", &id)
        .body(Body::from(body))
        .unwrap()
}

/// The three routers: unverified `Json<T>`, the layer with the memory store, the layer without.
fn apps() -> (Router, Router, Router) {
    // `with_state(())` turns handlers into routes once, as `axum::serve` does.
    let plain = Router::new()
        .route(
            "/webhooks",
            post(|Json(event): Json<PlainEnvelope>| async move {
                black_box(event);
                "ok"
            }),
        )
        .with_state(());
    let handler = |event: Envelope<MemberData>| async move {
        black_box(event);
        "ok"
    };
    let layered = Router::new()
        .route(
            "/webhooks",
            post(handler).route_layer(WebhookLayer::new(Scheme::sotion(), SECRET).unwrap()),
        )
        .with_state(());
    let no_store = Router::new()
        .route(
            "/webhooks",
            post(handler).route_layer(
                WebhookLayer::builder(Scheme::sotion())
                    .with_secret(SECRET)
                    .without_idempotency()
                    .build()
                    .unwrap(),
            ),
        )
        .with_state(());
    (plain, layered, no_store)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn stack(c: &mut Criterion) {
    let runtime = runtime();
    let (plain, layered, no_store) = apps();
    let next = AtomicUsize::new(0);
    let mut group = c.benchmark_group("stack_1KiB");
    for (name, app) in [
        ("plain_json", &plain),
        ("layer_memory_envelope", &layered),
        ("layer_no_store_envelope", &no_store),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || delivery(next.fetch_add(1, Ordering::Relaxed)),
                |request| {
                    let response = runtime.block_on(app.clone().oneshot(request)).unwrap();
                    assert!(response.status().is_success());
                    response
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// The stacks' ratios to the plain one, measured in pairs (as `verify -- paired` does): the
/// plain stack and a layered one, timed minutes apart by criterion, each drift by more on a
/// shared machine than the differences to be seen. Each round times a batch of requests through
/// the plain router and a batch through the other back to back (in alternating order); the
/// median of the rounds' ratios is printed with its quartiles.
fn paired_ratios() {
    const ROUNDS: usize = 41;
    const BATCH: usize = 2_000;
    let runtime = runtime();
    let (plain, layered, no_store) = apps();
    let mut next = 0;
    let mut time = |app: &Router| {
        let requests: Vec<_> = (next..next + BATCH).map(delivery).collect();
        next += BATCH;
        let started = std::time::Instant::now();
        for request in requests {
            let response = runtime.block_on(app.clone().oneshot(request)).unwrap();
            assert!(response.status().is_success());
            black_box(response);
        }
        started.elapsed().as_secs_f64()
    };
    println!("paired: 1 KiB, stack / plain_json, median of {ROUNDS} rounds of {BATCH} requests (quartiles)");
    for (name, app) in [
        ("layer_memory_envelope", &layered),
        ("layer_no_store_envelope", &no_store),
    ] {
        time(&plain);
        time(app);
        let mut rounds: Vec<(f64, f64)> = (0..ROUNDS)
            .map(|round| {
                if round % 2 == 0 {
                    let p = time(&plain);
                    (time(app), p)
                } else {
                    let o = time(app);
                    (o, time(&plain))
                }
            })
            .collect();
        let mut plain_us: Vec<f64> = rounds.iter().map(|(_, p)| p * 1e6 / 2_000.0).collect();
        plain_us.sort_by(f64::total_cmp);
        let mut stack_us: Vec<f64> = rounds.iter().map(|(o, _)| o * 1e6 / 2_000.0).collect();
        stack_us.sort_by(f64::total_cmp);
        rounds.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
        let ratio = |(o, p): (f64, f64)| o / p;
        println!(
            "  {name:>24}: {:.3}x ({:.3}x to {:.3}x); medians {:.2} us/request, plain_json {:.2}",
            ratio(rounds[ROUNDS / 2]),
            ratio(rounds[ROUNDS / 4]),
            ratio(rounds[3 * ROUNDS / 4]),
            stack_us[ROUNDS / 2],
            plain_us[ROUNDS / 2]
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = stack
}
fn main() {
    // `--bench stack -- paired` runs only the paired ratios.
    if std::env::args().any(|arg| arg == "paired") {
        paired_ratios();
    } else {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
