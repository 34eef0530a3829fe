//! `/appointments`: booking, finding and cancelling calls booked ahead.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::calls::appointments::{self, Admitted, AppointmentView, Booking, JoinedAppointment};
use crate::domain::{AuthUser, CallType, UserId};
use crate::http::bounds;
use crate::http::error::ApiError;
use crate::http::json::{ApiJson, ApiQuery};

use crate::http::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unavailable, Unprocessable};
use crate::http::state::AppState;

/// An appointment id from the path; anything that is not a UUID is not found.
struct AppointmentPath(Uuid);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AppointmentPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        crate::http::calls::uuid_in_path(parts, state, "id").await.map(AppointmentPath)
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(book))
        .routes(routes!(get_appointment))
        .routes(routes!(get_by_ref))
        .routes(routes!(cancel))
        .routes(routes!(list))
        .routes(routes!(reschedule))
        .routes(routes!(join))
        .routes(routes!(admit))
        .routes(routes!(turn_away))
        .routes(routes!(end))
}

/// The host application's own id for an appointment.
const MAX_REF_LEN: usize = 128;
const MAX_TITLE_LEN: usize = 200;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BookBody {
    /// The host application's id of the appointment: 1 to 128 printable characters, unique.
    #[schema(min_length = 1, max_length = 128)]
    external_ref: String,
    #[serde(rename = "type")]
    call_type: CallType,
    /// In the future.
    starts_at: DateTime<Utc>,
    /// After `startsAt`, at most `MAX_CALL_DURATION` after it.
    ends_at: DateTime<Utc>,
    /// Who runs it (admit, end for everyone, share their screen); at least one.
    #[schema(value_type = Vec<String>, min_items = 1)]
    hosts: Vec<UserId>,
    /// Who attends; at least one, none of them a host.
    #[schema(value_type = Vec<String>, min_items = 1)]
    guests: Vec<UserId>,
    /// Up to 200 printable characters.
    #[schema(max_length = 200)]
    title: Option<String>,
}

fn printable(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, format!("must be 1 to {max} printable characters")));
    }
    Ok(())
}

fn validate(body: BookBody) -> Result<Booking, ApiError> {
    printable("externalRef", &body.external_ref, MAX_REF_LEN)?;
    if let Some(title) = &body.title {
        printable("title", title, MAX_TITLE_LEN)?;
    }
    for (field, at) in [("startsAt", body.starts_at), ("endsAt", body.ends_at)] {
        if !bounds::is_sane(at) {
            return Err(ApiError::invalid(field, format!("must be between {}", bounds::RANGE)));
        }
    }
    Ok(Booking {
        external_ref: body.external_ref,
        call_type: body.call_type,
        title: body.title,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        hosts: body.hosts,
        guests: body.guests,
    })
}

/// Book an appointment: the host application (a token with the role `service`) or a user with a
/// role of `SCHEDULER_ROLES`. Idempotent by `externalRef`: the same booking again answers 200 with
/// the appointment booked; one that differs, 409 `appointment_differs`. Nobody is busy because of
/// a booking.
///
/// Errors: 403 `scheduling_not_allowed`; 409 `appointment_differs`; 422 `invalid_field` naming
/// the field (`startsAt` in the past, `endsAt` not after it or too long after it, no host, no
/// guest, someone named twice, too many people).
#[utoipa::path(post, path = "/appointments", operation_id = "bookAppointment", tag = "appointments",
    request_body = BookBody,
    responses(
        (status = 201, description = "Booked", body = AppointmentView),
        (status = 200, description = "Booked already, the same", body = AppointmentView),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn book(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<BookBody>,
) -> Result<(StatusCode, Json<AppointmentView>), ApiError> {
    let booking = validate(body)?;
    let (view, created) = appointments::book(&app, &user, booking).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view)))
}

/// An appointment, for its hosts and guests, whoever booked it and the host application.
#[utoipa::path(get, path = "/appointments/{id}", operation_id = "getAppointment", tag = "appointments",
    params(("id" = Uuid, Path, description = "The appointment's id")),
    responses(
        (status = 200, description = "The appointment", body = AppointmentView),
        (status = 404, response = NotFound),
    ))]
async fn get_appointment(
    State(app): State<AppState>,
    user: AuthUser,
    AppointmentPath(id): AppointmentPath,
) -> Result<Json<AppointmentView>, ApiError> {
    Ok(Json(appointments::get(&app, &user, id).await?))
}

