//! The request headers a scheme reads, looked up in the request's `HeaderMap`.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// What a header name carried: nothing, one value, or several (which every reader refuses).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Single<'h> {
    None,
    One(&'h HeaderValue),
    Many,
}

/// A request's headers, as a scheme reads them: a header sent more than once is told apart
/// from one sent once, and a header absent under its name is read under its alias, if the
/// scheme has one (Svix's `svix-id` for `webhook-id`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Headers<'h> {
    map: &'h HeaderMap,
    aliases: &'h [(HeaderName, HeaderName)],
}

impl<'h> Headers<'h> {
    pub(crate) fn new(map: &'h HeaderMap) -> Self {
        Self { map, aliases: &[] }
    }

    /// The same headers, read with `aliases` (`(name, alias)` pairs).
    pub(crate) fn with_aliases(self, aliases: &'h [(HeaderName, HeaderName)]) -> Self {
        Self { aliases, ..self }
    }

    /// The name `name` was sent under: its own, or its alias when only that was sent.
    fn sent_as<'n>(&self, name: &'n HeaderName) -> &'n HeaderName
    where
        'h: 'n,
    {
        if self.map.contains_key(name) {
            return name;
        }
        self.aliases
            .iter()
            .find(|(canonical, alias)| canonical == name && self.map.contains_key(alias))
            .map_or(name, |(_, alias)| alias)
    }

    /// The value(s) of `name`.
    pub(crate) fn single(&self, name: &HeaderName) -> Single<'h> {
        let mut found = self.map.get_all(self.sent_as(name)).iter();
        match (found.next(), found.next()) {
            (None, _) => Single::None,
            (Some(value), None) => Single::One(value),
            (Some(_), Some(_)) => Single::Many,
        }
    }

    /// Every value of `name`, in the order received.
    pub(crate) fn all(&self, name: &HeaderName) -> impl Iterator<Item = &'h HeaderValue> {
        self.map.get_all(self.sent_as(name)).iter()
    }

    /// The value of `name` if it was sent exactly once.
    pub(crate) fn one(&self, name: &HeaderName) -> Option<&'h HeaderValue> {
        match self.single(name) {
            Single::One(value) => Some(value),
            Single::None | Single::Many => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_missing_a_single_and_a_repeated_header_apart() {
        let mut map = HeaderMap::new();
        map.insert("x-webhook-id", HeaderValue::from_static("evt_1"));
        map.append("x-webhook-event", HeaderValue::from_static("a"));
        map.append("x-webhook-event", HeaderValue::from_static("b"));
        let headers = Headers::new(&map);
        assert_eq!(
            headers.one(&HeaderName::from_static("x-webhook-id")),
            Some(&HeaderValue::from_static("evt_1"))
        );
        assert!(matches!(
            headers.single(&HeaderName::from_static("x-webhook-event")),
            Single::Many
        ));
        assert_eq!(
            headers
                .all(&HeaderName::from_static("x-webhook-event"))
                .count(),
            2
        );
        assert!(matches!(
            headers.single(&HeaderName::from_static("x-webhook-signature")),
            Single::None
        ));
    }

    #[test]
    fn reads_an_alias_only_when_the_name_itself_is_absent() {
        let aliases = [(
            HeaderName::from_static("webhook-id"),
            HeaderName::from_static("svix-id"),
        )];
        let mut map = HeaderMap::new();
        map.insert("svix-id", HeaderValue::from_static("msg_svix"));
        let headers = Headers::new(&map).with_aliases(&aliases);
        let id = HeaderName::from_static("webhook-id");
        assert_eq!(
            headers.one(&id),
            Some(&HeaderValue::from_static("msg_svix"))
        );
        map.insert("webhook-id", HeaderValue::from_static("msg_own"));
        let headers = Headers::new(&map).with_aliases(&aliases);
        assert_eq!(headers.one(&id), Some(&HeaderValue::from_static("msg_own")));
        // Without the scheme's aliases, the alias is just another header.
        map.remove("webhook-id");
        assert!(Headers::new(&map).one(&id).is_none());
    }
}
