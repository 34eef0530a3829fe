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
//! confirmed for everyone present; a call where they differ is retried here
//! with backoff and looked at first by the reconciler.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use tokio::sync::oneshot;

use crate::calls::Core;
use crate::domain::consent::{self as rules, VideoState};
use crate::domain::{CallId, CallState};
use crate::livekit::{LiveKitError, room_metadata};
use crate::store::{self, CallRow};

/// Pushes of one sync before it gives the call to the retries: a change
/// committing during every push is a call someone is hammering.
const ROUNDS: usize = 4;
/// Waits between attempts when LiveKit fails; about 15 s in all, then the
/// reconciler takes over.
const BACKOFF: [Duration; 7] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(4),
    Duration::from_secs(8),
];
/// How long an API request waits for LiveKit to confirm before it answers
/// (`sfuConfirmed: false`, the retries go on).
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(2);

/// What LiveKit must hear about one call once the transaction has committed.
#[derive(Debug, Default)]
#[must_use = "hand it to enforce::settle once the transaction has committed"]
pub struct Effects {
    pub call: Option<CallId>,
    /// Participants whose rights to push again: a new LiveKit session, or a
    /// track they published while the rights were being withdrawn.
    pub rights_for: Vec<String>,
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
        self.rights_for.is_empty() && self.remove.is_empty() && !self.resync
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
        for identity in other.remove {
            if !self.remove.contains(&identity) {
                self.remove.push(identity);
            }
        }
        self.resync |= other.resync;
    }
}

/// Carries out `effects` (and any video change of the call that LiveKit has
/// not confirmed), retrying with backoff. Returns whether LiveKit confirmed
/// all of it.
pub async fn settle(app: &Core, effects: Effects) -> bool {
    settle_telling(app, effects, &mut None).await
}

