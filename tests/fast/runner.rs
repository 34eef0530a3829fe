//! The job runner (`workers::jobs`) itself: one pending job per dedupe key,
//! due by the application's clock, a busy call waited for without counting
//! a failure, a failing job tried again later without holding up the
//! others, an unreadable one given up, and the running runner woken by
//! NOTIFY and stopped with nothing left claimed.

use std::time::Duration as StdDuration;

use callgate::clock::Clock;
use callgate::domain::consent::Gender;
use callgate::domain::{CallId, CallState, Outcome};
use callgate::store::{self, DeadlineKind, jobs::Again, jobs::Job};
use callgate::workers::jobs;
use chrono::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::{World, person};

async fn scalar(world: &World, sql: &'static str, lane: &str) -> i64 {
    sqlx::query_scalar(sql).bind(lane).fetch_one(&world.core.db).await.expect("a count")
}

fn lane(call: CallId) -> String {
    format!("call:{}", call.0)
}

/// Polls (no sleep where nothing else tells) until `done`, for at most 5 s.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let until = std::time::Instant::now() + StdDuration::from_secs(5);
    while !done().await {
        assert!(std::time::Instant::now() < until, "{what}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_scheduled_again_is_moved_not_doubled_and_the_earliest_keeps_the_sooner_time() {
    let world = World::new().await;
    let call = CallId::new();
    let now = world.clock.now();
    let mut tx = world.core.db.begin().await.expect("a transaction");
    let at = |secs| now + Duration::seconds(secs);
    store::schedule(&mut tx, call, DeadlineKind::Connect, at(10), None).await.expect("one");
    store::schedule(&mut tx, call, DeadlineKind::Connect, at(20), None).await.expect("again");
    store::deadlines::schedule_earliest(&mut tx, call, DeadlineKind::Rejoin, at(30)).await.expect("one");
    tx.commit().await.expect("committed");
    let mut tx = world.core.db.begin().await.expect("a transaction");
    store::deadlines::schedule_earliest(&mut tx, call, DeadlineKind::Rejoin, at(40)).await.expect("later");
    tx.commit().await.expect("committed");

    let rows: Vec<(String, f64)> = sqlx::query_as(
        "select dedupe_key, extract(epoch from run_at - $2)::float8 from jobs where lane = $1 order by run_at",
    )
    .bind(lane(call))
    .bind(now)
    .fetch_all(&world.core.db)
    .await
    .expect("the jobs");
    let keys: Vec<_> =
        rows.iter().map(|(k, at)| (k.split(':').nth(1).unwrap_or_default().to_owned(), *at)).collect();
    assert_eq!(keys, vec![("connect".to_owned(), 20.0), ("rejoin".to_owned(), 30.0)]);

    world.clock.advance(Duration::seconds(19));
    assert_eq!(jobs::run_due(&world.core).await.expect("a run").deadlines, 0, "not due by the clock yet");
    world.clock.advance(Duration::seconds(1));
    assert_eq!(jobs::run_due(&world.core).await.expect("a run").deadlines, 1, "due by the clock");
    assert_eq!(scalar(&world, "select count(*) from jobs where lane = $1", &lane(call)).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_whose_call_is_busy_waits_without_a_failure_and_fires_once_the_call_is_free() {
    let world = World::new().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let ringing = Duration::from_std(world.core.config.timeouts.ringing).expect("a duration");
    world.clock.advance(-(ringing + Duration::seconds(1)));
    let call = world.ring(&alice, &[&bob]).await;
    world.clock.advance(ringing + Duration::seconds(1));
    let mut holder = world.core.db.begin().await.expect("a transaction");
    sqlx::query("select 1 from calls where id = $1 for update")
        .bind(call.0)
        .execute(&mut *holder)
        .await
        .expect("the call held");

    let ran = jobs::run_due(&world.core).await.expect("a run");

    assert_eq!((ran.deadlines, ran.failed), (0, 0), "{ran:?}");
    let attempts = "select attempts::int8 from jobs where lane = $1 and kind = 'deadline'";
    assert_eq!(scalar(&world, attempts, &lane(call)).await, 0, "waiting is no failure");
    holder.commit().await.expect("the call let go");
    world.clock.advance(Duration::seconds(1));
    assert_eq!(jobs::run_due(&world.core).await.expect("a run").deadlines, 1);
    let ended = world.call(&alice, call).await;
    assert_eq!((ended.state, ended.outcome), (CallState::Ended, Some(Outcome::Missed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_tried_again_later_and_an_unreadable_one_given_up_without_holding_up_the_others() {
    let world = World::new().await;
    // A call the service cannot read (a consent state it never writes),
    // with a ringing deadline long due: handling it fails every time.
    let broken = Uuid::new_v4();
    sqlx::query(
        "insert into calls (id, room_name, type, state, initiator_id, video_session) \
         values ($1, $2, 'audio', 'ringing', 'u-broken', '\"not a session\"')",
    )
    .bind(broken)
    .bind(format!("{}{broken}", world.core.config.room_prefix))
    .execute(&world.core.db)
    .await
    .expect("a broken call");
    let past = world.clock.now() - Duration::hours(1);
    let mut tx = world.core.db.begin().await.expect("a transaction");
    let job = Job::Deadline { call: broken, deadline: DeadlineKind::Ringing, ref_id: None };
    store::jobs::enqueue(&mut tx, &job, past, Again::Replace, false).await.expect("its deadline");
    tx.commit().await.expect("committed");
    sqlx::query(
        "insert into jobs (kind, lane, payload, run_at) values ('from_the_future', 'elsewhere', '{\"kind\": 1}', $1)",
    )
    .bind(past)
    .execute(&world.core.db)
    .await
    .expect("an unreadable job");
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let ringing = Duration::from_std(world.core.config.timeouts.ringing).expect("a duration");
    world.clock.advance(-(ringing + Duration::seconds(1)));
    let call = world.ring(&alice, &[&bob]).await;
    world.clock.advance(ringing + Duration::seconds(1));

    let ran = jobs::run_due(&world.core).await.expect("a run");

    assert_eq!((ran.deadlines, ran.failed), (1, 2), "{ran:?}");
    assert_eq!(world.call(&alice, call).await.state, CallState::Ended, "the good deadline fired");
    let failed: (i32, Option<String>, f64) = sqlx::query_as(
        "select attempts, last_error, extract(epoch from run_at - $2)::float8 from jobs where lane = $1",
    )
    .bind(format!("call:{broken}"))
    .bind(world.clock.now())
    .fetch_one(&world.core.db)
    .await
    .expect("the failing job is kept");
    assert_eq!(failed.0, 1);
    assert!(failed.1.as_ref().is_some_and(|e| e.contains("session")), "{failed:?}");
    assert!((4.9..=5.1).contains(&failed.2), "tried again 5 s later: {failed:?}");
    assert_eq!(scalar(&world, "select count(*) from jobs where lane = $1", "elsewhere").await, 0, "given up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_is_woken_by_notify_and_stops_with_nothing_claimed() {
    // Polling every 10 minutes: only a NOTIFY wakes it in time.
    let world = World::configured(|c| c.deadline_poll = StdDuration::from_secs(600)).await;
    let stop = CancellationToken::new();
    let runner = tokio::spawn(jobs::run(world.core.clone(), stop.clone()));
    // Listening, and its first look at the jobs done.
    eventually("the runner listens and has looked", async || {
        let idle: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() and state = 'idle' \
             and (query ilike 'listen%' or query like 'select lane from jobs%')",
        )
        .fetch_one(&world.core.db)
        .await
        .expect("the sessions");
        idle == 2
    })
    .await;
    let gone = CallId::new();
    let mut tx = world.core.db.begin().await.expect("a transaction");
    let job = Job::Deadline { call: gone.0, deadline: DeadlineKind::Connect, ref_id: None };
    store::jobs::enqueue(&mut tx, &job, world.clock.now(), Again::Replace, true)
        .await
        .expect("a job due now");
    tx.commit().await.expect("committed");

    eventually("the job is run", async || {
        scalar(&world, "select count(*) from jobs where lane = $1", &lane(gone)).await == 0
    })
    .await;
    stop.cancel();
    tokio::time::timeout(StdDuration::from_secs(5), runner).await.expect("it stops").expect("cleanly");
    let held: i64 = sqlx::query_scalar(
        "select count(*) from pg_locks where locktype = 'advisory' and classid = x'63676a62'::int::oid",
    )
    .fetch_one(&world.core.db)
    .await
    .expect("the locks");
    assert_eq!(held, 0, "no lane left held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_commit_left_for_livekit_is_finished_before_shutdown_returns() {
    let world = World::new().await;
    let (her, him, w2) =
        (person("her", Gender::Female), person("him", Gender::Male), person("w2", Gender::Female));
    let call = world.answered_call(&her, &[&him, &w2]).await;

    callgate::calls::lifecycle::leave(&world.core, &him, call).await.expect("he leaves");
    world.core.stop.cancel();
    let finished = world.core.drain(StdDuration::from_secs(10)).await;

    assert!(finished, "the work after the commit finished within the grace");
    assert!(
        world.rooms.removed().iter().any(|(_, who)| who == him.id.as_str()),
        "he was put out of the room before shutdown returned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settling_livekit_refused_is_tried_again_by_the_job_runner_even_after_a_restart() {
    let mut world = World::new().await;
    let (her, him, w2) =
        (person("her", Gender::Female), person("him", Gender::Male), person("w2", Gender::Female));
    let call = world.answered_call(&her, &[&him, &w2]).await;
    world.rooms.set_down(true);

    callgate::calls::lifecycle::leave(&world.core, &him, call).await.expect("he leaves");
    world.core.quiesce().await;
    assert!(world.rooms.removed().is_empty(), "LiveKit refused the first try");
    assert_eq!(
        scalar(&world, "select count(*) from jobs where lane = $1 and kind = 'settle'", &lane(call)).await,
        1,
        "what LiveKit did not take is a job of the call's lane"
    );

    // The instance that tried first is gone; LiveKit is back.
    world.restart().await;
    world.rooms.set_down(false);
    world.clock.advance(Duration::seconds(1));
    let ran = jobs::run_due(&world.core).await.expect("a run");

    assert_eq!(ran.settled, 1, "{ran:?}");
    assert!(
        world.rooms.removed().iter().any(|(_, who)| who == him.id.as_str()),
        "the runner put him out: {:?}",
        world.rooms.asked()
    );
    assert_eq!(
        scalar(&world, "select count(*) from jobs where lane = $1 and kind = 'settle'", &lane(call)).await,
        0,
        "nothing left to settle"
    );
}
