use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, RedisWrite, Script};

use super::store::{IdempotencyKey, IdempotencyStore, Reservation, StoreError, StoreFuture, Token};
use crate::inbox::error::{backend, timed};

/// The default prefix of every key a [`RedisStore`] writes.
const DEFAULT_PREFIX: &str = "tower-webhook:";
/// The default time a [`RedisStore`] call may take before the layer answers `503`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// How many undos of unanswered reserves (see [`Unanswered`]) one store keeps going at once;
/// past that, a reserve that goes unanswered is left to expire with its lease.
const MAX_PENDING_UNDOS: usize = 10_000;
/// The first pause between two tries of an undo; it doubles up to [`UNDO_MAX_BACKOFF`].
const UNDO_FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest pause between two tries of an undo.
const UNDO_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The value a completed key holds (tokens are 32 hex digits, so never equal to it).
const DONE: &str = "done";

/// `SET key token NX PX lease`; when the key exists, say whether it is done or in flight, in
/// the same atomic step. 1 = new, 2 = done, 0 = in flight.
const RESERVE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[3] then return 2 end
return 0
";

/// Compare-and-set: mark done while `token` holds the key, or nobody does (its lease ran out
/// and nobody took it over: the handler did succeed, and recording it prevents a re-run).
/// Another token's reservation, or `done`, is left as it is.
const COMPLETE: &str = r"
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] or not held then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Compare-and-delete: release only while `token` holds the key.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// The Redis idempotency store (feature `redis`): one store shared by every replica of an app.
///
/// - `reserve` is `SET key token NX PX lease` (in a script that, when the key exists, also says
///   whether it is done or in flight, atomically);
/// - `complete` is a compare-and-set script: the key becomes `done` for the TTL while the
///   caller's token still holds it, or nobody does (its lease ran out, not taken over);
/// - `release` is a compare-and-delete script.
///
/// Leases and TTLs longer than about 100 years are clamped to that (Redis cannot store longer
/// expiries).
///
/// A reserve that was sent but not answered (it timed out, the connection failed under it, or
/// the request was dropped while it waited) may still run in Redis later, for example once a
/// stall ends: the store then undoes it in the background, with a compare-and-delete of the
/// reservation's token retried until Redis answers or the lease has run out. So a stall does
/// not leave an orphan reservation that would answer `409` to every retry for a whole lease.
///
/// A replica that dies mid-handler leaves its reservation behind; it expires with its lease and
/// the sender's next retry is processed by whichever replica gets it. While Redis cannot be
/// reached, every call fails within the timeout (default 2 s) and the layer answers `503` with
/// `Retry-After`; the connection manager reconnects by itself when Redis is back.
///
/// ```no_run
/// use tower_webhook::idempotency::RedisStore;
/// use tower_webhook::{Scheme, WebhookLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?.with_prefix("myapp:webhooks:");
/// let layer = WebhookLayer::builder(Scheme::sotion())
///     .with_secret("whsec_...")
///     .with_store(store)
///     .build()?;
/// # let _ = layer; Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    /// How many undos of unanswered reserves are running (shared by the store's clones).
    undos: Arc<AtomicUsize>,
}

/// One of the store's scripts: sent as `EVALSHA` with its SHA-1, computed once per process; as
/// `EVAL` with its source when Redis does not know it (see [`RedisStore::run`]).
#[derive(Clone, Copy)]
enum Lua {
    Reserve,
    Complete,
    Release,
}

