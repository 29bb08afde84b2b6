//! Configuration that cannot be wrong silently: a layer's mistakes are `ConfigError`s when it is
//! built, and a layer given its scheme's secret text verifies that sender's real deliveries.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use common::{fixture_request, fixtures, meta_app, send};
use http::request::Parts;
use tower_webhook::scheme::SecretFormat;
use tower_webhook::{ConfigError, Scheme, Secret, Secrets, Tenant, WebhookLayer};

fn at(unix: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap())
}

fn no_tenant(_: &Parts) -> std::future::Ready<Result<Option<Tenant>, tower_webhook::ResolveError>> {
    std::future::ready(Ok(None))
}

#[tokio::test]
async fn a_standard_webhooks_layer_given_its_whsec_text_verifies_the_reference_signers_deliveries()
{
    let fixtures = fixtures(Some("standard"));
    assert!(!fixtures.is_empty());
    for fixture in &fixtures {
        // The secret exactly as the sender's dashboard shows it: the scheme decodes it.
        let now = fixture.timestamp;
        let layer = WebhookLayer::builder(Scheme::standard_webhooks())
            .with_secret(&fixture.secret)
            .with_clock(move || at(now));
        let (app, seen) = meta_app(layer, "/webhooks");
        let response = send(&app, fixture_request(fixture, fixture.body.as_bytes())).await;
        assert_eq!(response.status(), 200, "{} {}", fixture.library, fixture.id);
        let meta = seen.last_meta.lock().unwrap().clone().unwrap();
        assert_eq!(meta.id(), fixture.id);
    }
}

#[test]
fn the_0_1_mistake_a_raw_whsec_key_for_standard_webhooks_fails_to_build() {
    // `Secret::new` keys HMAC with the text's bytes; Standard Webhooks keys it with the base64
    // after `whsec_`. In 0.1 this compiled, then answered 401 to every genuine delivery.
    let fixture = &fixtures(Some("standard"))[0];
    let raw = Secret::new(&fixture.secret).unwrap();
    let built = WebhookLayer::builder(Scheme::standard_webhooks())
        .with_secrets(raw)
        .build();
    match built {
        Err(ConfigError::SecretFormatMismatch { expected, found }) => {
            assert_eq!(expected, SecretFormat::base64("whsec_"));
            assert_eq!(found, SecretFormat::Raw);
        }
        other => panic!("expected SecretFormatMismatch, got {other:?}"),
    }
    // And the reverse: a base64-decoded secret given to a scheme whose secrets are raw.
    let decoded = Scheme::standard_webhooks().secret(&fixture.secret).unwrap();
    assert!(matches!(
        WebhookLayer::builder(Scheme::stripe())
            .with_secrets(decoded.clone())
            .build(),
        Err(ConfigError::SecretFormatMismatch { .. })
    ));
    // Decoded by the scheme, the same secret builds.
    assert!(WebhookLayer::builder(Scheme::standard_webhooks())
        .with_secrets(decoded)
        .build()
        .is_ok());
}

#[test]
fn a_per_tenant_layer_given_static_secrets_fails_to_build() {
    for layer in [
        WebhookLayer::builder(Scheme::sotion())
            .with_secret("whsec_static")
            .with_resolver(no_tenant),
        WebhookLayer::builder(Scheme::sotion())
            .with_resolver(no_tenant)
            .with_secrets(Secrets::new(Secret::new("whsec_static").unwrap())),
    ] {
        assert!(matches!(
            layer.build(),
            Err(ConfigError::SecretsWithResolver)
        ));
    }
    assert!(WebhookLayer::builder(Scheme::sotion())
        .with_resolver(no_tenant)
        .build()
        .is_ok());
}

#[test]
fn a_layer_with_no_secret_and_no_resolver_fails_to_build() {
    assert!(matches!(
        WebhookLayer::builder(Scheme::github()).build(),
        Err(ConfigError::NoSecret)
    ));
}

#[test]
fn a_secret_the_scheme_cannot_decode_fails_with_its_cause() {
    let error = WebhookLayer::new(Scheme::standard_webhooks(), "whsec_not base64!").unwrap_err();
    assert!(matches!(error, ConfigError::InvalidSecretEncoding { .. }));
    assert!(error.source().is_some());
    assert!(matches!(
        WebhookLayer::new(Scheme::sotion(), ""),
        Err(ConfigError::EmptySecret)
    ));
}

#[test]
fn durations_that_cannot_work_fail_to_build_naming_their_option() {
    let sotion = || WebhookLayer::builder(Scheme::sotion()).with_secret("whsec_s");
    let too_long = Duration::from_secs(101 * 366 * 24 * 3600);
    for wrong in [Duration::ZERO, too_long] {
        assert!(matches!(
            sotion().with_body_timeout(wrong).build(),
            Err(ConfigError::InvalidDuration {
                option: "WebhookLayerBuilder::with_body_timeout"
            })
        ));
        assert!(matches!(
            sotion().with_resolver_timeout(wrong).build(),
            Err(ConfigError::InvalidDuration {
                option: "WebhookLayerBuilder::with_resolver_timeout"
            })
        ));
    }
    assert!(sotion()
        .with_body_timeout(Duration::from_secs(1))
        .without_body_timeout()
        .build()
        .is_ok());
}

#[test]
fn the_first_mistake_is_the_one_reported() {
    let built = WebhookLayer::builder(Scheme::standard_webhooks())
        .with_body_timeout(Duration::ZERO)
        .with_secret("whsec_not base64!")
        .with_resolver(no_tenant)
        .build();
    assert!(matches!(
        built,
        Err(ConfigError::InvalidDuration {
            option: "WebhookLayerBuilder::with_body_timeout"
        })
    ));
    // A mistake is reported even when a later option is right.
    let built = WebhookLayer::builder(Scheme::standard_webhooks())
        .with_secret("whsec_not base64!")
        .with_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .build();
    assert!(matches!(
        built,
        Err(ConfigError::InvalidSecretEncoding { .. })
    ));
}

#[test]
fn a_secret_text_with_whitespace_around_it_fails_to_build() {
    // A newline from an env file or a copied space would make every genuine delivery a 401.
    for text in ["whsec_abc\n", " whsec_abc", "whsec_abc\r\n", "whsec_abc\t"] {
        let built = WebhookLayer::new(Scheme::sotion(), text);
        assert!(
            matches!(built, Err(ConfigError::SecretWhitespace)),
            "{text:?}: {built:?}"
        );
    }
    // Inner spaces are the secret's own; the decoded escape hatch takes any bytes.
    assert!(WebhookLayer::new(Scheme::github(), "it's a secret").is_ok());
    let padded = Secret::new("padded secret ").unwrap();
    let layer = WebhookLayer::builder(Scheme::github()).with_secrets(padded);
    assert!(layer.build().is_ok());
}
