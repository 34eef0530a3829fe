//! Starts the real service against the real stack (PostgreSQL, Redis,
//! LiveKit, Coturn on loopback, started by `deploy/local.sh`), exactly as
//! production does, and talks to it over HTTP.

pub mod binary;
pub mod events;
pub mod lk_client;
pub mod lk_events;
pub mod settings;

pub use settings::{base_config, shared_prefix, webhook_port, webhook_receiver};

use std::sync::OnceLock;
use std::time::Duration;

use callgate::app::Application;
use callgate::config::Config;
use callgate::http::state::AppState;
use callgate::infra::auth::{DevToken, mint_dev_token};
use livekit_api::services::room::RoomClient;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Tests that run real media encoders at once: a part of browser.py (two or
/// three Chromium pages of WebRTC) or an egress room composite (a Chromium
/// and GStreamer). Beside the rest of the suite on two cores, more of them
/// starved LiveKit and the pages' timers: CI saw a browser's own
/// negotiation give up, a page answer nothing for 30 s, and egress start
/// 9 s late. Each holds a permit for its whole run. (Under cargo-nextest,
/// a process per test, the `media` test group of .config/nextest.toml
/// limits them the same way.)
pub static MEDIA: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A turn among the tests that run real media encoders ([`MEDIA`]).
pub async fn media_turn() -> tokio::sync::SemaphorePermit<'static> {
    MEDIA.acquire().await.expect("the semaphore is never closed")
}

pub struct TestApp {
    pub address: String,
    /// The operations listener (`/metrics`, detailed `/ready`).
    pub admin_address: String,
    pub state: AppState,
    pub config: Config,
    pub http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub token: String,
}

pub struct Options {
    /// A database of its own (and so a room prefix of its own): LiveKit's
    /// webhooks never reach such an app.
    pub isolated: bool,
    pub configure: Box<dyn FnOnce(&mut Config) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Options { isolated: false, configure: Box::new(|_| {}) }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_configured(configure: impl FnOnce(&mut Config) + Send + 'static) -> TestApp {
    spawn_app_with(Options { isolated: false, configure: Box::new(configure) }).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    ensure_webhook_receiver();
    let mut config = base_config();
    if options.isolated {
        let (url, prefix) = isolated_database(&config).await;
        config.database_url = secrecy::SecretString::from(url);
        config.room_prefix = prefix;
    }
    (options.configure)(&mut config);
    start(config).await
}

pub async fn start(config: Config) -> TestApp {
    callgate::telemetry::init_for_tests();
    let app = Application::build(config.clone()).await.expect("the app builds");
    let port = app.port();
    let admin_port = app.admin_port().expect("test apps have an operations listener (base_config)");
    let state = app.state();
    let stop = app.stop_token();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        admin_address: format!("http://127.0.0.1:{admin_port}"),
        state,
        config,
        http: reqwest::Client::new(),
        stop,
    }
}

/// An app on a given database (from `isolated_database`): apps started on
/// the same one are instances of one deployment, alone with their data.
pub async fn spawn_on(
    database: &(String, String),
    configure: impl FnOnce(&mut Config) + Send + 'static,
) -> TestApp {
    let (url, prefix) = database.clone();
    spawn_app_configured(move |config| {
        config.database_url = secrecy::SecretString::from(url);
        config.room_prefix = prefix;
        configure(config);
    })
    .await
}

/// A fresh database, and a room prefix no other app uses.
pub async fn isolated_database(config: &Config) -> (String, String) {
    let tag = Uuid::new_v4().simple().to_string()[..12].to_owned();
    let name = format!("callgate_t_{tag}");
    let base = config.database_url.expose_secret();
    let mut conn = PgConnection::connect(base).await.expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let url = match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("DATABASE_URL has no database name"),
    };
    (url, format!("{}{tag}-", shared_prefix().trim_end_matches('-')))
}

/// LiveKit posts its webhooks to one fixed address (`livekit.yaml`); one
/// app per test process listens there, on the shared test database, so any
/// test app's calls are followed, as with several production instances.
/// Under cargo-nextest (a process per test) the runner starts one for the
/// whole run instead (`examples/webhook_receiver.rs`) and says so with
/// `TEST_WEBHOOK_RECEIVER=external`.
fn ensure_webhook_receiver() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        if std::env::var("TEST_WEBHOOK_RECEIVER").is_ok_and(|v| v == "external") {
            return;
        }
        let port = webhook_port();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async move {
                let _ = webhook_receiver(port, || {
                    let _ = ready_tx.send(Ok(()));
                })
                .await
                .map_err(|err| ready_tx.send(Err(format!("{err:#}"))));
            });
        });
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => panic!("the webhook receiver did not start on port {port}: {err}"),
            Err(_) => panic!("the webhook receiver did not start in time"),
        }
    });
}

