//! Measures how fast callgate acknowledges LiveKit's webhooks under a burst.
//!
//! Starts one callgate instance in this process against a database of its
//! own (created and dropped here), starts `--calls` calls through the API,
//! then posts `--events` signed webhooks for them, `--in-flight` at a time
//! (default: all at once), and reports the handler latency (request sent to
//! answer received) and the time until every event is handled. Needs the stack and environment of
//! `deploy/local.sh test` (`.env.example`):
//!
//! ```text
//! set -a; . ./.env.example; set +a
//! cargo run --release --example webhook_burst -- --events 1000 --calls 20
//! ```

// Measures the service against the system's clock.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use callgate::app::Application;
use callgate::config::Config;
use callgate::infra::auth::{DevToken, mint_dev_token};
use futures::StreamExt;
use livekit_api::access_token::AccessToken;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

fn arg(name: &str, default: usize) -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args.get(i + 1).context("a value after the flag")?.parse().context(name.to_owned()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events = arg("--events", 1000)?;
    let calls = arg("--calls", 20)?.max(1);
    let in_flight = arg("--in-flight", events)?.max(1);
    let mut config = Config::from_env()?;
    let tag = Uuid::new_v4().simple().to_string()[..12].to_owned();
    let database = format!("callgate_burst_{tag}");
    let server_url =
        config.database_url.expose_secret().rsplit_once('/').context("DATABASE_URL")?.0.to_owned();
    let mut admin = PgConnection::connect(config.database_url.expose_secret()).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {database}"))).execute(&mut admin).await?;
    config.database_url = SecretString::from(format!("{server_url}/{database}"));
    config.room_prefix = format!("burst{tag}-");
    config.port = 0;

    let result = measure(config.clone(), events, calls, in_flight).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("drop database {database} with (force)")))
        .execute(&mut admin)
        .await?;
    result
}

async fn measure(config: Config, events: usize, calls: usize, in_flight: usize) -> anyhow::Result<()> {
    let app = Application::build(config.clone()).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let db = app.state().db.clone();
    let stop = app.stop_token();
    let server = tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let secret = std::env::var("JWT_SECRET").context("JWT_SECRET")?;
    let token = |user: &str| {
        let claims = DevToken { user, name: None, gender: None, roles: &[], ttl: Duration::from_secs(600) };
        mint_dev_token(&secret, &config.jwt, &claims)
    };

    let mut started = Vec::new();
    for i in 0..calls {
        let (caller, callee) = (format!("burst-a-{i}"), format!("burst-b-{i}"));
        let body: Value = http
            .post(format!("{base}/api/v1/calls"))
            .bearer_auth(token(&caller)?)
            .json(&json!({"participantIds": [callee], "type": "audio"}))
            .send()
            .await?
            .json()
            .await?;
        let call = body["call"]["id"].as_str().context("a call id")?.to_owned();
        started.push((call, caller));
    }

    let lk = &config.livekit;
    let now = chrono::Utc::now().timestamp();
    let mut signed = Vec::with_capacity(events);
    for i in 0..events {
        let room = format!("{}{}", config.room_prefix, started[i % calls].0);
        let body = json!({
            "event": "track_unpublished",
            "id": format!("EV_burst_{i}"),
            "createdAt": now.to_string(),
            "room": {"sid": "RM_burst", "name": room},
            "participant": {"sid": "PA_burst", "identity": "someone"},
            "track": {"sid": format!("TR_{i}"), "type": "AUDIO", "source": "MICROPHONE"},
        })
        .to_string();
        let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
        let auth = AccessToken::with_api_key(&lk.api_key, lk.api_secret.expose_secret())
            .with_sha256(&digest)
            .to_jwt()?;
        signed.push((body, auth));
    }

    let url = format!("{base}/webhooks/livekit");
    let burst = Instant::now();
    let answers: Vec<(reqwest::StatusCode, Duration)> = futures::stream::iter(signed)
        .map(|(body, auth)| {
            let (http, url) = (&http, &url);
            async move {
                let sent = Instant::now();
                let status = match http.post(url).header("authorization", auth).body(body).send().await {
                    Ok(resp) => resp.status(),
                    Err(_) => reqwest::StatusCode::SERVICE_UNAVAILABLE,
                };
                (status, sent.elapsed())
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let acknowledged = burst.elapsed();
    let refused = answers.iter().filter(|(status, _)| !status.is_success()).count();
    loop {
        let pending: i64 =
            sqlx::query_scalar("select count(*) from livekit_webhook_events where processed_at is null")
                .fetch_one(&db)
                .await?;
        if pending == 0 {
            break;
        }
        if burst.elapsed() > Duration::from_secs(120) {
            bail!("{pending} events still unhandled after two minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let handled = burst.elapsed();

    let mut latencies: Vec<Duration> = answers.iter().map(|(_, latency)| *latency).collect();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!("{events} signed webhooks for {calls} calls, {in_flight} in flight at a time:");
    println!(
        "  handler latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.50).as_secs_f64() * 1e3,
        at(0.90).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
    println!("  refused: {refused}; all acknowledged after {acknowledged:?}; all handled after {handled:?}");

    for (call, caller) in &started {
        let _ = http.post(format!("{base}/api/v1/calls/{call}/end")).bearer_auth(token(caller)?).send().await;
    }
    stop.cancel();
    server.await??;
    db.close().await;
    Ok(())
}
