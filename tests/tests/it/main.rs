//! tenancy's integration tests on a real PostgreSQL, and its compile-fail
//! (UI) tests: one test binary, so that the whole stack is linked once.
//! Run one part with a filter, e.g. `cargo test -p tenancy-tests --test it
//! pool::`; the shared set-up lives in `tenancy_tests` (`tests/src`).

mod async_api;
mod axum_extractor;
mod axum_service;
mod compose;
mod differential;
mod examples;
mod fleets;
mod isolation;
mod layout;
mod migrate;
mod observe;
mod operations;
mod pool;
mod provision;
mod regressions;
mod schema_name_props;
mod stats;
mod tenant_scoped;
mod ui;
