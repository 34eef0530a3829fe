use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::state::AppState;
use crate::turn::{self, IceServer, TurnCredentials};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(credentials)).routes(routes!(ice_servers))
}

/// Coturn REST credentials for the caller (`use-auth-secret`), valid for `TURN_TTL`.
#[utoipa::path(get, path = "/turn/credentials", operation_id = "turnCredentials", tag = "turn",
    responses((status = 200, description = "Credentials", body = TurnCredentials)))]
async fn credentials(State(app): State<AppState>, user: AuthUser) -> Json<TurnCredentials> {
    Json(turn::credentials(&app.config.turn, user.id.as_str(), chrono::Utc::now()))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct IceServers {
    ice_servers: Vec<IceServer>,
}

/// The ICE servers to hand `RTCPeerConnection` (STUN, and TURN with fresh credentials).
#[utoipa::path(get, path = "/ice-servers", operation_id = "iceServers", tag = "turn",
    responses((status = 200, description = "ICE servers", body = IceServers)))]
async fn ice_servers(State(app): State<AppState>, user: AuthUser) -> Json<IceServers> {
    Json(IceServers { ice_servers: app.ice_servers(&user.id) })
}
