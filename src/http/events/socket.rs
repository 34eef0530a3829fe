//! One client's event stream over a WebSocket.
//!
//! The server speaks; the client only answers pings. Every heartbeat
//! interval the server sends a WebSocket ping (every client answers it, so
//! the server knows the client is there) and a `{"type":"heartbeat"}` text
//! message (so a browser, which cannot see pings, knows the server is).

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;

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

/// The stream's task. Split here, outside the task's future, so that the
/// future holds only what an idle stream needs between events (about half
/// of an idle stream's memory is this future).
pub fn run(
    app: AppState,
    socket: WebSocket,
    conn: Registration,
    queue: crate::realtime::hub::Receiver,
    expires_at: chrono::DateTime<chrono::Utc>,
    tracked: TaskTrackerToken,
) -> impl Future<Output = ()> + Send + 'static {
    let (sink, stream) = socket.split();
    serve(app, sink, stream, conn, queue, expires_at, tracked)
}

async fn serve(
    app: AppState,
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
    mut conn: Registration,
    mut queue: crate::realtime::hub::Receiver,
    expires_at: chrono::DateTime<chrono::Utc>,
    _tracked: TaskTrackerToken,
) {
    let interval = app.config.events.heartbeat;
    let started = Instant::now();
    let expiry = started + (expires_at - app.clock.now()).to_std().unwrap_or_default();
    // One timer for the next heartbeat and the token's expiry, whichever is first.
    let mut next_beat = started + interval;
    let timer = tokio::time::sleep_until(next_beat.min(expiry));
    tokio::pin!(timer);
    let mut last_heard = started;
    let stop = conn.drop.token().clone();
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
            () = &mut timer => {
                let now = Instant::now();
                if now >= expiry {
                    break End::Close(streams::EXPIRED, "token expired: reconnect with a fresh one");
                }
                if now.duration_since(last_heard) > interval * 2 + Duration::from_secs(1) {
                    break End::Close(close_code::POLICY, "no heartbeat answer");
                }
                // A late beat moves the next one (no burst of missed beats).
                next_beat = now + interval;
                timer.as_mut().reset(next_beat.min(expiry));
                Outgoing::Heartbeat
            }
            message = queue.recv() => match message {
                Some(text) => Outgoing::Event(text),
                None => break End::Gone,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break End::Gone,
                Some(Ok(_)) => {
                    last_heard = Instant::now();
                    continue;
                }
            },
        };
        // Boxed, like every await below the loop's: a future that is part of
        // this one makes every idle stream's task as big as it.
        let sent = Box::pin(async {
            match outgoing {
                Outgoing::Event(text) => send(&mut sink, &stop, Message::Text(text)).await,
                Outgoing::Heartbeat => {
                    let beat = json!({"type": "heartbeat", "at": app.clock.now()}).to_string();
                    match send(&mut sink, &stop, Message::Ping(Default::default())).await {
                        Sent::Yes => send(&mut sink, &stop, Message::Text(beat.into())).await,
                        other => other,
                    }
                }
            }
        })
        .await;
        match sent {
            Sent::Yes => {}
            // Dropped while blocked on a slow client: the next turn closes.
            Sent::Stopped => {}
            Sent::Failed => break End::Gone,
        }
    };
    Box::pin(async {
        if let End::Close(code, reason) = end {
            let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
        }
        conn.remove();
        app.presence.disconnected(&conn.user, conn.id).await;
        streams::closed(&app.redis, &app.presence, &conn.user, conn.id).await;
    })
    .await;
}

enum Outgoing {
    Event(Utf8Bytes),
    Heartbeat,
}

enum Sent {
    Yes,
    /// The hub dropped the stream meanwhile.
    Stopped,
    /// The client is gone, or did not read within `WRITE_TIMEOUT`.
    Failed,
}

async fn send(sink: &mut SplitSink<WebSocket, Message>, stop: &CancellationToken, message: Message) -> Sent {
    tokio::select! {
        _ = stop.cancelled() => Sent::Stopped,
        sent = tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)) => match sent {
            Ok(Ok(())) => Sent::Yes,
            _ => Sent::Failed,
        },
    }
}

#[cfg(test)]
mod tests {
    fn output_size7<A, B, C, D, E, G, H, F: Future>(_: impl FnOnce(A, B, C, D, E, G, H) -> F) -> usize {
        size_of::<F>()
    }

    /// Most of an idle stream's memory is its task: 2,064 bytes before the
    /// socket was split outside it and the rare awaits were boxed.
    #[test]
    fn an_idle_streams_task_stays_small() {
        let size = output_size7(super::serve);
        assert!(size <= 768, "the stream's future is {size} bytes");
    }
}
