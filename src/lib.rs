//! callgate: the control plane for voice and video calls on a self-hosted
//! LiveKit SFU.

pub mod app_webhooks;
pub mod auth;
pub mod calls;
pub mod config;
pub mod deadlines;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod livekit;
pub mod policy;
pub mod presence;
pub mod rate_limit;
pub mod redis_link;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod turn;
pub mod video;
pub mod views;
pub mod webhooks;
