//! Recording a call that everyone agreed to.
//!
//! Consent to record is decided by the video consent machine under
//! `RecordingPolicy::rules` (`calls::consent::apply_answering` with
//! `Subject::Recording`): every participant present consents, one no
//! declines, an unanswered request expires, anyone present stops it, a
//! newcomer keeps it going only by consenting as they join. Its steps go to
//! the consent ledger, read with the same privacy rules as video's.
//!
//! LiveKit Egress is told after the commit, by a job of the call's lane
//! ([`sync`]): it starts a room-composite recording while the consent is on
//! and the call live, stops it otherwise, and stops any recording of the
//! room that is not the call's current one (a start whose answer was lost,
//! a stop that failed). Being in the call's lane, a start never runs after
//! the stop that follows it. Egress's webhooks move the recording on
//! ([`on_egress`]); once its file is done, another job checks it on disk
//! and keeps it in the storage `RECORDING_STORAGE` names ([`finish`]: on
//! the local disk where egress wrote it, or uploaded to a bucket and then
//! deleted from the disk). Files are reached only by the call's
//! participants and `admin`, through callgate (streamed, or a short-lived
//! presigned link); `RECORDING_RETENTION` deletes them with their rows
//! ([`purge`]).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::calls::consent::{self, RequestView};
use crate::calls::enforce::Effects;
use crate::calls::views::CallView;
use crate::calls::{CallError, Core, Unit, app_webhooks};
use crate::domain::consent::{self as rules, Action, Subject, VideoState};
use crate::domain::{AuthUser, CallId, CallState, CallType, ClientEvent, Code, ParticipantStatus, Role};
use crate::livekit::{Egress, EgressStatus, RecordingFile, RecordingLayout, RecordingSpec};
use crate::storage::{Download, FileInfo, Kind, LocalDisk, Storage};
use crate::store::jobs::{self, Again, Job};
use crate::store::recordings::{self, RecordingRow, status};
use crate::store::{self, CallRow, Outgoing};

/// Egress is told once the transaction `tx` has committed (a job of the
/// call's lane; one pending at a time, as it reads the committed state).
pub async fn sync_after_commit(app: &Core, tx: &mut PgConnection, id: CallId) -> sqlx::Result<()> {
    recordings::sync_after_commit(tx, id, app.clock.now()).await
}

/// What a call records into, by its type: the room's mixed audio in an OGG
/// file, or audio with the default template's grid (the cameras video's
/// policy lets through at that moment, nothing else) in an MP4.
fn file_of(call_type: CallType) -> (RecordingLayout, RecordingFile, &'static str) {
    match call_type {
        CallType::Audio => (RecordingLayout::AudioOnly, RecordingFile::Ogg, "ogg"),
        CallType::Video => (RecordingLayout::Grid, RecordingFile::Mp4, "mp4"),
    }
}

