use super::*;
use chrono::TimeZone;
use proptest::prelude::*;

use LedgerKind as K;
use VideoPolicy::{FemaleConsent, Mutual, Open};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap()
}

fn rid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn member(id: &str, gender: Gender) -> Member {
    Member { user_id: id.to_owned(), gender, may_share_screen: false }
}

fn woman(id: &str) -> Member {
    member(id, Gender::Female)
}

fn man(id: &str) -> Member {
    member(id, Gender::Male)
}

fn request(by: &str, n: u128) -> Action {
    Action::Request { by: by.to_owned(), id: rid(n) }
}

fn accept(by: &str, n: u128) -> Action {
    Action::Accept { by: by.to_owned(), id: rid(n) }
}

fn reject(by: &str, n: u128) -> Action {
    Action::Reject { by: by.to_owned(), id: rid(n) }
}

fn revoke(by: &str) -> Action {
    Action::Revoke { by: by.to_owned() }
}

fn expire(n: u128) -> Action {
    Action::Expire { id: rid(n) }
}

fn ids(users: &[&str]) -> Vec<String> {
    users.iter().map(|u| u.to_string()).collect()
}

fn kinds(d: &Decision) -> Vec<LedgerKind> {
    d.ledger.iter().map(|e| e.kind).collect()
}

fn entry(kind: LedgerKind, actor: Option<&str>, request: Option<u128>) -> LedgerEntry {
    LedgerEntry { kind, actor: actor.map(str::to_owned), request_id: request.map(rid) }
}

/// A call in a test: applies decisions the way the service would.
struct Call {
    policy: VideoPolicy,
    members: Vec<Member>,
    session: VideoSession,
    now: DateTime<Utc>,
    timing: Timing,
}

impl Call {
    fn new(policy: VideoPolicy, members: Vec<Member>) -> Self {
        Self { policy, members, session: VideoSession::new(policy), now: t0(), timing: Timing::default() }
    }

    fn try_act(&mut self, action: Action) -> Result<Decision, PolicyError> {
        let d = decide(self.policy, &self.session, &self.members, action, self.now, &self.timing)?;
        self.session = d.session.clone();
        Ok(d)
    }

    fn act(&mut self, action: Action) -> Decision {
        let shown = format!("{action:?}");
        self.try_act(action).unwrap_or_else(|e| panic!("{shown} failed: {e:?}"))
    }

    /// Expects an error and checks that it changed nothing.
    fn fail(&mut self, action: Action) -> PolicyError {
        let before = self.session.clone();
        let e = self.try_act(action).expect_err("expected an error");
        assert_eq!(self.session, before);
        e
    }

    fn join(&mut self, m: Member, consent: Option<bool>) -> Decision {
        let user = m.user_id.clone();
        self.members.push(m);
        self.act(Action::Join { user, consent })
    }

    fn leave(&mut self, user: &str) -> Decision {
        self.members.retain(|m| m.user_id != user);
        self.act(Action::Leave { user: user.to_owned() })
    }

    fn wait(&mut self, secs: i64) {
        self.now += Duration::seconds(secs);
    }

    fn wait_ms(&mut self, ms: i64) {
        self.now += Duration::milliseconds(ms);
    }

    fn state(&self) -> VideoState {
        self.session.state
    }
}

/// Man and woman, the everyday case.
fn couple() -> Call {
    Call::new(FemaleConsent, vec![man("m"), woman("w")])
}

/// One man and two women: both women must consent.
fn trio() -> Call {
    Call::new(FemaleConsent, vec![man("m"), woman("w1"), woman("w2")])
}

// ---- the rules of docs/consent.md -----------------------------------------

#[test]
fn rule_1_video_starts_off_unless_open() {
    assert_eq!(VideoSession::new(FemaleConsent).state, VideoState::Off);
    assert_eq!(VideoSession::new(Mutual).state, VideoState::Off);
    assert_eq!(VideoSession::new(Open).state, VideoState::On);
    assert_eq!(VideoSession::default(), VideoSession::new(FemaleConsent));
    assert_eq!(VideoPolicy::default(), FemaleConsent);
}

#[test]
fn rule_2_any_participant_may_request_while_off_and_nothing_pending() {
    let mut call = couple();
    let d = call.act(request("m", 1));
    assert_eq!(call.state(), VideoState::Requested);
    let pending = PendingRequest {
        id: rid(1),
        requested_by: "m".into(),
        requested_at: t0(),
        expires_at: t0() + Duration::seconds(30),
    };
    assert_eq!(call.session.request, Some(pending.clone()));
    assert_eq!(kinds(&d), [K::Request, K::Consent], "his implicit consent, as anyone's");
    assert_eq!(d.notices, [Notice::Requested { request: pending, to: ids(&["w"]) }]);
    assert_eq!(call.fail(request("w", 2)), PolicyError::RequestPending);
    assert_eq!(call.fail(request("m", 2)), PolicyError::RequestPending);
}

#[test]
fn rule_2_an_invitee_answers_by_joining_with_video() {
    // m asked for video with w1 there; w2 accepts the call with video: true.
    let mut call = trio();
    call.members.retain(|m| m.user_id != "w2");
    call.act(request("m", 1));
    let d = call.join(woman("w2"), Some(true));
    assert_eq!(d.ledger, [entry(K::Consent, Some("w2"), Some(1))]);
    assert_eq!(call.state(), VideoState::Requested, "w1 has not answered");
    let d = call.act(accept("w1", 1));
    assert_eq!(kinds(&d), [K::Consent, K::On]);
    assert_eq!(call.state(), VideoState::On);
}

#[test]
fn rule_2_an_invitee_joining_with_video_false_rejects() {
    let mut call = Call::new(FemaleConsent, vec![man("m"), woman("w1")]);
    call.act(request("m", 1));
    let d = call.join(woman("w2"), Some(false));
    assert_eq!(d.ledger, [entry(K::Reject, Some("w2"), Some(1))]);
    assert_eq!(d.notices, [Notice::Declined { request_id: rid(1), to: ids(&["m"]) }]);
    assert_eq!(call.state(), VideoState::Off);
    assert_eq!(call.session.cooldowns["m"], t0() + Duration::seconds(60));
}

#[test]
fn rule_2_an_invitee_joining_without_an_answer_is_asked() {
    let mut call = Call::new(FemaleConsent, vec![man("m"), woman("w1")]);
    call.act(request("m", 1));
    let d = call.join(woman("w2"), None);
    assert!(d.ledger.is_empty());
    let Some(pending) = call.session.request.clone() else { panic!("request should still be pending") };
    assert_eq!(d.notices, [Notice::Requested { request: pending, to: ids(&["w2"]) }]);
}

