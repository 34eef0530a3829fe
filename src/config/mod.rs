//! Typed configuration read from the environment.
//!
//! `schema` lists every variable (name, rule, default, doc); `source` reads
//! and checks them as a figment provider; `settings` is the typed sections
//! they land in; this module assembles the `Config` the service uses, with
//! the rules that span variables (one key for user tokens, the development
//! switch). A missing or malformed value stops the service with one line
//! naming the variable and the rule. `docs` writes the documents from the
//! schema.

pub mod docs;
pub mod schema;
mod settings;
mod source;

use std::fmt;
use std::time::Duration;

use figment::Figment;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::Deserialize;

pub use schema::MIN_SECRET_LEN;
pub use source::fetchable;

use crate::domain::consent::{RecordingPolicy, VideoPolicy};
use settings::Settings;
use source::{Environment, FETCHABLE};

#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(var: &'static str, reason: impl Into<String>) -> Self {
        ConfigError { var, reason: reason.into() }
    }
}

/// figment's errors carry the variable in their path (the provider's own,
/// and serde's for a value the schema let through but a section refused).
impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        let var = error.path.iter().find_map(|key| schema::find(key)).map_or("configuration", |v| v.name);
        let reason = match error.kind {
            figment::error::Kind::Message(message) => message,
            figment::error::Kind::MissingField(_) => "missing".to_owned(),
            other => other.to_string(),
        };
        ConfigError { var, reason }
    }
}

#[derive(Clone, Debug)]
pub enum JwtKey {
    /// HS256 with a shared secret.
    Hmac(SecretString),
    /// RS256 or ES256 with a PEM public key; the algorithm follows the key.
    Public { pem: String },
    /// The keys an OpenID Connect provider publishes (`JWT_JWKS_URL`, or
    /// discovered from `JWT_ISSUER` with `JWT_OIDC_DISCOVERY`).
    Jwks(JwksConfig),
}

/// Where the provider's key set is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// `JWT_JWKS_URL`.
    Url(String),
    /// `JWT_OIDC_DISCOVERY=true`: the `jwks_uri` of
    /// `<JWT_ISSUER>/.well-known/openid-configuration`.
    Discovery { issuer: String },
}

#[derive(Clone, Debug)]
pub struct JwksConfig {
    pub source: JwksSource,
    /// `JWT_JWKS_REFRESH`: the key set is fetched again this often.
    pub refresh: Duration,
    /// `JWT_JWKS_COOLDOWN`: at most one fetch per this long, whatever asks
    /// (tokens naming a key not yet seen share the next one).
    pub cooldown: Duration,
    /// `JWT_JWKS_TIMEOUT`: one fetch (discovery and key set) gives up after this long.
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub gender_claim: String,
    /// `JWT_MAX_AGE`: tokens issued (`iat`) longer ago than this are refused;
    /// `None` (the default) checks only `exp`.
    pub max_age: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct LiveKitConfig {
    /// What clients dial (`ws://` or `wss://`).
    pub url: String,
    /// What callgate calls (`http://` or `https://`).
    pub api_url: String,
    pub api_key: String,
    pub api_secret: SecretString,
}

#[derive(Clone, Debug)]
pub struct TurnConfig {
    pub uris: Vec<String>,
    pub stun_uris: Vec<String>,
    pub secret: SecretString,
    pub ttl: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(rename = "RINGING_TIMEOUT")]
    pub ringing: Duration,
    #[serde(rename = "CONNECT_TIMEOUT")]
    pub connect: Duration,
    #[serde(rename = "MAX_CALL_DURATION")]
    pub max_call_duration: Duration,
    #[serde(rename = "VIDEO_REQUEST_TIMEOUT")]
    pub video_request: Duration,
    #[serde(rename = "VIDEO_REQUEST_COOLDOWN")]
    pub video_request_cooldown: Duration,
    /// How long a participant whose connection dropped stays `reconnecting`
    /// before they are `left` (`REJOIN_GRACE`); also the rooms' departure timeout.
    #[serde(rename = "REJOIN_GRACE")]
    pub rejoin_grace: Duration,
}

/// Appointments (calls booked ahead).
#[derive(Clone, Debug)]
pub struct AppointmentsConfig {
    /// How long before its start an appointment may be joined (`APPOINTMENT_EARLY_JOIN`).
    pub early_join: Duration,
    /// How long after its end people may still come before it is a no-show
    /// (`APPOINTMENT_GRACE`).
    pub grace: Duration,
    /// Guests are admitted as soon as a host is present (`APPOINTMENT_AUTO_ADMIT`).
    pub auto_admit: bool,
}

/// The real-time event stream and presence.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// A heartbeat goes to every connection this often; a connection that
    /// sends nothing (not even a pong) for two intervals is dropped.
    #[serde(rename = "EVENTS_HEARTBEAT")]
    pub heartbeat: Duration,
    /// Lifetime of a one-time ticket for browsers.
    #[serde(rename = "EVENTS_TICKET_TTL")]
    pub ticket_ttl: Duration,
    /// A user stays online this long after their last presence refresh, so
    /// a crashed instance does not leave its users online.
    #[serde(rename = "PRESENCE_TTL")]
    pub presence_ttl: Duration,
    /// Refuse to ring callees who have no open event stream.
    #[serde(rename = "REQUIRE_CALLEE_ONLINE")]
    pub require_callee_online: bool,
}

