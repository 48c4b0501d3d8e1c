//! [`Catalog`]: which functions and relations the classifier may trust,
//! read from the server itself.

use std::collections::HashSet;

/// What the classifier knows about the server's functions and relations.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    /// Functions (lowercase, unqualified or in `pg_catalog`) that change no session state.
    harmless: HashSet<Box<[u8]>>,
    /// `pg_catalog` relations with rules that run on writes (`pg_settings`,
    /// whose update rule calls `set_config`).
    ruled_relations: HashSet<Box<[u8]>>,
}

/// Volatile built-in functions that touch no session state.
const VOLATILE_BUT_HARMLESS: &[&str] = &[
    "random",
    "gen_random_uuid",
    "clock_timestamp",
    "timeofday",
    "statement_timestamp",
    "transaction_timestamp",
    "pg_notify",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "txid_current",
    "pg_current_xact_id",
    "lastval",
    "pg_backend_pid",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
];

/// Immutable or stable built-ins diesel's DSL and everyday SQL use; the
/// offline stand-in for what [`Catalog::from_server`] reads.
const EVERYDAY_BUILTINS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "lower",
    "upper",
    "length",
    "char_length",
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "now",
    "date_trunc",
    "date_part",
    "to_char",
    "to_date",
    "to_timestamp",
    "concat",
    "concat_ws",
    "substr",
    "replace",
    "btrim",
    "ltrim",
    "rtrim",
    "split_part",
    "strpos",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_build_object",
    "jsonb_build_object",
    "array_length",
    "cardinality",
    "unnest",
    "generate_series",
    "row_number",
    "rank",
    "dense_rank",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "bool_and",
    "bool_or",
    "every",
    "md5",
    "encode",
    "decode",
    "age",
    "make_interval",
    "left",
    "right",
    "starts_with",
    "regexp_replace",
    "to_json",
    "to_jsonb",
    "jsonb_set",
    "array_to_string",
    "string_to_array",
    "current_setting",
    "current_schemas",
    "version",
    "to_regclass",
    "to_regnamespace",
    "pg_typeof",
];

impl Default for Catalog {
    fn default() -> Self {
        Self::with_harmless(EVERYDAY_BUILTINS.iter().map(|s| s.to_string()), [String::from("pg_settings")])
    }
}

impl Catalog {
    /// A catalog from the server's own lists (see [`Catalog::FUNCTIONS_SQL`]
    /// and [`Catalog::RELATIONS_SQL`]), plus the volatile functions known harmless.
    pub(crate) fn with_harmless(
        functions: impl IntoIterator<Item = String>,
        ruled_relations: impl IntoIterator<Item = String>,
    ) -> Self {
        Self::with_shadowed(functions, ruled_relations, [])
    }

    /// Like [`Catalog::with_harmless`], less the built-in names that
    /// functions elsewhere overload ([`Catalog::SHADOWED_SQL`]): an
    /// unqualified call of such a name may resolve to that function.
    pub(crate) fn with_shadowed(
        functions: impl IntoIterator<Item = String>,
        ruled_relations: impl IntoIterator<Item = String>,
        shadowed: impl IntoIterator<Item = String>,
    ) -> Self {
        let shadowed: HashSet<String> = shadowed.into_iter().map(|s| s.to_ascii_lowercase()).collect();
        let harmless = functions
            .into_iter()
            .chain(VOLATILE_BUT_HARMLESS.iter().map(|s| s.to_string()))
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| !shadowed.contains(s))
            .map(|s| s.into_bytes().into_boxed_slice())
            .collect();
        let ruled_relations = ruled_relations
            .into_iter()
            .map(|s| s.to_ascii_lowercase().into_bytes().into_boxed_slice())
            .collect();
        Self { harmless, ruled_relations }
    }

    /// Every `pg_catalog` function all of whose overloads are immutable or
    /// stable: by PostgreSQL's volatility contract, none changes anything.
    pub(crate) const FUNCTIONS_SQL: &'static str = "SELECT proname::text AS name FROM pg_catalog.pg_proc \
         WHERE pronamespace = 'pg_catalog'::regnamespace GROUP BY proname \
         HAVING bool_and(provolatile IN ('i', 's') AND prokind IN ('f', 'a', 'w'))";

    /// Names of `pg_catalog` functions that a function of another schema
    /// overloads, other than one an extension installed: PostgreSQL resolves
    /// an unqualified call to the best-matching overload in the search path,
    /// which may be that one, whatever the built-in's volatility.
    pub(crate) const SHADOWED_SQL: &'static str =
        "SELECT DISTINCT o.proname::text AS name FROM pg_catalog.pg_proc o \
         WHERE o.pronamespace <> 'pg_catalog'::regnamespace \
         AND EXISTS (SELECT 1 FROM pg_catalog.pg_proc b \
             WHERE b.pronamespace = 'pg_catalog'::regnamespace AND b.proname = o.proname) \
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
             WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = o.oid AND d.deptype = 'e')";

    /// Every `pg_catalog` relation with a rule that runs on a write.
    pub(crate) const RELATIONS_SQL: &'static str = "SELECT DISTINCT c.relname::text AS name \
         FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class \
         WHERE c.relnamespace = 'pg_catalog'::regnamespace AND r.ev_type <> '1'";

    pub(super) fn is_harmless(&self, name: &[u8]) -> bool {
        with_folded(name, |folded| self.harmless.contains(folded))
    }

    pub(super) fn is_ruled_relation(&self, name: &[u8]) -> bool {
        with_folded(name, |folded| self.ruled_relations.contains(folded))
    }
}

/// Calls `f` with `name` in ASCII lowercase, without allocating for names of identifier length.
fn with_folded<T>(name: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    let mut buf = [0u8; 64];
    match buf.get_mut(..name.len()) {
        Some(slot) => {
            for (dst, src) in slot.iter_mut().zip(name) {
                *dst = src.to_ascii_lowercase();
            }
            f(slot)
        }
        None => f(&name.to_ascii_lowercase()),
    }
}
