use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::AuthUser;
use crate::domain::Code;
use crate::http::error::ApiError;
use crate::http::openapi::Conflict;
use crate::http::state::AppState;
use crate::infra::turn::{self, IceServer, TurnCredentials};
use crate::store;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(credentials)).routes(routes!(ice_servers))
}

/// How long the caller's TURN credentials may last: only someone present in
/// a live call somebody has answered gets any (a relay for every account,
/// or for anyone who calls anyone, would be an open relay), and no longer
/// than that call may (`Core::turn_ttl_in`).
async fn ttl_for(app: &AppState, user: &AuthUser) -> Result<Duration, ApiError> {
    let call = store::present_call_of(&app.db, &user.id).await?.ok_or_else(|| {
        ApiError::conflict(Code::NotInCall, "TURN credentials are for participants of a live call")
    })?;
    app.turn_ttl_in(&call).ok_or_else(|| {
        ApiError::conflict(
            Code::NotAnswered,
            "nobody has answered the call yet: TURN credentials come once someone has (ask again on call.accepted)",
        )
    })
}

/// Coturn REST credentials (`use-auth-secret`) for a participant of a live call someone has
/// answered, valid for `TURN_TTL` and no longer than the call may still last (`MAX_CALL_DURATION`
/// from when it became active). None while it rings: its initiator asks again (or for a fresh
/// token, `POST /calls/{id}/token`, which carries them) on `call.accepted`.
///
/// Errors: 409 `not_in_call` (the caller is in no live call), `not_answered` (the caller's call
/// still rings: nobody has answered it).
#[utoipa::path(get, path = "/turn/credentials", operation_id = "turnCredentials", tag = "turn",
    responses(
        (status = 200, description = "Credentials", body = TurnCredentials),
        (status = 409, response = Conflict),
    ))]
async fn credentials(State(app): State<AppState>, user: AuthUser) -> Result<Json<TurnCredentials>, ApiError> {
    let ttl = ttl_for(&app, &user).await?;
    Ok(Json(turn::credentials_valid_for(&app.config.turn, user.id.as_str(), app.clock.now(), ttl)))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct IceServers {
    ice_servers: Vec<IceServer>,
}

/// The ICE servers to hand `RTCPeerConnection` (STUN, and TURN with fresh credentials), for a
/// participant of a live call someone has answered, as `/turn/credentials`.
///
/// Errors: 409 `not_in_call` (the caller is in no live call), `not_answered` (the caller's call
/// still rings: nobody has answered it).
#[utoipa::path(get, path = "/ice-servers", operation_id = "iceServers", tag = "turn",
    responses(
        (status = 200, description = "ICE servers", body = IceServers),
        (status = 409, response = Conflict),
    ))]
async fn ice_servers(State(app): State<AppState>, user: AuthUser) -> Result<Json<IceServers>, ApiError> {
    let ttl = ttl_for(&app, &user).await?;
    let servers = turn::ice_servers_valid_for(&app.config.turn, user.id.as_str(), app.clock.now(), ttl);
    Ok(Json(IceServers { ice_servers: servers }))
}
