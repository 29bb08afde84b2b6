//! `tower-webhook sign`, `send` and `verify`: a signed delivery verifies offline for each kind
//! of sender (HMAC, timestamped, URL-signed, asymmetric), and a refused one is explained with
//! the layer's diagnostics.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;

use serde_json::Value;
use support::{cli, Run};

const URL: &str = "http://127.0.0.1:3000/webhooks";

/// Each scheme tried: its name, the key `sign` takes, the key `verify` takes (the same for an
/// HMAC scheme; the private and the public key of a development pair for an asymmetric one).
const SCHEMES: &[(&str, &str, &str)] = &[
    ("sotion", "whsec_test", "whsec_test"),
    ("github", "gh-secret", "gh-secret"),
    ("stripe", "whsec_stripe", "whsec_stripe"),
    (
        "standard",
        "whsec_ZGV2X29ubHlfZG9fbm90X3VzZV9pbl9wcm9kdWN0aW9u",
        "whsec_ZGV2X29ubHlfZG9fbm90X3VzZV9pbl9wcm9kdWN0aW9u",
    ),
    ("slack", "slack-secret", "slack-secret"),
    ("shopify", "shop-secret", "shop-secret"),
    ("paddle", "pdl-secret", "pdl-secret"),
    ("twitch", "twitch-secret", "twitch-secret"),
    ("square", "sq-secret", "sq-secret"),
    ("twilio", "tw-secret", "tw-secret"),
    (
        "discord",
        "646576206f6e6c793a20646f206e6f742075736520696e2070726f6475637469",
        "733a99c387d58ada1ee4b54e540293ea37141381d14ff341cbabee985e3db8bf",
    ),
    (
        "standard-v1a",
        "whsk_ZGV2IG9ubHk6IGRvIG5vdCB1c2UgaW4gcHJvZHVjdGk=",
        "whpk_czqZw4fVitoe5LVOVAKT6jcUE4HRT/NBy6vumF49uL8=",
    ),
    (
        "sendgrid",
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgaSFs83OW5LPULNcKtHr8bhmmeLaqL0JFyzIhQxmohTChRANCAARzNZu/xtCfuQ3if/AghUPfPhKzChJBLWpjPEnVwmo/Z+OXeSrATNb4QIwnBgKw+EUGzk74nxhKNME5AQxTCCGr",
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEczWbv8bQn7kN4n/wIIVD3z4SswoSQS1qYzxJ1cJqP2fjl3kqwEzW+ECMJwYCsPhFBs5O+J8YSjTBOQEMUwghqw==",
    ),
];

/// `sign --json`'s object.
fn sign(scheme: &str, key: &str, extra: &[&str]) -> Value {
    let mut args = vec!["sign", "--scheme", scheme, "--secret", key, "--json"];
    args.extend_from_slice(extra);
    let run = cli(&args).expect_code(0);
    run.json_lines().remove(0)
}

