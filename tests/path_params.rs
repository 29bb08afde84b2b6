//! A per-tenant resolver reads the route's path parameters (`/webhooks/{tenant}`) with
//! `PathParams`, through a real axum `Router`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{error_code, send};
use http::request::Parts;
use tower::ServiceExt;
use tower_webhook::testing::{self, Delivery};
use tower_webhook::{PathParams, Scheme, Secret, Tenant, WebhookLayer, WebhookMeta};

const ACME: &str = "whsec_acme";
const GLOBEX: &str = "whsec_globex";

/// The one place this file builds a layer: per tenant, the tenant named by the route's
/// `{tenant}` parameter (`acme` and `globex` exist).
fn layer() -> WebhookLayer {
    WebhookLayer::builder(Scheme::sotion())
        .with_resolver(|parts: &Parts| {
            let tenant = PathParams::from_parts(parts)
                .and_then(|params| params.get("tenant").map(str::to_owned));
            async move {
                let text = match tenant.as_deref() {
                    Some("acme") => ACME,
                    Some("globex") => GLOBEX,
                    _ => return Ok(None),
                };
                Ok(Some(Tenant::new(
                    tenant.unwrap_or_default(),
                    Secret::new(text).unwrap(),
                )))
            }
        })
        .build()
        .unwrap()
}

async fn tenant_of(meta: WebhookMeta) -> String {
    meta.tenant().unwrap_or("-").to_owned()
}

fn signed(path: &str, text: &str, id: &str) -> http::Request<testing::Body> {
    let body = testing::sotion_event("member.created", id, "site_1");
    Delivery::new(body)
        .with_path(path)
        .sign(&Scheme::sotion(), &Secret::new(text).unwrap())
}

async fn text(response: http::Response<Body>) -> String {
    use http_body_util::BodyExt;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_route_layer_resolves_the_tenant_named_in_the_path() {
    let app = Router::new().route("/webhooks/{tenant}", post(tenant_of).route_layer(layer()));

    let response = send(&app, signed("/webhooks/acme", ACME, "evt_1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "acme");
    let response = send(&app, signed("/webhooks/globex?x=1", GLOBEX, "evt_1")).await;
    assert_eq!(text(response).await, "globex");

    // Another tenant's secret, or a tenant that does not exist: a wrong signature.
    let response = send(&app, signed("/webhooks/acme", GLOBEX, "evt_2")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = send(&app, signed("/webhooks/initech", ACME, "evt_3")).await;
    assert_eq!(error_code(response).await, "signature_mismatch");
}

#[tokio::test]
async fn parameters_are_percent_decoded_and_found_in_nested_routers() {
    let app = Router::new().nest(
        "/hooks/{region}",
        Router::new().route("/webhooks/{tenant}", post(tenant_of).route_layer(layer())),
    );
    // `%61cme` is `acme`.
    let response = send(&app, signed("/hooks/eu/webhooks/%61cme", ACME, "evt_1")).await;
    assert_eq!(text(response).await, "acme");
}

#[tokio::test]
async fn a_layer_around_the_routers_routes_sees_the_parameters_too() {
    // `Router::layer` wraps each route once it is matched.
    let app = Router::new()
        .route("/webhooks/{tenant}", post(tenant_of))
        .layer(layer());
    let response = send(&app, signed("/webhooks/acme", ACME, "evt_1")).await;
    assert_eq!(text(response).await, "acme");
}

#[tokio::test]
async fn a_layer_in_front_of_routing_sees_no_parameters() {
    // The layer wraps the whole application as a service: axum has not matched a route yet,
    // so the resolver finds no tenant, and every delivery is refused as a wrong signature.
    let app = Router::new().route("/webhooks/{tenant}", post(tenant_of));
    let service = tower::ServiceBuilder::new().layer(layer()).service(app);
    let response = service
        .oneshot(signed("/webhooks/acme", ACME, "evt_1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn from_parts_reads_nothing_outside_axum() {
    let (parts, ()) = http::Request::new(()).into_parts();
    assert!(PathParams::from_parts(&parts).is_none());
}
