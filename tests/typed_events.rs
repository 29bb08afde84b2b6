//! Typed events through the real layer: `Event<SotionEvent>` for each of Sotion's nine types,
//! unknown types and drifted data, and users' own `FromEvent` types for GitHub and Stripe.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt;
use tower_webhook::envelope::{AccessGroupData, AccessGroupMemberData, MemberData};
use tower_webhook::extract::{Event, Verified};
use tower_webhook::scheme::{Outgoing, Scheme};
use tower_webhook::testing::{signed_request, sotion_event_with_data, sotion_request};
use tower_webhook::{
    Envelope, EventRouter, EventType, FromEvent, RawObject, Secret, SotionEvent, WebhookLayer,
    WebhookMeta,
};

const SECRET: &str = "whsec_typed_events_suite";
const NOW: i64 = 1_700_000_000;

/// The one place this file builds a layer: `scheme`, the suite's secret, the clock at `NOW`.
fn layer(scheme: &Scheme) -> WebhookLayer {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.unsigned_abs());
    WebhookLayer::builder(scheme.clone())
        .with_secret(SECRET)
        .with_clock(move || now)
        .build()
        .unwrap()
}

fn secret(scheme: &Scheme) -> Secret {
    scheme.secret(SECRET).unwrap()
}

/// `POST /webhooks` behind a layer for `scheme`, with a handler that records each `T` it is
/// given and answers `200 handled`.
fn app<T>(scheme: &Scheme) -> (Router, Arc<Mutex<Vec<T>>>)
where
    T: FromEvent + Send + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::clone(&seen);
    let handler = move |Event(event): Event<T>| {
        let state = Arc::clone(&state);
        async move {
            state.lock().unwrap().push(event);
            "handled"
        }
    };
    let router = Router::new().route("/webhooks", post(handler).route_layer(layer(scheme)));
    (router, seen)
}

