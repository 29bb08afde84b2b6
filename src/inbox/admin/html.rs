//! HTML written by hand: every value goes through [`Html::text`], which escapes it, so that a
//! stored value (an event name, a header, a body: text a sender chose) is only ever text.

use std::fmt::Write as _;

use axum_core::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

/// The page's policy: no script at all, styles only inline, forms only to this origin, never
/// in a frame.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The page's style sheet.
const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;\
text-align:left;vertical-align:top}th{background:#f4f4f4}pre{background:#f8f8f8;padding:.5em;\
overflow:auto;max-height:40em;white-space:pre-wrap;word-break:break-all}\
.dead{color:#b00}.done{color:#070}.retrying{color:#a60}form.inline{display:inline}\
.notice{background:#eef;padding:.5em}a{color:#036}";

/// An HTML document being written.
#[derive(Debug, Default)]
pub(super) struct Html(String);

impl Html {
    /// A page titled `title` (escaped), with the style sheet, open at `<body>`.
    pub(super) fn page(title: &str) -> Self {
        let mut html = Self::default();
        html.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>")
            .text(title)
            .raw("</title><style>")
            .raw(STYLE)
            .raw("</style></head><body>");
        html
    }

    /// Markup, as is: only ever literals of this module's callers.
    pub(super) fn raw(&mut self, markup: &str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// Text, escaped for an element's content and for a quoted attribute value alike.
    pub(super) fn text(&mut self, text: &str) -> &mut Self {
        for c in text.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c => self.0.push(c),
            }
        }
        self
    }

    /// A number.
    pub(super) fn number(&mut self, number: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, "{number}");
        self
    }

    /// The document, closed, as a `status` answer.
    pub(super) fn into_response(mut self, status: StatusCode) -> Response {
        self.raw("</body></html>");
        (
            status,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                ),
            ],
            self.0,
        )
            .into_response()
    }
}

/// `text` cut to at most `max` bytes on a character boundary, and whether it was cut.
pub(super) fn truncate(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// A lag in milliseconds for a person: `850 ms`, `12.5 s`, `7 min`, `3 h 20 min`.
pub(super) fn lag(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=119_999 => format!("{}.{} s", ms / 1_000, ms % 1_000 / 100),
        120_000..=7_199_999 => format!("{} min", ms / 60_000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        let mut html = Html::default();
        html.text(r#"<script>alert("x")</script> & 'y'"#);
        assert_eq!(
            html.0,
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), ("h", true));
        assert_eq!(truncate("héllo", 3), ("hé", true));
        assert_eq!(truncate("hello", 9), ("hello", false));
    }

    #[test]
    fn lags_read_as_a_person_would_say_them() {
        assert_eq!(lag(0), "0 ms");
        assert_eq!(lag(12_500), "12.5 s");
        assert_eq!(lag(420_000), "7 min");
        assert_eq!(lag(12_000_000), "3 h 20 min");
    }
}
