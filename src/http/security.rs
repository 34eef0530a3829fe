//! Security headers on every response (what Helmet gives an Express
//! service): `X-Content-Type-Options: nosniff`, no framing
//! (`X-Frame-Options: DENY`, CSP `frame-ancestors 'none'`),
//! `Referrer-Policy: no-referrer`, a Content-Security-Policy that lets an
//! API response load nothing, and `Strict-Transport-Security` only when the
//! deployment says it serves HTTPS (`HSTS_MAX_AGE`). The two pages the
//! service serves set their own policy ([`docs_policy`], [`app_policy`]);
//! a header a handler set is kept.

use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};

/// What an API response (JSON, a problem, a WebSocket upgrade) may load:
/// nothing, and nobody may frame it.
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Adds the headers a response lacks; `hsts` is `HSTS_MAX_AGE`.
pub async fn headers(State(hsts): State<Option<std::time::Duration>>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(API_POLICY)),
        (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
    ];
    for (name, value) in defaults {
        headers.entry(name).or_insert(value);
    }
    if let Some(max_age) = hsts {
        let value = HeaderValue::from_str(&format!("max-age={}", max_age.as_secs()));
        if let Ok(value) = value {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, value);
        }
    }
    response
}

/// `'sha256-<base64>'` of the text between `open` and `close` in `page`.
fn inline_hash(page: &str, open: &str, close: &str) -> String {
    let start = page.find(open).map_or(0, |at| at + open.len());
    let end = page[start..].find(close).map_or(page.len(), |at| start + at);
    let digest = Sha256::digest(&page.as_bytes()[start..end]);
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The docs page (`/docs`, `docs.html`): its one inline script and one
/// inline style, by their hashes (so nothing else inline runs), and
/// `/openapi.json`.
pub fn docs_policy() -> HeaderValue {
    static POLICY: LazyLock<String> = LazyLock::new(|| {
        let page = include_str!("docs.html");
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            inline_hash(page, "<script>", "</script>"),
            inline_hash(page, "<style>", "</style>"),
        )
    });
    HeaderValue::from_str(&POLICY).unwrap_or_else(|_| HeaderValue::from_static(API_POLICY))
}

/// The web app (`/app`): its own script and style files, the LiveKit server
/// it dials (`LIVEKIT_URL`, and its HTTP origin, which livekit-client asks
/// when a connection fails), the event stream and the API on this origin,
/// media from the browser's own streams.
pub fn app_policy(livekit_url: &str) -> HeaderValue {
    let origin: String = livekit_url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    let http = origin.replacen("ws", "http", 1);
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         media-src 'self' blob: mediastream:; connect-src 'self' {origin} {http}; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static(API_POLICY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_policy_names_the_pages_inline_script_and_style_by_hash() {
        let page = "<style>a{}</style><script>go()</script>";
        // printf %s 'go()' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            inline_hash(page, "<script>", "</script>"),
            "'sha256-5KYv+PUboo5h+0+YAtGRPbwv5d/QxzHslP4YGnUaxRw='"
        );
        let policy = docs_policy();
        let policy = policy.to_str().expect("ascii");
        assert!(policy.contains("script-src 'sha256-") && !policy.contains("unsafe-inline"), "{policy}");
    }

    #[test]
    fn the_app_may_dial_its_livekit_and_nothing_else_outside() {
        let policy = app_policy("wss://livekit.example.com/some/path");
        let policy = policy.to_str().expect("ascii");
        assert!(
            policy.contains("connect-src 'self' wss://livekit.example.com https://livekit.example.com;"),
            "{policy}"
        );
        assert!(
            policy.contains("script-src 'self';") && policy.contains("frame-ancestors 'none'"),
            "{policy}"
        );
    }
}
