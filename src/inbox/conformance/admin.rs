//! The conformance checks of what the admin tools read: [`search`](InboxBackend::search) (each
//! filter, and paging with the cursor), the retrying count of [`stats`](InboxBackend::stats),
//! and each delivery's history.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;

use super::{bare, broken, call, expect, expect_accept, only_claim, Lease, LONG};
use crate::idempotency::{IdempotencyKey, Token};
use crate::inbox::backend::{Accepted, Finish, InboxBackend, Replay};
use crate::inbox::delivery::{Delivery, Facts, HistoryKind, Record, Status, HISTORY_LIMIT};
use crate::inbox::query::{Cursor, Filter};

/// How many deliveries are accepted at once to be paged through (many of them in the same
/// instant, as the backend's clock tells it).
const BURST: usize = 30;

/// A bare delivery of event type `event`.
fn of_event(name: &str, event: &str) -> Delivery {
    let mut facts = Facts::new("conformance", format!("evt_{name}"));
    facts.event = Some(event.to_owned());
    Delivery::from_facts(
        facts,
        IdempotencyKey::new("conformance", &Token::random().to_hex(), name),
        "/",
        [],
        Bytes::new(),
    )
}

/// The keys of `records`.
fn keys(records: &[Record]) -> HashSet<IdempotencyKey> {
    records
        .iter()
        .map(|record| *record.delivery.key())
        .collect()
}

/// The keys of `deliveries`.
fn keys_of(deliveries: &[&Delivery]) -> HashSet<IdempotencyKey> {
    deliveries.iter().map(|delivery| *delivery.key()).collect()
}

/// Every delivery `filter` matches, page after page (`filter`'s limit each), each next page
/// asked with the previous page's cursor as written and read back: checks that pages are in
/// order, no larger than the limit, with a cursor exactly when full.
async fn every_page<B: InboxBackend>(inbox: &B, filter: Filter) -> Vec<Record> {
    let limit = filter.limit_or_default();
    let mut all: Vec<Record> = Vec::new();
    let mut filter = filter;
    loop {
        let page = call(inbox.search(&filter)).await;
        expect(
            page.records.len() <= limit,
            "search returns at most its limit",
        );
        expect(
            page.next.is_some() == (page.records.len() == limit),
            "search gives a cursor to the next page exactly when its page is full",
        );
        all.extend(page.records);
        let Some(next) = page.next else {
            break;
        };
        let next: Cursor = next
            .to_string()
            .parse()
            .unwrap_or_else(|_| broken("a page's cursor is read back from its text", "unread"));
        filter = filter.after(next);
        if all.len() > 10_000 {
            broken(
                "paging through a search ends",
                "more than 10,000 deliveries",
            );
        }
    }
    expect(
        all.windows(2)
            .all(|pair| Cursor::of(&pair[0]) < Cursor::of(&pair[1])),
        "search pages go on in order (accepted, then key): no delivery repeated or out of order",
    );
    all
}

/// The event type of most deliveries [`search`] makes.
const CREATED: &str = "member.created";
/// The event type of the others.
const DELETED: &str = "member.deleted";

/// Deliveries in every status: three waiting (the last of event type [`DELETED`]), one
/// running, one retrying, one dead (of type [`DELETED`]), one done.
struct Fixture {
    waiting: [Delivery; 3],
    running: Delivery,
    retrying: Delivery,
    dead: Delivery,
    done: Delivery,
}

impl Fixture {
    fn new() -> Self {
        Self {
            waiting: [
                of_event("search-w1", CREATED),
                of_event("search-w2", CREATED),
                of_event("search-w3", DELETED),
            ],
            running: of_event("search-running", CREATED),
            retrying: of_event("search-retrying", CREATED),
            dead: of_event("search-dead", DELETED),
            done: of_event("search-done", CREATED),
        }
    }

    fn everyone(&self) -> Vec<&Delivery> {
        self.waiting
            .iter()
            .chain([&self.running, &self.retrying, &self.dead, &self.done])
            .collect()
    }
}

/// `search` by each condition and paged, and the retrying count of `stats`, over deliveries in
/// every status.
pub(super) async fn search<B: InboxBackend>(inbox: &B) {
    let fixture = Fixture::new();
    in_every_status(inbox, &fixture).await;
    let all = by_condition(inbox, &fixture).await;
    since(inbox, &all).await;
    paged(inbox, &fixture).await;
}

