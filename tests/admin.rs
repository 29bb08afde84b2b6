//! The inbox's admin router (feature `admin`), through its API, over a real `SQLite` file:
//! the authorization decision, the filters, the detail, replay and purge, the cross-site
//! checks, and the escaping of hostile stored values in the page.
#![cfg(all(feature = "admin", feature = "sqlite", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod inbox_common;

use std::time::Duration;

use axum::body::Body;
use axum::response::IntoResponse as _;
use axum::Router;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tower_webhook::inbox::admin::{Admin, NEXT_CURSOR};
use tower_webhook::inbox::{Delivery, InboxBackend, InboxOptions, SqliteInbox};
use tower_webhook::testing::sotion_event;
use tower_webhook::ConfigError;

const TOKEN: &str = "admin-s3cret";
const HOST: &str = "inbox.test:3000";

/// A fresh inbox in a temporary file (kept while the directory lives).
async fn inbox() -> (tempfile::TempDir, SqliteInbox) {
    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(dir.path().join("inbox.db"), InboxOptions::new())
        .await
        .unwrap();
    (dir, inbox)
}

/// The admin of `inbox` behind [`TOKEN`], nested at `/admin` as an app would.
fn app(inbox: &SqliteInbox) -> Router {
    Router::new().nest(
        "/admin",
        Admin::new(inbox.clone())
            .bearer_token(TOKEN)
            .build()
            .unwrap(),
    )
}

fn delivery(event: &str, id: &str) -> Delivery {
    inbox_common::backend::verified(
        "whsec_inbox",
        sotion_event(event, id, "site_1"),
        "/webhooks",
    )
}

/// Accepts a delivery of `event` and `id`, and, when `error` is given, claims it and
/// dead-letters it with that error.
async fn dead(inbox: &SqliteInbox, event: &str, id: &str, error: &str) -> String {
    let stored = delivery(event, id);
    inbox.accept(&stored).await.unwrap();
    let claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    assert_eq!(claims[0].lease.key(), stored.key());
    assert!(inbox.dead_letter(&claims[0].lease, error).await.unwrap());
    stored.key().to_hex()
}

/// Accepts a delivery of `event` and `id`, and processes it.
async fn done(inbox: &SqliteInbox, event: &str, id: &str) -> String {
    let stored = delivery(event, id);
    inbox.accept(&stored).await.unwrap();
    let claims = inbox.claim(Duration::from_secs(60), 1).await.unwrap();
    assert!(inbox.complete(&claims[0].lease).await.unwrap());
    stored.key().to_hex()
}

fn request(method: &str, uri: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST)
}

fn authorized(method: &str, uri: &str) -> http::request::Builder {
    request(method, uri).header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
}

async fn send(app: &Router, request: http::request::Builder) -> Response<Body> {
    send_body(app, request, Body::empty()).await
}

