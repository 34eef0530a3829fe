//! Every way into a call passes the same gate: a start, an invitation, a
//! late join (an answer and an appointment's join ask only
//! [`refuse_suspended`]). It checks `MAX_CALL_PARTICIPANTS`, suspensions,
//! the rate of calls of whoever rings, the host's "who may call whom" hook,
//! the ring cooldown of each newcomer towards whoever rings them, and
//! blocks both ways between each newcomer and everyone already in the call
//! (its people, those being rung, whoever lets them in, and the newcomers
//! let in before them). A blocked or suspended newcomer is answered exactly
//! as a busy one: all are `unavailable`, and nobody's status is rewritten
//! (`participants::ring`); whoever rings (or joins late) while suspended
//! finds everyone they ring unavailable, as if they were all busy: nobody
//! rings, and nothing says why. Suspensions are read from the database at
//! every knock, on every instance (`store::suspensions`).

use crate::calls::{CallError, Core};
use crate::domain::{CallType, Code, UserId};
use crate::store;

/// Someone asks to let `newcomers` into a call.
pub struct Knock<'a> {
    /// Who rings them (the caller, the inviter) or, for a late join, the
    /// newcomer themself.
    pub by: &'a UserId,
    /// Who is in the call already (present or being rung), `by` aside.
    pub inside: &'a [UserId],
    pub newcomers: &'a [UserId],
    pub call_type: CallType,
    pub conversation: Option<&'a str>,
    /// How many are live in the call now (0 for a new one).
    pub live: usize,
    /// A late join: nobody is rung, so no rate of calls or cooldown; the
    /// hook is asked whether the newcomer may call those inside.
    pub late: bool,
}

/// What the gate let through.
#[derive(Debug, Default)]
pub struct Passed {
    /// Not blocked: to be rung (the unique index may still find them busy).
    pub free: Vec<UserId>,
    /// Blocked with someone in the call: answered as busy.
    pub unavailable: Vec<UserId>,
}

pub async fn pass(app: &Core, knock: Knock<'_>) -> Result<Passed, CallError> {
    let max = app.config.max_call_participants;
    if knock.live + knock.newcomers.len() > max {
        return Err(CallError::Invalid {
            code: Code::TooManyParticipants,
            field: (!knock.late).then(|| "participantIds".into()),
            detail: format!("a call has at most {max} participants"),
        });
    }
    let mut asking: Vec<&str> = vec![knock.by.as_str()];
    asking.extend(knock.newcomers.iter().map(UserId::as_str));
    let suspended = store::suspensions::in_force_among(&app.db, &asking, app.clock.now()).await?;
    if suspended.iter().any(|s| s == knock.by.as_str()) {
        // Nobody rings, and nobody's hook, cooldown or rate is asked.
        return Ok(Passed { free: Vec::new(), unavailable: knock.newcomers.to_vec() });
    }
    if knock.late {
        crate::calls::authz::may_call(app, knock.by, knock.inside, knock.conversation, knock.call_type)
            .await?;
    } else {
        crate::calls::limits::call_start(app, knock.by).await?;
        crate::calls::blocks::ring_cooldown(app, knock.by, knock.newcomers).await?;
        crate::calls::authz::may_call(app, knock.by, knock.newcomers, knock.conversation, knock.call_type)
            .await?;
    }
    let mut everyone: Vec<&str> = knock.inside.iter().map(UserId::as_str).collect();
    everyone.push(knock.by.as_str());
    everyone.extend(knock.newcomers.iter().map(UserId::as_str));
    let blocks = store::blocks::among(&app.db, &everyone).await?;
    let blocked = |a: &str, b: &str| blocks.iter().any(|(x, y)| (x == a && y == b) || (x == b && y == a));
    let mut passed = Passed::default();
    let mut inside: Vec<&str> = knock.inside.iter().map(UserId::as_str).collect();
    if !knock.late {
        inside.push(knock.by.as_str());
    }
    for newcomer in knock.newcomers {
        let unavailable = suspended.iter().any(|s| s == newcomer.as_str())
            || inside.iter().any(|other| blocked(newcomer.as_str(), other));
        if unavailable {
            passed.unavailable.push(newcomer.clone());
        } else {
            inside.push(newcomer.as_str());
            passed.free.push(newcomer.clone());
        }
    }
    Ok(passed)
}

/// Those of `newcomers` blocked (either way) with someone of `inside` or
/// with a newcomer before them, read in the caller's transaction. The gate
/// runs before the call is locked; under the lock the caller asks again,
/// so that two ways in at once (two invitations, an invitation and a late
/// join) cannot each pass against the call as it was before the other.
pub async fn blocked_now(
    tx: &mut sqlx::PgConnection,
    inside: &[UserId],
    newcomers: &[UserId],
) -> sqlx::Result<Vec<UserId>> {
    let everyone: Vec<&str> = inside.iter().chain(newcomers).map(UserId::as_str).collect();
    let blocks = store::blocks::among(&mut *tx, &everyone).await?;
    let blocked = |a: &str, b: &str| blocks.iter().any(|(x, y)| (x == a && y == b) || (x == b && y == a));
    let mut present: Vec<&str> = inside.iter().map(UserId::as_str).collect();
    let mut out = Vec::new();
    for newcomer in newcomers {
        if present.iter().any(|other| blocked(newcomer.as_str(), other)) {
            out.push(newcomer.clone());
        } else {
            present.push(newcomer.as_str());
        }
    }
    Ok(out)
}

/// Refuses `user` if they are suspended from calling and being called, as
/// one already in another call is refused (an answer, an appointment's
/// join: neither rings anybody).
pub async fn refuse_suspended(app: &Core, user: &UserId) -> Result<(), CallError> {
    let suspended = store::suspensions::in_force_among(&app.db, &[user.as_str()], app.clock.now()).await?;
    if suspended.is_empty() {
        Ok(())
    } else {
        Err(CallError::conflict(Code::CallerBusy, "you are already in a live call"))
    }
}
