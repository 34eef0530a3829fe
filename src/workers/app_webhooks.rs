//! Webhooks to the host application: `call.started`, `call.answered`,
//! `call.ended` and `call.missed`, so it can post "Video call ended
//! (2m 30s)" into a conversation or push a missed-call notification.
//!
//! A transactional outbox: each webhook is a row written in the same
//! transaction as the call change it announces, so it exists exactly when
//! the change does. Workers on every instance with `APP_WEBHOOK_URL` take
//! due rows with `FOR UPDATE SKIP LOCKED` and POST them, signed the way
//! Standard Webhooks does (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), retrying failures with exponential backoff: at
//! least once, with the same `webhook-id` (the row id) on every attempt.
//! Rows are written whether or not a URL is configured; undelivered ones
//! are given up on after `GIVE_UP_AFTER`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::calls::Core;
use crate::config::AppWebhookConfig;
use crate::store::outbox::DueWebhook;
use crate::store::{self, job_pool};

/// Deliveries in flight at once per instance.
const WORKERS: usize = 4;
/// Due rows are looked for this often, besides the NOTIFY at each commit.
const POLL: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(15 * 60);
/// Undelivered after this long: given up on (logged as an error).
const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(72);
/// Rows of either kind are deleted after this long.
const KEEP: chrono::Duration = chrono::Duration::days(7);
const JANITOR_EVERY: Duration = Duration::from_secs(600);

pub use crate::infra::signing::sign;

/// The wait before the next attempt, after `attempts` failed ones.
fn backoff(attempts: i32) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 20) as u32;
    let wait = FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY);
    let jitter = rand::rng().random_range(0..=wait.as_millis() as u64 / 10);
    wait + Duration::from_millis(jitter)
}

/// The delivery workers (where a URL is configured) and the janitor.
pub async fn run(app: Core, stop: CancellationToken) {
    let mut jobs = JoinSet::new();
    if let Some(hook) = app.config.app_webhook.clone() {
        match reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("callgate/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(client) => {
                // A worker holds its connection while the receiver answers.
                let db = job_pool(&app.db, WORKERS as u32);
                for _ in 0..WORKERS {
                    let worker = Worker {
                        app: app.clone(),
                        db: db.clone(),
                        client: client.clone(),
                        hook: hook.clone(),
                    };
                    jobs.spawn(worker.run(stop.clone()));
                }
            }
            Err(err) => tracing::error!(error = %err, "cannot build the app webhook client"),
        }
    }
    jobs.spawn(janitor(app, stop));
    while jobs.join_next().await.is_some() {}
}

struct Worker {
    app: Core,
    db: PgPool,
    client: reqwest::Client,
    hook: AppWebhookConfig,
}

impl Worker {
    /// Delivers until stopped; a delivery under way is finished first.
    async fn run(self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let wake = self.app.events.outbox_wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            match self.deliver_next().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => tracing::warn!(error = format!("{err:#}"), "app webhook delivery failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = &mut wake => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Attempts one due webhook; false if none is due. The row stays locked
    /// during the attempt, so no other worker sends it meanwhile; if this
    /// process dies, the lock goes with its connection and the row is due again.
    async fn deliver_next(&self) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        let due = store::outbox::lock_next_due(&mut tx).await?;
        let Some(due) = due else { return Ok(false) };
        let attempt = due.attempts + 1;
        let call_id = due.call_id.map(|id| id.to_string()).unwrap_or_default();
        let span =
            tracing::info_span!("app_webhook", webhook_id = %due.id, kind = %due.kind, attempt, call_id);
        let result = async {
            let posted = post(&self.client, &self.hook, &due, self.app.clock.now()).await;
            match &posted {
                Ok(()) => {
                    store::outbox::mark_delivered(&mut tx, due.id).await?;
                    tracing::info!("app webhook delivered");
                }
                Err(error) => {
                    let attempts = due.attempts + 1;
                    let wait = backoff(attempts);
                    store::outbox::mark_attempt_failed(&mut tx, due.id, attempts, error, wait).await?;
                    tracing::warn!(error, retry_in_ms = wait.as_millis() as u64, "app webhook not accepted");
                }
            }
            anyhow::Ok(if posted.is_ok() { "delivered" } else { "failed" })
        }
        .instrument(span)
        .await?;
        tx.commit().await?;
        self.app.metrics.app_webhook_deliveries(result, 1);
        Ok(true)
    }
}

/// One attempt; any 2xx answer accepts the webhook.
async fn post(
    client: &reqwest::Client,
    hook: &AppWebhookConfig,
    due: &DueWebhook,
    now: chrono::DateTime<Utc>,
) -> Result<(), String> {
    let body = serde_json::to_vec(&due.payload).map_err(|e| e.to_string())?;
    let id = due.id.to_string();
    let timestamp = now.timestamp();
    let signature = sign(hook.key.expose(), &id, timestamp, &body);
    let response = client
        .post(&hook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
    let status = response.status();
    if status.is_success() { Ok(()) } else { Err(format!("answered HTTP {}", status.as_u16())) }
}

/// Now and then, `tidy`.
async fn janitor(app: Core, stop: CancellationToken) {
    // Not all instances at once, and not in the rush of starting up.
    let mut wait = Duration::from_secs(rand::rng().random_range(30..=90));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if let Err(err) = tidy(&app, app.clock.now()).await {
            tracing::warn!(error = %err, "could not tidy the app webhook outbox");
        }
        wait = JANITOR_EVERY;
    }
}

/// Gives up on webhooks undelivered for too long and deletes old rows.
pub async fn tidy(app: &Core, now: DateTime<Utc>) -> sqlx::Result<()> {
    let abandoned = store::outbox::abandon_undelivered(&app.db, now, now - GIVE_UP_AFTER).await?;
    if abandoned > 0 && app.config.app_webhook.is_some() {
        tracing::error!(abandoned, "gave up on app webhooks undelivered for 72 hours");
        app.metrics.app_webhook_deliveries("abandoned", abandoned);
    }
    store::outbox::delete_older_than(&app.db, now - KEEP).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("b64");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        let base = |attempts| backoff(attempts).as_secs();
        assert_eq!(base(1), 1);
        assert_eq!(base(2), 2);
        assert_eq!(base(3), 4);
        assert!((900..=990).contains(&base(40)));
    }
}
