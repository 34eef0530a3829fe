//! callgate: the control plane for voice and video calls on a self-hosted
//! LiveKit SFU.
//!
//! The modules are layers, and every import points down (ARCHITECTURE.md;
//! `.ci/layers.py` checks it):
//!
//! - `app`: the composition root (builds the parts, runs the server and the jobs);
//! - `http` (the API edge) and `workers` (the background jobs);
//! - `ingest`: LiveKit's webhooks, from acknowledgement to what they mean;
//! - `calls`: the use cases, one transaction each;
//! - adapters: `livekit`, `store`, `storage`, `realtime`, `infra`, then `metrics`;
//! - `config`, `clock`, `telemetry`, and `domain` (pure: ids, words, the
//!   consent policy, the call state machine).

pub mod app;
pub mod calls;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod infra;
pub mod ingest;
pub mod livekit;
pub mod metrics;
pub mod realtime;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod workers;
