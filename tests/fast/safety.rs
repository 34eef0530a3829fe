//! Trust and safety through the API in-process (issue 28): reports of one
//! participant by another, the host's `call.reported` and
//! `consent.violation` app webhooks, and what moderators do (end, remove,
//! suspend, lift), each audited.

use callgate::clock::Clock;
use callgate::domain::consent::{Gender, TrackKind, TrackSource};
use callgate::domain::{AuthUser, CallId, UserId};
use callgate::livekit::TrackSeen;
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::http::{Api, Caller};
use crate::support::{World, in_room, joined, published};

/// The same person as the LiveKit helpers name them.
fn person_of(c: &Caller) -> AuthUser {
    AuthUser {
        id: UserId::parse(&c.id).expect("an id"),
        name: None,
        gender: Gender::Other,
        roles: Default::default(),
    }
}

fn call_id(raw: &str) -> CallId {
    CallId(raw.parse().expect("a call id"))
}

/// `caller` rings `callees` and they answer: the call's id.
async fn answered(api: &Api, caller: &Caller, callees: &[&Caller]) -> String {
    let call = api.ring(caller, callees, "audio").await;
    for callee in callees {
        let (status, body) = api.act(&call, "accept", callee, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    call
}

/// Everyone named is in the call's room (LiveKit says so).
async fn in_the_room(world: &World, call: &str, people: &[&Caller]) {
    let room = world.room_of(call_id(call));
    let now = world.clock.now();
    for who in people {
        let who = person_of(who);
        world.rooms.join(&room, in_room(&who, now));
        world.deliver(&joined(&room, &who, now, now)).await;
    }
}

/// The app webhooks of a kind written for the call, oldest first (their `data`).
async fn hooks(world: &World, call: &str, kind: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "select payload -> 'data' from app_webhook_outbox where call_id = $1 and type = $2 order by created_at, id",
    )
    .bind(call_id(call).0)
    .bind(kind)
    .fetch_all(&world.core.db)
    .await
    .expect("the outbox")
}

async fn count(world: &World, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&world.core.db).await.expect("counted")
}

fn no_gender(value: &Value) {
    let text = value.to_string().to_lowercase();
    for word in ["gender", "female", "male", "consenter"] {
        assert!(!text.contains(word), "{word} in {value}");
    }
}

