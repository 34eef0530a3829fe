//! The call state machine, as pure functions: `ringing → connecting →
//! active → ended`, and from any live state to `ended` with the outcome and
//! reason of how it ended. The store applies what these decide, in the
//! transaction that locked the call's row.

use super::{CallState, EndReason, Outcome};

#[cfg(test)]
mod tests;

/// Whether the call can still change (is not ended).
pub fn is_live(state: CallState) -> bool {
    state != CallState::Ended
}

/// The state after a first answer: a ringing call starts connecting;
/// `None` if answering does not change the state.
pub fn answered(state: CallState) -> Option<CallState> {
    (state == CallState::Ringing).then_some(CallState::Connecting)
}

/// The state once `present` people are in the room: a connecting call with
/// two or more is active; `None` if nothing changes.
pub fn connected(state: CallState, present: usize) -> Option<CallState> {
    (state == CallState::Connecting && present >= 2).then_some(CallState::Active)
}

/// What ends a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A participant ends it (`POST …/end`): a ringing call is cancelled,
    /// a connecting one cancelled by hangup, an active one completed.
    Hangup,
    /// Fewer than two people are left in it.
    LastLeft,
    /// Fewer than two are left because one was put out for a violation.
    Removed,
    /// Its LiveKit room is gone.
    RoomClosed,
    /// It lasted as long as a call may.
    MaxDuration,
    /// Nobody answered in time.
    RingTimeout,
    /// Those who answered did not reach the room in time.
    ConnectTimeout,
    /// The one invitee declined.
    Declined,
    /// The invitees were busy in other calls.
    Busy,
    /// A moderator ended it, or removed one of the last two in it.
    Moderator,
}

/// The outcome and reason of ending a call in `state`: completed if it was
/// active, else what the ending says (cancelled or failed). An ended call is
/// not ended again (`is_live`); asked anyway, the answer is that of an
/// active call for a hangup and of a call that never became active
/// otherwise, as the callers have always written it.
pub fn end(state: CallState, ending: Ending) -> (Outcome, EndReason) {
    let active = state == CallState::Active;
    let completed_or = |otherwise| if active { Outcome::Completed } else { otherwise };
    match ending {
        Ending::Hangup => match state {
            CallState::Ringing => (Outcome::Cancelled, EndReason::Cancelled),
            CallState::Connecting => (Outcome::Cancelled, EndReason::Hangup),
            CallState::Active | CallState::Ended => (Outcome::Completed, EndReason::Hangup),
        },
        Ending::LastLeft => (completed_or(Outcome::Cancelled), EndReason::Hangup),
        Ending::Removed => (completed_or(Outcome::Cancelled), EndReason::Violation),
        Ending::RoomClosed => (completed_or(Outcome::Failed), EndReason::RoomClosed),
        Ending::MaxDuration => (completed_or(Outcome::Failed), EndReason::MaxDuration),
        Ending::RingTimeout => (Outcome::Missed, EndReason::Timeout),
        Ending::ConnectTimeout => (Outcome::Failed, EndReason::Timeout),
        Ending::Declined => (Outcome::Declined, EndReason::Declined),
        Ending::Busy => (Outcome::Busy, EndReason::Busy),
        Ending::Moderator => (completed_or(Outcome::Cancelled), EndReason::Moderator),
    }
}

/// The state after ending: always `ended`.
pub fn after_end(_state: CallState) -> CallState {
    CallState::Ended
}
