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
/// filled them all, more may be due: it claims again as soon as a slot frees.
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
        let mut free: Vec<OwnedSemaphorePermit> = vec![first];
        while let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
            free.push(slot);
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
