//! Moving tenants between nodes, rebalancing the cluster, and reference
//! tables for shared tables that tenants' tables reference.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};

use super::placement::{placement_of, Node, Placement};
use super::{on_registered, require};
use crate::error::TenancyError;
use crate::pool::TenantPool;
use crate::schema_name::{check_identifier, SchemaName};
use crate::sql::quote_ident;

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
    let mut conn = on_registered(pool, schema, "move_tenant")?;
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