#[test]
fn rule_3_a_consenters_request_is_her_consent() {
    let mut call = couple();
    let d = call.act(request("w", 1));
    assert_eq!(
        d.ledger,
        [
            entry(K::Request, Some("w"), Some(1)),
            entry(K::Consent, Some("w"), Some(1)),
            entry(K::On, Some("w"), Some(1)),
        ]
    );
    assert_eq!(d.notices, [Notice::On { to: ids(&["m", "w"]) }]);
    assert_eq!(call.state(), VideoState::On);
    assert_eq!(call.session.request, None);
}

#[test]
fn rule_3_a_consenters_request_still_waits_for_the_others() {
    let mut call = trio();
    let d = call.act(request("w1", 1));
    assert_eq!(kinds(&d), [K::Request, K::Consent]);
    assert_eq!(call.state(), VideoState::Requested);
    assert!(matches!(&d.notices[..], [Notice::Requested { to, .. }] if *to == ids(&["w2"])));
}

#[test]
fn rule_4_nobody_answers_their_own_request() {
    let mut call = Call::new(Mutual, vec![man("a"), man("b")]);
    call.act(request("a", 1));
    assert_eq!(call.fail(accept("a", 1)), PolicyError::OwnRequest);
    assert_eq!(call.fail(reject("a", 1)), PolicyError::OwnRequest);
}

#[test]
fn rule_4_only_consenters_may_answer() {
    let mut call = Call::new(FemaleConsent, vec![man("m1"), man("m2"), woman("w")]);
    call.act(request("m1", 1));
    assert_eq!(call.fail(accept("m2", 1)), PolicyError::NotAConsenter);
    assert_eq!(call.fail(reject("m2", 1)), PolicyError::NotAConsenter);
    call.act(accept("w", 1));
    assert_eq!(call.state(), VideoState::On);
}

#[test]
fn rule_5_video_turns_on_when_every_present_consenter_consented() {
    let mut call = trio();
    call.act(request("m", 1));
    let d = call.act(accept("w1", 1));
    assert_eq!(kinds(&d), [K::Consent]);
    assert!(d.notices.is_empty());
    assert_eq!(call.state(), VideoState::Requested);
    let d = call.act(accept("w2", 1));
    assert_eq!(d.ledger, [entry(K::Consent, Some("w2"), Some(1)), entry(K::On, Some("w2"), Some(1))]);
    assert_eq!(d.notices, [Notice::On { to: ids(&["m", "w1", "w2"]) }]);
}

#[test]
fn rule_5_a_leave_never_turns_video_on_but_a_repeated_accept_does() {
    let mut call = trio();
    call.act(request("m", 1));
    call.act(accept("w1", 1));
    let d = call.leave("w2");
    assert_eq!(call.state(), VideoState::Requested);
    assert!(d.ledger.is_empty() && d.notices.is_empty());
    let d = call.act(accept("w1", 1));
    assert_eq!(kinds(&d), [K::Consent, K::On]);
    assert_eq!(call.state(), VideoState::On);
}

#[test]
fn rule_5_a_join_never_turns_video_on_from_off() {
    let mut call = couple();
    let d = call.join(woman("w2"), Some(true));
    assert_eq!(call.state(), VideoState::Off);
    assert!(d.ledger.is_empty() && d.notices.is_empty());
    assert!(call.session.consents.is_empty());
}

#[test]
fn rule_6_a_reject_closes_the_request_and_starts_the_cooldown() {
    let mut call = couple();
    call.act(request("m", 1));
    call.wait(5);
    let d = call.act(reject("w", 1));
    assert_eq!(d.ledger, [entry(K::Reject, Some("w"), Some(1))]);
    assert_eq!(call.state(), VideoState::Off);
    assert_eq!(call.session.request, None);
    assert!(call.session.consents.is_empty());
    let until = t0() + Duration::seconds(65);
    assert_eq!(call.session.cooldowns["m"], until);

    call.wait(59);
    let e = call.fail(request("m", 2));
    assert_eq!(e, PolicyError::Cooldown { until });
    assert_eq!(e.retry_after_secs(call.now), Some(1));
    call.wait(1);
    call.act(request("m", 2));
    assert_eq!(call.state(), VideoState::Requested);
    assert!(call.session.cooldowns.is_empty(), "spent cooldowns are pruned");
}

#[test]
fn rule_6_the_cooldown_binds_only_the_requester() {
    let mut call = Call::new(Mutual, vec![man("a"), man("b"), man("c")]);
    call.act(request("a", 1));
    call.act(reject("b", 1));
    assert!(matches!(call.fail(request("a", 2)), PolicyError::Cooldown { .. }));
    call.act(request("c", 2));
    assert_eq!(call.state(), VideoState::Requested);
}

#[test]
fn rule_7_an_unanswered_request_expires() {
    let mut call = trio();
    call.act(request("m", 1));
    call.act(accept("w1", 1));
    call.wait(30);
    let d = call.act(expire(1));
    assert_eq!(d.ledger, [entry(K::Expire, None, Some(1))]);
    assert_eq!(d.notices, [Notice::Expired { request_id: rid(1), to: ids(&["m", "w1", "w2"]) }]);
    assert_eq!(call.state(), VideoState::Off);
    assert!(call.session.consents.is_empty());
    assert!(call.session.cooldowns.is_empty(), "expiry is no rejection");
    call.act(request("m", 2));
}

#[test]
fn rule_7_an_expiry_fires_by_the_databases_clock_not_this_instances() {
    // The deadline is due by the database's clock; an instance whose clock
    // lags still expires the request it names.
    let mut call = couple();
    call.act(request("m", 1));
    call.wait(-120);
    assert_eq!(kinds(&call.act(expire(1))), [K::Expire]);
    assert_eq!(call.state(), VideoState::Off);
}

#[test]
fn rule_7_expiry_is_idempotent_and_may_fire_late() {
    let mut call = couple();
    call.act(request("m", 1));
    call.wait(3600);
    assert_eq!(kinds(&call.act(expire(1))), [K::Expire]);
    let before = call.session.clone();
    for _ in 0..2 {
        let d = call.act(expire(1));
        assert!(d.ledger.is_empty() && d.notices.is_empty());
        assert_eq!(d.session, before);
    }
    // A stale deadline must not close a newer request.
    call.act(request("m", 2));
    let d = call.act(expire(1));
    assert!(d.ledger.is_empty());
    assert_eq!(call.state(), VideoState::Requested);
}

