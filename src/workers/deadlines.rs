//! Durable deadlines: ringing, connecting, maximum duration, video request
//! expiry; and appointments opening and ending as no-shows
//! (`calls::appointments::fire_due`). Every instance polls; a deadline is
//! acted on in the transaction that deletes it while holding its call's row
//! lock, so it fires exactly once across instances and still fires after a
//! restart.

use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::calls::Core;
use crate::calls::consent;
use crate::calls::enforce;
use crate::calls::lifecycle::{self, Ended, finish};
use crate::domain::membership::Step;
use crate::domain::{self, call::Ending};
use crate::domain::{CallId, CallState, EventSource};
use crate::store::{self, CallRow, DeadlineKind};

pub async fn run(app: Core, stop: CancellationToken) {
    loop {
        let fired = match fire_due(&app).await {
            Ok(n) => n,
            Err(err) => {
                match crate::infra::outage::in_chain(&err) {
                    // Logged once per outage, not once per poll.
                    Some(dependency) => app.report_outage(dependency, &format!("{err:#}")),
                    None => tracing::warn!(error = format!("{err:#}"), "deadline poll failed"),
                }
                0
            }
        };
        if fired > 0 {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(app.config.deadline_poll) => {}
        }
    }
}

/// A deadline whose handling failed is tried again this much later, so that
/// it neither stops the deadlines behind it nor takes every poll.
const RETRY_FAILED: std::time::Duration = std::time::Duration::from_secs(5);

/// Fires the deadlines that are due; returns how many fired here. One that
/// fails is logged and postponed, and the batch goes on; only an outage of
/// the database (nothing else could fire either) ends the batch early.
pub async fn fire_due(app: &Core) -> anyhow::Result<usize> {
    let due = store::deadlines::due(&app.db, 32).await?;
    let mut fired = crate::calls::appointments::fire_due(app).await?;
    for (id, kind) in due {
        let Some(kind) = DeadlineKind::parse(&kind) else { continue };
        match fire_one(app, id, kind).await {
            Ok(true) => fired += 1,
            Ok(false) => {}
            Err(err) if crate::infra::outage::in_chain(&err).is_some() => return Err(err),
            Err(err) => {
                let error = format!("{err:#}");
                tracing::warn!(call_id = %id, kind = kind.as_str(), error, "a deadline failed; retrying it later");
                store::deadlines::postpone(&app.db, id, kind, RETRY_FAILED).await?;
            }
        }
    }
    Ok(fired)
}

#[tracing::instrument(name = "deadline", skip(app, id, kind), fields(call_id = %id, kind = kind.as_str()))]
async fn fire_one(app: &Core, id: CallId, kind: DeadlineKind) -> anyhow::Result<bool> {
    let mut tx = app.db.begin().await?;
    // Same lock order as the API (call row, then its deadlines); a call busy
    // elsewhere is left for the next poll rather than waited for.
    let call: Option<CallRow> = store::calls::lock_call_nowait(&mut tx, id).await?;
    let Some(call) = call else { return Ok(false) };
    let taken = store::deadlines::take_if_due(&mut tx, id, kind).await?;
    let Some(ref_id) = taken else { return Ok(false) };
    let mut effects = enforce::Effects::for_call(id);
    let ended = act(app, &mut tx, &call, kind, ref_id, &mut effects).await?;
    tx.commit().await?;
    tracing::info!(ended = ended.is_some(), "deadline fired");
    match ended {
        Some(ended) => lifecycle::after_end(app, &ended).await,
        // An expired request or a departure changed the call: the room hears of it.
        None => enforce::settle_later(app, effects),
    }
    Ok(true)
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
            let over = store::participants::ringing_over(tx, id).await?;
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
                consent::expire(app, tx, call, request).await?;
            }
            Ok(None)
        }
    }
}
