//! Puts LiveKit in line with what a committed transaction decided.
//!
//! No LiveKit request is made while a call's row is locked: a transaction
//! decides and commits, then hands what LiveKit must hear to [`settle`].
//! So a video state that LiveKit is told about is always one that was
//! committed (an off that fails to commit is never enforced), and a slow or
//! stalled LiveKit holds up no lock, no API request on the call and no other
//! call's webhooks.
//!
//! The rights sent are read afresh from the committed state, and sent again
//! until no newer change committed meanwhile: two changes racing from two
//! instances cannot leave LiveKit on the older one. `calls.video_version`
//! counts the changes, `calls.rights_version` is the newest that LiveKit
//! confirmed for everyone present; a call where they differ is looked at
//! first by the reconciler.
//!
//! A settling is tried once right after the commit, in this process (a task
//! shutdown waits for: `Core::after_commit`); what LiveKit did not take is
//! tried again by the job runner, as a `settle` job of the call's lane
//! (`store::jobs::Settle`, its backoff and giving up in `workers::jobs`),
//! so a retry outlives a restart of the instance that began it. Written
//! after the commit, not in the deciding transaction: the first try costs no
//! statement, and a crash between the commit and it is the reconciler's
//! (the versions, a stranger in the room).

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use tokio::sync::oneshot;

use crate::calls::Core;
use crate::domain::consent::{self as rules, VideoState};
use crate::domain::{CallId, CallState};
use crate::livekit::{LiveKitError, room_metadata};
use crate::store::jobs::{self, Again, Job};
use crate::store::{self, CallRow, calls::Settling};

/// Pushes of one sync before it gives the call to the retries: a change
/// committing during every push is a call someone is hammering.
const ROUNDS: usize = 4;
/// A settling that failed right after its commit is tried again this much
/// later by the job runner (then with the runner's backoff).
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// How long an API request waits for LiveKit to confirm before it answers
/// (`sfuConfirmed: false`, the retries go on).
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(2);

/// What LiveKit must hear about one call once the transaction has committed.
#[derive(Debug, Default)]
#[must_use = "hand it to enforce::settle once the transaction has committed"]
pub struct Effects {
    pub call: Option<CallId>,
    /// Participants whose rights to push again: a new LiveKit session.
    pub rights_for: Vec<String>,
    /// Participants with a track their rights do not allow (published
    /// while the rights were being withdrawn, or with a token LiveKit
    /// refreshed before): their rights are pushed so that LiveKit applies
    /// them and removes it (`RoomService::withdraw_tracks`).
    pub withdraw: Vec<String>,
    /// Identities to put out of the room: gone from the call, never in it,
    /// or removed for breaking the rule.
    pub remove: Vec<String>,
    /// Push everyone's rights even if the versions agree (the reconciler
    /// found LiveKit drifted).
    pub resync: bool,
}

