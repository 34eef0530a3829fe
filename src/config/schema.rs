//! Every environment variable callgate reads, in one table: its name, rule,
//! default, one-line doc, and where the development file and the Helm chart
//! put it. Loading (`source`), validation (`Rule::parse`) and the documents
//! (`docs`: `.env.example`, the README's table, the chart's values) all come
//! from here; the typed sections of `settings` read what this table yields.

/// What a variable's value must be.
#[derive(Clone, Copy, Debug)]
pub enum Rule {
    /// Any text.
    Text,
    /// Comma-separated; blank items are dropped.
    List,
    /// `true` or `false` (also `1`/`0`, `yes`/`no`, any case).
    Flag,
    /// A whole number within the bounds.
    Number(u64, u64),
    /// Whole seconds within the bounds.
    Seconds(u64, u64),
    /// Whole milliseconds within the bounds.
    Millis(u64, u64),
    /// One of these words (`aliases` are accepted for the word they name).
    OneOf { words: &'static [&'static str], aliases: &'static [(&'static str, &'static str)] },
    /// A URL of one of these schemes.
    Url(&'static [&'static str]),
    /// An `https://` URL, or `http://` to a loopback address.
    Fetchable,
    /// A secret of at least this many characters; never printed.
    Secret(usize),
    /// A Standard Webhooks secret, `whsec_<base64>` of at least 16 bytes; never printed.
    SigningKey,
    /// A PEM public key (`\n` may stand for the line breaks).
    PublicKey,
    /// An HTTP header name.
    HeaderName,
}

