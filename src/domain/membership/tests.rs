use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::domain::consent::{self, Action, Gender, Timing, VideoPolicy, VideoSession, VideoState};

fn invitee() -> Member {
    Member { status: Status::Invited, role: Role::Invitee, live: true, admitted: true }
}

fn with(status: Status, live: bool) -> Member {
    Member { status, live, ..invitee() }
}

fn go(at: Member, s: Step) -> Result<Moved, Refusal> {
    step(Some(at), s)
}

const RING: Step = Step::Invite { role: Role::Invitee, admitted: true };

#[test]
fn a_removed_participant_is_never_invited_back_nor_written_busy() {
    let removed = with(Status::Removed, false);
    assert_eq!(go(removed, RING), Err(Refusal::Removed));
    let unavailable = go(removed, Step::Unavailable).expect("answered as busy");
    assert_eq!(unavailable.to, Some(removed), "their status is not rewritten");
    for s in [Step::Answer, Step::LateJoin, Step::Admit, Step::Arrive { admitted: true }] {
        assert_eq!(go(removed, s), Err(Refusal::Removed), "{s:?}");
    }
    let back = go(removed, Step::Join).expect("a join");
    assert!(back.out_of_room && !back.arrived, "in the room again: out of it");
}

#[test]
fn inviting_someone_present_or_reconnecting_is_refused_and_changes_nothing() {
    for status in [Status::Accepted, Status::Joined, Status::Reconnecting, Status::Invited] {
        assert_eq!(go(with(status, true), RING), Err(Refusal::AlreadyIn), "{status:?}");
    }
}

#[test]
fn the_initiator_who_left_can_be_rung_again_and_answers_or_declines_like_anyone() {
    let left = Member { status: Status::Left, role: Role::Initiator, live: false, admitted: true };
    let rung = go(left, RING).expect("rung").to.expect("a member");
    assert!(rung.is_ringing());
    assert_eq!(rung.role, Role::Initiator, "the role stays");
    assert!(go(rung, Step::Answer).expect("answers").arrived);
    let declined = go(rung, Step::Decline).expect("declines").to.expect("a member");
    assert_eq!((declined.status, declined.live), (Status::Declined, false), "free for other calls");
}

#[test]
fn a_busy_or_blocked_newcomer_is_written_as_never_having_taken_part() {
    let busy = step(None, Step::Unavailable).expect("busy").to.expect("a member");
    assert_eq!(busy.status, Status::Busy);
    assert!(!busy.live && !busy.took_part() && !busy.is_present());
    // Someone who took part before keeps their status: busy and blocked read alike.
    let declined = with(Status::Declined, false);
    assert_eq!(go(declined, Step::Unavailable).expect("ok").to, Some(declined));
}

#[test]
fn a_waiting_guest_is_not_present_until_admitted() {
    let booked = Member { status: Status::Invited, role: Role::Invitee, live: false, admitted: false };
    let waiting = go(booked, Step::Arrive { admitted: false }).expect("arrives");
    let guest = waiting.to.expect("a member");
    assert!(guest.is_waiting() && !guest.is_present() && !waiting.arrived);
    // In the room before a host admits them: out of it.
    assert!(go(guest, Step::Join).expect("join").out_of_room);
    let admitted = go(guest, Step::Admit).expect("admitted");
    assert!(admitted.arrived && admitted.to.expect("a member").is_present());
    let turned_away = go(guest, Step::Remove).expect("turned away");
    assert!(!turned_away.departed, "never present, so no departure for consent");
    assert_eq!(turned_away.to.map(|m| m.status), Some(Status::Removed));
}

#[test]
fn a_drop_is_not_a_departure_until_the_grace_is_over() {
    let joined = with(Status::Joined, true);
    let dropped = go(joined, Step::Drop).expect("drop");
    assert!(!dropped.departed && dropped.to.expect("m").status == Status::Reconnecting);
    let reconnecting = dropped.to.expect("m");
    assert!(go(reconnecting, Step::Join).expect("back").to.expect("m").status == Status::Joined);
    assert!(go(reconnecting, Step::GraceOver).expect("gone").departed);
}

