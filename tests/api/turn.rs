//! TURN credentials against the real Coturn (`use-auth-secret`), for
//! participants of a live call someone has answered only.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::helpers::{TestApp, TestUser, spawn_app, spawn_app_configured};

/// Alice, who has just called Bob, and he answered.
async fn in_a_call(app: &TestApp) -> TestUser {
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let (status, body) = app.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    alice
}

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
    let alice = in_a_call(&app).await;
    let (status, creds) = app.get("/api/v1/turn/credentials", &alice).await;
    assert_eq!(status, StatusCode::OK, "{creds}");
    let username = creds["username"].as_str().expect("username");
    assert!(username.ends_with(&format!(":{}", alice.id)), "{username}");
    assert_eq!(
        creds["ttlSeconds"],
        app.config.turn.ttl.as_secs(),
        "TURN_TTL, shorter than the call may last"
    );
    assert!(creds["uris"].as_array().is_some_and(|u| !u.is_empty()));
    let allocation = allocate(username, creds["credential"].as_str().expect("credential")).await;
    assert!(allocation.succeeded, "{}", allocation.output);
}

#[tokio::test]
async fn a_tampered_turn_credential_is_refused_by_coturn() {
    let app = spawn_app().await;
    let alice = in_a_call(&app).await;
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
    let expired = callgate::infra::turn::credentials(&app.config.turn, "someone", long_ago);
    let allocation = allocate(&expired.username, &expired.credential).await;
    assert!(!allocation.succeeded);
    assert!(allocation.output.contains("Cannot complete Allocation"), "{}", allocation.output);
}

#[tokio::test]
async fn ice_servers_carry_stun_and_turn_with_credentials() {
    let app = spawn_app().await;
    let alice = in_a_call(&app).await;
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

#[tokio::test]
async fn turn_credentials_are_only_for_those_present_in_a_live_call_someone_answered() {
    let app = spawn_app().await;
    let (alice, bob, loner) = (app.user("female"), app.user("male"), app.user("female"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let refused = |status: StatusCode, body: &Value, code: &str, who: &str| {
        assert_eq!(status, StatusCode::CONFLICT, "{who}: {body}");
        assert_eq!(body["code"], code, "{who}");
    };
    for path in ["/api/v1/turn/credentials", "/api/v1/ice-servers"] {
        let (status, body) = app.get(path, &loner).await;
        refused(status, &body, "not_in_call", "someone in no call");
        let (status, body) = app.get(path, &bob).await;
        refused(status, &body, "not_in_call", "an invitee who has not answered");
        let (status, body) = app.get(path, &alice).await;
        refused(status, &body, "not_answered", "the caller, while it rings");
    }
    let (status, _) = app.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    for who in [&bob, &alice] {
        assert_eq!(app.get("/api/v1/turn/credentials", who).await.0, StatusCode::OK, "once he answered");
    }
    app.call_action(&call, "end", &alice, json!({})).await;
    let (status, body) = app.get("/api/v1/turn/credentials", &alice).await;
    refused(status, &body, "not_in_call", "after the end");
}

/// The usernames and credentials among the ICE servers of an API answer.
fn credentials_in(body: &Value) -> Vec<(String, String)> {
    let servers = body["iceServers"].as_array().unwrap_or_else(|| panic!("iceServers: {body}"));
    servers
        .iter()
        .filter(|s| !s["username"].is_null() || !s["credential"].is_null())
        .map(|s| (s["username"].to_string(), s["credential"].to_string()))
        .collect()
}

#[tokio::test]
async fn a_call_cancelled_at_once_hands_out_no_turn_credentials_to_try_on_coturn() {
    let app = spawn_app().await;
    let (alice, nobody) = (app.user("female"), app.user("male"));
    let body = json!({"participantIds": [nobody.id], "type": "audio"});
    let (status, started) = app.post("/api/v1/calls", &alice, body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let call = started["call"]["id"].as_str().expect("an id").to_owned();
    let (status, token) = app.call_action(&call, "token", &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    for (what, body) in [("the start", &started), ("a token while it rings", &token)] {
        assert_eq!(credentials_in(body), [], "{what} hands no credentials: {body}");
        let servers = body["iceServers"].as_array().expect("iceServers");
        assert!(
            servers
                .iter()
                .flat_map(|s| s["urls"].as_array().expect("urls"))
                .all(|u| u.as_str().is_some_and(|u| u.starts_with("stun:"))),
            "{what}: STUN alone: {body}"
        );
    }
    let (status, problem) = app.get("/api/v1/turn/credentials", &alice).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("not_answered")), "{problem}");
    let (status, ended) = app.call_action(&call, "end", &alice, json!({})).await;
    assert_eq!((status, ended["call"]["outcome"].as_str()), (StatusCode::OK, Some("cancelled")), "{ended}");
    let (status, problem) = app.get("/api/v1/turn/credentials", &alice).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("not_in_call")), "{problem}");
    // What she was handed still works where it should: Coturn answers STUN.
    let stun =
        Command::new("turnutils_stunclient").args(["-p", "3478", "127.0.0.1"]).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(10), stun)
        .await
        .expect("turnutils_stunclient finishes")
        .expect("turnutils_stunclient runs (coturn package)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("reflexive addr"), "Coturn answers STUN: {said}");
}

#[tokio::test]
async fn turn_credentials_last_no_longer_than_the_call_may() {
    let app = spawn_app_configured(|c| c.timeouts.max_call_duration = Duration::from_secs(120)).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let (status, body) = app.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.config.turn.ttl, Duration::from_secs(3600), "TURN_TTL of .env.example");
    let (status, creds) = app.get("/api/v1/turn/credentials", &alice).await;
    assert_eq!(status, StatusCode::OK, "{creds}");
    assert_eq!(creds["ttlSeconds"], 120, "{creds}");
    let expiry: i64 =
        creds["username"].as_str().and_then(|u| u.split(':').next()?.parse().ok()).expect("expiry");
    let left = expiry - chrono::Utc::now().timestamp();
    assert!((110..=121).contains(&left), "the username expires with the call: {left} s");
}

#[test]
fn the_production_coturn_example_relays_into_no_private_range_and_has_quotas() {
    let conf = include_str!("../../coturn/turnserver.prod.conf");
    let lines: Vec<&str> =
        conf.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for range in [
        "10.0.0.0-10.255.255.255",
        "172.16.0.0-172.31.255.255",
        "192.168.0.0-192.168.255.255",
        "100.64.0.0-100.127.255.255",
        "127.0.0.0-127.255.255.255",
        "169.254.0.0-169.254.255.255",
        "::-::1",
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        assert!(lines.contains(&format!("denied-peer-ip={range}").as_str()), "denies {range}");
    }
    for option in ["use-auth-secret", "no-cli", "no-tcp-relay", "no-multicast-peers"] {
        assert!(lines.contains(&option), "{option}");
    }
    for quota in ["user-quota=", "total-quota="] {
        assert!(lines.iter().any(|l| l.starts_with(quota)), "{quota}");
    }
    assert!(!lines.contains(&"allow-loopback-peers"), "loopback peers stay refused");
    assert!(!lines.iter().any(|l| l.starts_with("static-auth-secret=")), "no secret ships with it");
}
