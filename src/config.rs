//! Typed configuration read from the environment.
//!
//! Every variable is parsed once at start-up; a missing or malformed value
//! stops the service with one line naming the variable.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use crate::domain::consent::{RecordingPolicy, VideoPolicy};

/// A value that must never appear in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub enum JwtKey {
    /// HS256 with a shared secret.
    Hmac(Secret),
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
    pub api_secret: Secret,
}

#[derive(Clone, Debug)]
pub struct TurnConfig {
    pub uris: Vec<String>,
    pub stun_uris: Vec<String>,
    pub secret: Secret,
    pub ttl: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Debug)]
pub struct Timeouts {
    pub ringing: Duration,
    pub connect: Duration,
    pub max_call_duration: Duration,
    pub video_request: Duration,
    pub video_request_cooldown: Duration,
    /// How long a participant whose connection dropped stays `reconnecting`
    /// before they are `left` (`REJOIN_GRACE`); also the rooms' departure timeout.
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
#[derive(Clone, Debug)]
pub struct EventsConfig {
    /// A heartbeat goes to every connection this often; a connection that
    /// sends nothing (not even a pong) for two intervals is dropped.
    pub heartbeat: Duration,
    /// Lifetime of a one-time ticket for browsers.
    pub ticket_ttl: Duration,
    /// A user stays online this long after their last presence refresh, so
    /// a crashed instance does not leave its users online.
    pub presence_ttl: Duration,
    /// Refuse to ring callees who have no open event stream.
    pub require_callee_online: bool,
}

/// Limits shared by all instances (kept in Redis); 0 means no limit.
#[derive(Clone, Debug)]
pub struct RateLimits {
    pub call_starts_per_minute: u32,
    pub video_requests_per_call: u32,
    /// Of which one participant may put this many (in the same window).
    pub video_requests_per_participant: u32,
    pub video_requests_window: Duration,
    pub requests_per_minute: u32,
    /// How long a limit waits for Redis before it fails open or closed.
    pub redis_timeout: Duration,
}

/// Bounds per user, per call and per client address (0 = no limit).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Event streams open at once per user, across instances; one more
    /// closes the oldest.
    pub max_streams_per_user: u32,
    /// A participant's quality samples are taken at most this often.
    pub quality_sample_interval: Duration,
    /// Quality samples kept per call.
    pub quality_max_samples_per_call: u32,
    /// A participant's media changes per minute (a bucket refilling at this rate).
    pub media_changes_per_minute: u32,
    /// LiveKit webhooks refused for their signature per client address per
    /// minute, in each instance; beyond them refusals are 429, unlogged.
    pub webhook_refusals_per_minute: u32,
    /// Requests without valid credentials per client address per minute.
    pub unauthenticated_per_minute: u32,
    /// The header a trusted reverse proxy puts the client address in
    /// (its right-most entry is used); `None`: the connection's peer.
    pub trusted_proxy_header: Option<http::HeaderName>,
    /// Declines of one caller by one callee within `ring_declines_window`
    /// after which that caller may not ring her (0: no limit).
    pub ring_declines_limit: u32,
    pub ring_declines_window: Duration,
    /// How long after a call ended its participants may still report one
    /// another (`REPORT_WINDOW`).
    pub report_window: Duration,
    /// Reports one user may file in 24 hours (`REPORTS_PER_DAY`).
    pub reports_per_day: u32,
}

/// The HTTP server's own bounds (issue 28).
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// A request's head must arrive within this (`HTTP_HEADER_TIMEOUT`); a
    /// keep-alive connection idle this long is closed.
    pub header_timeout: Duration,
    /// A request's body must arrive within this of its head (`HTTP_BODY_TIMEOUT`).
    pub body_timeout: Duration,
    /// `HSTS_MAX_AGE`: the deployment serves HTTPS only (behind its proxy),
    /// so responses say `Strict-Transport-Security: max-age=<this>`; `None`
    /// (0, the default) sends no such header.
    pub hsts_max_age: Option<Duration>,
}

