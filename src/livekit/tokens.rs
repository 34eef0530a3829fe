//! LiveKit join tokens. Pure: the grants come from the consent policy's
//! publish sources, and nothing private (gender) goes into the token.
//! Every token is a person's: its participant kind is `standard`, never
//! `egress` or `agent`, and it grants no `hidden`, `recorder` or `agent`
//! (LiveKit counts a participant with any of those as no person, and so
//! does callgate: a client must not be able to hide from the call's roster).

use std::time::Duration;

use chrono::{DateTime, Utc};
use livekit_api::access_token::{AccessToken, AccessTokenError, VideoGrants};

use crate::domain::consent::TrackSource;

pub struct JoinGrant<'a> {
    pub identity: &'a str,
    pub name: Option<&'a str>,
    pub room: &'a str,
    pub sources: &'a [TrackSource],
    /// In a waiting room: the token grants joining only (no publish, no
    /// subscribe, no data) until a host admits them.
    pub waiting: bool,
    pub ttl: Duration,
}

/// The participant kind of every token callgate mints (LiveKit's
/// `ParticipantInfo.Kind`, by name).
const PERSON: &str = "standard";

pub fn video_grants(room: &str, sources: &[TrackSource]) -> VideoGrants {
    VideoGrants {
        room_join: true,
        room: room.to_owned(),
        can_subscribe: Some(true),
        can_publish: Some(true),
        can_publish_data: Some(true),
        can_publish_sources: sources.iter().map(|s| s.as_str().to_owned()).collect(),
        can_update_own_metadata: Some(false),
        ..Default::default()
    }
}

/// A waiting room's grants: in the room, and nothing else.
pub fn waiting_grants(room: &str) -> VideoGrants {
    VideoGrants {
        room_join: true,
        room: room.to_owned(),
        can_subscribe: Some(false),
        can_publish: Some(false),
        can_publish_data: Some(false),
        can_publish_sources: Vec::new(),
        can_update_own_metadata: Some(false),
        ..Default::default()
    }
}

pub fn mint(
    api_key: &str,
    api_secret: &str,
    grant: &JoinGrant<'_>,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>), AccessTokenError> {
    let token = AccessToken::with_api_key(api_key, api_secret)
        .with_kind(PERSON)
        .with_identity(grant.identity)
        .with_name(grant.name.unwrap_or(grant.identity))
        .with_grants(if grant.waiting {
            waiting_grants(grant.room)
        } else {
            video_grants(grant.room, grant.sources)
        })
        .with_ttl(grant.ttl)
        .to_jwt()?;
    let expires_at = now + chrono::Duration::from_std(grant.ttl).unwrap_or_default();
    Ok((token, expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_api::access_token::TokenVerifier;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn decoded(sources: &[TrackSource]) -> livekit_api::access_token::Claims {
        let grant = JoinGrant {
            identity: "alice",
            name: Some("Alice"),
            room: "cg-room",
            sources,
            waiting: false,
            ttl: Duration::from_secs(600),
        };
        let (jwt, _) = mint("devkey", SECRET, &grant, crate::clock::Clock::now(&crate::clock::SystemClock))
            .expect("mint");
        TokenVerifier::with_api_key("devkey", SECRET).verify(&jwt).expect("verify")
    }

    #[test]
    fn a_token_joins_one_room_as_its_user_without_admin_rights() {
        let claims = decoded(&[TrackSource::Microphone]);
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.name, "Alice");
        assert!(claims.video.room_join);
        assert_eq!(claims.video.room, "cg-room");
        assert!(!claims.video.room_admin && !claims.video.room_create && !claims.video.room_list);
        assert!(!claims.video.room_record && !claims.video.ingress_admin);
        assert_eq!(claims.video.can_update_own_metadata, Some(false));
        assert_eq!(claims.video.can_publish, Some(true));
        assert_eq!(claims.video.can_subscribe, Some(true));
        assert_eq!(claims.video.can_publish_data, Some(true));
    }

    #[test]
    fn every_token_is_a_persons_never_a_hidden_recorder_or_agent() {
        for waiting in [false, true] {
            let grant = JoinGrant {
                identity: "EG_looks_like_egress",
                name: None,
                room: "cg-room",
                sources: &[TrackSource::Microphone, TrackSource::Camera],
                waiting,
                ttl: Duration::from_secs(60),
            };
            let (jwt, _) =
                mint("devkey", SECRET, &grant, crate::clock::Clock::now(&crate::clock::SystemClock))
                    .expect("mint");
            let claims = TokenVerifier::with_api_key("devkey", SECRET).verify(&jwt).expect("verify");
            assert_eq!(claims.kind, "standard");
            assert!(!claims.video.hidden && !claims.video.recorder && !claims.video.agent);
            assert!(!claims.video.room_record);
            // The raw claims too: nothing else names a kind.
            let body = jwt.split('.').nth(1).expect("a payload");
            let body = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body)
                .expect("base64");
            let raw: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(raw["kind"], "standard");
            assert!(raw.get("kindDetails").is_none());
        }
    }

    #[test]
    fn publish_sources_are_the_lowercase_names_given() {
        let claims = decoded(&[TrackSource::Microphone, TrackSource::Camera]);
        assert_eq!(claims.video.can_publish_sources, vec!["microphone", "camera"]);
    }

    #[test]
    fn the_token_carries_no_metadata_or_attributes() {
        let claims = decoded(&[TrackSource::Microphone]);
        assert!(claims.metadata.is_empty());
        assert!(claims.attributes.is_empty());
    }

    #[test]
    fn the_token_expires_after_its_ttl() {
        let claims = decoded(&[TrackSource::Microphone]);
        let ttl = claims.exp as i64 - crate::clock::Clock::now(&crate::clock::SystemClock).timestamp();
        assert!((590..=600).contains(&ttl), "ttl {ttl}");
    }
}
