//! The log as production writes it (`LOG_FORMAT=json`, the real binary):
//! every line of a request names the request, and the user and the call once
//! they are known.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::binary::{free_port, launch_with_stdout};
use crate::helpers::{isolated_database, spawn_app};

fn spans(line: &Value) -> Vec<&Value> {
    line["spans"].as_array().map(|s| s.iter().collect()).unwrap_or_default()
}

fn field<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    spans(line).iter().rev().find_map(|s| s[name].as_str()).filter(|v| !v.is_empty())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_log_line_of_a_request_names_the_request_and_its_user_and_call() {
    // Only to mint the users' tokens.
    let app = spawn_app().await;
    let (caller, callee) = (app.user("male"), app.user("female"));
    let log_path = std::env::temp_dir().join(format!("callgate-log-{}.jsonl", uuid::Uuid::new_v4().simple()));
    let log = std::fs::File::create(&log_path).expect("create the log file");
    // A database of its own: the reconcilers of apps on the shared one would
    // see the callee, who never joins the room, as gone.
    let (database_url, room_prefix) = isolated_database(&app.config).await;
    let env = [
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "debug,h2=info,hyper=info,hyper_util=info,reqwest=info,rustls=info".to_owned()),
        ("DATABASE_URL", database_url),
        ("ROOM_PREFIX", room_prefix),
    ];
    let service = launch_with_stdout(free_port(), &env, log).await;
    let call_id = service.start_call(&caller, &callee, "audio").await;
    for (method, path, user) in [
        (Method::POST, format!("/api/v1/calls/{call_id}/accept"), &callee),
        (Method::GET, format!("/api/v1/calls/{call_id}"), &caller),
        (Method::POST, format!("/api/v1/calls/{call_id}/end"), &caller),
    ] {
        let (status, body) = service.send(method.clone(), &path, user, None).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.kill().await;

    let text = std::fs::read_to_string(&log_path).expect("read the log");
    let _ = std::fs::remove_file(&log_path);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let in_requests: Vec<&Value> =
        lines.iter().filter(|l| spans(l).iter().any(|s| s["name"] == "request")).collect();
    assert!(in_requests.len() >= 8, "the requests were logged: {} lines", in_requests.len());
    let mut finished = 0;
    for line in &in_requests {
        let request_id = field(line, "request_id").unwrap_or_else(|| panic!("no request id: {line}"));
        assert_eq!(request_id.len(), 36, "a UUID: {line}");
        let path = field(line, "path").unwrap_or_default();
        if path.contains(&call_id) {
            assert_eq!(field(line, "call_id"), Some(call_id.as_str()), "the call is named: {line}");
        }
        // The response line: by then the user is known, and the call too.
        if line["fields"]["message"] == "finished processing request" && path.starts_with("/api/v1/calls") {
            finished += 1;
            let user = field(line, "user_id").unwrap_or_else(|| panic!("no user id: {line}"));
            assert!(user == caller.id || user == callee.id, "{line}");
            assert_eq!(field(line, "call_id"), Some(call_id.as_str()), "{line}");
        }
    }
    assert_eq!(finished, 4, "one response line per request");
}
