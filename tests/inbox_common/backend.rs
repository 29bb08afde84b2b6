//! What the SQL backends' own tests share (no `axum` needed): a verified delivery, and the
//! check that two inboxes on one database take each delivery once. Included by
//! `tests/inbox_sqlite.rs` and `tests/inbox_postgres.rs` with `#[path]`, and by
//! `inbox_common`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::HashSet;
use std::time::Duration;

use tower_webhook::idempotency::IdempotencyKey;
use tower_webhook::inbox::{
    Accepted, Delivery, Filter, HistoryKind, InboxBackend, InboxError, Record, Replay, Status,
};
use tower_webhook::testing::{sotion_event, sotion_request};
use tower_webhook::{Scheme, Secret, Secrets};

/// A verified Sotion delivery of event `id`, as the layer would store it, received at `path`
/// with an `Authorization` header besides the scheme's (a credential, never stored).
pub(crate) fn delivery_at(id: &str, path: &str) -> Delivery {
    verified(
        "whsec_inbox",
        sotion_event("member.created", id, "site_1"),
        path,
    )
}

/// `body` signed with `secret` as Sotion signs it, verified, and made a delivery received at
/// `path` with an `Authorization` header besides the scheme's (a credential, never stored).
pub(crate) fn verified(secret: &str, body: Vec<u8>, path: &str) -> Delivery {
    let secret = Secret::new(secret).unwrap();
    let mut request = sotion_request(&secret, body.clone());
    request
        .headers_mut()
        .insert("authorization", "Bearer do-not-store".parse().unwrap());
    let meta = tower_webhook::verify::verify(
        &Scheme::sotion(),
        &Secrets::new(secret),
        request.headers(),
        &body,
        std::time::SystemTime::now(),
    )
    .unwrap();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()));
    Delivery::new(
        &meta,
        IdempotencyKey::for_delivery(&meta),
        path,
        headers,
        body.into(),
    )
}

/// A record's history as (attempt, kind, error).
pub(crate) fn history(record: &Record) -> Vec<(u32, HistoryKind, Option<String>)> {
    record
        .history
        .iter()
        .map(|entry| (entry.attempt, entry.kind, entry.error.clone()))
        .collect()
}

/// [`delivery_at`] `/webhooks`.
pub(crate) fn delivery(id: &str) -> Delivery {
    delivery_at(id, "/webhooks")
}

/// 200 deliveries accepted through `a`, claimed five at a time by four workers, two on each
/// inbox: each is taken (and completed) exactly once.
pub(crate) async fn two_inboxes_take_each_delivery_once<B: InboxBackend + Clone>(a: B, b: B) {
    let total = 200;
    for n in 0..total {
        a.accept(&delivery(&format!("evt_{n}"))).await.unwrap();
    }
    let worker = |inbox: B| {
        tokio::spawn(async move {
            let mut taken = Vec::new();
            loop {
                let claims = inbox.claim(Duration::from_secs(60), 5).await.unwrap();
                if claims.is_empty() {
                    break taken;
                }
                for claim in claims {
                    assert!(inbox.complete(&claim.lease).await.unwrap());
                    taken.push(*claim.lease.key());
                }
            }
        })
    };
    let handles: Vec<_> = (0..4)
        .map(|n| worker(if n % 2 == 0 { a.clone() } else { b.clone() }))
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), total, "a delivery was taken twice or not at all");
    assert_eq!(unique.len(), total);
    assert_eq!(b.stats().await.unwrap().done, total as u64);
}

/// Accepts `delivery` and expects it stored.
async fn stored<B: InboxBackend>(inbox: &B, delivery: &Delivery) {
    assert_eq!(inbox.accept(delivery).await.unwrap(), Accepted::New);
}

/// Accepts `delivery` and expects the inbox full.
async fn refused<B: InboxBackend>(inbox: &B, delivery: &Delivery, why: &str) {
    match inbox.accept(delivery).await {
        Err(InboxError::Full) => {}
        other => panic!("{why}: {other:?}, expected Full"),
    }
}

