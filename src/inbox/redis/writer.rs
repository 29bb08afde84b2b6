//! Redis's side of the group commit of accepts ([`group_commit`]): a delivery's row (its key
//! and stored fields, as the accept encodes them), and one call of `lua/accept.lua` for each
//! batch the writer task of a [`RedisInbox`](super::RedisInbox) gathers.
//!
//! With `appendfsync always`, Redis writes and fsyncs a script's effects before it answers, so
//! a 2xx still means the delivery is on disk. Concurrent calls on one connection already share
//! Redis's fsync (one per event-loop iteration); one call for many deliveries also shares the
//! script's own cost (the call, the prelude, the depth count, the state index's `ZADD`) and
//! the round trip's.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::Script;

use super::backend;
use super::record::encode;
use super::scripts::{Keys, GROUP};
use crate::inbox::backend::{Accepted, InboxFuture};
use crate::inbox::delivery::Delivery;
use crate::inbox::error::InboxError;
use crate::inbox::group_commit::{self, WriteBatch};

/// The group commit's writer of a Redis inbox.
pub(super) type Writer = group_commit::Writer<Accepts>;

/// A delivery as the accept script takes it: its key (hex) and stored fields, encoded by the
/// accept (so that an encoding error is its own).
pub(super) struct Row {
    key: String,
    fields: Vec<(&'static str, Vec<u8>)>,
}

impl Row {
    /// The row of `delivery` (an error when its facts cannot be stored).
    pub(super) fn new(delivery: &Delivery) -> Result<Self, InboxError> {
        Ok(Self {
            key: delivery.key().to_hex(),
            fields: encode(delivery)?,
        })
    }
}

/// What writes each batch: the accept script, on the inbox's connection.
pub(super) struct Accepts {
    pub(super) connection: ConnectionManager,
    pub(super) keys: Arc<Keys>,
    pub(super) script: Script,
    /// The depth limit, as the script takes it.
    pub(super) max_depth: String,
}

/// One call of the accept script per batch.
impl WriteBatch for Accepts {
    type Row = Row;

    /// The key's and the fields' bytes.
    fn size(row: &Row) -> usize {
        row.key.len()
            + row
                .fields
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
    }

    /// Each delivery's answer, or the error that failed the call (nothing stored when a read
    /// failed, which the script makes before any write; unknown when the answer was lost, as
    /// with any call: the sender's retry is then a duplicate).
    fn write<'a>(&'a self, rows: &'a [Row]) -> InboxFuture<'a, Vec<Result<Accepted, InboxError>>> {
        Box::pin(async move {
            let mut invocation = self.script.prepare_invoke();
            for key in self.keys.all() {
                invocation.key(key);
            }
            invocation
                .arg(&self.keys.hash)
                .arg(GROUP)
                .arg(&self.max_depth);
            for row in rows {
                invocation.arg(&row.key).arg(row.fields.len() * 2);
                for (name, value) in &row.fields {
                    invocation.arg(*name).arg(value.as_slice());
                }
            }
            let answers: Vec<String> = invocation
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(backend)?;
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
        })
    }
}
