//! A call's timeouts and its ringing through the API in-process: a ring
//! nobody answers, a connect nobody makes, fifty callers at once, and a
//! deadline that cannot be handled. The deadlines come due by moving the
//! `FakeClock`; LiveKit is `FakeRooms`. Moved down from tests/api/calls.rs,
//! which keeps what only the real LiveKit proves (its rooms and tokens).

use callgate::clock::Clock;
use callgate::domain::CallId;
use callgate::workers::jobs;
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::http::{Api, Caller};
use crate::support::World;

fn call_id(call: &str) -> CallId {
    CallId(Uuid::parse_str(call).expect("a call id"))
}

fn has_room(world: &World, call: &str) -> bool {
    world.rooms.has_room(&world.room_of(call_id(call)))
}

async fn view(api: &Api, call: &str, who: &Caller) -> Value {
    let (status, body) = api.get(&format!("/api/v1/calls/{call}"), who).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Moves the clock just past `timeout`.
fn past(world: &World, timeout: std::time::Duration) {
    world.clock.advance(Duration::from_std(timeout).expect("a duration") + Duration::seconds(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_is_missed_when_ringing_times_out() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob) = (api.user("female"), api.user("male"));
    let call = api.ring(&alice, &[&bob], "audio").await;
    assert_eq!(jobs::run_due(&world.core).await.expect("a run").deadlines, 0, "not before it is due");
    assert_eq!(view(&api, &call, &alice).await["state"], "ringing");

    past(&world, world.core.config.timeouts.ringing);
    assert_eq!(world.fire_some_deadlines().await, 1);

    let body = view(&api, &call, &alice).await;
    assert_eq!(body["state"], "ended");
    assert_eq!(body["outcome"], "missed");
    assert_eq!(body["endReason"], "timeout");
    assert!(!has_room(&world, &call), "the room is gone");
    assert_eq!(world.rooms.deleted(), vec![world.room_of(call_id(&call))]);
    let missed: i64 = sqlx::query_scalar(
        "select count(*) from user_events where call_id = $1 and type = 'call.missed' \
         and user_id = (select initiator_id from calls where id = $1)",
    )
    .bind(call_id(&call).0)
    .fetch_one(&world.core.db)
    .await
    .expect("counted");
    assert_eq!(missed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_timeout_fails_a_call_nobody_joins() {
    // Shorter than the ring, whose deadline is not due yet.
    let world = World::configured(|c| c.timeouts.connect = std::time::Duration::from_secs(5)).await;
    let api = Api::new(&world);
    let (alice, bob) = (api.user("female"), api.user("male"));
    let call = api.ring(&alice, &[&bob], "audio").await;
    let (status, body) = api.act(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["call"]["state"], "connecting");

    past(&world, world.core.config.timeouts.connect);
    assert_eq!(world.fire_some_deadlines().await, 1);

    let body = view(&api, &call, &alice).await;
    assert_eq!(body["state"], "ended");
    assert_eq!(body["outcome"], "failed");
    assert_eq!(body["endReason"], "timeout");
    assert!(!has_room(&world, &call), "the room is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_to_one_callee_ring_once() {
    // A connection for each request: the race is decided in PostgreSQL.
    let world = World::configured(|c| c.database_pool_size = 52).await;
    let api = Api::new(&world);
    let callee = api.user("female");
    let callers: Vec<_> = (0..50).map(|_| api.user("male")).collect();
    let attempts = callers.iter().map(|caller| {
        api.post("/api/v1/calls", caller, json!({"participantIds": [callee.id], "type": "audio"}))
    });
    let results = futures::future::join_all(attempts).await;
    let statuses: Vec<StatusCode> = results.iter().map(|(s, _)| *s).collect();
    let rung = results.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let busy: Vec<_> = results.iter().filter(|(s, _)| *s == StatusCode::CONFLICT).collect();
    assert_eq!(rung, 1, "exactly one call rings: {statuses:?}");
    assert_eq!(
        busy.len(),
        49,
        "{:?}",
        results.iter().find(|(s, _)| *s != StatusCode::CONFLICT && *s != StatusCode::CREATED)
    );
    assert!(busy.iter().all(|(_, b)| b["code"] == "callee_busy"));
    let (_, active) = api.get("/api/v1/calls/active", &callee).await;
    assert_eq!(active["calls"].as_array().map(Vec::len), Some(1));
    // The busy calls are recorded, for their callers: someone written busy
    // never took part in a call, and does not see it.
    let (_, history) = api.get("/api/v1/calls/history?limit=100", &callee).await;
    assert_eq!(history["calls"].as_array().map(Vec::len), Some(1), "only the call that rang her: {history}");
    let mut busy_outcomes = 0;
    for caller in &callers {
        let (_, history) = api.get("/api/v1/calls/history?limit=10", caller).await;
        let calls = history["calls"].as_array().expect("calls");
        busy_outcomes += calls.iter().filter(|c| c["outcome"] == "busy").count();
    }
    assert_eq!(busy_outcomes, 49, "busy calls are recorded");
    assert_eq!(world.rooms.room_names().len(), 1, "LiveKit has the one room that rings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_cannot_be_handled_does_not_hold_back_the_others() {
    let world = World::new().await;
    let api = Api::new(&world);
    // Calls whose rows the service cannot read (a consent state it never
    // writes), each with a ringing deadline long due: handling them fails
    // every time.
    let mut broken = Vec::new();
    for _ in 0..3 {
        let id = Uuid::new_v4();
        sqlx::query(
            "insert into calls (id, room_name, type, state, initiator_id, video_session) \
             values ($1, $2, 'audio', 'ringing', 'u-broken', '\"not a session\"')",
        )
        .bind(id)
        .bind(format!("{}{id}", world.core.config.room_prefix))
        .execute(&world.core.db)
        .await
        .expect("insert a broken call");
        sqlx::query(
            "insert into jobs (kind, lane, dedupe_key, payload, run_at) \
             values ('deadline', 'call:' || $1::text, 'deadline:ringing:' || $1::text, \
                     jsonb_build_object('kind', 'deadline', 'call', $1, 'deadline', 'ringing'), $2)",
        )
        .bind(id)
        .bind(world.clock.now() - Duration::hours(1))
        .execute(&world.core.db)
        .await
        .expect("insert its deadline");
        broken.push(id);
    }

    let (alice, bob) = (api.user("female"), api.user("male"));
    let call = api.ring(&alice, &[&bob], "audio").await;
    past(&world, world.core.config.timeouts.ringing);
    let ran = jobs::run_due(&world.core).await.expect("a run");

    assert_eq!((ran.deadlines, ran.failed), (1, 3), "{ran:?}");
    let body = view(&api, &call, &alice).await;
    assert_eq!(body["outcome"], "missed", "the good deadline fired behind the broken ones");
    let kept: i64 = sqlx::query_scalar("select count(*) from jobs where lane = any($1)")
        .bind(broken.iter().map(|id| format!("call:{id}")).collect::<Vec<_>>())
        .fetch_one(&world.core.db)
        .await
        .expect("count");
    assert_eq!(kept, 3, "a failing deadline is kept, to be tried again");
}
