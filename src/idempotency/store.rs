use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::StorageError;
use crate::meta::WebhookMeta;

/// The future a store method returns: an answer already known (an in-memory store, no
/// allocation), or a boxed future (a store that does I/O).
#[must_use = "a store call does nothing unless awaited"]
pub struct StoreFuture<'a, T>(Inner<'a, T>);

enum Inner<'a, T> {
    Ready(Option<Result<T, StoreError>>),
    Boxed(Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>),
}

impl<'a, T> StoreFuture<'a, T> {
    /// An answer known right away.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self(Inner::Ready(Some(result)))
    }

    /// An answer that needs I/O: any future, lazy (an `async` block) or already under way.
    pub fn boxed(future: impl Future<Output = Result<T, StoreError>> + Send + 'a) -> Self {
        Self(Inner::Boxed(Box::pin(future)))
    }

    /// Whether the answer was known right away (no I/O, no runtime needed to poll it).
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self.0, Inner::Ready(_))
    }
}

// Neither variant is pinned structurally: the result sits in an `Option`, the future in a box.
impl<T> Unpin for StoreFuture<'_, T> {}

impl<T> Future for StoreFuture<'_, T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Inner::Ready(result) => Poll::Ready(result.take().unwrap_or(Err(StoreError::Backend(
                "store future polled after it finished".into(),
            )))),
            Inner::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for StoreFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Inner::Ready(_) => "StoreFuture::Ready",
            Inner::Boxed(_) => "StoreFuture::Boxed",
        })
    }
}

