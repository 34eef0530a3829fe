//! LiveKit Egress on the real stack, as `deploy/local.sh up` builds,
//! configures and supervises it: a recording of a call's room that nobody
//! consented to (started with LiveKit's keys behind callgate's back) is
//! stopped as soon as its first webhook arrives, and the call goes on. The
//! helpers here (where egress writes, ffprobe, egress's processes and their
//! CPU and memory read from /proc) serve `tests/api/recording.rs`, which
//! records through callgate.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use callgate::livekit::{Egress, EgressStatus, RecordingFile, RecordingLayout, RecordingSpec};
use serde_json::{Value, json};

use crate::consent::call_in_room;
use crate::helpers::{TestApp, spawn_app};

/// Where egress writes (deploy/lib/services.sh's EGRESS_OUTPUT, exported
/// by deploy/local.sh test).
pub(crate) fn output_dir() -> PathBuf {
    let dir = std::env::var("CALLGATE_EGRESS_OUTPUT")
        .expect("CALLGATE_EGRESS_OUTPUT (exported by deploy/local.sh test): where egress writes");
    PathBuf::from(dir)
}

/// The egress service's pid (the supervisor's child), whose process tree
/// does the recording.
fn egress_pid() -> u32 {
    let file = std::env::var("CALLGATE_EGRESS_PID_FILE")
        .expect("CALLGATE_EGRESS_PID_FILE (exported by deploy/local.sh test)");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.trim().parse().unwrap_or_else(|_| panic!("{file} holds no pid"))
}

/// ffprobe's view of a file: its streams' codecs and its duration.
pub(crate) fn probe(path: &Path) -> Option<(Vec<(String, String)>, f64)> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let streams = v["streams"]
        .as_array()?
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap_or("").to_owned(),
                s["codec_name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let duration = v["format"]["duration"].as_str()?.parse().ok()?;
    Some((streams, duration))
}

/// The pids of `root` and every process under it.
fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // After the command's closing parenthesis: state, then the parent.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let (mut tree, mut todo) = (Vec::new(), vec![root]);
    while let Some(pid) = todo.pop() {
        tree.push(pid);
        todo.extend(children.get(&pid).into_iter().flatten());
    }
    tree
}

/// CPU ticks (user + system) and memory (kB: resident, and proportional,
/// which counts the pages chromium's processes share once) of these processes.
fn usage(pids: &[u32]) -> (u64, (u64, u64)) {
    let (mut ticks, mut rss, mut pss) = (0, 0, 0);
    for pid in pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let fields: Vec<&str> =
                stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
            // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command.
            ticks += fields.get(11).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
            ticks += fields.get(12).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()));
            rss += kb.unwrap_or(0);
        }
        if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            let kb = rollup
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()));
            pss += kb.unwrap_or(0);
        }
    }
    (ticks, (rss, pss))
}

async fn recording(app: &TestApp, room: &str, id: &str) -> Option<Egress> {
    let all = app.state.core.livekit.list_recordings(room, false).await.expect("LiveKit lists egress");
    all.into_iter().find(|e| e.egress_id == id)
}

async fn egress_webhooks(app: &TestApp, room: &str) -> HashSet<String> {
    let rows: Vec<String> = sqlx::query_scalar(
        "select event from livekit_webhook_events where room_name = $1 and event like 'egress\\_%'",
    )
    .bind(room)
    .fetch_all(&app.state.db)
    .await
    .expect("inbox rows");
    rows.into_iter().collect()
}

