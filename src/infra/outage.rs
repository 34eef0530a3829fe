//! Dependency outages: which errors mean "PostgreSQL, Redis or LiveKit is
//! not answering" (a 503 the client retries, never a 500), and one warning
//! when an outage starts and one when it ends (with how many requests
//! failed meanwhile), instead of an error with a backtrace per request.
//!
//! A request that fails on a dependency carries an outage in its response
//! (`crate::http::outage`); a background job reports it itself. The first
//! report starts a probe (`crate::calls::Core::report_outage`) that asks the
//! dependency every second and logs the end when it answers.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    Database,
    Redis,
    LiveKit,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dependency::Database => "PostgreSQL",
            Dependency::Redis => "Redis",
            Dependency::LiveKit => "LiveKit",
        })
    }
}

/// Whether a database error means the database is unreachable, restarting
/// or gone (rather than a bug or bad data): connection-level errors, an
/// exhausted or closed pool, and the SQLSTATEs of a server shutting down,
/// crashing or starting (57P01-57P03) and of connection exceptions (08xxx).
pub fn is_database_outage(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_outage_sqlstate(&code)),
        _ => false,
    }
}

fn is_outage_sqlstate(code: &str) -> bool {
    matches!(code, "57P01" | "57P02" | "57P03") || code.starts_with("08")
}

/// Whether a Redis error means Redis is unreachable.
pub fn is_redis_outage(err: &redis::RedisError) -> bool {
    err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() || err.is_timeout()
}

/// The dependency an unexpected error chain says is down, if any.
pub fn in_chain(err: &anyhow::Error) -> Option<Dependency> {
    err.chain().find_map(|cause| {
        if let Some(db) = cause.downcast_ref::<sqlx::Error>() {
            return is_database_outage(db).then_some(Dependency::Database);
        }
        if let Some(redis) = cause.downcast_ref::<redis::RedisError>() {
            return is_redis_outage(redis).then_some(Dependency::Redis);
        }
        None
    })
}

#[derive(Default)]
struct Tracker {
    down: AtomicBool,
    failed: AtomicU64,
}

/// The outage state of one instance's dependencies.
#[derive(Default)]
pub struct Outages {
    database: Tracker,
    redis: Tracker,
    livekit: Tracker,
}

impl Outages {
    fn tracker(&self, dependency: Dependency) -> &Tracker {
        match dependency {
            Dependency::Database => &self.database,
            Dependency::Redis => &self.redis,
            Dependency::LiveKit => &self.livekit,
        }
    }

    pub fn is_down(&self, dependency: Dependency) -> bool {
        self.tracker(dependency).down.load(Ordering::Relaxed)
    }

    /// Counts one failure; true if it starts an outage.
    pub fn failed(&self, dependency: Dependency) -> bool {
        let tracker = self.tracker(dependency);
        tracker.failed.fetch_add(1, Ordering::Relaxed);
        !tracker.down.swap(true, Ordering::AcqRel)
    }

    /// Ends the outage; returns how many failures it counted.
    pub fn recovered(&self, dependency: Dependency) -> u64 {
        let tracker = self.tracker(dependency);
        tracker.down.store(false, Ordering::Release);
        tracker.failed.swap(0, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_starts_once_and_counts_every_failure_until_it_ends() {
        let outages = Outages::default();
        assert!(outages.failed(Dependency::Database), "the first failure starts it");
        assert!(!outages.failed(Dependency::Database));
        assert!(!outages.failed(Dependency::Database));
        assert!(outages.is_down(Dependency::Database) && !outages.is_down(Dependency::Redis));
        assert_eq!(outages.recovered(Dependency::Database), 3);
        assert!(!outages.is_down(Dependency::Database));
        assert!(outages.failed(Dependency::Database), "a new outage starts again");
    }
}
