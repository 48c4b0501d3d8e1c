//! Fuzzes the schema-name parser: any byte string, as UTF-8 or lossily
//! decoded, must be accepted or rejected without panicking, and an accepted
//! name must satisfy the rules and round-trip exactly.
//!
//! Run with `cargo +nightly fuzz run schema_name` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_core::{SchemaName, MAX_LEN};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for input in [text.as_ref(), std::str::from_utf8(data).unwrap_or("")] {
        match SchemaName::new(input) {
            Ok(name) => {
                assert_eq!(name.as_str(), input);
                assert!(!input.is_empty() && input.len() <= MAX_LEN);
                assert!(input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
                assert!(!input.as_bytes()[0].is_ascii_digit());
                assert!(!input.starts_with("pg_"));
                assert_eq!(name.quoted(), format!("\"{input}\""));
                assert_eq!(input.parse::<SchemaName>().ok(), Some(name));
            }
            Err(error) => {
                assert!(error.to_string().starts_with(error.rule()));
                assert!(tenancy_core::parse_schema(input).is_err());
            }
        }
    }
});
