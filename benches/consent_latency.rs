//! How fast consent reaches the SFU, measured on the real stack.
//!
//! Over N rounds (default 50, `ROUNDS=...`) in one call between a man and a
//! woman, each with a real WebRTC client: he requests video, she accepts,
//! and we time (a) from sending her accept to his client being told that
//! LiveKit now lets him publish `camera`; then he publishes a camera, she
//! revokes, and we time (b) from sending the revoke to her client seeing his
//! camera track unpublished. Both ends are timed with the wall clock of this
//! machine (clients run locally).
//!
//! A round ends only once his client has been told that the camera right is
//! gone again: otherwise the revoke's permission change may reach his client
//! after the next round has started watching, and read as "accepted, but no
//! camera" (the failure seen at rounds 22 and 31 before).
//!
//! The answer to her accept comes once LiveKit has confirmed the new rights:
//! the time to it is the service's part of (a).
//!
//! Then (c), over `MISLABEL_ROUNDS` fresh calls (default 10): he publishes a
//! video track labelled `microphone` while video is off, and we time from
//! LiveKit confirming that track to her client seeing him leave the room
//! (callgate puts him out of the call, see `callgate::domain::consent::judge_track`).
//!
//! Then the windows a token LiveKit refreshed leaves open (it cannot be
//! revoked; see docs/consent.md), over `STALE_ROUNDS` fresh calls each
//! (default 10): (d) one who left a group call, or was put out of it,
//! comes back with his old token: from his client connected to it being
//! put out of the room; (e)
//! one whose token carries the camera right (as LiveKit refreshes it while
//! video is on) joins while video is off and publishes his camera at once:
//! how often LiveKit takes it before callgate's withdrawal on his join, and
//! from the camera taken to it being unpublished. Her client is the honest
//! one of the README throughout, so none of it plays there.
//!
//! Run: `deploy/local.sh bench` or, with the stack up and `.env.example`
//! exported, `cargo bench --bench consent_latency`. Under `cargo test` it
//! makes a three-round smoke run (one mislabelled round).

#[path = "../tests/api/helpers/mod.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use serde_json::json;

