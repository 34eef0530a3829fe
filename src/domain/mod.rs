//! The domain: pure types and rules, no I/O, no clock (times are passed in).
//! Ids and the words of the API here; the consent policy in `consent`, the
//! call state machine in `call`, the caller in `user`, refusal codes in `code`.

pub mod appointment;
pub mod call;
pub mod code;
pub mod consent;
pub mod membership;
pub mod user;

pub use code::Code;
pub use user::AuthUser;

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Declares a closed set of lowercase words, shared by the JSON API, the
/// database (text columns with CHECK constraints) and the logs.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        // By hand: utoipa's derive does not see a `serde(rename)` whose
        // value comes from a macro and would document the variant names.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownWord;

            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownWord(s.to_owned())),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownWord;

            fn try_from(s: String) -> Result<Self, UnknownWord> {
                s.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[derive(Debug, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownWord(pub String);

word_enum!(CallType { Audio = "audio", Video = "video" });

word_enum!(CallState {
    Ringing = "ringing",
    Connecting = "connecting",
    Active = "active",
    Ended = "ended",
});

impl CallState {
    pub fn is_live(self) -> bool {
        call::is_live(self)
    }
}

word_enum!(Outcome {
    Completed = "completed",
    Declined = "declined",
    Missed = "missed",
    Cancelled = "cancelled",
    Busy = "busy",
    Failed = "failed",
});

word_enum!(EndReason {
    Hangup = "hangup",
    Declined = "declined",
    Cancelled = "cancelled",
    Timeout = "timeout",
    MaxDuration = "max_duration",
    RoomClosed = "room_closed",
    Busy = "busy",
    Error = "error",
    Violation = "violation",
    Moderator = "moderator",
});

word_enum!(Role { Initiator = "initiator", Invitee = "invitee" });

word_enum!(ParticipantStatus {
    Invited = "invited",
    Accepted = "accepted",
    Joined = "joined",
    Reconnecting = "reconnecting",
    Left = "left",
    Declined = "declined",
    Missed = "missed",
    Busy = "busy",
    Removed = "removed",
});

word_enum!(
    /// Why a callee's ringing stopped, on every device (`call.ring_stopped`).
    RingStop {
        Answered = "answered",
        Declined = "declined",
        Cancelled = "cancelled",
        Missed = "missed",
    }
);

word_enum!(EventSource { Api = "api", LiveKit = "livekit", System = "system" });

word_enum!(AppointmentState { Scheduled = "scheduled", Open = "open", Active = "active", Ended = "ended" });

word_enum!(AppointmentOutcome {
    Completed = "completed",
    Cancelled = "cancelled",
    NoShow = "no_show",
    Failed = "failed",
});

word_enum!(AppointmentRole { Host = "host", Guest = "guest" });

word_enum!(
    /// Why a participant reports another (`POST /calls/{id}/reports`).
    ReportReason {
        Harassment = "harassment",
        NudityOrSexualContent = "nudity_or_sexual_content",
        Hate = "hate",
        ThreatsOrViolence = "threats_or_violence",
        SpamOrScam = "spam_or_scam",
        Underage = "underage",
        Impersonation = "impersonation",
        Other = "other",
    }
);

word_enum!(
    /// What a `consent.violation` app webhook tells the host of: a video
    /// track under another label or declared as audio (out at once), a
    /// camera or screen published while video is off (a stale token), the
    /// second such in the same call (out), someone removed from the call
    /// back in its room with an old token, or a removal by a moderator.
    Violation {
        VideoUnderAnotherLabel = "video_under_another_label",
        CameraWhileVideoOff = "camera_while_video_off",
        CameraWhileVideoOffAgain = "camera_while_video_off_again",
        BackAfterRemoval = "back_after_removal",
        RemovedByModerator = "removed_by_moderator",
    }
);

word_enum!(
    /// What a moderator did or read (the audit log's `action`): the reads
    /// are of a call's full ledger and of its reports.
    ModerationAction {
        EndCall = "end_call",
        RemoveParticipant = "remove_participant",
        Suspend = "suspend",
        LiftSuspension = "lift_suspension",
        ReadLedger = "read_ledger",
        ReadReports = "read_reports",
        ReadRecordings = "read_recordings",
    }
);

// After the words it uses: `word_enum!` is in scope only below its definition.
pub mod moderation;

word_enum!(
    /// What a user's devices are told on the event stream (`type` of each
    /// client event); a call's timeline has its own, wider set of kinds.
    ClientEvent {
        CallIncoming = "call.incoming",
        CallAccepted = "call.accepted",
        CallDeclined = "call.declined",
        CallCancelled = "call.cancelled",
        CallMissed = "call.missed",
        CallEnded = "call.ended",
        CallRingStopped = "call.ring_stopped",
        ParticipantJoined = "participant.joined",
        ParticipantReconnecting = "participant.reconnecting",
        ParticipantInvited = "participant.invited",
        ParticipantLeft = "participant.left",
        MediaUpdated = "media.updated",
        VideoRequested = "video.requested",
        VideoOn = "video.on",
        VideoOff = "video.off",
        VideoDeclined = "video.declined",
        VideoExpired = "video.expired",
        RecordingRequested = "recording.requested",
        RecordingOn = "recording.on",
        RecordingOff = "recording.off",
        RecordingDeclined = "recording.declined",
        RecordingExpired = "recording.expired",
        RecordingReady = "recording.ready",
        RecordingFailed = "recording.failed",
        AppointmentOpened = "appointment.opened",
        AppointmentWaiting = "appointment.waiting",
        AppointmentAdmitted = "appointment.admitted",
        AppointmentTurnedAway = "appointment.turned_away",
        AppointmentStarted = "appointment.started",
        AppointmentEnded = "appointment.ended",
        AppointmentCancelled = "appointment.cancelled",
        AppointmentNoShow = "appointment.no_show",
    }
);

/// A user of the host application, as named by the `sub` of its token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserIdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters", max = UserId::MAX_LEN)]
    TooLong,
    #[error("must not contain control characters or spaces")]
    BadCharacter,
}

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, UserIdError> {
        if raw.is_empty() {
            return Err(UserIdError::Empty);
        }
        if raw.chars().count() > Self::MAX_LEN {
            return Err(UserIdError::TooLong);
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(UserIdError::BadCharacter);
        }
        Ok(UserId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = UserIdError;

    fn try_from(raw: String) -> Result<Self, UserIdError> {
        UserId::parse(&raw)
    }
}

impl PartialEq<str> for UserId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for UserId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for UserId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl utoipa::PartialSchema for UserId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some("A user of the host application: the `sub` of its token."))
            .min_length(Some(1))
            .max_length(Some(UserId::MAX_LEN))
            .pattern(Some(r"^[^\s\x00-\x1f\x7f-\x9f]+$"))
            .into()
    }
}

