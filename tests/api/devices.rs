//! Every device rings and every device stops: a callee's phone and laptop,
//! on two instances, both ring; whichever way her ringing ends, both hear
//! `call.ring_stopped`, and the host application gets `call.ringing` and
//! `call.ring_stopped` per callee for its pushes, in order.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::app_webhooks::{Answer, Receiver, assert_signed, configure_hook, new_secret};
use crate::helpers::events::EventStream;
use crate::helpers::{TestApp, TestUser, base_config, isolated_database, spawn_app, spawn_on};

const SOON: Duration = Duration::from_secs(5);

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |event| event["type"] == kind
}

/// Bob's phone is on one instance, his laptop on the other; Alice calls him.
struct TwoDevices {
    one: TestApp,
    two: TestApp,
    alice: TestUser,
    bob: TestUser,
    phone: EventStream,
    laptop: EventStream,
    call: String,
}

async fn bob_rings_on_two_devices(one: TestApp, two: TestApp) -> TwoDevices {
    let (alice, bob) = (one.user("female"), one.user("male"));
    let mut phone = EventStream::connect(&one, &bob).await;
    let mut laptop = EventStream::connect(&two, &bob).await;
    let (call, _) = one.ring(&alice, &[&bob], "audio").await;
    for device in [&mut phone, &mut laptop] {
        let incoming = device.wait_for(SOON, "call.incoming", is("call.incoming")).await;
        assert_eq!(incoming["callId"], call);
    }
    TwoDevices { one, two, alice, bob, phone, laptop, call }
}

async fn stopped(device: &mut EventStream, call: &str) -> Value {
    let event = device.wait_for(SOON, "call.ring_stopped", is("call.ring_stopped")).await;
    assert_eq!(event["callId"], call);
    event
}

#[tokio::test]
async fn answered_on_the_phone_the_laptop_stops_ringing_and_the_phone_rings_no_more() {
    let mut t = bob_rings_on_two_devices(spawn_app().await, spawn_app().await).await;
    let (status, body) = t.one.call_action(&t.call, "accept", &t.bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let on_laptop = stopped(&mut t.laptop, &t.call).await;
    assert_eq!(on_laptop["data"]["reason"], "answered");
    assert_eq!(on_laptop["data"]["call"]["state"], "connecting", "the call goes on, elsewhere");
    let on_phone = stopped(&mut t.phone, &t.call).await;
    assert_eq!(on_phone["id"], on_laptop["id"], "one event, on every device");
    let later = t.phone.collect(Duration::from_secs(1)).await;
    assert!(!later.iter().any(is("call.incoming")), "no second call.incoming: {later:?}");
}

#[tokio::test]
async fn declined_on_the_laptop_the_phone_stops_ringing() {
    let mut t = bob_rings_on_two_devices(spawn_app().await, spawn_app().await).await;
    let (status, body) = t.two.call_action(&t.call, "decline", &t.bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let on_phone = stopped(&mut t.phone, &t.call).await;
    assert_eq!(on_phone["data"]["reason"], "declined");
    assert_eq!(on_phone["data"]["call"]["state"], "ended");
    assert_eq!(stopped(&mut t.laptop, &t.call).await["data"]["reason"], "declined");
}

#[tokio::test]
async fn cancelled_by_the_caller_both_devices_stop_ringing() {
    let mut t = bob_rings_on_two_devices(spawn_app().await, spawn_app().await).await;
    let (status, body) = t.two.call_action(&t.call, "end", &t.alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for device in [&mut t.phone, &mut t.laptop] {
        let event = stopped(device, &t.call).await;
        assert_eq!(event["data"]["reason"], "cancelled");
        assert_eq!(event["data"]["call"]["outcome"], "cancelled");
    }
}

#[tokio::test]
async fn unanswered_both_devices_stop_ringing_once_when_the_ring_times_out() {
    let database = isolated_database(&base_config()).await;
    let quick = |c: &mut callgate::config::Config| c.timeouts.ringing = Duration::from_secs(1);
    let (one, two) = (spawn_on(&database, quick).await, spawn_on(&database, quick).await);
    let mut t = bob_rings_on_two_devices(one, two).await;
    for device in [&mut t.phone, &mut t.laptop] {
        assert_eq!(stopped(device, &t.call).await["data"]["reason"], "missed");
    }
    // Both instances poll the deadline: it stops the ringing once.
    let later = t.phone.collect(Duration::from_secs(2)).await;
    assert!(!later.iter().any(is("call.ring_stopped")), "{later:?}");
}

#[tokio::test]
async fn a_group_callee_who_does_not_answer_stops_ringing_while_the_call_goes_on() {
    let app = crate::helpers::spawn_app_configured(|c| c.timeouts.ringing = Duration::from_secs(1)).await;
    let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("female"));
    let mut carols = EventStream::connect(&app, &carol).await;
    let (call, _) = app.ring(&alice, &[&bob, &carol], "audio").await;
    app.call_action(&call, "accept", &bob, json!({})).await;
    let event = stopped(&mut carols, &call).await;
    assert_eq!(event["data"]["reason"], "missed");
    assert_eq!(event["data"]["call"]["state"], "connecting");
}

/// The accepted deliveries (an id accepted once, whatever the retries) of
/// one callee's ringing, in the order they arrived.
fn rings_of(receiver: &Receiver, callee: &str) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for d in receiver.all() {
        let kind = d.body["type"].as_str().unwrap_or_default().to_owned();
        if kind.starts_with("call.ring")
            && d.body["data"]["calleeId"] == callee
            && !seen.iter().any(|(id, _)| *id == d.id)
        {
            seen.push((d.id.clone(), kind));
        }
    }
    seen
}

#[tokio::test]
async fn the_host_hears_ringing_and_its_end_once_per_callee_in_order_with_the_same_id_on_retry() {
    // call.started is accepted; the first call.ringing is refused once.
    let receiver = Receiver::start(&[Answer::Status(200), Answer::Status(500)]).await;
    let secret = new_secret();
    let database = isolated_database(&base_config()).await;
    let app = spawn_on(&database, configure_hook(&receiver.url, &secret)).await;
    let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("female"));
    let (call, _) = app.ring(&alice, &[&bob, &carol], "video").await;
    app.call_action(&call, "accept", &bob, json!({})).await;
    app.call_action(&call, "decline", &carol, json!({})).await;

    let stops = receiver.wait_for("call.ring_stopped", 2, Duration::from_secs(20)).await;
    for d in receiver.all() {
        assert_signed(&secret, &d);
    }
    let ringing = receiver.of("call.ringing");
    assert_eq!(ringing.len(), 3, "two callees, one retry");
    assert_eq!(ringing[0].id, ringing[1].id, "the refused one again, with its id");
    assert_eq!(ringing[0].body["data"]["callId"], call);
    assert_eq!(ringing[0].body["data"]["initiatorId"], alice.id);
    assert_eq!(ringing[0].body["data"]["type"], "video");
    for (callee, why) in [(&bob, "answered"), (&carol, "declined")] {
        let kinds: Vec<String> = rings_of(&receiver, &callee.id).into_iter().map(|(_, k)| k).collect();
        assert_eq!(kinds, ["call.ringing", "call.ring_stopped"], "for {}", callee.id);
        let stop = stops.iter().find(|d| d.body["data"]["calleeId"] == callee.id.as_str()).expect("a stop");
        assert_eq!(stop.body["data"]["reason"], why);
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // longer than a retry would take
    assert_eq!(receiver.of("call.ring_stopped").len(), 2, "each accepted once");
}
