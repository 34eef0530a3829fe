//! The one error type of the HTTP boundary, rendered as RFC 9457
//! `application/problem+json` with a stable `code`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::calls::CallError;
use crate::domain::Code;
use crate::http::outage::Outage;
use crate::infra::outage::{self, Dependency};

/// What a 503 tells the client to wait before trying again.
const RETRY_UNAVAILABLE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest { code: Code, field: Option<String>, detail: String },
    #[error("{detail}")]
    Invalid { code: Code, field: Option<String>, detail: String },
    #[error("authentication required: {0}")]
    Unauthorized(&'static str),
    #[error("{detail}")]
    Forbidden { code: Code, detail: String },
    #[error("not found")]
    NotFound,
    #[error("{detail}")]
    Conflict { code: Code, detail: String },
    #[error("{detail}")]
    TooManyRequests { code: Code, detail: String, retry_after: Duration },
    /// 413 `body_too_large`: refused before it was read.
    #[error("{0}")]
    TooLarge(String),
    /// A 409 that says when it becomes possible (`opensAt`).
    #[error("{detail}")]
    NotYet { code: Code, detail: String, opens_at: chrono::DateTime<chrono::Utc> },
    #[error("LiveKit is unavailable")]
    LiveKitUnavailable(#[source] anyhow::Error),
    #[error("a dependency is unavailable: {0}")]
    Unavailable(&'static str),
    /// PostgreSQL, Redis or LiveKit does not answer (see `crate::infra::outage`).
    #[error("{0} is unavailable; try again shortly")]
    DependencyDown(Dependency, #[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Invalid { code: Code::InvalidField, field: Some(field.into()), detail: detail.into() }
    }

    pub fn conflict(code: Code, detail: impl Into<String>) -> Self {
        ApiError::Conflict { code, detail: detail.into() }
    }

    pub fn forbidden(code: Code, detail: impl Into<String>) -> Self {
        ApiError::Forbidden { code, detail: detail.into() }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } | ApiError::NotYet { .. } => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::LiveKitUnavailable(_) | ApiError::Unavailable(_) | ApiError::DependencyDown(..) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> Code {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Invalid { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::NotYet { code, .. }
            | ApiError::TooManyRequests { code, .. } => *code,
            ApiError::Unauthorized(_) => Code::Unauthorized,
            ApiError::TooLarge(_) => Code::BodyTooLarge,
            ApiError::NotFound => Code::NotFound,
            ApiError::LiveKitUnavailable(_) | ApiError::DependencyDown(Dependency::LiveKit, _) => {
                Code::LivekitUnavailable
            }
            ApiError::Unavailable(_) | ApiError::DependencyDown(..) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if outage::is_database_outage(&err) {
            return ApiError::DependencyDown(Dependency::Database, anyhow::Error::new(err));
        }
        ApiError::Internal(anyhow::Error::new(err).context("database"))
    }
}

impl From<CallError> for ApiError {
    fn from(err: CallError) -> Self {
        match err {
            CallError::Invalid { code, field, detail } => ApiError::Invalid { code, field, detail },
            CallError::BadRequest { code, field, detail } => ApiError::BadRequest { code, field, detail },
            CallError::Forbidden { code, detail } => ApiError::Forbidden { code, detail },
            CallError::NotFound => ApiError::NotFound,
            CallError::Conflict { code, detail } => ApiError::Conflict { code, detail },
            CallError::TooManyRequests { code, detail, retry_after } => {
                ApiError::TooManyRequests { code, detail, retry_after }
            }
            CallError::NotYet { code, detail, opens_at } => ApiError::NotYet { code, detail, opens_at },
            CallError::LiveKitUnavailable(err) => ApiError::LiveKitUnavailable(err),
            CallError::Unavailable(what) => ApiError::Unavailable(what),
            CallError::DependencyDown(dependency, err) => ApiError::DependencyDown(dependency, err),
            CallError::Internal(err) => ApiError::Internal(err),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(rename = "opensAt", skip_serializing_if = "Option::is_none")]
    opens_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // An unexpected error whose cause is a dependency that is down is an
        // outage like any other (a 503, logged once by `outage::track`).
        let this = match self {
            ApiError::Internal(err) => match outage::in_chain(&err) {
                Some(dependency) => ApiError::DependencyDown(dependency, err),
                None => ApiError::Internal(err),
            },
            other => other,
        };
        this.render()
    }
}

impl ApiError {
    fn render(self) -> Response {
        let status = self.status();
        let outage = match &self {
            ApiError::LiveKitUnavailable(err) => {
                Some(Outage { dependency: Dependency::LiveKit, cause: format!("{err:#}") })
            }
            ApiError::DependencyDown(dependency, err) => {
                Some(Outage { dependency: *dependency, cause: format!("{err:#}") })
            }
            _ => None,
        };
        let detail = match &self {
            ApiError::Internal(err) => {
                tracing::error!(error = ?err, "request failed");
                "an internal error occurred".to_owned()
            }
            ApiError::LiveKitUnavailable(_) => {
                "the media server is unavailable; try again shortly".to_owned()
            }
            ApiError::NotFound => "no such resource".to_owned(),
            other => other.to_string(),
        };
        let field = match &self {
            ApiError::BadRequest { field, .. } | ApiError::Invalid { field, .. } => field.as_deref(),
            _ => None,
        };
        let code = self.code().as_str();
        let opens_at = match &self {
            ApiError::NotYet { opens_at, .. } => Some(*opens_at),
            _ => None,
        };
        let problem = Problem {
            kind: format!("https://callgate.dev/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code,
            detail,
            field,
            opens_at,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let ApiError::TooManyRequests { retry_after, .. } = &self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_UNAVAILABLE.as_secs()));
        }
        if let ApiError::Unauthorized(_) = &self {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(outage) = outage {
            response.extensions_mut().insert(outage);
        }
        response
    }
}

/// The `code` of a problem, for the document: one of [`Code::ALL`].
pub struct ErrorCode;

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some("A stable, machine-readable error code."))
            .enum_values(Some(Code::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

/// An RFC 9457 problem, as every error is sent (`application/problem+json`).
#[derive(utoipa::ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemDoc {
    /// `https://callgate.dev/problems/<code>`
    #[schema(rename = "type")]
    kind: String,
    /// The HTTP status's reason phrase.
    title: String,
    status: u16,
    code: ErrorCode,
    /// What went wrong, for a human.
    detail: String,
    /// The request field at fault (`participantIds`, `participantIds[0]`, `limit`), when one is.
    field: Option<String>,
    /// For `appointment_not_open`: when it may be joined from.
    #[schema(rename = "opensAt")]
    opens_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_words() {
        let mut seen = std::collections::BTreeSet::new();
        for code in Code::ALL {
            let text = code.as_str();
            assert!(text.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{text}");
            assert!(seen.insert(text), "{text} twice");
        }
    }

    /// A server error with a SQLSTATE, as PostgreSQL sends one.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "terminating connection"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn answered(err: ApiError) -> (StatusCode, Option<String>, bool) {
        let response = err.into_response();
        let retry = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap_or("").to_owned());
        (response.status(), retry, response.extensions().get::<Outage>().is_some())
    }

    #[test]
    fn a_lost_or_refused_database_connection_answers_503_with_retry_after() {
        use std::io::{Error as IoError, ErrorKind};
        let outages = [
            sqlx::Error::Io(IoError::new(ErrorKind::ConnectionReset, "connection reset by peer")),
            sqlx::Error::Io(IoError::new(ErrorKind::UnexpectedEof, "connection closed")),
            sqlx::Error::Io(IoError::new(ErrorKind::ConnectionRefused, "connection refused")),
            sqlx::Error::Protocol("unexpected end of stream".into()),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Database(Box::new(Sqlstate("57P01"))),
            sqlx::Error::Database(Box::new(Sqlstate("57P02"))),
            sqlx::Error::Database(Box::new(Sqlstate("57P03"))),
            sqlx::Error::Database(Box::new(Sqlstate("08006"))),
            sqlx::Error::Database(Box::new(Sqlstate("08003"))),
        ];
        for err in outages {
            let shown = format!("{err}");
            let api = ApiError::from(err);
            assert_eq!(api.code(), Code::Unavailable, "{shown}");
            assert_eq!(answered(api), (StatusCode::SERVICE_UNAVAILABLE, Some("1".into()), true), "{shown}");
        }
    }

    #[test]
    fn a_database_outage_wrapped_in_context_is_still_a_503() {
        let err = anyhow::Error::new(sqlx::Error::PoolClosed).context("saving the call");
        assert_eq!(answered(ApiError::Internal(err)).0, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn other_database_errors_stay_internal() {
        for err in [sqlx::Error::RowNotFound, sqlx::Error::Database(Box::new(Sqlstate("23505")))] {
            assert_eq!(answered(ApiError::from(err)), (StatusCode::INTERNAL_SERVER_ERROR, None, false));
        }
    }

    #[test]
    fn livekit_unavailable_is_a_503_with_retry_after() {
        let err = ApiError::LiveKitUnavailable(anyhow::anyhow!("connection refused"));
        assert_eq!(answered(err), (StatusCode::SERVICE_UNAVAILABLE, Some("1".into()), true));
    }

    #[test]
    fn every_policy_error_code_is_listed() {
        use crate::domain::consent::PolicyError::*;
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let cooldown = Cooldown { until: now };
        for err in [
            NotAMember,
            NotAConsenter,
            OwnRequest,
            RequestPending,
            AlreadyOn,
            VideoOff,
            RequestNotFound,
            cooldown,
        ] {
            let api = ApiError::from(CallError::of_policy(err, now));
            assert!(Code::ALL.contains(&api.code()), "{:?}", api.code());
        }
    }
}
