//! Verifies the host application's user tokens.
//!
//! Only the algorithm that matches the key is accepted (the configured key's,
//! or for a provider's keys the one its JWK says), so `alg: none` and
//! algorithm confusion (an HS256 token signed with a public key) are refused
//! by construction.

use std::collections::BTreeSet;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use crate::config::{JwtConfig, JwtKey};
use crate::domain::AuthUser;
use crate::domain::UserId;
use crate::domain::consent::Gender;
use crate::infra::jwks::{Lookup, ProviderKeys};

pub struct Authenticator {
    keys: Keys,
    gender_claim: String,
    max_age: Option<std::time::Duration>,
}

enum Keys {
    /// `JWT_SECRET` or `JWT_PUBLIC_KEY`.
    Configured { key: DecodingKey, validation: Box<Validation> },
    /// The provider's (`JWT_JWKS_URL`, `JWT_OIDC_DISCOVERY`), with the
    /// claims' rules for each algorithm a key may verify.
    Provider { keys: Arc<ProviderKeys>, validations: Vec<Validation> },
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Refused (a 401; the detail says no more than this).
    #[error("{0}")]
    Refused(&'static str),
    /// The token names a key that is not held and the provider's keys
    /// cannot be fetched (a 503: it may be fine).
    #[error("the identity provider's keys cannot be fetched")]
    KeysUnavailable,
}

/// What a provider's key may verify (`crate::infra::jwks`).
const PROVIDER_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Clock skew tolerated between the identity provider and this service.
const LEEWAY_SECS: u64 = 5;

/// A JWT NumericDate: seconds, possibly with a fraction.
fn numeric_date(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWT_PUBLIC_KEY is neither an RSA nor an EC public key")]
    UnsupportedKey,
}

impl Authenticator {
    pub fn new(config: &JwtConfig) -> Result<Self, KeyError> {
        let validation = claims_validation(config);
        let for_algorithm = |algorithm| {
            let mut validation = validation.clone();
            validation.algorithms = vec![algorithm];
            validation
        };
        let configured =
            |key, algorithm| Keys::Configured { key, validation: Box::new(for_algorithm(algorithm)) };
        let keys = match &config.key {
            JwtKey::Hmac(secret) => {
                configured(DecodingKey::from_secret(secret.expose_secret().as_bytes()), Algorithm::HS256)
            }
            JwtKey::Public { pem } => {
                if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                    configured(key, Algorithm::RS256)
                } else if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
                    configured(key, Algorithm::ES256)
                } else {
                    return Err(KeyError::UnsupportedKey);
                }
            }
            JwtKey::Jwks(jwks) => Keys::Provider {
                keys: Arc::new(ProviderKeys::new(jwks)),
                validations: PROVIDER_ALGORITHMS.into_iter().map(for_algorithm).collect(),
            },
        };
        Ok(Self { keys, gender_claim: config.gender_claim.clone(), max_age: config.max_age })
    }

    /// The provider's keys, when tokens are verified with them (fetched at
    /// start by the caller, refreshed by `ProviderKeys::run`).
    pub fn provider_keys(&self) -> Option<&Arc<ProviderKeys>> {
        match &self.keys {
            Keys::Provider { keys, .. } => Some(keys),
            Keys::Configured { .. } => None,
        }
    }

    /// Tokens can be verified: a configured key, or a provider's key set fetched.
    pub fn ready(&self) -> bool {
        self.provider_keys().is_none_or(|keys| keys.loaded())
    }
}