async fn send(app: &Router, request: Request<Full<Bytes>>) -> Response<Body> {
    app.clone().oneshot(request.map(Body::new)).await.unwrap()
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A signed Sotion delivery of `event_type` with `data`.
fn sotion(event_type: &str, id: &str, data: &serde_json::Value) -> Request<Full<Bytes>> {
    let body = sotion_event_with_data(event_type, id, "site_1", data);
    sotion_request(&secret(&Scheme::sotion()), body)
}

fn member(id: &str, email: &str, name: &str, status: &str) -> MemberData {
    let mut member = MemberData::default();
    member.id = Some(id.to_owned());
    member.email = Some(email.to_owned());
    member.name = Some(name.to_owned());
    member.status = Some(status.to_owned());
    member
}

fn group(id: &str, name: &str, description: &str) -> AccessGroupData {
    let mut group = AccessGroupData::default();
    group.id = Some(id.to_owned());
    group.name = Some(name.to_owned());
    group.description = Some(description.to_owned());
    group
}

fn group_member(group: &str, member: &str) -> AccessGroupMemberData {
    let mut data = AccessGroupMemberData::default();
    data.access_group_id = Some(group.to_owned());
    data.member_id = Some(member.to_owned());
    data
}

#[tokio::test]
async fn each_documented_sotion_type_reaches_its_variant_with_typed_data() {
    let member_json =
        json!({"id": "m_1", "email": "ada@example.com", "name": "Ada", "status": "active"});
    let group_json = json!({"id": "g_1", "name": "Pro", "description": "Paying members"});
    let group_member_json = json!({"accessGroupId": "g_1", "memberId": "m_1"});
    let ada = member("m_1", "ada@example.com", "Ada", "active");
    let pro = group("g_1", "Pro", "Paying members");
    let joined = group_member("g_1", "m_1");
    let cases = [
        (
            "member.created",
            &member_json,
            SotionEvent::MemberCreated(ada.clone()),
        ),
        (
            "member.updated",
            &member_json,
            SotionEvent::MemberUpdated(ada.clone()),
        ),
        (
            "member.auth",
            &member_json,
            SotionEvent::MemberAuth(ada.clone()),
        ),
        (
            "member.deleted",
            &member_json,
            SotionEvent::MemberDeleted(ada),
        ),
        (
            "access-group.created",
            &group_json,
            SotionEvent::AccessGroupCreated(pro.clone()),
        ),
        (
            "access-group.updated",
            &group_json,
            SotionEvent::AccessGroupUpdated(pro.clone()),
        ),
        (
            "access-group.deleted",
            &group_json,
            SotionEvent::AccessGroupDeleted(pro),
        ),
        (
            "access-group.member.added",
            &group_member_json,
            SotionEvent::AccessGroupMemberAdded(joined.clone()),
        ),
        (
            "access-group.member.removed",
            &group_member_json,
            SotionEvent::AccessGroupMemberRemoved(joined),
        ),
    ];
    assert_eq!(cases.len(), EventType::KNOWN.len());
    let (app, seen) = app::<SotionEvent>(&Scheme::sotion());
    for (i, (event_type, data, expected)) in cases.into_iter().enumerate() {
        let response = send(&app, sotion(event_type, &format!("evt_{i}"), data)).await;
        assert_eq!(response.status(), 200, "{event_type}");
        let got = seen.lock().unwrap().pop().unwrap();
        assert_eq!(got, expected, "{event_type}");
        assert_eq!(got.name(), event_type);
        assert_eq!(got.event_type(), EventType::from(event_type));
        assert!(got.event_type().is_known());
    }
}

#[tokio::test]
async fn an_unknown_sotion_type_is_acknowledged_with_its_name_and_raw_data() {
    // Spacing and key order as sent: `data` is kept byte for byte.
    let raw_data = r#"{ "old" : "Blog",  "new": "Journal", "n": [1, 2.50] }"#;
    let body = format!(
        r#"{{"id":"evt_u","type":"site.renamed","timestamp":"2026-03-28T12:00:00.000Z","version":"1","siteId":"site_1","data":{raw_data}}}"#
    );
    let (app, seen) = app::<SotionEvent>(&Scheme::sotion());
    let response = send(&app, sotion_request(&secret(&Scheme::sotion()), body)).await;
    assert_eq!(response.status(), 200);
    let got = seen.lock().unwrap().pop().unwrap();
    assert_eq!(got.name(), "site.renamed");
    assert_eq!(got.event_type(), EventType::Other("site.renamed".into()));
    let SotionEvent::Other { name, data } = got else {
        panic!("expected Other, got {got:?}");
    };
    assert_eq!(name, "site.renamed");
    assert_eq!(&data[..], raw_data.as_bytes());
}

#[tokio::test]
async fn a_known_type_with_extra_missing_or_wrongly_typed_fields_is_still_handled() {
    let (app, seen) = app::<SotionEvent>(&Scheme::sotion());

    // Extra fields (one nested), a missing optional field, and a modelled field of the wrong
    // type: the rest is typed, nothing is lost.
    let data = json!({
        "id": "m_1",
        "email": 42,
        "name": null,
        "plan": "pro",
        "address": {"city": "Paris"},
    });
    let response = send(&app, sotion("member.created", "evt_1", &data)).await;
    assert_eq!(response.status(), 200);
    let SotionEvent::MemberCreated(member) = seen.lock().unwrap().pop().unwrap() else {
        panic!("expected MemberCreated");
    };
    assert_eq!(member.id.as_deref(), Some("m_1"));
    assert_eq!(member.email, None);
    assert_eq!(member.name, None);
    assert_eq!(member.status, None);
    assert_eq!(member.extra.get_as::<u32>("email").unwrap(), Some(42));
    assert_eq!(member.extra.get("plan").unwrap().get(), r#""pro""#);
    assert_eq!(
        member.extra.get_as::<serde_json::Value>("address").unwrap(),
        Some(json!({"city": "Paris"}))
    );
    assert!(!member.extra.contains_key("name"), "null is no value");
    assert!(
        !member.extra.contains_key("id"),
        "a typed field is not repeated"
    );
    // Serialized back, it is the same object (without the null).
    let mut expected = data.clone();
    expected.as_object_mut().unwrap().remove("name");
    assert_eq!(serde_json::to_value(&member).unwrap(), expected);

    // Every modelled field of every data type drifted at once.
    let drifted = json!({"id": 1, "name": ["Pro"], "description": {"text": "x"}});
    let response = send(&app, sotion("access-group.updated", "evt_2", &drifted)).await;
    assert_eq!(response.status(), 200);
    let SotionEvent::AccessGroupUpdated(group) = seen.lock().unwrap().pop().unwrap() else {
        panic!("expected AccessGroupUpdated");
    };
    assert_eq!(
        (group.id, group.name, group.description),
        (None, None, None)
    );
    assert_eq!(serde_json::to_value(&group.extra).unwrap(), drifted);

    let drifted = json!({"accessGroupId": true, "memberId": "m_1"});
    let response = send(
        &app,
        sotion("access-group.member.removed", "evt_3", &drifted),
    )
    .await;
    assert_eq!(response.status(), 200);
    let SotionEvent::AccessGroupMemberRemoved(removed) = seen.lock().unwrap().pop().unwrap() else {
        panic!("expected AccessGroupMemberRemoved");
    };
    assert_eq!(removed.access_group_id, None);
    assert_eq!(removed.member_id.as_deref(), Some("m_1"));
    assert_eq!(
        removed.extra.get_as::<bool>("accessGroupId").unwrap(),
        Some(true)
    );

    // An empty object: every field missing.
    let response = send(&app, sotion("member.auth", "evt_4", &json!({}))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        seen.lock().unwrap().pop().unwrap(),
        SotionEvent::MemberAuth(MemberData::default())
    );
}

#[tokio::test]
async fn a_handler_gets_the_raw_signed_bytes_next_to_the_typed_event() {
    let handler = |Event(event): Event<SotionEvent>, raw: Bytes| async move {
        format!("{} {}", event.name(), raw.len())
    };
    let app = Router::new().route(
        "/webhooks",
        post(handler).route_layer(layer(&Scheme::sotion())),
    );
    let body = sotion_event_with_data("member.created", "evt_1", "site_1", &json!({"a": 1}));
    let length = body.len();
    let response = send(&app, sotion_request(&secret(&Scheme::sotion()), body)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, format!("member.created {length}"));
}

#[tokio::test]
async fn event_without_the_layer_is_a_500_naming_the_layer() {
    let handler = |Event(event): Event<SotionEvent>| async move { event.name().to_owned() };
    let unguarded = Router::new().route("/webhooks", post(handler));
    let body = sotion_event_with_data("member.created", "evt_1", "site_1", &json!({}));
    let response = send(&unguarded, sotion_request(&secret(&Scheme::sotion()), body)).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let answer: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(answer["error"], "missing_webhook_layer");
}

/// A type that refuses what it does not know: the anti-pattern `FromEvent`'s docs warn against.
#[derive(Debug)]
struct Strict;

impl FromEvent for Strict {
    fn from_event(meta: &WebhookMeta, _: &Bytes) -> Result<Self, serde_json::Error> {
        match meta.event() {
            Some("member.created") => Ok(Self),
            _ => Err(serde::de::Error::custom("not a member.created event")),
        }
    }
}

#[tokio::test]
async fn a_from_event_error_is_422_invalid_data_with_its_message() {
    let (app, seen) = app::<Strict>(&Scheme::sotion());
    let response = send(&app, sotion("member.created", "evt_1", &json!({}))).await;
    assert_eq!(response.status(), 200);
    let response = send(&app, sotion("member.deleted", "evt_2", &json!({}))).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let answer: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(answer["error"], "invalid_data");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("not a member.created event"),
        "{answer}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn sotion_event_behind_another_scheme_is_other_with_the_whole_body() {
    let scheme = Scheme::stripe();
    let (app, seen) = app::<SotionEvent>(&scheme);
    let body = br#"{"id":"evt_1","object":"event","type":"invoice.paid"}"#;
    let response = send(&app, stripe(body)).await;
    assert_eq!(response.status(), 200);
    let got = seen.lock().unwrap().pop().unwrap();
    assert_eq!(
        got,
        SotionEvent::Other {
            name: "invoice.paid".to_owned(),
            data: Bytes::from_static(body),
        }
    );
}

// --- GitHub: a user's own `FromEvent`, keyed by `X-GitHub-Event` and the body's `action`. ---

#[derive(Debug)]
enum GitHubEvent {
    IssuesOpened(IssuesEvent),
    Push(PushEvent),
    Other {
        event: Option<String>,
        action: Option<String>,
        payload: Bytes,
    },
}

#[derive(Debug, Deserialize)]
struct IssuesEvent {
    issue: Option<Issue>,
}

#[derive(Debug, Deserialize)]
struct Issue {
    number: Option<u64>,
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    #[serde(default)]
    commits: Vec<serde_json::Value>,
}

impl FromEvent for GitHubEvent {
    fn from_event(meta: &WebhookMeta, payload: &Bytes) -> Result<Self, serde_json::Error> {
        let typed = match (meta.event(), meta.action()) {
            (Some("issues"), Some("opened")) => {
                serde_json::from_slice(payload).map(Self::IssuesOpened)
            }
            (Some("push"), _) => serde_json::from_slice(payload).map(Self::Push),
            _ => return Ok(Self::other(meta, payload)),
        };
        Ok(typed.unwrap_or_else(|_| Self::other(meta, payload)))
    }
}

impl GitHubEvent {
    fn other(meta: &WebhookMeta, payload: &Bytes) -> Self {
        Self::Other {
            event: meta.event().map(str::to_owned),
            action: meta.action().map(str::to_owned),
            payload: payload.clone(),
        }
    }
}

fn github(id: &str, event: &str, body: &[u8]) -> Request<Full<Bytes>> {
    let scheme = Scheme::github();
    let message = Outgoing {
        id,
        event,
        timestamp: NOW,
        body,
    };
    signed_request(&scheme, &secret(&scheme), &message)
}

#[tokio::test]
async fn a_github_enum_is_keyed_by_event_and_action_with_an_other_fallback() {
    let (app, seen) = app::<GitHubEvent>(&Scheme::github());
    let take = || seen.lock().unwrap().pop().unwrap();

    let opened = br#"{"action":"opened","issue":{"number":7,"title":"Crash","labels":[]}}"#;
    assert_eq!(
        send(&app, github("d1", "issues", opened)).await.status(),
        200
    );
    let GitHubEvent::IssuesOpened(event) = take() else {
        panic!("expected IssuesOpened");
    };
    let issue = event.issue.unwrap();
    assert_eq!(
        (issue.number, issue.title.as_deref()),
        (Some(7), Some("Crash"))
    );

    let push = br#"{"ref":"refs/heads/main","commits":[{"id":"abc"}]}"#;
    assert_eq!(send(&app, github("d2", "push", push)).await.status(), 200);
    let GitHubEvent::Push(event) = take() else {
        panic!("expected Push");
    };
    assert_eq!(event.git_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(event.commits.len(), 1);

    // Another action of a known event, and an unknown event: `Other`, acknowledged.
    let closed = br#"{"action":"closed","issue":{"number":7}}"#;
    assert_eq!(
        send(&app, github("d3", "issues", closed)).await.status(),
        200
    );
    let GitHubEvent::Other {
        event,
        action,
        payload,
    } = take()
    else {
        panic!("expected Other");
    };
    assert_eq!(event.as_deref(), Some("issues"));
    assert_eq!(action.as_deref(), Some("closed"));
    assert_eq!(&payload[..], closed);

    let star = br#"{"action":"created","starred_at":null}"#;
    assert_eq!(send(&app, github("d4", "star", star)).await.status(), 200);
    assert!(matches!(take(), GitHubEvent::Other { event: Some(e), .. } if e == "star"));

    // A known event whose payload drifted (the number became a string): still acknowledged,
    // as `Other` with its bytes.
    let drifted = br#"{"action":"opened","issue":{"number":"7"}}"#;
    assert_eq!(
        send(&app, github("d5", "issues", drifted)).await.status(),
        200
    );
    assert!(matches!(
        take(),
        GitHubEvent::Other { action: Some(a), payload, .. } if a == "opened" && &payload[..] == drifted
    ));
}

// --- Stripe: a user's own `FromEvent`, keyed by the body's `type`. ---

#[derive(Debug)]
enum StripeEvent {
    InvoicePaid(Invoice),
    Other {
        event: Option<String>,
        payload: Bytes,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Invoice {
    id: Option<String>,
    customer: Option<String>,
    amount_paid: Option<i64>,
}

#[derive(Deserialize)]
struct Data<T> {
    data: Object<T>,
}

#[derive(Deserialize)]
struct Object<T> {
    object: T,
}

impl FromEvent for StripeEvent {
    fn from_event(meta: &WebhookMeta, payload: &Bytes) -> Result<Self, serde_json::Error> {
        let other = || Self::Other {
            event: meta.event().map(str::to_owned),
            payload: payload.clone(),
        };
        Ok(match meta.event() {
            Some("invoice.paid") => serde_json::from_slice::<Data<Invoice>>(payload)
                .map_or_else(|_| other(), |data| Self::InvoicePaid(data.data.object)),
            _ => other(),
        })
    }
}

fn stripe(body: &[u8]) -> Request<Full<Bytes>> {
    let scheme = Scheme::stripe();
    let message = Outgoing {
        id: "",
        event: "",
        timestamp: NOW,
        body,
    };
    signed_request(&scheme, &secret(&scheme), &message)
}

#[tokio::test]
async fn a_stripe_enum_is_keyed_by_type_with_an_other_fallback() {
    let (app, seen) = app::<StripeEvent>(&Scheme::stripe());
    let take = || seen.lock().unwrap().pop().unwrap();

    let paid = br#"{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1","customer":"cus_1","amount_paid":2000,"lines":{}}}}"#;
    assert_eq!(send(&app, stripe(paid)).await.status(), 200);
    let StripeEvent::InvoicePaid(invoice) = take() else {
        panic!("expected InvoicePaid");
    };
    assert_eq!(invoice.id.as_deref(), Some("in_1"));
    assert_eq!(invoice.customer.as_deref(), Some("cus_1"));
    assert_eq!(invoice.amount_paid, Some(2000));

    let created = br#"{"id":"evt_2","object":"event","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
    assert_eq!(send(&app, stripe(created)).await.status(), 200);
    let StripeEvent::Other { event, payload } = take() else {
        panic!("expected Other");
    };
    assert_eq!(event.as_deref(), Some("customer.created"));
    assert_eq!(&payload[..], created);

    // Drifted (`amount_paid` as a string): acknowledged as `Other`, not refused.
    let drifted = br#"{"id":"evt_3","object":"event","type":"invoice.paid","data":{"object":{"amount_paid":"2000"}}}"#;
    assert_eq!(send(&app, stripe(drifted)).await.status(), 200);
    assert!(matches!(take(), StripeEvent::Other { event: Some(e), .. } if e == "invoice.paid"));
}

/// Adversarial review: drifted data that is valid JSON but that `serde_json::Value` cannot hold
/// (a number out of f64 range, nesting deeper than its recursion limit) must not refuse a known
/// event: the envelope accepts it, so its handler must get it. `1e400`, 200-deep nesting and a lone surrogate escape (`"\ud800"`, which JavaScript's
/// `JSON.stringify` writes for a broken emoji in user text) pass the envelope's `RawValue` but
/// not `serde_json::Value`: such a value is kept in `extra` as its raw JSON text.
#[tokio::test]
async fn review_known_type_with_unrepresentable_data_is_still_handled() {
    let (app, seen) = app::<SotionEvent>(&Scheme::sotion());
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let cases = [
        (r#"{"id":"m_1","score":1e400}"#.to_owned(), "huge"),
        (
            r#"{"id":"m_1","big":123456789012345678901234567890}"#.to_owned(),
            "bigint",
        ),
        (format!(r#"{{"id":"m_1","nested":{deep}}}"#), "deep"),
        (
            r#"{"id":"m_1","id":"m_2","\u0069d":"m_3"}"#.to_owned(),
            "repeat",
        ),
        (
            r#"{"id":"m_1","email":"a\u0000@b","name":"Ada \ud83d"}"#.to_owned(),
            "escapes",
        ),
    ];
    for (n, (data, what)) in cases.iter().enumerate() {
        let body = format!(
            r#"{{"id":"evt_{n}","type":"member.created","timestamp":"2023-11-14T22:13:20Z","version":"1","siteId":"site_1","data":{data}}}"#
        );
        let request = tower_webhook::testing::Delivery::new(body)
            .with_id(format!("evt_{n}"))
            .with_event("member.created")
            .sign(&Scheme::sotion(), &secret(&Scheme::sotion()));
        let response = send(&app, request).await;
        let status = response.status();
        let text = text(response).await;
        assert_eq!(status, 200, "{what}: {text}");
        let Some(SotionEvent::MemberCreated(member)) = seen.lock().unwrap().pop() else {
            panic!("{what}: expected MemberCreated");
        };
        assert_eq!(
            member.id.as_deref(),
            Some(if *what == "repeat" { "m_3" } else { "m_1" }),
            "{what}"
        );
        if *what == "huge" {
            assert_eq!(
                member.extra.get("score").unwrap().get(),
                "1e400",
                "kept as sent"
            );
        }
        if *what == "escapes" {
            assert_eq!(member.email.as_deref(), Some("a\0@b"));
            assert_eq!(member.name, None);
            assert_eq!(member.extra.get("name").unwrap().get(), r#""Ada \ud83d""#);
        }
    }
}

/// What each of the three ways to take a Sotion event got: `Event<SotionEvent>`, a router like
/// the demo receiver's (`Envelope<MemberData>` per type, examples/receiver.rs), and the default
/// `Envelope` (its `data` a `RawObject`).
#[derive(Default)]
struct Received {
    event: Vec<SotionEvent>,
    demo: Vec<MemberData>,
    plain: Vec<RawObject>,
}

/// `POST /event`, `/demo` and `/plain`, each behind the layer, recording into one `Received`.
fn drift_app() -> (Router, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    let (event, demo, plain) = (received.clone(), received.clone(), received.clone());
    let on_event = move |Event(got): Event<SotionEvent>| {
        let event = Arc::clone(&event);
        async move {
            event.lock().unwrap().event.push(got);
            "ok"
        }
    };
    let on_member = move |got: Envelope<MemberData>| {
        let demo = Arc::clone(&demo);
        async move {
            demo.lock().unwrap().demo.push(got.data);
            "ok"
        }
    };
    let on_plain = move |got: Envelope| {
        let plain = Arc::clone(&plain);
        async move {
            plain.lock().unwrap().plain.push(got.data);
            "ok"
        }
    };
    let sotion = Scheme::sotion();
    let router = Router::new()
        .route("/event", post(on_event).route_layer(layer(&sotion)))
        .route(
            "/demo",
            post(EventRouter::new().on("member.created", on_member)).route_layer(layer(&sotion)),
        )
        .route("/plain", post(on_plain).route_layer(layer(&sotion)));
    (router, received)
}

/// Sends a `member.created` whose `data` is the JSON text `data` to each route of
/// [`drift_app`]; each must answer `200`. Returns what the three handlers got.
async fn deliver_drift(app: &Router, received: &Mutex<Received>, data: &str) -> Received {
    // A new id each time: a repeated one would be answered as a duplicate, unhandled.
    static DELIVERIES: AtomicUsize = AtomicUsize::new(0);
    let id = format!("evt_drift_{}", DELIVERIES.fetch_add(1, Ordering::Relaxed));
    let body = format!(
        r#"{{"id":"{id}","type":"member.created","timestamp":"2023-11-14T22:13:20Z","version":"1","siteId":"site_1","data":{data}}}"#
    );
    assert!(body.len() < 1024 * 1024, "within the default body limit");
    for path in ["/event", "/demo", "/plain"] {
        let request = tower_webhook::testing::Delivery::new(body.clone())
            .with_path(path)
            .with_id(&id)
            .with_event("member.created")
            .sign(&Scheme::sotion(), &secret(&Scheme::sotion()));
        let response = send(app, request).await;
        let status = response.status();
        if status != 200 {
            let text = text(response).await;
            panic!("{path}: {status} {text}");
        }
    }
    std::mem::take(&mut *received.lock().unwrap())
}

/// The `MemberData` of a `member.created` event, whichever way it was taken (the two agree).
fn member_of(got: &Received) -> &MemberData {
    let [SotionEvent::MemberCreated(member)] = &got.event[..] else {
        panic!("expected one MemberCreated, got {:?}", got.event);
    };
    assert_eq!(got.demo, std::slice::from_ref(member));
    assert_eq!(got.plain.len(), 1);
    member
}

/// Issue 19, item 7: a `member.created` whose `data` carries an unknown field holding a
/// 4,000-digit number (valid JSON, far within the body limit) is handled, by
/// `Event<SotionEvent>` and by a router like the demo receiver's (`Envelope<MemberData>` per
/// type, which answered `422 invalid_data`), and the number is kept as sent.
#[tokio::test]
async fn an_unknown_field_holding_a_4000_digit_number_is_handled_and_kept() {
    let (app, received) = drift_app();
    let digits = format!("9{}", "0".repeat(3_999));
    let data = format!(r#"{{"id":"m_1","email":"ada@example.com","balance":{digits}}}"#);
    let got = deliver_drift(&app, &received, &data).await;
    let member = member_of(&got);
    assert_eq!(member.id.as_deref(), Some("m_1"));
    assert_eq!(member.email.as_deref(), Some("ada@example.com"));
    assert_eq!(member.extra.get("balance").unwrap().get(), digits);
    assert_eq!(got.plain[0].get("balance").unwrap().get(), digits);
    // Asked for as a type it does not fit, it is an error to the handler, not a refusal.
    assert!(member.extra.get_as::<f64>("balance").is_err());
    assert_eq!(member.extra.get_as::<String>("absent").unwrap(), None);
}

/// Every kind of valid JSON `serde_json::Value` cannot hold, or that is merely odd, in an
/// unknown field and in a modelled one: always handled, always kept byte for byte. Nesting has
/// no limit but the body's: `serde_json` skips a value kept raw without recursing, so its
/// recursion limit of 128 applies only when a handler reads such a value as a type.
#[tokio::test]
async fn any_valid_json_in_data_is_handled_and_kept_as_sent() {
    let deep_arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_objects = format!("{}true{}", r#"{"a":"#.repeat(40_000), "}".repeat(40_000));
    let just_past_the_limit = format!("{}0{}", "[".repeat(129), "]".repeat(129));
    let long = format!(r#""{}""#, "aé😀\u{FFFF}".repeat(20_000));
    let values = [
        format!("9{}", "9".repeat(3_999)),
        format!("-{}", "1".repeat(4_000)),
        format!("0.{}1", "0".repeat(4_000)),
        "1e400".to_owned(),
        "-1E+400".to_owned(),
        "-0".to_owned(),
        "-0.0e-0".to_owned(),
        "1e-400".to_owned(),
        "5e-99999999999999999999999".to_owned(),
        format!("1e-{}", "9".repeat(1_000)),
        "18446744073709551616".to_owned(),
        "-9223372036854775809".to_owned(),
        deep_arrays,
        deep_objects,
        just_past_the_limit,
        r#""\ud800""#.to_owned(),
        r#""\udfff""#.to_owned(),
        r#""\udc00\ud800""#.to_owned(),
        r#""a\ud83d\ude00b\ud83d""#.to_owned(),
        r#""\uffff\ufffe\ufdd0\udbff\udfff""#.to_owned(),
        "\"\u{FFFF}\u{FDD0}\u{10FFFF}\"".to_owned(),
        r#""\ufeff""#.to_owned(),
        "\"\u{FEFF}text\"".to_owned(),
        r#""a\u0000b\u001f""#.to_owned(),
        long,
        r#"[ 1 , { "b" : [ ] } , "\"" ]"#.to_owned(),
        r#"{"x":1e400,"x":2}"#.to_owned(),
        "null".to_owned(),
    ];
    let (app, received) = drift_app();
    for value in &values {
        let what: String = value.chars().take(40).collect();
        // The same value in an unknown field and in a modelled one (`name`, a string).
        let data = format!(r#"{{"id":"m_1","unknown": {value} ,"name":{value}}}"#);
        let got = deliver_drift(&app, &received, &data).await;
        let member = member_of(&got);
        assert_eq!(member.id.as_deref(), Some("m_1"), "{what}");
        assert_eq!(member.extra.get("unknown").unwrap().get(), value, "{what}");
        assert_eq!(got.plain[0].get("unknown").unwrap().get(), value, "{what}");
        assert_eq!(got.plain[0].get("name").unwrap().get(), value, "{what}");
        if let Ok(text) = serde_json::from_str::<Option<String>>(value) {
            // A string (or null) is the modelled field's value.
            assert_eq!(member.name, text, "{what}");
            assert!(!member.extra.contains_key("name"), "{what}");
        } else {
            // Anything else, a lone surrogate included, is kept in `extra` as sent.
            assert_eq!(member.name, None, "{what}");
            assert_eq!(member.extra.get("name").unwrap().get(), value, "{what}");
        }
        // What `serde_json::Value` can hold reads back as the same value.
        if let Ok(expected) = serde_json::from_str::<serde_json::Value>(value) {
            let kept: Option<serde_json::Value> = member.extra.get_as("unknown").unwrap();
            assert_eq!(kept, Some(expected), "{what}");
        }
    }
}

/// Field names are never a reason to refuse either: a lone surrogate escape is read as U+FFFD,
/// and empty, NUL, BOM and noncharacter names are names like any other.
#[tokio::test]
async fn odd_field_names_are_kept() {
    let (app, received) = drift_app();
    let data = r#"{"\ud800":1,"":2,"\u0000":3,"\ufeff":4,"\uffff":5,"\udc00x\ud800":6,"em\u0061il":"a@b.c"}"#;
    let got = deliver_drift(&app, &received, data).await;
    let member = member_of(&got);
    assert_eq!(member.email.as_deref(), Some("a@b.c"));
    for (name, raw) in [
        ("\u{FFFD}", "1"),
        ("", "2"),
        ("\0", "3"),
        ("\u{FEFF}", "4"),
        ("\u{FFFF}", "5"),
        ("\u{FFFD}x\u{FFFD}", "6"),
    ] {
        assert_eq!(member.extra.get(name).unwrap().get(), raw, "{name:?}");
    }
    assert_eq!(member.extra.len(), 6);
}

/// `Verified<T>` reads the whole body as the handler's `T`: `RawObject` keeps any body, where
/// `serde_json::Value` says `422` (the handler's choice, documented).
#[tokio::test]
async fn verified_raw_object_keeps_any_body() {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::clone(&kept);
    let handler = move |Verified(body): Verified<RawObject>| {
        let state = Arc::clone(&state);
        async move {
            state.lock().unwrap().push(body);
            "ok"
        }
    };
    let stripe_scheme = Scheme::stripe();
    let app = Router::new()
        .route(
            "/webhooks",
            post(handler).route_layer(layer(&stripe_scheme)),
        )
        .route(
            "/value",
            post(|_: Verified<serde_json::Value>| async { "unreachable" })
                .route_layer(layer(&stripe_scheme)),
        );
    let body = format!(
        r#"{{"id":"evt_1","type":"invoice.paid","data":{{"object":{{"amount_paid":{},"memo":"\ud800"}}}}}}"#,
        "7".repeat(4_000)
    );
    let response = send(&app, stripe(body.as_bytes())).await;
    assert_eq!(response.status(), 200);
    let body_kept = kept.lock().unwrap().pop().unwrap();
    assert_eq!(
        body_kept.get_as::<String>("type").unwrap().as_deref(),
        Some("invoice.paid")
    );
    let data: RawObject = body_kept.get_as("data").unwrap().unwrap();
    let object: RawObject = data.get_as("object").unwrap().unwrap();
    assert_eq!(object.get("amount_paid").unwrap().get(), "7".repeat(4_000));

    let mut request = stripe(body.as_bytes());
    *request.uri_mut() = "/value".parse().unwrap();
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

mod arbitrary_json {
    //! Arbitrary valid JSON text, as a sender may write it: numbers of any size, strings with
    //! any escape (lone surrogates, NUL) and any character, any whitespace, nesting past 128.

    use proptest::prelude::*;

    fn whitespace() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ \t\n\r]{0,2}").unwrap()
    }

    fn number() -> impl Strategy<Value = String> {
        proptest::string::string_regex(
            "-?(0|[1-9][0-9]{0,400})(\\.[0-9]{1,40})?([eE][+-]?[0-9]{1,30})?",
        )
        .unwrap()
    }

    pub(super) fn string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            any::<char>()
                .prop_filter("needs an escape", |c| *c >= ' ' && *c != '"' && *c != '\\')
                .prop_map(String::from),
            prop::sample::select(vec![
                r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\n", r"\r", r"\t"
            ])
            .prop_map(str::to_owned),
            any::<u16>().prop_map(|unit| format!("\\u{unit:04x}")),
            (0xD800_u16..0xE000).prop_map(|unit| format!("\\u{unit:04X}")),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
    }

    pub(super) fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            number(),
            string(),
        ];
        let tree = leaf.prop_recursive(6, 48, 5, |inner| {
            let item = (whitespace(), inner, whitespace())
                .prop_map(|(a, v, b)| a + &v + &b)
                .boxed();
            prop_oneof![
                prop::collection::vec(item.clone(), 0..5)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec((whitespace(), string(), whitespace(), item), 0..5).prop_map(
                    |fields| {
                        let fields: Vec<String> = fields
                            .into_iter()
                            .map(|(a, name, b, value)| format!("{a}{name}{b}:{value}"))
                            .collect();
                        format!("{{{}}}", fields.join(","))
                    }
                ),
            ]
        });
        // Sometimes nested past serde_json's recursion limit of 128.
        (tree, prop_oneof![3 => Just(0_usize), 1 => 120_usize..300])
            .prop_map(|(value, depth)| format!("{}{value}{}", "[".repeat(depth), "]".repeat(depth)))
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any valid JSON value in an unknown field, and in a modelled one, of a known event's
    /// `data`: never refused, and kept byte for byte (so it re-parses to the same value).
    #[test]
    fn any_json_value_in_data_is_never_refused_and_kept_byte_for_byte(
        value in arbitrary_json::value(),
        name in arbitrary_json::string(),
    ) {
        // The odd name first: of a repeated name the last value counts, so it cannot hide the
        // fields below.
        let data = format!(r#"{{{name}:0,"id":"m_1","zz-unknown":{value},"status":{value}}}"#);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got = runtime.block_on(async {
            let (app, received) = drift_app();
            deliver_drift(&app, &received, &data).await
        });
        let member = member_of(&got);
        proptest::prop_assert_eq!(member.id.as_deref(), Some("m_1"));
        proptest::prop_assert_eq!(member.extra.get("zz-unknown").unwrap().get(), &value);
        proptest::prop_assert_eq!(got.plain[0].get("status").unwrap().get(), &value);
        if let Ok(text) = serde_json::from_str::<Option<String>>(&value) {
            proptest::prop_assert_eq!(&member.status, &text);
        } else {
            proptest::prop_assert_eq!(member.status.as_deref(), None);
            proptest::prop_assert_eq!(member.extra.get("status").unwrap().get(), &value);
        }
        if let Ok(expected) = serde_json::from_str::<serde_json::Value>(&value) {
            let kept: Option<serde_json::Value> = member.extra.get_as("zz-unknown").unwrap();
            proptest::prop_assert_eq!(kept, Some(expected));
        }
        // The odd name is there too (decoded; a lone surrogate would be U+FFFD), unless it is
        // one of the names that follow it.
        proptest::prop_assert!(got.plain[0].len() >= 3);
        if let Ok(decoded) = serde_json::from_str::<String>(&name) {
            proptest::prop_assert!(got.plain[0].contains_key(&decoded));
        }
    }
}

/// Nesting is limited by the body limit only: the layer skips what it does not read, and `data`'s
/// unknown fields are kept raw, both without recursing, so 200,000 levels (past `serde_json`'s
/// recursion limit of 128 many times over) in an unknown envelope field and in `data` are
/// handled. Read as `serde_json::Value`, such a field is an error to the handler.
#[tokio::test]
async fn nesting_is_limited_only_by_the_body_limit() {
    let (app, received) = drift_app();
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let body = format!(
        r#"{{"id":"evt_deep","type":"member.created","timestamp":"2023-11-14T22:13:20Z","version":"1","siteId":"site_1","later":{deep},"data":{{"id":"m_1","deep":{deep}}}}}"#
    );
    assert!(body.len() < 1024 * 1024);
    let request = tower_webhook::testing::Delivery::new(body)
        .with_path("/event")
        .with_id("evt_deep")
        .with_event("member.created")
        .sign(&Scheme::sotion(), &secret(&Scheme::sotion()));
    let response = send(&app, request).await;
    assert_eq!(response.status(), 200);
    let got = std::mem::take(&mut *received.lock().unwrap());
    let [SotionEvent::MemberCreated(member)] = &got.event[..] else {
        panic!("expected MemberCreated");
    };
    assert_eq!(member.extra.get("deep").unwrap().get(), deep);
    assert!(member.extra.get_as::<serde_json::Value>("deep").is_err());
}
