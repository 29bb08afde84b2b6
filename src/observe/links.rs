//! The accepting request's span, kept for the first attempt that runs in this process: the
//! attempt's span `follows_from` it (feature `tracing`).
//!
//! A span is linked while it is open: a subscriber may look a closed span's id up and fail
//! (some layers panic). So the accept's span itself is held here, keyed by the delivery's
//! idempotency key, until the delivery's first attempt in this process starts, which takes it,
//! links it and lets it close. It is held only while [`Workers`](crate::inbox::Workers) run in
//! this process, at most [`CAPACITY`] spans, each at most [`MAX_AGE`] (evicted at the next
//! accept, attempt or gauge refresh): a delivery another process claims is not linked, and its
//! accept's span closes that much later than its answer. Across processes nothing is linked.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tracing::Span;

use crate::idempotency::IdempotencyKey;

/// How many accepting spans are held at most.
pub(crate) const CAPACITY: usize = 1024;
/// How long an accepting span is held at most, waiting for its delivery's first attempt.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10);

/// The spans held, and in which order they came.
#[derive(Default)]
struct Held {
    spans: HashMap<IdempotencyKey, (Span, Instant)>,
    /// Oldest first; a key whose span was taken or given up is skipped when its turn comes
    /// (and dropped when this grows past four times [`CAPACITY`]).
    order: VecDeque<(IdempotencyKey, Instant)>,
}

impl Held {
    /// Takes out the spans held longer than [`MAX_AGE`] (to be dropped once the lock is let go:
    /// a subscriber's `on_close` may take its time).
    fn evict(&mut self, now: Instant) -> Vec<Span> {
        let mut evicted = Vec::new();
        while let Some(&(key, at)) = self.order.front() {
            if now.duration_since(at) < MAX_AGE {
                break;
            }
            self.order.pop_front();
            if self.spans.get(&key).is_some_and(|(_, held)| *held == at) {
                evicted.extend(self.spans.remove(&key).map(|(span, _)| span));
            }
        }
        evicted
    }
}

static HELD: Mutex<Option<Held>> = Mutex::new(None);
/// How many started [`Workers`](crate::inbox::Workers) run in this process.
static WORKERS: AtomicUsize = AtomicUsize::new(0);

fn held() -> MutexGuard<'static, Option<Held>> {
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts running workers while alive: spans are held only while some run in this process.
pub(crate) struct WorkersRunning(());

impl WorkersRunning {
    pub(crate) fn new() -> Self {
        WORKERS.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for WorkersRunning {
    fn drop(&mut self) {
        if WORKERS.fetch_sub(1, Ordering::Relaxed) == 1 {
            // The last ones stopped: nothing will take what is held.
            let dropped = held().take();
            drop(dropped);
        }
    }
}

/// The current span held for the delivery under `key` while it is being accepted: given up when
/// dropped, unless [`keep`](Self::keep) says the delivery was stored.
pub(crate) struct Accepting {
    key: Option<(IdempotencyKey, Instant)>,
}

impl Accepting {
    /// Holds the current span (the layer's `webhook` span) for `key`, unless it is disabled,
    /// no workers run here, one is held for `key` already, or [`CAPACITY`] are held.
    pub(crate) fn hold(key: &IdempotencyKey) -> Self {
        let span = Span::current();
        if span.is_disabled() || WORKERS.load(Ordering::Relaxed) == 0 {
            return Self { key: None };
        }
        let now = Instant::now();
        let mut guard = held();
        let held = guard.get_or_insert_with(Held::default);
        let evicted = held.evict(now);
        let kept = held.spans.len() < CAPACITY && !held.spans.contains_key(key);
        if kept {
            held.spans.insert(*key, (span, now));
            held.order.push_back((*key, now));
            if held.order.len() > 4 * CAPACITY {
                // Mostly spans taken already: keep the order of those still held only.
                let spans = &held.spans;
                held.order
                    .retain(|(key, at)| spans.get(key).is_some_and(|(_, held)| held == at));
            }
        }
        drop(guard);
        drop(evicted);
        Self {
            key: kept.then_some((*key, now)),
        }
    }

    /// The delivery was stored: its span stays held for its first attempt.
    pub(crate) fn keep(mut self) {
        self.key = None;
    }
}

impl Drop for Accepting {
    fn drop(&mut self) {
        if let Some((key, at)) = self.key.take() {
            let given_up = held().as_mut().and_then(|held| {
                if held.spans.get(&key).is_some_and(|(_, when)| *when == at) {
                    held.spans.remove(&key)
                } else {
                    None
                }
            });
            drop(given_up);
        }
    }
}

/// Links `attempt` to the span that accepted the delivery under `key`, when this process
/// accepted it and still holds its span; the held span is then let go.
pub(crate) fn follow(attempt: &Span, key: &IdempotencyKey) {
    let (accepted, evicted) = {
        let mut held = held();
        let Some(held) = held.as_mut() else {
            return;
        };
        (held.spans.remove(key), held.evict(Instant::now()))
    };
    // Closed outside the lock: a subscriber's `on_close` may take its time.
    if let Some((accepted, _)) = accepted {
        attempt.follows_from(&accepted);
    }
    drop(evicted);
}

/// Lets go of the spans held longer than [`MAX_AGE`] (the workers' gauge refresh calls it).
pub(crate) fn evict() {
    let evicted = held().as_mut().map(|held| held.evict(Instant::now()));
    drop(evicted);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> IdempotencyKey {
        IdempotencyKey::from_hex(&format!("{:064x}", 0xa11c_e000_usize + n)).unwrap()
    }

    fn is_held(key: &IdempotencyKey) -> bool {
        held()
            .as_ref()
            .is_some_and(|held| held.spans.contains_key(key))
    }

    #[test]
    fn an_accepting_span_is_held_once_stored_given_up_otherwise_and_taken_by_the_attempt() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let _running = WorkersRunning::new();
            // This test's own callsite: enabled under this thread's subscriber.
            let request = tracing::info_span!("links_test_request");
            let _entered = request.enter();

            // Refused or a duplicate: given up when the accept returns.
            let refused = Accepting::hold(&key(0));
            assert!(is_held(&key(0)));
            drop(refused);
            assert!(!is_held(&key(0)));

            // Stored: held until the first attempt takes it.
            Accepting::hold(&key(1)).keep();
            assert!(is_held(&key(1)));
            // A second accept of the key holds nothing, and gives up nothing.
            drop(Accepting::hold(&key(1)));
            assert!(is_held(&key(1)));
            follow(&tracing::info_span!("links_test_attempt"), &key(1));
            assert!(!is_held(&key(1)));

            // At most `CAPACITY` (with what other tests hold meanwhile).
            for n in 2..CAPACITY + 3 {
                Accepting::hold(&key(n)).keep();
            }
            assert!(!is_held(&key(CAPACITY + 2)));
            for n in 2..CAPACITY + 3 {
                follow(&Span::none(), &key(n));
            }
        });
    }
}
