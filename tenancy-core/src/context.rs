//! [`TenantContext`]: anything that knows its tenant, and [`Tenant`], the
//! ready-made one.

use diesel::PgConnection;

use crate::error::TenancyError;
use crate::pool::{TenantConnection, TenantPool};
use crate::schema_name::SchemaName;

/// A value that knows which tenant it works for, and through which pool.
///
/// `#[tenant_scoped]` functions get their connection through this trait and
/// no other way. Implement it for your DAL structs (usually by holding a
/// [`Tenant`]), or use [`Tenant`] directly.
///
/// ```
/// use tenancy_core::{SchemaName, Tenant, TenantContext, TenantPool};
///
/// struct AgentsDal {
///     tenant: Tenant,
/// }
///
/// impl TenantContext for AgentsDal {
///     fn tenant_pool(&self) -> &TenantPool {
///         self.tenant.tenant_pool()
///     }
///     fn tenant_schema(&self) -> &SchemaName {
///         self.tenant.tenant_schema()
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say which tenant it serves: it does not implement `TenantContext`",
    label = "this must be a tenant context",
    note = "pass a `tenancy_core::Tenant` (from `TenantPool::for_tenant`), or implement `TenantContext` for `{Self}` by returning its pool and tenant schema"
)]
pub trait TenantContext {
    /// The pool connections come from.
    fn tenant_pool(&self) -> &TenantPool;

    /// The tenant whose schema every connection resolves names in.
    fn tenant_schema(&self) -> &SchemaName;

    /// A pooled connection scoped to this tenant ([`TenantPool::tenant`]).
    fn tenant_connection(&self) -> Result<TenantConnection, TenancyError> {
        self.tenant_pool().tenant(self.tenant_schema())
    }

    /// Runs `f` in a transaction scoped to this tenant ([`TenantPool::transaction`]).
    fn tenant_transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        self.tenant_pool().transaction(self.tenant_schema(), f)
    }
}

impl<C: TenantContext + ?Sized> TenantContext for &C {
    fn tenant_pool(&self) -> &TenantPool {
        (**self).tenant_pool()
    }
    fn tenant_schema(&self) -> &SchemaName {
        (**self).tenant_schema()
    }
}

impl<C: TenantContext + ?Sized> TenantContext for &mut C {
    fn tenant_pool(&self) -> &TenantPool {
        (**self).tenant_pool()
    }
    fn tenant_schema(&self) -> &SchemaName {
        (**self).tenant_schema()
    }
}

impl<C: TenantContext + ?Sized> TenantContext for Box<C> {
    fn tenant_pool(&self) -> &TenantPool {
        (**self).tenant_pool()
    }
    fn tenant_schema(&self) -> &SchemaName {
        (**self).tenant_schema()
    }
}

impl<C: TenantContext + ?Sized> TenantContext for std::sync::Arc<C> {
    fn tenant_pool(&self) -> &TenantPool {
        (**self).tenant_pool()
    }
    fn tenant_schema(&self) -> &SchemaName {
        (**self).tenant_schema()
    }
}

impl<C: TenantContext + ?Sized> TenantContext for std::rc::Rc<C> {
    fn tenant_pool(&self) -> &TenantPool {
        (**self).tenant_pool()
    }
    fn tenant_schema(&self) -> &SchemaName {
        (**self).tenant_schema()
    }
}

/// A pool bound to one tenant: the ready-made [`TenantContext`].
///
/// Cheap to clone (two reference counts); made by [`TenantPool::for_tenant`].
#[derive(Clone, Debug)]
pub struct Tenant {
    pool: TenantPool,
    schema: SchemaName,
}

impl Tenant {
    pub(crate) fn new(pool: TenantPool, schema: SchemaName) -> Self {
        Self { pool, schema }
    }

    /// The tenant's schema.
    pub fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// The pool.
    pub fn pool(&self) -> &TenantPool {
        &self.pool
    }
}

impl TenantContext for Tenant {
    fn tenant_pool(&self) -> &TenantPool {
        &self.pool
    }
    fn tenant_schema(&self) -> &SchemaName {
        &self.schema
    }
}
