//! Redis's group-committed accepts: one writer task per [`RedisInbox`](super::RedisInbox) takes
//! the deliveries that arrived while its previous script call was in flight and stores them
//! with one call of `lua/accept.lua`, answering each only after that call returned.
//!
//! With `appendfsync always`, Redis writes and fsyncs a script's effects before it answers, so
//! a 2xx still means the delivery is on disk. Concurrent calls on one connection already share
//! Redis's fsync (one per event-loop iteration); one call for many deliveries also shares the
//! script's own cost (the call, the prelude, the depth count, the state index's `ZADD`) and
//! the round trip's.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use tokio::sync::{mpsc, oneshot};

use super::backend;
use super::record::encode;
use super::scripts::{Keys, GROUP};
use super::wake::Wake;
use crate::inbox::backend::Accepted;
use crate::inbox::delivery::Delivery;
use crate::inbox::error::{corrupt, timed, InboxError};

/// How many deliveries one script call takes at most.
pub(super) const MAX_BATCH: usize = 256;

/// How many bytes of fields one script call takes at most; a single delivery larger than this
/// is a batch of its own.
pub(super) const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How many accepts may wait for the writer before an accept waits to hand its delivery over.
const QUEUE: usize = 1024;

/// One accept waiting for its batch's call: the delivery's key (hex) and stored fields,
/// encoded by the accept (so that an encoding error is its own).
struct Request {
    key: String,
    fields: Vec<(&'static str, Vec<u8>)>,
    reply: oneshot::Sender<Result<Accepted, InboxError>>,
}

impl Request {
    /// What the request weighs in a batch's byte bound.
    fn size(&self) -> usize {
        self.key.len()
            + self
                .fields
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
    }
}

/// The handle the inbox (and each of its clones) holds: the writer ends when the last one is
/// dropped.
#[derive(Clone)]
pub(super) struct Writer {
    sender: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer task on the current Tokio runtime.
    pub(super) fn start(
        connection: ConnectionManager,
        keys: Arc<Keys>,
        script: Script,
        max_depth: u64,
        timeout: Duration,
        wake: Arc<Wake>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let task = Task {
            connection,
            keys,
            script,
            max_depth: max_depth.to_string(),
            timeout,
            wake,
        };
        tokio::spawn(task.run(receiver));
        Self { sender }
    }

    /// Hands `delivery` to the writer and waits for its batch's call (the caller bounds the
    /// wait with the inbox's timeout).
    pub(super) async fn accept(&self, delivery: &Delivery) -> Result<Accepted, InboxError> {
        let fields = encode(delivery)?;
        let (reply, answer) = oneshot::channel();
        let request = Request {
            key: delivery.key().to_hex(),
            fields,
            reply,
        };
        self.sender.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> InboxError {
    InboxError::Backend("the inbox's accept writer stopped (its runtime shut down?)".into())
}

/// The writer task's state.
struct Task {
    connection: ConnectionManager,
    keys: Arc<Keys>,
    script: Script,
    max_depth: String,
    timeout: Duration,
    /// Woken after a call that stored a new delivery (here, not by the accepts: one that gave
    /// up while its batch was in flight would leave its delivery to the workers' blocking read).
    wake: Arc<Wake>,
}

impl Task {
    async fn run(mut self, mut receiver: mpsc::Receiver<Request>) {
        let mut carried: Option<Request> = None;
        loop {
            let first = match carried.take() {
                Some(request) => request,
                None => match receiver.recv().await {
                    Some(request) => request,
                    None => return,
                },
            };
            // What arrived while the previous call was in flight, within the bounds.
            let mut bytes = first.size();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                let Ok(next) = receiver.try_recv() else {
                    break;
                };
                if bytes + next.size() > MAX_BATCH_BYTES {
                    carried = Some(next);
                    break;
                }
                bytes += next.size();
                batch.push(next);
            }
            // An accept that gave up (timed out) is not written: it was answered "may have
            // been stored", and its retry is accepted as new.
            batch.retain(|request| !request.reply.is_closed());
            if batch.is_empty() {
                continue;
            }
            match timed(self.timeout, self.write(&batch)).await {
                Ok(answers) => {
                    if answers
                        .iter()
                        .any(|answer| matches!(answer, Ok(Accepted::New)))
                    {
                        // Stored: the workers waiting in this process claim at once.
                        self.wake.notify();
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

    /// One call of the accept script for the batch: each delivery's answer, or the error that
    /// failed the call (nothing stored when a read failed, which the script makes before any
    /// write; unknown when the answer was lost, as with any call: the sender's retry is then a
    /// duplicate).
    async fn write(
        &mut self,
        batch: &[Request],
    ) -> Result<Vec<Result<Accepted, InboxError>>, InboxError> {
        let mut invocation = self.script.prepare_invoke();
        for key in self.keys.all() {
            invocation.key(key);
        }
        invocation
            .arg(&self.keys.hash)
            .arg(GROUP)
            .arg(&self.max_depth);
        for request in batch {
            invocation.arg(&request.key).arg(request.fields.len() * 2);
            for (name, value) in &request.fields {
                invocation.arg(*name).arg(value.as_slice());
            }
        }
        let answers: Vec<String> = invocation
            .invoke_async(&mut self.connection)
            .await
            .map_err(backend)?;
        if answers.len() != batch.len() {
            return Err(corrupt(
                "the accept script answered for a different number of deliveries",
            ));
        }
        Ok(answers
            .into_iter()
            .map(|answer| match answer.as_str() {
                "new" => Ok(Accepted::New),
                "full" => Err(InboxError::Full),
                state => state
                    .parse()
                    .map(Accepted::Duplicate)
                    .map_err(crate::inbox::error::backend),
            })
            .collect())
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