impl Lua {
    fn source(self) -> &'static str {
        match self {
            Self::Reserve => RESERVE,
            Self::Complete => COMPLETE,
            Self::Release => RELEASE,
        }
    }

    fn sha(self) -> &'static str {
        static SHAS: LazyLock<[String; 3]> = LazyLock::new(|| {
            [RESERVE, COMPLETE, RELEASE].map(|source| Script::new(source).get_hash().to_owned())
        });
        &SHAS[self as usize]
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis server at `url` (`redis://host:port/db`).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the URL is invalid or the server cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(backend)?;
        let connection = ConnectionManager::new_with_config(client, connection_config())
            .await
            .map_err(backend)?;
        Ok(Self::from_connection_manager(connection))
    }

    /// A store that connects on first use, so an app can start while Redis is down (it answers
    /// `503` until Redis is reachable).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the URL is invalid.
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(backend)?;
        let connection = ConnectionManager::new_lazy_with_config(client, connection_config())
            .map_err(backend)?;
        Ok(Self::from_connection_manager(connection))
    }

    /// A store over a connection manager you configured yourself. Its response timeout, if
    /// any, applies besides the store's [`with_timeout`](Self::with_timeout): each call then
    /// arms two timers (the store's own connections have none).
    #[must_use]
    pub fn from_connection_manager(connection: ConnectionManager) -> Self {
        Self {
            connection,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            undos: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The prefix of every key (default `tower-webhook:`): give each app its own.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one call may take before it counts as a failure (default 2 s). It is the
    /// call's only limit: the connections [`connect`](Self::connect) and
    /// [`connect_lazy`](Self::connect_lazy) make have no response timeout of their own (one
    /// given to [`from_connection_manager`](Self::from_connection_manager) applies as well).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The Redis key of an idempotency key.
    #[must_use]
    pub fn redis_key(&self, key: &IdempotencyKey) -> String {
        format!("{}{}", self.prefix, key.to_hex())
    }

    /// The command that runs `script` on `key` with `token` (and, for a reserve or a complete,
    /// the expiry and [`DONE`]): `EVALSHA sha 1 key token [px done]`, or `EVAL source ...` when
    /// `eval`. Built in one buffer: the key, the token and the expiry are written into it, not
    /// made as strings first.
    fn command(
        &self,
        script: Lua,
        eval: bool,
        key: &IdempotencyKey,
        token: &Token,
        expiry: Option<Duration>,
    ) -> Cmd {
        let body = if eval { script.source() } else { script.sha() };
        let mut command = Cmd::with_capacity(
            7,
            7 + body.len() + 1 + self.prefix.len() + 64 + 32 + 20 + DONE.len(),
        );
        command
            .arg(if eval { "EVAL" } else { "EVALSHA" })
            .arg(body)
            .arg(1);
        let mut hex = [0_u8; 64];
        {
            use std::io::Write as _;
            let mut arg = command.writer_for_next_arg();
            // Writing into the command's `Vec` cannot fail.
            let _ = arg.write_all(self.prefix.as_bytes());
            let _ = arg.write_all(key.encode_hex(&mut hex));
        }
        command.arg(token.encode_hex(&mut hex[..32]));
        if let Some(expiry) = expiry {
            command.arg(px(expiry)).arg(DONE);
        }
        command
    }

    /// Runs `script` within the store's timeout: `EVALSHA`, and, if Redis lost its script
    /// cache (restarted, failed over: `NOSCRIPT`, nothing ran), the same as `EVAL`, one command
    /// that also loads the script again.
    async fn run(
        &self,
        script: Lua,
        key: &IdempotencyKey,
        token: &Token,
        expiry: Option<Duration>,
    ) -> Result<i64, StoreError> {
        let mut connection = self.connection.clone();
        let call = async {
            let command = self.command(script, false, key, token, expiry);
            match query(&mut connection, &command).await {
                Err(error)
                    if error.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    let command = self.command(script, true, key, token, expiry);
                    query(&mut connection, &command).await
                }
                answer => answer,
            }
        };
        // The only timer of the call: the connection has no response timeout of its own (see
        // `connection_config`).
        timed(self.timeout, async { call.await.map_err(backend) }).await
    }
}

/// Sends `command` and reads its integer answer. As `Cmd::query_async`, but through the
/// connection manager's own `send_packed_command`: `query_async` goes through the
/// `ConnectionLike` trait, which boxes that call's future (1,336 bytes, past the size glibc
/// serves from its per-thread cache) on every call; here it lives in the store's own future.
async fn query(connection: &mut ConnectionManager, command: &Cmd) -> redis::RedisResult<i64> {
    let answer = connection.send_packed_command(command).await?;
    Ok(redis::from_redis_value(answer.extract_error()?)?)
}

/// A reserve sent to Redis and not answered yet. Dropped while still armed (the call timed out,
/// failed without an answer, or its future was dropped), it undoes the reservation it may have
/// made: see [`RedisStore::undo_reserve`].
struct Unanswered<'a> {
    store: &'a RedisStore,
    key: &'a IdempotencyKey,
    token: Token,
    lease: Duration,
    armed: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.store.undo_reserve(self.key, self.token, self.lease);
        }
    }
}

impl RedisStore {
    /// The `release` script sent as `EVAL`, in one command: `EVALSHA` would be answered
    /// `NOSCRIPT` when Redis lost its script cache (restarted, failed over) and then sent again,
    /// after commands sent in between, such as the retry of the very delivery being undone.
    async fn undo(&self, key: &IdempotencyKey, token: &Token) -> Result<i64, StoreError> {
        let command = self.command(Lua::Release, true, key, token, None);
        let mut connection = self.connection.clone();
        timed(self.timeout, async {
            query(&mut connection, &command).await.map_err(backend)
        })
        .await
    }