/// Limits shared by all instances (kept in Redis); 0 means no limit.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    #[serde(rename = "RATE_LIMIT_CALL_STARTS_PER_MINUTE")]
    pub call_starts_per_minute: u32,
    #[serde(rename = "RATE_LIMIT_VIDEO_REQUESTS_PER_CALL")]
    pub video_requests_per_call: u32,
    /// Of which one participant may put this many (in the same window).
    #[serde(rename = "RATE_LIMIT_VIDEO_REQUESTS_PER_PARTICIPANT")]
    pub video_requests_per_participant: u32,
    #[serde(rename = "RATE_LIMIT_VIDEO_REQUESTS_WINDOW")]
    pub video_requests_window: Duration,
    #[serde(rename = "RATE_LIMIT_REQUESTS_PER_MINUTE")]
    pub requests_per_minute: u32,
    /// How long a limit waits for Redis before it fails open or closed.
    #[serde(rename = "RATE_LIMIT_REDIS_TIMEOUT_MS")]
    pub redis_timeout: Duration,
}

/// Bounds per user, per call and per client address (0 = no limit).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Event streams open at once per user, across instances; one more
    /// closes the oldest.
    #[serde(rename = "EVENTS_MAX_STREAMS_PER_USER")]
    pub max_streams_per_user: u32,
    /// A participant's quality samples are taken at most this often.
    #[serde(rename = "QUALITY_SAMPLE_INTERVAL")]
    pub quality_sample_interval: Duration,
    /// Quality samples kept per call.
    #[serde(rename = "QUALITY_MAX_SAMPLES_PER_CALL")]
    pub quality_max_samples_per_call: u32,
    /// A participant's media changes per minute (a bucket refilling at this rate).
    #[serde(rename = "RATE_LIMIT_MEDIA_CHANGES_PER_MINUTE")]
    pub media_changes_per_minute: u32,
    /// LiveKit webhooks refused for their signature per client address per
    /// minute, in each instance; beyond them refusals are 429, unlogged.
    #[serde(rename = "RATE_LIMIT_WEBHOOK_REFUSALS_PER_MINUTE")]
    pub webhook_refusals_per_minute: u32,
    /// Requests without valid credentials per client address per minute.
    #[serde(rename = "RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE")]
    pub unauthenticated_per_minute: u32,
    /// The header a trusted reverse proxy puts the client address in
    /// (its right-most entry is used); `None`: the connection's peer.
    #[serde(rename = "TRUSTED_PROXY_HEADER", default, deserialize_with = "settings::header_name")]
    pub trusted_proxy_header: Option<http::HeaderName>,
    /// Declines of one caller by one callee within `ring_declines_window`
    /// after which that caller may not ring her (0: no limit).
    #[serde(rename = "RING_DECLINES_LIMIT")]
    pub ring_declines_limit: u32,
    #[serde(rename = "RING_DECLINES_WINDOW")]
    pub ring_declines_window: Duration,
    /// How long after a call ended its participants may still report one
    /// another (`REPORT_WINDOW`).
    #[serde(rename = "REPORT_WINDOW")]
    pub report_window: Duration,
    /// Reports one user may file in 24 hours (`REPORTS_PER_DAY`).
    #[serde(rename = "REPORTS_PER_DAY")]
    pub reports_per_day: u32,
}

/// The HTTP server's own bounds (issue 28).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// A request's head must arrive within this (`HTTP_HEADER_TIMEOUT`); a
    /// keep-alive connection idle this long is closed.
    #[serde(rename = "HTTP_HEADER_TIMEOUT")]
    pub header_timeout: Duration,
    /// A request's body must arrive within this of its head (`HTTP_BODY_TIMEOUT`).
    #[serde(rename = "HTTP_BODY_TIMEOUT")]
    pub body_timeout: Duration,
    /// `HSTS_MAX_AGE`: the deployment serves HTTPS only (behind its proxy),
    /// so responses say `Strict-Transport-Security: max-age=<this>`; `None`
    /// (0, the default) sends no such header.
    #[serde(rename = "HSTS_MAX_AGE", deserialize_with = "settings::zero_is_none")]
    pub hsts_max_age: Option<Duration>,
}

/// The key that signs app webhooks: the decoded bytes of a Standard
/// Webhooks secret (`whsec_<base64>`).
#[derive(Clone)]
pub struct SigningKey(SecretSlice<u8>);

