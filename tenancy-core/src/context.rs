//! [`TenantContext`]: anything that knows its tenant, and [`Tenant`], the
//! ready-made one.

use crate::error::TenancyError;
use crate::pool::{TenantConnection, TenantPool, TransactionBuilder};
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
    note = "use a `tenancy_core::Tenant` (from `pool.for_tenant(schema)`), or a struct holding one with `#[derive(TenantContext)]`",
    note = "a `TenantPool` itself serves every tenant, so it is not a tenant context"
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
        F: FnOnce(&mut TenantConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        self.tenant_pool().transaction(self.tenant_schema(), f)
    }

    /// A transaction scoped to this tenant with options (isolation level,
    /// read only, deferrable): [`TenantPool::build_transaction`].
    fn build_tenant_transaction(&self) -> TransactionBuilder<'_> {
        self.tenant_pool().build_transaction(self.tenant_schema())
    }
}

/// Contexts behind references and smart pointers are contexts too.
macro_rules! forward_context {
    ($($wrapper:ty),*) => {$(
        impl<C: TenantContext + ?Sized> TenantContext for $wrapper {
            fn tenant_pool(&self) -> &TenantPool {
                (**self).tenant_pool()
            }
            fn tenant_schema(&self) -> &SchemaName {
                (**self).tenant_schema()
            }
        }
    )*};
}

forward_context!(&C, &mut C, Box<C>, std::sync::Arc<C>, std::rc::Rc<C>);

/// A pool bound to one tenant: the ready-made [`TenantContext`].
///
/// Cheap to clone (two reference counts); made by [`TenantPool::for_tenant`].
#[derive(Clone, Debug)]
pub struct Tenant {
    pool: TenantPool,
    schema: SchemaName,
}

impl TenantPool {
    /// A cheap, cloneable handle bound to one tenant, implementing
    /// [`TenantContext`]. Nothing is checked here: a checkout through it
    /// proves the tenant, and fails for anything but a registered tenant.
    pub fn for_tenant(&self, schema: SchemaName) -> Tenant {
        Tenant { pool: self.clone(), schema }
    }
}

impl Tenant {
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