/// A signed delivery's headers, `Name: value` and `end` each.
fn header_lines(signed: &Value, end: &str) -> String {
    let mut lines = String::new();
    for pair in signed["headers"].as_array().unwrap() {
        let (name, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        write!(lines, "{name}: {value}{end}").unwrap();
    }
    lines
}

/// Writes a signed delivery's headers (`Name: value` lines) and body to `dir`.
fn write_capture(dir: &Path, signed: &Value, body: &[u8]) -> (String, String) {
    let headers = header_lines(signed, "\n");
    let headers_path = dir.join("headers.txt");
    let body_path = dir.join("body");
    std::fs::write(&headers_path, headers).unwrap();
    std::fs::write(&body_path, body).unwrap();
    (
        headers_path.display().to_string(),
        body_path.display().to_string(),
    )
}

/// `verify --json` of the capture in `dir`.
fn verify(scheme: &str, key: &str, files: &(String, String), extra: &[&str]) -> (Run, Value) {
    let mut args = vec![
        "verify",
        "--scheme",
        scheme,
        "--secret",
        key,
        "--headers",
        &files.0,
        "--body",
        &files.1,
        "--url",
        URL,
        "--json",
    ];
    args.extend_from_slice(extra);
    let run = cli(&args);
    let verdict = run.json_lines().remove(0);
    (run, verdict)
}

#[test]
fn what_sign_prints_verifies_for_every_kind_of_sender() {
    let dir = tempfile::tempdir().unwrap();
    for &(scheme, signing_key, verifying_key) in SCHEMES {
        let signed = sign(
            scheme,
            signing_key,
            &["--event", "thing.happened", "--id", "evt_1"],
        );
        assert_eq!(signed["url"], URL);
        let files = write_capture(
            dir.path(),
            &signed,
            signed["body"].as_str().unwrap().as_bytes(),
        );
        let (run, verdict) = verify(scheme, verifying_key, &files, &[]);
        assert_eq!(run.code, 0, "{scheme}: {run:?}");
        assert_eq!(verdict["verified"], true, "{scheme}");
        assert_eq!(
            verdict["id"], signed["id"],
            "{scheme}: the id sign reported"
        );
    }
}

#[test]
fn sign_prints_a_curl_command_and_signs_a_body_of_yours() {
    let run = cli(&[
        "sign",
        "--secret",
        "whsec_test",
        "--event",
        "member.created",
    ])
    .expect_code(0);
    assert!(
        run.stdout
            .starts_with("curl -sS -X POST 'http://127.0.0.1:3000/webhooks'"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("-H 'x-webhook-signature: sha256="),
        "{run:?}"
    );
    assert!(run.stdout.contains("--data-binary '{"), "{run:?}");

    // A body from a file is signed as it is, with its own id and event.
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"id":"evt_file","type":"member.deleted","timestamp":"2026-03-28T12:00:00Z","version":"1","siteId":"s","data":{"it's":"quoted"}}"#;
    let path = dir.path().join("event.json");
    std::fs::write(&path, body).unwrap();
    let signed = sign("sotion", "whsec_test", &["--data", path.to_str().unwrap()]);
    assert_eq!(signed["body"], body);
    assert_eq!(
        (&signed["id"], &signed["event"]),
        (&"evt_file".into(), &"member.deleted".into())
    );
    let curl = cli(&[
        "sign",
        "--secret",
        "whsec_test",
        "--data",
        path.to_str().unwrap(),
    ])
    .expect_code(0);
    assert!(curl.stdout.contains(r#""it'\''s":"quoted""#), "{curl:?}");

    // Refusals of the command line: exit 2.
    cli(&["sign", "--scheme", "nope", "--secret", "x"]).expect_code(2);
    cli(&["sign"]).expect_code(2); // no --secret, no WEBHOOK_SECRET
    cli(&[
        "sign", "--scheme", "stripe", "--secret", "x", "--action", "opened",
    ])
    .expect_code(2);
    // A public key cannot sign (SendGrid's DER public key; an Ed25519 public key is 32 bytes
    // like a private seed, and cannot be told apart).
    cli(&["sign", "--scheme", "sendgrid", "--secret", SCHEMES[12].2]).expect_code(2);
}

#[test]
fn verify_explains_a_tampered_body_a_missing_header_and_a_stale_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let signed = sign("sotion", "whsec_test", &["--id", "evt_1"]);
    let body = signed["body"].as_str().unwrap();

    // The body re-encoded (pretty-printed) on its way: the layer's `body_changed`.
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(body).unwrap()).unwrap();
    let files = write_capture(dir.path(), &signed, pretty.as_bytes());
    let (run, verdict) = verify("sotion", "whsec_test", &files, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(verdict["verified"], false);
    assert_eq!(verdict["error"], "signature_mismatch");
    assert_eq!(verdict["status"], 401);
    assert_eq!(verdict["reason"], "body_changed", "{verdict}");
    assert!(verdict["hint"].as_str().unwrap().contains("raw bytes"));

    // Another body: no secret signs it.
    let forged = body.replace("Ada", "Eve");
    let files = write_capture(dir.path(), &signed, forged.as_bytes());
    let (run, verdict) = verify("sotion", "whsec_test", &files, &[]);
    assert_eq!(
        (run.code, &verdict["reason"]),
        (1, &"no_secret_matches".into()),
        "{run:?}"
    );

    // The signature header left out: named, in the human output too.
    let mut without = signed.clone();
    without["headers"]
        .as_array_mut()
        .unwrap()
        .retain(|pair| pair[0] != "x-webhook-signature");
    let files = write_capture(dir.path(), &without, body.as_bytes());
    let (_, verdict) = verify("sotion", "whsec_test", &files, &[]);
    assert_eq!(verdict["reason"], "missing_header");
    assert!(verdict["hint"]
        .as_str()
        .unwrap()
        .contains("x-webhook-signature"));
    let human = cli(&[
        "verify",
        "--secret",
        "whsec_test",
        "--headers",
        &files.0,
        "--body",
        &files.1,
    ])
    .expect_code(1);
    assert!(
        human.stdout.contains("refused: missing_signature"),
        "{human:?}"
    );
    assert!(human.stdout.contains("reason: missing_header"), "{human:?}");

    // A timestamped sender's capture checked an hour later: the skew, in seconds.
    let stripe = sign("stripe", "whsec_s", &["--id", "evt_2"]);
    let files = write_capture(
        dir.path(),
        &stripe,
        stripe["body"].as_str().unwrap().as_bytes(),
    );
    let later =
        tower_webhook::time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(3_600);
    let later = later
        .format(&tower_webhook::time::format_description::well_known::Rfc3339)
        .unwrap();
    let (run, verdict) = verify("stripe", "whsec_s", &files, &["--at", &later]);
    assert_eq!(
        (run.code, &verdict["reason"]),
        (1, &"timestamp_skew".into()),
        "{run:?}"
    );
}

#[test]
fn verify_reads_a_raw_request_file() {
    let dir = tempfile::tempdir().unwrap();
    let signed = sign("github", "gh-secret", &["--event", "push", "--id", "d-1"]);
    let body = signed["body"].as_str().unwrap();
    let raw = format!(
        "POST /webhooks HTTP/1.1\r\nHost: example.com\r\n{}Content-Length: {}\r\n\r\n{body}",
        header_lines(&signed, "\r\n"),
        body.len()
    );
    let path = dir.path().join("request.http");
    std::fs::write(&path, &raw).unwrap();
    let run = cli(&[
        "verify",
        "--scheme",
        "github",
        "--secret",
        "gh-secret",
        "--request",
        path.to_str().unwrap(),
    ])
    .expect_code(0);
    assert!(
        run.stdout.starts_with("verified: github delivery d-1"),
        "{run:?}"
    );
    assert!(run.stdout.contains("event: push"), "{run:?}");
    // The wrong secret: refused, exit 1.
    cli(&[
        "verify",
        "--scheme",
        "github",
        "--secret",
        "other",
        "--request",
        path.to_str().unwrap(),
    ])
    .expect_code(1);
    // Not a request: exit 2.
    std::fs::write(&path, "hello").unwrap();
    cli(&[
        "verify",
        "--secret",
        "x",
        "--request",
        path.to_str().unwrap(),
    ])
    .expect_code(2);
}

/// Answers one request on a free port with `status` and hands back what was received.
fn one_shot_receiver(status: u16) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        // Up to the headers' end, then Content-Length bytes.
        loop {
            let n = stream.read(&mut buffer).unwrap();
            received.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&received).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse().unwrap());
                if received.len() >= end + 4 + length || n == 0 {
                    break;
                }
            }
        }
        let answer = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: 7\r\nx-webhook-duplicate: true\r\nconnection: close\r\n\r\nhandled"
        );
        stream.write_all(answer.as_bytes()).unwrap();
        received
    });
    (port, handle)
}

