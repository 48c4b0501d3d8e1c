//! tenancy on a real Citus cluster (a coordinator and two workers on
//! loopback, started once for this test binary by `tenancy-devdb`):
//! tenants distributed and placed at provisioning, the registry kept on the
//! coordinator, migrations Citus accepts, moves and rebalancing under
//! traffic, and isolation through the coordinator. Citus must be installed
//! (`scripts/test.sh` installs it); without it every test fails saying so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod isolation;
mod migrate;
mod moves;
mod provision;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use tenancy_core::citus::{Node, Placement};
use tenancy_core::{SchemaName, TenantPool};

/// A pool on a database of the cluster.
pub fn pool_on(url: &str) -> TenantPool {
    TenantPool::builder().max_size(8).build(url).unwrap()
}

/// The workers, as the coordinator's pool sees them.
pub fn workers(pool: &TenantPool) -> Vec<Node> {
    let nodes = tenancy_core::citus::nodes(pool).unwrap();
    let ports = tenancy_tests::citus::cluster().worker_ports();
    let workers: Vec<Node> = nodes.into_iter().filter(|n| ports.contains(&n.port)).collect();
    assert_eq!(workers.len(), 2, "both workers hold tenants");
    workers
}

/// The worker a placement names; fails the test for anything else.
pub fn worker_of(placement: &Placement) -> Node {
    let node = placement.node().unwrap_or_else(|| panic!("not placed on a node: {placement:?}"));
    assert!(
        tenancy_tests::citus::cluster().worker_ports().contains(&node.port),
        "placed on {node}, which is not a worker"
    );
    node.clone()
}

/// `n` of `SELECT count(*) AS n ...` with text binds.
pub fn count(conn: &mut PgConnection, sql: &str, binds: &[&str]) -> i64 {
    tenancy_tests::count(conn, sql, binds)
}

/// How many shards Citus keeps for the tables of `schema`.
pub fn shards_of(conn: &mut PgConnection, schema: &SchemaName) -> i64 {
    count(
        conn,
        "SELECT count(*) AS n FROM pg_dist_shard s JOIN pg_class c ON c.oid = s.logicalrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
        &[schema.as_str()],
    )
}

/// Whether `schema` is a distributed schema.
pub fn is_distributed(conn: &mut PgConnection, schema: &str) -> bool {
    count(
        conn,
        "SELECT count(*) AS n FROM pg_dist_schema d JOIN pg_namespace n ON n.oid = d.schemaid WHERE n.nspname = $1",
        &[schema],
    ) == 1
}

/// A text column of one row.
pub fn text(conn: &mut PgConnection, sql: &str) -> String {
    #[derive(QueryableByName)]
    struct One {
        #[diesel(sql_type = Text)]
        t: String,
    }
    diesel::sql_query(sql).get_result::<One>(conn).unwrap_or_else(|e| panic!("{sql}: {e}")).t
}

/// The rows of `orders` in a tenant, read through the pool.
pub fn order_count(pool: &TenantPool, schema: &SchemaName) -> i64 {
    let mut conn = pool.tenant(schema).unwrap();
    diesel::select(diesel::dsl::sql::<BigInt>("(SELECT count(*) FROM orders)"))
        .get_result(&mut *conn)
        .unwrap()
}
