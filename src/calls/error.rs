//! What a use case refuses or fails with. Nothing here knows HTTP:
//! `crate::http::error` turns each variant into its status and problem.

use std::time::Duration;

use crate::domain::Code;
use crate::domain::consent::PolicyError;
use crate::infra::outage::{self, Dependency};

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request is well formed but breaks a rule about its content.
    #[error("{detail}")]
    Invalid { code: Code, field: Option<String>, detail: String },
    /// The request cannot be read as what it should be (a cursor, say).
    #[error("{detail}")]
    BadRequest { code: Code, field: Option<String>, detail: String },
    #[error("{detail}")]
    Forbidden { code: Code, detail: String },
    /// No such call, or none the caller takes part in (never say which).
    #[error("not found")]
    NotFound,
    #[error("{detail}")]
    Conflict { code: Code, detail: String },
    #[error("{detail}")]
    TooManyRequests { code: Code, detail: String, retry_after: Duration },
    /// Too early: what is asked for becomes possible at `opens_at`.
    #[error("{detail}")]
    NotYet { code: Code, detail: String, opens_at: chrono::DateTime<chrono::Utc> },
    #[error("LiveKit is unavailable")]
    LiveKitUnavailable(#[source] anyhow::Error),
    #[error("a dependency is unavailable: {0}")]
    Unavailable(&'static str),
    /// PostgreSQL, Redis or LiveKit does not answer.
    #[error("{0} is unavailable; try again shortly")]
    DependencyDown(Dependency, #[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl CallError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        CallError::Invalid { code: Code::InvalidField, field: Some(field.into()), detail: detail.into() }
    }

    pub fn conflict(code: Code, detail: impl Into<String>) -> Self {
        CallError::Conflict { code, detail: detail.into() }
    }

    pub fn forbidden(code: Code, detail: impl Into<String>) -> Self {
        CallError::Forbidden { code, detail: detail.into() }
    }

    /// A refusal of the consent policy, at `now` (a cooldown says how long).
    pub fn of_policy(err: PolicyError, now: chrono::DateTime<chrono::Utc>) -> Self {
        let detail = err.to_string();
        match err {
            PolicyError::NotAMember | PolicyError::RequestNotFound => CallError::NotFound,
            PolicyError::NotAConsenter => CallError::Forbidden { code: Code::NotAConsenter, detail },
            PolicyError::OwnRequest => CallError::Forbidden { code: Code::OwnRequest, detail },
            PolicyError::Cooldown { until } => {
                let wait = (until - now).num_seconds().max(1) as u64;
                let retry_after = Duration::from_secs(wait);
                CallError::TooManyRequests { code: Code::VideoRequestCooldown, detail, retry_after }
            }
            PolicyError::RequestPending => CallError::Conflict { code: Code::VideoRequestPending, detail },
            PolicyError::AlreadyOn => CallError::Conflict { code: Code::VideoAlreadyOn, detail },
            PolicyError::VideoOff => CallError::Conflict { code: Code::VideoOff, detail },
        }
    }
}

impl CallError {
    /// A refusal of the consent policy about a recording, in its own words.
    pub fn of_recording_policy(err: PolicyError, now: chrono::DateTime<chrono::Utc>) -> Self {
        match err {
            PolicyError::Cooldown { until } => {
                let wait = (until - now).num_seconds().max(1) as u64;
                CallError::TooManyRequests {
                    code: Code::RecordingRequestCooldown,
                    detail: format!("recording may not be requested again before {until}"),
                    retry_after: Duration::from_secs(wait),
                }
            }
            PolicyError::RequestPending => {
                CallError::conflict(Code::RecordingRequestPending, "a recording request is already pending")
            }
            PolicyError::AlreadyOn => {
                CallError::conflict(Code::RecordingAlreadyOn, "the call is being recorded")
            }
            PolicyError::VideoOff => {
                CallError::conflict(Code::NotRecording, "the call is not being recorded")
            }
            other => CallError::of_policy(other, now),
        }
    }
}

impl From<sqlx::Error> for CallError {
    fn from(err: sqlx::Error) -> Self {
        if outage::is_database_outage(&err) {
            return CallError::DependencyDown(Dependency::Database, anyhow::Error::new(err));
        }
        CallError::Internal(anyhow::Error::new(err).context("database"))
    }
}
