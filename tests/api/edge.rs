//! The edge of the service: every response carries the security headers
//! (a strict Content-Security-Policy for the two pages, HSTS only when the
//! deployment says it serves HTTPS), and the server waits a bounded time
//! for a request's head and then for its body.

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app, spawn_app_configured};

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

fn assert_secured(response: &reqwest::Response, what: &str) {
    assert_eq!(header(response, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(response, "x-frame-options"), "DENY", "{what}");
    assert_eq!(header(response, "referrer-policy"), "no-referrer", "{what}");
    let policy = header(response, "content-security-policy");
    assert!(policy.contains("frame-ancestors 'none'"), "{what}: {policy:?}");
    assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"), "{what}: {policy}");
}

#[tokio::test]
async fn every_response_says_nosniff_no_framing_no_referrer_and_loads_nothing() {
    let app = spawn_app().await;
    let user = app.user("female");
    let cases = [
        (Method::GET, app.url("/health"), None, StatusCode::OK),
        (Method::GET, app.url("/api/v1/calls/active"), Some(&user), StatusCode::OK),
        (Method::GET, app.url("/api/v1/calls/active"), None, StatusCode::UNAUTHORIZED),
        (Method::GET, app.url("/no/such/thing"), None, StatusCode::NOT_FOUND),
        (Method::POST, app.url("/webhooks/livekit"), None, StatusCode::UNAUTHORIZED),
        (Method::GET, app.url("/openapi.json"), None, StatusCode::OK),
        (Method::GET, app.admin_url("/metrics"), None, StatusCode::OK),
    ];
    for (method, url, user, status) in cases {
        let mut request = app.http.request(method.clone(), &url);
        if let Some(user) = user {
            request = request.bearer_auth(&user.token);
        }
        let response = request.send().await.expect("an answer");
        let what = format!("{method} {url}");
        assert_eq!(response.status(), status, "{what}");
        assert_secured(&response, &what);
        assert_eq!(header(&response, "strict-transport-security"), "", "{what}: no HSTS unless configured");
        if url.contains("/api/") || url.contains("/webhooks/") {
            assert!(header(&response, "content-security-policy").starts_with("default-src 'none'"), "{what}");
        }
    }
}

#[tokio::test]
async fn hsts_is_sent_only_where_the_deployment_says_it_serves_https() {
    let app = spawn_app_configured(|c| c.http.hsts_max_age = Some(Duration::from_secs(31_536_000))).await;
    for url in [app.url("/health"), app.url("/api/v1/calls/active"), app.admin_url("/metrics")] {
        let response = app.http.get(&url).send().await.expect("an answer");
        assert_eq!(header(&response, "strict-transport-security"), "max-age=31536000", "{url}");
    }
}

/// `'sha256-<base64>'` of the text between `open` and `close`.
fn hash_between(page: &str, open: &str, close: &str) -> String {
    let start = page.find(open).expect("opened") + open.len();
    let end = start + page[start..].find(close).expect("closed");
    let digest = Sha256::digest(&page.as_bytes()[start..end]);
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The page as Chromium leaves it once its scripts have run (or been refused).
fn rendered_by_chromium(url: &str) -> String {
    let chromium = std::env::var("CALLGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let profile = std::env::temp_dir().join(format!("callgate-docs-{}", uuid::Uuid::new_v4().simple()));
    let out = std::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .expect("chromium runs (deploy/local.sh installs it)");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_page_runs_under_a_policy_that_allows_its_own_inline_script_and_nothing_else() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/docs")).send().await.expect("an answer");
    assert_secured(&response, "/docs");
    let policy = header(&response, "content-security-policy");
    let page = response.text().await.expect("the page");
    let script = hash_between(&page, "<script>", "</script>");
    let style = hash_between(&page, "<style>", "</style>");
    for wanted in [
        "default-src 'none'".to_owned(),
        format!("script-src {script};"),
        format!("style-src {style};"),
        "connect-src 'self';".to_owned(),
    ] {
        assert!(policy.contains(&wanted), "{wanted} in {policy}");
    }
    let url = app.url("/docs");
    let dom = tokio::task::spawn_blocking(move || rendered_by_chromium(&url)).await.expect("chromium");
    assert!(
        dom.contains("startCall") && !dom.contains("Loading"),
        "the page rendered the document: {dom:.400}"
    );
}

#[tokio::test]
async fn the_web_app_may_load_its_own_files_and_dial_its_livekit_and_nothing_else() {
    let app = spawn_app().await;
    assert!(app.config.dev_mode, ".env.example serves the web app");
    let response = app.http.get(app.url("/app")).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_secured(&response, "/app");
    let policy = header(&response, "content-security-policy");
    let livekit = app.config.livekit.url.trim_end_matches('/');
    let livekit_http = livekit.replacen("ws", "http", 1);
    for wanted in [
        "default-src 'none'".to_owned(),
        "script-src 'self';".to_owned(),
        "style-src 'self';".to_owned(),
        format!("connect-src 'self' {livekit} {livekit_http};"),
    ] {
        assert!(policy.contains(&wanted), "{wanted} in {policy}");
    }
}

fn socket_address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn a_client_that_trickles_its_request_head_is_cut_off() {
    let app = spawn_app_configured(|c| c.http.header_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(socket_address(&app)).await.expect("connected");
    let started = Instant::now();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: callgate\r\n").await.expect("written");
    let writer = tokio::spawn(async move {
        // A header line now and then, never the blank line that ends them.
        for n in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if stream.write_all(format!("X-Slow-{n}: 1\r\n").as_bytes()).await.is_err() {
                return None;
            }
        }
        Some(stream)
    });
    let cut_off = writer.await.expect("the writer");
    assert!(cut_off.is_none(), "the server closed the connection within the header timeout");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_client_that_trickles_its_body_is_answered_once_the_body_deadline_passes() {
    let app = spawn_app_configured(|c| c.http.body_timeout = Duration::from_secs(1)).await;
    let alice = app.user("female");
    let mut stream = TcpStream::connect(socket_address(&app)).await.expect("connected");
    let head = format!(
        "POST /api/v1/calls HTTP/1.1\r\nHost: callgate\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"participantIds\"",
        alice.token
    );
    stream.write_all(head.as_bytes()).await.expect("written");
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    // A byte every 200 ms: an idle timeout would never fire, a deadline does.
    let trickle = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "no answer within 5 s");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
}
