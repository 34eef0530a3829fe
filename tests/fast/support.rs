//! A world for fast tests: a fresh PostgreSQL database (dropped at the
//! end), a `Core` whose LiveKit is `FakeRooms` and whose clock is a
//! `FakeClock`, and a few people. Nothing else runs: no server, no
//! background job, no Redis (it points at a port nobody listens on; the
//! paths tested here do not need it). The database's name is made here
//! (a uuid), hence `AssertSqlSafe`.

use std::collections::HashMap;
use std::sync::Arc;

use callgate::calls::Core;
use callgate::calls::enforce;
use callgate::calls::lifecycle::{self, StartCall};
use callgate::calls::views::CallView;
use callgate::clock::FakeClock;
use callgate::config::Config;
use callgate::domain::consent::Gender;
use callgate::domain::{AuthUser, CallId, CallType, UserId};
use callgate::infra::redis_link::RedisLink;
use callgate::ingest::handle;
use callgate::livekit::fake::FakeRooms;
use callgate::livekit::{DisconnectReason, Event, EventKind, Participant};
use callgate::metrics::Metrics;
use callgate::storage::Storage;
use callgate::workers::jobs;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

pub struct World {
    pub core: Core,
    pub rooms: Arc<FakeRooms>,
    pub clock: Arc<FakeClock>,
    _database: Database,
}

/// A database of its own, dropped (connections and all) when the test ends,
/// whether it passed or not.
///
/// The drop blocks the thread it runs on while tasks the use cases spawned
/// (LiveKit being told after a commit) may still hold connections: on a
/// single-threaded runtime they could not finish and the drop waited about a
/// minute for them. The tests therefore run on two worker threads.
struct Database {
    admin_url: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: a thread of its own may block.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let admin = PgPoolOptions::new().max_connections(1).connect(&url).await?;
                sqlx::query(AssertSqlSafe(format!("drop database if exists \"{name}\" with (force)")))
                    .execute(&admin)
                    .await?;
                anyhow::Ok(())
            })
        });
        if let Ok(Err(err)) = dropped.join() {
            eprintln!("could not drop the test database {}: {err:#}", self.name);
        }
    }
}

fn config(database_url: &str) -> Config {
    let mut env: HashMap<String, String> = include_str!("../../.env.example")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    env.insert("DATABASE_URL".into(), database_url.into());
    env.insert("REDIS_URL".into(), "redis://127.0.0.1:9".into());
    let mut config = Config::from_lookup(|name| env.get(name).cloned()).expect("the .env.example settings");
    // The limits live in Redis.
    config.rate_limits.call_starts_per_minute = 0;
    config.rate_limits.video_requests_per_call = 0;
    config.rate_limits.video_requests_per_participant = 0;
    config.limits.media_changes_per_minute = 0;
    config.events.require_callee_online = false;
    config.database_pool_size = 4;
    config
}

impl World {
    /// A world whose clock reads the system's time now.
    pub async fn new() -> World {
        World::configured(|_| {}).await
    }

    /// Like [`World::new`], with `change` made to .env.example's settings.
    pub async fn configured(change: impl FnOnce(&mut Config)) -> World {
        World::storing(change, None).await
    }

    /// Like [`World::configured`], its recordings kept in `storage` (else
    /// where the settings say).
    pub async fn storing(change: impl FnOnce(&mut Config), storage: Option<Arc<dyn Storage>>) -> World {
        callgate::telemetry::init_for_tests();
        let admin_url = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL, e.g. postgres://callgate:callgate@127.0.0.1:5432/callgate_test");
        let name = format!("callgate_fast_{}", Uuid::new_v4().simple());
        let admin = PgPoolOptions::new().max_connections(1).connect(&admin_url).await.expect("PostgreSQL");
        sqlx::query(AssertSqlSafe(format!("create database \"{name}\"")))
            .execute(&admin)
            .await
            .expect("a test database");
        admin.close().await;
        let database = Database { admin_url: admin_url.clone(), name: name.clone() };
        let mut url = url_of(&admin_url);
        url.set_path(&name);
        let mut config = config(url.as_str());
        change(&mut config);
        let db = PgPoolOptions::new()
            .max_connections(config.database_pool_size)
            .connect(config.database_url.expose_secret())
            .await
            .expect("the test database");
        callgate::app::MIGRATOR.run(&db).await.expect("the migrations");
        let clock = FakeClock::starting_now();
        let rooms = FakeRooms::with_clock(&config.room_prefix, clock.clone());
        let redis =
            RedisLink::new(config.redis_url.expose_secret(), config.redis_cluster).expect("a Redis URL");
        let storage = match storage {
            Some(storage) => storage,
            None => callgate::storage::from_config(&config.recording).expect("the storage of the settings"),
        };
        let core = callgate::app::assemble(
            config,
            db,
            redis,
            rooms.clone(),
            storage,
            clock.clone(),
            Metrics::default(),
        );
        World { core, rooms, clock, _database: database }
    }

    /// The service restarted: a new `Core` (a pool of its own, nothing of
    /// the old one's memory) on the same database, LiveKit and clock; the
    /// old one's connections are closed.
    pub async fn restart(&mut self) {
        self.core.stop.cancel();
        self.core.db.close().await;
        let config = self.core.config.clone();
        let db = PgPoolOptions::new()
            .max_connections(4)
            .connect(config.database_url.expose_secret())
            .await
            .expect("the test database");
        let redis = self.core.redis.clone();
        let storage = self.core.storage.clone();
        let (rooms, clock) = (self.rooms.clone(), self.clock.clone());
        self.core = callgate::app::assemble(config, db, redis, rooms, storage, clock, Metrics::default());
    }

