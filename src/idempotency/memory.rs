use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::store::{IdempotencyKey, IdempotencyStore, Reservation, StoreError, StoreFuture, Token};
use crate::error::ConfigError;

/// How many completed events a [`MemoryStore`] remembers by default.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// How many reservations may be in flight at once in a [`MemoryStore`] by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

/// The in-memory idempotency store: the default, for **one process**.
///
/// Completed events are kept in an LRU of bounded capacity (default 100,000) until their TTL
/// runs out or newer completions push them out; reservations in flight are kept apart and are
/// **never evicted** (evicting one could let an event run twice). Their number is bounded too
/// (default 10,000): past it, `reserve` fails with [`StoreError::Full`] and the layer answers
/// `503`, so memory stays bounded whatever arrives.
///
/// Several replicas behind a load balancer each have their own memory: they need a shared store
/// such as `RedisStore` (feature `redis`).
///
/// ```
/// use tower_webhook::idempotency::MemoryStore;
///
/// let store = MemoryStore::with_capacity(10_000)?;
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    epoch: Instant,
    max_in_flight: usize,
}

#[derive(Debug)]
struct State {
    /// Live reservations: owner and deadline (milliseconds since `epoch`).
    in_flight: HashMap<IdempotencyKey, (Token, u64)>,
    /// Completed keys and when they expire (milliseconds since `epoch`).
    done: LruCache<IdempotencyKey, u64>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        const CAPACITY: NonZeroUsize = match NonZeroUsize::new(DEFAULT_CAPACITY) {
            Some(capacity) => capacity,
            None => NonZeroUsize::MIN,
        };
        Self::build(CAPACITY, DEFAULT_MAX_IN_FLIGHT)
    }
}

impl MemoryStore {
    /// A store remembering at most `capacity` completed events.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOption`] when `capacity` is zero.
    pub fn with_capacity(capacity: usize) -> Result<Self, ConfigError> {
        let capacity = NonZeroUsize::new(capacity).ok_or(ConfigError::InvalidOption(
            "the store capacity must be at least 1",
        ))?;
        Ok(Self::build(capacity, DEFAULT_MAX_IN_FLIGHT))
    }

    /// Sets how many reservations may be in flight at once.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOption`] when `max` is zero.
    pub fn with_max_in_flight(mut self, max: usize) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::InvalidOption(
                "the in-flight limit must be at least 1",
            ));
        }
        self.max_in_flight = max;
        Ok(self)
    }

    fn build(capacity: NonZeroUsize, max_in_flight: usize) -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: HashMap::new(),
                done: LruCache::new(capacity),
            }),
            epoch: Instant::now(),
            max_in_flight,
        }
    }

    /// How many completed events are remembered now (expired ones included until evicted).
    #[must_use]
    pub fn done_len(&self) -> usize {
        self.lock().done.len()
    }

    /// How many reservations are in flight now (expired ones included until reclaimed).
    #[must_use]
    pub fn in_flight_len(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// The most completed events this store remembers.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.lock().done.cap().get()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // No code path panics while holding the lock; if one ever did, the state is still
        // consistent (every operation is a single map update), so keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    fn reserve_at(
        &self,
        key: &IdempotencyKey,
        lease: Duration,
        now: u64,
    ) -> Result<Reservation, StoreError> {
        let mut state = self.lock();
        if let Some(&expires) = state.done.peek(key) {
            if expires > now {
                return Ok(Reservation::Done);
            }
            state.done.pop(key);
        }
        if let Some(&(_, deadline)) = state.in_flight.get(key) {
            if deadline > now {
                return Ok(Reservation::InFlight);
            }
        } else if state.in_flight.len() >= self.max_in_flight {
            state
                .in_flight
                .retain(|_, &mut (_, deadline)| deadline > now);
            if state.in_flight.len() >= self.max_in_flight {
                return Err(StoreError::Full);
            }
        }
        let token = Token::random();
        state
            .in_flight
            .insert(*key, (token, now.saturating_add(millis(lease))));
        Ok(Reservation::New(token))
    }

    fn complete_at(&self, key: &IdempotencyKey, token: &Token, ttl: Duration, now: u64) -> bool {
        let mut state = self.lock();
        if !holds(&state, key, token) {
            return false;
        }
        state.in_flight.remove(key);
        // `push` evicts the least recently completed key when full; in-flight keys live in the
        // other map and are never evicted.
        state.done.push(*key, now.saturating_add(millis(ttl)));
        true
    }

    fn release_now(&self, key: &IdempotencyKey, token: &Token) -> bool {
        let mut state = self.lock();
        if !holds(&state, key, token) {
            return false;
        }
        state.in_flight.remove(key);
        true
    }
}

