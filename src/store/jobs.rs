//! The `jobs` table: what must happen later or again, written in the
//! transaction that decides it and run by `workers::jobs` (migration 0017).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::CallId;
use crate::store::DeadlineKind;

/// The channel a runner LISTENs on; a job due now is NOTIFYed there.
pub const JOBS_NOTIFY: &str = "callgate_jobs";

/// The advisory lock space of lanes ("cgjb"); the other key is the lane's hash.
const LANE_LOCKS: i32 = 0x63676a62;

/// A job, as its payload says (the `kind` column repeats the tag).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// What happens to a call if nothing else does first.
    Deadline {
        call: Uuid,
        deadline: DeadlineKind,
        #[serde(rename = "ref")]
        ref_id: Option<Uuid>,
    },
    /// An appointment's next check: its opening, then the no-show.
    Appointment { appointment: Uuid },
    /// LiveKit Egress put in line with the call's consent to record: a
    /// recording started or stopped, and strays stopped
    /// (`calls::recording::sync`).
    Recording { call: Uuid },
    /// A recording's file is done: checked and kept (`calls::recording::finish`).
    RecordingFile { recording: Uuid },
    /// LiveKit put in line with the call's committed state, again: the
    /// settling right after the commit failed (`calls::enforce`).
    Settle(Settle),
}

/// What LiveKit must still hear about a call beyond its committed video
/// state (the fields of `calls::enforce::Effects` that were not done).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Settle {
    pub call: Uuid,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rights_for: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdraw: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync: bool,
}

impl Job {
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Deadline { .. } => "deadline",
            Job::Appointment { .. } => "appointment",
            Job::Recording { .. } => "recording",
            Job::RecordingFile { .. } => "recording_file",
            Job::Settle(_) => "settle",
        }
    }

    /// The jobs of one lane run one at a time: a call's, an appointment's.
    pub fn lane(&self) -> String {
        match self {
            Job::Deadline { call, .. } | Job::Recording { call } | Job::Settle(Settle { call, .. }) => {
                format!("call:{call}")
            }
            Job::Appointment { appointment } => format!("appointment:{appointment}"),
            Job::RecordingFile { recording } => format!("recording:{recording}"),
        }
    }

    /// At most one pending job per key. A settling's retries have none:
    /// each reads the committed state afresh but carries its own removals.
    pub fn dedupe_key(&self) -> Option<String> {
        match self {
            Job::Deadline { call, deadline, .. } => Some(deadline_key(CallId(*call), *deadline)),
            Job::Appointment { appointment } => Some(format!("appointment:{appointment}")),
            Job::Recording { call } => Some(format!("recording:{call}")),
            Job::RecordingFile { recording } => Some(format!("recording_file:{recording}")),
            Job::Settle(_) => None,
        }
    }
}

fn deadline_key(call: CallId, kind: DeadlineKind) -> String {
    format!("deadline:{}:{}", kind.as_str(), call.0)
}

/// When a job with the same key is pending already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Again {
    /// It takes this one's time and payload.
    Replace,
    /// It keeps its payload and the earlier of the two times.
    Earliest,
}

