use tenancy_core::diesel::prelude::*;
use tenancy_core::diesel::PgConnection;
use tenancy_core::{tenant_scoped, Scope, SharedConnection, TenancyError, TenantPool};
use tenancy_tests::items;

#[tenant_scoped(ctx = scope)]
fn count(scope: impl Scope) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

fn main() {
    let _ = |pool: &TenantPool, plain: &mut PgConnection, shared: &mut SharedConnection| {
        // The whole pool serves every tenant.
        let _ = count(pool);
        // A diesel connection of no tenant's, and the shared schema's.
        let _ = count(plain);
        let _ = count(shared);
    };
}