fn holds(state: &State, key: &IdempotencyKey, token: &Token) -> bool {
    state
        .in_flight
        .get(key)
        .is_some_and(|(owner, _)| owner == token)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl IdempotencyStore for MemoryStore {
    fn reserve<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        lease: Duration,
    ) -> StoreFuture<'a, Reservation> {
        let result = self.reserve_at(key, lease, self.now());
        Box::pin(std::future::ready(result))
    }

    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        token: &'a Token,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        let result = self.complete_at(key, token, ttl, self.now());
        Box::pin(std::future::ready(Ok(result)))
    }

    fn release<'a>(&'a self, key: &'a IdempotencyKey, token: &'a Token) -> StoreFuture<'a, bool> {
        let result = self.release_now(key, token);
        Box::pin(std::future::ready(Ok(result)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(60);
    const TTL: Duration = Duration::from_secs(3600);

    fn key(n: u32) -> IdempotencyKey {
        IdempotencyKey::new("sotion", "site", &n.to_string())
    }

    fn new_token(reservation: Reservation) -> Token {
        match reservation {
            Reservation::New(token) => token,
            other => panic!("expected a new reservation, got {other:?}"),
        }
    }

    #[test]
    fn reserve_then_complete_then_duplicate() {
        let store = MemoryStore::default();
        let token = new_token(store.reserve_at(&key(1), LEASE, 0).unwrap());
        assert_eq!(
            store.reserve_at(&key(1), LEASE, 1).unwrap(),
            Reservation::InFlight
        );
        assert!(store.complete_at(&key(1), &token, TTL, 2));
        assert_eq!(
            store.reserve_at(&key(1), LEASE, 3).unwrap(),
            Reservation::Done
        );
    }

    #[test]
    fn a_released_key_can_be_reserved_again() {
        let store = MemoryStore::default();
        let token = new_token(store.reserve_at(&key(1), LEASE, 0).unwrap());
        assert!(store.release_now(&key(1), &token));
        new_token(store.reserve_at(&key(1), LEASE, 1).unwrap());
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_the_stale_owner_changes_nothing() {
        let store = MemoryStore::default();
        let stale = new_token(store.reserve_at(&key(1), LEASE, 0).unwrap());
        let lease_ms = millis(LEASE);
        assert_eq!(
            store.reserve_at(&key(1), LEASE, lease_ms - 1).unwrap(),
            Reservation::InFlight
        );
        let fresh = new_token(store.reserve_at(&key(1), LEASE, lease_ms).unwrap());
        assert!(!store.complete_at(&key(1), &stale, TTL, lease_ms + 1));
        assert!(!store.release_now(&key(1), &stale));
        assert_eq!(
            store.reserve_at(&key(1), LEASE, lease_ms + 2).unwrap(),
            Reservation::InFlight
        );
        assert!(store.complete_at(&key(1), &fresh, TTL, lease_ms + 3));
    }

    #[test]
    fn a_completed_key_expires_after_its_ttl() {
        let store = MemoryStore::default();
        let token = new_token(store.reserve_at(&key(1), LEASE, 0).unwrap());
        assert!(store.complete_at(&key(1), &token, TTL, 0));
        let ttl_ms = millis(TTL);
        assert_eq!(
            store.reserve_at(&key(1), LEASE, ttl_ms - 1).unwrap(),
            Reservation::Done
        );
        new_token(store.reserve_at(&key(1), LEASE, ttl_ms).unwrap());
    }

    #[test]
    fn at_capacity_evicts_only_completed_keys_never_in_flight_ones() {
        let store = MemoryStore::with_capacity(100).unwrap();
        // An early reservation that stays in flight while thousands of events complete.
        let held = new_token(store.reserve_at(&key(0), LEASE, 0).unwrap());
        for n in 1..=5_000 {
            let token = new_token(store.reserve_at(&key(n), LEASE, 1).unwrap());
            assert!(store.complete_at(&key(n), &token, TTL, 1));
            assert!(store.done_len() <= 100);
        }
        assert_eq!(store.done_len(), 100);
        assert_eq!(store.in_flight_len(), 1);
        assert_eq!(
            store.reserve_at(&key(0), LEASE, 2).unwrap(),
            Reservation::InFlight
        );
        assert!(store.complete_at(&key(0), &held, TTL, 3));
        // The newest completions are remembered, the oldest were evicted.
        assert_eq!(
            store.reserve_at(&key(5_000), LEASE, 4).unwrap(),
            Reservation::Done
        );
        new_token(store.reserve_at(&key(1), LEASE, 4).unwrap());
    }

    #[test]
    fn refuses_new_reservations_past_the_in_flight_limit_until_leases_expire() {
        let store = MemoryStore::default().with_max_in_flight(3).unwrap();
        for n in 0..3 {
            new_token(store.reserve_at(&key(n), LEASE, 0).unwrap());
        }
        assert!(matches!(
            store.reserve_at(&key(9), LEASE, 1),
            Err(StoreError::Full)
        ));
        // Existing reservations still answer.
        assert_eq!(
            store.reserve_at(&key(0), LEASE, 1).unwrap(),
            Reservation::InFlight
        );
        // Once the leases have run out, their room is reclaimed.
        new_token(store.reserve_at(&key(9), LEASE, millis(LEASE)).unwrap());
        assert_eq!(store.in_flight_len(), 1);
    }

    #[test]
    fn refuses_zero_sizes() {
        assert!(MemoryStore::with_capacity(0).is_err());
        assert!(MemoryStore::default().with_max_in_flight(0).is_err());
    }
}