#[tokio::test]
async fn a_recording_started_behind_callgates_back_is_stopped_and_the_call_goes_on() {
    let _media = crate::helpers::media_turn().await;
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _a, _b) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;
    let room = app.room_name(&call);
    let path = output_dir().join(format!("stray-{call}.ogg"));

    // Someone with LiveKit's keys records the room; nobody consented.
    let spec = RecordingSpec {
        layout: RecordingLayout::AudioOnly,
        file: RecordingFile::Ogg,
        filepath: path.to_string_lossy().into_owned(),
    };
    let livekit = &app.state.core.livekit;
    let stray = livekit.start_recording(&room, &spec).await.expect("egress takes the recording");
    assert!(stray.egress_id.starts_with("EG_"), "{stray:?}");
    assert_eq!(stray.room, room);

    // Its first webhook reaches callgate, whose job stops it. Egress takes a
    // stop only once its handler has launched the recording's Chromium
    // (`Handler.StopEgress` waits for the pipeline; before the handler runs
    // there is nobody to ask), which on a loaded two-core box took over 30 s:
    // callgate asks again on each of egress's webhooks and job retries.
    let (asked, limit) = (Instant::now(), Duration::from_secs(120));
    let ended = loop {
        let e = recording(&app, &room, &stray.egress_id).await.expect("LiveKit lists it");
        if !e.status.is_running() {
            break e;
        }
        assert!(asked.elapsed() < limit, "still recording after {limit:?}: {e:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("egress: a stray recording was {:?} after {:.1?}", ended.status, asked.elapsed());
    assert!(
        matches!(ended.status, EgressStatus::Aborted | EgressStatus::Complete),
        "stopped, not failed: {ended:?}"
    );
    let got = egress_webhooks(&app, &room).await;
    assert!(got.contains("egress_started"), "egress's webhooks arrive verified: {got:?}");

    // The call is as it was: its two people, joined, no violation, and no
    // recording of callgate's.
    let view = app.call(&call, &alice).await;
    assert_eq!(view["state"], "active", "{view}");
    let people = view["participants"].as_array().expect("participants");
    assert_eq!(people.len(), 2, "{view}");
    assert!(people.iter().all(|p| p["status"] == "joined"), "{view}");
    let rows = app.db_count("select count(*) from recordings where call_id = $1", &call).await;
    assert_eq!(rows, 0);
    let _ = std::fs::remove_file(&path);
}

/// When, CPU ticks and memory (RSS, PSS), and how many processes.
type Sample = (Instant, (u64, (u64, u64)), usize);

/// What egress's process tree used while one recording ran: sampled until
/// `done` says so. Returns the figures to print.
pub(crate) struct EgressLoad {
    samples: Vec<Sample>,
    before: usize,
}

impl EgressLoad {
    pub(crate) fn start() -> Self {
        EgressLoad { samples: Vec::new(), before: process_tree(egress_pid()).len() }
    }

    pub(crate) fn sample(&mut self) {
        let tree = process_tree(egress_pid());
        self.samples.push((Instant::now(), usage(&tree), tree.len()));
    }

    /// CPU (share of one core, from `from` on), peak RSS and PSS (MiB),
    /// and the processes (at most, and before).
    pub(crate) fn figures(&self, from: Instant) -> String {
        let hz = 100.0; // USER_HZ on Linux
        let first = self.samples.iter().position(|(t, _, _)| *t >= from).unwrap_or(0);
        let cpu = match (self.samples.get(first), self.samples.last()) {
            (Some((t0, (ticks0, _), _)), Some((t1, (ticks1, _), _))) => {
                ticks1.saturating_sub(*ticks0) as f64 / hz / t1.duration_since(*t0).as_secs_f64().max(0.001)
            }
            _ => 0.0,
        };
        let rss = self.samples.iter().map(|(_, (_, (rss, _)), _)| *rss).max().unwrap_or(0);
        let pss = self.samples.iter().map(|(_, (_, (_, pss)), _)| *pss).max().unwrap_or(0);
        let procs = self.samples.iter().map(|(_, _, n)| *n).max().unwrap_or(0);
        format!(
            "egress's {procs} processes (service, handler, chromium, Xvfb; {} once it recorded) used {:.0}% of one CPU \
             while recording, {:.0} MiB RSS summed ({:.0} MiB PSS) at most",
            self.before,
            cpu * 100.0,
            rss as f64 / 1024.0,
            pss as f64 / 1024.0
        )
    }
}
