//! The database restarted under load, for any backend with a transactional completion: while
//! senders accept deliveries and workers claim them in batches and run a handler that writes
//! its effect in its own completion, the server is stopped hard (`pg_ctl -m immediate`,
//! SIGKILL) and started again on the same data, several times. Every accepted delivery must end
//! done, its effect written exactly once, and none may stay pending or running: a batch claim
//! whose answer was lost leaves its rows running under a token nobody holds, taken again once
//! their lease runs out.

use std::collections::HashMap;
use std::future::Future;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower_webhook::inbox::{DeliveryState, InboxBackend};

use super::completion::{Ledger, Plan, Transactional};
use super::delivery;

/// How many deliveries are accepted, by how many senders at once.
const EVENTS: usize = 600;
const SENDERS: usize = 4;
/// How many times the server is restarted while they are.
const RESTARTS: usize = 3;
/// The workers' lease: how long a claim whose answer was lost holds its rows.
const LEASE: Duration = Duration::from_secs(2);
/// The bound on the whole: sending, and processing everything after the last restart.
const BOUND: Duration = Duration::from_secs(90);

fn id(n: usize) -> String {
    format!("evt_restart_{n}")
}

/// Accepts events `n ≡ first (mod SENDERS)`, each until the inbox accepts it (new, or a
/// duplicate after an accept whose answer was lost), as a sender retries: the server is away
/// meanwhile. Counts each in `accepted`.
async fn send<B: InboxBackend>(inbox: B, first: usize, accepted: Arc<AtomicUsize>) {
    let deadline = Instant::now() + BOUND;
    for n in (first..EVENTS).step_by(SENDERS) {
        let stored = delivery(&id(n));
        while let Err(error) = inbox.accept(&stored).await {
            assert!(
                Instant::now() < deadline,
                "{}: not accepted within {BOUND:?}: {error}",
                id(n)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        accepted.fetch_add(1, Ordering::SeqCst);
    }
}

/// The scenario: `restart` stops the server hard and starts it again on the same data (it
/// blocks; it runs on a thread of its own); `effects` reads the committed effects, one event id
/// per effect (no unique constraint: a second effect of one event is counted, not refused).
/// Needs a multi-thread runtime. (The handlers' own writes unwrap: one that fails while the
/// server is away panics, a failed attempt as any other, retried.)
pub(crate) async fn a_batch_claim_interrupted_by_a_restart_strands_no_delivery<B, R, E, F>(
    inbox: B,
    mut restart: R,
    effects: E,
) where
    B: Transactional,
    R: FnMut(),
    E: Fn() -> F,
    F: Future<Output = Vec<String>>,
{
    let ledger = Ledger::default();
    // Handlers that work a little before their completion: some are running, some committing,
    // when the server goes away.
    for n in 0..EVENTS {
        let work = Duration::from_millis(u64::try_from(n % 7).unwrap() * 3);
        ledger.plan(&id(n), 1, Plan::WorkThenCommit(work));
    }
    let running = ledger
        .workers(&inbox)
        .with_workers(NonZeroUsize::new(8).unwrap())
        .with_lease(LEASE)
        .with_max_attempts(NonZeroU32::new(20).unwrap())
        .start()
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|first| tokio::spawn(send(inbox.clone(), first, Arc::clone(&accepted))))
        .collect();

    let deadline = Instant::now() + BOUND;
    for round in 1..=RESTARTS {
        // Under load: deliveries still arriving, claimed in batches, handlers running.
        while accepted.load(Ordering::SeqCst) < EVENTS * round / (RESTARTS + 1) {
            assert!(Instant::now() < deadline, "the senders stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::task::block_in_place(&mut restart);
    }
    for sender in senders {
        sender.await.unwrap();
    }
    assert_eq!(accepted.load(Ordering::SeqCst), EVENTS);

    // Everything ends done: nothing pending or running left, nothing dead.
    let stats = loop {
        match inbox.stats().await {
            Ok(stats) if stats.depth() == 0 => break stats,
            other => assert!(
                Instant::now() < deadline,
                "deliveries stranded after the restarts: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    running.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (stats.done, stats.dead),
        (EVENTS as u64, 0),
        "every accepted delivery done: {stats:?}"
    );

    // Each effect exactly once.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for effect in effects().await {
        *counts.entry(effect).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "effects written twice: {twice:?}");
    let missing: Vec<_> = (0..EVENTS)
        .map(id)
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "done without its effect: {missing:?}");

    // The restarts interrupted work (else this test would show nothing): some delivery took
    // more than one attempt.
    let done = inbox.list(DeliveryState::Done, EVENTS + 1).await.unwrap();
    let again = done.iter().filter(|record| record.attempts > 1).count();
    assert!(again > 0, "the restarts interrupted no delivery");
}

/// The lease of [`a_batch_claim_whose_answer_was_lost_strands_none_of_its_deliveries`]: an odd
/// number of milliseconds, so that it marks the claim's request on the wire.
pub(crate) const LOST_CLAIM_LEASE: Duration = Duration::from_millis(1987);
/// How many executor slots its workers have: the first claim asks for that many.
pub(crate) const LOST_CLAIM_SLOTS: usize = 4;

/// A batch claim the server carried out and whose answer was lost (the proxy cuts the
/// connection after the request carrying `marker`, the first claim's, reached the server): its
/// deliveries are left running under a token nobody holds. They are not stranded: once the
/// lease runs out they are claimed again, and each handler runs once, at attempt 2 (the lost
/// claim counted). `inbox` reaches the server through `proxy`.
pub(crate) async fn a_batch_claim_whose_answer_was_lost_strands_none_of_its_deliveries<B>(
    inbox: B,
    proxy: &super::proxy::Proxy,
    marker: &[u8],
) where
    B: InboxBackend + Clone,
{
    let ids: Vec<String> = (0..LOST_CLAIM_SLOTS)
        .map(|n| format!("evt_lost_claim_{n}"))
        .collect();
    // A first claim (nothing to take), so that the claim's statement or script is known to the
    // server (prepared, loaded) before the cut.
    assert!(inbox.claim(LOST_CLAIM_LEASE, 1).await.unwrap().is_empty());
    for id in &ids {
        inbox.accept(&delivery(id)).await.unwrap();
    }
    let app = super::App::default();
    proxy.arm(marker);
    let started = Instant::now();
    let running = super::workers(&inbox, &app)
        .with_workers(NonZeroUsize::new(LOST_CLAIM_SLOTS).unwrap())
        .with_lease(LOST_CLAIM_LEASE)
        .start()
        .unwrap();
    // Each done (the reads may fail while the cut connection is replaced: a multiplexed one).
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in &ids {
        loop {
            match inbox.get(&super::key(id)).await {
                Ok(Some(record)) if record.state == DeliveryState::Done => break,
                other => assert!(Instant::now() < deadline, "{id} stranded: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    running.shutdown(Duration::from_secs(5)).await;
    assert_eq!(proxy.cuts(), 1, "the claim's answer was not cut");
    assert!(
        started.elapsed() >= LOST_CLAIM_LEASE,
        "claimed again before the lost claim's lease ran out: {:?}",
        started.elapsed()
    );
    for id in &ids {
        assert_eq!(app.runs_of(id), [2], "{id}: the lost claim is attempt 1");
    }
}