/// Where deliveries are remembered, so that each event is handled once.
///
/// # Implementing your own store
///
/// The layer drives a store through three operations per delivery, and relies on each being
/// **atomic** with respect to every other call on the same key, from any task, process or
/// replica that shares the store:
///
/// 1. [`reserve`](Self::reserve)`(key, lease)` is an atomic *insert-if-absent*, never a read
///    followed by a write. If the key is absent, or held by a reservation whose lease has
///    expired, it records a new reservation owned by a fresh [`Token`] that expires after
///    `lease`, and returns [`Reservation::New`]. If the key is held by a live reservation it
///    returns [`Reservation::InFlight`]; if the key was completed (and its TTL has not run out)
///    it returns [`Reservation::Done`]. Two concurrent `reserve` calls on one key must never both
///    return `New` while the first reservation is live.
/// 2. [`complete`](Self::complete)`(key, token, ttl)` marks the key done for `ttl` if it is
///    held by `token`, **or by nobody**: a reservation whose lease expired and that nobody took
///    over is still completed by its owner (the handler did succeed, and recording it prevents
///    a re-run). It changes nothing and returns `false` when another token holds the key with a
///    live lease (a stale owner, whose lease expired and was taken over) or the key is done
///    already; otherwise it returns `true`.
/// 3. [`release`](Self::release)`(key, token)` removes the reservation, **only if** `token`
///    holds it, so the next delivery is processed; it returns whether it removed a live
///    reservation. A reservation whose lease expired holds the key no more: releasing it
///    returns `false` and the key stays free (a taken-over key stays with its new owner).
///
/// A token *holds* a key while its lease is live: an expired lease is the same as no
/// reservation, whether the store has forgotten it yet (Redis) or not (memory).
///
/// Errors are reported as [`StoreError`]; the layer then answers `503` (or, if configured to
/// fail open, calls the handler without a reservation). A store must not panic.
///
/// A store that answers at once (it keeps its state in memory) returns
/// [`StoreFuture::ready`]; one that does I/O returns [`StoreFuture::boxed`] with any future,
/// such as an `async move` block. The layer always runs a store's future to its end: to finish
/// `complete` and `release` even when the request's future is dropped, it moves the unfinished
/// future onto a task of its own (it never drops it and calls again), so a future that starts
/// its work before it is first polled is as correct as a lazy one.
///
/// With feature `testing`, [`testing::check_store`](crate::testing::check_store) checks these
/// rules against a store, in real time (about half a second); run it from a test of your own
/// store, as this crate does for its two.
///
/// # Example: a store of your own
///
/// A complete store keeping its keys in a `Mutex<HashMap>` (one process only, and it never
/// forgets a key: [`MemoryStore`](crate::MemoryStore) is the bounded version), checked by the
/// conformance suite:
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::{Duration, Instant};
///
/// use tower_webhook::idempotency::{
///     IdempotencyKey, IdempotencyStore, Reservation, StoreError, StoreFuture, Token,
/// };
///
/// enum Entry {
///     Reserved { token: Token, until: Instant },
///     Done { until: Instant },
/// }
///
/// #[derive(Default)]
/// struct MapStore(Mutex<HashMap<IdempotencyKey, Entry>>);
///
/// type Map<'a> = std::sync::MutexGuard<'a, HashMap<IdempotencyKey, Entry>>;
///
/// impl MapStore {
///     fn map(&self) -> Result<Map<'_>, StoreError> {
///         self.0.lock().map_err(|_| StoreError::Backend("a thread panicked".into()))
///     }
/// }
///
/// impl IdempotencyStore for MapStore {
///     fn reserve<'a>(
///         &'a self,
///         key: &'a IdempotencyKey,
///         lease: Duration,
///     ) -> StoreFuture<'a, Reservation> {
///         // The check and the insert under one lock: an atomic insert-if-absent.
///         StoreFuture::ready(self.map().map(|mut map| {
///             let now = Instant::now();
///             match map.get(key) {
///                 Some(Entry::Reserved { until, .. }) if *until > now => Reservation::InFlight,
///                 Some(Entry::Done { until }) if *until > now => Reservation::Done,
///                 _ => {
///                     let token = Token::random();
///                     map.insert(*key, Entry::Reserved { token, until: now + lease });
///                     Reservation::New(token)
///                 }
///             }
///         }))
///     }
///
///     fn complete<'a>(
///         &'a self,
///         key: &'a IdempotencyKey,
///         token: &'a Token,
///         ttl: Duration,
///     ) -> StoreFuture<'a, bool> {
///         StoreFuture::ready(self.map().map(|mut map| {
///             let now = Instant::now();
///             match map.get(key) {
///                 // Another live reservation holds it, or it is done already: no change.
///                 Some(Entry::Reserved { token: holder, until })
///                     if *until > now && holder != token => false,
///                 Some(Entry::Done { until }) if *until > now => false,
///                 _ => {
///                     map.insert(*key, Entry::Done { until: now + ttl });
///                     true
///                 }
///             }
///         }))
///     }
///
///     fn release<'a>(
///         &'a self,
///         key: &'a IdempotencyKey,
///         token: &'a Token,
///     ) -> StoreFuture<'a, bool> {
///         StoreFuture::ready(self.map().map(|mut map| {
///             let held = matches!(
///                 map.get(key),
///                 Some(Entry::Reserved { token: holder, until })
///                     if holder == token && *until > Instant::now()
///             );
///             if held {
///                 map.remove(key);
///             }
///             held
///         }))
///     }
/// }
///
/// # #[cfg(feature = "testing")]
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// // In your store's tests (`#[tokio::test] async fn ...`), with `tower-webhook` as a
/// // dev-dependency with feature `testing`:
/// tower_webhook::testing::check_store(&MapStore::default()).await;
/// # });
/// ```
///
/// A store doing I/O returns its work boxed, borrowing what it needs:
/// `StoreFuture::boxed(async move { self.client.set_if_absent(key, token, lease).await })`.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Atomically reserves `key` for `lease`, unless it is in flight or done. See the trait docs.
    fn reserve<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        lease: Duration,
    ) -> StoreFuture<'a, Reservation>;

    /// Marks `key` done for `ttl` if `token` still holds it, or nobody does. Returns whether it
    /// did. See the trait docs.
    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        token: &'a Token,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Drops the reservation of `key` if `token` still holds it. Returns whether it did (`false`
    /// once its lease has expired). See the trait docs.
    fn release<'a>(&'a self, key: &'a IdempotencyKey, token: &'a Token) -> StoreFuture<'a, bool>;
}

/// The answer to [`IdempotencyStore::reserve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The key was free: the caller owns it through this token until the lease ends.
    New(Token),
    /// Another delivery of the event holds a live reservation.
    InFlight,
    /// The event was already handled successfully.
    Done,
}

/// The owner of a reservation: a random 128-bit value, new for each reservation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u128);

