//! One unit of work on one call: the shape of every use case that changes
//! a call.
//!
//! ```text
//! let mut unit = Unit::open(app, id).await?;   // begin, the call's row locked first
//! /* check: unit.call(), store::participants(unit.conn(), id) ... */
//! /* write: steps of calls::participants, consent, finish ... on unit.conn() */
//! unit.out().notify(...);                       // client events, app webhooks
//! unit.settle(effects);                         // what LiveKit must hear
//! unit.ended(ended);                            // or: the call ended in it
//! unit.commit().await?;                         // written, committed, then settled
//! ```
//!
//! [`Unit::commit`] writes what was gathered in [`Unit::out`] (one statement,
//! `store::Outgoing`), commits, and only then puts LiveKit in line: a call
//! that ended is counted, its recording stopped and its room deleted
//! (`ending::after_end`); otherwise the effects are settled right after, in
//! a task shutdown waits for (`enforce::settle_later`, `Core::after_commit`;
//! what LiveKit does not take is retried by the job runner). An API answer that says whether
//! LiveKit applied a change commits with [`Unit::commit_settling_soon`]
//! (`enforce::settle_soon`); the reconciler, which counts what it asked of
//! LiveKit, with [`Unit::commit_settling_now`]. A step that was handed the
//! connection of a unit reads the call again with `store::calls::reread`.
//!
//! The call's row is locked first, before any other row of the call: that
//! is the lock order every transaction keeps. Outside this file (and
//! `store/`, and `enforce`) no code locks a call or settles LiveKit after
//! its own commit; `.ci/layers.py` checks it. The sites that still do, each
//! for a reason (its `UNIT_EXCEPTIONS`):
//!
//! - `ingest::inbox` (`drain_batch`, `drain_one_by_one`): one transaction
//!   owns a batch of the call's LiveKit events, marks them processed even
//!   when the call does not exist (yet), and after the commit spawns both
//!   the settlement and the end of the call (a slow LiveKit holds up no
//!   other event).
//! - `calls::appointments`: keyed by the appointment, whose call may not
//!   exist yet (`lock_call_of_appointment`, then the appointment's row);
//!   `open` locks the call it has just inserted in the same transaction; the
//!   no-show job locks the call `nowait` inside the job runner's
//!   transaction; `join` deletes the room it created if its commit fails,
//!   and `admit` answers `sfuConfirmed` true when nothing changed.
//! - The jobs: `workers::deadlines` (`nowait`) and the recording jobs of
//!   `calls::recording` (`sync` and `consent_lapses`, the kept file) lock
//!   the call in the transaction of the job runner (`workers::jobs`), which
//!   commits it and settles after.
//! - `calls::lifecycle::start` inserts the call it creates (nothing to
//!   lock) and creates its room before the commit.
//! - Steps that take a `&mut PgConnection` (`calls::participants`,
//!   `calls::consent::apply`, `finish`, ...) are handed the unit's (or a
//!   job's) connection: they never begin or commit.

use sqlx::{PgConnection, Postgres, Transaction};

use crate::calls::CallError;
use crate::calls::Core;
use crate::calls::ending::{Ended, after_end};
use crate::calls::enforce::{self, Effects};
use crate::domain::CallId;
use crate::store::{self, CallRow, Outgoing};

/// A transaction holding one call's row, what it tells (client events, app
/// webhooks) and what LiveKit must hear once it has committed.
#[must_use = "commit it (dropping it rolls back)"]
pub struct Unit<'a> {
    app: &'a Core,
    tx: Transaction<'static, Postgres>,
    call: CallRow,
    out: Outgoing,
    effects: Option<Effects>,
    ended: Option<Ended>,
}

/// What the commit did after it.
pub struct Committed {
    /// The call, if it ended in the unit (`after_end` has run).
    pub ended: Option<Ended>,
    /// Whether LiveKit confirmed the rights in time
    /// ([`Unit::commit_settling_soon`]; `false` when nothing was to settle).
    pub applied: bool,
}

