//! A real LiveKit WebRTC participant for end-to-end tests.
//!
//! Drives `tests/e2e/lkclient.py` (the Python `livekit.rtc` SDK) over JSON
//! lines: one command per line on its stdin, one reply per command on its
//! stdout. The client buffers room events itself; tests read them with
//! [`LkClient::events`] and [`LkClient::wait_for`]. Every call is bounded in
//! time, and dropping an [`LkClient`] kills the process.

// A toolkit for many tests: each test uses only part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/lkclient.py");
/// Longer than any limit the client applies itself (connect 15 s, publish 5 s,
/// disconnect 10 s), so a reply that can come does come.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a publish that LiveKit should take may wait for its confirmation.
const ACCEPTED_PUBLISH: Duration = Duration::from_secs(20);
/// How long a publish that LiveKit should refuse waits for the silence.
const REFUSED_PUBLISH: Duration = Duration::from_secs(5);
/// Headroom over a `wait_for` timeout, which the client enforces.
const WAIT_SLACK: Duration = Duration::from_secs(5);
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a `disconnect` may take (see [`LkClient::disconnect`]).
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(45);
const STDERR_TAIL_LINES: usize = 60;

/// A participant's permissions as LiveKit reports them to the client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Permissions {
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
    /// Lowercase source names: `camera`, `microphone`, `screen_share`, `screen_share_audio`.
    pub can_publish_sources: Vec<String>,
}

impl Permissions {
    pub fn may_publish(&self, source: &str) -> bool {
        self.can_publish_sources.iter().any(|s| s == source)
    }
}

/// A published track, local or remote.
#[derive(Debug, Clone, Deserialize)]
pub struct Track {
    pub sid: String,
    pub kind: String,
    pub source: String,
    pub muted: bool,
    /// Only for remote tracks: whether this client is subscribed.
    #[serde(default)]
    pub subscribed: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RemoteParticipant {
    pub identity: String,
    pub metadata: String,
    pub permissions: Permissions,
    pub tracks: Vec<Track>,
}

impl RemoteParticipant {
    pub fn track(&self, source: &str) -> Option<&Track> {
        self.tracks.iter().find(|t| t.source == source)
    }
}

/// What the client sees of the room right now.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct State {
    /// `connected`, `reconnecting` or `disconnected`.
    pub connection_state: String,
    pub room: String,
    pub room_metadata: String,
    pub identity: String,
    pub permissions: Permissions,
    pub tracks: Vec<Track>,
    pub remote_participants: Vec<RemoteParticipant>,
    /// Sequence number of the newest buffered event.
    pub last_seq: u64,
}

impl State {
    pub fn track(&self, source: &str) -> Option<&Track> {
        self.tracks.iter().find(|t| t.source == source)
    }

    pub fn remote(&self, identity: &str) -> Option<&RemoteParticipant> {
        self.remote_participants.iter().find(|p| p.identity == identity)
    }
}

/// A room event the client buffered, e.g. `track_subscribed` with `identity`,
/// `sid`, `kind`, `source`; see `tests/e2e/README.md` for the fields of each.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub event: String,
    /// `time.monotonic()` in the client process, seconds.
    pub mono: f64,
    /// Unix time, seconds.
    pub wall: f64,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Event {
    pub fn str(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(Value::as_str)
    }

    /// The permissions carried by `participant_permissions_changed`.
    pub fn permissions(&self) -> anyhow::Result<Permissions> {
        let value = self
            .fields
            .get("permissions")
            .with_context(|| format!("{} carries no permissions", self.event))?;
        Ok(Permissions::deserialize(value)?)
    }
}

#[derive(Deserialize)]
struct Connected {
    identity: String,
    permissions: Permissions,
}

#[derive(Deserialize)]
struct Published {
    sid: String,
}

#[derive(Deserialize)]
struct Frames {
    frames: u64,
}

