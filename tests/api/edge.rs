//! The edge of the service: the server waits a bounded time for a
//! request's head and then for its body.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_configured};

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
