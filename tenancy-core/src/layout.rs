//! The pool's own schemas: the shared schema, the registry schema and the
//! extension schemas, validated once, and the search paths built from them.

use std::fmt;

use crate::citus::detect::Citus;
use crate::config::ConfigError;
use crate::schema_name::{check_identifier, SchemaName};
use crate::sql::quote_ident;

/// What a schema the pool reserves for itself is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SchemaRole {
    /// The shared schema, holding tables every tenant shares ([`crate::TenantPool::shared`]).
    Shared,
    /// The schema of the tenant registry.
    Registry,
    /// An extension schema, appended to every search path.
    Extension,
}

impl fmt::Display for SchemaRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shared => "shared",
            Self::Registry => "registry",
            Self::Extension => "extension",
        })
    }
}

/// The schemas of one pool.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    shared: String,
    registry: String,
    extensions: Vec<String>,
    /// What follows the first schema of every search path: the extension
    /// schemas, then `pg_temp`, named last so that temporary tables (searched
    /// first unless named) can never shadow a tenant's tables.
    tail: String,
    /// What the pool found on a Citus coordinator; `None` on plain PostgreSQL.
    citus: Option<Citus>,
}

impl Layout {
    pub(crate) fn new(shared: &str, registry: &str, extensions: &[String]) -> Result<Self, ConfigError> {
        let checked = |setting: &'static str, name: &str| {
            check_identifier(name).map_err(|reason| ConfigError::InvalidSchemaName {
                setting,
                name: name.to_owned(),
                reason,
            })
        };
        checked("shared_schema", shared)?;
        checked("registry_schema", registry)?;
        if shared == registry {
            return Err(ConfigError::SharedIsRegistry { name: shared.to_owned() });
        }
        for extension in extensions {
            checked("extension_schemas", extension)?;
            if extension == "public" || extension == shared || extension == registry {
                return Err(ConfigError::ExtensionSchemaHoldsTables { name: extension.clone() });
            }
        }
        let tail: String = extensions
            .iter()
            .map(|e| format!(", {}", quote_ident(e)))
            .chain([String::from(", pg_temp")])
            .collect();
        Ok(Self {
            shared: shared.to_owned(),
            registry: registry.to_owned(),
            extensions: extensions.to_vec(),
            tail,
            citus: None,
        })
    }

    /// Citus, when the pool's database is a Citus coordinator with
    /// schema-based sharding.
    pub(crate) fn citus(&self) -> Option<&Citus> {
        self.citus.as_ref()
    }

    pub(crate) fn set_citus(&mut self, citus: Option<Citus>) {
        self.citus = citus;
    }

    pub(crate) fn shared(&self) -> &str {
        &self.shared
    }

    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    /// What `name` is to this pool, if the pool reserves it.
    pub(crate) fn role_of(&self, name: &str) -> Option<SchemaRole> {
        if name == self.shared {
            Some(SchemaRole::Shared)
        } else if name == self.registry {
            Some(SchemaRole::Registry)
        } else if self.extensions.iter().any(|e| e == name) {
            Some(SchemaRole::Extension)
        } else {
            None
        }
    }

    /// The search path whose first schema is `first`, quoted, ready to follow `SET search_path TO`.
    pub(crate) fn search_path(&self, first: &str) -> String {
        format!("{}{}", quote_ident(first), self.tail)
    }

    pub(crate) fn tenant_path(&self, schema: &SchemaName) -> String {
        self.search_path(schema.as_str())
    }

    /// The same path without quotes, as it reads in `current_setting('search_path')`
    /// once its quotes are stripped (valid names never need any).
    pub(crate) fn bare_path(&self, first: &str) -> String {
        self.search_path(first).replace('"', "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_paths_end_in_pg_temp_after_the_extensions() {
        let layout = Layout::new("public", "tenancy", &[String::from("ext")]).unwrap();
        assert_eq!(layout.search_path("acme"), "\"acme\", \"ext\", pg_temp");
        assert_eq!(layout.bare_path("acme"), "acme, ext, pg_temp");
        assert_eq!(layout.role_of("ext"), Some(SchemaRole::Extension));
        assert_eq!(layout.role_of("acme"), None);
    }

    #[test]
    fn every_bad_setting_is_its_own_error() {
        assert!(matches!(
            Layout::new("Bad", "tenancy", &[]),
            Err(ConfigError::InvalidSchemaName { setting: "shared_schema", .. })
        ));
        assert!(matches!(Layout::new("x", "x", &[]), Err(ConfigError::SharedIsRegistry { .. })));
        assert!(matches!(
            Layout::new("public", "tenancy", &[String::from("public")]),
            Err(ConfigError::ExtensionSchemaHoldsTables { .. })
        ));
    }
}
