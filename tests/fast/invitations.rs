//! A call grows, through the API in-process: who may invite whom, and a
//! group invitee who declined joins later. Moved down from
//! tests/api/growth.rs, which keeps what only the real LiveKit proves (the
//! newcomer in the same room, hearing the others).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::http::{Api, Caller};
use crate::support::World;

async fn invite(api: &Api, call: &str, by: &Caller, who: &[&Caller]) -> (StatusCode, Value) {
    let ids: Vec<&str> = who.iter().map(|u| u.id.as_str()).collect();
    api.act(call, "invitations", by, json!({"participantIds": ids})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_someone_in_the_call_invites_nobody_twice_and_within_the_limit() {
    let world = World::configured(|c| c.max_call_participants = 3).await;
    let api = Api::new(&world);
    let (alice, bob, carol, dave, stranger) =
        (api.user("female"), api.user("male"), api.user("male"), api.user("male"), api.user("female"));
    let call = api.ring(&alice, &[&bob], "audio").await;
    let (status, _) = invite(&api, &call, &stranger, &[&carol]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a stranger is told the call does not exist");
    let (status, body) = invite(&api, &call, &bob, &[&carol]).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("not_answered")), "{body}");
    let (status, body) = invite(&api, &call, &alice, &[&bob]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("duplicate_participants")),
        "{body}"
    );
    let (status, body) = invite(&api, &call, &alice, &[&carol, &dave]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("too_many_participants")),
        "{body}"
    );
    let (status, body) = invite(&api, &call, &alice, &[&carol]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rung"], json!([carol.id]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_invitee_who_declined_joins_while_the_call_goes_on() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob, carol) = (api.user("female"), api.user("male"), api.user("male"));
    let call = api.ring(&alice, &[&bob, &carol], "audio").await;
    let (status, body) = api.act(&call, "join", &carol, json!({})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("not_answered")), "{body}");
    let (status, body) = api.act(&call, "decline", &carol, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.act(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, joined) = api.act(&call, "join", &carol, json!({})).await;
    assert_eq!(status, StatusCode::OK, "she changed her mind: {joined}");
    let room = world.room_of(callgate::domain::CallId(call.parse().expect("a call id")));
    assert_eq!(joined["join"]["roomName"], room.as_str());
    assert!(world.rooms.has_room(&room), "the call's room is still there");
    let (_, view) = api.get(&format!("/api/v1/calls/{call}"), &alice).await;
    let hers = view["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["userId"] == carol.id.as_str()).cloned());
    assert_eq!(hers.map(|p| p["status"].clone()), Some(json!("accepted")), "{view}");
    let (status, body) = api.act(&call, "join", &carol, json!({})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("already_answered")), "{body}");
}
