//! [`RawObject`]: a JSON object whose values are kept as their raw JSON text.

use std::borrow::Cow;
use std::collections::btree_map::{self, BTreeMap};
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

/// A JSON object whose values are kept as their raw JSON text, exactly as sent: the `extra`
/// fields of Sotion's data types ([`MemberData::extra`](crate::envelope::MemberData::extra)),
/// the default `data` of an [`Envelope`](crate::Envelope), and a tolerant way to read any
/// sender's payload.
///
/// Any valid JSON value is kept, including what [`serde_json::Value`] cannot hold: a number
/// beyond `f64` (a 4,000-digit integer, `1e400`, `-0` stays `-0`), nesting deeper than
/// `serde_json`'s recursion limit of 128, a string with a lone surrogate escape (`"\ud800"`,
/// which JavaScript's `JSON.stringify` writes for a broken emoji). So reading a JSON object
/// into a `RawObject` never fails on its values; a value is interpreted only when it is asked
/// for, as the type the caller chooses, with [`get_as`](Self::get_as).
///
/// Field names are decoded: a name with a lone surrogate escape is read with `U+FFFD` in the
/// surrogate's place. Of a repeated name, the last value counts. Names are in sorted order (as
/// in a [`serde_json::Map`]); two objects are equal when they have the same names with the same
/// JSON text (`1.0` and `1.00` differ). It serializes back to the same object, each value's
/// text as it was sent.
///
/// `RawObject` reads from `serde_json` (`from_slice`, `from_str`, `from_reader`,
/// `from_value`): it relies on its raw-value support, which other formats do not have. For the
/// same reason it cannot be a `#[serde(flatten)]` field: serde buffers flattened fields as
/// values that lose the raw text (and refuse `1e400`). Read the payload a second time as a
/// `RawObject` instead, or only as one, taking each field with [`get_as`](Self::get_as).
///
/// ```
/// use serde_json::value::RawValue;
/// use tower_webhook::RawObject;
///
/// let data: RawObject =
///     serde_json::from_str(r#"{"plan":"pro","seats":3,"balance":1e400,"tags":["a"]}"#)?;
/// assert_eq!(data.get_as::<String>("plan")?, Some("pro".to_owned()));
/// assert_eq!(data.get_as::<u32>("seats")?, Some(3));
/// assert_eq!(data.get_as::<Vec<String>>("tags")?, Some(vec!["a".to_owned()]));
/// assert_eq!(data.get_as::<u32>("missing")?, None);
/// // Kept as sent, though no `f64` holds it: read it as text, or with a big-number type.
/// assert_eq!(data.get("balance").map(RawValue::get), Some("1e400"));
/// assert!(data.get_as::<f64>("balance").is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct RawObject {
    fields: BTreeMap<String, Box<RawValue>>,
}

impl RawObject {
    /// An empty object.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The raw JSON text of the field `name` (its [`get`](RawValue::get) is the text, as sent),
    /// or `None` when there is no such field.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.fields.get(name).map(AsRef::as_ref)
    }

    /// The field `name` read as `T`: `Ok(None)` when there is no such field, an error when its
    /// value is not a `T` (a string where a number is expected, a number out of `T`'s range,
    /// nesting deeper than 128 when `T` is [`serde_json::Value`], ...).
    ///
    /// A JSON `null` is a value: read it as an `Option<T>` to accept it. Read text as a `String`
    /// (or a `Cow<str>`): a borrowed `&str` fails on a string with escapes.
    ///
    /// # Errors
    /// When the field's JSON text does not deserialize into `T`.
    pub fn get_as<'a, T: Deserialize<'a>>(
        &'a self,
        name: &str,
    ) -> Result<Option<T>, serde_json::Error> {
        self.fields
            .get(name)
            .map(|raw| serde_json::from_str(raw.get()))
            .transpose()
    }

    /// Whether the object has a field `name`.
    #[must_use]
    pub fn contains_key(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }

    /// The number of fields.
    #[must_use]
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the object has no field.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The fields' names, in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// The fields, by name in sorted order, each with its raw JSON text.
    #[must_use]
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.fields.iter())
    }

    /// Sets the field `name` to `value` (make one with [`RawValue::from_string`] or
    /// [`serde_json::value::to_raw_value`]), returning the value it had.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: Box<RawValue>,
    ) -> Option<Box<RawValue>> {
        self.fields.insert(name.into(), value)
    }

    /// Removes the field `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Box<RawValue>> {
        self.fields.remove(name)
    }
}

