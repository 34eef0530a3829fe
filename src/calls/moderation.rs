//! What moderators (the `admin` role) may do, each action written to the
//! audit log in the transaction that does it (who, when, why): end any
//! call, remove a participant from a call, suspend a user from calling and
//! being called (for a time or until lifted) and lift it. Reading a call's
//! full ledger and its reports is `calls::consent::ledger` and
//! `calls::call_reports::list`, which let `admin` see everything and write
//! each such read to the audit log (without a reason).
//!
//! The participants of a call learn only what any call tells them: it
//! ended (`endReason` `moderator`) or someone left it; never who acted or
//! why. A suspension is told to nobody: whoever calls the suspended user,
//! or is called by them, finds the other busy (`calls::gate`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::calls::app_webhooks::{self, Offence};
use crate::calls::enforce::Effects;
use crate::calls::lifecycle::{ended_conflict, finish};
use crate::calls::participants::{self, Departure, Left};
use crate::calls::views::{CallOnly, CallView};
use crate::calls::{CallError, Core, Unit};
use crate::domain::call::Ending;
use crate::domain::moderation::{self as rules, MAX_MODERATION_REASON};
use crate::domain::{self, AuthUser, CallId, Code, EventSource, ModerationAction, UserId, Violation};
use crate::store::audit_log::{self, NewEntry};
use crate::store::{self, suspensions};

/// Only `admin` moderates.
fn require_admin(user: &AuthUser) -> Result<(), CallError> {
    if user.is_admin() {
        Ok(())
    } else {
        Err(CallError::forbidden(Code::AdminOnly, "moderation is for administrators"))
    }
}

/// A moderator's reason, as stored: 1 to 1000 printable characters.
pub fn reason(raw: &str) -> Result<String, CallError> {
    rules::text(raw, MAX_MODERATION_REASON).map_err(|e| CallError::invalid("reason", format!("reason {e}")))
}

/// A moderator's action on a call, as the audit log has it.
fn on_call<'a>(
    app: &Core,
    admin: &'a AuthUser,
    action: ModerationAction,
    call: CallId,
    user: Option<&'a UserId>,
    why: &'a str,
) -> NewEntry<'a> {
    NewEntry {
        at: app.clock.now(),
        actor: &admin.id,
        action,
        call: Some(call),
        user,
        reason: Some(why),
        detail: json!({}),
    }
}

/// Ends a live call for everyone: outcome as for a hang-up, end reason
/// `moderator`; nobody is named as having ended it.
#[tracing::instrument(skip_all, fields(user_id = %admin.id, call_id = %id))]
pub async fn end_call(app: &Core, admin: &AuthUser, id: CallId, why: &str) -> Result<CallOnly, CallError> {
    require_admin(admin)?;
    let mut unit = Unit::open(app, id).await?;
    let call = unit.call().clone();
    if !call.state.is_live() {
        return Err(ended_conflict());
    }
    let (outcome, end_reason) = domain::call::end(call.state, Ending::Moderator);
    let ended = finish(unit.conn(), &call, outcome, end_reason, EventSource::System, None).await?;
    audit_log::append(unit.conn(), &on_call(app, admin, ModerationAction::EndCall, id, None, why)).await?;
    let view = ended.view.clone();
    unit.ended(ended);
    unit.commit().await?;
    tracing::info!("a moderator ended the call");
    Ok(CallOnly { call: view })
}

/// Removes a present participant from a live call, for good: out of its
/// room at once, never let back in (as a removal for a violation). The
/// host hears it as `consent.violation` (`removed_by_moderator`).
#[tracing::instrument(skip_all, fields(user_id = %admin.id, call_id = %id, removed = %user))]
pub async fn remove(
    app: &Core,
    admin: &AuthUser,
    id: CallId,
    user: &UserId,
    why: &str,
) -> Result<CallOnly, CallError> {
    require_admin(admin)?;
    let mut unit = Unit::open(app, id).await?;
    let call = unit.call().clone();
    if !call.state.is_live() {
        return Err(ended_conflict());
    }
    let before = store::participants(unit.conn(), id).await?;
    if !before.iter().any(|p| p.user_id == *user && p.is_present()) {
        return Err(CallError::conflict(Code::NotInCall, "that user is not in this call"));
    }
    let offence = Offence {
        user: user.as_str(),
        violation: Violation::RemovedByModerator,
        removed: true,
        track: None,
        moderator: Some((&admin.id, why)),
    };
    app_webhooks::consent_violation(unit.out(), &CallView::new(&call, &before), &offence);
    // Before what the departure tells.
    unit.flush().await?;
    let data = json!({"reason": Violation::RemovedByModerator});
    store::record_event(
        unit.conn(),
        id,
        "participant.removed",
        EventSource::System,
        Some(user.as_str()),
        data,
    )
    .await?;
    let mut effects = Effects::for_call(id);
    let left = participants::depart(
        app,
        unit.conn(),
        &call,
        user.as_str(),
        None,
        Departure::RemovedByModerator,
        &mut effects,
    )
    .await?;
    let entry = on_call(app, admin, ModerationAction::RemoveParticipant, id, Some(user), why);
    audit_log::append(unit.conn(), &entry).await?;
    let view = match left {
        Left::CallEnded(ended) => {
            let view = ended.view.clone();
            unit.ended(*ended);
            view
        }
        Left::Left | Left::Ignored => CallView::load(unit.conn(), &call).await?,
    };
    unit.settle(effects);
    unit.commit().await?;
    tracing::info!("a moderator removed a participant");
    Ok(CallOnly { call: view })
}

