//! Who is in a call: one state machine per participant, as pure functions.
//! Every trigger (the API, LiveKit's webhooks, the reconciler, a deadline)
//! becomes a [`Step`]; [`step`] says where it leads and what it means, or
//! refuses it. `crate::calls::participants` applies what it says in the
//! call's transaction; nothing else writes a participant's status.
//!
//! ```text
//!            invite                answer           join             drop
//!   (none) ─────────> invited ───────────> accepted ─────> joined ─────────> reconnecting
//!     │                │  │                  │  ▲            │ ▲  join           │
//!     │ busy/blocked   │  └ decline/timeout  │  │ late join  │ └───────────────┘
//!     ▼                ▼        ▼            │  │            │   leave, grace over
//!   busy         declined / missed ──────────┼──┘            ▼
//!  (never took part)                          └──leave────> left ──invite──> invited
//!                            any present ──remove──> removed (for good)
//! ```
//!
//! `live` (the user is busy because of this call: ringing or in it) and
//! `admitted` (past an appointment's waiting room) go with the status; a
//! participant is *present* (counts for consent, hears the call, gets
//! rights and a token) when answered, not gone, and admitted.

#[cfg(test)]
mod tests;

use super::{ParticipantStatus as Status, Role};

/// One participant of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    pub status: Status,
    pub role: Role,
    /// Keeps the user busy (one live call at a time): ringing or in it.
    pub live: bool,
    /// Past an appointment's waiting room (always, outside appointments).
    pub admitted: bool,
}

impl Member {
    /// Answered and not gone (in the call or on the way in).
    pub fn in_call(&self) -> bool {
        self.live && matches!(self.status, Status::Accepted | Status::Joined | Status::Reconnecting)
    }

    /// In the call and past its waiting room: counts for consent, is told
    /// what happens in it, may answer and revoke, gets rights and tokens.
    pub fn is_present(&self) -> bool {
        self.in_call() && self.admitted
    }

    /// In an appointment's waiting room: arrived, not admitted.
    pub fn is_waiting(&self) -> bool {
        self.in_call() && !self.admitted
    }

    /// Being rung now.
    pub fn is_ringing(&self) -> bool {
        self.live && self.status == Status::Invited
    }

    /// Took part in the call at some point (was rung or was in it): may read
    /// it and hears of it. Someone written busy or blocked never did.
    pub fn took_part(&self) -> bool {
        self.status != Status::Busy
    }
}

/// What moves a participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Rung into the call: at its start or by an invitation; the gate found
    /// them free (not busy, not blocked).
    Invite { role: Role, admitted: bool },
    /// The gate found them busy or blocked (answered alike): a newcomer is
    /// written down as never having taken part; anyone else is left as is.
    Unavailable,
    /// They answer a ringing call.
    Answer,
    /// They decline it (or hang up while it rings them).
    Decline,
    /// Nobody answered in time, or the call was cancelled while ringing.
    RingTimeout,
    /// A group invitee who declined or missed the ring joins the call.
    LateJoin,
    /// An appointment's host or guest arrives (the appointment was booked
    /// with them; no ring). A guest waits unless `admitted`.
    Arrive { admitted: bool },
    /// LiveKit reports them in the room (a new session).
    Join,
    /// Their connection dropped; they may come back within the grace.
    Drop,
    /// The grace to come back is over.
    GraceOver,
    /// They leave (the API, their client's leave, or missing from the room).
    Leave,
    /// Put out for breaking the video rule or by a moderator, or turned
    /// away from a waiting room by a host: out for good.
    Remove,
    /// A host admits them from the waiting room.
    Admit,
    /// The call ended.
    CallEnded,
}

/// A step the machine refuses: nothing is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a participant of this call")]
    NotInCall,
    #[error("already in the call or being rung")]
    AlreadyIn,
    #[error("put out of this call for good")]
    Removed,
    #[error("not ringing")]
    NotRinging,
    #[error("only a group invitee who declined or missed the ring joins late")]
    CannotJoinLate,
    #[error("not in the call")]
    NotPresent,
    #[error("not in the waiting room")]
    NotWaiting,
}

/// What a step changes, for the caller to carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    /// The participant after the step; `None` when there was none and the
    /// step writes nobody.
    pub to: Option<Member>,
    /// Whether the step changed anything (a repeated report does not).
    pub changed: bool,
    /// They became present: the consent policy hears a join, the others
    /// hear they are in.
    pub arrived: bool,
    /// They stopped being present: the consent policy hears a leave, the
    /// others hear they left.
    pub departed: bool,
    /// Whoever is in the room under their identity is put out of it.
    pub out_of_room: bool,
}

impl Moved {
    fn stay(at: Option<Member>) -> Moved {
        Moved { to: at, changed: false, arrived: false, departed: false, out_of_room: false }
    }
}