/// The job: LiveKit Egress put in line with the call's committed consent
/// to record. Fails (to be tried again) when LiveKit does. Whether the
/// consent lapsed (egress stopped recording on its own): the call is then
/// settled once this commits, for the room's indicator.
pub async fn sync(app: &Core, tx: &mut PgConnection, id: CallId) -> anyhow::Result<bool> {
    let Some(call) = store::find_call(&mut *tx, id).await? else { return Ok(false) };
    let wanted = app.config.recording_policy.rules().is_some()
        && call.state.is_live()
        && call.recording_session.0.state == VideoState::On;
    let mut running = recordings::running(tx, id).await?;
    // Those egress is done with only wait for their file to be kept: not
    // stopped, not failed if egress forgets them.
    running.retain(|r| !r.egress_done());
    let now = app.clock.now();
    if wanted && running.is_empty() {
        running.push(start(app, tx, &call).await?);
    }
    if !wanted {
        for recording in running.iter_mut().filter(|r| r.status != status::ENDING) {
            match &recording.egress_id {
                Some(egress) => {
                    app.livekit.stop_recording(egress).await?;
                    recordings::set_status(tx, recording.id, status::ENDING, now, None).await?;
                    recording.status = status::ENDING.to_owned();
                }
                None => {
                    recordings::set_status(tx, recording.id, status::FAILED, now, Some("never started"))
                        .await?;
                }
            }
        }
    }
    // What egress says of this room: whatever else it records is nobody's
    // consent; a recording of ours it no longer runs is over (its webhook
    // may never come, or egress died).
    let all = app.livekit.list_recordings(&call.room_name, false).await?;
    let mut lapsed = false;
    for egress in &all {
        let ours = running.iter().find(|r| r.egress_id.as_deref() == Some(egress.egress_id.as_str()));
        match ours {
            None if egress.status.is_running() => {
                tracing::warn!(call_id = %id, egress_id = %egress.egress_id, "a recording nobody consented to is stopped");
                app.livekit.stop_recording(&egress.egress_id).await?;
            }
            Some(recording) if !egress.status.is_running() => {
                let mut out = Outgoing::default();
                lapsed |= over(app, tx, &call, recording, egress, &mut out).await?;
                out.write(tx).await?;
            }
            Some(recording)
                if egress.status == EgressStatus::Active && recording.status == status::STARTING =>
            {
                let mut out = Outgoing::default();
                began(app, tx, &call, recording, egress, &mut out).await?;
                out.write(tx).await?;
            }
            _ => {}
        }
    }
    // One egress has forgotten (restarted, say) was recording.
    let started_before = now - chrono::Duration::seconds(60);
    for recording in running.iter().filter(|r| r.requested_at < started_before) {
        let known = recording.egress_id.as_deref().is_some_and(|e| all.iter().any(|g| g.egress_id == e));
        if !known
            && recordings::set_status(tx, recording.id, status::FAILED, now, Some("egress lost it")).await?
        {
            let mut out = Outgoing::default();
            failed(tx, &call, recording.id, &mut out).await?;
            lapsed |= consent_lapses(tx, id, &mut out).await?;
            out.write(tx).await?;
        }
    }
    Ok(lapsed)
}

/// Starts a recording of the call's room; its row, with egress's id.
async fn start(app: &Core, tx: &mut PgConnection, call: &CallRow) -> anyhow::Result<RecordingRow> {
    let id = Uuid::new_v4();
    let (layout, file, extension) = file_of(call.call_type);
    let key = local_name(call.id.0, id, extension);
    let new = recordings::NewRecording {
        id,
        call: call.id,
        file_type: extension,
        storage_key: &key,
        requested_at: app.clock.now(),
    };
    recordings::insert(tx, &new).await?;
    let filepath = format!("{}/{key}", app.config.recording.egress_dir.trim_end_matches('/'));
    let spec = RecordingSpec { layout, file, filepath };
    let egress = app.livekit.start_recording(&call.room_name, &spec).await?;
    recordings::set_egress(tx, id, &egress.egress_id).await?;
    tracing::info!(call_id = %call.id, recording_id = %id, egress_id = %egress.egress_id, "recording asked of egress");
    recordings::find(tx, id).await?.ok_or_else(|| anyhow::anyhow!("recording {id} vanished"))
}

/// Egress reported on one of its recordings of the call's room (its
/// `egress_started`, `egress_updated` or `egress_ended`; late, twice or out
/// of order). The call's row is locked.
pub async fn on_egress(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    egress: &Egress,
) -> sqlx::Result<()> {
    let Some(recording) = recordings::by_egress(tx, &egress.egress_id).await? else {
        // Not (yet) known: its start may not have committed. The job, after
        // the start's, stops it if it is nobody's.
        if egress.status.is_running() {
            sync_after_commit(app, tx, call.id).await?;
        }
        return Ok(());
    };
    let now = app.clock.now();
    let mut out = Outgoing::default();
    match egress.status {
        EgressStatus::Starting => {}
        EgressStatus::Active => began(app, tx, call, &recording, egress, &mut out).await?,
        EgressStatus::Ending => {
            recordings::set_status(tx, recording.id, status::ENDING, now, None).await?;
        }
        EgressStatus::Complete
        | EgressStatus::LimitReached
        | EgressStatus::Failed
        | EgressStatus::Aborted => {
            over(app, tx, call, &recording, egress, &mut out).await?;
        }
    }
    out.write(tx).await
}

