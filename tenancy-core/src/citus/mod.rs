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

pub(crate) mod detect;
mod operations;
mod placement;

pub use detect::Citus;
pub(crate) use detect::{distribute_schema, schema_sharding};

pub use operations::{
    create_reference_table, move_tenant, rebalance_status, start_rebalance, wait_for_rebalance,
    RebalanceStatus, TransferMode,
};
pub(crate) use placement::placement_of;
pub use placement::{nodes, tenant_placement, tenant_placements, Node, Placement, TenantPlacement};

use diesel::prelude::*;

use crate::error::TenancyError;
use crate::pool::TenantPool;
use crate::registry::Registry;
use crate::schema_name::SchemaName;

/// [`TenancyError::NotCitus`] unless the pool is on a Citus coordinator.
fn require(pool: &TenantPool, operation: &'static str) -> Result<(), TenancyError> {
    match pool.citus() {
        Some(_) => Ok(()),
        None => Err(TenancyError::NotCitus { operation }),
    }
}

/// A connection of its own, outside the pool, for `operation` on a
/// registered tenant: [`TenancyError::NotCitus`] off Citus,
/// [`TenancyError::TenantNotFound`] for anything but a registered tenant.
fn on_registered(
    pool: &TenantPool,
    schema: &SchemaName,
    operation: &'static str,
) -> Result<PgConnection, TenancyError> {
    require(pool, operation)?;
    let registry = Registry::new(&pool.inner.layout);
    let mut conn = pool.direct()?;
    registry.ensure_on(&mut conn)?;
    if registry.row(&mut conn, schema)?.is_none() {
        return Err(TenancyError::TenantNotFound { schema: schema.clone() });
    }
    Ok(conn)
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
