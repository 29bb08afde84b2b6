//! `tower-webhook inbox ...`: stats, list, show, replay and purge, on any backend, through
//! the library's admin API (`InboxBackend::search`, `get`, `replay`, `purge`, `stats`) and
//! printed as its view structs (`StatsView`, `DeliveryRow`, `DeliveryDetail`): the JSON the
//! admin page's API prints too.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tower_webhook::idempotency::IdempotencyKey;
use tower_webhook::inbox::{
    Cursor, DeliveryDetail, DeliveryRow, Filter, InboxBackend, InboxOptions, PostgresInbox, Record,
    RedisInbox, Replay, SqliteInbox, StatsView, Status, MAX_PAGE,
};
use tower_webhook::observe::DEFAULT_INBOX_NAME;
use tower_webhook::time::OffsetDateTime;

use crate::args::{FilterArgs, InboxCommand, Store, Targets};
use crate::exit::{self, Exit};
use crate::output::{self, cut, json_line, table};
use crate::since;

/// How much of a body `show` prints without `--full`.
const BODY_PREVIEW: usize = 4 * 1024;
/// How many of an ambiguous id's keys are listed.
const AMBIGUOUS_SHOWN: usize = 10;

/// Runs an inbox command.
pub(crate) async fn run(command: InboxCommand) -> anyhow::Result<Exit> {
    match command {
        InboxCommand::Stats { store, json } => stats(&*open(&store).await?, json).await,
        InboxCommand::List {
            store,
            filter,
            limit,
            after,
            json,
        } => {
            let filter = list_filter(&filter, after.as_deref())?;
            if limit == 0 {
                return Err(exit::usage("--limit must be at least 1"));
            }
            list(&*open(&store).await?, filter, limit, json).await
        }
        InboxCommand::Show {
            store,
            ids,
            full,
            json,
        } => show(&*open(&store).await?, &ids, full, json).await,
        InboxCommand::Replay {
            store,
            targets,
            dead,
            include_done,
            json,
        } => {
            let from = if include_done {
                Replay::DeadOrDone
            } else {
                Replay::Dead
            };
            act(&store, &targets, dead, Action::Replay(from), json).await
        }
        InboxCommand::Purge {
            store,
            targets,
            dead,
            yes: _,
            json,
        } => act(&store, &targets, dead, Action::Purge, json).await,
    }
}

/// `replay` or `purge`: of the ids given, or with `dead` of every dead delivery the filters
/// match.
async fn act(
    store: &Store,
    targets: &Targets,
    dead: bool,
    action: Action,
    json: bool,
) -> anyhow::Result<Exit> {
    if dead {
        let filter = dead_filter(targets.event.clone(), targets.since.as_deref())?;
        bulk(&*open(store).await?, &filter, targets.page, action, json).await
    } else {
        each(&*open(store).await?, &targets.ids, action, json).await
    }
}

/// Opens the inbox `store` names: `SQLite` (the file must exist: the command line never
/// creates an inbox), `PostgreSQL` or Redis.
async fn open(store: &Store) -> anyhow::Result<Box<dyn InboxBackend>> {
    let options = InboxOptions::new()
        .with_prefix(&store.prefix)
        .map_err(|error| exit::usage(format!("--prefix {:?}: {error}", store.prefix)))?
        .with_timeout(Duration::from_secs(store.timeout.max(1)));
    let url = store.url.as_str();
    let unreachable = |error: tower_webhook::inbox::InboxError| {
        let hint = match error {
            tower_webhook::inbox::InboxError::Timeout => format!(
                " (no answer within {} s: is the server up and reachable at that address? \
                 check --url or INBOX_URL; --timeout waits longer)",
                store.timeout.max(1)
            ),
            _ => String::new(),
        };
        exit::unreachable(format!(
            "cannot open the inbox at {}: {error}{hint}",
            redact(url)
        ))
    };
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || !std::path::Path::new(path).is_file() {
            return Err(exit::unreachable(format!(
                "no SQLite inbox at {path:?} (the file does not exist): give --url or \
                 INBOX_URL the file your application opens (the inbox demo's is \
                 sqlite:tower-webhook-inbox.db)"
            )));
        }
        let inbox = SqliteInbox::connect(url, options)
            .await
            .map_err(unreachable)?;
        return Ok(Box::new(inbox));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let inbox = PostgresInbox::connect(url, options)
            .await
            .map_err(unreachable)?;
        return Ok(Box::new(inbox));
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://") {
        let inbox = RedisInbox::connect(url, options)
            .await
            .map_err(unreachable)?;
        return Ok(Box::new(inbox));
    }
    Err(exit::usage(format!(
        "--url {}: not an inbox URL (sqlite:PATH, postgres://..., redis://...)",
        redact(url)
    )))
}

