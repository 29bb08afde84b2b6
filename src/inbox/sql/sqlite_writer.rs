//! `SQLite`'s group commit: one writer task per [`SqliteInbox`](super::SqliteInbox) takes the
//! deliveries that arrived while its previous commit was syncing, inserts them in one
//! `BEGIN IMMEDIATE` transaction, and answers each only after that transaction committed.
//!
//! `SQLite` syncs once per commit (`synchronous = FULL`), so one delivery per transaction caps
//! accepts at the disk's sync rate; a batch shares one sync among all its deliveries, and a 2xx
//! still means the delivery is on disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::wake::Wakeups;
use super::{encode_headers, signed_at, sql};
use crate::inbox::backend::Accepted;
use crate::inbox::delivery::Delivery;
use crate::inbox::error::{backend, timed, InboxError};

/// How many deliveries one transaction takes at most.
pub(super) const MAX_BATCH: usize = 256;

/// How many bytes (bodies, headers and paths) one transaction takes at most; a single
/// delivery larger than this is a batch of its own.
pub(super) const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How many accepts may wait for the writer before an accept waits to hand its delivery over.
const QUEUE: usize = 1024;

/// A delivery's row, encoded by the accept (so that an encoding error is its own) and bound by
/// the writer.
struct Row {
    key: [u8; 32],
    path: String,
    headers: String,
    body: Bytes,
    scheme: String,
    event_id: String,
    event: Option<String>,
    action: Option<String>,
    delivery: Option<String>,
    scope: Option<String>,
    tenant: Option<String>,
    signed_at: Option<String>,
    version: Option<String>,
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

/// One accept waiting for its batch's commit.
struct Request {
    row: Row,
    reply: oneshot::Sender<Result<Accepted, InboxError>>,
}

/// The statements the writer runs, with the table's name in them.
pub(super) struct WriterStatements {
    /// The insert (`ON CONFLICT DO NOTHING`, and only while the depth counter is below `$14`).
    pub(super) accept: String,
    /// A key's state and the depth counter.
    pub(super) state_of: String,
}

/// The handle the inbox (and each of its clones) holds: the writer ends when the last one is
/// dropped.
#[derive(Clone)]
pub(super) struct Writer {
    sender: mpsc::Sender<Request>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer task on the current Tokio runtime.
    pub(super) fn start(
        pool: SqlitePool,
        statements: WriterStatements,
        max_depth: u64,
        timeout: Duration,
        wake: Arc<Wakeups>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let task = Task {
            pool,
            statements,
            max_depth: i64::try_from(max_depth).unwrap_or(i64::MAX),
            timeout,
            commits: Arc::clone(&commits),
            wake,
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
struct Task {
    pool: SqlitePool,
    statements: WriterStatements,
    max_depth: i64,
    timeout: Duration,
    commits: Arc<AtomicU64>,
    /// Woken after a commit that stored a new delivery (here, not by the accepts: one that
    /// gave up while its batch committed would leave its delivery to the workers' poll).
    wake: Arc<Wakeups>,
}

impl Task {
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
            let written = timed(self.timeout, self.write(&batch)).await;
            match written {
                Ok(answers) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    if answers
                        .iter()
                        .any(|answer| matches!(answer, Ok(Accepted::New)))
                    {
                        // Committed: the workers waiting on this inbox claim at once.
                        self.wake.wake();
                    }
                    for (request, answer) in batch.into_iter().zip(answers) {
                        let _ = request.reply.send(answer);
                    }
                }
                Err(error) => {
                    crate::observe::warn!(
                        %error,
                        deliveries = batch.len(),
                        "inbox accept batch failed; each of its deliveries is answered an error"
                    );
                    for request in batch {
                        let _ = request.reply.send(Err(each(&error)));
                    }
                }
            }
        }
    }

    /// Inserts the batch in one transaction and commits it: each delivery's answer, or the
    /// error that failed the whole batch (nothing of it committed, or, for an error of the
    /// commit itself, unknown, as with any commit whose answer was lost).
    ///
    /// A statement that fails fails the batch: `SQLite` rolls a whole transaction back on some
    /// errors (a full disk, an I/O error), after which the remaining inserts would run (and
    /// commit) on their own.
    async fn write(
        &self,
        batch: &[Request],
    ) -> Result<Vec<Result<Accepted, InboxError>>, InboxError> {
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(sql)?;
        let mut answers = Vec::with_capacity(batch.len());
        for request in batch {
            answers.push(self.insert(&mut transaction, &request.row).await?);
        }
        transaction.commit().await.map_err(sql)?;
        Ok(answers)
    }

    /// One delivery's insert, in the batch's transaction. The depth limit is exact: the insert
    /// reads the counter that the schema's triggers keep, and the batch's own earlier inserts
    /// have already moved it in this transaction; a conflict's state is read in the same
    /// transaction (holding the write lock), so no purge can remove it in between.
    async fn insert(
        &self,
        transaction: &mut Transaction<'static, Sqlite>,
        row: &Row,
    ) -> Result<Result<Accepted, InboxError>, InboxError> {
        let inserted = sqlx::query(&self.statements.accept)
            .bind(row.key.as_slice())
            .bind(row.path.as_str())
            .bind(row.headers.as_str())
            .bind(row.body.as_ref())
            .bind(row.scheme.as_str())
            .bind(row.event_id.as_str())
            .bind(row.event.as_deref())
            .bind(row.action.as_deref())
            .bind(row.delivery.as_deref())
            .bind(row.scope.as_deref())
            .bind(row.tenant.as_deref())
            .bind(row.signed_at.as_deref())
            .bind(row.version.as_deref())
            .bind(self.max_depth)
            .execute(&mut **transaction)
            .await
            .map_err(sql)?;
        if inserted.rows_affected() > 0 {
            return Ok(Ok(Accepted::New));
        }
        let (state, _depth): (Option<String>, i64) = sqlx::query_as(&self.statements.state_of)
            .bind(row.key.as_slice())
            .fetch_one(&mut **transaction)
            .await
            .map_err(sql)?;
        Ok(match state {
            // A key stored earlier, or earlier in this batch (then pending).
            Some(state) => state.parse().map(Accepted::Duplicate).map_err(backend),
            None => Err(InboxError::Full),
        })
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
