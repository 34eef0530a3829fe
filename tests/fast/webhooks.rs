//! LiveKit's webhooks through the route in-process: signed as LiveKit signs
//! them, posted to `/webhooks/livekit`, stored by the inbox's writer (run
//! here as the application runs it) and handled per call; verified,
//! recorded once, kept in the call's timeline, right whatever order they
//! come in, and bounded before they are known to be LiveKit's. Moved down
//! from the real stack: none of it needs a real SFU (a camera published
//! through drifted rights and removed by LiveKit stays in
//! tests/api/webhooks.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use base64::Engine;
use callgate::domain::CallId;
use callgate::ingest::inbox;
use futures::StreamExt;
use livekit_api::access_token::AccessToken;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::http::{Api, Caller};
use crate::support::World;

fn sign_with(key: &str, secret: &str, body: &str) -> String {
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
    AccessToken::with_api_key(key, secret).with_sha256(&digest).to_jwt().expect("a signed webhook token")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A room event (`room_started`, `room_finished`) created at `created_at` (Unix seconds).
fn room_event(kind: &str, room: &str, created_at: i64) -> Value {
    json!({
        "event": kind,
        "id": format!("EV_{}", uuid::Uuid::new_v4().simple()),
        "createdAt": created_at.to_string(),
        "room": {"sid": "RM_test", "name": room},
    })
}

/// A participant event for the session that joined at `session_ms`.
fn participant_event(kind: &str, room: &str, identity: &str, session_ms: i64, created_at: i64) -> Value {
    let mut event = room_event(kind, room, created_at);
    event["participant"] = json!({
        "sid": format!("PA_{session_ms}"),
        "identity": identity,
        "state": "ACTIVE",
        "joinedAt": (session_ms / 1000).to_string(),
        "joinedAtMs": session_ms.to_string(),
    });
    event
}

/// A `participant_left` with LiveKit's reason, e.g. `DUPLICATE_IDENTITY`.
fn left_event(room: &str, identity: &str, session_ms: i64, created_at: i64, reason: &str) -> Value {
    let mut event = participant_event("participant_left", room, identity, session_ms, created_at);
    event["participant"]["state"] = json!("DISCONNECTED");
    event["participant"]["disconnectReason"] = json!(reason);
    event
}

/// The API with its webhook inbox's writer running (stopped when dropped).
struct Hooks<'w> {
    world: &'w World,
    api: Api,
    _writer: DropGuard,
}

