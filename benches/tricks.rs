//! Micro-benchmarks of the request path's tricks, each against the plain way, measured in pairs
//! (BENCHMARKS.md, "Tricks"): each of 41 rounds times a batch of the plain way and a batch of
//! the trick back to back, in alternating order; the median of the rounds' ratios (plain ÷
//! trick) is printed with its quartiles and the median ns per operation of each.
//!
//! `cargo bench --manifest-path benches/Cargo.toml --bench tricks`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};
use subtle::{Choice, ConstantTimeEq};

const ROUNDS: usize = 41;
const BATCH: usize = 20_000;

fn time(mut op: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..BATCH {
        op();
    }
    started.elapsed().as_secs_f64()
}

fn paired(name: &str, mut plain: impl FnMut(), mut trick: impl FnMut()) {
    time(&mut plain);
    time(&mut trick);
    let mut rounds: Vec<(f64, f64)> = (0..ROUNDS)
        .map(|round| {
            if round % 2 == 0 {
                let p = time(&mut plain);
                (p, time(&mut trick))
            } else {
                let t = time(&mut trick);
                (time(&mut plain), t)
            }
        })
        .collect();
    let ns = |seconds: f64| seconds * 1e9 / f64::from(u32::try_from(BATCH).unwrap());
    let mut plain_ns: Vec<f64> = rounds.iter().map(|(p, _)| ns(*p)).collect();
    let mut trick_ns: Vec<f64> = rounds.iter().map(|(_, t)| ns(*t)).collect();
    plain_ns.sort_by(f64::total_cmp);
    trick_ns.sort_by(f64::total_cmp);
    rounds.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
    let ratio = |(p, t): (f64, f64)| p / t;
    println!(
        "  {name:>34}: plain / trick {:.3}x ({:.3}x to {:.3}x); medians {:.1} ns plain, {:.1} ns trick",
        ratio(rounds[ROUNDS / 2]),
        ratio(rounds[ROUNDS / 4]),
        ratio(rounds[3 * ROUNDS / 4]),
        plain_ns[ROUNDS / 2],
        trick_ns[ROUNDS / 2],
    );
}

/// A Sotion delivery's headers as hyper hands them over.
fn request_headers() -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in [
        ("host", "receiver.example"),
        ("user-agent", "Sotion-Webhooks/1.0"),
        ("content-length", "1024"),
        ("content-type", "application/json"),
        ("accept", "*/*"),
        ("x-webhook-id", "evt-000000000001"),
        ("x-webhook-event", "member.created"),
        ("x-webhook-delivery", "dlv-000000000001"),
        (
            "x-webhook-signature",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
    ] {
        map.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    map
}

/// The headers the Sotion scheme reads, and `Content-Encoding`.
fn wanted() -> [HeaderName; 5] {
    [
        HeaderName::from_static("x-webhook-signature"),
        HeaderName::from_static("x-webhook-id"),
        HeaderName::from_static("x-webhook-event"),
        HeaderName::from_static("x-webhook-delivery"),
        http::header::CONTENT_ENCODING,
    ]
}

/// Plain: each name looked up in the map (as `scheme/headers.rs` does now), counting values.
fn looked_up(map: &HeaderMap, names: &[HeaderName; 5]) -> usize {
    names
        .iter()
        .map(|name| map.get_all(name).iter().count().min(2))
        .sum()
}

/// The trick removed in issue #12: one pass over the map, comparing names.
fn scanned(map: &HeaderMap, names: &[HeaderName; 5]) -> usize {
    let mut counts = [0_usize; 5];
    for (name, _) in map {
        if let Some(index) = names.iter().position(|wanted| wanted == name) {
            counts[index] = (counts[index] + 1).min(2);
        }
    }
    counts.iter().sum()
}

fn words(digest: &[u8; 32]) -> [u64; 4] {
    let mut words = [0_u64; 4];
    for (word, bytes) in words.iter_mut().zip(digest.chunks_exact(8)) {
        *word = u64::from_ne_bytes(bytes.try_into().unwrap());
    }
    words
}

fn main() {
    println!("paired: median of {ROUNDS} rounds of {BATCH} operations (quartiles)");

    let map = request_headers();
    let names = wanted();
    assert_eq!(looked_up(&map, &names), scanned(&map, &names));
    paired(
        "header lookups vs one scan",
        || {
            black_box(looked_up(black_box(&map), &names));
        },
        || {
            black_box(scanned(black_box(&map), &names));
        },
    );

    let computed = [7_u8; 32];
    let candidate = [7_u8; 32];
    paired(
        "ct compare: bytes vs u64 words",
        || {
            let equal: Choice = black_box(&computed).ct_eq(black_box(&candidate));
            black_box(bool::from(equal));
        },
        || {
            let equal = words(black_box(&computed)).ct_eq(&words(black_box(&candidate)));
            black_box(bool::from(equal));
        },
    );
}
