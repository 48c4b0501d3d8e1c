//! Tenants on Citus: schema-based sharding, where each distributed schema
//! is a group of tables kept together on one node, and the coordinator
//! routes every query by the search path.
//!
//! A pool built on a Citus coordinator (the `citus` extension is installed
//! and `citus.enable_schema_based_sharding` exists) finds it by itself
//! ([`TenantPool::citus`]) and then:
//!
//! * creates its registry schema with schema sharding off, so the registry
//!   stays on the coordinator;
//! * creates each tenant's schema with schema sharding on, so every tenant is
//!   a distributed schema whatever the server's or database's setting
//!   ([`TenantPoolBuilder::distribute_tenants`] turns that off), and
//!   [`provision`](crate::provision) reports where the tenant was placed;
//!   [`adopt`](crate::adopt) distributes the schema it adopts
//!   (`citus_schema_distribute`), tables and all;
//! * sends migrations one statement per message, as Citus needs for most
//!   DDL on distributed tables.
//!
//! The functions here are what operators need on top: where each tenant is
//! ([`tenant_placements`]), moving a tenant to another node
//! ([`move_tenant`]), rebalancing ([`start_rebalance`],
//! [`rebalance_status`], [`wait_for_rebalance`]), and making a shared table
//! a reference table so that tenants' tables may reference it
//! ([`create_reference_table`]). Each runs on a connection of its own,
//! outside the pool, so pooled and checked-out connections keep working
//! while tenants move.
//!
//! [`TenantPoolBuilder::distribute_tenants`]: crate::TenantPoolBuilder::distribute_tenants

use std::fmt;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};

use crate::error::TenancyError;
use crate::pool::TenantPool;
use crate::registry::Registry;
use crate::schema_name::{check_identifier, SchemaName};
use crate::sql::{quote_ident, quote_literal};

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
pub(crate) fn detect(conn: &mut PgConnection, distribute: bool) -> Result<Option<Citus>, TenancyError> {
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
pub(crate) fn distribute_schema(conn: &mut PgConnection, schema: &SchemaName) -> Result<(), TenancyError> {
    crate::session::trusted(conn, |conn| {
        diesel::sql_query("SELECT pg_catalog.citus_schema_distribute($1::regnamespace)")
            .bind::<Text, _>(schema.quoted())
            .execute(conn)
    })?;
    Ok(())
}

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

/// How Citus copies a tenant's tables to another node
/// (`citus.shard_transfer_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TransferMode {
    /// Logical replication when every table has a replica identity (a
    /// primary key), else blocking writes. Citus's default.
    #[default]
    Auto,
    /// Logical replication: writes continue while the tables are copied and
    /// pause only for the switch over. Tables without a replica identity
    /// refuse updates and deletes during the copy.
    ForceLogical,
    /// Writes to the tenant wait (reads continue) until the copy is done.
    BlockWrites,
}

impl TransferMode {
    /// Citus's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::ForceLogical => "force_logical",
            Self::BlockWrites => "block_writes",
        }
    }
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

