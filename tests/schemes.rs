//! Every sender's scheme through the layer: interoperability with real signing libraries,
//! rotation, tolerance edges, per-tenant secrets, and typed extraction for any scheme.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use common::{assert_rejected, error_code, fixture_request, fixtures, meta_app, send};
use http_body_util::{BodyExt, Full};
use tower_webhook::extract::Verified;
use tower_webhook::layer::WebhookLayerBuilder;
use tower_webhook::scheme::{
    Encoding, Outgoing, Part, Scheme, SignatureFormat, Source, TimestampFormat, Tolerance,
};
use tower_webhook::testing::signed_request;
use tower_webhook::{Envelope, ResolveError, Secret, Tenant, WebhookLayer};

fn at(unix: i64) -> SystemTime {
    let unix = u64::try_from(unix).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
}

/// A layer for `scheme` with one or more secrets (their text, as the sender shows it), its
/// clock pinned at `now`.
fn layer(scheme: &Scheme, secrets: &[&str], now: i64) -> WebhookLayerBuilder {
    secrets
        .iter()
        .fold(WebhookLayer::builder(scheme.clone()), |layer, secret| {
            layer.with_secret(secret)
        })
        .with_clock(move || at(now))
}

#[tokio::test]
async fn deliveries_signed_by_real_libraries_of_other_ecosystems_are_accepted() {
    let fixtures = fixtures(None);
    let libraries: std::collections::BTreeSet<_> = fixtures.iter().map(|f| &f.library).collect();
    assert!(libraries.len() >= 3, "{libraries:?}");
    for fixture in &fixtures {
        let scheme = Scheme::preset(&fixture.scheme).unwrap();
        let layer = layer(&scheme, &[&fixture.secret], fixture.timestamp);
        let (app, seen) = meta_app(layer, "/webhooks");
        let response = send(&app, fixture_request(fixture, fixture.body.as_bytes())).await;
        assert_eq!(response.status(), 200, "{} {}", fixture.library, fixture.id);
        let meta = seen.last_meta.lock().unwrap().clone().unwrap();
        assert_eq!(meta.id(), fixture.id, "{}", fixture.library);
        assert_eq!(
            seen.last_body.lock().unwrap().as_deref(),
            Some(fixture.body.as_bytes())
        );

        // One byte changed: refused.
        let mut tampered = fixture.body.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] ^= 0x01;
        let (app, seen) = meta_app(
            self::layer(&scheme, &[&fixture.secret], fixture.timestamp),
            "/webhooks",
        );
        let response = send(&app, fixture_request(fixture, &tampered)).await;
        assert_rejected(response, 401, "signature_mismatch", &seen).await;
    }
}