/// Egress is recording one of ours: the host hears it began.
async fn began(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    recording: &RecordingRow,
    egress: &Egress,
    out: &mut Outgoing,
) -> sqlx::Result<()> {
    let at = egress.started_at.unwrap_or(app.clock.now());
    if recording.status == status::STARTING
        && recordings::set_status(tx, recording.id, status::RECORDING, at, None).await?
    {
        let view = CallView::load(tx, call).await?;
        if let Some(started) = recordings::find(tx, recording.id).await? {
            app_webhooks::recording_started(out, &view, &started);
        }
    }
    Ok(())
}

/// Egress is done with a recording of ours: its file is checked by a job,
/// or it failed. Whether the consent lapsed with it.
async fn over(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    recording: &RecordingRow,
    egress: &Egress,
    out: &mut Outgoing,
) -> sqlx::Result<bool> {
    // Its end already heard (the webhook again, say): its file job is pending.
    if !recording.is_running() || recording.egress_done() {
        return Ok(false);
    }
    let now = app.clock.now();
    match egress.status {
        EgressStatus::Complete | EgressStatus::LimitReached => {
            let file = egress.files.first();
            let result = recordings::EgressResult {
                started_at: file.and_then(|f| f.started_at).or(egress.started_at),
                ended_at: egress.ended_at.unwrap_or(now),
                duration_ms: file.map_or(0, |f| i64::try_from(f.duration.as_millis()).unwrap_or(i64::MAX)),
            };
            recordings::set_result(tx, recording.id, &result).await?;
            // Its file is being finished (kept: uploaded, maybe) until `ready`.
            recordings::set_status(tx, recording.id, status::ENDING, now, None).await?;
            let job = Job::RecordingFile { recording: recording.id };
            jobs::enqueue(tx, &job, now, Again::Replace, true).await?;
        }
        _ => {
            let error = if egress.error.is_empty() { "egress failed" } else { egress.error.as_str() };
            let at = egress.ended_at.unwrap_or(now);
            if recordings::set_status(tx, recording.id, status::FAILED, at, Some(error)).await? {
                failed(tx, call, recording.id, out).await?;
            }
        }
    }
    consent_lapses(tx, call.call_id(), out).await
}

/// The job that puts egress in line was given up (egress refused to start,
/// or LiveKit did not answer, however often it was tried): if nothing
/// records, the consent lapses (see [`consent_lapses`]) rather than saying
/// "recording" with nothing recording.
pub async fn gave_up(app: &Core, id: CallId) -> anyhow::Result<()> {
    let Some(mut unit) = Unit::open_if_any(app, id).await? else { return Ok(()) };
    let (conn, out) = unit.parts();
    if consent_lapses(conn, id, out).await? {
        unit.settle(Effects::for_call(id));
    }
    unit.commit().await?;
    Ok(())
}

/// Egress stopped recording while everyone still consents (it failed, was
/// killed, reached its limit, or lost the recording): nothing records, so
/// the consent lapses as it does when the call ends — an `off` step of
/// nobody's in the ledger, `recording.off` to those present, and the room's
/// indicator off once the call settles (or the reconciler puts it right).
/// It is never started again behind anyone's back: recording again is asked
/// again. Whether it lapsed.
async fn consent_lapses(tx: &mut PgConnection, id: CallId, out: &mut Outgoing) -> sqlx::Result<bool> {
    let Some(call) = store::lock_call(tx, id).await? else { return Ok(false) };
    if call.recording_session.0.state != VideoState::On
        || recordings::running(tx, id).await?.iter().any(|r| !r.egress_done())
    {
        return Ok(false);
    }
    recordings::save_session(tx, id, &rules::VideoSession::default()).await?;
    store::consent_ledger::append(tx, id, Subject::Recording, rules::LedgerKind::Off, None, None).await?;
    let present: Vec<String> = store::participants(tx, id)
        .await?
        .into_iter()
        .filter(|p| p.is_present())
        .map(|p| p.user_id.to_string())
        .collect();
    out.notify(&present, ClientEvent::RecordingOff, Some(id.0), &json!({"recording": VideoState::Off}));
    tracing::warn!(call_id = %id, "egress stopped recording: the consent to record lapsed");
    Ok(true)
}