#[test]
fn a_leave_or_a_removal_departs_and_puts_them_out_of_the_room() {
    for s in [Step::Leave, Step::Remove] {
        let moved = go(with(Status::Joined, true), s).expect("ok");
        assert!(moved.departed && moved.out_of_room, "{s:?}");
        assert!(!moved.to.expect("m").live);
    }
}

#[test]
fn only_a_group_invitee_who_declined_or_missed_joins_late() {
    assert!(go(with(Status::Missed, false), Step::LateJoin).expect("ok").arrived);
    assert!(go(with(Status::Declined, false), Step::LateJoin).expect("ok").arrived);
    assert_eq!(go(with(Status::Left, false), Step::LateJoin), Err(Refusal::CannotJoinLate));
    assert_eq!(go(with(Status::Busy, false), Step::LateJoin), Err(Refusal::CannotJoinLate));
    let initiator = Member { role: Role::Initiator, ..with(Status::Declined, false) };
    assert_eq!(go(initiator, Step::LateJoin), Err(Refusal::CannotJoinLate));
}

#[test]
fn the_end_of_the_call_frees_everyone_and_maps_each_status_as_the_store_does() {
    let cases = [
        (Status::Invited, Status::Missed),
        (Status::Accepted, Status::Left),
        (Status::Joined, Status::Left),
        (Status::Reconnecting, Status::Left),
        (Status::Declined, Status::Declined),
        (Status::Removed, Status::Removed),
        (Status::Busy, Status::Busy),
    ];
    for (from, to) in cases {
        let ended = go(with(from, true), Step::CallEnded).expect("ok").to.expect("m");
        assert_eq!((ended.status, ended.live), (to, false), "{from:?}");
    }
}

// ----------------------------------------------------------------- any step

fn any_status() -> impl Strategy<Value = Status> {
    prop::sample::select(Status::ALL.to_vec())
}

fn any_member() -> impl Strategy<Value = Option<Member>> {
    let member = (any_status(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(status, init, live, admitted)| Member {
            status,
            role: if init { Role::Initiator } else { Role::Invitee },
            live,
            admitted,
        },
    );
    prop::option::of(member)
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        any::<(bool, bool)>().prop_map(|(init, admitted)| Step::Invite {
            role: if init { Role::Initiator } else { Role::Invitee },
            admitted
        }),
        Just(Step::Unavailable),
        Just(Step::Answer),
        Just(Step::Decline),
        Just(Step::RingTimeout),
        Just(Step::LateJoin),
        any::<bool>().prop_map(|admitted| Step::Arrive { admitted }),
        Just(Step::Join),
        Just(Step::Drop),
        Just(Step::GraceOver),
        Just(Step::Leave),
        Just(Step::Remove),
        Just(Step::Admit),
        Just(Step::CallEnded),
    ]
}

proptest! {
    /// Whatever the member and the step: the answer is a step or a
    /// refusal, a removed member stays removed and never live, arriving and
    /// departing mean what they say, and an unchanged member reports no
    /// change.
    #[test]
    fn every_step_is_a_transition_or_a_refusal(at in any_member(), s in any_step()) {
        if let Ok(moved) = step(at, s) {
            let was_present = at.is_some_and(|m| m.is_present());
            let is_present = moved.to.is_some_and(|m| m.is_present());
            prop_assert_eq!(moved.arrived, !was_present && is_present);
            prop_assert_eq!(moved.departed, was_present && !is_present);
            prop_assert_eq!(moved.changed, moved.to != at);
            if at.is_some_and(|m| m.status == Status::Removed) {
                let to = moved.to.expect("still a member");
                prop_assert_eq!(to.status, Status::Removed);
                prop_assert!(!to.is_present());
                prop_assert!(!to.live || at.is_some_and(|m| m.live));
            }
            let valid = |m: &Member| !matches!(m.status, Status::Busy | Status::Removed) || !m.live;
            if at.as_ref().is_none_or(valid) && let Some(to) = moved.to {
                prop_assert!(valid(&to), "busy or removed is never live: {:?}", to);
            }
        }
    }
}