/// The key that signs app webhooks: the decoded bytes of a Standard
/// Webhooks secret (`whsec_<base64>`).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    pub fn expose(&self) -> &[u8] {
        &self.0
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
    pub database_url: Secret,
    pub database_pool_size: u32,
    /// Connections kept open even when idle (PostgreSQL logins are slow).
    pub database_pool_min: u32,
    /// How long a request waits for a pooled connection before failing.
    pub database_acquire_timeout: Duration,
    pub redis_url: Secret,
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
        let env = Env { lookup: &lookup };
        let livekit = livekit(&env)?;
        let video_policy = match env.optional("VIDEO_POLICY") {
            None => VideoPolicy::FemaleConsent,
            Some(v) => {
                v.parse().map_err(|_| env.error("VIDEO_POLICY", "must be female_consent, mutual or open"))?
            }
        };
        let recording_policy = match env.optional("RECORDING_POLICY") {
            None => RecordingPolicy::Off,
            Some(v) => v.parse().map_err(|_| env.error("RECORDING_POLICY", "must be off or all_party"))?,
        };
        let log_format = match env.optional("LOG_FORMAT").as_deref() {
            None | Some("pretty") | Some("text") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(env.error("LOG_FORMAT", "must be pretty or json")),
        };
        let max_call_participants: usize = env.parsed("MAX_CALL_PARTICIPANTS", 8)?;
        if !(2..=100).contains(&max_call_participants) {
            return Err(env.error("MAX_CALL_PARTICIPANTS", "must be between 2 and 100"));
        }
        let turn_secret = env.required("TURN_SECRET")?;
        let dev_mode = env.flag("CALLGATE_DEV")?;
        let database_url = env.required("DATABASE_URL")?;
        let jwt_key = jwt_key(&env)?;
        if !dev_mode {
            refuse_development_secrets(&env, &livekit, &turn_secret, &jwt_key, &database_url)?;
        }
        let port = env.parsed("PORT", 8080)?;
        let admin_port: Option<u16> =
            env.optional("ADMIN_PORT").map(|_| env.parsed("ADMIN_PORT", 0)).transpose()?;
        if admin_port.is_some_and(|admin| admin == port && admin != 0) {
            return Err(env.error("ADMIN_PORT", "must differ from PORT"));
        }
        Ok(Config {
            port,
            database_url: Secret::new(database_url),
            database_pool_size: env.bounded("DATABASE_POOL_SIZE", 32, 1..=1000)?,
            database_pool_min: env.bounded("DATABASE_POOL_MIN", 2, 0..=1000)?,
            database_acquire_timeout: env.bounded_seconds("DATABASE_ACQUIRE_TIMEOUT", 5, 1..=300)?,
            redis_url: Secret::new(env.required("REDIS_URL")?),
            redis_cluster: env.flag("REDIS_CLUSTER")?,
            jwt: JwtConfig {
                key: jwt_key,
                issuer: env.optional("JWT_ISSUER"),
                audience: env.optional("JWT_AUDIENCE"),
                gender_claim: env.optional("GENDER_CLAIM").unwrap_or_else(|| "gender".into()),
                max_age: env.optional_seconds("JWT_MAX_AGE", 10..=2_592_000)?,
            },
            livekit,
            turn: TurnConfig {
                uris: env.list("TURN_URIS"),
                stun_uris: env.list("STUN_URIS"),
                secret: Secret::new(turn_secret),
                ttl: env.bounded_seconds("TURN_TTL", 3600, 60..=86_400)?,
            },
            room_prefix: env.optional("ROOM_PREFIX").unwrap_or_else(|| "cg-".into()),
            max_call_participants,
            timeouts: timeouts(&env)?,
            video_policy,
            recording_policy,
            recording: recording(&env)?,
            screen_share_roles: Some(env.list("SCREEN_SHARE_ROLES")).filter(|r| !r.is_empty()),
            token_ttl: env.bounded_seconds("TOKEN_TTL", 60, 10..=86_400)?,
            cors_origins: env.list("CORS_ORIGINS"),
            app_webhook: app_webhook(&env)?,
            call_authz: call_authz(&env)?,
            events: events(&env)?,
            rate_limits: rate_limits(&env)?,
            log_format,
            deadline_poll: Duration::from_millis(env.bounded("DEADLINE_POLL_MS", 200, 10..=10_000)?),
            reconcile_interval: env.bounded_seconds("RECONCILE_INTERVAL", 5, 1..=3600)?,
            orphan_room_grace: env.bounded_seconds("ORPHAN_ROOM_GRACE", 30, 1..=3600)?,
            dev_mode,
            scheduler_roles: env.list("SCHEDULER_ROLES"),
            appointments: AppointmentsConfig {
                early_join: env.bounded_seconds("APPOINTMENT_EARLY_JOIN", 600, 0..=86_400)?,
                grace: env.bounded_seconds("APPOINTMENT_GRACE", 900, 0..=86_400)?,
                auto_admit: env.flag("APPOINTMENT_AUTO_ADMIT")?,
            },
            admin_port,
            limits: limits(&env)?,
            http: http(&env)?,
        })
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
    /// `RECORDING_RETENTION`: a recording's file and row are deleted this
    /// long after it ended.
    pub retention: Duration,
}

