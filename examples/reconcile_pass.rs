//! A reconciler pass at scale: N live calls in the database (connecting,
//! both participants answered, nobody in the room yet), each with a real
//! LiveKit room, then passes of `callgate::workers::reconcile::pass` until
//! every call has been compared with its room; how long a pass takes and how
//! soon every live call has been checked (passes × RECONCILE_INTERVAL).
//!
//! Run by `deploy/local.sh bench` (a fresh database `callgate_bench`):
//!   BENCH_SIZES   live calls per measurement (default 1000,10000)
//!   BENCH_JSON    the report (default target/bench/reconcile.json)
//! and the service's settings (.env.example). Rooms are created with
//! CreateRoom 16 at a time before the measurement and deleted after.

// Measures against the system's clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use uuid::Uuid;

use callgate::config::Config;
use callgate::infra::redis_link::RedisLink;
use callgate::livekit::{LiveKit, RoomService};
use callgate::metrics::Metrics;
use callgate::workers::reconcile;

const IN_FLIGHT: usize = 16;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::from_env()?;
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|n| n.trim().parse().context("BENCH_SIZES"))
        .collect::<anyhow::Result<_>>()?;
    let report_path = std::env::var("BENCH_JSON").unwrap_or_else(|_| "target/bench/reconcile.json".into());
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(config.database_pool_size)
        .connect(config.database_url.expose_secret())
        .await?;
    callgate::app::MIGRATOR.run(&db).await?;
    let metrics = Metrics::default();
    let livekit: Arc<dyn RoomService> =
        Arc::new(LiveKit::new(&config.livekit, &config.room_prefix, metrics.livekit()));
    let redis = RedisLink::new(config.redis_url.expose_secret(), config.redis_cluster)?;
    let lk = &config.livekit;
    let rooms = Arc::new(RoomClient::with_api_key(&lk.api_url, &lk.api_key, lk.api_secret.expose_secret()));
    let interval = config.reconcile_interval;
    let core = callgate::app::assemble(
        config.clone(),
        db.clone(),
        redis,
        livekit.clone(),
        callgate::storage::from_config(&config.recording)?,
        callgate::clock::system(),
        metrics,
    );

    // Rooms a run before left behind (it stopped half-way).
    let prefix = config.room_prefix.clone();
    let left: Vec<String> = rooms
        .list_rooms(Vec::new())
        .await?
        .into_iter()
        .map(|r| r.name)
        .filter(|name| name.starts_with(&prefix))
        .collect();
    delete_rooms(&rooms, left).await;

    let mut passes = Vec::new();
    let mut failed = None;
    for &n in &sizes {
        match measure(&core, &db, &rooms, livekit.as_ref(), n, interval).await {
            Ok(figures) => passes.push(figures),
            Err(err) => {
                eprintln!("reconciler pass at {n} live calls: FAILED: {err:#}");
                failed = Some(format!("{n} live calls: {err:#}"));
                break;
            }
        }
    }
    let report = json!({"interval_s": interval.as_secs_f64(), "passes": passes, "failed": failed});
    if let Some(dir) = std::path::Path::new(&report_path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&report_path, serde_json::to_vec_pretty(&report)?)?;
    println!("written to {report_path}");
    match failed {
        Some(err) => anyhow::bail!(err),
        None => Ok(()),
    }
}

