//! An admin page and JSON API for an inbox, to mount in an axum app (feature `admin`): what
//! waits, what failed and why, what is dead; replay and purge.
//!
//! [`Admin::build`] gives an axum [`Router`] to nest at any path (`/admin` below). It is never
//! mounted by accident without an authorization decision: [`Admin::bearer_token`],
//! [`Admin::authorize`] (a check over the request's head) or [`Admin::layer`] (the app's own
//! tower auth layer), or the explicit
//! [`Admin::allow_unauthenticated_for_local_development`]; without one, `build` returns
//! [`ConfigError::AdminWithoutAuthorization`]. The check runs on every request; a refused one
//! is answered `401 {"error":"unauthorized",...}` (with `WWW-Authenticate` for a token).
//!
//! # The JSON API
//!
//! The shapes are the command line's (`tower-webhook inbox ... --json`): a script reads the
//! same fields from either.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET api/stats` | [`StatsView`]: `waiting`, `running`, `retrying`, `dead`, `done`, `lag_ms` |
//! | `GET api/deliveries?state=&event=&id=&since=&after=&limit=` | a JSON array of [`DeliveryRow`], oldest accepted first; `x-next-cursor: <cursor>` when there may be more (pass it as `after`) |
//! | `GET api/deliveries/{key}` | [`DeliveryDetail`]: the row, stored headers, the whole body, the history |
//! | `POST api/deliveries/{key}/replay` (`?done=true` for a done one) | the row once replayed (`waiting`, attempts from 1) |
//! | `POST api/deliveries/{key}/purge` | `{"purged":true,"key":"..."}` |
//! | `POST api/replay?event=&id=&since=` | every dead delivery that matches replayed: `{"replayed":N}` |
//!
//! `state` is `waiting`, `running`, `retrying`, `dead` or `done`; `since` a time in RFC 3339;
//! `limit` 1 to 1,000 (100 by default); `key` the 64 hex digits of a row's `key`. Bad input
//! is answered `400` with its own code (`bad_state`, `bad_since`, `bad_cursor`, `bad_limit`,
//! `bad_key`, `bad_query` for an unknown or repeated parameter), an unknown key `404
//! not_found`, a replay of a delivery that is neither dead nor (with `done=true`) done `409
//! not_replayable`, an inbox that fails `503 inbox_unavailable`.
//!
//! # The page
//!
//! `GET /` (the mount path, `/admin`) shows the counts per status and the lag (the age of
//! the oldest waiting delivery), a list filtered by state, event and id (a GET form: a
//! filtered list is a link), with replay and purge buttons, and a button that replays every
//! dead delivery (of the event filtered on: after a fix). `GET /deliveries/{key}` shows one
//! delivery: its facts, last error, history, stored headers and body (its first 64 KiB).
//! Server-rendered, no script (its `Content-Security-Policy` allows none), every stored value
//! escaped, never cached or framed.
//!
//! # Cross-site requests
//!
//! Whatever changes state is a POST. Every POST is refused `403 cross_site_request` when a
//! browser says it comes from another site (`Sec-Fetch-Site` other than `same-origin`, or an
//! `Origin` whose host is not the request's `Host`). Then it must carry the form token
//! (a hidden field `csrf_token` of the page's forms, or an `x-csrf-token` header): always for
//! the page's forms, and for the JSON API when the request comes from a browser (it has an
//! `Origin`, `Sec-Fetch-Site` or `Cookie` header), else `403 csrf_token_missing` or
//! `csrf_token_invalid`. A script's POST to the API (`curl` with the authorization header, no
//! `Origin`, no cookie) needs no token. The token is an HMAC-SHA256 under a random key of the
//! router's, compared in constant time; replicas behind one load balancer share a key with
//! [`Admin::with_form_key`].
//!
//! # Browsers and the token
//!
//! With [`Admin::bearer_token`], a request is authorized by `Authorization: Bearer <token>`,
//! or by HTTP Basic with the token as the password (any user name): a browser asks for it
//! itself on the first `401` and sends it with every request after, the forms' included. Use
//! HTTPS: Basic sends the token as it is.
//!
//! ```
//! use axum::Router;
//! use tower_webhook::inbox::admin::Admin;
//! use tower_webhook::inbox::InboxBackend;
//! use tower_webhook::ConfigError;
//!
//! fn app(inbox: impl InboxBackend + Clone, token: &str) -> Result<Router, ConfigError> {
//!     // Refused: no authorization decision.
//!     assert!(matches!(
//!         Admin::new(inbox.clone()).build(),
//!         Err(ConfigError::AdminWithoutAuthorization)
//!     ));
//!     let admin = Admin::new(inbox).bearer_token(token).build()?;
//!     Ok(Router::new().nest("/admin", admin))
//! }
//! ```
//!
//! Or with the app's own check, over the request's head:
//!
//! ```
//! # use tower_webhook::inbox::{admin::Admin, InboxBackend};
//! fn admin(inbox: impl InboxBackend) -> Result<axum::Router, tower_webhook::ConfigError> {
//!     Admin::new(inbox)
//!         .authorize(|request: &http::request::Parts| {
//!             request.headers.get("x-internal-user").is_some() // set by the app's proxy
//!         })
//!         .build()
//! }
//! ```