/// `url` without the password it may carry (`postgres://user:secret@host`).
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

async fn stats(inbox: &dyn InboxBackend, json: bool) -> anyhow::Result<Exit> {
    let view = StatsView::of(&inbox.stats().await?);
    if json {
        json_line(&view)?;
        return Ok(Exit::Ok);
    }
    let mut counts = table(&["STATE", "COUNT"]);
    for (state, count) in [
        ("waiting", view.waiting),
        ("running", view.running),
        ("retrying", view.retrying),
        ("dead", view.dead),
        ("done", view.done),
    ] {
        counts.add_row(vec![state.to_owned(), count.to_string()]);
    }
    output::line(&counts.to_string());
    output::line(&format!(
        "lag: {} (how long the oldest waiting delivery has waited)",
        human_duration(Duration::from_millis(view.lag_ms))
    ));
    Ok(Exit::Ok)
}

/// The filter of `list`: status, event, since and the cursor.
fn list_filter(args: &FilterArgs, after: Option<&str>) -> anyhow::Result<Filter> {
    let mut filter = Filter::new();
    if let Some(state) = args.state {
        filter = filter.status(state.into());
    }
    if let Some(event) = &args.event {
        filter = filter.event(event);
    }
    if let Some(text) = &args.since {
        filter = filter.since(since::parse(text, OffsetDateTime::now_utc()).map_err(exit::usage)?);
    }
    if let Some(text) = after {
        let cursor: Cursor = text
            .parse()
            .map_err(|error| exit::usage(format!("--after {text:?}: {error}")))?;
        filter = filter.after(cursor);
    }
    Ok(filter)
}

/// The filter of a bulk replay or purge: dead, of `event`, accepted since `since`.
fn dead_filter(event: Option<String>, since: Option<&str>) -> anyhow::Result<Filter> {
    let mut filter = Filter::new().status(Status::Dead);
    if let Some(event) = event {
        filter = filter.event(event);
    }
    if let Some(text) = since {
        filter = filter.since(since::parse(text, OffsetDateTime::now_utc()).map_err(exit::usage)?);
    }
    Ok(filter)
}

async fn list(
    inbox: &dyn InboxBackend,
    mut filter: Filter,
    limit: usize,
    json: bool,
) -> anyhow::Result<Exit> {
    let mut rows = Vec::new();
    let mut next = None;
    while rows.len() < limit {
        filter = filter.limit((limit - rows.len()).min(MAX_PAGE));
        let page = inbox.search(&filter).await?;
        rows.extend(page.records.iter().map(DeliveryRow::of));
        next = page.next;
        match page.next {
            Some(cursor) if rows.len() < limit => filter = filter.after(cursor),
            _ => break,
        }
    }
    if json {
        for row in &rows {
            json_line(row)?;
        }
    } else if rows.is_empty() {
        output::line("no deliveries match");
    } else {
        let mut listing = table(&[
            "ID",
            "SCHEME",
            "EVENT",
            "PATH",
            "STATE",
            "ATTEMPTS",
            "ACCEPTED",
            "LAST ERROR",
        ]);
        for row in &rows {
            listing.add_row(vec![
                cut(&row.id, 40),
                row.scheme.clone(),
                row.event.clone().unwrap_or_default(),
                row.path.clone(),
                row.state.to_owned(),
                row.attempts.to_string(),
                row.accepted_at.clone(),
                cut(row.last_error.as_deref().unwrap_or_default(), 60),
            ]);
        }
        output::line(&listing.to_string());
    }
    if let Some(cursor) = next {
        eprintln!("more: --after {cursor}");
    }
    Ok(Exit::Ok)
}

/// What an id names.
enum Found {
    One(Box<Record>),
    Nothing,
    /// Several deliveries share the event id: their keys.
    Several(Vec<String>),
}

/// The delivery `id` names: a key (64 hex digits) first, else the sender's event id.
async fn resolve(inbox: &dyn InboxBackend, id: &str) -> anyhow::Result<Found> {
    if let Some(key) = IdempotencyKey::from_hex(id) {
        if let Some(record) = inbox.get(&key).await? {
            return Ok(Found::One(Box::new(record)));
        }
    }
    let page = inbox
        .search(&Filter::new().id(id).limit(AMBIGUOUS_SHOWN))
        .await?;
    let mut records = page.records;
    Ok(match records.len() {
        0 => Found::Nothing,
        1 => Found::One(Box::new(records.remove(0))),
        _ => Found::Several(
            records
                .iter()
                .map(|record| record.delivery.key().to_hex())
                .collect(),
        ),
    })
}

