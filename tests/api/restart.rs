use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::{base_config, eventually, isolated_database, room_exists};

/// The real binary, as production runs it, so that it can be killed.
struct Service {
    child: Child,
    address: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn launch(port: u16, database_url: &str, prefix: &str) -> Service {
    let child = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .arg("serve")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", database_url)
        .env("ROOM_PREFIX", prefix)
        .env("RINGING_TIMEOUT", "3")
        .env("DEADLINE_POLL_MS", "100")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the callgate binary starts");
    let address = format!("http://127.0.0.1:{port}");
    let health = format!("{address}/health");
    eventually(Duration::from_secs(30), "the service answers /health", || {
        let url = health.clone();
        async move { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    Service { child, address }
}

#[tokio::test]
async fn a_ringing_timeout_still_fires_once_after_the_service_is_killed() {
    let config = base_config();
    let (database_url, prefix) = isolated_database(&config).await;
    let port = free_port();
    let mut service = launch(port, &database_url, &prefix).await;

    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        isolated: false,
        configure: Box::new(|c| c.timeouts.ringing = Duration::from_secs(3600)),
    })
    .await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let http = reqwest::Client::new();
    let started: Value = http
        .post(format!("{}/api/v1/calls", service.address))
        .bearer_auth(&alice.token)
        .json(&json!({"participantIds": [bob.id], "type": "audio"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let call = started["call"]["id"].as_str().expect("a call id").to_owned();
    let room = format!("{prefix}{call}");
    assert!(room_exists(&room).await);

    service.child.kill().await.expect("SIGKILL");
    tokio::time::sleep(Duration::from_secs(4)).await; // past the ringing timeout, while down
    let service = launch(port, &database_url, &prefix).await;

    let url = format!("{}/api/v1/calls/{call}", service.address);
    let mut last = Value::Null;
    for _ in 0..100 {
        let resp = http.get(&url).bearer_auth(&alice.token).send().await.expect("sent");
        assert_eq!(resp.status(), StatusCode::OK);
        last = resp.json().await.expect("json");
        if last["state"] == "ended" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["outcome"], "missed", "{last}");
    tokio::time::sleep(Duration::from_secs(1)).await; // time for a second firing, if there were one

    let db = sqlx::PgPool::connect(&database_url).await.expect("connect");
    let id = uuid::Uuid::parse_str(&call).expect("uuid");
    let ended: i64 =
        sqlx::query_scalar("select count(*) from call_events where call_id = $1 and type = 'call.ended'")
            .bind(id)
            .fetch_one(&db)
            .await
            .expect("count");
    assert_eq!(ended, 1, "the deadline fired once");
    let missed: i64 =
        sqlx::query_scalar("select count(*) from user_events where call_id = $1 and type = 'call.missed'")
            .bind(id)
            .fetch_one(&db)
            .await
            .expect("count");
    assert_eq!(missed, 2, "one call.missed for each participant");
    assert!(!room_exists(&room).await, "the room is gone");
}
