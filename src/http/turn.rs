use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::state::AppState;
use crate::turn::{self, TurnCredentials};

pub fn router() -> Router<AppState> {
    Router::new().route("/turn/credentials", get(credentials)).route("/ice-servers", get(ice_servers))
}

async fn credentials(State(app): State<AppState>, user: AuthUser) -> Json<TurnCredentials> {
    Json(turn::credentials(&app.config.turn, user.id.as_str(), chrono::Utc::now()))
}

async fn ice_servers(State(app): State<AppState>, user: AuthUser) -> Json<Value> {
    Json(json!({"iceServers": app.ice_servers(&user.id)}))
}
