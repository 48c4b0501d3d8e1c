use tenancy_core::{tenant_scoped, TenancyError, Tenant};

#[tenant_scoped(ctx = tenant)]
const fn answer(tenant: &Tenant) -> Result<i64, TenancyError> {
    Ok(42)
}

fn main() {}
