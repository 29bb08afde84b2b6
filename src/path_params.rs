//! [`PathParams`]: the route's path parameters, for a [`SecretResolver`](crate::SecretResolver).

use axum::extract::RawPathParams;
use axum_core::extract::FromRequestParts;
use futures_util::FutureExt as _;
use http::request::Parts;
use http::Request;

/// The path parameters of the route a request matched (`{tenant}` in `/webhooks/{tenant}`),
/// read from the request's parts (feature `axum`): what a per-tenant
/// [`SecretResolver`](crate::SecretResolver) uses to pick a tenant, instead of parsing the
/// URI again.
///
/// axum finds the parameters when it matches the route, so the layer must run **after**
/// routing: make it the route's, `post(handler).route_layer(layer)` (the router's
/// `route_layer` and `layer` wrap each matched route too, and `layer` also its 404 fallback),
/// never a service wrapping the whole application (`ServiceBuilder::new().layer(layer)
/// .service(app)`). A layer in front of routing sees no parameters:
/// [`from_parts`](Self::from_parts) answers `None`, and a resolver that needs one should answer
/// `Ok(None)` (no such tenant: `401`).
///
/// Values are percent-decoded (`/webhooks/acme%20corp` gives `acme corp`), and like the rest of
/// the request they are not trusted: they only select which secrets to try.
///
/// ```
/// use axum::{routing::post, Router};
/// use tower_webhook::{PathParams, ResolveError, Scheme, Secret, Tenant, WebhookLayer};
///
/// let layer = WebhookLayer::builder(Scheme::sotion())
///     .with_resolver(|parts: &http::request::Parts| {
///         let customer = PathParams::from_parts(parts)
///             .and_then(|params| params.get("tenant").map(str::to_owned));
///         async move {
///             let Some(customer) = customer else { return Ok(None) };
///             // Look the customer's secret up in your database here.
///             let secret = match customer.as_str() {
///                 "acme" => Secret::new("whsec_acme").map_err(|e| ResolveError(e.into()))?,
///                 _ => return Ok(None),
///             };
///             Ok(Some(Tenant::new(customer, secret)))
///         }
///     })
///     .build()?;
/// let app: Router = Router::new().route(
///     "/webhooks/{tenant}",
///     post(|| async { "ok" }).route_layer(layer),
/// );
/// # let _ = app;
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct PathParams(RawPathParams);

impl PathParams {
    /// The parameters of the route `parts` matched; `None` when axum has not routed the request
    /// (the layer runs before routing, or outside axum), or when a parameter is not UTF-8 once
    /// percent-decoded.
    #[must_use]
    pub fn from_parts(parts: &Parts) -> Option<Self> {
        // axum keeps the parameters in an extension of a private type, read by `RawPathParams`
        // from parts it may change: give it a copy of the extensions alone.
        let (mut copy, ()) = Request::new(()).into_parts();
        copy.extensions = parts.extensions.clone();
        RawPathParams::from_request_parts(&mut copy, &())
            .now_or_never()?
            .ok()
            .map(Self)
    }

    /// The value of the parameter `name` (`tenant` for `/webhooks/{tenant}`).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find_map(|(key, value)| (key == name).then_some(value))
    }

    /// Every parameter, as `(name, value)`, in the order of the route's path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter()
    }
}
