//! The completed keys of one [`MemoryStore`](super::MemoryStore) shard: a bounded set that
//! forgets the oldest completion first.
//!
//! The keys live in a ring of fixed-size slots, in completion order, and a `hashbrown` table of
//! slot positions finds them. A new completion takes the next slot of the ring; once the ring is
//! full, that slot holds the oldest completion, whose index entry is dropped. Nothing is
//! allocated per key, and an operation touches the table and one slot. (The `lru` crate this
//! replaces allocated a node per key and chased list pointers on every insert: at 100,000 keys
//! those cache misses were most of the store's cost. Its recency order was never used: the store
//! only ever peeked, so eviction was already oldest-completion-first.)

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::store::IdempotencyKey;

/// How many keys a set reserves room for when it is made (per shard of a `MemoryStore`: the
/// default store's shards are reserved whole).
const RESERVED_UP_FRONT: usize = 1 << 16;

/// Completed keys and when they expire, at most `capacity` of them.
#[derive(Debug)]
pub(super) struct Completed {
    /// The ring, in completion order from `next` on; it grows up to `capacity`, then wraps.
    slots: Vec<Slot>,
    /// The most keys kept.
    capacity: usize,
    /// Where the next completion goes: once the ring is full, the oldest completion.
    next: usize,
    /// The positions in `slots` of the keys that are remembered.
    index: HashTable<u32>,
    hasher: RandomState,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: IdempotencyKey,
    /// When the completion expires, in the store's milliseconds.
    expires: u64,
}

impl Completed {
    /// An empty set for at most `capacity` keys (at least 1, at most `u32::MAX`).
    ///
    /// Room for up to [`RESERVED_UP_FRONT`] keys is reserved now, so that filling the set
    /// never stops a request to grow and rehash its table (the slots' pages are only touched,
    /// and so only resident, as keys arrive); a larger set grows past that as keys arrive.
    pub(super) fn new(capacity: usize, hasher: RandomState) -> Self {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        let up_front = capacity.min(RESERVED_UP_FRONT);
        Self {
            slots: Vec::with_capacity(up_front),
            capacity,
            next: 0,
            index: HashTable::with_capacity(up_front),
            hasher,
        }
    }

    /// How many keys are remembered (expired ones included until they are looked up or pushed
    /// out).
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// The most keys remembered.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `key` completed and has not expired at `now`. An expired key is forgotten here.
    pub(super) fn contains(&mut self, key: &IdempotencyKey, now: u64) -> bool {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let Ok(entry) = self
            .index
            .find_entry(hash, |&position| slots[position as usize].key == *key)
        else {
            return false;
        };
        if slots[*entry.get() as usize].expires > now {
            return true;
        }
        entry.remove();
        false
    }

    /// Remembers `key` until `expires`, forgetting the oldest completion when full. A key
    /// already remembered gets the new expiry.
    pub(super) fn insert(&mut self, key: IdempotencyKey, expires: u64) {
        let Self {
            slots,
            capacity,
            next,
            index,
            hasher,
        } = self;
        let hash = hasher.hash_one(key);
        if let Some(&position) = index.find(hash, |&position| slots[position as usize].key == key) {
            slots[position as usize].expires = expires;
            return;
        }
        let position = *next;
        let slot = Slot { key, expires };
        if let Some(oldest) = slots.get_mut(position) {
            // The ring is full: this slot holds the oldest completion. Its index entry may be
            // gone already (it expired and was looked up).
            let oldest_hash = hasher.hash_one(oldest.key);
            if let Ok(entry) = index.find_entry(oldest_hash, |&p| p as usize == position) {
                entry.remove();
            }
            *oldest = slot;
        } else {
            if slots.len() == slots.capacity() {
                // Grow geometrically, but never past the capacity.
                let more = slots.len().max(16).min(*capacity - slots.len());
                slots.reserve_exact(more);
            }
            slots.push(slot);
        }
        // `position < capacity <= u32::MAX`.
        let stored = u32::try_from(position).unwrap_or(u32::MAX);
        index.insert_unique(hash, stored, |&p| hasher.hash_one(slots[p as usize].key));
        *next = (position + 1) % *capacity;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> IdempotencyKey {
        IdempotencyKey::new("sotion", "site", &n.to_string())
    }

    #[test]
    fn remembers_until_expiry_then_forgets() {
        let mut done = Completed::new(10, RandomState::default());
        done.insert(key(1), 100);
        assert!(done.contains(&key(1), 99));
        assert!(!done.contains(&key(1), 100));
        assert_eq!(done.len(), 0);
        assert!(!done.contains(&key(2), 0));
    }

    #[test]
    fn forgets_the_oldest_completion_first_and_stays_bounded() {
        let mut done = Completed::new(3, RandomState::default());
        for n in 0..10 {
            done.insert(key(n), u64::MAX);
            assert!(done.len() <= 3);
        }
        assert_eq!(done.len(), 3);
        for n in 0..7 {
            assert!(!done.contains(&key(n), 0), "key {n} should be forgotten");
        }
        for n in 7..10 {
            assert!(done.contains(&key(n), 0), "key {n} should be remembered");
        }
        assert!(done.slots.len() <= 3);
    }

    #[test]
    fn an_expired_and_forgotten_slot_is_reused_without_touching_live_keys() {
        let mut done = Completed::new(2, RandomState::default());
        done.insert(key(1), 10);
        done.insert(key(2), u64::MAX);
        // Key 1 expires and is forgotten on lookup; its slot is still the ring's oldest.
        assert!(!done.contains(&key(1), 10));
        done.insert(key(3), u64::MAX);
        assert!(done.contains(&key(2), 11));
        assert!(done.contains(&key(3), 11));
        assert_eq!(done.len(), 2);
    }

    #[test]
    fn a_key_completed_again_is_kept_once_with_the_new_expiry() {
        let mut done = Completed::new(4, RandomState::default());
        done.insert(key(1), 10);
        done.insert(key(1), 20);
        assert_eq!(done.len(), 1);
        assert!(done.contains(&key(1), 15));
    }

    #[test]
    fn a_key_completed_again_after_expiry_survives_its_old_slot_being_reused() {
        let mut done = Completed::new(2, RandomState::default());
        done.insert(key(1), 10); // slot 0
        assert!(!done.contains(&key(1), 10)); // expired, forgotten
        done.insert(key(1), u64::MAX); // slot 1
        done.insert(key(2), u64::MAX); // slot 0 again: must not drop key 1's slot 1
        assert!(done.contains(&key(1), 11));
        assert!(done.contains(&key(2), 11));
    }

    #[test]
    fn grows_up_to_the_capacity_exactly() {
        let mut done = Completed::new(1000, RandomState::default());
        for n in 0..5000 {
            done.insert(key(n), u64::MAX);
        }
        assert_eq!(done.len(), 1000);
        assert_eq!(done.slots.capacity(), 1000);
    }
}
