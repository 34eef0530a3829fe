//! Webhooks to the host application: signed the Standard Webhooks way,
//! retried until accepted with the same id, never lost to a crash, and
//! saying what the host needs to tell its users.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::consent::call_in_room;
use crate::helpers::binary::{free_port, launch};
use crate::helpers::{
    TestApp, base_config, eventually, isolated_database, spawn_app, spawn_app_configured, spawn_on,
};

#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) id: String,
    pub(crate) timestamp: String,
    pub(crate) signature: String,
    pub(crate) raw: Vec<u8>,
    pub(crate) body: Value,
}

#[derive(Clone, Copy)]
pub(crate) enum Answer {
    Status(u16),
    /// Never answers: the attempt stays in flight.
    Hang,
}

type Script = Arc<Mutex<VecDeque<Answer>>>;
type Log = Arc<Mutex<Vec<Delivery>>>;

/// The host application's endpoint: answers as scripted (then 200) and
/// records every attempt.
pub(crate) struct Receiver {
    pub(crate) url: String,
    log: Log,
}

impl Receiver {
    pub(crate) async fn start(script: &[Answer]) -> Receiver {
        let log = Log::default();
        let script: Script = Arc::new(Mutex::new(script.iter().copied().collect()));
        let app = Router::new().route("/hooks/calls", post(receive)).with_state((log.clone(), script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks/calls", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, log }
    }

    pub(crate) fn all(&self) -> Vec<Delivery> {
        self.log.lock().expect("log").clone()
    }

    pub(crate) fn of(&self, kind: &str) -> Vec<Delivery> {
        self.log.lock().expect("log").iter().filter(|d| d.body["type"] == kind).cloned().collect()
    }

    pub(crate) async fn wait_for(&self, kind: &str, attempts: usize, within: Duration) -> Vec<Delivery> {
        eventually(within, &format!("{attempts} attempts of {kind}"), || {
            let seen = self.of(kind).len();
            async move { seen >= attempts }
        })
        .await;
        self.of(kind)
    }
}

async fn receive(State((log, script)): State<(Log, Script)>, headers: HeaderMap, raw: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let delivery = Delivery {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw: raw.to_vec(),
    };
    log.lock().expect("log").push(delivery);
    let answer = script.lock().expect("script").pop_front().unwrap_or(Answer::Status(200));
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        Answer::Hang => std::future::pending().await,
    }
}

pub(crate) fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// Verified as a receiver would, with nothing but the secret: the
/// signature, and a timestamp close to now.
pub(crate) fn assert_signed(secret: &str, d: &Delivery) {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("the secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{}.{}.", d.id, d.timestamp).as_bytes());
    mac.update(&d.raw);
    let expected =
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert!(d.signature.split(' ').any(|s| s == expected), "bad signature {} on {}", d.signature, d.id);
    let sent: i64 = d.timestamp.parse().expect("webhook-timestamp is unix seconds");
    assert!((chrono::Utc::now().timestamp() - sent).abs() < 300, "a fresh timestamp");
}

pub(crate) fn configure_hook(
    url: &str,
    secret: &str,
) -> impl FnOnce(&mut callgate::config::Config) + Send + 'static {
    let hook = callgate::config::AppWebhookConfig::new(url.to_owned(), secret).expect("a valid webhook");
    move |config| config.app_webhook = Some(hook)
}

