//! The store conformance suite: [`check_store`], exposed as
//! [`testing::check_store`](crate::testing::check_store) (feature `testing`).

use std::time::Duration;

use futures_util::future::join_all;

use super::store::{IdempotencyKey, IdempotencyStore, Reservation, StoreError, Token};

/// A lease or TTL meant to run out during the suite: long enough for a few calls to a store on
/// the same machine or network, short enough to keep the suite quick.
const SHORT: Duration = Duration::from_millis(200);
/// How long the suite waits for `SHORT` leases and TTLs to have run out: with a margin for
/// coarse clocks (the memory store's ticks a few milliseconds) and Redis's expiry.
const WAIT: Duration = Duration::from_millis(500);
/// A lease or TTL that never runs out during the suite.
const LONG: Duration = Duration::from_secs(60);
/// How many concurrent reserves of one key the suite makes.
const CONCURRENT: usize = 64;

/// Checks that `store` keeps the [`IdempotencyStore`] contract, against real time: call it from
/// a test of your own store, as this crate does for `MemoryStore` and `RedisStore`.
///
/// It uses fresh random keys (so it can run against a store that others use, such as a shared
/// Redis), leases and TTLs of a few hundred milliseconds, and takes about half a second. It
/// needs a Tokio runtime with time enabled (`#[tokio::test]`), and room for a dozen
/// reservations in flight; it completes or releases what it reserves, except reservations it
/// leaves to expire. The concurrent reserves are made on the calling task (concurrently for a
/// store that does I/O); test multi-threaded access to an in-memory store on its own.
///
/// The rules, each named in the panic message when broken:
///
/// - `reserve`: a free key gives `New`, then `InFlight` while the lease is live, `Done` once
///   completed (until the TTL runs out, then `New` again);
/// - `complete` and `release` by a token that does not hold the key change nothing and return
///   `false`; by the owner they return `true`;
/// - a lease that ran out is taken over by the next `reserve`; the stale owner then changes
///   nothing (`complete` and `release` return `false`);
/// - a lease that ran out and was not taken over: `complete` by its owner still marks the key
///   done and returns `true`; `release` returns `false` and leaves the key free;
/// - `complete` of a key nobody holds marks it done; `release` of it returns `false`;
/// - of concurrent reserves of one key, exactly one gives `New`.
///
/// ```
/// use tower_webhook::idempotency::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// tower_webhook::testing::check_store(&MemoryStore::default()).await;
/// # }
/// ```
///
/// # Panics
/// When the store breaks a rule (the message names it), or returns an error.
pub async fn check_store<S: IdempotencyStore + ?Sized>(store: &S) {
    let run = Token::random().to_hex();
    let key = |name: &str| IdempotencyKey::new("conformance", &run, name);

    in_flight_and_done(store, &key).await;
    release(store, &key).await;
    unknown_keys(store, &key).await;
    concurrent_reserves(store, &key).await;
    expiry(store, &key).await;
}

/// Reserve, in flight, done.
async fn in_flight_and_done<S: IdempotencyStore + ?Sized>(
    store: &S,
    key: &impl Fn(&str) -> IdempotencyKey,
) {
    let done = key("done");
    let owner = reserve_new(store, &done, LONG, "reserve of a free key gives New").await;
    expect_reserve(
        store,
        &done,
        &Reservation::InFlight,
        "reserve of a key held by a live lease gives InFlight",
    )
    .await;
    let stranger = Token::random();
    expect(
        !call(store.complete(&done, &stranger, LONG)).await,
        "complete by a token that does not hold the key returns false",
    );
    expect(
        !call(store.release(&done, &stranger)).await,
        "release by a token that does not hold the key returns false",
    );
    expect_reserve(
        store,
        &done,
        &Reservation::InFlight,
        "complete and release by a token that does not hold the key change nothing",
    )
    .await;
    expect(
        call(store.complete(&done, &owner, LONG)).await,
        "complete by the owner returns true",
    );
    expect_reserve(
        store,
        &done,
        &Reservation::Done,
        "reserve of a completed key gives Done",
    )
    .await;
    expect(
        !call(store.release(&done, &owner)).await,
        "release of a completed key returns false",
    );
    expect(
        !call(store.complete(&done, &owner, LONG)).await,
        "complete of a completed key returns false",
    );
    expect_reserve(
        store,
        &done,
        &Reservation::Done,
        "complete and release of a completed key change nothing",
    )
    .await;
}

/// Release.
async fn release<S: IdempotencyStore + ?Sized>(store: &S, key: &impl Fn(&str) -> IdempotencyKey) {
    let released = key("released");
    let owner = reserve_new(store, &released, LONG, "reserve of a free key gives New").await;
    expect(
        call(store.release(&released, &owner)).await,
        "release by the owner returns true",
    );
    expect(
        !call(store.release(&released, &owner)).await,
        "a second release returns false",
    );
    let again = reserve_new(
        store,
        &released,
        LONG,
        "reserve of a released key gives New",
    )
    .await;
    expect(
        !call(store.complete(&released, &owner, LONG)).await,
        "complete by the owner of a released reservation, now held by another, returns false",
    );
    expect(
        call(store.release(&released, &again)).await,
        "release by the owner returns true",
    );
}

