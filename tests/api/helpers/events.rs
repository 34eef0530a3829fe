//! A client of the event stream (`GET /api/v1/events`), as an app would be.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{TestApp, TestUser};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn events_url(app: &TestApp) -> String {
    format!("{}/api/v1/events", app.address.replacen("http", "ws", 1))
}

/// Opens the stream with `Authorization: Bearer`; the error is the refusal.
pub async fn try_connect(url: &str, bearer: Option<&str>) -> Result<Socket, WsError> {
    let mut request = url.into_client_request()?;
    if let Some(token) = bearer {
        let value = format!("Bearer {token}").parse().map_err(|_| WsError::Utf8("header".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

/// The HTTP status an upgrade was refused with (panics if it was not).
pub fn refusal_status(result: Result<Socket, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected the upgrade to be refused, but it was accepted"),
    }
}

pub struct EventStream {
    pub socket: Socket,
}

impl EventStream {
    pub async fn connect(app: &TestApp, user: &TestUser) -> EventStream {
        let socket = try_connect(&events_url(app), Some(&user.token)).await.expect("the event stream opens");
        EventStream { socket }
    }

    pub fn from_socket(socket: Socket) -> EventStream {
        EventStream { socket }
    }

    /// The next frame of any kind, or None if nothing came in time or the
    /// stream ended.
    pub async fn next_frame(&mut self, within: Duration) -> Option<Message> {
        match tokio::time::timeout(within, self.socket.next()).await {
            Ok(Some(Ok(message))) => Some(message),
            _ => None,
        }
    }

    /// The next event (heartbeats and control frames skipped), or None.
    pub async fn next_event(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await? {
                Message::Text(text) => {
                    let event: Value = serde_json::from_str(&text).expect("events are JSON");
                    if event["type"] != "heartbeat" {
                        return Some(event);
                    }
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// The first event that satisfies `wanted`; panics if none comes in time.
    pub async fn wait_for(&mut self, within: Duration, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(event) if wanted(&event) => return event,
                Some(_) => {}
                None => panic!("no {what} event within {within:?}"),
            }
        }
    }

    /// Every event that arrives during `period`.
    pub async fn collect(&mut self, period: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + period;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return events;
            }
            match self.next_event(left).await {
                Some(event) => events.push(event),
                None => return events,
            }
        }
    }

    /// Reads until the server closes; returns its close frame (if any).
    pub async fn closed(&mut self, within: Duration) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.socket.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => return None,
                Err(_) => panic!("the stream was not closed within {within:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.send(Message::Close(None)).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.next()).await;
    }
}
