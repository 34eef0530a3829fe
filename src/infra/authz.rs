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

/// Asks the hook, signed per Standard Webhooks; `Ok(allow)`, or why there
/// is no answer (a timeout, a refused request, a non-2xx, a body that is
/// not `{"allow": bool}`).
pub async fn ask(hook: &CallAuthzConfig, question: &Question<'_>, now: i64) -> Result<bool, String> {
    let body = serde_json::to_vec(question).map_err(|e| e.to_string())?;
    let id = uuid::Uuid::new_v4().to_string();
    let response = CLIENT
        .post(&hook.url)
        .timeout(hook.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", sign(hook.key.expose(), &id, now, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
    if !response.status().is_success() {
        return Err(format!("answered HTTP {}", response.status().as_u16()));
    }
    // A small answer is expected: a large one is not read.
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    if bytes.len() > 4096 {
        return Err("the answer is too large".into());
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| "the answer is not JSON".to_owned())?;
    answer["allow"].as_bool().ok_or_else(|| "the answer has no boolean `allow`".to_owned())
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
