//! `SchemaName` through serde (the `serde` feature): a plain string on the
//! wire, validated by the same rules on the way in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tenancy_core::SchemaName;

#[test]
fn schema_name_serializes_as_its_string_and_reads_back() {
    let acme = SchemaName::new("acme").unwrap();
    assert_eq!(serde_json::to_string(&acme).unwrap(), r#""acme""#);
    assert_eq!(serde_json::from_str::<SchemaName>(r#""acme""#).unwrap(), acme);
    // Escapes make serde_json hand over an owned string, not a borrowed one.
    assert_eq!(serde_json::from_str::<SchemaName>(r#""ac\u006de""#).unwrap(), acme);
    assert_eq!(serde_json::from_value::<SchemaName>(serde_json::json!("acme")).unwrap(), acme);
}

#[test]
fn deserializing_refuses_what_schema_name_new_refuses_with_its_message() {
    for invalid in ["Acme", "", "public", "information_schema", "pg_acme", "tenancy", "a-b", "ünï"] {
        let rule = SchemaName::new(invalid).unwrap_err().to_string();
        let json = serde_json::to_string(invalid).unwrap();
        let error = serde_json::from_str::<SchemaName>(&json).unwrap_err().to_string();
        assert!(error.contains(&rule), "{invalid:?}: {error:?} should say {rule:?}");
    }
    let too_long = "x".repeat(64);
    assert!(serde_json::from_value::<SchemaName>(serde_json::json!(too_long)).is_err());
    // Not a string at all.
    assert!(serde_json::from_str::<SchemaName>("42").is_err());
}
