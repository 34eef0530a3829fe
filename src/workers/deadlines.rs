//! A call's deadlines: ringing, connecting, maximum duration, video request
//! expiry, the end of a drop's grace. Each is a job of the call's lane
//! (`store::deadlines`), acted on in the transaction that takes it while
//! holding the call's row lock, so it fires exactly once across instances
//! and still fires after a restart.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::calls::Core;
use crate::calls::consent;
use crate::calls::enforce;
use crate::calls::lifecycle::{Ended, finish};
use crate::domain::consent::Subject;
use crate::domain::membership::Step;
use crate::domain::{self, call::Ending};
use crate::domain::{CallId, CallState, EventSource};
use crate::store::{self, CallRow, DeadlineKind};

/// What a deadline did, for after its transaction commits.
pub enum Fired {
    /// The call ended.
    Ended(Box<Ended>),
    /// The call changed: the room hears of it.
    Changed(enforce::Effects),
    /// The call's row is held elsewhere: try again shortly.
    Busy,
}

#[tracing::instrument(name = "deadline", skip(app, tx, id, kind, ref_id), fields(call_id = %id, kind = kind.as_str()))]
pub async fn fire(
    app: &Core,
    tx: &mut PgConnection,
    id: CallId,
    kind: DeadlineKind,
    ref_id: Option<Uuid>,
) -> anyhow::Result<Fired> {
    // Skipped, not waited for: whoever holds the call may be waiting for
    // this deadline's row (scheduling it again).
    let Some(call) = store::calls::lock_call_nowait(tx, id).await? else {
        return Ok(match store::find_call(&mut *tx, id).await? {
            Some(_) => Fired::Busy,
            // Purged with its history.
            None => Fired::Changed(enforce::Effects::default()),
        });
    };
    let mut effects = enforce::Effects::for_call(id);
    let ended = act(app, tx, &call, kind, ref_id, &mut effects).await?;
    tracing::info!(ended = ended.is_some(), "deadline fired");
    Ok(match ended {
        Some(ended) => Fired::Ended(Box::new(ended)),
        None => Fired::Changed(effects),
    })
}

/// Returns the call if it ended.
async fn act(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    kind: DeadlineKind,
    ref_id: Option<Uuid>,
    effects: &mut enforce::Effects,
) -> anyhow::Result<Option<Ended>> {
    let id = call.call_id();
    match (kind, call.state) {
        (_, CallState::Ended) => Ok(None),
        (DeadlineKind::Ringing, state) => {
            // Each callee rings until their own end (RINGING_TIMEOUT from
            // when they were rung, `ring_until`).
            let over = store::participants::ringing_over(tx, id, app.clock.now()).await?;
            let participants = store::participants(tx, id).await?;
            let still = participants.iter().filter(|p| p.member().is_ringing()).count();
            if state == CallState::Ringing && still <= over.len() {
                // Nobody answered it: the call ends missed.
                let (outcome, reason) = domain::call::end(call.state, Ending::RingTimeout);
                return Ok(Some(finish(tx, call, outcome, reason, EventSource::System, None).await?));
            }
            for me in participants.iter().filter(|p| over.iter().any(|o| p.user_id == o.as_str())) {
                crate::calls::participants::decline(tx, call, me, Step::RingTimeout).await?;
            }
            if let Some(next) = store::participants::next_ring_end(tx, id).await? {
                store::deadlines::schedule_earliest(tx, id, DeadlineKind::Ringing, next).await?;
            }
            if over.is_empty() {
                return Ok(None);
            }
            consent::on_rings_ended(app, tx, call, &over).await?;
            let view = crate::calls::views::CallView::load(tx, call).await?;
            let mut out = store::Outgoing::default();
            crate::calls::app_webhooks::call_missed(&mut out, &view);
            for user in &over {
                crate::calls::ringing::stopped(&mut out, &view, user, domain::RingStop::Missed);
            }
            out.write(tx).await?;
            Ok(None)
        }
        (DeadlineKind::Connect, CallState::Connecting) => {
            let (outcome, reason) = domain::call::end(call.state, Ending::ConnectTimeout);
            Ok(Some(finish(tx, call, outcome, reason, EventSource::System, None).await?))
        }
        (DeadlineKind::Connect, _) => Ok(None),
        (DeadlineKind::MaxDuration, _) => {
            let (outcome, reason) = domain::call::end(call.state, Ending::MaxDuration);
            Ok(Some(finish(tx, call, outcome, reason, EventSource::System, None).await?))
        }
        (DeadlineKind::Rejoin, _) => {
            Ok(crate::calls::participants::rejoin_grace_over(app, tx, call, effects).await?)
        }
        (DeadlineKind::VideoRequest, _) => {
            if let Some(request) = ref_id {
                consent::expire(app, tx, call, Subject::Video, request).await?;
            }
            Ok(None)
        }
        (DeadlineKind::RecordingRequest, _) => {
            if let Some(request) = ref_id {
                consent::expire(app, tx, call, Subject::Recording, request).await?;
            }
            Ok(None)
        }
    }
}
