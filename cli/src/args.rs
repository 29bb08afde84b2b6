//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tower_webhook::inbox::Status;

const ROOT_EXAMPLES: &str = "\
Examples:
  tower-webhook inbox stats --url sqlite:webhooks.db
  INBOX_URL=postgres://app@db/app tower-webhook inbox list --state dead --since 1h
  tower-webhook inbox replay --dead --event member.created --url redis://127.0.0.1:6379/
  tower-webhook sign --scheme github --secret \"$GH_SECRET\" --event push
  tower-webhook verify --scheme stripe --secret \"$STRIPE_SECRET\" --request captured.http

Exit codes: 0 done, 1 refused or not found, 2 usage, 3 the store (or send's receiver) could
not be reached.";

/// Operate a tower-webhook inbox, and sign, send and verify test deliveries.
#[derive(Debug, Parser)]
#[command(name = "tower-webhook", version, after_help = ROOT_EXAMPLES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Look into a durable inbox, replay and purge its deliveries.
    #[command(subcommand)]
    Inbox(InboxCommand),
    /// Print a correctly signed delivery for any sender: a curl command, or JSON.
    #[command(after_help = SIGN_EXAMPLES)]
    Sign(SignArgs),
    /// Send a correctly signed delivery to a receiver (plain http://) and print its answer.
    #[command(after_help = SEND_EXAMPLES)]
    Send(SignArgs),
    /// Verify a captured request offline, and say why it is refused.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
}

/// Where the inbox is.
#[derive(Debug, Args)]
pub(crate) struct Store {
    /// The inbox: `sqlite:PATH`, `postgres://USER@HOST/DB` or `redis://HOST:PORT/DB`.
    #[arg(long, env = "INBOX_URL", value_name = "URL")]
    pub(crate) url: String,
    /// The prefix the application gave the inbox (`InboxOptions::with_prefix`): SQL table names,
    /// Redis key names.
    #[arg(long, value_name = "PREFIX", default_value = "tower_webhook_")]
    pub(crate) prefix: String,
    /// How long one call to the store may take, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub(crate) timeout: u64,
}

/// The inbox commands.
#[derive(Debug, Subcommand)]
pub(crate) enum InboxCommand {
    /// Counts per state (waiting, running, retrying, dead, done) and the lag.
    #[command(
        after_help = "Examples:\n  tower-webhook inbox stats --url sqlite:webhooks.db\n  tower-webhook inbox stats --json | jq .dead\n\n--json prints one object: waiting, running, retrying, dead, done, lag_ms."
    )]
    Stats {
        #[command(flatten)]
        store: Store,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Deliveries, oldest accepted first, filtered.
    #[command(
        after_help = "Examples:\n  tower-webhook inbox list --state dead\n  tower-webhook inbox list --event member.created --since 2h --json\n  tower-webhook inbox list --limit 50 --after 1777636800000000000.3f0c...\n\n--json prints JSON Lines, one delivery a line (id, key, scheme, event, action, scope,\ntenant, path, state, attempts, last_error, accepted_at, due_at, finished_at). When there is\nmore, the cursor of the next page is printed on stderr (--after)."
    )]
    List {
        #[command(flatten)]
        store: Store,
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
        /// Start after this position (a previous listing's next cursor).
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
        /// JSON Lines.
        #[arg(long)]
        json: bool,
    },
    /// One or more deliveries in full: headers, body, history, last error.
    #[command(
        after_help = "Examples:\n  tower-webhook inbox show evt_1\n  tower-webhook inbox show 3f0c...(64 hex digits: a key) --full\n  tower-webhook inbox show evt_1 --json | jq .history\n\nAn ID is the sender's event id, or a delivery's key (64 hex digits). An event id that\nseveral deliveries share (two endpoints) is refused: give one of the keys listed."
    )]
    Show {
        #[command(flatten)]
        store: Store,
        /// Event ids or keys.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// The whole body (default: its first 4 KiB).
        #[arg(long)]
        full: bool,
        /// One JSON object a delivery (a line each).
        #[arg(long)]
        json: bool,
    },
    /// Make dead deliveries pending again (due now, attempts reset).
    #[command(
        after_help = "Examples:\n  tower-webhook inbox replay evt_1 evt_2\n  tower-webhook inbox replay --dead --event member.created --since 1d\n  tower-webhook inbox replay evt_1 --include-done\n\nPrints a line for each delivery replayed (JSON Lines with --json); exits 1 when an id is\nunknown or its delivery is not dead, after replaying the others."
    )]
    Replay {
        #[command(flatten)]
        store: Store,
        #[command(flatten)]
        targets: Targets,
        /// Every dead delivery the filters match.
        #[arg(long)]
        dead: bool,
        /// Replay the ids given even when they were processed already (their handler runs
        /// again).
        #[arg(long, conflicts_with = "dead")]
        include_done: bool,
        /// JSON Lines.
        #[arg(long)]
        json: bool,
    },
    /// Remove deliveries, in any state (a later delivery with the same key is then new).
    #[command(
        after_help = "Examples:\n  tower-webhook inbox purge evt_1\n  tower-webhook inbox purge --dead --event test.ping --yes\n\nPrints a line for each delivery removed (JSON Lines with --json); exits 1 when an id is\nunknown, after removing the others."
    )]
    Purge {
        #[command(flatten)]
        store: Store,
        #[command(flatten)]
        targets: Targets,
        /// Every dead delivery the filters match (needs --yes).
        #[arg(long, requires = "yes")]
        dead: bool,
        /// Confirms a bulk purge.
        #[arg(long)]
        yes: bool,
        /// JSON Lines.
        #[arg(long)]
        json: bool,
    },
}

