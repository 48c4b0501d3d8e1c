use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, TenancyError, Tenant};
use tenancy_tests::items;

#[tenant_scoped(ctx = tenant)]
fn count(tenant: &Tenant) -> Result<i64, TenancyError> {
    let n: i64 = items::table.count().get_result(conn)?;
    Ok(n.to_string())
}

#[tenant_scoped(ctx = tenant, transaction)]
fn count_in_transaction(tenant: &Tenant) -> Result<i64, TenancyError> {
    let bodies: Vec<String> = items::table.select(items::body).load(conn)?;
    if bodies.is_empty() {
        return Ok("none");
    }
    Ok(bodies.len() as i64)
}

fn main() {}
