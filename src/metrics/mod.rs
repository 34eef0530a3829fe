//! Prometheus metrics, served at `GET /metrics` (OpenMetrics text).
//!
//! One registry per application, not a process-wide recorder: the tests run
//! many applications in one process, and each must see its own figures.
//! Counters and histograms are recorded where things happen: after the
//! transaction that made them happen has committed (calls ended, answered,
//! app webhooks delivered), except video request steps, counted as the
//! policy's decision is applied (see `consent::apply`). The figures that are
//! the database's or the hub's to know (live calls by state, the app webhook
//! backlog, open event sockets) are read at scrape time (`scrape`).
//! Recording never fails and never blocks on I/O.

pub mod http;
pub mod scrape;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use chrono::{DateTime, Utc};

use crate::domain::consent::{Decision, LedgerKind};
use crate::domain::{EndReason, Outcome};

pub use http::HttpMetrics;

/// Every metric name starts with it.
const PREFIX: &str = "callgate";

/// Seconds from the call becoming active to its end: a few seconds up to
/// the longest a call may last (`MAX_CALL_DURATION`, 4 h by default).
const CALL_DURATION: [f64; 12] =
    [5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0];
/// Seconds from ringing to the first answer (`RINGING_TIMEOUT`, 30 s by default).
const RING_TO_ANSWER: [f64; 11] = [1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0];
/// LiveKit stamps its webhooks in whole seconds, so finer buckets mean nothing.
const WEBHOOK_LAG: [f64; 9] = [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Request latencies, LiveKit's and ours.
const LATENCY: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    outcome: &'static str,
    end_reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    event: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// What became of a LiveKit webhook delivered to this instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookResult {
    /// Stored for handling.
    Accepted,
    /// Stored already (LiveKit sent it again).
    Duplicate,
    /// Not of this deployment's rooms.
    Ignored,
    /// The signature did not verify.
    Rejected,
    /// Could not be stored now; LiveKit is asked to send it again.
    Unavailable,
}

impl WebhookResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Rejected => "rejected",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The LiveKit webhook events there are (a bounded label); anything else is `other`.
pub fn webhook_event_label(event: &str) -> &'static str {
    const KNOWN: [&str; 12] = [
        "room_started",
        "room_finished",
        "participant_joined",
        "participant_left",
        "participant_connection_aborted",
        "track_published",
        "track_unpublished",
        "egress_started",
        "egress_updated",
        "egress_ended",
        "ingress_started",
        "ingress_ended",
    ];
    KNOWN.into_iter().find(|known| *known == event).unwrap_or("other")
}

const VIDEO_REQUEST_OUTCOMES: [&str; 6] =
    ["requested", "accepted", "declined", "expired", "withdrawn", "call_ended"];

/// How the video requests a decision touched ended, as the requester learns
/// it ("nothing tells who declined", docs/consent.md): `accepted`, `declined`, `expired`; or `withdrawn` by
/// the requester (taken back, or they left). `requested` counts one made.
pub fn video_request_steps(decision: &Decision) -> impl Iterator<Item = &'static str> + '_ {
    decision.ledger.iter().filter_map(|entry| match (entry.kind, entry.request_id) {
        (LedgerKind::Request, _) => Some("requested"),
        // Video turning on completes a request; a join that keeps it on does not.
        (LedgerKind::On, Some(_)) => Some("accepted"),
        // Answers are sealed: a request is declined when decided, not at a no.
        (LedgerKind::Declined, _) => Some("declined"),
        (LedgerKind::Expire, _) => Some("expired"),
        (LedgerKind::Withdraw, _) => Some("withdrawn"),
        _ => None,
    })
}

/// The LiveKit API's latency and failures, by RoomService method.
#[derive(Clone)]
pub struct LiveKitMetrics {
    latency: HistogramFamily<MethodLabel>,
    errors: Family<MethodLabel, Counter>,
}

impl LiveKitMetrics {
    /// `method` is the RoomService method, snake_case (`create_room`). A
    /// "not found" is an answer, not an error: only other failures count.
    pub fn observe(&self, method: &'static str, elapsed: std::time::Duration, failed: bool) {
        let labels = MethodLabel { method };
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if failed {
            self.errors.get_or_create(&labels).inc();
        }
    }
}

/// What the reconciler repairs, by kind (each counted from zero).
pub const REPAIR_KINDS: [&str; 6] =
    ["call_ended", "room_deleted", "presence_fixed", "rights_fixed", "violation", "event_retried"];

/// A call that ended (its transaction committed), as the figures see it.
pub struct CallEnd {
    pub outcome: Outcome,
    pub reason: EndReason,
    pub connected_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Whether a video request was still open when it ended.
    pub video_request_pending: bool,
}

