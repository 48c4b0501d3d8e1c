use super::*;

#[test]
fn accepts_valid_names() {
    for ok in [
        "a",
        "_",
        "acme",
        "tenant_42",
        "_private",
        "a1",
        &"a".repeat(63),
        "pgx",
        "pg",
        "publicity",
        "tenancy2",
    ] {
        assert!(SchemaName::new(ok).is_ok(), "{ok} should be accepted");
    }
}

#[test]
fn each_rule_has_its_own_variant() {
    use SchemaNameError::*;
    let cases: &[(&str, SchemaNameError)] = &[
        ("", Empty),
        ("Acme", Uppercase { position: 0, found: 'A' }),
        ("acmE", Uppercase { position: 3, found: 'E' }),
        ("1acme", InvalidStart { found: '1' }),
        ("ac-me", InvalidCharacter { position: 2, found: '-' }),
        ("ac me", InvalidCharacter { position: 2, found: ' ' }),
        ("ac\"me", InvalidCharacter { position: 2, found: '"' }),
        ("acme;drop", InvalidCharacter { position: 4, found: ';' }),
        ("-acme", InvalidCharacter { position: 0, found: '-' }),
        ("acmé", NonAscii { position: 3 }),
        ("pg_x", ReservedPrefix),
        ("public", Reserved { name: "public" }),
        ("information_schema", Reserved { name: "information_schema" }),
        ("tenancy", RegistrySchema),
    ];
    for (input, expected) in cases {
        assert_eq!(SchemaName::new(input).as_ref().err(), Some(expected), "input {input:?}");
    }
    assert_eq!(SchemaName::new(&"a".repeat(64)), Err(TooLong { len: 64 }));
}

#[test]
fn messages_name_the_rule() {
    let e = SchemaName::new("Acme").unwrap_err();
    assert!(e.to_string().contains("lowercase"), "{e}");
    let e = SchemaName::new(&"a".repeat(64)).unwrap_err();
    assert!(e.to_string().contains("63 bytes"), "{e}");
    let e = SchemaName::new("pg_x").unwrap_err();
    assert!(e.to_string().contains("pg_"), "{e}");
}

#[test]
fn static_and_shared_names_compare_equal() {
    let a = crate::schema!("acme");
    let b = SchemaName::new("acme").unwrap();
    assert_eq!(a, b);
    let mut h1 = std::collections::hash_map::DefaultHasher::new();
    let mut h2 = std::collections::hash_map::DefaultHasher::new();
    a.hash(&mut h1);
    b.hash(&mut h2);
    assert_eq!(h1.finish(), h2.finish());
}

/// `schema!` checks literals with its own copy of the rules (a proc macro
/// cannot call this crate): both must give the same verdict and message
/// for every input.
#[test]
fn schema_macro_applies_the_same_rules() {
    let mut inputs: Vec<String> = [
        "",
        "a",
        "_",
        "acme",
        "Acme",
        "acme-corp",
        "Acme-Corp",
        "1acme",
        "a1",
        "pg_x",
        "pg",
        "pg_",
        "public",
        "information_schema",
        "tenancy",
        "tenancy_x",
        "caf\u{e9}",
        "a b",
        "a\"b",
        "a;b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    inputs.push("a".repeat(63));
    inputs.push("a".repeat(64));
    inputs.push(format!("{}A", "a".repeat(70)));
    // Every string of up to three characters over an alphabet that hits every rule.
    let alphabet = ['a', 'p', 'g', '_', '1', 'Z', '-', '\u{e9}'];
    let mut frontier = vec![String::new()];
    for _ in 0..3 {
        let next: Vec<String> =
            frontier.iter().flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}"))).collect();
        inputs.extend(next.iter().cloned());
        frontier = next;
    }
    for input in &inputs {
        let ours = SchemaName::check(input).map_err(|e| e.to_string());
        assert_eq!(crate::macro_schema_rules::check(input), ours, "{input:?}");
    }
}
