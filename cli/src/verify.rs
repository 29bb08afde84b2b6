//! `tower-webhook verify`: a captured request checked offline with the library's own
//! verification pipeline (`tower_webhook::verify`), and the layer's diagnostics
//! (`error::Reason`) when it is refused.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;
use tower_webhook::time::format_description::well_known::Rfc3339;
use tower_webhook::time::OffsetDateTime;
use tower_webhook::{verify, Scheme, Secrets};

use crate::args::VerifyArgs;
use crate::exit::{self, Exit};
use crate::output::{self, json_line};
use crate::request::{self, Captured};

/// `verify --json`.
#[derive(Debug, Serialize)]
struct Verdict {
    /// Whether the request verified.
    verified: bool,
    /// The scheme's name.
    scheme: String,
    /// Verified: the event id.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// Verified: the event type.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    /// Verified: the scope (Sotion's `siteId`).
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// Verified: the signed timestamp (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<String>,
    /// Refused: the code the layer answers with (`signature_mismatch`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    /// Refused: the HTTP status the layer answers with.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    /// Refused: the answer's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
    /// Refused: the operator's reason code (`missing_header`, `body_changed`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// Refused: the reason's hint.
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

/// Runs `verify`.
pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<Exit> {
    let scheme = Scheme::preset(&args.scheme)
        .ok_or_else(|| exit::usage(format!("--scheme {}: not a preset", args.scheme)))?;
    let captured = read(args)?;
    let secret = scheme
        .secret(&args.secret)
        .map_err(|error| exit::usage(format!("--secret: {error}")))?;
    let secrets = Secrets::new(secret);
    let now = match &args.at {
        Some(text) => SystemTime::from(
            OffsetDateTime::parse(text, &Rfc3339)
                .map_err(|error| exit::usage(format!("--at {text:?}: {error}")))?,
        ),
        None => SystemTime::now(),
    };
    let result = if scheme.signs_url() {
        let url = url_of(args, &captured).ok_or_else(|| {
            exit::usage(
                "this scheme signs the URL the sender called: give it with --url \
                 (https://example.com/webhooks)",
            )
        })?;
        verify::verify_with_url(
            &scheme,
            &secrets,
            &url,
            &captured.headers,
            &captured.body,
            now,
        )
    } else {
        verify::verify(&scheme, &secrets, &captured.headers, &captured.body, now)
    };
    let verdict = match &result {
        Ok(meta) => Verdict {
            verified: true,
            scheme: meta.scheme().to_owned(),
            id: Some(meta.id().to_owned()),
            event: meta.event().map(str::to_owned),
            scope: meta.scope().map(str::to_owned),
            timestamp: meta.timestamp().and_then(|at| at.format(&Rfc3339).ok()),
            error: None,
            status: None,
            message: None,
            reason: None,
            hint: None,
        },
        Err(rejection) => Verdict {
            verified: false,
            scheme: scheme.name().to_owned(),
            id: None,
            event: None,
            scope: None,
            timestamp: None,
            error: Some(rejection.kind().code()),
            status: Some(rejection.status().as_u16()),
            message: Some(rejection.message()),
            reason: rejection.reason().map(tower_webhook::error::Reason::code),
            hint: rejection.reason().map(ToString::to_string),
        },
    };
    if args.json {
        json_line(&verdict)?;
    } else if verdict.verified {
        let mut text = format!(
            "verified: {} delivery {}",
            verdict.scheme,
            verdict.id.as_deref().unwrap_or_default()
        );
        for (name, value) in [
            ("event", &verdict.event),
            ("scope", &verdict.scope),
            ("signed at", &verdict.timestamp),
        ] {
            if let Some(value) = value {
                let _ = write!(text, "\n  {name}: {value}");
            }
        }
        output::line(&text);
    } else {
        let mut text = format!(
            "refused: {} ({} {})",
            verdict.error.unwrap_or_default(),
            verdict.status.unwrap_or_default(),
            verdict.message.unwrap_or_default()
        );
        match (&verdict.reason, &verdict.hint) {
            (Some(reason), Some(hint)) => {
                let _ = write!(text, "\n  reason: {reason}\n  hint: {hint}");
            }
            _ => text.push_str("\n  reason: none more precise than the refusal"),
        }
        output::line(&text);
    }
    Ok(if verdict.verified {
        Exit::Ok
    } else {
        Exit::Refused
    })
}

/// The captured request `args` name.
fn read(args: &VerifyArgs) -> anyhow::Result<Captured> {
    // A file that cannot be read, or is not what its flag says, is a usage error (exit 2).
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|error| exit::usage(format!("reading {}: {error}", path.display())))
    };
    let captured = match (&args.request, &args.headers, &args.body) {
        (Some(path), _, _) => request::parse_request(&read(path)?).map_err(|error| {
            exit::usage(format!(
                "{} is not an HTTP request: {error:#}",
                path.display()
            ))
        }),
        (None, Some(headers), Some(body)) => request::parse_headers(&read(headers)?, read(body)?)
            .map_err(|error| {
                exit::usage(format!(
                    "{} is not a list of headers: {error:#}",
                    headers.display()
                ))
            }),
        _ => {
            return Err(exit::usage(
                "give --request FILE, or --headers FILE and --body FILE",
            ))
        }
    };
    captured.map_err(|error| exit::usage(format!("{error:#}")))
}

/// The URL the sender called: `--url`, or `https://<Host><target>` of the request.
fn url_of(args: &VerifyArgs, captured: &Captured) -> Option<String> {
    if let Some(url) = &args.url {
        return Some(url.clone());
    }
    let host = captured.headers.get(http::header::HOST)?.to_str().ok()?;
    let target = captured.target.as_deref()?;
    Some(format!("https://{host}{target}"))
}
