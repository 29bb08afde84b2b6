//! What the SQL backends' own tests share (no `axum` needed): a verified delivery, and the
//! check that two inboxes on one database take each delivery once. Included by
//! `tests/inbox_sqlite.rs` and `tests/inbox_postgres.rs` with `#[path]`, and by
//! `inbox_common`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::HashSet;
use std::time::Duration;

use tower_webhook::idempotency::IdempotencyKey;
use tower_webhook::inbox::{Delivery, InboxBackend};
use tower_webhook::testing::{sotion_event, sotion_request};
use tower_webhook::{Scheme, Secret, Secrets};

/// A verified Sotion delivery of event `id`, as the layer would store it, received at `path`
/// with an `Authorization` header besides the scheme's (a credential, never stored).
pub(crate) fn delivery_at(id: &str, path: &str) -> Delivery {
    verified(
        "whsec_inbox",
        sotion_event("member.created", id, "site_1"),
        path,
    )
}

/// `body` signed with `secret` as Sotion signs it, verified, and made a delivery received at
/// `path` with an `Authorization` header besides the scheme's (a credential, never stored).
pub(crate) fn verified(secret: &str, body: Vec<u8>, path: &str) -> Delivery {
    let secret = Secret::new(secret).unwrap();
    let mut request = sotion_request(&secret, body.clone());
    request
        .headers_mut()
        .insert("authorization", "Bearer do-not-store".parse().unwrap());
    let meta = tower_webhook::verify::verify(
        &Scheme::sotion(),
        &Secrets::new(secret),
        request.headers(),
        &body,
        std::time::SystemTime::now(),
    )
    .unwrap();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()));
    Delivery::new(
        &meta,
        IdempotencyKey::for_delivery(&meta),
        path,
        headers,
        body.into(),
    )
}

/// [`delivery_at`] `/webhooks`.
pub(crate) fn delivery(id: &str) -> Delivery {
    delivery_at(id, "/webhooks")
}

/// 200 deliveries accepted through `a`, claimed five at a time by four workers, two on each
/// inbox: each is taken (and completed) exactly once.
pub(crate) async fn two_inboxes_take_each_delivery_once<B: InboxBackend + Clone>(a: B, b: B) {
    let total = 200;
    for n in 0..total {
        a.accept(&delivery(&format!("evt_{n}"))).await.unwrap();
    }
    let worker = |inbox: B| {
        tokio::spawn(async move {
            let mut taken = Vec::new();
            loop {
                let claims = inbox.claim(Duration::from_secs(60), 5).await.unwrap();
                if claims.is_empty() {
                    break taken;
                }
                for claim in claims {
                    assert!(inbox.complete(&claim.lease).await.unwrap());
                    taken.push(*claim.lease.key());
                }
            }
        })
    };
    let handles: Vec<_> = (0..4)
        .map(|n| worker(if n % 2 == 0 { a.clone() } else { b.clone() }))
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), total, "a delivery was taken twice or not at all");
    assert_eq!(unique.len(), total);
    assert_eq!(b.stats().await.unwrap().done, total as u64);
}
