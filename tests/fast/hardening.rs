//! The small doors of issue 28 that need no server: TURN credentials handed
//! with a call, the bounds of a call's timeline, video requests that change
//! nothing.

use std::time::Duration as StdDuration;

use callgate::calls::media::{self, MediaChange};
use callgate::calls::{consent, enforce, growth, lifecycle};
use callgate::clock::Clock;
use callgate::domain::consent::Gender;
use callgate::domain::{CallId, EventSource};
use callgate::infra::turn::IceServer;
use callgate::store::{self, NewEvent, events::MAX_TIMELINE_ROWS};
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::http::Api;
use crate::support::{World, joined, person};

/// Seconds from the world's clock until the TURN credential among
/// `servers` expires (its username is `<unix expiry>:<user id>`).
fn turn_lifetime(world: &World, servers: &[IceServer]) -> i64 {
    assert!(
        servers.iter().any(|s| s.urls.iter().any(|u| u.starts_with("turn:"))),
        "a TURN server: {servers:?}"
    );
    let turn = servers.iter().find(|s| s.credential.is_some()).expect("a TURN server with credentials");
    let username = turn.username.as_deref().expect("a username");
    let expiry: i64 = username.split(':').next().and_then(|e| e.parse().ok()).expect("an expiry");
    expiry - world.clock.now().timestamp()
}

/// STUN servers and nothing else: no TURN URI, no credential.
fn stun_alone(servers: &[IceServer], what: &str) {
    assert!(!servers.is_empty(), "{what}: STUN still");
    for server in servers {
        assert!(server.username.is_none() && server.credential.is_none(), "{what}: {servers:?}");
        assert!(server.urls.iter().all(|u| u.starts_with("stun:")), "{what}: {servers:?}");
    }
}