/// What every token must claim, whatever signs it.
fn claims_validation(config: &JwtConfig) -> Validation {
    // `algorithms` is set per key.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    // A configured issuer or audience must be in the token, not only
    // right when present: the identity provider signs other tokens too.
    let mut required = vec!["exp", "sub"];
    match &config.issuer {
        Some(issuer) => {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        None => validation.iss = None,
    }
    match &config.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

impl Authenticator {
    /// With `JWT_MAX_AGE`, the token must say when it was issued (`iat`),
    /// not in the future and not longer ago than that.
    fn check_age(&self, claims: &Map<String, Value>, now: i64) -> Result<(), AuthError> {
        let Some(max_age) = self.max_age else { return Ok(()) };
        let refused = || AuthError::Refused("token too old or without iat");
        let iat = claims.get("iat").and_then(numeric_date).ok_or_else(refused)?;
        let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let age = now.saturating_sub(iat);
        if age > max_age.saturating_add(LEEWAY_SECS as i64) || age < -(LEEWAY_SECS as i64) {
            return Err(refused());
        }
        Ok(())
    }

    pub async fn verify(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<AuthUser, AuthError> {
        let claims = match &self.keys {
            Keys::Configured { key, validation } => decode(token, key, validation)?,
            Keys::Provider { keys, validations } => {
                verify_with_provider_keys(keys, validations, token).await?
            }
        };
        self.user(claims, now)
    }

    fn user(
        &self,
        claims: Map<String, Value>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<AuthUser, AuthError> {
        self.check_age(&claims, now.timestamp())?;
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        let id = UserId::parse(sub).map_err(|_| AuthError::Refused("invalid subject"))?;
        let name = claims
            .get("name")
            .and_then(Value::as_str)
            .map(|n| n.chars().filter(|c| !c.is_control()).take(128).collect::<String>())
            .filter(|n| !n.trim().is_empty());
        let gender = claims
            .get(&self.gender_claim)
            .and_then(Value::as_str)
            .map(Gender::parse)
            .unwrap_or(Gender::Other);
        let roles = match claims.get("roles") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => BTreeSet::new(),
        };
        Ok(AuthUser { id, name, gender, roles })
    }
}

/// With the key the token names (fetched first if not held yet).
async fn verify_with_provider_keys(
    keys: &ProviderKeys,
    validations: &[Validation],
    token: &str,
) -> Result<Map<String, Value>, AuthError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Refused("malformed token"))?;
    let kid = header.kid.as_deref();
    let key = match keys.find(kid, header.alg) {
        Lookup::Found(key) => key,
        Lookup::Mismatch => return Err(AuthError::Refused("the token's key does not fit its algorithm")),
        Lookup::Unknown => {
            keys.look_again().await;
            match keys.find(kid, header.alg) {
                Lookup::Found(key) => key,
                Lookup::Unknown if keys.failing() => return Err(AuthError::KeysUnavailable),
                Lookup::Unknown => return Err(AuthError::Refused("unknown signing key")),
                Lookup::Mismatch => {
                    return Err(AuthError::Refused("the token's key does not fit its algorithm"));
                }
            }
        }
    };
    let validation = validations.iter().find(|v| v.algorithms == [key.alg]);
    let validation = validation.ok_or(AuthError::Refused("unsupported algorithm"))?;
    decode(token, &key.decoding, validation)
}

fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Map<String, Value>, AuthError> {
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation).map_err(|err| {
        tracing::debug!(error = %err, "user token refused");
        AuthError::Refused("invalid or expired token")
    })?;
    Ok(data.claims)
}

/// The claims of a development token, as `callgate token` prints them.
pub struct DevToken<'a> {
    pub user: &'a str,
    pub name: Option<&'a str>,
    pub gender: Option<&'a str>,
    pub roles: &'a [String],
    pub ttl: std::time::Duration,
}

/// Signs an HS256 user token the way a host application would.
pub fn mint_dev_token(
    secret: &str,
    config: &JwtConfig,
    token: &DevToken<'_>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = crate::clock::Clock::now(&crate::clock::SystemClock).timestamp();
    let mut claims = Map::new();
    claims.insert("sub".into(), token.user.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + token.ttl.as_secs() as i64).into());
    if let Some(name) = token.name {
        claims.insert("name".into(), name.into());
    }
    if let Some(gender) = token.gender {
        claims.insert(config.gender_claim.clone(), gender.into());
    }
    if !token.roles.is_empty() {
        claims.insert("roles".into(), token.roles.to_vec().into());
    }
    if let Some(iss) = &config.issuer {
        claims.insert("iss".into(), iss.clone().into());
    }
    if let Some(aud) = &config.audience {
        claims.insert("aud".into(), aud.clone().into());
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}
