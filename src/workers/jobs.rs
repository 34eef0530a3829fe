//! The one runner of the `jobs` table (`store::jobs`): a call's deadlines,
//! an appointment's next check, LiveKit Egress put in line with a call's
//! consent to record, a recording's file kept, and a settling of LiveKit
//! that failed right after its commit tried again (`calls::enforce`).
//!
//! Every instance runs it. A pass reads the lanes with a job due (by the
//! `Clock`), then takes each lane's first due job in a transaction of its
//! own (the lane's advisory lock, the row deleted) and does the job's work
//! in that transaction: it commits with the work or not at all, and the
//! jobs of one lane never run side by side. A job that fails is tried again
//! later (`retry`, the one place for backoff and giving up); one whose call
//! or appointment is busy elsewhere, shortly. Woken by NOTIFY for jobs due
//! now, and polls (`DEADLINE_POLL_MS`) for those that come due. On stop, the
//! jobs being run finish and no other is taken; a transaction holds every
//! claim, so nothing is left claimed.
//!
//! Tests drive it with [`run_due`]: every job due by the clock, one at a
//! time, until none is.

use std::time::Duration;

use std::collections::HashSet;

use sqlx::postgres::PgListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::calls::Core;
use crate::calls::appointments::{self, Fire};
use crate::calls::enforce;
use crate::calls::lifecycle::{self, Ended};
use crate::calls::recording;
use crate::domain::CallId;
use crate::store::job_pool;
use crate::store::jobs::{self, JOBS_NOTIFY, Job, Taken};
use crate::workers::deadlines::{self, Fired};

/// Jobs run side by side by one instance (each holds a connection of the
/// runner's own pool while it runs).
const CONCURRENCY: usize = 8;
/// Lanes read per pass.
const BATCH: i64 = 64;
/// A job whose call or appointment is busy elsewhere is tried again this
/// much later.
pub const BUSY: Duration = Duration::from_millis(100);
/// How long a lost LISTEN waits before it is tried again (polling goes on).
const RELISTEN: Duration = Duration::from_secs(1);

/// Waits between tries of a recording's start, stop or file check.
const RECORDING_BACKOFF: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// A recording's file waiting for its storage is tried this often once
/// the backoff is spent.
const RECORDING_FILE_RETRY: Duration = Duration::from_secs(60);

/// Waits between the runner's tries of a settling LiveKit did not take
/// (after the first, right after the commit, and the job's first, 50 ms
/// later): about 15 s in all, then the reconciler takes over (the versions
/// show it the call, and a stranger in a room is put out by its pass).
const SETTLE_BACKOFF: [Duration; 6] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// When a job that failed `attempts` times (this one included) is tried
/// again; `None`: it is given up.
fn retry(job: &Job, attempts: u32) -> Option<Duration> {
    let backoff = RECORDING_BACKOFF.get((attempts as usize).saturating_sub(1)).copied();
    match job {
        // A deadline or an appointment's check must happen: tried again
        // until it does, without holding up the ones behind it.
        Job::Deadline { .. } | Job::Appointment { .. } => Some(Duration::from_secs(5)),
        // Egress refused or LiveKit did not answer: tried a few times, then
        // left (the consent lapses if nothing records: `recording::gave_up`).
        Job::Recording { .. } => backoff,
        // A file egress finished stays on disk until it is kept (a bucket
        // that does not answer): tried until it is, however long that takes.
        Job::RecordingFile { .. } => Some(backoff.unwrap_or(RECORDING_FILE_RETRY)),
        Job::Settle(_) => SETTLE_BACKOFF.get((attempts as usize).saturating_sub(1)).copied(),
    }
}

/// What the jobs run of one [`run_due`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ran {
    /// Deadlines that fired (their call was not busy).
    pub deadlines: usize,
    /// Appointment checks that happened.
    pub appointments: usize,
    /// Recordings started, stopped or checked.
    pub recordings: usize,
    /// Settlings LiveKit took on a try of the runner's.
    pub settled: usize,
    /// Jobs that failed (tried again later, or given up).
    pub failed: usize,
    /// Jobs whose call or appointment was held elsewhere (due again
    /// `BUSY` later by the clock).
    pub busy: usize,
}

impl Ran {
    fn add(&mut self, other: Ran) {
        self.deadlines += other.deadlines;
        self.appointments += other.appointments;
        self.recordings += other.recordings;
        self.settled += other.settled;
        self.failed += other.failed;
        self.busy += other.busy;
    }
}

/// Runs every job due by the clock, one at a time, until none is (a job
/// busy elsewhere or failing comes due again later by the clock).
pub async fn run_due(app: &Core) -> anyhow::Result<Ran> {
    let mut ran = Ran::default();
    loop {
        let mut taken = false;
        for lane in jobs::due_lanes(&app.db, app.clock.now(), BATCH).await? {
            if let Some(one) = run_lane(app, &app.db, &lane).await? {
                taken = true;
                ran.add(one);
            }
        }
        if !taken {
            return Ok(ran);
        }
    }
}

