use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, TenancyError, Tenant};
use tenancy_tests::items;

#[tenant_scoped(ctx = tenat)]
fn count(tenant: &Tenant) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

#[tenant_scoped(ctx = self)]
fn count_self(tenant: &Tenant) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

fn main() {}
