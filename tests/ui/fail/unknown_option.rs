use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, TenancyError, Tenant};
use tenancy_tests::items;

#[tenant_scoped(ctx = tenant, transation)]
fn count(tenant: &Tenant) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

#[tenant_scoped(ctx = tenant, isolation = serializable)]
fn count_serializable(tenant: &Tenant) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

#[tenant_scoped(ctx = tenant, transaction = true)]
fn count_in_transaction(tenant: &Tenant) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

#[tenant_scoped(ctx)]
fn count_no_ctx(tenant: &Tenant) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

fn main() {}
