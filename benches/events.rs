//! Event stream figures, on the real binary (release) and the real stack.
//!
//! 1. Latency between two instances: two `callgate` processes on two ports
//!    share PostgreSQL and Redis. Bob's stream is open on instance 1; Alice
//!    calls him through instance 2's API, then cancels, ROUNDS times (default
//!    500), giving 2 × ROUNDS events (`call.incoming`, `call.cancelled`).
//!    Each is timed from the moment the API request is sent to the moment
//!    the event is read off Bob's socket (a reader task timestamps arrivals),
//!    and also from the moment the API response is back (negative: the event
//!    came first).
//! 2. Every device stops: Bob's phone stream on instance 1, he answers
//!    through instance 2; from the answer sent to `call.ring_stopped` read
//!    on the phone, ROUNDS times.
//! 3. Push-ready: from a call's start request sent to its `call.ringing`
//!    app webhook received by a local endpoint, ROUNDS times.
//! 4. Memory: a fresh instance, then CONNECTIONS (default 10,000) idle
//!    streams of as many users (each answering pings); VmRSS of the process
//!    before and after, from /proc.
//!
//! Run (from the repository root, stack up, dev settings exported):
//!   ulimit -n 20000; set -a; . ./.env.example; set +a; cargo bench --bench events
//! Under `cargo test` it makes a small smoke run (5 rounds, 20 streams).

#[path = "../tests/api/helpers/mod.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use callgate::infra::auth::{DevToken, mint_dev_token};
use helpers::binary::{Service, free_port, launch};
use helpers::events::try_connect;

fn token(user: &str) -> String {
    let config = helpers::base_config();
    let dev = DevToken { user, name: None, gender: Some("male"), roles: &[], ttl: Duration::from_secs(3600) };
    mint_dev_token(&helpers::jwt_secret(), &config.jwt, &dev).expect("a token")
}

