//! Where the layer reads the time, so tests can set it.

use std::time::SystemTime;

/// The time source of the freshness checks. Implemented for closures `Fn() -> SystemTime`, so a
/// test can pin the clock; the default is [`SystemClock`].
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_webhook::{Scheme, WebhookLayer};
///
/// let fixed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_649_367_553);
/// let layer = WebhookLayer::builder(Scheme::standard_webhooks())
///     .with_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
///     .with_clock(move || fixed)
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F> Clock for F
where
    F: Fn() -> SystemTime + Send + Sync + 'static,
{
    fn now(&self) -> SystemTime {
        self()
    }
}