pub struct Metrics {
    registry: Registry,
    calls_ended: Family<EndLabels, Counter>,
    call_duration: Histogram,
    ring_to_answer: Histogram,
    video_requests: Family<OutcomeLabel, Counter>,
    livekit: LiveKitMetrics,
    webhooks: Family<WebhookLabels, Counter>,
    webhook_lag: Histogram,
    app_webhook_deliveries: Family<ResultLabel, Counter>,
    reconcile_passes: Family<ResultLabel, Counter>,
    reconcile_repairs: Family<KindLabel, Counter>,
    http: HttpMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix(PREFIX),
            calls_ended: Family::default(),
            call_duration: Histogram::new(CALL_DURATION),
            ring_to_answer: Histogram::new(RING_TO_ANSWER),
            video_requests: Family::default(),
            livekit: LiveKitMetrics {
                latency: Family::new_with_constructor(latency_histogram),
                errors: Family::default(),
            },
            webhooks: Family::default(),
            webhook_lag: Histogram::new(WEBHOOK_LAG),
            app_webhook_deliveries: Family::default(),
            reconcile_passes: Family::default(),
            reconcile_repairs: Family::default(),
            http: HttpMetrics::default(),
        };
        let r = &mut m.registry;
        r.register(
            "calls_ended",
            "Calls ended on this instance, by outcome and end reason",
            m.calls_ended.clone(),
        );
        r.register_with_unit(
            "call_duration",
            "How long ended calls were active (from connected to ended)",
            Unit::Seconds,
            m.call_duration.clone(),
        );
        r.register_with_unit(
            "call_ring_to_answer",
            "How long calls rang before the first answer",
            Unit::Seconds,
            m.ring_to_answer.clone(),
        );
        r.register(
            "video_requests",
            "Video requests made (outcome=requested) and how they ended: accepted, declined, \
             expired, withdrawn, call_ended",
            m.video_requests.clone(),
        );
        r.register_with_unit(
            "livekit_request_duration",
            "Latency of LiveKit API requests, by RoomService method",
            Unit::Seconds,
            m.livekit.latency.clone(),
        );
        r.register(
            "livekit_request_errors",
            "LiveKit API requests that failed (a not-found answer is no failure), by method",
            m.livekit.errors.clone(),
        );
        r.register(
            "livekit_webhooks",
            "LiveKit webhooks received, by event and result (accepted, duplicate, ignored, \
             rejected signature, unavailable)",
            m.webhooks.clone(),
        );
        r.register_with_unit(
            "livekit_webhook_lag",
            "From a LiveKit event's creation to its receipt here (whole seconds)",
            Unit::Seconds,
            m.webhook_lag.clone(),
        );
        r.register(
            "app_webhook_deliveries",
            "Attempts to deliver app webhooks by this instance, by result (delivered, failed), \
             and webhooks given up on (abandoned)",
            m.app_webhook_deliveries.clone(),
        );
        r.register(
            "reconcile_passes",
            "Reconciler passes, by result (done, skipped: another instance made it, failed)",
            m.reconcile_passes.clone(),
        );
        r.register("reconcile_repairs", "What the reconciler repaired, by kind", m.reconcile_repairs.clone());
        m.http.register_in(r);
        // Series whose labels are known from the start are there from the
        // start, at zero, so that `rate()` and `increase()` see their first rise.
        for outcome in VIDEO_REQUEST_OUTCOMES {
            m.video_requests.get_or_create(&OutcomeLabel { outcome }).inc_by(0);
        }
        for result in ["delivered", "failed", "abandoned"] {
            m.app_webhook_deliveries.get_or_create(&ResultLabel { result }).inc_by(0);
        }
        for result in ["done", "skipped", "failed"] {
            m.reconcile_passes.get_or_create(&ResultLabel { result }).inc_by(0);
        }
        for kind in REPAIR_KINDS {
            m.reconcile_repairs.get_or_create(&KindLabel { kind }).inc_by(0);
        }
        m
    }
}

impl Metrics {
    pub fn livekit(&self) -> LiveKitMetrics {
        self.livekit.clone()
    }

    pub fn http(&self) -> HttpMetrics {
        self.http.clone()
    }

    /// A call ended (its transaction committed).
    pub fn call_ended(&self, ended: &CallEnd) {
        let labels = EndLabels { outcome: ended.outcome.as_str(), end_reason: ended.reason.as_str() };
        self.calls_ended.get_or_create(&labels).inc();
        if let (Some(connected), Some(end)) = (ended.connected_at, ended.ended_at) {
            self.call_duration.observe(seconds_between(connected, end));
        }
        if ended.video_request_pending {
            self.video_request("call_ended");
        }
    }

    /// A ringing call was answered (its transaction committed).
    pub fn call_answered(&self, created_at: DateTime<Utc>, answered_at: Option<DateTime<Utc>>) {
        if let Some(answered) = answered_at {
            self.ring_to_answer.observe(seconds_between(created_at, answered));
        }
    }

    /// The consent policy decided; its session was stored and enforced.
    pub fn video_decided(&self, decision: &Decision) {
        for step in video_request_steps(decision) {
            self.video_request(step);
        }
    }

