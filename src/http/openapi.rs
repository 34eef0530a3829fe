//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations (routes are registered through `utoipa_axum::routes!`, so a
//! route cannot be served without being documented), served at
//! `/openapi.json`, and a docs page at `/docs` that renders it with no
//! network but this service.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response as DocResponse, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::state::AppState;

pub const API_PREFIX: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "callgate",
        description = "The control plane for voice and video calls on a self-hosted LiveKit SFU: \
            ringing, rooms, LiveKit tokens whose publish rights follow the video consent policy, \
            call records, TURN credentials and a per-user event stream.\n\n\
            Every error is an RFC 9457 problem (`application/problem+json`) with a stable `code` \
            (the `Problem` schema lists them all) and, for bad input, the `field` at fault. \
            Routes under `/api/v1` take the host application's user token as \
            `Authorization: Bearer <JWT>` and are rate limited per user (429 with `Retry-After`).",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(
        schemas(crate::http::error::ProblemDoc),
        responses(BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable,
            TooManyRequests, Unavailable, Internal),
    ),
    modifiers(&Finish),
    tags(
        (name = "calls", description = "Ringing, answering and ending calls; joining their LiveKit room."),
        (name = "appointments", description = "Calls booked ahead: booking, finding and cancelling them."),
        (name = "blocks", description = "Whom a user stops from calling them (never revealed to them)."),
        (name = "video", description = "The video consent policy: requests, answers, revocation, the ledger."),
        (name = "recording", description = "Recording a call everyone present agreed to: requests, \
            answers, stopping, the recordings and their files (only for those who were in the call)."),
        (name = "media", description = "A participant's own microphone, camera and screen share."),
        (name = "quality", description = "Network quality samples and ratings."),
        (name = "reports", description = "A call's timeline and aggregate statistics."),
        (name = "safety", description = "Trust and safety: participants' reports, and what moderators \
            (`admin`) do: end a call, remove a participant, suspend a user; the audit log."),
        (name = "events", description = "The per-user event stream (WebSocket)."),
        (name = "turn", description = "Coturn credentials and ICE servers."),
        (name = "livekit", description = "LiveKit's webhooks."),
        (name = "operations", description = "Health, readiness and this document (metrics and the \
            detailed readiness are on the operations listener, `ADMIN_PORT`)."),
    ),
)]
struct ApiDoc;

/// Adds what every operation shares: the bearer scheme and the errors any
/// authenticated route can answer with.
struct Finish;

impl utoipa::Modify for Finish {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The host application's user token (HS256 or RS256, `sub` = user id; \
                         `AUTH_*` settings).",
                    ))
                    .build(),
            ),
        );
    }
}

/// Done after the API routes are nested under `/api/v1`: the modifier above
/// runs before that, when the paths are not known yet.
fn finish_operations(doc: &mut utoipa::openapi::OpenApi) {
    add_links(doc);
    for (path, item) in doc.paths.paths.iter_mut() {
        let authenticated = path.starts_with(API_PREFIX);
        for operation in operations(item) {
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, name: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            };
            if authenticated {
                add("401", "Unauthorized");
                add("429", "TooManyRequests");
                add("503", "Unavailable");
                if operation.security.is_none() {
                    operation.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                }
            }
            add("500", "Internal");
        }
    }
}

/// OpenAPI links: a started call's id leads to every operation on a call, a
/// video request's id to its answers (clients, and stateful fuzzers, follow them).
fn add_links(doc: &mut utoipa::openapi::OpenApi) {
    let mut targets: Vec<(String, bool)> = Vec::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with(&format!("{API_PREFIX}/calls/{{id}}")) {
            continue;
        }
        for operation in operations(item) {
            if let Some(id) = &operation.operation_id {
                targets.push((id.clone(), path.contains("{request_id}")));
            }
        }
    }
    let link = |target: &str, id: &str, request: Option<&str>| {
        let mut link = utoipa::openapi::link::LinkBuilder::new().operation_id(target).parameter("id", id);
        if let Some(request) = request {
            link = link.parameter("request_id", request);
        }
        RefOr::T(link.build())
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        for operation in operations(item) {
            let (status, call_id, request_id) = match operation.operation_id.as_deref() {
                Some("startCall") if path.ends_with("/calls") => ("201", "$response.body#/call/id", None),
                Some("requestVideo") => ("201", "$request.path.id", Some("$response.body#/request/id")),
                _ => continue,
            };
            let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) else { continue };
            for (target, _) in
                targets.iter().filter(|(_, needs_request)| *needs_request == request_id.is_some())
            {
                response.links.insert(target.clone(), link(target, call_id, request_id));
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

macro_rules! problem_response {
    ($name:ident, $description:literal) => {
        pub struct $name;

        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<DocResponse>) {
                (stringify!($name), problem($description).into())
            }
        }
    };
}