/// An appointment by the host application's id, for the same readers as by id.
#[utoipa::path(get, path = "/appointments/by-ref/{externalRef}", operation_id = "getAppointmentByRef",
    tag = "appointments",
    params(("externalRef" = String, Path, description = "The host application's id of it")),
    responses(
        (status = 200, description = "The appointment", body = AppointmentView),
        (status = 404, response = NotFound),
    ))]
async fn get_by_ref(
    State(app): State<AppState>,
    user: AuthUser,
    Path(external_ref): Path<String>,
) -> Result<Json<AppointmentView>, ApiError> {
    if external_ref.chars().count() > MAX_REF_LEN {
        return Err(ApiError::NotFound);
    }
    Ok(Json(appointments::get_by_ref(&app, &user, &external_ref).await?))
}

/// Cancel an appointment (the host application, whoever booked it, or a host).
///
/// Errors: 403 `not_initiator` (a guest); 409 `appointment_ended`.
#[utoipa::path(post, path = "/appointments/{id}/cancel", operation_id = "cancelAppointment",
    tag = "appointments", params(("id" = Uuid, Path, description = "The appointment's id")),
    responses(
        (status = 200, description = "The appointment, cancelled", body = AppointmentView),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn cancel(
    State(app): State<AppState>,
    user: AuthUser,
    AppointmentPath(id): AppointmentPath,
) -> Result<Json<AppointmentView>, ApiError> {
    Ok(Json(appointments::cancel(&app, &user, id).await?))
}

/// Query parameters are read as text so that a bad one is a 422 naming it.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Appointments starting at or after this time (default: a day ago).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// ...and before this one (default: `from` + 90 days; at most 366 days after `from`).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
    /// Appointments per page, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AppointmentList {
    appointments: Vec<AppointmentView>,
    /// Where the next page starts, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

use crate::http::calls::{decode_cursor, encode_cursor};

fn time_param(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let at = DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .filter(|at| bounds::is_sane(*at))
        .ok_or_else(|| {
            ApiError::invalid(field, format!("must be an RFC 3339 time between {}", bounds::RANGE))
        })?;
    Ok(Some(at))
}

/// The longest span one list may ask for.
const MAX_SPAN_DAYS: i64 = 366;

/// The caller's appointments (as host or guest), soonest first.
///
/// Errors: 400 `invalid_cursor`; 422 `invalid_field` (`from`, `to`, `limit`).
#[utoipa::path(get, path = "/appointments", operation_id = "listAppointments", tag = "appointments",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of appointments", body = AppointmentList),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
    ))]