#[test]
fn rule_7_an_expiry_after_video_went_on_changes_nothing() {
    let mut call = couple();
    call.act(request("m", 1));
    call.act(accept("w", 1));
    call.wait(30);
    let d = call.act(expire(1));
    assert!(d.ledger.is_empty() && d.notices.is_empty());
    assert_eq!(call.state(), VideoState::On);
}

#[test]
fn rule_8_any_consenter_may_revoke_while_on() {
    let mut call = trio();
    call.act(request("m", 1));
    call.act(accept("w1", 1));
    call.act(accept("w2", 1));
    assert_eq!(call.fail(revoke("m")), PolicyError::NotAConsenter);
    let d = call.act(revoke("w1"));
    assert_eq!(d.ledger, [entry(K::Revoke, Some("w1"), None), entry(K::Off, Some("w1"), None)]);
    assert_eq!(d.notices, [Notice::Off { to: ids(&["m", "w1", "w2"]) }]);
    assert_eq!(call.state(), VideoState::Off);
    assert!(call.session.consents.is_empty());
    assert_eq!(call.fail(revoke("w2")), PolicyError::VideoOff);
}

#[test]
fn rule_8_revoking_a_pending_request_declines_it_without_cooldown() {
    let mut call = trio();
    call.act(request("m", 1));
    call.act(accept("w1", 1));
    let d = call.act(revoke("w1"));
    assert_eq!(d.ledger, [entry(K::Revoke, Some("w1"), Some(1))]);
    assert_eq!(d.notices, [Notice::Declined { request_id: rid(1), to: ids(&["m"]) }]);
    assert_eq!(call.state(), VideoState::Off);
    assert!(call.session.cooldowns.is_empty());
    call.act(request("m", 2));
}

#[test]
fn rule_8_a_requester_revoking_her_own_request_withdraws_it() {
    let mut call = trio();
    call.act(request("w1", 1));
    let d = call.act(revoke("w1"));
    assert_eq!(d.ledger, [entry(K::Withdraw, Some("w1"), Some(1))]);
    assert!(d.notices.is_empty());
    assert_eq!(call.state(), VideoState::Off);
}

#[test]
fn rule_9_a_consenter_joining_while_on_without_consent_turns_it_off() {
    for consent in [None, Some(false)] {
        let mut call = couple();
        call.act(request("w", 1));
        let d = call.join(woman("w2"), consent);
        assert_eq!(d.ledger, [entry(K::Off, Some("w2"), None)]);
        assert_eq!(d.notices, [Notice::Off { to: ids(&["m", "w", "w2"]) }]);
        assert_eq!(call.state(), VideoState::Off);
        assert!(call.session.consents.is_empty());
    }
}

#[test]
fn rule_9_a_consenter_joining_while_on_with_consent_keeps_it_on() {
    let mut call = couple();
    call.act(request("w", 1));
    let d = call.join(woman("w2"), Some(true));
    assert_eq!(d.ledger, [entry(K::Consent, Some("w2"), None)]);
    assert!(d.notices.is_empty());
    assert_eq!(call.state(), VideoState::On);
}

#[test]
fn rule_9_the_first_woman_joining_a_mens_call_must_consent() {
    let mut call = Call::new(FemaleConsent, vec![man("a"), man("b")]);
    call.act(request("a", 1));
    call.act(accept("b", 1));
    assert_eq!(call.state(), VideoState::On);
    let mut off = Call {
        session: call.session.clone(),
        members: call.members.clone(),
        ..Call::new(FemaleConsent, vec![])
    };
    assert_eq!(kinds(&off.join(woman("w"), None)), [K::Off]);

    // With her consent she is now the only consenter, and has consented.
    assert_eq!(kinds(&call.join(woman("w"), Some(true))), [K::Consent]);
    assert_eq!(call.state(), VideoState::On);
}

#[test]
fn rule_9_a_rejoin_needs_fresh_consent() {
    let mut call = Call::new(Mutual, vec![man("a"), man("b")]);
    call.act(request("a", 1));
    call.act(accept("b", 1));
    call.leave("b");
    assert_eq!(call.state(), VideoState::On, "a alone has consented");
    call.join(man("b"), None);
    assert_eq!(call.state(), VideoState::Off);
}

#[test]
fn rule_9_a_join_replayed_for_a_present_consenter_asks_again() {
    // The caller must send Join once per presence: a replay is a fresh join.
    let mut call = couple();
    call.act(request("w", 1));
    call.act(Action::Join { user: "w".into(), consent: None });
    assert_eq!(call.state(), VideoState::Off);
}

#[test]
fn rule_9_a_non_consenter_joining_while_on_changes_nothing() {
    let mut call = couple();
    call.act(request("w", 1));
    let d = call.join(man("m2"), None);
    assert!(d.ledger.is_empty() && d.notices.is_empty());
    assert_eq!(call.state(), VideoState::On);
}

#[test]
fn rule_10_publish_sources_follow_the_video_state() {
    use TrackSource::*;
    assert_eq!(publish_sources(VideoState::Off, true), [Microphone]);
    assert_eq!(publish_sources(VideoState::Requested, true), [Microphone]);
    assert_eq!(publish_sources(VideoState::On, false), [Microphone, Camera]);
    assert_eq!(publish_sources(VideoState::On, true), [Microphone, Camera, ScreenShare, ScreenShareAudio]);
    assert!(camera_allowed(VideoState::On));
    assert!(!camera_allowed(VideoState::Requested));
    assert!(!camera_allowed(VideoState::Off));
    let names: Vec<_> =
        [Camera, Microphone, ScreenShare, ScreenShareAudio].iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["camera", "microphone", "screen_share", "screen_share_audio"]);
}

#[test]
fn rule_11_video_changed_marks_every_permission_flip() {
    let mut call = trio();
    let before = call.session.clone();
    let d = call.act(request("m", 1));
    assert!(!d.video_changed(&before), "requested is still off");
    call.act(accept("w1", 1));
    let before = call.session.clone();
    let d = call.act(accept("w2", 1));
    assert!(d.video_changed(&before));
    let before = call.session.clone();
    let d = call.act(revoke("w2"));
    assert!(d.video_changed(&before));
    assert_eq!(LedgerEntry::violation("m"), entry(K::Violation, Some("m"), None));
}

