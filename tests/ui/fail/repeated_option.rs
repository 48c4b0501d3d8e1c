use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, TenancyError, Tenant};
use tenancy_tests::items;

#[tenant_scoped(ctx = tenant, transaction, transaction)]
fn count(tenant: &Tenant) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

#[tenant_scoped(ctx = tenant, conn = c, conn = d)]
fn count_twice(tenant: &Tenant) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(c)?)
}

fn main() {}
