//! The inbox's attempt spans, against a real `SQLite` file in a temporary directory: an
//! attempt's span carries its delivery, and follows from the request span that accepted it in
//! this process. Alone in its binary: `tracing` caches which spans are enabled per callsite,
//! across threads, so a test without a subscriber running beside it could disable them.
#![cfg(all(
    feature = "sqlite",
    feature = "axum",
    feature = "testing",
    feature = "tracing"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod inbox_common;

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use inbox_common::{key, member_created, send, wait_for, App, SECRET};
use tower_webhook::inbox::{DeliveryState, InboxOptions, SqliteInbox, Workers};
use tower_webhook::{EventRouter, Scheme, WebhookLayer};

/// The inbox's name in this test.
const NAME: &str = "billing";

mod spans {
    //! A `tracing` layer that keeps what the tests look at: each span's fields, and each
    //! follows-from link with both spans' fields as they were when it was made.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::Subscriber;
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    /// A span's name and fields (values as `Debug` prints them).
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Seen {
        pub(crate) name: String,
        pub(crate) fields: HashMap<String, String>,
    }

    impl Visit for Seen {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.fields
                .insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    #[derive(Clone, Default)]
    pub(crate) struct Capture {
        /// The attempts' spans, as created.
        pub(crate) attempts: Arc<Mutex<Vec<Seen>>>,
        /// (the following span, the span it follows), when linked.
        pub(crate) links: Arc<Mutex<Vec<(Seen, Seen)>>>,
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut seen = Seen {
                name: attrs.metadata().name().to_owned(),
                ..Seen::default()
            };
            attrs.record(&mut seen);
            if seen.name == "webhook_inbox_attempt" {
                self.attempts.lock().unwrap().push(seen.clone());
            }
            ctx.span(id).unwrap().extensions_mut().insert(seen);
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            let span = ctx.span(id).unwrap();
            let mut extensions = span.extensions_mut();
            if let Some(seen) = extensions.get_mut::<Seen>() {
                values.record(seen);
            }
        }

        fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
            // Both are open: a closed one would not be found.
            let seen = |id: &Id| {
                ctx.span(id)
                    .expect("a span linked while open")
                    .extensions()
                    .get::<Seen>()
                    .cloned()
                    .unwrap()
            };
            self.links.lock().unwrap().push((seen(id), seen(follows)));
        }
    }
}

#[test]
fn an_attempt_span_carries_its_delivery_and_follows_from_the_request_span_that_accepted_it() {
    use tracing_subscriber::layer::SubscriberExt;

    let capture = spans::Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The subscriber is this thread's: the requests and the workers' tasks run on it.
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let inbox = SqliteInbox::open(dir.path().join("inbox.db"), InboxOptions::new())
                .await
                .unwrap();
            let app = App::default();
            app.fail("evt_t_linked", 1);
            let running = Workers::new(inbox.clone(), inbox_common::router::<SqliteInbox>(&app))
                .with_name(NAME)
                .with_backoff(Duration::from_millis(20))
                .with_poll_interval(Duration::from_millis(20))
                .with_max_attempts(NonZeroU32::new(3).unwrap())
                .start()
                .unwrap();
            let layer = WebhookLayer::builder(Scheme::sotion())
                .with_secret(SECRET)
                .with_inbox(inbox.clone())
                .with_inbox_name(NAME)
                .build()
                .unwrap();
            let events = EventRouter::new().on("member.created", member_created::<SqliteInbox>);
            let router = Router::new()
                .route("/webhooks", post(events).route_layer(layer))
                .with_state(app.clone());
            assert_eq!(
                send(&router, SECRET, "evt_t_linked").await.0,
                StatusCode::OK
            );
            // A duplicate's request is not linked.
            assert!(send(&router, SECRET, "evt_t_linked").await.1);
            wait_for(&inbox, &key("evt_t_linked"), DeliveryState::Done).await;
            running.shutdown(Duration::from_secs(5)).await;
        });
    });

    let attempts = capture.attempts.lock().unwrap().clone();
    let ours: Vec<_> = attempts
        .iter()
        .filter(|seen| seen.fields.get("id").map(String::as_str) == Some("\"evt_t_linked\""))
        .collect();
    assert_eq!(ours.len(), 2, "two attempts: {attempts:?}");
    let hex = key("evt_t_linked").to_hex();
    for (number, seen) in ours.iter().enumerate() {
        assert_eq!(seen.fields["attempt"], (number + 1).to_string());
        assert_eq!(seen.fields["event"], "\"member.created\"");
        assert_eq!(seen.fields["key"], hex);
        assert_eq!(seen.fields["inbox"], NAME);
        assert_eq!(seen.fields["scheme"], "sotion");
    }
    // The first attempt follows from the request span that stored the delivery (its id recorded
    // once verified); a retry is not linked again.
    let links = capture.links.lock().unwrap().clone();
    let ours: Vec<_> = links
        .iter()
        .filter(|(attempt, _)| {
            attempt.fields.get("id").map(String::as_str) == Some("\"evt_t_linked\"")
        })
        .collect();
    assert_eq!(ours.len(), 1, "{links:?}");
    let (attempt, accepted) = ours[0];
    assert_eq!(attempt.fields["attempt"], "1");
    assert_eq!(accepted.name, "webhook");
    assert_eq!(accepted.fields["id"], "\"evt_t_linked\"");
}
