use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::state::AppState;
use crate::metrics::scrape;
use crate::store;

/// Each database read of a scrape; Prometheus waits 10 s by default.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics (OpenMetrics text; the README lists them). Served on the operations
/// listener (`ADMIN_PORT`) only, without authentication: keep that port off the public network.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses(
        (status = 200, description = "The metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 500, description = "The metrics could not be encoded (logged)"),
    ))]
async fn metrics(State(app): State<AppState>) -> Response {
    let webhooks_configured = app.config.app_webhook.is_some();
    let (live_calls, backlog, livekit_backlog) = tokio::join!(
        read("live calls", store::live_call_counts(&app.db)),
        async {
            match webhooks_configured {
                true => read("the app webhook backlog", store::app_webhook_backlog(&app.db)).await,
                false => None,
            }
        },
        read("the LiveKit webhook backlog", store::livekit_inbox::backlog(&app.db)),
    );
    let readings = scrape::Readings {
        live_calls,
        app_webhook_backlog: backlog,
        livekit_webhook_backlog: livekit_backlog,
        sockets_open: app.events.hub.len(),
        channels_followed: app.events.following(),
        messages_received: app.events.received.load(std::sync::atomic::Ordering::Relaxed),
    };
    match scrape::render(&app.metrics, readings) {
        Ok(text) => ([(header::CONTENT_TYPE, scrape::CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "could not encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn read<T>(what: &str, query: impl Future<Output = sqlx::Result<T>>) -> Option<T> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "metrics: could not read {what}; left out of this scrape");
            None
        }
        Err(_) => {
            tracing::warn!("metrics: reading {what} took too long; left out of this scrape");
            None
        }
    }
}
