use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, TenancyError, Tenant};
use tenancy_tests::items;

#[tenant_scoped(ctx = tenant)]
fn count(tenant: &Tenant, conn: &mut PgConnection) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

#[tenant_scoped(ctx = tenant, conn = tenant)]
fn count_renamed(tenant: &Tenant) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(tenant)?)
}

fn main() {}
