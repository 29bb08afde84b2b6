//! What the `receiver` and `send` examples share: the scheme named by `WEBHOOK_SCHEME` and the
//! development secrets used when `WEBHOOK_SECRET` is unset.

use tower_webhook::{Scheme, Secret};

/// The schemes `WEBHOOK_SCHEME` may name.
pub(crate) const SCHEMES: &str = "sotion (default), sota, github, standard, stripe, slack";

/// The scheme named by `WEBHOOK_SCHEME` (default `sotion`).
pub(crate) fn scheme_from_env() -> Result<Scheme, String> {
    let name = std::env::var("WEBHOOK_SCHEME").unwrap_or_else(|_| "sotion".to_owned());
    Scheme::preset(&name).ok_or(format!("WEBHOOK_SCHEME={name} is not one of: {SCHEMES}"))
}

/// The secret from `WEBHOOK_SECRET`, or the development secret for the scheme (for local use
/// only), and whether it is the development one.
pub(crate) fn secret_from_env(scheme: &Scheme) -> Result<(Secret, Option<&'static str>), String> {
    if let Ok(text) = std::env::var("WEBHOOK_SECRET") {
        return scheme
            .secret(&text)
            .map(|secret| (secret, None))
            .map_err(|e| format!("WEBHOOK_SECRET: {e}"));
    }
    // Standard Webhooks secrets are base64 after `whsec_`; the others are used as is.
    let dev = if scheme.name() == "standard-webhooks" {
        "whsec_ZGV2X29ubHlfZG9fbm90X3VzZV9pbl9wcm9kdWN0aW9u"
    } else {
        "whsec_dev_only_do_not_use_in_production"
    };
    let secret = scheme.secret(dev).map_err(|e| e.to_string())?;
    Ok((secret, Some(dev)))
}