/// Two inboxes on one database (two processes), each opened with a depth limit of 10: with no
/// accepts running at once, the limit holds exactly for both, whichever of them stored what.
pub(crate) async fn two_inboxes_keep_one_depth_limit_exactly<B: InboxBackend>(a: B, b: B) {
    assert_eq!(a.stats().await.unwrap().depth(), 0, "a fresh inbox");
    // B stores one, then A fills the inbox and is answered full.
    stored(&b, &delivery("evt_b_first")).await;
    for n in 0..9 {
        stored(&a, &delivery(&format!("evt_a{n}"))).await;
    }
    refused(&a, &delivery("evt_a_over"), "A filled the inbox").await;
    // B (whose own accepts were far below the limit a moment ago) is full too.
    for n in 0..4 {
        refused(
            &b,
            &delivery(&format!("evt_b_over{n}")),
            "A filled the inbox",
        )
        .await;
    }
    assert_eq!(a.stats().await.unwrap().depth(), 10);
    // One done through A makes room for exactly one, taken by B.
    let claims = a.claim(Duration::from_secs(60), 1).await.unwrap();
    assert!(a.complete(&claims[0].lease).await.unwrap());
    stored(&b, &delivery("evt_b_room")).await;
    refused(&a, &delivery("evt_a_over2"), "B took the room").await;
    refused(&b, &delivery("evt_b_over4"), "B took the room").await;
    // One purged through B makes room for exactly one, taken by A.
    assert!(b.purge(delivery("evt_b_room").key()).await.unwrap());
    stored(&a, &delivery("evt_a_room")).await;
    refused(&b, &delivery("evt_b_over5"), "A took the room").await;
    assert_eq!(b.stats().await.unwrap().depth(), 10);
}

/// Four tasks, two on each of two inboxes on one database, accept 15 new deliveries each under
/// a depth limit of 10: at least the limit is stored (an accept is refused only when the
/// inbox is full), and at most the limit plus the accepts that may run beside the last one
/// stored (3).
pub(crate) async fn accepts_running_at_once_pass_the_depth_limit_by_at_most_their_number<
    B: InboxBackend + Clone,
>(
    a: B,
    b: B,
) {
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let inbox = if task % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut new = 0_u64;
                for n in 0..15 {
                    match inbox.accept(&delivery(&format!("evt_{task}_{n}"))).await {
                        Ok(Accepted::New) => new += 1,
                        Err(InboxError::Full) => {}
                        other => panic!("{other:?}"),
                    }
                }
                new
            })
        })
        .collect();
    let mut new = 0;
    for task in tasks {
        new += task.await.unwrap();
    }
    let depth = a.stats().await.unwrap().depth();
    assert_eq!(depth, new);
    assert!(
        (10..=13).contains(&depth),
        "{depth} stored under a limit of 10"
    );
}

/// How many new deliveries `inbox` takes before it is full (each purged again after).
async fn room<B: InboxBackend>(inbox: &B) -> u64 {
    let mut probes = Vec::new();
    loop {
        let probe = delivery(&format!("evt_probe{}", probes.len()));
        match inbox.accept(&probe).await {
            Ok(Accepted::New) => probes.push(probe),
            Err(InboxError::Full) => break,
            other => panic!("{other:?}"),
        }
        assert!(probes.len() <= 100, "no depth limit");
    }
    for probe in &probes {
        assert!(inbox.purge(probe.key()).await.unwrap());
    }
    probes.len() as u64
}