/// (delivered, attempts) of an outbox row.
async fn outbox_row(app: &TestApp, id: &str) -> (bool, i32) {
    sqlx::query_as("select delivered_at is not null, attempts from app_webhook_outbox where id = $1")
        .bind(Uuid::parse_str(id).expect("uuid"))
        .fetch_one(&app.state.db)
        .await
        .expect("the outbox row")
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_signed_event_until_it_accepts_it() {
    let receiver = Receiver::start(&[Answer::Status(500), Answer::Status(500)]).await;
    let secret = new_secret();
    let database = isolated_database(&base_config()).await;
    let app = spawn_on(&database, configure_hook(&receiver.url, &secret)).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;

    let tries = receiver.wait_for("call.started", 3, Duration::from_secs(20)).await;
    let id = &tries[0].id;
    assert!(Uuid::parse_str(id).is_ok(), "webhook-id {id}");
    for attempt in &tries {
        assert_eq!(&attempt.id, id, "every attempt carries the same event id");
        assert_signed(&secret, attempt);
        assert_eq!(attempt.body["data"]["callId"], call);
        assert_eq!(attempt.body["timestamp"], tries[0].body["timestamp"], "the payload does not change");
    }
    eventually(Duration::from_secs(5), "the outbox row is marked delivered at the third attempt", || {
        let (app, id) = (&app, id.clone());
        async move { outbox_row(app, &id).await == (true, 3) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // longer than the next backoff step would be
    assert_eq!(receiver.of("call.started").len(), 3, "accepted means no further attempts");
}

#[tokio::test]
async fn an_event_is_delivered_after_the_service_is_killed_before_delivering_it() {
    // The first attempt never gets an answer: it is in flight when the service dies.
    let receiver = Receiver::start(&[Answer::Hang]).await;
    let secret = new_secret();
    let database = isolated_database(&base_config()).await;
    let env = [
        ("DATABASE_URL", database.0.clone()),
        ("ROOM_PREFIX", database.1.clone()),
        ("APP_WEBHOOK_URL", receiver.url.clone()),
        ("APP_WEBHOOK_SECRET", secret.clone()),
    ];
    let port = free_port();
    let service = launch(port, &env).await;
    let users = spawn_on(&database, |_| {}).await;
    let (alice, bob) = (users.user("female"), users.user("male"));
    let call = service.start_call(&alice, &bob, "video").await;

    let first = receiver.wait_for("call.started", 1, Duration::from_secs(10)).await;
    service.kill().await;
    let _service = launch(port, &env).await;

    let tries = receiver.wait_for("call.started", 2, Duration::from_secs(20)).await;
    assert_eq!(tries[1].id, first[0].id, "the same event, retried");
    assert_signed(&secret, &tries[1]);
    assert_eq!(tries[1].body["data"]["callId"], call);
    assert_eq!(tries[1].body["data"]["type"], "video");
    eventually(Duration::from_secs(5), "marked delivered", || {
        let (users, id) = (&users, first[0].id.clone());
        async move { outbox_row(users, &id).await.0 }
    })
    .await;
}

async fn outbox(app: &TestApp, call: &str, kind: &str) -> Vec<Value> {
    sqlx::query_scalar("select payload from app_webhook_outbox where call_id = $1 and type = $2")
        .bind(Uuid::parse_str(call).expect("uuid"))
        .bind(kind)
        .fetch_all(&app.state.db)
        .await
        .expect("outbox rows")
}

#[tokio::test]
async fn a_completed_video_call_says_how_long_it_lasted_and_that_video_was_used() {
    let app = spawn_app_configured(|_| {}).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, a, b) = call_in_room(&app, &alice, &bob, "video", json!(true)).await;
    tokio::time::sleep(Duration::from_millis(2200)).await; // the call lasts two seconds
    app.call_action(&call, "end", &alice, json!({})).await;
    a.disconnect().await.expect("alice leaves");
    b.disconnect().await.expect("bob leaves");

    let started = outbox(&app, &call, "call.started").await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["data"]["initiatorId"], alice.id);
    let answered = outbox(&app, &call, "call.answered").await;
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["data"]["answeredBy"], bob.id);
    let ended = outbox(&app, &call, "call.ended").await;
    assert_eq!(ended.len(), 1);
    let data = &ended[0]["data"];
    assert_eq!(data["outcome"], "completed", "{data}");
    assert_eq!(data["type"], "video");
    assert_eq!(data["videoUsed"], true);
    assert!(data["durationSeconds"].as_i64().is_some_and(|d| d >= 2), "{data}");
    assert!(outbox(&app, &call, "call.missed").await.is_empty());
    assert!(!ended[0].to_string().contains("female"), "gender never leaves the service");
}

#[tokio::test]
async fn a_declined_call_and_a_missed_call_are_told_apart() {
    // Declined on an app that rings as long as usual (a loaded box may take
    // longer than a second to decline), missed on one that rings a second.
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));

    let (declined, _) = app.ring(&alice, &[&bob], "audio").await;
    app.call_action(&declined, "decline", &bob, json!({})).await;
    let ended = outbox(&app, &declined, "call.ended").await;
    assert_eq!(ended[0]["data"]["outcome"], "declined");
    assert_eq!(ended[0]["data"]["durationSeconds"], 0);
    assert_eq!(ended[0]["data"]["videoUsed"], false);
    assert!(outbox(&app, &declined, "call.missed").await.is_empty());

    let app = spawn_app_configured(|c| c.timeouts.ringing = Duration::from_secs(1)).await;
    let (alice, carol) = (app.user("female"), app.user("female"));
    let (missed, _) = app.ring(&alice, &[&carol], "video").await;
    app.wait_for_call(&missed, &alice, Duration::from_secs(10), |c| c["state"] == "ended").await;
    let ended = outbox(&app, &missed, "call.ended").await;
    assert_eq!(ended[0]["data"]["outcome"], "missed");
    let missed_hook = outbox(&app, &missed, "call.missed").await;
    assert_eq!(missed_hook.len(), 1);
    assert_eq!(missed_hook[0]["data"]["missedBy"], json!([carol.id]), "who to send the missed-call push to");
}

