//! The JSON API: the operations of the command line (`tower-webhook inbox ...`), printing the
//! same shapes ([`StatsView`], [`DeliveryRow`], [`DeliveryDetail`]).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum_core::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use crate::idempotency::IdempotencyKey;
use crate::inbox::{
    DeliveryDetail, DeliveryRow, Filter, InboxBackend, Page, Record, Replay, StatsView, Status,
    MAX_PAGE,
};

use super::params::{key, Params};
use super::refusal::Refusal;
use super::Shared;

/// The header of `GET api/deliveries` that carries the cursor of the next page, when there
/// may be one: pass it as `after`.
pub const NEXT_CURSOR: &str = "x-next-cursor";
/// The parameters of a listing.
pub(super) const LIST_PARAMS: &[&str] = &["state", "event", "id", "since", "after", "limit"];
/// The parameters of a bulk replay.
pub(super) const BULK_PARAMS: &[&str] = &["event", "id", "since"];

/// `value` as a `200` JSON answer.
fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET api/stats`: the counts per status and the lag.
pub(super) async fn stats(State(shared): State<Arc<Shared>>) -> Result<Response, Refusal> {
    let stats = shared.inbox.stats().await?;
    Ok(json(&StatsView::of(&stats)))
}

/// `GET api/deliveries`: a JSON array of rows, oldest accepted first; `x-next-cursor` when
/// there may be more (pass it as `after`).
pub(super) async fn list(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    let filter = Params::parse(query.as_deref(), LIST_PARAMS)?.filter()?;
    let page = search(shared.inbox.as_ref(), &filter).await?;
    let rows: Vec<DeliveryRow> = page.records.iter().map(DeliveryRow::of).collect();
    let mut response = json(&rows);
    if let Some(next) = page.next {
        if let Ok(value) = HeaderValue::try_from(next.to_string()) {
            response.headers_mut().insert(NEXT_CURSOR, value);
        }
    }
    Ok(response)
}

/// `GET api/deliveries/{key}`: one delivery in full.
pub(super) async fn show(
    State(shared): State<Arc<Shared>>,
    Path(text): Path<String>,
) -> Result<Response, Refusal> {
    let record = get(shared.inbox.as_ref(), &key(&text)?).await?;
    Ok(json(&DeliveryDetail::of(&record)))
}

/// `POST api/deliveries/{key}/replay[?done=true]`: the row once replayed.
pub(super) async fn replay(
    State(shared): State<Arc<Shared>>,
    Path(text): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    let done = Params::parse(query.as_deref(), &["done"])?.flag("done")?;
    let record = replay_one(shared.inbox.as_ref(), &shared.name, &key(&text)?, done).await?;
    Ok(json(&DeliveryRow::of(&record)))
}

/// What `POST api/deliveries/{key}/purge` answers.
#[derive(Serialize)]
struct Purged<'a> {
    purged: bool,
    key: &'a str,
}

/// `POST api/deliveries/{key}/purge`.
pub(super) async fn purge(
    State(shared): State<Arc<Shared>>,
    Path(text): Path<String>,
) -> Result<Response, Refusal> {
    purge_one(shared.inbox.as_ref(), &key(&text)?).await?;
    Ok(json(&Purged {
        purged: true,
        key: &text.to_ascii_lowercase(),
    }))
}

/// What `POST api/replay` answers.
#[derive(Serialize)]
struct Replayed {
    replayed: u64,
}

/// `POST api/replay?event=&id=&since=`: replays every dead delivery that matches.
pub(super) async fn replay_dead(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    let filter = Params::parse(query.as_deref(), BULK_PARAMS)?.filter()?;
    let replayed = replay_all_dead(shared.inbox.as_ref(), &shared.name, filter).await?;
    Ok(json(&Replayed { replayed }))
}

/// A page of `filter`.
pub(super) async fn search(inbox: &dyn InboxBackend, filter: &Filter) -> Result<Page, Refusal> {
    Ok(inbox.search(filter).await?)
}

/// The delivery under `key`, or `404`.
pub(super) async fn get(inbox: &dyn InboxBackend, key: &IdempotencyKey) -> Result<Record, Refusal> {
    inbox.get(key).await?.ok_or(Refusal::NOT_FOUND)
}

/// Replays the dead (or, with `done`, also the done) delivery under `key`, and reads it back;
/// `404` when there is none, `409` when it is in another state.
pub(super) async fn replay_one(
    inbox: &dyn InboxBackend,
    name: &str,
    key: &IdempotencyKey,
    done: bool,
) -> Result<Record, Refusal> {
    let from = if done {
        Replay::DeadOrDone
    } else {
        Replay::Dead
    };
    if !crate::inbox::replay(inbox, key, from, name).await? {
        get(inbox, key).await?;
        return Err(Refusal::NOT_REPLAYABLE);
    }
    get(inbox, key).await
}

/// Removes the delivery under `key`, or `404`.
pub(super) async fn purge_one(
    inbox: &dyn InboxBackend,
    key: &IdempotencyKey,
) -> Result<(), Refusal> {
    if inbox.purge(key).await? {
        Ok(())
    } else {
        Err(Refusal::NOT_FOUND)
    }
}

/// Replays every dead delivery that `filter` matches (its state, position and size set
/// here), a page at a time; how many it replayed.
pub(super) async fn replay_all_dead(
    inbox: &dyn InboxBackend,
    name: &str,
    mut filter: Filter,
) -> Result<u64, Refusal> {
    filter = filter.status(Status::Dead).limit(MAX_PAGE);
    filter.after = None;
    let mut replayed = 0;
    loop {
        let page = inbox.search(&filter).await?;
        for record in &page.records {
            if crate::inbox::replay(inbox, record.delivery.key(), Replay::Dead, name).await? {
                replayed += 1;
            }
        }
        match page.next {
            Some(next) => filter.after = Some(next),
            None => return Ok(replayed),
        }
    }
}
