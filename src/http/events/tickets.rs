//! One-time tickets that open an event stream from a browser, which cannot
//! set headers on a WebSocket: the user token stays out of URLs (and so out
//! of access logs), the short-lived single-use ticket goes in instead.
//!
//! Only a hash of the ticket is kept (in Redis, with the ticket's lifetime),
//! with its user and the expiry of the token that bought it (the stream it
//! opens closes then); redeeming it is an atomic GETDEL, so it opens one
//! stream, on any instance.

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use redis::AsyncCommands;
use sha2::{Digest, Sha256};

use crate::domain::UserId;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::infra::outage::Dependency;

fn redis_down(err: redis::RedisError) -> ApiError {
    ApiError::DependencyDown(Dependency::Redis, err.into())
}

fn key(ticket: &str) -> String {
    format!("callgate:ticket:{}", hex::encode(Sha256::digest(ticket.as_bytes())))
}

pub struct Ticket {
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
}

/// A ticket for `user`, whose token expires at `token_expires_at`.
pub async fn issue(
    app: &AppState,
    user: &UserId,
    token_expires_at: DateTime<Utc>,
) -> Result<Ticket, ApiError> {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let ttl = app.config.events.ticket_ttl;
    let mut redis = app.redis.conn().await.map_err(redis_down)?;
    let value = format!("{user}\n{}", token_expires_at.timestamp());
    let _: () = redis.set_ex(key(&ticket), value, ttl.as_secs()).await.map_err(redis_down)?;
    let expires_at = app.clock.now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    Ok(Ticket { ticket, expires_at })
}

/// The user a ticket was issued to and when their token expires, if it is
/// valid and unused; it is used up either way.
pub async fn redeem(app: &AppState, ticket: &str) -> Result<(UserId, DateTime<Utc>), ApiError> {
    if ticket.is_empty() || ticket.len() > 128 {
        return Err(ApiError::Unauthorized("invalid or expired ticket"));
    }
    let mut redis = app.redis.conn().await.map_err(redis_down)?;
    let stored: Option<String> = redis.get_del(key(ticket)).await.map_err(redis_down)?;
    stored
        .as_deref()
        .and_then(|s| s.split_once('\n'))
        .and_then(|(user, exp)| {
            let exp = DateTime::from_timestamp(exp.parse().ok()?, 0)?;
            Some((UserId::parse(user).ok()?, exp))
        })
        .ok_or(ApiError::Unauthorized("invalid or expired ticket"))
}
