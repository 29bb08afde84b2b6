//! The HTML pages: the counts and a filtered list (`GET /`), one delivery (`GET
//! /deliveries/{key}`), and the forms' actions (`POST /deliveries/{key}/replay`, `.../purge`,
//! `POST /replay`), each answered with a redirect to the page that shows the result.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum_core::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode, Uri};

use crate::inbox::{DeliveryDetail, DeliveryRow, Filter, Record, StatsView, Status};

use super::api::{self, LIST_PARAMS};
use super::guard::TOKEN_FIELD;
use super::html::{lag, truncate, Html};
use super::params::{key, Params};
use super::refusal::Refusal;
use super::Shared;

/// How much of a body the detail page shows: 64 KiB.
const BODY_SHOWN: usize = 64 * 1024;
/// How much of a last error the list shows: 160 bytes.
const ERROR_SHOWN: usize = 160;

/// Where the router is mounted: the path the application nested it at (`/admin`), found by
/// comparing the request's original path with the one the router sees; empty at the root.
fn base(original: &Uri, seen: &Uri) -> String {
    let original = original.path();
    let seen = seen.path();
    let base = original.strip_suffix(seen).unwrap_or(original);
    base.trim_end_matches('/').to_owned()
}

/// The list page's address under `base`.
fn home(base: &str) -> String {
    if base.is_empty() {
        "/".to_owned()
    } else {
        base.to_owned()
    }
}

