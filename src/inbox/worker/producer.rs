//! The producer: one task per [`Workers`](super::Workers) that claims due deliveries in batches
//! for the free executor slots and starts an executor for each.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::{select, Either};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service;

use super::super::backend::{Finish, InboxBackend};
use super::completer::{Finished, Renewals};
use super::executor::{attempt_span, execute, Start};
use super::{reached, Phase, Shared};

/// Claims for the free slots (`Workers::with_workers` of them) and starts an executor per
/// claim, until shutdown; then waits for the executors to end.
///
/// When it claimed fewer deliveries than it had free slots, nothing more is due: it waits for
/// the backend's wake-up ([`InboxBackend::wait_for_work`], at most the poll interval). When it
/// filled them all, more may be due: it claims again as soon as a slot frees, for that slot
/// and the others the executors ready to end free in the same turn ([`gather`]).
pub(super) async fn produce<B, S, ResBody>(
    shared: Arc<Shared<B>>,
    service: S,
    mut watching: watch::Receiver<Phase>,
    completer: mpsc::Sender<Finished>,
    renewals: Arc<Renewals>,
) where
    B: InboxBackend,
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: fmt::Display,
{
    let settings = shared.settings;
    let slots = Arc::new(Semaphore::new(settings.workers.get()));
    let mut executors = JoinSet::new();
    loop {
        while executors.try_join_next().is_some() {}
        // A free slot (then all the others free now), unless shutdown began.
        let Some(first) = until_draining(&mut watching, Arc::clone(&slots).acquire_owned())
            .await
            .and_then(Result::ok)
        else {
            break;
        };
        let mut free = gather(&slots, first, settings.workers.get()).await;
        // Shutdown may have begun in the turn the slot freed (the drain and the slot wake the
        // producer together, and the slot is polled first), or while `gather` let the
        // executors run: then claim nothing more.
        if *watching.borrow() != Phase::Running {
            break;
        }
        let wanted = free.len();
        let claimed_at = Instant::now();
        let claimed = match shared.backend.claim(settings.lease, wanted).await {
            Ok(claims) => {
                let claimed = claims.len();
                for claim in claims {
                    if let Some(slot) = free.pop() {
                        executors.spawn(execute(Start {
                            shared: Arc::clone(&shared),
                            service: service.clone(),
                            claim,
                            claimed_at,
                            watching: watching.clone(),
                            completer: completer.clone(),
                            renewals: Arc::clone(&renewals),
                            slot,
                        }));
                    } else {
                        // More than asked for (a backend breaking its contract): given back.
                        let finished = Finished {
                            // Not run: its first attempt may still run in this process.
                            span: attempt_span(
                                &shared,
                                &claim.record.delivery,
                                &claim.lease,
                                false,
                            ),
                            accepted_at: claim.record.accepted_at,
                            delivery: claim.record.delivery,
                            lease: claim.lease,
                            finish: Finish::Release,
                            registration: None,
                        };
                        let _ = completer.send(finished).await;
                    }
                }
                claimed
            }
            Err(error) => {
                crate::observe::error!(
                    %error,
                    "inbox workers could not claim deliveries; retrying"
                );
                drop(free);
                let pause = tokio::time::sleep(settings.poll_interval);
                if until_draining(&mut watching, pause).await.is_none() {
                    break;
                }
                continue;
            }
        };
        drop(free);
        if claimed < wanted {
            // Nothing more due now: until a delivery may be (a wake-up), or the poll interval.
            let woken = shared.backend.wait_for_work(settings.poll_interval);
            match until_draining(&mut watching, woken).await {
                None => break,
                Some(Ok(())) => {}
                Some(Err(error)) => {
                    crate::observe::warn!(%error, "inbox workers could not wait for work; polling");
                    let pause = tokio::time::sleep(settings.poll_interval);
                    if until_draining(&mut watching, pause).await.is_none() {
                        break;
                    }
                }
            }
        }
    }
    // Shutdown: claim nothing more; the running executors finish (or are stopped).
    while executors.join_next().await.is_some() {}
}

/// `first` and every other slot free now, and those the executors that are ready to run free
/// meanwhile: after taking what is free, the producer lets the tasks that are ready run once
/// (`yield_now`) and takes again, as long as that frees more. Executors of one batch end
/// together when their handlers are quick, so one claim takes them all rather than a slot or
/// two each; a handler still running is never waited for.
async fn gather(
    slots: &Arc<Semaphore>,
    first: OwnedSemaphorePermit,
    all: usize,
) -> Vec<OwnedSemaphorePermit> {
    let mut free = vec![first];
    let mut yielded = false;
    loop {
        let before = free.len();
        while let Ok(slot) = Arc::clone(slots).try_acquire_owned() {
            free.push(slot);
        }
        // All free, or a turn that freed none: claim for these.
        if free.len() == all || (yielded && free.len() == before) {
            return free;
        }
        tokio::task::yield_now().await;
        yielded = true;
    }
}

/// `future`'s output, or `None` once the workers drain.
async fn until_draining<F: Future>(
    watching: &mut watch::Receiver<Phase>,
    future: F,
) -> Option<F::Output> {
    if *watching.borrow() != Phase::Running {
        return None;
    }
    let draining = pin!(reached(watching, Phase::Draining));
    match select(pin!(future), draining).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` slots of `slots`, all taken.
    fn take(slots: &Arc<Semaphore>, n: usize) -> Vec<OwnedSemaphorePermit> {
        (0..n)
            .map(|_| Arc::clone(slots).try_acquire_owned().unwrap())
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_claim_takes_the_slots_of_the_executors_ready_to_end_too() {
        let slots = Arc::new(Semaphore::new(4));
        let mut held = take(&slots, 4).into_iter();
        let first = held.next().unwrap();
        // Three executors whose handlers ended: each gives its slot back once it runs, which on
        // this one thread is only after the producer lets it.
        for slot in held {
            tokio::spawn(async move { drop(slot) });
        }
        let free = gather(&slots, first, 4).await;
        assert_eq!(
            free.len(),
            4,
            "one claim for all four slots, not one for the first"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_claim_never_waits_for_a_handler_still_running() {
        let slots = Arc::new(Semaphore::new(3));
        let mut held = take(&slots, 3).into_iter();
        let first = held.next().unwrap();
        let running = held.next().unwrap();
        let ending = held.next().unwrap();
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            // A handler that runs until the test ends.
            let _ = stopped.await;
            drop(running);
        });
        tokio::spawn(async move { drop(ending) });
        let free =
            tokio::time::timeout(std::time::Duration::from_secs(5), gather(&slots, first, 3))
                .await
                .expect("gather waited for a running handler");
        assert_eq!(free.len(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_idle_producer_claims_for_every_slot_without_yielding() {
        let slots = Arc::new(Semaphore::new(8));
        let first = Arc::clone(&slots).try_acquire_owned().unwrap();
        // Nothing else may run before the claim: a task spawned now would flag it.
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        tokio::spawn(async move { flag.store(true, std::sync::atomic::Ordering::SeqCst) });
        let free = gather(&slots, first, 8).await;
        assert_eq!(free.len(), 8);
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "the producer yielded"
        );
    }
}