/// A body each preset can read (ids and types where the scheme takes them from the body).
fn sample_body(scheme: &str, id: &str) -> Vec<u8> {
    match scheme {
        "sotion" => tower_webhook::testing::sotion_event("member.created", id, "site_1"),
        "sota" => format!(
            r#"{{"event":"deploy.succeeded","project_id":"p_1","deployment_id":"{id}","timestamp":"2026-02-25T14:30:00Z","data":{{"status":"running"}}}}"#
        )
        .into_bytes(),
        "stripe" => format!(r#"{{"id":"{id}","object":"event","type":"invoice.paid"}}"#).into_bytes(),
        _ => format!(r#"{{"type":"thing.happened","nonce":"{id}"}}"#).into_bytes(),
    }
}

fn secret_text(scheme: &str, name: &str) -> String {
    if scheme == "standard" {
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{name}-key-bytes-0123456789"))
        )
    } else {
        format!("whsec_{name}")
    }
}

const PRESETS: [&str; 6] = ["sotion", "sota", "github", "standard", "stripe", "slack"];
const NOW: i64 = 1_700_000_000;

fn delivery(scheme: &Scheme, secret: &str, id: &str, timestamp: i64) -> Request<Full<Bytes>> {
    let body = sample_body(scheme.name().trim_end_matches("-webhooks"), id);
    let event = if scheme.name() == "sotion" {
        "member.created"
    } else {
        "thing.happened"
    };
    let message = Outgoing {
        id,
        event,
        timestamp,
        body: &body,
    };
    signed_request(scheme, &scheme.secret(secret).unwrap(), &message)
}

#[tokio::test]
async fn every_preset_accepts_old_and_new_secrets_during_rotation_and_no_other() {
    for name in PRESETS {
        let scheme = Scheme::preset(name).unwrap();
        let (old, new, stranger) = (
            secret_text(name, "old"),
            secret_text(name, "new"),
            secret_text(name, "stranger"),
        );
        let (app, seen) = meta_app(layer(&scheme, &[&new, &old], NOW), "/webhooks");
        let response = send(&app, delivery(&scheme, &old, "evt_old", NOW)).await;
        assert_eq!(response.status(), 200, "{name}: old secret");
        let response = send(&app, delivery(&scheme, &new, "evt_new", NOW)).await;
        assert_eq!(response.status(), 200, "{name}: new secret");
        assert_eq!(seen.runs(), 2, "{name}");
        let response = send(&app, delivery(&scheme, &stranger, "evt_x", NOW)).await;
        assert_eq!(response.status(), 401, "{name}: unknown secret");
        assert_eq!(error_code(response).await, "signature_mismatch");
        assert_eq!(seen.runs(), 2, "{name}");
    }
}

#[tokio::test]
async fn every_preset_reports_the_id_its_sender_defines_and_deduplicates_retries() {
    for name in PRESETS {
        let scheme = Scheme::preset(name).unwrap();
        let secret = secret_text(name, "s");
        let (app, seen) = meta_app(layer(&scheme, &[&secret], NOW), "/webhooks");
        assert_eq!(
            send(&app, delivery(&scheme, &secret, "evt_1", NOW))
                .await
                .status(),
            200
        );
        let meta = seen.last_meta.lock().unwrap().clone().unwrap();
        match name {
            "sota" | "slack" => assert_eq!(meta.id().len(), 64, "{name}: body digest"),
            _ => assert_eq!(meta.id(), "evt_1", "{name}"),
        }
        // The sender retries the same event: the handler does not run again.
        let retry = send(&app, delivery(&scheme, &secret, "evt_1", NOW)).await;
        assert_eq!(retry.headers()["x-webhook-duplicate"], "true", "{name}");
        assert_eq!(seen.runs(), 1, "{name}");
    }
}

#[tokio::test]
async fn tolerance_edges_hold_for_every_timestamped_preset() {
    for name in ["standard", "stripe", "slack"] {
        let scheme = Scheme::preset(name).unwrap();
        let secret = secret_text(name, "s");
        let tolerance = i64::try_from(scheme.tolerance().unwrap().past.as_secs()).unwrap();
        assert_eq!(tolerance, 300, "{name}");
        let cases = [
            (NOW - (tolerance - 1), None),
            (NOW + (tolerance - 1), None),
            (NOW - (tolerance + 1), Some("timestamp_too_old")),
            (NOW + (tolerance + 1), Some("timestamp_in_future")),
            (-5, Some("timestamp_too_old")),
            (i64::MIN, Some("timestamp_too_old")),
            (i64::MAX, Some("timestamp_in_future")),
        ];
        for (n, (timestamp, refusal)) in cases.into_iter().enumerate() {
            let layer = layer(&scheme, &[&secret], NOW).without_idempotency();
            let (app, seen) = meta_app(layer, "/webhooks");
            let request = delivery(&scheme, &secret, &format!("evt_{n}"), timestamp);
            let response = send(&app, request).await;
            match refusal {
                None => assert_eq!(response.status(), 200, "{name} at {timestamp}"),
                Some(code) => assert_rejected(response, 401, code, &seen).await,
            }
        }
    }
}

#[tokio::test]
async fn freshness_comes_from_the_injected_clock_not_the_wall_clock() {
    let scheme = Scheme::standard_webhooks();
    let secret = secret_text("standard", "s");
    // Signed in 2001: fresh for a clock pinned in 2001, stale for the wall clock.
    let then = 1_000_000_000;
    let (pinned, _) = meta_app(layer(&scheme, &[&secret], then), "/webhooks");
    assert_eq!(
        send(&pinned, delivery(&scheme, &secret, "e", then))
            .await
            .status(),
        200
    );
    let wall = WebhookLayer::new(scheme.clone(), &secret).unwrap();
    let (app, seen) = meta_app(wall, "/webhooks");
    let response = send(&app, delivery(&scheme, &secret, "e", then)).await;
    assert_rejected(response, 401, "timestamp_too_old", &seen).await;
}

#[tokio::test]
async fn standard_webhooks_refuses_each_missing_header() {
    let scheme = Scheme::standard_webhooks();
    let secret = secret_text("standard", "s");
    for (header, code) in [
        ("webhook-signature", "missing_signature"),
        ("webhook-id", "missing_signed_header"),
        ("webhook-timestamp", "malformed_timestamp"),
    ] {
        let (app, seen) = meta_app(layer(&scheme, &[&secret], NOW), "/webhooks");
        let mut request = delivery(&scheme, &secret, "evt_1", NOW);
        request.headers_mut().remove(header);
        assert_rejected(send(&app, request).await, 401, code, &seen).await;
    }
    // A header value swapped for another delivery's breaks the signature.
    let (app, seen) = meta_app(layer(&scheme, &[&secret], NOW), "/webhooks");
    let mut request = delivery(&scheme, &secret, "evt_1", NOW);
    request
        .headers_mut()
        .insert("webhook-id", HeaderValue::from_static("evt_2"));
    assert_rejected(send(&app, request).await, 401, "signature_mismatch", &seen).await;
}

#[tokio::test]
async fn sotion_can_enforce_a_maximum_age_on_its_signed_body_timestamp() {
    // The sample event is stamped 2026-03-28T12:00:00Z.
    let stamped = 1_774_699_200;
    let scheme = Scheme::sotion()
        .with_tolerance(Tolerance {
            past: Duration::from_secs(3600),
            future: Duration::from_secs(60),
        })
        .unwrap();
    let secret = "whsec_s";
    let fresh = layer(&scheme, &[secret], stamped + 3599);
    let (app, _) = meta_app(fresh, "/webhooks");
    assert_eq!(
        send(&app, delivery(&scheme, secret, "evt_1", 0))
            .await
            .status(),
        200
    );
    for (now, code) in [
        (stamped + 3601, "timestamp_too_old"),
        (stamped - 61, "timestamp_in_future"),
    ] {
        let (app, seen) = meta_app(layer(&scheme, &[secret], now), "/webhooks");
        let response = send(&app, delivery(&scheme, secret, "evt_1", 0)).await;
        assert_rejected(response, 401, code, &seen).await;
    }
    // Off by default: a year-old Sotion event still passes.
    let (app, _) = meta_app(
        layer(&Scheme::sotion(), &[secret], stamped + 365 * 86_400),
        "/webhooks",
    );
    assert_eq!(
        send(&app, delivery(&Scheme::sotion(), secret, "evt_1", 0))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_github_delivery_without_its_delivery_header_is_handled_the_id_being_for_display() {
    let scheme = Scheme::github();
    let (app, seen) = meta_app(layer(&scheme, &["whsec_s"], NOW), "/webhooks");
    let too_long = "d".repeat(300);
    for unusable in [None, Some(""), Some(too_long.as_str())] {
        let mut request = delivery(&scheme, "whsec_s", "d-1", NOW);
        request.headers_mut().remove("x-github-delivery");
        if let Some(value) = unusable {
            let value = HeaderValue::from_str(value).unwrap();
            request.headers_mut().insert("x-github-delivery", value);
        }
        let body = request.body().clone().collect().await.unwrap().to_bytes();
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{unusable:?}");
        // Deduplicated by the signed body as always: the second one is a duplicate.
        let meta = seen.last_meta.lock().unwrap().clone().unwrap();
        let digest = faster_hex::hex_string(&<sha2::Sha256 as sha2::Digest>::digest(&body));
        assert_eq!(meta.id(), digest, "the id shown is the body's digest");
    }
    assert_eq!(seen.runs(), 1, "the same signed body is one event");
}

#[tokio::test]
async fn a_custom_webinone_style_scheme_verifies_without_crypto_code() {
    let scheme = Scheme::builder(
        "webinone",
        "x-webinone-signature",
        SignatureFormat::single("", Encoding::Hex),
    )
    .with_signed(vec![Part::Timestamp, Part::literal("."), Part::Body])
    .with_timestamp(
        Source::header("x-webinone-timestamp"),
        TimestampFormat::UnixSeconds,
    )
    .with_tolerance(Tolerance::symmetric(Duration::from_secs(300)))
    .with_event(Source::header("x-webinone-event"))
    .with_id(Source::BodyDigest)
    .build()
    .unwrap();
    let secret = "client-secret";
    let body = br#"{"Id":42,"Name":"Order"}"#;
    let signed_bytes = [format!("{NOW}.").as_bytes(), body].concat();
    let digest = tower_webhook::verify::digest(&Secret::new(secret).unwrap(), &signed_bytes);
    let request = Request::post("/webhooks")
        .header("x-webinone-signature", faster_hex::hex_string(&digest))
        .header("x-webinone-timestamp", NOW.to_string())
        .header("x-webinone-event", "Order.Created")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let (app, seen) = meta_app(layer(&scheme, &[secret], NOW), "/webhooks");
    assert_eq!(send(&app, request).await.status(), 200);
    let meta = seen.last_meta.lock().unwrap().clone().unwrap();
    assert_eq!(meta.event(), Some("Order.Created"));
    assert_eq!(meta.scheme(), "webinone");
    assert_eq!(meta.timestamp().unwrap().unix_timestamp(), NOW);
}

fn tenant_layer() -> WebhookLayerBuilder {
    WebhookLayer::builder(Scheme::sotion()).with_resolver(|parts: &http::request::Parts| {
        let tenant = parts.uri.path().rsplit('/').next().unwrap_or("").to_owned();
        async move {
            match tenant.as_str() {
                "acme" | "globex" => {
                    let secret = Secret::new(format!("whsec_{tenant}")).unwrap();
                    Ok(Some(Tenant::new(tenant, secret)))
                }
                "down" => Err(ResolveError("the tenant database is unreachable".into())),
                _ => Ok(None),
            }
        }
    })
}

fn to_tenant(tenant: &str, secret: &str, id: &str) -> Request<Full<Bytes>> {
    let mut request = delivery(&Scheme::sotion(), secret, id, 0);
    *request.uri_mut() = format!("/webhooks/{tenant}").parse().unwrap();
    request
}

#[tokio::test]
async fn a_per_tenant_resolver_picks_each_customers_secret() {
    let (app, seen) = meta_app(tenant_layer(), "/webhooks/{tenant}");
    assert_eq!(
        send(&app, to_tenant("acme", "whsec_acme", "evt_1"))
            .await
            .status(),
        200
    );
    let meta = seen.last_meta.lock().unwrap().clone().unwrap();
    assert_eq!(meta.tenant(), Some("acme"));
    // Globex's secret does not open Acme's endpoint.
    let response = send(&app, to_tenant("acme", "whsec_globex", "evt_2")).await;
    assert_eq!(error_code(response).await, "signature_mismatch");
    // An unknown tenant looks like a wrong signature.
    let response = send(&app, to_tenant("initech", "whsec_initech", "evt_3")).await;
    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await, "signature_mismatch");
    // A failing resolver: 503, retry later.
    let response = send(&app, to_tenant("down", "whsec_down", "evt_4")).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response).await, "secrets_unavailable");
    assert_eq!(seen.runs(), 1);
}