#[test]
fn rule_12_every_step_is_written_to_the_ledger_with_its_actor() {
    let mut call = trio();
    let mut ledger = Vec::new();
    ledger.extend(call.act(request("m", 1)).ledger);
    ledger.extend(call.act(accept("w1", 1)).ledger);
    ledger.extend(call.act(reject("w2", 1)).ledger);
    call.wait(60);
    ledger.extend(call.act(request("m", 2)).ledger);
    call.wait(30);
    ledger.extend(call.act(expire(2)).ledger);
    ledger.extend(call.act(request("w1", 3)).ledger);
    ledger.extend(call.act(accept("w2", 3)).ledger);
    ledger.extend(call.act(revoke("w2")).ledger);
    assert_eq!(
        ledger,
        [
            entry(K::Request, Some("m"), Some(1)),
            entry(K::Consent, Some("m"), Some(1)),
            entry(K::Consent, Some("w1"), Some(1)),
            entry(K::Reject, Some("w2"), Some(1)),
            entry(K::Request, Some("m"), Some(2)),
            entry(K::Consent, Some("m"), Some(2)),
            entry(K::Expire, None, Some(2)),
            entry(K::Request, Some("w1"), Some(3)),
            entry(K::Consent, Some("w1"), Some(3)),
            entry(K::Consent, Some("w2"), Some(3)),
            entry(K::On, Some("w2"), Some(3)),
            entry(K::Revoke, Some("w2"), None),
            entry(K::Off, Some("w2"), None),
        ]
    );
}

#[test]
fn rule_13_the_requester_learns_only_the_outcome() {
    let mut call = trio();
    let d = call.act(request("m", 1));
    for n in &d.notices {
        assert!(!n.recipients().contains(&"m".to_owned()));
    }
    call.act(accept("w1", 1));
    let d = call.act(reject("w2", 1));
    // Only "declined" and the request id: no who, no why, nobody else told.
    assert_eq!(d.notices, [Notice::Declined { request_id: rid(1), to: ids(&["m"]) }]);
    assert_eq!(d.notices[0].event_type().as_str(), "video.declined");
}

// ---- errors --------------------------------------------------------------

#[test]
fn error_not_a_member() {
    let mut call = couple();
    assert_eq!(call.fail(request("x", 1)), PolicyError::NotAMember);
    call.act(request("m", 1));
    assert_eq!(call.fail(accept("x", 1)), PolicyError::NotAMember);
    assert_eq!(call.fail(reject("x", 1)), PolicyError::NotAMember);
    assert_eq!(call.fail(revoke("x")), PolicyError::NotAMember);
    let join = Action::Join { user: "x".into(), consent: Some(true) };
    assert_eq!(call.fail(join), PolicyError::NotAMember);
}

#[test]
fn error_request_not_found() {
    let mut call = couple();
    assert_eq!(call.fail(accept("w", 1)), PolicyError::RequestNotFound);
    call.act(request("m", 1));
    assert_eq!(call.fail(accept("w", 2)), PolicyError::RequestNotFound);
    assert_eq!(call.fail(reject("w", 2)), PolicyError::RequestNotFound);
    call.act(accept("w", 1));
    assert_eq!(call.fail(accept("w", 1)), PolicyError::RequestNotFound);
    assert_eq!(call.fail(reject("w", 1)), PolicyError::RequestNotFound);
}

#[test]
fn error_already_on() {
    let mut call = couple();
    call.act(request("w", 1));
    assert_eq!(call.fail(request("m", 2)), PolicyError::AlreadyOn);
}

#[test]
fn error_cooldown_boundaries() {
    let mut call = couple();
    call.act(request("m", 1));
    call.act(reject("w", 1));
    let until = t0() + Duration::seconds(60);
    call.wait(59);
    call.wait_ms(999);
    let e = call.fail(request("m", 2));
    assert_eq!(e, PolicyError::Cooldown { until });
    assert_eq!(e.retry_after_secs(call.now), Some(1));
    assert_eq!(e.retry_after_secs(t0()), Some(60));
    call.wait_ms(1);
    call.act(request("m", 2));
}

#[test]
fn error_codes_are_stable() {
    let codes = [
        (PolicyError::NotAMember, "not_a_participant"),
        (PolicyError::NotAConsenter, "not_a_consenter"),
        (PolicyError::OwnRequest, "own_request"),
        (PolicyError::RequestPending, "video_request_pending"),
        (PolicyError::AlreadyOn, "video_already_on"),
        (PolicyError::VideoOff, "video_off"),
        (PolicyError::Cooldown { until: t0() }, "video_request_cooldown"),
        (PolicyError::RequestNotFound, "video_request_not_found"),
    ];
    for (e, code) in codes {
        assert_eq!(e.code(), code);
        assert!(!e.to_string().is_empty());
        assert_eq!(e.retry_after_secs(t0()).is_some(), code == "video_request_cooldown");
    }
}

// ---- policies and groups -------------------------------------------------

#[test]
fn open_video_is_always_on_and_there_is_nothing_to_answer() {
    let mut call = Call::new(Open, vec![man("m"), woman("w")]);
    assert_eq!(call.fail(request("w", 1)), PolicyError::AlreadyOn);
    assert_eq!(call.fail(accept("w", 1)), PolicyError::RequestNotFound);
    assert_eq!(call.fail(reject("w", 1)), PolicyError::RequestNotFound);
    assert_eq!(call.fail(revoke("w")), PolicyError::NotAConsenter);
    assert_eq!(call.fail(request("x", 1)), PolicyError::NotAMember);
    for d in [call.join(woman("w2"), None), call.leave("w"), call.act(expire(1))] {
        assert!(d.ledger.is_empty() && d.notices.is_empty());
        assert_eq!(d.session, VideoSession::new(Open));
    }
    assert!(consenters(Open, &call.members).is_empty());
    assert!(!can_answer(Open, &call.session, &call.members, "m"));
}

#[test]
fn mutual_every_participant_must_consent() {
    let mut call = Call::new(Mutual, vec![man("m"), woman("w")]);
    let d = call.act(request("w", 1));
    assert_eq!(kinds(&d), [K::Request, K::Consent]);
    assert!(matches!(&d.notices[..], [Notice::Requested { to, .. }] if *to == ids(&["m"])));
    call.act(accept("m", 1));
    assert_eq!(call.state(), VideoState::On);
    call.act(revoke("m"));
    assert_eq!(call.state(), VideoState::Off);
}

#[test]
fn two_men_fall_back_to_mutual_consent() {
    let mut call = Call::new(FemaleConsent, vec![man("a"), man("b")]);
    assert_eq!(consenters(FemaleConsent, &call.members).len(), 2);
    call.act(request("a", 1));
    assert_eq!(call.state(), VideoState::Requested);
    call.act(accept("b", 1));
    assert_eq!(call.state(), VideoState::On);
    call.act(revoke("a"));
    assert_eq!(call.state(), VideoState::Off);
}

