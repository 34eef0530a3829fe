//! The event stream: `GET /events` upgrades to a WebSocket, authenticated
//! by the `Authorization` header or, for browsers, `?ticket=` from
//! `POST /events/ticket`. Credentials are checked before the upgrade, so a
//! refused client gets a plain 401 and never a socket.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::auth::{AuthUser, bearer_in};
use crate::domain::UserId;
use crate::error::ApiError;
use crate::events::{socket, tickets};
use crate::presence;
use crate::state::AppState;

/// Clients only answer pings; anything bigger is not a client of ours.
const MAX_INCOMING: usize = 4 * 1024;
/// Per-connection socket buffers (tungstenite's defaults are 128 KiB each).
const BUFFER: usize = 4 * 1024;
const MAX_WRITE_BUFFER: usize = 1024 * 1024;
/// How long an upgrade waits for this instance's Redis subscription.
const SUBSCRIBED_WITHIN: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new().route("/events", get(stream)).route("/events/ticket", post(ticket))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TicketView {
    ticket: String,
    expires_at: DateTime<Utc>,
}

async fn ticket(
    State(app): State<AppState>,
    user: AuthUser,
) -> Result<(StatusCode, Json<TicketView>), ApiError> {
    let issued = tickets::issue(&app, &user.id).await?;
    Ok((StatusCode::CREATED, Json(TicketView { ticket: issued.ticket, expires_at: issued.expires_at })))
}

/// The header wins over a ticket; a bad header is refused, not ignored.
async fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<UserId, ApiError> {
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        let token = bearer_in(headers).ok_or(ApiError::Unauthorized("missing bearer token"))?;
        return Ok(app.auth.verify(token)?.id);
    }
    match query.get("ticket") {
        Some(ticket) => tickets::redeem(app, ticket).await,
        None => Err(ApiError::Unauthorized("send a bearer token or a ticket")),
    }
}

async fn stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let user = authenticate(&app, &headers, &query).await?;
    tracing::Span::current().record("user_id", user.as_str());
    let upgrade = upgrade.map_err(|_| ApiError::BadRequest {
        code: "websocket_required",
        field: None,
        detail: "this endpoint speaks WebSocket only".into(),
    })?;
    if app.events.shutting_down() {
        return Err(ApiError::Unavailable("event stream (shutting down)"));
    }
    // Open only once events from every instance reach this one: a client
    // that has its socket misses nothing raised afterwards.
    if !app.events.wait_subscribed(SUBSCRIBED_WITHIN).await {
        return Err(ApiError::Unavailable("event stream"));
    }
    let (conn, queue) = app.events.hub.register(user.as_str(), app.events.sockets_stop());
    presence::connected(&app, user.as_str(), conn.id).await;
    let tracked = app.events.sockets().token();
    Ok(upgrade
        .read_buffer_size(BUFFER)
        .write_buffer_size(BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |ws| async move {
            let _tracked = tracked;
            socket::run(app, ws, conn, queue).await;
        }))
}
