//! What the fleet tests (`migrate`, `operations`) share: a fleet of tenants
//! at the first version of `fleet_v1`/`fleet_v2`, and what a schema holds.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use tenancy_core::{provision, SchemaName, TenantPool};
use tenancy_devdb::TempDatabase;
use tenancy_tests::{count, migrations};

/// A database of the test's own, a pool of it, and a connection outside the pool.
pub(crate) struct Scene {
    pub(crate) db: TempDatabase,
    pub(crate) pool: TenantPool,
    pub(crate) admin: PgConnection,
}

impl Scene {
    /// A pool of `max_size` on `db`.
    pub(crate) fn on(db: TempDatabase, max_size: u32) -> Self {
        let pool = TenantPool::builder().max_size(max_size).build(db.url()).unwrap();
        let admin = db.connect().unwrap();
        Self { db, pool, admin }
    }
}

/// The versions of `fleet_v2`'s three migrations.
pub(crate) const V1: &str = "20240201000001";
pub(crate) const V2: &str = "20240202000001";
pub(crate) const V3: &str = "20240203000001";

/// The versions in `schema`'s `__diesel_schema_migrations`, in order.
pub(crate) fn versions(conn: &mut PgConnection, schema: &SchemaName) -> Vec<String> {
    #[derive(QueryableByName)]
    struct V {
        #[diesel(sql_type = Text)]
        version: String,
    }
    diesel::sql_query(format!(
        "SELECT version FROM {}.__diesel_schema_migrations ORDER BY 1",
        schema.quoted()
    ))
    .load::<V>(conn)
    .unwrap()
    .into_iter()
    .map(|v| v.version)
    .collect()
}

/// Whether `schema.table` has `column`.
pub(crate) fn has_column(conn: &mut PgConnection, schema: &SchemaName, table: &str, column: &str) -> bool {
    count(
        conn,
        &format!(
            "SELECT count(*) AS n FROM information_schema.columns \
             WHERE table_schema = '{schema}' AND table_name = '{table}' AND column_name = '{column}'"
        ),
        &[],
    ) == 1
}

/// `n` tenants `t00`, `t01`, ... provisioned at version 1, each with one account.
pub(crate) fn fleet(pool: &TenantPool, admin: &mut PgConnection, n: usize) -> Vec<SchemaName> {
    (0..n)
        .map(|i| {
            let schema = SchemaName::new(&format!("t{i:02}")).unwrap();
            provision(pool, &schema, migrations("fleet_v1")).unwrap();
            admin
                .batch_execute(&format!(
                    "INSERT INTO {}.accounts (email) VALUES ('a@{schema}.test')",
                    schema.quoted()
                ))
                .unwrap();
            schema
        })
        .collect()
}

/// Makes the second migration of `fleet_v2` fail for `schema`.
pub(crate) fn break_tenant(admin: &mut PgConnection, schema: &SchemaName) {
    admin.batch_execute(&format!("INSERT INTO {}.accounts (email) VALUES (NULL)", schema.quoted())).unwrap();
}