async fn failed(tx: &mut PgConnection, call: &CallRow, id: Uuid, out: &mut Outgoing) -> sqlx::Result<()> {
    let view = CallView::load(tx, call).await?;
    if let Some(recording) = recordings::find(tx, id).await? {
        tracing::warn!(call_id = %call.id, recording_id = %id, error = ?recording.error, "a recording failed");
        app_webhooks::recording_failed(out, &view, &recording);
        let to = took_part(&view);
        out.notify(&to, ClientEvent::RecordingFailed, Some(call.id.0), &json!({"recordingId": id}));
    }
    Ok(())
}

/// Whether one was in the call at some point (and so maybe recorded):
/// those who reach its recordings and hear of them.
fn was_in(status: ParticipantStatus) -> bool {
    use ParticipantStatus::*;
    matches!(status, Accepted | Joined | Reconnecting | Left | Removed)
}

fn took_part(view: &CallView) -> Vec<String> {
    view.participants.iter().filter(|p| was_in(p.status)).map(|p| p.user_id.clone()).collect()
}

/// The name of a recording's file, where egress writes it (under
/// `RECORDING_EGRESS_DIR`, which callgate reads as `RECORDING_DIR`) and
/// in every storage (`crate::storage::Storage::keep`).
fn local_name(call: Uuid, id: Uuid, extension: &str) -> String {
    format!("{call}/{id}.{extension}")
}

fn local_name_of(recording: &RecordingRow) -> String {
    local_name(recording.call_id, recording.id, &recording.file_type)
}

/// The local disk, where egress writes.
fn local(app: &Core) -> LocalDisk {
    LocalDisk::new(app.config.recording.dir.clone())
}

/// The storage that holds a recording's file, as its row says.
fn storage_of(app: &Core, recording: &RecordingRow) -> anyhow::Result<Arc<dyn Storage>> {
    if recording.storage == app.storage.kind().as_str() {
        Ok(app.storage.clone())
    } else if recording.storage == Kind::Local.as_str() {
        Ok(Arc::new(local(app)))
    } else {
        anyhow::bail!(
            "recording {} is kept in {} storage, which RECORDING_STORAGE no longer names",
            recording.id,
            recording.storage
        )
    }
}

/// The media type of a recording's file.
pub fn content_type(file_type: &str) -> &'static str {
    if file_type == "mp4" { "video/mp4" } else { "audio/ogg" }
}

/// The name a recording's download is saved under.
pub fn filename(recording: &RecordingRow) -> String {
    format!("recording-{}.{}", recording.id, recording.file_type)
}