#[tokio::test]
async fn webhooks_undelivered_for_three_days_are_given_up_and_week_old_rows_deleted() {
    let database = isolated_database(&base_config()).await;
    let app = spawn_on(&database, |_| {}).await;
    let (stale, old, fresh) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (id, age_hours, delivered) in [(stale, 73, false), (old, 24 * 8, true), (fresh, 1, false)] {
        sqlx::query(
            "insert into app_webhook_outbox (id, type, call_id, payload, created_at, delivered_at) \
             values ($1, 'call.ended', $2, '{}', now() - make_interval(hours => $3), \
             case when $4 then now() end)",
        )
        .bind(id)
        .bind(Uuid::new_v4())
        .bind(age_hours)
        .bind(delivered)
        .execute(&app.state.db)
        .await
        .expect("insert");
    }
    callgate::workers::app_webhooks::tidy(&app.state, chrono::Utc::now()).await.expect("tidy");
    let state = |id: Uuid| {
        sqlx::query_scalar::<_, bool>("select failed_at is not null from app_webhook_outbox where id = $1")
            .bind(id)
            .fetch_optional(&app.state.db)
    };
    assert_eq!(state(stale).await.expect("query"), Some(true), "given up on");
    assert_eq!(state(old).await.expect("query"), None, "deleted");
    assert_eq!(state(fresh).await.expect("query"), Some(false), "still being retried");
}

/// Every app webhook of the call and every event queued for its people,
/// each table in the order it was written (`seq`).
async fn written_in_order(app: &TestApp, call: &str) -> (Vec<String>, Vec<String>) {
    let id = Uuid::parse_str(call).expect("uuid");
    let hooks = sqlx::query_scalar("select type from app_webhook_outbox where call_id = $1 order by seq")
        .bind(id)
        .fetch_all(&app.state.db)
        .await
        .expect("outbox rows");
    let events = sqlx::query_scalar(
        "select type || ' for ' || user_id from user_events where call_id = $1 order by seq",
    )
    .bind(id)
    .fetch_all(&app.state.db)
    .await
    .expect("user events");
    (hooks, events)
}

#[tokio::test]
async fn what_one_step_tells_the_host_and_the_people_is_written_in_the_order_it_happened() {
    let app = spawn_app_configured(|_| {}).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let (status, body) = app.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.call_action(&call, "end", &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (hooks, events) = written_in_order(&app, &call).await;
    // Each step's rows are written together, in one statement.
    assert_eq!(hooks, ["call.started", "call.ringing", "call.ring_stopped", "call.answered", "call.ended"]);
    let (a, b) = (alice.id.as_str(), bob.id.as_str());
    let expected: Vec<String> = [
        ("call.incoming", b),
        ("call.accepted", a),
        ("call.ring_stopped", b),
        ("call.ended", a),
        ("call.ended", b),
    ]
    .iter()
    .map(|(kind, user)| format!("{kind} for {user}"))
    .collect();
    assert_eq!(events, expected);
}
