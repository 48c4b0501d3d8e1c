//! Fuzzes the session guard's lexer and classifier on arbitrary text: no
//! input makes either panic, and the fast path never calls a statement
//! harmless that the full classifier finds a hazard in.
//!
//! Run with `cargo fuzz run session_guard` from the repository root (cargo-fuzz
//! needs a nightly toolchain, or `RUSTC_BOOTSTRAP=1` on a stable one).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_core::__private::{session_guard_classify, session_guard_fast_path};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let classified = session_guard_classify(&text);
    if session_guard_fast_path(&text) {
        assert_eq!(classified, Ok(()), "the fast path passed {text:?}");
    }
});