// -------------------------------------------------- the model, with consent

/// The call as the model checker sees it: each person's membership and the
/// consent policy's session.
#[derive(Clone, Debug)]
struct World {
    members: Vec<Option<Member>>,
    video: VideoSession,
}

/// A request id for the model: one at a time is pending, so one id stands
/// for "the current request".
fn request_id() -> Uuid {
    Uuid::from_u128(7)
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).single().expect("a time")
}

/// Time stands still and nobody is cooled down, so that the model's states
/// are finite; the cooldown and the expiry's timing are tested elsewhere.
fn timing() -> Timing {
    Timing { request_timeout: chrono::Duration::seconds(30), cooldown: chrono::Duration::zero() }
}

fn user(i: usize) -> String {
    format!("u{i}")
}

#[derive(Clone, Copy, Debug)]
enum Move {
    Member(usize, Step, Option<bool>),
    Consent(Action2),
}

#[derive(Clone, Copy, Debug)]
enum Action2 {
    Request(usize),
    Accept(usize),
    Reject(usize),
    Revoke(usize),
    Expire,
}

struct Model {
    policy: VideoPolicy,
    genders: Vec<Gender>,
    appointment: bool,
}

impl Model {
    fn start(&self) -> World {
        let mut members = vec![None; self.genders.len()];
        let first = if self.appointment {
            // Booked: everyone written, nobody live; guests wait until admitted.
            let booked = |role, admitted| Member { status: Status::Invited, role, live: false, admitted };
            for (i, m) in members.iter_mut().enumerate() {
                *m = Some(if i == 0 { booked(Role::Initiator, true) } else { booked(Role::Invitee, false) });
            }
            None
        } else {
            Some(Member { status: Status::Accepted, role: Role::Initiator, live: true, admitted: true })
        };
        if first.is_some() {
            members[0] = first;
        }
        World { members, video: VideoSession::new(self.policy) }
    }

