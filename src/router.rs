//! [`EventRouter`]: one axum handler per event name, behind the [`WebhookLayer`](crate::WebhookLayer).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::Request;
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;

use crate::extract::MissingWebhookLayer;
use crate::layer::VerifiedBody;
use crate::meta::WebhookMeta;

/// The future an [`EventRouter`] returns when axum calls it (boxed: the handler is chosen at run time).
type EventRouterFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// Sends each verified delivery to the handler registered for its event name: per-event
/// handlers that are ordinary axum handlers (any extractors, [`State`](axum::extract::State)),
/// mounted as one route's handler behind the [`WebhookLayer`](crate::WebhookLayer)
/// (feature `axum`).
///
/// ```
/// use axum::{extract::State, routing::post, Router};
/// use tower::ServiceExt;
/// use tower_webhook::envelope::MemberData;
/// use tower_webhook::{testing, Envelope, EventRouter, Scheme, Secret, WebhookLayer, WebhookMeta};
///
/// #[derive(Clone)]
/// struct App {
///     greeting: &'static str,
/// }
///
/// async fn member_created(State(app): State<App>, event: Envelope<MemberData>) -> &'static str {
///     println!("{} {:?}", app.greeting, event.data.email);
///     "ok"
/// }
///
/// async fn access_group(meta: WebhookMeta) -> &'static str {
///     println!("access group event {}", meta.event().unwrap_or("-"));
///     "ok"
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = WebhookLayer::new(Scheme::sotion(), "whsec_from_your_sotion_dashboard")?;
/// let events = EventRouter::new()
///     .on("member.created", member_created)
///     .on_prefix("access-group.", access_group);
/// let app = Router::new()
///     .route("/webhooks", post(events).route_layer(layer))
///     .with_state(App { greeting: "welcome" });
/// let secret = Secret::new("whsec_from_your_sotion_dashboard")?;
///
/// let created = testing::sotion_event("member.created", "evt_1", "site_1");
/// let response = app.clone().oneshot(testing::sotion_request(&secret, created)).await?;
/// assert_eq!(response.status(), 200);
///
/// // A type nobody handles is acknowledged (`200 {"status":"ignored"}`): never retried. The
/// // answer says that no handler ran.
/// let unknown = testing::sotion_event("site.renamed", "evt_2", "site_1");
/// let response = app.oneshot(testing::sotion_request(&secret, unknown)).await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["x-webhook-ignored"], "site.renamed");
/// # Ok(())
/// # }
/// ```
///
/// # Event names
///
/// A delivery's name is its [`WebhookMeta::event`] (Sotion's, Stripe's and Standard Webhooks'
/// body `type`, GitHub's `X-GitHub-Event`), or `<event>.<action>` when the scheme reads an
/// [`action`](WebhookMeta::action) too (GitHub's `issues` with body `action: opened` is
/// `issues.opened`). The most specific registration wins:
///
/// 1. [`on`](Self::on) with the whole name (`issues.opened`);
/// 2. [`on`](Self::on) with the event alone (`issues`), when there is an action;
/// 3. the longest [`on_prefix`](Self::on_prefix) the whole name starts with (`issues.`);
/// 4. the [`fallback`](Self::fallback), also for a delivery without an event name (a Slack
///    slash command).
///
/// # Answers and retries
///
/// The chosen handler's response is the answer, and the layer's idempotency guard reads it as
/// usual: a `2xx` marks the event handled; anything else leaves it un-handled, so the sender's
/// retry runs the handler again. The default fallback answers `200 {"status":"ignored"}`, so
/// that an event type nobody handles (one the sender adds next year) is acknowledged instead
/// of retried for days; a [`fallback`](Self::fallback) of your own should do the same unless
/// it wants the retries.
///
/// # Nothing acknowledged silently
///
/// The default fallback's answer says that no handler ran: it carries the header
/// `x-webhook-ignored: <name>` ([`IGNORED_HEADER`](Self::IGNORED_HEADER); the name as the
/// router matched it, `issues.opened`, or `-` for a delivery without one), is logged at
/// `info` with the event's name and id, and counted in `webhook_ignored_total` (label
/// `scheme`: event names are not bounded, so they are no label). A misspelled registration
/// (`"issue.opened"`) therefore shows in the answer, the log and the metrics. In tests,
/// [`strict`](Self::strict) makes an event no handler matched an error.
///
/// An [`on_any`](Self::on_any) handler runs before the chosen one, for every delivery; when it
/// answers anything but a `2xx`, that is the delivery's answer and the chosen handler does not
/// run. There is no `on_error` (octokit's): a handler's failure is its non-`2xx` answer, which
/// a middleware on the route can observe like any other response.
///
/// The router reads what the layer put in the request's extensions: without the layer in
/// front (mount it with `post(router).route_layer(layer)`), every request is answered
/// `500 missing_webhook_layer` ([`MissingWebhookLayer`]).
pub struct EventRouter<S = ()> {
    routes: Arc<Routes<S>>,
}