fn recording(env: &Env<'_>) -> Result<RecordingConfig, ConfigError> {
    let dir = env.optional("RECORDING_DIR").unwrap_or_else(|| "/var/lib/callgate/recordings".into());
    if !dir.starts_with('/') {
        return Err(env.error("RECORDING_DIR", "must be an absolute path"));
    }
    let egress_dir = env.optional("RECORDING_EGRESS_DIR").unwrap_or_else(|| dir.clone());
    if !egress_dir.starts_with('/') {
        return Err(env.error("RECORDING_EGRESS_DIR", "must be an absolute path"));
    }
    Ok(RecordingConfig {
        dir: dir.into(),
        egress_dir,
        retention: env.bounded_seconds("RECORDING_RETENTION", 2_592_000, 3600..=315_360_000)?,
    })
}

fn livekit(env: &Env<'_>) -> Result<LiveKitConfig, ConfigError> {
    let url = env.required("LIVEKIT_URL")?;
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(env.error("LIVEKIT_URL", "must start with ws:// or wss://"));
    }
    let api_url = match env.optional("LIVEKIT_API_URL") {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => url,
        Some(_) => return Err(env.error("LIVEKIT_API_URL", "must start with http:// or https://")),
        None => url.replacen("ws", "http", 1),
    };
    let api_secret = env.required("LIVEKIT_API_SECRET")?;
    if api_secret.len() < 32 {
        return Err(env.error("LIVEKIT_API_SECRET", "must be at least 32 characters"));
    }
    Ok(LiveKitConfig {
        url,
        api_url,
        api_key: env.required("LIVEKIT_API_KEY")?,
        api_secret: Secret::new(api_secret),
    })
}

/// Outside the development switch, none of the secrets is one of the
/// repository's development values.
fn refuse_development_secrets(
    env: &Env<'_>,
    livekit: &LiveKitConfig,
    turn_secret: &str,
    jwt_key: &JwtKey,
    database_url: &str,
) -> Result<(), ConfigError> {
    let mut secrets = vec![("LIVEKIT_API_SECRET", livekit.api_secret.expose()), ("TURN_SECRET", turn_secret)];
    if let JwtKey::Hmac(secret) = jwt_key {
        secrets.push(("JWT_SECRET", secret.expose()));
    }
    refuse_dev_secrets(env, &secrets)?;
    if database_password(database_url) == Some(DEV_DATABASE_PASSWORD) {
        return Err(env.error("DATABASE_URL", &format!("uses the development password ({DEV_SWITCH})")));
    }
    Ok(())
}

fn timeouts(env: &Env<'_>) -> Result<Timeouts, ConfigError> {
    Ok(Timeouts {
        ringing: env.bounded_seconds("RINGING_TIMEOUT", 30, 1..=3600)?,
        connect: env.bounded_seconds("CONNECT_TIMEOUT", 30, 1..=3600)?,
        max_call_duration: env.bounded_seconds("MAX_CALL_DURATION", 14_400, 60..=86_400)?,
        video_request: env.bounded_seconds("VIDEO_REQUEST_TIMEOUT", 30, 5..=600)?,
        video_request_cooldown: env.bounded_seconds("VIDEO_REQUEST_COOLDOWN", 60, 1..=86_400)?,
        rejoin_grace: env.bounded_seconds("REJOIN_GRACE", 20, 1..=600)?,
    })
}

fn events(env: &Env<'_>) -> Result<EventsConfig, ConfigError> {
    Ok(EventsConfig {
        heartbeat: env.bounded_seconds("EVENTS_HEARTBEAT", 25, 1..=300)?,
        ticket_ttl: env.bounded_seconds("EVENTS_TICKET_TTL", 30, 1..=600)?,
        presence_ttl: env.bounded_seconds("PRESENCE_TTL", 30, 1..=600)?,
        require_callee_online: env.flag("REQUIRE_CALLEE_ONLINE")?,
    })
}

