//! Property tests for `SchemaName`: arbitrary input never panics, every
//! rejection carries the rule it breaks (checked against an independent
//! statement of the rules), and every accepted name is a schema of its own in
//! PostgreSQL: created verbatim (no folding, no truncation), distinct from
//! every other accepted name, and droppable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use proptest::prelude::*;
use tenancy_core::{
    parse_schema, SchemaName, SchemaNameError, TenancyError, DEFAULT_REGISTRY_SCHEMA, MAX_LEN,
};
use tenancy_tests::admin;

/// The naming rules, restated independently of the implementation: the
/// first broken rule, in the order the documentation gives them.
fn expected(name: &str) -> Result<(), SchemaNameError> {
    if name.is_empty() {
        return Err(SchemaNameError::Empty);
    }
    for (position, c) in name.char_indices() {
        if !c.is_ascii() {
            return Err(SchemaNameError::NonAscii { position });
        }
        if c.is_ascii_uppercase() {
            return Err(SchemaNameError::Uppercase { position, found: c });
        }
        if position == 0 && c.is_ascii_digit() {
            return Err(SchemaNameError::InvalidStart { found: c });
        }
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(SchemaNameError::InvalidCharacter { position, found: c });
        }
    }
    if name.len() > MAX_LEN {
        return Err(SchemaNameError::TooLong { len: name.len() });
    }
    if name.starts_with("pg_") {
        return Err(SchemaNameError::ReservedPrefix);
    }
    match name {
        "public" => Err(SchemaNameError::Reserved { name: "public" }),
        "information_schema" => Err(SchemaNameError::Reserved { name: "information_schema" }),
        n if n == DEFAULT_REGISTRY_SCHEMA => Err(SchemaNameError::RegistrySchema),
        _ => Ok(()),
    }
}

/// Strings near the rules' edges: identifier-like, mixed case, punctuation
/// and quotes, multi-byte characters, reserved words, and lengths around 63.
fn hostile_names() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9_]{0,70}",
        "[a-z_][a-z0-9_]{55,70}",
        "[a-z0-9_ \"';.$-]{0,20}",
        "(pg_|public|information_schema|tenancy)[a-z0-9_]{0,3}",
        "[a-zé_ß0-9\u{0}\u{130}\u{212a}]{1,10}",
    ]
}

/// Names the rules accept.
fn accepted_names() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,62}".prop_filter("reserved", |n| expected(n).is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic_and_every_rejection_names_its_rule(name in hostile_names()) {
        let parsed = SchemaName::new(&name);
        prop_assert_eq!(parsed.as_ref().map(|_| ()).map_err(|e| *e), expected(&name));
        prop_assert_eq!(name.parse::<SchemaName>().is_ok(), parsed.is_ok());
        prop_assert_eq!(SchemaName::try_from(name.clone()).is_ok(), parsed.is_ok());
        match parsed {
            Ok(schema) => {
                prop_assert_eq!(schema.as_str(), name.as_str());
                prop_assert_eq!(schema.quoted(), format!("\"{name}\""));
            }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(!error.rule().is_empty());
                prop_assert!(message.starts_with(error.rule()), "{message}");
                match parse_schema(&name) {
                    Err(TenancyError::InvalidSchemaName { name: kept, reason }) => {
                        prop_assert_eq!(kept, name.clone());
                        prop_assert_eq!(reason, error);
                    }
                    other => prop_assert!(false, "parse_schema({name:?}) = {other:?}"),
                }
            }
        }
    }

    #[test]
    fn case_variants_of_an_accepted_name_are_rejected_not_folded(name in "[a-z][a-z0-9_]{0,20}") {
        let upper = name.to_ascii_uppercase();
        prop_assert!(
            matches!(SchemaName::new(&upper), Err(SchemaNameError::Uppercase { position: 0, .. })),
            "{upper:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Inside a transaction that is rolled back, so that nothing is left
    /// behind even if the test fails half-way.
    #[test]
    fn accepted_names_are_distinct_schemas_created_verbatim_and_droppable(
        names in proptest::collection::vec(accepted_names(), 1..12)
    ) {
        let names: BTreeSet<String> = names.into_iter().collect();
        let schemas: Vec<SchemaName> = names.iter().map(|n| SchemaName::new(n).unwrap()).collect();
        let mut conn = admin();
        conn.begin_test_transaction().unwrap();
        let names_vec: Vec<String> = names.iter().cloned().collect();
        for schema in &schemas {
            conn.batch_execute(&format!("CREATE SCHEMA {}", schema.quoted())).unwrap();
        }
        let found: Vec<String> = diesel::select(
            diesel::dsl::sql::<Array<Text>>("ARRAY(SELECT nspname::text FROM pg_namespace WHERE nspname = ANY(")
                .bind::<Array<Text>, _>(names_vec.clone())
                .sql(") ORDER BY 1)"),
        )
        .get_result(&mut conn)
        .unwrap();
        prop_assert_eq!(found.into_iter().collect::<BTreeSet<_>>(), names.clone(), "one schema per name, verbatim");
        for schema in &schemas {
            conn.batch_execute(&format!("DROP SCHEMA {}", schema.quoted())).unwrap();
        }
        let left: i64 = diesel::select(
            diesel::dsl::sql::<diesel::sql_types::BigInt>("(SELECT count(*) FROM pg_namespace WHERE nspname = ANY(")
                .bind::<Array<Text>, _>(names_vec)
                .sql("))"),
        )
        .get_result(&mut conn)
        .unwrap();
        prop_assert_eq!(left, 0);
    }
}
