//! The real `callgate` binary, as production runs it, so that a test can
//! kill it (SIGKILL: no graceful anything) and start it again.

use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::{TestUser, eventually, request};

pub struct Service {
    pub child: Child,
    pub address: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts the binary on `port` with the test environment plus `env`, and
/// waits until it answers.
pub async fn launch(port: u16, env: &[(&str, String)]) -> Service {
    launch_with_stdout(port, env, Stdio::null()).await
}

/// As [`launch`], its standard output (the log) going to `stdout`.
pub async fn launch_with_stdout(port: u16, env: &[(&str, String)], stdout: impl Into<Stdio>) -> Service {
    // reqwest is built without a TLS provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut command = Command::new(env!("CARGO_BIN_EXE_callgate"));
    command
        .arg("serve")
        .env("PORT", port.to_string())
        .env("DEADLINE_POLL_MS", "100")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let child = command.spawn().expect("the callgate binary starts");
    let address = format!("http://127.0.0.1:{port}");
    let health = format!("{address}/health");
    eventually(Duration::from_secs(30), "the service answers /health", || {
        let url = health.clone();
        async move { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    Service { child, address }
}

impl Service {
    /// A request to the service as `user`: the status and the JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        user: &TestUser,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        request(&reqwest::Client::new(), method, format!("{}{path}", self.address), Some(user), body).await
    }

    /// `caller` calls `callee`; the new call's id.
    pub async fn start_call(&self, caller: &TestUser, callee: &TestUser, kind: &str) -> String {
        let body = json!({"participantIds": [callee.id], "type": kind});
        let (status, started) = self.send(Method::POST, "/api/v1/calls", caller, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{started}");
        started["call"]["id"].as_str().expect("a call id").to_owned()
    }

    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }
}
