//! The host application's "who may call whom" hook (`CALL_AUTHZ_URL`):
//! one signed POST per question, its decision cached in Redis per
//! (caller, callee, conversation) for `CALL_AUTHZ_CACHE`.

use std::sync::LazyLock;

use redis::AsyncCommands;
use serde::Serialize;

use crate::config::CallAuthzConfig;
use crate::infra::redis_link::RedisLink;
use crate::infra::signing::sign;

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("callgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
});

/// What the hook is asked.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Question<'a> {
    pub caller_id: &'a str,
    pub callee_ids: Vec<&'a str>,
    pub conversation_id: Option<&'a str>,
    #[serde(rename = "type")]
    pub call_type: &'a str,
}

/// The longest answer read: `{"allow": true}` and a little more.
const MAX_ANSWER: usize = 4096;

/// What asking the hook came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// `{"allow": true}`.
    Allow,
    /// `{"allow": false}`: a decision, cached like an allow.
    Deny,
    /// The hook's own 4xx (403, 404 for a conversation it does not know,
    /// ...): a no, never cached (a 429 passes).
    Refused(u16),
    /// The hook answered, but with nothing callgate can read as a decision:
    /// a 5xx or a redirect, a 2xx whose body is not `{"allow": bool}` or is
    /// over 4 KB. The call is refused (503) even with
    /// `CALL_AUTHZ_FAIL_OPEN`: a broken hook is not an absent one.
    Unusable(String),
    /// No answer: a timeout, or a connection that failed. Only this may
    /// fail open.
    Unreachable(String),
}

fn unreachable(err: reqwest::Error) -> Answer {
    Answer::Unreachable(format!("{:#}", anyhow::Error::new(err)))
}

/// Asks the hook, signed per Standard Webhooks, and reads at most
/// `MAX_ANSWER` bytes of what it says.
pub async fn ask(hook: &CallAuthzConfig, question: &Question<'_>, now: i64) -> Answer {
    let body = match serde_json::to_vec(question) {
        Ok(body) => body,
        Err(err) => return Answer::Unusable(err.to_string()),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let sent = CLIENT
        .post(&hook.url)
        .timeout(hook.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", sign(hook.key.expose(), &id, now, &body))
        .body(body)
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(err) => return unreachable(err),
    };
    let status = response.status();
    if status.is_client_error() {
        return Answer::Refused(status.as_u16());
    }
    if !status.is_success() {
        return Answer::Unusable(format!("answered HTTP {}", status.as_u16()));
    }
    if response.content_length().is_some_and(|length| length > MAX_ANSWER as u64) {
        return Answer::Unusable("the answer is too large".into());
    }
    // Read a chunk at a time: a large answer is not read past the limit.
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() > MAX_ANSWER => {
                return Answer::Unusable("the answer is too large".into());
            }
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(err) => return unreachable(err),
        }
    }
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Answer::Unusable("the answer is not JSON".into());
    };
    match answer["allow"].as_bool() {
        Some(true) => Answer::Allow,
        Some(false) => Answer::Deny,
        None => Answer::Unusable("the answer has no boolean `allow`".into()),
    }
}

fn cache_key(caller: &str, callee: &str, conversation: Option<&str>) -> String {
    // Lengths first, so that no two triples share a key.
    let conversation = conversation.unwrap_or("");
    format!(
        "callgate:authz:{}:{}:{}:{caller}{callee}{conversation}",
        caller.len(),
        callee.len(),
        conversation.len()
    )
}

/// The cached decisions for each callee, in order (`None`: not cached,
/// or Redis did not answer).
pub async fn cached(
    redis: &RedisLink,
    caller: &str,
    callees: &[&str],
    conversation: Option<&str>,
) -> Vec<Option<bool>> {
    let keys: Vec<String> = callees.iter().map(|c| cache_key(caller, c, conversation)).collect();
    let Ok(mut conn) = redis.conn().await else { return vec![None; callees.len()] };
    let values: redis::RedisResult<Vec<Option<String>>> = conn.mget(&keys).await;
    match values {
        Ok(values) if values.len() == callees.len() => {
            values.into_iter().map(|v| v.map(|v| v == "allow")).collect()
        }
        _ => vec![None; callees.len()],
    }
}

/// Remembers the decision for each callee for `ttl`; a Redis failure only
/// means the next call asks again.
pub async fn remember(
    redis: &RedisLink,
    caller: &str,
    callees: &[&str],
    conversation: Option<&str>,
    allow: bool,
    ttl: std::time::Duration,
) {
    let Ok(mut conn) = redis.conn().await else { return };
    let value = if allow { "allow" } else { "deny" };
    for callee in callees {
        let key = cache_key(caller, callee, conversation);
        let stored: redis::RedisResult<()> = conn.set_ex(key, value, ttl.as_secs().max(1)).await;
        if stored.is_err() {
            return;
        }
    }
}