fn ws_url(service: &Service) -> String {
    format!("{}/api/v1/events", service.address.replacen("http", "ws", 1))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(name: &str, mut ms: Vec<f64>) -> Value {
    ms.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(&ms, 50.0), percentile(&ms, 99.0));
    let (min, max) = (ms.first().copied().unwrap_or(f64::NAN), ms.last().copied().unwrap_or(f64::NAN));
    println!(
        "{name:<48} n={:<5} p50={p50:>7.2} ms  p99={p99:>7.2} ms  min={min:>7.2}  max={max:>7.2}",
        ms.len()
    );
    json!({"name": name.trim(), "n": ms.len(), "p50_ms": p50, "p99_ms": p99, "min_ms": min, "max_ms": max})
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn bench_env() -> Vec<(&'static str, String)> {
    vec![
        ("RATE_LIMIT_CALL_STARTS_PER_MINUTE", "0".into()),
        ("RATE_LIMIT_REQUESTS_PER_MINUTE", "0".into()),
        ("ROOM_PREFIX", "bench-".into()),
        ("RUST_LOG", "warn".into()),
    ]
}

async fn latency(rounds: usize) -> anyhow::Result<Value> {
    let env = bench_env();
    let (one, two) = (launch(free_port(), &env).await, launch(free_port(), &env).await);
    let alice = format!("bench-a-{}", uuid::Uuid::new_v4().simple());
    let bob = format!("bench-b-{}", uuid::Uuid::new_v4().simple());
    let (alice_token, bob_token) = (token(&alice), token(&bob));

    // Bob's socket on instance 1; a reader timestamps each event on arrival.
    let mut socket = try_connect(&ws_url(&one), Some(&bob_token)).await?;
    let (arrivals, mut arrived) = mpsc::unbounded_channel::<(Value, Instant)>();
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message {
                let now = Instant::now();
                if let Ok(event) = serde_json::from_str::<Value>(&text) {
                    let _ = arrivals.send((event, now));
                }
            }
        }
    });
    let http = reqwest::Client::new();
    let mut wait_for = async |kind: &str, call: &str| -> anyhow::Result<Instant> {
        loop {
            let (event, at) = tokio::time::timeout(Duration::from_secs(10), arrived.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the stream ended"))?;
            if event["type"] == kind && event["callId"] == call {
                return Ok(at);
            }
        }
    };
    let (mut from_request, mut from_response) = (Vec::new(), Vec::new());
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let signed = |later: Instant, earlier: Instant| {
        if later >= earlier { ms(later - earlier) } else { -ms(earlier - later) }
    };
    for _ in 0..rounds {
        let sent = Instant::now();
        let started: Value = http
            .post(format!("{}/api/v1/calls", two.address))
            .bearer_auth(&alice_token)
            .json(&json!({"participantIds": [bob], "type": "audio"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let answered = Instant::now();
        let call = started["call"]["id"].as_str().unwrap_or_default().to_owned();
        let at = wait_for("call.incoming", &call).await?;
        from_request.push(ms(at - sent));
        from_response.push(signed(at, answered));

        let sent = Instant::now();
        http.post(format!("{}/api/v1/calls/{call}/end", two.address))
            .bearer_auth(&alice_token)
            .send()
            .await?
            .error_for_status()?;
        let answered = Instant::now();
        let at = wait_for("call.cancelled", &call).await?;
        from_request.push(ms(at - sent));
        from_response.push(signed(at, answered));
    }
    println!("event latency, API on instance 2 -> socket on instance 1 ({} events)", from_request.len());
    let request = summary("  from the API request being sent", from_request);
    let response = summary("  from the API response being back", from_response);
    one.kill().await;
    two.kill().await;
    Ok(json!({"from_request": request, "from_response": response}))
}

/// Bob's phone stream is on instance 1; he answers on his laptop through
/// instance 2: from the answer being sent to the phone reading
/// `call.ring_stopped`.
async fn ring_stop_latency(rounds: usize) -> anyhow::Result<Value> {
    let env = bench_env();
    let (one, two) = (launch(free_port(), &env).await, launch(free_port(), &env).await);
    let alice = format!("bench-a-{}", uuid::Uuid::new_v4().simple());
    let bob = format!("bench-b-{}", uuid::Uuid::new_v4().simple());
    let (alice_token, bob_token) = (token(&alice), token(&bob));
    let mut phone = try_connect(&ws_url(&one), Some(&bob_token)).await?;
    let (arrivals, mut arrived) = mpsc::unbounded_channel::<(Value, Instant)>();
    tokio::spawn(async move {
        while let Some(Ok(message)) = phone.next().await {
            if let Message::Text(text) = message {
                let now = Instant::now();
                if let Ok(event) = serde_json::from_str::<Value>(&text) {
                    let _ = arrivals.send((event, now));
                }
            }
        }
    });
    let http = reqwest::Client::new();
    let mut stops = Vec::new();
    for _ in 0..rounds {
        let started: Value = http
            .post(format!("{}/api/v1/calls", two.address))
            .bearer_auth(&alice_token)
            .json(&json!({"participantIds": [bob], "type": "audio"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let call = started["call"]["id"].as_str().unwrap_or_default().to_owned();
        let sent = Instant::now();
        http.post(format!("{}/api/v1/calls/{call}/accept", two.address))
            .bearer_auth(&bob_token)
            .json(&json!({}))
            .send()
            .await?
            .error_for_status()?;
        loop {
            let (event, at) = tokio::time::timeout(Duration::from_secs(10), arrived.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the stream ended"))?;
            if event["type"] == "call.ring_stopped" && event["callId"] == call.as_str() {
                stops.push((at - sent).as_secs_f64() * 1000.0);
                break;
            }
        }
        http.post(format!("{}/api/v1/calls/{call}/end", two.address))
            .bearer_auth(&alice_token)
            .send()
            .await?
            .error_for_status()?;
    }
    println!("answer on instance 2 -> the other device's call.ring_stopped on instance 1");
    let figures = summary("  from the answer request being sent", stops);
    one.kill().await;
    two.kill().await;
    Ok(figures)
}

/// The host application's endpoint for `call.ringing`: from the call's
/// start request being sent to the webhook's POST being received.
async fn ringing_webhook_latency(rounds: usize) -> anyhow::Result<Value> {
    use axum::{Router, body::Bytes, extract::State, routing::post};
    let (posts, mut posted) = mpsc::unbounded_channel::<(Value, Instant)>();
    let receive = |State(posts): State<mpsc::UnboundedSender<(Value, Instant)>>, body: Bytes| async move {
        let now = Instant::now();
        if let Ok(hook) = serde_json::from_slice::<Value>(&body) {
            let _ = posts.send((hook, now));
        }
        "ok"
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route("/hooks", post(receive)).with_state(posts)).await
    });
    let mut env = bench_env();
    env.push(("APP_WEBHOOK_URL", url));
    env.push(("APP_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()));
    let service = launch(free_port(), &env).await;
    let alice = format!("bench-a-{}", uuid::Uuid::new_v4().simple());
    let bob = format!("bench-b-{}", uuid::Uuid::new_v4().simple());
    let alice_token = token(&alice);
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    for _ in 0..rounds {
        let sent = Instant::now();
        let started: Value = http
            .post(format!("{}/api/v1/calls", service.address))
            .bearer_auth(&alice_token)
            .json(&json!({"participantIds": [bob], "type": "audio"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let call = started["call"]["id"].as_str().unwrap_or_default().to_owned();
        loop {
            let (hook, at) = tokio::time::timeout(Duration::from_secs(10), posted.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the receiver stopped"))?;
            if hook["type"] == "call.ringing" && hook["data"]["callId"] == call.as_str() {
                latencies.push((at - sent).as_secs_f64() * 1000.0);
                break;
            }
        }
        // Hanging up is cleanup, not the figure: a refusal is reported, and
        // the next round goes on (a call still live makes the next start busy).
        let ended = http
            .post(format!("{}/api/v1/calls/{call}/end", service.address))
            .bearer_auth(&alice_token)
            .send()
            .await?;
        if !ended.status().is_success() {
            let status = ended.status();
            eprintln!("ending call {call} answered {status}: {}", ended.text().await.unwrap_or_default());
        }
    }
    println!("call start -> call.ringing app webhook received");
    let figures = summary("  from the start request being sent", latencies);
    service.kill().await;
    Ok(figures)
}

async fn memory(connections: usize, idle: Duration) -> anyhow::Result<Value> {
    let mut env = bench_env();
    // Presence is refreshed every third of this; keep the figure about sockets.
    env.push(("PRESENCE_TTL", "30".into()));
    let service = launch(free_port(), &env).await;
    let pid = service.child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let url = ws_url(&service);
    // Warm up: one stream opened and closed, so lazily built state exists.
    drop(try_connect(&url, Some(&token("bench-warmup"))).await?);
    tokio::time::sleep(idle / 5).await;
    let before = rss_kib(pid);

    let started = Instant::now();
    let tokens: Vec<String> = (0..connections)
        .map(|i| token(&format!("bench-idle-{i}-{}", uuid::Uuid::new_v4().simple())))
        .collect();
    let sockets: Vec<_> = futures::stream::iter(tokens)
        .map(|t| {
            let url = url.clone();
            async move { try_connect(&url, Some(&t)).await }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    let mut open = 0;
    let mut readers = Vec::new();
    for socket in sockets {
        match socket {
            Ok(mut socket) => {
                open += 1;
                // Idle, but alive: reading answers the server's pings.
                readers.push(tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} }));
            }
            Err(err) => eprintln!("a connection failed: {err}"),
        }
    }
    let connected_in = started.elapsed();
    tokio::time::sleep(idle).await;
    let after = rss_kib(pid);
    println!("memory of one instance with {open} idle event streams (connected in {connected_in:.1?})");
    println!("  VmRSS before: {:>8.1} MiB", before as f64 / 1024.0);
    println!("  VmRSS after:  {:>8.1} MiB", after as f64 / 1024.0);
    let per_stream = (after.saturating_sub(before)) as f64 / open.max(1) as f64;
    println!("  per stream:   {per_stream:>8.1} KiB");
    for reader in readers {
        reader.abort();
    }
    service.kill().await;
    Ok(json!({
        "streams": open,
        "vmrss_before_kib": before,
        "vmrss_after_kib": after,
        "per_stream_kib": per_stream,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    callgate::telemetry::init_for_benches();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this too,
    // and then a small smoke run keeps the bench honest without the cost.
    let measuring = std::env::args().any(|a| a == "--bench");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let var = |name: &str, full: usize, smoke: usize| {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(if measuring { full } else { smoke })
    };
    // Each part runs even if the other failed; the figures go to BENCH_JSON.
    let latency = latency(var("ROUNDS", 500, 5)).await;
    let ring_stop = ring_stop_latency(var("ROUNDS", 500, 5)).await;
    let ringing = ringing_webhook_latency(var("ROUNDS", 500, 5)).await;
    let idle = Duration::from_secs(if measuring { 10 } else { 1 });
    let memory = memory(var("CONNECTIONS", 10_000, 20), idle).await;
    let part = |result: &anyhow::Result<Value>| match result {
        Ok(figures) => figures.clone(),
        Err(err) => json!({"error": format!("{err:#}")}),
    };
    let report = json!({
        "latency": part(&latency),
        "ring_stop": part(&ring_stop),
        "ringing_webhook": part(&ringing),
        "memory": part(&memory),
    });
    if let Ok(path) = std::env::var("BENCH_JSON") {
        if let Some(dir) = std::path::Path::new(&path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    }
    latency?;
    ring_stop?;
    ringing?;
    memory?;
    Ok(())
}
