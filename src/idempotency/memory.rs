use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use foldhash::fast::RandomState;

use super::completed::Completed;
use super::store::{IdempotencyKey, IdempotencyStore, Reservation, StoreError, StoreFuture, Token};

/// How many completed events a [`MemoryStore`] remembers by default.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// How many reservations may be in flight at once in a [`MemoryStore`] by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

/// Stores this large are split into this many independently locked shards.
const SHARDS: usize = 16;
/// Below this capacity, one shard (exact completion order; small stores are not contended).
const SHARDING_THRESHOLD: usize = 4096;

/// The in-memory idempotency store: the default, for **one process**.
///
/// Completed events are kept, up to a bounded capacity (default 100,000), until their TTL runs
/// out or newer completions push the oldest out; reservations in flight are kept apart and are
/// **never evicted** (evicting one could let an event run twice). Their number is bounded too
/// (default 10,000): past it, `reserve` fails with [`StoreError::Full`] and the layer answers
/// `503`, so memory stays bounded whatever arrives (about 50 bytes per remembered event; see
/// `BENCHMARKS.md`).
///
/// Large stores (4,096 keys and more) are split into 16 shards by key, each with its own lock
/// and a sixteenth of the capacity, so that concurrent deliveries rarely wait on each other;
/// eviction is then oldest-completion-first per shard.
///
/// Several replicas behind a load balancer each have their own memory: they need a shared store
/// such as `RedisStore` (feature `redis`).
///
/// ```
/// use tower_webhook::idempotency::MemoryStore;
///
/// let store = MemoryStore::with_capacity(10_000.try_into()?);
/// # Ok::<(), std::num::TryFromIntError>(())
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Padded]>,
    /// The store's time zero, on the coarse monotonic clock (see [`MemoryStore::now`]).
    epoch: coarsetime::Instant,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    /// No reservation in flight expires before this (milliseconds since `epoch`; `u64::MAX`
    /// when none is): a lower bound of the earliest deadline, so that a reserve at the in-flight
    /// limit scans the shards only when one may have expired.
    earliest_deadline: AtomicU64,
    /// How many times `reclaim_expired` scanned the shards.
    #[cfg(test)]
    scans: AtomicUsize,
}

/// A shard on cache lines of its own, so that threads working on neighbouring shards do not
/// invalidate each other's lines.
#[derive(Debug)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

#[derive(Debug)]
struct Shard {
    /// Live reservations: owner and deadline (milliseconds since `epoch`).
    in_flight: HashMap<IdempotencyKey, (Token, u64), RandomState>,
    /// Completed keys and when they expire (milliseconds since `epoch`).
    done: Completed,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::build(DEFAULT_CAPACITY, DEFAULT_MAX_IN_FLIGHT)
    }
}

impl MemoryStore {
    /// A store remembering at most `capacity` completed events (the default store remembers
    /// 100,000).
    #[must_use]
    pub fn with_capacity(capacity: NonZeroUsize) -> Self {
        Self::build(capacity.get(), DEFAULT_MAX_IN_FLIGHT)
    }

    /// Sets how many reservations may be in flight at once (default 10,000); past it,
    /// `reserve` fails with [`StoreError::Full`].
    #[must_use]
    pub fn with_max_in_flight(mut self, max: NonZeroUsize) -> Self {
        self.max_in_flight = max.get();
        self
    }

    fn build(capacity: usize, max_in_flight: usize) -> Self {
        let shards = if capacity >= SHARDING_THRESHOLD {
            SHARDS
        } else {
            1
        };
        let hasher = RandomState::default();
        let shards = (0..shards)
            .map(|index| {
                // Split the capacity exactly: the first shards take the remainder.
                let share = capacity / shards + usize::from(index < capacity % shards);
                Padded(Mutex::new(Shard {
                    in_flight: HashMap::with_hasher(hasher.clone()),
                    done: Completed::new(share, hasher.clone()),
                }))
            })
            .collect();
        Self {
            shards,
            epoch: coarsetime::Instant::now_without_cache_update(),
            in_flight: AtomicUsize::new(0),
            max_in_flight,
            earliest_deadline: AtomicU64::new(u64::MAX),
            #[cfg(test)]
            scans: AtomicUsize::new(0),
        }
    }