    fn present(&self, w: &World) -> Vec<consent::Member> {
        w.members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.is_some_and(|m| m.is_present()))
            .map(|(i, _)| consent::Member {
                user_id: user(i),
                gender: self.genders[i],
                may_share_screen: true,
            })
            .collect()
    }

    /// Who is being rung: a pending request waits for their answer too.
    fn ringing(&self, w: &World) -> Vec<String> {
        w.members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.is_some_and(|m| m.is_ringing()))
            .map(|(i, _)| user(i))
            .collect()
    }

    fn moves(&self) -> Vec<Move> {
        let n = self.genders.len();
        let mut out = Vec::new();
        for i in 0..n {
            let mut steps: Vec<(Step, Option<bool>)> = if self.appointment {
                vec![(Step::Arrive { admitted: i == 0 }, None), (Step::Admit, None)]
            } else {
                let mut answers: Vec<(Step, Option<bool>)> =
                    [None, Some(true), Some(false)].iter().map(|v| (Step::Answer, *v)).collect();
                answers.extend([None, Some(true), Some(false)].iter().map(|v| (Step::LateJoin, *v)));
                answers.extend([
                    (RING, None),
                    (Step::Unavailable, None),
                    (Step::Decline, None),
                    (Step::RingTimeout, None),
                ]);
                answers
            };
            steps.extend(
                [Step::Join, Step::Drop, Step::GraceOver, Step::Leave, Step::Remove]
                    .iter()
                    .map(|s| (*s, None)),
            );
            out.extend(steps.into_iter().map(|(s, v)| Move::Member(i, s, v)));
            out.extend(
                [Action2::Request(i), Action2::Accept(i), Action2::Reject(i), Action2::Revoke(i)]
                    .map(Move::Consent),
            );
        }
        out.push(Move::Consent(Action2::Expire));
        out
    }

    /// The world after `mv`, or `None` when the step or the action is
    /// refused; `present` is `w`'s present members.
    fn apply(&self, w: &World, present: &[consent::Member], mv: Move) -> Option<World> {
        match mv {
            Move::Member(i, s, video) => {
                let moved = step(w.members[i], s).ok()?;
                if !moved.changed {
                    return None;
                }
                let mut next = w.clone();
                next.members[i] = moved.to;
                // A ring that ends unanswered (declined, missed) is a step
                // the service tells the policy of, as it tells joins and leaves.
                let rang_out = w.members[i].is_some_and(|m| m.is_ringing())
                    && !moved.to.is_some_and(|m| m.is_ringing())
                    && !moved.arrived;
                let action = if moved.arrived {
                    Some(Action::Join { user: user(i), consent: video })
                } else if moved.departed {
                    Some(Action::Leave { user: user(i) })
                } else if rang_out {
                    Some(Action::RingEnded { user: user(i) })
                } else {
                    None
                };
                if let Some(action) = action {
                    let (members, ringing) = (self.present(&next), self.ringing(&next));
                    let decided = consent::decide(
                        self.policy,
                        &next.video,
                        &members,
                        &ringing,
                        action,
                        now(),
                        &timing(),
                    );
                    // What membership tells the policy is never refused.
                    next.video = decided.expect("a join or leave the policy refuses").session;
                }
                Some(next)
            }
            Move::Consent(action) => {
                let id = request_id();
                let action = match action {
                    Action2::Request(i) => Action::Request { by: user(i), id },
                    Action2::Accept(i) => Action::Accept { by: user(i), id },
                    Action2::Reject(i) => Action::Reject { by: user(i), id },
                    Action2::Revoke(i) => Action::Revoke { by: user(i) },
                    Action2::Expire => Action::Expire { id },
                };
                let ringing = self.ringing(w);
                let video =
                    consent::decide(self.policy, &w.video, present, &ringing, action, now(), &timing())
                        .ok()?
                        .session;
                Some(World { members: w.members.clone(), video })
            }
        }
    }

    /// What must hold in every state.
    fn check(&self, w: &World) -> Result<(), String> {
        let members = self.present(w);
        if w.video.state == VideoState::On {
            let consenters = consent::consenters(self.policy, &members);
            if !consenters.is_subset(&w.video.consents) || consenters.is_empty() {
                return Err(format!("video on without every consenter's consent: {w:?}"));
            }
        }
        for m in w.members.iter().flatten() {
            if m.status == Status::Removed && (m.live || m.is_present()) {
                return Err(format!("a removed person is live again: {w:?}"));
            }
            if m.status == Status::Busy && m.live {
                return Err(format!("someone busy is live: {w:?}"));
            }
        }
        Ok(())
    }

    /// The orders of the members that change nothing the rules can see:
    /// the initiator first, invitees of one gender in any order among
    /// themselves (the rules never look at who was invited first).
    fn symmetries(&self) -> Vec<Vec<usize>> {
        let n = self.genders.len();
        let mut orders = vec![vec![0]];
        for _ in 1..n {
            let mut longer = Vec::new();
            for order in &orders {
                for i in 1..n {
                    if !order.contains(&i) {
                        let mut next = order.clone();
                        next.push(i);
                        longer.push(next);
                    }
                }
            }
            orders = longer;
        }
        orders.retain(|order| order.iter().enumerate().all(|(at, &i)| self.genders[at] == self.genders[i]));
        orders
    }

    /// A compact fingerprint of a world, the same for worlds that differ
    /// only by an order of [`Model::symmetries`] (the smallest of theirs).
    fn key(&self, w: &World, symmetries: &[Vec<usize>]) -> Vec<u8> {
        symmetries.iter().map(|order| self.key_in(w, order)).min().unwrap_or_default()
    }

    /// The members (in `order`: place `at` holds member `order[at]`) and the
    /// video session.
    fn key_in(&self, w: &World, order: &[usize]) -> Vec<u8> {
        let mut key = Vec::with_capacity(order.len() + 6);
        for &i in order {
            key.push(match w.members[i] {
                None => 0,
                Some(m) => {
                    let status = Status::ALL.iter().position(|s| *s == m.status).unwrap_or(0) as u8;
                    1 + status * 8
                        + (m.live as u8) * 4
                        + (m.admitted as u8) * 2
                        + (m.role == Role::Initiator) as u8
                }
            });
        }
        key.push(w.video.state as u8);
        let place = |u: &str| order.iter().position(|&i| user(i) == u);
        let requester = w.video.request.as_ref().and_then(|r| place(&r.requested_by));
        key.push(requester.map_or(255, |at| at as u8));
        // Who consented, who said no (sealed until the request is
        // decided), who was asked as a newcomer, who is cooling down: two
        // worlds apart in any of them are two states.
        let video = &w.video;
        let sets: [&dyn Fn(&String) -> bool; 4] = [
            &|u| video.consents.contains(u),
            &|u| video.declines.contains(u),
            &|u| video.asked.contains(u),
            &|u| video.cooldowns.contains_key(u),
        ];
        for holds in sets {
            let mut mask = 0u8;
            for (at, &i) in order.iter().enumerate() {
                if holds(&user(i)) {
                    mask |= 1 << at;
                }
            }
            key.push(mask);
        }
        key
    }

    /// Every state reachable from the start, each checked; the count.
    fn explore(&self) -> usize {
        let start = self.start();
        let symmetries = self.symmetries();
        // A state is queued once, when first reached.
        let mut seen = HashSet::from([self.key(&start, &symmetries)]);
        let mut queue = VecDeque::from([start]);
        let moves = self.moves();
        while let Some(w) = queue.pop_front() {
            if let Err(broken) = self.check(&w) {
                panic!("{broken}");
            }
            let present = self.present(&w);
            for mv in &moves {
                if let Some(next) = self.apply(&w, &present, *mv)
                    && seen.insert(self.key(&next, &symmetries))
                {
                    queue.push_back(next);
                }
            }
        }
        seen.len()
    }
}