mod api;
mod guard;
mod html;
mod page;
mod params;
mod refusal;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use axum::extract::Request;
use axum::routing::{get, post, Route};
use axum::Router;
use axum_core::response::IntoResponse;
use http::request::Parts;
use rand::RngCore as _;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::ConfigError;
use crate::inbox::InboxBackend;
#[cfg(doc)]
use crate::inbox::{DeliveryDetail, DeliveryRow, StatsView};

use self::guard::{Check, FormToken, Guard};

pub use self::api::NEXT_CURSOR;

/// What the handlers share: the inbox, and the form token the pages embed.
struct Shared {
    inbox: Arc<dyn InboxBackend>,
    token: FormToken,
    /// The inbox's name in the metrics (replays are counted under it).
    name: String,
}

/// The authorization decision given to the builder.
enum Decision {
    None,
    Check(Check),
    Layer(Box<dyn FnOnce(Router) -> Router + Send + Sync>),
    Open,
}

/// Builds the admin [`Router`] of an inbox (see the [module docs](self)): `new`, one
/// authorization decision, `build`.
pub struct Admin {
    inbox: Arc<dyn InboxBackend>,
    name: String,
    decision: Decision,
    form_key: Option<[u8; 32]>,
    error: Option<ConfigError>,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field(
                "decision",
                &match &self.decision {
                    Decision::None => "none",
                    Decision::Check(Check::Token(_)) => "bearer token",
                    Decision::Check(_) => "authorize",
                    Decision::Layer(_) => "layer",
                    Decision::Open => "unauthenticated (local development)",
                },
            )
            .field("form_key", &self.form_key.map(|_| "REDACTED"))
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// The admin of `inbox` (give it a clone of the inbox the layer and the workers use),
    /// with no authorization decision yet.
    #[must_use]
    pub fn new<B: InboxBackend>(inbox: B) -> Self {
        Self::from_shared(Arc::new(inbox))
    }

    /// The admin of an inbox shared as a trait object.
    #[must_use]
    pub fn from_shared(inbox: Arc<dyn InboxBackend>) -> Self {
        Self {
            inbox,
            name: crate::observe::DEFAULT_INBOX_NAME.to_owned(),
            decision: Decision::None,
            form_key: None,
            error: None,
        }
    }

    /// The inbox's name in the metrics, the one its [`Workers`](super::Workers) and layer were
    /// given (default [`DEFAULT_INBOX_NAME`](crate::observe::DEFAULT_INBOX_NAME)): the replays
    /// made through the page and the API are counted under it
    /// (`webhook_inbox_replayed_total{inbox}`, see [`replay`](super::replay)).
    #[must_use]
    pub fn with_inbox_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    fn decide(mut self, decision: Decision) -> Self {
        if matches!(self.decision, Decision::None) {
            self.decision = decision;
        } else if self.error.is_none() {
            self.error = Some(ConfigError::AdminAuthorizationTwice);
        }
        self
    }

