//! Trait default methods and trait impl methods.

use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, SchemaName, TenancyError, Tenant, TenantContext, TenantPool};
use tenancy_tests::items;

/// A repository whose methods come with the trait.
pub trait ItemsRepo: TenantContext {
    /// Rows of this tenant.
    #[tenant_scoped]
    fn count(&self) -> Result<i64, TenancyError> {
        Ok(items::table.count().get_result(conn)?)
    }

    #[tenant_scoped(transaction)]
    fn clear(&self) -> Result<usize, TenancyError> {
        Ok(diesel::delete(items::table).execute(conn)?)
    }

    /// No default body: implementors scope their own.
    fn bodies(&self) -> Result<Vec<String>, TenancyError>;
}

pub struct ItemsDal(Tenant);

impl TenantContext for ItemsDal {
    fn tenant_pool(&self) -> &TenantPool {
        self.0.tenant_pool()
    }
    fn tenant_schema(&self) -> &SchemaName {
        self.0.tenant_schema()
    }
}

impl ItemsRepo for ItemsDal {
    #[tenant_scoped]
    fn bodies(&self) -> Result<Vec<String>, TenancyError> {
        Ok(items::table.select(items::body).load(conn)?)
    }
}

/// A trait that is not about tenants, implemented with scoped methods.
pub trait Counter<T> {
    fn total(&self, of: T) -> Result<i64, TenancyError>;
}

impl<'a> Counter<&'a str> for ItemsDal {
    #[tenant_scoped(transaction, conn = c)]
    fn total(&self, of: &'a str) -> Result<i64, TenancyError> {
        Ok(items::table.filter(items::tenant.eq(of)).count().get_result(c)?)
    }
}

fn main() {
    let _ = (<ItemsDal as ItemsRepo>::count, <ItemsDal as ItemsRepo>::clear, <ItemsDal as ItemsRepo>::bodies);
    let _ = <ItemsDal as Counter<&str>>::total;
}