fn rate_limits(env: &Env<'_>) -> Result<RateLimits, ConfigError> {
    Ok(RateLimits {
        call_starts_per_minute: env.parsed("RATE_LIMIT_CALL_STARTS_PER_MINUTE", 20)?,
        video_requests_per_call: env.parsed("RATE_LIMIT_VIDEO_REQUESTS_PER_CALL", 10)?,
        video_requests_per_participant: env.bounded(
            "RATE_LIMIT_VIDEO_REQUESTS_PER_PARTICIPANT",
            5,
            0..=10_000,
        )?,
        video_requests_window: env.bounded_seconds("RATE_LIMIT_VIDEO_REQUESTS_WINDOW", 600, 1..=86_400)?,
        requests_per_minute: env.parsed("RATE_LIMIT_REQUESTS_PER_MINUTE", 600)?,
        redis_timeout: Duration::from_millis(env.bounded("RATE_LIMIT_REDIS_TIMEOUT_MS", 300, 10..=10_000)?),
    })
}

/// The secrets of the development files (`.env.example`, `docker-compose.yml`,
/// `livekit.yaml`, `deploy/livekit.compose.yaml`, `coturn/turnserver.conf`):
/// published, so never a production key. `tests::the_dev_files_hold_only_known_dev_secrets`
/// keeps the list in step with the files.
pub const DEV_SECRETS: &[&str] = &[
    "callgate-dev-jwt-secret-change-me-0123456789",
    "callgate-dev-livekit-secret-0123456789abcdef",
    "callgate-dev-turn-secret-0123456789abcdef",
];
const DEV_DATABASE_PASSWORD: &str = "callgate";
/// The shortest secret accepted outside development.
pub const MIN_SECRET_LEN: usize = 32;
const DEV_SWITCH: &str = "generate a real one, see the README's Security section; \
                          CALLGATE_DEV=true accepts it for development";

fn refuse_dev_secrets(env: &Env<'_>, secrets: &[(&'static str, &str)]) -> Result<(), ConfigError> {
    for (var, value) in secrets {
        if DEV_SECRETS.contains(value) {
            return Err(env.error(var, &format!("is a published development secret ({DEV_SWITCH})")));
        }
        if value.len() < MIN_SECRET_LEN {
            return Err(
                env.error(var, &format!("must be at least {MIN_SECRET_LEN} characters ({DEV_SWITCH})"))
            );
        }
    }
    Ok(())
}

/// The password of a `postgres://user:password@host/db` URL.
fn database_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let (credentials, _) = rest.rsplit_once('@')?;
    credentials.split_once(':').map(|(_, password)| password)
}

fn limits(env: &Env<'_>) -> Result<Limits, ConfigError> {
    let trusted_proxy_header = match env.optional("TRUSTED_PROXY_HEADER") {
        None => None,
        Some(name) => Some(
            name.parse::<http::HeaderName>()
                .map_err(|_| env.error("TRUSTED_PROXY_HEADER", "must be an HTTP header name"))?,
        ),
    };
    Ok(Limits {
        max_streams_per_user: env.bounded("EVENTS_MAX_STREAMS_PER_USER", 5, 0..=1_000)?,
        quality_sample_interval: env.bounded_seconds("QUALITY_SAMPLE_INTERVAL", 2, 0..=3_600)?,
        quality_max_samples_per_call: env.bounded("QUALITY_MAX_SAMPLES_PER_CALL", 10_000, 0..=10_000_000)?,
        media_changes_per_minute: env.bounded("RATE_LIMIT_MEDIA_CHANGES_PER_MINUTE", 60, 0..=100_000)?,
        webhook_refusals_per_minute: env.bounded(
            "RATE_LIMIT_WEBHOOK_REFUSALS_PER_MINUTE",
            60,
            0..=1_000_000,
        )?,
        ring_declines_limit: env.bounded("RING_DECLINES_LIMIT", 3, 0..=100)?,
        ring_declines_window: env.bounded_seconds("RING_DECLINES_WINDOW", 600, 1..=86_400)?,
        report_window: env.bounded_seconds("REPORT_WINDOW", 604_800, 3_600..=2_592_000)?,
        reports_per_day: env.bounded("REPORTS_PER_DAY", 20, 1..=1_000)?,
        unauthenticated_per_minute: env.bounded(
            "RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE",
            60,
            0..=1_000_000,
        )?,
        trusted_proxy_header,
    })
}

