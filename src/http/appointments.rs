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

use crate::calls::appointments::{self, AppointmentView, Booking};
use crate::domain::{AuthUser, CallType, UserId};
use crate::http::bounds;
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unprocessable};
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
