//! The API in-process: the real router (every extractor, limit, problem
//! and use case) over the fast world's `FakeRooms` and `FakeClock`, a
//! request at a time through `tower::ServiceExt::oneshot`: no socket, no
//! LiveKit, no sleeps. The middle of the pyramid: behaviour proved here
//! needs no real SFU; the real stack keeps what only it proves.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use callgate::http::state::AppState;
use callgate::infra::auth::{Authenticator, DevToken, mint_dev_token};
use callgate::ingest::inbox::Inbox;
use http_body_util::BodyExt;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;

use crate::support::World;

/// A user of the in-process API: their id and bearer token.
#[derive(Clone, Debug)]
pub struct Caller {
    pub id: String,
    pub token: String,
}

pub struct Api {
    router: axum::Router,
    state: AppState,
}

impl Api {
    pub fn new(world: &World) -> Api {
        let auth = Authenticator::new(&world.core.config.jwt).expect("the test keys");
        let inbox = Arc::new(Inbox::new(world.core.clone()));
        let state = AppState::new(world.core.clone(), auth, inbox);
        Api { router: callgate::http::router(state.clone()), state }
    }

    pub fn config(&self) -> &callgate::config::Config {
        &self.state.config
    }

    /// What the router serves from (its webhook inbox, say).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A request with a body of any content type, as a client may send it.
    pub async fn raw_post(
        &self,
        path: &str,
        who: &Caller,
        content_type: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let req = axum::http::Request::builder()
            .method("POST")
            .uri(path)
            .header("authorization", format!("Bearer {}", who.token))
            .header("content-type", content_type)
            .body(Body::from(body.to_owned()))
            .expect("a request");
        self.send(req).await
    }

    /// A user with a token the API accepts; `gender` as the claim says.
    pub fn user(&self, gender: &str) -> Caller {
        self.user_with_roles(gender, &[])
    }

    pub fn user_with_roles(&self, gender: &str, roles: &[&str]) -> Caller {
        let id = format!("u-{}", Uuid::new_v4().simple());
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let secret = match &self.state.config.jwt.key {
            callgate::config::JwtKey::Hmac(secret) => secret.expose_secret().to_owned(),
            _ => panic!("the fast world signs with JWT_SECRET"),
        };
        let token = mint_dev_token(
            &secret,
            &self.state.config.jwt,
            &DevToken {
                user: &id,
                name: Some(&format!("User {}", &id[2..8])),
                gender: Some(gender),
                roles: &roles,
                ttl: std::time::Duration::from_secs(3600),
            },
        )
        .expect("a token");
        Caller { id, token }
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        who: Option<&Caller>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = axum::http::Request::builder().method(method).uri(path);
        if let Some(who) = who {
            req = req.header("authorization", format!("Bearer {}", who.token));
        }
        let body = match body {
            Some(body) => {
                req = req.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).expect("a request")).await
    }

    /// Any request, from 127.0.0.1, answered in full (headers and all).
    pub async fn respond(&self, mut req: axum::http::Request<Body>) -> axum::response::Response {
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
        req.extensions_mut().insert(ConnectInfo(peer));
        self.router.clone().oneshot(req).await.expect("an answer")
    }

    async fn send(&self, req: axum::http::Request<Body>) -> (StatusCode, Value) {
        let resp = self.respond(req).await;
        let status = StatusCode::from_u16(resp.status().as_u16()).expect("a status");
        let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, json)
    }

    pub async fn get(&self, path: &str, who: &Caller) -> (StatusCode, Value) {
        self.request("GET", path, Some(who), None).await
    }

    pub async fn post(&self, path: &str, who: &Caller, body: Value) -> (StatusCode, Value) {
        self.request("POST", path, Some(who), Some(body)).await
    }

    /// `caller` rings `callees`; the call's id.
    pub async fn ring(&self, caller: &Caller, callees: &[&Caller], kind: &str) -> String {
        let ids: Vec<&str> = callees.iter().map(|c| c.id.as_str()).collect();
        let body = serde_json::json!({"participantIds": ids, "type": kind});
        let (status, started) = self.post("/api/v1/calls", caller, body).await;
        assert_eq!(status, StatusCode::CREATED, "{started}");
        started["call"]["id"].as_str().expect("an id").to_owned()
    }

    pub async fn act(&self, call: &str, action: &str, who: &Caller, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/api/v1/calls/{call}/{action}"), who, body).await
    }
}
