//! The group commit of accepts: one writer task per [`SqlInbox`](super::SqlInbox) takes the
//! deliveries that arrived while its previous batch was committing, writes them in one
//! transaction (the [`Dialect`]'s [`write_accepts`](Dialect::write_accepts)), and answers each
//! only after that transaction committed.
//!
//! A database syncs once per commit (`SQLite` with `synchronous = FULL`, `PostgreSQL` with
//! `synchronous_commit = on`), so one delivery per transaction caps accepts at the disk's sync
//! rate (and, on `PostgreSQL`, at the pool's connections, each waiting for its own round trip
//! and commit); a batch shares one sync and one statement among all its deliveries, and a 2xx
//! still means the delivery is on disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::dialect::Dialect;
use super::{encode_headers, signed_at, Statements};
use crate::inbox::backend::Accepted;
use crate::inbox::delivery::Delivery;
use crate::inbox::error::{timed, InboxError};

/// How many deliveries one transaction takes at most.
pub(super) const MAX_BATCH: usize = 256;

/// How many bytes (bodies, headers and paths) one transaction takes at most; a single
/// delivery larger than this is a batch of its own.
pub(super) const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How many accepts may wait for the writer before an accept waits to hand its delivery over.
const QUEUE: usize = 1024;

/// A delivery's row, encoded by the accept (so that an encoding error is its own) and bound by
/// the dialect's batch.
#[doc(hidden)]
#[derive(Debug)]
pub struct Row {
    pub(super) key: [u8; 32],
    pub(super) path: String,
    pub(super) headers: String,
    pub(super) body: Bytes,
    pub(super) scheme: String,
    pub(super) event_id: String,
    pub(super) event: Option<String>,
    pub(super) action: Option<String>,
    pub(super) delivery: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) tenant: Option<String>,
    pub(super) signed_at: Option<String>,
    pub(super) version: Option<String>,
}

impl Row {
    fn new(delivery: &Delivery) -> Result<Self, InboxError> {
        let facts = delivery.facts();
        Ok(Self {
            key: *delivery.key().as_bytes(),
            path: delivery.path().to_owned(),
            headers: encode_headers(delivery.headers()),
            body: delivery.body().clone(),
            scheme: facts.scheme.clone(),
            event_id: facts.id.clone(),
            event: facts.event.clone(),
            action: facts.action.clone(),
            delivery: facts.delivery.clone(),
            scope: facts.scope.clone(),
            tenant: facts.tenant.clone(),
            signed_at: signed_at(facts)?,
            version: facts.version.clone(),
        })
    }

    /// What the row weighs in a batch's byte bound.
    fn size(&self) -> usize {
        self.body.len() + self.headers.len() + self.path.len()
    }
}

/// What a dialect's batch writes with: the inbox's pool, its statements, its depth limit.
#[doc(hidden)]
pub struct Target<D: Dialect> {
    pub(super) pool: sqlx::Pool<D::Database>,
    pub(super) sql: Arc<Statements>,
    /// The depth limit, as SQL takes it.
    pub(super) max_depth: i64,
}

/// One accept waiting for its batch's commit.
struct Request {
    row: Row,
    reply: oneshot::Sender<Result<Accepted, InboxError>>,
}

/// The handle the inbox (and each of its clones) holds: the writer ends when the last one is
/// dropped.
#[derive(Clone)]
pub(super) struct Writer {
    sender: mpsc::Sender<Request>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer task on the current Tokio runtime; `wake` is called after a commit
    /// that stored a new delivery (and after a batch whose outcome is unknown).
    pub(super) fn start<D: Dialect>(
        target: Target<D>,
        timeout: Duration,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let task = Task {
            target,
            timeout,
            commits: Arc::clone(&commits),
            wake: Box::new(wake),
        };
        tokio::spawn(task.run(receiver));
        Self { sender, commits }
    }

    /// How many batches the writer has committed.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Hands `delivery` to the writer and waits for its batch's commit (the caller bounds the
    /// wait with the inbox's timeout).
    pub(super) async fn accept(&self, delivery: &Delivery) -> Result<Accepted, InboxError> {
        let row = Row::new(delivery)?;
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Request { row, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> InboxError {
    InboxError::Backend("the inbox's accept writer stopped (its runtime shut down?)".into())
}

/// The writer task's state.
struct Task<D: Dialect> {
    target: Target<D>,
    timeout: Duration,
    commits: Arc<AtomicU64>,
    /// Called after a commit that stored a new delivery (here, not by the accepts: one that
    /// gave up while its batch committed would leave its delivery to the workers' poll).
    wake: Box<dyn Fn() + Send + Sync>,
}

impl<D: Dialect> Task<D> {
    async fn run(self, mut receiver: mpsc::Receiver<Request>) {
        let mut carried: Option<Request> = None;
        loop {
            let first = match carried.take() {
                Some(request) => request,
                None => match receiver.recv().await {
                    Some(request) => request,
                    None => return,
                },
            };
            // What arrived while the previous batch was committing, within the bounds.
            let mut bytes = first.row.size();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                let Ok(next) = receiver.try_recv() else {
                    break;
                };
                if bytes + next.row.size() > MAX_BATCH_BYTES {
                    carried = Some(next);
                    break;
                }
                bytes += next.row.size();
                batch.push(next);
            }
            // An accept that gave up (timed out) is not written: it was answered "may have
            // been stored", and its retry is accepted as new.
            batch.retain(|request| !request.reply.is_closed());
            if batch.is_empty() {
                continue;
            }
            let (requests, rows): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|Request { row, reply }| (reply, row))
                .unzip();
            let written = timed(self.timeout, D::write_accepts(&self.target, &rows)).await;
            match written {
                Ok(answers) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    if answers
                        .iter()
                        .any(|answer| matches!(answer, Ok(Accepted::New)))
                    {
                        // Committed: the workers waiting on this inbox claim at once.
                        (self.wake)();
                    }
                    for (reply, answer) in requests.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                }
                Err(error) => {
                    crate::observe::warn!(
                        %error,
                        deliveries = requests.len(),
                        "inbox accept batch failed; each of its deliveries is answered an error"
                    );
                    // A commit whose answer was lost (a timeout, a cut connection) may have
                    // stored the batch: a spurious wake-up costs one claim.
                    (self.wake)();
                    for reply in requests {
                        let _ = reply.send(Err(each(&error)));
                    }
                }
            }
        }
    }
}

/// The batch's error, for each of its deliveries.
fn each(error: &InboxError) -> InboxError {
    match error {
        InboxError::Timeout => InboxError::Timeout,
        InboxError::Full => InboxError::Full,
        InboxError::Backend(error) => {
            InboxError::Backend(format!("the batch of accepts failed: {error}").into())
        }
    }
}
