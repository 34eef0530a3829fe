//! TURN REST credentials, the scheme Coturn implements with `use-auth-secret`:
//! username `<unix expiry>:<user id>`, credential
//! `base64(HMAC-SHA1(secret, username))`.

use base64::Engine;
use secrecy::ExposeSecret;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

use crate::config::TurnConfig;

#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnCredentials {
    pub username: String,
    pub credential: String,
    pub ttl_seconds: u64,
    pub expires_at: DateTime<Utc>,
    pub uris: Vec<String>,
}

pub fn credentials(config: &TurnConfig, user_id: &str, now: DateTime<Utc>) -> TurnCredentials {
    credentials_valid_for(config, user_id, now, config.ttl)
}

/// Credentials that expire `ttl` from `now` (bounded by `TURN_TTL`'s range).
pub fn credentials_valid_for(
    config: &TurnConfig,
    user_id: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> TurnCredentials {
    let ttl = ttl.as_secs().min(MAX_TTL_SECS);
    let expires_at = now + chrono::Duration::seconds(ttl as i64);
    let username = format!("{}:{}", expires_at.timestamp(), user_id);
    TurnCredentials {
        credential: sign(config.secret.expose_secret(), &username),
        username,
        ttl_seconds: ttl,
        expires_at,
        uris: config.uris.clone(),
    }
}

pub fn sign(secret: &str, username: &str) -> String {
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The longest credential this service signs (a day, `TURN_TTL`'s maximum).
const MAX_TTL_SECS: u64 = 86_400;

/// How long credentials for someone in a call may last: `TURN_TTL`, and no
/// longer than the call may still last (`MAX_CALL_DURATION` from when it
/// became active, or from now if it is not active yet); a second at least.
pub fn ttl_in_call(
    turn_ttl: Duration,
    max_call_duration: Duration,
    connected_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Duration {
    let remaining = match connected_at {
        Some(at) => {
            let elapsed = (now - at).to_std().unwrap_or_default();
            max_call_duration.saturating_sub(elapsed)
        }
        None => max_call_duration,
    };
    turn_ttl.min(remaining).max(Duration::from_secs(1))
}

/// The STUN servers alone (no credentials): what a call nobody has
/// answered gets.
pub fn stun_servers(config: &TurnConfig) -> Vec<IceServer> {
    if config.stun_uris.is_empty() {
        return Vec::new();
    }
    vec![IceServer { urls: config.stun_uris.clone(), username: None, credential: None }]
}

/// The STUN servers, then the TURN servers with credentials valid for `ttl`.
pub fn ice_servers_valid_for(
    config: &TurnConfig,
    user_id: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Vec<IceServer> {
    let mut servers = stun_servers(config);
    if !config.uris.is_empty() {
        let creds = credentials_valid_for(config, user_id, now, ttl);
        servers.push(IceServer {
            urls: creds.uris,
            username: Some(creds.username),
            credential: Some(creds.credential),
        });
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn config() -> TurnConfig {
        TurnConfig {
            uris: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            stun_uris: vec!["stun:127.0.0.1:3478".into()],
            secret: SecretString::from("north"),
            ttl: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_username_carries_expiry_and_user() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
        let creds = credentials(&config(), "alice", now);
        assert_eq!(creds.username, "1700003600:alice");
        assert_eq!(creds.ttl_seconds, 3600);
    }

    #[test]
    fn the_credential_is_the_coturn_hmac() {
        // Computed independently: printf %s '1700003600:alice' | openssl dgst -sha1 -hmac north -binary | base64
        assert_eq!(sign("north", "1700003600:alice"), "wjwSXO2ch1B6VaLTLMy2Avn5O9o=");
    }

    #[test]
    fn ice_servers_list_stun_then_turn_with_credentials() {
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let servers = ice_servers_valid_for(&config(), "bob", now, Duration::from_secs(60));
        assert_eq!(servers.len(), 2);
        assert!(servers[0].username.is_none());
        assert!(servers[1].credential.is_some());
    }

    #[test]
    fn credentials_last_no_longer_than_the_call_may() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
        let (hour, four_hours) = (Duration::from_secs(3600), Duration::from_secs(14_400));
        assert_eq!(ttl_in_call(hour, four_hours, None, now), hour, "TURN_TTL when the call may last longer");
        let active_since = |secs: i64| Some(now - chrono::Duration::seconds(secs));
        assert_eq!(ttl_in_call(hour, four_hours, active_since(14_000), now), Duration::from_secs(400));
        assert_eq!(ttl_in_call(hour, four_hours, active_since(20_000), now), Duration::from_secs(1));
        assert_eq!(ttl_in_call(hour, Duration::from_secs(600), None, now), Duration::from_secs(600));
        let creds = credentials_valid_for(&config(), "alice", now, Duration::from_secs(400));
        assert_eq!((creds.username.as_str(), creds.ttl_seconds), ("1700000400:alice", 400));
    }

    #[test]
    fn stun_servers_carry_no_credentials_and_no_turn() {
        let servers = stun_servers(&config());
        assert_eq!(
            servers,
            [IceServer { urls: vec!["stun:127.0.0.1:3478".into()], username: None, credential: None }]
        );
        let none = TurnConfig { stun_uris: Vec::new(), ..config() };
        assert!(stun_servers(&none).is_empty());
    }
}
