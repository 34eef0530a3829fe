use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/ready", get(ready))
}

/// The process is up.
async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Every dependency answers: PostgreSQL, Redis and LiveKit.
async fn ready(State(app): State<AppState>) -> impl IntoResponse {
    let timeout = std::time::Duration::from_secs(5);
    let (db, redis, livekit) = tokio::join!(
        tokio::time::timeout(timeout, sqlx::query("select 1").execute(&app.db)),
        tokio::time::timeout(timeout, app.redis.ping()),
        tokio::time::timeout(timeout, app.livekit.ping()),
    );
    let db = matches!(db, Ok(Ok(_)));
    let redis = matches!(redis, Ok(Ok(())));
    let livekit = matches!(livekit, Ok(Ok(())));
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let status = if db && redis && livekit { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": word(db && redis && livekit),
        "checks": {"postgres": word(db), "redis": word(redis), "livekit": word(livekit)},
    });
    (status, Json(body))
}
