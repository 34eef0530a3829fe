//! LiveKit webhooks made and signed the way LiveKit makes them: protojson
//! (camelCase, 64-bit integers as strings) with an `Authorization` JWT from
//! the API key whose `sha256` claim is the body's base64 SHA-256.

// A toolkit for several test modules: each uses part of it.
#![allow(dead_code)]

use base64::Engine;
use livekit_api::access_token::AccessToken;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::{TestApp, base_config};

fn sign_with(key: &str, secret: &str, body: &str) -> String {
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
    AccessToken::with_api_key(key, secret).with_sha256(&digest).to_jwt().expect("a signed webhook token")
}

/// Signed with this deployment's LiveKit key, as LiveKit signs.
pub fn sign(body: &str) -> String {
    let lk = base_config().livekit;
    sign_with(&lk.api_key, lk.api_secret.expose_secret(), body)
}

fn event_id() -> String {
    format!("EV_{}", Uuid::new_v4().simple())
}

/// A room event (`room_started`, `room_finished`) created at `created_at` (Unix seconds).
pub fn room_event(kind: &str, room: &str, created_at: i64) -> Value {
    json!({
        "event": kind,
        "id": event_id(),
        "createdAt": created_at.to_string(),
        "room": {"sid": "RM_test", "name": room},
    })
}

/// A participant event for the session that joined at `session_ms`.
pub fn participant_event(kind: &str, room: &str, identity: &str, session_ms: i64, created_at: i64) -> Value {
    let mut event = room_event(kind, room, created_at);
    event["participant"] = json!({
        "sid": format!("PA_{session_ms}"),
        "identity": identity,
        "state": "ACTIVE",
        "joinedAt": (session_ms / 1000).to_string(),
        "joinedAtMs": session_ms.to_string(),
    });
    event
}

impl TestApp {
    /// Posts a webhook to this app, signed as LiveKit would.
    pub async fn deliver(&self, event: &Value) -> StatusCode {
        let body = event.to_string();
        let auth = sign(&body);
        self.deliver_raw(&body, Some(&auth)).await
    }

    pub async fn deliver_raw(&self, body: &str, authorization: Option<&str>) -> StatusCode {
        let mut req = self
            .http
            .post(self.url("/webhooks/livekit"))
            .header("content-type", "application/webhook+json")
            .body(body.to_owned());
        if let Some(auth) = authorization {
            req = req.header("authorization", auth);
        }
        req.send().await.expect("webhook delivered").status()
    }

    /// Waits until every stored LiveKit event of this app's database is handled.
    pub async fn webhooks_settled(&self) {
        let db = self.state.db.clone();
        crate::helpers::eventually(std::time::Duration::from_secs(10), "LiveKit events are handled", || {
            let db = db.clone();
            async move {
                let pending: i64 = sqlx::query_scalar(
                    "select count(*) from livekit_webhook_events where processed_at is null",
                )
                .fetch_one(&db)
                .await
                .expect("count");
                pending == 0
            }
        })
        .await;
    }
}

/// An app with a database and a room prefix of its own, so LiveKit's
/// webhooks never reach it, and whose reconciler stays idle: what such an
/// app learns, it learns from the webhooks a test delivers (or from a pass
/// the test makes itself).
pub async fn spawn_unreconciled_app() -> TestApp {
    spawn_unreconciled_app_with(|_| {}).await
}

/// Like [`spawn_unreconciled_app`], configured further by `configure`.
pub async fn spawn_unreconciled_app_with(configure: impl FnOnce(&mut callgate::config::Config)) -> TestApp {
    let mut config = crate::helpers::base_config();
    let (url, prefix) = crate::helpers::isolated_database(&config).await;
    let db = sqlx::PgPool::connect(&url).await.expect("connect");
    callgate::app::MIGRATOR.run(&db).await.expect("migrate");
    // As if a pass had just run: the next one is an interval away.
    sqlx::query("update reconciler_lease set ran_at = now()").execute(&db).await.expect("lease");
    db.close().await;
    config.database_url = secrecy::SecretString::from(url);
    config.room_prefix = prefix;
    config.reconcile_interval = std::time::Duration::from_secs(3600);
    configure(&mut config);
    crate::helpers::start(config).await
}