/// What an unset (or blank) variable means.
#[derive(Clone, Copy, Debug)]
pub enum Unset {
    /// Start-up stops: `<NAME>: missing`.
    Required,
    /// This value, as if it were set.
    Default(&'static str),
    /// The feature is off, or the value comes from elsewhere; says which.
    Off(&'static str),
}

/// How `.env.example` (the loopback development stack) sets a variable.
#[derive(Clone, Copy, Debug)]
pub enum Example {
    /// Its default (blank when it has none).
    Default,
    /// This development value.
    Value(&'static str),
    /// Left unset: a commented-out line shows it.
    Unset,
}

/// Where the Helm chart (`deploy/helm/callgate`) sets a variable.
#[derive(Clone, Copy, Debug)]
pub enum Helm {
    /// A key of `config:` in values.yaml (the ConfigMap), with its default.
    Config,
    /// A key of `config:` in values.yaml, with this example.
    Example(&'static str),
    /// A key of the chart's Secret (`secrets.values` in values.yaml).
    Secret,
    /// Set by the chart itself, from the values this names.
    Chart(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct Var {
    pub name: &'static str,
    pub rule: Rule,
    pub unset: Unset,
    /// One line: what it does (the rule and the default are added by `docs`).
    pub doc: &'static str,
    pub example: Example,
    pub helm: Helm,
    /// What values.yaml adds for the chart's operators (empty: nothing).
    pub chart_note: &'static str,
}

impl Var {
    const fn new(name: &'static str, rule: Rule, unset: Unset, doc: &'static str) -> Self {
        Var { name, rule, unset, doc, example: Example::Default, helm: Helm::Config, chart_note: "" }
    }

    const fn dev(self, value: &'static str) -> Self {
        Var { example: Example::Value(value), ..self }
    }

    const fn dev_unset(self) -> Self {
        Var { example: Example::Unset, ..self }
    }

    const fn helm(self, helm: Helm) -> Self {
        Var { helm, ..self }
    }

    const fn chart_note(self, chart_note: &'static str) -> Self {
        Var { chart_note, ..self }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self.rule, Rule::Secret(_) | Rule::SigningKey)
    }
}

/// A group of variables: one typed section of `settings` (by `key`), one
/// heading of the documents (by `title`).
#[derive(Debug)]
pub struct Section {
    pub key: &'static str,
    pub title: &'static str,
    pub vars: &'static [Var],
}

/// Secrets outside the development switch are at least this long.
pub const MIN_SECRET_LEN: usize = 32;

const fn seconds(name: &'static str, min: u64, max: u64, default: &'static str, doc: &'static str) -> Var {
    Var::new(name, Rule::Seconds(min, max), Unset::Default(default), doc)
}

const fn count(name: &'static str, min: u64, max: u64, default: &'static str, doc: &'static str) -> Var {
    Var::new(name, Rule::Number(min, max), Unset::Default(default), doc)
}

const fn flag(name: &'static str, doc: &'static str) -> Var {
    Var::new(name, Rule::Flag, Unset::Default("false"), doc)
}

const fn list(name: &'static str, unset: &'static str, doc: &'static str) -> Var {
    Var::new(name, Rule::List, Unset::Off(unset), doc)
}

const U32: u64 = u32::MAX as u64;
const HTTP: &[&str] = &["http", "https"];

pub const SECTIONS: &[Section] = &[
    Section {
        key: "server",
        title: "Server",
        vars: &[
            count("PORT", 0, 65_535, "8080", "HTTP port of the API, the event streams and LiveKit's webhooks")
                .helm(Helm::Chart("ports.http")),
            Var::new(
                "ADMIN_PORT",
                Rule::Number(0, 65_535),
                Unset::Off("no operations listener, metrics not served"),
                "port of the operations listener (/metrics, the detailed /ready); must differ from PORT",
            )
            .helm(Helm::Chart("ports.admin")),
            list("CORS_ORIGINS", "no browser origin", "browser origins allowed to call the API")
                .dev("http://localhost:3000")
                .helm(Helm::Example("https://app.example.com")),
            Var::new(
                "LOG_FORMAT",
                Rule::OneOf { words: &["pretty", "json"], aliases: &[("text", "pretty")] },
                Unset::Default("pretty"),
                "log lines as readable text or as JSON (for log collectors)",
            )
            .helm(Helm::Chart("json")),
            Var::new("RUST_LOG", Rule::Text, Unset::Default("info"), "the tracing filter of the log lines")
                .dev("info,callgate=debug"),
            flag(
                "CALLGATE_DEV",
                "accept the published development secrets and short secrets (a WARN line says so); never in production",
            )
            .dev("true")
            .helm(Helm::Chart("false")),
        ],
    },
    Section {
        key: "database",
        title: "PostgreSQL",
        vars: &[
            Var::new("DATABASE_URL", Rule::Secret(0), Unset::Required, "PostgreSQL connection URL")
                .dev("postgres://callgate:callgate@127.0.0.1:5432/callgate")
                .helm(Helm::Chart("postgres.url or postgres.existingSecret")),
            count("DATABASE_POOL_SIZE", 1, 1000, "32", "connections of each instance's pool (instances times this under max_connections)")
                .chart_note("Replicas x DATABASE_POOL_SIZE must stay under the server's max_connections (or its pooler's)."),
            count("DATABASE_POOL_MIN", 0, 1000, "2", "connections kept open when idle (PostgreSQL logins are slow)"),
            seconds("DATABASE_ACQUIRE_TIMEOUT", 1, 300, "5", "how long a request waits for a pooled connection"),
        ],
    },
    Section {
        key: "redis",
        title: "Redis",
        vars: &[
            Var::new(
                "REDIS_URL",
                Rule::Secret(0),
                Unset::Required,
                "Redis: events across instances, presence, rate limits (with REDIS_CLUSTER the seed nodes, comma-separated)",
            )
            .dev("redis://127.0.0.1:6379")
            .helm(Helm::Chart("redis.address, redis.username, redis.password")),
            flag("REDIS_CLUSTER", "REDIS_URL names the seed nodes of a Redis Cluster, 7 or later (sharded pub/sub)")
                .helm(Helm::Chart("redis.cluster")),
        ],
    },
    Section {
        key: "jwt",
        title: "User tokens",
        vars: &[
            Var::new(
                "JWT_SECRET",
                Rule::Secret(MIN_SECRET_LEN),
                Unset::Off("JWT_PUBLIC_KEY or an identity provider's keys"),
                "HS256 secret that verifies the host application's user tokens",
            )
            .dev("callgate-dev-jwt-secret-change-me-0123456789")
            .helm(Helm::Secret),
            Var::new(
                "JWT_PUBLIC_KEY",
                Rule::PublicKey,
                Unset::Off("JWT_SECRET or an identity provider's keys"),
                "PEM public key (RS256 or ES256) instead of JWT_SECRET; not secret",
            )
            .dev_unset(),
            Var::new(
                "JWT_JWKS_URL",
                Rule::Fetchable,
                Unset::Off("JWT_SECRET or JWT_PUBLIC_KEY"),
                "an identity provider's key set (README \"Signing in with an identity provider\"), instead of JWT_SECRET",
            )
            .chart_note("With it, leave JWT_SECRET out of the Secret."),
            flag(
                "JWT_OIDC_DISCOVERY",
                "read the key set's address from JWT_ISSUER's /.well-known/openid-configuration (not with JWT_JWKS_URL)",
            )
            .chart_note("With it (or JWT_OIDC_DISCOVERY), leave JWT_SECRET out of the Secret."),
            Var::new(
                "JWT_ISSUER",
                Rule::Text,
                Unset::Off("not checked"),
                "user tokens must carry this iss (required by JWT_OIDC_DISCOVERY)",
            )
            .dev_unset(),
            Var::new("JWT_AUDIENCE", Rule::Text, Unset::Off("not checked"), "user tokens must carry this aud")
                .dev_unset(),
            Var::new(
                "GENDER_CLAIM",
                Rule::Text,
                Unset::Default("gender"),
                "the user-token claim carrying the user's gender (read by the video policy)",
            ),
            Var::new(
                "JWT_MAX_AGE",
                Rule::Seconds(10, 2_592_000),
                Unset::Off("only exp counts"),
                "user tokens issued (iat) longer ago than this are refused",
            ),
            seconds("JWT_JWKS_REFRESH", 10, 86_400, "300", "an identity provider's keys are fetched again this often"),
            seconds("JWT_JWKS_COOLDOWN", 1, 60, "5", "at most one key fetch per this long, whatever the tokens name"),
            seconds("JWT_JWKS_TIMEOUT", 1, 60, "5", "a key fetch (discovery and key set) gives up after this long"),
        ],
    },
    Section {
        key: "livekit",
        title: "LiveKit",
        vars: &[
            Var::new("LIVEKIT_URL", Rule::Url(&["ws", "wss"]), Unset::Required, "the LiveKit URL clients dial")
                .dev("ws://127.0.0.1:7880")
                .helm(Helm::Example("wss://livekit.example.com"))
                .chart_note("wss:// in production: the LiveKit Ingress host below, or your own load balancer in front of LiveKit's 7880."),
            Var::new(
                "LIVEKIT_API_URL",
                Rule::Url(HTTP),
                Unset::Off("LIVEKIT_URL with http(s)://"),
                "the LiveKit URL callgate calls",
            )
            .dev_unset()
            .helm(Helm::Chart("livekit.apiUrl, or the chart's LiveKit Service")),
            Var::new(
                "LIVEKIT_API_KEY",
                Rule::Text,
                Unset::Required,
                "LiveKit API key (LiveKit is configured with the same pair and signs its webhooks with it)",
            )
            .dev("devkey")
            .helm(Helm::Example("callgate")),
            Var::new("LIVEKIT_API_SECRET", Rule::Secret(MIN_SECRET_LEN), Unset::Required, "LiveKit API secret")
                .dev("callgate-dev-livekit-secret-0123456789abcdef")
                .helm(Helm::Secret),
            Var::new(
                "ROOM_PREFIX",
                Rule::Text,
                Unset::Default("cg-"),
                "rooms are named <prefix><call id>; rooms named otherwise are never touched",
            ),
            seconds("TOKEN_TTL", 10, 86_400, "60", "lifetime of LiveKit join tokens (they only gate joining)"),
            seconds("RECONCILE_INTERVAL", 1, 3600, "5", "how often live calls are compared with LiveKit's rooms and repaired"),
            seconds("ORPHAN_ROOM_GRACE", 1, 3600, "30", "a LiveKit room with no call is deleted once it is this old"),
        ],
    },
    Section {
        key: "turn",
        title: "TURN",
        vars: &[
            list("TURN_URIS", "none", "TURN URIs handed to clients as RTCIceServer urls")
                .dev("turn:127.0.0.1:3478?transport=udp,turn:127.0.0.1:3478?transport=tcp")
                .helm(Helm::Example(
                    "turn:turn.example.com:3478?transport=udp,turn:turn.example.com:3478?transport=tcp",
                ))
                .chart_note("Coturn's public address (coturn.host), port 3478, udp and tcp."),
            list("STUN_URIS", "none", "STUN URIs handed to clients")
                .dev("stun:127.0.0.1:3478")
                .helm(Helm::Example("stun:turn.example.com:3478")),
            Var::new(
                "TURN_SECRET",
                Rule::Secret(0),
                Unset::Required,
                "Coturn's static-auth-secret; at least 32 characters outside CALLGATE_DEV",
            )
            .dev("callgate-dev-turn-secret-0123456789abcdef")
            .helm(Helm::Secret),
            seconds("TURN_TTL", 60, 86_400, "3600", "lifetime of issued TURN credentials"),
        ],
    },
    Section {
        key: "calls",
        title: "Calls and video consent",
        vars: &[
            count("MAX_CALL_PARTICIPANTS", 2, 100, "8", "participants of one call, its initiator included"),
            Var::new(
                "VIDEO_POLICY",
                Rule::OneOf { words: &["female_consent", "mutual", "open"], aliases: &[] },
                Unset::Default("female_consent"),
                "who must consent before video flows (README \"Video consent\")",
            ),
            list(
                "SCREEN_SHARE_ROLES",
                "everybody may",
                "roles (the user token's roles) that may share their screen while video is on",
            ),
            Var::new(
                "DEADLINE_POLL_MS",
                Rule::Millis(10, 10_000),
                Unset::Default("200"),
                "how often each instance looks for due jobs (a job due now is NOTIFYed at once)",
            )
            .dev_unset(),
        ],
    },
    Section {
        key: "timeouts",
        title: "Call timeouts",
        vars: &[
            seconds("RINGING_TIMEOUT", 1, 3600, "30", "a ringing call nobody answers ends as missed after this long"),
            seconds(
                "CONNECT_TIMEOUT",
                1,
                3600,
                "30",
                "an accepted call that never gets two participants into LiveKit fails after this long",
            ),
            seconds("MAX_CALL_DURATION", 60, 86_400, "14400", "a call is ended (max_duration) after this long active"),
            seconds(
                "REJOIN_GRACE",
                1,
                600,
                "20",
                "a participant whose connection dropped is reconnecting this long before they are left",
            ),
            seconds("VIDEO_REQUEST_TIMEOUT", 5, 600, "30", "an unanswered video request expires after this long"),
            seconds("VIDEO_REQUEST_COOLDOWN", 1, 86_400, "60", "after a rejected video request the requester waits this long"),
        ],
    },
    Section {
        key: "app_webhook",
        title: "App webhooks",
        vars: &[
            Var::new(
                "APP_WEBHOOK_URL",
                Rule::Url(HTTP),
                Unset::Off("none sent"),
                "where the host application hears about calls (Standard Webhooks)",
            ),
            Var::new(
                "APP_WEBHOOK_SECRET",
                Rule::SigningKey,
                Unset::Off("required with APP_WEBHOOK_URL"),
                "signs the app webhooks: echo whsec_$(openssl rand -base64 32)",
            )
            .helm(Helm::Secret),
        ],
    },
    Section {
        key: "call_authz",
        title: "Who may call whom",
        vars: &[
            Var::new(
                "CALL_AUTHZ_URL",
                Rule::Url(HTTP),
                Unset::Off("no hook"),
                "the host application's hook asked before anything rings (README \"Who may call whom\")",
            ),
            Var::new(
                "CALL_AUTHZ_SECRET",
                Rule::SigningKey,
                Unset::Off("required with CALL_AUTHZ_URL"),
                "signs the hook's requests as app webhooks are signed",
            )
            .helm(Helm::Secret),
            Var::new(
                "CALL_AUTHZ_TIMEOUT",
                Rule::Millis(10, 10_000),
                Unset::Default("800"),
                "the hook's answer must come within this, or the call is refused 503",
            ),
            flag(
                "CALL_AUTHZ_FAIL_OPEN",
                "a hook that timed out or could not be reached lets the call ring (its 4xx is still a no)",
            ),
            seconds(
                "CALL_AUTHZ_CACHE",
                0,
                86_400,
                "0",
                "a decision is reused this long per caller, callee and conversation; 0: never",
            ),
        ],
    },
    Section {
        key: "events",
        title: "Event streams and presence",
        vars: &[
            seconds("EVENTS_HEARTBEAT", 1, 300, "25", "a heartbeat this often; a client silent for two is dropped"),
            seconds("EVENTS_TICKET_TTL", 1, 600, "30", "lifetime of a one-time event stream ticket"),
            seconds(
                "PRESENCE_TTL",
                1,
                600,
                "30",
                "a user is online this long after their instance last confirmed their connection",
            ),
            flag("REQUIRE_CALLEE_ONLINE", "calling users with no open event stream answers 409 callee_offline"),
        ],
    },
    Section {
        key: "rate_limits",
        title: "Rate limits (shared through Redis; 0: no limit)",
        vars: &[
            count("RATE_LIMIT_CALL_STARTS_PER_MINUTE", 0, U32, "20", "call starts per user in any 60 s"),
            count(
                "RATE_LIMIT_VIDEO_REQUESTS_PER_CALL",
                0,
                U32,
                "10",
                "video requests per call in any RATE_LIMIT_VIDEO_REQUESTS_WINDOW",
            ),
            count(
                "RATE_LIMIT_VIDEO_REQUESTS_PER_PARTICIPANT",
                0,
                10_000,
                "5",
                "of a call's video requests, one participant may put this many in the same window",
            ),
            seconds("RATE_LIMIT_VIDEO_REQUESTS_WINDOW", 1, 86_400, "600", "the window of the video request limits"),
            count(
                "RATE_LIMIT_REQUESTS_PER_MINUTE",
                0,
                U32,
                "600",
                "API requests per user per minute (a bucket of this size refilling at this rate)",
            ),
            Var::new(
                "RATE_LIMIT_REDIS_TIMEOUT_MS",
                Rule::Millis(10, 10_000),
                Unset::Default("300"),
                "how long a limit waits for Redis before it fails open (calls, requests) or closed (video requests)",
            ),
        ],
    },
    Section {
        key: "limits",
        title: "Limits per user, call and address (README \"Limits (per user)\"; 0: no limit)",
        vars: &[
            count(
                "EVENTS_MAX_STREAMS_PER_USER",
                0,
                1000,
                "5",
                "event streams open at once per user; one more closes the oldest (close code 4008)",
            ),
            seconds("QUALITY_SAMPLE_INTERVAL", 0, 3600, "2", "a participant's quality samples at most this often"),
            count("QUALITY_MAX_SAMPLES_PER_CALL", 0, 10_000_000, "10000", "quality samples kept per call"),
            count(
                "RATE_LIMIT_MEDIA_CHANGES_PER_MINUTE",
                0,
                100_000,
                "60",
                "a participant's media changes per minute (a bucket refilling at that rate)",
            ),
            count(
                "RATE_LIMIT_WEBHOOK_REFUSALS_PER_MINUTE",
                0,
                1_000_000,
                "60",
                "LiveKit webhooks refused for their signature per address per minute, each instance (then 429, unlogged)",
            ),
            count(
                "RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE",
                0,
                1_000_000,
                "60",
                "requests without valid credentials per client address per minute",
            ),
            Var::new(
                "TRUSTED_PROXY_HEADER",
                Rule::HeaderName,
                Unset::Off("the connection's peer address"),
                "the header a trusted reverse proxy puts the client address in (its right-most entry), e.g. X-Forwarded-For",
            )
            .chart_note("Behind an Ingress the peer address is the controller's: name the header it puts the client's address in, only when every request comes through it (a client that reaches the pods directly could write the header itself)."),
            count(
                "RING_DECLINES_LIMIT",
                0,
                100,
                "3",
                "declines of one caller by one callee within the window, then 429 ring_cooldown; 0: never",
            ),
            seconds("RING_DECLINES_WINDOW", 1, 86_400, "600", "the window of RING_DECLINES_LIMIT"),
            seconds(
                "REPORT_WINDOW",
                3600,
                2_592_000,
                "604800",
                "participants may report one another during a call and this long after it ended",
            ),
            count("REPORTS_PER_DAY", 1, 1000, "20", "reports one user may file in 24 hours"),
        ],
    },
    Section {
        key: "appointments",
        title: "Appointments",
        vars: &[
            list(
                "SCHEDULER_ROLES",
                "nobody",
                "roles (the user token's roles) that may book appointments, besides the host application's service role",
            ),
            seconds("APPOINTMENT_EARLY_JOIN", 0, 86_400, "600", "an appointment may be joined this long before it starts"),
            seconds(
                "APPOINTMENT_GRACE",
                0,
                86_400,
                "900",
                "people may come this long after an appointment's end before it is a no-show",
            ),
            flag(
                "APPOINTMENT_AUTO_ADMIT",
                "waiting guests are admitted as soon as a host is in (else a host admits each)",
            ),
        ],
    },
    Section {
        key: "recording",
        title: "Recording",
        vars: &[
            Var::new(
                "RECORDING_POLICY",
                Rule::OneOf { words: &["off", "all_party"], aliases: &[] },
                Unset::Default("off"),
                "whether calls may be recorded by LiveKit Egress; all_party: while everyone present consents (README \"Recording\")",
            )
            .dev("all_party")
            .chart_note("all_party needs an egress beside LiveKit and a volume both RECORDING_DIR and RECORDING_EGRESS_DIR name."),
            Var::new(
                "RECORDING_DIR",
                Rule::Text,
                Unset::Default("/var/lib/callgate/recordings"),
                "where callgate reads (and deletes) recordings' files; an absolute path",
            ),
            Var::new(
                "RECORDING_EGRESS_DIR",
                Rule::Text,
                Unset::Off("RECORDING_DIR"),
                "the same folder as LiveKit Egress sees it (egress writes there); an absolute path",
            )
            .dev_unset(),
            seconds(
                "RECORDING_RETENTION",
                3600,
                315_360_000,
                "2592000",
                "a recording (its file and its row) is deleted this long after it ended",
            ),
            Var::new(
                "RECORDING_STORAGE",
                Rule::OneOf { words: &["local", "s3"], aliases: &[] },
                Unset::Default("local"),
                "where recordings' files are kept: local (in RECORDING_DIR) or s3 (uploaded to S3_BUCKET, then deleted from RECORDING_DIR)",
            ),
            seconds(
                "RECORDING_LINK_TTL",
                10,
                3600,
                "300",
                "a download link to a recording (presigned with s3) works this long",
            ),
            Var::new(
                "S3_ENDPOINT",
                Rule::Url(HTTP),
                Unset::Off("required with RECORDING_STORAGE=s3"),
                "the S3-compatible server (path-style requests); participants' download links point there, so they must reach it",
            )
            .dev("http://127.0.0.1:7070")
            .helm(Helm::Example("https://s3.eu-west-1.amazonaws.com")),
            Var::new("S3_BUCKET", Rule::Text, Unset::Off("required with RECORDING_STORAGE=s3"), "the bucket recordings go to")
                .dev("callgate-recordings"),
            Var::new("S3_REGION", Rule::Text, Unset::Default("us-east-1"), "the bucket's region (signs the requests)"),
            Var::new(
                "S3_ACCESS_KEY_ID",
                Rule::Text,
                Unset::Off("required with RECORDING_STORAGE=s3"),
                "the access key that may put, get and delete the bucket's objects",
            )
            .dev("callgate-dev"),
            Var::new(
                "S3_SECRET_ACCESS_KEY",
                Rule::Secret(0),
                Unset::Off("required with RECORDING_STORAGE=s3"),
                "the access key's secret",
            )
            .dev("callgate-dev-s3-secret-0123456789abcdef")
            .helm(Helm::Secret),
        ],
    },
    Section {
        key: "http",
        title: "HTTP server",
        vars: &[
            seconds(
                "HTTP_HEADER_TIMEOUT",
                1,
                300,
                "30",
                "a request's head must arrive within this; an idle keep-alive connection is closed after as long",
            ),
            seconds("HTTP_BODY_TIMEOUT", 1, 300, "10", "a request's body must arrive within this of its head"),
            Var::new(
                "HSTS_MAX_AGE",
                Rule::Seconds(0, 63_072_000),
                Unset::Default("0"),
                "Strict-Transport-Security max-age, only when clients reach callgate over HTTPS alone; 0: no header",
            )
            .chart_note("E.g. \"31536000\" when the Ingress terminates TLS."),
        ],
    },
];

/// Every variable, section by section.
pub fn vars() -> impl Iterator<Item = &'static Var> {
    SECTIONS.iter().flat_map(|section| section.vars)
}

/// The variable of this name.
pub fn find(name: &str) -> Option<&'static Var> {
    vars().find(|var| var.name == name)
}
