//! Verification cost against the floor (one pre-keyed HMAC-SHA256 over the same bytes) and
//! against the published Rust peers on the same Standard Webhooks delivery.
//!
//! `cargo bench --manifest-path benches/Cargo.toml --bench verify`, then `scripts/bench-report`
//! prints the ratios.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// Reporting numbers: the casts to and from f64 are intended.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use tower_webhook::scheme::Outgoing;
use tower_webhook::{verify, Scheme, Secret, Secrets};

const SIZES: [usize; 4] = [256, 1024, 16 * 1024, 1024 * 1024];
const SOTION_SECRET: &str = "whsec_benchmark_secret_0123456789";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A Sotion envelope of exactly `size` bytes (its `data` padded).
fn sotion_body(size: usize) -> Vec<u8> {
    let head = r#"{"id":"a1b2c3d4-e5f6-7890-abcd-ef1234567890","type":"member.created","timestamp":"2026-03-28T12:00:00.000Z","version":"1","siteId":"site-uuid","data":{"email":"ada@example.com","note":""#;
    let tail = r#""}}"#;
    let padding = size - head.len() - tail.len();
    format!("{head}{}{tail}", "x".repeat(padding)).into_bytes()
}

/// A Standard Webhooks JSON payload of exactly `size` bytes.
fn standard_body(size: usize) -> Vec<u8> {
    let head = r#"{"type":"invoice.paid","data":{"id":"in_1","note":""#;
    let tail = r#""}}"#;
    format!("{head}{}{tail}", "x".repeat(size - head.len() - tail.len())).into_bytes()
}

fn raw_hmac(c: &mut Criterion, group_name: &str, key: &[u8], bodies: &[(usize, Vec<u8>)]) {
    let keyed = Hmac::<Sha256>::new_from_slice(key).unwrap();
    let mut group = c.benchmark_group(group_name);
    for (size, body) in bodies {
        group.throughput(Throughput::Bytes(*size as u64));
        group.bench_with_input(BenchmarkId::new("hmac_floor", size), body, |b, body| {
            b.iter(|| {
                let mut mac = keyed.clone();
                mac.update(black_box(body));
                black_box(mac.finalize().into_bytes())
            });
        });
    }
    group.finish();
}

/// Our two measurements of one delivery: the signature check alone, and the whole `verify`
/// (which also reads the body: `full` names it).
#[allow(clippy::too_many_arguments)]
fn bench_ours(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    full: &str,
    size: usize,
    scheme: &Scheme,
    secrets: &Secrets,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) {
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_with_input(
        BenchmarkId::new("verify_signature", size),
        body,
        |b, body| {
            b.iter(|| {
                verify::verify_signature(scheme, secrets, black_box(headers), black_box(body), now)
                    .unwrap();
            });
        },
    );
    group.bench_with_input(BenchmarkId::new(full, size), body, |b, body| {
        b.iter(|| {
            verify::verify(scheme, secrets, black_box(headers), black_box(body), now).unwrap()
        });
    });
}

fn sotion(c: &mut Criterion) {
    let scheme = Scheme::sotion();
    let secret = Secret::new(SOTION_SECRET).unwrap();
    let secrets = Secrets::new(secret.clone());
    let bodies: Vec<_> = SIZES
        .iter()
        .map(|&size| (size, sotion_body(size)))
        .collect();
    raw_hmac(c, "sotion", SOTION_SECRET.as_bytes(), &bodies);
    let mut group = c.benchmark_group("sotion");
    for (size, body) in &bodies {
        let message = Outgoing {
            id: "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
            event: "member.created",
            timestamp: 0,
            body,
        };
        let headers = scheme.sign(&secret, &message).unwrap();
        let now = SystemTime::now();
        assert!(verify::verify(&scheme, &secrets, &headers, body, now).is_ok());
        bench_ours(
            &mut group,
            "verify_with_envelope",
            *size,
            &scheme,
            &secrets,
            &headers,
            body,
            now,
        );
    }
    group.finish();
}