struct Routes<S> {
    exact: HashMap<Box<str>, BoxedHandler<S>>,
    /// Longest first, so that the first match is the most specific.
    prefixes: Vec<(Box<str>, BoxedHandler<S>)>,
    any: Option<BoxedHandler<S>>,
    fallback: BoxedHandler<S>,
}

impl<S> Clone for Routes<S> {
    fn clone(&self) -> Self {
        Self {
            exact: self.exact.clone(),
            prefixes: self.prefixes.clone(),
            any: self.any.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<S> Clone for EventRouter<S> {
    fn clone(&self) -> Self {
        Self {
            routes: Arc::clone(&self.routes),
        }
    }
}

impl<S> fmt::Debug for EventRouter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut exact: Vec<&str> = self.routes.exact.keys().map(AsRef::as_ref).collect();
        exact.sort_unstable();
        let prefixes: Vec<&str> = self
            .routes
            .prefixes
            .iter()
            .map(|(prefix, _)| prefix.as_ref())
            .collect();
        f.debug_struct("EventRouter")
            .field("on", &exact)
            .field("on_prefix", &prefixes)
            .field("on_any", &self.routes.any.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> Default for EventRouter<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> EventRouter<S> {
    /// The header of the default fallback's answer, saying that no handler ran:
    /// `x-webhook-ignored: <name>`.
    pub const IGNORED_HEADER: &'static str = "x-webhook-ignored";

    /// A router with no handlers: every delivery goes to the default fallback, which answers
    /// `200 {"status":"ignored"}` with the [`IGNORED_HEADER`](Self::IGNORED_HEADER).
    #[must_use]
    pub fn new() -> Self {
        Self {
            routes: Arc::new(Routes {
                exact: HashMap::new(),
                prefixes: Vec::new(),
                any: None,
                fallback: Arc::new(Acknowledge { strict: false }),
            }),
        }
    }

    /// For tests: an event no handler matches is an error instead of an acknowledgement. The
    /// default fallback then answers `500 {"error":"unhandled_event",...}` (with the
    /// [`IGNORED_HEADER`](Self::IGNORED_HEADER)), so a test that checks only the status catches
    /// a misspelled event name. A [`fallback`](Self::fallback) given afterwards replaces it.
    ///
    /// Not for production: the sender would retry every event nobody handles, for days.
    ///
    /// ```
    /// use axum::handler::Handler;
    /// use tower::ServiceExt;
    /// use tower_webhook::{testing, EventRouter};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // GitHub names the event `issues` and the action `opened`: `issue.opened` is a typo.
    /// let router = EventRouter::new().on("issue.opened", || async { "ok" }).strict();
    /// let meta = testing::MetaBuilder::new("delivery-1")
    ///     .with_scheme("github")
    ///     .with_event("issues")
    ///     .with_action("opened")
    ///     .build();
    /// let response = router.with_state(()).oneshot(testing::verified_request(meta, "{}")).await?;
    /// assert_eq!(response.status(), 500);
    /// assert_eq!(response.headers()["x-webhook-ignored"], "issues.opened");
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn strict(mut self) -> Self {
        self.routes_mut().fallback = Arc::new(Acknowledge { strict: true });
        self
    }

    /// The routes, to add one while the router is built (copied first if a clone shares them).
    fn routes_mut(&mut self) -> &mut Routes<S> {
        Arc::make_mut(&mut self.routes)
    }
}

impl<S> EventRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// Runs `handler` for deliveries named `event` exactly: `member.created`, GitHub's
    /// `issues.opened`, or `issues` for every `issues` event whose `<event>.<action>` has no
    /// handler of its own.
    ///
    /// # Panics
    /// When `event` is empty, or already has a handler (as axum's `Router::route` panics on
    /// a route given twice).
    #[must_use]
    pub fn on<H, T>(mut self, event: &str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        assert!(
            !event.is_empty(),
            "EventRouter::on: an event name cannot be empty (use `fallback` for deliveries without one)"
        );
        let previous = self.routes_mut().exact.insert(event.into(), boxed(handler));
        assert!(
            previous.is_none(),
            "EventRouter::on: `{event}` already has a handler"
        );
        self
    }

    /// Runs `handler` for deliveries whose name starts with `prefix` (`access-group.`), unless
    /// an [`on`](Self::on) handler or a longer prefix matches.
    ///
    /// # Panics
    /// When `prefix` is empty (use [`fallback`](Self::fallback)), or already has a handler.
    #[must_use]
    pub fn on_prefix<H, T>(mut self, prefix: &str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        assert!(
            !prefix.is_empty(),
            "EventRouter::on_prefix: a prefix cannot be empty (use `fallback` to catch every event)"
        );
        let prefixes = &mut self.routes_mut().prefixes;
        assert!(
            prefixes.iter().all(|(known, _)| known.as_ref() != prefix),
            "EventRouter::on_prefix: `{prefix}` already has a handler"
        );
        prefixes.push((prefix.into(), boxed(handler)));
        prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        self
    }

    /// Runs `handler` for every delivery that reaches the router, before the handler its name
    /// selects (octokit's `onAny`): for logging, metrics, or a check every event must pass. A
    /// duplicate the layer answers itself never reaches the router.
    ///
    /// Its answer counts only when it is not a `2xx`: it is then the delivery's answer, the
    /// selected handler does not run, and the event stays un-handled, so the sender retries
    /// it (and this handler runs again). A `2xx` is dropped and the selected handler answers.
    /// Both handlers see the same request (the verified body included).
    ///
    /// A second call replaces the first handler.
    #[must_use]
    pub fn on_any<H, T>(mut self, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.routes_mut().any = Some(boxed(handler));
        self
    }

    /// Runs `handler` for deliveries no other handler matches, and those without an event
    /// name. The default answers `200 {"status":"ignored"}` with the
    /// [`IGNORED_HEADER`](Self::IGNORED_HEADER), logs the event at `info` and counts it (see
    /// [Nothing acknowledged silently](Self#nothing-acknowledged-silently)): a sender never
    /// retries an event nobody handles. A handler of your own should answer `2xx` too, unless
    /// it wants the sender to retry; its answer is its own (no header is added: it ran).
    ///
    /// A second call replaces the first handler.
    #[must_use]
    pub fn fallback<H, T>(mut self, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.routes_mut().fallback = boxed(handler);
        self
    }
}

/// The name a delivery is routed by: `<event>.<action>` when the scheme reads an action, else
/// `<event>`; `None` without an event.
fn routed_name<'a>(event: Option<&'a str>, action: Option<&str>) -> Option<Cow<'a, str>> {
    let event = event.filter(|event| !event.is_empty())?;
    Some(
        action
            .filter(|action| !action.is_empty())
            .map_or(Cow::Borrowed(event), |action| {
                Cow::Owned(format!("{event}.{action}"))
            }),
    )
}

impl<S> Routes<S> {
    /// The handler for a delivery named `event` (and `action`), most specific first.
    fn select(&self, event: Option<&str>, action: Option<&str>) -> &BoxedHandler<S> {
        let (Some(event), Some(name)) = (
            event.filter(|event| !event.is_empty()),
            routed_name(event, action),
        ) else {
            return &self.fallback;
        };
        self.exact
            .get(name.as_ref())
            .or_else(|| self.exact.get(event))
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(prefix, _)| name.starts_with(prefix.as_ref()))
                    .map(|(_, handler)| handler)
            })
            .unwrap_or(&self.fallback)
    }
}

