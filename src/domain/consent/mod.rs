//! The video consent policy (its rules, by name, in `docs/consent.md`) as a
//! pure state machine. The service loads a call's [`VideoSession`], asks [`decide`],
//! and in one transaction persists the new session, appends the ledger entries
//! and queues the notices. Nothing here does I/O or reads the clock. What a
//! participant reads of the ledger is [`readable`] and [`visible_actor`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ClientEvent;
use uuid::Uuid;

mod reading;
#[cfg(test)]
mod recording_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod what_others_read;

pub use reading::readable;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoPolicy {
    #[default]
    FemaleConsent,
    Mutual,
    Open,
}

impl VideoPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FemaleConsent => "female_consent",
            Self::Mutual => "mutual",
            Self::Open => "open",
        }
    }
}

impl fmt::Display for VideoPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown video policy {0:?} (expected female_consent, mutual or open)")]
pub struct UnknownVideoPolicy(pub String);

impl FromStr for VideoPolicy {
    type Err = UnknownVideoPolicy;

    // Strict on purpose: a misspelt VIDEO_POLICY must stop the service, not
    // silently fall back to something more permissive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "female_consent" => Ok(Self::FemaleConsent),
            "mutual" => Ok(Self::Mutual),
            "open" => Ok(Self::Open),
            other => Err(UnknownVideoPolicy(other.to_owned())),
        }
    }
}

/// What a consent is given to: the call's video, or its recording. One
/// machine ([`decide`]) decides both; only who must consent differs
/// ([`RecordingPolicy::rules`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Video,
    Recording,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Video => "video",
            Self::Recording => "recording",
        }
    }
}

/// `RECORDING_POLICY`: whether a call may be recorded, and on whose consent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingPolicy {
    /// No call is recorded (the default).
    #[default]
    Off,
    /// Every participant present consents, whoever they are.
    AllParty,
}

impl RecordingPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::AllParty => "all_party",
        }
    }

    /// The rules a recording follows, as those of video under a policy:
    /// under `all_party`, video's `mutual`. Everyone present must consent
    /// (the requester by asking); one no declines it, with the cooldown;
    /// an unanswered request expires; anyone present may stop it (a revoke);
    /// a newcomer keeps it going only by consenting as they join; a leaver
    /// stops it only if someone who stays has not consented. Answers are
    /// sealed as video's are, and the ledger reads the same way. `None`:
    /// recording is off.
    pub fn rules(self) -> Option<VideoPolicy> {
        match self {
            Self::Off => None,
            Self::AllParty => Some(VideoPolicy::Mutual),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown recording policy {0:?} (expected off or all_party)")]
pub struct UnknownRecordingPolicy(pub String);

impl FromStr for RecordingPolicy {
    type Err = UnknownRecordingPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Self::Off),
            "all_party" => Ok(Self::AllParty),
            other => Err(UnknownRecordingPolicy(other.to_owned())),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Female,
    Male,
    #[default]
    Other,
}

impl Gender {
    /// Reads the gender claim of a verified token; anything unrecognised is `Other`.
    pub fn parse(raw: &str) -> Gender {
        match raw.trim().to_ascii_lowercase().as_str() {
            "female" | "f" | "woman" => Gender::Female,
            "male" | "m" | "man" => Gender::Male,
            _ => Gender::Other,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VideoState {
    #[default]
    Off,
    Requested,
    On,
}

impl VideoState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Requested => "requested",
            Self::On => "on",
        }
    }
}

/// LiveKit track sources, spelt as `canPublishSources` wants them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Camera,
    Microphone,
    ScreenShare,
    ScreenShareAudio,
}

impl TrackSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Camera => "camera",
            Self::Microphone => "microphone",
            Self::ScreenShare => "screen_share",
            Self::ScreenShareAudio => "screen_share_audio",
        }
    }
}