impl fmt::Debug for RawObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.fields.iter().map(|(name, raw)| (name, raw.get())))
            .finish()
    }
}

impl PartialEq for RawObject {
    fn eq(&self, other: &Self) -> bool {
        self.fields.len() == other.fields.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((a, a_raw), (b, b_raw))| a == b && a_raw.get() == b_raw.get())
    }
}

impl Eq for RawObject {}

/// The fields of a [`RawObject`], by name in sorted order: see [`RawObject::iter`].
#[derive(Debug, Clone)]
pub struct Iter<'a>(btree_map::Iter<'a, String, Box<RawValue>>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a RawValue);

    fn next(&mut self) -> Option<Self::Item> {
        self.0
            .next()
            .map(|(name, raw)| (name.as_str(), raw.as_ref()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<'a> IntoIterator for &'a RawObject {
    type Item = (&'a str, &'a RawValue);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<N: Into<String>> FromIterator<(N, Box<RawValue>)> for RawObject {
    fn from_iter<I: IntoIterator<Item = (N, Box<RawValue>)>>(iter: I) -> Self {
        Self {
            fields: iter
                .into_iter()
                .map(|(name, raw)| (name.into(), raw))
                .collect(),
        }
    }
}

impl Serialize for RawObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (name, raw) in &self.fields {
            map.serialize_entry(name, raw)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;

        impl<'de> Visitor<'de> for Fields {
            type Value = RawObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut object = RawObject::new();
                while let Some(FieldName(name)) = map.next_key()? {
                    object.insert(name, map.next_value()?);
                }
                Ok(object)
            }
        }

        deserializer.deserialize_map(Fields)
    }
}

/// An object's field name, borrowed from the input when it has no escapes, and never refused:
/// a lone surrogate escape (`"\ud800"`) is read as `U+FFFD`.
pub(crate) struct FieldName<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;

        impl<'de> Visitor<'de> for Name {
            type Value = FieldName<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Borrowed(name)))
            }

            fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(name.to_owned())))
            }

            fn visit_string<E>(self, name: String) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(name)))
            }

            fn visit_borrowed_bytes<E>(self, name: &'de [u8]) -> Result<Self::Value, E> {
                Ok(FieldName(match std::str::from_utf8(name) {
                    Ok(name) => Cow::Borrowed(name),
                    Err(_) => Cow::Owned(wtf8_lossy(name)),
                }))
            }

            fn visit_bytes<E>(self, name: &[u8]) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(wtf8_lossy(name))))
            }
        }

        // As bytes: `serde_json` then undoes the escapes without refusing a lone surrogate
        // (written as WTF-8); other deserializers give the name as a string.
        deserializer.deserialize_bytes(Name)
    }
}