    /// How many completed events are remembered now (expired ones included until evicted).
    #[must_use]
    pub fn done_len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).done.len()).sum()
    }

    /// How many reservations are in flight now (expired ones included until reclaimed).
    #[must_use]
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The most completed events this store remembers.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(shard).done.capacity())
            .sum()
    }

    fn shard(&self, key: &IdempotencyKey) -> MutexGuard<'_, Shard> {
        // Keys are SHA-256 digests: any byte picks a shard uniformly.
        let index = usize::from(key.as_bytes()[0]) % self.shards.len();
        lock(&self.shards[index])
    }

    /// Milliseconds since `epoch`, from the coarse monotonic clock (on Linux
    /// `CLOCK_MONOTONIC_COARSE`, a few milliseconds of resolution): about 7 ns instead of 28 ns
    /// per reading, twice per delivery. Leases and TTLs are minutes and days; both are measured
    /// on this one clock, so the coarseness only shifts them by a tick.
    fn now(&self) -> u64 {
        coarsetime::Instant::now_without_cache_update()
            .duration_since(self.epoch)
            .as_millis()
    }

    fn reserve_at(
        &self,
        key: &IdempotencyKey,
        lease: Duration,
        now: u64,
    ) -> Result<Reservation, StoreError> {
        match self.try_reserve(key, lease, now) {
            Err(StoreError::Full) => {
                // At the in-flight limit: reclaim expired reservations, then try once more;
                // unless none can have expired yet (then a flood at the limit stays cheap).
                if now < self.earliest_deadline.load(Ordering::Relaxed) {
                    return Err(StoreError::Full);
                }
                self.reclaim_expired(now);
                self.try_reserve(key, lease, now)
            }
            other => other,
        }
    }

    fn try_reserve(
        &self,
        key: &IdempotencyKey,
        lease: Duration,
        now: u64,
    ) -> Result<Reservation, StoreError> {
        let mut shard = self.shard(key);
        if shard.done.contains(key, now) {
            return Ok(Reservation::Done);
        }
        let deadline = now.saturating_add(millis(lease));
        if let Some(&(_, held_until)) = shard.in_flight.get(key) {
            if held_until > now {
                return Ok(Reservation::InFlight);
            }
            // The holder's lease ran out: take the reservation over (the count is unchanged).
            let token = Token::random();
            shard.in_flight.insert(*key, (token, deadline));
            self.expires_at(deadline);
            return Ok(Reservation::New(token));
        }
        // Take a place under the limit in one atomic step: a check and a separate increment
        // would let reserves in other shards (under other locks) pass the check together.
        let max = self.max_in_flight;
        if self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(StoreError::Full);
        }
        let token = Token::random();
        shard.in_flight.insert(*key, (token, deadline));
        self.expires_at(deadline);
        Ok(Reservation::New(token))
    }

    /// Lowers `earliest_deadline` to `deadline` if needed. Called under the lock of the shard
    /// that holds the reservation, so that a scan either sees the reservation or runs after this
    /// (see `reclaim_expired`). With one lease for every call deadlines only grow: a plain load.
    fn expires_at(&self, deadline: u64) {
        if deadline < self.earliest_deadline.load(Ordering::Relaxed) {
            self.earliest_deadline
                .fetch_min(deadline, Ordering::Relaxed);
        }
    }

    /// Drops expired reservations in every shard, locking one shard at a time (never two, so
    /// no deadlock), and recomputes `earliest_deadline`. Rare: only at the in-flight limit, once
    /// a reservation may have expired.
    ///
    /// The bound is reset before the scan and lowered to each survivor's deadline: a
    /// reservation made in a shard already scanned lowers it itself (its shard's lock orders its
    /// `expires_at` after the reset), one made in a shard not yet scanned is seen by the scan.
    /// Meanwhile other reserves at the limit see no expired reservation and answer `Full`.
    fn reclaim_expired(&self, now: u64) {
        #[cfg(test)]
        self.scans.fetch_add(1, Ordering::Relaxed);
        self.earliest_deadline.store(u64::MAX, Ordering::Relaxed);
        let mut earliest = u64::MAX;
        for shard in &self.shards {
            let mut shard = lock(shard);
            let before = shard.in_flight.len();
            shard.in_flight.retain(|_, &mut (_, deadline)| {
                let live = deadline > now;
                if live {
                    earliest = earliest.min(deadline);
                }
                live
            });
            self.in_flight
                .fetch_sub(before - shard.in_flight.len(), Ordering::Relaxed);
        }
        self.earliest_deadline
            .fetch_min(earliest, Ordering::Relaxed);
    }

    /// Marks `key` done unless another token holds it with a live lease or it is done already
    /// (the contract: see [`IdempotencyStore`]). A reservation whose lease ran out holds
    /// nothing any more, whoever owned it: it is dropped, as if it had expired in Redis.
    fn complete_at(&self, key: &IdempotencyKey, token: &Token, ttl: Duration, now: u64) -> bool {
        let mut shard = self.shard(key);
        match shard.in_flight.get(key).copied() {
            Some((owner, deadline)) if owner != *token && deadline > now => return false,
            Some(_) => {
                shard.in_flight.remove(key);
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            None if shard.done.contains(key, now) => return false,
            None => {}
        }
        // `insert` forgets the oldest completed key when full; in-flight keys live in the other
        // map and are never evicted.
        shard.done.insert(*key, now.saturating_add(millis(ttl)));
        true
    }

    /// Drops the reservation of `key` if `token` owns it; returns whether its lease was still
    /// live (a reservation whose lease ran out held the key no more: the key was free already,
    /// as in Redis, and its entry is only cleaned up).
    fn release_at(&self, key: &IdempotencyKey, token: &Token, now: u64) -> bool {
        let mut shard = self.shard(key);
        let Some(&(owner, deadline)) = shard.in_flight.get(key) else {
            return false;
        };
        if owner != *token {
            return false;
        }
        shard.in_flight.remove(key);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        deadline > now
    }
}

