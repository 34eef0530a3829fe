//! What the use cases and the background jobs share: configuration, the
//! database, LiveKit, Redis, the clock, this instance's figures, presence
//! and outages. Cheap to clone (one `Arc`).

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::{CallState, UserId};
use crate::infra::outage::{Dependency, Outages};
use crate::infra::redis_link::RedisLink;
use crate::infra::turn::{self, IceServer};
use crate::livekit::RoomService;
use crate::metrics::Metrics;
use crate::realtime::Events;
use crate::realtime::presence::Presence;
use crate::storage::Storage;
use crate::store::CallRow;

/// How often a dependency that is down is asked again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

pub struct Parts {
    pub config: Config,
    pub db: PgPool,
    pub redis: RedisLink,
    /// LiveKit's RoomService (`crate::livekit::LiveKit`, or a fake in tests).
    pub livekit: Arc<dyn RoomService>,
    /// Where recordings' files are kept (`RECORDING_STORAGE`, or a fake in tests).
    pub storage: Arc<dyn Storage>,
    pub clock: SharedClock,
    /// This application's figures (not the process's: tests run many apps).
    pub metrics: Metrics,
    pub presence: Presence,
    /// This instance's client streams.
    pub events: Events,
    /// What join tokens need, kept while the calls do not change.
    pub joins: crate::calls::join_cache::JoinCache,
    /// Which dependencies are down.
    pub outages: Outages,
    /// Cancelled when the application stops.
    pub stop: CancellationToken,
    /// What runs once a transaction has committed (LiveKit settled, a
    /// call's end carried out, a call's LiveKit events handled): started by
    /// [`Core::after_commit`], waited for on shutdown ([`Core::drain`]) and
    /// by tests ([`Core::quiesce`]).
    pub after_commit: TaskTracker,
}

#[derive(Clone)]
pub struct Core(Arc<Parts>);

impl Deref for Core {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl Core {
    pub fn new(parts: Parts) -> Self {
        Core(Arc::new(parts))
    }

    /// How long TURN credentials for someone present in `call` may last:
    /// none while nobody has answered it (it rings: a call to anyone,
    /// answered by nobody, is no relay); once answered, `TURN_TTL` and no
    /// longer than the call may still last (`crate::infra::turn`).
    pub fn turn_ttl_in(&self, call: &CallRow) -> Option<Duration> {
        if call.state == CallState::Ringing {
            return None;
        }
        let (turn_ttl, timeouts, now) = (self.config.turn.ttl, &self.config.timeouts, self.clock.now());
        Some(turn::ttl_in_call(turn_ttl, timeouts.max_call_duration, call.connected_at, now))
    }

    /// The ICE servers handed with a join token for `call`: STUN, and TURN
    /// with credentials valid for [`Core::turn_ttl_in`] once someone has
    /// answered it. While it rings its initiator gets STUN alone, and joins
    /// the room with a fresh token (which carries TURN) once it is answered.
    pub fn ice_servers_in(&self, call: &CallRow, user: &UserId) -> Vec<IceServer> {
        match self.turn_ttl_in(call) {
            Some(ttl) => turn::ice_servers_valid_for(&self.config.turn, user.as_str(), self.clock.now(), ttl),
            None => turn::stun_servers(&self.config.turn),
        }
    }

    /// Runs `work` now, in a task of its own that shutdown waits for: what a
    /// committed transaction leaves to do.
    pub fn after_commit<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.after_commit.spawn(work);
    }

    /// Waits until the work started by [`Core::after_commit`] so far, and
    /// what it started in turn, has finished (tests: no sleeping for it).
    pub async fn quiesce(&self) {
        self.after_commit.close();
        self.after_commit.wait().await;
        self.after_commit.reopen();
    }

    /// On shutdown: waits at most `grace` for the work after commits (one
    /// try each: a settling LiveKit refuses is a job by then); what is left
    /// is the job runner's and the reconciler's on the instances still
    /// running (`calls.video_version` against `rights_version`, the inbox's
    /// unhandled rows). Whether all of it finished.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.after_commit.close();
        let finished = tokio::time::timeout(grace, self.after_commit.wait()).await.is_ok();
        if !finished {
            tracing::warn!(
                tasks = self.after_commit.len(),
                "work after commits still running at shutdown; the reconciler will finish it"
            );
        }
        finished
    }

    /// Reports a failure of `dependency` (a request's or a background job's):
    /// the first one of an outage logs a warning and starts a probe that
    /// logs its end.
    pub fn report_outage(&self, dependency: Dependency, cause: &str) {
        if self.outages.failed(dependency) {
            tracing::warn!(dependency = %dependency, error = cause, "{dependency} is unavailable; answering 503");
            tokio::spawn(self.clone().probe(dependency, Instant::now()));
        }
    }

    async fn probe(self, dependency: Dependency, since: Instant) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(PROBE_EVERY) => {}
            }
            if self.answers(dependency).await {
                let failed = self.outages.recovered(dependency);
                let secs = since.elapsed().as_secs();
                tracing::warn!(dependency = %dependency, failed, outage_secs = secs, "{dependency} is back");
                return;
            }
        }
    }

    async fn answers(&self, dependency: Dependency) -> bool {
        let asked = async {
            match dependency {
                Dependency::Database => crate::store::ping(&self.db).await.is_ok(),
                Dependency::Redis => self.redis.ping().await.is_ok(),
                Dependency::LiveKit => self.livekit.list_rooms().await.is_ok(),
            }
        };
        tokio::time::timeout(Duration::from_secs(5), asked).await.unwrap_or(false)
    }
}
