//! The stable, machine-readable code of every refusal the API answers with.

/// Every `code` a problem can carry, one enum: an error is built with a
/// variant, so a code that is not listed here (and so in the OpenAPI
/// document, which publishes the list) does not compile.
macro_rules! codes {
    ($($variant:ident = $text:literal,)+) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant),+
        }

        impl Code {
            pub const ALL: &[Code] = &[$(Code::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text),+
                }
            }
        }
    };
}

codes! {
    // 400
    BodyUnreadable = "body_unreadable",
    BodyTooLarge = "body_too_large",
    MalformedJson = "malformed_json",
    MalformedBody = "malformed_body",
    UnsupportedMediaType = "unsupported_media_type",
    InvalidCursor = "invalid_cursor",
    InvalidQuery = "invalid_query",
    WebsocketRequired = "websocket_required",
    // 401
    Unauthorized = "unauthorized",
    // 403
    AdminOnly = "admin_only",
    DidNotTakePart = "did_not_take_part",
    NotAConsenter = "not_a_consenter",
    OwnRequest = "own_request",
    NotInitiator = "not_initiator",
    ScreenShareNotAllowed = "screen_share_not_allowed",
    SchedulingNotAllowed = "scheduling_not_allowed",
    CallNotAllowed = "call_not_allowed",
    NotAHost = "not_a_host",
    RecordingDisabled = "recording_disabled",
    // 404
    NotFound = "not_found",
    // 409
    AlreadyAnswered = "already_answered",
    CallNotConnected = "call_not_connected",
    NotAnswered = "not_answered",
    CallEnded = "call_ended",
    CallNotEnded = "call_not_ended",
    AppointmentDiffers = "appointment_differs",
    AppointmentEnded = "appointment_ended",
    AppointmentNotOpen = "appointment_not_open",
    AppointmentOpened = "appointment_opened",
    JoinThroughAppointment = "join_through_appointment",
    NotWaiting = "not_waiting",
    InWaitingRoom = "in_waiting_room",
    CalleeBusy = "callee_busy",
    CalleeOffline = "callee_offline",
    CallerBusy = "caller_busy",
    NotAnInvitee = "not_an_invitee",
    NotInCall = "not_in_call",
    VideoAlreadyOn = "video_already_on",
    VideoOff = "video_off",
    VideoRequestPending = "video_request_pending",
    RecordingAlreadyOn = "recording_already_on",
    NotRecording = "not_recording",
    RecordingRequestPending = "recording_request_pending",
    RecordingNotReady = "recording_not_ready",
    TooManyBlocks = "too_many_blocks",
    ReportWindowClosed = "report_window_closed",
    // 422
    InvalidField = "invalid_field",
    CannotCallYourself = "cannot_call_yourself",
    DuplicateParticipants = "duplicate_participants",
    TooManyParticipants = "too_many_participants",
    // 429
    RateLimited = "rate_limited",
    VideoRequestCooldown = "video_request_cooldown",
    RecordingRequestCooldown = "recording_request_cooldown",
    RingCooldown = "ring_cooldown",
    // 503
    LivekitUnavailable = "livekit_unavailable",
    Unavailable = "unavailable",
    // 500
    Internal = "internal",
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
