//! No pestering, through the API in-process: after three declines a caller
//! cannot ring the same callee for a while, and a user may block another;
//! a block looks to the blocked caller exactly like a busy callee. Moved
//! down from the real stack: the cooldown and the blocks live in
//! PostgreSQL, and whether someone is rung is the `call.incoming` row their
//! stream is fed from.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::http::{Api, Caller};
use crate::support::World;

/// `caller` rings `callee`, who declines; the call's id.
async fn decline(api: &Api, caller: &Caller, callee: &Caller) -> String {
    let call = api.ring(caller, &[callee], "audio").await;
    let (status, body) = api.act(&call, "decline", callee, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    call
}

async fn start_call(api: &Api, caller: &Caller, callees: &[&Caller]) -> (StatusCode, Value) {
    let ids: Vec<&str> = callees.iter().map(|c| c.id.as_str()).collect();
    api.post("/api/v1/calls", caller, json!({"participantIds": ids, "type": "audio"})).await
}

/// The calls `who` was rung for (`call.incoming` events written for them).
async fn rung(world: &World, who: &Caller) -> Vec<uuid::Uuid> {
    sqlx::query_scalar("select call_id from user_events where user_id = $1 and type = 'call.incoming'")
        .bind(&who.id)
        .fetch_all(&world.core.db)
        .await
        .expect("the events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_three_declines_the_fourth_call_is_refused_with_retry_after_and_never_rings() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob, carol, dave) =
        (api.user("female"), api.user("male"), api.user("female"), api.user("male"));
    let mut declined = Vec::new();
    for _ in 0..3 {
        declined.push(decline(&api, &bob, &alice).await);
    }
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/api/v1/calls")
        .header("authorization", format!("Bearer {}", bob.token))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(json!({"participantIds": [alice.id], "type": "audio"}).to_string()))
        .expect("a request");
    let response = api.respond(req).await;
    assert_eq!(response.status().as_u16(), 429);
    let wait: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=600).contains(&wait), "within the ten-minute window: {wait}");
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.expect("a body").to_bytes();
    let body: Value = serde_json::from_slice(&bytes).expect("a problem");
    assert_eq!(body["code"], "ring_cooldown", "{body}");
    let rings = rung(&world, &alice).await;
    assert_eq!(rings.len(), 3, "she was rung for the declined calls and never again: {rings:?}");
    assert!(rings.iter().all(|c| declined.contains(&c.to_string())), "{rings:?} {declined:?}");

    // Only that pair: Bob may call Carol, and Dave may call Alice.
    api.ring(&bob, &[&carol], "audio").await;
    api.ring(&dave, &[&alice], "audio").await;
}

/// What a caller can see of a refusal: status and body, but the call's id.
fn shape(status: StatusCode, body: &Value) -> (StatusCode, Value) {
    let mut body = body.clone();
    if let Some(fields) = body.as_object_mut() {
        fields.remove("instance");
    }
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_caller_is_answered_exactly_as_for_a_busy_callee() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob, carol, dave) =
        (api.user("female"), api.user("male"), api.user("female"), api.user("male"));
    let (status, _) = api.request("PUT", &format!("/api/v1/blocks/{}", bob.id), Some(&alice), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    api.ring(&carol, &[&dave], "audio").await; // Carol is busy

    let (blocked_status, blocked) = start_call(&api, &bob, &[&alice]).await;
    let (busy_status, busy) = start_call(&api, &bob, &[&carol]).await;
    assert_eq!(busy_status, StatusCode::CONFLICT, "{busy}");
    assert_eq!(busy["code"], "callee_busy");
    assert_eq!(shape(blocked_status, &blocked), shape(busy_status, &busy), "a block is not revealed");
    assert!(rung(&world, &alice).await.is_empty(), "she never rings");

    // It works both ways: her calls to him do not ring him either.
    let (status, body) = start_call(&api, &alice, &[&bob]).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::CONFLICT, json!("callee_busy")));
    assert!(rung(&world, &bob).await.is_empty(), "he never rings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_blocks_lists_and_unblocks_and_only_they_see_their_blocks() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (alice, bob) = (api.user("female"), api.user("male"));
    let path = format!("/api/v1/blocks/{}", bob.id);
    for _ in 0..2 {
        let (status, body) = api.request("PUT", &path, Some(&alice), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "idempotent: {body}");
    }
    let (_, mine) = api.get("/api/v1/blocks", &alice).await;
    let listed: Vec<&Value> = mine["blocks"].as_array().expect("a list").iter().collect();
    assert_eq!(listed.len(), 1, "{mine}");
    assert_eq!(listed[0]["userId"], bob.id);
    let (_, his) = api.get("/api/v1/blocks", &bob).await;
    assert_eq!(his["blocks"], json!([]), "he cannot see that she blocks him");

    let (status, _) = api.request("DELETE", &path, Some(&alice), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, mine) = api.get("/api/v1/blocks", &alice).await;
    assert_eq!(mine["blocks"], json!([]));
    api.ring(&bob, &[&alice], "audio").await; // rings again
    assert_eq!(rung(&world, &alice).await.len(), 1, "she is rung again");

    let own = format!("/api/v1/blocks/{}", alice.id);
    let (status, body) = api.request("PUT", &own, Some(&alice), None).await;
    assert_eq!(
        (status, body["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("userId")),
        "{body}"
    );
}
