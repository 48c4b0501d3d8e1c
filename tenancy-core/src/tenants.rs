//! Reading the registry: [`list_tenants`], [`tenant_record`] and [`tenant_exists`].

use crate::error::TenancyError;
use crate::pool::TenantPool;
use crate::registry::{Registry, TenantRecord};
use crate::schema_name::SchemaName;

/// Lists every registered tenant, ordered by schema name. A tenant whose
/// schema no longer exists is listed as [`Missing`](crate::TenantState::Missing).
///
/// Runs in one short transaction, so it works in every
/// [`PoolerMode`](crate::PoolerMode).
///
/// ```no_run
/// # use tenancy_core::{list_tenants, TenantPool};
/// # let pool = TenantPool::connect("postgres://localhost/app")?;
/// for tenant in list_tenants(&pool)? {
///     println!("{} {} {:?}", tenant.schema, tenant.state, tenant.migration_version);
/// }
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn list_tenants(pool: &TenantPool) -> Result<Vec<TenantRecord>, TenancyError> {
    let registry = Registry::new(&pool.inner.layout);
    pool.internal_transaction(pool.registry_schema(), |conn| {
        registry.ensure(conn)?;
        registry.rows(conn)?.into_iter().map(|row| row.into_record()).collect()
    })
}

/// The registry row of `schema`, or `None` if it is not a registered tenant.
///
/// ```no_run
/// # use tenancy_core::{schema, tenant_record, TenantPool, TenantState};
/// # let pool = TenantPool::connect("postgres://localhost/app")?;
/// if let Some(record) = tenant_record(&pool, &schema!("acme"))? {
///     assert_eq!(record.state, TenantState::Ready);
/// }
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn tenant_record(pool: &TenantPool, schema: &SchemaName) -> Result<Option<TenantRecord>, TenancyError> {
    let registry = Registry::new(&pool.inner.layout);
    pool.internal_transaction(pool.registry_schema(), |conn| {
        registry.ensure(conn)?;
        registry.row(conn, schema)?.map(|row| row.into_record()).transpose()
    })
}

/// `true` if `schema` is a tenant the pool serves: registered, provisioned
/// (ready, or failed at a later migration and serving its last good
/// version), and its schema exists.
///
/// ```no_run
/// # use tenancy_core::{schema, tenant_exists, TenantPool};
/// # let pool = TenantPool::connect("postgres://localhost/app")?;
/// if !tenant_exists(&pool, &schema!("acme"))? {
///     // provision it
/// }
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn tenant_exists(pool: &TenantPool, schema: &SchemaName) -> Result<bool, TenancyError> {
    Ok(tenant_record(pool, schema)?.is_some_and(|record| record.state.is_served()))
}
