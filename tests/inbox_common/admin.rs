//! The admin router's listing, filters, paging and replays over a backend (feature `admin`):
//! run on `SQLite` by `tests/admin.rs`, and on `PostgreSQL` and Redis by their test files, so that
//! each backend's `search` is read through the admin's API.

use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tower_webhook::inbox::admin::{Admin, NEXT_CURSOR};
use tower_webhook::inbox::{Delivery, InboxBackend};
use tower_webhook::testing::sotion_event;

const TOKEN: &str = "admin-s3cret";

fn delivery(event: &str, id: &str) -> Delivery {
    super::backend::verified(
        "whsec_inbox",
        sotion_event(event, id, "site_1"),
        "/webhooks",
    )
}

/// Accepts a delivery and claims it: the caller records its outcome.
async fn claimed<B: InboxBackend>(inbox: &B, event: &str, id: &str) -> tower_webhook::inbox::Lease {
    let stored = delivery(event, id);
    inbox.accept(&stored).await.unwrap();
    let mut claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    let claim = claims.pop().unwrap();
    assert_eq!(claim.lease.key(), stored.key());
    claim.lease
}

/// `method uri` with the token: the status, the `x-next-cursor` header, and the JSON body.
async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, Option<String>, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let next = response
        .headers()
        .get(NEXT_CURSOR)
        .map(|value| value.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, next, serde_json::from_slice(&bytes).unwrap())
}

/// The ids of a listing, sorted.
fn ids(rows: &Value) -> Vec<String> {
    let mut ids: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Three dead deliveries (two of `member.created`), one done, one waiting: listed by state,
/// event and id, a page of two at a time, then replayed one by one and in bulk.
pub(crate) async fn the_admin_lists_filters_pages_and_replays<B: InboxBackend + Clone>(inbox: B) {
    for (event, id) in [
        ("member.created", "evt_1"),
        ("member.created", "evt_2"),
        ("member.deleted", "evt_3"),
    ] {
        let lease = claimed(&inbox, event, id).await;
        assert!(inbox.dead_letter(&lease, "boom").await.unwrap());
    }
    let lease = claimed(&inbox, "member.created", "evt_4").await;
    assert!(inbox.complete(&lease).await.unwrap());
    inbox
        .accept(&delivery("member.updated", "evt_5"))
        .await
        .unwrap();
    let admin = Admin::new(inbox.clone())
        .bearer_token(TOKEN)
        .build()
        .unwrap();
    let app = Router::new().nest("/admin", admin);

    let (code, _, counts) = call(&app, "GET", "/admin/api/stats").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (&counts["waiting"], &counts["dead"], &counts["done"]),
        (&Value::from(1), &Value::from(3), &Value::from(1))
    );
    let (_, _, dead) = call(&app, "GET", "/admin/api/deliveries?state=dead").await;
    assert_eq!(ids(&dead), ["evt_1", "evt_2", "evt_3"]);
    for row in dead.as_array().unwrap() {
        assert_eq!(row["state"], Value::from("dead"));
        assert_eq!(row["attempts"], Value::from(1));
        assert_eq!(row["last_error"], Value::from("boom"));
    }
    let (_, _, rows) = call(
        &app,
        "GET",
        "/admin/api/deliveries?state=dead&event=member.created",
    )
    .await;
    assert_eq!(ids(&rows), ["evt_1", "evt_2"]);
    let (_, _, rows) = call(&app, "GET", "/admin/api/deliveries?id=evt_5").await;
    assert_eq!(ids(&rows), ["evt_5"]);
    assert_eq!(rows[0]["state"], Value::from("waiting"));
    let (_, _, rows) = call(&app, "GET", "/admin/api/deliveries?state=done").await;
    assert_eq!(ids(&rows), ["evt_4"]);
    let (_, _, rows) = call(&app, "GET", "/admin/api/deliveries").await;
    assert_eq!(ids(&rows), ["evt_1", "evt_2", "evt_3", "evt_4", "evt_5"]);

    // A page of two at a time, through the cursor: each delivery once.
    let mut seen = Vec::new();
    let mut uri = "/admin/api/deliveries?limit=2".to_owned();
    for _ in 0..5 {
        let (status, next, rows) = call(&app, "GET", &uri).await;
        assert_eq!(status, StatusCode::OK);
        assert!(rows.as_array().unwrap().len() <= 2);
        seen.extend(ids(&rows));
        match next {
            Some(next) => uri = format!("/admin/api/deliveries?limit=2&after={next}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["evt_1", "evt_2", "evt_3", "evt_4", "evt_5"]);

    // One replayed, then every dead one of an event, then the rest.
    let key = dead
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["id"] == "evt_3")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, row) = call(&app, "POST", &format!("/admin/api/deliveries/{key}/replay")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(row["state"], Value::from("waiting"));
    let (_, _, replayed) = call(&app, "POST", "/admin/api/replay?event=member.deleted").await;
    assert_eq!(replayed, serde_json::json!({"replayed": 0}));
    let (_, _, replayed) = call(&app, "POST", "/admin/api/replay?event=member.created").await;
    assert_eq!(replayed, serde_json::json!({"replayed": 2}));
    let (_, _, counts) = call(&app, "GET", "/admin/api/stats").await;
    assert_eq!(
        (&counts["waiting"], &counts["dead"]),
        (&Value::from(4), &Value::from(0))
    );
    let (status, _, _) = call(&app, "POST", &format!("/admin/api/deliveries/{key}/purge")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&app, "GET", &format!("/admin/api/deliveries/{key}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