/// Runs the lane's first due job, if no other runner holds the lane.
async fn run_lane(app: &Core, db: &sqlx::PgPool, lane: &str) -> anyhow::Result<Option<Ran>> {
    let mut tx = db.begin().await?;
    let now = app.clock.now();
    let Some(taken) = jobs::take(&mut tx, lane, now).await? else { return Ok(None) };
    let job: Job = match serde_json::from_value(taken.payload.clone()) {
        Ok(job) => job,
        Err(err) => {
            // Written by a newer version, or broken: kept out of the way.
            tracing::error!(job_id = taken.id, kind = taken.kind, error = %err, "a job that cannot be read is given up");
            tx.commit().await?;
            return Ok(Some(Ran { failed: 1, ..Ran::default() }));
        }
    };
    let outcome = run_job(app, &mut tx, &job).await;
    let mut ran = Ran::default();
    match outcome {
        Ok(Outcome::Done(after)) => {
            tx.commit().await?;
            match &job {
                Job::Deadline { .. } => ran.deadlines += 1,
                Job::Appointment { .. } => ran.appointments += 1,
                Job::Recording { .. } | Job::RecordingFile { .. } => ran.recordings += 1,
                Job::Settle(_) => ran.settled += 1,
            }
            after.run(app).await;
        }
        Ok(Outcome::Busy) => {
            tx.rollback().await?;
            jobs::retry_at(db, &taken, now + BUSY, None).await?;
            ran.busy += 1;
        }
        Err(err) if crate::infra::outage::in_chain(&err).is_some() => return Err(err),
        Err(err) => {
            tx.rollback().await?;
            ran.failed += 1;
            failed(app, db, &job, &taken, &err).await?;
        }
    }
    Ok(Some(ran))
}

async fn failed(
    app: &Core,
    db: &sqlx::PgPool,
    job: &Job,
    taken: &Taken,
    err: &anyhow::Error,
) -> anyhow::Result<()> {
    let error = format!("{err:#}");
    let attempts = u32::try_from(taken.attempts).unwrap_or_default() + 1;
    match retry(job, attempts) {
        Some(wait) => {
            tracing::warn!(
                job_id = taken.id,
                kind = taken.kind,
                lane = taken.lane,
                attempts,
                error,
                "a job failed; trying it again later"
            );
            jobs::retry_at(db, taken, app.clock.now() + wait, Some(&error)).await?;
        }
        None => {
            tracing::error!(
                job_id = taken.id,
                kind = taken.kind,
                lane = taken.lane,
                attempts,
                error,
                "a job failed too often; given up"
            );
            jobs::give_up(db, taken).await?;
            match job {
                Job::Recording { call } => recording::gave_up(app, CallId(*call)).await?,
                Job::Settle(settle) => tracing::warn!(
                    call_id = %settle.call,
                    "LiveKit did not take the call's rights; the reconciler will retry"
                ),
                _ => {}
            }
        }
    }
    Ok(())
}

enum Outcome {
    Done(After),
    /// Its call or appointment is held elsewhere.
    Busy,
}

/// What a job leaves to do once its transaction has committed.
enum After {
    Nothing,
    Ended(Box<Ended>),
    Settle(enforce::Effects),
}

impl After {
    async fn run(self, app: &Core) {
        match self {
            After::Nothing => {}
            After::Ended(ended) => lifecycle::after_end(app, &ended).await,
            After::Settle(effects) => enforce::settle_later(app, effects),
        }
    }
}

async fn run_job(app: &Core, tx: &mut sqlx::PgConnection, job: &Job) -> anyhow::Result<Outcome> {
    match job {
        Job::Deadline { call, deadline, ref_id } => {
            Ok(match deadlines::fire(app, tx, CallId(*call), *deadline, *ref_id).await? {
                Fired::Ended(ended) => Outcome::Done(After::Ended(ended)),
                Fired::Changed(effects) => Outcome::Done(After::Settle(effects)),
                Fired::Busy => Outcome::Busy,
            })
        }
        Job::Appointment { appointment } => appointment_due(app, tx, *appointment).await,
        Job::Recording { call } => {
            let lapsed = recording::sync(app, tx, CallId(*call)).await?;
            let call = CallId(*call);
            Ok(Outcome::Done(if lapsed {
                After::Settle(enforce::Effects::for_call(call))
            } else {
                After::Nothing
            }))
        }
        Job::RecordingFile { recording } => {
            recording::finish(app, tx, *recording).await?;
            Ok(Outcome::Done(After::Nothing))
        }
        // LiveKit is told outside the job's transaction (the settling's own
        // reads and writes commit as they go: other instances compare
        // versions); the transaction holds the lane and the job's row.
        Job::Settle(settle) => {
            enforce::settle_job(app, settle).await?;
            Ok(Outcome::Done(After::Nothing))
        }
    }
}