/// Where `step` takes `at` (`None`: not a participant of the call yet).
pub fn step(at: Option<Member>, step: Step) -> Result<Moved, Refusal> {
    let Some(me) = at else { return first(step) };
    let to = |status: Status, live: bool| Member { status, live, ..me };
    let moved = |next: Member| {
        let (was, is) = (me.is_present(), next.is_present());
        Moved {
            to: Some(next),
            changed: next != me,
            arrived: !was && is,
            departed: was && !is,
            out_of_room: false,
        }
    };
    use Status as S;
    match (me.status, step) {
        // Out for good: whoever is in the room as them is put out again,
        // and nothing brings them back.
        (S::Removed, Step::Join) => Ok(Moved { out_of_room: true, ..Moved::stay(at) }),
        (S::Removed, Step::CallEnded) => Ok(moved(Member { live: false, ..me })),
        (S::Removed, Step::Drop | Step::GraceOver | Step::Leave | Step::Remove | Step::Unavailable) => {
            Ok(Moved::stay(at))
        }
        (S::Removed, _) => Err(Refusal::Removed),

        // Rung again: anyone who is not in the call, the initiator who left
        // included (they may always decline again).
        (S::Left | S::Declined | S::Missed | S::Busy, Step::Invite { admitted, .. }) => {
            Ok(moved(Member { status: S::Invited, live: true, admitted, ..me }))
        }
        (S::Invited | S::Accepted | S::Joined | S::Reconnecting, Step::Invite { .. }) => {
            Err(Refusal::AlreadyIn)
        }
        // Busy or blocked: nobody's status is rewritten, so that a block
        // reads exactly as a busy callee.
        (_, Step::Unavailable) => Ok(Moved::stay(at)),

        (S::Invited, Step::Answer) if me.live => Ok(moved(to(S::Accepted, true))),
        (S::Accepted | S::Joined | S::Reconnecting, Step::Answer) => Ok(Moved::stay(at)),
        (_, Step::Answer) => Err(Refusal::NotRinging),
        (S::Invited, Step::Decline) if me.live => Ok(moved(to(S::Declined, false))),
        (_, Step::Decline) => Err(Refusal::NotRinging),
        (S::Invited, Step::RingTimeout) if me.live => Ok(moved(to(S::Missed, false))),
        (_, Step::RingTimeout) => Ok(Moved::stay(at)),

        (S::Declined | S::Missed, Step::LateJoin) if me.role == Role::Invitee => {
            Ok(moved(to(S::Accepted, true)))
        }
        (S::Accepted | S::Joined | S::Reconnecting | S::Invited, Step::LateJoin) => Err(Refusal::AlreadyIn),
        (_, Step::LateJoin) => Err(Refusal::CannotJoinLate),

        (S::Accepted | S::Joined | S::Reconnecting, Step::Arrive { .. }) => Ok(Moved::stay(at)),
        (_, Step::Arrive { admitted }) => {
            Ok(moved(Member { status: S::Accepted, live: true, admitted: admitted || me.admitted, ..me }))
        }

        // In the room: only those in the call (and past the waiting room:
        // a waiting guest has no token). Anyone else is put out of it.
        (S::Accepted | S::Reconnecting, Step::Join) if me.is_present() => Ok(moved(to(S::Joined, true))),
        (S::Joined, Step::Join) if me.is_present() => Ok(Moved::stay(at)),
        (_, Step::Join) => Ok(Moved { out_of_room: true, ..Moved::stay(at) }),
        (S::Joined, Step::Drop) if me.live => Ok(moved(to(S::Reconnecting, true))),
        (_, Step::Drop) => Ok(Moved::stay(at)),
        (S::Reconnecting, Step::GraceOver) if me.live => Ok(moved(to(S::Left, false))),
        (_, Step::GraceOver) => Ok(Moved::stay(at)),
        (S::Accepted | S::Joined | S::Reconnecting, Step::Leave) if me.live => {
            Ok(Moved { out_of_room: true, ..moved(to(S::Left, false)) })
        }
        (_, Step::Leave) => Ok(Moved::stay(at)),
        (S::Accepted | S::Joined | S::Reconnecting, Step::Remove) if me.live => {
            Ok(Moved { out_of_room: true, ..moved(to(S::Removed, false)) })
        }
        (_, Step::Remove) => Err(Refusal::NotPresent),
        (S::Accepted | S::Joined | S::Reconnecting, Step::Admit) if me.live && !me.admitted => {
            Ok(moved(Member { admitted: true, ..me }))
        }
        (_, Step::Admit) if me.admitted => Ok(Moved::stay(at)),
        // Admitted before they arrive: let straight in when they come.
        (S::Left | S::Declined | S::Missed | S::Busy | S::Invited, Step::Admit) => {
            Ok(moved(Member { admitted: true, ..me }))
        }
        (_, Step::Admit) => Err(Refusal::NotWaiting),

        (S::Invited, Step::CallEnded) => Ok(moved(to(S::Missed, false))),
        (S::Accepted | S::Joined | S::Reconnecting, Step::CallEnded) => Ok(moved(to(S::Left, false))),
        (_, Step::CallEnded) => Ok(moved(Member { live: false, ..me })),
    }
}

/// The first step of someone not in the call yet.
fn first(step: Step) -> Result<Moved, Refusal> {
    let new = |status, role, live, admitted| Member { status, role, live, admitted };
    let arrived = |m: Member| Moved {
        to: Some(m),
        changed: true,
        arrived: m.is_present(),
        departed: false,
        out_of_room: false,
    };
    match step {
        Step::Invite { role, admitted } => {
            // The initiator is in the call from the start.
            let status = if role == Role::Initiator { Status::Accepted } else { Status::Invited };
            Ok(arrived(new(status, role, true, admitted)))
        }
        Step::Unavailable => Ok(arrived(new(Status::Busy, Role::Invitee, false, true))),
        // Someone not in the call in its room: out of it.
        Step::Join => Ok(Moved { out_of_room: true, ..Moved::stay(None) }),
        Step::Drop | Step::GraceOver | Step::Leave | Step::CallEnded | Step::RingTimeout => {
            Ok(Moved::stay(None))
        }
        _ => Err(Refusal::NotInCall),
    }
}
