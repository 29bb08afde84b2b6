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
/// from one sent once.
#[derive(Debug)]
pub(crate) struct Headers<'h>(&'h HeaderMap);

impl<'h> Headers<'h> {
    pub(crate) fn new(map: &'h HeaderMap) -> Self {
        Self(map)
    }

    /// The value(s) of `name`.
    pub(crate) fn single(&self, name: &HeaderName) -> Single<'h> {
        let mut found = self.0.get_all(name).iter();
        match (found.next(), found.next()) {
            (None, _) => Single::None,
            (Some(value), None) => Single::One(value),
            (Some(_), Some(_)) => Single::Many,
        }
    }

    /// Every value of `name`, in the order received.
    pub(crate) fn all(&self, name: &HeaderName) -> impl Iterator<Item = &'h HeaderValue> {
        self.0.get_all(name).iter()
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
}
