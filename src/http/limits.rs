//! Every request is counted: by user once its token verifies, by client
//! address otherwise (`TRUSTED_PROXY_HEADER` names the proxy's header).
//! A browser opening its event stream with a ticket is the exception: the
//! ticket is looked up first (`crate::http::events`), a good one counts as a
//! request of its user and a bad one in a budget of bad tickets per address
//! of its own, so that junk from an address (a NAT, a proxy) never keeps
//! the browsers behind it from their streams.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::calls::limits::{limited, rounded_up};
use crate::domain::{AuthUser, UserId};
use crate::http::auth::bearer_in;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::infra::auth::AuthError;
use crate::infra::outage::Dependency;
use crate::infra::rate_limit::{Algorithm, check, check_leased, counted_as, parse_address};

const MINUTE: Duration = Duration::from_secs(60);

fn redis_timeout(app: &AppState) -> Duration {
    app.config.rate_limits.redis_timeout
}

/// Counts a request of `user` (a bucket of `RATE_LIMIT_REQUESTS_PER_MINUTE`).
pub async fn request(app: &AppState, user: &UserId) -> Result<(), ApiError> {
    let limit = app.config.rate_limits.requests_per_minute;
    if limit == 0 {
        return Ok(());
    }
    let key = format!("callgate:rl:req:{user}");
    match check_leased(&app.redis, &app.request_leases, key, (limit, MINUTE), redis_timeout(app)).await {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => Err(ApiError::from(limited("requests", rounded_up(wait)))),
        Err(err) => {
            app.report_outage(Dependency::Redis, &format!("{err:#}"));
            Ok(())
        }
    }
}

/// Counts a request without valid credentials from `client`; fails open.
async fn unauthenticated(app: &AppState, client: Option<IpAddr>) -> Result<(), ApiError> {
    let limit = app.config.limits.unauthenticated_per_minute;
    let Some(client) = client.filter(|_| limit > 0) else { return Ok(()) };
    let key = format!("callgate:rl:anon:{}", counted_as(client));
    match check(&app.redis, Algorithm::Bucket, key, (limit, MINUTE), redis_timeout(app)).await {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => {
            Err(ApiError::from(limited("requests without valid credentials", rounded_up(wait))))
        }
        Err(err) => {
            app.report_outage(Dependency::Redis, &format!("{err:#}"));
            Ok(())
        }
    }
}

/// Counts a ticket that opened no stream (unknown, used or expired) from
/// `client`, in its own bucket of `RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE`:
/// the refusal to answer, 429 once over it. Fails open (to the 401).
pub async fn bad_ticket(app: &AppState, client: Option<IpAddr>, refusal: ApiError) -> ApiError {
    let limit = app.config.limits.unauthenticated_per_minute;
    let Some(client) = client.filter(|_| limit > 0) else { return refusal };
    let key = format!("callgate:rl:ticket:{}", counted_as(client));
    match check(&app.redis, Algorithm::Bucket, key, (limit, MINUTE), redis_timeout(app)).await {
        Ok(None) => refusal,
        Ok(Some(wait)) => ApiError::from(limited("invalid tickets", rounded_up(wait))),
        Err(err) => {
            app.report_outage(Dependency::Redis, &format!("{err:#}"));
            refusal
        }
    }
}

/// Where a request came from, as the limits count it; in every request's
/// extensions once [`limit_requests`] has seen it.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub Option<IpAddr>);

/// A browser opening its event stream with a ticket (and no header): the
/// handler counts it once it knows whether the ticket is good.
fn opens_a_stream_with_a_ticket(req: &Request) -> bool {
    let path = req.uri().path();
    let stream = path == "/events" || path.strip_prefix(crate::http::openapi::API_PREFIX) == Some("/events");
    let ticket = req.uri().query().is_some_and(|q| q.split('&').any(|pair| pair.starts_with("ticket=")));
    req.method() == axum::http::Method::GET
        && stream
        && ticket
        && !req.headers().contains_key(axum::http::header::AUTHORIZATION)
}

/// IPv4 addresses count one by one, IPv6 ones by their /64.
pub fn client_address(app: &AppState, req: &Request) -> Option<IpAddr> {
    let forwarded = app.config.limits.trusted_proxy_header.as_ref().and_then(|header| {
        let value = req.headers().get_all(header).iter().next_back()?.to_str().ok()?;
        parse_address(value.rsplit(',').next()?.trim())
    });
    forwarded.or_else(|| req.extensions().get::<ConnectInfo<SocketAddr>>().map(|peer| peer.0.ip()))
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
pub async fn limit_requests(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let client = client_address(&app, &req);
    req.extensions_mut().insert(ClientAddress(client));
    let verified = match bearer_in(req.headers()) {
        Some(token) => Some(app.auth.verify(token, app.clock.now()).await),
        None => None,
    };
    let counted = match verified {
        Some(Ok(user)) => {
            let counted = request(&app, &user.id).await;
            req.extensions_mut().insert::<AuthUser>(user);
            counted
        }
        Some(Err(refused)) => {
            req.extensions_mut().insert::<AuthError>(refused);
            unauthenticated(&app, client).await
        }
        None if opens_a_stream_with_a_ticket(&req) => Ok(()),
        None => unauthenticated(&app, client).await,
    };
    if let Err(err) = counted {
        return err.into_response();
    }
    next.run(req).await
}
