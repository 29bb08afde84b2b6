//! `application/x-www-form-urlencoded` pairs, as a URL's query or a form body carries them
//! (`name=value&...`, `+` for a space, `%XX` escapes): a few lines rather than a dependency.

use std::borrow::Cow;

/// The decoded `(name, value)` pairs of `input`, in order; an entry without `=` has an empty
/// value, empty entries are skipped. Bytes that are not UTF-8 once decoded become U+FFFD, as
/// browsers and the senders' libraries decode them.
pub(crate) fn pairs(input: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    input
        .split(|&b| b == b'&')
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (name, value) = match entry.iter().position(|&b| b == b'=') {
                Some(at) => (&entry[..at], &entry[at + 1..]),
                None => (entry, &[][..]),
            };
            (decode(name), decode(value))
        })
}

/// The decoded value of the first parameter called `name` in `query`.
pub(crate) fn param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    pairs(query.as_bytes())
        .find(|(found, _)| found == name)
        .map(|(_, value)| value)
}

fn decode(text: &[u8]) -> Cow<'_, str> {
    if !text.iter().any(|&b| b == b'+' || b == b'%') {
        return String::from_utf8_lossy(text);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => out.push(b' '),
            b'%' => match (
                tail.first().copied().and_then(hex),
                tail.get(1).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    rest = &tail[2..];
                }
                // A `%` not followed by two hex digits stands for itself.
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_as_forms_are_written() {
        let found: Vec<(String, String)> = pairs(b"a=1&b=x+y%21&&c&d=%zz%4&e=%C3%A9%FF")
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            found,
            [
                ("a", "1"),
                ("b", "x y!"),
                ("c", ""),
                ("d", "%zz%4"),
                ("e", "é\u{fffd}")
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert_eq!(
            param(
                "hub.mode=subscribe&hub.challenge=1158201444",
                "hub.challenge"
            )
            .as_deref(),
            Some("1158201444")
        );
        assert_eq!(param("a=1", "b"), None);
    }
}