/// A suspension, as `admin` reads it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuspensionView {
    pub user_id: String,
    pub suspended_by: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    /// Absent: until lifted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
}

impl From<suspensions::SuspensionRow> for SuspensionView {
    fn from(s: suspensions::SuspensionRow) -> Self {
        SuspensionView {
            user_id: s.user_id,
            suspended_by: s.suspended_by,
            reason: s.reason,
            created_at: s.created_at,
            ends_at: s.ends_at,
        }
    }
}

/// Suspends `user` from calling and being called for `duration` (`None`:
/// until lifted), replacing any suspension they had. Calls they are in go
/// on (a moderator ends them or removes them apart); rings to them that
/// began before cannot be answered.
#[tracing::instrument(skip_all, fields(user_id = %admin.id, suspended = %user))]
pub async fn suspend(
    app: &Core,
    admin: &AuthUser,
    user: &UserId,
    duration: Option<chrono::Duration>,
    why: &str,
) -> Result<SuspensionView, CallError> {
    require_admin(admin)?;
    let now = app.clock.now();
    let ends_at =
        rules::suspension_ends(now, duration).map_err(|e| CallError::invalid("durationSeconds", e))?;
    let mut tx = app.db.begin().await?;
    let row = suspensions::suspend(&mut tx, user, &admin.id, why, now, ends_at).await?;
    let entry = NewEntry {
        at: now,
        actor: &admin.id,
        action: ModerationAction::Suspend,
        call: None,
        user: Some(user),
        reason: Some(why),
        detail: json!({"endsAt": ends_at}),
    };
    audit_log::append(&mut tx, &entry).await?;
    tx.commit().await?;
    tracing::info!(ends_at = ?ends_at, "a moderator suspended a user");
    Ok(row.into())
}

/// Lifts `user`'s suspension; whether one was in force.
#[tracing::instrument(skip_all, fields(user_id = %admin.id, lifted = %user))]
pub async fn lift(app: &Core, admin: &AuthUser, user: &UserId, why: &str) -> Result<bool, CallError> {
    require_admin(admin)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let lifted = suspensions::lift(&mut tx, user, now).await?;
    let entry = NewEntry {
        at: now,
        actor: &admin.id,
        action: ModerationAction::LiftSuspension,
        call: None,
        user: Some(user),
        reason: Some(why),
        detail: json!({"wasInForce": lifted.is_some()}),
    };
    audit_log::append(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(lifted.is_some())
}

/// `user`'s suspension in force now, if any.
pub async fn suspension(
    app: &Core,
    admin: &AuthUser,
    user: &UserId,
) -> Result<Option<SuspensionView>, CallError> {
    require_admin(admin)?;
    let mut conn = app.db.acquire().await?;
    Ok(suspensions::in_force(&mut conn, user, app.clock.now()).await?.map(SuspensionView::from))
}

/// An entry of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryView {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The moderator.
    pub actor_id: String,
    pub action: ModerationAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<uuid::Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Absent for a read (`read_ledger`, `read_reports`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// The audit log, newest first (`before`: an entry's id, for the next page).
pub async fn audit(
    app: &Core,
    admin: &AuthUser,
    filter: &audit_log::Filter<'_>,
) -> Result<Vec<AuditEntryView>, CallError> {
    require_admin(admin)?;
    let rows = audit_log::list(&app.db, filter).await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEntryView {
            id: r.id,
            at: r.at,
            actor_id: r.actor_id,
            action: r.action,
            call_id: r.call_id,
            user_id: r.user_id,
            reason: r.reason,
            detail: r.detail,
        })
        .collect())
}