fn http(env: &Env<'_>) -> Result<HttpConfig, ConfigError> {
    let hsts = env.bounded_seconds("HSTS_MAX_AGE", 0, 0..=63_072_000)?;
    Ok(HttpConfig {
        header_timeout: env.bounded_seconds("HTTP_HEADER_TIMEOUT", 30, 1..=300)?,
        body_timeout: env.bounded_seconds("HTTP_BODY_TIMEOUT", 10, 1..=300)?,
        hsts_max_age: Some(hsts).filter(|max_age| !max_age.is_zero()),
    })
}

fn app_webhook(env: &Env<'_>) -> Result<Option<AppWebhookConfig>, ConfigError> {
    let Some(url) = env.optional("APP_WEBHOOK_URL") else { return Ok(None) };
    let secret = env
        .optional("APP_WEBHOOK_SECRET")
        .ok_or_else(|| env.error("APP_WEBHOOK_SECRET", "missing (required with APP_WEBHOOK_URL)"))?;
    AppWebhookConfig::new(url, &secret).map(Some)
}

fn call_authz(env: &Env<'_>) -> Result<Option<CallAuthzConfig>, ConfigError> {
    let Some(url) = env.optional("CALL_AUTHZ_URL") else { return Ok(None) };
    let secret = env
        .optional("CALL_AUTHZ_SECRET")
        .ok_or_else(|| env.error("CALL_AUTHZ_SECRET", "missing (required with CALL_AUTHZ_URL)"))?;
    let signed = AppWebhookConfig::new(url, &secret).map_err(|e| ConfigError {
        var: if e.var == "APP_WEBHOOK_URL" { "CALL_AUTHZ_URL" } else { "CALL_AUTHZ_SECRET" },
        reason: e.reason,
    })?;
    Ok(Some(CallAuthzConfig {
        url: signed.url,
        key: signed.key,
        timeout: Duration::from_millis(env.bounded("CALL_AUTHZ_TIMEOUT", 800, 10..=10_000)?),
        fail_open: env.flag("CALL_AUTHZ_FAIL_OPEN")?,
        cache: env.bounded_seconds("CALL_AUTHZ_CACHE", 0, 0..=86_400)?,
    }))
}

impl AppWebhookConfig {
    /// `secret` as the Standard Webhooks libraries read it: an optional
    /// `whsec_` prefix, then base64.
    pub fn new(url: String, secret: &str) -> Result<Self, ConfigError> {
        let error = |var, reason: &str| ConfigError { var, reason: reason.to_owned() };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(error("APP_WEBHOOK_URL", "must start with http:// or https://"));
        }
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)
            .map_err(|_| error("APP_WEBHOOK_SECRET", "must be whsec_ followed by base64"))?;
        if key.len() < 16 {
            return Err(error("APP_WEBHOOK_SECRET", "must decode to at least 16 bytes"));
        }
        Ok(AppWebhookConfig { url, key: SigningKey(key) })
    }
}

fn jwt_key(env: &Env<'_>) -> Result<JwtKey, ConfigError> {
    if let Some(source) = jwks_source(env)? {
        if env.optional("JWT_SECRET").is_some() || env.optional("JWT_PUBLIC_KEY").is_some() {
            let reason = "set one of JWT_SECRET, JWT_PUBLIC_KEY or the provider's keys (JWT_JWKS_URL, JWT_OIDC_DISCOVERY)";
            return Err(env.error("JWT_SECRET", reason));
        }
        return Ok(JwtKey::Jwks(JwksConfig {
            source,
            refresh: env.bounded_seconds("JWT_JWKS_REFRESH", 300, 10..=86_400)?,
            cooldown: env.bounded_seconds("JWT_JWKS_COOLDOWN", 5, 1..=60)?,
            timeout: env.bounded_seconds("JWT_JWKS_TIMEOUT", 5, 1..=60)?,
        }));
    }
    match (env.optional("JWT_SECRET"), env.optional("JWT_PUBLIC_KEY")) {
        (Some(_), Some(_)) => Err(env.error("JWT_SECRET", "set JWT_SECRET or JWT_PUBLIC_KEY, not both")),
        (Some(secret), None) if secret.len() < 32 => {
            Err(env.error("JWT_SECRET", "must be at least 32 characters"))
        }
        (Some(secret), None) => Ok(JwtKey::Hmac(Secret::new(secret))),
        (None, Some(pem)) => {
            let pem = pem.replace("\\n", "\n");
            if !pem.contains("-----BEGIN PUBLIC KEY-----") {
                return Err(env.error("JWT_PUBLIC_KEY", "must be a PEM public key"));
            }
            Ok(JwtKey::Public { pem })
        }
        (None, None) => Err(env.error("JWT_SECRET", "missing (or set JWT_PUBLIC_KEY or JWT_JWKS_URL)")),
    }
}

