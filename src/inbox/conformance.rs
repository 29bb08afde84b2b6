//! The inbox conformance suite (feature `testing`): [`check_inbox`] checks that an
//! [`InboxBackend`] keeps its contract; run it from your own backend's tests.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::{HeaderName, HeaderValue};

use super::backend::{Accepted, Claim, Finish, InboxBackend, Lease, Replay};
use super::delivery::{Delivery, DeliveryState, Facts};
use super::error::InboxError;
use super::options::InboxOptions;
use crate::idempotency::{IdempotencyKey, Token};

mod admin;

/// A lease or delay meant to run out during the suite.
const SHORT: Duration = Duration::from_millis(300);
/// How long the suite waits for `SHORT` to have run out, with a margin.
const WAIT: Duration = Duration::from_millis(700);
/// A lease or delay that never runs out during the suite.
const LONG: Duration = Duration::from_secs(600);
/// How many deliveries the concurrent claims compete for.
const CONTENDED: usize = 24;
/// How many claims run at once.
const CLAIMERS: usize = 8;

/// Checks that the inbox backends `open` returns keep the [`InboxBackend`] contract, in real
/// time: call it from a test of your own backend, as this crate does for `SqliteInbox` and
/// `PostgresInbox`.
///
/// `open(options)` must return a new, **empty** inbox configured with `options` each time it
/// is called (a new file, a new table prefix, ...): the suite counts and claims everything in
/// it. It opens a dozen, takes a few seconds (leases of a few hundred milliseconds), and needs
/// a Tokio runtime with time enabled (`#[tokio::test]`). Concurrent calls are made from the
/// calling task, concurrently for a backend that does I/O.
///
/// The rules, each named in the panic message when broken:
///
/// - accept: a new key is `New`, then `Duplicate` with its state while pending, running, done
///   or dead; what is stored is read back unchanged;
/// - depth: past the limit a new key is `Full` (and not stored), a duplicate is still a
///   duplicate, and a done delivery makes room; an accept racing the removal of its key
///   (purge, prune) is `New` or `Duplicate`, never `Full` in an inbox that is not full;
/// - claim: due deliveries only, up to the limit, each attempt counted; of concurrent claims
///   none returns a delivery another returned while its lease is live;
/// - leases: an expired lease makes the delivery claimable again with a new token, and counts
///   an attempt that `get` shows; the stale owner's renew, complete, retry, dead letter and
///   release are refused; a renewed lease holds; an expired lease nobody claimed is still its
///   owner's (renewed, completed); a done delivery's renewal is refused, and `get` shows it done
///   with the attempt count of the lease that completed it (the workers read it to tell a
///   completion by their own attempt, or an outcome whose answer was lost, from a takeover);
/// - retry: not claimable before its delay, then claimable with the next attempt; the error is
///   kept;
/// - dead letter and replay: dead is never claimed; replay makes it due with the attempts
///   reset; a done delivery is replayed only when asked explicitly;
/// - release: due again at once, the attempt not counted;
/// - admin: list by state, purge, prune of done deliveries past the window (and of nothing
///   else), stats;
/// - batches: `finish` records a mixed batch (done, retry, dead letter, release) as the single
///   calls would, answering in order; a stale lease in the batch is answered `false` and
///   changes nothing while the others are recorded; the same lease twice is recorded once (the
///   second answered `false`); an empty batch answers nothing. `renew_all` renews the owners'
///   leases (they hold past their first end), answers `false` for a stale or finished lease
///   without affecting the others, and answers nothing to an empty batch;
/// - search: each condition of a [`Filter`](super::Filter) (status, a pending delivery
///   attempted already being retrying and not waiting; event type; event id; accepted since)
///   returns exactly the deliveries that meet it, oldest accepted first (then by key); paging
///   with each page's cursor (written as text and read back) returns every delivery once, also
///   across a full last page and through a burst accepted in the same instant; `stats` counts
///   the retrying deliveries;
/// - history, for a backend that keeps one (the first outcome recorded gives a delivery a
///   history; a backend that keeps none leaves it empty): each recorded outcome (retry and dead
///   letter with their errors, release, completion, single or in a batch) and each replay
///   (with the attempts it reset) adds one entry with its attempt, in order; a refused outcome
///   adds none; only the last [`HISTORY_LIMIT`](super::HISTORY_LIMIT) are kept.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use tower_webhook::inbox::{InboxOptions, SqliteInbox};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = std::env::temp_dir().join(format!("inbox-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let counter = std::sync::atomic::AtomicUsize::new(0);
/// tower_webhook::inbox::conformance::check_inbox(|options: InboxOptions| {
///     let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///     let path = dir.join(format!("{n}.db"));
///     async move { SqliteInbox::open(path, options).await.unwrap() }
/// })
/// .await;
/// std::fs::remove_dir_all(&dir).unwrap();
/// # });
/// # }
/// ```
///
/// # Panics
/// When the backend breaks a rule (the message names it), or returns an error where it must
/// not.
pub async fn check_inbox<B, F, Fut>(open: F)
where
    B: InboxBackend,
    F: Fn(InboxOptions) -> Fut,
    Fut: Future<Output = B>,
{
    accept_and_duplicates(&open(InboxOptions::new()).await).await;
    depth(&open(InboxOptions::new().with_max_depth(2)).await).await;
    duplicates_racing_removal(&open(InboxOptions::new()).await).await;
    concurrent_claims(&open(InboxOptions::new()).await).await;
    leases(&open(InboxOptions::new()).await).await;
    retries(&open(InboxOptions::new()).await).await;
    dead_letters_and_replay(&open(InboxOptions::new()).await).await;
    release(&open(InboxOptions::new()).await).await;
    admin(&open(InboxOptions::new()).await).await;
    batched_outcomes(&open(InboxOptions::new()).await).await;
    batched_renewals(&open(InboxOptions::new()).await).await;
    admin::search(&open(InboxOptions::new()).await).await;
    admin::history(&open(InboxOptions::new()).await).await;
}