impl Token {
    /// A fresh random token.
    #[must_use]
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The token as 32 lower-case hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        format!("{:032x}", self.0)
    }

    /// [`to_hex`](Self::to_hex) written into `buffer` (at least 32 bytes), without allocating.
    #[cfg(feature = "redis")]
    pub(crate) fn encode_hex<'b>(&self, buffer: &'b mut [u8]) -> &'b [u8] {
        encode_hex(&self.0.to_be_bytes(), buffer)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.to_hex())
    }
}

/// The key an event is remembered under: a SHA-256 digest of the scheme, the endpoint that
/// received it, the tenant, the scope (for Sotion the signed `siteId`) and the signed event id,
/// each length-prefixed so that no two different tuples share a key. Fixed-size, so a store's
/// memory per key does not depend on what senders put in their ids.
///
/// Keys hold only signed values: when a scheme's id or scope is unsigned (GitHub's
/// `X-GitHub-Delivery`), the digest of the delivery's signed bytes takes their place (see
/// [`SchemeBuilder::with_unsigned_id_and_scope`](crate::scheme::SchemeBuilder::with_unsigned_id_and_scope)).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdempotencyKey([u8; 32]);

/// A key is already a uniform SHA-256 digest of signed data: eight of its bytes are as good a
/// hash as all 32 (equality still compares all 32). Only authenticated deliveries make keys, so
/// an attacker cannot choose them to collide.
impl std::hash::Hash for IdempotencyKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut word = [0_u8; 8];
        word.copy_from_slice(&self.0[24..]);
        state.write_u64(u64::from_ne_bytes(word));
    }
}

impl IdempotencyKey {
    /// The key of event `id` from `scope` under `scheme`, for no particular endpoint. The layer
    /// uses [`for_delivery`](Self::for_delivery), which also names the endpoint: the two never
    /// produce the same key.
    #[must_use]
    pub fn new(scheme: &str, scope: &str, id: &str) -> Self {
        Self::from_parts(&[scheme.as_bytes(), b"", scope.as_bytes(), id.as_bytes()])
    }

    fn from_parts(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Self(hasher.finalize().into())
    }

    /// The key of a verified delivery, as the layer computes it: its scheme; the endpoint that
    /// received it (the name given to
    /// [`WebhookLayerBuilder::with_endpoint`](crate::layer::WebhookLayerBuilder::with_endpoint), or else a
    /// fingerprint of the secret that verified it, so that two endpoints with different
    /// secrets never share a key); its tenant (when a resolver matched one); then its scope
    /// (Sotion's `siteId`) and event id, or, when the scheme's id or scope is unsigned, the
    /// digest of its signed bytes instead.
    ///
    /// For a `meta` from [`verify::verify`](crate::verify::verify) this is the key a layer
    /// with the same scheme and secrets, and no `with_endpoint`, uses. For the `meta` an inbox
    /// worker hands a handler, it is the key the delivery was stored under, as in inline mode.
    #[must_use]
    pub fn for_delivery(meta: &WebhookMeta) -> Self {
        if let Some(stored) = meta.key.stored {
            return stored;
        }
        let endpoint = &meta.key.endpoint;
        let tenant = meta.tenant().unwrap_or("").as_bytes();
        match &meta.key.signed_bytes {
            Some(digest) => Self::from_parts(&[meta.scheme().as_bytes(), endpoint, tenant, digest]),
            None => Self::from_parts(&[
                meta.scheme().as_bytes(),
                endpoint,
                tenant,
                meta.scope().unwrap_or("").as_bytes(),
                meta.id().as_bytes(),
            ]),
        }
    }

    /// The key whose digest is `bytes`, as [`as_bytes`](Self::as_bytes) gave it (a key read
    /// back from where a store or an inbox keeps it).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lower-case hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        faster_hex::hex_string(&self.0)
    }

    /// The key written as [`to_hex`](Self::to_hex) wrote it (64 hex digits, either case), or
    /// `None` for any other text.
    #[must_use]
    pub fn from_hex(hex: &str) -> Option<Self> {
        let mut bytes = [0_u8; 32];
        if hex.len() != 64 {
            return None;
        }
        faster_hex::hex_decode(hex.as_bytes(), &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// [`to_hex`](Self::to_hex) written into `buffer` (at least 64 bytes), without allocating.
    #[cfg(feature = "redis")]
    pub(crate) fn encode_hex<'b>(&self, buffer: &'b mut [u8]) -> &'b [u8] {
        encode_hex(&self.0, buffer)
    }
}