#[diagnostic::do_not_recommend]
impl<S> Handler<(), S> for EventRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    type Future = EventRouterFuture;

    fn call(self, request: Request, state: S) -> Self::Future {
        Box::pin(self.dispatch(request, state))
    }
}

impl<S> EventRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    async fn dispatch(self, request: Request, state: S) -> Response {
        let Some(meta) = request.extensions().get::<WebhookMeta>() else {
            return MissingWebhookLayer.into_response();
        };
        let handler = Arc::clone(self.routes.select(meta.event(), meta.action()));
        let Some(any) = &self.routes.any else {
            return handler.call(request, state).await;
        };
        let (parts, body) = request.into_parts();
        // The verified bytes, for both handlers (a request without the layer's extension, made
        // by hand in a test, has its body read once).
        let body = match parts.extensions.get::<VerifiedBody>() {
            Some(verified) => verified.body.clone(),
            None => match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return unreadable_body(),
            },
        };
        let copy = Request::from_parts(parts.clone(), axum::body::Body::from(body.clone()));
        let response = any.call(copy, state.clone()).await;
        if !response.status().is_success() {
            return response;
        }
        handler
            .call(
                Request::from_parts(parts, axum::body::Body::from(body)),
                state,
            )
            .await
    }
}

fn unreadable_body() -> Response {
    crate::error::json_error_response(
        StatusCode::BAD_REQUEST,
        "body_read_failed",
        "the body could not be read to its end",
    )
}