fn standard_webhooks(c: &mut Criterion) {
    let scheme = Scheme::standard_webhooks();
    let secret = scheme.secret(STANDARD_SECRET).unwrap();
    let secrets = Secrets::new(secret.clone());
    let svix = svix::webhooks::Webhook::new(STANDARD_SECRET).unwrap();
    let reference = standardwebhooks::Webhook::new(STANDARD_SECRET).unwrap();
    let key = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        STANDARD_SECRET.trim_start_matches("whsec_"),
    )
    .unwrap();
    let bodies: Vec<_> = SIZES
        .iter()
        .map(|&size| (size, standard_body(size)))
        .collect();
    raw_hmac(c, "standard_webhooks", &key, &bodies);
    let mut group = c.benchmark_group("standard_webhooks");
    for (size, body) in &bodies {
        let now = SystemTime::now();
        let timestamp = i64::try_from(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        let message = Outgoing {
            id: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            event: "invoice.paid",
            timestamp,
            body,
        };
        let headers: HeaderMap = scheme.sign(&secret, &message).unwrap();
        // The peers take the same headers (http 1 `HeaderMap`).
        assert!(svix.verify(body, &headers).is_ok());
        assert!(reference.verify(body, &headers).is_ok());
        assert!(verify::verify_signature(&scheme, &secrets, &headers, body, now).is_ok());
        bench_ours(
            &mut group,
            "verify_with_fields",
            *size,
            &scheme,
            &secrets,
            &headers,
            body,
            now,
        );
        group.bench_with_input(BenchmarkId::new("svix", size), body, |b, body| {
            b.iter(|| svix.verify(black_box(body), black_box(&headers)).unwrap());
        });
        group.bench_with_input(
            BenchmarkId::new("standardwebhooks", size),
            body,
            |b, body| {
                b.iter(|| {
                    reference
                        .verify(black_box(body), black_box(&headers))
                        .unwrap();
                });
            },
        );
    }
    group.finish();
}

/// The ratio to the floor, measured in pairs: on a shared machine the floor and the check,
/// measured minutes apart by criterion, can each drift by 5 to 10%, which is more than the
/// margin of the 1.15x target. Here each round times a batch of the floor and a batch of the
/// check back to back (in alternating order), and the median of the rounds' ratios is printed.
fn paired_ratios() {
    const ROUNDS: usize = 41;
    let scheme = Scheme::sotion();
    let secret = Secret::new(SOTION_SECRET).unwrap();
    let secrets = Secrets::new(secret.clone());
    let keyed = Hmac::<Sha256>::new_from_slice(SOTION_SECRET.as_bytes()).unwrap();
    println!("paired: Sotion verify_signature / hmac_floor, median of {ROUNDS} rounds (quartiles)");
    for size in SIZES {
        let body = sotion_body(size);
        let message = Outgoing {
            id: "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
            event: "member.created",
            timestamp: 0,
            body: &body,
        };
        let headers = scheme.sign(&secret, &message).unwrap();
        let now = SystemTime::now();
        // About 20 ms per batch.
        let batch = (20_000_000 / (size + 512)).max(10);
        let floor = || {
            let started = std::time::Instant::now();
            for _ in 0..batch {
                let mut mac = keyed.clone();
                mac.update(black_box(&body));
                black_box(mac.finalize().into_bytes());
            }
            started.elapsed().as_secs_f64()
        };
        let ours = || {
            let started = std::time::Instant::now();
            for _ in 0..batch {
                verify::verify_signature(
                    &scheme,
                    &secrets,
                    black_box(&headers),
                    black_box(&body),
                    now,
                )
                .unwrap();
            }
            started.elapsed().as_secs_f64()
        };
        floor();
        ours();
        let mut ratios: Vec<f64> = (0..ROUNDS)
            .map(|round| {
                if round % 2 == 0 {
                    let f = floor();
                    ours() / f
                } else {
                    let o = ours();
                    o / floor()
                }
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "  {size:>8} B: {:.3}x ({:.3}x to {:.3}x)",
            ratios[ROUNDS / 2],
            ratios[ROUNDS / 4],
            ratios[3 * ROUNDS / 4]
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = sotion, standard_webhooks
}

fn main() {
    // `--bench verify -- paired` runs only the paired ratios.
    if !std::env::args().any(|arg| arg == "paired") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    paired_ratios();
}
