//! Call quality: network samples sent by the participants' clients,
//! summaries with percentiles and a score, and the participants' ratings.
//!
//! # The score
//! A MOS (mean opinion score, 1 to 5) estimate from the simplified ITU-T
//! G.107 E-model that VoIP monitors use, fed with the p50 (median) jitter,
//! packet loss and round-trip time of the samples:
//!
//! ```text
//! d   = rtt / 2 + 2 × jitter + 10                    effective one-way latency, ms
//! R   = 93.2 − (d < 160 ? d / 40 : (d − 120) / 10) − 2.5 × loss%,   clamped to 0..=100
//! MOS = 1 + 0.035 R + 0.000007 R (R − 60) (100 − R)
//! ```
//!
//! A perfect network (d = 10 ms, no loss) scores 4.40. Buckets: `excellent`
//! from 4.3, `good` from 4.0, `fair` from 3.6, `poor` below.
//!
//! Percentiles interpolate linearly between the closest ranks (PostgreSQL's
//! `percentile_cont`): the p95 of 10, 20, 30, 40, 50 is 48.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::calls::CallError;
use crate::calls::Core;
use crate::domain::AuthUser;
use crate::domain::CallId;
use crate::domain::Code;
use crate::store::quality::SummaryRow;
use crate::store::{self, CallRow, ParticipantRow};

/// The MOS estimate for a network with this median jitter, loss and RTT.
pub fn mos(jitter_ms: f64, packet_loss_pct: f64, rtt_ms: f64) -> f64 {
    let latency = rtt_ms / 2.0 + 2.0 * jitter_ms + 10.0;
    let latency_penalty = if latency < 160.0 { latency / 40.0 } else { (latency - 120.0) / 10.0 };
    let r = (93.2 - latency_penalty - 2.5 * packet_loss_pct).clamp(0.0, 100.0);
    1.0 + 0.035 * r + 0.000_007 * r * (r - 60.0) * (100.0 - r)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Excellent,
    Good,
    Fair,
    Poor,
}

impl Bucket {
    pub const ALL: [Bucket; 4] = [Bucket::Excellent, Bucket::Good, Bucket::Fair, Bucket::Poor];

