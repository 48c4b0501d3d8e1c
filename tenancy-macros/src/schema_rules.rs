//! The rules a tenant schema name follows, for `schema!` to report a broken
//! one at expansion time, with the rule and a name that would do.
//! `tenancy_core::SchemaName` applies the same rules at run time and in
//! `const` code; its tests check that both agree, message for message.

/// The longest name PostgreSQL keeps whole.
const MAX_LEN: usize = 63;

/// The schema of the tenant registry (`tenancy_core::DEFAULT_REGISTRY_SCHEMA`).
const REGISTRY: &str = "tenancy";

/// `Ok` for a valid tenant schema name, else the broken rule and where.
pub(crate) fn check(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(String::from("a schema name must not be empty"));
    }
    for (i, &b) in bytes.iter().enumerate() {
        if !b.is_ascii() {
            return Err(format!(
                "a schema name must be ASCII: only lowercase letters (a-z), digits (0-9) and underscores; found a non-ASCII character at byte {i}"
            ));
        }
        let found = b as char;
        if b.is_ascii_uppercase() {
            return Err(format!(
                "a schema name must be lowercase (names are not case-folded, so that `TenantA` and `tenanta` cannot share a schema); found {found:?} at byte {i}"
            ));
        }
        let allowed = b.is_ascii_lowercase() || b == b'_' || (i > 0 && b.is_ascii_digit());
        if !allowed {
            if i == 0 && b.is_ascii_digit() {
                return Err(format!(
                    "a schema name must start with a lowercase letter (a-z) or an underscore; found {found:?}"
                ));
            }
            return Err(format!(
                "a schema name may contain only lowercase letters (a-z), digits (0-9) and underscores; found {found:?} at byte {i}"
            ));
        }
    }
    if bytes.len() > MAX_LEN {
        return Err(format!(
            "a schema name must be at most 63 bytes long (PostgreSQL truncates longer names, so they would collide); this one is {} bytes",
            bytes.len()
        ));
    }
    if name.starts_with("pg_") {
        return Err(String::from(
            "a schema name must not start with `pg_`, which PostgreSQL reserves for system schemas",
        ));
    }
    if name == "public" || name == "information_schema" {
        return Err(String::from(
            "a schema name must not be `public` or `information_schema`, which belong to PostgreSQL",
        ));
    }
    if name == REGISTRY {
        return Err(String::from("a schema name must not be `tenancy`, the schema of the tenant registry"));
    }
    Ok(())
}

/// A valid name close to `name`, when there is an obvious one: lowercase,
/// other characters as underscores, a leading digit behind an underscore,
/// without a `pg_` prefix.
#[allow(dead_code)] // not used by the rules' agreement test in tenancy-core
pub(crate) fn suggest(name: &str) -> Option<String> {
    let mut fixed: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if fixed.starts_with(|c: char| c.is_ascii_digit()) {
        fixed.insert(0, '_');
    }
    if let Some(rest) = fixed.strip_prefix("pg_") {
        fixed = rest.to_owned();
    }
    (fixed != name && check(&fixed).is_ok()).then_some(fixed)
}
