//! Counts and times every request, by the route template that matched
//! (`crate::metrics::http`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::http::{HttpMetrics, UNMATCHED};

/// Middleware: counts and times every request. Applied to the router's
/// routes, it sees the template of the route that matched.
pub async fn track(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(method, route, response.status().as_u16(), started.elapsed());
    response
}

/// The methods there are; anything else is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;
    use tower::ServiceExt;

    use super::*;

    async fn exposition_after(paths: &[&str]) -> String {
        let mut registry = Registry::default();
        let metrics = HttpMetrics::default();
        metrics.register_in(&mut registry);
        let api = Router::new().route("/calls/{id}", get(|| async { "a call" }));
        let app = Router::new()
            .nest("/api/v1", api)
            .route("/health", get(|| async { "ok" }))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn_with_state(metrics, track));
        for path in paths {
            let request = Request::builder().uri(*path).body(Body::empty()).expect("a request");
            app.clone().oneshot(request).await.expect("an answer");
        }
        let mut text = String::new();
        encode(&mut text, &registry).expect("encoded");
        text
    }

    #[tokio::test]
    async fn requests_are_labelled_by_route_template_and_unmatched_ones_as_such() {
        let text = exposition_after(&["/api/v1/calls/1", "/api/v1/calls/2", "/health", "/nowhere"]).await;
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="/api/v1/calls/{id}",status="2xx"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="/health",status="2xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="unmatched",status="4xx"} 1"#),
            "{text}"
        );
        assert!(!text.contains("/api/v1/calls/1"), "no label carries a path: {text}");
    }

    #[test]
    fn unusual_methods_and_statuses_fall_into_few_labels() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").expect("a method")), "other");
    }
}
