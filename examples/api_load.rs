//! Load on callgate's HTTP API: throughput and latency at a fixed
//! concurrency, against a service that runs as in production (release build,
//! its own process and database, the real LiveKit).
//!
//! Run by `deploy/local.sh bench`, which starts the service and passes:
//!   BENCH_URL          the service, e.g. http://127.0.0.1:18080
//!   BENCH_PID          its process id (its peak memory is VmHWM in /proc)
//!   BENCH_OHA          the oha binary
//!   BENCH_SECS         seconds per scenario (default 10)
//!   BENCH_CONCURRENCY  requests in flight (default 32)
//!   BENCH_WARMUP_SECS  the same load, unmeasured, before each scenario (default 2)
//!   BENCH_JSON         the report (default target/bench/api.json)
//!   BENCH_DATABASE_URL the service's database (optional: how soon the
//!                      acknowledged webhooks were handled)
//!   BENCH_SCENARIOS    only these, comma-separated (health, token, lifecycle,
//!                      work, floor, webhook; default all): to profile one
//! and the service's own settings (.env.example: JWT_SECRET, the LiveKit key
//! pair that signs webhooks).
//!
//! Scenarios:
//!   health     GET /health: the HTTP ceiling (oha)
//!   token      POST /api/v1/calls/{id}/token for one live call (oha)
//!   lifecycle  start -> accept -> end of a fresh call, LiveKit room created
//!              and deleted; a row for each step too
//!   work       the database work of one start -> accept -> end, alone
//!              (concurrency 1, BENCH_WORK_LIFECYCLES of them, default 40):
//!              top-level statements (pg_stat_statements, where the server
//!              loads it and the database has the extension) and
//!              transactions (pg_stat_database) per lifecycle, the service's
//!              background work over the same time taken off; needs
//!              BENCH_DATABASE_URL
//!   webhook    POST /webhooks/livekit: participant_joined events signed as
//!              LiveKit signs them, unique ids (no dedupe short-cut), for
//!              connecting/active calls of this run; the service answers once
//!              the event is stored, and a row tells how soon after the
//!              events were handled
//! oha measures the first two (every request is the same); this program the
//! last two, where every request differs: each of the N workers sends its
//! next request when the previous one is answered, every latency is
//! recorded and the percentiles are read from the sorted samples.

// Measures the service against the system's clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use base64::Engine;
use livekit_api::access_token::AccessToken;
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use livekit_protocol as proto;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use callgate::config::Config;
use callgate::infra::auth::{DevToken, mint_dev_token};

struct Bench {
    url: String,
    http: reqwest::Client,
    config: Config,
    secret: String,
    /// Tags this run's users and webhook event ids.
    run: String,
    seq: AtomicU64,
}

#[derive(Clone)]
struct User {
    id: String,
    token: String,
}

/// One scenario's outcome: latencies of the successful operations (and of
/// each of their steps), failures, wall time.
struct Sample {
    name: String,
    total: Vec<Duration>,
    steps: Vec<(&'static str, Vec<Duration>)>,
    errors: u64,
    first_error: Option<String>,
    started_at: chrono::DateTime<chrono::Utc>,
    elapsed: Duration,
}

struct Row {
    name: String,
    requests: u64,
    errors: u64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_kib: u64,
}

impl Bench {
    fn user(&self) -> anyhow::Result<User> {
        let id = format!("b-{}-{}", self.run, self.seq.fetch_add(1, Ordering::Relaxed));
        let token = mint_dev_token(
            &self.secret,
            &self.config.jwt,
            &DevToken {
                user: &id,
                name: None,
                gender: Some("male"),
                roles: &[],
                ttl: Duration::from_secs(3600),
            },
        )?;
        Ok(User { id, token })
    }

