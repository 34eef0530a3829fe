//! Trust and safety, as pure rules: who may report whom in a call and until
//! when, what a report's text and a moderator's reason may be, and whether
//! a suspension is in force. Times are arguments.

use chrono::{DateTime, Duration, Utc};

use super::membership::Member;

/// The longest text a report may carry, in characters.
pub const MAX_REPORT_TEXT: usize = 1000;
/// The longest reason a moderator may give, in characters.
pub const MAX_MODERATION_REASON: usize = 1000;

/// Why a report is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportRefusal {
    /// The reporter never took part in the call: it is not theirs to see.
    #[error("no such call")]
    NotTheirs,
    #[error("you cannot report yourself")]
    Yourself,
    /// The reported user never took part in the call (or is not in it at all).
    #[error("that user did not take part in this call")]
    NotInCall,
}

/// Whether `reporter` may report `reported` in a call: both took part in it
/// (were rung or were in it; someone answered busy or blocked never did)
/// and they are two people.
pub fn may_report(
    reporter: Option<Member>,
    reported: Option<Member>,
    same_person: bool,
) -> Result<(), ReportRefusal> {
    if !reporter.is_some_and(|m| m.took_part()) {
        return Err(ReportRefusal::NotTheirs);
    }
    if same_person {
        return Err(ReportRefusal::Yourself);
    }
    if !reported.is_some_and(|m| m.took_part()) {
        return Err(ReportRefusal::NotInCall);
    }
    Ok(())
}

/// Whether a call that ended at `ended_at` (`None`: still live) may still
/// be reported at `now`: while it lasts and for `window` after.
pub fn report_window_open(ended_at: Option<DateTime<Utc>>, now: DateTime<Utc>, window: Duration) -> bool {
    match ended_at {
        None => true,
        Some(ended) => ended.checked_add_signed(window).is_none_or(|closes| now < closes),
    }
}

/// What is wrong with a free text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters other than line breaks and tabs")]
    ControlCharacter,
}

/// A free text as stored: at most `max` characters as sent (the limit the
/// API document states, whitespace included), trimmed, no control
/// characters but line breaks and tabs. Empty is an error; the caller
/// decides whether an empty text is no text.
pub fn text(raw: &str, max: usize) -> Result<String, TextError> {
    if raw.chars().count() > max {
        return Err(TextError::TooLong(max));
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(TextError::Empty);
    }
    if trimmed.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(TextError::ControlCharacter);
    }
    Ok(trimmed.to_owned())
}

/// A suspension from calling and being called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suspension {
    /// `None`: until lifted.
    pub ends_at: Option<DateTime<Utc>>,
}

impl Suspension {
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.ends_at.is_none_or(|ends| now < ends)
    }
}

/// The longest suspension for a time: ten years (longer is "until lifted").
pub const MAX_SUSPENSION: Duration = Duration::days(3650);
/// The shortest: a minute.
pub const MIN_SUSPENSION: Duration = Duration::minutes(1);

