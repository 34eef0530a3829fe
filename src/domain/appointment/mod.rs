//! Appointments, as pure functions: a call booked ahead, with hosts and
//! guests, a window in which it may be joined, a waiting room, and an end
//! that says whether people came.
//!
//! `scheduled → open` (at `starts_at - early_join`) `→ active` (a host and an
//! admitted guest present) `→ ended` with `completed`, `cancelled`,
//! `no_show` or `failed`. Times are arguments; nothing here reads a clock.

use chrono::{DateTime, Duration, Utc};

#[cfg(test)]
mod tests;

pub use super::{AppointmentOutcome, AppointmentRole, AppointmentState};

/// The times of a booking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// The deployment's rules for booking and joining.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// How long before `starts_at` it opens (`APPOINTMENT_EARLY_JOIN`).
    pub early_join: Duration,
    /// How long after `ends_at` people may still come (`APPOINTMENT_GRACE`).
    pub grace: Duration,
    /// The longest an appointment may be (`MAX_CALL_DURATION`).
    pub max_duration: Duration,
    /// The most people in it (`MAX_CALL_PARTICIPANTS`).
    pub max_participants: usize,
}

/// Why a booking is refused: the field it names and what it breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct BookingError {
    pub field: &'static str,
    pub rule: String,
}

fn refused(field: &'static str, rule: impl Into<String>) -> BookingError {
    BookingError { field, rule: rule.into() }
}

/// Checks a booking (or a reschedule) made at `now`.
pub fn check_window(window: Window, now: DateTime<Utc>, rules: &Rules) -> Result<(), BookingError> {
    if window.starts_at <= now {
        return Err(refused("startsAt", "must be in the future"));
    }
    if window.ends_at <= window.starts_at {
        return Err(refused("endsAt", "must be after startsAt"));
    }
    if window.ends_at - window.starts_at > rules.max_duration {
        let hours = rules.max_duration.num_minutes() as f64 / 60.0;
        return Err(refused("endsAt", format!("must be at most {hours} h after startsAt")));
    }
    Ok(())
}

/// Checks who is booked: at least one host and one guest, nobody twice,
/// nobody both, within the participant limit.
pub fn check_people<T: PartialEq>(hosts: &[T], guests: &[T], rules: &Rules) -> Result<(), BookingError> {
    if hosts.is_empty() {
        return Err(refused("hosts", "must name at least one host"));
    }
    if guests.is_empty() {
        return Err(refused("guests", "must name at least one guest"));
    }
    let repeated = |list: &[T]| list.iter().enumerate().any(|(i, a)| list[..i].contains(a));
    if repeated(hosts) {
        return Err(refused("hosts", "names someone twice"));
    }
    if repeated(guests) || guests.iter().any(|g| hosts.contains(g)) {
        return Err(refused("guests", "names someone twice, or a host"));
    }
    if hosts.len() + guests.len() > rules.max_participants {
        return Err(refused("guests", format!("at most {} people in all", rules.max_participants)));
    }
    Ok(())
}

/// When an appointment opens (its room is created then, or at the first join).
pub fn opens_at(window: Window, rules: &Rules) -> DateTime<Utc> {
    window.starts_at - rules.early_join
}

/// When an appointment nobody (or only one side) came to ends as a no-show.
pub fn no_show_at(window: Window, rules: &Rules) -> DateTime<Utc> {
    window.ends_at + rules.grace
}

/// Whether someone may join at `now`: inside `[opens_at, no_show_at)` of a
/// live appointment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joinable {
    Yes,
    /// Not yet: it opens then.
    NotYet {
        opens_at: DateTime<Utc>,
    },
    /// Its window has passed, or it ended.
    Over,
}

pub fn joinable(state: AppointmentState, window: Window, now: DateTime<Utc>, rules: &Rules) -> Joinable {
    if state == AppointmentState::Ended || now >= no_show_at(window, rules) {
        return Joinable::Over;
    }
    let opens = opens_at(window, rules);
    if now < opens { Joinable::NotYet { opens_at: opens } } else { Joinable::Yes }
}

/// What can happen to an appointment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Happening {
    /// Its opening time came (a deadline), or someone joined in the window.
    Opened,
    /// Who is present in the room now: hosts, and guests a host admitted.
    Present { hosts: usize, admitted_guests: usize },
    /// Cancelled by whoever booked it (or a host).
    Cancelled,
    /// A host ended it for everyone.
    EndedByHost,
    /// The no-show deadline passed.
    NoShowDeadline,
    /// Its LiveKit room was lost.
    RoomLost,
}

/// What a happening changes: the new state, and the outcome if it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub state: AppointmentState,
    pub outcome: Option<AppointmentOutcome>,
}

/// The appointment after `what`, given whether a host and a guest have
/// ever been in it together (`met`). An ended appointment stays ended.
pub fn step(state: AppointmentState, met: bool, what: Happening) -> Step {
    use AppointmentOutcome as O;
    use AppointmentState as S;
    let stay = Step { state, outcome: None };
    let end = |outcome| Step { state: S::Ended, outcome: Some(outcome) };
    match (state, what) {
        (S::Ended, _) => stay,
        (S::Scheduled, Happening::Opened) => Step { state: S::Open, outcome: None },
        (_, Happening::Opened) => stay,
        (S::Open, Happening::Present { hosts, admitted_guests }) if hosts > 0 && admitted_guests > 0 => {
            Step { state: S::Active, outcome: None }
        }
        (_, Happening::Present { .. }) => stay,
        (_, Happening::Cancelled) if met => end(O::Completed),
        (_, Happening::Cancelled) => end(O::Cancelled),
        (_, Happening::EndedByHost) if met => end(O::Completed),
        (_, Happening::EndedByHost) => end(O::Cancelled),
        (_, Happening::NoShowDeadline) if met || state == S::Active => stay,
        (_, Happening::NoShowDeadline) => end(O::NoShow),
        (_, Happening::RoomLost) if met => end(O::Completed),
        (S::Scheduled, Happening::RoomLost) => stay,
        (_, Happening::RoomLost) => end(O::Failed),
    }
}
