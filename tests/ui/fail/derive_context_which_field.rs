use tenancy_core::{Tenant, TenantContext};

// Two fields could hold the tenant: which one is not guessed.
#[derive(TenantContext)]
struct Reports {
    primary: Tenant,
    archive: Tenant,
}

#[derive(TenantContext)]
enum Either {
    A(Tenant),
}

fn main() {}
