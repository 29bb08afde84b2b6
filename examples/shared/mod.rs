//! What the `receiver` and `send` examples share: the scheme named by `WEBHOOK_SCHEME` and the
//! development secrets used when `WEBHOOK_SECRET` is unset.

use tower_webhook::Scheme;

/// The schemes `WEBHOOK_SCHEME` may name.
pub(crate) const SCHEMES: &str = "sotion (default), sota, github, standard, stripe, slack";

/// The scheme named by `WEBHOOK_SCHEME` (default `sotion`).
pub(crate) fn scheme_from_env() -> Result<Scheme, String> {
    let name = std::env::var("WEBHOOK_SCHEME").unwrap_or_else(|_| "sotion".to_owned());
    Scheme::preset(&name).ok_or(format!("WEBHOOK_SCHEME={name} is not one of: {SCHEMES}"))
}

/// The secret's text from `WEBHOOK_SECRET`, or the development secret for the scheme (for
/// local use only), and whether it is the development one. The scheme decodes it
/// (`scheme.secret(text)`, or the layer builder's `with_secret(text)`).
pub(crate) fn secret_from_env(scheme: &Scheme) -> (String, Option<&'static str>) {
    if let Ok(text) = std::env::var("WEBHOOK_SECRET") {
        return (text, None);
    }
    // Standard Webhooks secrets are base64 after `whsec_`; the others are used as is.
    let dev = if scheme.name() == "standard-webhooks" {
        "whsec_ZGV2X29ubHlfZG9fbm90X3VzZV9pbl9wcm9kdWN0aW9u"
    } else {
        "whsec_dev_only_do_not_use_in_production"
    };
    (dev.to_owned(), Some(dev))
}