impl utoipa::ToSchema for UserId {}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        UserId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The id of a call; its LiveKit room is named after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(pub Uuid);

impl CallId {
    pub fn new() -> Self {
        CallId(Uuid::new_v4())
    }
}

impl Default for CallId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Uuid> for CallId {
    fn from(id: Uuid) -> Self {
        CallId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_words_are_the_serialized_ones() {
        use utoipa::PartialSchema;
        let documented = serde_json::to_value(CallState::schema()).expect("schema");
        let serialized: Vec<_> =
            CallState::ALL.iter().map(|s| serde_json::to_value(s).expect("a word")).collect();
        assert_eq!(documented["enum"], serde_json::Value::Array(serialized));
    }

    #[test]
    fn words_round_trip_through_text() {
        for state in CallState::ALL {
            assert_eq!(state.as_str().parse::<CallState>().ok(), Some(*state));
        }
        assert!("Ringing".parse::<CallState>().is_err());
    }

    #[test]
    fn user_ids_refuse_empty_long_and_control_characters() {
        assert_eq!(UserId::parse(""), Err(UserIdError::Empty));
        assert_eq!(UserId::parse(&"x".repeat(129)), Err(UserIdError::TooLong));
        assert_eq!(UserId::parse("a\nb"), Err(UserIdError::BadCharacter));
        assert_eq!(UserId::parse("a b"), Err(UserIdError::BadCharacter));
        assert!(UserId::parse("user-42@example").is_ok());
    }
}