/// `JWT_JWKS_URL`, or discovery from `JWT_ISSUER` (`JWT_OIDC_DISCOVERY`).
fn jwks_source(env: &Env<'_>) -> Result<Option<JwksSource>, ConfigError> {
    let discovery = env.flag("JWT_OIDC_DISCOVERY")?;
    match (env.optional("JWT_JWKS_URL"), discovery) {
        (Some(_), true) => {
            Err(env.error("JWT_OIDC_DISCOVERY", "set JWT_JWKS_URL or JWT_OIDC_DISCOVERY, not both"))
        }
        (Some(url), false) => {
            if !fetchable(&url) {
                return Err(env.error("JWT_JWKS_URL", FETCHABLE));
            }
            Ok(Some(JwksSource::Url(url)))
        }
        (None, true) => {
            let issuer = env.optional("JWT_ISSUER").ok_or_else(|| {
                env.error("JWT_ISSUER", "missing (JWT_OIDC_DISCOVERY reads its discovery document)")
            })?;
            if !fetchable(&issuer) {
                return Err(env.error("JWT_ISSUER", FETCHABLE));
            }
            Ok(Some(JwksSource::Discovery { issuer }))
        }
        (None, false) => Ok(None),
    }
}

const FETCHABLE: &str = "must be an https:// URL (http:// only to a loopback address)";

/// Keys fetched in the clear could be anybody's: https, or http on loopback only.
pub fn fetchable(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => !host.is_empty(),
        "http" => loopback,
        _ => false,
    }
}

struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn error(&self, var: &'static str, reason: &str) -> ConfigError {
        ConfigError { var, reason: reason.to_owned() }
    }

    fn optional(&self, var: &str) -> Option<String> {
        (self.lookup)(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.optional(var).ok_or_else(|| self.error(var, "missing"))
    }

    fn parsed<T: FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError> {
        match self.optional(var) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| self.error(var, &format!("malformed value {v:?}"))),
        }
    }

    /// A number of `range`, or the variable named with the range it missed.
    fn bounded<T>(&self, var: &'static str, default: T, range: RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display,
    {
        let value = self.parsed(var, default)?;
        if !range.contains(&value) {
            let (low, high) = (range.start(), range.end());
            return Err(self.error(var, &format!("must be between {low} and {high}, not {value}")));
        }
        Ok(value)
    }

    /// Seconds within `range` (each variable documents its own).
    fn bounded_seconds(
        &self,
        var: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.bounded(var, default, range).map(Duration::from_secs)
    }

    /// Seconds of `range`, or `None` when the variable is not set.
    fn optional_seconds(
        &self,
        var: &'static str,
        range: RangeInclusive<u64>,
    ) -> Result<Option<Duration>, ConfigError> {
        match self.optional(var) {
            None => Ok(None),
            Some(_) => self.bounded_seconds(var, *range.start(), range).map(Some),
        }
    }

    fn flag(&self, var: &'static str) -> Result<bool, ConfigError> {
        match self.optional(var).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("false") | Some("0") | Some("no") => Ok(false),
            Some("true") | Some("1") | Some("yes") => Ok(true),
            Some(_) => Err(self.error(var, "must be true or false")),
        }
    }

    fn list(&self, var: &str) -> Vec<String> {
        self.optional(var)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default()
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
        include_str!("../.env.example")
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
    fn the_dev_files_hold_only_known_dev_secrets() {
        let env = env_example();
        for var in ["JWT_SECRET", "LIVEKIT_API_SECRET", "TURN_SECRET"] {
            assert!(DEV_SECRETS.contains(&env[var]), ".env.example's {var} is listed");
        }
        let files = [
            ("docker-compose.yml", include_str!("../docker-compose.yml")),
            ("livekit.yaml", include_str!("../livekit.yaml")),
            ("deploy/livekit.compose.yaml", include_str!("../deploy/livekit.compose.yaml")),
            ("coturn/turnserver.conf", include_str!("../coturn/turnserver.conf")),
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