impl SigningKey {
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// Where the host application hears about calls.
#[derive(Clone, Debug)]
pub struct AppWebhookConfig {
    pub url: String,
    pub key: SigningKey,
}

/// The host application's "who may call whom" hook (`CALL_AUTHZ_*`).
#[derive(Clone, Debug)]
pub struct CallAuthzConfig {
    pub url: String,
    /// Signs each request as an app webhook is signed (`CALL_AUTHZ_SECRET`).
    pub key: SigningKey,
    pub timeout: Duration,
    /// No answer in time or a failed connection lets the call ring instead
    /// of answering 503 (the hook's own 4xx is a no, any other answer that
    /// is no decision a 503, whatever this says).
    pub fail_open: bool,
    /// How long a decision is reused per (caller, callee, conversation); 0: never.
    pub cache: Duration,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub port: u16,
    pub database_url: SecretString,
    pub database_pool_size: u32,
    /// Connections kept open even when idle (PostgreSQL logins are slow).
    pub database_pool_min: u32,
    /// How long a request waits for a pooled connection before failing.
    pub database_acquire_timeout: Duration,
    pub redis_url: SecretString,
    /// `REDIS_URL` names the seed nodes of a Redis Cluster (comma-separated).
    pub redis_cluster: bool,
    pub jwt: JwtConfig,
    pub livekit: LiveKitConfig,
    pub turn: TurnConfig,
    /// Rooms of this deployment are named `<prefix><call id>`; rooms with
    /// other names on the same LiveKit are never touched.
    pub room_prefix: String,
    pub max_call_participants: usize,
    pub timeouts: Timeouts,
    pub video_policy: VideoPolicy,
    /// `RECORDING_POLICY`: whether calls may be recorded (`off` unless set).
    pub recording_policy: RecordingPolicy,
    pub recording: RecordingConfig,
    /// Roles (from the user token's `roles`) that may share their screen;
    /// `None` means everybody may.
    pub screen_share_roles: Option<Vec<String>>,
    pub token_ttl: Duration,
    pub cors_origins: Vec<String>,
    pub app_webhook: Option<AppWebhookConfig>,
    pub call_authz: Option<CallAuthzConfig>,
    pub events: EventsConfig,
    pub rate_limits: RateLimits,
    pub log_format: LogFormat,
    /// `RUST_LOG`: the tracing filter of the log lines.
    pub log_filter: String,
    /// How often each instance looks for due jobs (deadlines; a job due
    /// now is NOTIFYed at once).
    pub deadline_poll: Duration,
    /// How often live calls are compared with LiveKit's rooms (one pass per
    /// interval across all instances).
    pub reconcile_interval: Duration,
    /// A room with no call is deleted only once it is this old: a call being
    /// started creates its room before its row commits.
    pub orphan_room_grace: Duration,
    /// `CALLGATE_DEV`: development secrets are accepted (said by a warning at start).
    pub dev_mode: bool,
    /// `SCHEDULER_ROLES`: roles (from the user token) that may start a
    /// `scheduled` call; empty means nobody may.
    pub scheduler_roles: Vec<String>,
    pub appointments: AppointmentsConfig,
    /// `ADMIN_PORT`: the listener of `/metrics` and the detailed readiness;
    /// `None` serves neither (they are never on the public port).
    pub admin_port: Option<u16>,
    pub limits: Limits,
    pub http: HttpConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any variable source (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let settings: Settings = Figment::from(Environment::new(&lookup)).extract()?;
        settings.assemble()
    }
}

impl JwtConfig {
    /// The user-token settings alone, from the environment (`callgate
    /// token` needs no database).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let environment = Environment::new(&lookup).section("jwt");
        let jwt: settings::Jwt = Figment::from(environment).extract_inner("jwt")?;
        jwt.assemble()
    }
}

impl Settings {
    fn assemble(self) -> Result<Config, ConfigError> {
        let Settings { server, database, redis, livekit, turn, calls, appointments, recording, .. } = self;
        let jwt = self.jwt.assemble()?;
        if !server.dev_mode {
            refuse_development_secrets(&livekit.api_secret, &turn.secret, &jwt.key, &database.url)?;
            refuse_the_dev_s3_secret(recording.s3_secret_access_key.as_ref())?;
        }
        if server.admin_port.is_some_and(|admin| admin == server.port && admin != 0) {
            return Err(ConfigError::new("ADMIN_PORT", "must differ from PORT"));
        }
        let api_url = livekit.api_url.unwrap_or_else(|| livekit.url.replacen("ws", "http", 1));
        let recording = recording.assemble()?;
        Ok(Config {
            port: server.port,
            database_url: database.url,
            database_pool_size: database.pool_size,
            database_pool_min: database.pool_min,
            database_acquire_timeout: database.acquire_timeout,
            redis_url: redis.url,
            redis_cluster: redis.cluster,
            jwt,
            livekit: LiveKitConfig {
                url: livekit.url,
                api_url,
                api_key: livekit.api_key,
                api_secret: livekit.api_secret,
            },
            turn: TurnConfig {
                uris: turn.uris,
                stun_uris: turn.stun_uris,
                secret: turn.secret,
                ttl: turn.ttl,
            },
            room_prefix: livekit.room_prefix,
            max_call_participants: calls.max_participants,
            timeouts: self.timeouts,
            video_policy: calls.video_policy,
            recording_policy: recording.0,
            recording: recording.1,
            screen_share_roles: Some(calls.screen_share_roles).filter(|r| !r.is_empty()),
            token_ttl: livekit.token_ttl,
            cors_origins: server.cors_origins,
            app_webhook: self.app_webhook.assemble()?,
            call_authz: self.call_authz.assemble()?,
            events: self.events,
            rate_limits: self.rate_limits,
            log_format: server.log_format,
            log_filter: server.log_filter,
            deadline_poll: calls.deadline_poll,
            reconcile_interval: livekit.reconcile_interval,
            orphan_room_grace: livekit.orphan_room_grace,
            dev_mode: server.dev_mode,
            scheduler_roles: appointments.scheduler_roles,
            appointments: AppointmentsConfig {
                early_join: appointments.early_join,
                grace: appointments.grace,
                auto_admit: appointments.auto_admit,
            },
            admin_port: server.admin_port,
            limits: self.limits,
            http: self.http,
        })
    }
}