#[test]
fn an_unknown_or_missing_gender_is_a_consenter() {
    let mut call = Call::new(FemaleConsent, vec![man("m"), member("x", Gender::Other)]);
    assert_eq!(consenters(FemaleConsent, &call.members), BTreeSet::from(["x".to_owned()]));
    call.act(request("m", 1));
    assert_eq!(call.state(), VideoState::Requested, "her consent is needed");
    assert_eq!(call.fail(accept("m", 1)), PolicyError::OwnRequest);
    call.act(accept("x", 1));
    assert_eq!(call.state(), VideoState::On);
    // Beside a woman, still a consenter.
    let mut call = Call::new(FemaleConsent, vec![man("m"), woman("w"), member("x", Gender::Other)]);
    call.act(request("m", 1));
    call.act(accept("w", 1));
    assert_eq!(call.state(), VideoState::Requested);
    call.act(accept("x", 1));
    assert_eq!(call.state(), VideoState::On);
}

#[test]
fn a_revoke_while_video_is_off_answers_the_same_whoever_is_present() {
    for members in
        [vec![man("m"), woman("w")], vec![man("m"), man("m2")], vec![man("m"), woman("w"), man("m2")]]
    {
        let mut call = Call::new(FemaleConsent, members);
        assert_eq!(call.fail(revoke("m")), PolicyError::VideoOff);
    }
}

#[test]
fn a_requester_who_is_no_consenter_may_withdraw_the_request() {
    let mut call = trio();
    call.act(request("m", 1));
    let d = call.act(revoke("m"));
    assert_eq!(d.ledger, [entry(K::Withdraw, Some("m"), Some(1))]);
    assert!(d.notices.is_empty());
    assert_eq!(call.state(), VideoState::Off);
}

#[test]
fn every_requester_consents_to_their_own_request_in_the_ledger() {
    for members in [vec![man("m"), woman("w")], vec![man("m"), man("m2")]] {
        let mut call = Call::new(FemaleConsent, members);
        let d = call.act(request("m", 1));
        assert_eq!(d.ledger, [entry(K::Request, Some("m"), Some(1)), entry(K::Consent, Some("m"), Some(1))]);
    }
}

/// A track as an honest client publishes it: the media is what it declares.
fn honest(kind: TrackKind, source: Option<TrackSource>) -> TrackLabel {
    TrackLabel { declared: kind, media: Some(kind), source }
}

#[test]
fn video_is_video_whatever_its_label() {
    use TrackKind::{Audio, Video};
    use TrackSource::{Camera, Microphone, ScreenShare, ScreenShareAudio};
    use TrackVerdict::{Allowed, Mislabelled, NotNow};
    let on = VideoState::On;
    let off = VideoState::Off;
    let cases = [
        (Audio, Some(Microphone), off, false, Allowed),
        (Audio, Some(Microphone), on, false, Allowed),
        (Audio, None, off, false, Allowed),
        (Audio, Some(ScreenShareAudio), off, true, NotNow),
        (Audio, Some(ScreenShareAudio), on, true, Allowed),
        (Audio, Some(Camera), on, true, Mislabelled),
        (Audio, Some(ScreenShare), on, true, Mislabelled),
        (Video, Some(Camera), on, false, Allowed),
        (Video, Some(Camera), off, true, NotNow),
        (Video, Some(Camera), VideoState::Requested, true, NotNow),
        (Video, Some(ScreenShare), on, true, Allowed),
        (Video, Some(ScreenShare), on, false, NotNow),
        (Video, Some(ScreenShare), off, true, NotNow),
        (Video, Some(Microphone), off, true, Mislabelled),
        (Video, Some(Microphone), on, true, Mislabelled),
        (Video, Some(ScreenShareAudio), on, true, Mislabelled),
        (Video, Some(ScreenShareAudio), off, false, Mislabelled),
        (Video, None, on, true, Mislabelled),
    ];
    for (kind, source, state, share, verdict) in cases {
        let track = honest(kind, source);
        assert_eq!(judge_track(track, state, share), verdict, "{track:?} {state:?} {share}");
    }
    let data = TrackLabel { declared: TrackKind::Other, media: None, source: Some(Microphone) };
    assert_eq!(judge_track(data, off, false), Allowed);
}

#[test]
fn video_declared_as_audio_is_a_lie_whatever_its_source_and_the_video_state() {
    for source in [Some(TrackSource::Microphone), Some(TrackSource::ScreenShareAudio), None] {
        for state in [VideoState::Off, VideoState::Requested, VideoState::On] {
            let track = TrackLabel { declared: TrackKind::Audio, media: Some(TrackKind::Video), source };
            assert_eq!(track.kind(), TrackKind::Video);
            assert_eq!(judge_track(track, state, true), TrackVerdict::Mislabelled, "{track:?} {state:?}");
        }
    }
    // Even as a camera while video is on: the declared type disagrees with the media.
    let camera = TrackLabel {
        declared: TrackKind::Audio,
        media: Some(TrackKind::Video),
        source: Some(TrackSource::Camera),
    };
    assert_eq!(judge_track(camera, VideoState::On, true), TrackVerdict::Mislabelled);
    let reverse = TrackLabel {
        declared: TrackKind::Video,
        media: Some(TrackKind::Audio),
        source: Some(TrackSource::Camera),
    };
    assert_eq!(judge_track(reverse, VideoState::On, true), TrackVerdict::Mislabelled);
}

#[test]
fn a_codecs_mime_type_tells_its_kind() {
    assert_eq!(TrackKind::of_mime("video/VP8"), Some(TrackKind::Video));
    assert_eq!(TrackKind::of_mime("Video/H264"), Some(TrackKind::Video));
    assert_eq!(TrackKind::of_mime("audio/opus"), Some(TrackKind::Audio));
    assert_eq!(TrackKind::of_mime("audio/red"), Some(TrackKind::Audio));
    assert_eq!(TrackKind::of_mime(""), None);
    assert_eq!(TrackKind::of_mime("application/x-thing"), Some(TrackKind::Other));
    assert_eq!(TrackKind::of_mime("video"), Some(TrackKind::Video));
}

#[test]
fn a_participant_sees_only_requesters_and_their_own_steps() {
    assert_eq!(visible_actor(K::Request, Some("m"), "w"), Some("m"));
    assert_eq!(visible_actor(K::Consent, Some("w"), "w"), Some("w"));
    for kind in [K::Consent, K::Reject, K::Revoke, K::Withdraw, K::On, K::Off, K::Violation, K::Expire] {
        assert_eq!(visible_actor(kind, Some("w"), "m"), None, "{kind:?}");
    }
    assert_eq!(visible_actor(K::Expire, None, "m"), None);
}

