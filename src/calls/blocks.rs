//! Who may ring whom: a user's blocks, and the ring cooldown after repeated
//! declines. A block is never revealed: the blocked caller is answered
//! exactly as for a busy callee (`lifecycle::start` writes a blocked callee
//! `busy`), and nobody but the blocker can read their blocks.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::calls::{CallError, Core};
use crate::domain::{Code, UserId};
use crate::store;

/// Blocks one user may hold.
pub const MAX_BLOCKS: i64 = 1000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockView {
    pub user_id: String,
    pub created_at: DateTime<Utc>,
}

pub async fn block(app: &Core, me: &UserId, other: &UserId) -> Result<(), CallError> {
    if me == other {
        return Err(CallError::invalid("userId", "you cannot block yourself"));
    }
    let mut tx = app.db.begin().await?;
    if !store::blocks::block(&mut tx, me, other, MAX_BLOCKS).await? {
        return Err(CallError::conflict(
            Code::TooManyBlocks,
            format!("you may block at most {MAX_BLOCKS} users"),
        ));
    }
    tx.commit().await?;
    Ok(())
}

pub async fn unblock(app: &Core, me: &UserId, other: &UserId) -> Result<(), CallError> {
    Ok(store::blocks::unblock(&app.db, me, other).await?)
}

pub async fn list(app: &Core, me: &UserId) -> Result<Vec<BlockView>, CallError> {
    let rows = store::blocks::of(&app.db, me).await?;
    Ok(rows.into_iter().map(|(user_id, created_at)| BlockView { user_id, created_at }).collect())
}

/// The invitees who block `caller` or whom the caller blocks.
pub async fn blocked_among(
    app: &Core,
    caller: &UserId,
    invitees: &[UserId],
) -> Result<Vec<UserId>, CallError> {
    Ok(store::blocks::between(&app.db, caller, invitees).await?)
}

/// No pestering: a callee who declined `caller` `RING_DECLINES_LIMIT` times
/// within `RING_DECLINES_WINDOW` is not rung by them again until the oldest
/// of those declines is out of the window (429 `ring_cooldown`, `Retry-After`).
pub async fn ring_cooldown(app: &Core, caller: &UserId, invitees: &[UserId]) -> Result<(), CallError> {
    let limits = &app.config.limits;
    if limits.ring_declines_limit == 0 {
        return Ok(());
    }
    let limit = i64::from(limits.ring_declines_limit);
    let window = limits.ring_declines_window;
    for callee in invitees {
        let declines =
            store::blocks::recent_declines(&app.db, caller, callee, app.clock.now(), window, limit).await?;
        if declines.len() as i64 >= limit
            && let Some(oldest) = declines.last()
        {
            let free_at = *oldest + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
            let wait = (free_at - app.clock.now()).num_seconds().max(1) as u64;
            return Err(CallError::TooManyRequests {
                code: Code::RingCooldown,
                detail: format!("this callee declined your last calls; try again in {wait} s"),
                retry_after: std::time::Duration::from_secs(wait),
            });
        }
    }
    Ok(())
}