async fn list(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<AppointmentList>, ApiError> {
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "limit must be 1 to 100"))?,
    };
    let now = app.clock.now();
    let from = time_param("from", q.from.as_deref())?.unwrap_or(now - chrono::Duration::days(1));
    let to = time_param("to", q.to.as_deref())?.unwrap_or(from + chrono::Duration::days(90));
    if to <= from || to - from > chrono::Duration::days(MAX_SPAN_DAYS) {
        return Err(ApiError::invalid(
            "to",
            format!("must be after from, at most {MAX_SPAN_DAYS} days after it"),
        ));
    }
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| ApiError::BadRequest {
            code: crate::domain::Code::InvalidCursor,
            field: Some("cursor".into()),
            detail: "the cursor is not one this service issued".into(),
        })?),
    };
    let (views, next) = appointments::list(&app, &user, from, to, after, limit).await?;
    Ok(Json(AppointmentList { appointments: views, next_cursor: next.map(|(at, id)| encode_cursor(at, id)) }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RescheduleBody {
    /// The new start, in the future.
    starts_at: Option<DateTime<Utc>>,
    /// The new end, after the start, at most `MAX_CALL_DURATION` after it.
    ends_at: Option<DateTime<Utc>>,
}

/// Move an appointment before it opens (the same people as may cancel it).
///
/// Errors: 403 `not_initiator` (a guest); 409 `appointment_opened`, `appointment_ended`;
/// 422 `invalid_field` (`startsAt`, `endsAt`).
#[utoipa::path(patch, path = "/appointments/{id}", operation_id = "rescheduleAppointment",
    tag = "appointments", params(("id" = Uuid, Path, description = "The appointment's id")),
    request_body = RescheduleBody,
    responses(
        (status = 200, description = "The appointment, moved", body = AppointmentView),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn reschedule(
    State(app): State<AppState>,
    user: AuthUser,
    AppointmentPath(id): AppointmentPath,
    ApiJson(body): ApiJson<RescheduleBody>,
) -> Result<Json<AppointmentView>, ApiError> {
    for (field, at) in [("startsAt", body.starts_at), ("endsAt", body.ends_at)] {
        if at.is_some_and(|at| !bounds::is_sane(at)) {
            return Err(ApiError::invalid(field, format!("must be between {}", bounds::RANGE)));
        }
    }
    if body.starts_at.is_none() && body.ends_at.is_none() {
        return Err(ApiError::invalid("startsAt", "give startsAt, endsAt or both"));
    }
    Ok(Json(appointments::reschedule(&app, &user, id, body.starts_at, body.ends_at).await?))
}

/// Join an appointment inside its window (from `opensAt` until `APPOINTMENT_GRACE` after its
/// end), as one of its hosts or guests. The first join opens it if its deadline has not yet. A
/// host is in at once; a guest is in the waiting room (`waiting: true`, no `join`: the waiting
/// room is outside the meeting, no room, no media, no data, nobody's presence) until a host
/// admits them (`appointment.admitted`), then joins again for the room. From now on the joiner
/// is busy.
///
/// Errors: 409 `appointment_not_open` (with `opensAt`), `appointment_ended`, `caller_busy`,
/// `not_in_call` (removed from it).
#[utoipa::path(post, path = "/appointments/{id}/join", operation_id = "joinAppointment",
    tag = "appointments", params(("id" = Uuid, Path, description = "The appointment's id")),
    responses(
        (status = 200, description = "Joined: the appointment, its call and how to enter the room", body = JoinedAppointment),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ))]
async fn join(
    State(app): State<AppState>,
    user: AuthUser,
    AppointmentPath(id): AppointmentPath,
) -> Result<Json<JoinedAppointment>, ApiError> {
    Ok(Json(appointments::join(&app, &user, id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AdmitBody {
    /// The guest to let in.
    #[schema(value_type = String)]
    user_id: UserId,
}

/// A host admits a guest from the waiting room: their rights in LiveKit at once
/// (`sfuConfirmed` says whether LiveKit confirmed before the answer). A guest not yet there is
/// let straight in when they come.
///
/// Errors: 403 `not_a_host`; 409 `not_waiting` (it has not opened), `appointment_ended`;
/// 422 `invalid_field` (`userId` is not a guest).
#[utoipa::path(post, path = "/appointments/{id}/admit", operation_id = "admitToAppointment",
    tag = "appointments", params(("id" = Uuid, Path, description = "The appointment's id")),
    request_body = AdmitBody,
    responses(
        (status = 200, description = "Admitted", body = Admitted),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn admit(
    State(app): State<AppState>,
    user: AuthUser,
    AppointmentPath(id): AppointmentPath,
    ApiJson(body): ApiJson<AdmitBody>,
) -> Result<Json<Admitted>, ApiError> {
    Ok(Json(appointments::admit(&app, &user, id, &body.user_id).await?))
}

/// A host turns a guest away from the waiting room: out of this appointment for good (status
/// `removed`), told `appointment.turned_away`.
///
/// Errors: 403 `not_a_host`; 409 `not_in_call` (not in the waiting room), `not_waiting` (it
/// has not opened), `appointment_ended`; 422 `invalid_field` (`userId` is not a guest).
#[utoipa::path(post, path = "/appointments/{id}/turn-away", operation_id = "turnAwayFromAppointment",
    tag = "appointments", params(("id" = Uuid, Path, description = "The appointment's id")),
    request_body = AdmitBody,
    responses(
        (status = 200, description = "Turned away", body = AppointmentView),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn turn_away(
    State(app): State<AppState>,
    user: AuthUser,
    AppointmentPath(id): AppointmentPath,
    ApiJson(body): ApiJson<AdmitBody>,
) -> Result<Json<AppointmentView>, ApiError> {
    Ok(Json(appointments::turn_away(&app, &user, id, &body.user_id).await?))
}

/// A host ends the appointment for everyone (`completed` if a host and a guest met, else
/// `cancelled`); a guest leaves it (and may join again while its window lasts).
///
/// Errors: 409 `appointment_ended`, `not_in_call` (a guest who has not joined).
#[utoipa::path(post, path = "/appointments/{id}/end", operation_id = "endAppointment",
    tag = "appointments", params(("id" = Uuid, Path, description = "The appointment's id")),
    responses(
        (status = 200, description = "The appointment after it", body = AppointmentView),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn end(
    State(app): State<AppState>,
    user: AuthUser,
    AppointmentPath(id): AppointmentPath,
) -> Result<Json<AppointmentView>, ApiError> {
    Ok(Json(appointments::end(&app, &user, id).await?))
}
