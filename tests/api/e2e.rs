//! Real WebRTC clients (the Python `livekit` SDK, driven through
//! tests/e2e/lkclient.py) in rooms that callgate created.

use std::time::Duration;

use serde_json::json;

use crate::helpers::lk_client::LkClient;
use crate::helpers::spawn_app;

#[tokio::test]
async fn two_real_clients_make_the_call_active_and_hanging_up_completes_it() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, started) = app.ring(&alice, &[&bob], "audio").await;
    let (_, accepted) = app.call_action(&call, "accept", &bob, json!({})).await;
    let url = started["join"]["url"].as_str().expect("url");

    let mut a =
        LkClient::connect(url, started["join"]["token"].as_str().expect("token")).await.expect("alice joins");
    let mut b =
        LkClient::connect(url, accepted["join"]["token"].as_str().expect("token")).await.expect("bob joins");
    a.publish_audio().await.expect("alice publishes audio");
    b.publish_audio().await.expect("bob publishes audio");

    let active = app.wait_for_call(&call, &alice, Duration::from_secs(15), |c| c["state"] == "active").await;
    assert!(active["connectedAt"].is_string());
    assert!(
        active["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .all(|p| p["status"] == "joined" && p["joinedAt"].is_string())
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    a.disconnect().await.expect("alice leaves");
    b.disconnect().await.expect("bob leaves");
    let ended = app.wait_for_call(&call, &alice, Duration::from_secs(15), |c| c["state"] == "ended").await;
    assert_eq!(ended["outcome"], "completed", "{ended}");
    assert!(ended["durationSeconds"].as_i64().is_some_and(|d| d > 0), "{ended}");
    assert!(ended["participants"].as_array().expect("participants").iter().all(|p| p["leftAt"].is_string()));
}

#[tokio::test]
async fn a_token_for_an_ended_call_cannot_join() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let (_, accepted) = app.call_action(&call, "accept", &bob, json!({})).await;
    app.call_action(&call, "end", &alice, json!({})).await;
    let joined = LkClient::connect(
        accepted["join"]["url"].as_str().expect("url"),
        accepted["join"]["token"].as_str().expect("token"),
    )
    .await;
    assert!(joined.is_err(), "LiveKit refuses to join: the room is gone and rooms are not auto-created");
}
