//! The provider's keys and the authenticator against a key set served
//! in-process (the real provider is in tests/api/oidc.rs).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::config::{JwtConfig, JwtKey};
use crate::infra::auth::{AuthError, Authenticator};

struct Signer {
    kid: &'static str,
    alg: Algorithm,
    pem: &'static str,
}

const RS: Signer =
    Signer { kid: "rs-1", alg: Algorithm::RS256, pem: include_str!("testdata/jwks-rs256.pem") };
const ES: Signer =
    Signer { kid: "es-1", alg: Algorithm::ES256, pem: include_str!("testdata/jwks-es256.pem") };
const ED: Signer =
    Signer { kid: "ed-1", alg: Algorithm::EdDSA, pem: include_str!("testdata/jwks-eddsa.pem") };
/// Another P-256 key that claims ES's name.
const IMPOSTOR: Signer =
    Signer { kid: "es-1", alg: Algorithm::ES256, pem: include_str!("testdata/jwks-es256-other.pem") };

impl Signer {
    fn encoding(&self) -> EncodingKey {
        let pem = self.pem.as_bytes();
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
            _ => EncodingKey::from_ed_pem(pem),
        }
        .expect("a test key")
    }

    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding(), self.alg).expect("its public half");
        jwk.common.key_id = Some(self.kid.into());
        serde_json::to_value(jwk).expect("a JWK")
    }

    fn token_naming(&self, kid: &str, sub: &str) -> String {
        let now = SystemClock.now().timestamp();
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        let claims = json!({"sub": sub, "iat": now, "exp": now + 600});
        jsonwebtoken::encode(&header, &claims, &self.encoding()).expect("signed")
    }

    fn token(&self, sub: &str) -> String {
        self.token_naming(self.kid, sub)
    }
}