#[test]
fn send_posts_a_delivery_that_verifies_and_prints_the_answer() {
    let (port, receiver) = one_shot_receiver(200);
    let url = format!("http://127.0.0.1:{port}/hooks");
    let run = cli(&[
        "send",
        "--scheme",
        "stripe",
        "--secret",
        "whsec_s",
        "--event",
        "invoice.paid",
        "--id",
        "evt_9",
        "--url",
        &url,
        "--json",
    ])
    .expect_code(0);
    let answer = run.json_lines().remove(0);
    assert_eq!(
        (
            &answer["status"],
            &answer["id"],
            &answer["duplicate"],
            &answer["body"]
        ),
        (
            &200.into(),
            &"evt_9".into(),
            &true.into(),
            &"handled".into()
        )
    );
    // What the receiver got verifies as a Stripe delivery.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("received.http");
    std::fs::write(&path, receiver.join().unwrap()).unwrap();
    let verified = cli(&[
        "verify",
        "--scheme",
        "stripe",
        "--secret",
        "whsec_s",
        "--request",
        path.to_str().unwrap(),
        "--json",
    ])
    .expect_code(0);
    assert_eq!(verified.json_lines()[0]["event"], "invoice.paid");

    // Refused by the receiver: exit 1; nobody listening: exit 3; https: usage (exit 2).
    let (port, receiver) = one_shot_receiver(401);
    let refused = cli(&[
        "send",
        "--secret",
        "x",
        "--url",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stdout.contains("401"), "{refused:?}");
    receiver.join().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cli(&[
        "send",
        "--secret",
        "x",
        "--url",
        &format!("http://127.0.0.1:{closed}/"),
    ])
    .expect_code(3);
    cli(&["send", "--secret", "x", "--url", "https://example.com/"]).expect_code(2);
}

/// A file named on the command line that cannot be read is a usage error (exit 2), as the
/// README and `--help` say: `sign`/`send --data`, `verify --request`, `--headers`/`--body`; so
/// is a file that is not an HTTP request.
#[test]
fn a_file_that_cannot_be_read_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    cli(&["sign", "--secret", "whsec_x", "--data", missing]).expect_code(2);
    cli(&["verify", "--secret", "whsec_x", "--request", missing]).expect_code(2);
    cli(&[
        "verify",
        "--secret",
        "whsec_x",
        "--headers",
        missing,
        "--body",
        missing,
    ])
    .expect_code(2);
    let garbage = dir.path().join("garbage.http");
    std::fs::write(&garbage, b"\x00\x01 not a request").unwrap();
    cli(&[
        "verify",
        "--secret",
        "whsec_x",
        "--request",
        garbage.to_str().unwrap(),
    ])
    .expect_code(2);
}