/// Resolves `id`, or says on stderr why it names no one delivery.
async fn resolve_or_say(inbox: &dyn InboxBackend, id: &str) -> anyhow::Result<Option<Record>> {
    Ok(match resolve(inbox, id).await? {
        Found::One(record) => Some(*record),
        Found::Nothing => {
            eprintln!("not found: {id}");
            None
        }
        Found::Several(keys) => {
            eprintln!(
                "ambiguous: {id} names {} deliveries (two endpoints or scopes); give one of \
                 their keys:{}",
                keys.len(),
                keys.iter().fold(String::new(), |mut list, key| {
                    let _ = write!(list, "\n  {key}");
                    list
                })
            );
            None
        }
    })
}

async fn show(
    inbox: &dyn InboxBackend,
    ids: &[String],
    full: bool,
    json: bool,
) -> anyhow::Result<Exit> {
    let mut exit = Exit::Ok;
    for (n, id) in ids.iter().enumerate() {
        let Some(record) = resolve_or_say(inbox, id).await? else {
            exit = Exit::Refused;
            continue;
        };
        let detail = DeliveryDetail::of(&record);
        if json {
            json_line(&detail)?;
        } else {
            if n > 0 {
                output::line("");
            }
            output::line(&describe(&detail, full));
        }
    }
    Ok(exit)
}

/// A delivery in full, for a person.
fn describe(detail: &DeliveryDetail, full: bool) -> String {
    let row = &detail.row;
    let mut facts = table(&["", ""]);
    facts.set_header(Vec::<String>::new());
    let mut fact = |name: &str, value: Option<&str>| {
        if let Some(value) = value {
            facts.add_row(vec![name.to_owned(), value.to_owned()]);
        }
    };
    fact("id", Some(&row.id));
    fact("key", Some(&row.key));
    fact("scheme", Some(&row.scheme));
    fact("event", row.event.as_deref());
    fact("action", row.action.as_deref());
    fact("scope", row.scope.as_deref());
    fact("tenant", row.tenant.as_deref());
    fact("path", Some(&row.path));
    fact("state", Some(row.state));
    fact("attempts", Some(&row.attempts.to_string()));
    fact("accepted", Some(&row.accepted_at));
    fact("due", Some(&row.due_at));
    fact("finished", row.finished_at.as_deref());
    fact("last error", row.last_error.as_deref());
    let mut text = format!(
        "delivery {}\n{facts}\n\nheaders (credential headers are never stored)\n",
        row.id
    );
    for (name, value) in &detail.headers {
        let _ = writeln!(text, "  {name}: {value}");
    }
    let body = pretty_body(&detail.body);
    let _ = writeln!(text, "\nbody ({} bytes)", detail.body.len());
    if full || body.len() <= BODY_PREVIEW {
        text.push_str(&body);
    } else {
        let mut end = BODY_PREVIEW;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        text.push_str(&body[..end]);
        let _ = write!(
            text,
            "\n… {} more bytes (--full prints them)",
            body.len() - end
        );
    }
    text.push_str("\n\nhistory\n");
    if detail.history.is_empty() {
        text.push_str("  (none recorded)");
    } else {
        let mut history = table(&["ATTEMPT", "OUTCOME", "AT", "ERROR"]);
        for entry in &detail.history {
            history.add_row(vec![
                entry.attempt.to_string(),
                entry.outcome.to_owned(),
                entry.at.clone(),
                entry.error.clone().unwrap_or_default(),
            ]);
        }
        text.push_str(&history.to_string());
    }
    text
}

/// The body as pretty JSON when it is JSON, else as it is.
fn pretty_body(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| body.to_owned())
}

/// What `replay` or `purge` does to each delivery.
#[derive(Debug, Clone, Copy)]
enum Action {
    Replay(Replay),
    Purge,
}

impl Action {
    fn past(self) -> &'static str {
        match self {
            Self::Replay(_) => "replayed",
            Self::Purge => "purged",
        }
    }

    /// Does it; whether it changed the delivery.
    async fn apply(self, inbox: &dyn InboxBackend, key: &IdempotencyKey) -> anyhow::Result<bool> {
        Ok(match self {
            // As the admin tools replay (counted in a metrics recorder, where there is one).
            Self::Replay(from) => {
                tower_webhook::inbox::replay(inbox, key, from, DEFAULT_INBOX_NAME).await?
            }
            Self::Purge => inbox.purge(key).await?,
        })
    }
}

/// One line of `replay` or `purge`: what changed.
#[derive(Debug, Serialize)]
struct Changed<'a> {
    /// `replayed` or `purged`.
    action: &'static str,
    /// The event id.
    id: &'a str,
    /// The delivery's key.
    key: String,
    /// Its event type.
    event: Option<&'a str>,
    /// Its status before.
    from: &'static str,
}