/// Unknown keys.
async fn unknown_keys<S: IdempotencyStore + ?Sized>(
    store: &S,
    key: &impl Fn(&str) -> IdempotencyKey,
) {
    let unknown = key("unknown-release");
    expect(
        !call(store.release(&unknown, &Token::random())).await,
        "release of a key nobody holds returns false",
    );
    reserve_new(
        store,
        &unknown,
        SHORT,
        "release of a key nobody holds leaves it free",
    )
    .await;
    let unknown = key("unknown-complete");
    expect(
        call(store.complete(&unknown, &Token::random(), LONG)).await,
        "complete of a key nobody holds marks it done and returns true",
    );
    expect_reserve(
        store,
        &unknown,
        &Reservation::Done,
        "complete of a key nobody holds marks it done",
    )
    .await;
}

/// Concurrent reserves of one key.
async fn concurrent_reserves<S: IdempotencyStore + ?Sized>(
    store: &S,
    key: &impl Fn(&str) -> IdempotencyKey,
) {
    let contended = key("contended");
    let answers = join_all((0..CONCURRENT).map(|_| call(store.reserve(&contended, LONG)))).await;
    let winners: Vec<Token> = answers
        .iter()
        .filter_map(|answer| match answer {
            Reservation::New(token) => Some(*token),
            _ => None,
        })
        .collect();
    expect(
        winners.len() == 1,
        "of concurrent reserves of one key, exactly one gives New",
    );
    expect(
        answers
            .iter()
            .all(|answer| matches!(answer, Reservation::New(_) | Reservation::InFlight)),
        "concurrent reserves of a key in flight give InFlight",
    );
    for token in &winners {
        call(store.release(&contended, token)).await;
    }
}

/// Leases and TTLs that run out: set up, wait once, check.
async fn expiry<S: IdempotencyStore + ?Sized>(store: &S, key: &impl Fn(&str) -> IdempotencyKey) {
    let taken_over = key("taken-over");
    let stale = reserve_new(store, &taken_over, SHORT, "reserve of a free key gives New").await;
    let expired_complete = key("expired-complete");
    let unclaimed = reserve_new(
        store,
        &expired_complete,
        SHORT,
        "reserve of a free key gives New",
    )
    .await;
    let expired_release = key("expired-release");
    let forgotten = reserve_new(
        store,
        &expired_release,
        SHORT,
        "reserve of a free key gives New",
    )
    .await;
    let ttl = key("ttl");
    let owner = reserve_new(store, &ttl, LONG, "reserve of a free key gives New").await;
    expect(
        call(store.complete(&ttl, &owner, SHORT)).await,
        "complete by the owner returns true",
    );
    expect_reserve(
        store,
        &ttl,
        &Reservation::Done,
        "reserve of a completed key gives Done",
    )
    .await;

    tokio::time::sleep(WAIT).await;

    let fresh = reserve_new(
        store,
        &taken_over,
        LONG,
        "a lease that ran out is taken over by the next reserve",
    )
    .await;
    expect(fresh != stale, "a reservation taken over has a new token");
    expect(
        !call(store.complete(&taken_over, &stale, LONG)).await,
        "complete by a stale owner after a take-over returns false",
    );
    expect(
        !call(store.release(&taken_over, &stale)).await,
        "release by a stale owner after a take-over returns false",
    );
    expect_reserve(
        store,
        &taken_over,
        &Reservation::InFlight,
        "a stale owner changes nothing after a take-over",
    )
    .await;
    expect(
        call(store.complete(&taken_over, &fresh, LONG)).await,
        "complete by the owner after a take-over returns true",
    );
    expect(
        !call(store.complete(&taken_over, &stale, LONG)).await,
        "complete by a stale owner after the new owner completed returns false",
    );

    expect(
        call(store.complete(&expired_complete, &unclaimed, LONG)).await,
        "complete by the owner of a lease that ran out, not taken over, returns true",
    );
    expect_reserve(
        store,
        &expired_complete,
        &Reservation::Done,
        "complete by the owner of a lease that ran out, not taken over, marks the key done",
    )
    .await;

    expect(
        !call(store.release(&expired_release, &forgotten)).await,
        "release by the owner of a lease that ran out, not taken over, returns false",
    );
    let last = reserve_new(
        store,
        &expired_release,
        LONG,
        "a lease that ran out, not taken over and released, leaves the key free",
    )
    .await;
    call(store.release(&expired_release, &last)).await;

    let after_ttl = reserve_new(
        store,
        &ttl,
        LONG,
        "reserve of a completed key whose TTL ran out gives New",
    )
    .await;
    call(store.release(&ttl, &after_ttl)).await;
}

/// Panics naming `rule` unless `kept`.
fn expect(kept: bool, rule: &str) {
    assert!(kept, "store conformance: broken rule: {rule}");
}

/// The answer of a store call; panics on an error.
async fn call<T>(future: impl std::future::Future<Output = Result<T, StoreError>>) -> T {
    match future.await {
        Ok(answer) => answer,
        Err(error) => panic!("store conformance: the store failed: {error}"),
    }
}

/// Reserves `key`, which must give `New`, and returns the token.
async fn reserve_new<S: IdempotencyStore + ?Sized>(
    store: &S,
    key: &IdempotencyKey,
    lease: Duration,
    rule: &str,
) -> Token {
    match call(store.reserve(key, lease)).await {
        Reservation::New(token) => token,
        other => panic!("store conformance: broken rule: {rule} (got {other:?})"),
    }
}

/// Reserves `key`, which must give `expected` (not `New`).
async fn expect_reserve<S: IdempotencyStore + ?Sized>(
    store: &S,
    key: &IdempotencyKey,
    expected: &Reservation,
    rule: &str,
) {
    let answer = call(store.reserve(key, LONG)).await;
    assert!(
        answer == *expected,
        "store conformance: broken rule: {rule} (got {answer:?})"
    );
}