/// Which deliveries `replay` and `purge` act on: the ids given, or with `--dead` every dead
/// one the filters match.
#[derive(Debug, Args)]
pub(crate) struct Targets {
    /// Event ids or keys.
    #[arg(
        value_name = "ID",
        required_unless_present = "dead",
        conflicts_with = "dead"
    )]
    pub(crate) ids: Vec<String>,
    /// Only of this event type (with --dead).
    #[arg(long, value_name = "EVENT", requires = "dead")]
    pub(crate) event: Option<String>,
    /// Only accepted since (with --dead): RFC 3339 or an age (30m, 1h, 2d).
    #[arg(long, value_name = "TIME", requires = "dead")]
    pub(crate) since: Option<String>,
    /// How many deliveries a bulk replay or purge reads at a time (for tests).
    #[arg(long, hide = true, default_value_t = 500)]
    pub(crate) page: usize,
}

/// The filters of `list`.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Only in this state.
    #[arg(long, value_enum, value_name = "STATE")]
    pub(crate) state: Option<StateArg>,
    /// Only of this event type.
    #[arg(long, value_name = "EVENT")]
    pub(crate) event: Option<String>,
    /// Only accepted since: RFC 3339 or an age (30m, 1h, 2d).
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
}

/// A delivery's status, as `--state` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StateArg {
    /// Pending, never attempted.
    Waiting,
    /// Claimed by a worker.
    Running,
    /// Pending after a failed attempt.
    Retrying,
    /// Dead-lettered.
    Dead,
    /// Processed.
    Done,
}

impl From<StateArg> for Status {
    fn from(state: StateArg) -> Self {
        match state {
            StateArg::Waiting => Status::Waiting,
            StateArg::Running => Status::Running,
            StateArg::Retrying => Status::Retrying,
            StateArg::Dead => Status::Dead,
            StateArg::Done => Status::Done,
        }
    }
}

const SIGN_EXAMPLES: &str = "\
Examples:
  tower-webhook sign --secret whsec_test --event member.created
  tower-webhook sign --scheme github --secret \"$GH_SECRET\" --event issues --action opened | sh
  tower-webhook sign --scheme stripe --secret whsec_x --data event.json --json