/// A handler with its extractor types erased, shared by every clone of the router.
type BoxedHandler<S> = Arc<dyn ErasedHandler<S>>;

trait ErasedHandler<S>: Send + Sync {
    fn call(&self, request: Request, state: S) -> EventRouterFuture;
}

struct Erased<H, T> {
    handler: H,
    _extractors: PhantomData<fn() -> T>,
}

impl<H, T, S> ErasedHandler<S> for Erased<H, T>
where
    H: Handler<T, S>,
    T: 'static,
    S: 'static,
{
    fn call(&self, request: Request, state: S) -> EventRouterFuture {
        Box::pin(self.handler.clone().call(request, state))
    }
}

fn boxed<H, T, S>(handler: H) -> BoxedHandler<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: 'static,
{
    Arc::new(Erased {
        handler,
        _extractors: PhantomData,
    })
}

/// The default fallback: `200 {"status":"ignored"}` with the ignored header, logged and
/// counted; strict (for tests), `500 unhandled_event`.
struct Acknowledge {
    strict: bool,
}

impl<S> ErasedHandler<S> for Acknowledge {
    fn call(&self, request: Request, _state: S) -> EventRouterFuture {
        let meta = request.extensions().get::<WebhookMeta>();
        let name = meta.and_then(|meta| routed_name(meta.event(), meta.action()));
        let name = name.as_deref().unwrap_or("-");
        let scheme = meta.map_or("-", WebhookMeta::scheme);
        crate::observe::event!(
            info,
            scheme,
            event = ?name,
            id = ?meta.map_or("-", WebhookMeta::id),
            strict = self.strict,
            "no handler ran for this event; acknowledged by the event router's fallback"
        );
        crate::observe::ignored(scheme);
        let mut response = if self.strict {
            crate::error::json_error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unhandled_event",
                "no handler ran for this event (EventRouter::strict)",
            )
        } else {
            let mut response = Response::new(axum::body::Body::from(Bytes::from_static(
                br#"{"status":"ignored"}"#,
            )));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        };
        // An event name is a token without control characters, so always a header value.
        let value =
            HeaderValue::from_bytes(name.as_bytes()).unwrap_or(HeaderValue::from_static("-"));
        response.headers_mut().insert(
            HeaderName::from_static(EventRouter::<()>::IGNORED_HEADER),
            value,
        );
        Box::pin(std::future::ready(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> EventRouter {
        EventRouter::new()
            .on("issues.opened", || async { "opened" })
            .on("issues", || async { "issues" })
            .on_prefix("issue", || async { "issue*" })
            .on_prefix("issues.comment", || async { "comments" })
    }

    /// Which registration `select` picks, by identity.
    fn selected(events: &EventRouter, event: Option<&str>, action: Option<&str>) -> &'static str {
        let routes = &events.routes;
        let chosen = routes.select(event, action);
        let is = |handler: &BoxedHandler<()>| Arc::ptr_eq(chosen, handler);
        if is(&routes.fallback) {
            return "fallback";
        }
        for name in ["issues.opened", "issues"] {
            if is(&routes.exact[name]) {
                return if name == "issues" { "issues" } else { "opened" };
            }
        }
        match routes.prefixes.iter().find(|(_, handler)| is(handler)) {
            Some((prefix, _)) if prefix.as_ref() == "issue" => "issue*",
            Some(_) => "comments",
            None => "none",
        }
    }

    #[test]
    fn the_most_specific_registration_wins() {
        let router = router();
        let cases = [
            (Some("issues"), Some("opened"), "opened"),
            (Some("issues"), Some("closed"), "issues"),
            (Some("issues"), None, "issues"),
            (Some("issue_comment"), Some("created"), "issue*"),
            (Some("issues.comment"), None, "comments"),
            (Some("issues.comments"), Some("x"), "comments"),
            (Some("push"), None, "fallback"),
        ];
        for (event, action, expected) in cases {
            assert_eq!(
                selected(&router, event, action),
                expected,
                "{event:?} {action:?}"
            );
        }
    }

    #[test]
    fn a_delivery_without_a_name_goes_to_the_fallback_and_an_empty_action_is_none() {
        let router = router();
        assert_eq!(selected(&router, None, None), "fallback");
        assert_eq!(selected(&router, Some(""), Some("opened")), "fallback");
        assert_eq!(selected(&router, Some("issues"), Some("")), "issues");
    }

    #[test]
    fn a_clone_taken_while_building_keeps_its_own_routes() {
        let first = EventRouter::<()>::new().on("a", || async {});
        let second = first.clone().on("b", || async {});
        assert_eq!(first.routes.exact.len(), 1);
        assert_eq!(second.routes.exact.len(), 2);
    }
}
