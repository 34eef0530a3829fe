//! One integration-test binary, a module per feature. Every test starts its
//! own app on port 0 against the real stack and uses users of its own, so
//! the tests run in parallel.

mod auth;
mod calls;
mod consent;
mod containers;
mod e2e;
mod helpers;
mod restart;
mod turn;
mod validation;
