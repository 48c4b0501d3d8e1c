use tenancy_core::tenant_scoped;

#[tenant_scoped]
struct ItemsDal;

fn main() {}
