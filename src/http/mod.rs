//! HTTP routes: thin handlers that parse the edge and call the services.

mod calls;
mod events;
mod health;
pub mod json;
mod media;
mod metrics;
mod quality;
mod reports;
mod turn;
mod video;
mod webhooks;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(calls::router())
        .merge(video::router())
        .merge(turn::router())
        .merge(media::router())
        .merge(quality::router())
        .merge(reports::router())
        .merge(events::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::rate_limit::limit_requests));
    let cors = cors(&state.config.cors_origins);
    Router::new()
        .nest("/api/v1", api)
        .merge(health::router())
        .merge(webhooks::router())
        .merge(metrics::router())
        .fallback(|| async { crate::error::ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(state.metrics.http(), crate::metrics::http::track))
        .layer(cors)
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
            tracing::info_span!(
                "request",
                method = %req.method(),
                path = %req.uri().path(),
                request_id,
                user_id = tracing::field::Empty,
                call_id = tracing::field::Empty,
            )
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([axum::http::header::AUTHORIZATION, axum::http::header::CONTENT_TYPE])
}