async fn appointment_due(app: &Core, tx: &mut sqlx::PgConnection, id: Uuid) -> anyhow::Result<Outcome> {
    match appointments::fire_due(app, tx, id).await {
        Ok(Some(ended)) => Ok(Outcome::Done(After::Ended(Box::new(ended)))),
        Ok(None) => Ok(Outcome::Done(After::Nothing)),
        Err(Fire::Busy) => Ok(Outcome::Busy),
        Err(Fire::Failed(err)) => Err(anyhow::Error::new(err).context(format!("appointment {id}"))),
    }
}

/// Runs the jobs as they come due, until `stop`; then lets those being
/// run finish.
pub async fn run(app: Core, stop: CancellationToken) {
    let db = job_pool(&app.db, CONCURRENCY as u32 + 1);
    let mut running: JoinSet<(String, anyhow::Result<Option<Ran>>)> = JoinSet::new();
    let mut lanes_running: HashSet<String> = HashSet::new();
    let mut listener: Option<PgListener> = None;
    let mut relisten_at = Instant::now();
    let mut scan = true;
    while !stop.is_cancelled() {
        if listener.is_none() && Instant::now() >= relisten_at {
            listener = listen(&db).await;
            relisten_at = Instant::now() + RELISTEN;
        }
        if scan && running.len() < CONCURRENCY {
            match jobs::due_lanes(&db, app.clock.now(), BATCH).await {
                Ok(lanes) => {
                    for lane in lanes {
                        if running.len() >= CONCURRENCY {
                            break;
                        }
                        if lanes_running.insert(lane.clone()) {
                            let (app, db) = (app.clone(), db.clone());
                            running.spawn(async move {
                                let ran = run_lane(&app, &db, &lane).await;
                                (lane, ran)
                            });
                        }
                    }
                }
                Err(err) => trouble(&app, &err.into()),
            }
        }
        scan = false;
        tokio::select! {
            _ = stop.cancelled() => {}
            Some(done) = running.join_next() => {
                if let Ok((lane, ran)) = done {
                    lanes_running.remove(&lane);
                    match ran {
                        // Its lane (or another) may have more due.
                        Ok(Some(_)) => scan = true,
                        // Held by another runner, or taken meanwhile.
                        Ok(None) => {}
                        Err(err) => trouble(&app, &err),
                    }
                }
            }
            _ = tokio::time::sleep(app.config.deadline_poll) => scan = true,
            woken = wake(&mut listener) => match woken {
                Ok(()) => scan = true,
                Err(err) => {
                    tracing::debug!(error = %err, "lost the LISTEN for jobs; polling");
                    listener = None;
                }
            },
        }
    }
    // The jobs being run finish; nothing else is taken.
    while running.join_next().await.is_some() {}
}

fn trouble(app: &Core, err: &anyhow::Error) {
    match crate::infra::outage::in_chain(err) {
        // Logged once per outage, not once per poll.
        Some(dependency) => app.report_outage(dependency, &format!("{err:#}")),
        None => tracing::warn!(error = format!("{err:#}"), "the job runner failed"),
    }
}

async fn listen(db: &sqlx::PgPool) -> Option<PgListener> {
    let listened = async {
        let mut listener = PgListener::connect_with(db).await?;
        listener.listen(JOBS_NOTIFY).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match listened.await {
        Ok(listener) => Some(listener),
        Err(err) => {
            tracing::debug!(error = %err, "could not LISTEN for jobs; polling");
            None
        }
    }
}

/// Resolves when a job is NOTIFYed (never, without a LISTEN).
async fn wake(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    let Some(listener) = listener else { return std::future::pending().await };
    match listener.try_recv().await? {
        Some(_) => {
            // One scan serves every job NOTIFYed so far.
            while listener.next_buffered().is_some() {}
            Ok(())
        }
        None => Err(sqlx::Error::PoolClosed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recordings_file_is_tried_until_it_is_kept_and_egress_only_a_few_times() {
        let (file, sync) =
            (Job::RecordingFile { recording: Uuid::nil() }, Job::Recording { call: Uuid::nil() });
        assert_eq!(retry(&file, 1), Some(Duration::from_secs(1)));
        assert_eq!(retry(&file, 5), Some(Duration::from_secs(30)));
        assert_eq!(retry(&file, 6), Some(RECORDING_FILE_RETRY));
        assert_eq!(retry(&file, 10_000), Some(RECORDING_FILE_RETRY));
        assert_eq!(retry(&sync, 5), Some(Duration::from_secs(30)));
        assert_eq!(retry(&sync, 6), None);
    }

    #[test]
    fn a_settling_livekit_keeps_refusing_is_tried_for_about_fifteen_seconds_then_left_to_the_reconciler() {
        let settle = Job::Settle(crate::store::jobs::Settle { call: Uuid::nil(), ..Default::default() });
        let waits: Vec<Duration> = (1..).map_while(|attempts| retry(&settle, attempts)).collect();
        assert_eq!(waits.len(), SETTLE_BACKOFF.len());
        let total: Duration = waits.iter().sum();
        assert!((Duration::from_secs(12)..=Duration::from_secs(16)).contains(&total), "{total:?}");
    }
}
