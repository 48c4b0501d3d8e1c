//! [`SchemaName`]: the validated name of a tenant's PostgreSQL schema.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use crate::sql::quote_ident;

/// The longest identifier PostgreSQL keeps without truncating (`NAMEDATALEN - 1`).
pub const MAX_LEN: usize = 63;

/// The schema the tenant registry lives in unless configured otherwise.
///
/// [`SchemaName`] refuses this name so that no tenant can ever be provisioned
/// over (or dropped together with) the registry.
pub const DEFAULT_REGISTRY_SCHEMA: &str = "tenancy";

/// A validated tenant schema name: the only way to name a tenant anywhere in
/// this crate.
///
/// The rules are strict on purpose. PostgreSQL folds unquoted identifiers to
/// lowercase and silently truncates names longer than 63 bytes, so names
/// that differ only in case or past byte 63 would share one schema. Instead
/// of folding or truncating, a `SchemaName` rejects them:
///
/// * 1 to 63 bytes;
/// * the first character is `a-z` or `_`, the rest `a-z`, `0-9` or `_`
///   (lowercase only: `TenantA` is rejected, not folded to `tenanta`);
/// * not starting with `pg_` (reserved by PostgreSQL for system schemas);
/// * not `public` or `information_schema`;
/// * not the registry schema ([`DEFAULT_REGISTRY_SCHEMA`]).
///
/// The same `const fn` checks run at compile time in [`schema!`](crate::schema!)
/// and at run time in [`SchemaName::new`], [`FromStr`] and [`TryFrom`].
///
/// Cloning is cheap (a reference count, or nothing for names built by
/// `schema!`).
///
/// ```
/// use tenancy_core::{SchemaName, SchemaNameError};
///
/// let acme = SchemaName::new("acme")?;
/// assert_eq!(acme.as_str(), "acme");
/// assert_eq!(acme.quoted(), "\"acme\"");
///
/// assert_eq!(SchemaName::new("Acme"), Err(SchemaNameError::Uppercase { position: 0, found: 'A' }));
/// assert!(matches!("pg_catalog".parse::<SchemaName>(), Err(SchemaNameError::ReservedPrefix)));
/// # Ok::<(), SchemaNameError>(())
/// ```
#[derive(Clone)]
pub struct SchemaName(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

/// Why a string is not a valid [`SchemaName`]: one variant per rule.
///
/// Every message names the rule that was broken and what is allowed instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SchemaNameError {
    /// The name is the empty string.
    Empty,
    /// The name is longer than 63 bytes, which PostgreSQL would silently truncate.
    TooLong {
        /// The length of the rejected name, in bytes.
        len: usize,
    },
    /// The first character is a digit (or another character that may not start a name).
    InvalidStart {
        /// The rejected first character.
        found: char,
    },
    /// The name contains an uppercase ASCII letter; names are never case-folded.
    Uppercase {
        /// Byte offset of the first uppercase letter.
        position: usize,
        /// The uppercase letter.
        found: char,
    },
    /// The name contains an ASCII character outside `a-z`, `0-9` and `_`.
    InvalidCharacter {
        /// Byte offset of the first rejected character.
        position: usize,
        /// The rejected character.
        found: char,
    },
    /// The name contains a non-ASCII character.
    NonAscii {
        /// Byte offset of the first non-ASCII byte.
        position: usize,
    },
    /// The name starts with `pg_`, a prefix PostgreSQL reserves for system schemas.
    ReservedPrefix,
    /// The name is `public` or `information_schema`, which belong to PostgreSQL.
    Reserved {
        /// The reserved name.
        name: &'static str,
    },
    /// The name is the tenant registry's own schema.
    RegistrySchema,
}

