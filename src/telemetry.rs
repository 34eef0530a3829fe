use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;

/// JSON lines in production (`LOG_FORMAT=json`), readable text otherwise.
/// Every line carries the fields of the spans it happened in (request id,
/// call id, user id). `filter` is `RUST_LOG`'s; one that does not parse is `info`.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::NONE);
    let result = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    // Tests start many apps in one process; the first subscriber stays.
    drop(result);
}

/// For test binaries: lines go through the test harness's capture (shown
/// for a failing test only), and only warnings and errors unless
/// `TEST_LOG=1` (then `RUST_LOG`, as for the service).
pub fn init_for_tests() {
    let verbose = std::env::var("TEST_LOG").is_ok_and(|v| v == "1");
    let filter = match verbose {
        true => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        false => EnvFilter::new("warn"),
    };
    drop(tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init());
}

/// For benchmarks: only errors (their output is figures), every line with
/// `TEST_LOG=1`. Called first, it is the subscriber that stays.
pub fn init_for_benches() {
    let verbose = std::env::var("TEST_LOG").is_ok_and(|v| v == "1");
    let filter = match verbose {
        true => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        false => EnvFilter::new("error"),
    };
    drop(tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init());
}
