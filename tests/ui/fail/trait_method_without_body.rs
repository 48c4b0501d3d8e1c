use tenancy_core::{tenant_scoped, TenancyError, TenantContext};

trait ItemsRepo: TenantContext {
    #[tenant_scoped]
    fn count(&self) -> Result<i64, TenancyError>;
}

fn main() {}