/// The depth limit (4) follows every change of state: accept, claim, renew, retry, release,
/// complete, dead letter, replay from dead and from done, purge in each state, prune.
pub(crate) async fn the_depth_limit_follows_every_change_of_state<B: InboxBackend>(inbox: B) {
    let long = Duration::from_secs(60);
    assert_eq!(room(&inbox).await, 4);
    let (one, two, three) = (delivery("evt_1"), delivery("evt_2"), delivery("evt_3"));
    stored(&inbox, &one).await;
    stored(&inbox, &two).await;
    assert_eq!(room(&inbox).await, 2, "two pending");
    let claims = inbox.claim(long, 2).await.unwrap();
    assert_eq!(claims.len(), 2);
    assert_eq!(room(&inbox).await, 2, "two running");
    assert!(inbox.renew(&claims[0].lease, long).await.unwrap());
    assert!(inbox
        .retry(&claims[0].lease, Duration::ZERO, "boom")
        .await
        .unwrap());
    assert!(inbox.release(&claims[1].lease).await.unwrap());
    assert_eq!(room(&inbox).await, 2, "retried and released: pending");
    let claims = inbox.claim(long, 2).await.unwrap();
    assert!(inbox.complete(&claims[0].lease).await.unwrap());
    assert_eq!(room(&inbox).await, 3, "one done");
    assert!(inbox.dead_letter(&claims[1].lease, "dead").await.unwrap());
    assert_eq!(room(&inbox).await, 4, "one done, one dead");
    let (done, dead) = (claims[0].lease.key(), claims[1].lease.key());
    assert!(inbox.replay(dead, Replay::Dead).await.unwrap());
    assert_eq!(room(&inbox).await, 3, "the dead one replayed");
    assert!(inbox.replay(done, Replay::DeadOrDone).await.unwrap());
    assert_eq!(room(&inbox).await, 2, "the done one replayed");
    stored(&inbox, &three).await;
    let claims = inbox.claim(long, 1).await.unwrap();
    assert_eq!(room(&inbox).await, 1, "two pending, one running");
    assert!(inbox.purge(claims[0].lease.key()).await.unwrap());
    assert_eq!(room(&inbox).await, 2, "the running one purged");
    let claims = inbox.claim(long, 2).await.unwrap();
    assert!(inbox.complete(&claims[0].lease).await.unwrap());
    assert!(inbox.dead_letter(&claims[1].lease, "dead").await.unwrap());
    assert!(inbox.purge(claims[0].lease.key()).await.unwrap());
    assert!(inbox.purge(claims[1].lease.key()).await.unwrap());
    assert_eq!(room(&inbox).await, 4, "the done and the dead ones purged");
    stored(&inbox, &one).await;
    let claims = inbox.claim(long, 1).await.unwrap();
    assert!(inbox.complete(&claims[0].lease).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(inbox.prune(Duration::from_millis(10)).await.unwrap(), 1);
    assert_eq!(room(&inbox).await, 4, "the done one pruned");
    assert_eq!(inbox.stats().await.unwrap().depth(), 0);
}

/// How many done deliveries [`a_prune_of_a_large_backlog_lets_deliveries_in`] expects to find.
pub(crate) const BACKLOG: u64 = 200_000;

/// `inbox` holds [`BACKLOG`] done deliveries finished long ago (written by the test, in bulk),
/// and an accept fails after the inbox's timeout: while one prune removes them all, deliveries
/// arriving one after another (every 20 ms) are each accepted within that timeout, and the
/// prune reports the whole backlog, however long it took.
pub(crate) async fn a_prune_of_a_large_backlog_lets_deliveries_in<B: InboxBackend + Clone>(
    inbox: B,
) {
    assert_eq!(inbox.stats().await.unwrap().done, BACKLOG);
    let pruning = {
        let inbox = inbox.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let pruned = inbox.prune(Duration::from_secs(3600)).await;
            (pruned, started.elapsed())
        })
    };
    let (mut accepted, mut slowest) = (0_u64, Duration::ZERO);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !pruning.is_finished() {
        assert!(std::time::Instant::now() < deadline, "the prune ran 2 min");
        let started = std::time::Instant::now();
        let answer = inbox.accept(&delivery(&format!("evt_new{accepted}"))).await;
        let took = started.elapsed();
        assert!(
            matches!(answer, Ok(Accepted::New)),
            "accept {accepted} during the prune: {answer:?} after {took:?}"
        );
        accepted += 1;
        slowest = slowest.max(took);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (pruned, took) = pruning.await.unwrap();
    eprintln!("pruned in {took:?}; {accepted} accepts meanwhile, the slowest {slowest:?}");
    assert_eq!(pruned.unwrap(), BACKLOG);
    assert!(accepted >= 3, "the prune ended before deliveries arrived");
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.done, stats.pending), (0, accepted));
}

