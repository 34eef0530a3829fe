//! A dependency outage answers 503 with Retry-After (never a 500 nor a
//! dropped connection) and loses nothing. PostgreSQL is stopped with
//! `-m immediate` and started again while requests keep coming, on a
//! cluster of its own that `deploy/local.sh` creates for this test
//! (`CHAOS_DATABASE_URL`, `CHAOS_PG_CTL`): the shared one is never stopped.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, base_config, eventually, isolated_database, spawn_on};

/// `pg_ctlcluster <version> <cluster> <action>` on the outage test's cluster.
async fn chaos_cluster(action: &[&str]) {
    let ctl = std::env::var("CHAOS_PG_CTL").expect("CHAOS_PG_CTL (exported by deploy/local.sh test)");
    let mut words = ctl.split_whitespace();
    let program = words.next().expect("a command");
    let status = tokio::process::Command::new(program)
        .args(words)
        .args(action)
        .status()
        .await
        .unwrap_or_else(|e| panic!("{ctl} {action:?}: {e}"));
    assert!(status.success(), "{ctl} {action:?}: {status}");
}

/// Every app webhook the host application receives: (type, call id).
type Received = Arc<Mutex<Vec<(String, String)>>>;

async fn host_application() -> (String, Received) {
    async fn receive(State(received): State<Received>, body: Bytes) -> axum::http::StatusCode {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let kind = body["type"].as_str().unwrap_or_default().to_owned();
        let call = body["data"]["callId"].as_str().unwrap_or_default().to_owned();
        received.lock().expect("log").push((kind, call));
        axum::http::StatusCode::NO_CONTENT
    }
    let received = Received::default();
    let app = Router::new().route("/hooks", post(receive)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// What the load saw.
#[derive(Default)]
struct Seen {
    /// Calls whose start answered 201.
    started: Vec<String>,
    /// Calls whose end answered 200.
    ended: Vec<String>,
    /// Every answer that is neither a 2xx nor a 503 with Retry-After, and
    /// every request that got no answer.
    wrong: Vec<String>,
    unavailable: usize,
}

/// One client: starts calls between new users and ends them, until `stop`.
async fn client(app: Arc<TestApp>, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    while !stop.load(Ordering::Relaxed) {
        let (alice, bob) = (app.user("female"), app.user("male"));
        let body = json!({"participantIds": [bob.id], "type": "audio"});
        let Some((status, answer)) = send(&app, "/api/v1/calls", &alice, body, &seen).await else { continue };
        if status != StatusCode::CREATED {
            continue;
        }
        let call = answer["call"]["id"].as_str().expect("a call id").to_owned();
        seen.lock().expect("seen").started.push(call.clone());
        let path = format!("/api/v1/calls/{call}/end");
        if let Some((StatusCode::OK, _)) = send(&app, &path, &alice, json!({}), &seen).await {
            seen.lock().expect("seen").ended.push(call);
        }
    }
}

/// A request; anything but a 2xx or a 503 with Retry-After is recorded as
/// wrong.
async fn send(
    app: &TestApp,
    path: &str,
    user: &crate::helpers::TestUser,
    body: Value,
    seen: &Mutex<Seen>,
) -> Option<(StatusCode, Value)> {
    let sent = app.http.post(app.url(path)).bearer_auth(&user.token).json(&body).send().await;
    let response = match sent {
        Ok(response) => response,
        Err(err) => {
            seen.lock().expect("seen").wrong.push(format!("POST {path}: no answer: {err}"));
            return None;
        }
    };
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    let mut seen = seen.lock().expect("seen");
    match status {
        s if s.is_success() => {}
        StatusCode::SERVICE_UNAVAILABLE if retry_after && answer["code"] == "unavailable" => {
            seen.unavailable += 1
        }
        other => seen.wrong.push(format!("POST {path}: {other} {answer}")),
    }
    Some((status, answer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_stopped_and_started_under_load_answers_only_503s_and_loses_nothing() {
    let (hooks, received) = host_application().await;
    let mut chaos = base_config();
    chaos.database_url = secrecy::SecretString::from(
        std::env::var("CHAOS_DATABASE_URL").expect("CHAOS_DATABASE_URL (exported by deploy/local.sh test)"),
    );
    // A database and a room prefix of its own: LiveKit's webhooks never reach it.
    let database = isolated_database(&chaos).await;
    let secret =
        format!("whsec_{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]));
    let hook = callgate::config::AppWebhookConfig::new(hooks, &secret).expect("a valid webhook");
    let app = Arc::new(
        spawn_on(&database, move |c| {
            c.app_webhook = Some(hook);
            // Requests do not queue for long for a connection that will not come.
            c.database_acquire_timeout = Duration::from_secs(2);
            // Calls whose end was refused end by themselves, soon.
            c.timeouts.ringing = Duration::from_secs(10);
            c.rate_limits.call_starts_per_minute = 0;
        })
        .await,
    );

    let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Seen::default())));
    let clients: Vec<_> =
        (0..6).map(|_| tokio::spawn(client(app.clone(), stop.clone(), seen.clone()))).collect();
    // Some calls started first (on a loaded box the first take a while).
    eventually(Duration::from_secs(30), "calls start before the outage", || {
        let now = seen.lock().expect("seen").started.len();
        async move { now > 0 }
    })
    .await;
    let before = seen.lock().expect("seen").started.len();
    chaos_cluster(&["stop", "-m", "immediate"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    chaos_cluster(&["start"]).await;
    // Until calls start again, and a little more.
    let restarted = seen.lock().expect("seen").started.len();
    eventually(Duration::from_secs(60), "calls start again after the restart", || {
        let now = seen.lock().expect("seen").started.len();
        async move { now > restarted + 5 }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client");
    }

    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    assert!(seen.wrong.is_empty(), "answers other than 2xx and 503 unavailable: {:#?}", seen.wrong);
    assert!(before > 0, "calls were started before the outage");
    assert!(seen.unavailable > 0, "the outage was noticed (503s)");

    // Nothing lost: every call that got a 201 is in the database and ends
    // (by its end, or by ringing out), and the host application hears of it.
    let started: Vec<Uuid> = seen.started.iter().map(|c| Uuid::parse_str(c).expect("uuid")).collect();
    let stored: i64 = sqlx::query_scalar("select count(*) from calls where id = any($1)")
        .bind(&started)
        .fetch_one(&app.state.db)
        .await
        .expect("count");
    assert_eq!(stored, started.len() as i64, "every started call is stored");
    let ended: Vec<Uuid> = seen.ended.iter().map(|c| Uuid::parse_str(c).expect("uuid")).collect();
    let ended_stored: i64 = sqlx::query_scalar(
        "select count(*) from calls where id = any($1) and state = 'ended' and outcome = 'cancelled'",
    )
    .bind(&ended)
    .fetch_one(&app.state.db)
    .await
    .expect("count");
    assert_eq!(ended_stored, ended.len() as i64, "every call ended with a 200 is ended");
    let wanted: HashSet<(String, String)> = seen
        .started
        .iter()
        .flat_map(|c| [("call.started".to_owned(), c.clone()), ("call.ended".to_owned(), c.clone())])
        .collect();
    eventually(Duration::from_secs(90), "every started call's webhooks are delivered", || {
        let got: HashSet<(String, String)> = received.lock().expect("log").iter().cloned().collect();
        let missing = wanted.difference(&got).count();
        async move { missing == 0 }
    })
    .await;
}