/// `bytes` (UTF-8, or WTF-8 as `serde_json` writes a lone surrogate escape) as a string, each
/// lone surrogate (or any other invalid sequence) replaced by `U+FFFD`.
fn wtf8_lossy(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                return text;
            }
            Err(error) => {
                let (valid, after) = rest.split_at(error.valid_up_to());
                text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                text.push(char::REPLACEMENT_CHARACTER);
                // A surrogate is three bytes, `ED A0..=BF 80..=BF`; UTF-8 sees only the first
                // as invalid.
                let invalid = match after {
                    [0xED, 0xA0..=0xBF, 0x80..=0xBF, ..] => 3,
                    _ => error.error_len().unwrap_or(after.len()),
                };
                rest = after.get(invalid..).unwrap_or_default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> RawObject {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn keeps_any_value_as_its_text() {
        let digits = "9".repeat(4_000);
        let deep = format!("{}1{}", "[".repeat(1_000), "]".repeat(1_000));
        let json = format!(
            r#"{{"big":{digits},"huge":1e400,"tiny":-1e-400,"zero":-0,"deep":{deep},"lone":"\ud800","spaced":[ 1 , {{ "a" : 2 }} ]}}"#
        );
        let data = object(&json);
        assert_eq!(data.get("big").unwrap().get(), digits);
        assert_eq!(data.get("huge").unwrap().get(), "1e400");
        assert_eq!(data.get("tiny").unwrap().get(), "-1e-400");
        assert_eq!(data.get("zero").unwrap().get(), "-0");
        assert_eq!(data.get("deep").unwrap().get(), deep);
        assert_eq!(data.get("lone").unwrap().get(), r#""\ud800""#);
        assert_eq!(data.get("spaced").unwrap().get(), r#"[ 1 , { "a" : 2 } ]"#);
        assert_eq!(data.len(), 7);
        assert!(data.get_as::<serde_json::Value>("deep").is_err());
        assert!(data.get_as::<String>("lone").is_err());
    }

    #[test]
    fn reads_fields_as_the_asked_type() {
        let data = object(r#"{"n":7,"s":"x\n","none":null,"list":[1,2]}"#);
        assert_eq!(data.get_as::<u8>("n").unwrap(), Some(7));
        assert_eq!(data.get_as::<String>("s").unwrap().as_deref(), Some("x\n"));
        assert_eq!(data.get_as::<Option<String>>("none").unwrap(), Some(None));
        assert_eq!(data.get_as::<Vec<u8>>("list").unwrap(), Some(vec![1, 2]));
        assert_eq!(data.get_as::<u8>("absent").unwrap(), None);
        assert!(data.get_as::<String>("n").is_err());
        assert!(data.get_as::<String>("none").is_err());
    }

    #[test]
    fn takes_the_last_of_a_repeated_name_and_never_refuses_a_name() {
        let data = object(r#"{"a":1,"a":2,"\u0061":3,"\ud800x":4,"\udc00\ud800":5}"#);
        assert_eq!(data.get("a").unwrap().get(), "3");
        assert_eq!(data.get("\u{FFFD}x").unwrap().get(), "4");
        assert_eq!(data.get("\u{FFFD}\u{FFFD}").unwrap().get(), "5");
        assert_eq!(data.len(), 3);
        // A pair is one character.
        let data = object(r#"{"\ud83d\ude00":1}"#);
        assert!(data.contains_key("😀"));
    }

    #[test]
    fn refuses_only_what_is_not_an_object() {
        assert!(serde_json::from_str::<RawObject>("{}").unwrap().is_empty());
        for not_an_object in ["[]", "1", r#""a""#, "null"] {
            assert!(serde_json::from_str::<RawObject>(not_an_object).is_err());
        }
    }

    #[test]
    fn serializes_back_as_sent_and_compares_by_text() {
        let data = object(r#"{"b":1e400,"a":[1, 2]}"#);
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"a":[1, 2],"b":1e400}"#
        );
        assert_eq!(data, object(r#"{"a":[1, 2],"b":1e400}"#));
        assert_ne!(data, object(r#"{"a":[1,2],"b":1e400}"#));
        assert_eq!(format!("{data:?}"), r#"{"a": "[1, 2]", "b": "1e400"}"#);
        let value = serde_json::json!({"x": {"y": [true, null]}});
        assert_eq!(
            serde_json::to_value(serde_json::from_value::<RawObject>(value.clone()).unwrap())
                .unwrap(),
            value
        );
    }

    #[test]
    fn wtf8_lossy_replaces_only_what_is_not_utf8() {
        assert_eq!(wtf8_lossy("abc é 😀".as_bytes()), "abc é 😀");
        assert_eq!(wtf8_lossy(b"a\xED\xA0\x80b"), "a\u{FFFD}b");
        assert_eq!(wtf8_lossy(b"\xED\xB0\x80\xED\xA0\x80"), "\u{FFFD}\u{FFFD}");
        assert_eq!(wtf8_lossy(b"x\xFF"), "x\u{FFFD}");
        assert_eq!(wtf8_lossy(b"x\xED"), "x\u{FFFD}");
    }
}