fn print_changed(action: Action, record: &Record, json: bool) -> anyhow::Result<()> {
    let facts = record.delivery.facts();
    let changed = Changed {
        action: action.past(),
        id: &facts.id,
        key: record.delivery.key().to_hex(),
        event: facts.event.as_deref(),
        from: record.status().as_str(),
    };
    if json {
        json_line(&changed)?;
    } else {
        output::line(&format!(
            "{} {} ({}, was {}; key {})",
            changed.action,
            changed.id,
            changed.event.unwrap_or("no event type"),
            changed.from,
            changed.key
        ));
    }
    Ok(())
}

/// `replay` or `purge` of the ids given.
async fn each(
    inbox: &dyn InboxBackend,
    ids: &[String],
    action: Action,
    json: bool,
) -> anyhow::Result<Exit> {
    let mut exit = Exit::Ok;
    for id in ids {
        let Some(record) = resolve_or_say(inbox, id).await? else {
            exit = Exit::Refused;
            continue;
        };
        if action.apply(inbox, record.delivery.key()).await? {
            print_changed(action, &record, json)?;
        } else {
            exit = Exit::Refused;
            match action {
                Action::Replay(Replay::Dead) => eprintln!(
                    "not replayed: {id} is {} (only dead deliveries are; --include-done replays \
                     a done one)",
                    record.status()
                ),
                Action::Replay(_) => eprintln!(
                    "not replayed: {id} is {} (only dead or done deliveries are)",
                    record.status()
                ),
                Action::Purge => eprintln!("not found: {id} (removed meanwhile)"),
            }
        }
    }
    Ok(exit)
}

/// `replay --dead` or `purge --dead`: every dead delivery `filter` matches, a page at a time
/// through the cursor (a replayed or purged delivery leaves the dead state, so the next page
/// starts after the last one seen, never from the start again).
async fn bulk(
    inbox: &dyn InboxBackend,
    filter: &Filter,
    page_size: usize,
    action: Action,
    json: bool,
) -> anyhow::Result<Exit> {
    let filtered = filter.event.is_some() || filter.since.is_some();
    let bar = if std::io::stderr().is_terminal() {
        let dead = inbox
            .stats()
            .await
            .context("counting dead deliveries")?
            .dead;
        progress(if filtered { None } else { Some(dead) }, action)
    } else {
        ProgressBar::hidden()
    };
    let mut changed = 0u64;
    let mut missed = 0u64;
    let mut after: Option<Cursor> = None;
    loop {
        let mut page_filter = filter.clone().limit(page_size.clamp(1, MAX_PAGE));
        if let Some(cursor) = after {
            page_filter = page_filter.after(cursor);
        }
        let page = inbox.search(&page_filter).await?;
        for record in &page.records {
            if action.apply(inbox, record.delivery.key()).await? {
                changed += 1;
                bar.suspend(|| print_changed(action, record, json))?;
            } else {
                // Replayed, purged or taken by someone else meanwhile.
                missed += 1;
            }
            bar.inc(1);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    bar.finish_and_clear();
    if !json {
        eprintln!(
            "{} {changed} dead deliver{}{}",
            action.past(),
            if changed == 1 { "y" } else { "ies" },
            if missed > 0 {
                format!(" ({missed} changed by someone else meanwhile)")
            } else {
                String::new()
            }
        );
    }
    Ok(Exit::Ok)
}

/// A progress bar on stderr: of `total` when known, else a counter.
fn progress(total: Option<u64>, action: Action) -> ProgressBar {
    let verb = match action {
        Action::Replay(_) => "replaying",
        Action::Purge => "purging",
    };
    let (bar, template) = if let Some(total) = total {
        (
            ProgressBar::new(total),
            format!("{verb} {{bar:40}} {{pos}}/{{len}} {{eta}}"),
        )
    } else {
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        (bar, format!("{{spinner}} {verb}: {{pos}}"))
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// `1.5 s`, `3 min 20 s`, `2 h 5 min`, `4 d 3 h`.
fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{} ms", duration.as_millis()),
        1..60 => format!("{:.1} s", duration.as_secs_f64()),
        60..3_600 => format!("{} min {} s", secs / 60, secs % 60),
        3_600..86_400 => format!("{} h {} min", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_s_password_is_never_printed() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redact("sqlite:x.db"), "sqlite:x.db");
    }

    #[test]
    fn durations_read_as_a_person_writes_them() {
        assert_eq!(human_duration(Duration::from_millis(0)), "0 ms");
        assert_eq!(human_duration(Duration::from_millis(1_500)), "1.5 s");
        assert_eq!(human_duration(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(human_duration(Duration::from_secs(7_500)), "2 h 5 min");
    }
}
