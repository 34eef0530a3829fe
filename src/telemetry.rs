use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;

/// JSON lines in production (`LOG_FORMAT=json`), readable text otherwise.
/// Every line carries the fields of the spans it happened in (request id,
/// call id, user id).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::NONE);
    let result = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    // Tests start many apps in one process; the first subscriber stays.
    drop(result);
}
