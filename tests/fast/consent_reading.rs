//! What a participant can read of who consented, and the consent decisions
//! that do not depend on a real SFU: the same answers whoever is in the
//! call, each person counted as herself, an off that fails to commit never
//! reaching LiveKit, a request's deadline. Through the API in-process
//! (`http::Api`), LiveKit being `FakeRooms`. Moved down from
//! tests/api/consent_integrity.rs and tests/api/consent.rs; what a modified
//! client does to the real LiveKit stays there.

use callgate::clock::Clock;
use callgate::domain::consent::TrackSource;
use callgate::domain::{AuthUser, CallId, UserId};
use callgate::infra::auth::{DevToken, mint_dev_token};
use callgate::livekit::fake::Asked;
use chrono::Duration;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::consent_api::{answer, ledger_kinds, request_video, revoke, sources_of, video};
use crate::http::{Api, Caller};
use crate::support::{World, in_room, joined};

fn call_id(call: &str) -> CallId {
    CallId(Uuid::parse_str(call).expect("a call id"))
}

/// Everyone named is in the call's room, as LiveKit lists them and as its
/// webhooks told callgate.
async fn in_the_room(world: &World, call: &str, people: &[&Caller]) {
    let room = world.room_of(call_id(call));
    let now = world.clock.now();
    for who in people {
        let who = AuthUser {
            id: UserId::parse(&who.id).expect("an id"),
            name: None,
            gender: callgate::domain::consent::Gender::Other,
            roles: Default::default(),
        };
        world.rooms.join(&room, in_room(&who, now));
        world.deliver(&joined(&room, &who, now, now)).await;
    }
}

/// A user whose token says nothing of their gender.
fn without_gender(world: &World) -> Caller {
    let jwt = &world.core.config.jwt;
    let secret = match &jwt.key {
        callgate::config::JwtKey::Hmac(secret) => secret.expose_secret().to_owned(),
        _ => panic!("the fast world signs with JWT_SECRET"),
    };
    let id = format!("u-{}", Uuid::new_v4().simple());
    let claims = DevToken {
        user: &id,
        name: None,
        gender: None,
        roles: &[],
        ttl: std::time::Duration::from_secs(3600),
    };
    let token = mint_dev_token(&secret, jwt, &claims).expect("a token");
    Caller { id, token }
}

/// What a participant can read and receive of a call: the ledger, the
/// timeline, `GET /calls/{id}/video`, `GET /calls/{id}` and the events
/// written for them (in the order their event stream delivers them), with
/// ids masked, users named by role and times replaced by their order and
/// equality classes. Read once LiveKit has been told the last change.
async fn what_he_can_read(
    world: &World,
    api: &Api,
    call: &str,
    reader: &Caller,
    roles: &[(&Caller, &str)],
) -> String {
    world.settle(call_id(call)).await;
    assert_eq!(video(api, call, reader).await["sfuConfirmed"], true, "LiveKit confirmed the video state");
    let (_, ledger) = api.get(&format!("/api/v1/calls/{call}/consent"), reader).await;
    let (status, timeline) = api.get(&format!("/api/v1/calls/{call}/events"), reader).await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    // LiveKit's own events (room started, ...) come when LiveKit sends them:
    // what every client in the room sees anyway, and nothing of consent.
    let timeline: Vec<&Value> =
        timeline["events"].as_array().expect("events").iter().filter(|e| e["source"] != "livekit").collect();
    let (_, video_view) = api.get(&format!("/api/v1/calls/{call}/video"), reader).await;
    let (status, the_call) = api.get(&format!("/api/v1/calls/{call}"), reader).await;
    assert_eq!(status, StatusCode::OK, "{the_call}");
    let events: Vec<(String, Value, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "select type, data, created_at from user_events where call_id = $1 and user_id = $2 \
         order by created_at, seq",
    )
    .bind(call_id(call).0)
    .bind(&reader.id)
    .fetch_all(&world.core.db)
    .await
    .expect("events");
    let mut text = json!({"ledger": ledger, "timeline": timeline, "video": video_view, "call": the_call,
        "events": events})
    .to_string();
    for (user, role) in roles {
        text = text.replace(&user.id, role);
    }
    text = text.replace(call, "CALL");
    let mut read: Value = serde_json::from_str(&text).expect("JSON");
    in_role_order(&mut read);
    mask(&read.to_string())
}

/// Lists of participants come in the order of their ids, which are drawn at
/// random for each test user: ordered by role instead.
fn in_role_order(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                if let (true, Value::Array(people)) = (key == "participants", &mut *field) {
                    people.sort_by(|a, b| a["userId"].as_str().cmp(&b["userId"].as_str()));
                }
                in_role_order(field);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(in_role_order),
        _ => {}
    }
}

