//! A URL's query parameters, read as forms are (`name=value&...`, `+` for a space, `%XX`
//! escapes; see [`parameters`](super::body::parameters)): the handshakes' tokens, Twilio's
//! `bodySHA256`.

/// The decoded value of the first parameter called `name` in `query`.
pub(crate) fn param(query: &str, name: &str) -> Option<String> {
    super::body::parameters(query.as_bytes())
        .find(|(found, _)| found == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_parameter_decoded() {
        let query = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=a%26b+c";
        assert_eq!(param(query, "hub.challenge").as_deref(), Some("1158201444"));
        assert_eq!(param(query, "hub.verify_token").as_deref(), Some("a&b c"));
        assert_eq!(param(query, "b"), None);
    }
}
