//! One client's event stream over a WebSocket.
//!
//! The server speaks; the client only answers pings. Every heartbeat
//! interval the server sends a WebSocket ping (every client answers it, so
//! the server knows the client is there) and a `{"type":"heartbeat"}` text
//! message (so a browser, which cannot see pings, knows the server is).

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;

use crate::http::state::AppState;
use crate::realtime::hub::{Reason, Registration};
use crate::realtime::streams;

/// A send that takes longer than this means the client is not reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

enum End {
    /// The client went away or the connection broke: nothing to say.
    Gone,
    /// Close with a code and a reason.
    Close(u16, &'static str),
}

pub async fn run(
    app: AppState,
    socket: WebSocket,
    mut conn: Registration,
    mut queue: crate::realtime::hub::Receiver,
    expires_at: chrono::DateTime<chrono::Utc>,
) {
    let (mut sink, mut stream) = socket.split();
    let interval = app.config.events.heartbeat;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + interval, interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let stop = conn.drop.token().clone();
    let left = (expires_at - app.clock.now()).to_std().unwrap_or_default();
    let expired = tokio::time::sleep(left);
    tokio::pin!(expired);
    let end = loop {
        let outgoing = tokio::select! {
            biased;
            _ = stop.cancelled() => {
                break match conn.drop.reason() {
                    Reason::TooSlow => End::Close(close_code::POLICY, "too slow: events were not read in time"),
                    Reason::TooMany => End::Close(streams::TOO_MANY, "too many streams: a newer one was opened"),
                    Reason::Shutdown => End::Close(close_code::AWAY, "server shutting down; reconnect"),
                };
            }
            _ = &mut expired => break End::Close(streams::EXPIRED, "token expired: reconnect with a fresh one"),
            message = queue.recv() => match message {
                Some(text) => vec![Message::Text(text)],
                None => break End::Gone,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break End::Gone,
                Some(Ok(_)) => {
                    last_heard = Instant::now();
                    continue;
                }
            },
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > interval * 2 + Duration::from_secs(1) {
                    break End::Close(close_code::POLICY, "no heartbeat answer");
                }
                let beat = json!({"type": "heartbeat", "at": app.clock.now()}).to_string();
                vec![Message::Ping(Default::default()), Message::Text(beat.into())]
            }
        };
        let mut sent = true;
        for message in outgoing {
            let send = tokio::select! {
                _ = stop.cancelled() => None,
                sent = tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)) => Some(sent),
            };
            match send {
                Some(Ok(Ok(()))) => {}
                // Dropped while blocked on a slow client: close below.
                None => break,
                Some(_) => {
                    sent = false;
                    break;
                }
            }
        }
        if !sent {
            break End::Gone;
        }
    };
    if let End::Close(code, reason) = end {
        let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
    conn.remove();
    app.presence.disconnected(&conn.user, conn.id).await;
    streams::closed(&app.redis, &app.presence, &conn.user, conn.id).await;
}