use helpers::lk_client::LkClient;

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(name: &str, mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(|a, b| a.total_cmp(b));
    let (p50, p95) = (percentile(&ms, 50.0), percentile(&ms, 95.0));
    let max = ms.last().copied().unwrap_or(f64::NAN);
    println!("{name:<40} n={:<4} p50={p50:>7.1} ms  p95={p95:>7.1} ms  max={max:>7.1} ms", ms.len());
    json!({"name": name, "n": ms.len(), "p50_ms": p50, "p95_ms": p95, "max_ms": max})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    callgate::telemetry::init_for_benches();
    // `cargo bench` passes --bench; under `cargo test` this is a short smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize =
        std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(if full { 50 } else { 3 });
    let mislabel_rounds: usize = std::env::var("MISLABEL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if full { 10 } else { 1 });
    let stale_rounds: usize =
        std::env::var("STALE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(if full { 10 } else { 1 });
    let app = helpers::spawn_app_configured(|c| {
        c.rate_limits.video_requests_per_call = 100_000;
        c.rate_limits.video_requests_per_participant = 10_000;
        c.rate_limits.requests_per_minute = 100_000;
    })
    .await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, started) = app.ring(&him, &[&her], "audio").await;
    let (_, accepted) = app.call_action(&call, "accept", &her, json!({})).await;
    let url = started["join"]["url"].as_str().unwrap_or_default().to_owned();
    let mut his = LkClient::connect(&url, started["join"]["token"].as_str().unwrap_or_default()).await?;
    let mut hers = LkClient::connect(&url, accepted["join"]["token"].as_str().unwrap_or_default()).await?;
    his.publish_audio().await?;
    hers.publish_audio().await?;
    app.wait_for_call(&call, &him, Duration::from_secs(15), |c| c["state"] == "active").await;

    let (mut to_permission, mut to_track_gone, mut to_answer) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (_, body) = app.post(&format!("/api/v1/calls/{call}/video/requests"), &him, json!({})).await;
        let request = body["request"]["id"].as_str().unwrap_or_default().to_owned();
        let since = his.last_seq().await?;
        let sent = now();
        let (status, body) =
            app.post(&format!("/api/v1/calls/{call}/video/requests/{request}/accept"), &her, json!({})).await;
        anyhow::ensure!(status.is_success() && body["state"] == "on", "round {round}: accept failed: {body}");
        to_answer.push((now() - sent) * 1000.0);
        // The first change of his rights that carries the camera: the push
        // of the request's own state (no camera yet) may reach him after
        // the accept was sent, and is not the accept in force.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut after = since;
        let told = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let told = his
                .wait_for_matching("participant_permissions_changed", json!({"local": true}), after, left)
                .await;
            match told {
                Ok(told) if told.permissions()?.may_publish("camera") => break told,
                Ok(told) if !left.is_zero() => after = told.seq,
                _ => {
                    let seen: Vec<String> = his
                        .events(since)
                        .await?
                        .iter()
                        .map(|e| format!("{} {:?}", e.event, e.fields))
                        .collect();
                    anyhow::bail!(
                        "round {round}: no camera right within 5 s; his events since the accept: {seen:#?}"
                    );
                }
            }
        };
        to_permission.push((told.wall - sent) * 1000.0);

        let seen = hers.last_seq().await?;
        // The right is in force (LiveKit told his client); a publication the
        // SDK gives up on while a loaded LiveKit is slow to answer is tried
        // again, a refusal three times over is the failure.
        let mut published = his.publish_camera().await?;
        for _ in 0..2 {
            if published.is_ok() {
                break;
            }
            published = his.publish_camera().await?;
        }
        published.map_err(|e| anyhow::anyhow!("round {round}: camera refused: {e}"))?;
        hers.wait_for_matching(
            "track_subscribed",
            json!({"identity": him.id, "source": "camera"}),
            seen,
            Duration::from_secs(5),
        )
        .await?;
        let since = hers.last_seq().await?;
        let since_his = his.last_seq().await?;
        let sent = now();
        let (status, body) = app.post(&format!("/api/v1/calls/{call}/video/revoke"), &her, json!({})).await;
        anyhow::ensure!(status.is_success(), "round {round}: revoke failed: {body}");
        let gone = match hers
            .wait_for_matching(
                "track_unpublished",
                json!({"identity": him.id, "source": "camera"}),
                since,
                Duration::from_secs(5),
            )
            .await
        {
            Ok(event) => event,
            Err(err) => {
                let seen: Vec<String> =
                    hers.events(since).await?.iter().map(|e| format!("{} {:?}", e.event, e.fields)).collect();
                anyhow::bail!("round {round}: {err}; her events since the revoke: {seen:#?}");
            }
        };
        to_track_gone.push((gone.wall - sent) * 1000.0);
        let withdrawn = his
            .wait_for_matching(
                "participant_permissions_changed",
                json!({"local": true, "permissions": {"can_publish_sources": ["microphone"]}}),
                since_his,
                Duration::from_secs(5),
            )
            .await;
        withdrawn.map_err(|e| anyhow::anyhow!("round {round}: his camera right was not withdrawn: {e}"))?;
    }
    let mislabelled = mislabelled_windows(&app, mislabel_rounds).await?;
    let rejoined = stale_rejoin_windows(&app, stale_rounds, Gone::Left).await?;
    let readmitted = stale_rejoin_windows(&app, stale_rounds, Gone::Removed).await?;
    let stale = stale_camera_windows(&app, stale_rounds).await?;
    println!("consent latency over {rounds} rounds (real LiveKit, real clients, loopback)");
    println!(
        "a camera published at once with a camera token while video is off: LiveKit announced {} of {}; \
         still listed after 10 s in rounds {:?}; decoded by her honest client in rounds {:?}",
        stale.windows.len() + stale.stayed.len(),
        stale.tried,
        stale.stayed,
        stale.seen,
    );
    let cameras = stale.windows;
    let report = json!([
        summary("accept -> camera permission in force", to_permission),
        summary("revoke -> camera track gone", to_track_gone),
        summary("mislabelled video -> its publisher gone", mislabelled),
        summary("old token after leaving: connected -> out", rejoined),
        summary("old token after removal: connected -> out", readmitted),
        summary("camera token while off: camera taken -> gone", cameras),
        // Its part of (a): the answer comes once LiveKit has confirmed.
        summary("accept -> answered (LiveKit confirmed)", to_answer),
    ]);
    let path = std::env::var("BENCH_JSON").unwrap_or_else(|_| "target/consent_latency.json".into());
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    println!("written to {path}");
    his.disconnect().await?;
    hers.disconnect().await?;
    Ok(())
}