/// Replaces UUIDs, display names and numbers by placeholders, and times by
/// their rank among the times of the text (`T1` the earliest; equal times,
/// equal ranks).
fn mask(text: &str) -> String {
    let uuid =
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").expect("re");
    let time = regex::Regex::new(r#""(\d{4}-\d\d-\d\dT[^"]*)""#).expect("re");
    let name = regex::Regex::new(r#""name":"[^"]*""#).expect("re");
    let number = regex::Regex::new(r"\b\d+\b").expect("re");
    let instant = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("an RFC 3339 time");
    let mut times: Vec<_> = time.captures_iter(text).map(|c| instant(&c[1])).collect();
    times.sort();
    times.dedup();
    let text = time.replace_all(text, |c: &regex::Captures| {
        let rank = times.binary_search(&instant(&c[1])).expect("a time of the text");
        format!("\"T{}\"", to_letters(rank))
    });
    let text = uuid.replace_all(&text, "ID");
    let text = name.replace_all(&text, "\"name\":\"NAME\"");
    number.replace_all(&text, "N").into_owned()
}

/// A rank in letters (`A`, `B`, ... `Z`, `BA`, ...), which the masking of
/// numbers leaves alone.
fn to_letters(mut n: usize) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'A' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    letters.reverse();
    String::from_utf8(letters).expect("ASCII")
}

/// M calls X, X answers; M asks for video, X accepts, then X turns it off.
async fn the_same_steps_with(world: &World, api: &Api, other: &Caller) -> String {
    let him = api.user("male");
    let call = api.ring(&him, &[other], "audio").await;
    api.act(&call, "accept", other, json!({})).await;
    let (_, body) = request_video(api, &call, &him).await;
    let request = body["request"]["id"].as_str().expect("id").to_owned();
    let (status, body) = answer(api, &call, &request, other, "accept").await;
    assert_eq!((status, &body["state"]), (StatusCode::OK, &json!("on")), "{body}");
    let (status, body) = revoke(api, &call, other).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    what_he_can_read(world, api, &call, &him, &[(&him, "M"), (other, "X")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn his_view_of_a_call_with_a_woman_equals_his_view_of_the_same_call_with_a_man() {
    let world = World::new().await;
    let api = Api::new(&world);
    let with_her = the_same_steps_with(&world, &api, &api.user("female")).await;
    let with_him = the_same_steps_with(&world, &api, &api.user("male")).await;
    assert_eq!(with_her, with_him);
    assert!(with_her.contains("consent"), "the ledger is there: {with_her}");
}

/// M calls W1 and W2, both answer; M asks; W1 answers, then W2 does: the
/// one numbered `declining` says no, the other yes.
async fn group_where(world: &World, api: &Api, declining: usize) -> String {
    let (him, w1, w2) = (api.user("male"), api.user("female"), api.user("female"));
    let call = api.ring(&him, &[&w1, &w2], "audio").await;
    for w in [&w1, &w2] {
        api.act(&call, "accept", w, json!({})).await;
    }
    let (_, body) = request_video(api, &call, &him).await;
    let request = body["request"]["id"].as_str().expect("id").to_owned();
    for (n, w) in [(1, &w1), (2, &w2)] {
        let verb = if n == declining { "reject" } else { "accept" };
        let (status, body) = answer(api, &call, &request, w, verb).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let expected = if n == 1 { "requested" } else { "off" };
        assert_eq!(body["state"], expected, "decided with the last answer: {body}");
    }
    what_he_can_read(world, api, &call, &him, &[(&him, "M"), (&w1, "W1"), (&w2, "W2")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_group_he_cannot_tell_which_woman_declined() {
    let world = World::new().await;
    let api = Api::new(&world);
    let w2_declined = group_where(&world, &api, 2).await;
    let w1_declined = group_where(&world, &api, 1).await;
    assert_eq!(w2_declined, w1_declined);
    assert!(w2_declined.contains(r#""kind":"declined""#), "the outcome is in his ledger: {w2_declined}");
    assert!(!w2_declined.contains(r#""kind":"reject""#), "nobody's answer is: {w2_declined}");
}

/// M calls W1 and W2 for video; W1 answers the call, then W2: the one
/// numbered `declining` with `video: false`, the other with `video: true`.
async fn video_call_where(world: &World, api: &Api, declining: usize) -> String {
    let (him, w1, w2) = (api.user("male"), api.user("female"), api.user("female"));
    let call = api.ring(&him, &[&w1, &w2], "video").await;
    for (n, w) in [(1, &w1), (2, &w2)] {
        let (status, body) = api.act(&call, "accept", w, json!({"video": n != declining})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let expected = if n == 1 { "requested" } else { "off" };
        assert_eq!(body["call"]["video"], expected, "decided with the last answer: {body}");
    }
    what_he_can_read(world, api, &call, &him, &[(&him, "M"), (&w1, "W1"), (&w2, "W2")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn he_cannot_tell_which_of_the_two_women_he_called_for_video_declined_it() {
    let world = World::new().await;
    let api = Api::new(&world);
    let w2_declined = video_call_where(&world, &api, 2).await;
    let w1_declined = video_call_where(&world, &api, 1).await;
    assert_eq!(w2_declined, w1_declined);
    assert!(w2_declined.contains(r#""kind":"declined""#), "the outcome is in his ledger: {w2_declined}");
    assert!(w2_declined.contains("video.declined"), "and among his events: {w2_declined}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_by_a_non_consenter_while_video_is_off_answers_the_same_whoever_is_present() {
    let world = World::new().await;
    let api = Api::new(&world);
    let mut answers = Vec::new();
    for other in [api.user("female"), api.user("male")] {
        let him = api.user("male");
        let call = api.ring(&him, &[&other], "audio").await;
        api.act(&call, "accept", &other, json!({})).await;
        let (status, body) = revoke(&api, &call, &him).await;
        answers.push((status, body["code"].clone(), body["detail"].clone()));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, StatusCode::CONFLICT);
    assert_eq!(answers[0].1, "video_off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointment_counts_each_guest_as_herself() {
    let world = World::configured(|c| c.appointments.auto_admit = true).await;
    let api = Api::new(&world);
    let service = api.user_with_roles("other", &["service"]);
    let (w1, w2, m) = (api.user("female"), api.user("female"), api.user("male"));
    let at = |s: i64| (world.clock.now() + Duration::seconds(s)).to_rfc3339();
    let body = json!({"externalRef": format!("c-{}", Uuid::new_v4().simple()), "type": "audio",
        "startsAt": at(60), "endsAt": at(600), "hosts": [w1.id], "guests": [w2.id, m.id]});
    let (status, booked) = api.post("/api/v1/appointments", &service, body).await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    let id = booked["id"].as_str().expect("id").to_owned();
    let mut call = String::new();
    for who in [&w1, &m, &w2] {
        let (status, body) = api.post(&format!("/api/v1/appointments/{id}/join"), who, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        call = body["call"]["id"].as_str().expect("call").to_owned();
    }
    let (status, body) = request_video(&api, &call, &m).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let request = body["request"]["id"].as_str().expect("id").to_owned();
    let (_, body) = answer(&api, &call, &request, &w1, "accept").await;
    assert_eq!(body["state"], "requested", "W2 has not consented yet: {body}");
    let (_, body) = answer(&api, &call, &request, &w2, "accept").await;
    assert_eq!(body["state"], "on", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_whose_token_has_no_gender_claim_must_consent() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (him, them) = (api.user("male"), without_gender(&world));
    let call = api.ring(&him, &[&them], "audio").await;
    let (status, body) = api.act(&call, "accept", &them, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = request_video(&api, &call, &him).await;
    assert_eq!(video(&api, &call, &him).await["state"], "requested", "not on at once: {body}");
    assert_eq!(video(&api, &call, &them).await["canAnswer"], true);
    let request = body["request"]["id"].as_str().expect("id").to_owned();
    let (_, body) = answer(&api, &call, &request, &them, "accept").await;
    assert_eq!(body["state"], "on");
}

/// Whether LiveKit lets `who` publish a camera in the call's room now.
fn camera_right(world: &World, call: &str, who: &Caller) -> Option<bool> {
    let room = world.room_of(call_id(call));
    world.rooms.publish_sources_of(&room, &who.id).map(|sources| sources.contains(&TrackSource::Camera))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_off_whose_commit_fails_is_never_enforced() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (him, her) = (api.user("male"), api.user("female"));
    let call = api.ring(&him, &[&her], "audio").await;
    api.act(&call, "accept", &her, json!({})).await;
    in_the_room(&world, &call, &[&him, &her]).await;
    let (_, body) = request_video(&api, &call, &him).await;
    let request = body["request"]["id"].as_str().expect("id").to_owned();
    let (_, body) = answer(&api, &call, &request, &her, "accept").await;
    assert_eq!(body["state"], "on");
    world.settle(call_id(&call)).await;
    assert_eq!(camera_right(&world, &call, &him), Some(true), "his camera right is in force");

    // A deferred trigger makes this call's revoke fail at COMMIT, after
    // everything else in its transaction ran.
    let ddl = [
        "create function fail_commit() returns trigger language plpgsql as \
         $$ begin raise exception 'commit refused for the test'; end $$"
            .to_owned(),
        format!(
            "create constraint trigger fail_commit after insert on consent_ledger \
             deferrable initially deferred for each row \
             when (new.call_id = '{call}' and new.kind = 'revoke') execute function fail_commit()"
        ),
    ];
    for sql in ddl {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&world.core.db).await.expect("ddl");
    }
    let (status, body) = revoke(&api, &call, &her).await;
    for sql in ["drop trigger fail_commit on consent_ledger", "drop function fail_commit()"] {
        sqlx::query(sql).execute(&world.core.db).await.expect("ddl");
    }
    assert!(status.is_server_error(), "the revoke did not commit: {status} {body}");
    assert_eq!(video(&api, &call, &her).await["state"], "on", "nothing changed");
    world.settle(call_id(&call)).await;
    assert_eq!(
        camera_right(&world, &call, &him),
        Some(true),
        "LiveKit was not told an off that never committed"
    );
    let rights_of_his: Vec<Vec<TrackSource>> = world
        .rooms
        .asked()
        .into_iter()
        .filter_map(|asked| match asked {
            Asked::Rights { identity, sources, .. } if identity == him.id => Some(sources),
            _ => None,
        })
        .collect();
    let first_on = rights_of_his.iter().position(|s| s.contains(&TrackSource::Camera)).expect("an on pushed");
    assert!(
        rights_of_his[first_on..].iter().all(|s| s.contains(&TrackSource::Camera)),
        "no push took his camera away: {rights_of_his:?}"
    );
    let revokes: i64 =
        sqlx::query_scalar("select count(*) from consent_ledger where call_id = $1 and kind = 'revoke'")
            .bind(call_id(&call).0)
            .fetch_one(&world.core.db)
            .await
            .expect("counted");
    assert_eq!(revokes, 0);

    let (status, body) = revoke(&api, &call, &her).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sfuConfirmed"], true, "{body}");
    assert_eq!(camera_right(&world, &call, &him), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_expires_when_its_deadline_fires_even_if_this_instance_thinks_it_is_early() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (him, her) = (api.user("male"), api.user("female"));
    let call = api.ring(&him, &[&her], "audio").await;
    api.act(&call, "accept", &her, json!({})).await;
    let (status, body) = request_video(&api, &call, &him).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let expires: chrono::DateTime<chrono::Utc> =
        body["request"]["expiresAt"].as_str().expect("expiresAt").parse().expect("a time");
    // As if this instance's clock lagged: the request expires well after
    // now by the app's clock, but its deadline (a job) is due now.
    let due =
        sqlx::query("update jobs set run_at = $2 where dedupe_key = 'deadline:video_request:' || $1::text")
            .bind(call_id(&call).0)
            .bind(world.clock.now() - Duration::seconds(1))
            .execute(&world.core.db)
            .await
            .expect("due now");
    assert_eq!(due.rows_affected(), 1, "the request's deadline is a job");
    assert_eq!(video(&api, &call, &her).await["state"], "requested");

    assert_eq!(world.fire_some_deadlines().await, 1);

    assert!(world.clock.now() < expires, "the app's clock still says it is early");
    assert_eq!(video(&api, &call, &her).await["state"], "off", "the request expired when its deadline fired");
    let kinds = ledger_kinds(&api, &call, &him).await;
    assert_eq!(kinds.last().map(String::as_str), Some("expire"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn his_video_call_answered_by_her_without_video_stays_audio_only() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (him, her) = (api.user("male"), api.user("female"));
    let (status, started) =
        api.post("/api/v1/calls", &him, json!({"participantIds": [her.id], "type": "video"})).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["call"]["video"], "off", "no video before she answers");
    let call = started["call"]["id"].as_str().expect("an id").to_owned();
    let (status, body) = api.act(&call, "accept", &her, json!({"video": false})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["call"]["video"], "off");
    assert_eq!(sources_of(&world, &body["join"]), vec!["microphone"]);
    // Once both are in the room, LiveKit lets neither publish a camera.
    in_the_room(&world, &call, &[&him, &her]).await;
    world.settle(call_id(&call)).await;
    assert_eq!(camera_right(&world, &call, &her), Some(false), "her camera is refused");
    assert_eq!(camera_right(&world, &call, &him), Some(false), "his camera is refused");
    let (status, _) = request_video(&api, &call, &him).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "her `video: false` was a reject");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn his_video_call_answered_by_her_without_a_word_asks_her_once() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (him, her) = (api.user("male"), api.user("female"));
    let call = api.ring(&him, &[&her], "video").await;
    let (status, body) = api.act(&call, "accept", &her, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["call"]["video"], "requested");
    let asked: Vec<String> = sqlx::query_scalar(
        "select type from user_events where call_id = $1 and user_id = $2 and type like 'video.%' order by seq",
    )
    .bind(call_id(&call).0)
    .bind(&her.id)
    .fetch_all(&world.core.db)
    .await
    .expect("her events");
    assert_eq!(asked, vec!["video.requested"], "asked once, by one event for her");
}
