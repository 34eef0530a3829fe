//! The HTTP server: what `axum::serve` does (HTTP/1.1, the upgrade of the
//! event stream to a WebSocket, the peer address as `ConnectInfo`, a
//! graceful shutdown), plus the two read timeouts `axum::serve` has no
//! setting for:
//! - a request's head must arrive within `HTTP_HEADER_TIMEOUT` (hyper's
//!   header read timeout; it also closes a keep-alive connection idle that
//!   long), so a client trickling its headers holds no connection;
//! - its body within `HTTP_BODY_TIMEOUT` of its head, whatever pace it
//!   trickles at (a deadline, not an idle timeout): a handler reading it
//!   later gets an error (400 `body_unreadable`).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::timeout::DeadlineBody;

/// How long a request's head, and then its body, may take to arrive.
#[derive(Clone, Copy, Debug)]
pub struct ReadTimeouts {
    pub header: Duration,
    pub body: Duration,
}

/// Serves `router` on `listener` until `stop` resolves, then stops
/// accepting, lets every connection finish the request it is on, and
/// returns once all have closed (upgraded ones are no longer its own).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: ReadTimeouts,
    stop: impl Future<Output = ()>,
) {
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %err, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(stream, peer, router.clone(), timeouts, closing.clone()));
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    timeouts: ReadTimeouts,
    closing: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let req = req.map(|body| Body::new(DeadlineBody::new(timeouts.body, body)));
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(timeouts.header);
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = served {
        tracing::trace!(error = %err, "connection ended with an error");
    }
}
