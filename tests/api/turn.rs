//! TURN credentials against the real Coturn (`use-auth-secret`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::process::Command;

use crate::helpers::spawn_app;

struct Allocation {
    succeeded: bool,
    output: String,
}

/// Allocates relays on Coturn with `turnutils_uclient` and sends data
/// through them.
async fn allocate(username: &str, password: &str) -> Allocation {
    let run = Command::new("turnutils_uclient")
        .args(["-y", "-c", "-n", "1", "-u", username, "-w", password, "-p", "3478", "127.0.0.1"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("turnutils_uclient finishes")
        .expect("turnutils_uclient runs (coturn package)");
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let relayed = output.contains("tot_recv_msgs=2") && !output.contains("Cannot complete Allocation");
    Allocation { succeeded: out.status.success() && relayed, output }
}

#[tokio::test]
async fn issued_turn_credentials_allocate_on_coturn() {
    let app = spawn_app().await;
    let alice = app.user("female");
    let (status, creds) = app.get("/api/v1/turn/credentials", &alice).await;
    assert_eq!(status, StatusCode::OK, "{creds}");
    let username = creds["username"].as_str().expect("username");
    assert!(username.ends_with(&format!(":{}", alice.id)), "{username}");
    assert_eq!(creds["ttlSeconds"], app.config.turn.ttl.as_secs());
    assert!(creds["uris"].as_array().is_some_and(|u| !u.is_empty()));
    let allocation = allocate(username, creds["credential"].as_str().expect("credential")).await;
    assert!(allocation.succeeded, "{}", allocation.output);
}

#[tokio::test]
async fn a_tampered_turn_credential_is_refused_by_coturn() {
    let app = spawn_app().await;
    let alice = app.user("female");
    let (_, creds) = app.get("/api/v1/turn/credentials", &alice).await;
    let credential = creds["credential"].as_str().expect("credential");
    let tampered = format!("{}{}", if credential.starts_with('A') { 'B' } else { 'A' }, &credential[1..]);
    let allocation = allocate(creds["username"].as_str().expect("username"), &tampered).await;
    assert!(!allocation.succeeded);
    assert!(allocation.output.contains("Cannot complete Allocation"), "{}", allocation.output);
}

#[tokio::test]
async fn an_expired_turn_credential_is_refused_by_coturn() {
    let app = spawn_app().await;
    let long_ago = chrono::Utc::now() - chrono::Duration::hours(3);
    let expired = callgate::turn::credentials(&app.config.turn, "someone", long_ago);
    let allocation = allocate(&expired.username, &expired.credential).await;
    assert!(!allocation.succeeded);
    assert!(allocation.output.contains("Cannot complete Allocation"), "{}", allocation.output);
}

#[tokio::test]
async fn ice_servers_carry_stun_and_turn_with_credentials() {
    let app = spawn_app().await;
    let alice = app.user("female");
    let (status, body) = app.get("/api/v1/ice-servers", &alice).await;
    assert_eq!(status, StatusCode::OK);
    let servers = body["iceServers"].as_array().expect("iceServers");
    let turn: Vec<&Value> = servers.iter().filter(|s| s["credential"].is_string()).collect();
    assert_eq!(turn.len(), 1);
    assert!(
        turn[0]["urls"]
            .as_array()
            .expect("urls")
            .iter()
            .all(|u| u.as_str().is_some_and(|u| u.starts_with("turn:")))
    );
    assert!(servers.iter().any(|s| s["urls"][0].as_str().is_some_and(|u| u.starts_with("stun:"))));
}