/// Every gender assignment of `n` people up to the order of the invitees
/// (the rules never look at who was invited first): the initiator's gender,
/// and how many of the others are women.
fn genders(n: usize) -> Vec<Vec<Gender>> {
    let mut all = Vec::new();
    for initiator in [Gender::Female, Gender::Male] {
        for women in 0..n {
            let others = (1..n).map(|i| if i <= women { Gender::Female } else { Gender::Male });
            all.push(std::iter::once(initiator).chain(others).collect());
        }
    }
    all
}

/// Every interleaving of invites, answers (with and without video), late
/// joins, joins, drops, the end of a grace, leaves, removals, admissions,
/// requests, consents, rejects, revokes and expiries, for two to four people
/// in a call and in an appointment, every gender assignment, under
/// `female_consent` and `mutual`: no reachable state has video on without
/// the consent of every consenter present, a removed person live or a busy
/// one live, and no join or leave that membership tells the policy is
/// refused by it.
#[test]
fn membership_and_consent_together_never_turn_video_on_without_every_consenter() {
    let mut explored = 0;
    for policy in [VideoPolicy::FemaleConsent, VideoPolicy::Mutual] {
        for n in 2..=4 {
            // Under `mutual` genders do not matter.
            let assignments =
                if policy == VideoPolicy::Mutual { vec![vec![Gender::Male; n]] } else { genders(n) };
            for genders in assignments {
                for appointment in [false, true] {
                    explored += Model { policy, genders: genders.clone(), appointment }.explore();
                }
            }
        }
    }
    println!("membership and consent: {explored} states explored");
    assert!(explored > 10_000, "the model explores the space: {explored}");
}