impl<'w> Hooks<'w> {
    fn new(world: &'w World) -> Hooks<'w> {
        let api = Api::new(world);
        let stop = CancellationToken::new();
        tokio::spawn(inbox::run(api.state().webhook_inbox.clone(), stop.clone()));
        Hooks { world, api, _writer: stop.drop_guard() }
    }

    /// Signed with this deployment's LiveKit key, as LiveKit signs.
    fn sign(&self, body: &str) -> String {
        let lk = &self.world.core.config.livekit;
        sign_with(&lk.api_key, lk.api_secret.expose_secret(), body)
    }

    fn room(&self, call: &str) -> String {
        self.world.room_of(call_id(call))
    }

    /// Posts `event`, signed as LiveKit would; returns once it is stored.
    async fn deliver(&self, event: &Value) -> StatusCode {
        let body = event.to_string();
        let auth = self.sign(&body);
        self.deliver_raw(&body, Some(&auth)).await
    }

    async fn deliver_raw(&self, body: &str, authorization: Option<&str>) -> StatusCode {
        self.post(Body::from(body.to_owned()), authorization, None).await
    }

    async fn post(&self, body: Body, authorization: Option<&str>, length: Option<usize>) -> StatusCode {
        let mut req = axum::http::Request::builder()
            .method("POST")
            .uri("/webhooks/livekit")
            .header("content-type", "application/webhook+json");
        if let Some(auth) = authorization {
            req = req.header("authorization", auth);
        }
        if let Some(length) = length {
            req = req.header("content-length", length);
        }
        let resp = self.api.respond(req.body(body).expect("a request")).await;
        StatusCode::from_u16(resp.status().as_u16()).expect("a status")
    }

    /// Every event of `call` stored so far is handled: the call's pending
    /// events are handled here, after the task the writer started for them
    /// (the call's lock orders the two).
    async fn settled(&self, call: &str) {
        inbox::drain(&self.world.core, call_id(call)).await.expect("the events are handled");
        let pending: i64 = sqlx::query_scalar(
            "select count(*) from livekit_webhook_events where call_id = $1 and processed_at is null",
        )
        .bind(call_id(call).0)
        .fetch_one(&self.world.core.db)
        .await
        .expect("counted");
        assert_eq!(pending, 0, "nothing of the call is left unhandled");
    }

    /// Each event delivered and handled before the next.
    async fn play(&self, call: &str, events: impl Iterator<Item = Value>) {
        for event in events {
            assert_eq!(self.deliver(&event).await, StatusCode::NO_CONTENT, "{event}");
            self.settled(call).await;
        }
    }

    async fn answered_call(&self, caller: &Caller, callees: &[&Caller]) -> String {
        let call = self.api.ring(caller, callees, "audio").await;
        for callee in callees {
            let (status, body) = self.api.act(&call, "accept", callee, json!({})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        call
    }

    async fn call(&self, call: &str, who: &Caller) -> Value {
        let (status, body) = self.api.get(&format!("/api/v1/calls/{call}"), who).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn count(&self, sql: &'static str, call: &str) -> i64 {
        sqlx::query_scalar(sql).bind(call_id(call).0).fetch_one(&self.world.core.db).await.expect("counted")
    }
}

fn call_id(call: &str) -> CallId {
    CallId(uuid::Uuid::parse_str(call).expect("a call id"))
}

fn status_of(call: &Value, user: &Caller) -> String {
    call["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["userId"] == user.id.as_str())
        .and_then(|p| p["status"].as_str())
        .expect("a participant")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_signed_event_delivered_twice_is_recorded_once() {
    let world = World::new().await;
    let hooks = Hooks::new(&world);
    let (alice, bob) = (hooks.api.user("female"), hooks.api.user("male"));
    let call = hooks.answered_call(&alice, &[&bob]).await;
    let joined = participant_event("participant_joined", &hooks.room(&call), &alice.id, 1_000_000, now());

    assert_eq!(hooks.deliver(&joined).await, StatusCode::NO_CONTENT);
    assert_eq!(hooks.deliver(&joined).await, StatusCode::NO_CONTENT, "a second delivery is acknowledged too");
    hooks.settled(&call).await;

    let id = joined["id"].as_str().expect("id");
    let recorded: i64 =
        sqlx::query_scalar("select count(*) from call_events where data->>'livekitEventId' = $1")
            .bind(id)
            .fetch_one(&world.core.db)
            .await
            .expect("count");
    assert_eq!(recorded, 1, "one entry in the timeline");
    let stored: i64 = sqlx::query_scalar("select count(*) from livekit_webhook_events where id = $1")
        .bind(id)
        .fetch_one(&world.core.db)
        .await
        .expect("count");
    assert_eq!(stored, 1);
    assert_eq!(status_of(&hooks.call(&call, &alice).await, &alice), "joined");
    let told = hooks
        .count("select count(*) from user_events where call_id = $1 and type = 'participant.joined'", &call)
        .await;
    assert_eq!(told, 1, "bob is told once that she joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_and_foreign_signatures_are_refused_and_nothing_is_stored() {
    let world = World::new().await;
    let hooks = Hooks::new(&world);
    let (alice, bob) = (hooks.api.user("female"), hooks.api.user("male"));
    let call = hooks.answered_call(&alice, &[&bob]).await;
    let event = participant_event("participant_joined", &hooks.room(&call), &alice.id, 1_000_000, now());
    let body = event.to_string();
    let lk = &world.core.config.livekit;
    let secret = lk.api_secret.expose_secret().to_owned();
    let tampered = body.replace(&alice.id, &bob.id);
    let attempts = [
        (
            "a forged signature",
            body.clone(),
            Some(sign_with(&lk.api_key, "not-the-secret-but-32-characters-long", &body)),
        ),
        ("a tampered body", tampered, Some(hooks.sign(&body))),
        ("an unknown key", body.clone(), Some(sign_with("otherkey", &secret, &body))),
        ("no signature", body.clone(), None),
        ("garbage", body.clone(), Some("not.a.jwt".to_owned())),
    ];
    for (what, body, auth) in attempts {
        let status = hooks.deliver_raw(&body, auth.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
    }
    // What the route refuses never reaches the inbox: nothing to wait for.
    let stored: i64 = sqlx::query_scalar("select count(*) from livekit_webhook_events")
        .fetch_one(&world.core.db)
        .await
        .expect("count");
    assert_eq!(stored, 0, "nothing stored");
    assert_eq!(hooks.api.state().webhook_inbox.backlog(), 0, "nothing queued");
    let timeline = hooks
        .count("select count(*) from call_events where call_id = $1 and source = 'livekit'", &call)
        .await;
    assert_eq!(timeline, 0, "nothing in the timeline");
    let after = hooks.call(&call, &alice).await;
    assert_eq!(status_of(&after, &alice), "accepted");
    assert_eq!(status_of(&after, &bob), "accepted");
}

/// Alice, Bob and Carol in a call: everyone joins, Alice's client reconnects
/// (LiveKit closes her first session as a duplicate identity), Carol hangs up.
fn group_story(room: &str, alice: &str, bob: &str, carol: &str) -> Vec<Value> {
    let t = now();
    vec![
        room_event("room_started", room, t - 30),
        participant_event("participant_joined", room, alice, 1_000_000, t - 29),
        participant_event("participant_joined", room, bob, 1_001_000, t - 28),
        participant_event("participant_joined", room, carol, 1_002_000, t - 27),
        left_event(room, alice, 1_000_000, t - 20, "DUPLICATE_IDENTITY"),
        participant_event("participant_joined", room, alice, 1_010_000, t - 20),
        left_event(room, carol, 1_002_000, t - 10, "CLIENT_INITIATED"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_delivered_in_reverse_order_leave_the_same_final_state_as_in_order() {
    let world = World::new().await;
    let hooks = Hooks::new(&world);
    let mut finals = Vec::new();
    for reversed in [false, true] {
        let (alice, bob, carol) =
            (hooks.api.user("female"), hooks.api.user("male"), hooks.api.user("female"));
        let call = hooks.answered_call(&alice, &[&bob, &carol]).await;
        let story = group_story(&hooks.room(&call), &alice.id, &bob.id, &carol.id);
        if reversed {
            hooks.play(&call, story.into_iter().rev()).await;
        } else {
            hooks.play(&call, story.into_iter()).await;
        }
        let state = hooks.call(&call, &alice).await;
        let summary = (
            state["state"].clone(),
            status_of(&state, &alice),
            status_of(&state, &bob),
            status_of(&state, &carol),
        );
        finals.push(summary);
    }
    let expected = (json!("active"), "joined".to_owned(), "joined".to_owned(), "left".to_owned());
    assert_eq!(finals[0], expected, "in order");
    assert_eq!(finals[1], expected, "in reverse order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_participant_left_does_not_undo_a_newer_join() {
    let world = World::new().await;
    let hooks = Hooks::new(&world);
    let (alice, bob) = (hooks.api.user("female"), hooks.api.user("male"));
    let call = hooks.answered_call(&alice, &[&bob]).await;
    let room = hooks.room(&call);
    let t = now();
    let story = [
        participant_event("participant_joined", &room, &bob.id, 2_000_000, t - 10),
        participant_event("participant_joined", &room, &alice.id, 2_005_000, t - 5),
        // Her previous session, reported gone late.
        left_event(&room, &alice.id, 1_990_000, t - 8, "SIGNAL_CLOSE"),
    ];
    hooks.play(&call, story.into_iter()).await;
    let state = hooks.call(&call, &alice).await;
    assert_eq!(state["state"], "active", "{state}");
    assert_eq!(status_of(&state, &alice), "joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_started_after_room_finished_does_not_revive_the_call() {
    let world = World::new().await;
    let hooks = Hooks::new(&world);
    let (alice, bob) = (hooks.api.user("female"), hooks.api.user("male"));
    let call = hooks.answered_call(&alice, &[&bob]).await;
    let room = hooks.room(&call);
    let t = now();
    let story = [
        room_event("room_finished", &room, t),
        room_event("room_started", &room, t - 5),
        participant_event("participant_joined", &room, &alice.id, 3_000_000, t - 4),
    ];
    hooks.play(&call, story.into_iter()).await;
    let state = hooks.call(&call, &alice).await;
    assert_eq!(state["state"], "ended");
    assert_eq!(state["endReason"], "room_closed");
    assert_eq!(status_of(&state, &alice), "left", "nobody joins an ended call");
    let timeline = hooks
        .count("select count(*) from call_events where call_id = $1 and type like 'livekit.%'", &call)
        .await;
    assert_eq!(timeline, 3, "every event is in the timeline, even those that changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_aborted_is_a_departure() {
    let world = World::new().await;
    let hooks = Hooks::new(&world);
    let (alice, bob, carol) = (hooks.api.user("female"), hooks.api.user("male"), hooks.api.user("male"));
    let call = hooks.answered_call(&alice, &[&bob, &carol]).await;
    let room = hooks.room(&call);
    let mut aborted = participant_event("participant_connection_aborted", &room, &carol.id, 4_000_000, now());
    aborted["participant"]["disconnectReason"] = json!("JOIN_FAILURE");
    hooks.play(&call, [aborted].into_iter()).await;
    assert_eq!(status_of(&hooks.call(&call, &alice).await, &carol), "left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_read_the_timeline_with_type_source_actor_and_time() {
    let world = World::new().await;
    let hooks = Hooks::new(&world);
    let api = &hooks.api;
    let (alice, bob, stranger) = (api.user("female"), api.user("male"), api.user("male"));
    let call = hooks.answered_call(&alice, &[&bob]).await;
    let room = hooks.room(&call);
    let mut published = participant_event("track_published", &room, &bob.id, 5_000_000, now());
    published["track"] = json!({"sid": "TR_mic", "type": "AUDIO", "source": "MICROPHONE"});
    hooks.play(&call, [published].into_iter()).await;

    let (status, body) = api.get(&format!("/api/v1/calls/{call}/events"), &bob).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = body["events"].as_array().expect("events");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["call.started", "call.accepted", "livekit.track_published"]);
    for event in events {
        assert!(
            event["source"].is_string() && event["at"].is_string() && event["actor"].is_string(),
            "{event}"
        );
    }
    assert_eq!(events[0]["source"], "api");
    assert_eq!(events[0]["actor"], alice.id.as_str());
    assert_eq!(events[2]["source"], "livekit");
    assert_eq!(events[2]["actor"], bob.id.as_str());
    assert_eq!(events[2]["data"]["source"], "microphone");

    let (status, _) = api.get(&format!("/api/v1/calls/{call}/events"), &stranger).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "strangers do not learn the call exists");
    let (status, body) = api.get(&format!("/api/v1/calls/{call}/events?limit=2"), &alice).await;
    assert_eq!(status, StatusCode::OK);
    let cursor = body["nextCursor"].as_str().expect("a cursor to the rest").to_owned();
    let (_, rest) = api.get(&format!("/api/v1/calls/{call}/events?after={cursor}"), &alice).await;
    assert_eq!(rest["events"].as_array().map(Vec::len), Some(1));
}

/// LiveKit may send an event again while the first delivery is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_with_duplicates_are_acknowledged_and_each_recorded_once() {
    const EVENTS: usize = 100;
    let world = World::new().await;
    let hooks = Hooks::new(&world);
    let mut calls = Vec::new();
    for _ in 0..4 {
        let (alice, bob) = (hooks.api.user("female"), hooks.api.user("male"));
        calls.push(hooks.answered_call(&alice, &[&bob]).await);
    }
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| {
            let room = hooks.room(&calls[i % calls.len()]);
            let mut event = participant_event("track_unpublished", &room, "someone", 6_000_000, now());
            event["track"] = json!({"sid": format!("TR_{i}"), "type": "AUDIO", "source": "MICROPHONE"});
            event
        })
        .collect();
    let deliveries = events.iter().chain(events.iter());
    let statuses: Vec<StatusCode> = futures::stream::iter(deliveries)
        .map(|event| hooks.deliver(event))
        .buffer_unordered(2 * EVENTS)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::NO_CONTENT), "{statuses:?}");
    for call in &calls {
        hooks.settled(call).await;
    }
    let recorded: i64 =
        sqlx::query_scalar("select count(*) from call_events where type = 'livekit.track_unpublished'")
            .fetch_one(&world.core.db)
            .await
            .expect("count");
    assert_eq!(recorded, EVENTS as i64, "each event recorded once");
}

/// A body that never ends, counting the bytes the server pulls from it.
fn endless(pulled: Arc<AtomicUsize>) -> Body {
    let chunk = Bytes::from(vec![b' '; 1024]);
    Body::from_stream(futures::stream::repeat_with(move || {
        pulled.fetch_add(chunk.len(), Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk.clone())
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_body_over_the_limit_is_refused_unread_and_a_signature_is_checked_before_any_body() {
    // The route's limit (`http::webhooks::MAX_BODY`, private): 256 KiB.
    const MAX_BODY: usize = 256 * 1024;
    let world = World::new().await;
    let hooks = Hooks::new(&world);
    let auth = hooks.sign("{}");
    // Ten megabytes announced: refused on the announcement, not a byte read.
    let pulled = Arc::new(AtomicUsize::new(0));
    let status = hooks.post(endless(pulled.clone()), Some(&auth), Some(10_000_000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "answered without reading the body");
    // No length announced: read up to the limit (256 KiB), and no further.
    let pulled = Arc::new(AtomicUsize::new(0));
    let status = hooks.post(endless(pulled.clone()), Some(&auth), None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let read = pulled.load(Ordering::SeqCst);
    assert!(read > MAX_BODY && read <= MAX_BODY + 1024, "read to the limit and a chunk past it: {read}");
    // Unsigned: refused on its header, its announced megabytes never read.
    let pulled = Arc::new(AtomicUsize::new(0));
    let status = hooks.post(endless(pulled.clone()), None, Some(10_000_000)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "the body of an unsigned request is never read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_at_the_webhook_route_is_refused_then_limited_and_livekits_own_still_get_in() {
    let world = World::configured(|c| c.limits.webhook_refusals_per_minute = 3).await;
    let hooks = Hooks::new(&world);
    let (alice, bob) = (hooks.api.user("female"), hooks.api.user("male"));
    let call = hooks.answered_call(&alice, &[&bob]).await;
    for _ in 0..3 {
        assert_eq!(hooks.deliver_raw("{}", Some("not-a-jwt")).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(hooks.deliver_raw("{}", Some("not-a-jwt")).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(hooks.deliver_raw("{}", None).await, StatusCode::TOO_MANY_REQUESTS);
    let lk = &world.core.config.livekit;
    let forged = sign_with(&lk.api_key, "another-secret-of-at-least-32-characters", "{}");
    assert_eq!(hooks.deliver_raw("{}", Some(&forged)).await, StatusCode::TOO_MANY_REQUESTS);
    // LiveKit itself, from the same address, is never limited.
    let joined = participant_event("participant_joined", &hooks.room(&call), &alice.id, 1_000_000, now());
    for _ in 0..5 {
        assert_eq!(hooks.deliver(&joined).await, StatusCode::NO_CONTENT);
    }
}