/// Like [`settle`]; `pushed` is told as soon as LiveKit has applied the
/// rights of a state read after the caller's commit (the room's metadata,
/// the data message and the version confirmed follow).
async fn settle_telling(app: &Core, effects: Effects, pushed: &mut Option<oneshot::Sender<()>>) -> bool {
    let Some(call) = effects.call else { return true };
    let mut effects = effects;
    for wait in BACKOFF.iter().copied().chain(std::iter::once(Duration::ZERO)) {
        match attempt(app, call, &mut effects, pushed).await {
            Ok(()) => return true,
            Err(err) => {
                tracing::debug!(error = %err, call_id = %call, "LiveKit not in line yet; retrying");
                if wait.is_zero() {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
    tracing::warn!(call_id = %call, "LiveKit did not confirm the call's rights; the reconciler will retry");
    false
}

/// Settles in a task of its own and waits at most `CONFIRM_WITHIN` for
/// LiveKit to apply the rights (not for what follows them); the task goes
/// on if LiveKit is slow. Whether LiveKit applied them in time.
pub async fn settle_soon(app: &Core, effects: Effects) -> bool {
    let app = app.clone();
    let (told, pushed) = oneshot::channel();
    let mut task = tokio::spawn(async move { settle_telling(&app, effects, &mut Some(told)).await });
    let applied = async {
        tokio::select! {
            biased;
            Ok(()) = pushed => true,
            settled = &mut task => matches!(settled, Ok(true)),
        }
    };
    tokio::time::timeout(CONFIRM_WITHIN, applied).await.unwrap_or(false)
}

/// Settles in the background.
pub fn settle_later(app: &Core, effects: Effects) {
    if effects.call.is_none() {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move { settle(&app, effects).await });
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

/// One try; what succeeded is taken off `effects`.
async fn attempt(
    app: &Core,
    call: CallId,
    effects: &mut Effects,
    pushed: &mut Option<oneshot::Sender<()>>,
) -> Result<(), NotYet> {
    let Some(row) = store::find_call(&app.db, call).await? else { return Ok(()) };
    remove_all(app, &row.room_name, &mut effects.remove).await?;
    if row.state == CallState::Ended {
        // Its room is deleted by whoever ended it.
        return Ok(());
    }
    let behind = row.rights_version < row.video_version;
    if behind || effects.resync {
        sync_everyone(app, row, pushed).await?;
        effects.resync = false;
        effects.rights_for.clear();
    } else if !effects.rights_for.is_empty() {
        sync_some(app, call, &effects.rights_for).await?;
        effects.rights_for.clear();
    }
    Ok(())
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

/// Pushes every present participant's rights until a push happened with no
/// newer change committed meanwhile, then records the version confirmed.
async fn sync_everyone(
    app: &Core,
    first: CallRow,
    pushed: &mut Option<oneshot::Sender<()>>,
) -> Result<(), NotYet> {
    let call = first.call_id();
    let mut announced = None;
    let mut read = Some(first);
    for _ in 0..ROUNDS {
        let row = match read.take() {
            Some(row) => row,
            None => match store::find_call(&app.db, call).await? {
                Some(row) => row,
                None => return Ok(()),
            },
        };
        if row.state == CallState::Ended {
            return Ok(());
        }
        push(app, &row, None).await?;
        if let Some(told) = pushed.take() {
            let _ = told.send(());
        }
        let state = row.video_state();
        // Announced again whenever this sync sees a state it has not announced:
        // a slower sync that announced an older state loops and announces the newer.
        if announced != Some(state) {
            announce(app, &row, state).await;
            announced = Some(state);
        }
        let now = store::calls::confirm_rights_version(&app.db, call, row.video_version).await?;
        if now.is_none_or(|v| v == row.video_version) {
            return Ok(());
        }
    }
    Err(NotYet::Churn)
}

/// Pushes the rights of `identities` (new sessions) until no change
/// committed meanwhile.
async fn sync_some(app: &Core, call: CallId, identities: &[String]) -> Result<(), NotYet> {
    for _ in 0..ROUNDS {
        let Some(row) = store::find_call(&app.db, call).await? else { return Ok(()) };
        if row.state == CallState::Ended {
            return Ok(());
        }
        push(app, &row, Some(identities)).await?;
        let now = store::calls::video_version(&app.db, call).await?;
        if now.is_none_or(|v| v == row.video_version) {
            return Ok(());
        }
    }
    Err(NotYet::Churn)
}

/// Sends the rights of the committed state to the present participants
/// (those of `only`, if given), all at once.
async fn push(app: &Core, row: &CallRow, only: Option<&[String]>) -> Result<(), NotYet> {
    let mut conn = app.db.acquire().await?;
    let participants = store::participants(&mut conn, row.call_id()).await?;
    drop(conn);
    let state = row.video_state();
    let targets = participants
        .iter()
        .filter(|p| p.is_present())
        .filter(|p| only.is_none_or(|only| only.iter().any(|o| p.user_id == *o)));
    let updates = targets.map(|p| {
        let sources = rules::publish_sources(state, p.may_share_screen);
        async move {
            if p.admitted {
                app.livekit.set_publish_sources(&row.room_name, p.user_id.as_str(), &sources).await
            } else {
                // An appointment's waiting room: nothing until a host admits them.
                app.livekit.set_waiting(&row.room_name, p.user_id.as_str()).await
            }
        }
    });
    for result in join_all(updates).await {
        result?;
    }
    Ok(())
}

/// Room metadata carries the video state (only callgate can set it); a data
/// message from the server (no participant identity) tells the room.
async fn announce(app: &Core, row: &CallRow, state: VideoState) {
    let metadata = room_metadata(row.call_id(), row.call_type, state);
    let payload = json!({"type": "video.state", "video": state}).to_string().into_bytes();
    let (meta, data) = tokio::join!(
        app.livekit.update_room_metadata(&row.room_name, metadata),
        app.livekit.send_data(&row.room_name, "callgate.video", payload),
    );
    for err in [meta.err(), data.err()].into_iter().flatten() {
        tracing::debug!(error = %err, "could not announce the video state in the room");
    }
}
