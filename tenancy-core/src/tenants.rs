//! Reading the registry: [`list_tenants`] ([`TenantList`]), [`tenant_record`] and [`tenant_exists`].

use crate::error::TenancyError;
use crate::pool::TenantPool;
use crate::registry::{Registry, TenantRecord};
use crate::schema_name::SchemaName;

/// Lists every registered tenant, ordered by schema name. A tenant whose
/// schema no longer exists is listed as [`Missing`](crate::TenantState::Missing).
/// Registry rows that are not valid (a name or state written by hand) do not
/// fail the call: they are listed in [`TenantList::invalid_rows`].
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
pub fn list_tenants(pool: &TenantPool) -> Result<TenantList, TenancyError> {
    let registry = Registry::new(&pool.inner.layout);
    let rows = pool.internal_transaction(pool.registry_schema(), |conn| {
        registry.ensure(conn)?;
        registry.rows(conn)
    })?;
    let mut list = TenantList { tenants: Vec::with_capacity(rows.len()), invalid_rows: Vec::new() };
    for row in rows {
        let name = row.schema_name.clone();
        match row.into_record() {
            Ok(record) => list.tenants.push(record),
            Err(error) => list.invalid_rows.push((name, error.to_string())),
        }
    }
    Ok(list)
}

/// What [`list_tenants`] found: the valid registry rows, and the invalid
/// ones with the reason. Dereferences to the valid rows.
///
/// ```no_run
/// # let pool = tenancy_core::TenantPool::connect("postgres://localhost/app")?;
/// let list = tenancy_core::list_tenants(&pool)?;
/// println!("{} tenants", list.len());
/// for (name, reason) in &list.invalid_rows {
///     eprintln!("registry row {name:?} is not valid: {reason}");
/// }
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantList {
    /// Every valid registry row, ordered by schema name.
    pub tenants: Vec<TenantRecord>,
    /// Registry rows whose `schema_name` or `state` is not valid, with the
    /// reason (written by hand; fix or delete them).
    pub invalid_rows: Vec<(String, String)>,
}

impl std::ops::Deref for TenantList {
    type Target = [TenantRecord];
    fn deref(&self) -> &[TenantRecord] {
        &self.tenants
    }
}

impl IntoIterator for TenantList {
    type Item = TenantRecord;
    type IntoIter = std::vec::IntoIter<TenantRecord>;
    fn into_iter(self) -> Self::IntoIter {
        self.tenants.into_iter()
    }
}

impl<'a> IntoIterator for &'a TenantList {
    type Item = &'a TenantRecord;
    type IntoIter = std::slice::Iter<'a, TenantRecord>;
    fn into_iter(self) -> Self::IntoIter {
        self.tenants.iter()
    }
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
