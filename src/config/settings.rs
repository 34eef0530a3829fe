//! The typed sections the schema's variables are read into (each field is
//! renamed to its variable; `deny_unknown_fields` stops a variable of the
//! table that no field reads). The sections that are already what the
//! service uses (`Timeouts`, `EventsConfig`, ...) are read straight into
//! those types; the rest are assembled by `Config` with the rules that
//! span variables.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use super::{EventsConfig, HttpConfig, Limits, LogFormat, RateLimits, Timeouts};
use crate::domain::consent::VideoPolicy;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: Server,
    pub database: Database,
    pub redis: Redis,
    pub jwt: Jwt,
    pub livekit: LiveKit,
    pub turn: Turn,
    pub calls: Calls,
    pub timeouts: Timeouts,
    pub app_webhook: Signed,
    pub call_authz: CallAuthz,
    pub events: EventsConfig,
    pub rate_limits: RateLimits,
    pub limits: Limits,
    pub appointments: Appointments,
    pub recording: Recording,
    pub http: HttpConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(rename = "PORT")]
    pub port: u16,
    #[serde(rename = "ADMIN_PORT")]
    pub admin_port: Option<u16>,
    #[serde(rename = "CORS_ORIGINS", default)]
    pub cors_origins: Vec<String>,
    #[serde(rename = "LOG_FORMAT")]
    pub log_format: LogFormat,
    #[serde(rename = "RUST_LOG")]
    pub log_filter: String,
    #[serde(rename = "CALLGATE_DEV")]
    pub dev_mode: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    #[serde(rename = "DATABASE_URL")]
    pub url: SecretString,
    #[serde(rename = "DATABASE_POOL_SIZE")]
    pub pool_size: u32,
    #[serde(rename = "DATABASE_POOL_MIN")]
    pub pool_min: u32,
    #[serde(rename = "DATABASE_ACQUIRE_TIMEOUT")]
    pub acquire_timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    #[serde(rename = "REDIS_URL")]
    pub url: SecretString,
    #[serde(rename = "REDIS_CLUSTER")]
    pub cluster: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    #[serde(rename = "JWT_SECRET")]
    pub secret: Option<SecretString>,
    #[serde(rename = "JWT_PUBLIC_KEY")]
    pub public_key: Option<String>,
    #[serde(rename = "JWT_JWKS_URL")]
    pub jwks_url: Option<String>,
    #[serde(rename = "JWT_OIDC_DISCOVERY")]
    pub oidc_discovery: bool,
    #[serde(rename = "JWT_ISSUER")]
    pub issuer: Option<String>,
    #[serde(rename = "JWT_AUDIENCE")]
    pub audience: Option<String>,
    #[serde(rename = "GENDER_CLAIM")]
    pub gender_claim: String,
    #[serde(rename = "JWT_MAX_AGE")]
    pub max_age: Option<Duration>,
    #[serde(rename = "JWT_JWKS_REFRESH")]
    pub jwks_refresh: Duration,
    #[serde(rename = "JWT_JWKS_COOLDOWN")]
    pub jwks_cooldown: Duration,
    #[serde(rename = "JWT_JWKS_TIMEOUT")]
    pub jwks_timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveKit {
    #[serde(rename = "LIVEKIT_URL")]
    pub url: String,
    #[serde(rename = "LIVEKIT_API_URL")]
    pub api_url: Option<String>,
    #[serde(rename = "LIVEKIT_API_KEY")]
    pub api_key: String,
    #[serde(rename = "LIVEKIT_API_SECRET")]
    pub api_secret: SecretString,
    #[serde(rename = "ROOM_PREFIX")]
    pub room_prefix: String,
    #[serde(rename = "TOKEN_TTL")]
    pub token_ttl: Duration,
    #[serde(rename = "RECONCILE_INTERVAL")]
    pub reconcile_interval: Duration,
    #[serde(rename = "ORPHAN_ROOM_GRACE")]
    pub orphan_room_grace: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    #[serde(rename = "TURN_URIS", default)]
    pub uris: Vec<String>,
    #[serde(rename = "STUN_URIS", default)]
    pub stun_uris: Vec<String>,
    #[serde(rename = "TURN_SECRET")]
    pub secret: SecretString,
    #[serde(rename = "TURN_TTL")]
    pub ttl: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calls {
    #[serde(rename = "MAX_CALL_PARTICIPANTS")]
    pub max_participants: usize,
    #[serde(rename = "VIDEO_POLICY")]
    pub video_policy: VideoPolicy,
    #[serde(rename = "SCREEN_SHARE_ROLES", default)]
    pub screen_share_roles: Vec<String>,
    #[serde(rename = "DEADLINE_POLL_MS")]
    pub deadline_poll: Duration,
}

/// `APP_WEBHOOK_URL` and its secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    #[serde(rename = "APP_WEBHOOK_URL")]
    pub url: Option<String>,
    #[serde(rename = "APP_WEBHOOK_SECRET")]
    pub secret: Option<SecretString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallAuthz {
    #[serde(rename = "CALL_AUTHZ_URL")]
    pub url: Option<String>,
    #[serde(rename = "CALL_AUTHZ_SECRET")]
    pub secret: Option<SecretString>,
    #[serde(rename = "CALL_AUTHZ_TIMEOUT")]
    pub timeout: Duration,
    #[serde(rename = "CALL_AUTHZ_FAIL_OPEN")]
    pub fail_open: bool,
    #[serde(rename = "CALL_AUTHZ_CACHE")]
    pub cache: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Appointments {
    #[serde(rename = "SCHEDULER_ROLES", default)]
    pub scheduler_roles: Vec<String>,
    #[serde(rename = "APPOINTMENT_EARLY_JOIN")]
    pub early_join: Duration,
    #[serde(rename = "APPOINTMENT_GRACE")]
    pub grace: Duration,
    #[serde(rename = "APPOINTMENT_AUTO_ADMIT")]
    pub auto_admit: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    #[serde(rename = "RECORDING_POLICY")]
    pub policy: crate::domain::consent::RecordingPolicy,
    #[serde(rename = "RECORDING_DIR")]
    pub dir: String,
    #[serde(rename = "RECORDING_EGRESS_DIR")]
    pub egress_dir: Option<String>,
    #[serde(rename = "RECORDING_RETENTION")]
    pub retention: Duration,
    #[serde(rename = "RECORDING_STORAGE")]
    pub storage: super::StorageKind,
    #[serde(rename = "RECORDING_LINK_TTL")]
    pub link_ttl: Duration,
    #[serde(rename = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[serde(rename = "S3_BUCKET")]
    pub s3_bucket: Option<String>,
    #[serde(rename = "S3_REGION")]
    pub s3_region: String,
    #[serde(rename = "S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    #[serde(rename = "S3_SECRET_ACCESS_KEY")]
    pub s3_secret_access_key: Option<SecretString>,
}

/// An HTTP header name (the schema checked it).
pub fn header_name<'de, D: Deserializer<'de>>(de: D) -> Result<Option<http::HeaderName>, D::Error> {
    let Some(name) = Option::<String>::deserialize(de)? else { return Ok(None) };
    name.parse().map(Some).map_err(serde::de::Error::custom)
}

/// A duration of which zero means none.
pub fn zero_is_none<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    Duration::deserialize(de).map(|d| Some(d).filter(|d| !d.is_zero()))
}

#[cfg(test)]
mod tests {
    use figment::Figment;

    use super::Settings;
    use crate::config::schema::{Rule, vars};
    use crate::config::source::Environment;

    /// A value that keeps `rule`.
    fn sample(rule: Rule) -> String {
        match rule {
            Rule::Text | Rule::List => "a,b".into(),
            Rule::Flag => "yes".into(),
            Rule::Number(min, _) | Rule::Seconds(min, _) | Rule::Millis(min, _) => min.to_string(),
            Rule::OneOf { words, .. } => words[0].into(),
            Rule::Url(schemes) => format!("{}://host.example", schemes[0]),
            Rule::Fetchable => "https://id.example/jwks".into(),
            Rule::Secret(min) => "s".repeat(min.max(1)),
            Rule::SigningKey => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            Rule::PublicKey => "-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----".into(),
            Rule::HeaderName => "X-Forwarded-For".into(),
        }
    }

    #[test]
    fn every_variable_of_the_schema_is_read_by_a_section() {
        let lookup = |name: &str| crate::config::schema::find(name).map(|var| sample(var.rule));
        let settings = Figment::from(Environment::new(&lookup)).extract::<Settings>();
        assert!(
            settings.is_ok(),
            "a variable no field reads, or a field of no variable: {:?}",
            settings.err()
        );
        assert!(vars().count() > 70);
    }
}