impl SchemaNameError {
    /// The rule that was broken, as a sentence (without the details of the
    /// offending input). Usable in `const` contexts: [`schema!`](crate::schema!)
    /// reports it as a compile error.
    pub const fn rule(&self) -> &'static str {
        match self {
            Self::Empty => "a schema name must not be empty",
            Self::TooLong { .. } => {
                "a schema name must be at most 63 bytes long (PostgreSQL truncates longer names, so they would collide)"
            }
            Self::InvalidStart { .. } => {
                "a schema name must start with a lowercase letter (a-z) or an underscore"
            }
            Self::Uppercase { .. } => {
                "a schema name must be lowercase (names are not case-folded, so that `TenantA` and `tenanta` cannot share a schema)"
            }
            Self::InvalidCharacter { .. } => {
                "a schema name may contain only lowercase letters (a-z), digits (0-9) and underscores"
            }
            Self::NonAscii { .. } => {
                "a schema name must be ASCII: only lowercase letters (a-z), digits (0-9) and underscores"
            }
            Self::ReservedPrefix => {
                "a schema name must not start with `pg_`, which PostgreSQL reserves for system schemas"
            }
            Self::Reserved { .. } => {
                "a schema name must not be `public` or `information_schema`, which belong to PostgreSQL"
            }
            Self::RegistrySchema => {
                "a schema name must not be `tenancy`, the schema of the tenant registry"
            }
        }
    }
}

impl fmt::Display for SchemaNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rule())?;
        match self {
            Self::TooLong { len } => write!(f, "; this one is {len} bytes"),
            Self::InvalidStart { found } => write!(f, "; found {found:?}"),
            Self::Uppercase { position, found } | Self::InvalidCharacter { position, found } => {
                write!(f, "; found {found:?} at byte {position}")
            }
            Self::NonAscii { position } => write!(f, "; found a non-ASCII character at byte {position}"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for SchemaNameError {}

/// Checks the character rules shared by every identifier this crate splices
/// into SQL (tenant, shared, extension and registry schema names).
///
/// Returns the name's bytes on success. `const` so that `schema!` can run the
/// very same code at compile time.
pub(crate) const fn check_identifier(name: &str) -> Result<(), SchemaNameError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(SchemaNameError::Empty);
    }
    // Character rules first: they say more about hostile input than its length.
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !b.is_ascii() {
            return Err(SchemaNameError::NonAscii { position: i });
        }
        if b.is_ascii_uppercase() {
            return Err(SchemaNameError::Uppercase { position: i, found: b as char });
        }
        let allowed = b.is_ascii_lowercase() || b == b'_' || (i > 0 && b.is_ascii_digit());
        if !allowed {
            if i == 0 && b.is_ascii_digit() {
                return Err(SchemaNameError::InvalidStart { found: b as char });
            }
            return Err(SchemaNameError::InvalidCharacter { position: i, found: b as char });
        }
        i += 1;
    }
    if bytes.len() > MAX_LEN {
        return Err(SchemaNameError::TooLong { len: bytes.len() });
    }
    Ok(())
}

/// `true` if `name` starts with PostgreSQL's reserved `pg_` prefix.
pub(crate) const fn has_reserved_prefix(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 3 && b[0] == b'p' && b[1] == b'g' && b[2] == b'_'
}

pub(crate) const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The complete tenant-name rules: [`check_identifier`] plus the reserved names.
pub(crate) const fn validate(name: &str) -> Result<(), SchemaNameError> {
    if let Err(e) = check_identifier(name) {
        return Err(e);
    }
    if has_reserved_prefix(name) {
        return Err(SchemaNameError::ReservedPrefix);
    }
    if const_str_eq(name, "public") {
        return Err(SchemaNameError::Reserved { name: "public" });
    }
    if const_str_eq(name, "information_schema") {
        return Err(SchemaNameError::Reserved { name: "information_schema" });
    }
    if const_str_eq(name, DEFAULT_REGISTRY_SCHEMA) {
        return Err(SchemaNameError::RegistrySchema);
    }
    Ok(())
}

impl SchemaName {
    /// Validates `name` and returns it as a `SchemaName`.
    ///
    /// ```
    /// # use tenancy_core::{SchemaName, SchemaNameError};
    /// assert!(SchemaName::new("tenant_42").is_ok());
    /// assert_eq!(SchemaName::new("42tenant"), Err(SchemaNameError::InvalidStart { found: '4' }));
    /// assert_eq!(SchemaName::new("public"), Err(SchemaNameError::Reserved { name: "public" }));
    /// ```
    pub fn new(name: &str) -> Result<Self, SchemaNameError> {
        validate(name)?;
        Ok(Self(Repr::Shared(Arc::from(name))))
    }