fn report(reported: &Caller) -> Value {
    json!({"userId": reported.id, "reason": "harassment", "text": "  he kept insulting me  "})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_reports_the_other_and_only_the_host_and_admin_hear_of_it() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob, admin) = (api.user("female"), api.user("male"), api.user_with_roles("male", &["admin"]));
    let stranger = api.user("female");
    let call = answered(&api, &alice, &[&bob]).await;
    in_the_room(&world, &call, &[&alice, &bob]).await;
    // A violation of his in the ledger: a camera while video is off.
    let room = world.room_of(call_id(&call));
    let now = world.clock.now();
    let camera = TrackSeen::honest("TR_cam", TrackKind::Video, TrackSource::Camera);
    world.deliver(&published(&room, &person_of(&bob), now, now, camera)).await;
    api.act(&call, "end", &alice, json!({})).await;

    let (status, filed) = api.post(&format!("/api/v1/calls/{call}/reports"), &alice, report(&bob)).await;

    assert_eq!(status, StatusCode::CREATED, "{filed}");
    assert_eq!(
        (filed["reportedId"].as_str(), filed["reason"].as_str()),
        (Some(bob.id.as_str()), Some("harassment"))
    );
    assert_eq!(filed["text"], "he kept insulting me", "trimmed");
    let sent = hooks(&world, &call, "call.reported").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let hook = &sent[0];
    assert_eq!(hook["reportId"], filed["id"]);
    assert_eq!(
        (hook["reporterId"].as_str(), hook["reportedId"].as_str()),
        (Some(alice.id.as_str()), Some(bob.id.as_str()))
    );
    assert_eq!(hook["callId"].as_str(), Some(call.as_str()));
    assert!(hook["endedAt"].is_string() && hook["reportedAt"].is_string(), "{hook}");
    let violations = hook["violations"].as_array().expect("violations");
    assert_eq!(violations.len(), 1, "{hook}");
    assert_eq!(violations[0]["source"], "camera");
    no_gender(hook);

    // Filed again: the first stands, and nothing more is sent.
    let (again, same) = api.post(&format!("/api/v1/calls/{call}/reports"), &alice, report(&bob)).await;
    assert_eq!((again, &same["id"]), (StatusCode::OK, &filed["id"]));
    assert_eq!(hooks(&world, &call, "call.reported").await.len(), 1);

    // Never shown to him: not in the reports he reads, not in the timeline.
    let (_, his) = api.get(&format!("/api/v1/calls/{call}/reports"), &bob).await;
    assert_eq!(his["reports"], json!([]), "{his}");
    let (_, timeline) = api.get(&format!("/api/v1/calls/{call}/events"), &bob).await;
    assert!(!timeline.to_string().contains("report"), "{timeline}");
    let (_, hers) = api.get(&format!("/api/v1/calls/{call}/reports"), &alice).await;
    assert_eq!(hers["reports"].as_array().map(Vec::len), Some(1));
    let (_, all) = api.get(&format!("/api/v1/calls/{call}/reports"), &admin).await;
    assert_eq!(all["reports"][0]["id"], filed["id"]);
    no_gender(&all);
    let (_, log) = api.get(&format!("/api/v1/admin/audit?callId={call}"), &admin).await;
    assert_eq!(log["entries"][0]["action"], "read_reports", "the moderator's read is audited: {log}");

    // Someone who took no part: not found, either way.
    let (status, _) = api.post(&format!("/api/v1/calls/{call}/reports"), &stranger, report(&bob)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.get(&format!("/api/v1/calls/{call}/reports"), &stranger).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_moderator_does_not_read_the_report_about_them() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, moderator) = (api.user("female"), api.user_with_roles("male", &["admin"]));
    let call = answered(&api, &alice, &[&moderator]).await;
    let (status, body) = api.post(&format!("/api/v1/calls/{call}/reports"), &alice, report(&moderator)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, read) = api.get(&format!("/api/v1/calls/{call}/reports"), &moderator).await;

    assert_eq!((status, &read["reports"]), (StatusCode::OK, &json!([])), "{read}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_report_is_refused_naming_its_field_and_changes_nothing() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob, carol) = (api.user("female"), api.user("male"), api.user("female"));
    let call = answered(&api, &alice, &[&bob]).await;
    let path = format!("/api/v1/calls/{call}/reports");

    for (body, field) in [
        (json!({"userId": bob.id, "reason": "rude"}), "reason"),
        (json!({"userId": bob.id}), "reason"),
        (json!({"userId": bob.id, "reason": "other", "text": "x".repeat(1001)}), "text"),
        (json!({"userId": bob.id, "reason": "other", "text": "a\u{7}b"}), "text"),
        (json!({"userId": alice.id, "reason": "other"}), "userId"),
        (json!({"userId": carol.id, "reason": "other"}), "userId"),
        (json!({"userId": "a b", "reason": "other"}), "userId"),
    ] {
        let (status, problem) = api.post(&path, &alice, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    assert_eq!(count(&world, "select count(*) from call_reports").await, 0);
    assert!(hooks(&world, &call, "call.reported").await.is_empty());

    // The same report, well formed, while the call goes on: taken.
    let (status, body) =
        api.post(&path, &alice, json!({"userId": bob.id, "reason": "other", "text": " "})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("text").is_none(), "a blank text is no text: {body}");
    assert_eq!(hooks(&world, &call, "call.reported").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_limited_per_reporter_and_close_a_while_after_the_call() {
    let world = World::configured(|c| c.limits.reports_per_day = 2).await;
    let api = Api::new(&world);
    let alice = api.user("female");
    let mut calls = Vec::new();
    for _ in 0..3 {
        let other = api.user("male");
        let call = answered(&api, &alice, &[&other]).await;
        api.act(&call, "end", &alice, json!({})).await;
        calls.push((call, other));
    }
    for (call, other) in &calls[..2] {
        let (status, body) = api.post(&format!("/api/v1/calls/{call}/reports"), &alice, report(other)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    let (call, other) = &calls[2];
    let (status, body) = api.post(&format!("/api/v1/calls/{call}/reports"), &alice, report(other)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{body}"
    );

    // A day later she may again, until the window after the call closes.
    world.clock.advance(Duration::days(1));
    let (status, body) = api.post(&format!("/api/v1/calls/{call}/reports"), &alice, report(other)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let window = Duration::from_std(api.config().limits.report_window).expect("a window");
    world.clock.advance(window);
    let late = api.user("male");
    let old = answered(&api, &late, &[&alice]).await;
    api.act(&old, "end", &late, json!({})).await;
    world.clock.advance(window + Duration::seconds(1));
    let (status, body) = api.post(&format!("/api/v1/calls/{old}/reports"), &late, report(&alice)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("report_window_closed")),
        "{body}"
    );
}

async fn audit(api: &Api, admin: &Caller, query: &str) -> Vec<Value> {
    let (status, page) = api.get(&format!("/api/v1/admin/audit?{query}"), admin).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["entries"].as_array().expect("entries").clone()
}

/// The client events `who` was sent.
async fn events_to(world: &World, who: &Caller) -> i64 {
    sqlx::query_scalar("select count(*) from user_events where user_id = $1")
        .bind(&who.id)
        .fetch_one(&world.core.db)
        .await
        .expect("counted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_user_calls_and_is_called_as_if_the_other_were_busy_until_it_is_lifted() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob, carol, dave) =
        (api.user("female"), api.user("male"), api.user("female"), api.user("male"));
    let admin = api.user_with_roles("female", &["admin"]);
    // What a busy callee is answered: carol is in a call with dave.
    answered(&api, &dave, &[&carol]).await;
    let (busy_status, busy) =
        api.post("/api/v1/calls", &alice, json!({"participantIds": [carol.id], "type": "audio"})).await;
    assert_eq!(busy_status, StatusCode::CONFLICT, "{busy}");

    let (status, suspension) = api
        .request(
            "PUT",
            &format!("/api/v1/admin/suspensions/{}", bob.id),
            Some(&admin),
            Some(json!({"reason": "reports of harassment"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{suspension}");
    assert!(suspension.get("endsAt").is_none(), "until lifted: {suspension}");
    let told_bob = events_to(&world, &bob).await;

    // Called: exactly as a busy callee, and he hears nothing.
    let (status, answer) =
        api.post("/api/v1/calls", &alice, json!({"participantIds": [bob.id], "type": "audio"})).await;
    assert_eq!(
        (status, &answer["code"], &answer["detail"]),
        (busy_status, &busy["code"], &busy["detail"]),
        "{answer}"
    );
    assert_eq!(events_to(&world, &bob).await, told_bob, "he is not rung");
    // Calling: whoever he calls looks busy, and nobody rings.
    let told_alice = events_to(&world, &alice).await;
    let (status, answer) =
        api.post("/api/v1/calls", &bob, json!({"participantIds": [alice.id], "type": "video"})).await;
    assert_eq!(
        (status, &answer["code"], &answer["detail"]),
        (busy_status, &busy["code"], &busy["detail"]),
        "{answer}"
    );
    assert_eq!(events_to(&world, &alice).await, told_alice, "she is not rung");

    let (status, lifted) = api
        .post(
            &format!("/api/v1/admin/suspensions/{}/lift", bob.id),
            &admin,
            json!({"reason": "appeal upheld"}),
        )
        .await;
    assert_eq!((status, &lifted["lifted"]), (StatusCode::OK, &json!(true)), "{lifted}");
    api.ring(&alice, &[&bob], "audio").await;

    let entries = audit(&api, &admin, &format!("userId={}", bob.id)).await;
    let actions: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["lift_suspension", "suspend"], "newest first");
    assert_eq!(entries[1]["actorId"].as_str(), Some(admin.id.as_str()));
    assert_eq!(entries[1]["reason"], "reports of harassment");
    assert!(entries[1]["at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_for_a_time_ends_by_itself() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob) = (api.user("female"), api.user("male"));
    let admin = api.user_with_roles("female", &["admin"]);
    let body = json!({"reason": "a day off", "durationSeconds": 3600});
    let (status, s) =
        api.request("PUT", &format!("/api/v1/admin/suspensions/{}", bob.id), Some(&admin), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let (status, _) = api.get(&format!("/api/v1/admin/suspensions/{}", bob.id), &admin).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        api.post("/api/v1/calls", &alice, json!({"participantIds": [bob.id], "type": "audio"})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    world.clock.advance(Duration::seconds(3600));

    api.ring(&alice, &[&bob], "audio").await;
    let (status, _) = api.get(&format!("/api/v1/admin/suspensions/{}", bob.id), &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admin_moderates_and_bad_input_is_refused_naming_its_field_changing_nothing() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob) = (api.user("female"), api.user("male"));
    let admin = api.user_with_roles("female", &["admin"]);
    let call = answered(&api, &alice, &[&bob]).await;
    let suspend = format!("/api/v1/admin/suspensions/{}", bob.id);

    for (method, path, body) in [
        ("PUT", suspend.clone(), json!({"reason": "x"})),
        ("POST", format!("{suspend}/lift"), json!({"reason": "x"})),
        ("POST", format!("/api/v1/admin/calls/{call}/end"), json!({"reason": "x"})),
        ("POST", format!("/api/v1/admin/calls/{call}/remove"), json!({"userId": bob.id, "reason": "x"})),
        ("GET", "/api/v1/admin/audit".to_owned(), Value::Null),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (status, problem) = api.request(method, &path, Some(&alice), body).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("admin_only")), "{path}");
    }
    for (method, path, body, field) in [
        ("PUT", suspend.clone(), json!({"reason": " "}), "reason"),
        ("PUT", suspend.clone(), json!({"reason": "x", "durationSeconds": 59}), "durationSeconds"),
        ("PUT", suspend.clone(), json!({"reason": "x", "durationSeconds": -1}), "durationSeconds"),
        ("PUT", suspend.clone(), json!({"reason": "x", "durationSeconds": i64::MAX}), "durationSeconds"),
        ("PUT", suspend.clone(), json!({"reason": "x", "durationSeconds": i64::MIN}), "durationSeconds"),
        ("PUT", suspend.clone(), json!({"reason": "x", "durationSeconds": "1h"}), "durationSeconds"),
        ("PUT", "/api/v1/admin/suspensions/a%20b".to_owned(), json!({"reason": "x"}), "userId"),
        ("POST", format!("/api/v1/admin/calls/{call}/end"), json!({"reason": "r".repeat(1001)}), "reason"),
        ("POST", format!("/api/v1/admin/calls/{call}/remove"), json!({"reason": "x"}), "userId"),
        ("POST", format!("/api/v1/admin/calls/{call}/remove"), json!({"userId": bob.id}), "reason"),
    ] {
        let (status, problem) = api.request(method, &path, Some(&admin), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let (status, _) = api.get("/api/v1/admin/audit?limit=0", &admin).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(count(&world, "select count(*) from suspensions").await, 0);
    assert_eq!(count(&world, "select count(*) from audit_log").await, 0);
    let (_, view) = api.get(&format!("/api/v1/calls/{call}"), &alice).await;
    assert_eq!(view["state"], "connecting", "the call goes on: {view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_removes_a_participant_for_good_and_ends_the_call_each_audited_and_heard_by_the_host() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob, carol) = (api.user("female"), api.user("male"), api.user("female"));
    let admin = api.user_with_roles("male", &["admin"]);
    let call = answered(&api, &alice, &[&bob, &carol]).await;
    in_the_room(&world, &call, &[&alice, &bob, &carol]).await;
    let room = world.room_of(call_id(&call));

    let (status, after) = api
        .post(
            &format!("/api/v1/admin/calls/{call}/remove"),
            &admin,
            json!({"userId": bob.id, "reason": "nudity"}),
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{after}");
    let his = after["call"]["participants"]
        .as_array()
        .expect("people")
        .iter()
        .find(|p| p["userId"] == bob.id.as_str())
        .cloned();
    assert_eq!(his.map(|p| p["status"].clone()), Some(json!("removed")));
    // The removal's own settling runs after its commit: waited for, not slept on.
    world.core.quiesce().await;
    assert!(world.rooms.removed().contains(&(room.clone(), bob.id.clone())), "he is put out of the room");
    let (status, _) = api.post(&format!("/api/v1/calls/{call}/token"), &bob, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "no token for him");
    let heard = hooks(&world, &call, "consent.violation").await;
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(
        (heard[0]["userId"].as_str(), heard[0]["violation"].as_str()),
        (Some(bob.id.as_str()), Some("removed_by_moderator"))
    );
    assert_eq!(
        (heard[0]["removed"].clone(), heard[0]["moderatorId"].as_str()),
        (json!(true), Some(admin.id.as_str()))
    );
    no_gender(&heard[0]);

    let (status, ended) =
        api.post(&format!("/api/v1/admin/calls/{call}/end"), &admin, json!({"reason": "the reports"})).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(
        (ended["call"]["state"].as_str(), ended["call"]["endReason"].as_str()),
        (Some("ended"), Some("moderator"))
    );
    // The participants are not told who ended it, nor why.
    let (_, timeline) = api.get(&format!("/api/v1/calls/{call}/events"), &alice).await;
    let text = timeline.to_string();
    assert!(
        !text.contains(&admin.id) && !text.contains("the reports") && !text.contains("nudity"),
        "{timeline}"
    );
    let (status, _) =
        api.post(&format!("/api/v1/admin/calls/{call}/end"), &admin, json!({"reason": "again"})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let entries = audit(&api, &admin, &format!("callId={call}")).await;
    let did: Vec<(&str, Option<&str>, &str)> = entries
        .iter()
        .map(|e| {
            (e["action"].as_str().unwrap_or(""), e["userId"].as_str(), e["reason"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        did,
        [("end_call", None, "the reports"), ("remove_participant", Some(bob.id.as_str()), "nudity")]
    );
    assert!(entries.iter().all(|e| e["actorId"] == admin.id.as_str()));
    // And the full ledger is the moderator's to read.
    let (status, _) = api.get(&format!("/api/v1/calls/{call}/consent"), &admin).await;
    assert_eq!(status, StatusCode::OK);
    let read = &audit(&api, &admin, &format!("callId={call}")).await[0];
    assert_eq!(
        (read["action"].as_str(), read["actorId"].as_str()),
        (Some("read_ledger"), Some(admin.id.as_str()))
    );
    assert!(read.get("reason").is_none(), "a read has no reason: {read}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_violation_of_the_video_rule_tells_the_host_the_offender_and_its_kind() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob, carol, mallory) =
        (api.user("female"), api.user("male"), api.user("female"), api.user("male"));
    let call = answered(&api, &alice, &[&bob, &carol, &mallory]).await;
    in_the_room(&world, &call, &[&alice, &bob, &carol, &mallory]).await;
    let room = world.room_of(call_id(&call));
    let now = world.clock.now();
    let (him, disguiser) = (person_of(&bob), person_of(&mallory));

    for sid in ["TR_cam1", "TR_cam2"] {
        let camera = TrackSeen::honest(sid, TrackKind::Video, TrackSource::Camera);
        world.deliver(&published(&room, &him, now, now, camera)).await;
    }
    let disguised = TrackSeen {
        media: Some(TrackKind::Video),
        ..TrackSeen::honest("TR_mic", TrackKind::Audio, TrackSource::Microphone)
    };
    world.deliver(&published(&room, &disguiser, now, now, disguised)).await;
    // Back with his old token, in a session begun after his removal.
    let back = now + Duration::seconds(5);
    world.rooms.join(&room, in_room(&disguiser, back));
    world.deliver(&joined(&room, &disguiser, back, back)).await;
    world.deliver(&joined(&room, &disguiser, back, back)).await;

    let heard: Vec<(String, String, bool)> = hooks(&world, &call, "consent.violation")
        .await
        .iter()
        .inspect(|h| no_gender(h))
        .map(|h| {
            let s = |k: &str| h[k].as_str().unwrap_or_default().to_owned();
            (s("userId"), s("violation"), h["removed"] == json!(true))
        })
        .collect();
    assert_eq!(
        heard,
        [
            (bob.id.clone(), "camera_while_video_off".to_owned(), false),
            (bob.id.clone(), "camera_while_video_off_again".to_owned(), true),
            (mallory.id.clone(), "video_under_another_label".to_owned(), true),
            (mallory.id.clone(), "back_after_removal".to_owned(), true),
        ],
        "once per session"
    );
}