#[test]
fn two_women_both_must_consent_and_either_revokes() {
    let mut call = trio();
    call.act(request("w1", 1));
    assert_eq!(call.state(), VideoState::Requested);
    call.act(accept("w2", 1));
    assert_eq!(call.state(), VideoState::On);
    call.act(revoke("w2"));
    assert_eq!(call.state(), VideoState::Off);
}

#[test]
fn the_last_woman_leaving_makes_the_men_consenters() {
    let mut call = Call::new(FemaleConsent, vec![man("m1"), man("m2"), woman("w")]);
    call.act(request("m1", 1));
    call.act(accept("w", 1));
    assert_eq!(call.state(), VideoState::On);
    let d = call.leave("w");
    assert_eq!(d.ledger, [entry(K::Off, Some("w"), None)]);
    assert_eq!(d.notices, [Notice::Off { to: ids(&["m1", "m2"]) }]);
}

#[test]
fn a_requesters_consent_counts_once_he_becomes_a_consenter() {
    let mut call = Call::new(FemaleConsent, vec![man("m1"), man("m2"), woman("w")]);
    call.act(request("m1", 1));
    call.leave("w");
    assert!(can_answer(FemaleConsent, &call.session, &call.members, "m2"));
    call.act(accept("m2", 1));
    assert_eq!(call.state(), VideoState::On);
}

#[test]
fn the_requester_leaving_withdraws_the_request() {
    let mut call = trio();
    call.act(request("m", 1));
    call.act(accept("w1", 1));
    let d = call.leave("m");
    assert_eq!(d.ledger, [entry(K::Withdraw, Some("m"), Some(1))]);
    assert_eq!(call.state(), VideoState::Off);
    assert!(call.session.consents.is_empty());
}

#[test]
fn a_leave_keeps_video_on_while_the_rest_consented() {
    let mut call = trio();
    call.act(request("w1", 1));
    call.act(accept("w2", 1));
    let d = call.leave("m");
    assert!(d.ledger.is_empty() && d.notices.is_empty());
    assert_eq!(call.state(), VideoState::On);
    call.leave("w2");
    assert_eq!(call.state(), VideoState::On);
    assert_eq!(call.session.consents, BTreeSet::from(["w1".to_owned()]));
}

#[test]
fn video_does_not_outlive_an_empty_call() {
    let mut call = couple();
    call.act(request("w", 1));
    call.leave("m");
    let d = call.leave("w");
    assert_eq!(kinds(&d), [K::Off]);
    assert_eq!(call.state(), VideoState::Off);
}

#[test]
fn a_leaver_still_listed_in_members_is_ignored() {
    let mut call = couple();
    call.act(request("w", 1));
    // The caller forgot to drop her from `members`.
    let d = call.act(Action::Leave { user: "w".into() });
    assert_eq!(kinds(&d), [K::Off]);
    assert_eq!(d.notices, [Notice::Off { to: ids(&["m"]) }]);
}

#[test]
fn can_answer_matches_accept() {
    let mut call = trio();
    assert!(!can_answer(FemaleConsent, &call.session, &call.members, "w1"));
    call.act(request("m", 1));
    let s = &call.session;
    assert!(can_answer(FemaleConsent, s, &call.members, "w1"));
    assert!(!can_answer(FemaleConsent, s, &call.members, "m"));
    assert!(!can_answer(FemaleConsent, s, &call.members, "x"));
}

// ---- parsing and names ---------------------------------------------------

#[test]
fn parse_policy_and_gender() {
    assert_eq!("female_consent".parse(), Ok(FemaleConsent));
    assert_eq!("mutual".parse(), Ok(Mutual));
    assert_eq!("open".parse(), Ok(Open));
    assert!("Open".parse::<VideoPolicy>().is_err());
    assert!("".parse::<VideoPolicy>().is_err());
    for p in [FemaleConsent, Mutual, Open] {
        assert_eq!(p.to_string().parse(), Ok(p));
    }
    for raw in ["female", "F", "Woman", " female "] {
        assert_eq!(Gender::parse(raw), Gender::Female, "{raw}");
    }
    for raw in ["male", "M", "MAN"] {
        assert_eq!(Gender::parse(raw), Gender::Male, "{raw}");
    }
    for raw in ["", "x", "nonbinary", "females"] {
        assert_eq!(Gender::parse(raw), Gender::Other, "{raw}");
    }
    assert_eq!(Gender::default(), Gender::Other);
}

#[test]
fn names_are_snake_case() {
    assert_eq!(VideoState::Requested.as_str(), "requested");
    assert_eq!(VideoState::Off.as_str(), "off");
    assert_eq!(VideoState::On.as_str(), "on");
    let kinds = [
        (K::Request, "request"),
        (K::Consent, "consent"),
        (K::Reject, "reject"),
        (K::Expire, "expire"),
        (K::Revoke, "revoke"),
        (K::Withdraw, "withdraw"),
        (K::On, "on"),
        (K::Off, "off"),
        (K::Violation, "violation"),
    ];
    for (k, s) in kinds {
        assert_eq!(k.as_str(), s);
    }
}

// ---- random calls --------------------------------------------------------

const POOL: usize = 5;