    /// Validates a `'static` name without allocating.
    ///
    /// For literals, prefer [`schema!`](crate::schema!), which runs the same
    /// check at compile time.
    ///
    /// ```
    /// # use tenancy_core::{SchemaName, SchemaNameError};
    /// assert_eq!(SchemaName::from_static("acme").map(|n| n.to_string()), Ok(String::from("acme")));
    /// assert_eq!(SchemaName::from_static("pg_toast").err(), Some(SchemaNameError::ReservedPrefix));
    /// ```
    pub const fn from_static(name: &'static str) -> Result<Self, SchemaNameError> {
        match validate(name) {
            Ok(()) => Ok(Self(Repr::Static(name))),
            Err(e) => Err(e),
        }
    }

    /// Checks `name` against every rule without building anything; `const`.
    ///
    /// ```
    /// # use tenancy_core::{SchemaName, SchemaNameError};
    /// const OK: bool = SchemaName::check("acme").is_ok();
    /// assert!(OK);
    /// assert_eq!(SchemaName::check("Acme"), Err(SchemaNameError::Uppercase { position: 0, found: 'A' }));
    /// ```
    pub const fn check(name: &str) -> Result<(), SchemaNameError> {
        validate(name)
    }

    /// The name, exactly as validated (no quotes).
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }

    /// The name as a double-quoted SQL identifier, ready to splice into SQL.
    ///
    /// Validation already excludes every character that would need escaping;
    /// quoting on top keeps the name from ever being read as a keyword or
    /// being case-folded.
    pub fn quoted(&self) -> String {
        quote_ident(self.as_str())
    }
}

/// What [`schema!`](crate::schema!) expands to: validates `name` and panics
/// with the broken rule, which in a `const` is a compile error. A free
/// function, so that the compiler never suggests it as a constructor.
// `schema!` (tenancy-macros) checks the literal with the same rules when it
// expands (a test holds the two copies of the rules equal) and emits this call
// only for a valid name, so through the macro this panic is unreachable; a
// direct call of the hidden wrapper with an invalid literal panics, at compile
// time in a `const`, rather than building an invalid name.
#[allow(clippy::panic)]
pub(crate) const fn literal(name: &'static str) -> SchemaName {
    match validate(name) {
        Ok(()) => SchemaName(Repr::Static(name)),
        Err(error) => panic!("{}", error.rule()),
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SchemaName").field(&self.as_str()).finish()
    }
}

impl PartialEq for SchemaName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for SchemaName {}

impl PartialEq<str> for SchemaName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}
impl PartialEq<&str> for SchemaName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for SchemaName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for SchemaName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for SchemaName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl AsRef<str> for SchemaName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SchemaName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl FromStr for SchemaName {
    type Err = SchemaNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for SchemaName {
    type Error = SchemaNameError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for SchemaName {
    type Error = SchemaNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        validate(&s)?;
        Ok(Self(Repr::Shared(Arc::from(s))))
    }
}

impl From<SchemaName> for String {
    fn from(name: SchemaName) -> Self {
        name.as_str().to_owned()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for SchemaName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for SchemaName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
        SchemaName::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A [`SchemaName`] checked at compile time: an invalid literal does not compile.
///
/// ```
/// use tenancy_core::{schema, SchemaName};
///
/// let acme: SchemaName = schema!("acme");
/// assert_eq!(acme.as_str(), "acme");
/// ```
///
/// ```compile_fail
/// let bad = tenancy_core::schema!("Acme"); // uppercase: rejected at compile time
/// ```
#[macro_export]
macro_rules! schema {
    ($name:literal) => {
        $crate::__private::schema_macro!($crate, $name)
    };
}

#[cfg(test)]
#[path = "schema_name_tests.rs"]
mod tests;