/// A participant present in the call (accepted or joined, and not left).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub gender: Gender,
    pub may_share_screen: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    pub id: Uuid,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The whole policy state of one call, persisted as JSON in the call row.
/// Invariants: `state == Requested` exactly when `request` is `Some`, and
/// then someone is still awaited; `declines` and `asked` are empty unless a
/// request is pending.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoSession {
    pub state: VideoState,
    pub request: Option<PendingRequest>,
    /// Who consented since video last turned off (or since the pending request was made).
    pub consents: BTreeSet<String>,
    /// Who said no to the pending request: sealed until it is decided
    /// ("answers are sealed").
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub declines: BTreeSet<String>,
    /// Who joined while the request was pending: asked like a consenter,
    /// whoever they are ("a newcomer is asked").
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub asked: BTreeSet<String>,
    /// Requester -> may not request before this instant.
    pub cooldowns: BTreeMap<String, DateTime<Utc>>,
}

impl VideoSession {
    pub fn new(policy: VideoPolicy) -> Self {
        let state = match policy {
            VideoPolicy::Open => VideoState::On,
            VideoPolicy::FemaleConsent | VideoPolicy::Mutual => VideoState::Off,
        };
        Self { state, ..Self::default() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub request_timeout: Duration,
    pub cooldown: Duration,
}

impl Default for Timing {
    /// The defaults: `VIDEO_REQUEST_TIMEOUT` 30 s, `VIDEO_REQUEST_COOLDOWN` 60 s.
    fn default() -> Self {
        Self { request_timeout: Duration::seconds(30), cooldown: Duration::seconds(60) }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Request {
        by: String,
        id: Uuid,
    },
    Accept {
        by: String,
        id: Uuid,
    },
    Reject {
        by: String,
        id: Uuid,
    },
    Revoke {
        by: String,
    },
    /// A request deadline fired (it is due by the database's clock); may
    /// arrive late or more than once.
    Expire {
        id: Uuid,
    },
    /// `members` already includes the joiner. Send it once per presence:
    /// a join starts a fresh presence, so an earlier consent does not carry over.
    Join {
        user: String,
        consent: Option<bool>,
    },
    /// `members` no longer includes the leaver.
    Leave {
        user: String,
    },
    /// An invitee's ring ended without an answer (declined, missed): they
    /// were never present. `ringing` no longer includes them.
    RingEnded {
        user: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    Request,
    Consent,
    Reject,
    /// A request's outcome when every answer is in and one of them is no.
    Declined,
    Expire,
    Revoke,
    Withdraw,
    On,
    Off,
    Violation,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Consent => "consent",
            Self::Reject => "reject",
            Self::Declined => "declined",
            Self::Expire => "expire",
            Self::Revoke => "revoke",
            Self::Withdraw => "withdraw",
            Self::On => "on",
            Self::Off => "off",
            Self::Violation => "violation",
        }
    }
}

/// One consent-ledger row; the caller adds the call id and the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub kind: LedgerKind,
    /// The user whose action caused the step; `None` for the system (an
    /// outcome that ends a request without video, a ring that ended).
    pub actor: Option<String>,
    pub request_id: Option<Uuid>,
}

impl LedgerEntry {
    /// The SFU saw a camera track while video was off ("enforced in the SFU"); `decide` never
    /// produces this, the webhook handler does.
    pub fn violation(user: &str) -> Self {
        Self { kind: LedgerKind::Violation, actor: Some(user.to_owned()), request_id: None }
    }
}

/// An event to send. Recipients are chosen here because "nothing tells who
/// declined" depends on them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Only to those who may answer and have not consented yet.
    Requested {
        request: PendingRequest,
        to: Vec<String>,
    },
    On {
        to: Vec<String>,
    },
    Off {
        to: Vec<String>,
    },
    /// Only to the requester, and deliberately without who declined or why.
    Declined {
        request_id: Uuid,
        to: Vec<String>,
    },
    Expired {
        request_id: Uuid,
        to: Vec<String>,
    },
}

