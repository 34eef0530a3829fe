use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::readiness;
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

/// The operations listener's (`ADMIN_PORT`): readiness with each dependency named.
pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready_in_detail))
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

async fn readiness_of(app: &AppState) -> readiness::Checks {
    let identity_keys = app.auth.provider_keys().map(|keys| keys.loaded());
    readiness::check(&app.core, &app.readiness, identity_keys).await
}

fn status_of(checks: &readiness::Checks) -> StatusCode {
    if checks.all_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Readiness {
    status: Check,
}

/// PostgreSQL, Redis and LiveKit answer (readiness). Probed at most once a second per instance,
/// however often asked; which dependency is down is told on the operations listener only.
#[utoipa::path(get, path = "/ready", operation_id = "ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency does not answer", body = Readiness),
    ))]
async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    // With an identity provider, its keys must have been fetched once too (the
    // public document's words are kept: the TypeScript client is generated from them).
    let checks = readiness_of(&app).await;
    (status_of(&checks), Json(Readiness { status: Check::of(checks.all_ok()) }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Checks {
    postgres: Check,
    redis: Check,
    livekit: Check,
    /// Only with an identity provider (`JWT_JWKS_URL`, `JWT_OIDC_DISCOVERY`): its keys were
    /// fetched. Keys once held go on verifying tokens while the provider is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_provider: Option<Check>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DetailedReadiness {
    status: Check,
    checks: Checks,
}

/// Each dependency answers within 5 s: PostgreSQL, Redis and LiveKit (probed as `/ready` is);
/// with an identity provider, its keys were fetched.
#[utoipa::path(get, path = "/ready", operation_id = "readyInDetail", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = DetailedReadiness),
        (status = 503, description = "A dependency does not answer", body = DetailedReadiness),
    ))]
async fn ready_in_detail(State(app): State<AppState>) -> (StatusCode, Json<DetailedReadiness>) {
    let checks = readiness_of(&app).await;
    let detail = Checks {
        postgres: Check::of(checks.postgres),
        redis: Check::of(checks.redis),
        livekit: Check::of(checks.livekit),
        identity_provider: checks.identity_keys.map(Check::of),
    };
    (status_of(&checks), Json(DetailedReadiness { status: Check::of(checks.all_ok()), checks: detail }))
}
