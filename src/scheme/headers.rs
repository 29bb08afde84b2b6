//! The request headers a scheme reads, found in one pass.
//!
//! A scheme reads up to eight custom headers (signature, timestamp, id, event, scope,
//! delivery, and Sotion's id and event). Looking each up in the `HeaderMap` hashes its name
//! byte by byte and compares it; a request has only a handful of headers, so one pass over them,
//! comparing names (lengths first), finds them all for a fraction of the cost.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::source::Source;
use super::spec::Scheme;

/// Most headers a scheme reads (one per field of [`Scheme`] that can name a header).
const MAX_NAMES: usize = 8;

/// Up to this many header values, a name is looked up by comparing names rather than hashing.
const LINEAR_LOOKUP_MAX: usize = 16;

/// Every value of `name` in `map`. A request has a handful of headers: comparing their names
/// (lengths first) costs less than hashing a custom name byte by byte, as the map's lookup does;
/// a large map is looked up.
pub(crate) fn values<'h, 'n>(
    map: &'h HeaderMap,
    name: &'n HeaderName,
) -> impl Iterator<Item = &'h HeaderValue> + 'n
where
    'h: 'n,
{
    let small = map.len() <= LINEAR_LOOKUP_MAX;
    let compared = small
        .then(|| map.iter().filter(move |(header, _)| *header == name))
        .into_iter()
        .flatten()
        .map(|(_, value)| value);
    let hashed = (!small)
        .then(|| map.get_all(name).iter())
        .into_iter()
        .flatten();
    compared.chain(hashed)
}

/// What a header name carried: nothing, one value, or several (which every reader refuses).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Single<'h> {
    None,
    One(&'h HeaderValue),
    Many,
}

/// The request's values of the headers its scheme reads.
#[derive(Debug)]
pub(crate) struct Headers<'h> {
    map: &'h HeaderMap,
    names: [Option<&'h HeaderName>; MAX_NAMES],
    values: [Single<'h>; MAX_NAMES],
}

impl<'h> Headers<'h> {
    /// Headers looked up one by one when asked for: cheaper than a pass over all of them when
    /// only one or two are read (the signature check alone).
    pub(crate) fn lookup(map: &'h HeaderMap) -> Self {
        Self {
            map,
            names: [None; MAX_NAMES],
            values: [Single::None; MAX_NAMES],
        }
    }

    /// The value(s) of `name`, which must be one of the scheme's headers.
    pub(crate) fn single(&self, name: &HeaderName) -> Single<'h> {
        if let Some(index) = self.names.iter().position(|wanted| *wanted == Some(name)) {
            return self.values[index];
        }
        // Not found in a pass (a `lookup`, or a header the scheme does not name): look it up.
        let mut found = values(self.map, name);
        match (found.next(), found.next()) {
            (None, _) => Single::None,
            (Some(value), None) => Single::One(value),
            (Some(_), Some(_)) => Single::Many,
        }
    }

    /// Every value of `name`, in the order received.
    pub(crate) fn all<'n>(&self, name: &'n HeaderName) -> impl Iterator<Item = &'h HeaderValue> + 'n
    where
        'h: 'n,
    {
        values(self.map, name)
    }

    /// The value of `name` if it was sent exactly once.
    pub(crate) fn one(&self, name: &HeaderName) -> Option<&'h HeaderValue> {
        match self.single(name) {
            Single::One(value) => Some(value),
            Single::None | Single::Many => None,
        }
    }
}