/// One request, as `user` if any: the status and the JSON body (or the
/// text, as a JSON string).
pub async fn request(
    http: &reqwest::Client,
    method: Method,
    url: String,
    user: Option<&TestUser>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, url);
    if let Some(user) = user {
        req = req.bearer_auth(&user.token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

pub fn jwt_secret() -> String {
    std::env::var("JWT_SECRET").expect("JWT_SECRET")
}

impl TestApp {
    pub fn user(&self, gender: &str) -> TestUser {
        self.user_with_roles(gender, &[])
    }

    /// A user whose token carries `roles` (e.g. `admin`).
    pub fn user_with_roles(&self, gender: &str, roles: &[&str]) -> TestUser {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let id = format!("u-{}", Uuid::new_v4().simple());
        let token = mint_dev_token(
            &jwt_secret(),
            &self.config.jwt,
            &DevToken {
                user: &id,
                name: Some(&format!("User {}", &id[2..8])),
                gender: Some(gender),
                roles: &roles,
                ttl: Duration::from_secs(3600),
            },
        )
        .expect("mint");
        TestUser { id, token }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A URL on the operations listener (`ADMIN_PORT`).
    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{}", self.admin_address, path)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        user: Option<&TestUser>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        request(&self.http, method, self.url(path), user, body).await
    }

    pub async fn get(&self, path: &str, user: &TestUser) -> (StatusCode, Value) {
        self.send(Method::GET, path, Some(user), None).await
    }

    pub async fn post(&self, path: &str, user: &TestUser, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(user), Some(body)).await
    }

    pub async fn start_call(
        &self,
        caller: &TestUser,
        callees: &[&TestUser],
        kind: &str,
    ) -> (StatusCode, Value) {
        let ids: Vec<&str> = callees.iter().map(|u| u.id.as_str()).collect();
        self.post("/api/v1/calls", caller, json!({"participantIds": ids, "type": kind})).await
    }

    /// Starts a call that must succeed; returns its id and the whole answer.
    pub async fn ring(&self, caller: &TestUser, callees: &[&TestUser], kind: &str) -> (String, Value) {
        let (status, body) = self.start_call(caller, callees, kind).await;
        assert_eq!(status, StatusCode::CREATED, "start call: {body}");
        (body["call"]["id"].as_str().expect("call id").to_owned(), body)
    }

    pub async fn call_action(
        &self,
        call: &str,
        action: &str,
        user: &TestUser,
        body: Value,
    ) -> (StatusCode, Value) {
        self.post(&format!("/api/v1/calls/{call}/{action}"), user, body).await
    }

    pub async fn call(&self, call: &str, user: &TestUser) -> Value {
        let (status, body) = self.get(&format!("/api/v1/calls/{call}"), user).await;
        assert_eq!(status, StatusCode::OK, "get call: {body}");
        body
    }

    /// Polls the call until `done` holds or the time is up.
    pub async fn wait_for_call(
        &self,
        call: &str,
        user: &TestUser,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let body = self.call(call, user).await;
            if done(&body) {
                return body;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("condition not reached within {within:?}; call is {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn db_count(&self, sql: &'static str, call: &str) -> i64 {
        let id = Uuid::parse_str(call).expect("uuid");
        sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(&self.state.db).await.expect("count query")
    }

    pub fn room_name(&self, call: &str) -> String {
        format!("{}{}", self.config.room_prefix, call)
    }
}

pub fn livekit_rooms() -> RoomClient {
    let config = base_config();
    RoomClient::with_api_key(
        &config.livekit.api_url,
        &config.livekit.api_key,
        config.livekit.api_secret.expose_secret(),
    )
}

pub async fn room_exists(name: &str) -> bool {
    let rooms = livekit_rooms().list_rooms(vec![name.to_owned()]).await.expect("LiveKit answers");
    rooms.iter().any(|r| r.name == name)
}

/// Polls until `check` holds or the time is up.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: not true within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
