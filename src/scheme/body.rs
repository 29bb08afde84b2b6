//! How a sender writes its bodies ([`BodyForm`]), which of them a scheme reads, and how the
//! event's JSON is read from a verified body of each form.
//!
//! The signature is always checked over the raw bytes received; only then is the event read,
//! from the body itself (JSON) or from the form it encodes. The form is told by the request's
//! `Content-Type` alone, the same way in the layer and in an inbox worker that rebuilds a
//! stored delivery (the inbox stores the raw bytes and the `Content-Type`).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};

use super::headers::{Headers, Single};
use super::spec::Scheme;
use crate::diagnose::Reason;
use crate::error::{Rejection, RejectionKind};

/// One way a sender writes its bodies, told apart by the request's `Content-Type`.
///
/// A scheme lists the forms its sender uses
/// ([`SchemeBuilder::with_body_forms`](super::SchemeBuilder::with_body_forms); the presets
/// read JSON, and GitHub and Slack forms too); a delivery in any other is refused with
/// `415 unsupported_media_type` after its signature verified, never acknowledged unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyForm {
    /// `application/json`, or any `application/<name>+json` (parameters such as `charset`
    /// aside); also a body sent without `Content-Type`. The body is the event's JSON.
    Json,
    /// `application/x-www-form-urlencoded`. A form whose only parameter is `payload` carries
    /// the event's JSON in it (GitHub's `form` content type, Slack's interactivity); any other
    /// form is read as a JSON object of its parameters (Slack's slash commands, Twilio), each
    /// value a string, a parameter sent more than once an array of its values in order.
    Form,
}

/// The forms a scheme reads when it says nothing else: JSON only.
pub(crate) const JSON_ONLY: Cow<'static, [BodyForm]> = Cow::Borrowed(&[BodyForm::Json]);
/// JSON, and forms (GitHub, Slack).
pub(crate) const JSON_OR_FORM: Cow<'static, [BodyForm]> =
    Cow::Borrowed(&[BodyForm::Json, BodyForm::Form]);

/// The form-encoded parameter that carries a whole JSON event (GitHub, Slack interactivity).
const PAYLOAD: &str = "payload";

/// The longest media type a [`Reason`] keeps, for the operator's log line.
const MAX_SHOWN_TYPE: usize = 64;

impl BodyForm {
    /// The form a `Content-Type` value names, `None` for any other media type.
    pub(crate) fn of_content_type(value: Option<&HeaderValue>) -> Option<Self> {
        let Some(value) = value else {
            return Some(Self::Json);
        };
        let media = value.to_str().ok()?;
        let media = media.split(';').next().unwrap_or_default().trim();
        let json = media.eq_ignore_ascii_case("application/json")
            || media.split_once('/').is_some_and(|(kind, subtype)| {
                kind.eq_ignore_ascii_case("application")
                    && subtype.len() > 5
                    && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json")
            });
        if json {
            Some(Self::Json)
        } else if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Some(Self::Form)
        } else {
            None
        }
    }

    /// The event's JSON in a verified body of this form: the body itself, the `payload`
    /// parameter of a form that has only that one, or a form's parameters as a JSON object.
    /// Never fails: a form decodes leniently, as browsers and the senders' own libraries
    /// decode it (a `%` not followed by two hex digits is kept as it is, bytes that are not
    /// UTF-8 become U+FFFD); whether the result is JSON is the reader's to check.
    pub(crate) fn event_json(self, body: &Bytes) -> Bytes {
        match self {
            Self::Json => body.clone(),
            Self::Form => form_json(body),
        }
    }
}

impl Scheme {
    /// The forms this scheme reads.
    #[must_use]
    pub fn body_forms(&self) -> &[BodyForm] {
        &self.bodies
    }

    /// The form of this request's body, when this scheme reads it; otherwise
    /// `415 unsupported_media_type`, with the reason for the operator.
    pub(crate) fn body_form(&self, headers: &Headers<'_>) -> Result<BodyForm, Rejection> {
        let (form, found) = match headers.single(&CONTENT_TYPE) {
            Single::Many => {
                return Err(
                    unsupported(&self.bodies).with_reason(Reason::RepeatedHeader(CONTENT_TYPE))
                )
            }
            Single::None => (Some(BodyForm::Json), None),
            Single::One(value) => (BodyForm::of_content_type(Some(value)), Some(value)),
        };
        match form {
            Some(form) if self.bodies.contains(&form) => Ok(form),
            _ => Err(
                unsupported(&self.bodies).with_reason(Reason::UnsupportedMediaType {
                    found: found.map(shown_type),
                    reads: self.bodies.to_vec(),
                }),
            ),
        }
    }
}

