//! The keys an OpenID Connect provider publishes (its JWKS), kept in memory
//! so that its rotations need nothing from the operator.
//!
//! The set is fetched at start, again every `JWT_JWKS_REFRESH`, and when a
//! token names a key not yet seen. Fetches are one at a time and at most one
//! per `JWT_JWKS_COOLDOWN`, whatever asks: the tokens that wait for one all
//! share it, so a flood of made-up `kid`s costs the provider nothing. A
//! fetch that fails keeps the keys already held (they go on verifying); a
//! fetch that succeeds replaces them, so a key the provider dropped stops
//! verifying then. Everything read from outside is bounded: the body, the
//! number of keys, the time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{JwksConfig, JwksSource, fetchable};

/// A key set or discovery document larger than this is refused.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Keys past this many in one set are ignored.
pub const MAX_KEYS: usize = 32;
/// A `kid` longer than this is not a key's name.
const MAX_KID_CHARS: usize = 256;
/// RSA keys shorter than this are not trusted.
const MIN_RSA_BITS: usize = 2048;

/// One key the provider signs with: its name, the one algorithm it verifies.
pub struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub decoding: DecodingKey,
}

/// What the held keys say about a token's `kid` and `alg`.
pub enum Lookup {
    Found(Arc<Key>),
    /// The key is known but not for this algorithm, or the token names no
    /// key and several could be meant: refused without asking the provider.
    Mismatch,
    /// No such key (yet).
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("{url} answered {status}")]
    Status { url: String, status: reqwest::StatusCode },
    #[error("{0} sent more than {MAX_BODY_BYTES} bytes")]
    TooLarge(String),
    #[error("{0}")]
    Malformed(String),
}

#[derive(Default)]
struct Held {
    keys: Vec<Arc<Key>>,
    /// A set was fetched at least once: tokens can be verified.
    loaded: bool,
    /// The last fetch failed (the keys held go on verifying).
    failing: bool,
    last_attempt: Option<Instant>,
}

pub struct ProviderKeys {
    source: JwksSource,
    http: reqwest::Client,
    refresh: Duration,
    cooldown: Duration,
    held: RwLock<Held>,
    /// One fetch at a time; who waits for it shares its result.
    fetching: tokio::sync::Mutex<()>,
    /// Fetches attempted so far (a waiter that sees it move was served).
    attempts: AtomicU64,
}

