use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::binary::{self, Service, free_port};
use crate::helpers::{base_config, isolated_database, room_exists};

async fn launch(port: u16, database_url: &str, prefix: &str) -> Service {
    let env = [
        ("DATABASE_URL", database_url.to_owned()),
        ("ROOM_PREFIX", prefix.to_owned()),
        ("RINGING_TIMEOUT", "3".to_owned()),
    ];
    binary::launch(port, &env).await
}

#[tokio::test]
async fn a_ringing_timeout_still_fires_once_after_the_service_is_killed() {
    let config = base_config();
    let (database_url, prefix) = isolated_database(&config).await;
    let port = free_port();
    let service = launch(port, &database_url, &prefix).await;

    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        isolated: false,
        configure: Box::new(|c| c.timeouts.ringing = Duration::from_secs(3600)),
    })
    .await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let call = service.start_call(&alice, &bob, "audio").await;
    let room = format!("{prefix}{call}");
    assert!(room_exists(&room).await);

    service.kill().await;
    tokio::time::sleep(Duration::from_secs(4)).await; // past the ringing timeout, while down
    let service = launch(port, &database_url, &prefix).await;

    let path = format!("/api/v1/calls/{call}");
    let mut last = Value::Null;
    for _ in 0..100 {
        let status;
        (status, last) = service.send(Method::GET, &path, &alice, None).await;
        assert_eq!(status, StatusCode::OK);
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
