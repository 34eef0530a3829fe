//! The background jobs, each with a `run(.., stop)` that `crate::app` starts
//! beside the HTTP server: the job runner (deadlines, appointments), the reconciler, the delivery of app
//! webhooks, the fan-out of client events, the presence refresh and the
//! purge of old rows.

pub mod app_webhooks;
pub mod call_changes;
pub mod deadlines;
pub mod fanout;
pub mod jobs;
pub mod presence;
pub mod purge;
pub mod reconcile;
