//! Free functions: the context is a parameter, behind any reference or
//! smart pointer, and the connection can be renamed.

use std::rc::Rc;
use std::sync::Arc;

use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, TenancyError, Tenant, TenantContext};
use tenancy_tests::items;

#[tenant_scoped(ctx = tenant)]
pub fn count(tenant: &Tenant) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

#[tenant_scoped(ctx = tenant, conn = c)]
pub fn count_owned(tenant: Tenant) -> Result<i64, TenancyError> {
    let n = items::table.count().get_result(c)?;
    drop(tenant);
    Ok(n)
}

#[tenant_scoped(ctx = ctx)]
fn count_any(label: &str, ctx: &impl TenantContext) -> Result<(String, i64), TenancyError> {
    Ok((label.to_owned(), items::table.count().get_result(conn)?))
}

#[tenant_scoped(ctx = ctx, transaction)]
fn count_generic<C>(ctx: Arc<C>) -> Result<i64, TenancyError>
where
    C: TenantContext + ?Sized,
{
    Ok(items::table.count().get_result(conn)?)
}

#[tenant_scoped(ctx = tenant)]
fn count_rc(tenant: Rc<Tenant>, (min, max): (i64, i64)) -> Result<bool, TenancyError> {
    let n: i64 = items::table.count().get_result(conn)?;
    Ok((min..=max).contains(&n))
}

struct Handle(Tenant);

impl Handle {
    /// `ctx` can pick another parameter than `self`.
    #[tenant_scoped(ctx = other)]
    fn count_other(&self, other: &Tenant) -> Result<i64, TenancyError> {
        let _ = &self.0;
        Ok(items::table.count().get_result(conn)?)
    }
}

fn main() {
    let _ = (count, count_owned, count_generic::<Tenant>, count_rc);
    let _ = |t: &Tenant| count_any("label", t);
    let _ = Handle::count_other;
}
