//! LiveKit's webhooks, verified: the `Authorization` header holds a JWT
//! signed with the API secret whose `sha256` claim is the body's hash.

use livekit_api::access_token::TokenVerifier;
use livekit_api::webhooks::WebhookReceiver;
use secrecy::ExposeSecret;

use super::Event;
use crate::config::LiveKitConfig;

pub struct Verifier {
    receiver: WebhookReceiver,
    tokens: TokenVerifier,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid LiveKit webhook: {0}")]
pub struct Refused(String);

impl Verifier {
    pub fn new(config: &LiveKitConfig) -> Self {
        let tokens = TokenVerifier::with_api_key(&config.api_key, config.api_secret.expose_secret());
        Verifier { receiver: WebhookReceiver::new(tokens.clone()), tokens }
    }

    /// Whether `authorization` is a token LiveKit signed with our key, which
    /// can be told before a byte of the body is read (whether its `sha256`
    /// claim is the body's, [`verify`](Self::verify) tells).
    pub fn signed(&self, authorization: &str) -> Result<(), Refused> {
        self.tokens.verify(authorization).map(|_| ()).map_err(|err| Refused(err.to_string()))
    }

    /// The event, if `authorization` signs exactly `body`.
    pub fn verify(&self, body: &str, authorization: &str) -> Result<Event, Refused> {
        let event = self.receiver.receive(body, authorization).map_err(|err| Refused(err.to_string()))?;
        Ok(Event::from(&event))
    }
}