impl Notice {
    /// The client event's type, for video.
    pub fn event_type(&self) -> ClientEvent {
        self.event_of(Subject::Video)
    }

    /// The client event's type, for the subject the notice is about.
    pub fn event_of(&self, subject: Subject) -> ClientEvent {
        match (subject, self) {
            (Subject::Video, Self::Requested { .. }) => ClientEvent::VideoRequested,
            (Subject::Video, Self::On { .. }) => ClientEvent::VideoOn,
            (Subject::Video, Self::Off { .. }) => ClientEvent::VideoOff,
            (Subject::Video, Self::Declined { .. }) => ClientEvent::VideoDeclined,
            (Subject::Video, Self::Expired { .. }) => ClientEvent::VideoExpired,
            (Subject::Recording, Self::Requested { .. }) => ClientEvent::RecordingRequested,
            (Subject::Recording, Self::On { .. }) => ClientEvent::RecordingOn,
            (Subject::Recording, Self::Off { .. }) => ClientEvent::RecordingOff,
            (Subject::Recording, Self::Declined { .. }) => ClientEvent::RecordingDeclined,
            (Subject::Recording, Self::Expired { .. }) => ClientEvent::RecordingExpired,
        }
    }

    pub fn recipients(&self) -> &[String] {
        match self {
            Self::Requested { to, .. }
            | Self::On { to }
            | Self::Off { to }
            | Self::Declined { to, .. }
            | Self::Expired { to, .. } => to,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub session: VideoSession,
    pub ledger: Vec<LedgerEntry>,
    pub notices: Vec<Notice>,
}

impl Decision {
    /// Whether camera permission flipped, i.e. LiveKit permissions must be updated.
    pub fn video_changed(&self, before: &VideoSession) -> bool {
        camera_allowed(before.state) != camera_allowed(self.session.state)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("you are not a participant of this call")]
    NotAMember,
    #[error("you may not answer or revoke video in this call")]
    NotAConsenter,
    #[error("you cannot answer your own video request")]
    OwnRequest,
    #[error("a video request is already pending")]
    RequestPending,
    #[error("video is already on")]
    AlreadyOn,
    #[error("video is off")]
    VideoOff,
    #[error("video may not be requested again before {until}")]
    Cooldown { until: DateTime<Utc> },
    #[error("no such pending video request")]
    RequestNotFound,
}

impl PolicyError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAMember => "not_a_participant",
            Self::NotAConsenter => "not_a_consenter",
            Self::OwnRequest => "own_request",
            Self::RequestPending => "video_request_pending",
            Self::AlreadyOn => "video_already_on",
            Self::VideoOff => "video_off",
            Self::Cooldown { .. } => "video_request_cooldown",
            Self::RequestNotFound => "video_request_not_found",
        }
    }

    /// Whole seconds for a `Retry-After` header (rounded up, at least 1).
    pub fn retry_after_secs(&self, now: DateTime<Utc>) -> Option<i64> {
        match self {
            Self::Cooldown { until } => {
                let ms = (*until - now).num_milliseconds();
                Some(((ms + 999) / 1000).max(1))
            }
            _ => None,
        }
    }
}

/// Who must consent before video turns on. Under `female_consent` a
/// participant counts as a woman unless her token says male: a missing or
/// unrecognised gender is the rule's safe side.
pub fn consenters(policy: VideoPolicy, members: &[Member]) -> BTreeSet<String> {
    let all = || members.iter().map(|m| m.user_id.clone()).collect();
    match policy {
        VideoPolicy::Open => BTreeSet::new(),
        VideoPolicy::Mutual => all(),
        VideoPolicy::FemaleConsent => {
            let women: BTreeSet<String> =
                members.iter().filter(|m| m.gender != Gender::Male).map(|m| m.user_id.clone()).collect();
            if women.is_empty() { all() } else { women }
        }
    }
}

