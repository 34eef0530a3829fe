//! Adapters to what is neither LiveKit nor PostgreSQL: the Redis link and the
//! rate limits kept in it, the verification of user tokens (and the keys of
//! an OpenID Connect provider), TURN credentials,
//! and how an error tells that a dependency is down.

pub mod auth;
pub mod authz;
pub mod jwks;
pub mod outage;
pub mod rate_limit;
pub mod redis_link;
pub mod signing;
pub mod turn;
