//! A participant reports another participant of a call they both took part
//! in, during it or for `REPORT_WINDOW` after it ended: a reason from a
//! fixed list and an optional short text. The report is stored, delivered
//! to the host application as a signed `call.reported` app webhook (in the
//! same transaction: `calls::app_webhooks`), and never shown to the
//! reported user: the call's timeline does not mention it, and a
//! participant lists only the reports they filed themself (`admin` lists
//! them all).
//!
//! One report per reporter, reported user and call: the first stands, and
//! filing it again answers it unchanged (a retry is safe). A reporter files
//! at most `REPORTS_PER_DAY` in 24 hours, counted in the database under a
//! lock on the reporter, so that instances at once cannot pass it together.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::calls::views::CallView;
use crate::calls::{CallError, Core, app_webhooks};
use crate::domain::moderation::{self, ReportRefusal};
use crate::domain::{AuthUser, CallId, Code, ReportReason, UserId};
use crate::store::call_reports::{self as rows, NewReport, ReportRow};
use crate::store::{self, Outgoing};

/// A report, as the reporter and `admin` read it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportView {
    pub id: Uuid,
    pub call_id: Uuid,
    pub reporter_id: String,
    pub reported_id: String,
    pub reason: ReportReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<ReportRow> for ReportView {
    fn from(r: ReportRow) -> Self {
        ReportView {
            id: r.id,
            call_id: r.call_id,
            reporter_id: r.reporter_id,
            reported_id: r.reported_id,
            reason: r.reason,
            text: r.text,
            created_at: r.created_at,
        }
    }
}

/// What a participant reports.
#[derive(Debug)]
pub struct Report {
    pub reported: UserId,
    pub reason: ReportReason,
    /// Checked by `domain::moderation::text` already.
    pub text: Option<String>,
}

/// A report as filed, and whether this request filed it (false: it had
/// been filed before and stands as it was).
#[derive(Debug)]
pub struct Filed {
    pub report: ReportView,
    pub created: bool,
}

fn refused(refusal: ReportRefusal) -> CallError {
    match refusal {
        ReportRefusal::NotTheirs => CallError::NotFound,
        ReportRefusal::Yourself | ReportRefusal::NotInCall => {
            CallError::invalid("userId", refusal.to_string())
        }
    }
}

/// A day: the window of `REPORTS_PER_DAY`.
fn day() -> chrono::Duration {
    chrono::Duration::days(1)
}

#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn file(app: &Core, user: &AuthUser, id: CallId, report: Report) -> Result<Filed, CallError> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let call = store::find_call(&mut *tx, id).await?.ok_or(CallError::NotFound)?;
    let participants = store::participants(&mut tx, id).await?;
    let row_of = |who: &UserId| participants.iter().find(|p| p.user_id == *who).map(|p| p.member());
    moderation::may_report(row_of(&user.id), row_of(&report.reported), user.id == report.reported)
        .map_err(refused)?;
    let window = chrono::Duration::from_std(app.config.limits.report_window).unwrap_or(chrono::Duration::MAX);
    if !moderation::report_window_open(call.ended_at, now, window) {
        return Err(CallError::conflict(
            Code::ReportWindowClosed,
            format!("a call may be reported until {} s after it ended", window.num_seconds()),
        ));
    }
    rows::lock_reporter(&mut tx, &user.id).await?;
    if let Some(filed) = rows::find(&mut tx, id, &user.id, &report.reported).await? {
        return Ok(Filed { report: filed.into(), created: false });
    }
    let filed = rows::filed_since(&mut tx, &user.id, now - day()).await?;
    let limit = app.config.limits.reports_per_day as usize;
    if filed.len() >= limit
        && let Some(oldest) = filed.first()
    {
        let wait = (*oldest + day() - now).num_seconds().max(1) as u64;
        return Err(CallError::TooManyRequests {
            code: Code::RateLimited,
            detail: format!("you may file {limit} reports a day; try again in {wait} s"),
            retry_after: std::time::Duration::from_secs(wait),
        });
    }
    let new = NewReport {
        call: id,
        reporter: &user.id,
        reported: &report.reported,
        reason: report.reason,
        text: report.text.as_deref(),
        at: now,
    };
    // The reporter's lock is held: nobody filed it meanwhile.
    let row = rows::insert(&mut tx, &new).await?.ok_or(CallError::NotFound)?;
    let violations = rows::violations_of(&mut tx, id, report.reported.as_str())
        .await?
        .into_iter()
        .map(|(at, mut detail)| {
            detail["at"] = json!(at);
            detail
        })
        .collect();
    let mut out = Outgoing::default();
    app_webhooks::call_reported(&mut out, &CallView::new(&call, &participants), &row, violations);
    out.write(&mut tx).await?;
    tx.commit().await?;
    tracing::info!(report_id = %row.id, reason = %report.reason, "a participant was reported");
    Ok(Filed { report: row.into(), created: true })
}

/// The call's reports: for `admin` all of them but those about themself
/// (a reported moderator is the reported person too; the read is in the
/// audit log); for someone who took part in it, those they filed (never
/// those of them); 404 for anyone else.
pub async fn list(app: &Core, user: &AuthUser, id: CallId) -> Result<Vec<ReportView>, CallError> {
    let mut conn = app.db.acquire().await?;
    if !user.is_admin() {
        let participants = store::participants(&mut conn, id).await?;
        if !participants.iter().any(|p| p.user_id == user.id && p.member().took_part()) {
            return Err(CallError::NotFound);
        }
    } else if store::find_call(&mut *conn, id).await?.is_none() {
        return Err(CallError::NotFound);
    } else {
        let action = crate::domain::ModerationAction::ReadReports;
        store::audit_log::read(&mut conn, app.clock.now(), &user.id, action, id).await?;
    }
    let mine = (!user.is_admin()).then_some(&user.id);
    let reports = rows::of_call(&mut conn, id, mine).await?;
    Ok(reports.into_iter().filter(|r| r.reported_id != user.id.as_str()).map(ReportView::from).collect())
}
