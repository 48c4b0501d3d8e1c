use tenancy_core::diesel::PgConnection;
use tenancy_core::{tenant_scoped, TenancyError, Tenant, TenantConnection};

#[tenant_scoped(ctx = tenant)]
fn leak(tenant: &Tenant) -> Result<&mut TenantConnection, TenancyError> {
    Ok(conn)
}

#[tenant_scoped(ctx = tenant, transaction)]
fn leak_from_transaction(tenant: &Tenant) -> Result<&mut PgConnection, TenancyError> {
    Ok(conn)
}

fn main() {}
