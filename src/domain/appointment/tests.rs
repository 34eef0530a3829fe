use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use super::*;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000 + secs, 0).expect("a time")
}

fn rules() -> Rules {
    Rules {
        early_join: Duration::minutes(10),
        grace: Duration::minutes(15),
        max_duration: Duration::hours(4),
        max_participants: 8,
    }
}

fn happening() -> impl Strategy<Value = Happening> {
    prop_oneof![
        Just(Happening::Opened),
        (0usize..3, 0usize..3)
            .prop_map(|(hosts, admitted_guests)| Happening::Present { hosts, admitted_guests }),
        Just(Happening::Cancelled),
        Just(Happening::EndedByHost),
        Just(Happening::NoShowDeadline),
        Just(Happening::RoomLost),
    ]
}

/// Runs `steps` from `scheduled`; returns every step and whether they met.
fn run(steps: &[Happening]) -> Vec<(Step, bool)> {
    let (mut state, mut met, mut out) = (AppointmentState::Scheduled, false, Vec::new());
    for &what in steps {
        let next = step(state, met, what);
        if next.state == AppointmentState::Active {
            met = true;
        }
        state = next.state;
        out.push((next, met));
    }
    out
}

proptest! {
    #[test]
    fn an_ended_appointment_stays_ended_with_the_outcome_it_ended_with(
        steps in proptest::collection::vec(happening(), 0..30)
    ) {
        let mut ended = None;
        for (step, _) in run(&steps) {
            if let Some(outcome) = ended {
                prop_assert_eq!(step.state, AppointmentState::Ended);
                prop_assert_eq!(step.outcome, None, "it ended once, as {:?}", outcome);
            } else if step.state == AppointmentState::Ended {
                prop_assert!(step.outcome.is_some(), "an end carries an outcome");
                ended = step.outcome;
            }
        }
    }

    #[test]
    fn it_is_completed_exactly_when_a_host_and_an_admitted_guest_met(
        steps in proptest::collection::vec(happening(), 0..30)
    ) {
        for (step, met) in run(&steps) {
            if let Some(outcome) = step.outcome {
                prop_assert_eq!(outcome == AppointmentOutcome::Completed, met, "{:?}", outcome);
            }
        }
    }

    #[test]
    fn it_is_active_only_once_opened(steps in proptest::collection::vec(happening(), 0..30)) {
        let mut opened = false;
        for (what, (step, _)) in steps.iter().zip(run(&steps)) {
            opened |= *what == Happening::Opened;
            if step.state == AppointmentState::Active {
                prop_assert!(opened, "active without having opened");
            }
        }
    }

    #[test]
    fn a_booking_in_the_future_within_the_longest_duration_is_accepted(
        lead in 1i64..86_400, minutes in 1i64..=240
    ) {
        let window = Window { starts_at: at(lead), ends_at: at(lead + minutes * 60) };
        prop_assert_eq!(check_window(window, at(0), &rules()), Ok(()));
    }
}

#[test]
fn a_booking_names_the_field_it_breaks() {
    let r = rules();
    let field = |w: Window| check_window(w, at(0), &r).map_err(|e| e.field);
    assert_eq!(field(Window { starts_at: at(0), ends_at: at(60) }), Err("startsAt"));
    assert_eq!(field(Window { starts_at: at(60), ends_at: at(60) }), Err("endsAt"));
    assert_eq!(field(Window { starts_at: at(60), ends_at: at(60 + 4 * 3600 + 1) }), Err("endsAt"));
    let people = |hosts: &[&str], guests: &[&str]| check_people(hosts, guests, &r).map_err(|e| e.field);
    assert_eq!(people(&[], &["g"]), Err("hosts"));
    assert_eq!(people(&["h"], &[]), Err("guests"));
    assert_eq!(people(&["h", "h"], &["g"]), Err("hosts"));
    assert_eq!(people(&["h"], &["h"]), Err("guests"));
    assert_eq!(people(&["h"], &["a", "b", "c", "d", "e", "f", "g", "i"]), Err("guests"));
    assert_eq!(people(&["h"], &["g"]), Ok(()));
}

#[test]
fn it_can_be_joined_from_its_early_join_until_the_grace_after_its_end() {
    let (r, window) = (rules(), Window { starts_at: at(3600), ends_at: at(7200) });
    let open = AppointmentState::Open;
    assert_eq!(joinable(open, window, at(0), &r), Joinable::NotYet { opens_at: at(3000) });
    assert_eq!(joinable(open, window, at(3000), &r), Joinable::Yes);
    assert_eq!(joinable(open, window, at(8099), &r), Joinable::Yes);
    assert_eq!(joinable(open, window, at(8100), &r), Joinable::Over);
    assert_eq!(joinable(AppointmentState::Ended, window, at(4000), &r), Joinable::Over);
}

#[test]
fn nobody_coming_is_a_no_show_and_one_side_alone_too() {
    let open = step(AppointmentState::Scheduled, false, Happening::Opened);
    assert_eq!(open.state, AppointmentState::Open);
    let host_alone = step(open.state, false, Happening::Present { hosts: 1, admitted_guests: 0 });
    assert_eq!(host_alone.state, AppointmentState::Open, "a host alone does not start it");
    let ended = step(host_alone.state, false, Happening::NoShowDeadline);
    assert_eq!(ended.outcome, Some(AppointmentOutcome::NoShow));
}

#[test]
fn the_no_show_deadline_does_not_end_an_appointment_in_progress() {
    let active = step(AppointmentState::Open, false, Happening::Present { hosts: 1, admitted_guests: 1 });
    assert_eq!(active.state, AppointmentState::Active);
    assert_eq!(step(active.state, true, Happening::NoShowDeadline).state, AppointmentState::Active);
    assert_eq!(step(active.state, true, Happening::EndedByHost).outcome, Some(AppointmentOutcome::Completed));
}