/// When a suspension made at `now` for `duration` (`None`: until lifted)
/// ends, or why it cannot be made.
pub fn suspension_ends(
    now: DateTime<Utc>,
    duration: Option<Duration>,
) -> Result<Option<DateTime<Utc>>, String> {
    let Some(duration) = duration else { return Ok(None) };
    if duration < MIN_SUSPENSION || duration > MAX_SUSPENSION {
        return Err(format!(
            "must be {} to {} seconds (leave it out to suspend until lifted)",
            MIN_SUSPENSION.num_seconds(),
            MAX_SUSPENSION.num_seconds()
        ));
    }
    // Past the last time there is, it could only end "never": refused.
    now.checked_add_signed(duration).map(Some).ok_or_else(|| "must end before the year 262143".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ParticipantStatus as S, Role};

    #[test]
    fn a_text_over_its_limit_as_sent_is_refused_even_when_trimming_would_bring_it_under() {
        let padded = format!("\u{85}{}", "*".repeat(10));
        assert_eq!(text(&padded, 10), Err(TextError::TooLong(10)));
        assert_eq!(text(&"*".repeat(10), 10), Ok("*".repeat(10)));
        assert_eq!(text(&format!(" {} ", "*".repeat(8)), 10), Ok("*".repeat(8)));
    }

    fn member(status: S) -> Option<Member> {
        let live = matches!(status, S::Invited | S::Accepted | S::Joined | S::Reconnecting);
        Some(Member { status, role: Role::Invitee, live, admitted: true })
    }

    #[test]
    fn anyone_who_took_part_may_report_anyone_else_who_did() {
        for reporter in [S::Invited, S::Accepted, S::Joined, S::Left, S::Declined, S::Missed, S::Removed] {
            for reported in [S::Joined, S::Left, S::Removed, S::Declined, S::Missed] {
                assert_eq!(
                    may_report(member(reporter), member(reported), false),
                    Ok(()),
                    "{reporter:?} {reported:?}"
                );
            }
        }
    }

    #[test]
    fn one_answered_busy_or_blocked_neither_reports_nor_is_reported() {
        assert_eq!(may_report(member(S::Busy), member(S::Joined), false), Err(ReportRefusal::NotTheirs));
        assert_eq!(may_report(None, member(S::Joined), false), Err(ReportRefusal::NotTheirs));
        assert_eq!(may_report(member(S::Joined), member(S::Busy), false), Err(ReportRefusal::NotInCall));
        assert_eq!(may_report(member(S::Joined), None, false), Err(ReportRefusal::NotInCall));
    }

    #[test]
    fn nobody_reports_themself() {
        assert_eq!(may_report(member(S::Joined), member(S::Joined), true), Err(ReportRefusal::Yourself));
    }

    #[test]
    fn a_call_may_be_reported_while_it_lasts_and_for_the_window_after() {
        let ended = DateTime::from_timestamp(1_700_000_000, 0).expect("a time");
        let week = Duration::days(7);
        assert!(report_window_open(None, ended, week));
        assert!(report_window_open(Some(ended), ended + Duration::days(7) - Duration::seconds(1), week));
        assert!(!report_window_open(Some(ended), ended + Duration::days(7), week));
    }

    #[test]
    fn a_text_is_trimmed_bounded_and_printable() {
        assert_eq!(text("  he shouted\nat me \t", 1000), Ok("he shouted\nat me".to_owned()));
        assert_eq!(text(" \n ", 1000), Err(TextError::Empty));
        assert_eq!(text(&"é".repeat(1001), 1000), Err(TextError::TooLong(1000)));
        assert!(text(&"é".repeat(1000), 1000).is_ok(), "characters, not bytes");
        assert_eq!(text("a\u{0}b", 1000), Err(TextError::ControlCharacter));
    }

    #[test]
    fn a_suspension_is_in_force_until_it_ends_or_for_good() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("a time");
        assert!(Suspension { ends_at: None }.in_force(now + Duration::days(10_000)));
        let ends = suspension_ends(now, Some(Duration::hours(1))).expect("valid").expect("a time");
        assert!(Suspension { ends_at: Some(ends) }.in_force(ends - Duration::seconds(1)));
        assert!(!Suspension { ends_at: Some(ends) }.in_force(ends));
    }

    #[test]
    fn a_suspension_lasts_a_minute_to_ten_years_or_until_lifted() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("a time");
        assert_eq!(suspension_ends(now, None), Ok(None));
        assert!(suspension_ends(now, Some(Duration::seconds(59))).is_err());
        assert!(suspension_ends(now, Some(MAX_SUSPENSION + Duration::seconds(1))).is_err());
        assert!(suspension_ends(now, Some(MIN_SUSPENSION)).is_ok());
        let last = DateTime::<Utc>::MAX_UTC - Duration::days(1);
        assert!(suspension_ends(last, Some(MAX_SUSPENSION)).is_err(), "never \"until lifted\" by overflow");
    }
}
