//! LiveKit's webhooks, verified: the `Authorization` header holds a JWT
//! signed with the API secret whose `sha256` claim is the body's hash.

use livekit_api::access_token::TokenVerifier;
use livekit_api::webhooks::WebhookReceiver;

use super::Event;
use crate::config::LiveKitConfig;

pub struct Verifier(WebhookReceiver);

#[derive(Debug, thiserror::Error)]
#[error("invalid LiveKit webhook: {0}")]
pub struct Refused(String);

impl Verifier {
    pub fn new(config: &LiveKitConfig) -> Self {
        let verifier = TokenVerifier::with_api_key(&config.api_key, config.api_secret.expose());
        Verifier(WebhookReceiver::new(verifier))
    }

    /// The event, if `authorization` signs exactly `body`.
    pub fn verify(&self, body: &str, authorization: &str) -> Result<Event, Refused> {
        let event = self.0.receive(body, authorization).map_err(|err| Refused(err.to_string()))?;
        Ok(Event::from(&event))
    }
}