/// The secrets of the development files (`.env.example`, `docker-compose.yml`,
/// `livekit.yaml`, `deploy/livekit.compose.yaml`, `coturn/turnserver.conf`):
/// published, so never a production key. `tests::the_dev_files_hold_only_known_dev_secrets`
/// keeps the list in step with the files.
pub const DEV_SECRETS: &[&str] = &[
    "callgate-dev-jwt-secret-change-me-0123456789",
    "callgate-dev-livekit-secret-0123456789abcdef",
    "callgate-dev-turn-secret-0123456789abcdef",
    "callgate-dev-s3-secret-0123456789abcdef",
];
const DEV_DATABASE_PASSWORD: &str = "callgate";
const DEV_SWITCH: &str = "generate a real one, see the README's Security section; \
                          CALLGATE_DEV=true accepts it for development";

/// Outside the development switch, none of the secrets is one of the
/// repository's development values, or short.
fn refuse_development_secrets(
    livekit_secret: &SecretString,
    turn_secret: &SecretString,
    jwt_key: &JwtKey,
    database_url: &SecretString,
) -> Result<(), ConfigError> {
    let mut secrets = vec![("LIVEKIT_API_SECRET", livekit_secret), ("TURN_SECRET", turn_secret)];
    if let JwtKey::Hmac(secret) = jwt_key {
        secrets.push(("JWT_SECRET", secret));
    }
    for (var, secret) in secrets {
        let value = secret.expose_secret();
        if DEV_SECRETS.contains(&value) {
            return Err(ConfigError::new(var, format!("is a published development secret ({DEV_SWITCH})")));
        }
        if value.len() < MIN_SECRET_LEN {
            let reason = format!("must be at least {MIN_SECRET_LEN} characters ({DEV_SWITCH})");
            return Err(ConfigError::new(var, reason));
        }
    }
    if database_password(database_url.expose_secret()) == Some(DEV_DATABASE_PASSWORD) {
        return Err(ConfigError::new(
            "DATABASE_URL",
            format!("uses the development password ({DEV_SWITCH})"),
        ));
    }
    Ok(())
}

/// The S3 secret is the provider's (no length of ours), but never the
/// development stack's.
fn refuse_the_dev_s3_secret(secret: Option<&SecretString>) -> Result<(), ConfigError> {
    match secret {
        Some(secret) if DEV_SECRETS.contains(&secret.expose_secret()) => Err(ConfigError::new(
            "S3_SECRET_ACCESS_KEY",
            format!("is a published development secret ({DEV_SWITCH})"),
        )),
        _ => Ok(()),
    }
}

/// The password of a `postgres://user:password@host/db` URL.
fn database_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let (credentials, _) = rest.rsplit_once('@')?;
    credentials.split_once(':').map(|(_, password)| password)
}

impl settings::Jwt {
    fn assemble(self) -> Result<JwtConfig, ConfigError> {
        let key = self.key()?;
        Ok(JwtConfig {
            key,
            issuer: self.issuer,
            audience: self.audience,
            gender_claim: self.gender_claim,
            max_age: self.max_age,
        })
    }

    /// One of `JWT_SECRET`, `JWT_PUBLIC_KEY` or the provider's keys.
    fn key(&self) -> Result<JwtKey, ConfigError> {
        if let Some(source) = self.jwks_source()? {
            if self.secret.is_some() || self.public_key.is_some() {
                let reason = "set one of JWT_SECRET, JWT_PUBLIC_KEY or the provider's keys (JWT_JWKS_URL, JWT_OIDC_DISCOVERY)";
                return Err(ConfigError::new("JWT_SECRET", reason));
            }
            return Ok(JwtKey::Jwks(JwksConfig {
                source,
                refresh: self.jwks_refresh,
                cooldown: self.jwks_cooldown,
                timeout: self.jwks_timeout,
            }));
        }
        match (&self.secret, &self.public_key) {
            (Some(_), Some(_)) => {
                Err(ConfigError::new("JWT_SECRET", "set JWT_SECRET or JWT_PUBLIC_KEY, not both"))
            }
            (Some(secret), None) => Ok(JwtKey::Hmac(secret.clone())),
            (None, Some(pem)) => Ok(JwtKey::Public { pem: pem.clone() }),
            (None, None) => {
                Err(ConfigError::new("JWT_SECRET", "missing (or set JWT_PUBLIC_KEY or JWT_JWKS_URL)"))
            }
        }
    }

    /// `JWT_JWKS_URL`, or discovery from `JWT_ISSUER` (`JWT_OIDC_DISCOVERY`).
    fn jwks_source(&self) -> Result<Option<JwksSource>, ConfigError> {
        match (&self.jwks_url, self.oidc_discovery) {
            (Some(_), true) => Err(ConfigError::new(
                "JWT_OIDC_DISCOVERY",
                "set JWT_JWKS_URL or JWT_OIDC_DISCOVERY, not both",
            )),
            (Some(url), false) => Ok(Some(JwksSource::Url(url.clone()))),
            (None, true) => {
                let issuer = self.issuer.clone().ok_or_else(|| {
                    ConfigError::new(
                        "JWT_ISSUER",
                        "missing (JWT_OIDC_DISCOVERY reads its discovery document)",
                    )
                })?;
                if !fetchable(&issuer) {
                    return Err(ConfigError::new("JWT_ISSUER", FETCHABLE));
                }
                Ok(Some(JwksSource::Discovery { issuer }))
            }
            (None, false) => Ok(None),
        }
    }
}