/// The file's size and sha256 (hex), read in a blocking thread.
async fn checked(path: PathBuf) -> std::io::Result<(u64, String)> {
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        let mut file = std::fs::File::open(&path)?;
        let mut hash = sha2::Sha256::new();
        let size = std::io::copy(&mut file, &mut hash)?;
        Ok((size, hex::encode(hash.finalize())))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The job: a recording egress finished is checked on disk and kept
/// (`ready`, with its size and checksum, in the storage `RECORDING_STORAGE`
/// names), or `failed` if its file is not there or empty. The host and the
/// participants hear of it. A file the storage does not take (a bucket
/// unreachable) fails the job, tried again later, the file still on disk.
///
/// Kept elsewhere than on the local disk, the file's local copy is deleted
/// by the same job once more, after this run's commit: only once the row
/// says where the file is, whatever stops callgate in between.
pub async fn finish(app: &Core, tx: &mut PgConnection, id: Uuid) -> anyhow::Result<()> {
    let Some(recording) = recordings::find(tx, id).await? else { return Ok(()) };
    if !recording.is_running() {
        return drop_local_copy(app, &recording).await;
    }
    let name = local_name_of(&recording);
    let path = app.config.recording.dir.join(&name);
    // Checked and kept before the call is locked: an upload takes a while.
    let kept = match checked(path.clone()).await {
        Ok((size, checksum)) if size > 0 => {
            let filename = filename(&recording);
            let info = FileInfo { filename: &filename, content_type: content_type(&recording.file_type) };
            let key = app.storage.keep(&path, &name, info).await.context("keeping a recording's file")?;
            Ok((size, checksum, key))
        }
        Ok(_) => Err("the file is empty".to_owned()),
        Err(err) => Err(format!("the file cannot be read: {err}")),
    };
    let Some(call) = store::lock_call(tx, CallId(recording.call_id)).await? else { return Ok(()) };
    let now = app.clock.now();
    let mut out = Outgoing::default();
    match kept {
        Ok((size, checksum, key)) => {
            let storage = app.storage.kind();
            let size_bytes = i64::try_from(size).unwrap_or(i64::MAX);
            let kept = recordings::Kept {
                size_bytes,
                checksum: &checksum,
                storage: storage.as_str(),
                storage_key: &key,
            };
            if recordings::set_ready(tx, id, &kept, now).await? {
                let view = CallView::load(tx, &call).await?;
                let ready = recordings::find(tx, id).await?.unwrap_or(recording);
                app_webhooks::recording_ready(&mut out, &view, &ready);
                let data = json!({"recordingId": id, "durationMs": ready.duration_ms, "sizeBytes": ready.size_bytes});
                out.notify(&took_part(&view), ClientEvent::RecordingReady, Some(call.id.0), &data);
                if storage != Kind::Local {
                    jobs::enqueue(tx, &Job::RecordingFile { recording: id }, now, Again::Replace, true)
                        .await?;
                }
            }
        }
        Err(error) => {
            recordings::set_status(tx, id, status::FAILED, now, Some(&error)).await?;
            failed(tx, &call, id, &mut out).await?;
        }
    }
    out.write(tx).await?;
    Ok(())
}

/// A recording whose file is kept elsewhere: egress's copy on the local
/// disk goes (there is none the second time).
async fn drop_local_copy(app: &Core, recording: &RecordingRow) -> anyhow::Result<()> {
    if recording.storage == Kind::Local.as_str() {
        return Ok(());
    }
    local(app).delete(&local_name_of(recording)).await
}

// ------------------------------------------------------------------- the API

/// The call's consent to record, as one participant reads it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingConsentView {
    /// `on` while everyone present consents (egress records), `requested`
    /// while a request waits for answers.
    pub state: VideoState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestView>,
    pub can_answer: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<DateTime<Utc>>,
    /// The recording being made now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingView>,
}

/// One recording of a call. Where its file is stays callgate's: it is
/// fetched through `GET /recordings/{id}/file` (or a short-lived link from
/// `GET /recordings/{id}/link`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingView {
    pub id: Uuid,
    pub call_id: Uuid,
    /// `starting`, `recording`, `ending` (its file being finished and kept), `ready`, `failed` or
    /// `deleted` (its file deleted at a participant's request).
    pub status: String,
    /// `ogg` (audio) or `mp4` (audio and video).
    pub file_type: String,
    pub requested_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl From<RecordingRow> for RecordingView {
    fn from(r: RecordingRow) -> Self {
        RecordingView {
            id: r.id,
            call_id: r.call_id,
            status: r.status,
            file_type: r.file_type,
            requested_at: r.requested_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
            duration_ms: r.duration_ms,
            size_bytes: r.size_bytes,
            sha256: r.checksum,
        }
    }
}

/// Commits a decision about recording. The room's metadata says whether the
/// call records (`livekit::room_metadata`): once a decision that turned it
/// on or off has committed, LiveKit is told as it is of video's (`enforce`;
/// the reconciler puts back a room that missed it). Joins, departures and
/// deadlines that turn it off settle the call already.
async fn commit_announcing(
    mut unit: Unit<'_>,
    before: &CallRow,
    decision: &rules::Decision,
) -> sqlx::Result<()> {
    if decision.video_changed(&before.recording_session.0) {
        unit.settle(Effects::for_call(before.call_id()));
    }
    unit.commit_settling_soon().await?;
    Ok(())
}

fn enabled(app: &Core) -> Result<(), CallError> {
    match app.config.recording_policy.rules() {
        Some(_) => Ok(()),
        None => Err(CallError::Forbidden {
            code: Code::RecordingDisabled,
            detail: "calls are not recorded here (RECORDING_POLICY is off)".into(),
        }),
    }
}