fn lock(Padded(shard): &Padded) -> MutexGuard<'_, Shard> {
    // No code path panics while holding the lock; if one ever did, the shard is still
    // consistent (every operation is a single map update), so keep serving.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
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
        StoreFuture::ready(self.reserve_at(key, lease, self.now()))
    }

    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        token: &'a Token,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        StoreFuture::ready(Ok(self.complete_at(key, token, ttl, self.now())))
    }

    fn release<'a>(&'a self, key: &'a IdempotencyKey, token: &'a Token) -> StoreFuture<'a, bool> {
        StoreFuture::ready(Ok(self.release_at(key, token, self.now())))
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
        assert!(store.release_at(&key(1), &token, 0));
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
        assert!(!store.release_at(&key(1), &stale, lease_ms + 1));
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
        let store = MemoryStore::with_capacity(nonzero(100));
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
        let store = MemoryStore::default().with_max_in_flight(nonzero(3));
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
    fn reclaims_expired_reservations_in_every_shard_including_the_callers() {
        let store = MemoryStore::default().with_max_in_flight(nonzero(40));
        assert_eq!(store.shards.len(), SHARDS);
        for n in 0..40 {
            new_token(store.reserve_at(&key(n), LEASE, 0).unwrap());
        }
        // Forty keys cover the shard of any new key; all their leases have run out.
        new_token(store.reserve_at(&key(99), LEASE, millis(LEASE)).unwrap());
        assert_eq!(store.in_flight_len(), 1);
    }

    #[test]
    fn concurrent_reserves_of_distinct_keys_never_overshoot_the_in_flight_limit() {
        const THREADS: usize = 8;
        const MAX: usize = 2;
        // The race is narrow: repeat it, bounded (a few hundred rounds, well under a second).
        for round in 0..400_u32 {
            let store = MemoryStore::default().with_max_in_flight(nonzero(MAX));
            let barrier = std::sync::Barrier::new(THREADS);
            let new = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for thread in 0..THREADS {
                    let (store, barrier, new) = (&store, &barrier, &new);
                    scope.spawn(move || {
                        let key = key(round * 100 + u32::try_from(thread).unwrap());
                        barrier.wait();
                        if let Ok(Reservation::New(_)) = store.reserve_at(&key, LEASE, 0) {
                            new.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            });
            let new = new.load(Ordering::Relaxed);
            assert!(
                new <= MAX,
                "round {round}: {new} new reservations past a limit of {MAX}"
            );
            assert!(
                store.in_flight_len() <= MAX,
                "round {round}: the count overshot"
            );
        }
    }

    #[test]
    fn at_the_limit_reserves_do_not_scan_for_expired_reservations_before_one_can_have_expired() {
        let store = MemoryStore::default().with_max_in_flight(nonzero(3));
        for n in 0..3 {
            new_token(store.reserve_at(&key(n), LEASE, 0).unwrap());
        }
        for n in 10..1_010 {
            assert!(matches!(
                store.reserve_at(&key(n), LEASE, 1),
                Err(StoreError::Full)
            ));
        }
        assert_eq!(
            store.scans.load(Ordering::Relaxed),
            0,
            "a flood at the limit scanned"
        );
        // Once the earliest lease has run out, one scan reclaims it.
        new_token(store.reserve_at(&key(9), LEASE, millis(LEASE)).unwrap());
        assert_eq!(store.scans.load(Ordering::Relaxed), 1);
        assert_eq!(store.in_flight_len(), 1);
        // The scan recomputed the bound: at the limit again, no scan until the next expiry.
        for n in 20..22 {
            new_token(store.reserve_at(&key(n), LEASE, millis(LEASE) + 1).unwrap());
        }
        assert!(matches!(
            store.reserve_at(&key(30), LEASE, 2 * millis(LEASE) - 1),
            Err(StoreError::Full)
        ));
        assert_eq!(store.scans.load(Ordering::Relaxed), 1);
        new_token(
            store
                .reserve_at(&key(30), LEASE, 2 * millis(LEASE))
                .unwrap(),
        );
        assert_eq!(store.scans.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn completing_a_lease_that_ran_out_unclaimed_marks_the_key_done_even_once_reclaimed() {
        let store = MemoryStore::default().with_max_in_flight(nonzero(1));
        let lease_ms = millis(LEASE);
        let first = new_token(store.reserve_at(&key(1), LEASE, 0).unwrap());
        // Still in the map after its lease ran out: the owner completes it.
        assert!(store.complete_at(&key(1), &first, TTL, lease_ms + 1));
        assert_eq!(store.in_flight_len(), 0);
        assert_eq!(
            store.reserve_at(&key(1), LEASE, lease_ms + 2).unwrap(),
            Reservation::Done
        );
        // Reclaimed at the limit by another reserve: the owner completes it all the same.
        let second = new_token(store.reserve_at(&key(2), LEASE, 0).unwrap());
        new_token(store.reserve_at(&key(3), LEASE, lease_ms).unwrap());
        assert!(store.complete_at(&key(2), &second, TTL, lease_ms + 1));
        assert_eq!(
            store.reserve_at(&key(2), LEASE, lease_ms + 2).unwrap(),
            Reservation::Done
        );
        assert_eq!(store.in_flight_len(), 1);
    }

    #[test]
    fn releasing_a_lease_that_ran_out_unclaimed_says_false_and_frees_its_place() {
        let store = MemoryStore::default().with_max_in_flight(nonzero(1));
        let token = new_token(store.reserve_at(&key(1), LEASE, 0).unwrap());
        assert!(!store.release_at(&key(1), &token, millis(LEASE)));
        assert_eq!(store.in_flight_len(), 0);
        new_token(store.reserve_at(&key(1), LEASE, millis(LEASE)).unwrap());
    }

    #[test]
    fn shards_split_the_capacity_exactly() {
        for capacity in [1, 100, 4095, 4096, 100_000, 100_001] {
            assert_eq!(
                MemoryStore::with_capacity(nonzero(capacity)).capacity(),
                capacity
            );
        }
    }

    fn nonzero(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }
}