    /// Undoes a reserve that may have run without our knowing: a compare-and-delete of `token`
    /// (the `release` script, see [`RedisStore::undo`]), on a task of its own, tried again with a growing pause until
    /// Redis answers or `lease` has passed (the key has expired by then anyway). Harmless when
    /// the reserve never ran, or found the key done or in flight: the key does not hold
    /// `token`, so nothing changes.
    ///
    /// Order: the undo goes out on the same multiplexed connection as the reserve, after it, and
    /// Redis runs one connection's commands in order, so a reserve delayed by a stall runs first
    /// and is then undone. If the connection was lost meanwhile, the undo goes out on a new one;
    /// a reserve still in the old connection's buffers could then, rarely, run after the undo,
    /// and is left to expire with its lease, as before.
    ///
    /// Never panics: without a Tokio runtime, or with [`MAX_PENDING_UNDOS`] undos already
    /// running, it logs and leaves the reservation to its lease.
    fn undo_reserve(&self, key: &IdempotencyKey, token: Token, lease: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            crate::observe::error!(
                key = %key.to_hex(),
                "no Tokio runtime to undo an unanswered reserve on; \
                 the event is retried once its lease runs out"
            );
            return;
        };
        let Some(pending) = PendingUndo::start(&self.undos) else {
            crate::observe::warn!(
                key = %key.to_hex(),
                "too many unanswered reserves to undo; the event is retried once its lease runs out"
            );
            return;
        };
        let store = self.clone();
        let key = *key;
        // Clamped as in Redis (and so that adding it to now cannot overflow).
        let until = tokio::time::Instant::now() + lease.min(MAX_EXPIRY);
        runtime.spawn(async move {
            let _pending = pending;
            let mut backoff = UNDO_FIRST_BACKOFF;
            loop {
                match store.undo(&key, &token).await {
                    Ok(_) => return,
                    Err(error) if tokio::time::Instant::now() + backoff >= until => {
                        crate::observe::warn!(
                            key = %key.to_hex(),
                            %error,
                            "could not undo an unanswered reserve; the lease has run out by now"
                        );
                        return;
                    }
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(UNDO_MAX_BACKOFF);
                    }
                }
            }
        });
    }
}

/// One running undo, counted in the store's `undos` while it lives.
struct PendingUndo(Arc<AtomicUsize>);

impl PendingUndo {
    fn start(undos: &Arc<AtomicUsize>) -> Option<Self> {
        undos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_PENDING_UNDOS).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(undos)))
    }
}

impl Drop for PendingUndo {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a call that failed with `error` may still have run in Redis: it was sent and no
/// answer came back (a timeout, a connection lost under it). An error Redis answered, or a
/// connection refused before anything was sent, says it did not.
fn may_have_run(error: &StoreError) -> bool {
    let StoreError::Backend(source) = error else {
        return true;
    };
    let Some(error) = source.downcast_ref::<redis::RedisError>() else {
        return true;
    };
    let answered = matches!(
        error.kind(),
        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
    );
    !answered && !error.is_connection_refusal()
}

fn connection_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        // No response timeout: each call has the store's own (`with_timeout`), its only timer.
        .set_response_timeout(None)
        .set_number_of_retries(1)
}

/// The longest lease or TTL a [`RedisStore`] asks Redis for, about 100 years: longer ones are
/// clamped to it (Redis refuses an expiry past `i64::MAX` milliseconds from now, and would
/// fail every call).
const MAX_EXPIRY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Milliseconds for `PX`, at least 1 (Redis refuses 0) and at most [`MAX_EXPIRY`].
fn px(duration: Duration) -> u64 {
    // At most about 3.2 × 10¹² after the clamp: it fits.
    u64::try_from(duration.min(MAX_EXPIRY).as_millis().max(1)).unwrap_or(u64::MAX)
}

