//! The exposition: what was recorded, plus the figures read at scrape time.
//! A figure that cannot be read in time is left out (and logged), never
//! made up and never a failed scrape.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::PREFIX;
use crate::domain::CallState;
use crate::state::AppState;

/// What Prometheus (and OpenMetrics) expect of this text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Each database read of a scrape; Prometheus waits 10 s by default.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// Every metric of the application, in the OpenMetrics text format.
pub async fn render(app: &AppState) -> Result<String, std::fmt::Error> {
    let mut now = Registry::with_prefix(PREFIX);
    let (live, backlog) = tokio::join!(live_calls(app), outbox_backlog(app));
    if let Some(live) = live {
        now.register(
            "live_calls",
            "Calls not yet ended, by state, across all instances (read from PostgreSQL)",
            live,
        );
    }
    if let Some(backlog) = backlog {
        now.register(
            "app_webhook_backlog",
            "App webhooks neither delivered nor given up on, across all instances",
            backlog,
        );
    }
    let sockets = Gauge::<i64>::default();
    sockets.set(app.events.hub.len() as i64);
    now.register("event_sockets_open", "Event stream WebSockets open on this instance", sockets);

    let mut text = String::new();
    encode_registry(&mut text, &app.metrics.registry)?;
    encode_registry(&mut text, &now)?;
    encode_eof(&mut text)?;
    Ok(text)
}

async fn live_calls(app: &AppState) -> Option<Family<StateLabel, Gauge>> {
    let counts: Vec<(String, i64)> = read(
        "live calls",
        sqlx::query_as("select state, count(*) from calls where state <> 'ended' group by state")
            .fetch_all(&app.db),
    )
    .await?;
    let family = Family::<StateLabel, Gauge>::default();
    for state in CallState::ALL.iter().filter(|s| s.is_live()) {
        let count = counts.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
        family.get_or_create(&StateLabel { state: state.as_str() }).set(count);
    }
    Some(family)
}

/// Only where app webhooks are configured: elsewhere nobody delivers the
/// rows, and a growing backlog would be a false alarm.
async fn outbox_backlog(app: &AppState) -> Option<Gauge> {
    app.config.app_webhook.as_ref()?;
    let count: i64 = read(
        "the app webhook backlog",
        sqlx::query_scalar(
            "select count(*) from app_webhook_outbox where delivered_at is null and failed_at is null",
        )
        .fetch_one(&app.db),
    )
    .await?;
    let gauge = Gauge::default();
    gauge.set(count);
    Some(gauge)
}

async fn read<T>(what: &str, query: impl Future<Output = sqlx::Result<T>>) -> Option<T> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "metrics: could not read {what}; left out of this scrape");
            None
        }
        Err(_) => {
            tracing::warn!("metrics: reading {what} took too long; left out of this scrape");
            None
        }
    }
}
