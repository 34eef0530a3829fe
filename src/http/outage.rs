//! Outages seen by requests: an `ApiError` whose cause is a dependency that
//! is down puts an [`Outage`] in its response, and [`track`] reports it
//! (`crate::calls::Core::report_outage`: one warning when it starts, one
//! when it ends).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::http::state::AppState;
use crate::infra::outage::Dependency;

/// Put in a response's extensions by `ApiError` when a dependency failed.
#[derive(Clone, Debug)]
pub struct Outage {
    pub dependency: Dependency,
    /// The error chain, logged once when the outage starts.
    pub cause: String,
}

/// Reports the outage a response carries (see `ApiError`).
pub async fn track(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if let Some(outage) = response.extensions().get::<Outage>() {
        app.report_outage(outage.dependency, &outage.cause);
    }
    response
}