/// Writes `job`, due at `run_at`, in the caller's transaction; `wake`: a
/// runner is told at once (a job due now), not at its next poll.
pub async fn enqueue(
    conn: &mut PgConnection,
    job: &Job,
    run_at: DateTime<Utc>,
    again: Again,
    wake: bool,
) -> sqlx::Result<()> {
    let payload = serde_json::to_value(job).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    // One literal per (again, wake), so that each is checked; the channel
    // notified is `JOBS_NOTIFY`.
    macro_rules! insert {
        ($sql:literal) => {
            sqlx::query!($sql, job.kind(), job.lane(), job.dedupe_key(), payload, run_at)
                .execute(conn)
                .await?
        };
    }
    match (again, wake) {
        (Again::Replace, false) => insert!(
            "insert into jobs (kind, lane, dedupe_key, payload, run_at) values ($1, $2, $3, $4, $5) \
             on conflict (dedupe_key) \
             do update set run_at = excluded.run_at, payload = excluded.payload, attempts = 0"
        ),
        (Again::Earliest, false) => insert!(
            "insert into jobs (kind, lane, dedupe_key, payload, run_at) values ($1, $2, $3, $4, $5) \
             on conflict (dedupe_key) do update set run_at = least(jobs.run_at, excluded.run_at)"
        ),
        (Again::Replace, true) => insert!(
            "with queued as (insert into jobs (kind, lane, dedupe_key, payload, run_at) \
             values ($1, $2, $3, $4, $5) on conflict (dedupe_key) \
             do update set run_at = excluded.run_at, payload = excluded.payload, attempts = 0 returning 1) \
             select pg_notify('callgate_jobs', '') from queued"
        ),
        (Again::Earliest, true) => insert!(
            "with queued as (insert into jobs (kind, lane, dedupe_key, payload, run_at) \
             values ($1, $2, $3, $4, $5) on conflict (dedupe_key) \
             do update set run_at = least(jobs.run_at, excluded.run_at) returning 1) \
             select pg_notify('callgate_jobs', '') from queued"
        ),
    };
    Ok(())
}

/// Removes the pending job of `key` (a deadline no longer wanted).
async fn cancel(conn: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query!("delete from jobs where dedupe_key = $1", key).execute(conn).await?;
    Ok(())
}

pub async fn cancel_deadline(conn: &mut PgConnection, call: CallId, kind: DeadlineKind) -> sqlx::Result<()> {
    cancel(conn, &deadline_key(call, kind)).await
}

pub async fn cancel_appointment(conn: &mut PgConnection, appointment: Uuid) -> sqlx::Result<()> {
    cancel(conn, &format!("appointment:{appointment}")).await
}

/// Up to `limit` lanes with a job due at `now`, the most overdue first (a
/// plain read: a lane is taken by [`take`]).
pub async fn due_lanes(db: &sqlx::PgPool, now: DateTime<Utc>, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "select lane from jobs where run_at <= $1 group by lane order by min(run_at), min(id) limit $2",
        now,
        limit,
    )
    .fetch_all(db)
    .await
}

/// When the next job is due, if any.
pub async fn next_due(db: &sqlx::PgPool) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!("select min(run_at) from jobs").fetch_one(db).await
}

#[derive(Debug)]
pub struct Taken {
    pub id: i64,
    pub kind: String,
    pub lane: String,
    pub dedupe_key: Option<String>,
    pub payload: serde_json::Value,
    pub run_at: DateTime<Utc>,
    pub attempts: i32,
}

/// Takes the lane's first job due at `now` for this transaction: the lane
/// is locked until it ends (no other runner takes its jobs meanwhile) and
/// the row deleted, so it is gone if the transaction commits and back if
/// it does not. `None`: the lane is busy elsewhere or has nothing due.
pub async fn take(conn: &mut PgConnection, lane: &str, now: DateTime<Utc>) -> sqlx::Result<Option<Taken>> {
    sqlx::query_as!(
        Taken,
        "delete from jobs where id = (select id from jobs \
           where lane = $1 and run_at <= $2 and pg_try_advisory_xact_lock($3, hashtext($1)) \
           order by run_at, id limit 1 for update skip locked) \
         returning id, kind, lane, dedupe_key, payload, run_at, attempts",
        lane,
        now,
        LANE_LOCKS,
    )
    .fetch_optional(conn)
    .await
}

/// After its transaction rolled back (the job is pending again): due at
/// `run_at`, with one more failure and its error (`None`: not a failure,
/// only a later time).
pub async fn retry_at(
    db: &sqlx::PgPool,
    taken: &Taken,
    run_at: DateTime<Utc>,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update jobs set run_at = $2, attempts = attempts + $3, last_error = coalesce($4, last_error) \
         where id = $1",
        taken.id,
        run_at,
        i32::from(error.is_some()),
        error,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// After its transaction rolled back: the job is given up.
pub async fn give_up(db: &sqlx::PgPool, taken: &Taken) -> sqlx::Result<()> {
    sqlx::query!("delete from jobs where id = $1", taken.id).execute(db).await?;
    Ok(())
}