/// The `415` answer for a scheme reading `forms`: its message names what the sender should send.
fn unsupported(forms: &[BodyForm]) -> Rejection {
    let message = match (
        forms.contains(&BodyForm::Json),
        forms.contains(&BodyForm::Form),
    ) {
        (true, true) => {
            "this receiver reads bodies sent as application/json or \
             application/x-www-form-urlencoded"
        }
        (false, true) => "this receiver reads bodies sent as application/x-www-form-urlencoded",
        _ => "this receiver reads bodies sent as application/json",
    };
    Rejection::new(RejectionKind::UnsupportedMediaType, message)
}

/// A request's media type as a log line may show it: its first 64 visible ASCII characters.
fn shown_type(value: &HeaderValue) -> String {
    value
        .as_bytes()
        .iter()
        .take(MAX_SHOWN_TYPE)
        .map(|&byte| {
            if byte.is_ascii_graphic() || byte == b' ' {
                char::from(byte)
            } else {
                '?'
            }
        })
        .collect()
}

/// The event's JSON in a form body (see [`BodyForm::Form`]).
fn form_json(body: &[u8]) -> Bytes {
    let parameters: Vec<(String, String)> = parameters(body).collect();
    if let [(name, value)] = parameters.as_slice() {
        if name == PAYLOAD {
            return Bytes::from(value.clone().into_bytes());
        }
    }
    let mut object = serde_json::Map::with_capacity(parameters.len());
    for (name, value) in parameters {
        match object.get_mut(&name) {
            None => {
                object.insert(name, serde_json::Value::String(value));
            }
            Some(serde_json::Value::Array(values)) => values.push(value.into()),
            Some(first) => {
                let first = first.take();
                object.insert(name, serde_json::Value::Array(vec![first, value.into()]));
            }
        }
    }
    // A map of strings always serializes.
    Bytes::from(serde_json::to_vec(&object).unwrap_or_default())
}

/// The `name=value` pairs of a form body, decoded; empty pairs (`a=1&&b=2`) are skipped and a
/// pair without `=` has an empty value, as the WHATWG URL standard parses forms. (A scheme that
/// signs a form's parameters, Twilio's, reads them with this too.)
pub(crate) fn parameters(body: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    body.split(|&byte| byte == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&byte| byte == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            (decode(name), decode(value))
        })
}

/// One form-encoded name or value: `+` is a space, `%XX` a byte; a `%` without two hex
/// digits after it is kept; bytes that are not UTF-8 become U+FFFD.
fn decode(text: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => match (
                tail.first().copied().and_then(hex),
                tail.get(1).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    bytes.push(high << 4 | low);
                    rest = &tail[2..];
                }
                _ => bytes.push(b'%'),
            },
            other => bytes.push(other),
        }
    }
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

fn hex(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &str) -> serde_json::Value {
        serde_json::from_slice(&BodyForm::Form.event_json(&Bytes::from(body.to_owned()))).unwrap()
    }

    #[test]
    fn content_types_name_their_forms() {
        let form =
            |value: &'static str| BodyForm::of_content_type(Some(&HeaderValue::from_static(value)));
        assert_eq!(BodyForm::of_content_type(None), Some(BodyForm::Json));
        for json in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.github+json",
            "application/cloudevents+json; charset=UTF-8",
        ] {
            assert_eq!(form(json), Some(BodyForm::Json), "{json}");
        }
        for forms in [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-8",
        ] {
            assert_eq!(form(forms), Some(BodyForm::Form), "{forms}");
        }
        for other in [
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/+json",
            "text/json+",
            "",
        ] {
            assert_eq!(form(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_lone_payload_parameter_is_the_events_json() {
        let body = "payload=%7B%22action%22%3A%22opened%22%2C%22n%22%3A+1%7D";
        assert_eq!(json(body), serde_json::json!({"action": "opened", "n": 1}));
    }

    #[test]
    fn other_forms_are_an_object_of_their_parameters() {
        assert_eq!(
            json("command=%2Fweather&text=94070+now&user_name=Steve&empty=&bare&&"),
            serde_json::json!({
                "command": "/weather",
                "text": "94070 now",
                "user_name": "Steve",
                "empty": "",
                "bare": "",
            })
        );
        // A `payload` among other parameters is one parameter like any other.
        assert_eq!(
            json("payload=x&To=%2B1"),
            serde_json::json!({"payload": "x", "To": "+1"})
        );
        // Repeated parameters: an array of the values, in order.
        assert_eq!(
            json("a=1&b=2&a=3&a=4"),
            serde_json::json!({"a": ["1", "3", "4"], "b": "2"})
        );
        assert_eq!(json(""), serde_json::json!({}));
    }

    #[test]
    fn decoding_is_lenient_as_browsers_are() {
        assert_eq!(decode(b"100%25+sure"), "100% sure");
        assert_eq!(decode(b"%zz%4"), "%zz%4");
        assert_eq!(decode(b"%C3%A9t%C3%A9"), "été");
        assert_eq!(decode(b"%FF"), "\u{fffd}");
    }
}