    pub fn room_of(&self, call: CallId) -> String {
        self.core.livekit.room_name(call)
    }

    /// `caller` rings `callees` for an audio call.
    pub async fn ring(&self, caller: &AuthUser, callees: &[&AuthUser]) -> CallId {
        let start = StartCall {
            invitees: callees.iter().map(|u| u.id.clone()).collect(),
            call_type: CallType::Audio,
            conversation_id: None,
            external_ref: None,
        };
        let started = lifecycle::start(&self.core, caller, start).await.expect("the call starts");
        CallId(started.call.id)
    }

    /// `caller` rings `callees` and they all answer; LiveKit has been told
    /// what follows (what the answers' own background settling does).
    pub async fn answered_call(&self, caller: &AuthUser, callees: &[&AuthUser]) -> CallId {
        let call = self.ring(caller, callees).await;
        for callee in callees {
            lifecycle::accept(&self.core, callee, call, None).await.expect("the callee answers");
        }
        self.settle(call).await;
        call
    }

    /// LiveKit is told what the call's committed state asks for (after
    /// the work the commits before left, which it waits for).
    pub async fn settle(&self, call: CallId) {
        self.core.quiesce().await;
        assert!(enforce::settle(&self.core, enforce::Effects::for_call(call)).await, "LiveKit confirms");
    }

    /// Runs the jobs due (`workers::jobs::run_due`) until a deadline fired
    /// or none is due: one whose call the settling of a change just made
    /// still held comes due again once that settling is done, as it would
    /// for the runner. How many fired.
    pub async fn fire_some_deadlines(&self) -> usize {
        for _ in 0..100 {
            let ran = jobs::run_due(&self.core).await.expect("a run");
            if ran.deadlines >= 1 || ran.busy == 0 {
                return ran.deadlines;
            }
            // A settling still held the call: once the work after commits
            // is done, its job comes due again `BUSY` later by the clock.
            self.core.quiesce().await;
            self.clock.advance(chrono::Duration::from_std(jobs::BUSY).expect("a duration"));
        }
        0
    }

    /// The call as `user` sees it through the API's use case.
    pub async fn call(&self, user: &AuthUser, call: CallId) -> CallView {
        lifecycle::get(&self.core, user, call).await.expect("the call")
    }

    /// Handles one webhook event as the inbox does: in the call's locked
    /// transaction, then LiveKit is told what follows.
    pub async fn deliver(&self, event: &Event) {
        let room = event.room.as_deref().expect("a room event");
        let id = self.core.livekit.call_of_room(room).expect("one of our rooms");
        let mut tx = self.core.db.begin().await.expect("a transaction");
        let row = callgate::store::lock_call(&mut tx, id).await.expect("the call's row").expect("the call");
        let handled = handle::handle(&self.core, &mut tx, &row, event).await.expect("the event is handled");
        tx.commit().await.expect("the commit");
        enforce::settle(&self.core, handled.effects).await;
        if let Some(ended) = handled.ended {
            lifecycle::after_end(&self.core, &ended).await;
        }
    }
}

fn url_of(raw: &str) -> reqwest::Url {
    reqwest::Url::parse(raw).expect("DATABASE_URL is a URL")
}

pub fn person(name: &str, gender: Gender) -> AuthUser {
    let id = UserId::parse(&format!("{name}-{}", Uuid::new_v4().simple())).expect("a user id");
    AuthUser { id, name: Some(name.to_owned()), gender, roles: Default::default() }
}

/// `who` as LiveKit lists them, in the session that began at `session`.
pub fn in_room(who: &AuthUser, session: DateTime<Utc>) -> Participant {
    Participant { session: Some(session), ..Participant::person(who.id.as_str()) }
}

fn event(kind: EventKind, room: &str, at: DateTime<Utc>) -> Event {
    Event {
        id: format!("EV_{}", Uuid::new_v4().simple()),
        kind,
        room: Some(room.to_owned()),
        created_at: Some(at),
        participant: None,
        track: None,
        egress: None,
    }
}

pub fn room_started(room: &str, at: DateTime<Utc>) -> Event {
    event(EventKind::RoomStarted, room, at)
}

pub fn joined(room: &str, who: &AuthUser, session: DateTime<Utc>, at: DateTime<Utc>) -> Event {
    Event { participant: Some(in_room(who, session)), ..event(EventKind::ParticipantJoined, room, at) }
}

/// `who` published `track` (LiveKit's `track_published`).
pub fn published(
    room: &str,
    who: &AuthUser,
    session: DateTime<Utc>,
    at: DateTime<Utc>,
    track: callgate::livekit::TrackSeen,
) -> Event {
    Event {
        participant: Some(in_room(who, session)),
        track: Some(track),
        ..event(EventKind::TrackPublished, room, at)
    }
}

pub fn left(
    room: &str,
    who: &AuthUser,
    session: DateTime<Utc>,
    at: DateTime<Utc>,
    reason: DisconnectReason,
) -> Event {
    let participant = Participant { disconnect_reason: reason, ..in_room(who, session) };
    Event { participant: Some(participant), ..event(EventKind::ParticipantLeft, room, at) }
}
