//! callgate: the control plane for voice and video calls on a self-hosted
//! LiveKit SFU.

pub mod auth;
pub mod calls;
pub mod config;
pub mod deadlines;
pub mod domain;
pub mod error;
pub mod http;
pub mod livekit;
pub mod media;
pub mod policy;
pub mod quality;
pub mod reconcile;
pub mod redis_link;
pub mod reports;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod turn;
pub mod video;
pub mod views;
pub mod webhook_inbox;
pub mod webhooks;
