//! The SQL backends' side of the group commit of accepts ([`group_commit`]): a delivery's row,
//! as the accept encodes it, and the [`Target`] a [`Dialect`]'s
//! [`write_accepts`](Dialect::write_accepts) writes a batch of them with, in one transaction,
//! for the writer task of each [`SqlInbox`](super::SqlInbox).
//!
//! A database syncs once per commit (`SQLite` with `synchronous = FULL`, `PostgreSQL` with
//! `synchronous_commit = on`), so one delivery per transaction caps accepts at the disk's sync
//! rate (and, on `PostgreSQL`, at the pool's connections, each waiting for its own round trip
//! and commit); a batch shares one sync and one statement among all its deliveries, and a 2xx
//! still means the delivery is on disk.

use std::sync::Arc;

use bytes::Bytes;

use super::dialect::Dialect;
use super::{encode_headers, signed_at, Statements};
use crate::inbox::backend::{Accepted, InboxFuture};
use crate::inbox::delivery::Delivery;
use crate::inbox::error::InboxError;
use crate::inbox::group_commit::{self, WriteBatch};

/// The group commit's writer of a SQL inbox.
pub(super) type Writer<D> = group_commit::Writer<Target<D>>;

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
    /// The row of `delivery` (an error when its facts cannot be stored).
    pub(super) fn new(delivery: &Delivery) -> Result<Self, InboxError> {
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

/// One transaction per batch: the dialect's [`write_accepts`](Dialect::write_accepts).
impl<D: Dialect> WriteBatch for Target<D> {
    type Row = Row;

    fn size(row: &Row) -> usize {
        row.size()
    }

    fn write<'a>(&'a self, rows: &'a [Row]) -> InboxFuture<'a, Vec<Result<Accepted, InboxError>>> {
        D::write_accepts(self, rows)
    }
}