/// Accepts the deliveries of `fixture` and puts each in its status.
async fn in_every_status<B: InboxBackend>(inbox: &B, fixture: &Fixture) {
    let everyone = fixture.everyone();
    for delivery in &everyone {
        expect_accept(
            inbox,
            delivery,
            Accepted::New,
            "accept of a new key gives New",
        )
        .await;
    }
    let claims = call(inbox.claim(LONG, everyone.len())).await;
    expect(
        claims.len() == everyone.len(),
        "claim takes every due delivery up to its limit",
    );
    for claim in claims {
        let key = claim.lease.key();
        let recorded = if key == fixture.retrying.key() {
            call(inbox.retry(&claim.lease, LONG, "search 500")).await
        } else if key == fixture.dead.key() {
            call(inbox.dead_letter(&claim.lease, "search gave up")).await
        } else if key == fixture.done.key() {
            call(inbox.complete(&claim.lease)).await
        } else if key == fixture.running.key() {
            true
        } else {
            // Released: pending, its attempt not counted, so waiting again.
            call(inbox.release(&claim.lease)).await
        };
        expect(recorded, "an outcome by the owner returns true");
    }
}

/// `stats`, and `search` by each condition over `fixture` (in every status); returns every
/// delivery, in order.
async fn by_condition<B: InboxBackend>(inbox: &B, fixture: &Fixture) -> Vec<Record> {
    let Fixture {
        waiting,
        running,
        retrying,
        dead,
        done,
    } = fixture;
    let everyone = fixture.everyone();
    let stats = call(inbox.stats()).await;
    expect(
        (stats.pending, stats.retrying, stats.waiting()) == (4, 1, 3),
        "stats count the pending deliveries attempted already as retrying, the others waiting",
    );
    expect(
        (stats.running, stats.dead, stats.done) == (1, 1, 1),
        "stats count deliveries by state",
    );

    let all = call(inbox.search(&Filter::new())).await;
    expect(
        keys(&all.records) == keys_of(&everyone) && all.records.len() == everyone.len(),
        "search without a condition returns every delivery, each once",
    );
    expect(
        all.next.is_none(),
        "search gives no cursor when its page is not full",
    );
    expect(
        all.records
            .windows(2)
            .all(|pair| Cursor::of(&pair[0]) < Cursor::of(&pair[1])),
        "search returns the oldest accepted first, then by key",
    );

    for (status, expected) in [
        (Status::Waiting, waiting.iter().collect::<Vec<_>>()),
        (Status::Running, vec![running]),
        (Status::Retrying, vec![retrying]),
        (Status::Dead, vec![dead]),
        (Status::Done, vec![done]),
    ] {
        let page = call(inbox.search(&Filter::new().status(status))).await;
        expect(
            keys(&page.records) == keys_of(&expected)
                && page.records.iter().all(|record| record.status() == status),
            &format!(
                "search by status {status} returns exactly the deliveries in it (a pending one \
                 attempted already is retrying, not waiting)"
            ),
        );
    }
    let page = call(inbox.search(&Filter::new().event(DELETED))).await;
    expect(
        keys(&page.records) == keys_of(&[&waiting[2], dead]),
        "search by event returns exactly the deliveries of that event type",
    );
    let page = call(inbox.search(&Filter::new().event(DELETED).status(Status::Waiting))).await;
    expect(
        keys(&page.records) == keys_of(&[&waiting[2]]),
        "search by event and status returns the deliveries meeting both",
    );
    let page = call(inbox.search(&Filter::new().id("evt_search-retrying"))).await;
    expect(
        keys(&page.records) == keys_of(&[retrying])
            && page.records[0].last_error.as_deref() == Some("search 500"),
        "search by event id returns the delivery with that id, as get shows it",
    );
    expect(
        call(inbox.search(&Filter::new().event("no.such.event")))
            .await
            .records
            .is_empty(),
        "search by an event type nobody sent returns nothing",
    );
    all.records
}

/// Paging with the cursor through `fixture` (in every status), then through a burst of
/// deliveries accepted at once.
async fn paged<B: InboxBackend>(inbox: &B, fixture: &Fixture) {
    let everyone = fixture.everyone();
    let waiting = fixture.waiting.iter().collect::<Vec<_>>();
    // Three pages of 3, 3 and 1; the waiting deliveries fill one page exactly, and the page
    // after it is empty.
    let paged = every_page(inbox, Filter::new().limit(3)).await;
    expect(
        keys(&paged) == keys_of(&everyone) && paged.len() == everyone.len(),
        "paging with the cursor returns every delivery once",
    );
    let paged = every_page(inbox, Filter::new().status(Status::Waiting).limit(3)).await;
    expect(
        keys(&paged) == keys_of(&waiting),
        "paging with the cursor past a full last page returns every delivery once",
    );

    // A burst accepted at once: many in the same instant, told apart by their keys.
    let burst: Vec<Delivery> = (0..BURST)
        .map(|n| of_event(&format!("search-burst-{n}"), CREATED))
        .collect();
    for answer in join_all(burst.iter().map(|delivery| inbox.accept(delivery))).await {
        expect(
            matches!(answer, Ok(Accepted::New)),
            "accept of a new key gives New",
        );
    }
    let paged = every_page(inbox, Filter::new().status(Status::Waiting).limit(4)).await;
    let mut expected = keys_of(&burst.iter().collect::<Vec<_>>());
    expected.extend(keys_of(&waiting));
    expect(
        keys(&paged) == expected && paged.len() == expected.len(),
        "paging through deliveries accepted in the same instant returns each once",
    );
    let paged = every_page(inbox, Filter::new().event(CREATED).limit(7)).await;
    expect(
        paged.len() == BURST + 5,
        "paging by event returns each delivery of that type once",
    );
}