async fn send_body(
    app: &Router,
    request: http::request::Builder,
    body: impl Into<Body>,
) -> Response<Body> {
    app.clone()
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap()
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn json(response: Response<Body>) -> Value {
    serde_json::from_str(&text(response).await).unwrap()
}

/// The status and the refusal's code.
async fn refused(response: Response<Body>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = json(response).await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn get_json(app: &Router, uri: &str) -> Value {
    let response = send(app, authorized("GET", uri)).await;
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    json(response).await
}

/// The form token the page embeds.
async fn form_token(app: &Router) -> String {
    let page = text(send(app, authorized("GET", "/admin")).await).await;
    let start = page.find("name=\"csrf_token\" value=\"").unwrap() + 25;
    page[start..start + 64].to_owned()
}

#[tokio::test]
async fn the_router_is_not_built_without_one_authorization_decision() {
    let (_dir, inbox) = inbox().await;
    assert!(matches!(
        Admin::new(inbox.clone()).build(),
        Err(ConfigError::AdminWithoutAuthorization)
    ));
    assert!(matches!(
        Admin::new(inbox.clone())
            .bearer_token(TOKEN)
            .allow_unauthenticated_for_local_development()
            .build(),
        Err(ConfigError::AdminAuthorizationTwice)
    ));
    assert!(matches!(
        Admin::new(inbox.clone()).bearer_token("").build(),
        Err(ConfigError::EmptyAdminToken)
    ));
    assert!(Admin::new(inbox)
        .allow_unauthenticated_for_local_development()
        .build()
        .is_ok());
}

#[tokio::test]
async fn every_request_without_the_token_is_refused_401_with_a_challenge() {
    let (_dir, inbox) = inbox().await;
    let key = dead(&inbox, "member.created", "evt_1", "boom").await;
    let app = app(&inbox);
    for (method, uri) in [
        ("GET", "/admin".to_owned()),
        ("GET", "/admin/api/stats".to_owned()),
        ("GET", "/admin/api/deliveries?state=dead".to_owned()),
        ("GET", format!("/admin/api/deliveries/{key}")),
        ("POST", format!("/admin/api/deliveries/{key}/replay")),
        ("POST", format!("/admin/api/deliveries/{key}/purge")),
        ("POST", "/admin/api/replay".to_owned()),
        ("GET", "/admin/no/such/page".to_owned()),
    ] {
        for authorization in [None, Some("Bearer wrong"), Some("admin-s3cret")] {
            let mut builder = request(method, &uri);
            if let Some(value) = authorization {
                builder = builder.header(header::AUTHORIZATION, value);
            }
            let response = send(&app, builder).await;
            let challenges: Vec<_> = response
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .map(|value| value.to_str().unwrap().to_owned())
                .collect();
            assert!(challenges[0].starts_with("Bearer "), "{challenges:?}");
            assert!(challenges[1].starts_with("Basic "), "{challenges:?}");
            assert_eq!(
                refused(response).await,
                (401, "unauthorized".to_owned()),
                "{method} {uri} {authorization:?}"
            );
        }
    }
    // Nothing changed: the delivery is still dead.
    assert_eq!(
        get_json(&app, "/admin/api/stats").await["dead"],
        Value::from(1)
    );
    // A browser's Basic prompt, with the token as the password.
    let basic =
        request("GET", "/admin").header(header::AUTHORIZATION, "Basic YWRtaW46YWRtaW4tczNjcmV0");
    assert_eq!(send(&app, basic).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_application_s_own_check_or_layer_decides() {
    let (_dir, inbox) = inbox().await;
    let by_closure = Admin::new(inbox.clone())
        .authorize(|parts: &http::request::Parts| parts.headers.contains_key("x-operator"))
        .build()
        .unwrap();
    let by_layer = Admin::new(inbox.clone())
        .layer(axum::middleware::from_fn(
            |request: axum::extract::Request, next: axum::middleware::Next| async move {
                if request.headers().contains_key("x-operator") {
                    next.run(request).await
                } else {
                    StatusCode::FORBIDDEN.into_response()
                }
            },
        ))
        .build()
        .unwrap();
    for (admin, refusal) in [(by_closure, 401), (by_layer, 403)] {
        let app = Router::new().nest("/admin", admin);
        let response = send(&app, request("GET", "/admin/api/stats")).await;
        assert_eq!(response.status().as_u16(), refusal);
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
        let allowed = request("GET", "/admin/api/stats").header("x-operator", "ada");
        assert_eq!(send(&app, allowed).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn the_api_lists_deliveries_by_state_event_id_and_time_a_page_at_a_time() {
    let (_dir, inbox) = inbox().await;
    let first = dead(&inbox, "member.created", "evt_1", "timeout").await;
    dead(&inbox, "member.created", "evt_2", "boom").await;
    dead(&inbox, "member.deleted", "evt_3", "boom").await;
    done(&inbox, "member.created", "evt_4").await;
    inbox
        .accept(&delivery("member.updated", "evt_5"))
        .await
        .unwrap();
    let app = app(&inbox);

    let stats = get_json(&app, "/admin/api/stats").await;
    assert_eq!(
        stats,
        serde_json::json!({"waiting": 1, "running": 0, "retrying": 0, "dead": 3, "done": 1,
            "lag_ms": stats["lag_ms"]})
    );

    let rows = get_json(&app, "/admin/api/deliveries?state=dead").await;
    // Oldest accepted first (then by key).
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["evt_1", "evt_2", "evt_3"]);
    // The contract's fields (those of `inbox list --json`).
    let row = &rows[0];
    assert_eq!(row["key"], Value::from(first.clone()));
    assert_eq!(row["event"], Value::from("member.created"));
    assert_eq!(row["state"], Value::from("dead"));
    assert_eq!(row["attempts"], Value::from(1));
    assert_eq!(row["last_error"], Value::from("timeout"));
    assert_eq!(row["scheme"], Value::from("sotion"));
    assert_eq!(row["path"], Value::from("/webhooks"));

    let count = |value: Value| value.as_array().unwrap().len();
    let uri = "/admin/api/deliveries?state=dead&event=member.created";
    assert_eq!(count(get_json(&app, uri).await), 2);
    assert_eq!(
        count(get_json(&app, "/admin/api/deliveries?id=evt_3").await),
        1
    );
    assert_eq!(count(get_json(&app, "/admin/api/deliveries").await), 5);
    assert_eq!(
        count(get_json(&app, "/admin/api/deliveries?state=waiting").await),
        1
    );
    assert_eq!(
        count(get_json(&app, "/admin/api/deliveries?state=done").await),
        1
    );
    let future = "/admin/api/deliveries?since=2999-01-01T00%3A00%3A00Z";
    assert_eq!(count(get_json(&app, future).await), 0);
    let past = "/admin/api/deliveries?since=2000-01-01T00%3A00%3A00Z";
    assert_eq!(count(get_json(&app, past).await), 5);

    // Pages of two: the cursor in `x-next-cursor`, passed back as `after`.
    let mut seen = Vec::new();
    let mut uri = "/admin/api/deliveries?state=dead&limit=2".to_owned();
    loop {
        let response = send(&app, authorized("GET", &uri)).await;
        let next = response
            .headers()
            .get(NEXT_CURSOR)
            .map(|value| value.to_str().unwrap().to_owned());
        for row in json(response).await.as_array().unwrap() {
            seen.push(row["id"].as_str().unwrap().to_owned());
        }
        match next {
            Some(next) => uri = format!("/admin/api/deliveries?state=dead&limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["evt_1", "evt_2", "evt_3"]);

    for (query, code) in [
        ("state=sleeping", "bad_state"),
        ("after=12.zz", "bad_cursor"),
        ("since=yesterday", "bad_since"),
        ("limit=0", "bad_limit"),
        ("limit=many", "bad_limit"),
        ("colour=red", "bad_query"),
        ("state=dead&state=done", "bad_query"),
    ] {
        let response = send(
            &app,
            authorized("GET", &format!("/admin/api/deliveries?{query}")),
        )
        .await;
        assert_eq!(refused(response).await, (400, code.to_owned()), "{query}");
    }
}

#[tokio::test]
async fn a_delivery_s_detail_has_its_stored_headers_and_body_and_never_a_credential() {
    let (_dir, inbox) = inbox().await;
    let key = dead(
        &inbox,
        "member.created",
        "evt_1",
        "the handler answered 500",
    )
    .await;
    let app = app(&inbox);
    let detail = get_json(&app, &format!("/admin/api/deliveries/{key}")).await;
    assert_eq!(detail["id"], Value::from("evt_1"));
    assert_eq!(detail["state"], Value::from("dead"));
    assert_eq!(
        detail["last_error"],
        Value::from("the handler answered 500")
    );
    let body: Value = serde_json::from_str(detail["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], Value::from("member.created"));
    let names: Vec<&str> = detail["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"webhook-signature") || names.iter().any(|n| n.contains("signature")),
        "{names:?}"
    );
    assert!(!names.contains(&"authorization"), "{names:?}");
    assert!(detail["history"].is_array());
    // The page shows the same.
    let page = text(send(&app, authorized("GET", &format!("/admin/deliveries/{key}"))).await).await;
    assert!(page.contains("the handler answered 500"), "{page}");
    assert!(page.contains("id=\"state\" class=\"dead\""), "{page}");

    let unknown = "0".repeat(64);
    let response = send(
        &app,
        authorized("GET", &format!("/admin/api/deliveries/{unknown}")),
    )
    .await;
    assert_eq!(refused(response).await, (404, "not_found".to_owned()));
    let response = send(&app, authorized("GET", "/admin/api/deliveries/evt_1")).await;
    assert_eq!(refused(response).await, (400, "bad_key".to_owned()));
    let response = send(&app, authorized("GET", "/admin/deliveries/evt_1")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn scripts_replay_and_purge_through_the_api() {
    let (_dir, inbox) = inbox().await;
    let one = dead(&inbox, "member.created", "evt_1", "boom").await;
    dead(&inbox, "member.created", "evt_2", "boom").await;
    dead(&inbox, "member.deleted", "evt_3", "boom").await;
    let finished = done(&inbox, "member.created", "evt_4").await;
    let app = app(&inbox);
    let post = |uri: String| authorized("POST", &uri);

    // A script: the token, no Origin, no cookie, no form token.
    let response = send(&app, post(format!("/admin/api/deliveries/{one}/replay"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let row = json(response).await;
    assert_eq!(
        (row["id"].as_str(), row["state"].as_str()),
        (Some("evt_1"), Some("waiting"))
    );
    assert_eq!(row["attempts"], Value::from(0));
    // Not dead any more.
    let response = send(&app, post(format!("/admin/api/deliveries/{one}/replay"))).await;
    assert_eq!(refused(response).await, (409, "not_replayable".to_owned()));
    // A done delivery only with done=true.
    let response = send(
        &app,
        post(format!("/admin/api/deliveries/{finished}/replay")),
    )
    .await;
    assert_eq!(refused(response).await, (409, "not_replayable".to_owned()));
    let response = send(
        &app,
        post(format!("/admin/api/deliveries/{finished}/replay?done=true")),
    )
    .await;
    assert_eq!(json(response).await["state"], Value::from("waiting"));
    let response = send(
        &app,
        post(format!("/admin/api/deliveries/{}/replay", "a".repeat(64))),
    )
    .await;
    assert_eq!(refused(response).await, (404, "not_found".to_owned()));

    // Every dead delivery of one event, after a fix.
    let response = send(
        &app,
        post("/admin/api/replay?event=member.created".to_owned()),
    )
    .await;
    assert_eq!(json(response).await, serde_json::json!({"replayed": 1}));
    let stats = get_json(&app, "/admin/api/stats").await;
    assert_eq!(
        (stats["dead"].as_u64(), stats["waiting"].as_u64()),
        (Some(1), Some(3))
    );
    let response = send(&app, post("/admin/api/replay".to_owned())).await;
    assert_eq!(json(response).await, serde_json::json!({"replayed": 1}));

    let response = send(&app, post(format!("/admin/api/deliveries/{one}/purge"))).await;
    assert_eq!(
        json(response).await,
        serde_json::json!({"purged": true, "key": one})
    );
    let response = send(&app, post(format!("/admin/api/deliveries/{one}/purge"))).await;
    assert_eq!(refused(response).await, (404, "not_found".to_owned()));
    let response = send(
        &app,
        authorized("GET", &format!("/admin/api/deliveries/{one}")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // GET does not change anything.
    let response = send(&app, authorized("GET", "/admin/api/replay")).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn cross_site_posts_and_posts_without_the_page_s_token_are_refused() {
    let (_dir, inbox) = inbox().await;
    let key = dead(&inbox, "member.created", "evt_1", "boom").await;
    let app = app(&inbox);
    let token = form_token(&app).await;
    let form = |uri: &str| {
        authorized("POST", uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
    };
    let replay_form = format!("/admin/deliveries/{key}/replay");
    let replay_api = format!("/admin/api/deliveries/{key}/replay");

    // Another site, by Origin or by Sec-Fetch-Site, even with a valid token and credentials.
    for (name, value) in [
        ("origin", "https://evil.test"),
        ("origin", "http://inbox.test:3001"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        for uri in [&replay_form, &replay_api] {
            let response = send_body(
                &app,
                form(uri).header(name, value),
                format!("csrf_token={token}"),
            )
            .await;
            assert_eq!(
                refused(response).await,
                (403, "cross_site_request".to_owned()),
                "{name}: {value} {uri}"
            );
        }
    }
    // The page's form without its token, or with another.
    let same_origin = |uri: &str| form(uri).header("origin", "http://inbox.test:3000");
    let response = send_body(&app, same_origin(&replay_form), "").await;
    assert_eq!(
        refused(response).await,
        (403, "csrf_token_missing".to_owned())
    );
    let response = send_body(&app, form(&replay_form), "").await;
    assert_eq!(
        refused(response).await,
        (403, "csrf_token_missing".to_owned())
    );
    let forged = format!("csrf_token={}", "ab".repeat(32));
    let response = send_body(&app, same_origin(&replay_form), forged.clone()).await;
    assert_eq!(
        refused(response).await,
        (403, "csrf_token_invalid".to_owned())
    );
    // A browser's request to the API needs the token as well (a header, or a form field).
    let response = send(
        &app,
        authorized("POST", &replay_api).header("origin", "http://inbox.test:3000"),
    )
    .await;
    assert_eq!(
        refused(response).await,
        (403, "csrf_token_missing".to_owned())
    );
    let response = send(
        &app,
        authorized("POST", &replay_api).header("cookie", "session=1"),
    )
    .await;
    assert_eq!(
        refused(response).await,
        (403, "csrf_token_missing".to_owned())
    );
    let response = send(
        &app,
        authorized("POST", &replay_api).header("x-csrf-token", "00"),
    )
    .await;
    assert_eq!(
        refused(response).await,
        (403, "csrf_token_invalid".to_owned())
    );
    assert_eq!(
        get_json(&app, "/admin/api/stats").await["dead"],
        Value::from(1)
    );

    // The page's form, from the page's origin, with its token: replayed, and back to its page.
    let response = send_body(
        &app,
        same_origin(&replay_form).header("sec-fetch-site", "same-origin"),
        format!("csrf_token={token}"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        format!("/admin/deliveries/{key}").as_str()
    );
    assert_eq!(
        get_json(&app, "/admin/api/stats").await["waiting"],
        Value::from(1)
    );
}

#[tokio::test]
async fn replicas_given_one_key_share_the_form_token_and_a_purge_form_goes_back_to_the_list() {
    let (_dir, inbox) = inbox().await;
    let key = dead(&inbox, "member.created", "evt_1", "boom").await;
    let app = app(&inbox);
    let token = form_token(&app).await;
    let same_origin = |uri: &str| {
        authorized("POST", uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("origin", "http://inbox.test:3000")
    };
    // A router of its own has another token.
    let other = Router::new().nest(
        "/admin",
        Admin::new(inbox.clone())
            .bearer_token(TOKEN)
            .build()
            .unwrap(),
    );
    let response = send_body(
        &other,
        same_origin(&format!("/admin/deliveries/{key}/replay")),
        format!("csrf_token={token}"),
    )
    .await;
    assert_eq!(
        refused(response).await,
        (403, "csrf_token_invalid".to_owned())
    );
    // Replicas given one key share the token.
    let shared = |inbox: &SqliteInbox| {
        Admin::new(inbox.clone())
            .bearer_token(TOKEN)
            .with_form_key([9; 32])
            .build()
            .unwrap()
    };
    let a = Router::new().nest("/admin", shared(&inbox));
    let b = Router::new().nest("/admin", shared(&inbox));
    assert_eq!(form_token(&a).await, form_token(&b).await);

    // Purge by the form: to the list.
    let response = send_body(
        &app,
        same_origin(&format!("/admin/deliveries/{key}/purge")),
        format!("csrf_token={token}"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/admin?purged=1");
    assert_eq!(
        get_json(&app, "/admin/api/stats").await["dead"],
        Value::from(0)
    );
}

#[tokio::test]
async fn the_page_shows_counts_a_filtered_list_and_a_bulk_replay() {
    let (_dir, inbox) = inbox().await;
    dead(&inbox, "member.created", "evt_1", "boom").await;
    dead(&inbox, "member.deleted", "evt_2", "boom").await;
    done(&inbox, "member.created", "evt_3").await;
    let app = app(&inbox);
    let response = send(&app, authorized("GET", "/admin")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let page = text(response).await;
    assert!(
        page.contains("<td>2</td><td>1</td>"),
        "dead 2, done 1: {page}"
    );
    for id in ["evt_1", "evt_2", "evt_3"] {
        assert!(page.contains(id), "{id}");
    }
    let page = text(
        send(
            &app,
            authorized("GET", "/admin?state=dead&event=member.created"),
        )
        .await,
    )
    .await;
    assert!(page.contains("evt_1") && !page.contains("evt_2") && !page.contains("evt_3"));
    assert!(page.contains("<option selected>dead</option>"), "{page}");
    assert!(
        page.contains("Replay every dead delivery of this event"),
        "{page}"
    );
    let response = send(&app, authorized("GET", "/admin?state=sleeping")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(text(response).await.contains("bad_state"));

    // The bulk replay's form.
    let token = form_token(&app).await;
    let response = send_body(
        &app,
        authorized("POST", "/admin/replay")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("origin", "http://inbox.test:3000"),
        format!("csrf_token={token}&event=member.deleted"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/admin?replayed=1");
    let page = text(send(&app, authorized("GET", "/admin?replayed=1")).await).await;
    assert!(page.contains("Replayed 1 dead deliveries."), "{page}");
}

#[tokio::test]
async fn hostile_stored_values_are_shown_as_text_in_the_page() {
    let (_dir, inbox) = inbox().await;
    let event = "<script>alert('event')</script>";
    let id = "\"><img src=x onerror=alert(1)>";
    let key = dead(&inbox, event, id, "</pre><script>alert(\"error\")</script>").await;
    let app = app(&inbox);
    for uri in ["/admin".to_owned(), format!("/admin/deliveries/{key}")] {
        let page = text(send(&app, authorized("GET", &uri)).await).await;
        assert!(!page.contains("<script"), "{uri}: {page}");
        assert!(!page.contains("<img"), "{uri}: {page}");
        assert!(
            page.contains("&lt;script&gt;alert(&#39;event&#39;)&lt;/script&gt;"),
            "{uri}: {page}"
        );
        assert!(
            page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
            "{uri}: {page}"
        );
    }
    // The JSON API gives the values as they are.
    let rows = get_json(&app, "/admin/api/deliveries?state=dead").await;
    assert_eq!(rows[0]["event"], Value::from(event));
    assert_eq!(rows[0]["id"], Value::from(id));
}

#[tokio::test]
async fn the_admin_lists_and_replays_deliveries_on_sqlite() {
    let (_dir, inbox) = inbox().await;
    inbox_common::admin::the_admin_lists_filters_pages_and_replays(inbox).await;
}