pub async fn view(app: &Core, user: &AuthUser, id: CallId) -> Result<RecordingConsentView, CallError> {
    let mut conn = app.db.acquire().await?;
    let call = store::find_call(&mut *conn, id).await?.ok_or(CallError::NotFound)?;
    let participants = store::participants(&mut conn, id).await?;
    if !participants.iter().any(|p| p.user_id == user.id.as_str() && p.member().took_part()) {
        return Err(CallError::NotFound);
    }
    let session = &call.recording_session.0;
    let members = consent::members(&participants);
    let can_answer = app
        .config
        .recording_policy
        .rules()
        .is_some_and(|policy| rules::can_answer(policy, session, &members, user.id.as_str()));
    let running = recordings::running(&mut conn, id).await?;
    Ok(RecordingConsentView {
        state: session.state,
        request: session.request.as_ref().map(RequestView::from),
        can_answer,
        cooldown_until: session
            .cooldowns
            .get(user.id.as_str())
            .copied()
            .filter(|until| *until > app.clock.now()),
        recording: running.into_iter().last().map(RecordingView::from),
    })
}

/// Asks everyone present to consent to record the call. In an
/// appointment's meeting only its host may ask (the guests still consent).
pub async fn request(app: &Core, user: &AuthUser, id: CallId) -> Result<RequestView, CallError> {
    enabled(app)?;
    let mut unit = consent::open_present(app, id, &user.id).await?;
    let call = unit.call().clone();
    if !matches!(call.state, CallState::Connecting | CallState::Active) {
        return Err(CallError::conflict(
            Code::CallNotConnected,
            "recording can be requested once the call is answered",
        ));
    }
    if call.appointment_id.is_some() {
        let participants = store::participants(unit.conn(), id).await?;
        let host = participants.iter().any(|p| p.user_id == user.id.as_str() && p.role == Role::Initiator);
        if !host {
            return Err(CallError::Forbidden {
                code: Code::NotAHost,
                detail: "only the host asks to record an appointment".into(),
            });
        }
    }
    crate::calls::limits::recording_request(app, id, &user.id).await?;
    let request_id = Uuid::new_v4();
    let action = Action::Request { by: user.id.to_string(), id: request_id };
    let me = Some(user.id.as_str());
    let decision =
        consent::apply_answering(app, unit.conn(), &call, Subject::Recording, action, me, None).await?;
    commit_announcing(unit, &call, &decision).await?;
    Ok(RequestView::of_request(&decision, request_id, &user.id, app.clock.now()))
}

pub async fn answer(
    app: &Core,
    user: &AuthUser,
    id: CallId,
    request: Uuid,
    accept: bool,
) -> Result<RecordingConsentView, CallError> {
    enabled(app)?;
    let mut unit = consent::open_present(app, id, &user.id).await?;
    let call = unit.call().clone();
    let by = user.id.to_string();
    let action = if accept { Action::Accept { by, id: request } } else { Action::Reject { by, id: request } };
    let me = Some(user.id.as_str());
    let decision =
        consent::apply_answering(app, unit.conn(), &call, Subject::Recording, action, me, None).await?;
    commit_announcing(unit, &call, &decision).await?;
    view(app, user, id).await
}

/// Anyone present stops the recording (or says no to, or withdraws, a
/// pending request).
pub async fn stop(app: &Core, user: &AuthUser, id: CallId) -> Result<RecordingConsentView, CallError> {
    enabled(app)?;
    let mut unit = consent::open_present(app, id, &user.id).await?;
    let call = unit.call().clone();
    let action = Action::Revoke { by: user.id.to_string() };
    let me = Some(user.id.as_str());
    let decision =
        consent::apply_answering(app, unit.conn(), &call, Subject::Recording, action, me, None).await?;
    commit_announcing(unit, &call, &decision).await?;
    view(app, user, id).await
}