impl IdempotencyStore for RedisStore {
    fn reserve<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        lease: Duration,
    ) -> StoreFuture<'a, Reservation> {
        StoreFuture::boxed(async move {
            let token = Token::random();
            // Until Redis answers, the reserve may still run later: armed, this undoes it if
            // the call fails without an answer or this future is dropped.
            let mut unanswered = Unanswered {
                store: self,
                key,
                token,
                lease,
                armed: true,
            };
            let answer = self.run(Lua::Reserve, key, &token, Some(lease)).await;
            unanswered.armed = answer.as_ref().is_err_and(may_have_run);
            drop(unanswered);
            Ok(match answer? {
                1 => Reservation::New(token),
                2 => Reservation::Done,
                _ => Reservation::InFlight,
            })
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        token: &'a Token,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        StoreFuture::boxed(async move {
            let answer = self.run(Lua::Complete, key, token, Some(ttl)).await?;
            Ok(answer == 1)
        })
    }

    fn release<'a>(&'a self, key: &'a IdempotencyKey, token: &'a Token) -> StoreFuture<'a, bool> {
        StoreFuture::boxed(async move {
            let answer = self.run(Lua::Release, key, token, None).await?;
            Ok(answer == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn px_is_at_least_one_millisecond_and_at_most_about_a_century() {
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_secs(2)), 2000);
        assert_eq!(u128::from(px(Duration::MAX)), MAX_EXPIRY.as_millis());
        assert!(i64::try_from(MAX_EXPIRY.as_millis()).is_ok_and(|max| max < i64::MAX / 2));
    }

    fn words(command: &Cmd) -> Vec<String> {
        command
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => "<not a simple argument>".to_owned(),
            })
            .collect()
    }

    #[tokio::test]
    async fn commands_carry_the_key_token_and_expiry_written_in_place() {
        // Lazy: nothing is connected, only commands are built.
        let store = RedisStore::connect_lazy("redis://127.0.0.1:1/")
            .unwrap()
            .with_prefix("app:");
        let key = IdempotencyKey::new("sotion", "site", "evt_1");
        let token = Token::random();
        let reserve = store.command(
            Lua::Reserve,
            false,
            &key,
            &token,
            Some(Duration::from_secs(300)),
        );
        assert_eq!(
            words(&reserve),
            [
                "EVALSHA",
                Script::new(RESERVE).get_hash(),
                "1",
                &store.redis_key(&key),
                &token.to_hex(),
                "300000",
                DONE
            ]
        );
        let release = store.command(Lua::Release, true, &key, &token, None);
        assert_eq!(
            words(&release),
            [
                "EVAL",
                RELEASE,
                "1",
                &store.redis_key(&key),
                &token.to_hex()
            ]
        );
        assert_eq!(Lua::Complete.sha(), Script::new(COMPLETE).get_hash());
    }

    /// A `redis-server` on a free loopback port, killed on drop; `None` (skipped, loudly) when
    /// none is installed, except under `CI=true`.
    struct Server(std::process::Child, u16);

    impl Server {
        fn start() -> Option<Self> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_or(0, |address| address.port());
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
                    panic!("CI=true but redis-server could not be started: {error}")
                }
                Err(error) => {
                    eprintln!("SKIPPED: redis-server could not be started ({error})");
                    return None;
                }
            };
            let server = Self(child, port);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(server)
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/", self.1)
        }

        async fn command(&self, args: &[&str]) -> redis::Value {
            let client = Client::open(self.url()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            redis::cmd(args[0])
                .arg(&args[1..])
                .query_async(&mut connection)
                .await
                .unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test]
    async fn scripts_redis_does_not_know_are_sent_whole_and_cached_again() {
        let Some(server) = Server::start() else {
            return;
        };
        let store = RedisStore::connect(&server.url()).await.unwrap();
        let lease = Duration::from_secs(60);
        for round in 0..2 {
            // A fresh server knows no script; then Redis loses them (restart, failover).
            let key = IdempotencyKey::new("sotion", "site", &format!("evt_{round}"));
            let Reservation::New(token) = store.reserve(&key, lease).await.unwrap() else {
                panic!("a new key was not reserved");
            };
            assert_eq!(
                store.reserve(&key, lease).await.unwrap(),
                Reservation::InFlight
            );
            assert!(store.complete(&key, &token, lease).await.unwrap());
            assert_eq!(store.reserve(&key, lease).await.unwrap(), Reservation::Done);
            let other = IdempotencyKey::new("sotion", "site", &format!("evt_{round}_b"));
            let Reservation::New(token) = store.reserve(&other, lease).await.unwrap() else {
                panic!("a new key was not reserved");
            };
            assert!(store.release(&other, &token).await.unwrap());
            let cached = server
                .command(&[
                    "SCRIPT",
                    "EXISTS",
                    Lua::Reserve.sha(),
                    Lua::Complete.sha(),
                    Lua::Release.sha(),
                ])
                .await;
            assert_eq!(
                cached,
                redis::Value::Array(vec![redis::Value::Int(1); 3]),
                "the scripts were not cached by their first EVAL"
            );
            server.command(&["SCRIPT", "FLUSH"]).await;
        }
    }

    #[tokio::test]
    async fn a_call_slower_than_a_second_is_answered_within_the_stores_timeout() {
        let Some(server) = Server::start() else {
            return;
        };
        // The store's timeout is a call's only limit (the connection had one of 1 s of its
        // own, which failed such a call before the store's timeout).
        let store = RedisStore::connect(&server.url())
            .await
            .unwrap()
            .with_timeout(Duration::from_secs(5));
        let warm = IdempotencyKey::new("sotion", "site", "evt_warm");
        assert!(matches!(
            store.reserve(&warm, Duration::from_secs(60)).await,
            Ok(Reservation::New(_))
        ));
        server.command(&["CLIENT", "PAUSE", "1500", "WRITE"]).await;
        let key = IdempotencyKey::new("sotion", "site", "evt_slow");
        let answer = store.reserve(&key, Duration::from_secs(60)).await;
        assert!(
            matches!(answer, Ok(Reservation::New(_))),
            "a reserve answered after 1.5 s failed under a 5 s timeout: {answer:?}"
        );
    }
}
