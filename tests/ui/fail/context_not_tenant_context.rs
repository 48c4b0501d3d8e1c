use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, TenancyError, TenantPool};
use tenancy_tests::items;

struct ItemsDal {
    pool: TenantPool,
}

impl ItemsDal {
    #[tenant_scoped]
    fn count(&self) -> Result<i64, TenancyError> {
        Ok(items::table.count().get_result(conn)?)
    }
}

#[tenant_scoped(ctx = pool, transaction)]
fn count(pool: &TenantPool) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

fn main() {}
