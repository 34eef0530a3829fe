//! Signing in with a real OpenID Connect provider (issue 29): panva's
//! oidc-provider (deploy/oidc/provider.mjs, installed by deploy/local.sh),
//! one per test on a port of its own, issuing real tokens; it rotates its
//! keys the way providers do (publish the next key, sign with it, drop the
//! old one) across restarts, while callgate runs on.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use callgate::config::{JwksConfig, JwksSource, JwtKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{TestApp, TestUser, eventually, spawn_app_configured};

/// The audience of the provider's access tokens.
const AUDIENCE: &str = "urn:callgate";
/// How long callgate waits between two fetches of the provider's keys.
const COOLDOWN: Duration = Duration::from_secs(1);

/// A provider process and what it is started with.
struct Provider {
    /// Its config and the private keys it keeps between restarts.
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

/// A user of the provider: a registered client (`sub` = its client id).
struct Account {
    id: String,
    secret: String,
}

impl Provider {
    /// A provider publishing `keys` (kid, alg) and signing with `sign`.
    async fn start(keys: &[(&str, &str)], sign: &str) -> Provider {
        let dir = std::env::temp_dir().join(format!("callgate-oidc-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a folder for the provider");
        // Its HTTP client may be the process's first (the app installs the same).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut provider = Provider { dir, port: 0, child: None, http: reqwest::Client::new() };
        provider.run(keys, sign).await;
        provider
    }

    async fn run(&mut self, keys: &[(&str, &str)], sign: &str) {
        let keys: Vec<Value> = keys.iter().map(|(kid, alg)| json!({"kid": kid, "alg": alg})).collect();
        let config = json!({"port": self.port, "state": self.dir.join("keys"), "keys": keys, "sign": sign});
        let config_file = self.dir.join("config.json");
        std::fs::write(&config_file, config.to_string()).expect("the provider's config");
        let modules = std::env::var("CALLGATE_OIDC_MODULES").expect(
            "CALLGATE_OIDC_MODULES: run the tests with deploy/local.sh test (it installs the provider)",
        );
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("provider.log"))
            .expect("the provider's log");
        let mut child = Command::new("node")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/oidc/provider.mjs"))
            .arg(&config_file)
            .env("CALLGATE_OIDC_MODULES", modules)
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
        let listening = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let line =
            listening.expect("the provider starts within 30 s").expect("its output").unwrap_or_default();
        let port = line.strip_prefix("listening ").and_then(|p| p.parse().ok());
        self.port = port.unwrap_or_else(|| panic!("the provider did not start ({line:?}): {}", self.log()));
        self.child = Some(child);
    }

    /// Stopped: it answers nothing (its port refuses connections).
    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("the provider stops");
        }
    }

    /// Started again on its port with another key list (a rotation step).
    async fn restart(&mut self, keys: &[(&str, &str)], sign: &str) {
        self.stop().await;
        self.run(keys, sign).await;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("provider.log")).unwrap_or_default()
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    async fn register(&self, name: &str, gender: &str) -> Account {
        let registration = json!({"name": name, "gender": gender});
        let resp = self.http.post(format!("{}/reg", self.issuer())).json(&registration).send().await;
        let body: Value = resp.expect("registered").json().await.expect("json");
        let field = |name: &str| body[name].as_str().unwrap_or_else(|| panic!("{name}: {body}")).to_owned();
        Account { id: field("client_id"), secret: field("client_secret") }
    }

    /// A JWT access token for the account, signed with the provider's current key.
    async fn token(&self, account: &Account) -> TestUser {
        // The provider's client ids and secrets are URL-safe (letters, digits, - and _).
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            account.id, account.secret
        );
        let resp = self
            .http
            .post(format!("{}/token", self.issuer()))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await;
        let body: Value = resp.expect("a token").json().await.expect("json");
        let token = body["access_token"].as_str().unwrap_or_else(|| panic!("no access token: {body}"));
        TestUser { id: account.id.clone(), token: token.to_owned() }
    }

    async fn user(&self, name: &str, gender: &str) -> TestUser {
        let account = self.register(name, gender).await;
        self.token(&account).await
    }

    /// How often its key set was asked for.
    async fn jwks_fetches(&self) -> u64 {
        let resp = self.http.get(format!("{}/test/fetches", self.issuer())).send().await;
        resp.expect("counts").json::<Value>().await.expect("json")["jwks"].as_u64().expect("a count")
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).expect("a JWT").kid.expect("a kid")
}

