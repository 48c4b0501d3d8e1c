//! Where tenants are: the cluster's nodes and each tenant's placement.

use std::fmt;

use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Nullable, Text};

use super::{on_registered, require};
use crate::error::TenancyError;
use crate::pool::TenantPool;
use crate::registry::Registry;
use crate::schema_name::SchemaName;
use crate::sql::quote_literal;

/// A node of a Citus cluster, as the coordinator's `pg_dist_node` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Node {
    /// Citus's node id.
    pub id: i32,
    /// The host name Citus reaches the node by.
    pub host: String,
    /// Its port.
    pub port: u16,
}

impl Node {
    /// A node named by host and port, for [`move_tenant`]; the id is looked
    /// up when it is used.
    ///
    /// ```
    /// let node = tenancy_core::citus::Node::new("10.0.0.7", 5432);
    /// assert_eq!(node.to_string(), "10.0.0.7:5432");
    /// ```
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self { id: 0, host: host.into(), port }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Where a tenant's tables are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Placement {
    /// A distributed schema whose tables are on this node.
    Node(Node),
    /// A distributed schema without tables yet: Citus places it when its
    /// first table is created.
    Unplaced,
    /// Not a distributed schema: plain tables on the coordinator (a tenant
    /// provisioned with [`distribute_tenants`](crate::TenantPoolBuilder::distribute_tenants)
    /// off, or before Citus was installed).
    Local,
}

impl Placement {
    /// The node, when the tenant is a placed distributed schema.
    pub fn node(&self) -> Option<&Node> {
        match self {
            Self::Node(node) => Some(node),
            _ => None,
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(node) => write!(f, "node {} ({node})", node.id),
            Self::Unplaced => f.write_str("distributed, no tables yet"),
            Self::Local => f.write_str("local to the coordinator"),
        }
    }
}

/// One tenant and where it is ([`tenant_placements`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantPlacement {
    /// The tenant.
    pub schema: SchemaName,
    /// Where its tables are.
    pub placement: Placement,
}

/// Row of the placement query.
#[derive(QueryableByName)]
struct PlacementRow {
    #[diesel(sql_type = Text)]
    schema_name: String,
    #[diesel(sql_type = Bool)]
    distributed: bool,
    #[diesel(sql_type = Nullable<Integer>)]
    nodeid: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    nodename: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    nodeport: Option<i32>,
}

impl PlacementRow {
    fn placement(self) -> Placement {
        match (
            self.distributed,
            self.nodeid,
            self.nodename,
            self.nodeport.and_then(|p| u16::try_from(p).ok()),
        ) {
            (false, ..) => Placement::Local,
            (true, Some(id), Some(host), Some(port)) => Placement::Node(Node { id, host, port }),
            (true, ..) => Placement::Unplaced,
        }
    }
}

/// Where every schema named by `names` (a SQL expression yielding a
/// `schema_name` column) is: Citus's catalog, as `citus_schemas` and
/// `citus_shards` read it, without measuring shard sizes.
fn placement_sql(names: &str) -> String {
    format!(
        "SELECT t.schema_name, ds.schemaid IS NOT NULL AS distributed, \
                node.nodeid, node.nodename::text AS nodename, node.nodeport \
         FROM ({names}) AS t \
         LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = t.schema_name \
         LEFT JOIN pg_catalog.pg_dist_schema ds ON ds.schemaid = n.oid \
         LEFT JOIN LATERAL ( \
             SELECT pl.groupid FROM pg_catalog.pg_dist_partition dp \
             JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid = dp.logicalrelid \
             JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = s.shardid \
             WHERE dp.colocationid = ds.colocationid LIMIT 1) AS g ON true \
         LEFT JOIN pg_catalog.pg_dist_node node ON node.groupid = g.groupid AND node.noderole = 'primary' \
         ORDER BY t.schema_name"
    )
}

/// Where one schema is, read on `conn` (inside the caller's transaction).
pub(crate) fn placement_of(conn: &mut PgConnection, schema: &SchemaName) -> Result<Placement, TenancyError> {
    let sql = placement_sql(&format!("SELECT {}::text AS schema_name", quote_literal(schema.as_str())));
    let rows: Vec<PlacementRow> = crate::session::trusted(conn, |conn| diesel::sql_query(sql).load(conn))?;
    Ok(rows.into_iter().next().map_or(Placement::Local, PlacementRow::placement))
}

/// Every registered tenant and where its tables are, ordered by name.
///
/// [`TenancyError::NotCitus`] unless the pool is on a Citus coordinator.
///
/// ```no_run
/// # let pool = tenancy_core::TenantPool::connect("postgres://localhost/app")?;
/// for tenant in tenancy_core::citus::tenant_placements(&pool)? {
///     println!("{}: {}", tenant.schema, tenant.placement);
/// }
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn tenant_placements(pool: &TenantPool) -> Result<Vec<TenantPlacement>, TenancyError> {
    require(pool, "tenant_placements")?;
    let registry = Registry::new(&pool.inner.layout);
    let mut conn = pool.direct()?;
    registry.ensure_on(&mut conn)?;
    let sql = placement_sql(&format!("SELECT schema_name FROM {}", registry.table()));
    let rows: Vec<PlacementRow> = diesel::sql_query(sql).load(&mut conn)?;
    rows.into_iter()
        .map(|row| {
            let schema = SchemaName::new(&row.schema_name)
                .map_err(|reason| TenancyError::invalid_name(&row.schema_name, reason))?;
            Ok(TenantPlacement { schema, placement: row.placement() })
        })
        .collect()
}

/// Where one registered tenant's tables are;
/// [`TenancyError::TenantNotFound`] for anything else.
pub fn tenant_placement(pool: &TenantPool, schema: &SchemaName) -> Result<Placement, TenancyError> {
    let mut conn = on_registered(pool, schema, "tenant_placement")?;
    placement_of(&mut conn, schema)
}

/// The primary nodes of the cluster that can hold tenants (workers, and
/// the coordinator when it is set to hold shards), ordered by id.
pub fn nodes(pool: &TenantPool) -> Result<Vec<Node>, TenancyError> {
    require(pool, "nodes")?;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Integer)]
        nodeid: i32,
        #[diesel(sql_type = Text)]
        nodename: String,
        #[diesel(sql_type = Integer)]
        nodeport: i32,
    }
    let mut conn = pool.direct()?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT nodeid, nodename::text AS nodename, nodeport FROM pg_catalog.pg_dist_node \
         WHERE noderole = 'primary' AND isactive AND shouldhaveshards ORDER BY nodeid",
    )
    .load(&mut conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some(Node { id: r.nodeid, host: r.nodename, port: u16::try_from(r.nodeport).ok()? }))
        .collect())
}
