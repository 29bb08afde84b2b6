//! What the `receiver` and `send` examples share: the scheme named by `WEBHOOK_SCHEME`, the
//! development keys used when `WEBHOOK_SECRET` is unset, the public URL of URL-signed schemes
//! and Meta's verify token.

#![allow(dead_code)] // each example uses its part

use tower_webhook::Scheme;

/// The schemes `WEBHOOK_SCHEME` may name.
pub(crate) const SCHEMES: &str = "sotion (default), sota, github, standard, standard-v1a, stripe, \
    slack, shopify, woocommerce, discord, twilio, sendgrid, square, zoom, meta, paddle, linear, \
    twitch, graph";

/// The scheme named by `WEBHOOK_SCHEME` (default `sotion`).
pub(crate) fn scheme_from_env() -> Result<Scheme, String> {
    let name = std::env::var("WEBHOOK_SCHEME").unwrap_or_else(|_| "sotion".to_owned());
    Scheme::preset(&name).ok_or(format!("WEBHOOK_SCHEME={name} is not one of: {SCHEMES}"))
}

/// The scheme's short name, as `WEBHOOK_SCHEME` writes it.
pub(crate) fn short_name(scheme: &Scheme) -> &str {
    match scheme.name() {
        "standard-webhooks" => "standard",
        "standard-webhooks-v1a" => "standard-v1a",
        "microsoft-graph" => "graph",
        other => other,
    }
}

/// The development key pair of the asymmetric schemes (for local use only): the private key
/// `send` signs with, and the public key the receiver verifies with, written as each sender
/// writes its keys. Ed25519: the seed `dev only: do not use in producti` (32 bytes); P-256: a
/// key generated once for this demo.
fn dev_key_pair(short_name: &str) -> Option<(&'static str, &'static str)> {
    Some(match short_name {
        "discord" => (
            "646576206f6e6c793a20646f206e6f742075736520696e2070726f6475637469",
            "733a99c387d58ada1ee4b54e540293ea37141381d14ff341cbabee985e3db8bf",
        ),
        "standard-v1a" => (
            "whsk_ZGV2IG9ubHk6IGRvIG5vdCB1c2UgaW4gcHJvZHVjdGk=",
            "whpk_czqZw4fVitoe5LVOVAKT6jcUE4HRT/NBy6vumF49uL8=",
        ),
        "sendgrid" => (
            "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgaSFs83OW5LPULNcKtHr8bhmmeLaqL0JFyzIhQxmohTChRANCAARzNZu/xtCfuQ3if/AghUPfPhKzChJBLWpjPEnVwmo/Z+OXeSrATNb4QIwnBgKw+EUGzk74nxhKNME5AQxTCCGr",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEczWbv8bQn7kN4n/wIIVD3z4SswoSQS1qYzxJ1cJqP2fjl3kqwEzW+ECMJwYCsPhFBs5O+J8YSjTBOQEMUwghqw==",
        ),
        _ => return None,
    })
}

/// The verifying key's text from `WEBHOOK_SECRET` (the shared secret, or the sender's public
/// key for Discord, Standard Webhooks `v1a` and SendGrid), or the development one for the
/// scheme (for local use only), and whether it is the development one. The scheme decodes it
/// (`scheme.secret(text)`, or the layer builder's `with_secret(text)`).
pub(crate) fn secret_from_env(scheme: &Scheme) -> (String, Option<&'static str>) {
    if let Ok(text) = std::env::var("WEBHOOK_SECRET") {
        return (text, None);
    }
    let short = short_name(scheme);
    let dev = match dev_key_pair(short) {
        Some((_, public)) => public,
        // Standard Webhooks secrets are base64 after `whsec_`; the others are used as is.
        None if short == "standard" => "whsec_ZGV2X29ubHlfZG9fbm90X3VzZV9pbl9wcm9kdWN0aW9u",
        None => "whsec_dev_only_do_not_use_in_production",
    };
    (dev.to_owned(), Some(dev))
}

/// The text of the key `send` signs with: the shared secret for an HMAC scheme; for an
/// asymmetric one `WEBHOOK_SIGNING_KEY` (the private key), or the development private key when
/// `WEBHOOK_SECRET` is unset too.
pub(crate) fn signing_key_from_env(scheme: &Scheme) -> Result<String, String> {
    let short = short_name(scheme);
    let Some((dev_private, _)) = dev_key_pair(short) else {
        return Ok(secret_from_env(scheme).0);
    };
    if let Ok(text) = std::env::var("WEBHOOK_SIGNING_KEY") {
        return Ok(text);
    }
    if std::env::var_os("WEBHOOK_SECRET").is_some() {
        return Err(format!(
            "WEBHOOK_SECRET holds {short}'s public key, which verifies but cannot sign: set \
             WEBHOOK_SIGNING_KEY to the matching private key (or unset both to use the \
             development key pair)"
        ));
    }
    Ok(dev_private.to_owned())
}

/// The URL senders call, from `WEBHOOK_PUBLIC_URL` (default: `http://<addr>/webhooks`, the
/// receiver's own address).
pub(crate) fn public_url_from_env(addr: &str) -> String {
    std::env::var("WEBHOOK_PUBLIC_URL").unwrap_or_else(|_| format!("http://{addr}/webhooks"))
}

/// Meta's verify token, from `WEBHOOK_VERIFY_TOKEN`, or the development one, and whether it
/// is the development one.
pub(crate) fn verify_token_from_env() -> (String, Option<&'static str>) {
    const DEV: &str = "dev_only_verify_token";
    match std::env::var("WEBHOOK_VERIFY_TOKEN") {
        Ok(token) => (token, None),
        Err(_) => (DEV.to_owned(), Some(DEV)),
    }
}
