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

/// How long credentials for someone in a call nobody has answered yet may
/// last: until the call would have connected had it been answered at the
/// last moment (`ringing_then_connect` from its creation: `RINGING_TIMEOUT`
/// plus `CONNECT_TIMEOUT`), and `TURN_TTL`; a second at least. Its initiator
/// joins the room while it rings (the web app does), so they need a relay
/// then; a call that is never answered gives them no more than that.
pub fn ttl_unanswered(
    turn_ttl: Duration,
    ringing_then_connect: Duration,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Duration {
    let until =
        created_at + chrono::Duration::from_std(ringing_then_connect).unwrap_or(chrono::Duration::MAX);
    let remaining = (until - now).to_std().unwrap_or_default();
    turn_ttl.min(remaining).max(Duration::from_secs(1))
}

/// As [`ice_servers`], the TURN credentials valid for `ttl`.
pub fn ice_servers_valid_for(
    config: &TurnConfig,
    user_id: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Vec<IceServer> {
    let mut servers = Vec::new();
    if !config.stun_uris.is_empty() {
        servers.push(IceServer { urls: config.stun_uris.clone(), username: None, credential: None });
    }
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
    fn credentials_for_a_call_nobody_answered_last_until_it_would_have_connected() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
        let (hour, minute) = (Duration::from_secs(3600), Duration::from_secs(60));
        let created = |ago: i64| now - chrono::Duration::seconds(ago);
        assert_eq!(ttl_unanswered(hour, minute, created(0), now), minute);
        assert_eq!(ttl_unanswered(hour, minute, created(45), now), Duration::from_secs(15));
        assert_eq!(
            ttl_unanswered(hour, minute, created(600), now),
            Duration::from_secs(1),
            "a second at least"
        );
        assert_eq!(ttl_unanswered(Duration::from_secs(30), minute, created(0), now), Duration::from_secs(30));
    }
}