fn problem(description: &str) -> DocResponse {
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", Content::new(Some(Ref::from_schema_name("Problem"))))
        .build()
}

problem_response!(
    BadRequest,
    "The request could not be read: `malformed_json`, `unsupported_media_type`, `body_too_large`, \
     `body_unreadable`, `malformed_body`, `invalid_cursor`, `invalid_query`, `websocket_required`."
);
problem_response!(
    Unauthorized,
    "`unauthorized`: no valid credentials (a `WWW-Authenticate: Bearer` header says how)."
);
problem_response!(
    Forbidden,
    "The caller may not do this: `not_a_consenter`, `own_request`, `screen_share_not_allowed`, \
     `scheduling_not_allowed`, `call_not_allowed` (the host application's hook said no), `did_not_take_part`, `admin_only`, `not_initiator`."
);
problem_response!(
    NotFound,
    "`not_found`: no such resource, or one the caller takes no part in (the two are not told apart)."
);
problem_response!(
    Conflict,
    "The call's state does not allow it: `caller_busy`, `callee_busy`, `callee_offline`, \
     `already_answered`, `not_an_invitee`, `not_answered`, `call_ended`, `call_not_ended`, `not_in_call`, `video_off`, \
     `video_already_on`, `video_request_pending`, `too_many_blocks`, `report_window_closed`."
);
problem_response!(
    PayloadTooLarge,
    "`body_too_large`: the body is longer than this route takes; refused before it was read."
);
problem_response!(
    Unprocessable,
    "A field breaks a rule; `field` names it: `invalid_field`, `cannot_call_yourself`, \
     `duplicate_participants`, `too_many_participants`."
);
problem_response!(
    Internal,
    "`internal`: an unexpected failure; the details are in the service's log under the request id."
);
pub struct Unavailable;

impl<'r> utoipa::ToResponse<'r> for Unavailable {
    fn response() -> (&'r str, RefOr<DocResponse>) {
        let response = problem(
            "A dependency is down: `livekit_unavailable`, `unavailable` (PostgreSQL, Redis). Both are \
             retryable: try again after `Retry-After`.",
        );
        ("Unavailable", with_retry_after(response).into())
    }
}

pub struct TooManyRequests;

impl<'r> utoipa::ToResponse<'r> for TooManyRequests {
    fn response() -> (&'r str, RefOr<DocResponse>) {
        let response = problem(
            "`rate_limited` (per-user request, call-start, video-request, media-change or quality-sample \
             limit, or requests without valid credentials from one address) `video_request_cooldown` or \
             `ring_cooldown` (the callee declined the caller's last calls); `Retry-After` says when to try again.",
        );
        ("TooManyRequests", with_retry_after(response).into())
    }
}

fn with_retry_after(mut response: DocResponse) -> DocResponse {
    response.headers.insert(
        "Retry-After".to_owned(),
        utoipa::openapi::HeaderBuilder::new()
            .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Integer)))
            .description(Some("Seconds to wait."))
            .build()
            .into(),
    );
    response
}

/// The API's routes and the top-level ones, each with its part of the
/// document. `crate::http::router` serves them.
pub struct Parts {
    pub api: axum::Router<AppState>,
    pub top: axum::Router<AppState>,
    pub doc: utoipa::openapi::OpenApi,
}

pub fn parts(api: OpenApiRouter<AppState>, top: OpenApiRouter<AppState>) -> Parts {
    let (api, api_doc) = api.split_for_parts();
    let (top, top_doc) = top.merge(router()).split_for_parts();
    let mut doc = ApiDoc::openapi().nest(API_PREFIX, api_doc);
    doc.merge(top_doc);
    finish_operations(&mut doc);
    Parts { api, top, doc }
}

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string(&crate::http::document()).unwrap_or_default());

fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json)).routes(routes!(docs))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json",
        body = Object)))]
async fn openapi_json() -> Response {
    let mut response = DOCUMENT.as_str().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A page that renders this document; it loads nothing but `/openapi.json` (its
/// Content-Security-Policy allows nothing else).
#[utoipa::path(get, path = "/docs", operation_id = "docs", tag = "operations",
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String)))]
async fn docs() -> Response {
    let mut response = Html(include_str!("docs.html")).into_response();
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, crate::http::security::docs_policy());
    response
}
