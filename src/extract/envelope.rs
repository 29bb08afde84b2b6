//! [`Envelope<T>`] as an extractor.

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::rejection::{EnvelopeRejection, InvalidData, MissingWebhookLayer, NotAnEnvelope};
use crate::envelope::{Envelope, EventType};
use crate::layer::VerifiedBody;
use crate::meta::WebhookMeta;

impl<T, S> FromRequestParts<S> for Envelope<T>
where
    T: DeserializeOwned,
    S: Sync,
{
    type Rejection = EnvelopeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let meta = parts
            .extensions
            .get::<WebhookMeta>()
            .ok_or(MissingWebhookLayer)?;
        let (Some(data), Some(event), Some(site_id), Some(timestamp), Some(version)) = (
            parts
                .extensions
                .get::<VerifiedBody>()
                .and_then(|verified| verified.envelope_data.as_ref()),
            meta.event(),
            meta.scope(),
            meta.timestamp(),
            meta.version(),
        ) else {
            return Err(NotAnEnvelope.into());
        };
        let data = serde_json::from_slice(data).map_err(InvalidData)?;
        Ok(Envelope {
            id: meta.id().to_owned(),
            event_type: EventType::from(event),
            timestamp,
            version: version.to_owned(),
            site_id: site_id.to_owned(),
            data,
        })
    }
}
