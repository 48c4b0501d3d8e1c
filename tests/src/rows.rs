//! The table most tests use: rows tagged with the tenant that wrote them, so
//! that a row in the wrong schema gives itself away.

use diesel::prelude::*;
use diesel::sql_types::Text;
use tenancy_core::SchemaName;

/// The `items` table, to run inside a tenant schema.
pub const ITEMS_DDL: &str =
    "CREATE TABLE items (id BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, body TEXT NOT NULL DEFAULT '')";

diesel::table! {
    /// `ITEMS_DDL` as a diesel table.
    items (id) {
        /// Insertion order.
        id -> BigInt,
        /// The tenant that wrote the row.
        tenant -> Text,
        /// What it wrote.
        body -> Text,
    }
}

/// A row of a tenant's `items`, read around the library.
#[derive(QueryableByName, Debug)]
pub struct Row {
    /// The tenant that wrote it.
    #[diesel(sql_type = Text)]
    pub tenant: String,
    /// What it wrote.
    #[diesel(sql_type = Text)]
    pub body: String,
}

/// Every row of `schema.items` in insertion order, read directly
/// (schema-qualified), whatever the connection's search path.
pub fn rows_of(conn: &mut PgConnection, schema: &SchemaName) -> Vec<Row> {
    diesel::sql_query(format!("SELECT tenant, body FROM {}.items ORDER BY id", schema.quoted()))
        .load(conn)
        .unwrap_or_else(|e| panic!("auditing {schema}: {e}"))
}

/// The tags of every row of the `items` the connection's search path finds.
pub fn tags(conn: &mut PgConnection) -> Vec<String> {
    items::table.select(items::tenant).load(conn).unwrap()
}

/// Writes a row tagged `tenant` into the `items` the search path finds.
pub fn insert_tagged(conn: &mut PgConnection, tenant: &SchemaName, body: &str) -> QueryResult<usize> {
    diesel::insert_into(items::table)
        .values((items::tenant.eq(tenant.as_str()), items::body.eq(body)))
        .execute(conn)
}