fn require(pool: &TenantPool, operation: &'static str) -> Result<(), TenancyError> {
    match pool.citus() {
        Some(_) => Ok(()),
        None => Err(TenancyError::NotCitus { operation }),
    }
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
    require(pool, "tenant_placement")?;
    let registry = Registry::new(&pool.inner.layout);
    let mut conn = pool.direct()?;
    registry.ensure_on(&mut conn)?;
    if registry.row(&mut conn, schema)?.is_none() {
        return Err(TenancyError::TenantNotFound { schema: schema.clone() });
    }
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

/// Moves a registered tenant's tables to `to` (`citus_schema_move`), and
/// returns where it is afterwards. A tenant already there is left alone.
///
/// Connections keep working throughout, pooled and checked out alike: the
/// coordinator routes each query to wherever the tenant is at that moment.
/// With [`TransferMode::BlockWrites`] writes to the tenant wait until the
/// copy is done; with [`TransferMode::ForceLogical`] they pause only for
/// the switch over. Runs on a connection of its own, not in a transaction.
///
/// [`TenancyError::TenantNotFound`] for a name that is not a registered
/// tenant; Citus's own error (as [`TenancyError::Database`]) for a tenant
/// that is not distributed or has no tables, or an unknown node.
///
/// ```no_run
/// use tenancy_core::citus::{move_tenant, Node, TransferMode};
/// # let pool = tenancy_core::TenantPool::connect("postgres://localhost/app")?;
/// let now = move_tenant(&pool, &tenancy_core::schema!("acme"), &Node::new("worker-2", 5432), TransferMode::ForceLogical)?;
/// println!("acme is on {now}");
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn move_tenant(
    pool: &TenantPool,
    schema: &SchemaName,
    to: &Node,
    mode: TransferMode,
) -> Result<Placement, TenancyError> {
    let _in_span = tracing::info_span!(target: "tenancy", "tenancy.citus.move_tenant", tenant = schema.as_str(), to = %to, mode = mode.as_str())
        .entered();
    require(pool, "move_tenant")?;
    let registry = Registry::new(&pool.inner.layout);
    let mut conn = pool.direct()?;
    registry.ensure_on(&mut conn)?;
    if registry.row(&mut conn, schema)?.is_none() {
        return Err(TenancyError::TenantNotFound { schema: schema.clone() });
    }
    if let Placement::Node(now) = placement_of(&mut conn, schema)? {
        if now.host == to.host && now.port == to.port {
            return Ok(Placement::Node(now));
        }
    }
    diesel::sql_query(
        "SELECT pg_catalog.citus_schema_move($1::regnamespace, $2, $3, $4::citus.shard_transfer_mode)",
    )
    .bind::<Text, _>(schema.quoted())
    .bind::<Text, _>(&to.host)
    .bind::<Integer, _>(i32::from(to.port))
    .bind::<Text, _>(mode.as_str())
    .execute(&mut conn)?;
    placement_of(&mut conn, schema)
}

/// A background rebalance: its job and what Citus says of it
/// (`citus_rebalance_status()`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RebalanceStatus {
    /// The background job's id.
    pub job_id: i64,
    /// `scheduled`, `running`, `finished`, `cancelled`, `failed`, ...
    pub state: String,
    /// Citus's details (`jsonb`, as text): the moves, their progress.
    pub details: Option<String>,
}

impl RebalanceStatus {
    /// `true` once the job stopped, in whatever state.
    pub fn is_done(&self) -> bool {
        matches!(self.state.as_str(), "finished" | "cancelled" | "failed")
    }
}

/// Starts a background rebalance of the cluster (`citus_rebalance_start`):
/// tenants are moved so that nodes hold about as many each. Returns the
/// job's id, or `None` when nothing needs to move. Follow it with
/// [`rebalance_status`], or [`wait_for_rebalance`].
pub fn start_rebalance(pool: &TenantPool, mode: TransferMode) -> Result<Option<i64>, TenancyError> {
    require(pool, "start_rebalance")?;
    #[derive(QueryableByName)]
    struct Job {
        #[diesel(sql_type = Nullable<BigInt>)]
        job_id: Option<i64>,
    }
    let mut conn = pool.direct()?;
    let job: Vec<Job> = diesel::sql_query(
        "SELECT pg_catalog.citus_rebalance_start(shard_transfer_mode => $1::citus.shard_transfer_mode) AS job_id",
    )
    .bind::<Text, _>(mode.as_str())
    .load(&mut conn)?;
    Ok(job.into_iter().next().and_then(|j| j.job_id))
}

/// The latest rebalance job, if there ever was one.
pub fn rebalance_status(pool: &TenantPool) -> Result<Option<RebalanceStatus>, TenancyError> {
    require(pool, "rebalance_status")?;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        job_id: i64,
        #[diesel(sql_type = Text)]
        state: String,
        #[diesel(sql_type = Nullable<Text>)]
        details: Option<String>,
    }
    let mut conn = pool.direct()?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT job_id, state::text AS state, details::text AS details FROM pg_catalog.citus_rebalance_status()",
    )
    .load(&mut conn)?;
    Ok(rows.into_iter().next().map(|r| RebalanceStatus {
        job_id: r.job_id,
        state: r.state,
        details: r.details,
    }))
}