/// A batch of outcomes (`finish`) in which one delivery was completed meanwhile by its handler's
/// own transaction (`commit_own`, the backend's `begin_complete` and `commit`): that outcome is
/// refused (`false`), and the other, `failure` with a NUL byte in its error, is recorded
/// (`true`) with the NUL replaced, leaving the delivery in `failed_state`.
pub(crate) async fn a_batch_of_outcomes_refuses_an_outcome_the_handler_committed<B, C, F>(
    inbox: B,
    commit_own: C,
    failure: impl FnOnce(String) -> tower_webhook::inbox::Finish,
    failed_state: tower_webhook::inbox::DeliveryState,
) where
    B: InboxBackend,
    C: FnOnce(B, tower_webhook::inbox::Lease) -> F,
    F: std::future::Future<Output = B>,
{
    let (committed, failed) = (delivery("evt_committed"), delivery("evt_failed"));
    inbox.accept(&committed).await.unwrap();
    inbox.accept(&failed).await.unwrap();
    let claims = inbox.claim(Duration::from_secs(60), 2).await.unwrap();
    let lease = |key| {
        claims
            .iter()
            .find(|claim| claim.lease.key() == key)
            .unwrap()
            .lease
            .clone()
    };
    let (committed_lease, failed_lease) = (lease(committed.key()), lease(failed.key()));
    let inbox = commit_own(inbox, committed_lease.clone()).await;
    let answers = inbox
        .finish(&[
            (committed_lease, tower_webhook::inbox::Finish::Done),
            (failed_lease, failure("bad\0byte".into())),
        ])
        .await
        .unwrap();
    assert_eq!(answers, [false, true]);
    let record = inbox.get(failed.key()).await.unwrap().unwrap();
    assert_eq!(record.state, failed_state);
    assert_eq!(record.last_error.as_deref(), Some("bad\u{fffd}byte"));
    // The history has the batch's outcome, its NUL replaced as well, and the handler's own
    // completion, written in its transaction, and nothing of the refused outcome.
    let last = record
        .history
        .last()
        .expect("the batch's outcome is in the history");
    assert_eq!(
        (last.attempt, last.error.as_deref()),
        (1, Some("bad\u{fffd}byte"))
    );
    let record = inbox.get(committed.key()).await.unwrap().unwrap();
    assert_eq!(history(&record), [(1, HistoryKind::Done, None)]);
}

/// A claimed row that cannot be read (`spoil` makes event `evt_odd`'s row unreadable) is
/// dead-lettered by the claim that took it, with the error `unreadable row: ...`
/// (`last_error` reads it from the row, as an operator would): the claim returns the others,
/// the odd one leaves the depth and is counted dead, and no later claim takes it again.
pub(crate) async fn an_unreadable_row_is_dead_lettered_by_the_claim_that_took_it<
    B: InboxBackend,
>(
    inbox: B,
    spoil: impl AsyncFnOnce(&B),
    last_error: impl AsyncFnOnce(&B) -> Option<String>,
) {
    for id in ["evt_odd", "evt_fine"] {
        assert_eq!(inbox.accept(&delivery(id)).await.unwrap(), Accepted::New);
    }
    spoil(&inbox).await;
    let claims = inbox.claim(Duration::from_millis(200), 10).await.unwrap();
    let ids: Vec<_> = claims
        .iter()
        .map(|claim| claim.record.delivery.facts().id.as_str())
        .collect();
    assert_eq!(ids, ["evt_fine"]);
    let stats = inbox.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.running, stats.dead),
        (0, 1, 1),
        "the unreadable row is still waiting, counted in the depth: {stats:?}"
    );
    let error = last_error(&inbox).await.unwrap_or_default();
    assert!(error.starts_with("unreadable row: "), "{error:?}");
    // Past the lease: only the fine one is claimed again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = inbox.claim(Duration::from_secs(60), 10).await.unwrap();
    let ids: Vec<_> = again
        .iter()
        .map(|claim| claim.record.delivery.facts().id.as_str())
        .collect();
    assert_eq!(ids, ["evt_fine"]);
    assert_eq!(inbox.stats().await.unwrap().dead, 1);
}

/// `inbox` was migrated from a schema before the history, and holds `evt_v2`, dead after two
/// attempts: it reads back with no history, and what happens to it from then on is kept.
pub(crate) async fn an_old_dead_delivery_keeps_history_from_then_on<B: InboxBackend>(inbox: &B) {
    let page = inbox
        .search(&Filter::new().id("evt_v2").status(Status::Dead))
        .await
        .unwrap();
    let [record] = page.records.as_slice() else {
        panic!("the old delivery is not found: {page:?}");
    };
    assert!(record.history.is_empty());
    let key = *record.delivery.key();
    assert!(inbox.replay(&key, Replay::Dead).await.unwrap());
    let claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    assert!(inbox
        .retry(&claims[0].lease, Duration::from_secs(60), "boom")
        .await
        .unwrap());
    let record = inbox.get(&key).await.unwrap().unwrap();
    assert_eq!(
        history(&record),
        [
            (2, HistoryKind::Replayed, None),
            (1, HistoryKind::Retried, Some("boom".to_owned()))
        ]
    );
}
