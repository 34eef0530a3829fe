use super::*;
use proptest::prelude::*;

const ENDINGS: &[Ending] = &[
    Ending::Hangup,
    Ending::LastLeft,
    Ending::Removed,
    Ending::RoomClosed,
    Ending::MaxDuration,
    Ending::RingTimeout,
    Ending::ConnectTimeout,
    Ending::Declined,
    Ending::Busy,
    Ending::Moderator,
];

#[derive(Clone, Copy, Debug)]
enum Step {
    Answer,
    Connect(usize),
    End(Ending),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Answer),
        (0usize..4).prop_map(Step::Connect),
        proptest::sample::select(ENDINGS).prop_map(Step::End),
    ]
}

fn apply(state: CallState, step: Step) -> CallState {
    if !is_live(state) {
        return state;
    }
    match step {
        Step::Answer => answered(state).unwrap_or(state),
        Step::Connect(n) => connected(state, n).unwrap_or(state),
        Step::End(ending) => {
            let (outcome, _) = end(state, ending);
            assert!(state == CallState::Active || outcome != Outcome::Completed);
            after_end(state)
        }
    }
}

proptest! {
    #[test]
    fn an_ended_call_never_becomes_live_again(steps in proptest::collection::vec(step(), 0..20)) {
        let mut state = CallState::Ringing;
        let mut ended = false;
        for s in steps {
            state = apply(state, s);
            ended |= state == CallState::Ended;
            prop_assert!(!(ended && is_live(state)));
        }
    }

    #[test]
    fn every_state_reachable_from_ringing_can_end(steps in proptest::collection::vec(step(), 0..20)) {
        let mut state = CallState::Ringing;
        for s in steps {
            state = apply(state, s);
            for ending in ENDINGS {
                prop_assert_eq!(after_end(state), CallState::Ended);
                let _ = end(state, *ending);
            }
        }
    }

    #[test]
    fn states_only_move_forward(steps in proptest::collection::vec(step(), 0..20)) {
        let rank = |s: CallState| CallState::ALL.iter().position(|x| *x == s);
        let mut state = CallState::Ringing;
        for s in steps {
            let next = apply(state, s);
            prop_assert!(rank(next) >= rank(state));
            state = next;
        }
    }

    #[test]
    fn ending_an_active_call_completes_it_unless_refused_or_timed_out(i in 0..ENDINGS.len()) {
        let ending = ENDINGS[i];
        let (outcome, _) = end(CallState::Active, ending);
        let exempt = matches!(
            ending,
            Ending::RingTimeout | Ending::ConnectTimeout | Ending::Declined | Ending::Busy
        );
        prop_assert!(exempt || outcome == Outcome::Completed);
    }

    #[test]
    fn a_call_that_never_became_active_is_not_completed(i in 0..ENDINGS.len(), ringing in any::<bool>()) {
        let state = if ringing { CallState::Ringing } else { CallState::Connecting };
        let (outcome, _) = end(state, ENDINGS[i]);
        prop_assert_ne!(outcome, Outcome::Completed);
    }
}

#[test]
fn answering_rings_no_more_and_two_people_make_a_call_active() {
    assert_eq!(answered(CallState::Ringing), Some(CallState::Connecting));
    assert_eq!(answered(CallState::Connecting), None);
    assert_eq!(connected(CallState::Connecting, 1), None);
    assert_eq!(connected(CallState::Connecting, 2), Some(CallState::Active));
    assert_eq!(connected(CallState::Ringing, 2), None);
}

#[test]
fn the_outcomes_the_lifecycle_has_always_written() {
    use CallState::*;
    assert_eq!(end(Ringing, Ending::Hangup), (Outcome::Cancelled, EndReason::Cancelled));
    assert_eq!(end(Connecting, Ending::Hangup), (Outcome::Cancelled, EndReason::Hangup));
    assert_eq!(end(Active, Ending::Hangup), (Outcome::Completed, EndReason::Hangup));
    assert_eq!(end(Connecting, Ending::LastLeft), (Outcome::Cancelled, EndReason::Hangup));
    assert_eq!(end(Active, Ending::Removed), (Outcome::Completed, EndReason::Violation));
    assert_eq!(end(Connecting, Ending::RoomClosed), (Outcome::Failed, EndReason::RoomClosed));
    assert_eq!(end(Connecting, Ending::MaxDuration), (Outcome::Failed, EndReason::MaxDuration));
}

#[test]
fn a_moderator_ends_a_call_as_a_hangup_would_with_a_reason_of_its_own() {
    use CallState::*;
    assert_eq!(end(Active, Ending::Moderator), (Outcome::Completed, EndReason::Moderator));
    assert_eq!(end(Ringing, Ending::Moderator), (Outcome::Cancelled, EndReason::Moderator));
    assert_eq!(end(Connecting, Ending::Moderator), (Outcome::Cancelled, EndReason::Moderator));
}