impl Scheme {
    /// Finds the values of every header this scheme reads, in one pass over `map` (for the
    /// layer, which reads them all).
    pub(crate) fn headers<'h>(&'h self, map: &'h HeaderMap) -> Headers<'h> {
        let mut names = [None; MAX_NAMES];
        let mut count = 0;
        let sources = [
            Some(&self.id),
            self.event.as_ref(),
            self.scope.as_ref(),
            self.timestamp.as_ref().map(|(source, _)| source),
        ];
        let headers = sources
            .into_iter()
            .flatten()
            .filter_map(|source| match source {
                Source::Header(name) => Some(name),
                _ => None,
            });
        let envelope = self
            .envelope
            .iter()
            .flat_map(|envelope| [&envelope.id_header, &envelope.event_header]);
        for name in [&self.signature_header]
            .into_iter()
            .chain(headers)
            .chain(self.delivery.as_ref())
            .chain(envelope)
        {
            if count < MAX_NAMES && !names[..count].contains(&Some(name)) {
                names[count] = Some(name);
                count += 1;
            }
        }
        let mut values = [Single::None; MAX_NAMES];
        for (name, value) in map {
            if let Some(index) = names[..count].iter().position(|n| *n == Some(name)) {
                values[index] = match values[index] {
                    Single::None => Single::One(value),
                    Single::One(_) | Single::Many => Single::Many,
                };
            }
        }
        Headers { map, names, values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_header_once_and_tells_repeated_ones() {
        let scheme = Scheme::sotion();
        let mut map = HeaderMap::new();
        map.insert("x-webhook-id", HeaderValue::from_static("evt_1"));
        map.append("x-webhook-event", HeaderValue::from_static("a"));
        map.append("x-webhook-event", HeaderValue::from_static("b"));
        map.insert("x-other", HeaderValue::from_static("x"));
        let headers = scheme.headers(&map);
        assert_eq!(
            headers.one(&HeaderName::from_static("x-webhook-id")),
            Some(&HeaderValue::from_static("evt_1"))
        );
        assert!(matches!(
            headers.single(&HeaderName::from_static("x-webhook-event")),
            Single::Many
        ));
        assert!(matches!(
            headers.single(&HeaderName::from_static("x-webhook-signature")),
            Single::None
        ));
        // A name the scheme does not read is still answered, from the map.
        assert!(headers.one(&HeaderName::from_static("x-other")).is_some());
    }

    /// A map of `count` headers no scheme reads.
    fn unrelated_headers(count: usize) -> HeaderMap {
        let mut map = HeaderMap::new();
        for n in 0..count {
            map.insert(
                HeaderName::from_bytes(format!("x-filler-{n}").as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
        }
        map
    }

    #[test]
    fn a_lookup_answers_the_same_in_small_and_large_header_maps() {
        let scheme = Scheme::sotion();
        let signature = HeaderName::from_static("x-webhook-signature");
        for filler in [0, LINEAR_LOOKUP_MAX + 4] {
            let mut map = unrelated_headers(filler);
            assert!(matches!(
                Headers::lookup(&map).single(&signature),
                Single::None
            ));
            map.insert(signature.clone(), HeaderValue::from_static("sha256=00"));
            assert_eq!(
                Headers::lookup(&map).one(&signature),
                Some(&HeaderValue::from_static("sha256=00"))
            );
            assert!(scheme.headers(&map).one(&signature).is_some());
            map.append(signature.clone(), HeaderValue::from_static("sha256=01"));
            assert!(matches!(
                Headers::lookup(&map).single(&signature),
                Single::Many
            ));
            assert!(matches!(
                scheme.headers(&map).single(&signature),
                Single::Many
            ));
        }
    }

    #[test]
    fn content_encoding_is_checked_in_small_and_large_header_maps() {
        for filler in [0, LINEAR_LOOKUP_MAX + 4] {
            let mut map = unrelated_headers(filler);
            assert!(Scheme::check_content_encoding(&map).is_ok());
            map.insert(
                http::header::CONTENT_ENCODING,
                HeaderValue::from_static("Identity"),
            );
            assert!(Scheme::check_content_encoding(&map).is_ok());
            map.append(
                http::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
            assert!(Scheme::check_content_encoding(&map).is_err());
        }
    }

    #[test]
    fn every_preset_fits_in_the_fixed_set() {
        for scheme in [
            Scheme::sotion(),
            Scheme::sota(),
            Scheme::github(),
            Scheme::standard_webhooks(),
            Scheme::stripe(),
            Scheme::slack(),
        ] {
            let map = HeaderMap::new();
            let headers = scheme.headers(&map);
            let named = headers.names.iter().flatten().count();
            // Fewer than the cap: no name was left to the slow path.
            assert!((1..MAX_NAMES).contains(&named), "{}", scheme.name());
        }
    }
}