impl settings::Signed {
    fn assemble(self) -> Result<Option<AppWebhookConfig>, ConfigError> {
        let Some(url) = self.url else { return Ok(None) };
        let secret = self.secret.ok_or_else(|| {
            ConfigError::new("APP_WEBHOOK_SECRET", "missing (required with APP_WEBHOOK_URL)")
        })?;
        AppWebhookConfig::new(url, secret.expose_secret()).map(Some)
    }
}

impl settings::CallAuthz {
    fn assemble(self) -> Result<Option<CallAuthzConfig>, ConfigError> {
        let Some(url) = self.url else { return Ok(None) };
        let secret = self
            .secret
            .ok_or_else(|| ConfigError::new("CALL_AUTHZ_SECRET", "missing (required with CALL_AUTHZ_URL)"))?;
        let signed = AppWebhookConfig::new(url, secret.expose_secret()).map_err(|e| ConfigError {
            var: if e.var == "APP_WEBHOOK_URL" { "CALL_AUTHZ_URL" } else { "CALL_AUTHZ_SECRET" },
            reason: e.reason,
        })?;
        Ok(Some(CallAuthzConfig {
            url: signed.url,
            key: signed.key,
            timeout: self.timeout,
            fail_open: self.fail_open,
            cache: self.cache,
        }))
    }
}

impl AppWebhookConfig {
    /// `secret` as the Standard Webhooks libraries read it: an optional
    /// `whsec_` prefix, then base64.
    pub fn new(url: String, secret: &str) -> Result<Self, ConfigError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::new("APP_WEBHOOK_URL", "must start with http:// or https://"));
        }
        let key =
            source::signing_key(secret).map_err(|reason| ConfigError::new("APP_WEBHOOK_SECRET", reason))?;
        Ok(AppWebhookConfig { url, key: SigningKey(SecretSlice::from(key)) })
    }
}

/// Where recordings go and how long they stay.
#[derive(Clone, Debug)]
pub struct RecordingConfig {
    /// `RECORDING_DIR`: where callgate reads (and deletes) the files.
    pub dir: std::path::PathBuf,
    /// `RECORDING_EGRESS_DIR`: the same folder as LiveKit Egress sees it
    /// (it writes there); `RECORDING_DIR` unless set.
    pub egress_dir: String,
    /// `RECORDING_RETENTION`: a recording (its file and its row) is
    /// deleted this long after it ended.
    pub retention: Duration,
    /// `RECORDING_STORAGE`: where the files are kept once egress wrote them.
    pub storage: RecordingStorage,
    /// `RECORDING_LINK_TTL`: how long a download link works.
    pub link_ttl: Duration,
}

/// `RECORDING_STORAGE`, as the variable says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Local,
    S3,
}

/// Where recordings' files are kept.
#[derive(Clone, Debug)]
pub enum RecordingStorage {
    /// In `RECORDING_DIR`, where egress wrote them.
    Local,
    /// Uploaded to an S3-compatible bucket (`S3_*`).
    S3(S3Config),
}

#[derive(Clone, Debug)]
pub struct S3Config {
    /// `S3_ENDPOINT`: `http(s)://host[:port]`, requests path-style.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

impl settings::Recording {
    fn assemble(self) -> Result<(RecordingPolicy, RecordingConfig), ConfigError> {
        if !self.dir.starts_with('/') {
            return Err(ConfigError::new("RECORDING_DIR", "must be an absolute path"));
        }
        let egress_dir = self.egress_dir.clone().unwrap_or_else(|| self.dir.clone());
        if !egress_dir.starts_with('/') {
            return Err(ConfigError::new("RECORDING_EGRESS_DIR", "must be an absolute path"));
        }
        let storage = match self.storage {
            StorageKind::Local => RecordingStorage::Local,
            StorageKind::S3 => RecordingStorage::S3(self.s3()?),
        };
        let config = RecordingConfig {
            dir: self.dir.into(),
            egress_dir,
            retention: self.retention,
            storage,
            link_ttl: self.link_ttl,
        };
        Ok((self.policy, config))
    }

    /// The bucket of `RECORDING_STORAGE=s3`: every `S3_*` but the region is required.
    fn s3(&self) -> Result<S3Config, ConfigError> {
        let required = |var: &'static str, value: &Option<String>| {
            value
                .clone()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ConfigError::new(var, "missing (required with RECORDING_STORAGE=s3)"))
        };
        let endpoint = required("S3_ENDPOINT", &self.s3_endpoint)?;
        let bucket = required("S3_BUCKET", &self.s3_bucket)?;
        let access_key_id = required("S3_ACCESS_KEY_ID", &self.s3_access_key_id)?;
        let secret_access_key = self.s3_secret_access_key.clone().ok_or_else(|| {
            ConfigError::new("S3_SECRET_ACCESS_KEY", "missing (required with RECORDING_STORAGE=s3)")
        })?;
        Ok(S3Config { endpoint, bucket, region: self.s3_region.clone(), access_key_id, secret_access_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn dev() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("DATABASE_URL", "postgres://u:p@127.0.0.1/db"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("LIVEKIT_URL", "ws://127.0.0.1:7880"),
            ("LIVEKIT_API_KEY", "devkey"),
            ("LIVEKIT_API_SECRET", "0123456789abcdef0123456789abcdef"),
            ("TURN_SECRET", "fedcba9876543210fedcba9876543210"),
        ])
    }

