//! Event fan-out for a fleet: each user's events go out on the user's own
//! Redis channel, and an instance follows only the channels of the users
//! it holds a stream of. An instance with none of the users involved
//! receives none of the traffic.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::events::EventStream;
use crate::helpers::{TestApp, eventually, spawn_app};

const BLINK: Duration = Duration::from_secs(1);

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |event| event["type"] == kind
}

/// One of the instance's own figures, from its `/metrics`.
pub async fn figure(app: &TestApp, name: &str) -> u64 {
    let response = app.http.get(app.admin_url("/metrics")).send().await.expect("scraped");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("a body");
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name));
    let value =
        line.and_then(|l| l.split_whitespace().nth(1)).unwrap_or_else(|| panic!("no {name} in {text}"));
    value.parse::<f64>().unwrap_or_else(|_| panic!("{name} is not a number: {value}")) as u64
}

pub async fn received(app: &TestApp) -> u64 {
    figure(app, "callgate_event_messages_received_total").await
}

#[tokio::test]
async fn an_instance_receives_only_the_events_of_the_users_it_holds_a_stream_of() {
    let (one, two, three) = (spawn_app().await, spawn_app().await, spawn_app().await);
    let (alice, bob, carol) = (one.user("female"), one.user("male"), one.user("female"));
    let mut bobs = EventStream::connect(&one, &bob).await;
    let mut carols = EventStream::connect(&three, &carol).await;
    assert_eq!(figure(&three, "callgate_event_channels_followed").await, 1, "Carol's channel only");

    for _ in 0..5 {
        let (call, _) = two.ring(&alice, &[&bob], "audio").await;
        bobs.wait_for(BLINK, "call.incoming", is("call.incoming")).await;
        let (status, body) = two.call_action(&call, "end", &alice, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        bobs.wait_for(BLINK, "call.ended", is("call.ended")).await;
    }
    assert!(received(&one).await >= 10, "Bob's instance received his events");
    // Anything on its way would have arrived by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received(&three).await, 0, "the third instance received none of Bob's events");
    assert_eq!(received(&two).await, 0, "nor did the instance that raised them, holding no stream");

    let (call, _) = two.ring(&alice, &[&carol], "audio").await;
    let incoming = carols.wait_for(BLINK, "call.incoming", is("call.incoming")).await;
    assert_eq!(incoming["callId"], call);
    assert_eq!(received(&three).await, 1, "Carol's own event, and nothing else");
}

#[tokio::test]
async fn an_instance_leaves_a_users_channel_with_their_last_stream_and_follows_it_again_on_the_next() {
    let (one, two) = (spawn_app().await, spawn_app().await);
    let (alice, bob) = (one.user("female"), one.user("male"));
    let phone = EventStream::connect(&one, &bob).await;
    let mut laptop = EventStream::connect(&one, &bob).await;
    assert_eq!(figure(&one, "callgate_event_channels_followed").await, 1, "one channel for both streams");
    phone.close().await;
    let (call, _) = two.ring(&alice, &[&bob], "audio").await;
    let incoming = laptop.wait_for(BLINK, "call.incoming", is("call.incoming")).await;
    assert_eq!(incoming["callId"], call, "the other stream keeps the channel");

    laptop.close().await;
    eventually(Duration::from_secs(5), "the channel is left with the last stream", || async {
        figure(&one, "callgate_event_channels_followed").await == 0
    })
    .await;
    let before = received(&one).await;
    two.call_action(&call, "end", &alice, json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received(&one).await, before, "no events for a user who has no stream here");

    let mut again = EventStream::connect(&one, &bob).await;
    let (call, _) = two.ring(&alice, &[&bob], "audio").await;
    let incoming = again.wait_for(BLINK, "call.incoming", is("call.incoming")).await;
    assert_eq!(incoming["callId"], call, "a new stream follows the channel again before it opens");
}