    /// Authorizes requests that present `token`: `Authorization: Bearer <token>`, or HTTP
    /// Basic with `token` as the password (what a browser prompts for). Compared in constant
    /// time; a refusal carries `WWW-Authenticate` for both. An empty token is refused by
    /// `build` ([`ConfigError::EmptyAdminToken`]).
    #[must_use]
    pub fn bearer_token(self, token: impl AsRef<str>) -> Self {
        let token = token.as_ref();
        if token.is_empty() {
            let mut admin = self.decide(Decision::Open);
            admin.error.get_or_insert(ConfigError::EmptyAdminToken);
            return admin;
        }
        self.decide(Decision::Check(Check::token(token)))
    }

    /// Authorizes the requests for which `check` answers `true`, given the request's head
    /// (method, URI, headers, and extensions an outer layer set, such as a session's user).
    /// Others are answered `401`.
    #[must_use]
    pub fn authorize<F>(self, check: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.decide(Decision::Check(Check::Closure(Arc::new(check))))
    }

    /// Leaves the decision to `layer`, the application's own tower authorization layer
    /// (tower-http's `ValidateRequestHeaderLayer`, a session layer, ...), which wraps every
    /// route of the admin, the cross-site checks included.
    #[must_use]
    pub fn layer<L>(self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.decide(Decision::Layer(Box::new(move |router: Router| {
            router.layer(layer)
        })))
    }

    /// Serves everyone who reaches the router: **only** for a machine of your own, listening
    /// on `127.0.0.1`. Anyone who can reach it can replay and purge deliveries and read their
    /// bodies. The cross-site checks still run.
    #[must_use]
    pub fn allow_unauthenticated_for_local_development(self) -> Self {
        self.decide(Decision::Open)
    }

    /// The key of the form token (default: 32 random bytes, new for each router): give the
    /// same to every replica behind one load balancer, so that a page served by one can post
    /// to another. Keep it secret, as a session key.
    #[must_use]
    pub fn with_form_key(mut self, key: [u8; 32]) -> Self {
        self.form_key = Some(key);
        self
    }

    /// The router, to nest at any path (`Router::new().nest("/admin", admin)`).
    ///
    /// # Errors
    /// [`ConfigError::AdminWithoutAuthorization`] without an authorization decision,
    /// [`ConfigError::AdminAuthorizationTwice`] with two, [`ConfigError::EmptyAdminToken`]
    /// for an empty token.
    pub fn build(self) -> Result<Router, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let (check, layer) = match self.decision {
            Decision::None => return Err(ConfigError::AdminWithoutAuthorization),
            Decision::Check(check) => (check, None),
            Decision::Layer(layer) => (Check::Elsewhere, Some(layer)),
            Decision::Open => (Check::Elsewhere, None),
        };
        let key = self.form_key.unwrap_or_else(|| {
            let mut key = [0; 32];
            rand::rng().fill_bytes(&mut key);
            key
        });
        let token = FormToken::new(&key);
        let shared = Arc::new(Shared {
            inbox: self.inbox,
            token: token.clone(),
            name: self.name,
        });
        let guard = Arc::new(Guard { check, token });
        let router = Router::new()
            .route("/", get(page::index))
            .route("/deliveries/{key}", get(page::detail))
            .route("/deliveries/{key}/replay", post(page::replay))
            .route("/deliveries/{key}/purge", post(page::purge))
            .route("/replay", post(page::replay_dead))
            .route("/api/stats", get(api::stats))
            .route("/api/deliveries", get(api::list))
            .route("/api/deliveries/{key}", get(api::show))
            .route("/api/deliveries/{key}/replay", post(api::replay))
            .route("/api/deliveries/{key}/purge", post(api::purge))
            .route("/api/replay", post(api::replay_dead))
            .fallback(|| async { refusal::Refusal::NO_ROUTE })
            .with_state(shared)
            .layer(axum::middleware::from_fn_with_state(guard, guard::guard));
        Ok(match layer {
            Some(layer) => layer(router),
            None => router,
        })
    }
}