#[derive(Deserialize)]
struct Events {
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Found {
    event: Event,
}

pub struct LkClient {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    next_id: u64,
    identity: String,
    permissions: Permissions,
}

impl LkClient {
    /// Starts a client process (`$CALLGATE_PYTHON`, else `python3`) and joins
    /// the room the token grants. Its log goes to this process's stderr when
    /// `LKCLIENT_STDERR=inherit`; otherwise its tail is kept for error messages.
    pub async fn connect(url: &str, token: &str) -> anyhow::Result<LkClient> {
        Self::connect_with(url, token, "all").await
    }

    /// Like [`LkClient::connect`], subscribing only to tracks whose kind
    /// matches their declared source (the rule the README gives clients).
    pub async fn connect_by_kind(url: &str, token: &str) -> anyhow::Result<LkClient> {
        Self::connect_with(url, token, "by_kind").await
    }

    /// The README's honest client: it receives by kind and by media, video
    /// only while the room's metadata says video is on, only from those it
    /// lists live, and lets only those subscribe to its own tracks.
    pub async fn connect_honest(url: &str, token: &str) -> anyhow::Result<LkClient> {
        Self::connect_with(url, token, "honest").await
    }

    async fn connect_with(url: &str, token: &str, subscribe: &str) -> anyhow::Result<LkClient> {
        let python = std::env::var("CALLGATE_PYTHON").unwrap_or_else(|_| "python3".into());
        let inherit = std::env::var("LKCLIENT_STDERR").is_ok_and(|v| v == "inherit");
        let mut child = Command::new(&python)
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if inherit { Stdio::inherit() } else { Stdio::piped() })
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {python} {SCRIPT}"))?;
        let stdin = child.stdin.take().context("client stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("client stdout")?).lines();
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(keep_tail(BufReader::new(stderr).lines(), stderr_tail.clone()));
        }
        let mut client = LkClient {
            child,
            stdin,
            stdout,
            stderr_tail,
            next_id: 0,
            identity: String::new(),
            permissions: Permissions::default(),
        };
        let connected: Connected = client
            .request(
                "connect",
                json!({ "url": url, "token": token, "subscribe": subscribe }),
                COMMAND_TIMEOUT,
            )
            .await?;
        client.identity = connected.identity;
        client.permissions = connected.permissions;
        Ok(client)
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Permissions as they were right after joining.
    pub fn initial_permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// Publishes a microphone track carrying a tone; returns its sid.
    pub async fn publish_audio(&mut self) -> anyhow::Result<String> {
        match self.publish("publish_audio", json!({}), ACCEPTED_PUBLISH).await? {
            Ok(sid) => Ok(sid),
            Err(reason) => bail!("publishing audio: {reason}"),
        }
    }

    /// Publishes a 320x240 camera track that LiveKit is expected to take: it
    /// waits up to 20 s for LiveKit's confirmation (a loaded box is slow). The
    /// inner `Err` is LiveKit's refusal or silence; the outer one a broken client.
    pub async fn publish_camera(&mut self) -> anyhow::Result<Result<String, String>> {
        self.publish("publish_camera", json!({}), ACCEPTED_PUBLISH).await
    }

    /// Like [`LkClient::publish_camera`], with source `screen_share`.
    pub async fn publish_screen_share(&mut self) -> anyhow::Result<Result<String, String>> {
        self.publish("publish_screen_share", json!({}), ACCEPTED_PUBLISH).await
    }

    /// Publishes a video track declared as `source` (`microphone`,
    /// `screen_share_audio`, `unknown`): what a modified client does.
    pub async fn publish_video_as(&mut self, source: &str) -> anyhow::Result<Result<String, String>> {
        self.publish("publish_video_as", json!({ "source": source }), ACCEPTED_PUBLISH).await
    }

    /// A camera publish that LiveKit is expected to refuse. LiveKit answers a
    /// refused source with silence that this SDK cannot tell from a slow
    /// answer, so this waits 5 s only: `Err` is the refusal.
    pub async fn publish_camera_expecting_refusal(&mut self) -> anyhow::Result<Result<String, String>> {
        self.publish("publish_camera", json!({}), REFUSED_PUBLISH).await
    }

    /// Like [`LkClient::publish_camera_expecting_refusal`], with source `screen_share`.
    pub async fn publish_screen_share_expecting_refusal(&mut self) -> anyhow::Result<Result<String, String>> {
        self.publish("publish_screen_share", json!({}), REFUSED_PUBLISH).await
    }

