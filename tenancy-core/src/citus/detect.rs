//! Finding Citus on the server, and the statements that say where a new
//! schema goes. Depends on nothing of the pool's, so that the pool's layout
//! and registry can use it.

use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use crate::schema_name::SchemaName;

/// What a pool found on a Citus coordinator ([`TenantPool::citus`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Citus {
    version: String,
    distributes_tenants: bool,
}

impl Citus {
    /// The Citus extension's version, e.g. `13.2-1`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether this pool creates tenants as distributed schemas
    /// ([`TenantPoolBuilder::distribute_tenants`](crate::TenantPoolBuilder::distribute_tenants)).
    pub fn distributes_tenants(&self) -> bool {
        self.distributes_tenants
    }
}

/// Finds Citus on the server `conn` is connected to: the extension in its
/// database, schema-based sharding available, and a coordinator (a node
/// that knows its workers).
pub(crate) fn detect(conn: &mut PgConnection, distribute: bool) -> QueryResult<Option<Citus>> {
    #[derive(QueryableByName)]
    struct Extension {
        #[diesel(sql_type = Text)]
        version: String,
        #[diesel(sql_type = Bool)]
        schema_sharding: bool,
    }
    let found: Vec<Extension> = diesel::sql_query(
        "SELECT extversion::text AS version, \
                pg_catalog.current_setting('citus.enable_schema_based_sharding', true) IS NOT NULL AS schema_sharding \
         FROM pg_catalog.pg_extension WHERE extname = 'citus'",
    )
    .load(conn)?;
    let Some(extension) = found.into_iter().next().filter(|e| e.schema_sharding) else { return Ok(None) };
    #[derive(QueryableByName)]
    struct Coordinator {
        #[diesel(sql_type = Bool)]
        coordinator: bool,
    }
    let role: Vec<Coordinator> =
        diesel::sql_query("SELECT pg_catalog.citus_is_coordinator() AS coordinator").load(conn)?;
    Ok(role
        .first()
        .is_some_and(|r| r.coordinator)
        .then_some(Citus { version: extension.version, distributes_tenants: distribute }))
}

/// The statement that makes the next `CREATE SCHEMA` of this transaction
/// distributed (`true`) or local to the coordinator.
pub(crate) fn schema_sharding(on: bool) -> &'static str {
    if on {
        "SET LOCAL citus.enable_schema_based_sharding = on"
    } else {
        "SET LOCAL citus.enable_schema_based_sharding = off"
    }
}

/// Makes an existing schema, with whatever tables it has, a distributed
/// schema (`citus_schema_distribute`), inside the caller's transaction.
pub(crate) fn distribute_schema(conn: &mut PgConnection, schema: &SchemaName) -> QueryResult<()> {
    crate::session::trusted(conn, |conn| {
        diesel::sql_query("SELECT pg_catalog.citus_schema_distribute($1::regnamespace)")
            .bind::<Text, _>(schema.quoted())
            .execute(conn)
    })?;
    Ok(())
}
