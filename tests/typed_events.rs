//! Typed events through the real layer: `Event<SotionEvent>` for each of Sotion's nine types,
//! unknown types and drifted data, and users' own `FromEvent` types for GitHub and Stripe.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

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
use tower_webhook::extract::Event;
use tower_webhook::scheme::{Outgoing, Scheme};
use tower_webhook::testing::{signed_request, sotion_event_with_data, sotion_request};
use tower_webhook::{EventType, FromEvent, Secret, SotionEvent, WebhookLayer, WebhookMeta};

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
    assert_eq!(member.extra["email"], 42);
    assert_eq!(member.extra["plan"], "pro");
    assert_eq!(member.extra["address"]["city"], "Paris");
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
    assert_eq!(serde_json::Value::Object(group.extra), drifted);

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
    assert_eq!(removed.extra["accessGroupId"], true);

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
            assert_eq!(member.extra["score"], "1e400", "kept as its raw JSON text");
        }
        if *what == "escapes" {
            assert_eq!(member.email.as_deref(), Some("a\0@b"));
            assert_eq!(member.name, None);
            assert_eq!(member.extra["name"], r#""Ada \ud83d""#);
        }
    }
}