    /// Like [`LkClient::publish_video_as`], for a source LiveKit should refuse.
    pub async fn publish_video_as_expecting_refusal(
        &mut self,
        source: &str,
    ) -> anyhow::Result<Result<String, String>> {
        self.publish("publish_video_as", json!({ "source": source }), REFUSED_PUBLISH).await
    }

    /// Publishes a video track every frame of which is one solid `colour`
    /// (RGB), declared as `source`: `camera` and `screen_share` as an honest
    /// client publishes them, anything else (`microphone`, `unknown`, ...)
    /// as [`LkClient::publish_video_as`] does. With `refusal_expected` it
    /// waits 5 s for LiveKit's answer (see
    /// [`LkClient::publish_camera_expecting_refusal`]), otherwise 20 s.
    pub async fn publish_colour(
        &mut self,
        source: &str,
        colour: [u8; 3],
        refusal_expected: bool,
    ) -> anyhow::Result<Result<String, String>> {
        let wait = if refusal_expected { REFUSED_PUBLISH } else { ACCEPTED_PUBLISH };
        let (cmd, args) = match source {
            "camera" => ("publish_camera", json!({ "colour": colour })),
            "screen_share" => ("publish_screen_share", json!({ "colour": colour })),
            label => ("publish_video_as", json!({ "source": label, "colour": colour })),
        };
        self.publish(cmd, args, wait).await
    }

    pub async fn unpublish(&mut self, sid: &str) -> anyhow::Result<()> {
        self.request::<Value>("unpublish", json!({ "sid": sid }), COMMAND_TIMEOUT).await.map(drop)
    }

    pub async fn set_muted(&mut self, sid: &str, muted: bool) -> anyhow::Result<()> {
        self.request::<Value>("set_muted", json!({ "sid": sid, "muted": muted }), COMMAND_TIMEOUT)
            .await
            .map(drop)
    }

    /// Sends a reliable data packet to everyone in the room.
    pub async fn publish_data(&mut self, topic: &str, payload: &str) -> anyhow::Result<()> {
        self.request::<Value>("publish_data", json!({ "topic": topic, "payload": payload }), COMMAND_TIMEOUT)
            .await
            .map(drop)
    }

    pub async fn state(&mut self) -> anyhow::Result<State> {
        self.request("state", json!({}), COMMAND_TIMEOUT).await
    }

    /// Sequence number of the newest event so far: pass it to
    /// [`LkClient::wait_for_matching`] to wait only for what happens next.
    pub async fn last_seq(&mut self) -> anyhow::Result<u64> {
        Ok(self.state().await?.last_seq)
    }

    /// Buffered events with a sequence number above `since`.
    pub async fn events(&mut self, since: u64) -> anyhow::Result<Vec<Event>> {
        let events: Events = self.request("events", json!({ "since": since }), COMMAND_TIMEOUT).await?;
        Ok(events.events)
    }

    /// The first event named `event` since the client started, waiting for it
    /// up to `timeout`.
    pub async fn wait_for(&mut self, event: &str, timeout: Duration) -> anyhow::Result<Event> {
        self.wait_for_matching(event, json!({}), 0, timeout).await
    }

    /// The first event named `event` after sequence number `since` whose fields
    /// include `filter` (an object, matched recursively: `{"identity": "bob",
    /// "source": "camera"}`), waiting for it up to `timeout`.
    pub async fn wait_for_matching(
        &mut self,
        event: &str,
        filter: Value,
        since: u64,
        timeout: Duration,
    ) -> anyhow::Result<Event> {
        let args = json!({
            "event": event,
            "where": filter,
            "since": since,
            "timeout": timeout.as_secs_f64(),
        });
        let found: Found = self.request("wait_for", args, timeout + WAIT_SLACK).await?;
        Ok(found.event)
    }

    /// Video frames received so far from `identity`'s camera track (0 while
    /// not subscribed to one).
    pub async fn received_video_frames(&mut self, identity: &str) -> anyhow::Result<u64> {
        self.received_frames(identity, "camera").await
    }

