//! One-time tickets that open an event stream from a browser, which cannot
//! set headers on a WebSocket: the user token stays out of URLs (and so out
//! of access logs), the short-lived single-use ticket goes in instead.
//!
//! Only a hash of the ticket is kept (in Redis, with the ticket's lifetime);
//! redeeming it is an atomic GETDEL, so it opens one stream, on any
//! instance.

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use redis::AsyncCommands;
use sha2::{Digest, Sha256};

use crate::domain::UserId;
use crate::error::ApiError;
use crate::state::AppState;

fn key(ticket: &str) -> String {
    format!("callgate:ticket:{}", hex::encode(Sha256::digest(ticket.as_bytes())))
}

pub struct Ticket {
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
}

pub async fn issue(app: &AppState, user: &UserId) -> Result<Ticket, ApiError> {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let ttl = app.config.events.ticket_ttl;
    let mut redis = app.redis.conn().await.map_err(|_| ApiError::Unavailable("redis"))?;
    let _: () = redis
        .set_ex(key(&ticket), user.as_str(), ttl.as_secs())
        .await
        .map_err(|_| ApiError::Unavailable("redis"))?;
    let expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    Ok(Ticket { ticket, expires_at })
}

/// The user a ticket was issued to, if it is valid and unused; it is used
/// up either way.
pub async fn redeem(app: &AppState, ticket: &str) -> Result<UserId, ApiError> {
    if ticket.is_empty() || ticket.len() > 128 {
        return Err(ApiError::Unauthorized("invalid or expired ticket"));
    }
    let mut redis = app.redis.conn().await.map_err(|_| ApiError::Unavailable("redis"))?;
    let user: Option<String> =
        redis.get_del(key(ticket)).await.map_err(|_| ApiError::Unavailable("redis"))?;
    user.and_then(|u| UserId::parse(&u).ok()).ok_or(ApiError::Unauthorized("invalid or expired ticket"))
}