/// An app that verifies tokens with the provider's keys (`source`).
async fn app_trusting(provider: &Provider, source: JwksSource, refresh: Duration) -> TestApp {
    let issuer = provider.issuer();
    spawn_app_configured(move |c| {
        c.jwt.key =
            JwtKey::Jwks(JwksConfig { source, refresh, cooldown: COOLDOWN, timeout: Duration::from_secs(3) });
        c.jwt.issuer = Some(issuer);
        c.jwt.audience = Some(AUDIENCE.into());
    })
    .await
}

async fn app_with_keys_of(provider: &Provider) -> TestApp {
    app_trusting(provider, JwksSource::Url(provider.jwks_url()), Duration::from_secs(300)).await
}

async fn active_calls(app: &TestApp, user: &TestUser) -> (StatusCode, Value) {
    app.get("/api/v1/calls/active", user).await
}

#[tokio::test]
async fn the_provider_s_es256_tokens_are_accepted_for_a_whole_call() {
    let provider = Provider::start(&[("es-1", "ES256")], "es-1").await;
    let app = app_with_keys_of(&provider).await;
    let alice = provider.user("Alice", "female").await;
    let bob = provider.user("Bob", "male").await;
    assert_eq!(jsonwebtoken::decode_header(&alice.token).expect("a JWT").alg, Algorithm::ES256);
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let (status, body) = app.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let view = app.call(&call, &bob).await;
    assert!(view.to_string().contains("Alice"), "the name claim is the caller's name: {view}");
    let (status, body) = app.call_action(&call, "end", &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn with_discovery_from_the_issuer_rs256_and_eddsa_tokens_are_accepted() {
    for alg in ["RS256", "EdDSA"] {
        let provider = Provider::start(&[("k-1", alg)], "k-1").await;
        let discovery = JwksSource::Discovery { issuer: provider.issuer() };
        let app = app_trusting(&provider, discovery, Duration::from_secs(300)).await;
        let carol = provider.user("Carol", "female").await;
        let (status, body) = active_calls(&app, &carol).await;
        assert_eq!(status, StatusCode::OK, "{alg}: {body}");
    }
}

#[tokio::test]
async fn after_the_provider_rotates_new_tokens_pass_and_the_retired_key_s_stop_when_it_is_dropped() {
    let mut provider = Provider::start(&[("key-1", "ES256")], "key-1").await;
    // Refetched every 10 s (JWT_JWKS_REFRESH's least): the new key is
    // fetched sooner, for the first token naming it; the drop is seen then.
    let app = app_trusting(&provider, JwksSource::Url(provider.jwks_url()), Duration::from_secs(10)).await;
    let account = provider.register("Dana", "female").await;
    let old = provider.token(&account).await;
    assert_eq!(active_calls(&app, &old).await.0, StatusCode::OK);

    // The next key is published beside the current one and signs from now on.
    provider.restart(&[("key-2", "ES256"), ("key-1", "ES256")], "key-2").await;
    let new = provider.token(&account).await;
    assert_eq!(kid_of(&new.token), "key-2");
    let (status, body) = active_calls(&app, &new).await;
    assert_eq!(status, StatusCode::OK, "a token of the new key, callgate not restarted: {body}");
    assert_eq!(active_calls(&app, &old).await.0, StatusCode::OK, "both keys are trusted meanwhile");

    // The old key is dropped: its tokens (an hour long) stop working.
    provider.restart(&[("key-2", "ES256")], "key-2").await;
    eventually(Duration::from_secs(25), "the retired key's token is refused", || async {
        let (status, body) = active_calls(&app, &old).await;
        status == StatusCode::UNAUTHORIZED
            && body["detail"].as_str().unwrap_or_default().contains("unknown signing key")
    })
    .await;
    assert_eq!(active_calls(&app, &new).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_the_provider_s_kid_is_refused_without_a_fetch() {
    let provider = Provider::start(&[("es-1", "ES256")], "es-1").await;
    let app = app_with_keys_of(&provider).await;
    let erin = provider.user("Erin", "female").await;
    assert_eq!(active_calls(&app, &erin).await.0, StatusCode::OK);
    let fetched = provider.jwks_fetches().await;

    let (private, _) = crate::auth::ec_pair();
    let claims: Value =
        jsonwebtoken::dangerous::insecure_decode::<Value>(&erin.token).expect("its claims").claims;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("es-1".into());
    let key = EncodingKey::from_ec_pem(private.as_bytes()).expect("a key");
    let forged = jsonwebtoken::encode(&header, &claims, &key).expect("signed");
    let mallory = TestUser { id: erin.id.clone(), token: forged };
    for _ in 0..20 {
        assert_eq!(active_calls(&app, &mallory).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(provider.jwks_fetches().await, fetched, "a key already held is not fetched again");
}

/// A token that names a key nobody published (its signature is never checked).
fn made_up_kid_token(issuer: &str) -> String {
    let (private, _) = crate::auth::ec_pair();
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": "mallory", "iss": issuer, "aud": AUDIENCE, "iat": now, "exp": now + 600});
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(uuid::Uuid::new_v4().to_string());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_pem(private.as_bytes()).expect("a key"))
        .expect("signed")
}

#[tokio::test]
async fn a_flood_of_tokens_naming_made_up_keys_costs_the_provider_one_fetch_per_cooldown() {
    let provider = Provider::start(&[("es-1", "ES256")], "es-1").await;
    let app = app_with_keys_of(&provider).await;
    let before = provider.jwks_fetches().await;
    // One signature serves the flood: the kid is what changes.
    let template = made_up_kid_token(&provider.issuer());
    let (_, rest) = template.split_once('.').expect("a JWT");
    let started = Instant::now();
    let mut flood = Vec::new();
    while started.elapsed() < Duration::from_millis(3000) {
        for _ in 0..25 {
            let kid = uuid::Uuid::new_v4().to_string();
            let header = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                json!({"alg": "ES256", "typ": "JWT", "kid": kid}).to_string(),
            );
            let user = TestUser { id: "mallory".into(), token: format!("{header}.{rest}") };
            let (http, url) = (app.http.clone(), app.url("/api/v1/calls/active"));
            flood.push(tokio::spawn(async move {
                http.get(url).bearer_auth(&user.token).send().await.map(|r| r.status())
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answered = futures::future::join_all(flood).await;
    let elapsed = started.elapsed();
    for status in &answered {
        assert_eq!(status.as_ref().expect("no panic").as_ref().expect("answered"), &StatusCode::UNAUTHORIZED);
    }
    let fetches = provider.jwks_fetches().await - before;
    let allowed = (elapsed.as_secs_f64() / COOLDOWN.as_secs_f64()).ceil() as u64;
    assert!(fetches >= 1, "an unknown kid makes callgate look again");
    assert!(
        fetches <= allowed,
        "{} tokens in {elapsed:?}: {fetches} fetches, at most {allowed}",
        answered.len()
    );
}

#[tokio::test]
async fn with_the_provider_stopped_a_call_between_users_whose_keys_are_held_goes_on() {
    let mut provider = Provider::start(&[("rs-1", "RS256")], "rs-1").await;
    let app = app_with_keys_of(&provider).await;
    let alice = provider.user("Alice", "female").await;
    let bob = provider.user("Bob", "male").await;
    assert_eq!(active_calls(&app, &alice).await.0, StatusCode::OK);
    provider.stop().await;

    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    for (action, who) in [("accept", &bob), ("token", &alice), ("token", &bob), ("end", &alice)] {
        let (status, body) = app.call_action(&call, action, who, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
    }
    let stranger = TestUser { id: "mallory".into(), token: made_up_kid_token(&provider.issuer()) };
    let (status, body) = active_calls(&app, &stranger).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a key it cannot fetch: {body}");
    assert_eq!(body["code"], "unavailable");
    let ready = app.http.get(app.url("/ready")).send().await.expect("ready").status();
    assert_eq!(ready, StatusCode::OK, "the keys held still verify: the instance serves");
}

async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let resp = app.http.get(app.admin_url("/ready")).send().await.expect("ready");
    (resp.status(), resp.json().await.expect("json"))
}

#[tokio::test]
async fn with_the_provider_down_at_start_readiness_says_so_and_its_tokens_get_503_until_it_is_up() {
    let mut provider = Provider::start(&[("es-1", "ES256")], "es-1").await;
    let frank = provider.user("Frank", "male").await;
    provider.stop().await;

    let app = app_with_keys_of(&provider).await;
    let (status, body) = readiness(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["identity_provider"], "unavailable", "{body}");
    let (status, body) = active_calls(&app, &frank).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "unavailable");

    provider.restart(&[("es-1", "ES256")], "es-1").await;
    eventually(Duration::from_secs(15), "the keys are fetched once the provider answers", || async {
        readiness(&app).await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(readiness(&app).await.1["checks"]["identity_provider"], "ok");
    assert_eq!(active_calls(&app, &frank).await.0, StatusCode::OK);
}