/// A `303 See Other` to `location`.
fn redirect(location: &str) -> Response {
    match HeaderValue::try_from(location) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A refusal as a page, with a link back to the list.
fn error_page(base: &str, refusal: Refusal) -> Response {
    let mut html = Html::page("Inbox: error");
    html.raw("<h1>")
        .number(refusal.status.as_u16())
        .raw(" ")
        .text(refusal.code)
        .raw("</h1><p>")
        .text(refusal.message)
        .raw("</p><p><a href=\"")
        .text(&home(base))
        .raw("\">Back to the inbox</a></p>");
    html.into_response(refusal.status)
}

/// A hidden field with the form token, and the form's button.
fn action_form(html: &mut Html, action: &str, token: &str, done: bool, label: &str) {
    html.raw("<form class=\"inline\" method=\"post\" action=\"")
        .text(action)
        .raw("\"><input type=\"hidden\" name=\"")
        .raw(TOKEN_FIELD)
        .raw("\" value=\"")
        .text(token)
        .raw("\">");
    if done {
        html.raw("<input type=\"hidden\" name=\"done\" value=\"true\">");
    }
    html.raw("<button type=\"submit\">")
        .text(label)
        .raw("</button></form>");
}

/// The replay and purge buttons of the delivery `row` under `base`.
fn buttons(html: &mut Html, base: &str, token: &str, row: &DeliveryRow) {
    let at = format!("{base}/deliveries/{}", row.key);
    match row.state {
        "dead" => action_form(html, &format!("{at}/replay"), token, false, "Replay"),
        "done" => action_form(html, &format!("{at}/replay"), token, true, "Replay again"),
        _ => {}
    }
    html.raw(" ");
    action_form(html, &format!("{at}/purge"), token, false, "Purge");
}

/// `GET /`: the counts per status and the lag, the filter form, and a page of deliveries.
pub(super) async fn index(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    seen: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let base = base(&original, &seen);
    match list_page(&shared, &base, query.as_deref()).await {
        Ok(response) => response,
        Err(refusal) => error_page(&base, refusal),
    }
}

async fn list_page(shared: &Shared, base: &str, query: Option<&str>) -> Result<Response, Refusal> {
    let known: Vec<&str> = LIST_PARAMS
        .iter()
        .copied()
        .chain(["replayed", "purged"])
        .collect();
    let params = Params::parse(query, &known)?;
    let filter = params.filter()?;
    let stats = StatsView::of(&shared.inbox.stats().await?);
    let page = api::search(shared.inbox.as_ref(), &filter).await?;
    let token = shared.token.as_str();
    let home = home(base);

    let mut html = Html::page("Inbox");
    html.raw("<h1>Inbox</h1>");
    if let Some(count) = params.count("replayed") {
        html.raw("<p class=\"notice\">Replayed ")
            .number(count)
            .raw(" dead deliveries.</p>");
    }
    if params.get("purged").is_some() {
        html.raw("<p class=\"notice\">Purged the delivery.</p>");
    }
    stats_table(&mut html, &home, &stats);
    filter_form(&mut html, &home, &filter);
    if filter.status == Some(Status::Dead) && !page.records.is_empty() {
        html.raw("<form method=\"post\" action=\"")
            .text(base)
            .raw("/replay\"><input type=\"hidden\" name=\"")
            .raw(TOKEN_FIELD)
            .raw("\" value=\"")
            .text(token)
            .raw("\"><input type=\"hidden\" name=\"event\" value=\"")
            .text(filter.event.as_deref().unwrap_or_default())
            .raw("\"><button type=\"submit\">Replay every dead delivery")
            .raw(if filter.event.is_some() {
                " of this event"
            } else {
                ""
            })
            .raw("</button></form>");
    }

    rows_table(&mut html, base, token, &page.records);
    if page.records.is_empty() {
        html.raw("<p>No delivery matches.</p>");
    }
    if let Some(next) = page.next {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(status) = filter.status {
            query.push(("state", status.as_str().to_owned()));
        }
        for (name, value) in [("event", &filter.event), ("id", &filter.id)] {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        query.push(("after", next.to_string()));
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        html.raw("<p><a rel=\"next\" href=\"")
            .text(&home)
            .raw("?")
            .text(&query)
            .raw("\">Next page</a></p>");
    }
    Ok(html.into_response(StatusCode::OK))
}

/// The counts per status (each a link to its list) and the lag.
fn stats_table(html: &mut Html, home: &str, stats: &StatsView) {
    html.raw("<table id=\"stats\"><tr>");
    for status in Status::ALL {
        html.raw("<th><a href=\"")
            .text(home)
            .raw("?state=")
            .raw(status.as_str())
            .raw("\">")
            .raw(status.as_str())
            .raw("</a></th>");
    }
    html.raw("<th>lag (oldest waiting)</th></tr><tr>");
    for count in [
        stats.waiting,
        stats.running,
        stats.retrying,
        stats.dead,
        stats.done,
    ] {
        html.raw("<td>").number(count).raw("</td>");
    }
    html.raw("<td>")
        .text(&lag(stats.lag_ms))
        .raw("</td></tr></table>");
}

/// The filters: a GET form, so that a filtered list is a link to share.
fn filter_form(html: &mut Html, home: &str, filter: &Filter) {
    html.raw("<form method=\"get\" action=\"")
        .text(home)
        .raw("\"><label>State <select name=\"state\"><option value=\"\">any</option>");
    for status in Status::ALL {
        html.raw("<option");
        if filter.status == Some(status) {
            html.raw(" selected");
        }
        html.raw(">").raw(status.as_str()).raw("</option>");
    }
    html.raw("</select></label> <label>Event <input name=\"event\" value=\"")
        .text(filter.event.as_deref().unwrap_or_default())
        .raw("\"></label> <label>Id <input name=\"id\" value=\"")
        .text(filter.id.as_deref().unwrap_or_default())
        .raw("\"></label> <button type=\"submit\">Filter</button></form>");
}

/// The table of `records`, each with its buttons.
fn rows_table(html: &mut Html, base: &str, token: &str, records: &[Record]) {
    html.raw(
        "<table id=\"deliveries\"><tr><th>accepted</th><th>state</th><th>event</th>\
              <th>id</th><th>attempts</th><th>last error</th><th></th></tr>",
    );
    for record in records {
        let row = DeliveryRow::of(record);
        html.raw("<tr data-key=\"")
            .text(&row.key)
            .raw("\"><td>")
            .text(&row.accepted_at)
            .raw("</td><td class=\"state ")
            .raw(row.state)
            .raw("\">")
            .raw(row.state)
            .raw("</td><td>")
            .text(row.event.as_deref().unwrap_or("-"))
            .raw("</td><td><a href=\"")
            .text(base)
            .raw("/deliveries/")
            .text(&row.key)
            .raw("\">")
            .text(&row.id)
            .raw("</a></td><td>")
            .number(row.attempts)
            .raw("</td><td>");
        if let Some(error) = &row.last_error {
            let (shown, cut) = truncate(error, ERROR_SHOWN);
            html.text(shown).raw(if cut { "…" } else { "" });
        }
        html.raw("</td><td>");
        buttons(html, base, token, &row);
        html.raw("</td></tr>");
    }
    html.raw("</table>");
}

/// `GET /deliveries/{key}`: one delivery, its history, headers and body.
pub(super) async fn detail(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    seen: Uri,
    Path(text): Path<String>,
) -> Response {
    let base = base(&original, &seen);
    match detail_page(&shared, &base, &text).await {
        Ok(response) => response,
        Err(refusal) => error_page(&base, refusal),
    }
}

async fn detail_page(shared: &Shared, base: &str, text: &str) -> Result<Response, Refusal> {
    let record = api::get(shared.inbox.as_ref(), &key(text)?).await?;
    let detail = DeliveryDetail::of(&record);
    let row = &detail.row;
    let mut html = Html::page(&format!("Inbox: {}", row.id));
    html.raw("<p><a href=\"")
        .text(&home(base))
        .raw("\">← Inbox</a></p><h1>")
        .text(row.event.as_deref().unwrap_or("(no event type)"))
        .raw(" ")
        .text(&row.id)
        .raw("</h1><p>State: <strong id=\"state\" class=\"")
        .raw(row.state)
        .raw("\">")
        .raw(row.state)
        .raw("</strong> ");
    buttons(&mut html, base, shared.token.as_str(), row);
    html.raw("</p><table id=\"facts\">");
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    for (name, value) in [
        ("key", row.key.clone()),
        ("scheme", row.scheme.clone()),
        ("action", optional(&row.action)),
        ("scope", optional(&row.scope)),
        ("tenant", optional(&row.tenant)),
        ("path", row.path.clone()),
        ("attempts", row.attempts.to_string()),
        ("accepted", row.accepted_at.clone()),
        ("due", row.due_at.clone()),
        ("finished", optional(&row.finished_at)),
    ] {
        html.raw("<tr><th>")
            .raw(name)
            .raw("</th><td>")
            .text(&value)
            .raw("</td></tr>");
    }
    html.raw("</table>");
    if let Some(error) = &row.last_error {
        html.raw("<h2>Last error</h2><pre id=\"last-error\">")
            .text(error)
            .raw("</pre>");
    }
    html.raw("<h2>History</h2>");
    if detail.history.is_empty() {
        html.raw("<p>No attempt recorded.</p>");
    } else {
        html.raw("<table id=\"history\"><tr><th>attempt</th><th>outcome</th><th>at</th><th>error</th></tr>");
        for entry in &detail.history {
            html.raw("<tr><td>")
                .number(entry.attempt)
                .raw("</td><td>")
                .raw(entry.outcome)
                .raw("</td><td>")
                .text(&entry.at)
                .raw("</td><td>")
                .text(entry.error.as_deref().unwrap_or_default())
                .raw("</td></tr>");
        }
        html.raw("</table>");
    }
    html.raw(
        "<h2>Headers</h2><p>As stored: credential headers never are.</p>\
              <table id=\"headers\">",
    );
    for (name, value) in &detail.headers {
        html.raw("<tr><th>")
            .text(name)
            .raw("</th><td>")
            .text(value)
            .raw("</td></tr>");
    }
    html.raw("</table><h2>Body</h2>");
    let (shown, cut) = truncate(&detail.body, BODY_SHOWN);
    if cut {
        html.raw("<p>The first ")
            .number(BODY_SHOWN / 1024)
            .raw(" KiB of ")
            .number(detail.body.len())
            .raw(" bytes (the JSON API's detail has it whole).</p>");
    }
    html.raw("<pre id=\"body\">").text(shown).raw("</pre>");
    Ok(html.into_response(StatusCode::OK))
}

/// The fields of an action's form (its token was checked before).
fn form(body: &Bytes) -> Result<Params, Refusal> {
    Params::parse(
        std::str::from_utf8(body).ok(),
        &[TOKEN_FIELD, "done", "event"],
    )
}

/// `POST /deliveries/{key}/replay` (a form; `done=true` for a done one): to its page.
pub(super) async fn replay(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    seen: Uri,
    Path(text): Path<String>,
    body: Bytes,
) -> Response {
    let base = base(&original, &seen);
    let replayed = async {
        let done = form(&body)?.flag("done")?;
        let key = key(&text)?;
        api::replay_one(shared.inbox.as_ref(), &shared.name, &key, done).await?;
        Ok(redirect(&format!("{base}/deliveries/{}", key.to_hex())))
    };
    replayed
        .await
        .unwrap_or_else(|refusal| error_page(&base, refusal))
}

/// `POST /deliveries/{key}/purge` (a form): to the list.
pub(super) async fn purge(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    seen: Uri,
    Path(text): Path<String>,
    body: Bytes,
) -> Response {
    let base = base(&original, &seen);
    let purged = async {
        form(&body)?;
        api::purge_one(shared.inbox.as_ref(), &key(&text)?).await?;
        Ok(redirect(&format!("{}?purged=1", home(&base))))
    };
    purged
        .await
        .unwrap_or_else(|refusal| error_page(&base, refusal))
}

/// `POST /replay` (a form, with `event` or not): every dead delivery replayed, then to the
/// list with how many.
pub(super) async fn replay_dead(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    seen: Uri,
    body: Bytes,
) -> Response {
    let base = base(&original, &seen);
    let replayed = async {
        let params = form(&body)?;
        let mut filter = Filter::new();
        if let Some(event) = params.get("event") {
            filter = filter.event(event);
        }
        let count = api::replay_all_dead(shared.inbox.as_ref(), &shared.name, filter).await?;
        Ok(redirect(&format!("{}?replayed={count}", home(&base))))
    };
    replayed
        .await
        .unwrap_or_else(|refusal| error_page(&base, refusal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_where_the_router_is_nested() {
        let uri = |text: &str| text.parse::<Uri>().unwrap_or_default();
        assert_eq!(base(&uri("/admin"), &uri("/")), "/admin");
        assert_eq!(base(&uri("/admin/"), &uri("/")), "/admin");
        assert_eq!(
            base(&uri("/ops/admin/deliveries/ab"), &uri("/deliveries/ab")),
            "/ops/admin"
        );
        assert_eq!(base(&uri("/deliveries/ab"), &uri("/deliveries/ab")), "");
        assert_eq!(home(""), "/");
    }
}