/// What a published track is, as LiveKit reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Audio,
    Video,
    /// Data tracks and anything LiveKit may add later.
    Other,
}

impl TrackKind {
    /// The kind of a codec's mime type (`video/VP8` is video); `None` when
    /// there is none.
    pub fn of_mime(mime: &str) -> Option<TrackKind> {
        let (top, _) = mime.split_once('/').unwrap_or((mime, ""));
        match top.trim().to_ascii_lowercase().as_str() {
            "" => None,
            "video" => Some(TrackKind::Video),
            "audio" => Some(TrackKind::Audio),
            _ => Some(TrackKind::Other),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
            TrackKind::Other => "other",
        }
    }
}

/// A published track as its client labelled it and as its media is: the
/// kind and source the client declared (LiveKit checks only these against
/// the rights), and the kind of the media LiveKit receives (from the
/// codec's mime type), once LiveKit knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackLabel {
    pub declared: TrackKind,
    /// `None` while LiveKit has not said what the media is.
    pub media: Option<TrackKind>,
    /// `None` for a source LiveKit calls unknown.
    pub source: Option<TrackSource>,
}

impl TrackLabel {
    /// What the track really is: video if its media is video or its client
    /// says so, whatever else it says.
    pub fn kind(&self) -> TrackKind {
        let either = |kind| self.declared == kind || self.media == Some(kind);
        if either(TrackKind::Video) {
            TrackKind::Video
        } else if either(TrackKind::Audio) {
            TrackKind::Audio
        } else {
            TrackKind::Other
        }
    }

    /// The declared kind, the media and the source do not tell the same
    /// story: video declared as audio (or the reverse), video as a
    /// microphone, audio as a camera.
    pub fn is_a_lie(&self) -> bool {
        if self.media.is_some_and(|media| media != self.declared) {
            return true;
        }
        match (self.kind(), self.source) {
            (TrackKind::Video, Some(TrackSource::Camera | TrackSource::ScreenShare)) => false,
            (TrackKind::Video, _) => true,
            (TrackKind::Audio, Some(TrackSource::Camera | TrackSource::ScreenShare)) => true,
            _ => false,
        }
    }
}

/// What the policy says of a published track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackVerdict {
    Allowed,
    /// A camera or screen track while video is off (or a screen track for
    /// someone whose role may not share): the SFU refuses these itself, so
    /// one can only come from rights that were still being withdrawn, or
    /// from a token LiveKit refreshed while video was on.
    NotNow,
    /// A track whose label lies (`TrackLabel::is_a_lie`): video under
    /// another label or another declared type, never allowed, whatever the
    /// video state. The SFU checks only the label, so this is a client
    /// lying about its track.
    Mislabelled,
}

/// Video is video whatever its label: a track whose media or declared
/// kind is video is allowed only as `camera` (or `screen_share` for those
/// who may share), and only while video is on; any disagreement between
/// its declared kind, its media and its source is a lie.
pub fn judge_track(track: TrackLabel, state: VideoState, may_share_screen: bool) -> TrackVerdict {
    if track.is_a_lie() {
        return TrackVerdict::Mislabelled;
    }
    match track.source {
        Some(source) if !publish_sources(state, may_share_screen).contains(&source) => TrackVerdict::NotNow,
        _ => TrackVerdict::Allowed,
    }
}

/// The actor a participant reading the ledger may see on a step: the
/// requester of a request (every participant is told who asked), and the
/// reader's own steps. Who consented, rejected, revoked, turned video on or
/// off, or broke the rule is for the audit (`admin`) only, so that what a
/// participant reads has the same shape whatever the genders present.
pub fn visible_actor<'a>(kind: LedgerKind, actor: Option<&'a str>, reader: &str) -> Option<&'a str> {
    match actor {
        Some(actor) if actor == reader || kind == LedgerKind::Request => Some(actor),
        _ => None,
    }
}

