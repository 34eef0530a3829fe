use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process is up (liveness).
#[utoipa::path(get, path = "/health", operation_id = "health", tag = "operations",
    responses((status = 200, description = "Up", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CheckResult, rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
enum Check {
    Ok,
    Unavailable,
}

impl Check {
    fn of(ok: bool) -> Self {
        if ok { Check::Ok } else { Check::Unavailable }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Checks {
    postgres: Check,
    redis: Check,
    livekit: Check,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Readiness {
    status: Check,
    checks: Checks,
}

/// Every dependency answers within 5 s: PostgreSQL, Redis and LiveKit (readiness).
#[utoipa::path(get, path = "/ready", operation_id = "ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency does not answer", body = Readiness),
    ))]
async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let timeout = std::time::Duration::from_secs(5);
    let (db, redis, livekit) = tokio::join!(
        tokio::time::timeout(timeout, sqlx::query("select 1").execute(&app.db)),
        tokio::time::timeout(timeout, app.redis.ping()),
        tokio::time::timeout(timeout, app.livekit.ping()),
    );
    let db = matches!(db, Ok(Ok(_)));
    let redis = matches!(redis, Ok(Ok(())));
    let livekit = matches!(livekit, Ok(Ok(())));
    let status = if db && redis && livekit { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let checks = Checks { postgres: Check::of(db), redis: Check::of(redis), livekit: Check::of(livekit) };
    (status, Json(Readiness { status: Check::of(db && redis && livekit), checks }))
}