    fn load(vars: &HashMap<&'static str, &'static str>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| vars.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = load(&dev()).expect("valid");
        assert_eq!(config.port, 8080);
        assert_eq!(config.max_call_participants, 8);
        assert_eq!(config.timeouts.ringing, Duration::from_secs(30));
        assert_eq!(config.timeouts.max_call_duration, Duration::from_secs(14_400));
        assert_eq!(config.token_ttl, Duration::from_secs(60));
        assert_eq!(config.video_policy, VideoPolicy::FemaleConsent);
        assert_eq!(config.livekit.api_url, "http://127.0.0.1:7880");
        assert_eq!(config.reconcile_interval, Duration::from_secs(5));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let mut vars = dev();
        vars.remove("DATABASE_URL");
        let err = load(&vars).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert_eq!(err.to_string(), "configuration: DATABASE_URL: missing");
    }

    #[test]
    fn a_malformed_duration_is_named() {
        let mut vars = dev();
        vars.insert("RINGING_TIMEOUT", "soon");
        assert_eq!(load(&vars).unwrap_err().var, "RINGING_TIMEOUT");
        vars.insert("RINGING_TIMEOUT", "0");
        assert_eq!(load(&vars).unwrap_err().var, "RINGING_TIMEOUT");
    }

    #[test]
    fn an_unknown_video_policy_is_refused() {
        let mut vars = dev();
        vars.insert("VIDEO_POLICY", "whatever");
        assert_eq!(load(&vars).unwrap_err().var, "VIDEO_POLICY");
    }

    #[test]
    fn a_short_livekit_secret_is_refused() {
        let mut vars = dev();
        vars.insert("LIVEKIT_API_SECRET", "short");
        assert_eq!(load(&vars).unwrap_err().var, "LIVEKIT_API_SECRET");
    }

    #[test]
    fn limits_and_event_settings_have_defaults() {
        let config = load(&dev()).expect("valid");
        assert_eq!(config.rate_limits.call_starts_per_minute, 20);
        assert_eq!(config.rate_limits.requests_per_minute, 600);
        assert!(!config.events.require_callee_online);
        assert!(config.app_webhook.is_none());
    }