fn key_set(signers: &[&Signer]) -> String {
    json!({"keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>()}).to_string()
}

/// What the in-process provider answers, and how often its key set was asked for.
struct Answers {
    status: u16,
    jwks: String,
    discovery: Option<String>,
    fetches: usize,
}

/// A provider on loopback that can be stopped and started on its address.
struct Provider {
    address: std::net::SocketAddr,
    answers: Arc<Mutex<Answers>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Provider {
    async fn serving(signers: &[&Signer]) -> Provider {
        let answers = Answers { status: 200, jwks: key_set(signers), discovery: None, fetches: 0 };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("its address");
        let mut provider = Provider { address, answers: Arc::new(Mutex::new(answers)), server: None };
        provider.server = Some(tokio::spawn(serve(listener, provider.answers.clone())));
        provider
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.answers.lock().expect("not poisoned")
    }

    fn publish(&self, signers: &[&Signer]) {
        self.answers().jwks = key_set(signers);
    }

    fn fetches(&self) -> usize {
        self.answers().fetches
    }

    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    async fn start(&mut self) {
        let listener = TcpListener::bind(self.address).await.expect("its address again");
        self.server = Some(tokio::spawn(serve(listener, self.answers.clone())));
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, answers: Arc<Mutex<Answers>>) {
    while let Ok((mut socket, _)) = listener.accept().await {
        let answers = answers.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let (status, body) = {
                let mut answers = answers.lock().expect("not poisoned");
                match (&answers.discovery, path.as_str()) {
                    (Some(doc), "/.well-known/openid-configuration") => (200, doc.clone()),
                    _ => {
                        answers.fetches += 1;
                        (answers.status, answers.jwks.clone())
                    }
                }
            };
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

fn config(source: JwksSource, cooldown: Duration) -> JwtConfig {
    JwtConfig {
        key: JwtKey::Jwks(JwksConfig {
            source,
            refresh: Duration::from_secs(3600),
            cooldown,
            timeout: Duration::from_secs(2),
        }),
        issuer: None,
        audience: None,
        gender_claim: "gender".into(),
        max_age: None,
    }
}

const COOLDOWN: Duration = Duration::from_secs(1);

/// An authenticator with the provider's keys, fetched as at start.
async fn authenticator(source: JwksSource) -> Authenticator {
    let auth = Authenticator::new(&config(source, COOLDOWN)).expect("an authenticator");
    auth.provider_keys().expect("the provider's keys").load().await;
    auth
}

async fn verify(auth: &Authenticator, token: &str) -> Result<String, AuthError> {
    auth.verify(token, SystemClock.now()).await.map(|user| user.id.as_str().to_owned())
}

#[tokio::test]
async fn tokens_signed_by_any_published_key_verify_rs256_es256_and_eddsa_alike() {
    let provider = Provider::serving(&[&RS, &ES, &ED]).await;
    let auth = authenticator(JwksSource::Url(provider.url())).await;
    assert!(auth.ready());
    for signer in [&RS, &ES, &ED] {
        assert_eq!(verify(&auth, &signer.token("alice")).await, Ok("alice".into()), "{:?}", signer.alg);
    }
    assert_eq!(provider.fetches(), 1, "fetched once, at start");
}

#[tokio::test]
async fn a_key_not_seen_yet_is_fetched_once_for_all_the_tokens_that_wait_for_it() {
    let provider = Provider::serving(&[&ES]).await;
    let auth = authenticator(JwksSource::Url(provider.url())).await;
    provider.publish(&[&ES, &RS]);
    let tokens: Vec<String> = (0..20).map(|i| RS.token(&format!("user-{i}"))).collect();
    let verified = futures::future::join_all(tokens.iter().map(|t| verify(&auth, t))).await;
    assert!(verified.iter().all(Result::is_ok), "{verified:?}");
    assert_eq!(provider.fetches(), 2, "one fetch at start, one shared by the twenty");
}

#[tokio::test]
async fn a_flood_of_made_up_kids_fetches_at_most_once_per_cooldown() {
    let provider = Provider::serving(&[&ES]).await;
    let auth = Arc::new(authenticator(JwksSource::Url(provider.url())).await);
    let started = Instant::now();
    let mut flood = Vec::new();
    while started.elapsed() < Duration::from_millis(2500) {
        for _ in 0..20 {
            let token = ES.token_naming(&uuid::Uuid::new_v4().to_string(), "mallory");
            let auth = auth.clone();
            flood.push(tokio::spawn(async move { verify(&auth, &token).await }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered = futures::future::join_all(flood).await;
    let elapsed = started.elapsed();
    for answer in &answered {
        assert_eq!(answer.as_ref().expect("no panic"), &Err(AuthError::Refused("unknown signing key")));
    }
    let flood_fetches = provider.fetches() - 1;
    assert!(flood_fetches >= 1, "a token naming an unknown key makes the keys be fetched again");
    let allowed = elapsed.as_secs_f64() / COOLDOWN.as_secs_f64();
    assert!(
        flood_fetches as f64 <= allowed,
        "{} tokens in {elapsed:?}: {flood_fetches} fetches, at most {allowed:.1}",
        answered.len()
    );
}

#[tokio::test]
async fn a_token_naming_a_known_key_but_signed_by_another_is_refused_without_a_fetch() {
    let provider = Provider::serving(&[&ES]).await;
    let auth = authenticator(JwksSource::Url(provider.url())).await;
    let impostor = IMPOSTOR.token("mallory");
    assert_eq!(verify(&auth, &impostor).await, Err(AuthError::Refused("invalid or expired token")));
    let other_algorithm = RS.token_naming(ES.kid, "mallory");
    assert_eq!(
        verify(&auth, &other_algorithm).await,
        Err(AuthError::Refused("the token's key does not fit its algorithm"))
    );
    assert_eq!(provider.fetches(), 1, "no fetch for a key already held");
}

#[tokio::test]
async fn a_key_the_provider_drops_stops_verifying_at_the_next_fetch() {
    let provider = Provider::serving(&[&ES, &RS]).await;
    let auth = authenticator(JwksSource::Url(provider.url())).await;
    let old = ES.token("alice");
    assert!(verify(&auth, &old).await.is_ok());
    provider.publish(&[&RS]);
    assert!(verify(&auth, &old).await.is_ok(), "held until the next fetch");
    auth.provider_keys().expect("keys").load().await;
    assert_eq!(verify(&auth, &old).await, Err(AuthError::Refused("unknown signing key")));
    assert!(verify(&auth, &RS.token("alice")).await.is_ok(), "the key it kept");
}

#[tokio::test]
async fn while_the_provider_fails_the_keys_held_verify_and_a_new_one_is_unavailable() {
    let mut provider = Provider::serving(&[&ES]).await;
    let auth = authenticator(JwksSource::Url(provider.url())).await;
    provider.answers().status = 503;
    assert!(verify(&auth, &ES.token("alice")).await.is_ok());
    assert_eq!(verify(&auth, &RS.token("bob")).await, Err(AuthError::KeysUnavailable));
    provider.stop();
    assert!(verify(&auth, &ES.token("alice")).await.is_ok(), "stopped: the key held still verifies");
    assert_eq!(verify(&auth, &RS.token("bob")).await, Err(AuthError::KeysUnavailable));
    assert!(auth.ready(), "keys are held");
}

#[tokio::test]
async fn a_provider_down_at_start_is_not_ready_and_its_tokens_unavailable_until_it_answers() {
    let mut provider = Provider::serving(&[&ES]).await;
    provider.stop();
    let auth = authenticator(JwksSource::Url(provider.url())).await;
    assert!(!auth.ready());
    assert_eq!(verify(&auth, &ES.token("alice")).await, Err(AuthError::KeysUnavailable));
    provider.start().await;
    assert_eq!(verify(&auth, &ES.token("alice")).await, Ok("alice".into()));
    assert!(auth.ready());
}

#[tokio::test]
async fn discovery_reads_the_key_set_the_issuer_names_and_only_for_that_issuer() {
    let provider = Provider::serving(&[&ES]).await;
    let issuer = provider.url();
    let doc =
        |issuer: &str| json!({"issuer": issuer, "jwks_uri": format!("{}/jwks", provider.url())}).to_string();
    provider.answers().discovery = Some(doc(&issuer));
    let auth = authenticator(JwksSource::Discovery { issuer: issuer.clone() }).await;
    assert_eq!(verify(&auth, &ES.token("alice")).await, Ok("alice".into()));
    provider.answers().discovery = Some(doc("https://elsewhere.example"));
    let auth = authenticator(JwksSource::Discovery { issuer }).await;
    assert!(!auth.ready(), "a discovery document naming another issuer is not followed");
}

#[tokio::test]
async fn a_key_set_over_its_bound_is_refused_and_the_keys_held_kept() {
    let provider = Provider::serving(&[&ES]).await;
    let auth = authenticator(JwksSource::Url(provider.url())).await;
    let padding = "x".repeat(MAX_BODY_BYTES);
    provider.answers().jwks = json!({"keys": [RS.jwk()], "padding": padding}).to_string();
    let keys = auth.provider_keys().expect("keys");
    keys.load().await;
    assert!(keys.failing());
    assert!(verify(&auth, &ES.token("alice")).await.is_ok());
}

#[test]
fn only_public_signing_keys_of_the_supported_algorithms_are_used() {
    let mut enc = ES.jwk();
    enc["use"] = json!("enc");
    enc["kid"] = json!("enc");
    let mut mislabeled = ES.jwk();
    mislabeled["alg"] = json!("RS256");
    mislabeled["kid"] = json!("mislabeled");
    let mut short_rsa = RS.jwk();
    short_rsa["n"] = json!("AQAB".repeat(40));
    short_rsa["kid"] = json!("short");
    let secret =
        json!({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "oct", "alg": "HS256"});
    let set = json!({"keys": [enc, mislabeled, short_rsa, secret, {"kty": "unknown"}, ED.jwk()]});
    let keys = parse_key_set(set.to_string().as_bytes()).expect("one usable key");
    let kept: Vec<_> = keys.iter().map(|k| (k.kid.as_deref(), k.alg)).collect();
    assert_eq!(kept, [(Some("ed-1"), Algorithm::EdDSA)]);
    let none = json!({"keys": [secret]});
    assert!(parse_key_set(none.to_string().as_bytes()).is_err(), "a set with no usable key");
    assert!(parse_key_set(b"<html>").is_err());
}

#[test]
fn keys_past_the_bound_are_ignored() {
    let many: Vec<Value> = (0..MAX_KEYS + 8)
        .map(|i| {
            let mut jwk = ES.jwk();
            jwk["kid"] = json!(format!("es-{i}"));
            jwk
        })
        .collect();
    let keys = parse_key_set(json!({"keys": many}).to_string().as_bytes()).expect("keys");
    assert_eq!(keys.len(), MAX_KEYS);
}

#[tokio::test]
async fn the_keys_are_fetched_again_on_schedule_without_any_token_asking() {
    let provider = Provider::serving(&[&ES, &RS]).await;
    let mut config = config(JwksSource::Url(provider.url()), COOLDOWN);
    if let JwtKey::Jwks(jwks) = &mut config.key {
        jwks.refresh = Duration::from_secs(1);
    }
    let auth = Authenticator::new(&config).expect("an authenticator");
    let keys = auth.provider_keys().expect("the provider's keys").clone();
    keys.load().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let refreshing = tokio::spawn(keys.clone().run(stop.clone()));
    provider.publish(&[&RS]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(keys.find(Some(ES.kid), ES.alg), Lookup::Found(_)) {
        assert!(Instant::now() < deadline, "the dropped key is still held after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(keys.find(Some(RS.kid), RS.alg), Lookup::Found(_)));
    stop.cancel();
    refreshing.await.expect("the refresh job ends when stopped");
}