    pub fn of(mos: f64) -> Bucket {
        match mos {
            m if m >= 4.3 => Bucket::Excellent,
            m if m >= 4.0 => Bucket::Good,
            m if m >= 3.6 => Bucket::Fair,
            _ => Bucket::Poor,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Excellent => "excellent",
            Bucket::Good => "good",
            Bucket::Fair => "fair",
            Bucket::Poor => "poor",
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The ITU-T G.107 E-model estimate of the mean opinion score (1 to 4.5).
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
pub struct Score {
    pub mos: f64,
    pub bucket: Bucket,
}

impl Score {
    pub fn new(jitter_ms: f64, packet_loss_pct: f64, rtt_ms: f64) -> Score {
        let mos = mos(jitter_ms, packet_loss_pct, rtt_ms);
        Score { mos: round2(mos), bucket: Bucket::of(mos) }
    }
}

/// One measurement as a client sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SampleBody {
    #[schema(minimum = 0, maximum = 10_000)]
    pub jitter_ms: f64,
    #[schema(minimum = 0, maximum = 100)]
    pub packet_loss_pct: f64,
    #[schema(minimum = 0, maximum = 60_000)]
    pub rtt_ms: f64,
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub bitrate_kbps: Option<f64>,
    #[schema(minimum = 0, maximum = 240)]
    pub fps: Option<f64>,
    /// Width x height, each 1 to 16384.
    #[schema(pattern = "^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$", example = "1280x720")]
    pub resolution: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9._/-]{1,32}$", example = "video/VP8")]
    pub codec: Option<String>,
    /// An `RTCNetworkType`.
    #[schema(value_type = Option<NetworkTypeDoc>)]
    pub network_type: Option<String>,
}

/// The network types WebRTC reports, for the document.
#[derive(utoipa::ToSchema)]
#[schema(as = NetworkType, rename_all = "lowercase")]
#[allow(dead_code)]
enum NetworkTypeDoc {
    Bluetooth,
    Cellular,
    Ethernet,
    Wifi,
    Wimax,
    Vpn,
    Unknown,
}

/// The network types WebRTC reports (`RTCNetworkType`).
const NETWORK_TYPES: &[&str] = &["bluetooth", "cellular", "ethernet", "wifi", "wimax", "vpn", "unknown"];

fn in_range(field: &str, value: f64, max: f64, unit: &str) -> Result<(), CallError> {
    if (0.0..=max).contains(&value) {
        Ok(())
    } else {
        Err(CallError::invalid(field, format!("{field} must be between 0 and {max}{unit}")))
    }
}

impl SampleBody {
    pub fn validate(&self) -> Result<(), CallError> {
        in_range("jitterMs", self.jitter_ms, 10_000.0, " ms")?;
        in_range("packetLossPct", self.packet_loss_pct, 100.0, " %")?;
        in_range("rttMs", self.rtt_ms, 60_000.0, " ms")?;
        if let Some(bitrate) = self.bitrate_kbps {
            in_range("bitrateKbps", bitrate, 1_000_000.0, " kbps")?;
        }
        if let Some(fps) = self.fps {
            in_range("fps", fps, 240.0, "")?;
        }
        if let Some(resolution) = &self.resolution {
            let valid = resolution.split_once('x').is_some_and(|(w, h)| {
                [w, h].iter().all(|n| n.parse::<u32>().is_ok_and(|n| (1..=16_384).contains(&n)))
            });
            if !valid {
                return Err(CallError::invalid("resolution", "resolution must look like 1280x720"));
            }
        }
        if let Some(codec) = &self.codec {
            let valid = (1..=32).contains(&codec.len())
                && codec.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c));
            if !valid {
                return Err(CallError::invalid(
                    "codec",
                    "codec must be 1 to 32 characters like opus or video/VP8",
                ));
            }
        }
        if let Some(network) = &self.network_type
            && !NETWORK_TYPES.contains(&network.as_str())
        {
            let detail = format!("networkType must be one of {}", NETWORK_TYPES.join(", "));
            return Err(CallError::invalid("networkType", detail));
        }
        Ok(())
    }
}

/// A call's samples do not become fewer: a client told so waits an hour.
const CALL_FULL_RETRY: std::time::Duration = std::time::Duration::from_secs(3_600);

/// Clients send their last figures just after hanging up.
const LATE_SAMPLES: chrono::Duration = chrono::Duration::minutes(5);

/// The call and the caller's row in it; 404 for strangers.
async fn membership(
    conn: &mut PgConnection,
    id: CallId,
    user: &AuthUser,
) -> Result<(CallRow, ParticipantRow), CallError> {
    let call = store::find_call(&mut *conn, id).await?.ok_or(CallError::NotFound)?;
    let me = store::participants(conn, id)
        .await?
        .into_iter()
        .find(|p| p.user_id == user.id.as_str() && p.member().took_part())
        .ok_or(CallError::NotFound)?;
    Ok((call, me))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SampleView {
    pub id: i64,
    pub score: Score,
}

#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn record_sample(
    app: &Core,
    user: &AuthUser,
    id: CallId,
    sample: SampleBody,
) -> Result<SampleView, CallError> {
    sample.validate()?;
    let mut conn = app.db.acquire().await?;
    let (call, me) = membership(&mut conn, id, user).await?;
    if me.answered_at.is_none() {
        return Err(CallError::conflict(
            Code::NotInCall,
            "only those who answered the call report its quality",
        ));
    }
    if call.ended_at.is_some_and(|ended| ended < app.clock.now() - LATE_SAMPLES) {
        return Err(CallError::conflict(Code::CallEnded, "the call ended too long ago"));
    }
    crate::calls::limits::quality_sample(app, id, &user.id).await?;
    // The count and the insert race only with the call's other
    // participants, each held to one sample per interval.
    let max = app.config.limits.quality_max_samples_per_call;
    let new = store::quality::NewSample {
        jitter_ms: sample.jitter_ms,
        packet_loss_pct: sample.packet_loss_pct,
        rtt_ms: sample.rtt_ms,
        bitrate_kbps: sample.bitrate_kbps,
        fps: sample.fps,
        resolution: sample.resolution.as_deref(),
        codec: sample.codec.as_deref(),
        network_type: sample.network_type.as_deref(),
    };
    let sample_id = store::quality::insert_sample(&mut conn, id, &user.id, &new, i64::from(max)).await?;
    let Some(sample_id) = sample_id else {
        return Err(CallError::TooManyRequests {
            code: Code::RateLimited,
            detail: format!("this call has {max} quality samples, as many as are kept"),
            retry_after: CALL_FULL_RETRY,
        });
    };
    Ok(SampleView {
        id: sample_id,
        score: Score::new(sample.jitter_ms, sample.packet_loss_pct, sample.rtt_ms),
    })
}

