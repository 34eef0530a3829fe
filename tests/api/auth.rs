use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestUser, jwt_secret, spawn_app};

const CALL_ROUTES: &[(&str, &str)] = &[
    ("GET", ""),
    ("POST", "/accept"),
    ("POST", "/decline"),
    ("POST", "/end"),
    ("POST", "/leave"),
    ("POST", "/token"),
    ("GET", "/video"),
    ("POST", "/video/requests"),
    ("POST", "/video/revoke"),
    ("GET", "/consent"),
];

#[tokio::test]
async fn a_stranger_gets_404_on_every_route_of_someone_elses_call() {
    let app = spawn_app().await;
    let (alice, bob, eve) = (app.user("female"), app.user("male"), app.user("female"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    for (method, suffix) in CALL_ROUTES {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, body) = app
            .send(method.clone(), &format!("/api/v1/calls/{call}{suffix}"), Some(&eve), Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {suffix}: {body}");
        assert_eq!(body["code"], "not_found");
    }
    // The same answer as for a call that does not exist at all.
    let (status, _) = app.get(&format!("/api/v1/calls/{}", uuid::Uuid::new_v4()), &eve).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/api/v1/calls/not-a-uuid", &eve).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_api_route_needs_a_token() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let mut routes: Vec<(Method, String)> = CALL_ROUTES
        .iter()
        .map(|(m, s)| (Method::from_bytes(m.as_bytes()).expect("method"), format!("/api/v1/calls/{call}{s}")))
        .collect();
    for path in
        ["/api/v1/calls/active", "/api/v1/calls/history", "/api/v1/turn/credentials", "/api/v1/ice-servers"]
    {
        routes.push((Method::GET, path.into()));
    }
    routes.push((Method::POST, "/api/v1/calls".into()));
    for (method, path) in routes {
        let (status, body) = app.send(method.clone(), &path, None, Some(json!({}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(body["code"], "unauthorized");
    }
}

fn with_token(token: String) -> TestUser {
    TestUser { id: "whoever".into(), token }
}

fn signed(alg: Algorithm, secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("encode")
}

#[tokio::test]
async fn expired_forged_and_unsigned_tokens_are_refused() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let secret = jwt_secret();
    let expired = signed(Algorithm::HS256, &secret, json!({"sub": "mallory", "exp": now - 60}));
    let forged = signed(
        Algorithm::HS256,
        "a-different-secret-of-enough-length!!",
        json!({"sub": "mallory", "exp": now + 600}),
    );
    let other_alg = signed(Algorithm::HS384, &secret, json!({"sub": "mallory", "exp": now + 600}));
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(json!({"sub": "mallory", "exp": now + 600}).to_string());
    let unsigned = format!("{header}.{payload}.");
    let no_subject = signed(Algorithm::HS256, &secret, json!({"exp": now + 600}));
    let tokens = [
        ("expired", expired),
        ("forged", forged),
        ("HS384", other_alg),
        ("alg none", unsigned),
        ("no sub", no_subject),
        ("garbage", "not.a.jwt".into()),
    ];
    for (what, token) in tokens {
        let (status, body) = app.get("/api/v1/calls/active", &with_token(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    }
    let good = signed(Algorithm::HS256, &secret, json!({"sub": "mallory", "exp": now + 600}));
    let (status, _) = app.get("/api/v1/calls/active", &with_token(good)).await;
    assert_eq!(status, StatusCode::OK, "a well-signed token passes");
}

#[tokio::test]
async fn problems_are_problem_json() {
    let app = spawn_app().await;
    let resp = app.http.get(app.url("/api/v1/calls/active")).send().await.expect("sent");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let content_type =
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["status"], 401);
    assert!(body["detail"].is_string() && body["title"].is_string() && body["type"].is_string());
}

#[tokio::test]
async fn the_token_subcommand_prints_a_token_the_service_accepts() {
    let app = spawn_app().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["token", "--user", "cli-user-1", "--name", "Cli User", "--gender", "female"])
        .output()
        .await
        .expect("the binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).expect("utf-8").trim().to_owned();
    let (status, body) = app.get("/api/v1/calls/active", &TestUser { id: "cli-user-1".into(), token }).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_missing_setting_stops_start_up_with_one_line_naming_it() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .output()
        .await
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim(), "callgate: configuration: DATABASE_URL: missing");
}

// issue 16 A: what the identity provider signs for others does not get in.

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "callgate";

/// A key pair made by `openssl genpkey` with `args`: the private key
/// (PKCS#8) and the public one (SPKI), both PEM.
fn key_pair(args: &[&str]) -> (String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let private = Command::new("openssl").arg("genpkey").args(args).output().expect("openssl runs");
    assert!(private.status.success(), "{}", String::from_utf8_lossy(&private.stderr));
    let mut pubout = Command::new("openssl")
        .args(["pkey", "-pubout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    pubout.stdin.take().expect("stdin").write_all(&private.stdout).expect("the private key");
    let public = pubout.wait_with_output().expect("openssl pkey");
    assert!(public.status.success());
    (String::from_utf8(private.stdout).expect("PEM"), String::from_utf8(public.stdout).expect("PEM"))
}

fn rsa_pair() -> (String, String) {
    key_pair(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
}

pub(crate) fn ec_pair() -> (String, String) {
    key_pair(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
}

fn claims_for(sub: &str) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600})
}

fn signed_with_pem(alg: Algorithm, private: &str, claims: &serde_json::Value) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(private.as_bytes()),
        _ => EncodingKey::from_ec_pem(private.as_bytes()),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &key.expect("a private key")).expect("encode")
}

async fn status_with(app: &crate::helpers::TestApp, token: String) -> StatusCode {
    app.get("/api/v1/calls/active", &with_token(token)).await.0
}

#[tokio::test]
async fn rs256_and_es256_tokens_pass_with_their_public_key_and_an_hs256_token_keyed_with_it_does_not() {
    for (alg, (private, public), (other, _)) in
        [(Algorithm::RS256, rsa_pair(), rsa_pair()), (Algorithm::ES256, ec_pair(), ec_pair())]
    {
        let pem = public.clone();
        let app = crate::helpers::spawn_app_configured(move |c| {
            c.jwt.key = callgate::config::JwtKey::Public { pem };
            c.jwt.issuer = Some(ISSUER.into());
            c.jwt.audience = Some(AUDIENCE.into());
        })
        .await;
        let claims = claims_for("pk-user");
        let good = signed_with_pem(alg, &private, &claims);
        assert_eq!(status_with(&app, good).await, StatusCode::OK, "{alg:?} signed with the key");
        let confused = signed(Algorithm::HS256, &public, claims.clone());
        assert_eq!(status_with(&app, confused).await, StatusCode::UNAUTHORIZED, "HS256 keyed with the PEM");
        let stranger = signed_with_pem(alg, &other, &claims);
        assert_eq!(status_with(&app, stranger).await, StatusCode::UNAUTHORIZED, "{alg:?}, another key");
    }
}

async fn spawn_with_issuer_and_audience(max_age: Option<u64>) -> crate::helpers::TestApp {
    crate::helpers::spawn_app_configured(move |c| {
        c.jwt.issuer = Some(ISSUER.into());
        c.jwt.audience = Some(AUDIENCE.into());
        c.jwt.max_age = max_age.map(std::time::Duration::from_secs);
    })
    .await
}

fn hs256(claims: serde_json::Value) -> String {
    signed(Algorithm::HS256, &jwt_secret(), claims)
}

#[tokio::test]
async fn with_an_issuer_and_an_audience_configured_a_token_must_carry_both() {
    let app = spawn_with_issuer_and_audience(None).await;
    let without = |claim: &str| {
        let mut claims = claims_for("iss-aud-user");
        claims.as_object_mut().expect("an object").remove(claim);
        hs256(claims)
    };
    assert_eq!(status_with(&app, without("iss")).await, StatusCode::UNAUTHORIZED, "no iss");
    assert_eq!(status_with(&app, without("aud")).await, StatusCode::UNAUTHORIZED, "no aud");
    let mut elsewhere = claims_for("iss-aud-user");
    elsewhere["aud"] = json!("another-service");
    assert_eq!(status_with(&app, hs256(elsewhere)).await, StatusCode::UNAUTHORIZED, "another audience");
    assert_eq!(status_with(&app, hs256(claims_for("iss-aud-user"))).await, StatusCode::OK, "both");
}

#[tokio::test]
async fn a_token_that_is_not_valid_yet_is_refused() {
    let app = spawn_with_issuer_and_audience(None).await;
    let now = chrono::Utc::now().timestamp();
    let mut later = claims_for("nbf-user");
    later["nbf"] = json!(now + 600);
    assert_eq!(status_with(&app, hs256(later)).await, StatusCode::UNAUTHORIZED, "nbf in ten minutes");
    let mut valid = claims_for("nbf-user");
    valid["nbf"] = json!(now - 10);
    assert_eq!(status_with(&app, hs256(valid)).await, StatusCode::OK, "nbf ten seconds ago");
}

#[tokio::test]
async fn with_a_maximum_token_age_an_old_token_or_one_without_iat_is_refused() {
    let app = spawn_with_issuer_and_audience(Some(300)).await;
    let now = chrono::Utc::now().timestamp();
    let issued = |iat: Option<i64>| {
        let mut claims = claims_for("age-user");
        match iat {
            Some(iat) => claims["iat"] = json!(iat),
            None => drop(claims.as_object_mut().expect("an object").remove("iat")),
        }
        hs256(claims)
    };
    assert_eq!(status_with(&app, issued(Some(now - 3600))).await, StatusCode::UNAUTHORIZED, "an hour old");
    assert_eq!(status_with(&app, issued(None)).await, StatusCode::UNAUTHORIZED, "no iat");
    assert_eq!(status_with(&app, issued(Some(now + 600))).await, StatusCode::UNAUTHORIZED, "issued later");
    assert_eq!(status_with(&app, issued(Some(now - 60))).await, StatusCode::OK, "a minute old");
}