/// Whether `user` may accept or reject the pending request right now: a
/// consenter present, or anyone who joined while it was pending (and may
/// change their answer until it is decided).
pub fn can_answer(policy: VideoPolicy, session: &VideoSession, members: &[Member], user: &str) -> bool {
    session.request.as_ref().is_some_and(|r| may_answer(policy, session, members, r, user))
}

fn may_answer(
    policy: VideoPolicy,
    session: &VideoSession,
    members: &[Member],
    request: &PendingRequest,
    user: &str,
) -> bool {
    user != request.requested_by
        && members.iter().any(|m| m.user_id == user)
        && (session.asked.contains(user) || consenters(policy, members).contains(user))
}

pub fn publish_sources(state: VideoState, may_share_screen: bool) -> Vec<TrackSource> {
    let mut sources = vec![TrackSource::Microphone];
    if camera_allowed(state) {
        sources.push(TrackSource::Camera);
        if may_share_screen {
            sources.extend([TrackSource::ScreenShare, TrackSource::ScreenShareAudio]);
        }
    }
    sources
}

pub fn camera_allowed(state: VideoState) -> bool {
    state == VideoState::On
}

/// Decides what `action` does to the call. `members` are those present;
/// `ringing`, the invitees still being rung: a request waits for their answer
/// too (they give it by accepting the call), whoever they are.
pub fn decide(
    policy: VideoPolicy,
    session: &VideoSession,
    members: &[Member],
    ringing: &[String],
    action: Action,
    now: DateTime<Utc>,
    timing: &Timing,
) -> Result<Decision, PolicyError> {
    // Be robust to a caller that has not yet dropped the leaver from
    // `members` (or the invitee from `ringing`).
    let (remaining, rung): (Vec<Member>, Vec<String>);
    let (members, ringing) = match &action {
        Action::Leave { user } | Action::RingEnded { user } => {
            remaining = members.iter().filter(|m| &m.user_id != user).cloned().collect();
            rung = ringing.iter().filter(|u| *u != user).cloned().collect();
            (&remaining[..], &rung[..])
        }
        _ => (members, ringing),
    };
    let mut draft = Draft {
        policy,
        members,
        ringing,
        session: session.clone(),
        ledger: Vec::new(),
        notices: Vec::new(),
        now,
        timing,
    };
    if policy == VideoPolicy::Open {
        draft.open(&action)?;
    } else {
        match action {
            Action::Request { by, id } => draft.request(by, id)?,
            Action::Accept { by, id } => draft.answer(by, id, true)?,
            Action::Reject { by, id } => draft.answer(by, id, false)?,
            Action::Revoke { by } => draft.revoke(by)?,
            Action::Expire { id } => draft.expire(id),
            Action::Join { user, consent } => draft.join(user, consent)?,
            Action::Leave { user } => draft.leave(user),
            Action::RingEnded { .. } => draft.conclude(None),
        }
    }
    Ok(Decision { session: draft.session, ledger: draft.ledger, notices: draft.notices })
}

/// The decision being built; only returned when every check passed.
struct Draft<'a> {
    policy: VideoPolicy,
    members: &'a [Member],
    ringing: &'a [String],
    session: VideoSession,
    ledger: Vec<LedgerEntry>,
    notices: Vec<Notice>,
    now: DateTime<Utc>,
    timing: &'a Timing,
}

