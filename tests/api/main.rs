//! One integration-test binary, a module per feature. Every test starts its
//! own app on port 0 against the real stack and uses users of its own, so
//! the tests run in parallel.

// The service under test reads the system's clock; so do its tests.
#![allow(clippy::disallowed_methods)]

mod app_webhooks;
mod appointments;
mod auth;
mod authz;
mod blips;
mod calls;
mod cluster;
mod consent;
mod consent_integrity;
mod containers;
mod dashboard;
mod devices;
mod e2e;
mod edge;
mod egress;
mod events;
mod fanout;
mod floods;
mod growth;
mod helpers;
mod join_tokens;
mod limits;
mod logs;
mod media;
mod metrics;
mod modified_clients;
mod oidc;
mod openapi;
mod outages;
mod quality;
mod rate_limits;
mod reconcile;
mod recording;
mod recording_faults;
mod recording_frames;
mod recording_s3;
mod redis_cluster;
mod restart;
mod safety;
mod stall;
mod stats;
mod turn;
mod web;
mod webhooks;