/// Waits for the running rebalance to finish (`citus_rebalance_wait`) and
/// returns its final status.
pub fn wait_for_rebalance(pool: &TenantPool) -> Result<Option<RebalanceStatus>, TenancyError> {
    require(pool, "wait_for_rebalance")?;
    let mut conn = pool.direct()?;
    diesel::sql_query("SELECT pg_catalog.citus_rebalance_wait()").execute(&mut conn)?;
    rebalance_status(pool)
}

/// Makes `table` of the pool's shared schema a reference table
/// (`create_reference_table`): copied to every node, so that tenants'
/// tables may have foreign keys to it and join it. Tables that reference
/// it must be reference tables too (or be made so first). A table that
/// already is one is left alone.
///
/// A migration with a foreign key to a shared table that is not a reference
/// table fails with [`TenancyError::NeedsReferenceTable`], which names it.
///
/// ```no_run
/// # let pool = tenancy_core::TenantPool::connect("postgres://localhost/app")?;
/// tenancy_core::citus::create_reference_table(&pool, "plans")?;
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn create_reference_table(pool: &TenantPool, table: &str) -> Result<(), TenancyError> {
    require(pool, "create_reference_table")?;
    check_identifier(table).map_err(|reason| TenancyError::invalid_name(table, reason))?;
    let qualified = format!("{}.{}", quote_ident(pool.shared_schema()), quote_ident(table));
    #[derive(QueryableByName)]
    struct Kind {
        #[diesel(sql_type = Bool)]
        reference: bool,
    }
    let mut conn = pool.direct()?;
    let kind: Vec<Kind> = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition \
                        WHERE logicalrelid = $1::regclass AND partmethod = 'n' AND repmodel = 't') AS reference",
    )
    .bind::<Text, _>(&qualified)
    .load(&mut conn)?;
    if kind.first().is_some_and(|k| k.reference) {
        return Ok(());
    }
    diesel::sql_query("SELECT pg_catalog.create_reference_table($1::regclass)")
        .bind::<Text, _>(&qualified)
        .execute(&mut conn)?;
    Ok(())
}

/// Citus's refusal of a foreign key from a tenant's table to a table that is
/// neither the tenant's nor a reference table: the referenced table (as
/// Citus names it), when `error` is that refusal.
pub(crate) fn needs_reference_table(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let diesel::result::Error::DatabaseError(_, info) = error.downcast_ref::<diesel::result::Error>()? else {
        return None;
    };
    let message = info.message();
    // A plain table on the coordinator: `referenced table "plans" must be a
    // distributed table or a reference table`.
    if let Some(rest) = message.strip_prefix("referenced table \"") {
        let (table, tail) = rest.split_once('"')?;
        return tail.contains("reference table").then(|| table.to_owned());
    }
    // A distributed table elsewhere; errdetail: `"<referencing>" references
    // "<referenced>" via foreign key constraint "<name>"`.
    if message.starts_with("foreign keys from distributed schemas can only point") {
        let referenced = info
            .details()
            .and_then(|d| d.split_once(" references "))
            .and_then(|(_, rest)| rest.split_once(" via foreign key constraint "))
            .map(|(table, _)| table.trim_matches('"').to_owned());
        return Some(referenced.unwrap_or_else(|| String::from("a table outside the tenant's schema")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error};

    struct Refusal(&'static str, Option<&'static str>);

    impl DatabaseErrorInformation for Refusal {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            self.1
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn refusal(message: &'static str, details: Option<&'static str>) -> Error {
        Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(Refusal(message, details)))
    }

    #[test]
    fn citus_refusals_of_foreign_keys_name_the_table_to_make_a_reference_table() {
        let local =
            refusal("referenced table \"plans\" must be a distributed table or a reference table", None);
        assert_eq!(needs_reference_table(&local).as_deref(), Some("plans"));
        let distributed = refusal(
            "foreign keys from distributed schemas can only point to the same distributed schema or reference tables in regular schemas",
            Some("\"acme.subscriptions\" references \"billing.plans\" via foreign key constraint \"subscriptions_plan_id_fkey\""),
        );
        assert_eq!(needs_reference_table(&distributed).as_deref(), Some("billing.plans"));
        let other = refusal("duplicate key value violates unique constraint \"x\"", None);
        assert_eq!(needs_reference_table(&other), None);
        assert_eq!(needs_reference_table(&Error::NotFound), None);
    }
}