#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = QualitySpread)]
pub struct Spread {
    pub p50: f64,
    pub p95: f64,
}

impl Spread {
    fn of(p50: Option<f64>, p95: Option<f64>) -> Option<Spread> {
        Some(Spread { p50: round2(p50?), p95: round2(p95?) })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub samples: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<Spread>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_loss_pct: Option<Spread>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<Spread>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<Spread>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<Score>,
}

impl From<SummaryRow> for Summary {
    fn from(r: SummaryRow) -> Self {
        let score = match (r.jitter_p50, r.loss_p50, r.rtt_p50) {
            (Some(jitter), Some(loss), Some(rtt)) => Some(Score::new(jitter, loss, rtt)),
            _ => None,
        };
        Summary {
            user_id: r.user_id,
            samples: r.samples,
            jitter_ms: Spread::of(r.jitter_p50, r.jitter_p95),
            packet_loss_pct: Spread::of(r.loss_p50, r.loss_p95),
            rtt_ms: Spread::of(r.rtt_p50, r.rtt_p95),
            bitrate_kbps: Spread::of(r.bitrate_p50, r.bitrate_p95),
            score,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QualityView {
    pub call: Summary,
    pub participants: Vec<Summary>,
}

pub async fn summary(app: &Core, user: &AuthUser, id: CallId) -> Result<QualityView, CallError> {
    let mut conn = app.db.acquire().await?;
    membership(&mut conn, id, user).await?;
    let rows = store::quality::summary(&mut conn, id).await?;
    let mut call = Summary::from(SummaryRow {
        user_id: None,
        whole: true,
        samples: 0,
        jitter_p50: None,
        jitter_p95: None,
        loss_p50: None,
        loss_p95: None,
        rtt_p50: None,
        rtt_p95: None,
        bitrate_p50: None,
        bitrate_p95: None,
    });
    let mut participants = Vec::new();
    for row in rows {
        if row.whole {
            call = Summary::from(row);
        } else {
            participants.push(Summary::from(row));
        }
    }
    Ok(QualityView { call, participants })
}

/// The p50 jitter, loss and RTT of each call created in `[from, to)`.
pub async fn call_scores(app: &Core, from: DateTime<Utc>, to: DateTime<Utc>) -> sqlx::Result<Vec<Score>> {
    let medians = store::quality::call_medians(&app.db, from, to).await?;
    Ok(medians.into_iter().map(|(jitter, loss, rtt)| Score::new(jitter, loss, rtt)).collect())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RatingBody {
    #[schema(minimum = 1, maximum = 5)]
    pub score: u8,
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

const MAX_COMMENT: usize = 2000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RatingView {
    pub score: i16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub rated_at: DateTime<Utc>,
}

#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn rate(
    app: &Core,
    user: &AuthUser,
    id: CallId,
    rating: RatingBody,
) -> Result<RatingView, CallError> {
    if !(1..=5).contains(&rating.score) {
        return Err(CallError::invalid("score", "score must be a whole number from 1 to 5"));
    }
    let comment = rating.comment.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if let Some(comment) = &comment
        && (comment.chars().count() > MAX_COMMENT
            || comment.chars().any(|c| c.is_control() && c != '\n' && c != '\t'))
    {
        return Err(CallError::invalid(
            "comment",
            format!("comment must be at most {MAX_COMMENT} printable characters"),
        ));
    }
    let mut conn = app.db.acquire().await?;
    let (call, me) = membership(&mut conn, id, user).await?;
    if call.state.is_live() {
        return Err(CallError::conflict(Code::CallNotEnded, "a call is rated once it has ended"));
    }
    if me.answered_at.is_none() {
        return Err(CallError::forbidden(Code::DidNotTakePart, "only those who answered the call rate it"));
    }
    let score = i16::from(rating.score);
    let rating =
        store::quality::upsert_rating(&mut conn, id, &user.id, score, comment.as_deref(), app.clock.now())
            .await?;
    let view = RatingView { score: rating.score, comment: rating.comment, rated_at: rating.rated_at };
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_network_is_excellent() {
        let score = Score::new(0.0, 0.0, 0.0);
        assert_eq!(score.mos, 4.4);
        assert_eq!(score.bucket, Bucket::Excellent);
    }

    #[test]
    fn the_formula_matches_a_hand_computation() {
        // d = 100/2 + 2*20 + 10 = 100; R = 93.2 - 2.5 - 2.5*2 = 85.7;
        // MOS = 1 + 2.9995 + 0.000007*85.7*25.7*14.3 = 4.21997...
        assert!((mos(20.0, 2.0, 100.0) - 4.21997).abs() < 1e-4);
        assert_eq!(Bucket::of(mos(20.0, 2.0, 100.0)), Bucket::Good);
        // d = 400/2 + 2*50 + 10 = 310 >= 160; R = 93.2 - 19 - 12.5 = 61.7;
        // MOS = 1 + 2.1595 + 0.000007*61.7*1.7*38.3 = 3.18762...
        assert!((mos(50.0, 5.0, 400.0) - 3.18762).abs() < 1e-4);
        assert_eq!(Bucket::of(mos(50.0, 5.0, 400.0)), Bucket::Poor);
    }

    #[test]
    fn the_score_falls_with_every_impairment_and_stays_in_range() {
        assert!(mos(0.0, 10.0, 0.0) < mos(0.0, 1.0, 0.0));
        assert!(mos(0.0, 0.0, 800.0) < mos(0.0, 0.0, 100.0));
        assert!(mos(200.0, 0.0, 0.0) < mos(10.0, 0.0, 0.0));
        assert_eq!(mos(10_000.0, 100.0, 60_000.0), 1.0);
    }

    #[test]
    fn buckets_have_their_documented_edges() {
        assert_eq!(Bucket::of(4.3), Bucket::Excellent);
        assert_eq!(Bucket::of(4.29), Bucket::Good);
        assert_eq!(Bucket::of(4.0), Bucket::Good);
        assert_eq!(Bucket::of(3.6), Bucket::Fair);
        assert_eq!(Bucket::of(3.59), Bucket::Poor);
    }

    fn sample(jitter: f64, loss: f64, rtt: f64) -> SampleBody {
        SampleBody {
            jitter_ms: jitter,
            packet_loss_pct: loss,
            rtt_ms: rtt,
            bitrate_kbps: None,
            fps: None,
            resolution: None,
            codec: None,
            network_type: None,
        }
    }

    fn field_of(body: SampleBody) -> Option<String> {
        match body.validate() {
            Err(CallError::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        assert_eq!(field_of(sample(-1.0, 0.0, 0.0)).as_deref(), Some("jitterMs"));
        assert_eq!(field_of(sample(0.0, 100.5, 0.0)).as_deref(), Some("packetLossPct"));
        assert_eq!(field_of(sample(0.0, 0.0, 60_001.0)).as_deref(), Some("rttMs"));
        let mut body = sample(1.0, 1.0, 1.0);
        body.resolution = Some("1280*720".into());
        assert_eq!(field_of(body).as_deref(), Some("resolution"));
        let mut body = sample(1.0, 1.0, 1.0);
        body.network_type = Some("carrier-pigeon".into());
        assert_eq!(field_of(body).as_deref(), Some("networkType"));
    }

    #[test]
    fn sensible_values_pass() {
        let mut body = sample(12.0, 0.5, 80.0);
        body.bitrate_kbps = Some(1200.0);
        body.fps = Some(30.0);
        body.resolution = Some("1280x720".into());
        body.codec = Some("video/VP8".into());
        body.network_type = Some("wifi".into());
        assert!(body.validate().is_ok());
    }
}
