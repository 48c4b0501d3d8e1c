use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, Tenant};
use tenancy_tests::items;

#[tenant_scoped(ctx = tenant)]
fn clear(tenant: &Tenant) {
    diesel::delete(items::table).execute(conn).ok();
}

#[tenant_scoped(ctx = tenant)]
fn count(tenant: &Tenant) -> i64 {
    items::table.count().get_result(conn).unwrap_or(0)
}

#[tenant_scoped(ctx = tenant, transaction)]
fn counts(tenant: &Tenant) -> Option<i64> {
    items::table.count().get_result(conn).ok()
}

#[tenant_scoped(ctx = tenant)]
fn pair(tenant: &Tenant) -> (i64, i64) {
    (items::table.count().get_result(conn).unwrap_or(0), 0)
}

fn main() {}