#[derive(Clone, Debug)]
enum Op {
    Request(usize),
    /// `true`: answer the pending request (if any); `false`: a stale id.
    Accept(usize, bool),
    Reject(usize, bool),
    Revoke(usize),
    Expire(bool),
    Join(usize, Option<bool>),
    Leave(usize),
    Wait(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..POOL;
    prop_oneof![
        3 => user.clone().prop_map(Op::Request),
        3 => (user.clone(), prop::bool::weighted(0.9)).prop_map(|(u, b)| Op::Accept(u, b)),
        2 => (user.clone(), prop::bool::weighted(0.9)).prop_map(|(u, b)| Op::Reject(u, b)),
        2 => user.clone().prop_map(Op::Revoke),
        2 => any::<bool>().prop_map(Op::Expire),
        3 => (user.clone(), prop::option::of(any::<bool>())).prop_map(|(u, c)| Op::Join(u, c)),
        2 => user.prop_map(Op::Leave),
        2 => (0i64..=90).prop_map(Op::Wait),
    ]
}

fn policy() -> impl Strategy<Value = VideoPolicy> {
    prop_oneof![Just(FemaleConsent), Just(Mutual), Just(Open)]
}

fn gender() -> impl Strategy<Value = Gender> {
    prop_oneof![Just(Gender::Female), Just(Gender::Male), Just(Gender::Other)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_calls_keep_the_consent_invariants(
        policy in policy(),
        genders in prop::array::uniform5(gender()),
        mut present in prop::array::uniform5(any::<bool>()),
        ops in prop::collection::vec(op(), 0..=40),
    ) {
        let users: Vec<String> = (0..POOL).map(|i| format!("u{i}")).collect();
        let roster = |present: &[bool; POOL]| -> Vec<Member> {
            (0..POOL)
                .filter(|&i| present[i])
                .map(|i| member(&users[i], genders[i]))
                .collect()
        };
        let timing = Timing::default();
        let mut session = VideoSession::new(policy);
        let mut now = t0();
        let mut next_id = 100u128;
        // Who consented during their current presence since video was last off,
        // tracked from the actions alone.
        let mut shadow: BTreeSet<String> = BTreeSet::new();

        for op in ops {
            let pending = session.request.as_ref().map(|r| r.id);
            let mut fresh = || { next_id += 1; rid(next_id) };
            let pick = |right: bool, fresh: Uuid| if right { pending.unwrap_or(fresh) } else { fresh };
            let action = match op {
                Op::Wait(s) => { now += Duration::seconds(s); continue; }
                Op::Request(i) => Action::Request { by: users[i].clone(), id: fresh() },
                Op::Accept(i, right) => Action::Accept { by: users[i].clone(), id: pick(right, fresh()) },
                Op::Reject(i, right) => Action::Reject { by: users[i].clone(), id: pick(right, fresh()) },
                Op::Revoke(i) => Action::Revoke { by: users[i].clone() },
                Op::Expire(right) => Action::Expire { id: pick(right, fresh()) },
                Op::Join(i, consent) => {
                    if present[i] { continue; }
                    present[i] = true;
                    Action::Join { user: users[i].clone(), consent }
                }
                Op::Leave(i) => {
                    if !present[i] { continue; }
                    present[i] = false;
                    Action::Leave { user: users[i].clone() }
                }
            };
            let members = roster(&present);
            let is_member = |u: &str| members.iter().any(|m| m.user_id == u);
            let before = session.clone();

            let d = match decide(policy, &session, &members, action.clone(), now, &timing) {
                Ok(d) => d,
                Err(e) => {
                    prop_assert!(
                        !matches!(action, Action::Join { .. } | Action::Leave { .. } | Action::Expire { .. }),
                        "{action:?} failed: {e:?}"
                    );
                    if let Action::Request { by, .. } | Action::Accept { by, .. }
                        | Action::Reject { by, .. } | Action::Revoke { by } = &action
                        && !is_member(by)
                    {
                        prop_assert_eq!(e, PolicyError::NotAMember);
                    }
                    continue;
                }
            };
            session = d.session.clone();

            // Only consenters answer or revoke, never their own request ("only consenters answer", "any consenter revokes"),
            // and only off, cooled-down participants request ("anyone may ask", "a decline cools down").
            let before_consenters = consenters(policy, &members);
            match &action {
                Action::Accept { by, id } | Action::Reject { by, id } => {
                    let Some(req) = &before.request else {
                        return Err(TestCaseError::fail("answered without a request"));
                    };
                    prop_assert_eq!(*id, req.id);
                    prop_assert!(by != &req.requested_by);
                    prop_assert!(before_consenters.contains(by));
                }
                Action::Revoke { by } => {
                    let own = before.request.as_ref().is_some_and(|r| &r.requested_by == by);
                    prop_assert!(before_consenters.contains(by) || own);
                    prop_assert!(before.state != VideoState::Off);
                }
                Action::Request { by, .. } => {
                    prop_assert_eq!(before.state, VideoState::Off);
                    prop_assert!(before.cooldowns.get(by).is_none_or(|until| *until <= now));
                }
                _ => {}
            }

            match &action {
                Action::Request { by, .. } | Action::Accept { by, .. } => { shadow.insert(by.clone()); }
                Action::Join { user, consent } => {
                    shadow.remove(user);
                    if *consent == Some(true) { shadow.insert(user.clone()); }
                }
                Action::Leave { user } => { shadow.remove(user); }
                _ => {}
            }
            if session.state == VideoState::Off {
                shadow.clear();
            }

            // (a) video on => every present consenter consented, per the session and per the shadow
            if camera_allowed(session.state) {
                for c in consenters(policy, &members) {
                    prop_assert!(session.consents.contains(&c), "{c} on without consent in session");
                    prop_assert!(shadow.contains(&c), "{c} on without consent by action");
                }
            }
            // (b)
            prop_assert_eq!(session.state == VideoState::Requested, session.request.is_some());
            // (c)
            if policy == Open {
                prop_assert_eq!(session.state, VideoState::On);
            }
            // (d) membership changes never switch video on
            match &action {
                Action::Leave { .. } => prop_assert!(camera_allowed(before.state) || !camera_allowed(session.state)),
                Action::Join { consent, .. } => {
                    prop_assert!(!(before.state == VideoState::Off && session.state == VideoState::On));
                    if !camera_allowed(before.state) && camera_allowed(session.state) {
                        prop_assert_eq!(*consent, Some(true));
                    }
                }
                _ => {}
            }
            // (e) and the other audiences
            let now_consenters = consenters(policy, &members);
            for n in &d.notices {
                match n {
                    Notice::Declined { request_id, to } => {
                        let Some(req) = &before.request else {
                            return Err(TestCaseError::fail("declined without a request"));
                        };
                        prop_assert_eq!(*request_id, req.id);
                        prop_assert_eq!(to, &vec![req.requested_by.clone()]);
                    }
                    Notice::Requested { request, to } => {
                        prop_assert!(!to.is_empty());
                        for u in to {
                            prop_assert!(u != &request.requested_by);
                            prop_assert!(now_consenters.contains(u));
                            prop_assert!(!session.consents.contains(u));
                        }
                    }
                    Notice::On { to } | Notice::Off { to } => {
                        let all: Vec<String> = members.iter().map(|m| m.user_id.clone()).collect();
                        prop_assert_eq!(to, &all);
                    }
                    Notice::Expired { to, .. } => {
                        prop_assert!(to.iter().all(|u| is_member(u)));
                    }
                }
            }
            // Permission flips are always ledgered and announced.
            let flipped = d.video_changed(&before);
            let ledgered = d.ledger.iter().any(|e| matches!(e.kind, K::On | K::Off));
            let announced = d.notices.iter().any(|n| matches!(n, Notice::On { .. } | Notice::Off { .. }));
            prop_assert_eq!(flipped, ledgered);
            prop_assert_eq!(flipped, announced);
            // Consents belong to present members only, and die with video.
            prop_assert!(session.consents.iter().all(|u| is_member(u)));
            if session.state == VideoState::Off {
                prop_assert!(session.consents.is_empty());
            }
            if let Some(r) = &session.request {
                prop_assert!(is_member(&r.requested_by));
                prop_assert_eq!(r.expires_at, r.requested_at + timing.request_timeout);
            }
        }
    }
}

/// One step of a random call: whether it was allowed, the video state it
/// left, and what it wrote to the ledger.
type Step = (bool, VideoState, Vec<LedgerEntry>);

fn trace(policy: VideoPolicy, genders: &[Gender; POOL], mut present: [bool; POOL], ops: &[Op]) -> Vec<Step> {
    let users: Vec<String> = (0..POOL).map(|i| format!("u{i}")).collect();
    let timing = Timing::default();
    let mut session = VideoSession::new(policy);
    let mut now = t0();
    let mut steps = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        let id = rid(n as u128 + 1);
        let pending = session.request.as_ref().map(|r| r.id).unwrap_or(id);
        let action = match *op {
            Op::Wait(s) => {
                now += Duration::seconds(s);
                continue;
            }
            Op::Request(i) => Action::Request { by: users[i].clone(), id },
            Op::Accept(i, right) => {
                Action::Accept { by: users[i].clone(), id: if right { pending } else { id } }
            }
            Op::Reject(i, right) => {
                Action::Reject { by: users[i].clone(), id: if right { pending } else { id } }
            }
            Op::Revoke(i) => Action::Revoke { by: users[i].clone() },
            Op::Expire(right) => Action::Expire { id: if right { pending } else { id } },
            Op::Join(i, consent) => {
                if present[i] {
                    continue;
                }
                present[i] = true;
                Action::Join { user: users[i].clone(), consent }
            }
            Op::Leave(i) => {
                if !present[i] {
                    continue;
                }
                present[i] = false;
                Action::Leave { user: users[i].clone() }
            }
        };
        let members: Vec<Member> =
            (0..POOL).filter(|&i| present[i]).map(|i| member(&users[i], genders[i])).collect();
        match decide(policy, &session, &members, action, now, &timing) {
            Ok(d) => {
                session = d.session.clone();
                steps.push((true, session.state, d.ledger));
            }
            Err(_) => steps.push((false, session.state, Vec::new())),
        }
    }
    steps
}

fn redacted(ledger: &[LedgerEntry], reader: &str) -> Vec<(LedgerKind, Option<String>, Option<Uuid>)> {
    ledger
        .iter()
        .map(|e| (e.kind, visible_actor(e.kind, e.actor.as_deref(), reader).map(str::to_owned), e.request_id))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// What a participant reads of the ledger follows from the steps taken and
    /// the video states they led to (which everyone in the call sees anyway),
    /// never from who is a woman: the same steps with the same outcomes give
    /// the same redacted ledger, whatever the genders.
    #[test]
    fn the_redacted_ledger_never_depends_on_the_genders(
        policy in policy(),
        a in prop::array::uniform5(gender()),
        b in prop::array::uniform5(gender()),
        present in prop::array::uniform5(any::<bool>()),
        ops in prop::collection::vec(op(), 0..=40),
    ) {
        let (ta, tb) = (trace(policy, &a, present, &ops), trace(policy, &b, present, &ops));
        for ((ok_a, state_a, ledger_a), (ok_b, state_b, ledger_b)) in ta.iter().zip(&tb) {
            if ok_a != ok_b || state_a != state_b {
                break;
            }
            for reader in (0..POOL).map(|i| format!("u{i}")) {
                prop_assert_eq!(redacted(ledger_a, &reader), redacted(ledger_b, &reader));
            }
        }
    }
}

fn track_kind() -> impl Strategy<Value = TrackKind> {
    prop_oneof![Just(TrackKind::Audio), Just(TrackKind::Video), Just(TrackKind::Other)]
}

fn track_source() -> impl Strategy<Value = Option<TrackSource>> {
    prop_oneof![
        Just(None),
        Just(Some(TrackSource::Camera)),
        Just(Some(TrackSource::Microphone)),
        Just(Some(TrackSource::ScreenShare)),
        Just(Some(TrackSource::ScreenShareAudio)),
    ]
}

fn video_state() -> impl Strategy<Value = VideoState> {
    prop_oneof![Just(VideoState::Off), Just(VideoState::Requested), Just(VideoState::On)]
}

proptest! {
    /// Video reaches others only as a camera (or a screen, for those who may
    /// share) while video is on, and only when its declared kind is its
    /// media's; under any other label or declaration it is always a lie.
    /// Every pair of declared and real kinds, and an unknown media.
    #[test]
    fn video_is_allowed_only_as_camera_or_screen_while_on(
        declared in track_kind(),
        media in prop::option::of(track_kind()),
        source in track_source(),
        state in video_state(),
        share in any::<bool>(),
    ) {
        let track = TrackLabel { declared, media, source };
        let verdict = judge_track(track, state, share);
        let is_video = declared == TrackKind::Video || media == Some(TrackKind::Video);
        let disagree = media.is_some_and(|m| m != declared);
        if disagree {
            prop_assert_eq!(verdict, TrackVerdict::Mislabelled);
        }
        if is_video {
            let honest = !disagree && matches!(source, Some(TrackSource::Camera | TrackSource::ScreenShare));
            prop_assert_eq!(verdict == TrackVerdict::Mislabelled, !honest);
            if verdict == TrackVerdict::Allowed {
                prop_assert_eq!(state, VideoState::On);
                prop_assert!(source == Some(TrackSource::Camera) || share);
                prop_assert_eq!(media.unwrap_or(TrackKind::Video), TrackKind::Video);
            }
        }
        if verdict == TrackVerdict::Allowed {
            prop_assert!(!disagree);
            if let Some(source) = source {
                prop_assert!(publish_sources(state, share).contains(&source));
            }
        }
        // Nothing is allowed that an honest client's label of the same media
        // would not have been allowed under.
        if verdict == TrackVerdict::Allowed && let Some(media) = media {
            prop_assert_eq!(judge_track(TrackLabel { declared: media, media: Some(media), source }, state, share), verdict);
        }
    }

    /// Under `female_consent` nobody whose gender is not known to be male is
    /// ever left out of the consenters.
    #[test]
    fn an_unknown_gender_is_always_a_consenter(genders in prop::collection::vec(gender(), 1..=6)) {
        let members: Vec<Member> =
            genders.iter().enumerate().map(|(i, g)| member(&format!("u{i}"), *g)).collect();
        let consenters = consenters(FemaleConsent, &members);
        for m in &members {
            if m.gender != Gender::Male {
                prop_assert!(consenters.contains(&m.user_id), "{:?} left out", m.gender);
            }
        }
        prop_assert!(!consenters.is_empty());
    }
}