#[tokio::test]
async fn the_same_event_id_for_two_tenants_is_processed_once_per_tenant() {
    let (app, seen) = meta_app(tenant_layer(), "/webhooks/{tenant}");
    for tenant in ["acme", "globex", "acme", "globex"] {
        let response = send(
            &app,
            to_tenant(tenant, &format!("whsec_{tenant}"), "evt_same"),
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(seen.runs(), 2);
}

#[tokio::test]
async fn verified_types_the_body_for_any_scheme_and_envelope_is_sotion_only() {
    #[derive(serde::Deserialize)]
    struct StripeEvent {
        id: String,
        #[serde(rename = "type")]
        kind: String,
    }
    let scheme = Scheme::stripe();
    let handler = |meta: tower_webhook::WebhookMeta, Verified(event): Verified<StripeEvent>| async move {
        format!(
            "{} {} {}",
            meta.event().unwrap_or("-"),
            event.id,
            event.kind
        )
    };
    let app = Router::new().route(
        "/webhooks",
        post(handler).route_layer(layer(&scheme, &["whsec_s"], NOW).build().unwrap()),
    );
    let response = send(&app, delivery(&scheme, "whsec_s", "evt_9", NOW)).await;
    assert_eq!(response.status(), 200);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"invoice.paid evt_9 invoice.paid");

    let wrong = |_: Envelope| async { "unreachable" };
    let app = Router::new().route(
        "/webhooks",
        post(wrong).route_layer(layer(&scheme, &["whsec_s"], NOW).build().unwrap()),
    );
    let response = send(&app, delivery(&scheme, "whsec_s", "evt_9", NOW)).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(response).await, "not_an_envelope");
}