Without --data, the body is a sample in the sender's own shape. For Discord, Standard
Webhooks v1a and SendGrid, --secret is the private key.";

const SEND_EXAMPLES: &str = "\
Examples:
  tower-webhook send --secret whsec_test --event member.created --id evt_1
  tower-webhook send --scheme github --secret gh --event push --url http://127.0.0.1:3000/hooks
  tower-webhook send --scheme stripe --secret whsec_x --data event.json

Speaks plain http:// (a local receiver); for https, run the curl command `sign` prints.";

/// What `sign` and `send` build.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The sender's scheme (a preset: sotion, github, stripe, standard, slack, ...).
    #[arg(long, default_value = "sotion", value_parser = scheme_name)]
    pub(crate) scheme: String,
    /// The secret to sign with (for Discord, Standard Webhooks v1a and SendGrid: the private
    /// key).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub(crate) secret: String,
    /// The event type.
    #[arg(long, default_value = "member.created")]
    pub(crate) event: String,
    /// GitHub's body action (issues --action opened).
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// The event id (default: a random one).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// The body to sign, exactly (a file, or - for stdin); default: a sample body.
    #[arg(long, value_name = "FILE|-")]
    pub(crate) data: Option<String>,
    /// Send the JSON as a form's payload parameter (GitHub's form content type, Slack).
    #[arg(long)]
    pub(crate) form: bool,
    /// Where to send it.
    #[arg(
        long,
        env = "WEBHOOK_URL",
        default_value = "http://127.0.0.1:3000/webhooks"
    )]
    pub(crate) url: String,
    /// The URL a URL-signing sender (Square, Twilio) signs, when not --url (a receiver behind
    /// a proxy).
    #[arg(long, env = "WEBHOOK_PUBLIC_URL")]
    pub(crate) public_url: Option<String>,
    /// JSON: the URL, id, event, headers and body (`sign`), or the answer (`send`).
    #[arg(long)]
    pub(crate) json: bool,
}

const VERIFY_EXAMPLES: &str = "\
Examples:
  tower-webhook verify --scheme stripe --secret whsec_x --request captured.http
  tower-webhook verify --secret whsec_test --headers headers.txt --body body.json
  tower-webhook verify --scheme square --secret k --request req.http --url https://example.com/webhooks

A request file is the raw HTTP request (request line, headers, blank line, body). A headers
file holds `Name: value` lines. Exit 0 when it verifies, 1 when refused (with the reason).";

/// What `verify` checks.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The sender's scheme (a preset).
    #[arg(long, default_value = "sotion", value_parser = scheme_name)]
    pub(crate) scheme: String,
    /// The secret the receiver verifies with (for Discord, Standard Webhooks v1a and
    /// SendGrid: the public key).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub(crate) secret: String,
    /// A raw HTTP request: request line, headers, a blank line, the body.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["headers", "body"], required_unless_present_all = ["headers", "body"])]
    pub(crate) request: Option<PathBuf>,
    /// The request's headers, `Name: value` a line.
    #[arg(long, value_name = "FILE", requires = "body")]
    pub(crate) headers: Option<PathBuf>,
    /// The request's body, exactly as received.
    #[arg(long, value_name = "FILE", requires = "headers")]
    pub(crate) body: Option<PathBuf>,
    /// The URL the sender called, for a URL-signing scheme (Square, Twilio); default
    /// `https://<Host><path>` of the request.
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// Verify as at this time (RFC 3339) instead of now: a capture's freshness.
    #[arg(long, value_name = "TIME")]
    pub(crate) at: Option<String>,
    /// One JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A preset's name, as `--scheme` takes it.
fn scheme_name(name: &str) -> Result<String, String> {
    tower_webhook::Scheme::preset(name)
        .map(|_| name.to_owned())
        .ok_or_else(|| {
            format!(
                "not a preset; one of: {}",
                tower_webhook::Scheme::PRESETS.join(", ")
            )
        })
}