impl<'a> Unit<'a> {
    /// Begins and locks the call; `NotFound` if there is none.
    pub async fn open(app: &'a Core, id: CallId) -> Result<Unit<'a>, CallError> {
        Self::open_if_any(app, id).await?.ok_or(CallError::NotFound)
    }

    /// Begins and locks the call, if there is one.
    pub async fn open_if_any(app: &'a Core, id: CallId) -> sqlx::Result<Option<Unit<'a>>> {
        let mut tx = app.db.begin().await?;
        let Some(call) = store::lock_call(&mut tx, id).await? else { return Ok(None) };
        let unit = Unit { app, tx, call, out: Outgoing::default(), effects: None, ended: None };
        Ok(Some(unit))
    }

    /// The call as it was locked (or last [`refreshed`](Unit::refresh)).
    pub fn call(&self) -> &CallRow {
        &self.call
    }

    /// The transaction, for the steps and the store.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Reads the call again, as the unit's steps have left it.
    pub async fn refresh(&mut self) -> sqlx::Result<&CallRow> {
        self.call = store::calls::reread(&mut self.tx, &self.call).await?;
        Ok(&self.call)
    }

    /// The transaction and what the unit tells, for a step that takes both.
    pub fn parts(&mut self) -> (&mut PgConnection, &mut Outgoing) {
        (&mut self.tx, &mut self.out)
    }

    /// What the unit tells, written when it commits.
    pub fn out(&mut self) -> &mut Outgoing {
        &mut self.out
    }

    /// Writes what was gathered so far now: before what a later step writes
    /// itself (their rows keep that order).
    pub async fn flush(&mut self) -> sqlx::Result<()> {
        std::mem::take(&mut self.out).write(&mut self.tx).await
    }

    /// LiveKit is to be put in line after the commit (with `effects`, added
    /// to any given before).
    pub fn settle(&mut self, effects: Effects) {
        match &mut self.effects {
            Some(before) => before.merge(effects),
            None => self.effects = Some(effects),
        }
    }

    /// The call ended in this unit: after the commit it is counted, its
    /// recording stopped and its room deleted, instead of settled.
    pub fn ended(&mut self, ended: Ended) {
        self.ended = Some(ended);
    }

    /// Writes, commits, and then settles in the background.
    pub async fn commit(self) -> sqlx::Result<Committed> {
        let (app, effects, ended) = self.write_and_commit().await?;
        if let Some(ended) = &ended {
            after_end(app, ended).await;
        } else if let Some(effects) = effects {
            enforce::settle_later(app, effects);
        }
        Ok(Committed { ended, applied: false })
    }

    /// Writes, commits, and waits (at most `enforce::CONFIRM_WITHIN`) for
    /// LiveKit to apply the rights: `applied` says whether it did.
    pub async fn commit_settling_soon(self) -> sqlx::Result<Committed> {
        let (app, effects, ended) = self.write_and_commit().await?;
        let mut applied = false;
        if let Some(ended) = &ended {
            after_end(app, ended).await;
        } else if let Some(effects) = effects {
            applied = enforce::settle_soon(app, effects).await;
        }
        Ok(Committed { ended, applied })
    }

    /// Writes, commits, ends the call if it ended, and then settles (also
    /// after an end: its removals), waiting for LiveKit however long it takes.
    pub async fn commit_settling_now(self) -> sqlx::Result<Committed> {
        let (app, effects, ended) = self.write_and_commit().await?;
        if let Some(ended) = &ended {
            after_end(app, ended).await;
        }
        let applied = match effects {
            Some(effects) => enforce::settle(app, effects).await,
            None => false,
        };
        Ok(Committed { ended, applied })
    }

    async fn write_and_commit(self) -> sqlx::Result<(&'a Core, Option<Effects>, Option<Ended>)> {
        let Unit { app, mut tx, call: _, out, effects, ended } = self;
        out.write(&mut tx).await?;
        tx.commit().await?;
        Ok((app, effects, ended))
    }
}
