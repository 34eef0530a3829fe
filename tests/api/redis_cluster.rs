//! callgate on a Redis Cluster (three nodes, started by `deploy/local.sh`):
//! events cross instances on sharded channels (`SSUBSCRIBE`, in the slot of
//! the user), and the per-user state that scripts keep together (stream
//! limits, presence), tickets and rate limits work as on a single Redis.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::helpers::events::{EventStream, events_url, try_connect};
use crate::helpers::{TestApp, base_config, isolated_database, spawn_on};

const BLINK: Duration = Duration::from_secs(1);

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |event| event["type"] == kind
}

fn cluster_nodes() -> String {
    std::env::var("CLUSTER_REDIS_URL").expect("CLUSTER_REDIS_URL (exported by deploy/local.sh test)")
}

/// Two instances of a deployment on the cluster, with a database of their
/// own (every instance of a deployment uses the same Redis: the shared test
/// database has instances on the single one).
async fn on_cluster(configure: fn(&mut callgate::config::Config)) -> (TestApp, TestApp) {
    let database = isolated_database(&base_config()).await;
    let instance = || {
        spawn_on(&database, move |config| {
            config.redis_url = secrecy::SecretString::from(cluster_nodes());
            config.redis_cluster = true;
            configure(config);
        })
    };
    (instance().await, instance().await)
}

/// The sharded channels some node of the cluster has subscribers on.
async fn shard_channels() -> Vec<String> {
    let mut all = Vec::new();
    for node in cluster_nodes().split(',') {
        let client = redis::Client::open(node).expect("a node URL");
        let mut conn = client.get_multiplexed_async_connection().await.expect("the node answers");
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg("callgate:ev:*")
            .query_async(&mut conn)
            .await
            .expect("PUBSUB SHARDCHANNELS");
        all.extend(channels);
    }
    all
}

#[tokio::test]
async fn a_call_rings_across_instances_on_a_redis_cluster_through_the_callees_sharded_channel() {
    let (one, two) = on_cluster(|_| {}).await;
    let (alice, bob) = (one.user("female"), one.user("male"));
    let mut bobs = EventStream::connect(&one, &bob).await;
    let mut alices = EventStream::connect(&two, &alice).await;
    let channels = shard_channels().await;
    assert!(channels.iter().any(|c| c.ends_with(&format!("}}:{}", bob.id))), "{channels:?}");

    let (call, _) = two.ring(&alice, &[&bob], "audio").await;
    let incoming = bobs.wait_for(BLINK, "call.incoming", is("call.incoming")).await;
    assert_eq!(incoming["callId"], call);
    let (status, body) = one.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let accepted = alices.wait_for(BLINK, "call.accepted", is("call.accepted")).await;
    assert_eq!(accepted["data"]["by"], bob.id);
}

#[tokio::test]
async fn on_a_redis_cluster_one_stream_too_many_closes_the_oldest_on_the_other_instance() {
    let two_streams = |c: &mut callgate::config::Config| c.limits.max_streams_per_user = 2;
    let (one, two) = on_cluster(two_streams).await;
    let (alice, bob) = (one.user("female"), one.user("male"));
    let mut oldest = EventStream::connect(&one, &bob).await;
    let _second = EventStream::connect(&two, &bob).await;
    let mut newest = EventStream::connect(&two, &bob).await;
    let frame: Option<CloseFrame> = oldest.closed(Duration::from_secs(10)).await;
    assert_eq!(frame.as_ref().map(|f| u16::from(f.code)), Some(4008), "{frame:?}");

    let (call, _) = one.ring(&alice, &[&bob], "audio").await;
    let incoming = newest.wait_for(Duration::from_secs(5), "call.incoming", is("call.incoming")).await;
    assert_eq!(incoming["callId"], call);
}

#[tokio::test]
async fn on_a_redis_cluster_presence_tickets_and_rate_limits_hold_across_instances() {
    let configure = |c: &mut callgate::config::Config| {
        c.events.require_callee_online = true;
        c.rate_limits.call_starts_per_minute = 4;
    };
    let (one, two) = on_cluster(configure).await;
    let (alice, bob) = (one.user("female"), one.user("male"));
    let (status, body) = one.start_call(&alice, &[&bob], "audio").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("callee_offline")), "{body}");

    // A ticket bought on one instance opens Bob's stream on the other.
    let (status, issued) = one.post("/api/v1/events/ticket", &bob, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let url = format!("{}?ticket={}", events_url(&two), issued["ticket"].as_str().expect("a ticket"));
    let mut bobs = EventStream::from_socket(try_connect(&url, None).await.expect("the ticket opens it"));

    let (call, _) = one.ring(&alice, &[&bob], "audio").await;
    bobs.wait_for(BLINK, "call.incoming", is("call.incoming")).await;
    one.call_action(&call, "end", &alice, json!({})).await;
    let (call, _) = two.ring(&alice, &[&bob], "audio").await;
    two.call_action(&call, "end", &alice, json!({})).await;
    let (status, body) = one.start_call(&alice, &[&bob], "audio").await;
    assert_eq!(status, StatusCode::CREATED, "the fourth start of the minute (the refusal counted): {body}");
    let call = body["call"]["id"].as_str().expect("a call id").to_owned();
    one.call_action(&call, "end", &alice, json!({})).await;
    let (status, body) = two.start_call(&alice, &[&bob], "audio").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the limit is shared on the cluster: {body}");
}
