//! What happened: a call's timeline for its participants, and service-wide
//! statistics for administrators.
//!
//! # Statistics over `[from, to)`
//! The window selects calls by when they were started.
//! - `calls.byOutcome`: ended calls by outcome; `calls.total` counts live ones too.
//! - `activeNow`: calls in state `active` at the moment of asking (not windowed).
//! - `successRate`: completed calls / ended calls.
//! - `durationSeconds`: from active to ended, over completed calls.
//! - `ringToAnswerSeconds`: from start to the first answer, over answered
//!   calls that rang (scheduled calls do not ring).
//! - `videoRequests`: requests in the consent ledger, and how many of them
//!   turned video on (`acceptanceRate` = accepted / requests).
//! - `quality`: calls with quality samples by the bucket of their score
//!   (see `crate::calls::quality`).
//!
//! Averages and p95s are `null` when nothing qualifies; p95s interpolate
//! linearly between the closest ranks.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::calls::CallError;
use crate::calls::Core;
use crate::calls::quality::{self, Bucket};
use crate::domain::AuthUser;
use crate::domain::Code;
use crate::domain::{CallId, Outcome};
use crate::store;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = crate::domain::EventSource)]
    pub source: String,
    pub actor: Option<String>,
    pub at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub data: Value,
}

impl From<store::events::TimelineEvent> for EventView {
    fn from(e: store::events::TimelineEvent) -> Self {
        EventView { id: e.id, kind: e.kind, source: e.source, actor: e.actor, at: e.at, data: e.data }
    }
}

pub const MAX_EVENTS: i64 = 1000;

/// The call's timeline, oldest first, after the event `after` (a cursor).
pub async fn timeline(
    app: &Core,
    user: &AuthUser,
    id: CallId,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<EventView>, CallError> {
    let mut conn = app.db.acquire().await?;
    let participants = store::participants(&mut conn, id).await?;
    if !participants.iter().any(|p| p.user_id == user.id.as_str() && p.member().took_part()) {
        return Err(CallError::NotFound);
    }
    let events = store::events::timeline(&mut conn, id, after.unwrap_or(0), limit).await?;
    Ok(events.into_iter().map(EventView::from).collect())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = StatsSpread)]
pub struct Spread {
    pub average: Option<f64>,
    pub p95: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallCounts {
    pub total: i64,
    /// Ended calls by outcome.
    #[schema(value_type = BTreeMap<String, i64>)]
    pub by_outcome: BTreeMap<&'static str, i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VideoRequests {
    pub requests: i64,
    pub accepted: i64,
    pub acceptance_rate: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub calls: CallCounts,
    pub active_now: i64,
    pub success_rate: Option<f64>,
    pub duration_seconds: Spread,
    pub ring_to_answer_seconds: Spread,
    pub video_requests: VideoRequests,
    /// Calls by quality bucket of their median network figures.
    #[schema(value_type = BTreeMap<String, i64>)]
    pub quality: BTreeMap<&'static str, i64>,
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| ((part as f64 / whole as f64) * 10_000.0).round() / 10_000.0)
}

fn round2(x: Option<f64>) -> Option<f64> {
    x.map(|x| (x * 100.0).round() / 100.0)
}

fn spread((average, p95): (Option<f64>, Option<f64>)) -> Spread {
    Spread { average: round2(average), p95: round2(p95) }
}

pub async fn stats(
    app: &Core,
    user: &AuthUser,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Stats, CallError> {
    if !user.is_admin() {
        return Err(CallError::forbidden(Code::AdminOnly, "statistics are for administrators"));
    }
    let outcomes = store::calls::outcome_counts(&app.db, from, to).await?;
    let mut by_outcome: BTreeMap<&'static str, i64> = Outcome::ALL.iter().map(|o| (o.as_str(), 0)).collect();
    let mut total = 0;
    for (outcome, count) in outcomes {
        total += count;
        if let Some(known) = outcome.and_then(|o| o.parse::<Outcome>().ok()) {
            by_outcome.insert(known.as_str(), count);
        }
    }
    let ended: i64 = by_outcome.values().sum();
    let completed = by_outcome.get(Outcome::Completed.as_str()).copied().unwrap_or_default();
    let active_now = store::calls::active_count(&app.db).await?;
    let duration_seconds = spread(store::calls::duration_spread(&app.db, from, to).await?);
    let ring_to_answer_seconds = spread(store::calls::ring_to_answer_spread(&app.db, from, to).await?);
    let (requests, accepted) = store::consent_ledger::request_counts(&app.db, from, to).await?;
    let mut quality: BTreeMap<&'static str, i64> = Bucket::ALL.iter().map(|b| (b.as_str(), 0)).collect();
    for score in quality::call_scores(app, from, to).await? {
        *quality.entry(score.bucket.as_str()).or_default() += 1;
    }
    Ok(Stats {
        from,
        to,
        calls: CallCounts { total, by_outcome },
        active_now,
        success_rate: ratio(completed, ended),
        duration_seconds,
        ring_to_answer_seconds,
        video_requests: VideoRequests { requests, accepted, acceptance_rate: ratio(accepted, requests) },
        quality,
    })
}