/// `search` by time accepted, around the times of `records` (every delivery, in order).
async fn since<B: InboxBackend>(inbox: &B, records: &[Record]) {
    let Some(middle) = records.get(records.len() / 2) else {
        return;
    };
    let from = middle.accepted_at;
    let page = call(inbox.search(&Filter::new().since(from))).await;
    let expected: Vec<&Record> = records.iter().filter(|r| r.accepted_at >= from).collect();
    expect(
        keys(&page.records) == expected.iter().map(|r| *r.delivery.key()).collect(),
        "search since a time returns the deliveries accepted at or after it",
    );
    let just_after = from + Duration::from_nanos(1);
    let page = call(inbox.search(&Filter::new().since(just_after))).await;
    let expected: Vec<&Record> = records.iter().filter(|r| r.accepted_at > from).collect();
    expect(
        keys(&page.records) == expected.iter().map(|r| *r.delivery.key()).collect(),
        "search since a time between two deliveries' leaves out the earlier one",
    );
    let latest = records.iter().map(|r| r.accepted_at).max().unwrap_or(from);
    expect(
        call(inbox.search(&Filter::new().since(latest + Duration::from_secs(86_400))))
            .await
            .records
            .is_empty(),
        "search since a time after every delivery returns nothing",
    );
}

/// One expected history entry: attempt, kind, error.
type Entry = (u32, HistoryKind, Option<&'static str>);

/// Checks that `record`'s history is `expected` (the last [`HISTORY_LIMIT`] of it), in order,
/// at times that never go back.
fn history_is(record: &Record, expected: &[Entry], rule: &str) {
    let start = expected.len().saturating_sub(HISTORY_LIMIT);
    let same = record.history.len() == expected.len() - start
        && record
            .history
            .iter()
            .zip(&expected[start..])
            .all(|(entry, (attempt, kind, error))| {
                entry.attempt == *attempt && entry.kind == *kind && entry.error.as_deref() == *error
            });
    if !same {
        broken(rule, &format!("{:?}", record.history));
    }
    expect(
        record
            .history
            .windows(2)
            .all(|pair| pair[0].at <= pair[1].at),
        "history entries are in the order they happened, their times never going back",
    );
}

/// The delivery stored under `key`, which must be there.
async fn stored<B: InboxBackend>(inbox: &B, key: &IdempotencyKey) -> Record {
    call(inbox.get(key))
        .await
        .unwrap_or_else(|| broken("get finds an accepted delivery", "None"))
}

/// A delivery's history through retry, dead letter, replay, release and completion, single and
/// batched, and past [`HISTORY_LIMIT`]: checked only when the backend keeps one.
pub(super) async fn history<B: InboxBackend>(inbox: &B) {
    let delivery = bare("history");
    expect_accept(
        inbox,
        &delivery,
        Accepted::New,
        "accept of a new key gives New",
    )
    .await;
    let key = *delivery.key();
    expect(
        stored(inbox, &key).await.history.is_empty(),
        "an accepted delivery has no history",
    );
    let lease = only_claim(inbox, LONG, "claim returns the due delivery").await;
    expect(
        call(inbox.retry(&lease, Duration::ZERO, "boom 1")).await,
        "retry by the owner returns true",
    );
    if stored(inbox, &key).await.history.is_empty() {
        // A backend that keeps no history (the trait allows it): nothing more to check.
        return;
    }
    let mut expected: Vec<Entry> = vec![(1, HistoryKind::Retried, Some("boom 1"))];
    single_outcomes(inbox, &lease, &mut expected).await;
    batched_outcomes(inbox, &key, &mut expected).await;
    beyond_the_limit(inbox, &key, &mut expected).await;
}

/// The history after the single calls, from a first retry by `lease` (in `expected`).
async fn single_outcomes<B: InboxBackend>(inbox: &B, lease: &Lease, expected: &mut Vec<Entry>) {
    let key = *lease.key();
    history_is(
        &stored(inbox, &key).await,
        expected,
        "history records a retry with its attempt and error",
    );
    expect(
        !call(inbox.retry(lease, Duration::ZERO, "stale")).await,
        "retry of a pending delivery is refused",
    );
    let lease = only_claim(inbox, LONG, "a retry with no delay is due at once").await;
    expect(
        call(inbox.dead_letter(&lease, "gave up")).await,
        "dead_letter by the owner returns true",
    );
    expected.push((2, HistoryKind::Dead, Some("gave up")));
    expect(
        call(inbox.replay(&key, Replay::Dead)).await,
        "replay of a dead delivery returns true",
    );
    expected.push((2, HistoryKind::Replayed, None));
    let lease = only_claim(inbox, LONG, "a replayed delivery is due at once").await;
    expect(
        call(inbox.release(&lease)).await,
        "release by the owner returns true",
    );
    expected.push((1, HistoryKind::Released, None));
    let lease = only_claim(inbox, LONG, "a released delivery is due at once").await;
    expect(
        call(inbox.complete(&lease)).await,
        "complete by the owner returns true",
    );
    expected.push((1, HistoryKind::Done, None));
    history_is(
        &stored(inbox, &key).await,
        expected,
        "history records retry, dead letter, replay (with the attempts it reset), release and \
         completion, in order, with their attempts and errors",
    );
    expect(
        !call(inbox.complete(&lease)).await,
        "complete of a done delivery is refused",
    );
    history_is(
        &stored(inbox, &key).await,
        expected,
        "a refused outcome adds nothing to the history",
    );
}

/// The history after the same outcomes recorded in batches, from a done delivery.
async fn batched_outcomes<B: InboxBackend>(
    inbox: &B,
    key: &IdempotencyKey,
    expected: &mut Vec<Entry>,
) {
    expect(
        call(inbox.replay(key, Replay::DeadOrDone)).await,
        "replay of a done delivery, asked explicitly, returns true",
    );
    expected.push((1, HistoryKind::Replayed, None));
    for (attempt, finish, entry) in [
        (
            1,
            Finish::Retry {
                delay: Duration::ZERO,
                error: "batch 500".into(),
            },
            (1, HistoryKind::Retried, Some("batch 500")),
        ),
        (2, Finish::Release, (2, HistoryKind::Released, None)),
        (
            2,
            Finish::Dead {
                error: "batch gave up".into(),
            },
            (2, HistoryKind::Dead, Some("batch gave up")),
        ),
    ] {
        let lease = only_claim(inbox, LONG, "a due delivery is claimed").await;
        expect(lease.attempt() == attempt, "claim counts each attempt");
        expect(
            call(inbox.finish(&[(lease, finish)])).await == [true],
            "finish by the owner returns true",
        );
        expected.push(entry);
    }
    expect(
        call(inbox.replay(key, Replay::Dead)).await,
        "replay of a dead delivery returns true",
    );
    expected.push((2, HistoryKind::Replayed, None));
    let lease = only_claim(inbox, LONG, "a replayed delivery is due at once").await;
    expect(
        call(inbox.finish(&[(lease, Finish::Done)])).await == [true],
        "finish by the owner returns true",
    );
    expected.push((1, HistoryKind::Done, None));
    history_is(
        &stored(inbox, key).await,
        expected,
        "history records the outcomes of a batch as those of the single calls",
    );
    let listed = call(inbox.search(&Filter::new().id("evt_history"))).await;
    expect(
        listed.records.len() == 1 && listed.records[0].history == stored(inbox, key).await.history,
        "search shows a delivery's history as get does",
    );
}

/// Past the limit, the oldest entries go.
async fn beyond_the_limit<B: InboxBackend>(
    inbox: &B,
    key: &IdempotencyKey,
    expected: &mut Vec<Entry>,
) {
    expect(
        call(inbox.replay(key, Replay::DeadOrDone)).await,
        "replay of a done delivery, asked explicitly, returns true",
    );
    expected.push((1, HistoryKind::Replayed, None));
    while expected.len() < HISTORY_LIMIT + 3 {
        let lease = only_claim(inbox, LONG, "a released delivery is due at once").await;
        expect(
            call(inbox.release(&lease)).await,
            "release by the owner returns true",
        );
        expected.push((1, HistoryKind::Released, None));
    }
    history_is(
        &stored(inbox, key).await,
        expected,
        "history keeps the last HISTORY_LIMIT entries, oldest first",
    );
}