/// `bytes` as lower-case hex in the start of `buffer` (twice as long at least; a shorter one
/// gives an empty slice, never a panic).
#[cfg(feature = "redis")]
fn encode_hex<'b>(bytes: &[u8], buffer: &'b mut [u8]) -> &'b [u8] {
    let Some(buffer) = buffer.get_mut(..bytes.len() * 2) else {
        return &[];
    };
    match faster_hex::hex_encode(bytes, buffer) {
        Ok(hex) => hex.as_bytes(),
        Err(_) => &[],
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.to_hex())
    }
}

/// A store could not answer: the [`StorageError`] that inboxes report too. The layer answers
/// `503 store_unavailable` with `Retry-After` (or, configured to fail open, calls the handler
/// without a reservation, unless the store is [`Full`](StorageError::Full): a store full of
/// in-flight reservations refuses new ones rather than evict one, which could let an event run
/// twice).
pub type StoreError = StorageError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unambiguous_across_part_boundaries() {
        assert_ne!(
            IdempotencyKey::new("sotion", "a:b", "c"),
            IdempotencyKey::new("sotion", "a", "b:c")
        );
        assert_ne!(
            IdempotencyKey::new("sotion", "site1", "evt"),
            IdempotencyKey::new("sotion", "site2", "evt")
        );
        assert_eq!(
            IdempotencyKey::new("sotion", "s", "e"),
            IdempotencyKey::new("sotion", "s", "e")
        );
    }

    fn meta(endpoint: u8, tenant: Option<&str>, signed_bytes: Option<[u8; 32]>) -> WebhookMeta {
        WebhookMeta {
            scheme: "sotion".into(),
            id: "evt_1".into(),
            event: Some("member.created".into()),
            action: None,
            delivery: None,
            scope: Some("site_1".into()),
            tenant: tenant.map(str::to_owned),
            timestamp: None,
            version: None,
            key: crate::meta::KeyBasis {
                endpoint: [endpoint; 16],
                signed_bytes,
                stored: None,
            },
        }
    }

    #[test]
    fn delivery_keys_name_the_endpoint_and_the_tenant() {
        let key = |endpoint, tenant| IdempotencyKey::for_delivery(&meta(endpoint, tenant, None));
        assert_eq!(key(1, None), key(1, None));
        assert_ne!(key(1, None), key(2, None));
        assert_ne!(key(1, Some("acme")), key(1, Some("globex")));
        assert_ne!(
            key(1, None),
            IdempotencyKey::new("sotion", "site_1", "evt_1")
        );
    }

    #[test]
    fn a_delivery_with_unsigned_facts_is_keyed_by_its_signed_bytes_alone() {
        let key = |endpoint, digest: Option<[u8; 32]>, id: &str| {
            let mut meta = meta(endpoint, None, digest);
            meta.id = id.into();
            IdempotencyKey::for_delivery(&meta)
        };
        // The (unsigned) id does not matter; the digest and the endpoint do.
        assert_eq!(key(1, Some([7; 32]), "a"), key(1, Some([7; 32]), "b"));
        assert_ne!(key(1, Some([7; 32]), "a"), key(1, Some([8; 32]), "a"));
        assert_ne!(key(1, Some([7; 32]), "a"), key(2, Some([7; 32]), "a"));
        assert_ne!(key(1, Some([7; 32]), "a"), key(1, None, "a"));
    }

    #[test]
    fn tokens_are_fresh() {
        assert_ne!(Token::random(), Token::random());
        assert_eq!(Token::random().to_hex().len(), 32);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn hex_written_in_place_is_the_same_as_to_hex() {
        let mut buffer = [0_u8; 64];
        for token in [Token(0), Token(1), Token(u128::MAX), Token::random()] {
            assert_eq!(token.encode_hex(&mut buffer), token.to_hex().as_bytes());
        }
        let key = IdempotencyKey::new("sotion", "site", "evt");
        assert_eq!(key.encode_hex(&mut buffer), key.to_hex().as_bytes());
    }
}
