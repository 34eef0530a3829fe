//! The event stream: `GET /events` upgrades to a WebSocket, authenticated
//! by the `Authorization` header or, for browsers, `?ticket=` from
//! `POST /events/ticket`. Credentials are checked before the upgrade, so a
//! refused client gets a plain 401 and never a socket.

mod socket;
mod tickets;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::AuthUser;
use crate::domain::Code;
use crate::domain::UserId;
use crate::http::auth::bearer_in;
use crate::http::error::ApiError;
use crate::http::json::ApiQuery;
use crate::http::limits::{self, ClientAddress};
use crate::http::openapi::BadRequest;
use crate::http::state::AppState;
use crate::realtime::streams;

/// Clients only answer pings; anything bigger is not a client of ours.
const MAX_INCOMING: usize = 4 * 1024;
/// What one read takes from the socket at most (tungstenite's default is
/// 128 KiB): clients only answer pings, and the buffer grows for a bigger
/// message (up to `MAX_INCOMING`). Idle streams are most of them; this is
/// most of what one costs.
const READ_BUFFER: usize = 256;
/// Frames are written out once this much is buffered (and on every flush).
const WRITE_BUFFER: usize = 4 * 1024;
const MAX_WRITE_BUFFER: usize = 1024 * 1024;
/// How long an upgrade waits for this instance's Redis subscription to the
/// user's channel.
const SUBSCRIBED_WITHIN: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream)).routes(routes!(ticket))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct TicketView {
    /// Single use; pass as `GET /events?ticket=`.
    ticket: String,
    expires_at: DateTime<Utc>,
}

/// A short-lived, single-use ticket for opening the event stream from a browser, which cannot set
/// headers on a WebSocket. Errors: 503 `unavailable` when Redis is down.
#[utoipa::path(post, path = "/events/ticket", operation_id = "eventTicket", tag = "events",
    responses((status = 201, description = "The ticket", body = TicketView)))]
async fn ticket(
    State(app): State<AppState>,
    headers: HeaderMap,
    user: AuthUser,
) -> Result<(StatusCode, Json<TicketView>), ApiError> {
    let expires_at = bearer_in(&headers)
        .and_then(streams::expiry_of)
        .ok_or(ApiError::Unauthorized("the token has no exp"))?;
    let issued = tickets::issue(&app, &user.id, expires_at).await?;
    Ok((StatusCode::CREATED, Json(TicketView { ticket: issued.ticket, expires_at: issued.expires_at })))
}

/// The user and when their token expires. The header wins over a ticket;
/// a bad header is refused, not ignored. A ticket is counted once looked up
/// (`crate::http::limits`): a good one as a request of its user, a bad one
/// in the address's budget of bad tickets, apart from its budget for bad
/// credentials.
async fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    client: Option<IpAddr>,
) -> Result<(UserId, DateTime<Utc>), ApiError> {
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        let token = bearer_in(headers).ok_or(ApiError::Unauthorized("missing bearer token"))?;
        let user = app.auth.verify(token, app.clock.now()).await?.id;
        let expires_at = streams::expiry_of(token).ok_or(ApiError::Unauthorized("the token has no exp"))?;
        return Ok((user, expires_at));
    }
    let Some(ticket) = query.get("ticket") else {
        return Err(ApiError::Unauthorized("send a bearer token or a ticket"));
    };
    match tickets::redeem(app, ticket).await {
        Ok((user, expires_at)) => {
            limits::request(app, &user).await?;
            Ok((user, expires_at))
        }
        Err(refused @ ApiError::Unauthorized(_)) => Err(limits::bad_ticket(app, client, refused).await),
        Err(other) => Err(other),
    }
}

/// The caller's event stream: a WebSocket (send `Upgrade: websocket`) carrying one JSON text
/// message per event (`call.incoming`, `call.accepted`, `call.ended`, `video.requested`, ...; see
/// the README). Authenticate with the bearer header or, from a browser, `?ticket=`.
///
/// Errors: 400 `websocket_required` (not an upgrade); 401 `unauthorized`; 429 `rate_limited` (too
/// many tickets that opened nothing from one address: a budget of their own, apart from that of bad
/// credentials); 503 `unavailable` (Redis down, or the instance shutting down).
///
/// The server closes the stream with 4001 when the token that opened it expires (for a ticket, the
/// token that bought it) and with 4008 when the user opens more than `EVENTS_MAX_STREAMS_PER_USER`
/// streams (the oldest is closed).
#[utoipa::path(get, path = "/events", operation_id = "eventStream", tag = "events",
    params(("ticket" = Option<String>, Query, description = "From `POST /events/ticket`, instead of the header")),
    security(("bearer" = []), ()),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, response = BadRequest),
    ))]
async fn stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    client: Option<Extension<ClientAddress>>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let client = client.and_then(|Extension(ClientAddress(client))| client);
    let (user, expires_at) = authenticate(&app, &headers, &query, client).await?;
    tracing::Span::current().record("user_id", user.as_str());
    let upgrade = upgrade.map_err(|_| ApiError::BadRequest {
        code: Code::WebsocketRequired,
        field: None,
        detail: "this endpoint speaks WebSocket only".into(),
    })?;
    if app.events.shutting_down() {
        return Err(ApiError::Unavailable("event stream (shutting down)"));
    }
    // Open only once the user's events from every instance reach this one:
    // a client that has its socket misses nothing raised afterwards.
    let (conn, queue, round) = app.events.hub.register(user.as_str(), app.events.sockets_stop());
    if !app.events.follow(user.as_str(), round, SUBSCRIBED_WITHIN).await {
        return Err(ApiError::Unavailable("event stream"));
    }
    app.presence.connected(user.as_str(), conn.id).await;
    streams::admit(&app.redis, &app.presence, app.config.limits.max_streams_per_user, user.as_str(), conn.id)
        .await;
    let tracked = app.events.sockets().token();
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |ws| {
            // A task of its own, holding only the stream: axum's task for the
            // upgrade (the handshake's state, this closure) ends here.
            tokio::spawn(socket::run(app, ws, conn, queue, expires_at, tracked));
            std::future::ready(())
        }))
}
