use tenancy_core::{TenantContext, TenantPool};

// A pool serves every tenant: it does not say which one.
#[derive(TenantContext)]
struct Dal {
    tenant: TenantPool,
}

fn main() {}
