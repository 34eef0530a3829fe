//! Trust and safety on the real stack (issue 28): a disguised track by a
//! real client is heard by the host as `consent.violation`, a real
//! participant's report as `call.reported`, both signed; a suspended user
//! is answered as busy by every instance. The rest (who may report, the
//! limits, the audit log, bad input) is in the fast tier, tests/fast/safety.rs.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::app_webhooks::{Receiver, assert_signed, configure_hook, new_secret};
use crate::consent::call_in_room;
use crate::helpers::{TestApp, TestUser, base_config, isolated_database, spawn_app, spawn_on};

/// Nothing in what the host is sent says anything of anyone's gender.
fn no_gender(body: &Value) {
    let text = body.to_string().to_lowercase();
    for word in ["gender", "female", "male"] {
        assert!(!text.contains(word), "{word} in {body}");
    }
}

#[tokio::test]
async fn a_disguised_track_and_the_report_that_follows_reach_the_host_signed_without_anyones_gender() {
    let receiver = Receiver::start(&[]).await;
    let secret = new_secret();
    let database = isolated_database(&base_config()).await;
    let app = spawn_on(&database, configure_hook(&receiver.url, &secret)).await;
    let (her, him) = (app.user("female"), app.user("male"));
    let (call, _hers, mut his) = call_in_room(&app, &her, &him, "audio", json!(false)).await;

    let published = his.publish_video_as("microphone").await.expect("alive");
    assert!(published.is_ok(), "LiveKit takes it (it checks labels only): {published:?}");

    let heard = receiver.wait_for("consent.violation", 1, Duration::from_secs(20)).await;
    assert_signed(&secret, &heard[0]);
    let data = &heard[0].body["data"];
    assert_eq!(
        (data["callId"].as_str(), data["userId"].as_str()),
        (Some(call.as_str()), Some(him.id.as_str()))
    );
    assert_eq!(
        (data["violation"].as_str(), &data["removed"]),
        (Some("video_under_another_label"), &json!(true))
    );
    assert_eq!(
        (data["track"]["kind"].as_str(), data["track"]["source"].as_str()),
        (Some("video"), Some("microphone"))
    );
    no_gender(&heard[0].body);
    let ended = app.wait_for_call(&call, &her, Duration::from_secs(10), |c| c["state"] == "ended").await;
    assert_eq!(ended["endReason"], "violation");

    // She reports him after the call, as a real participant of it.
    let body =
        json!({"userId": him.id, "reason": "nudity_or_sexual_content", "text": "he showed video as audio"});
    let (status, filed) = app.post(&format!("/api/v1/calls/{call}/reports"), &her, body).await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");

    let reported = receiver.wait_for("call.reported", 1, Duration::from_secs(20)).await;
    assert_signed(&secret, &reported[0]);
    let data = &reported[0].body["data"];
    assert_eq!(data["reportId"], filed["id"]);
    assert_eq!(
        (data["reporterId"].as_str(), data["reportedId"].as_str()),
        (Some(her.id.as_str()), Some(him.id.as_str()))
    );
    assert_eq!(
        (data["reason"].as_str(), data["text"].as_str()),
        (Some("nudity_or_sexual_content"), Some("he showed video as audio"))
    );
    assert_eq!((data["endReason"].as_str(), data["state"].as_str()), (Some("violation"), Some("ended")));
    let violations = data["violations"].as_array().expect("the ledger's violations");
    assert_eq!(violations.len(), 1, "{data}");
    assert_eq!(violations[0]["kind"], "video");
    assert!(violations[0]["at"].is_string());
    no_gender(&reported[0].body);
    // He never sees it.
    let (_, his_view) = app.get(&format!("/api/v1/calls/{call}/reports"), &him).await;
    assert_eq!(his_view["reports"], json!([]), "{his_view}");
}

async fn start(app: &TestApp, caller: &TestUser, callee: &TestUser) -> (StatusCode, Value) {
    app.post("/api/v1/calls", caller, json!({"participantIds": [callee.id], "type": "audio"})).await
}

/// The client events `who` was ever sent.
async fn told(app: &TestApp, who: &TestUser) -> i64 {
    sqlx::query_scalar("select count(*) from user_events where user_id = $1")
        .bind(&who.id)
        .fetch_one(&app.state.db)
        .await
        .expect("counted")
}

#[tokio::test]
async fn a_user_suspended_through_one_instance_is_answered_busy_by_the_other_until_lifted() {
    let (one, two) = (spawn_app().await, spawn_app().await);
    let (alice, bob, carol, dave) =
        (one.user("female"), one.user("male"), one.user("female"), one.user("male"));
    let admin = one.user_with_roles("female", &["admin"]);
    // A callee truly busy: carol is in a call with dave.
    let (dave_call, _) = two.ring(&dave, &[&carol], "audio").await;
    let (status, _) = two.call_action(&dave_call, "accept", &carol, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (busy_status, busy) = start(&two, &alice, &carol).await;
    assert_eq!((busy_status, busy["code"].as_str()), (StatusCode::CONFLICT, Some("callee_busy")), "{busy}");

    let suspend = json!({"reason": "three reports of harassment"});
    let (status, body) = one
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/suspensions/{}", bob.id),
            Some(&admin),
            Some(suspend),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = told(&two, &bob).await;

    // On the other instance: calls to him and from him meet "busy", nothing more.
    let (status, to_him) = start(&two, &alice, &bob).await;
    assert_eq!((status, &to_him["code"], &to_him["detail"]), (busy_status, &busy["code"], &busy["detail"]));
    assert_eq!(told(&two, &bob).await, before, "he is not rung");
    let (status, from_him) = start(&two, &bob, &alice).await;
    assert_eq!(
        (status, &from_him["code"], &from_him["detail"]),
        (busy_status, &busy["code"], &busy["detail"])
    );

    let (status, lifted) = two
        .post(
            &format!("/api/v1/admin/suspensions/{}/lift", bob.id),
            &admin,
            json!({"reason": "appeal upheld"}),
        )
        .await;
    assert_eq!((status, &lifted["lifted"]), (StatusCode::OK, &json!(true)), "{lifted}");
    let (status, rings) = start(&one, &alice, &bob).await;
    assert_eq!(status, StatusCode::CREATED, "{rings}");
}