impl ProviderKeys {
    pub fn new(config: &JwksConfig) -> Self {
        // reqwest's TLS needs the process's provider (crate::app installs the same one).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("callgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            source: config.source.clone(),
            http,
            refresh: config.refresh,
            cooldown: config.cooldown,
            held: RwLock::new(Held::default()),
            fetching: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
        }
    }

    /// A key set was fetched at least once (readiness).
    pub fn loaded(&self) -> bool {
        self.read(|held| held.loaded)
    }

    /// The last fetch failed.
    pub fn failing(&self) -> bool {
        self.read(|held| held.failing)
    }

    /// How many fetches were attempted.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Acquire)
    }

    fn read<T>(&self, f: impl FnOnce(&Held) -> T) -> T {
        f(&self.held.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// The key a token with this `kid` and `alg` is verified with.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        self.read(|held| match kid {
            Some(kid) => {
                let mut named = held.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).peekable();
                if named.peek().is_none() {
                    return Lookup::Unknown;
                }
                named.find(|k| k.alg == alg).map_or(Lookup::Mismatch, |k| Lookup::Found(k.clone()))
            }
            None => {
                let mut fitting = held.keys.iter().filter(|k| k.alg == alg);
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Lookup::Found(only.clone()),
                    (Some(_), Some(_)) => Lookup::Mismatch,
                    (None, _) => Lookup::Unknown,
                }
            }
        })
    }

    /// Fetches the set now (at start), unless a fetch is under way.
    pub async fn load(&self) {
        let seen = self.attempts();
        let _one = self.fetching.lock().await;
        if self.attempts() == seen {
            self.fetch_and_keep().await;
        }
    }

    /// Fetches the set for a token naming a key not held: after any fetch
    /// under way, or the next one the cooldown allows, whichever comes first.
    pub async fn look_again(&self) {
        let seen = self.attempts();
        let _one = self.fetching.lock().await;
        if self.attempts() != seen {
            return;
        }
        self.after_cooldown().await;
        self.fetch_and_keep().await;
    }

    async fn after_cooldown(&self) {
        let last = self.read(|held| held.last_attempt);
        if let Some(wait) = last.map(|at| (at + self.cooldown).saturating_duration_since(Instant::now())) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Refetches every `JWT_JWKS_REFRESH` (every cooldown while no set is
    /// held or the provider fails) until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let wait = if self.loaded() && !self.failing() { self.refresh } else { self.cooldown };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let _one = self.fetching.lock().await;
            self.after_cooldown().await;
            self.fetch_and_keep().await;
        }
    }

    async fn fetch_and_keep(&self) {
        let fetched = self.fetch().await;
        let mut held = self.held.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.last_attempt = Some(Instant::now());
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match fetched {
            Ok(keys) => {
                if held.failing || !held.loaded {
                    tracing::info!(keys = keys.len(), "the identity provider's keys are fetched");
                }
                let names = |keys: &[Arc<Key>]| keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>();
                if held.loaded && names(&held.keys) != names(&keys) {
                    tracing::info!(kids = ?names(&keys), "the identity provider's keys changed");
                }
                *held = Held { keys, loaded: true, failing: false, last_attempt: held.last_attempt };
            }
            Err(err) => {
                if !held.failing {
                    tracing::warn!(
                        error = %err,
                        keys_held = held.keys.len(),
                        "the identity provider's keys could not be fetched; the keys held go on verifying"
                    );
                }
                held.failing = true;
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Arc<Key>>, FetchError> {
        let url = match &self.source {
            JwksSource::Url(url) => url.clone(),
            JwksSource::Discovery { issuer } => self.discover(issuer).await?,
        };
        parse_key_set(&self.get(&url).await?)
    }

    /// The `jwks_uri` of the issuer's discovery document, which must name
    /// the same issuer (OpenID Connect Discovery 1.0, 4.3).
    async fn discover(&self, issuer: &str) -> Result<String, FetchError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let body = self.get(&url).await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| FetchError::Malformed(format!("{url}: not a discovery document: {e}")))?;
        if doc.issuer != issuer {
            return Err(FetchError::Malformed(format!("{url} names another issuer ({})", doc.issuer)));
        }
        if !fetchable(&doc.jwks_uri) {
            return Err(FetchError::Malformed(format!("{url}: jwks_uri is not https")));
        }
        Ok(doc.jwks_uri)
    }

    /// A body of at most `MAX_BODY_BYTES`, within the client's timeout.
    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let mut response = self.http.get(url).header(http::header::ACCEPT, "application/json").send().await?;
        if !response.status().is_success() {
            return Err(FetchError::Status { url: url.to_owned(), status: response.status() });
        }
        if response.content_length().is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(FetchError::TooLarge(url.to_owned()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(FetchError::TooLarge(url.to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The signing keys of a JWKS document that callgate can use; a set with
/// none is an error (the keys held are kept rather than emptied).
pub fn parse_key_set(body: &[u8]) -> Result<Vec<Arc<Key>>, FetchError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set =
        serde_json::from_slice(body).map_err(|e| FetchError::Malformed(format!("not a JWKS: {e}")))?;
    if set.keys.len() > MAX_KEYS {
        tracing::warn!(
            keys = set.keys.len(),
            "the identity provider publishes over {MAX_KEYS} keys; the rest are ignored"
        );
    }
    let keys: Vec<Arc<Key>> = set
        .keys
        .into_iter()
        .take(MAX_KEYS)
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| usable(&jwk))
        .map(Arc::new)
        .collect();
    if keys.is_empty() {
        return Err(FetchError::Malformed("the JWKS has no RS256, ES256 or EdDSA signing key".into()));
    }
    Ok(keys)
}

/// A public signing key and the one algorithm it verifies: the JWK's `alg`
/// if it names one that fits the key, else the key type's usual one.
/// Symmetric keys, encryption keys and short RSA keys are never used.
fn usable(jwk: &Jwk) -> Option<Key> {
    let common = &jwk.common;
    if common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return None;
    }
    if common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return None;
    }
    let kid = common.key_id.clone();
    if kid.as_ref().is_some_and(|kid| kid.chars().count() > MAX_KID_CHARS) {
        return None;
    }
    let (fits, usual): (&[Algorithm], Algorithm) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) if rsa_bits(&rsa.n) >= MIN_RSA_BITS => (
            &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            Algorithm::RS256,
        ),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => (&[Algorithm::ES256], Algorithm::ES256),
            EllipticCurve::P384 => (&[Algorithm::ES384], Algorithm::ES384),
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            (&[Algorithm::EdDSA], Algorithm::EdDSA)
        }
        _ => return None,
    };
    let alg = match common.key_algorithm {
        None => usual,
        Some(named) => Algorithm::try_from(named).ok().filter(|alg| fits.contains(alg))?,
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { kid, alg, decoding })
}

/// The size of an RSA modulus given as base64url.
fn rsa_bits(n: &str) -> usize {
    use base64::Engine;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n.trim_end_matches('=')).unwrap_or_default();
    let leading = bytes.iter().take_while(|b| **b == 0).count();
    bytes.len().saturating_sub(leading) * 8
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
