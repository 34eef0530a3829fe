//! HTTP routes: thin handlers that parse the edge and call the services.

mod appointments;
mod auth;
mod blocks;
mod bounds;
mod call_reports;
mod calls;
mod consent;
mod dev_app;
pub mod error;
mod events;
mod health;
pub mod json;
mod limits;
mod media;
mod metrics;
mod moderation;
pub mod openapi;
mod outage;
mod quality;
mod readiness;
mod recording;
mod reports;
mod request_metrics;
mod security;
pub mod state;
mod turn;
mod webhooks;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;

use crate::http::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route with its documentation; see [`openapi`].
fn parts() -> openapi::Parts {
    let api = OpenApiRouter::new()
        .merge(calls::router())
        .merge(appointments::router())
        .merge(consent::router())
        .merge(recording::router())
        .merge(turn::router())
        .merge(media::router())
        .merge(quality::router())
        .merge(reports::router())
        .merge(blocks::router())
        .merge(call_reports::router())
        .merge(moderation::router())
        .merge(events::router());
    let top = OpenApiRouter::new().merge(health::router()).merge(webhooks::router());
    openapi::parts(api, top)
}

/// The operations listener (`ADMIN_PORT`): metrics and the
/// detailed readiness, never served on the public port. Its routes are
/// documented like the others' but not in the public document.
pub fn admin_router(state: AppState) -> Router {
    let (routes, _) =
        OpenApiRouter::new().merge(health::admin_router()).merge(metrics::router()).split_for_parts();
    let hsts = state.config.http.hsts_max_age;
    routes
        .fallback(|| async { crate::http::error::ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(hsts, crate::http::security::headers))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            tracing::info_span!("admin_request", method = %req.method(), path = %req.uri().path())
        }))
        .with_state(state)
}

/// The OpenAPI document of every route [`router`] serves.
pub fn document() -> utoipa::openapi::OpenApi {
    parts().doc
}

pub fn router(state: AppState) -> Router {
    let openapi::Parts { api, top, .. } = parts();
    let api =
        api.layer(axum::middleware::from_fn_with_state(state.clone(), crate::http::limits::limit_requests));
    let cors = cors(&state.config.cors_origins);
    let hsts = state.config.http.hsts_max_age;
    // The web app and its dev sign-in exist only with the development switch.
    let dev = if state.config.dev_mode { dev_app::router().split_for_parts().0 } else { Router::new() };
    Router::new()
        .nest(openapi::API_PREFIX, api)
        .merge(top)
        .merge(dev)
        .fallback(|| async { crate::http::error::ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::http::outage::track))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.http(),
            crate::http::request_metrics::track,
        ))
        .layer(cors)
        // Outside CORS, so that its preflight answers carry them too.
        .layer(axum::middleware::from_fn_with_state(hsts, crate::http::security::headers))
        // 5xx are logged where they arise: a 500 with its cause, an outage
        // once (crate::infra::outage); not once more per request here.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG))
                .make_span_with(|req: &Request<_>| {
                    let request_id =
                        req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
                    let span = tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        request_id,
                        user_id = tracing::field::Empty,
                        call_id = tracing::field::Empty,
                    );
                    // A call's routes name it from the first line on.
                    if let Some(id) = call_in_path(req.uri().path()) {
                        span.record("call_id", tracing::field::display(id));
                    }
                    span
                }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

fn call_in_path(path: &str) -> Option<uuid::Uuid> {
    let rest = path.strip_prefix(openapi::API_PREFIX)?.strip_prefix("/calls/")?;
    uuid::Uuid::parse_str(rest.split('/').next()?).ok()
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([axum::http::header::AUTHORIZATION, axum::http::header::CONTENT_TYPE])
}