    /// Frames (video frames, or 10 ms audio frames) received so far on the
    /// currently subscribed track of `identity` with `source` (`camera`,
    /// `microphone`, ...); 0 while there is none.
    pub async fn received_frames(&mut self, identity: &str, source: &str) -> anyhow::Result<u64> {
        let frames: Frames = self
            .request("received_frames", json!({ "identity": identity, "source": source }), COMMAND_TIMEOUT)
            .await?;
        Ok(frames.frames)
    }

    /// Kills the process without leaving: its connection just drops, as a
    /// phone's does on a dead network.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("killing the client")
    }

    /// Leaves the room and waits for the process to exit. Closing its media
    /// and LiveKit's leave (up to 10 s in lkclient.py) took over 20 s on a
    /// loaded two-core box.
    pub async fn disconnect(mut self) -> anyhow::Result<()> {
        self.request::<Value>("disconnect", json!({}), DISCONNECT_TIMEOUT).await?;
        match tokio::time::timeout(EXIT_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                let status = status.context("waiting for the client to exit")?;
                if !status.success() {
                    bail!("client exited with {status}{}", self.stderr_tail());
                }
                Ok(())
            }
            Err(_) => bail!("client did not exit within {EXIT_TIMEOUT:?} after disconnecting"),
        }
    }

    async fn publish(
        &mut self,
        cmd: &str,
        mut args: Value,
        wait: Duration,
    ) -> anyhow::Result<Result<String, String>> {
        args["timeout"] = json!(wait.as_secs_f64());
        match self.call(cmd, args, wait + WAIT_SLACK).await? {
            Ok(reply) => Ok(Ok(Published::deserialize(reply)?.sid)),
            Err(reason) => Ok(Err(reason)),
        }
    }

    async fn request<T: DeserializeOwned>(
        &mut self,
        cmd: &str,
        args: Value,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        match self.call(cmd, args, timeout).await? {
            Ok(reply) => serde_json::from_value(reply).with_context(|| format!("unexpected reply to {cmd}")),
            Err(error) => Err(anyhow!("{cmd} failed: {error}")),
        }
    }

    /// Sends one command; the inner result is the client's `ok`/`error` reply.
    async fn call(
        &mut self,
        cmd: &str,
        args: Value,
        timeout: Duration,
    ) -> anyhow::Result<Result<Value, String>> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = args;
        msg["id"] = json!(id);
        msg["cmd"] = json!(cmd);
        let mut line = msg.to_string();
        line.push('\n');
        let exchange = async {
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await?;
            read_reply(&mut self.stdout, id).await
        };
        let reply = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                return Err(e.context(format!("{cmd}: client broke{}", self.stderr_tail())));
            }
            Err(_) => bail!("{cmd}: no reply within {timeout:?}{}", self.stderr_tail()),
        };
        if reply.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(Ok(reply))
        } else {
            let error = reply.get("error").and_then(Value::as_str).unwrap_or("");
            Ok(Err(error.to_owned()))
        }
    }

    fn stderr_tail(&self) -> String {
        let tail = self.stderr_tail.lock().expect("stderr tail lock");
        if tail.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!("\n--- client stderr (tail) ---\n{}", lines.join("\n"))
    }
}

/// Reads lines until the reply to `id`; replies to earlier commands that timed
/// out on our side are skipped.
async fn read_reply(stdout: &mut Lines<BufReader<ChildStdout>>, id: u64) -> anyhow::Result<Value> {
    loop {
        let line = stdout.next_line().await?.context("client closed stdout (exited?)")?;
        let reply: Value = serde_json::from_str(&line)
            .with_context(|| format!("client wrote a line that is not JSON: {line}"))?;
        if reply.get("id").and_then(Value::as_u64) == Some(id) {
            return Ok(reply);
        }
    }
}

async fn keep_tail<R>(mut lines: Lines<R>, tail: Arc<Mutex<VecDeque<String>>>)
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    while let Ok(Some(line)) = lines.next_line().await {
        let mut tail = tail.lock().expect("stderr tail lock");
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}
