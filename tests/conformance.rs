//! The store conformance suite against the in-memory store (tests/redis.rs runs the same suite
//! against Redis).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::num::NonZeroUsize;
use std::time::Duration;

use tower_webhook::idempotency::MemoryStore;
use tower_webhook::testing::check_store;

#[tokio::test]
async fn the_memory_store_keeps_the_store_contract() {
    tokio::time::timeout(
        Duration::from_secs(10),
        check_store(&MemoryStore::default()),
    )
    .await
    .expect("the conformance suite took more than 10 s");
}

#[tokio::test]
async fn a_small_sharded_memory_store_keeps_the_store_contract() {
    // One shard below 4,096 keys, sixteen from there; a small in-flight limit.
    let store = MemoryStore::with_capacity(NonZeroUsize::new(100).unwrap())
        .with_max_in_flight(NonZeroUsize::new(16).unwrap());
    tokio::time::timeout(Duration::from_secs(10), check_store(&store))
        .await
        .expect("the conformance suite took more than 10 s");
}