    fn video_request(&self, outcome: &'static str) {
        self.video_requests.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// `event` is the webhook's event type, as LiveKit names it; `None`
    /// (labelled `unknown`) when the body is not to be trusted.
    pub fn livekit_webhook(&self, event: Option<&str>, result: WebhookResult) {
        let event = event.map_or("unknown", webhook_event_label);
        let labels = WebhookLabels { event, result: result.as_str() };
        self.webhooks.get_or_create(&labels).inc();
    }

    /// A LiveKit event created at `created_at` arrived now.
    pub fn livekit_webhook_lag(
        &self,
        created_at: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        self.webhook_lag.observe(seconds_between(created_at, now));
    }

    /// `result`: `delivered`, `failed` or `abandoned`.
    pub fn app_webhook_deliveries(&self, result: &'static str, count: u64) {
        self.app_webhook_deliveries.get_or_create(&ResultLabel { result }).inc_by(count);
    }

    /// `result`: `done`, `skipped` or `failed`.
    pub fn reconcile_pass(&self, result: &'static str) {
        self.reconcile_passes.get_or_create(&ResultLabel { result }).inc();
    }

    /// What one reconciler pass (or the part of it done before a failure) repaired.
    /// `repairs`: how many of each kind (`call_ended`, `room_deleted`, ...).
    pub fn reconciled(&self, repairs: &[(&'static str, usize)]) {
        for &(kind, count) in repairs {
            if count > 0 {
                self.reconcile_repairs.get_or_create(&KindLabel { kind }).inc_by(count as u64);
            }
        }
    }
}

/// Never negative: clocks of different machines disagree a little.
fn seconds_between(from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) -> f64 {
    ((to - from).num_milliseconds() as f64 / 1000.0).max(0.0)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::domain::consent::{self as rules, Action, Gender, Member, Timing, VideoPolicy, VideoSession};

    fn member(id: &str, gender: Gender) -> Member {
        Member { user_id: id.into(), gender, may_share_screen: true }
    }

    fn steps(
        session: &VideoSession,
        members: &[Member],
        action: Action,
    ) -> (Vec<&'static str>, VideoSession) {
        let now = Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).single().expect("a time");
        let decision =
            rules::decide(VideoPolicy::FemaleConsent, session, members, &[], action, now, &Timing::default())
                .expect("allowed");
        (video_request_steps(&decision).collect(), decision.session)
    }

    #[test]
    fn a_request_answered_by_the_consenter_is_requested_then_accepted() {
        let members = [member("bob", Gender::Male), member("alice", Gender::Female)];
        let id = Uuid::new_v4();
        let (made, session) =
            steps(&VideoSession::default(), &members, Action::Request { by: "bob".into(), id });
        assert_eq!(made, ["requested"]);
        let (answered, _) = steps(&session, &members, Action::Accept { by: "alice".into(), id });
        assert_eq!(answered, ["accepted"]);
    }

    #[test]
    fn a_consenters_own_request_is_accepted_at_once() {
        let members = [member("bob", Gender::Male), member("alice", Gender::Female)];
        let action = Action::Request { by: "alice".into(), id: Uuid::new_v4() };
        let (made, _) = steps(&VideoSession::default(), &members, action);
        assert_eq!(made, ["requested", "accepted"]);
    }

    #[test]
    fn a_reject_and_a_revoked_request_are_both_declined() {
        let members = [member("bob", Gender::Male), member("alice", Gender::Female)];
        let id = Uuid::new_v4();
        let (_, pending) =
            steps(&VideoSession::default(), &members, Action::Request { by: "bob".into(), id });
        let (rejected, _) = steps(&pending, &members, Action::Reject { by: "alice".into(), id });
        assert_eq!(rejected, ["declined"]);
        let (revoked, _) = steps(&pending, &members, Action::Revoke { by: "alice".into() });
        assert_eq!(revoked, ["declined"]);
    }

    #[test]
    fn a_request_ends_expired_or_withdrawn_when_nobody_answers() {
        let members = [member("bob", Gender::Male), member("alice", Gender::Female)];
        let id = Uuid::new_v4();
        let (_, pending) =
            steps(&VideoSession::default(), &members, Action::Request { by: "bob".into(), id });
        let mut late = pending.clone();
        if let Some(request) = late.request.as_mut() {
            request.expires_at -= Duration::hours(1);
        }
        assert_eq!(steps(&late, &members, Action::Expire { id }).0, ["expired"]);
        assert_eq!(steps(&pending, &members, Action::Leave { user: "bob".into() }).0, ["withdrawn"]);
    }

    #[test]
    fn revoking_video_that_is_on_ends_no_request() {
        let members = [member("bob", Gender::Male), member("alice", Gender::Female)];
        let action = Action::Request { by: "alice".into(), id: Uuid::new_v4() };
        let (_, on) = steps(&VideoSession::default(), &members, action);
        assert!(steps(&on, &members, Action::Revoke { by: "alice".into() }).0.is_empty());
    }

    #[test]
    fn webhook_events_outside_livekits_list_share_one_label() {
        assert_eq!(webhook_event_label("participant_joined"), "participant_joined");
        assert_eq!(webhook_event_label("anything else"), "other");
    }

    #[test]
    fn durations_are_never_negative() {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        assert_eq!(seconds_between(at, at - Duration::seconds(3)), 0.0);
        assert_eq!(seconds_between(at, at + Duration::milliseconds(1500)), 1.5);
    }
}