impl Effects {
    pub fn for_call(call: CallId) -> Self {
        Effects { call: Some(call), ..Effects::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.rights_for.is_empty() && self.withdraw.is_empty() && self.remove.is_empty() && !self.resync
    }

    /// Adds what `other` (of the same call) asks for: one settlement for a
    /// batch of events.
    pub fn merge(&mut self, other: Effects) {
        self.call = self.call.or(other.call);
        for identity in other.rights_for {
            if !self.rights_for.contains(&identity) {
                self.rights_for.push(identity);
            }
        }
        for identity in other.withdraw {
            if !self.withdraw.contains(&identity) {
                self.withdraw.push(identity);
            }
        }
        for identity in other.remove {
            if !self.remove.contains(&identity) {
                self.remove.push(identity);
            }
        }
        self.resync |= other.resync;
    }
}

/// Carries out `effects` (and any video change of the call that LiveKit has
/// not confirmed), once; what LiveKit did not take is left to the job
/// runner. Returns whether LiveKit confirmed all of it.
pub async fn settle(app: &Core, effects: Effects) -> bool {
    settle_telling(app, effects, &mut None).await
}

/// Like [`settle`]; `pushed` is told as soon as LiveKit has applied the
/// rights of a state read after the caller's commit (the room's metadata,
/// the data message and the version confirmed follow).
async fn settle_telling(app: &Core, effects: Effects, pushed: &mut Option<oneshot::Sender<()>>) -> bool {
    let Some(call) = effects.call else { return true };
    let mut effects = effects;
    match attempt(app, call, &mut effects, pushed).await {
        Ok(()) => true,
        Err(err) => {
            tracing::debug!(error = %err, call_id = %call, "LiveKit not in line yet; the job runner tries again");
            retry_later(app, call, effects).await;
            false
        }
    }
}

/// Writes a `settle` job for what `effects` still asks, due `FIRST_RETRY`
/// from now.
async fn retry_later(app: &Core, call: CallId, effects: Effects) {
    let job = Job::Settle(jobs::Settle {
        call: call.0,
        rights_for: effects.rights_for,
        withdraw: effects.withdraw,
        remove: effects.remove,
        resync: effects.resync,
    });
    let due = app.clock.now() + chrono::Duration::from_std(FIRST_RETRY).unwrap_or_default();
    let queued = async {
        let mut conn = app.db.acquire().await?;
        jobs::enqueue(&mut conn, &job, due, Again::Replace, true).await
    };
    if let Err(err) = queued.await {
        tracing::warn!(error = %err, call_id = %call, "could not queue the settling's retry; the reconciler will see the call");
    }
}

/// One try of a `settle` job (by the job runner): an error is tried again
/// with the runner's backoff, and in the end left to the reconciler.
pub async fn settle_job(app: &Core, job: &jobs::Settle) -> anyhow::Result<()> {
    let call = CallId(job.call);
    let jobs::Settle { rights_for, withdraw, remove, resync, .. } = job.clone();
    let mut effects = Effects { call: Some(call), rights_for, withdraw, remove, resync };
    attempt(app, call, &mut effects, &mut None)
        .await
        .map_err(|err| anyhow::Error::new(err).context("LiveKit not in line"))
}

/// Settles in a task of its own and waits at most `CONFIRM_WITHIN` for
/// LiveKit to apply the rights (not for what follows them); the task goes
/// on if LiveKit is slow. Whether LiveKit applied them in time.
pub async fn settle_soon(app: &Core, effects: Effects) -> bool {
    let (told, pushed) = oneshot::channel();
    let (settled_tx, settled) = oneshot::channel();
    let core = app.clone();
    app.after_commit(async move {
        let settled = settle_telling(&core, effects, &mut Some(told)).await;
        let _ = settled_tx.send(settled);
    });
    let applied = async {
        tokio::select! {
            biased;
            Ok(()) = pushed => true,
            settled = settled => matches!(settled, Ok(true)),
        }
    };
    tokio::time::timeout(CONFIRM_WITHIN, applied).await.unwrap_or(false)
}

/// Settles in the background (a task shutdown waits for: `Core::after_commit`).
pub fn settle_later(app: &Core, effects: Effects) {
    if effects.call.is_none() {
        return;
    }
    let core = app.clone();
    app.after_commit(async move {
        settle(&core, effects).await;
    });
}

#[derive(Debug, thiserror::Error)]
enum NotYet {
    #[error(transparent)]
    LiveKit(#[from] LiveKitError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the video state kept changing")]
    Churn,
}

/// One try; what succeeded is taken off `effects`. Pushes rights until a
/// push happened with no newer change committed meanwhile.
async fn attempt(
    app: &Core,
    call: CallId,
    effects: &mut Effects,
    pushed: &mut Option<oneshot::Sender<()>>,
) -> Result<(), NotYet> {
    let Some(mut now) = store::calls::settling(&app.db, call).await? else { return Ok(()) };
    let mut force = effects.resync;
    // A newer change committed while this attempt pushed: its push may have
    // reached LiveKit after the newer one's, so it pushes the current state
    // to everyone again (whatever `rights_version` says was confirmed).
    let mut overtaken = false;
    for _ in 0..ROUNDS {
        let row = &now.call;
        if row.state == CallState::Ended {
            // Its room is deleted by whoever ended it.
            remove_all(app, &row.room_name, &mut effects.remove).await?;
            return Ok(());
        }
        // What honest clients go by changes first: they stop playing what is
        // being withdrawn before LiveKit withdraws it, and whoever is put out
        // below finds them already closed to him when he comes back.
        let announced = announce(app, &now, force).await;
        if let Ok(Announced::Raced) = announced {
            // Another instance wrote meanwhile: LiveKit may hold theirs or ours.
            force = true;
            match store::calls::settling(&app.db, call).await? {
                Some(next) => now = next,
                None => return Ok(()),
            }
            continue;
        }
        force = false;
        let row = &now.call;
        // A failed announcement holds up no withdrawal: the rights still go
        // out, and the whole attempt is retried.
        remove_all(app, &row.room_name, &mut effects.remove).await?;
        let everyone = overtaken || effects.resync || row.rights_version < row.video_version;
        if everyone || !effects.rights_for.is_empty() || !effects.withdraw.is_empty() {
            push(app, row, (!everyone).then_some(&effects.rights_for[..]), &effects.withdraw).await?;
        }
        let current = if everyone {
            if let Some(told) = pushed.take() {
                let _ = told.send(());
            }
            effects.resync = false;
            store::calls::confirm_rights_version(&app.db, call, row.video_version).await?
        } else if !effects.rights_for.is_empty() || !effects.withdraw.is_empty() {
            store::calls::video_version(&app.db, call).await?
        } else {
            announced?;
            return Ok(());
        };
        if current.is_none_or(|v| v == row.video_version) {
            effects.rights_for.clear();
            effects.withdraw.clear();
            announced?;
            return Ok(());
        }
        overtaken = true;
        match store::calls::settling(&app.db, call).await? {
            Some(next) => now = next,
            None => return Ok(()),
        }
    }
    Err(NotYet::Churn)
}

enum Announced {
    Done,
    /// Someone else recorded an announcement after this one read the call.
    Raced,
}

/// Puts the room's metadata in line with the committed call (video state,
/// who is live), unless LiveKit was confirmed to hold it already (`force`:
/// whatever LiveKit is thought to hold). A data message tells the room when
/// the video state changed: a hint for clients, never what they go by.
async fn announce(app: &Core, now: &Settling, force: bool) -> Result<Announced, NotYet> {
    let row = &now.call;
    let state = row.video_state();
    let recording = row.recording_session.0.state;
    let metadata = room_metadata(row.call_id(), row.call_type, state, recording, &now.live);
    if !force && now.announced.as_deref() == Some(metadata.as_str()) {
        return Ok(Announced::Done);
    }
    match app.livekit.update_room_metadata(&row.room_name, metadata.clone()).await {
        Ok(()) => {}
        // The room is gone: whoever ended the call deleted it.
        Err(LiveKitError::NotFound) => return Ok(Announced::Done),
        Err(err) => return Err(err.into()),
    }
    // The room hears only on or off (`room_metadata`).
    let shown = if state == VideoState::On { VideoState::On } else { VideoState::Off };
    if video_of(now.announced.as_deref()) != Some(shown) {
        let payload = json!({"type": "video.state", "video": shown}).to_string().into_bytes();
        if let Err(err) = app.livekit.send_data(&row.room_name, "callgate.video", payload).await {
            tracing::debug!(error = %err, "could not tell the room of the video state");
        }
    }
    let recorded =
        store::calls::announced(&app.db, row.call_id(), now.announced.as_deref(), &metadata).await?;
    Ok(if recorded { Announced::Done } else { Announced::Raced })
}

/// The video state a room's metadata says.
fn video_of(metadata: Option<&str>) -> Option<VideoState> {
    let value: serde_json::Value = serde_json::from_str(metadata?).ok()?;
    serde_json::from_value(value.get("video")?.clone()).ok()
}

async fn remove_all(app: &Core, room: &str, identities: &mut Vec<String>) -> Result<(), LiveKitError> {
    let removals = identities.iter().map(|identity| app.livekit.remove_participant(room, identity));
    let results = join_all(removals).await;
    let mut failed = None;
    let mut left = Vec::new();
    for (identity, result) in identities.drain(..).zip(results) {
        if let Err(err) = result {
            left.push(identity);
            failed = Some(err);
        }
    }
    *identities = left;
    failed.map_or(Ok(()), Err)
}

/// Sends the rights of the committed state to the present participants
/// (those of `only` and `withdraw`, if `only` is given), all at once; those
/// of `withdraw` so that LiveKit removes what they may not publish.
async fn push(app: &Core, row: &CallRow, only: Option<&[String]>, withdraw: &[String]) -> Result<(), NotYet> {
    let mut conn = app.db.acquire().await?;
    let participants = store::participants(&mut conn, row.call_id()).await?;
    drop(conn);
    let state = row.video_state();
    let named = |p: &store::ParticipantRow| withdraw.iter().any(|w| p.user_id == *w);
    let targets = participants
        .iter()
        .filter(|p| p.is_present())
        .filter(|p| only.is_none_or(|only| only.iter().any(|o| p.user_id == *o)) || named(p));
    let updates = targets.map(|p| {
        let sources = rules::publish_sources(state, p.may_share_screen);
        async move {
            let identity = p.user_id.as_str();
            if !p.admitted {
                // An appointment's waiting room: nothing until a host admits them.
                app.livekit.set_waiting(&row.room_name, identity).await
            } else if named(p) {
                app.livekit.withdraw_tracks(&row.room_name, identity, &sources).await
            } else {
                app.livekit.set_publish_sources(&row.room_name, identity, &sources).await
            }
        }
    });
    for result in join_all(updates).await {
        result?;
    }
    Ok(())
}
