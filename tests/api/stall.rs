//! A LiveKit that stops answering holds up only what needs it: no call's
//! row lock waits on LiveKit, so the API keeps answering and the webhook
//! inbox keeps draining, and what LiveKit must hear is retried once it is
//! back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::consent::{answer, request_video, revoke, video};
use crate::helpers::eventually;
use crate::helpers::lk_events::{participant_event, spawn_unreconciled_app_with};

/// A TCP relay to LiveKit's API that can be stalled: while stalled, nothing
/// it has received is passed on (a LiveKit that hangs, not one that refuses).
struct StallableLiveKit {
    url: String,
    stalled: Arc<watch::Sender<bool>>,
}

impl StallableLiveKit {
    async fn start(upstream: &str) -> StallableLiveKit {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stalled = Arc::new(watch::channel(false).0);
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let sender = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(relay(client_read, server_write, sender.subscribe()));
                tokio::spawn(relay(server_read, client_write, sender.subscribe()));
            }
        });
        StallableLiveKit { url, stalled }
    }

    fn stall(&self, stalled: bool) {
        self.stalled.send_replace(stalled);
    }
}

async fn relay(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut stalled: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn while_livekit_hangs_the_api_answers_and_webhooks_of_every_call_are_handled() {
    let upstream = crate::helpers::base_config().livekit.api_url;
    let proxy = StallableLiveKit::start(&upstream).await;
    // An app of its own (database, room prefix, an idle reconciler) that
    // talks to LiveKit through the relay; its webhooks are the test's.
    let api_url = proxy.url.clone();
    let app = spawn_unreconciled_app_with(move |c| c.livekit.api_url = api_url).await;
    // Six answered calls; in the first, video is on.
    let mut calls = Vec::new();
    for _ in 0..6 {
        let (him, her) = (app.user("male"), app.user("female"));
        let (call, _) = app.ring(&him, &[&her], "audio").await;
        let (status, body) = app.call_action(&call, "accept", &her, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        calls.push((call, him, her));
    }
    let (first, him, her) = &calls[0];
    let (_, body) = request_video(&app, first, him).await;
    let request = body["request"]["id"].as_str().expect("id").to_owned();
    let (_, body) = answer(&app, first, &request, her, "accept").await;
    assert_eq!(body["state"], "on");

    proxy.stall(true);
    let stalled_at = Instant::now();
    // Every call's callee joins: each join wants her rights pushed to LiveKit.
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (call, _, her) in &calls {
        let event =
            participant_event("participant_joined", &app.room_name(call), &her.id, now_ms, now_ms / 1000);
        assert!(app.deliver(&event).await.is_success());
    }
    for (call, him, her) in &calls {
        app.wait_for_call(call, him, Duration::from_secs(8), |c| {
            c["participants"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| p["userId"] == her.id.as_str() && p["status"] == "joined")
            })
        })
        .await;
    }
    // An inbox that waited on LiveKit would wait out a request timeout (5 s)
    // at least twice: six calls share fewer partitions.
    assert!(
        stalled_at.elapsed() < Duration::from_secs(9),
        "the inbox waited on LiveKit: {:?}",
        stalled_at.elapsed()
    );

    // The API answers on every call, the one being changed included.
    let asked = Instant::now();
    let (status, body) = revoke(&app, first, her).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "off", "committed whatever LiveKit does");
    assert_eq!(body["sfuConfirmed"], false, "LiveKit has not confirmed: {body}");
    let (second, him2, _) = &calls[1];
    let (status, body) = request_video(&app, second, him2).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.call(first, him).await["video"], "off");
    assert!(asked.elapsed() < Duration::from_secs(6), "{:?}", asked.elapsed());

    // LiveKit back: what it missed reaches it without anyone asking again.
    proxy.stall(false);
    eventually(Duration::from_secs(20), "LiveKit confirms the off", || async {
        video(&app, first, her).await["sfuConfirmed"] == true
    })
    .await;
}