    #[test]
    fn an_app_webhook_needs_a_standard_webhooks_secret() {
        let mut vars = dev();
        vars.insert("APP_WEBHOOK_URL", "https://app.example/hooks/calls");
        assert_eq!(load(&vars).unwrap_err().var, "APP_WEBHOOK_SECRET");
        vars.insert("APP_WEBHOOK_SECRET", "whsec_not base64!");
        assert_eq!(load(&vars).unwrap_err().var, "APP_WEBHOOK_SECRET");
        vars.insert("APP_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let hook = load(&vars).expect("valid").app_webhook.expect("configured");
        assert_eq!(hook.key.expose().len(), 24);
        vars.insert("APP_WEBHOOK_URL", "ftp://app.example");
        assert_eq!(load(&vars).unwrap_err().var, "APP_WEBHOOK_URL");
    }

    #[test]
    fn require_callee_online_is_a_flag() {
        let mut vars = dev();
        vars.insert("REQUIRE_CALLEE_ONLINE", "true");
        assert!(load(&vars).expect("valid").events.require_callee_online);
        vars.insert("REQUIRE_CALLEE_ONLINE", "maybe");
        assert_eq!(load(&vars).unwrap_err().var, "REQUIRE_CALLEE_ONLINE");
    }

    #[test]
    fn the_per_user_limits_have_defaults_and_bounds() {
        let config = load(&dev()).expect("valid");
        assert_eq!(config.limits.max_streams_per_user, 5);
        assert_eq!(config.limits.quality_sample_interval, Duration::from_secs(2));
        assert_eq!(config.limits.quality_max_samples_per_call, 10_000);
        assert_eq!(config.limits.unauthenticated_per_minute, 60);
        assert!(config.limits.trusted_proxy_header.is_none());
        let mut vars = dev();
        vars.insert("EVENTS_MAX_STREAMS_PER_USER", "1001");
        assert_eq!(load(&vars).unwrap_err().var, "EVENTS_MAX_STREAMS_PER_USER");
        let mut vars = dev();
        vars.insert("QUALITY_SAMPLE_INTERVAL", "-1");
        assert_eq!(load(&vars).unwrap_err().var, "QUALITY_SAMPLE_INTERVAL");
        let mut vars = dev();
        vars.insert("TRUSTED_PROXY_HEADER", "not a header");
        assert_eq!(load(&vars).unwrap_err().var, "TRUSTED_PROXY_HEADER");
        vars.insert("TRUSTED_PROXY_HEADER", "X-Forwarded-For");
        assert_eq!(load(&vars).expect("valid").limits.trusted_proxy_header.expect("set"), "x-forwarded-for");
    }

    #[test]
    fn secrets_do_not_leak_into_debug_output() {
        let config = load(&dev()).expect("valid");
        assert!(!format!("{config:?}").contains("0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn a_duration_outside_its_range_is_named_with_the_range() {
        for (var, value) in [
            ("TURN_TTL", "100000000"),
            ("TURN_TTL", "59"),
            ("TOKEN_TTL", "9"),
            ("MAX_CALL_DURATION", "18446744073709551615"),
            ("RINGING_TIMEOUT", "3601"),
            ("VIDEO_REQUEST_TIMEOUT", "4"),
            ("DEADLINE_POLL_MS", "0"),
            ("DEADLINE_POLL_MS", "10001"),
            ("DATABASE_POOL_SIZE", "0"),
            ("JWT_MAX_AGE", "0"),
        ] {
            let mut vars = dev();
            vars.insert(var, value);
            let err = load(&vars).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}");
            assert!(err.reason.contains("must be between") || err.reason.contains("malformed"), "{err}");
            assert_eq!(err.to_string().lines().count(), 1, "one line: {err}");
        }
        let mut vars = dev();
        vars.insert("DEADLINE_POLL_MS", "10");
        vars.insert("TURN_TTL", "86400");
        let config = load(&vars).expect("the ends of a range are in it");
        assert_eq!(config.deadline_poll, Duration::from_millis(10));
        assert_eq!(config.turn.ttl, Duration::from_secs(86_400));
    }

    #[test]
    fn a_maximum_token_age_is_optional() {
        assert_eq!(load(&dev()).expect("valid").jwt.max_age, None);
        let mut vars = dev();
        vars.insert("JWT_MAX_AGE", "3600");
        assert_eq!(load(&vars).expect("valid").jwt.max_age, Some(Duration::from_secs(3600)));
    }

    fn with_provider(vars: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut env = dev();
        env.remove("JWT_SECRET");
        env.extend(vars.iter().copied());
        load(&env)
    }

    fn jwks(config: Result<Config, ConfigError>) -> JwksConfig {
        match config.expect("valid").jwt.key {
            JwtKey::Jwks(jwks) => jwks,
            other => panic!("not the provider's keys: {other:?}"),
        }
    }

    #[test]
    fn the_provider_s_keys_come_from_a_jwks_url_or_the_issuer_s_discovery_document() {
        let url = jwks(with_provider(&[("JWT_JWKS_URL", "https://id.example/.well-known/jwks.json")]));
        assert_eq!(url.source, JwksSource::Url("https://id.example/.well-known/jwks.json".into()));
        assert_eq!(
            (url.refresh, url.cooldown, url.timeout),
            (Duration::from_secs(300), Duration::from_secs(5), Duration::from_secs(5))
        );
        let discovered = jwks(with_provider(&[
            ("JWT_OIDC_DISCOVERY", "true"),
            ("JWT_ISSUER", "https://securetoken.google.com/my-app"),
        ]));
        let issuer = "https://securetoken.google.com/my-app".to_owned();
        assert_eq!(discovered.source, JwksSource::Discovery { issuer });
        let loopback = jwks(with_provider(&[("JWT_JWKS_URL", "http://127.0.0.1:5556/keys")]));
        assert_eq!(loopback.source, JwksSource::Url("http://127.0.0.1:5556/keys".into()));
    }

    #[test]
    fn the_provider_s_keys_need_https_one_source_and_no_other_key() {
        for (vars, var) in [
            (&[("JWT_JWKS_URL", "http://id.example/jwks")][..], "JWT_JWKS_URL"),
            (&[("JWT_JWKS_URL", "id.example/jwks")], "JWT_JWKS_URL"),
            (&[("JWT_OIDC_DISCOVERY", "true")], "JWT_ISSUER"),
            (&[("JWT_OIDC_DISCOVERY", "true"), ("JWT_ISSUER", "http://id.example")], "JWT_ISSUER"),
            (
                &[("JWT_OIDC_DISCOVERY", "true"), ("JWT_JWKS_URL", "https://id.example/jwks")],
                "JWT_OIDC_DISCOVERY",
            ),
            (&[("JWT_JWKS_URL", "https://id.example/jwks"), ("JWT_SECRET", DEV_SECRETS[0])], "JWT_SECRET"),
            (&[("JWT_JWKS_URL", "https://id.example/jwks"), ("JWT_JWKS_COOLDOWN", "0")], "JWT_JWKS_COOLDOWN"),
            (&[("JWT_JWKS_URL", "https://id.example/jwks"), ("JWT_JWKS_REFRESH", "9")], "JWT_JWKS_REFRESH"),
            (&[("JWT_JWKS_URL", "https://id.example/jwks"), ("JWT_JWKS_TIMEOUT", "61")], "JWT_JWKS_TIMEOUT"),
        ] {
            let err = with_provider(vars).unwrap_err();
            assert_eq!(err.var, var, "{vars:?}: {err}");
        }
    }

    #[test]
    fn a_published_dev_secret_does_not_start_without_the_dev_switch() {
        for (var, secret) in [
            ("JWT_SECRET", DEV_SECRETS[0]),
            ("LIVEKIT_API_SECRET", DEV_SECRETS[1]),
            ("TURN_SECRET", DEV_SECRETS[2]),
        ] {
            let mut vars = dev();
            vars.insert(var, secret);
            let err = load(&vars).unwrap_err();
            assert_eq!(err.var, var);
            assert!(
                err.reason.contains("development secret") && err.reason.contains("CALLGATE_DEV"),
                "{err}"
            );
            vars.insert("CALLGATE_DEV", "true");
            assert!(load(&vars).expect("accepted for development").dev_mode);
        }
    }

    #[test]
    fn a_short_turn_secret_does_not_start_without_the_dev_switch() {
        let mut vars = dev();
        vars.insert("TURN_SECRET", "turn-secret");
        let err = load(&vars).unwrap_err();
        assert_eq!(err.var, "TURN_SECRET");
        assert!(err.reason.contains("at least 32 characters"), "{err}");
        vars.insert("CALLGATE_DEV", "true");
        assert!(load(&vars).is_ok());
    }

    #[test]
    fn the_dev_database_password_does_not_start_without_the_dev_switch() {
        let mut vars = dev();
        vars.insert("DATABASE_URL", "postgres://callgate:callgate@db.internal:5432/callgate");
        assert_eq!(load(&vars).unwrap_err().var, "DATABASE_URL");
        vars.insert("DATABASE_URL", "postgres://callgate:k3VqZ9pW@db.internal:5432/callgate");
        assert!(load(&vars).is_ok());
    }

    fn env_example() -> HashMap<&'static str, &'static str> {
        include_str!("../../.env.example")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect()
    }

    #[test]
    fn the_dev_settings_start_only_with_their_dev_switch() {
        let mut vars = env_example();
        assert_eq!(vars.get("CALLGATE_DEV"), Some(&"true"), ".env.example turns the switch on");
        assert!(load(&vars).expect(".env.example is valid").dev_mode);
        vars.remove("CALLGATE_DEV");
        let err = load(&vars).unwrap_err();
        assert!(err.reason.contains("CALLGATE_DEV"), "{err}");
    }

    #[test]
    fn recordings_stay_on_the_local_disk_unless_s3_is_named_with_its_bucket_and_keys() {
        let config = load(&dev()).expect("valid");
        assert!(matches!(config.recording.storage, RecordingStorage::Local));
        assert_eq!(config.recording.link_ttl, Duration::from_secs(300));
        let mut vars = dev();
        vars.insert("RECORDING_STORAGE", "s3");
        for (var, value) in [
            ("S3_ENDPOINT", "https://s3.example"),
            ("S3_BUCKET", "recordings"),
            ("S3_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("S3_SECRET_ACCESS_KEY", "a-secret"),
        ] {
            assert_eq!(load(&vars).unwrap_err().var, var, "{var} is required with s3");
            vars.insert(var, value);
        }
        let RecordingStorage::S3(s3) = load(&vars).expect("valid").recording.storage else {
            panic!("s3 storage")
        };
        assert_eq!(
            (s3.endpoint.as_str(), s3.bucket.as_str(), s3.region.as_str()),
            ("https://s3.example", "recordings", "us-east-1")
        );
        assert!(!format!("{s3:?}").contains("a-secret"), "the secret is never printed");
        vars.insert("S3_ENDPOINT", "s3.example");
        assert_eq!(load(&vars).unwrap_err().var, "S3_ENDPOINT");
        let mut vars = dev();
        vars.insert("RECORDING_LINK_TTL", "3601");
        assert_eq!(load(&vars).unwrap_err().var, "RECORDING_LINK_TTL");
        vars.insert("RECORDING_STORAGE", "disk");
        vars.insert("RECORDING_LINK_TTL", "10");
        assert_eq!(load(&vars).unwrap_err().var, "RECORDING_STORAGE");
    }

    #[test]
    fn the_dev_s3_secret_does_not_start_without_the_dev_switch() {
        let mut vars = dev();
        vars.insert("S3_SECRET_ACCESS_KEY", DEV_SECRETS[3]);
        assert_eq!(load(&vars).unwrap_err().var, "S3_SECRET_ACCESS_KEY");
        vars.insert("CALLGATE_DEV", "true");
        assert!(load(&vars).is_ok());
    }

    #[test]
    fn the_dev_files_hold_only_known_dev_secrets() {
        let env = env_example();
        for var in ["JWT_SECRET", "LIVEKIT_API_SECRET", "TURN_SECRET", "S3_SECRET_ACCESS_KEY"] {
            assert!(DEV_SECRETS.contains(&env[var]), ".env.example's {var} is listed");
        }
        let files = [
            ("docker-compose.yml", include_str!("../../docker-compose.yml")),
            ("livekit.yaml", include_str!("../../livekit.yaml")),
            ("deploy/livekit.compose.yaml", include_str!("../../deploy/livekit.compose.yaml")),
            ("coturn/turnserver.conf", include_str!("../../coturn/turnserver.conf")),
        ];
        for (name, text) in files {
            let values = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).filter_map(|l| {
                let (key, value) = l.split_once(['=', ':'])?;
                let key = key.trim().to_ascii_lowercase();
                let secret = key.contains("secret") || key == "devkey";
                secret.then(|| value.trim().trim_matches('"'))
            });
            let values: Vec<&str> = values.filter(|v| !v.is_empty()).collect();
            assert!(!values.is_empty(), "{name} has secrets");
            for value in values {
                assert!(DEV_SECRETS.contains(&value), "{name}: {value:?} is not in DEV_SECRETS");
            }
        }
    }

    #[test]
    fn scheduling_is_for_nobody_and_the_admin_listener_off_by_default() {
        let config = load(&dev()).expect("valid");
        assert!(config.scheduler_roles.is_empty());
        assert_eq!(config.admin_port, None);
        let mut vars = dev();
        vars.insert("SCHEDULER_ROLES", "clinician, admin");
        vars.insert("ADMIN_PORT", "9090");
        let config = load(&vars).expect("valid");
        assert_eq!(config.scheduler_roles, ["clinician", "admin"]);
        assert_eq!(config.admin_port, Some(9090));
        vars.insert("ADMIN_PORT", "8080");
        assert_eq!(load(&vars).unwrap_err().var, "ADMIN_PORT");
    }
}