#[tokio::test]
async fn undecodable_or_many_signature_entries_do_not_refuse_a_valid_list_header() {
    for (name, header, separator, garbage, wrong) in [
        (
            "standard",
            "webhook-signature",
            " ",
            "v1,garbage".to_owned(),
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode([7_u8; 32])
            ),
        ),
        (
            "stripe",
            "stripe-signature",
            ",",
            "v1=not-hex".to_owned(),
            format!("v1={}", "ab".repeat(32)),
        ),
    ] {
        let scheme = Scheme::preset(name).unwrap();
        let secret = secret_text(name, "s");
        let (app, seen) = meta_app(layer(&scheme, &[&secret], NOW), "/webhooks");
        let rewrite = |id: &str, entries: &dyn Fn(&str) -> String| {
            let mut request = delivery(&scheme, &secret, id, NOW);
            let value = request.headers()[header].to_str().unwrap().to_owned();
            let value = entries(&value);
            request
                .headers_mut()
                .insert(header, HeaderValue::from_str(&value).unwrap());
            request
        };
        // Stripe's header starts with `t=`: the extra entries go right after it.
        let insert = |value: &str, extra: &str| match value.split_once(',') {
            Some((t, rest)) if name == "stripe" => format!("{t},{extra},{rest}"),
            _ => format!("{extra}{separator}{value}"),
        };
        let garbage_first = rewrite("evt_1", &|value| insert(value, &garbage));
        assert_eq!(send(&app, garbage_first).await.status(), 200, "{name}");
        let five_wrong = [wrong.as_str(); 5].join(separator);
        let sixth = rewrite("evt_2", &|value| insert(value, &five_wrong));
        assert_eq!(send(&app, sixth).await.status(), 200, "{name}");
        assert_eq!(seen.runs(), 2, "{name}");
        let only_garbage = rewrite("evt_3", &|value| match value.split_once(',') {
            Some((t, _)) if name == "stripe" => format!("{t},{garbage}"),
            _ => garbage.clone(),
        });
        let response = send(&app, only_garbage).await;
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(error_code(response).await, "malformed_signature", "{name}");
        assert_eq!(seen.runs(), 2, "{name}");
    }
}

