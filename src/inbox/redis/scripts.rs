//! The inbox's Lua scripts (in `lua/`, one file each) and the Redis keys they are given.
//!
//! Every script is `history_limit` ([`HISTORY_LIMIT`]), then [`PRELUDE`], then its own body.
//! The prelude names the keys ([`Keys::all`], the same list for every script), takes the hash
//! prefix and the group from `ARGV[1]` and `ARGV[2]`, reads Redis's clock, and holds the
//! helpers the scripts share (state indexes, history, positions in the admin order); each body
//! documents its own arguments from `ARGV[3]` on.

use redis::Script;

use crate::inbox::delivery::HISTORY_LIMIT;

/// The consumer group every process reads the stream through.
pub(super) const GROUP: &str = "workers";

/// What every script starts with: the keys by name, the hash prefix and group, Redis's clock
/// in milliseconds, and the helpers the scripts share.
pub(super) const PRELUDE: &str = include_str!("lua/prelude.lua");
/// The owner's calls (renew, complete, retry, dead letter, release) as Lua functions, shared
/// by their single scripts and the batches.
const OWNER: &str = include_str!("lua/owner.lua");
/// Marks a delivery done, if the token still holds it (also queued by a fenced completion).
const COMPLETE: &str = include_str!("lua/complete.lua");

/// The inbox's key names, all under one hash tag, `{<prefix>inbox}:`.
#[derive(Debug)]
pub(super) struct Keys {
    /// The stream of waiting deliveries (one entry each).
    pub(super) stream: String,
    /// Retries by due time (a sorted set of keys in hex).
    pub(super) delayed: String,
    /// Running deliveries by the end of their lease.
    pub(super) leases: String,
    /// Pending deliveries by acceptance.
    pub(super) pending: String,
    /// Of the pending deliveries, those attempted already (retrying), by acceptance.
    pub(super) retrying: String,
    /// Set once `retrying` holds every retry (an inbox from before 0.2 is indexed at connect).
    pub(super) indexed: String,
    /// Running deliveries by acceptance.
    pub(super) running: String,
    /// Done deliveries by acceptance.
    pub(super) done: String,
    /// Dead deliveries by acceptance.
    pub(super) dead: String,
    /// Done deliveries by completion, for `prune`.
    pub(super) finished: String,
    /// The dead-letter stream.
    pub(super) dead_letters: String,
    /// The prefix of each delivery's hash (`d:`, then the key in hex).
    pub(super) hash: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        let base = format!("{{{prefix}inbox}}:");
        let key = |name: &str| format!("{base}{name}");
        Self {
            stream: key("stream"),
            delayed: key("delayed"),
            leases: key("leases"),
            pending: key("state:pending"),
            retrying: key("state:retrying"),
            indexed: key("retrying-indexed"),
            running: key("state:running"),
            done: key("state:done"),
            dead: key("state:dead"),
            finished: key("finished"),
            dead_letters: key("dead-letters"),
            hash: key("d:"),
        }
    }

    /// The keys every script is given, in the order [`PRELUDE`] names them (`KEYS[1]` ...).
    pub(super) fn all(&self) -> [&str; 11] {
        [
            &self.stream,
            &self.delayed,
            &self.leases,
            &self.pending,
            &self.running,
            &self.done,
            &self.dead,
            &self.finished,
            &self.dead_letters,
            &self.retrying,
            &self.indexed,
        ]
    }
}

/// The scripts, each loaded once per process (`EVALSHA`, falling back to `EVAL`).
pub(super) struct Scripts {
    pub(super) accept: Script,
    pub(super) claim: Script,
    pub(super) renew: Script,
    pub(super) renew_all: Script,
    pub(super) finish: Script,
    pub(super) complete: Script,
    pub(super) retry: Script,
    pub(super) dead_letter: Script,
    pub(super) release: Script,
    pub(super) replay: Script,
    pub(super) purge: Script,
    pub(super) prune: Script,
    pub(super) repair: Script,
    pub(super) get: Script,
    pub(super) list: Script,
    pub(super) search: Script,
    pub(super) index: Script,
    pub(super) stats: Script,
    pub(super) position: Script,
}

/// [`PRELUDE`] (after `history_limit`, [`HISTORY_LIMIT`]), then `body`.
fn source(body: &str) -> String {
    format!("local history_limit = {HISTORY_LIMIT}\n{PRELUDE}{body}")
}

/// [`PRELUDE`] (after `history_limit`), the owner's calls, then `body`.
fn owner_source(body: &str) -> String {
    format!("local history_limit = {HISTORY_LIMIT}\n{PRELUDE}{OWNER}{body}")
}

/// The source of the completion script, for a fenced completion's `EVAL` (in a transaction,
/// where `EVALSHA` could fail with `NOSCRIPT` after the other commands ran).
pub(super) fn complete_source() -> String {
    owner_source(COMPLETE)
}

fn script(body: &str) -> Script {
    Script::new(&source(body))
}

fn owner_script(body: &str) -> Script {
    Script::new(&owner_source(body))
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            accept: script(include_str!("lua/accept.lua")),
            claim: script(include_str!("lua/claim.lua")),
            renew: owner_script(include_str!("lua/renew.lua")),
            renew_all: owner_script(include_str!("lua/renew_all.lua")),
            finish: owner_script(include_str!("lua/finish.lua")),
            complete: owner_script(COMPLETE),
            retry: owner_script(include_str!("lua/retry.lua")),
            dead_letter: owner_script(include_str!("lua/dead_letter.lua")),
            release: owner_script(include_str!("lua/release.lua")),
            replay: script(include_str!("lua/replay.lua")),
            purge: script(include_str!("lua/purge.lua")),
            prune: script(include_str!("lua/prune.lua")),
            repair: script(include_str!("lua/repair.lua")),
            get: script(include_str!("lua/get.lua")),
            list: script(include_str!("lua/list.lua")),
            search: script(include_str!("lua/search.lua")),
            index: script(include_str!("lua/index.lua")),
            stats: script(include_str!("lua/stats.lua")),
            position: script(include_str!("lua/position.lua")),
        }
    }
}
