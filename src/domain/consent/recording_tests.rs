//! Consent to record: the video machine under `RecordingPolicy::rules`.
//! Everyone present is a consenter, whatever their gender.

use std::collections::BTreeSet;

use chrono::TimeZone;
use proptest::prelude::*;

use super::tests::{POOL, Where, World, gender, op, rid, user};
use super::*;

fn rules() -> VideoPolicy {
    RecordingPolicy::AllParty.rules().expect("all_party records")
}

fn person(id: &str, gender: Gender) -> Member {
    Member { user_id: id.to_owned(), gender, may_share_screen: false }
}

struct Recording {
    members: Vec<Member>,
    session: VideoSession,
    now: DateTime<Utc>,
}

impl Recording {
    fn of(members: Vec<Member>) -> Self {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        Self { members, session: VideoSession::new(rules()), now }
    }

    fn act(&mut self, action: Action) -> Result<Decision, PolicyError> {
        let d = decide(rules(), &self.session, &self.members, &[], action, self.now, &Timing::default())?;
        self.session = d.session.clone();
        Ok(d)
    }

    fn ok(&mut self, action: Action) -> Decision {
        let shown = format!("{action:?}");
        self.act(action).unwrap_or_else(|e| panic!("{shown}: {e:?}"))
    }
}

fn ask(by: &str) -> Action {
    Action::Request { by: by.into(), id: rid(1) }
}

fn yes(by: &str) -> Action {
    Action::Accept { by: by.into(), id: rid(1) }
}

fn no(by: &str) -> Action {
    Action::Reject { by: by.into(), id: rid(1) }
}

#[test]
fn recording_is_off_unless_the_policy_allows_it() {
    assert_eq!(RecordingPolicy::default(), RecordingPolicy::Off);
    assert_eq!(RecordingPolicy::Off.rules(), None);
    assert_eq!("all_party".parse(), Ok(RecordingPolicy::AllParty));
    assert!("all-party".parse::<RecordingPolicy>().is_err(), "a misspelt policy stops the service");
}

#[test]
fn a_recording_starts_only_once_everyone_present_said_yes_men_included() {
    let people = vec![person("w", Gender::Female), person("m1", Gender::Male), person("m2", Gender::Male)];
    let mut call = Recording::of(people);
    let asked = call.ok(ask("w"));
    let Some(Notice::Requested { to, .. }) = asked.notices.first() else { panic!("{asked:?}") };
    assert_eq!(to, &vec!["m1".to_string(), "m2".to_string()], "every other participant is asked");

    call.ok(yes("m1"));
    assert_eq!(call.session.state, VideoState::Requested, "m2 has not answered");
    let on = call.ok(yes("m2"));
    assert_eq!(call.session.state, VideoState::On);
    assert!(matches!(on.notices.as_slice(), [Notice::On { to }] if to.len() == 3));
    assert_eq!(on.notices[0].event_of(Subject::Recording), ClientEvent::RecordingOn);
}

#[test]
fn one_no_declines_it_once_all_have_answered_and_cools_the_requester_down() {
    let mut call =
        Recording::of(vec![person("a", Gender::Male), person("b", Gender::Male), person("c", Gender::Male)]);
    call.ok(ask("a"));
    call.ok(no("b"));
    assert_eq!(call.session.state, VideoState::Requested, "sealed until c answers");
    let declined = call.ok(yes("c"));
    assert_eq!(call.session.state, VideoState::Off);
    assert!(
        matches!(declined.notices.as_slice(), [Notice::Declined { to, .. }] if to == &vec!["a".to_string()])
    );
    assert_eq!(declined.notices[0].event_of(Subject::Recording), ClientEvent::RecordingDeclined);
    assert!(matches!(
        call.act(Action::Request { by: "a".into(), id: rid(2) }),
        Err(PolicyError::Cooldown { .. })
    ));
}

#[test]
fn anyone_present_may_stop_it_at_any_time() {
    for stopper in ["w", "m"] {
        let mut call = Recording::of(vec![person("w", Gender::Female), person("m", Gender::Male)]);
        call.ok(ask("w"));
        call.ok(yes("m"));
        let off = call.ok(Action::Revoke { by: stopper.into() });
        assert_eq!(call.session.state, VideoState::Off, "{stopper} stops it");
        assert_eq!(off.ledger.last().map(|e| e.kind), Some(LedgerKind::Off));
    }
}

#[test]
fn a_newcomer_keeps_it_going_only_by_consenting_as_they_join() {
    for (consent, state) in
        [(Some(true), VideoState::On), (Some(false), VideoState::Off), (None, VideoState::Off)]
    {
        let mut call = Recording::of(vec![person("a", Gender::Male), person("b", Gender::Female)]);
        call.ok(ask("a"));
        call.ok(yes("b"));
        call.members.push(person("c", Gender::Male));
        call.ok(Action::Join { user: "c".into(), consent });
        assert_eq!(call.session.state, state, "joined with {consent:?}");
    }
}

#[test]
fn a_leaver_does_not_stop_it_when_everyone_who_stays_consented() {
    let mut call = Recording::of(vec![
        person("a", Gender::Male),
        person("b", Gender::Female),
        person("c", Gender::Female),
    ]);
    call.ok(ask("a"));
    call.ok(yes("b"));
    call.ok(yes("c"));
    call.members.retain(|m| m.user_id != "b");
    call.ok(Action::Leave { user: "b".into() });
    assert_eq!(call.session.state, VideoState::On);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever happens in a call, a recording runs only while every
    /// participant present has consented during their presence, and the
    /// genders never change what happens.
    #[test]
    fn a_recording_runs_only_while_everyone_present_consented(
        a in prop::array::uniform5(gender()),
        b in prop::array::uniform5(gender()),
        present in prop::array::uniform5(any::<bool>()),
        ops in prop::collection::vec(op(), 0..=40),
    ) {
        let at = present.map(|here| if here { Where::Here } else { Where::Away });
        let (mut one, mut other) = (World::new(rules(), a, at), World::new(rules(), b, at));
        for (n, op) in ops.iter().enumerate() {
            let fresh = rid(n as u128 + 100);
            let Some(action) = one.action(op, fresh) else {
                other.action(op, fresh);
                continue;
            };
            other.action(op, fresh);
            let (x, y) = (one.decide(action.clone()), other.decide(action));
            prop_assert_eq!(x.is_ok(), y.is_ok());
            prop_assert_eq!(&one.session, &other.session, "the genders changed what happened");
            if one.session.state == VideoState::On {
                let here: BTreeSet<String> = (0..POOL).filter(|&i| one.at[i] == Where::Here).map(user).collect();
                prop_assert!(!here.is_empty());
                prop_assert!(here.is_subset(&one.session.consents), "{here:?} not all in {:?}", one.session.consents);
            }
        }
    }
}
