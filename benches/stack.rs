//! The whole axum stack in process, without the network (whose cost dominates, and varies, on
//! a shared machine): one 1 KiB Sotion delivery through a router, unverified with `Json<T>`,
//! and behind the `WebhookLayer` with `Envelope<T>`, with and without the memory store.
//!
//! `cargo bench --manifest-path benches/Cargo.toml --bench stack`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::routing::post;
use axum::{Json, Router};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::Request;
use tower::ServiceExt;
mod shared;

use shared::PlainEnvelope;
use tower_webhook::envelope::MemberData;
use tower_webhook::{verify, Envelope, Secret, WebhookLayer};

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

fn stack(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
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
            post(handler).route_layer(WebhookLayer::new(Secret::new(SECRET).unwrap())),
        )
        .with_state(());
    let no_store = Router::new()
        .route(
            "/webhooks",
            post(handler)
                .route_layer(WebhookLayer::new(Secret::new(SECRET).unwrap()).without_idempotency()),
        )
        .with_state(());
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = stack
}
criterion_main!(benches);