async fn measure(
    core: &callgate::calls::Core,
    db: &sqlx::PgPool,
    rooms: &Arc<RoomClient>,
    livekit: &dyn RoomService,
    n: usize,
    interval: Duration,
) -> anyhow::Result<Value> {
    // The calls of the measurement before are gone.
    sqlx::query("delete from calls").execute(db).await?;
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let names: Vec<String> = ids.iter().map(|id| livekit.room_name(callgate::domain::CallId(*id))).collect();
    let created = Instant::now();
    let made: Vec<anyhow::Result<()>> = futures::stream::iter(ids.iter().copied().zip(names.clone()))
        .map(|(id, name)| {
            let rooms = rooms.clone();
            async move {
                // The metadata callgate gives a call's room, both of its people live.
                let user = id.simple().to_string();
                let live = [format!("rc-a-{user}"), format!("rc-b-{user}")];
                let metadata = callgate::livekit::room_metadata(
                    callgate::domain::CallId(id),
                    callgate::domain::CallType::Audio,
                    callgate::domain::consent::VideoState::Off,
                    callgate::domain::consent::VideoState::Off,
                    &live,
                );
                // A loaded LiveKit sometimes answers "no response from servers": once more.
                let options = CreateRoomOptions { empty_timeout: 3600, metadata, ..Default::default() };
                match rooms.create_room(&name, options.clone()).await {
                    Ok(_) => Ok(()),
                    Err(_) => rooms.create_room(&name, options).await.map(drop).context("CreateRoom"),
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let real = made.iter().filter(|r| r.is_ok()).count();
    if let Some(Err(err)) = made.iter().find(|r| r.is_err()) {
        eprintln!("{} of {n} rooms could not be created; the first: {err:#}", n - real);
    }
    println!("{n} live calls: {real} rooms created in LiveKit in {:.1?}", created.elapsed());
    let users: Vec<String> = ids.iter().map(|id| id.simple().to_string()).collect();
    let mut tx = db.begin().await?;
    sqlx::query(
        "insert into calls (id, room_name, type, state, initiator_id, answered_at, video_session)
         select id, room, 'audio', 'connecting', 'rc-a-' || u, now(), $4
           from unnest($1::uuid[], $2::text[], $3::text[]) as t(id, room, u)",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&users)
    .bind(sqlx::types::Json(callgate::domain::consent::VideoSession::default()))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "insert into call_participants (call_id, user_id, role, status, live, answered_at)
         select id, 'rc-' || side || '-' || u, case side when 'a' then 'initiator' else 'invitee' end,
                'accepted', true, now()
           from unnest($1::uuid[], $2::text[]) as t(id, u), (values ('a'), ('b')) as s(side)",
    )
    .bind(&ids)
    .bind(&users)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    let figures = passes_over(core, n, real, interval).await;
    let deleted = Instant::now();
    delete_rooms(rooms, names).await;
    println!("  rooms deleted in {:.1?}", deleted.elapsed());
    sqlx::query("delete from calls").execute(db).await?;
    figures
}

async fn delete_rooms(rooms: &Arc<RoomClient>, names: Vec<String>) {
    let _: Vec<()> = futures::stream::iter(names)
        .map(|name| {
            let rooms = rooms.clone();
            async move {
                let _ = rooms.delete_room(&name).await;
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
}

async fn passes_over(
    core: &callgate::calls::Core,
    n: usize,
    real: usize,
    interval: Duration,
) -> anyhow::Result<Value> {
    // Passes until every call has been compared with its room (at most
    // enough passes at the old 20 per pass, but not for ever).
    let mut pass_ms = Vec::new();
    let mut checked = 0usize;
    let mut full_checks = 0usize;
    let mut requests = 0usize;
    let max_passes = 20;
    while checked < n && pass_ms.len() < max_passes {
        let t0 = Instant::now();
        let pass = reconcile::pass(core).await?;
        pass_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        // Before the lists, the calls checked in full were all there was.
        checked += pass.calls_checked.max(pass.calls_full_checks);
        full_checks += pass.calls_full_checks;
        requests += pass.livekit_requests;
        anyhow::ensure!(
            pass.calls_ended == 0,
            "the pass ended {} calls that had their room",
            pass.calls_ended
        );
    }
    let passes = pass_ms.len();
    let per_pass = checked as f64 / passes as f64;
    let passes_needed = (n as f64 / per_pass.max(1.0)).ceil();
    let mean_ms = pass_ms.iter().sum::<f64>() / passes as f64;
    // A pass starts every interval (or when the one before ends, if longer).
    let all_within = passes_needed * interval.as_secs_f64().max(mean_ms / 1000.0);
    println!(
        "{n} live calls ({real} rooms real): {passes} passes, {per_pass:.0} calls checked a pass, a pass {mean_ms:.0} ms \
         (first {:.0} ms), {} LiveKit requests; every call checked within {all_within:.1} s at RECONCILE_INTERVAL {:?}",
        pass_ms[0], requests, interval
    );

    Ok(json!({
        "live_calls": n,
        "real_rooms": real,
        "passes": passes,
        "calls_checked_per_pass": per_pass,
        "pass_ms": mean_ms,
        "first_pass_ms": pass_ms[0],
        "livekit_requests": requests,
        "full_checks": full_checks,
        "all_checked_within_s": all_within,
        "calls_checked_per_minute": per_pass * 60.0 / interval.as_secs_f64().max(mean_ms / 1000.0),
    }))
}
