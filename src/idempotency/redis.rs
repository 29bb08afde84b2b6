use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use super::store::{IdempotencyKey, IdempotencyStore, Reservation, StoreError, StoreFuture, Token};

/// The default prefix of every key a [`RedisStore`] writes.
pub const REDIS_DEFAULT_PREFIX: &str = "tower-webhook:";
/// The default time a [`RedisStore`] call may take before the layer answers `503`.
pub const REDIS_DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The value a completed key holds (tokens are 32 hex digits, so never equal to it).
const DONE: &str = "done";

/// `SET key token NX PX lease`; when the key exists, say whether it is done or in flight, in
/// the same atomic step. 1 = new, 2 = done, 0 = in flight.
const RESERVE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[3] then return 2 end
return 0
";

/// Compare-and-set: mark done only while `token` holds the key.
const COMPLETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
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
/// - `complete` is a compare-and-set script: the key becomes `done` for the TTL only while the
///   caller's token still holds it;
/// - `release` is a compare-and-delete script.
///
/// A replica that dies mid-handler leaves its reservation behind; it expires with its lease and
/// the sender's next retry is processed by whichever replica gets it. While Redis cannot be
/// reached, every call fails within the timeout (default 2 s) and the layer answers `503` with
/// `Retry-After`; the connection manager reconnects by itself when Redis is back.
///
/// ```no_run
/// use tower_webhook::idempotency::RedisStore;
/// use tower_webhook::{Secret, WebhookLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?.with_prefix("myapp:webhooks:");
/// let layer = WebhookLayer::new(Secret::new("whsec_...")?).with_store(store);
/// # let _ = layer; Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    reserve: Script,
    complete: Script,
    release: Script,
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

    /// A store over a connection manager you configured yourself.
    #[must_use]
    pub fn from_connection_manager(connection: ConnectionManager) -> Self {
        Self {
            connection,
            prefix: REDIS_DEFAULT_PREFIX.to_owned(),
            timeout: REDIS_DEFAULT_TIMEOUT,
            reserve: Script::new(RESERVE),
            complete: Script::new(COMPLETE),
            release: Script::new(RELEASE),
        }
    }

    /// The prefix of every key (default `tower-webhook:`): give each app its own.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one call may take before it counts as a failure (default 2 s).
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

    async fn run(
        &self,
        script: &Script,
        key: &IdempotencyKey,
        args: &[&str],
    ) -> Result<i64, StoreError> {
        let mut invocation = script.key(self.redis_key(key));
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection)).await {
            Ok(result) => result.map_err(backend),
            Err(_) => Err(StoreError::Timeout),
        }
    }
}

fn connection_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
}

fn backend(error: redis::RedisError) -> StoreError {
    StoreError::Backend(Box::new(error))
}

/// Milliseconds for `PX`, at least 1 (Redis refuses 0).
fn px(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}

impl IdempotencyStore for RedisStore {
    fn reserve<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        lease: Duration,
    ) -> StoreFuture<'a, Reservation> {
        StoreFuture::boxed(async move {
            let token = Token::random();
            let answer = self
                .run(&self.reserve, key, &[&token.to_hex(), &px(lease), DONE])
                .await?;
            Ok(match answer {
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
            let answer = self
                .run(&self.complete, key, &[&token.to_hex(), &px(ttl), DONE])
                .await?;
            Ok(answer == 1)
        })
    }

    fn release<'a>(&'a self, key: &'a IdempotencyKey, token: &'a Token) -> StoreFuture<'a, bool> {
        StoreFuture::boxed(async move {
            let answer = self.run(&self.release, key, &[&token.to_hex()]).await?;
            Ok(answer == 1)
        })
    }
}
