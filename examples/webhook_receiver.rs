//! The api tests' shared webhook receiver as a process of its own, for
//! cargo-nextest, which runs each test in a process of its own (so no test
//! process can hold port 8089 for the others): an app of the tests' own
//! settings (`tests/api/helpers/settings.rs`) on the shared test database,
//! on `TEST_WEBHOOK_PORT`, until it is stopped. `deploy/local.sh nextest`
//! starts it and tells the tests with `TEST_WEBHOOK_RECEIVER=external`.

#[path = "../tests/api/helpers/settings.rs"]
mod settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    callgate::telemetry::init_for_tests();
    let port = settings::webhook_port();
    settings::webhook_receiver(port, || println!("webhook receiver: listening on 127.0.0.1:{port}")).await
}