/// Window (c): a fresh call per round, since the publisher is put out of it.
async fn mislabelled_windows(app: &helpers::TestApp, rounds: usize) -> anyhow::Result<Vec<f64>> {
    let mut windows = Vec::new();
    for round in 0..rounds {
        let (him, her) = (app.user("male"), app.user("female"));
        let (call, started) = app.ring(&him, &[&her], "audio").await;
        let (_, accepted) = app.call_action(&call, "accept", &her, json!({})).await;
        let url = started["join"]["url"].as_str().unwrap_or_default().to_owned();
        let mut his = LkClient::connect(&url, started["join"]["token"].as_str().unwrap_or_default()).await?;
        let mut hers =
            LkClient::connect_by_kind(&url, accepted["join"]["token"].as_str().unwrap_or_default()).await?;
        app.wait_for_call(&call, &him, Duration::from_secs(15), |c| c["state"] == "active").await;
        let since = hers.last_seq().await?;
        his.publish_video_as("microphone")
            .await?
            .map_err(|e| anyhow::anyhow!("mislabelled round {round}: LiveKit refused the track: {e}"))?;
        let published = now();
        // Either he leaves the room, or (the call ended) the room goes and
        // her client with it: both mean his track reaches nobody.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let gone = loop {
            let events = hers.events(since).await?;
            let gone = events.into_iter().find(|e| {
                (e.event == "participant_disconnected" && e.str("identity") == Some(him.id.as_str()))
                    || e.event == "disconnected"
                    || (e.event == "track_unpublished" && e.str("identity") == Some(him.id.as_str()))
            });
            if let Some(gone) = gone {
                break gone;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "mislabelled round {round}: he stayed in the room"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        windows.push((gone.wall - published) * 1000.0);
        drop(his);
        drop(hers);
    }
    Ok(windows)
}

/// How he went before coming back with his old token.
#[derive(Clone, Copy)]
enum Gone {
    /// He left the call himself.
    Left,
    /// He was put out of it (a video track labelled `microphone`).
    Removed,
}

/// Window (d): a group call per round (so it goes on without him); he
/// leaves or is put out, then connects again with the token he joined with.
async fn stale_rejoin_windows(app: &helpers::TestApp, rounds: usize, how: Gone) -> anyhow::Result<Vec<f64>> {
    let mut windows = Vec::new();
    for round in 0..rounds {
        let (him, her, w2) = (app.user("male"), app.user("female"), app.user("female"));
        let (call, started) = app.ring(&him, &[&her, &w2], "audio").await;
        let url = started["join"]["url"].as_str().unwrap_or_default().to_owned();
        let token = started["join"]["token"].as_str().unwrap_or_default().to_owned();
        let mut clients = Vec::new();
        for w in [&her, &w2] {
            let (_, accepted) = app.call_action(&call, "accept", w, json!({})).await;
            let mut client =
                LkClient::connect_honest(&url, accepted["join"]["token"].as_str().unwrap_or_default())
                    .await?;
            client.publish_audio().await?;
            clients.push(client);
        }
        let mut his = LkClient::connect(&url, &token).await?;
        app.wait_for_call(&call, &him, Duration::from_secs(15), |c| c["state"] == "active").await;
        match how {
            Gone::Left => {
                let (status, body) = app.call_action(&call, "leave", &him, json!({})).await;
                anyhow::ensure!(status.is_success(), "stale round {round}: leave failed: {body}");
            }
            Gone::Removed => {
                his.publish_video_as("microphone")
                    .await?
                    .map_err(|e| anyhow::anyhow!("stale round {round}: LiveKit refused the track: {e}"))?;
                his.wait_for("disconnected", Duration::from_secs(10))
                    .await
                    .map_err(|e| anyhow::anyhow!("stale round {round}: he was not put out: {e}"))?;
            }
        }
        drop(his);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut back = match LkClient::connect(&url, &token).await {
            Ok(back) => back,
            // Put out while his connection was still being set up.
            Err(_) => {
                windows.push(0.0);
                continue;
            }
        };
        let connected = back.wait_for("connected", Duration::from_secs(5)).await?;
        let out = back.wait_for("disconnected", Duration::from_secs(10)).await.map_err(|e| {
            anyhow::anyhow!("stale round {round}: back with his old token, he stayed in the room: {e}")
        })?;
        windows.push((out.wall - connected.wall) * 1000.0);
        drop(clients);
    }
    Ok(windows)
}

/// Window (e): a fresh call per round; his token carries the camera right
/// (minted here as LiveKit refreshes it), video is off, he publishes his
/// camera as soon as he is in. Returns the windows of the cameras LiveKit
/// took, and how many were tried.
/// Window (e): what LiveKit took of a camera published at once with a
/// camera token while video is off, and how long until it was gone; the
/// rounds where it stayed, and those where her honest client decoded any of
/// it, are counted, not aborted on (a bench prints what it found).
struct StaleCameras {
    windows: Vec<f64>,
    tried: usize,
    stayed: Vec<usize>,
    seen: Vec<usize>,
}

/// Whether LiveKit lists no video track of `identity` in `room` within `limit`.
async fn no_video_within(room: &str, identity: &str, limit: Duration) -> bool {
    let until = std::time::Instant::now() + limit;
    loop {
        let videos = match helpers::livekit_rooms().list_participants(room).await {
            Ok(people) => people
                .iter()
                .filter(|p| p.identity == identity)
                .flat_map(|p| &p.tracks)
                .filter(|t| t.r#type == livekit_protocol::TrackType::Video as i32)
                .count(),
            Err(_) => 0,
        };
        if videos == 0 {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stale_camera_windows(app: &helpers::TestApp, rounds: usize) -> anyhow::Result<StaleCameras> {
    use callgate::domain::consent::TrackSource;
    use callgate::livekit::tokens::{JoinGrant, mint};
    let (mut windows, mut stayed, mut seen) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (him, her) = (app.user("male"), app.user("female"));
        let (call, started) = app.ring(&him, &[&her], "audio").await;
        let (_, accepted) = app.call_action(&call, "accept", &her, json!({})).await;
        let url = started["join"]["url"].as_str().unwrap_or_default().to_owned();
        let mut hers =
            LkClient::connect_honest(&url, accepted["join"]["token"].as_str().unwrap_or_default()).await?;
        hers.publish_audio().await?;
        let room = app.room_name(&call);
        let grant = JoinGrant {
            identity: &him.id,
            name: None,
            room: &room,
            sources: &[TrackSource::Microphone, TrackSource::Camera],
            waiting: false,
            ttl: Duration::from_secs(600),
        };
        let (token, _) = mint(
            &app.config.livekit.api_key,
            app.config.livekit.api_secret.expose_secret(),
            &grant,
            callgate::clock::Clock::now(&callgate::clock::SystemClock),
        )?;
        let since = hers.last_seq().await?;
        let mut his = LkClient::connect(&url, &token).await?;
        let Ok(_) = his.publish_camera().await? else { continue };
        let taken = hers
            .wait_for_matching(
                "track_published",
                json!({"identity": him.id, "source": "camera"}),
                since,
                Duration::from_secs(5),
            )
            .await;
        match taken {
            // Announced to her: the window is until it is taken back.
            Ok(taken) => {
                let gone = hers
                    .wait_for_matching(
                        "track_unpublished",
                        json!({"identity": him.id, "source": "camera"}),
                        since,
                        Duration::from_secs(10),
                    )
                    .await;
                match gone {
                    Ok(gone) => windows.push((gone.wall - taken.wall) * 1000.0),
                    // Her client missed the event, or it stayed: LiveKit says which.
                    Err(_) if no_video_within(&room, &him.id, Duration::ZERO).await => {}
                    Err(_) => stayed.push(round),
                }
            }
            // Never announced (LiveKit dropped it while pending, or refused
            // it): what counts is that LiveKit lists no video of his.
            Err(_) => {
                if !no_video_within(&room, &him.id, Duration::from_secs(10)).await {
                    stayed.push(round);
                }
            }
        }
        let frames = hers.received_video_frames(&him.id).await?;
        if frames > 0 {
            eprintln!("stale camera round {round}: her honest client received {frames} frames");
            seen.push(round);
        }
    }
    Ok(StaleCameras { windows, tried: rounds, stayed, seen })
}
