//! The exposition: what was recorded, plus the figures read at scrape time.
//! A figure that cannot be read in time is left out (and logged), never
//! made up and never a failed scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Metrics, PREFIX};
use crate::domain::CallState;

/// What Prometheus (and OpenMetrics) expect of this text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// What a scrape reads besides what was recorded; `None` where it could
/// not be read in time (left out, never made up).
pub struct Readings {
    /// Live calls by state (`ringing`, ...), across all instances.
    pub live_calls: Option<Vec<(String, i64)>>,
    /// App webhooks neither delivered nor given up on; `None` also where
    /// app webhooks are not configured (nobody delivers the rows there).
    pub app_webhook_backlog: Option<i64>,
    /// LiveKit webhooks stored and not handled yet, across all instances.
    pub livekit_webhook_backlog: Option<i64>,
    pub sockets_open: usize,
    /// Users whose Redis event channel this instance follows.
    pub channels_followed: usize,
    /// Messages this instance received from Redis since it started.
    pub messages_received: u64,
}

/// Every metric of the application, in the OpenMetrics text format.
pub fn render(metrics: &Metrics, readings: Readings) -> Result<String, std::fmt::Error> {
    let mut now = Registry::with_prefix(PREFIX);
    if let Some(counts) = readings.live_calls {
        let family = Family::<StateLabel, Gauge>::default();
        for state in CallState::ALL.iter().filter(|s| s.is_live()) {
            let count = counts.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
            family.get_or_create(&StateLabel { state: state.as_str() }).set(count);
        }
        now.register(
            "live_calls",
            "Calls not yet ended, by state, across all instances (read from PostgreSQL)",
            family,
        );
    }
    if let Some(count) = readings.app_webhook_backlog {
        let backlog = Gauge::<i64>::default();
        backlog.set(count);
        now.register(
            "app_webhook_backlog",
            "App webhooks neither delivered nor given up on, across all instances",
            backlog,
        );
    }
    if let Some(count) = readings.livekit_webhook_backlog {
        let backlog = Gauge::<i64>::default();
        backlog.set(count);
        now.register(
            "livekit_webhook_backlog",
            "LiveKit webhooks acknowledged and not handled yet, across all instances (beyond \
             20,000 LiveKit is answered 503)",
            backlog,
        );
    }
    let sockets = Gauge::<i64>::default();
    sockets.set(readings.sockets_open as i64);
    now.register("event_sockets_open", "Event stream WebSockets open on this instance", sockets);
    let followed = Gauge::<i64>::default();
    followed.set(readings.channels_followed as i64);
    now.register(
        "event_channels_followed",
        "Users whose Redis event channel this instance follows (those with a stream here)",
        followed,
    );
    let received = Counter::<u64>::default();
    received.inc_by(readings.messages_received);
    now.register(
        "event_messages_received",
        "Messages this instance received from Redis for its users' streams (events and close \
         notices); an instance receives only its own users' events",
        received,
    );

    let mut text = String::new();
    encode_registry(&mut text, &metrics.registry)?;
    encode_registry(&mut text, &now)?;
    encode_eof(&mut text)?;
    Ok(text)
}