/// A delivery with every fact set, a header that is not UTF-8, and a body.
fn delivery(name: &str) -> Delivery {
    let facts = Facts {
        scheme: "conformance".into(),
        id: format!("evt_{name}"),
        event: Some("member.created".into()),
        action: Some("opened".into()),
        delivery: Some(format!("dlv_{name}")),
        scope: Some("site_1".into()),
        tenant: Some("acme".into()),
        timestamp: Some(time::macros::datetime!(2026-03-28 12:00:00.123_456_789 UTC)),
        version: Some("1".into()),
    };
    let odd = HeaderValue::from_bytes(b"caf\xe9").unwrap_or(HeaderValue::from_static("cafe"));
    Delivery::from_facts(
        facts,
        IdempotencyKey::new("conformance", &Token::random().to_hex(), name),
        "/webhooks",
        [
            (
                HeaderName::from_static("x-webhook-id"),
                HeaderValue::from_static("evt"),
            ),
            (HeaderName::from_static("x-odd"), odd),
        ],
        Bytes::from(format!(r#"{{"id":"evt_{name}","data":{{}}}}"#)),
    )
}

/// A delivery with only the required facts.
fn bare(name: &str) -> Delivery {
    Delivery::from_facts(
        Facts::new("conformance", format!("evt_{name}")),
        IdempotencyKey::new("conformance", &Token::random().to_hex(), name),
        "/",
        [],
        Bytes::new(),
    )
}

async fn accept_and_duplicates<B: InboxBackend>(inbox: &B) {
    let first = delivery("first");
    expect_accept(
        inbox,
        &first,
        Accepted::New,
        "accept of a new key gives New",
    )
    .await;
    let stored = call(inbox.get(first.key())).await;
    let stored = stored.unwrap_or_else(|| broken("get finds an accepted delivery", "None"));
    expect(
        stored.delivery == first,
        "what is stored is read back unchanged (facts, path, headers, body)",
    );
    expect(
        stored.state == DeliveryState::Pending && stored.attempts == 0,
        "an accepted delivery is pending with no attempt",
    );
    let plain = bare("bare");
    expect_accept(
        inbox,
        &plain,
        Accepted::New,
        "accept of a new key gives New",
    )
    .await;
    let stored = call(inbox.get(plain.key())).await;
    expect(
        stored.is_some_and(|record| record.delivery == plain),
        "a delivery without optional facts is read back unchanged",
    );
    expect(
        call(inbox.get(&IdempotencyKey::new("conformance", "unknown", "key")))
            .await
            .is_none(),
        "get of an unknown key gives None",
    );

    expect_accept(
        inbox,
        &first,
        Accepted::Duplicate(DeliveryState::Pending),
        "accept of a pending key gives Duplicate(Pending)",
    )
    .await;
    let claims = call(inbox.claim(LONG, 10)).await;
    expect(
        claims.len() == 2,
        "claim takes every due delivery up to its limit",
    );
    let lease = lease_of(&claims, &first, "claim returns the accepted delivery");
    expect(
        lease.attempt() == 1,
        "the first claim of a delivery is attempt 1",
    );
    expect_accept(
        inbox,
        &first,
        Accepted::Duplicate(DeliveryState::Running),
        "accept of a running key gives Duplicate(Running)",
    )
    .await;
    expect(
        call(inbox.complete(&lease)).await,
        "complete by the owner returns true",
    );
    expect_accept(
        inbox,
        &first,
        Accepted::Duplicate(DeliveryState::Done),
        "accept of a done key gives Duplicate(Done)",
    )
    .await;
    let other = lease_of(&claims, &plain, "claim returns the accepted delivery");
    expect(
        call(inbox.dead_letter(&other, "gave up")).await,
        "dead_letter by the owner returns true",
    );
    expect_accept(
        inbox,
        &plain,
        Accepted::Duplicate(DeliveryState::Dead),
        "accept of a dead key gives Duplicate(Dead)",
    )
    .await;
    expect(
        call(inbox.claim(LONG, 10)).await.is_empty(),
        "duplicates are never claimed again: a done or dead delivery is not due",
    );
}

async fn depth<B: InboxBackend>(inbox: &B) {
    let (a, b, c) = (bare("a"), bare("b"), bare("c"));
    expect_accept(
        inbox,
        &a,
        Accepted::New,
        "accept under the depth limit gives New",
    )
    .await;
    expect_accept(
        inbox,
        &b,
        Accepted::New,
        "accept under the depth limit gives New",
    )
    .await;
    match inbox.accept(&c).await {
        Err(InboxError::Full) => {}
        other => broken(
            "accept of a new key at the depth limit gives Full",
            &format!("{other:?}"),
        ),
    }
    expect(
        call(inbox.get(c.key())).await.is_none(),
        "a delivery refused as Full is not stored",
    );
    expect_accept(
        inbox,
        &a,
        Accepted::Duplicate(DeliveryState::Pending),
        "a duplicate is answered as such even when the inbox is full",
    )
    .await;
    let claims = call(inbox.claim(LONG, 1)).await;
    expect(claims.len() == 1, "claim returns at most its limit");
    expect(
        call(inbox.stats()).await.depth() == 2,
        "running deliveries count in the depth",
    );
    expect(
        call(inbox.complete(&claims[0].lease)).await,
        "complete by the owner returns true",
    );
    expect_accept(
        inbox,
        &c,
        Accepted::New,
        "a done delivery makes room under the depth limit",
    )
    .await;
}

/// How many times an accept races the purge of its key.
const RACES: usize = 200;

async fn duplicates_racing_removal<B: InboxBackend>(inbox: &B) {
    let raced = bare("raced");
    for _ in 0..RACES {
        let _ = call(inbox.accept(&raced)).await;
        // The purge may land between the accept's insert (a conflict: stored already) and its
        // reading of the stored state: the key is then new, not the inbox full.
        let (answer, _) =
            futures_util::future::join(inbox.accept(&raced), inbox.purge(raced.key())).await;
        match answer {
            Ok(Accepted::New | Accepted::Duplicate(DeliveryState::Pending)) => {}
            other => broken(
                "an accept racing the removal of its key gives New or Duplicate",
                &format!("{other:?}"),
            ),
        }
    }
}

async fn concurrent_claims<B: InboxBackend>(inbox: &B) {
    let mut accepted = HashSet::new();
    for n in 0..CONTENDED {
        let delivery = bare(&format!("contended-{n}"));
        expect_accept(
            inbox,
            &delivery,
            Accepted::New,
            "accept of a new key gives New",
        )
        .await;
        accepted.insert(*delivery.key());
    }
    let rounds = join_all((0..CLAIMERS).map(|_| call(inbox.claim(LONG, 3)))).await;
    let mut seen = HashSet::new();
    for claim in rounds.iter().flatten() {
        expect(
            seen.insert(*claim.lease.key()),
            "of concurrent claims, none returns a delivery another returned",
        );
        expect(
            claim.record.state == DeliveryState::Running,
            "a claimed delivery is running",
        );
    }
    expect(
        rounds.iter().all(|claims| claims.len() <= 3),
        "claim returns at most its limit",
    );
    // Whatever the concurrent claims skipped is still due.
    let rest = call(inbox.claim(LONG, CONTENDED)).await;
    for claim in &rest {
        expect(
            seen.insert(*claim.lease.key()),
            "a claim never returns a delivery whose lease is live",
        );
    }
    expect(
        seen == accepted,
        "every due delivery is claimed by exactly one claim",
    );
    expect(
        call(inbox.claim(LONG, CONTENDED)).await.is_empty(),
        "a claim never returns a delivery whose lease is live",
    );
    let stats = call(inbox.stats()).await;
    expect(
        stats.running == CONTENDED as u64 && stats.pending == 0,
        "stats count running deliveries",
    );
}

async fn leases<B: InboxBackend>(inbox: &B) {
    let taken = bare("taken-over");
    expect_accept(
        inbox,
        &taken,
        Accepted::New,
        "accept of a new key gives New",
    )
    .await;
    let stale = only_claim(inbox, SHORT, "claim returns the due delivery").await;
    let renewed = bare("renewed");
    expect_accept(
        inbox,
        &renewed,
        Accepted::New,
        "accept of a new key gives New",
    )
    .await;
    let kept = only_claim(inbox, SHORT, "claim returns the due delivery").await;
    expect(
        call(inbox.renew(&kept, LONG)).await,
        "renew by the owner returns true",
    );
    let unclaimed = bare("expired-unclaimed");
    expect_accept(
        inbox,
        &unclaimed,
        Accepted::New,
        "accept of a new key gives New",
    )
    .await;
    let lapsed = only_claim(inbox, SHORT, "claim returns the due delivery").await;
    expect(
        call(inbox.claim(LONG, 10)).await.is_empty(),
        "a claim never returns a delivery whose lease is live",
    );

    tokio::time::sleep(WAIT).await;

    // The expired leases (`taken` and `unclaimed`) are due again; take only the oldest due:
    // `taken`'s lease was taken first, so it ends first.
    let fresh = only_claim(
        inbox,
        LONG,
        "an expired lease makes the delivery claimable again",
    )
    .await;
    expect(
        fresh.key() == taken.key(),
        "claim takes the delivery due first",
    );
    expect(
        fresh.token() != stale.token(),
        "a claim after an expired lease has a new token",
    );
    expect(
        fresh.attempt() == 2,
        "a claim after an expired lease counts a new attempt",
    );
    stale_owner_is_refused(inbox, &stale).await;
    expect(
        call(inbox.complete(&fresh)).await,
        "complete by the new owner returns true",
    );
    expect(
        !call(inbox.complete(&fresh)).await,
        "complete of a done delivery is refused",
    );
    completed_by_its_owner(inbox, &fresh).await;

    // `renewed` is not due: its lease was renewed.
    let next = call(inbox.claim(LONG, 10)).await;
    expect(
        next.len() == 1 && next[0].lease.key() == unclaimed.key(),
        "a renewed lease holds past its first end; an expired one is due",
    );
    // `unclaimed` was just claimed again: its first owner is stale now. Release the new claim,
    // then check that an expired lease nobody claimed is still its owner's.
    expect(
        !call(inbox.complete(&lapsed)).await,
        "complete by a stale owner is refused",
    );
    expect(
        call(inbox.complete(&kept)).await,
        "complete by the owner of a renewed lease returns true",
    );
    let last = bare("lapsed-owner");
    expect_accept(inbox, &last, Accepted::New, "accept of a new key gives New").await;
    let owner = only_claim(
        inbox,
        Duration::from_millis(50),
        "claim returns the due delivery",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A worker whose handler held its completion open past the lease renews it afterwards.
    expect(
        call(inbox.renew(&owner, Duration::from_millis(50))).await,
        "renew by the owner of an expired lease that nobody claimed again returns true",
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    expect(
        call(inbox.complete(&owner)).await,
        "complete by the owner of an expired lease that nobody claimed again returns true",
    );
}

/// The delivery of `owner` was just completed by it. The workers tell a delivery their own
/// attempt completed (in the handler's transaction) from one taken over by the renewal's refusal
/// and what `get` shows.
async fn completed_by_its_owner<B: InboxBackend>(inbox: &B, owner: &Lease) {
    expect(
        !call(inbox.renew(owner, LONG)).await,
        "renew of a done delivery is refused",
    );
    let record = call(inbox.get(owner.key())).await;
    expect(
        record.is_some_and(|r| r.state == DeliveryState::Done && r.attempts == owner.attempt()),
        "get shows a completed delivery done, with the attempt count of the lease that completed it",
    );
}

/// Every outcome by `stale`, whose delivery was claimed again, is refused and changes nothing.
async fn stale_owner_is_refused<B: InboxBackend>(inbox: &B, stale: &Lease) {
    for (refused, rule) in [
        (
            call(inbox.renew(stale, LONG)).await,
            "renew by a stale owner is refused",
        ),
        (
            call(inbox.complete(stale)).await,
            "complete by a stale owner is refused",
        ),
        (
            call(inbox.retry(stale, Duration::ZERO, "stale")).await,
            "retry by a stale owner is refused",
        ),
        (
            call(inbox.dead_letter(stale, "stale")).await,
            "dead_letter by a stale owner is refused",
        ),
        (
            call(inbox.release(stale)).await,
            "release by a stale owner is refused",
        ),
    ] {
        expect(!refused, rule);
    }
    let record = call(inbox.get(stale.key())).await;
    expect(
        record
            .as_ref()
            .is_some_and(|r| r.state == DeliveryState::Running && r.last_error.is_none()),
        "a stale owner changes nothing",
    );
    expect(
        record.is_some_and(|r| r.attempts > stale.attempt()),
        "get counts the attempt of a takeover (more than the stale lease's)",
    );
}

async fn retries<B: InboxBackend>(inbox: &B) {
    let retried = bare("retried");
    expect_accept(
        inbox,
        &retried,
        Accepted::New,
        "accept of a new key gives New",
    )
    .await;
    let lease = only_claim(inbox, LONG, "claim returns the due delivery").await;
    expect(
        call(inbox.retry(&lease, SHORT, "boom 500")).await,
        "retry by the owner returns true",
    );
    let record = call(inbox.get(retried.key())).await;
    expect(
        record.is_some_and(|r| {
            r.state == DeliveryState::Pending
                && r.attempts == 1
                && r.last_error.as_deref() == Some("boom 500")
        }),
        "a retried delivery is pending, its attempt counted and its error kept",
    );
    expect(
        call(inbox.claim(LONG, 10)).await.is_empty(),
        "a retried delivery is not claimable before its delay",
    );
    tokio::time::sleep(WAIT).await;
    let again = only_claim(
        inbox,
        LONG,
        "a retried delivery is claimable after its delay",
    )
    .await;
    expect(
        again.attempt() == 2,
        "the claim after a retry is the next attempt",
    );
    expect(
        !call(inbox.retry(&lease, Duration::ZERO, "old")).await,
        "retry by a previous owner is refused",
    );
    expect(
        call(inbox.retry(&again, Duration::ZERO, "again")).await,
        "retry by the owner returns true",
    );
    let now = only_claim(inbox, LONG, "a retry with no delay is due at once").await;
    expect(now.attempt() == 3, "every claim counts an attempt");
}

async fn dead_letters_and_replay<B: InboxBackend>(inbox: &B) {
    let dead = bare("dead");
    expect_accept(inbox, &dead, Accepted::New, "accept of a new key gives New").await;
    let lease = only_claim(inbox, LONG, "claim returns the due delivery").await;
    expect(
        call(inbox.retry(&lease, Duration::ZERO, "first")).await,
        "retry by the owner returns true",
    );
    let lease = only_claim(inbox, LONG, "a retry with no delay is due at once").await;
    expect(
        call(inbox.dead_letter(&lease, "gave up after 2")).await,
        "dead_letter by the owner returns true",
    );
    let record = call(inbox.get(dead.key())).await;
    expect(
        record.is_some_and(|r| {
            r.state == DeliveryState::Dead
                && r.attempts == 2
                && r.last_error.as_deref() == Some("gave up after 2")
                && r.finished_at.is_some()
        }),
        "a dead-lettered delivery is dead, with its attempts, last error and time",
    );
    expect(
        call(inbox.claim(LONG, 10)).await.is_empty(),
        "a dead delivery is never claimed",
    );
    let listed = call(inbox.list(DeliveryState::Dead, 10)).await;
    expect(
        listed.len() == 1 && listed[0].delivery.key() == dead.key(),
        "list of dead deliveries returns the dead one",
    );
    expect(
        call(inbox.replay(dead.key(), Replay::Dead)).await,
        "replay of a dead delivery returns true",
    );
    let record = call(inbox.get(dead.key())).await;
    expect(
        record.is_some_and(|r| r.state == DeliveryState::Pending && r.attempts == 0),
        "a replayed delivery is pending, its attempts reset",
    );
    expect(
        !call(inbox.replay(dead.key(), Replay::DeadOrDone)).await,
        "replay of a pending delivery is refused",
    );
    let lease = only_claim(inbox, LONG, "a replayed delivery is due at once").await;
    expect(
        lease.attempt() == 1,
        "the first claim after a replay is attempt 1",
    );
    expect(
        !call(inbox.replay(dead.key(), Replay::DeadOrDone)).await,
        "replay of a running delivery is refused",
    );
    expect(
        call(inbox.complete(&lease)).await,
        "complete by the owner returns true",
    );
    expect(
        !call(inbox.replay(dead.key(), Replay::Dead)).await,
        "replay of a done delivery is refused unless asked explicitly",
    );
    expect(
        call(inbox.replay(dead.key(), Replay::DeadOrDone)).await,
        "replay of a done delivery, asked explicitly, returns true",
    );
    only_claim(inbox, LONG, "a replayed done delivery is due at once").await;
}

async fn release<B: InboxBackend>(inbox: &B) {
    let released = bare("released");
    expect_accept(
        inbox,
        &released,
        Accepted::New,
        "accept of a new key gives New",
    )
    .await;
    let lease = only_claim(inbox, LONG, "claim returns the due delivery").await;
    expect(
        call(inbox.release(&lease)).await,
        "release by the owner returns true",
    );
    expect(
        !call(inbox.release(&lease)).await,
        "a second release is refused",
    );
    let record = call(inbox.get(released.key())).await;
    expect(
        record.is_some_and(|r| r.state == DeliveryState::Pending && r.attempts == 0),
        "a released delivery is pending, its attempt not counted",
    );
    let again = only_claim(inbox, LONG, "a released delivery is due at once").await;
    expect(
        again.attempt() == 1,
        "the claim after a release repeats the released attempt's number",
    );
}

async fn admin<B: InboxBackend>(inbox: &B) {
    let (done, dead, pending) = (bare("done"), bare("dead"), bare("pending"));
    for delivery in [&done, &dead] {
        expect_accept(
            inbox,
            delivery,
            Accepted::New,
            "accept of a new key gives New",
        )
        .await;
    }
    for claim in call(inbox.claim(LONG, 10)).await {
        let recorded = if claim.lease.key() == done.key() {
            call(inbox.complete(&claim.lease)).await
        } else {
            call(inbox.dead_letter(&claim.lease, "dead")).await
        };
        expect(recorded, "an outcome by the owner returns true");
    }
    expect_accept(
        inbox,
        &pending,
        Accepted::New,
        "accept of a new key gives New",
    )
    .await;
    let stats = call(inbox.stats()).await;
    expect(
        (stats.pending, stats.running, stats.done, stats.dead) == (1, 0, 1, 1),
        "stats count deliveries by state",
    );
    expect(
        stats.oldest_waiting.is_some(),
        "stats give the oldest waiting delivery's age",
    );
    for state in DeliveryState::ALL {
        let listed = call(inbox.list(state, 10)).await;
        expect(
            listed.iter().all(|record| record.state == state),
            "list returns deliveries in the state asked",
        );
    }
    expect(
        call(inbox.list(DeliveryState::Pending, 0)).await.is_empty(),
        "list returns at most its limit",
    );

    expect(
        call(inbox.prune(LONG)).await == 0,
        "prune keeps done deliveries within the window",
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    expect(
        call(inbox.prune(Duration::from_millis(10))).await == 1,
        "prune removes done deliveries past the window, and nothing else",
    );
    expect(
        call(inbox.get(done.key())).await.is_none(),
        "prune removes done deliveries past the window",
    );
    expect(
        call(inbox.get(dead.key())).await.is_some()
            && call(inbox.get(pending.key())).await.is_some(),
        "prune keeps dead and pending deliveries",
    );
    expect_accept(
        inbox,
        &done,
        Accepted::New,
        "a pruned key is new to accept again",
    )
    .await;

    expect(
        call(inbox.purge(dead.key())).await,
        "purge of a stored delivery returns true",
    );
    expect(
        !call(inbox.purge(dead.key())).await,
        "purge of an unknown delivery returns false",
    );
    expect(
        call(inbox.get(dead.key())).await.is_none(),
        "a purged delivery is gone",
    );
    let stats = call(inbox.stats()).await;
    expect(
        (stats.pending, stats.dead, stats.done) == (2, 0, 0),
        "stats follow prune and purge",
    );
}

/// Accepts `names` (bare deliveries) and claims them all with `lease`, in the order given.
async fn accept_and_claim<B: InboxBackend>(
    inbox: &B,
    names: &[&str],
    lease: Duration,
) -> Vec<(Delivery, Lease)> {
    let deliveries: Vec<Delivery> = names.iter().map(|name| bare(name)).collect();
    for delivery in &deliveries {
        expect_accept(
            inbox,
            delivery,
            Accepted::New,
            "accept of a new key gives New",
        )
        .await;
    }
    let claims = call(inbox.claim(lease, names.len())).await;
    deliveries
        .into_iter()
        .map(|delivery| {
            let lease = lease_of(&claims, &delivery, "claim returns every due delivery");
            (delivery, lease)
        })
        .collect()
}

async fn batched_outcomes<B: InboxBackend>(inbox: &B) {
    expect(
        call(inbox.finish(&[])).await.is_empty(),
        "finish of an empty batch answers nothing",
    );
    // One delivery taken over after its lease ran out: its first lease is stale.
    let [(taken, stale)] = exactly(accept_and_claim(inbox, &["batch-taken"], SHORT).await);
    tokio::time::sleep(WAIT).await;
    let fresh = only_claim(
        inbox,
        LONG,
        "an expired lease makes the delivery claimable again",
    )
    .await;
    let leased = accept_and_claim(
        inbox,
        &["batch-done", "batch-retry", "batch-dead", "batch-release"],
        LONG,
    )
    .await;
    let [(done, done_by), (retried, retry_by), (dead, dead_by), (released, release_by)] =
        exactly(leased);
    let outcomes = [
        (done_by.clone(), Finish::Done),
        (stale.clone(), Finish::Done),
        (
            retry_by,
            Finish::Retry {
                delay: LONG,
                error: "batch 500".into(),
            },
        ),
        (
            dead_by,
            Finish::Dead {
                error: "batch gave up".into(),
            },
        ),
        (done_by, Finish::Release),
        (release_by, Finish::Release),
    ];
    let answers = call(inbox.finish(&outcomes)).await;
    expect(
        answers == [true, false, true, true, false, true],
        "finish answers each outcome in order: the owners' recorded, a stale lease's and a \
         lease finished earlier in the batch refused",
    );
    batch_recorded(inbox, [&done, &retried, &dead, &released, &taken]).await;
    let again = only_claim(inbox, LONG, "a delivery released in a batch is due at once").await;
    expect(
        again.key() == released.key(),
        "a retried delivery is not claimable before its delay; a released one is",
    );
    let answers = call(inbox.finish(&[
        (fresh, Finish::Done),
        (again, Finish::Dead { error: "x".into() }),
    ]))
    .await;
    expect(
        answers == [true, true],
        "finish by the new owner returns true",
    );
}

/// What `batched_outcomes`' batch recorded: `done` done, `retried` pending with its error,
/// `dead` dead, `released` pending with its attempt not counted, and the stale lease's `taken`
/// unchanged.
async fn batch_recorded<B: InboxBackend>(inbox: &B, deliveries: [&Delivery; 5]) {
    let [done, retried, dead, released, taken] = deliveries;
    let stored = |delivery: &Delivery| {
        let key = *delivery.key();
        async move { call(inbox.get(&key)).await }
    };
    expect(
        stored(done)
            .await
            .is_some_and(|r| r.state == DeliveryState::Done && r.attempts == 1),
        "finish records Done as complete does (and a later outcome of the same lease is refused)",
    );
    expect(
        stored(retried).await.is_some_and(|r| {
            r.state == DeliveryState::Pending
                && r.attempts == 1
                && r.last_error.as_deref() == Some("batch 500")
        }),
        "finish records Retry as retry does",
    );
    expect(
        stored(dead).await.is_some_and(|r| {
            r.state == DeliveryState::Dead
                && r.last_error.as_deref() == Some("batch gave up")
                && r.finished_at.is_some()
        }),
        "finish records Dead as dead_letter does",
    );
    expect(
        stored(released)
            .await
            .is_some_and(|r| r.state == DeliveryState::Pending && r.attempts == 0),
        "finish records Release as release does",
    );
    expect(
        stored(taken).await.is_some_and(|r| {
            r.state == DeliveryState::Running && r.attempts == 2 && r.last_error.is_none()
        }),
        "a stale lease in a batch changes nothing",
    );
}

async fn batched_renewals<B: InboxBackend>(inbox: &B) {
    expect(
        call(inbox.renew_all(&[], LONG)).await.is_empty(),
        "renew_all of an empty batch answers nothing",
    );
    let leased = accept_and_claim(
        inbox,
        &["renew-stale", "renew-kept", "renew-other", "renew-done"],
        SHORT,
    )
    .await;
    let [(_, stale), (kept, kept_lease), (other, other_lease), (_, done_lease)] = exactly(leased);
    expect(
        call(inbox.complete(&done_lease)).await,
        "complete by the owner returns true",
    );
    // Renew all but the first, which runs out and is taken over.
    let answers = call(inbox.renew_all(
        &[kept_lease.clone(), other_lease.clone(), done_lease.clone()],
        LONG,
    ))
    .await;
    expect(
        answers == [true, true, false],
        "renew_all answers each lease in order: the owners' renewed, a finished one's refused",
    );
    tokio::time::sleep(WAIT).await;
    let fresh = only_claim(
        inbox,
        LONG,
        "an expired lease makes the delivery claimable again (renewed ones hold)",
    )
    .await;
    expect(
        fresh.key() == stale.key(),
        "renew_all's leases hold past their first end",
    );
    let answers = call(inbox.renew_all(
        &[
            kept_lease.clone(),
            stale.clone(),
            other_lease.clone(),
            fresh.clone(),
        ],
        LONG,
    ))
    .await;
    expect(
        answers == [true, false, true, true],
        "renew_all refuses a stale lease in a batch without affecting the others",
    );
    expect(
        call(inbox.get(stale.key()))
            .await
            .is_some_and(|r| r.attempts == 2),
        "a stale lease in a batch changes nothing",
    );
    expect(
        call(inbox.finish(&[
            (kept_lease, Finish::Done),
            (other_lease, Finish::Done),
            (fresh, Finish::Done),
        ]))
        .await
            == [true, true, true],
        "the owners of renewed leases finish them",
    );
    for delivery in [&kept, &other] {
        expect(
            call(inbox.get(delivery.key()))
                .await
                .is_some_and(|r| r.state == DeliveryState::Done),
            "finish records Done as complete does",
        );
    }
}

/// The `N` claimed deliveries of [`accept_and_claim`], as an array.
fn exactly<const N: usize>(leased: Vec<(Delivery, Lease)>) -> [(Delivery, Lease); N] {
    leased.try_into().unwrap_or_else(|leased: Vec<_>| {
        broken(
            "claim returns every due delivery",
            &format!("{} claimed", leased.len()),
        )
    })
}

/// The lease on `delivery` among `claims`.
fn lease_of(claims: &[Claim], delivery: &Delivery, rule: &str) -> Lease {
    claims
        .iter()
        .find(|claim| claim.lease.key() == delivery.key())
        .map_or_else(|| broken(rule, "not claimed"), |claim| claim.lease.clone())
}

/// Claims with `lease`, which must return exactly one delivery.
async fn only_claim<B: InboxBackend>(inbox: &B, lease: Duration, rule: &str) -> Lease {
    let claims = call(inbox.claim(lease, 1)).await;
    match claims.as_slice() {
        [claim] => claim.lease.clone(),
        other => broken(rule, &format!("{} claimed", other.len())),
    }
}

async fn expect_accept<B: InboxBackend>(
    inbox: &B,
    delivery: &Delivery,
    expected: Accepted,
    rule: &str,
) {
    let answer = call(inbox.accept(delivery)).await;
    if answer != expected {
        broken(rule, &format!("{answer:?}"));
    }
}

/// Panics naming `rule` unless `kept`.
fn expect(kept: bool, rule: &str) {
    assert!(kept, "inbox conformance: broken rule: {rule}");
}

fn broken(rule: &str, got: &str) -> ! {
    panic!("inbox conformance: broken rule: {rule} (got {got})")
}

/// The answer of an inbox call; panics on an error.
async fn call<T>(future: impl Future<Output = Result<T, InboxError>>) -> T {
    match future.await {
        Ok(answer) => answer,
        Err(error) => panic!("inbox conformance: the inbox failed: {error}"),
    }
}