/// Whether `user` may reach the call's recordings: one who took part in
/// it, or `admin` (each such read audited). Anyone else: not found.
async fn may_reach(
    app: &Core,
    conn: &mut PgConnection,
    user: &AuthUser,
    call: CallId,
) -> Result<(), CallError> {
    let participants = store::participants(&mut *conn, call).await?;
    if participants.iter().any(|p| p.user_id == user.id.as_str() && was_in(p.status)) {
        return Ok(());
    }
    if user.is_admin() {
        let action = crate::domain::ModerationAction::ReadRecordings;
        store::audit_log::read(conn, app.clock.now(), &user.id, action, call).await?;
        return Ok(());
    }
    Err(CallError::NotFound)
}

pub async fn list(app: &Core, user: &AuthUser, id: CallId) -> Result<Vec<RecordingView>, CallError> {
    let mut conn = app.db.acquire().await?;
    may_reach(app, &mut conn, user, id).await?;
    Ok(recordings::of_call(&mut conn, id).await?.into_iter().map(RecordingView::from).collect())
}

/// How a `ready` recording's file is fetched (streamed from the local
/// disk, or a link to the bucket that works `RECORDING_LINK_TTL`), with its row.
pub async fn download(app: &Core, user: &AuthUser, id: Uuid) -> Result<(RecordingRow, Download), CallError> {
    let mut conn = app.db.acquire().await?;
    let recording = recordings::find(&mut conn, id).await?.ok_or(CallError::NotFound)?;
    may_reach(app, &mut conn, user, CallId(recording.call_id)).await?;
    if recording.status != status::READY {
        return Err(CallError::conflict(
            Code::RecordingNotReady,
            format!("the recording is {}", recording.status),
        ));
    }
    let storage = storage_of(app, &recording)?;
    let filename = filename(&recording);
    let info = FileInfo { filename: &filename, content_type: content_type(&recording.file_type) };
    let how = storage.download(&recording.storage_key, info, app.clock.now(), app.config.recording.link_ttl);
    Ok((recording, how))
}

/// One who took part (or `admin`) has a recording's file deleted; the row
/// stays, `deleted` (until `RECORDING_RETENTION` removes it).
pub async fn delete(app: &Core, user: &AuthUser, id: Uuid) -> Result<RecordingView, CallError> {
    let mut tx = app.db.begin().await?;
    let recording = recordings::find(&mut tx, id).await?.ok_or(CallError::NotFound)?;
    may_reach(app, &mut tx, user, CallId(recording.call_id)).await?;
    if recording.is_running() {
        return Err(CallError::conflict(Code::RecordingNotReady, "stop the recording first"));
    }
    if recordings::set_deleted(&mut tx, id, app.clock.now()).await? {
        let storage = storage_of(app, &recording)?;
        storage.delete(&recording.storage_key).await.context("deleting a recording's file")?;
    }
    tx.commit().await?;
    tracing::info!(recording_id = %id, by = %user.id, "a recording's file was deleted");
    let row = recordings::find(&mut *app.db.acquire().await?, id).await?.ok_or(CallError::NotFound)?;
    Ok(RecordingView::from(row))
}

/// `RECORDING_RETENTION`: recordings that ended longer ago are deleted,
/// their files first, then their rows (so a file never outlives the row
/// that says where it is). How many; one that cannot be deleted now is
/// tried again by the next purge.
pub async fn purge(app: &Core) -> anyhow::Result<usize> {
    let before = app.clock.now() - chrono::Duration::from_std(app.config.recording.retention)?;
    let old = recordings::ended_before(&app.db, before, 100).await?;
    let mut deleted = 0;
    for recording in old {
        match purge_one(app, &recording).await {
            Ok(true) => deleted += 1,
            Ok(false) => {}
            Err(err) => tracing::warn!(
                recording_id = %recording.id,
                error = format!("{err:#}"),
                "could not delete a recording past its retention; trying again later"
            ),
        }
    }
    Ok(deleted)
}

async fn purge_one(app: &Core, recording: &RecordingRow) -> anyhow::Result<bool> {
    if recording.status != status::DELETED {
        storage_of(app, recording)?.delete(&recording.storage_key).await?;
    }
    let mut conn = app.db.acquire().await?;
    Ok(recordings::delete(&mut conn, recording.id).await?)
}
