//! Tables a user can make grow, flooded through the API: what a flood
//! writes is bounded (media changes per participant, a burst of them one
//! row of the timeline), and the purge deletes such rows, once old, far
//! faster than they can be written. The figures are printed
//! (`--nocapture`); how fast the flood goes depends on the machine, what it
//! writes does not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Options, TestApp, TestUser, spawn_app_with};

/// Changes each participant sends, twice the bucket of .env.example's
/// `RATE_LIMIT_MEDIA_CHANGES_PER_MINUTE`.
const CHANGES: usize = 120;

/// A call of four whose invitees have answered: its id and its people.
async fn call_of_four(app: &TestApp) -> (String, Vec<TestUser>) {
    let people = vec![app.user("female"), app.user("male"), app.user("male"), app.user("female")];
    let (call, _) = app.ring(&people[0], &[&people[1], &people[2], &people[3]], "audio").await;
    for invitee in &people[1..] {
        let (status, body) = app.call_action(&call, "accept", invitee, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    (call, people)
}

#[derive(Default)]
struct Answers {
    ok: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
}

/// `who` toggles their microphone in `call` as fast as they are answered.
async fn toggle(app: Arc<TestApp>, call: String, who: TestUser, answers: Arc<Answers>) {
    let mut on = false;
    for _ in 0..CHANGES {
        on = !on;
        let path = format!("/api/v1/calls/{call}/participants/me");
        let (status, _) =
            app.send(reqwest::Method::PATCH, &path, Some(&who), Some(json!({"audioEnabled": on}))).await;
        let counter = match status {
            StatusCode::OK => &answers.ok,
            StatusCode::TOO_MANY_REQUESTS => &answers.limited,
            _ => &answers.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

const OLD_EVENTS: &str =
    "select count(*) from user_events where call_id = any($1) and created_at < now() - interval '1 day'";
const OLD_TIMELINE: &str =
    "select count(*) from call_events where call_id = any($1) and at < now() - interval '90 days'";

async fn count(app: &TestApp, sql: &'static str, calls: &[Uuid]) -> i64 {
    sqlx::query_scalar(sql).bind(calls).fetch_one(&app.state.db).await.expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_media_flood_writes_bounded_rows_and_the_purge_outruns_it_many_times_over() {
    // A database of its own: the purge measured is the only one there.
    let app = Arc::new(spawn_app_with(Options { isolated: true, ..Options::default() }).await);
    let per_minute = app.config.limits.media_changes_per_minute;
    assert_eq!(per_minute, 60, ".env.example's RATE_LIMIT_MEDIA_CHANGES_PER_MINUTE");
    let mut calls = Vec::new();
    let mut flooders = Vec::new();
    for _ in 0..2 {
        let (call, people) = call_of_four(&app).await;
        calls.push(Uuid::parse_str(&call).expect("a call id"));
        flooders.extend(people.into_iter().map(|who| (call.clone(), who)));
    }
    let media_events = "select count(*) from user_events where call_id = any($1) and type = 'media.updated'";
    let before_events = count(&app, media_events, &calls).await;
    let answers = Arc::new(Answers::default());
    let started = Instant::now();
    let tasks: Vec<_> = flooders
        .iter()
        .map(|(call, who)| tokio::spawn(toggle(app.clone(), call.clone(), who.clone(), answers.clone())))
        .collect();
    for task in tasks {
        task.await.expect("a flooder");
    }
    let secs = started.elapsed().as_secs_f64();
    let (ok, limited, other) = (
        answers.ok.load(Ordering::Relaxed),
        answers.limited.load(Ordering::Relaxed),
        answers.other.load(Ordering::Relaxed),
    );
    let events = count(&app, media_events, &calls).await - before_events;
    let timeline = count(
        &app,
        "select count(*) from call_events where call_id = any($1) and type = 'media.updated'",
        &calls,
    )
    .await;
    let people = flooders.len() as u64;
    let written_per_sec = events as f64 / secs;
    eprintln!(
        "flood: {people} participants in 2 calls of 4 for {secs:.1} s: {} PATCH ({:.0}/s), {ok} applied, \
         {limited} refused 429, {other} other; user_events +{events} ({:.0} rows/s), media rows in the \
         timeline {timeline} ({:.1} rows/s)",
        ok + limited + other,
        (ok + limited + other) as f64 / secs,
        events as f64 / secs,
        timeline as f64 / secs,
    );
    assert_eq!(other, 0, "every change was applied or refused 429");
    let bucket = u64::from(per_minute) + (secs / 60.0 * f64::from(per_minute)).ceil() as u64;
    assert!(ok <= people * bucket, "at most a bucket of changes each: {ok} > {people} x {bucket}");
    assert!(
        secs >= 60.0 || limited > 0,
        "twice the bucket in under a minute goes past it: {limited} refused in {secs:.1} s"
    );
    assert_eq!(events as u64, ok * 4, "each applied change is one event to each of the four");
    let bursts = people * (secs / 10.0).ceil() as u64 + people;
    assert!(
        timeline as u64 <= bursts,
        "a burst of changes is one row of the timeline: {timeline} > {bursts}"
    );

    // A day on (90 for the timeline), as if such a flood had gone on all day.
    let day_of_flood = 200_000_i64;
    let aged = "update user_events set created_at = now() - interval '2 days', \
                published_at = coalesce(published_at, now()) where call_id = any($1)";
    sqlx::query(aged).bind(&calls).execute(&app.state.db).await.expect("aged");
    sqlx::query("update call_events set at = now() - interval '91 days' where call_id = any($1)")
        .bind(&calls)
        .execute(&app.state.db)
        .await
        .expect("aged");
    // In one transaction: this app's own purge (every 5 s) sees all of it
    // at once or none of it, never half while the rest is being written.
    let mut tx = app.state.db.begin().await.expect("a transaction");
    sqlx::query(
        "insert into user_events (id, user_id, call_id, type, data, created_at, published_at) \
         select gen_random_uuid(), 'flooder-' || (n % 8), $1, 'media.updated', '{}', \
         now() - interval '2 days', now() - interval '2 days' from generate_series(1, $2) n",
    )
    .bind(calls[0])
    .bind(day_of_flood)
    .execute(&mut *tx)
    .await
    .expect("a day of flood");
    sqlx::query(
        "insert into call_events (call_id, type, source, actor, at) \
         select $1, 'livekit.track_published', 'livekit', 'flooder', now() - interval '91 days' \
         from generate_series(1, $2)",
    )
    .bind(calls[1])
    .bind(day_of_flood / 2)
    .execute(&mut *tx)
    .await
    .expect("old timelines");
    // Only what is old counts: a burst's last row of the timeline, and its
    // client events, may be written after the ageing above. Counted before
    // the commit, so that no purge has taken any yet.
    let old = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).bind(&calls);
    let old_events = old(OLD_EVENTS).fetch_one(&mut *tx).await.expect("a count");
    let old_timeline = old(OLD_TIMELINE).fetch_one(&mut *tx).await.expect("a count");
    tx.commit().await.expect("committed");

    // Two purges at once, as two instances' (this app's own may be a third).
    let started = Instant::now();
    let purge = || callgate::store::housekeeping::purge_old_rows(&app.state.db);
    let (one, two) = tokio::join!(purge(), purge());
    one.expect("a purge");
    two.expect("another purge");
    let secs = started.elapsed().as_secs_f64();
    let left_events = count(&app, OLD_EVENTS, &calls).await;
    let left_timeline = count(&app, OLD_TIMELINE, &calls).await;
    let purged = (old_events - left_events) + (old_timeline - left_timeline);
    eprintln!(
        "purge: {old_events} user_events and {old_timeline} call_events rows, all old, by two purges at once in {secs:.2} s \
         ({:.0} rows/s, {:.0}x the flood's user_events rate)",
        purged as f64 / secs,
        (purged as f64 / secs) / written_per_sec.max(1.0),
    );
    assert_eq!((left_events, left_timeline), (0, 0), "one pass deletes all that is old");
    assert!(
        purged as f64 / secs > 10.0 * written_per_sec,
        "the purge outruns the flood tenfold at least: {:.0}/s vs {written_per_sec:.0}/s",
        purged as f64 / secs
    );
}