/// `body` signed for `scheme` with the secret `secret`, with `id` in the id header if it has one.
fn signed_body(scheme: &Scheme, secret: &str, id: &str, body: &[u8]) -> Request<Full<Bytes>> {
    let message = Outgoing {
        id,
        event: "thing.happened",
        timestamp: NOW,
        body,
    };
    signed_request(scheme, &scheme.secret(secret).unwrap(), &message)
}

/// A custom scheme whose id is a body field, its event a header and its scope a body field.
fn builder_scheme() -> Scheme {
    Scheme::builder(
        "acme",
        "x-acme-signature",
        SignatureFormat::single("sha256=", Encoding::Hex),
    )
    .with_id(Source::body_field("id"))
    .with_event(Source::header("x-acme-event"))
    .with_scope(Source::body_field("account"))
    .build()
    .unwrap()
}

/// Values of an optional event type that are no usable string.
fn unusable_values() -> Vec<String> {
    vec![
        "42".to_owned(),
        "true".to_owned(),
        "null".to_owned(),
        r#"{"name":"x"}"#.to_owned(),
        r#"["a"]"#.to_owned(),
        r#""""#.to_owned(),
        format!(r#""{}""#, "t".repeat(300)),
        r#""thing\u0007happened""#.to_owned(),
    ]
}

#[tokio::test]
async fn an_unusable_optional_event_type_is_dropped_and_the_delivery_handled() {
    for raw in unusable_values() {
        // Standard Webhooks and Stripe read `type`, sota.io reads `event`, from the body.
        let cases = [
            (
                Scheme::standard_webhooks(),
                secret_text("standard", "s"),
                format!(r#"{{"type":{raw},"data":{{}}}}"#),
            ),
            (
                Scheme::stripe(),
                "whsec_s".to_owned(),
                format!(r#"{{"id":"evt_1","object":"event","type":{raw}}}"#),
            ),
            (
                Scheme::sota(),
                "whsec_s".to_owned(),
                format!(
                    r#"{{"event":{raw},"project_id":"p_1","timestamp":"2023-11-14T22:13:20Z"}}"#
                ),
            ),
        ];
        for (scheme, secret, body) in cases {
            let (app, seen) = meta_app(layer(&scheme, &[&secret], NOW), "/webhooks");
            let response = send(
                &app,
                signed_body(&scheme, &secret, "evt_1", body.as_bytes()),
            )
            .await;
            assert_eq!(response.status(), 200, "{} with type {raw}", scheme.name());
            assert_eq!(seen.runs(), 1, "{}", scheme.name());
            let meta = seen.last_meta.lock().unwrap().clone().unwrap();
            assert_eq!(meta.event(), None, "{} with type {raw}", scheme.name());
        }
    }
}

#[tokio::test]
async fn an_unusable_optional_event_header_is_dropped_and_the_delivery_handled() {
    let scheme = builder_scheme();
    let body = br#"{"id":"evt_1","account":"a_1"}"#;
    let long = "t".repeat(300);
    let values: [&[&[u8]]; 4] = [
        &[b"one", b"two"],
        &[b"caf\xe9"],
        &[long.as_bytes()],
        &[b"thing\thappened"],
    ];
    for header_values in values {
        let (app, seen) = meta_app(layer(&scheme, &["whsec_s"], NOW), "/webhooks");
        let mut request = signed_body(&scheme, "whsec_s", "evt_1", body);
        request.headers_mut().remove("x-acme-event");
        for value in header_values {
            request
                .headers_mut()
                .append("x-acme-event", HeaderValue::from_bytes(value).unwrap());
        }
        assert_eq!(send(&app, request).await.status(), 200, "{header_values:?}");
        let meta = seen.last_meta.lock().unwrap().clone().unwrap();
        assert_eq!(meta.event(), None);
        assert_eq!(meta.scope(), Some("a_1"));
    }
}

#[tokio::test]
async fn an_unusable_scope_is_kept_apart_and_the_delivery_handled() {
    let scheme = Scheme::sota();
    let body = |scope: &str| {
        format!(
            r#"{{"event":"deploy.succeeded","project_id":{scope},"timestamp":"2023-11-14T22:13:20Z"}}"#
        )
    };
    let (app, seen) = meta_app(layer(&scheme, &["whsec_s"], NOW), "/webhooks");
    for (scope, expected) in [
        ("12345", Some("12345".to_owned())),
        ("true", Some("true".to_owned())),
        (r#"{"id":1}"#, None),
        (&format!(r#""{}""#, "p".repeat(300)), None),
        (r#""p\n1""#, None),
    ] {
        let request = signed_body(&scheme, "whsec_s", "", body(scope).as_bytes());
        assert_eq!(send(&app, request).await.status(), 200, "scope {scope}");
        let meta = seen.last_meta.lock().unwrap().clone().unwrap();
        let site = meta.scope().unwrap();
        if let Some(text) = expected {
            assert_eq!(site, text);
        } else {
            assert!(site.starts_with("sha256:"), "{site}");
            assert_eq!(site.len(), "sha256:".len() + 64);
        }
    }
    assert_eq!(seen.runs(), 5);
}

#[tokio::test]
async fn the_same_id_under_two_different_unusable_scopes_is_handled_twice() {
    let scheme = builder_scheme();
    let (app, seen) = meta_app(layer(&scheme, &["whsec_s"], NOW), "/webhooks");
    for scope in [
        r#"{"org":1}"#,
        r#"{"org":2}"#,
        "[1]",
        "1",
        "2",
        r#""""#,
        r#"{"org":1}"#, // a retry of the first: a duplicate
    ] {
        let body = format!(r#"{{"id":"evt_same","account":{scope}}}"#);
        let response = send(&app, signed_body(&scheme, "whsec_s", "", body.as_bytes())).await;
        assert_eq!(response.status(), 200, "scope {scope}");
    }
    assert_eq!(seen.runs(), 6);
}

#[tokio::test]
async fn a_required_body_field_that_is_unusable_still_refuses() {
    let scheme = Scheme::stripe();
    let (app, seen) = meta_app(layer(&scheme, &["whsec_s"], NOW), "/webhooks");
    for body in [
        r#"{"id":42,"type":"invoice.paid"}"#,
        r#"{"type":"invoice.paid"}"#,
        r#"{"id":"evt\u0001","type":"invoice.paid"}"#,
    ] {
        let response = send(&app, signed_body(&scheme, "whsec_s", "", body.as_bytes())).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    // A body-field timestamp (a custom scheme) that is not one.
    let scheme = Scheme::builder(
        "timed",
        "x-timed-signature",
        SignatureFormat::single("sha256=", Encoding::Hex),
    )
    .with_id(Source::body_field("id"))
    .with_timestamp(Source::body_field("ts"), TimestampFormat::UnixSeconds)
    .build()
    .unwrap();
    let (app, timed) = meta_app(layer(&scheme, &["whsec_s"], NOW), "/webhooks");
    for body in [r#"{"id":"e","ts":"soon"}"#, r#"{"id":"e","ts":{}}"#] {
        let response = send(&app, signed_body(&scheme, "whsec_s", "", body.as_bytes())).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    assert_eq!(seen.runs() + timed.runs(), 0);
}
