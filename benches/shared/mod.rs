//! What the benches share: the unverified baseline's view of a Sotion delivery.

use tower_webhook::envelope::MemberData;

/// The envelope as an app with no verification would parse it, with `Json<T>`.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
pub(crate) struct PlainEnvelope {
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) timestamp: String,
    pub(crate) version: String,
    #[serde(rename = "siteId")]
    pub(crate) site_id: String,
    pub(crate) data: MemberData,
}
