//! The use cases of a call, one transaction each: its lifecycle (start,
//! answer, hang up: `lifecycle`), the consent policy applied to it
//! (`consent`), LiveKit put in line after the commit (`enforce`), the
//! participants' own media, quality, reports and the views the API shows.
//! They return `CallError`; `crate::http` turns it into problem+json.

pub mod app_webhooks;
pub mod appointments;
pub mod authz;
pub mod blocks;
pub mod call_reports;
pub mod consent;
pub mod core;
pub mod ending;
pub mod enforce;
pub mod error;
pub mod gate;
pub mod growth;
pub mod join_cache;
pub mod lifecycle;
pub mod limits;
pub mod media;
pub mod meeting;
pub mod moderation;
pub mod participants;
pub mod quality;
pub mod recording;
pub mod reports;
pub mod ringing;
pub mod unit;
pub mod views;

pub use self::core::Core;
pub use self::error::CallError;
pub use self::unit::Unit;