    async fn post(&self, path: &str, user: &User, body: Value) -> anyhow::Result<Value> {
        let resp =
            self.http.post(format!("{}{path}", self.url)).bearer_auth(&user.token).json(&body).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    /// A call in state connecting; returns its id and room.
    async fn connecting_call(&self, caller: &User, callee: &User) -> anyhow::Result<(String, String)> {
        let started = self
            .post("/api/v1/calls", caller, json!({"participantIds": [callee.id], "type": "audio"}))
            .await?;
        let id = started["call"]["id"].as_str().context("call id")?.to_owned();
        let room = started["join"]["roomName"].as_str().context("room name")?.to_owned();
        self.post(&format!("/api/v1/calls/{id}/accept"), callee, json!({})).await?;
        Ok((id, room))
    }

    /// Polls the call until it is in `state`.
    async fn wait_for_state(&self, id: &str, user: &User, state: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let resp = self
                .http
                .get(format!("{}/api/v1/calls/{id}", self.url))
                .bearer_auth(&user.token)
                .send()
                .await?;
            let call: Value = resp.json().await?;
            if call["state"] == state {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "call {id} is not {state} after 15 s: {call}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A webhook body and its `Authorization` header, as LiveKit sends them:
    /// the bare JWT of the API key, carrying the body's sha256.
    fn signed_event(&self, event: &str, room: &str, identity: &str) -> anyhow::Result<(String, String)> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let event = proto::WebhookEvent {
            event: event.to_owned(),
            id: format!("EV_bench_{}_{n}", self.run),
            created_at: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64,
            room: Some(proto::Room {
                name: room.to_owned(),
                sid: format!("RM_{room}"),
                ..Default::default()
            }),
            participant: Some(proto::ParticipantInfo {
                identity: identity.to_owned(),
                sid: format!("PA_{identity}"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = serde_json::to_string(&event)?;
        let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
        let livekit = &self.config.livekit;
        let jwt = AccessToken::with_api_key(&livekit.api_key, livekit.api_secret.expose_secret())
            .with_sha256(&sha)
            .to_jwt()?;
        Ok((body, jwt))
    }

    async fn post_webhook(&self, body: String, jwt: String) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/webhooks/livekit", self.url))
            .header("authorization", jwt)
            .header("content-type", "application/webhook+json")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        ensure!(
            status == StatusCode::NO_CONTENT,
            "webhook: {status} {}",
            resp.text().await.unwrap_or_default()
        );
        Ok(())
    }

    async fn end(&self, id: &str, user: &User) -> anyhow::Result<()> {
        self.post(&format!("/api/v1/calls/{id}/end"), user, json!({})).await.map(drop)
    }
}

/// Concurrency and durations of every scenario.
struct Load {
    concurrency: usize,
    secs: u64,
    /// Before each measurement, the same load unmeasured for this long (a
    /// cold service opens its database connections then).
    warmup_secs: u64,
}

impl Load {
    /// Runs `op` from `concurrency` workers, first to warm up, then for the
    /// measurement; `op` returns the durations of its timed `steps` (their
    /// sum is the operation's latency).
    async fn measure<F, Fut>(&self, name: &str, steps: &[&'static str], op: F) -> Sample
    where
        F: Fn(u64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<Vec<Duration>>> + Send,
    {
        let op = Arc::new(op);
        let warmup = drive(name, steps, self.concurrency, self.warmup_secs, op.clone()).await;
        report_warmup(name, warmup.total.len() as u64, warmup.errors, warmup.first_error.as_deref());
        let sample = drive(name, steps, self.concurrency, self.secs, op).await;
        if let Some(err) = &sample.first_error {
            eprintln!("{name}: {} failed; the first: {err}", sample.errors);
        }
        sample
    }
}

fn report_warmup(name: &str, ok: u64, errors: u64, first_error: Option<&str>) {
    if errors > 0 {
        let first = first_error.map(|e| format!("; the first: {e}")).unwrap_or_default();
        eprintln!("{name}: warm-up: {errors} of {} failed{first}", ok + errors);
    }
}

async fn drive<F, Fut>(
    name: &str,
    steps: &[&'static str],
    concurrency: usize,
    secs: u64,
    op: Arc<F>,
) -> Sample
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Vec<Duration>>> + Send,
{
    let counter = Arc::new(AtomicU64::new(0));
    let started_at = chrono::Utc::now();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (op, counter) = (op.clone(), counter.clone());
        workers.spawn(async move {
            let (mut ok, mut errors, mut first_error) = (Vec::new(), 0u64, None);
            while Instant::now() < deadline {
                match op(counter.fetch_add(1, Ordering::Relaxed)).await {
                    Ok(steps) => ok.push(steps),
                    Err(err) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{err:#}"));
                    }
                }
            }
            (ok, errors, first_error)
        });
    }
    let mut sample = Sample {
        name: name.to_owned(),
        total: Vec::new(),
        steps: Vec::new(),
        errors: 0,
        first_error: None,
        started_at,
        elapsed: Duration::ZERO,
    };
    let mut all_steps: Vec<Vec<Duration>> = Vec::new();
    while let Some(done) = workers.join_next().await {
        let Ok((ok, errors, first_error)) = done else { continue };
        sample.errors += errors;
        sample.first_error = sample.first_error.or(first_error);
        for steps in ok {
            sample.total.push(steps.iter().sum());
            all_steps.resize(all_steps.len().max(steps.len()), Vec::new());
            for (i, d) in steps.into_iter().enumerate() {
                all_steps[i].push(d);
            }
        }
    }
    sample.elapsed = start.elapsed();
    if steps.len() > 1 {
        sample.steps = steps.iter().copied().zip(all_steps).collect();
    }
    sample
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

fn rows_of(sample: &Sample, peak_rss_kib: u64) -> Vec<Row> {
    let secs = sample.elapsed.as_secs_f64();
    let row = |name: String, latencies: &[Duration], errors: u64| {
        let mut sorted = latencies.to_vec();
        sorted.sort();
        Row {
            name,
            requests: sorted.len() as u64,
            errors,
            per_sec: sorted.len() as f64 / secs,
            p50_ms: percentile_ms(&sorted, 50.0),
            p99_ms: percentile_ms(&sorted, 99.0),
            peak_rss_kib,
        }
    };
    let mut rows = vec![row(sample.name.clone(), &sample.total, sample.errors)];
    for (step, latencies) in &sample.steps {
        rows.push(row(format!("  {step}"), latencies, 0));
    }
    rows
}

/// `GET` or `POST` with every request the same: oha's numbers, after a
/// warm-up.
fn oha(bin: &str, load: &Load, name: &str, args: &[&str], peak: impl Fn() -> u64) -> anyhow::Result<Row> {
    let warmup = oha_run(bin, load.concurrency, load.warmup_secs, name, args)?;
    report_warmup(name, warmup.requests, warmup.errors, None);
    let row = oha_run(bin, load.concurrency, load.secs, name, args)?;
    Ok(Row { peak_rss_kib: peak(), ..row })
}

fn oha_run(bin: &str, concurrency: usize, secs: u64, name: &str, args: &[&str]) -> anyhow::Result<Row> {
    let out = std::process::Command::new(bin)
        .args([
            "--no-tui",
            "--output-format",
            "json",
            // count the requests in flight at the deadline, do not abort them
            "-w",
            "-z",
            &format!("{secs}s"),
            "-c",
            &concurrency.to_string(),
        ])
        .args(args)
        .output()
        .with_context(|| format!("run {bin}"))?;
    ensure!(out.status.success(), "oha: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).context("oha's JSON")?;
    let codes = report["statusCodeDistribution"].as_object().context("statusCodeDistribution")?;
    let count = |ok: bool| -> u64 {
        codes.iter().filter(|(code, _)| code.starts_with('2') == ok).filter_map(|(_, n)| n.as_u64()).sum()
    };
    let failed: u64 =
        report["errorDistribution"].as_object().map_or(0, |e| e.values().filter_map(Value::as_u64).sum());
    if count(false) + failed > 0 {
        let errors = &report["errorDistribution"];
        eprintln!("{name}: status codes {}, errors {errors}", report["statusCodeDistribution"]);
    }
    let seconds = report["summary"]["total"].as_f64().context("summary.total")?;
    let ms = |p: &str| report["latencyPercentiles"][p].as_f64().map_or(f64::NAN, |s| s * 1000.0);
    Ok(Row {
        name: name.to_owned(),
        requests: count(true),
        errors: count(false) + failed,
        per_sec: count(true) as f64 / seconds,
        p50_ms: ms("p50"),
        p99_ms: ms("p99"),
        peak_rss_kib: 0,
    })
}

/// The service acknowledges a webhook once its row is stored and handles it
/// after: how long after, and at what rate, read from its inbox
/// (`livekit_webhook_events`) once it has drained. Set-aside events (handling
/// failed) count as errors.
async fn handled(
    database_url: &str,
    sample: &Sample,
    run: &str,
    peak: &impl Fn() -> u64,
) -> anyhow::Result<Row> {
    let db = sqlx::PgPool::connect(database_url).await.context("BENCH_DATABASE_URL")?;
    let ours = format!("EV_bench_{run}_%");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pending: i64 = sqlx::query_scalar(
            "select count(*) from livekit_webhook_events where id like $1 and processed_at is null",
        )
        .bind(&ours)
        .fetch_one(&db)
        .await?;
        if pending == 0 {
            break;
        }
        ensure!(Instant::now() < deadline, "{pending} webhooks still unhandled after 120 s");
        // The figures come from the rows' own times: polling more often would
        // only take the database from the drain it measures.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (count, failed, p50, p99, span): (i64, i64, f64, f64, f64) = sqlx::query_as(
        "select count(*), count(*) filter (where attempts > 0),
                coalesce(percentile_cont(0.5) within group (order by delay), 0),
                coalesce(percentile_cont(0.99) within group (order by delay), 0),
                coalesce(extract(epoch from max(processed_at) - min(received_at))::float8, 0)
           from (select *, extract(epoch from processed_at - received_at)::float8 as delay
                   from livekit_webhook_events where id like $1 and received_at >= $2) e",
    )
    .bind(&ours)
    .bind(sample.started_at)
    .fetch_one(&db)
    .await?;
    Ok(Row {
        name: "  handled (after the ack)".into(),
        requests: count as u64,
        errors: failed as u64,
        per_sec: if span > 0.0 { count as f64 / span } else { f64::NAN },
        p50_ms: p50 * 1000.0,
        p99_ms: p99 * 1000.0,
        peak_rss_kib: peak(),
    })
}

/// VmHWM (peak resident set) of the service, in KiB.
fn peak_rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "model": model.unwrap_or("unknown"),
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "loadavg_at_start": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run deploy/local.sh bench)"))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| anyhow::anyhow!("{name}: malformed value {v:?}")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (url, pid, oha_bin) = (env("BENCH_URL")?, env("BENCH_PID")?, env("BENCH_OHA")?);
    let load = Load {
        concurrency: env_or("BENCH_CONCURRENCY", 32)?,
        secs: env_or("BENCH_SECS", 10)?,
        warmup_secs: env_or("BENCH_WARMUP_SECS", 2)?,
    };
    let (concurrency, secs) = (load.concurrency, load.secs);
    let report_path = env_or("BENCH_JSON", "target/bench/api.json".to_owned())?;
    let config = Config::from_env()?;
    let bench = Arc::new(Bench {
        url: url.clone(),
        http: reqwest::Client::builder().pool_max_idle_per_host(concurrency * 2).build()?,
        secret: env("JWT_SECRET")?,
        config,
        run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        seq: AtomicU64::new(0),
    });
    let machine = machine();
    println!(
        "machine: {} x {}, {} GiB, load average {} (at start)",
        machine["cpus"],
        machine["model"].as_str().unwrap_or_default(),
        machine["memory_gib"],
        machine["loadavg_at_start"].as_str().unwrap_or_default()
    );
    println!(
        "each scenario {secs} s (after {} s of warm-up) at concurrency {concurrency}, against {url} (pid {pid})\n",
        load.warmup_secs
    );
    let peak = || peak_rss_kib(&pid);
    let mut rows = Vec::new();
    let mut work_report: Option<Value> = None;
    // Every scenario runs even if one before it failed: a failure is a row
    // of its own (printed, and in the JSON) and the run goes on.
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut record = |name: &str, result: anyhow::Result<Vec<Row>>, rows: &mut Vec<Row>| match result {
        Ok(more) => rows.extend(more),
        Err(err) => {
            eprintln!("{name}: FAILED: {err:#}");
            failed.push((name.to_owned(), format!("{err:#}")));
        }
    };

    let only = std::env::var("BENCH_SCENARIOS").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|n| n.trim() == name);

    if wanted("health") {
        let health = oha(&oha_bin, &load, "GET /health", &[&format!("{url}/health")], peak).map(|r| vec![r]);
        record("GET /health", health, &mut rows);
    }

    if wanted("token") {
        let token = token_scenario(&bench, &load, &oha_bin, &url, peak).await;
        record("POST /calls/{id}/token", token, &mut rows);
    }

    if wanted("lifecycle") {
        lifecycle_scenario(&bench, &load, &peak, &mut |name, result| record(name, result, &mut rows)).await;
    }

    if wanted("work") {
        match std::env::var("BENCH_DATABASE_URL") {
            Ok(url) => match work_per_lifecycle(&bench, &url).await {
                Ok(work) => {
                    println!(
                        "work of one lifecycle (alone, {} of them): {} statements, {:.1} transactions",
                        work["lifecycles"],
                        work["statements"]
                            .as_f64()
                            .map_or("n/a (pg_stat_statements not loaded)".into(), |s| format!("{s:.1}")),
                        work["transactions"].as_f64().unwrap_or(f64::NAN),
                    );
                    work_report = Some(work);
                }
                Err(err) => record("work per lifecycle", Err(err), &mut rows),
            },
            Err(_) => println!("work of one lifecycle: not measured (no BENCH_DATABASE_URL)"),
        }
    }

    // LiveKit's own floor, right after, at the same concurrency: what the
    // lifecycle's two LiveKit requests cost without callgate.
    if wanted("floor") {
        let floor = livekit_floor(&bench, &load).await.map(|s| rows_of(&s, peak()));
        record("LiveKit CreateRoom+DeleteRoom", floor, &mut rows);
    }

    if wanted("webhook") {
        let webhooks = webhook_scenario(&bench, &load, peak).await;
        record("POST /webhooks/livekit", webhooks, &mut rows);
    }

    print_table(&rows);
    let peak_kib = peak();
    println!("\npeak memory of the service (VmHWM): {:.1} MiB", peak_kib as f64 / 1024.0);
    let report = json!({
        "machine": machine,
        "concurrency": concurrency,
        "seconds_per_scenario": secs,
        "warmup_seconds": load.warmup_secs,
        "scenarios": rows.iter().map(|r| json!({
            "name": r.name.trim(),
            "requests": r.requests,
            "errors": r.errors,
            "per_sec": r.per_sec,
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "service_vmhwm_kib": r.peak_rss_kib,
        })).collect::<Vec<_>>(),
        "work_per_lifecycle": work_report,
        "failed": failed.iter().map(|(name, error)| json!({"name": name, "error": error})).collect::<Vec<_>>(),
        "service_vmhwm_kib": peak_kib,
    });
    if let Some(dir) = std::path::Path::new(&report_path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&report_path, serde_json::to_vec_pretty(&report)?)?;
    println!("written to {report_path}");
    if !failed.is_empty() {
        bail!(
            "{} scenario(s) failed: {}",
            failed.len(),
            failed.iter().map(|f| f.0.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    if rows.iter().any(|r| r.errors > 0) {
        bail!("some requests failed (see the errors column)");
    }
    Ok(())
}

/// Start, accept and end of a fresh call per operation (a row for each step).
async fn lifecycle_scenario(
    bench: &Arc<Bench>,
    load: &Load,
    peak: &impl Fn() -> u64,
    record: &mut impl FnMut(&str, anyhow::Result<Vec<Row>>),
) {
    let b = bench.clone();
    let lifecycle = load
        .measure("start+accept+end", &["start", "accept", "end"], move |_| {
            let b = b.clone();
            async move {
                let (caller, callee) = (b.user()?, b.user()?);
                let t0 = Instant::now();
                let started = b
                    .post("/api/v1/calls", &caller, json!({"participantIds": [callee.id], "type": "audio"}))
                    .await?;
                let id = started["call"]["id"].as_str().context("call id")?.to_owned();
                let t1 = Instant::now();
                b.post(&format!("/api/v1/calls/{id}/accept"), &callee, json!({})).await?;
                let t2 = Instant::now();
                b.end(&id, &caller).await?;
                Ok(vec![t1 - t0, t2 - t1, t2.elapsed()])
            }
        })
        .await;
    record("start+accept+end", Ok(rows_of(&lifecycle, peak())));
}

/// The database's counters: top-level statements of this database
/// (`None` without pg_stat_statements) and transactions.
async fn db_work(db: &sqlx::PgPool) -> anyhow::Result<(Option<f64>, f64)> {
    let statements: Option<f64> = match sqlx::query_scalar::<_, Option<f64>>(
        "select sum(calls)::float8 from pg_stat_statements
          where dbid = (select oid from pg_database where datname = current_database())",
    )
    .fetch_one(db)
    .await
    {
        Ok(sum) => Some(sum.unwrap_or(0.0)),
        // No extension in this database, or the server does not load it.
        Err(_) => None,
    };
    // pg_stat_database is flushed by each backend at most once a second.
    let transactions: f64 = sqlx::query_scalar(
        "select (xact_commit + xact_rollback)::float8 from pg_stat_database where datname = current_database()",
    )
    .fetch_one(db)
    .await?;
    Ok((statements, transactions))
}

/// Each statement of this database (pg_stat_statements): its text and calls.
async fn db_statements(db: &sqlx::PgPool) -> Option<std::collections::HashMap<i64, (String, f64)>> {
    let rows: Vec<(i64, String, f64)> = sqlx::query_as(
        "select queryid, query, calls::float8 from pg_stat_statements
          where dbid = (select oid from pg_database where datname = current_database()) and queryid is not null",
    )
    .fetch_all(db)
    .await
    .ok()?;
    Some(rows.into_iter().map(|(id, query, calls)| (id, (query, calls))).collect())
}

/// What one lifecycle costs the database, alone: the counters over an idle
/// stretch (the service's polls and housekeeping), then over `n`
/// lifecycles one after the other (LiveKit's webhooks for their rooms
/// included), the idle rate taken off.
async fn work_per_lifecycle(bench: &Arc<Bench>, database_url: &str) -> anyhow::Result<Value> {
    let n: u32 = env_or("BENCH_WORK_LIFECYCLES", 40)?;
    ensure!((1..=10_000).contains(&n), "BENCH_WORK_LIFECYCLES must be 1..=10000");
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(database_url).await?;
    // The counters' own reads are statements too: two per snapshot.
    const OWN: f64 = 2.0;
    // A backend that goes idle flushes its transaction counts to
    // pg_stat_database within 10 s (PGSTAT_IDLE_INTERVAL): every snapshot
    // waits that long after the work before it.
    let settle = Duration::from_secs(11);
    tokio::time::sleep(settle).await;
    let (s0, t0) = db_work(&db).await?;
    let idle_start = Instant::now();
    tokio::time::sleep(settle).await;
    let (s1, t1) = db_work(&db).await?;
    let idle_secs = idle_start.elapsed().as_secs_f64();
    let before_top = db_statements(&db).await;
    let started = Instant::now();
    for _ in 0..n {
        let (caller, callee) = (bench.user()?, bench.user()?);
        let started = bench
            .post("/api/v1/calls", &caller, json!({"participantIds": [callee.id], "type": "audio"}))
            .await?;
        let id = started["call"]["id"].as_str().context("call id")?.to_owned();
        bench.post(&format!("/api/v1/calls/{id}/accept"), &callee, json!({})).await?;
        bench.end(&id, &caller).await?;
    }
    // LiveKit's webhooks for the last rooms, and the statistics' flush.
    tokio::time::sleep(settle).await;
    let (s2, t2) = db_work(&db).await?;
    let busy_secs = started.elapsed().as_secs_f64();
    let per = |a: f64, b: f64, c: f64, own: f64| {
        let idle_rate = (b - a - own).max(0.0) / idle_secs;
        ((c - b - own) - idle_rate * busy_secs).max(0.0) / f64::from(n)
    };
    let statements = match (s0, s1, s2) {
        (Some(a), Some(b), Some(c)) => Some(per(a, b, c, OWN)),
        _ => None,
    };
    let top = match (&before_top, db_statements(&db).await) {
        (Some(before), Some(after)) => {
            let mut per: Vec<(f64, String)> = after
                .into_iter()
                .map(|(id, (query, calls))| {
                    let was = before.get(&id).map_or(0.0, |b| b.1);
                    ((calls - was) / f64::from(n), query)
                })
                .filter(|(per, _)| *per >= 0.5)
                .collect();
            per.sort_by(|a, b| b.0.total_cmp(&a.0));
            per.into_iter()
                .take(30)
                .map(|(per, query)| json!({"per_lifecycle": per, "query": query.split_whitespace().collect::<Vec<_>>().join(" ")}))
                .collect::<Vec<_>>()
        }
        _ => Vec::new(),
    };
    Ok(json!({
        "top_statements": top,
        "lifecycles": n,
        "statements": statements,
        "transactions": per(t0, t1, t2, OWN),
        "idle_statements_per_sec": match (s0, s1) { (Some(a), Some(b)) => Some((b - a - OWN) / idle_secs), _ => None },
    }))
}

/// Join tokens for one live call (made active by the two participants'
/// joins), asked for by its caller.
async fn token_scenario(
    bench: &Arc<Bench>,
    load: &Load,
    oha_bin: &str,
    url: &str,
    peak: impl Fn() -> u64,
) -> anyhow::Result<Vec<Row>> {
    let (caller, callee) = (bench.user()?, bench.user()?);
    let (call, room) = bench.connecting_call(&caller, &callee).await?;
    for who in [&caller, &callee] {
        let (body, jwt) = bench.signed_event("participant_joined", &room, &who.id)?;
        bench.post_webhook(body, jwt).await?;
    }
    // Webhooks are handled after they are acknowledged.
    bench.wait_for_state(&call, &caller, "active").await?;
    let bearer = format!("Authorization: Bearer {}", caller.token);
    let token_url = format!("{url}/api/v1/calls/{call}/token");
    let row = oha(oha_bin, load, "POST /calls/{id}/token", &["-m", "POST", "-H", &bearer, &token_url], peak);
    bench.end(&call, &caller).await?;
    Ok(vec![row?])
}

/// CreateRoom then DeleteRoom straight against LiveKit (callgate's
/// settings, rooms of their own prefix).
async fn livekit_floor(bench: &Arc<Bench>, load: &Load) -> anyhow::Result<Sample> {
    let lk = &bench.config.livekit;
    let rooms = Arc::new(RoomClient::with_api_key(&lk.api_url, &lk.api_key, lk.api_secret.expose_secret()));
    let run = bench.run.clone();
    let sample = load
        .measure("LiveKit CreateRoom+DeleteRoom", &[], move |n| {
            let (rooms, name) = (rooms.clone(), format!("cgbench-floor-{run}-{n}"));
            async move {
                let t0 = Instant::now();
                rooms.create_room(&name, CreateRoomOptions::default()).await.context("CreateRoom")?;
                rooms.delete_room(&name).await.context("DeleteRoom")?;
                Ok(vec![t0.elapsed()])
            }
        })
        .await;
    ensure!(
        !sample.total.is_empty(),
        "no room was created and deleted: {}",
        sample.first_error.unwrap_or_default()
    );
    Ok(sample)
}

/// Signed participant_joined webhooks for connecting/active calls of this
/// run, then how soon they were handled.
async fn webhook_scenario(
    bench: &Arc<Bench>,
    load: &Load,
    peak: impl Fn() -> u64,
) -> anyhow::Result<Vec<Row>> {
    // Calls for the webhooks: several per worker, so that events for the
    // same call (which serialise on its row lock) rarely meet.
    let mut calls = Vec::new();
    for _ in 0..load.concurrency * 4 {
        let (caller, callee) = (bench.user()?, bench.user()?);
        let (id, room) = bench.connecting_call(&caller, &callee).await?;
        calls.push((id, room, caller, callee));
    }
    let calls = Arc::new(calls);
    let (b, c) = (bench.clone(), calls.clone());
    let webhooks = load
        .measure("POST /webhooks/livekit", &[], move |n| {
            let (b, c) = (b.clone(), c.clone());
            async move {
                let (_, room, caller, callee) = &c[n as usize % c.len()];
                let who = if (n as usize / c.len()).is_multiple_of(2) { caller } else { callee };
                let (body, jwt) = b.signed_event("participant_joined", room, &who.id)?;
                let t0 = Instant::now();
                b.post_webhook(body, jwt).await?;
                Ok(vec![t0.elapsed()])
            }
        })
        .await;
    let mut rows = rows_of(&webhooks, peak());
    if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
        match handled(&url, &webhooks, &bench.run, &peak).await {
            Ok(row) => rows.push(row),
            Err(err) => eprintln!("webhooks handled: FAILED: {err:#}"),
        }
    }
    // Clean-up: a call that ended on its own (a deadline) is no error here.
    for (id, _, caller, _) in calls.iter() {
        if let Err(err) = bench.end(id, caller).await {
            eprintln!("clean-up: {err:#}");
        }
    }
    Ok(rows)
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<26} {:>9} {:>7} {:>10} {:>9} {:>9} {:>12}",
        "scenario", "requests", "errors", "per s", "p50 ms", "p99 ms", "VmHWM MiB"
    );
    for r in rows {
        println!(
            "{:<26} {:>9} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>12.1}",
            r.name,
            r.requests,
            r.errors,
            r.per_sec,
            r.p50_ms,
            r.p99_ms,
            r.peak_rss_kib as f64 / 1024.0
        );
    }
}