impl Draft<'_> {
    /// Under `open` there is nothing to consent to; only the errors differ.
    /// A session that is not `On` (a call from before the policy changed) is
    /// left alone rather than switched on behind its participants' backs.
    fn open(&self, action: &Action) -> Result<(), PolicyError> {
        match action {
            Action::Request { by, .. } => {
                self.require_member(by)?;
                Err(PolicyError::AlreadyOn)
            }
            Action::Accept { by, .. } | Action::Reject { by, .. } => {
                self.require_member(by)?;
                Err(PolicyError::RequestNotFound)
            }
            Action::Revoke { by } => {
                self.require_member(by)?;
                Err(PolicyError::NotAConsenter)
            }
            Action::Join { user, .. } => self.require_member(user),
            Action::Expire { .. } | Action::Leave { .. } | Action::RingEnded { .. } => Ok(()),
        }
    }

    fn request(&mut self, by: String, id: Uuid) -> Result<(), PolicyError> {
        self.require_member(&by)?;
        match self.session.state {
            VideoState::On => return Err(PolicyError::AlreadyOn),
            VideoState::Requested => return Err(PolicyError::RequestPending),
            VideoState::Off => {}
        }
        let now = self.now;
        if let Some(&until) = self.session.cooldowns.get(&by)
            && now < until
        {
            return Err(PolicyError::Cooldown { until });
        }
        // Expired cooldowns are dead weight in the persisted JSON.
        self.session.cooldowns.retain(|_, until| *until > now);

        self.log(LedgerKind::Request, Some(&by), Some(id));
        // Kept even for a non-consenter: if the consenters change (the last
        // woman leaves), the requester has already said yes. Written the same
        // way for every requester, so that the ledger does not tell who the
        // consenters are.
        self.session.consents = BTreeSet::from([by.clone()]);
        self.log(LedgerKind::Consent, Some(&by), Some(id));
        let request = PendingRequest {
            id,
            requested_by: by.clone(),
            requested_at: now,
            expires_at: now + self.timing.request_timeout,
        };
        self.session.state = VideoState::Requested;
        self.session.request = Some(request.clone());
        // "Asking is consenting": with nobody else to wait for, it is on now.
        self.conclude(Some(&by));
        if self.session.state == VideoState::Requested {
            let to = self.to_ask(&request);
            if !to.is_empty() {
                self.notices.push(Notice::Requested { request, to });
            }
        }
        Ok(())
    }

    /// Checks shared by accept and reject. The request is looked up first so
    /// that a stale or foreign id reads as "not found" whoever sends it.
    fn answerable(&self, by: &str, id: Uuid) -> Result<PendingRequest, PolicyError> {
        self.require_member(by)?;
        let request =
            self.session.request.as_ref().filter(|r| r.id == id).ok_or(PolicyError::RequestNotFound)?;
        if request.requested_by == by {
            return Err(PolicyError::OwnRequest);
        }
        if !self.may_answer(request, by) {
            return Err(PolicyError::NotAConsenter);
        }
        Ok(request.clone())
    }

    /// "Answers are sealed": an answer is recorded, and the request decided
    /// only once nobody is awaited, so that when it is decided tells nothing
    /// of who said what. Until then one may change one's answer.
    fn answer(&mut self, by: String, id: Uuid, yes: bool) -> Result<(), PolicyError> {
        self.answerable(&by, id)?;
        let kind = if yes { LedgerKind::Consent } else { LedgerKind::Reject };
        self.record_answer(&by, yes, kind, id);
        self.conclude(Some(&by));
        Ok(())
    }

    fn record_answer(&mut self, by: &str, yes: bool, kind: LedgerKind, id: Uuid) {
        let (to, from) = if yes {
            (&mut self.session.consents, &mut self.session.declines)
        } else {
            (&mut self.session.declines, &mut self.session.consents)
        };
        from.remove(by);
        to.insert(by.to_owned());
        self.log(kind, Some(by), Some(id));
    }

    /// The state is checked before who is asking, so that a revoke while
    /// video is off answers the same whoever sends it and whoever is present.
    fn revoke(&mut self, by: String) -> Result<(), PolicyError> {
        self.require_member(&by)?;
        match (self.session.state, self.session.request.clone()) {
            (VideoState::On, _) => {
                if !self.consenters().contains(&by) {
                    return Err(PolicyError::NotAConsenter);
                }
                self.log(LedgerKind::Revoke, Some(&by), None);
                self.turn_off(Some(&by));
            }
            (VideoState::Requested, Some(request)) if request.requested_by == by => {
                // Taking back one's own request: nobody needs telling.
                self.log(LedgerKind::Withdraw, Some(&by), Some(request.id));
                self.close_request();
            }
            (VideoState::Requested, Some(request)) => {
                if !self.may_answer(&request, &by) {
                    return Err(PolicyError::NotAConsenter);
                }
                // A no like any other, sealed like any other.
                self.record_answer(&by, false, LedgerKind::Revoke, request.id);
                self.conclude(Some(&by));
            }
            _ => return Err(PolicyError::VideoOff),
        }
        Ok(())
    }

    /// The request's deadline fired. It fires by the database's clock, once,
    /// when due; comparing with this instance's clock as well would leave a
    /// request pending for ever on an instance whose clock lags.
    fn expire(&mut self, id: Uuid) {
        if let Some(request) = self.session.request.clone()
            && request.id == id
        {
            self.end_unanswered(&request);
        }
    }

    /// The request ends without every answer in: "expired", whatever the
    /// answers given so far (they stay sealed), and no cooldown.
    fn end_unanswered(&mut self, request: &PendingRequest) {
        // Everyone who was (or became) asked, including those who already said
        // yes, so that no client keeps showing a dead prompt.
        let mut to = vec![request.requested_by.clone()];
        to.extend(self.member_ids().filter(|u| self.may_answer(request, u)).cloned());
        self.log(LedgerKind::Expire, None, Some(request.id));
        self.close_request();
        self.notices.push(Notice::Expired { request_id: request.id, to });
    }

    /// "A newcomer is asked": whoever joins while video is on keeps it on
    /// only by opting in, and whoever joins while it is requested answers
    /// the request like a consenter (or is asked, if they said nothing).
    fn join(&mut self, user: String, consent: Option<bool>) -> Result<(), PolicyError> {
        self.require_member(&user)?;
        let request = self.session.request.clone();
        if request.as_ref().is_some_and(|r| r.requested_by == user) {
            // A replayed join of the requester, who is present: nothing new.
            return Ok(());
        }
        // Consent belongs to a presence; a rejoin must consent afresh.
        self.session.consents.remove(&user);
        self.session.declines.remove(&user);
        match (self.session.state, request) {
            (VideoState::On, _) => {
                if consent == Some(true) {
                    self.session.consents.insert(user.clone());
                    self.log(LedgerKind::Consent, Some(&user), None);
                }
                // The joiner may also have changed who the consenters are
                // (first woman into a men-only call).
                if consent != Some(true) || !self.all_consented() {
                    self.turn_off(Some(&user));
                }
            }
            (VideoState::Requested, Some(request)) => {
                self.session.asked.insert(user.clone());
                match consent {
                    Some(yes) => {
                        let kind = if yes { LedgerKind::Consent } else { LedgerKind::Reject };
                        self.record_answer(&user, yes, kind, request.id);
                        self.conclude(Some(&user));
                    }
                    None => self.notices.push(Notice::Requested { request, to: vec![user] }),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A leave never turns video on, and whether it turns it off (or ends a
    /// request) never depends on who left: under `female_consent` the
    /// consenters may change with anyone's leaving, so every leave turns video
    /// off; a pending request ends unanswered, as whoever left might have
    /// been the last one awaited.
    fn leave(&mut self, user: String) {
        self.session.consents.remove(&user);
        self.session.declines.remove(&user);
        self.session.asked.remove(&user);
        if let Some(request) = self.session.request.clone() {
            if request.requested_by == user {
                self.log(LedgerKind::Withdraw, Some(&user), Some(request.id));
                self.close_request();
            } else {
                self.end_unanswered(&request);
            }
        }
        let consenters_may_change = self.policy == VideoPolicy::FemaleConsent;
        if self.session.state == VideoState::On && (consenters_may_change || !self.all_consented()) {
            self.turn_off(Some(&user));
        }
    }

    /// Decides the pending request once nobody is awaited: declined if
    /// anyone said no, on if everyone said yes. `actor`: whose answer (if
    /// anyone's) completes it.
    fn conclude(&mut self, actor: Option<&str>) {
        let Some(request) = self.session.request.clone() else {
            return;
        };
        if !self.awaited(&request).is_empty() {
            return;
        }
        if !self.session.declines.is_empty() {
            self.log(LedgerKind::Declined, None, Some(request.id));
            self.close_request();
            // From the outcome, not from any answer: it tells no more than
            // the outcome does.
            let until = self.now + self.timing.cooldown;
            self.session.cooldowns.insert(request.requested_by.clone(), until);
            self.notices.push(Notice::Declined { request_id: request.id, to: vec![request.requested_by] });
        } else if self.all_consented() {
            self.turn_on(actor, request.id);
        }
        // Otherwise a consent is missing that nobody is awaited for (a
        // caller replayed a join of a present consenter): the request waits
        // for its expiry.
    }

    fn require_member(&self, user: &str) -> Result<(), PolicyError> {
        if self.members.iter().any(|m| m.user_id == user) { Ok(()) } else { Err(PolicyError::NotAMember) }
    }

    fn member_ids(&self) -> impl Iterator<Item = &String> {
        self.members.iter().map(|m| &m.user_id)
    }

    fn consenters(&self) -> BTreeSet<String> {
        consenters(self.policy, self.members)
    }

    /// Who may answer `request`: a consenter present, or whoever joined
    /// while it was pending; never its requester.
    fn may_answer(&self, request: &PendingRequest, user: &str) -> bool {
        may_answer(self.policy, &self.session, self.members, request, user)
    }

    /// Whose answer the request still waits for: those present who may
    /// answer and have not, and every invitee still being rung, whoever
    /// they are (they answer by accepting the call).
    fn awaited(&self, request: &PendingRequest) -> BTreeSet<String> {
        let answered = |u: &str| self.session.consents.contains(u) || self.session.declines.contains(u);
        self.member_ids()
            .filter(|u| self.may_answer(request, u) && !answered(u))
            .chain(self.ringing.iter().filter(|u| **u != request.requested_by))
            .cloned()
            .collect()
    }

    /// An empty call has nobody who consented, so video does not survive it.
    fn all_consented(&self) -> bool {
        let consenters = self.consenters();
        !consenters.is_empty() && consenters.is_subset(&self.session.consents)
    }

    /// Who is asked when the request is made: those present who may answer.
    fn to_ask(&self, request: &PendingRequest) -> Vec<String> {
        self.member_ids().filter(|u| self.may_answer(request, u)).cloned().collect()
    }

    fn log(&mut self, kind: LedgerKind, actor: Option<&str>, request_id: Option<Uuid>) {
        self.ledger.push(LedgerEntry { kind, actor: actor.map(str::to_owned), request_id });
    }

    fn turn_on(&mut self, actor: Option<&str>, request_id: Uuid) {
        self.session.state = VideoState::On;
        self.session.request = None;
        self.session.declines.clear();
        self.session.asked.clear();
        self.log(LedgerKind::On, actor, Some(request_id));
        let to = self.member_ids().cloned().collect();
        self.notices.push(Notice::On { to });
    }

    fn turn_off(&mut self, actor: Option<&str>) {
        self.close_request();
        self.log(LedgerKind::Off, actor, None);
        let to = self.member_ids().cloned().collect();
        self.notices.push(Notice::Off { to });
    }

    /// Every way back to `Off` forgets consents and answers: the next
    /// request starts clean.
    fn close_request(&mut self) {
        self.session.state = VideoState::Off;
        self.session.request = None;
        self.session.consents.clear();
        self.session.declines.clear();
        self.session.asked.clear();
    }
}