/// `got` within two seconds of `wanted`: the call's times are the
/// database's, the credentials' the fake clock's.
fn about(got: i64, wanted: i64, what: &str) {
    assert!((wanted - 2..=wanted + 2).contains(&got), "{what}: {got} s, wanted about {wanted} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_credentials_handed_with_a_call_are_none_while_it_rings_then_last_no_longer_than_it_may() {
    let world = World::configured(|c| c.timeouts.max_call_duration = StdDuration::from_secs(600)).await;
    let t = &world.core.config.timeouts;
    assert_eq!((t.ringing.as_secs(), t.connect.as_secs()), (30, 30), ".env.example's timeouts");
    assert_eq!(world.core.config.turn.ttl.as_secs(), 3600, ".env.example's TURN_TTL");
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let (carol, dave) = (person("carol", Gender::Female), person("dave", Gender::Male));
    let start = lifecycle::StartCall {
        invitees: vec![bob.id.clone(), carol.id.clone(), dave.id.clone()],
        call_type: callgate::domain::CallType::Audio,
        conversation_id: None,
        external_ref: None,
    };
    let started = lifecycle::start(&world.core, &alice, start).await.expect("the call starts");
    let call = CallId(started.call.id);
    stun_alone(&started.ice_servers, "the initiator of a call nobody answered");
    let token = lifecycle::token(&world.core, &alice, call).await.expect("a token");
    stun_alone(&token.ice_servers, "her token while it rings");

    lifecycle::decline(&world.core, &carol, call).await.expect("Carol declines");
    let again = growth::join(&world.core, &carol, call, None).await.expect("Carol joins while Bob rings");
    stun_alone(&again.ice_servers, "a group invitee joining while it rings (it ends missed unless answered)");
    lifecycle::decline(&world.core, &dave, call).await.expect("Dave declines");
    let accepted = lifecycle::accept(&world.core, &bob, call, None).await.expect("Bob answers");
    about(turn_lifetime(&world, &accepted.ice_servers), 600, "an answered call may last MAX_CALL_DURATION");
    let token = lifecycle::token(&world.core, &alice, call).await.expect("her token once he answered");
    about(turn_lifetime(&world, &token.ice_servers), 600, "the initiator's, once answered");

    let room = world.room_of(call);
    let now = world.clock.now();
    world.deliver(&joined(&room, &alice, now, now)).await;
    world.deliver(&joined(&room, &bob, now, now)).await;
    assert_eq!(world.call(&alice, call).await.state, callgate::domain::CallState::Active);
    world.clock.advance(Duration::seconds(500));
    let token = lifecycle::token(&world.core, &bob, call).await.expect("a token");
    about(turn_lifetime(&world, &token.ice_servers), 100, "what is left of the active call");
    let late = growth::join(&world.core, &dave, call, None).await.expect("Dave joins late");
    about(turn_lifetime(&world, &late.ice_servers), 100, "a late joiner, the same");
}

/// The ICE servers of an API answer (`iceServers`), typed.
fn ice_servers_of(body: &Value) -> Vec<IceServer> {
    let servers = body["iceServers"].as_array().unwrap_or_else(|| panic!("iceServers: {body}"));
    servers
        .iter()
        .map(|s| IceServer {
            urls: s["urls"]
                .as_array()
                .expect("urls")
                .iter()
                .map(|u| u.as_str().expect("a URI").into())
                .collect(),
            username: s["username"].as_str().map(str::to_owned),
            credential: s["credential"].as_str().map(str::to_owned),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initiator_of_a_ringing_call_gets_no_relay_until_someone_answers_it() {
    let world = World::configured(|c| c.timeouts.max_call_duration = StdDuration::from_secs(600)).await;
    let api = Api::new(&world);
    let (alice, bob) = (api.user("female"), api.user("male"));
    let body = json!({"participantIds": [bob.id], "type": "audio"});
    let (status, started) = api.post("/api/v1/calls", &alice, body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    stun_alone(&ice_servers_of(&started), "her call, ringing");
    let call = started["call"]["id"].as_str().expect("an id").to_owned();
    let (status, token) = api.act(&call, "token", &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    stun_alone(&ice_servers_of(&token), "her token while it rings");
    for path in ["/api/v1/turn/credentials", "/api/v1/ice-servers"] {
        let (status, problem) = api.get(path, &alice).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::CONFLICT, Some("not_answered")),
            "{path}"
        );
        let (status, problem) = api.get(path, &bob).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("not_in_call")), "{path}");
    }

    let (status, accepted) = api.act(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    about(turn_lifetime(&world, &ice_servers_of(&accepted)), 600, "his, once he answered");
    let (status, token) = api.act(&call, "token", &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    about(
        turn_lifetime(&world, &ice_servers_of(&token)),
        600,
        "her fresh token: no longer than the call may",
    );
    let (status, creds) = api.get("/api/v1/turn/credentials", &alice).await;
    assert_eq!(status, StatusCode::OK, "{creds}");
    assert_eq!(creds["ttlSeconds"], 600, "{creds}");
    let (status, servers) = api.get("/api/v1/ice-servers", &alice).await;
    assert_eq!(status, StatusCode::OK, "{servers}");
    about(turn_lifetime(&world, &ice_servers_of(&servers)), 600, "her ICE servers");
}

async fn timeline(world: &World, call: CallId) -> Vec<(String, Option<String>, serde_json::Value)> {
    sqlx::query_as("select type, actor, data from call_events where call_id = $1 order by id")
        .bind(call.0)
        .fetch_all(&world.core.db)
        .await
        .expect("the timeline")
}

fn microphone(on: bool) -> MediaChange {
    MediaChange { audio_enabled: Some(on), ..MediaChange::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_media_changes_is_one_row_of_the_timeline_with_the_net_change() {
    let world = World::configured(|c| c.limits.media_changes_per_minute = 0).await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    for on in [false, true, false, true, false] {
        media::update(&world.core, &bob, call, microphone(on)).await.expect("Bob's change");
    }
    media::update(&world.core, &alice, call, microphone(false)).await.expect("Alice's change");
    media::update(&world.core, &bob, call, microphone(true)).await.expect("Bob's again");
    let mut conn = world.core.db.acquire().await.expect("a connection");
    let published = NewEvent {
        kind: "livekit.track_published".into(),
        source: EventSource::LiveKit,
        actor: Some(bob.id.to_string()),
        data: serde_json::json!({}),
    };
    store::record_events(&mut conn, call, &[published]).await.expect("written");
    drop(conn);
    media::update(&world.core, &bob, call, microphone(false)).await.expect("Bob's after it");

    let media: Vec<(Option<String>, serde_json::Value)> = timeline(&world, call)
        .await
        .into_iter()
        .filter(|(kind, _, _)| kind == "media.updated")
        .map(|(_, actor, data)| (actor, data["audioEnabled"].clone()))
        .collect();
    let row = |who: &callgate::domain::AuthUser, on: bool| (Some(who.id.to_string()), serde_json::json!(on));
    assert_eq!(
        media,
        [row(&bob, true), row(&alice, false), row(&bob, false)],
        "Bob's changes are one row, the net change, Alice's between them or not; a row of another kind \
         between starts a new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_timeline_stops_at_its_cap_and_still_records_how_the_call_ends() {
    let world = World::configured(|c| c.limits.media_changes_per_minute = 0).await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    // LiveKit's events of a participant republishing a track, over and over.
    let republished = |n: i64| NewEvent {
        kind: "livekit.track_published".into(),
        source: EventSource::LiveKit,
        actor: Some(bob.id.to_string()),
        data: serde_json::json!({"n": n}),
    };
    let flood: Vec<NewEvent> = (0..MAX_TIMELINE_ROWS + 100).map(republished).collect();
    let mut conn = world.core.db.acquire().await.expect("a connection");
    store::record_events(&mut conn, call, &flood).await.expect("written");
    assert_eq!(timeline(&world, call).await.len() as i64, MAX_TIMELINE_ROWS, "the cap holds");
    store::record_events(&mut conn, call, &[republished(0)]).await.expect("written");
    media::update(&world.core, &bob, call, microphone(false)).await.expect("his change is applied");
    assert_eq!(timeline(&world, call).await.len() as i64, MAX_TIMELINE_ROWS, "nothing more of that kind");
    drop(conn);

    lifecycle::end(&world.core, &alice, call).await.expect("she hangs up");
    let rows = timeline(&world, call).await;
    assert_eq!(rows.len() as i64, MAX_TIMELINE_ROWS + 1);
    assert_eq!(rows.last().map(|r| r.0.as_str()), Some("call.ended"), "the call's own end is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requesting_and_withdrawing_video_over_and_over_leaves_no_right_to_push() {
    let world = World::configured(|c| {
        c.rate_limits.video_requests_per_call = 0;
        c.rate_limits.video_requests_per_participant = 0;
    })
    .await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    let room = world.room_of(call);
    let now = world.clock.now();
    for who in [&alice, &bob] {
        world.rooms.join(&room, crate::support::in_room(who, now));
        world.deliver(&joined(&room, who, now, now)).await;
    }
    enforce::settle(&world.core, enforce::Effects::for_call(call)).await;
    let pushed = world.rooms.rights_pushed().len();

    for _ in 0..5 {
        consent::request(&world.core, &bob, call).await.expect("Bob asks");
        consent::revoke(&world.core, &bob, call).await.expect("and withdraws");
    }

    assert!(enforce::settle(&world.core, enforce::Effects::for_call(call)).await);
    let all = world.rooms.rights_pushed();
    assert_eq!(all.len(), pushed, "video never moved: nobody's rights were pushed: {:?}", &all[pushed..]);
}
